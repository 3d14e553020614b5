//! Loading and validating list files, and the [`RuleBook`] that holds every version.
//!
//! A list file is TOML (see `data/precert/README.md` for the format). Loading checks
//! everything a plan administrator can get wrong and reports every problem at once,
//! each naming the file, the rule and what is wrong, so a bad list is fixed in one
//! pass and never reaches a member.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::Path;

use carepath_core::{Icd10Code, Plan, PlanId, ProviderKind, ServiceCode, Setting, Specialty};
use chrono::NaiveDate;
use serde::Deserialize;

use crate::index::{CodeIndex, code_key, key_shape};
use crate::rules::{
    Admission, AnswerKind, Category, CodeRange, Comparison, Criterion, Delivery, DiagnosisRange,
    Effect, EnableValue, EnableWhen, Literal, Matcher, Op, PlanFilter, Program, Question, Rule,
    RuleList, StayThreshold,
};

/// The shipped lists, embedded so a server needs no path to start.
const SHIPPED: &[(&str, &str)] = &[
    (
        "standard-2026.toml",
        include_str!("../../../data/precert/standard-2026.toml"),
    ),
    (
        "standard-2027.toml",
        include_str!("../../../data/precert/standard-2027.toml"),
    ),
];

/// One problem with a list, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {}{problem}", rule.as_deref().map(|r| format!("rule {r}: ")).unwrap_or_default())]
pub struct LoadError {
    /// The file or source name the list came from.
    pub file: String,
    /// The rule at fault (its id, or `rules[i]` when it has none); `None` for problems
    /// with the list as a whole.
    pub rule: Option<String>,
    pub problem: Problem,
}

/// What is wrong; one variant per kind of mistake, so tools and tests can tell them
/// apart without reading messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    Syntax(String),
    #[error("{field} must not be empty")]
    Blank { field: &'static str },
    #[error("{0}")]
    UnknownName(String),
    #[error("{field}: {message}")]
    BadValue { field: String, message: String },
    #[error("duplicate rule id; the first rule with this id is rules[{first}]")]
    DuplicateRuleId { first: usize },
    #[error("range {from}-{to} runs backwards (from is after to)")]
    RangeReversed { from: String, to: String },
    #[error(
        "range {from}-{to} mixes code kinds; both ends must be cpt category i, ii, iii or the same kind of hcpcs code"
    )]
    MixedCodeKinds { from: String, to: String },
    #[error("{field} is empty; leave it out to match everything")]
    EmptyMatcher { field: &'static str },
    #[error(
        "rule matches every service; give codes, ranges, settings, facility_kinds or diagnoses"
    )]
    NoMatcher,
    #[error("criteria reference unknown question {0:?}")]
    UnknownQuestion(String),
    #[error("question {0:?} is asked twice")]
    DuplicateQuestion(String),
    #[error("criterion {criterion:?}: {message}")]
    BadCriterion { criterion: String, message: String },
    #[error("unknown document {0:?}; define it in the list's [documents] table")]
    UnknownDocument(String),
    #[error("effective_to {to} is before effective_from {from}")]
    EffectiveToBeforeFrom { from: NaiveDate, to: NaiveDate },
    #[error("list {id} version {version} overlaps version {other_version} ({other_file}) in time")]
    OverlappingVersions {
        id: String,
        version: String,
        other_version: String,
        other_file: String,
    },
    #[error(
        "list {id} and list {other_id} ({other_file}) both apply to {plans} on overlapping dates; give one of them narrower plans or dates"
    )]
    AmbiguousLists {
        id: String,
        other_id: String,
        other_file: String,
        plans: String,
    },
    #[error("list {id} version {version} is loaded twice (also from {other_file})")]
    DuplicateVersion {
        id: String,
        version: String,
        other_file: String,
    },
    #[error("{0}")]
    Inconsistent(String),
}

/// Every problem found while loading, in file and rule order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", DisplayErrors(&self.0))]
pub struct LoadErrors(pub Vec<LoadError>);

struct DisplayErrors<'a>(&'a [LoadError]);

impl fmt::Display for DisplayErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The list file, before checking. Rules stay raw TOML so each is decoded on its own
/// and an error can name it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    id: String,
    version: String,
    title: String,
    effective_from: toml::Value,
    effective_to: Option<toml::Value>,
    #[serde(default)]
    applies_to: Option<RawPlanFilter>,
    notice: String,
    #[serde(default)]
    documents: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<toml::Value>,
}

/// `"all"`, `{ preferred_care_management = false }` or `{ plan_ids = [...] }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawPlanFilter {
    Word(String),
    Table(RawPlanTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlanTable {
    preferred_care_management: Option<bool>,
    plan_ids: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    text: String,
    category: String,
    effect: String,
    codes: Option<Vec<String>>,
    /// `[["70540", "70559"], ...]`
    ranges: Option<Vec<(String, String)>>,
    settings: Option<Vec<String>>,
    facility_kinds: Option<Vec<String>>,
    /// `[["C00", "D49"], ...]`
    diagnoses: Option<Vec<(String, String)>>,
    admission: Option<String>,
    delivery: Option<String>,
    length_of_stay_over_hours: Option<u32>,
    length_of_stay_at_most_hours: Option<u32>,
    units_over: Option<u32>,
    plans: Option<RawPlanFilter>,
    #[serde(default)]
    clinical_review: bool,
    #[serde(default)]
    questions: Vec<RawQuestion>,
    auto_approve: Option<RawCriterion>,
    #[serde(default)]
    documents: Vec<String>,
    reviewer_specialty: Option<String>,
    #[serde(default)]
    gold_card: bool,
    program: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuestion {
    id: String,
    text: String,
    answer: String,
    #[serde(default)]
    options: Vec<String>,
    enable_when: Option<String>,
}

/// A comparison as text, or a group.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawCriterion {
    Text(String),
    Group(RawGroup),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    all_of: Option<Vec<RawCriterion>>,
    any_of: Option<Vec<RawCriterion>>,
}

/// Collects problems for one file.
struct Report<'a> {
    file: &'a str,
    errors: Vec<LoadError>,
}

