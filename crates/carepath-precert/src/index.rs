//! The lookup index built once per list: service codes mapped to dense integer keys,
//! cut into elementary intervals, each holding the rules that cover it.
//!
//! A lookup is one binary search over interval starts plus a look at the handful of
//! rules on that interval, so its cost grows with the logarithm of the list size, not
//! with the list size.

use carepath_core::{ServiceCode, Setting};

use crate::rules::Rule;

/// Width given to rules without code matchers, so any code-specific rule outranks
/// them.
pub(crate) const ANY_CODE_WIDTH: u32 = u32::MAX;

/// CPT Category I codes take keys 0..100_000, Category II and III the next 10_000 each,
/// then HCPCS Level II letters A to V 10_000 each. Within one shape, key order is the
/// string order [`ServiceCode::in_range`] uses, so a range of one shape is one
/// contiguous run of keys.
const CAT_II_BASE: u32 = 100_000;
const CAT_III_BASE: u32 = 110_000;
const HCPCS_BASE: u32 = 120_000;

/// The dense integer key of a (valid) service code.
pub(crate) fn code_key(code: &ServiceCode) -> u32 {
    let b = code.as_str().as_bytes();
    let digits = |s: &[u8]| {
        s.iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d.wrapping_sub(b'0')))
    };
    match (b[0], b[4]) {
        (b'0'..=b'9', b'F') => CAT_II_BASE + digits(&b[..4]),
        (b'0'..=b'9', b'T') => CAT_III_BASE + digits(&b[..4]),
        (b'0'..=b'9', _) => digits(b),
        (letter, _) => HCPCS_BASE + u32::from(letter - b'A') * 10_000 + digits(&b[1..]),
    }
}

/// Which code shape a key belongs to: ranges must not cross shapes.
pub(crate) fn key_shape(key: u32) -> u8 {
    match key {
        k if k < CAT_II_BASE => 0,
        k if k < CAT_III_BASE => 1,
        k if k < HCPCS_BASE => 2,
        _ => 3,
    }
}

/// One rule on one interval, with how narrowly it matched there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub rule: u32,
    /// Number of codes in the narrowest code matcher of this rule that covers the
    /// interval (1 for an exact code).
    pub width: u32,
}

/// The index over one list's rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct CodeIndex {
    /// Start key of each elementary interval, ascending.
    starts: Vec<u32>,
    /// `offsets[i]..offsets[i + 1]` are interval `i`'s entries in `entries`.
    offsets: Vec<u32>,
    entries: Vec<Candidate>,
    /// Rules without code matchers, per setting (a rule naming no setting is in all).
    any_code: [Vec<Candidate>; 4],
}

fn setting_slot(setting: Setting) -> usize {
    match setting {
        Setting::Inpatient => 0,
        Setting::Outpatient => 1,
        Setting::Office => 2,
        Setting::Home => 3,
    }
}

impl CodeIndex {
    /// Builds the index with a sweep over interval boundaries.
    pub(crate) fn build(rules: &[Rule]) -> Self {
        // (from, to_inclusive, rule, width) for every code matcher.
        let mut spans: Vec<(u32, u32, u32, u32)> = Vec::new();
        let mut any_code: [Vec<Candidate>; 4] = Default::default();
        for (i, rule) in rules.iter().enumerate() {
            let rule_no = i as u32;
            let m = &rule.matcher;
            if !m.has_codes() {
                let candidate = Candidate {
                    rule: rule_no,
                    width: ANY_CODE_WIDTH,
                };
                if m.settings.is_empty() {
                    for slot in &mut any_code {
                        slot.push(candidate);
                    }
                } else {
                    for s in &m.settings {
                        any_code[setting_slot(*s)].push(candidate);
                    }
                }
                continue;
            }
            for code in &m.codes {
                let k = code_key(code);
                spans.push((k, k, rule_no, 1));
            }
            for range in &m.ranges {
                let (from, to) = (code_key(&range.from), code_key(&range.to));
                spans.push((from, to, rule_no, to - from + 1));
            }
        }

        let mut bounds: Vec<u32> = Vec::with_capacity(spans.len() * 2);
        for &(from, to, _, _) in &spans {
            bounds.push(from);
            bounds.push(to + 1);
        }
        bounds.sort_unstable();
        bounds.dedup();

        // Sweep: spans sorted by start join the active set at their start; spans leave
        // once the interval start passes their end.
        spans.sort_unstable_by_key(|s| s.0);
        let mut starts = Vec::with_capacity(bounds.len());
        let mut offsets = vec![0u32];
        let mut entries: Vec<Candidate> = Vec::new();
        let mut active: Vec<(u32, u32, u32, u32)> = Vec::new();
        let mut next_span = 0;
        // The last boundary starts an empty interval running to the end of the key
        // space, so codes above every rule find nothing.
        for &start in &bounds {
            active.retain(|s| s.1 >= start);
            while next_span < spans.len() && spans[next_span].0 <= start {
                active.push(spans[next_span]);
                next_span += 1;
            }
            let first = entries.len();
            for &(_, _, rule, width) in &active {
                match entries[first..].iter_mut().find(|c| c.rule == rule) {
                    Some(existing) => existing.width = existing.width.min(width),
                    None => entries.push(Candidate { rule, width }),
                }
            }
            starts.push(start);
            offsets.push(entries.len() as u32);
        }
        Self {
            starts,
            offsets,
            entries,
            any_code,
        }
    }

    /// The rules whose code matchers cover `code`.
    pub(crate) fn by_code(&self, code: &ServiceCode) -> &[Candidate] {
        let key = code_key(code);
        let i = self.starts.partition_point(|s| *s <= key);
        if i == 0 {
            return &[];
        }
        let (lo, hi) = (self.offsets[i - 1] as usize, self.offsets[i] as usize);
        &self.entries[lo..hi]
    }

    /// The rules without code matchers that may apply in `setting`.
    pub(crate) fn by_setting(&self, setting: Setting) -> &[Candidate] {
        &self.any_code[setting_slot(setting)]
    }

    /// Number of elementary intervals, for tests and sizing.
    #[cfg(test)]
    pub(crate) fn intervals(&self) -> usize {
        self.starts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> ServiceCode {
        ServiceCode::parse(s).unwrap()
    }

    #[test]
    fn keys_keep_shape_order() {
        let ordered = [
            "00100", "70553", "99999", "0001F", "9999F", "0001T", "0999T", "A0021", "E0784",
            "J9355", "K0899", "V5299",
        ];
        let keys: Vec<u32> = ordered.iter().map(|s| code_key(&c(s))).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(key_shape(code_key(&c("70553"))), 0);
        assert_eq!(key_shape(code_key(&c("0001F"))), 1);
        assert_eq!(key_shape(code_key(&c("0042T"))), 2);
        assert_eq!(key_shape(code_key(&c("J9355"))), 3);
        assert_eq!(code_key(&c("V9999")), HCPCS_BASE + 21 * 10_000 + 9999);
    }
}
