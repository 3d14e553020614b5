//! A synthetic list generator, for benchmarks and scale tests: lists of any size with
//! a realistic mix of exact codes, ranges, overlaps and exemptions.
//!
//! Deterministic (a fixed linear congruential generator), so a benchmark measures the
//! same list every run.

use std::collections::BTreeMap;

use carepath_core::{ServiceCode, Setting};
use chrono::NaiveDate;

use crate::load::AssembledList;
use crate::rules::{Category, CodeRange, Effect, Matcher, PlanFilter, Rule, RuleList};

/// A small deterministic generator (a linear congruential one), for synthetic and
/// generated data: quality is irrelevant, repeatability is not.
#[derive(Debug, Clone)]
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number, 31 bits.
    pub fn draw(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.draw() % n.max(1)
    }

    /// One of `items`, which must not be empty.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

fn code(rng: &mut Lcg) -> (char, u32) {
    const LETTERS: &[char] = &['A', 'E', 'G', 'J', 'K', 'L', 'S'];
    if rng.below(2) == 0 {
        ('0', rng.below(100_000) as u32)
    } else {
        (
            LETTERS[rng.below(LETTERS.len() as u64) as usize],
            rng.below(10_000) as u32,
        )
    }
}

fn render(letter: char, n: u32) -> ServiceCode {
    let text = if letter == '0' {
        format!("{n:05}")
    } else {
        format!("{letter}{n:04}")
    };
    ServiceCode::parse(&text).expect("rendered codes have a valid shape by construction")
}

/// Builds a list of `rules` synthetic rules (for benchmarks): about half exact codes,
/// half short ranges of up to 50 codes, one in ten an exemption, one in five limited
/// to a setting, in force from 2026-01-01 for all plans.
///
/// Not for production: the rules mean nothing.
pub fn synthetic_list(rules: usize) -> RuleList {
    let mut rng = Lcg(0x5eed_cafe);
    let categories = Category::ALL;
    let settings = Setting::ALL;
    let mut out = Vec::with_capacity(rules);
    for i in 0..rules {
        let mut matcher = Matcher::default();
        let (letter, start) = code(&mut rng);
        if rng.below(2) == 0 {
            matcher.codes.push(render(letter, start));
        } else {
            let limit = if letter == '0' { 99_999 } else { 9_999 };
            let end = (start + rng.below(50) as u32).min(limit);
            matcher.ranges.push(CodeRange {
                from: render(letter, start),
                to: render(letter, end),
            });
        }
        if rng.below(5) == 0 {
            matcher
                .settings
                .push(settings[rng.below(settings.len() as u64) as usize]);
        }
        let effect = if rng.below(10) == 0 {
            Effect::NotRequired
        } else {
            Effect::Required
        };
        out.push(Rule {
            id: format!("SYN-{i:06}"),
            text: "Synthetic rule for benchmarks.".into(),
            category: categories[rng.below(categories.len() as u64) as usize],
            effect,
            matcher,
            clinical_review: effect == Effect::Required && rng.below(4) == 0,
            questions: Vec::new(),
            auto_approve: None,
            documents: Vec::new(),
            reviewer_specialty: None,
            gold_card: false,
            program: None,
        });
    }
    RuleList::assemble(AssembledList {
        id: "synthetic".into(),
        version: format!("{rules}"),
        title: format!("Synthetic list of {rules} rules"),
        source: "synthetic".into(),
        effective_from: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or(NaiveDate::MIN),
        effective_to: None,
        applies_to: PlanFilter::AllPlans,
        notice: "Synthetic benchmark data; not a real list.".into(),
        documents: BTreeMap::new(),
        rules: out,
    })
}

/// `n` service codes drawn from the same code space as the generator's rules, for
/// benchmark inputs.
pub fn synthetic_codes(n: usize) -> Vec<ServiceCode> {
    let mut rng = Lcg(0x000c_0de5);
    (0..n)
        .map(|_| {
            let (letter, number) = code(&mut rng);
            render(letter, number)
        })
        .collect()
}