impl Report<'_> {
    fn list(&mut self, problem: Problem) {
        self.errors.push(LoadError {
            file: self.file.to_owned(),
            rule: None,
            problem,
        });
    }

    fn rule(&mut self, rule: &str, problem: Problem) {
        self.errors.push(LoadError {
            file: self.file.to_owned(),
            rule: Some(rule.to_owned()),
            problem,
        });
    }
}

fn bad(field: impl Into<String>, message: impl fmt::Display) -> Problem {
    Problem::BadValue {
        field: field.into(),
        message: message.to_string(),
    }
}

fn parse_date(field: &str, value: &toml::Value) -> Result<NaiveDate, Problem> {
    let text = match value {
        toml::Value::Datetime(dt) => {
            if dt.time.is_some() || dt.offset.is_some() {
                return Err(bad(field, format!("{dt} must be a date without a time")));
            }
            dt.to_string()
        }
        toml::Value::String(s) => s.clone(),
        other => {
            return Err(bad(
                field,
                format!("{other} is not a date such as 2026-01-01"),
            ));
        }
    };
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| bad(field, format!("{text:?} is not a date such as 2026-01-01")))
}

fn plan_filter(field: &str, raw: RawPlanFilter) -> Result<PlanFilter, Problem> {
    match raw {
        RawPlanFilter::Word(w) if w == "all" => Ok(PlanFilter::AllPlans),
        RawPlanFilter::Word(w) => Err(bad(
            field,
            format!(
                "{w:?}: use \"all\", {{ preferred_care_management = true/false }} or {{ plan_ids = [...] }}"
            ),
        )),
        RawPlanFilter::Table(RawPlanTable {
            preferred_care_management: Some(pcm),
            plan_ids: None,
        }) => Ok(PlanFilter::PreferredCareManagement(pcm)),
        RawPlanFilter::Table(RawPlanTable {
            preferred_care_management: None,
            plan_ids: Some(ids),
        }) => {
            if ids.is_empty() {
                return Err(bad(field, "plan_ids must name at least one plan"));
            }
            ids.iter()
                .map(|id| PlanId::parse(id).map_err(|e| bad(field, e)))
                .collect::<Result<Vec<_>, _>>()
                .map(PlanFilter::PlanIds)
        }
        RawPlanFilter::Table(_) => Err(bad(
            field,
            "give exactly one of preferred_care_management or plan_ids",
        )),
    }
}

impl RuleList {
    /// Loads one list version from TOML text. `source` (usually the file name) is
    /// named in every error. Checks everything within the file; checks across versions
    /// happen when lists are put together in a [`RuleBook`].
    pub fn from_toml(source: &str, text: &str) -> Result<RuleList, LoadErrors> {
        let mut report = Report {
            file: source,
            errors: Vec::new(),
        };
        let raw: RawList = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                report.list(Problem::Syntax(e.to_string().trim_end().to_owned()));
                return Err(LoadErrors(report.errors));
            }
        };
        for (field, value) in [
            ("id", &raw.id),
            ("version", &raw.version),
            ("title", &raw.title),
            ("notice", &raw.notice),
        ] {
            if value.trim().is_empty() {
                report.list(Problem::Blank { field });
            }
        }
        let effective_from = parse_date("effective_from", &raw.effective_from)
            .map_err(|p| report.list(p))
            .ok();
        let effective_to = match &raw.effective_to {
            None => None,
            Some(v) => parse_date("effective_to", v)
                .map_err(|p| report.list(p))
                .ok(),
        };
        if let (Some(from), Some(to)) = (effective_from, effective_to)
            && to < from
        {
            report.list(Problem::EffectiveToBeforeFrom { from, to });
        }
        let applies_to = match raw.applies_to {
            None => Some(PlanFilter::AllPlans),
            Some(f) => plan_filter("applies_to", f)
                .map_err(|p| report.list(p))
                .ok(),
        };
        for (id, text) in &raw.documents {
            if text.trim().is_empty() {
                report.list(bad(format!("documents.{id}"), "must describe the document"));
            }
        }

        let mut rules = Vec::with_capacity(raw.rules.len());
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (i, value) in raw.rules.into_iter().enumerate() {
            let name = value
                .get("id")
                .and_then(toml::Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map_or_else(|| format!("rules[{i}]"), str::to_owned);
            if let Some(first) = seen.get(&name) {
                report.rule(&name, Problem::DuplicateRuleId { first: *first });
            } else {
                seen.insert(name.clone(), i);
            }
            let raw_rule: RawRule = match value.try_into() {
                Ok(r) => r,
                Err(e) => {
                    report.rule(&name, Problem::Syntax(e.to_string().trim_end().to_owned()));
                    continue;
                }
            };
            let before = report.errors.len();
            let rule = build_rule(raw_rule, &raw.documents, &name, &mut report);
            if report.errors.len() == before
                && let Some(rule) = rule
            {
                rules.push(rule);
            }
        }

        if !report.errors.is_empty() {
            return Err(LoadErrors(report.errors));
        }
        let (Some(effective_from), Some(applies_to)) = (effective_from, applies_to) else {
            // Both failures were reported above, so errors cannot be empty here.
            return Err(LoadErrors(report.errors));
        };
        Ok(RuleList::assemble(AssembledList {
            id: raw.id,
            version: raw.version,
            title: raw.title,
            source: source.to_owned(),
            effective_from,
            effective_to,
            applies_to,
            notice: raw.notice,
            documents: raw.documents,
            rules,
        }))
    }

    /// Builds the index over checked rules.
    pub(crate) fn assemble(list: AssembledList) -> RuleList {
        let index = CodeIndex::build(&list.rules);
        RuleList {
            id: list.id,
            version: list.version,
            title: list.title,
            source: list.source,
            effective_from: list.effective_from,
            effective_to: list.effective_to,
            declared_to: list.effective_to,
            applies_to: list.applies_to,
            notice: list.notice,
            documents: list.documents,
            rules: list.rules,
            index,
        }
    }
}

/// A list's parts, before indexing.
pub(crate) struct AssembledList {
    pub id: String,
    pub version: String,
    pub title: String,
    pub source: String,
    pub effective_from: NaiveDate,
    pub effective_to: Option<NaiveDate>,
    pub applies_to: PlanFilter,
    pub notice: String,
    pub documents: BTreeMap<String, String>,
    pub rules: Vec<Rule>,
}

/// Parses a list of names, reporting an explicitly empty list as an empty matcher.
fn names<T>(
    report: &mut Report<'_>,
    rule: &str,
    field: &'static str,
    raw: Option<Vec<String>>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Vec<T> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    if raw.is_empty() {
        report.rule(rule, Problem::EmptyMatcher { field });
    }
    raw.iter()
        .filter_map(|s| parse(s).map_err(|e| report.rule(rule, bad(field, e))).ok())
        .collect()
}

fn build_rule(
    raw: RawRule,
    documents: &BTreeMap<String, String>,
    name: &str,
    report: &mut Report<'_>,
) -> Option<Rule> {
    if raw.id.trim().is_empty() {
        report.rule(name, Problem::Blank { field: "id" });
    }
    if raw.text.trim().is_empty() {
        report.rule(name, Problem::Blank { field: "text" });
    }
    let category = Category::parse(&raw.category)
        .map_err(|e| report.rule(name, Problem::UnknownName(e)))
        .ok();
    let effect = Effect::parse(&raw.effect)
        .map_err(|e| report.rule(name, Problem::UnknownName(e)))
        .ok();

    // Whether any matcher was written at all; a matcher that was written but rejected
    // is reported on its own, not again as a missing matcher.
    let any_matcher_given = raw.codes.is_some()
        || raw.ranges.is_some()
        || raw.settings.is_some()
        || raw.facility_kinds.is_some()
        || raw.diagnoses.is_some();
    let codes = names(report, name, "codes", raw.codes, |s| {
        ServiceCode::parse(s).map_err(|e| format!("{s:?}: {e}"))
    });
    let mut ranges = Vec::new();
    if let Some(raw_ranges) = raw.ranges {
        if raw_ranges.is_empty() {
            report.rule(name, Problem::EmptyMatcher { field: "ranges" });
        }
        for (from, to) in raw_ranges {
            let parsed = (ServiceCode::parse(&from), ServiceCode::parse(&to));
            let (Ok(f), Ok(t)) = parsed else {
                report.rule(
                    name,
                    bad(
                        "ranges",
                        format!("{from}-{to} is not a pair of service codes"),
                    ),
                );
                continue;
            };
            let (fk, tk) = (code_key(&f), code_key(&t));
            if key_shape(fk) != key_shape(tk) {
                report.rule(name, Problem::MixedCodeKinds { from, to });
            } else if fk > tk {
                report.rule(name, Problem::RangeReversed { from, to });
            } else {
                ranges.push(CodeRange { from: f, to: t });
            }
        }
    }
    let settings = names(report, name, "settings", raw.settings, |s| {
        Setting::parse(s).map_err(|e| e.to_string())
    });
    let facility_kinds = names(report, name, "facility_kinds", raw.facility_kinds, |s| {
        ProviderKind::parse(s).map_err(|e| e.to_string())
    });
    let mut diagnoses = Vec::new();
    if let Some(raw_dx) = raw.diagnoses {
        if raw_dx.is_empty() {
            report.rule(name, Problem::EmptyMatcher { field: "diagnoses" });
        }
        for (from, to) in raw_dx {
            match (Icd10Code::parse(&from), Icd10Code::parse(&to)) {
                (Ok(f), Ok(t)) if f.as_str() <= t.as_str() => {
                    diagnoses.push(DiagnosisRange { from: f, to: t });
                }
                (Ok(_), Ok(_)) => report.rule(name, Problem::RangeReversed { from, to }),
                _ => report.rule(
                    name,
                    bad(
                        "diagnoses",
                        format!("{from}-{to} is not a pair of icd-10-cm codes"),
                    ),
                ),
            }
        }
    }
    let admission = raw.admission.and_then(|s| {
        Admission::parse(&s)
            .map_err(|e| report.rule(name, bad("admission", e)))
            .ok()
    });
    let delivery = raw.delivery.and_then(|s| {
        Delivery::parse(&s)
            .map_err(|e| report.rule(name, bad("delivery", e)))
            .ok()
    });
    let length_of_stay = match (
        raw.length_of_stay_over_hours,
        raw.length_of_stay_at_most_hours,
    ) {
        (Some(h), None) => Some(StayThreshold::OverHours(h)),
        (None, Some(h)) => Some(StayThreshold::AtMostHours(h)),
        (None, None) => None,
        (Some(_), Some(_)) => {
            report.rule(
                name,
                bad(
                    "length_of_stay_over_hours",
                    "give length_of_stay_over_hours or length_of_stay_at_most_hours, not both",
                ),
            );
            None
        }
    };
    let plans = raw.plans.and_then(|f| {
        plan_filter("plans", f)
            .map_err(|p| report.rule(name, p))
            .ok()
    });
    let matcher = Matcher {
        codes,
        ranges,
        settings,
        facility_kinds,
        diagnoses,
        admission,
        delivery,
        length_of_stay,
        units_over: raw.units_over,
        plans,
    };
    if !any_matcher_given {
        report.rule(name, Problem::NoMatcher);
    }

    let mut questions: Vec<Question> = Vec::new();
    for q in raw.questions {
        if q.id.trim().is_empty() {
            report.rule(
                name,
                Problem::Blank {
                    field: "questions.id",
                },
            );
            continue;
        }
        if q.text.trim().is_empty() {
            report.rule(
                name,
                Problem::Blank {
                    field: "questions.text",
                },
            );
        }
        if questions.iter().any(|existing| existing.id == q.id) {
            report.rule(name, Problem::DuplicateQuestion(q.id.clone()));
            continue;
        }
        let answer = match AnswerKind::parse(&q.answer) {
            Ok(answer) => answer,
            Err(e) => {
                report.rule(name, bad(format!("questions.{}.answer", q.id), e));
                continue;
            }
        };
        let options = question_options(&q, answer, name, report);
        // Only questions declared before this one can be named: no cycles.
        let enable_when =
            q.enable_when
                .as_deref()
                .and_then(|text| match enable_when(text, &questions) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        report.rule(name, bad(format!("questions.{}.enable_when", q.id), e));
                        None
                    }
                });
        questions.push(Question {
            id: q.id,
            text: q.text,
            answer,
            options,
            enable_when,
        });
    }
    let auto_approve = raw
        .auto_approve
        .and_then(|c| criterion(c, &questions, name, report));

    for doc in &raw.documents {
        if !documents.contains_key(doc) {
            report.rule(name, Problem::UnknownDocument(doc.clone()));
        }
    }
    let reviewer_specialty = raw.reviewer_specialty.and_then(|s| {
        Specialty::parse(&s)
            .map_err(|e| report.rule(name, bad("reviewer_specialty", e)))
            .ok()
    });
    let program = raw.program.and_then(|s| {
        Program::parse(&s)
            .map_err(|e| report.rule(name, bad("program", e)))
            .ok()
    });

    let effect = effect?;
    if effect != Effect::Required {
        let extras = [
            ("clinical_review", raw.clinical_review),
            ("auto_approve", auto_approve.is_some()),
            ("program", program.is_some()),
            ("gold_card", raw.gold_card),
        ];
        for (field, given) in extras {
            if given {
                report.rule(
                    name,
                    Problem::Inconsistent(format!(
                        "{field} only applies to rules whose effect is required"
                    )),
                );
            }
        }
    }
    if auto_approve.is_some() && raw.clinical_review {
        report.rule(
            name,
            Problem::Inconsistent(
                "auto_approve can never apply to a rule with clinical_review = true".into(),
            ),
        );
    }
    if program.is_some() && raw.gold_card {
        report.rule(
            name,
            Problem::Inconsistent(
                "rules handed to a program review the whole plan of care; gold_card cannot exempt them"
                    .into(),
            ),
        );
    }

    Some(Rule {
        id: raw.id,
        text: raw.text,
        category: category?,
        effect,
        matcher,
        clinical_review: raw.clinical_review,
        questions,
        auto_approve,
        documents: raw.documents,
        reviewer_specialty,
        gold_card: raw.gold_card,
        program,
    })
}

fn criterion(
    raw: RawCriterion,
    questions: &[Question],
    rule: &str,
    report: &mut Report<'_>,
) -> Option<Criterion> {
    match raw {
        RawCriterion::Text(text) => match parse_comparison(&text, questions) {
            Ok(c) => Some(Criterion::Compare(c)),
            Err(problem) => {
                report.rule(rule, problem);
                None
            }
        },
        RawCriterion::Group(RawGroup { all_of, any_of }) => {
            let (items, all) = match (all_of, any_of) {
                (Some(items), None) => (items, true),
                (None, Some(items)) => (items, false),
                _ => {
                    report.rule(
                        rule,
                        bad(
                            "auto_approve",
                            "each group has exactly one of all_of or any_of",
                        ),
                    );
                    return None;
                }
            };
            if items.is_empty() {
                report.rule(rule, bad("auto_approve", "a group must not be empty"));
                return None;
            }
            let parsed: Vec<Option<Criterion>> = items
                .into_iter()
                .map(|item| criterion(item, questions, rule, report))
                .collect();
            let parsed: Option<Vec<Criterion>> = parsed.into_iter().collect();
            let items = parsed?;
            Some(if all {
                Criterion::AllOf(items)
            } else {
                Criterion::AnyOf(items)
            })
        }
    }
}

/// Most options a code question lists.
pub const MAX_QUESTION_OPTIONS: usize = 50;

/// The options of a code question: distinct, non-blank, only on code questions.
fn question_options(
    q: &RawQuestion,
    answer: AnswerKind,
    rule: &str,
    report: &mut Report<'_>,
) -> Vec<String> {
    let field = format!("questions.{}.options", q.id);
    if q.options.is_empty() {
        return Vec::new();
    }
    if answer != AnswerKind::Code {
        report.rule(rule, bad(field, "only code questions list options"));
        return Vec::new();
    }
    if q.options.len() > MAX_QUESTION_OPTIONS {
        report.rule(
            rule,
            bad(field, format!("at most {MAX_QUESTION_OPTIONS} options")),
        );
        return Vec::new();
    }
    let mut seen = BTreeSet::new();
    for option in &q.options {
        if option.trim().is_empty() || !seen.insert(option.trim().to_lowercase()) {
            report.rule(
                rule,
                bad(field, format!("{option:?} is blank or listed twice")),
            );
            return Vec::new();
        }
    }
    q.options.clone()
}

/// Parses an `enable_when` condition: `question == value` or `question != value` over
/// one of `earlier`, a yes/no, text or code question.
fn enable_when(text: &str, earlier: &[Question]) -> Result<EnableWhen, String> {
    let comparison = parse_comparison(text, earlier).map_err(|p| match p {
        Problem::UnknownQuestion(q) => {
            format!("{q:?} is not a question declared earlier on this rule")
        }
        other => other.to_string(),
    })?;
    let equals = match comparison.op {
        Op::Eq => true,
        Op::Ne => false,
        _ => return Err(format!("{text:?}: only == and != are allowed here")),
    };
    let value = match comparison.value {
        Literal::Bool(b) => EnableValue::Bool(b),
        Literal::Text(t) => EnableValue::Text(t),
        _ => {
            return Err(format!("{text:?}: compare with true, false or \"text\""));
        }
    };
    Ok(EnableWhen {
        question: comparison.question,
        equals,
        value,
    })
}

/// Parses `question op value` and checks it against the question's answer type.
pub(crate) fn parse_comparison(text: &str, questions: &[Question]) -> Result<Comparison, Problem> {
    let fail = |message: &str| Problem::BadCriterion {
        criterion: text.to_owned(),
        message: message.to_owned(),
    };
    let text_trim = text.trim();
    let (question, rest) = text_trim
        .split_once(char::is_whitespace)
        .ok_or_else(|| fail("write `question operator value`, e.g. `weeks >= 6`"))?;
    let rest = rest.trim_start();
    let (op, value) = [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        (">=", Op::Ge),
        ("<=", Op::Le),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("in ", Op::In),
    ]
    .into_iter()
    .find_map(|(sym, op)| rest.strip_prefix(sym).map(|v| (op, v.trim())))
    .ok_or_else(|| fail("operator must be one of ==, !=, <, <=, >, >=, in"))?;
    let q = questions
        .iter()
        .find(|q| q.id == question)
        .ok_or_else(|| Problem::UnknownQuestion(question.to_owned()))?;

    let literal = if value == "true" || value == "false" {
        Literal::Bool(value == "true")
    } else if let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        let items: Option<Vec<String>> = inner.split(',').map(|s| unquote(s.trim())).collect();
        match items {
            Some(items) if !items.is_empty() => Literal::List(items),
            _ => return Err(fail("a list is [\"a\", \"b\"] with quoted items")),
        }
    } else if let Some(s) = unquote(value) {
        Literal::Text(s)
    } else if let Ok(n) = value.parse::<f64>() {
        if !n.is_finite() {
            return Err(fail("numbers must be finite"));
        }
        Literal::Number(n)
    } else {
        return Err(fail(
            "value must be true, false, a number, \"text\" or [\"a\", \"b\"]",
        ));
    };

    let ok = match (q.answer, op, &literal) {
        (AnswerKind::Bool, Op::Eq | Op::Ne, Literal::Bool(_)) => true,
        (AnswerKind::Number, Op::In, _) => false,
        (AnswerKind::Number, _, Literal::Number(_)) => true,
        (AnswerKind::Text | AnswerKind::Code, Op::Eq | Op::Ne, Literal::Text(_)) => true,
        (AnswerKind::Text | AnswerKind::Code, Op::In, Literal::List(_)) => true,
        _ => false,
    };
    if !ok {
        return Err(fail(&format!(
            "{} is a {} question; `{} {}` does not fit it",
            q.id,
            q.answer,
            op.symbol(),
            literal
        )));
    }
    Ok(Comparison {
        question: question.to_owned(),
        op,
        value: literal,
    })
}

fn unquote(s: &str) -> Option<String> {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .filter(|s| !s.contains('"'))
        .map(str::to_owned)
}

/// Every version of every list a plan administers, with the cross-version checks
/// done. Answers pick the list in force for the plan on the date of service.
#[derive(Debug, Clone, Default)]
pub struct RuleBook {
    lists: Vec<RuleList>,
    /// Every question id and document id some list names, for checking requests.
    question_ids: BTreeSet<String>,
    document_ids: BTreeSet<String>,
}

/// The lists shipped in `data/precert/` (illustrative administrative rules), embedded
/// in the binary.
///
/// # Panics
///
/// Never for a released build: the shipped files are checked by this crate's tests, so
/// a failure here is a packaging bug, not a runtime condition.
pub fn shipped() -> RuleBook {
    RuleBook::from_sources(SHIPPED.iter().copied())
        .unwrap_or_else(|e| panic!("shipped precertification lists are invalid:\n{e}"))
}

impl RuleBook {
    /// Loads lists from `(name, toml text)` pairs, e.g. lists an administrator
    /// uploaded. Every problem in every list is reported.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<RuleBook, LoadErrors> {
        let mut lists = Vec::new();
        let mut errors = Vec::new();
        for (name, text) in sources {
            match RuleList::from_toml(name, text) {
                Ok(list) => lists.push(list),
                Err(LoadErrors(mut e)) => errors.append(&mut e),
            }
        }
        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }
        RuleBook::from_lists(lists)
    }

    /// Loads every `*.toml` file in `dir`, in file-name order. The only function in
    /// this crate that touches the file system.
    pub fn from_dir(dir: &Path) -> Result<RuleBook, LoadErrors> {
        let io_error = |message: String| {
            LoadErrors(vec![LoadError {
                file: dir.display().to_string(),
                rule: None,
                problem: Problem::Syntax(message),
            }])
        };
        let entries = std::fs::read_dir(dir).map_err(|e| io_error(e.to_string()))?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| io_error(e.to_string()))?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| io_error(format!("{}: {e}", path.display())))?;
                let name = path
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                files.push((name, text));
            }
        }
        files.sort();
        RuleBook::from_sources(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
    }

    /// Puts checked lists together, rejecting two versions of one list in force on the
    /// same day, and two different lists that would be equally specific for the same
    /// plan on the same day (the answer would depend on load order).
    ///
    /// A version whose file states no end stays in force until the next version of the
    /// same list takes effect: its `effective_to` becomes the day before. A version that
    /// states an end past the next version's start overlaps it and is rejected.
    pub fn from_lists(mut lists: Vec<RuleList>) -> Result<RuleBook, LoadErrors> {
        let starts: Vec<(String, NaiveDate)> = lists
            .iter()
            .map(|l| (l.id.clone(), l.effective_from))
            .collect();
        for list in &mut lists {
            list.effective_to = list.declared_to.or_else(|| {
                starts
                    .iter()
                    .filter(|(id, from)| *id == list.id && *from > list.effective_from)
                    .map(|(_, from)| *from)
                    .min()
                    .and_then(|next| next.pred_opt())
            });
        }
        let mut errors = Vec::new();
        for (i, a) in lists.iter().enumerate() {
            for b in &lists[..i] {
                let overlap = a.effective_from <= b.effective_to.unwrap_or(NaiveDate::MAX)
                    && b.effective_from <= a.effective_to.unwrap_or(NaiveDate::MAX);
                let problem = if a.id == b.id && a.version == b.version {
                    Problem::DuplicateVersion {
                        id: a.id.clone(),
                        version: a.version.clone(),
                        other_file: b.source.clone(),
                    }
                } else if a.id == b.id && overlap {
                    Problem::OverlappingVersions {
                        id: a.id.clone(),
                        version: a.version.clone(),
                        other_version: b.version.clone(),
                        other_file: b.source.clone(),
                    }
                } else if a.id != b.id
                    && overlap
                    && a.applies_to.specificity() == b.applies_to.specificity()
                    && a.applies_to.intersects(&b.applies_to)
                {
                    Problem::AmbiguousLists {
                        id: a.id.clone(),
                        other_id: b.id.clone(),
                        other_file: b.source.clone(),
                        plans: a.applies_to.to_string(),
                    }
                } else {
                    continue;
                };
                errors.push(LoadError {
                    file: a.source.clone(),
                    rule: None,
                    problem,
                });
            }
        }
        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }
        let question_ids = lists
            .iter()
            .flat_map(|l| l.rules.iter().flat_map(|r| r.questions.iter()))
            .map(|q| q.id.clone())
            .collect();
        let document_ids = lists
            .iter()
            .flat_map(|l| l.documents.keys().cloned())
            .collect();
        Ok(RuleBook {
            lists,
            question_ids,
            document_ids,
        })
    }

    /// The list in force for `plan` on `date`: among lists whose dates and plans
    /// include it, the one with the most specific plan filter.
    pub fn list_for(&self, plan: &Plan, date: NaiveDate) -> Option<&RuleList> {
        self.lists
            .iter()
            .filter(|l| l.in_force_on(date) && l.applies_to.applies_to(plan))
            .max_by_key(|l| l.applies_to.specificity())
    }

    /// Every loaded list version, in load order (for an admin listing).
    pub fn lists(&self) -> &[RuleList] {
        &self.lists
    }

    /// Whether no list is loaded (a server should refuse to start with none).
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Whether any loaded list asks the clinical question `id`.
    pub fn asks(&self, id: &str) -> bool {
        self.question_ids.contains(id)
    }

    /// Whether any loaded list names the document `id` a rule may ask for.
    pub fn names_document(&self, id: &str) -> bool {
        self.document_ids.contains(id)
    }

    /// Every question id any list asks, with its type, so the edge can check answer
    /// types before determination (later versions win on a clash).
    pub fn question_kinds(&self) -> BTreeMap<&str, AnswerKind> {
        let mut out = BTreeMap::new();
        for list in &self.lists {
            for rule in &list.rules {
                for q in &rule.questions {
                    out.insert(q.id.as_str(), q.answer);
                }
            }
        }
        out
    }
}

/// The distinct document ids a set of rules asks for, in first-seen order.
pub(crate) fn union_documents<'a>(rules: impl Iterator<Item = &'a Rule>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for rule in rules {
        for d in &rule.documents {
            if seen.insert(d.as_str()) {
                out.push(d.as_str());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Answer;

    const HEADER: &str = r#"
id = "t"
version = "1"
title = "Test list"
effective_from = 2026-01-01
notice = "Illustrative."
[documents]
notes = "Clinical notes"
"#;

    fn rule(body: &str) -> String {
        format!(
            "{HEADER}\n[[rules]]\nid = \"R-1\"\ntext = \"Why.\"\ncategory = \"advanced_imaging\"\neffect = \"required\"\n{body}\n"
        )
    }

    fn errors(text: &str) -> Vec<String> {
        match RuleList::from_toml("t.toml", text) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn shipped_lists_load() {
        let book = shipped();
        assert_eq!(book.lists().len(), 2);
        assert!(!book.is_empty());
        assert!(
            book.question_kinds()
                .contains_key("conservative_therapy_weeks")
        );
    }

    #[test]
    fn rule_problems_name_file_rule_and_problem() {
        let cases = [
            (
                rule("codes = [\"70553\"]").replace("advanced_imaging", "imaging"),
                "t.toml: rule R-1: unknown category \"imaging\"; expected one of: inpatient_admission,",
            ),
            (
                rule("ranges = [[\"70559\", \"70540\"]]"),
                "t.toml: rule R-1: range 70559-70540 runs backwards (from is after to)",
            ),
            (
                rule("ranges = [[\"70540\", \"J9999\"]]"),
                "t.toml: rule R-1: range 70540-J9999 mixes code kinds",
            ),
            (
                rule("ranges = [[\"0001F\", \"0999T\"]]"),
                "t.toml: rule R-1: range 0001F-0999T mixes code kinds",
            ),
            (
                rule("codes = []"),
                "t.toml: rule R-1: codes is empty; leave it out to match everything",
            ),
            (
                rule("codes = [\"70553\"]\nsettings = []"),
                "t.toml: rule R-1: settings is empty",
            ),
            (
                rule("admission = \"emergency\""),
                "t.toml: rule R-1: rule matches every service",
            ),
            (
                rule(
                    "codes = [\"70553\"]\nquestions = [{ id = \"weeks\", text = \"Weeks\", answer = \"number\" }]\nauto_approve = \"wekes >= 6\"",
                ),
                "t.toml: rule R-1: criteria reference unknown question \"wekes\"",
            ),
            (
                rule(
                    "codes = [\"70553\"]\nquestions = [{ id = \"weeks\", text = \"Weeks\", answer = \"number\" }]\nauto_approve = { all_of = [\"weeks == true\"] }",
                ),
                "t.toml: rule R-1: criterion \"weeks == true\": weeks is a number question",
            ),
            (
                rule(
                    "codes = [\"70553\"]\nquestions = [{ id = \"flag\", text = \"Flag?\", answer = \"bool\" }]\nauto_approve = \"flag ~ true\"",
                ),
                "t.toml: rule R-1: criterion \"flag ~ true\": operator must be one of",
            ),
            (
                rule(
                    "codes = [\"70553\"]\nquestions = [{ id = \"weeks\", text = \"Weeks\", answer = \"number\", enable_when = \"flag == true\" }, { id = \"flag\", text = \"Flag?\", answer = \"bool\" }]",
                ),
                "t.toml: rule R-1: questions.weeks.enable_when: \"flag\" is not a question declared earlier",
            ),
            (
                rule(
                    "codes = [\"70553\"]\nquestions = [{ id = \"weeks\", text = \"Weeks\", answer = \"number\" }, { id = \"more\", text = \"More?\", answer = \"bool\", enable_when = \"weeks >= 6\" }]",
                ),
                "t.toml: rule R-1: questions.more.enable_when: \"weeks >= 6\": only == and !=",
            ),
            (
                rule(
                    "codes = [\"70553\"]\nquestions = [{ id = \"flag\", text = \"Flag?\", answer = \"bool\", options = [\"yes\"] }]",
                ),
                "t.toml: rule R-1: questions.flag.options: only code questions list options",
            ),
            (
                rule(
                    "codes = [\"70553\"]\nquestions = [{ id = \"site\", text = \"Site?\", answer = \"code\", options = [\"home\", \"HOME\"] }]",
                ),
                "t.toml: rule R-1: questions.site.options: \"HOME\" is blank or listed twice",
            ),
            (
                rule("codes = [\"70553\"]\ndocuments = [\"xray\"]"),
                "t.toml: rule R-1: unknown document \"xray\"",
            ),
            (
                rule("codes = [\"7055\"]"),
                "t.toml: rule R-1: codes: \"7055\": service code must be",
            ),
            (
                rule("codes = [\"70553\"]\nsettings = [\"garage\"]"),
                "t.toml: rule R-1: settings: unknown setting \"garage\"",
            ),
            (
                rule("codes = [\"70553\"]\nfavourite = true"),
                "t.toml: rule R-1: unknown field `favourite`",
            ),
            (
                rule("codes = [\"70553\"]\nprogram = \"oncology\"\ngold_card = true"),
                "t.toml: rule R-1: rules handed to a program review the whole plan of care",
            ),
            (
                rule("codes = [\"70553\"]").replace("\"required\"", "\"not_required\"")
                    + "clinical_review = true\n",
                "t.toml: rule R-1: clinical_review only applies to rules whose effect is required",
            ),
            (
                rule("diagnoses = [[\"D49\", \"C00\"]]"),
                "t.toml: rule R-1: range D49-C00 runs backwards",
            ),
            (
                format!(
                    "{}\n[[rules]]\nid = \"R-1\"\ntext = \"Again.\"\ncategory = \"dialysis\"\neffect = \"required\"\ncodes = [\"90935\"]\n",
                    rule("codes = [\"70553\"]")
                ),
                "t.toml: rule R-1: duplicate rule id; the first rule with this id is rules[0]",
            ),
        ];
        for (text, expected) in cases {
            let errs = errors(&text);
            assert!(
                errs.iter().any(|e| e.starts_with(expected)),
                "expected {expected:?}, got {errs:?}"
            );
        }
    }

    #[test]
    fn a_question_may_depend_on_an_earlier_answer() {
        let text = rule(
            r#"codes = ["70553"]
questions = [
  { id = "flag", text = "Flag?", answer = "bool" },
  { id = "weeks", text = "Weeks", answer = "number", enable_when = "flag == false" },
  { id = "site", text = "Site?", answer = "code", options = ["home", "office"] },
  { id = "why", text = "Why?", answer = "text", enable_when = 'site != "home"' },
]"#,
        );
        let list = RuleList::from_toml("t.toml", &text).unwrap();
        let q = &list.rules[0].questions;
        assert_eq!(q[2].options, ["home", "office"]);
        assert_eq!(
            q[1].enable_when.as_ref().unwrap().to_string(),
            "flag == false"
        );
        let answers = |pairs: &[(&str, Answer)]| -> BTreeMap<String, Answer> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect()
        };
        // Unanswered: a dependent question is not asked yet.
        assert!(q[0].asked(&answers(&[])));
        assert!(!q[1].asked(&answers(&[])));
        assert!(!q[1].asked(&answers(&[("flag", Answer::Bool(true))])));
        assert!(q[1].asked(&answers(&[("flag", Answer::Bool(false))])));
        // Ruled out only by an answer given.
        assert!(!q[1].ruled_out(&answers(&[])));
        assert!(q[1].ruled_out(&answers(&[("flag", Answer::Bool(true))])));
        assert!(!q[1].ruled_out(&answers(&[("flag", Answer::Bool(false))])));
        assert!(!q[3].asked(&answers(&[("site", Answer::Code("HOME".into()))])));
        assert!(q[3].asked(&answers(&[("site", Answer::Code("office".into()))])));
    }

    #[test]
    fn criteria_show_as_written_and_read_back_the_same() {
        // Text literals were shown Debug-escaped, so `C:\knee` came back as `C:\\knee`.
        let text = rule(
            r#"codes = ["70553"]
questions = [{ id = "site", text = "Site?", answer = "text" }, { id = "kind", text = "Kind?", answer = "code" }]
auto_approve = { all_of = ['site == "C:\knee"', 'kind in ["a\b", "é"]'] }"#,
        );
        let list = RuleList::from_toml("t.toml", &text).unwrap();
        let rule = &list.rules[0];
        let criterion = rule.auto_approve.as_ref().unwrap();
        assert_eq!(
            criterion.to_string(),
            r#"all_of(site == "C:\knee", kind in ["a\b", "é"])"#
        );
        let Criterion::AllOf(items) = criterion else {
            panic!("{criterion:?}");
        };
        for item in items {
            let Criterion::Compare(c) = item else {
                panic!("{item:?}");
            };
            assert_eq!(
                &parse_comparison(&c.to_string(), &rule.questions).unwrap(),
                c
            );
        }
    }

    #[test]
    fn list_problems_name_the_file() {
        let text = rule("codes = [\"70553\"]").replace(
            "effective_from = 2026-01-01",
            "effective_from = 2026-06-01\neffective_to = 2026-01-31",
        );
        assert_eq!(
            errors(&text),
            ["t.toml: effective_to 2026-01-31 is before effective_from 2026-06-01"]
        );
        let text = rule("codes = [\"70553\"]").replace("applies_to", "x");
        assert!(
            errors(&text.replace("notice =", "applies_to = \"some\"\nnotice ="))[0]
                .starts_with("t.toml: applies_to: \"some\": use \"all\"")
        );
        assert!(errors("id = ")[0].starts_with("t.toml: "));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = rule("ranges = [[\"70559\", \"70540\"]]\nsettings = []\ndocuments = [\"xray\"]");
        assert_eq!(errors(&text).len(), 3, "{:?}", errors(&text));
    }

    fn list(version: &str, from: &str, to: Option<&str>, applies: &str) -> String {
        let dates = match to {
            Some(to) => format!("effective_from = {from}\neffective_to = {to}"),
            None => format!("effective_from = {from}"),
        };
        rule("codes = [\"70553\"]")
            .replace("version = \"1\"", &format!("version = \"{version}\""))
            .replace(
                "effective_from = 2026-01-01",
                &format!("{dates}\napplies_to = {applies}"),
            )
    }

    #[test]
    fn versions_must_not_overlap() {
        let a = list("1", "2026-01-01", Some("2026-12-31"), "\"all\"");
        let b = list("2", "2026-12-01", None, "\"all\"");
        let err =
            RuleBook::from_sources([("a.toml", a.as_str()), ("b.toml", b.as_str())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "b.toml: list t version 2 overlaps version 1 (a.toml) in time"
        );
        let b = list("2", "2027-01-01", None, "\"all\"");
        assert!(RuleBook::from_sources([("a.toml", a.as_str()), ("b.toml", b.as_str())]).is_ok());
        let err =
            RuleBook::from_sources([("a.toml", a.as_str()), ("c.toml", a.as_str())]).unwrap_err();
        assert!(err.to_string().contains("is loaded twice"), "{err}");
    }

    #[test]
    fn an_open_ended_version_ends_when_the_next_takes_effect() {
        let a = list("1", "2026-01-01", None, "\"all\"");
        let b = list("2", "2027-01-01", None, "\"all\"");
        let c = list("3", "2027-06-01", None, "\"all\"");
        let book = RuleBook::from_sources([
            ("c.toml", c.as_str()),
            ("a.toml", a.as_str()),
            ("b.toml", b.as_str()),
        ])
        .unwrap();
        let plan = Plan {
            id: PlanId::parse("PLAN-X").unwrap(),
            name: "X".into(),
            preferred_care_management: true,
            covers_out_of_network: true,
        };
        let on = |d: &str| {
            let day = NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
            book.list_for(&plan, day).unwrap().version.clone()
        };
        assert_eq!(on("2026-12-31"), "1");
        assert_eq!(on("2027-01-01"), "2");
        assert_eq!(on("2027-05-31"), "2");
        assert_eq!(on("2027-06-01"), "3");
        assert_eq!(on("2030-01-01"), "3");
        let ends: Vec<_> = book
            .lists()
            .iter()
            .map(|l| (l.version.as_str(), l.effective_to.map(|d| d.to_string())))
            .collect();
        assert_eq!(
            ends,
            [
                ("3", None),
                ("1", Some("2026-12-31".to_owned())),
                ("2", Some("2027-05-31".to_owned())),
            ]
        );
        // A version inserted between two others closes the earlier one in turn, since
        // ends are worked out from what each file states, not from an earlier book.
        let between = list("1.5", "2026-07-01", None, "\"all\"");
        let lists: Vec<_> = book
            .lists()
            .iter()
            .cloned()
            .chain([RuleList::from_toml("between.toml", &between).unwrap()])
            .collect();
        let book = RuleBook::from_lists(lists).unwrap();
        let first = book.lists().iter().find(|l| l.version == "1").unwrap();
        assert_eq!(first.effective_to.unwrap().to_string(), "2026-06-30");
        // Two versions starting on the same day still overlap.
        let twin = list("2b", "2027-01-01", None, "\"all\"");
        let err = RuleBook::from_sources([("b.toml", b.as_str()), ("twin.toml", twin.as_str())])
            .unwrap_err();
        assert!(err.to_string().contains("overlaps"), "{err}");
    }

    #[test]
    fn the_most_specific_list_is_in_force() {
        let base = list("1", "2026-01-01", None, "\"all\"");
        let narrow = list(
            "1",
            "2026-01-01",
            None,
            "{ preferred_care_management = false }",
        )
        .replace("id = \"t\"", "id = \"non-pcm\"");
        let book = RuleBook::from_sources([
            ("base.toml", base.as_str()),
            ("narrow.toml", narrow.as_str()),
        ])
        .unwrap();
        let plan = |pcm| Plan {
            id: PlanId::parse("PLAN-X").unwrap(),
            name: "X".into(),
            preferred_care_management: pcm,
            covers_out_of_network: true,
        };
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        assert_eq!(book.list_for(&plan(true), day).unwrap().id, "t");
        assert_eq!(book.list_for(&plan(false), day).unwrap().id, "non-pcm");

        let other =
            list("1", "2026-06-01", None, "\"all\"").replace("id = \"t\"", "id = \"other\"");
        let err =
            RuleBook::from_sources([("base.toml", base.as_str()), ("other.toml", other.as_str())])
                .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "other.toml: list other and list t (base.toml) both apply to all plans"
            ),
            "{err}"
        );
    }

    #[test]
    fn loads_from_a_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/precert");
        let book = RuleBook::from_dir(&dir).unwrap();
        assert_eq!(book.lists().len(), 2);
        let err = RuleBook::from_dir(Path::new("/nonexistent/precert")).unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/precert: "),
            "{err}"
        );
    }
}
