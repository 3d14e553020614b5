//! The rule model: lists, rules, matchers and the small criteria language, as the
//! rest of the crate reads them once a list file has been loaded and checked.
//!
//! Everything here is immutable after loading. Fields are public for reading; lists are
//! only built by the loader ([`crate::RuleList::from_toml`]) or the benchmark
//! generator, so every value seen here has passed validation.

use std::collections::BTreeMap;
use std::fmt;

use carepath_core::{Icd10Code, Plan, PlanId, ProviderKind, ServiceCode, Setting, Specialty};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::index::CodeIndex;

/// Declares a fieldless snake_case enum with its name table, so TOML, JSON and error
/// messages all use the same names.
macro_rules! named {
    ($(#[$doc:meta])* $ty:ident, $what:literal, { $($(#[$vdoc:meta])* $variant:ident => $name:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $ty {
            $($(#[$vdoc])* $variant),+
        }

        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The snake_case name used in list files, JSON and messages.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            /// Parses the snake_case name; the error lists the accepted names.
            pub fn parse(s: &str) -> Result<Self, String> {
                match s.trim() {
                    $($name => Ok($ty::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", $what, " {:?}; expected one of: {}"),
                        other,
                        [$($name),+].join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use named;

named!(
    /// What kind of service a rule is about. Reports, gold-card exemptions and reviewer
    /// routing are all kept per category.
    Category, "category", {
    /// Non-emergency admission to an acute hospital, skilled nursing, rehabilitation,
    /// long-term acute care or hospice facility (the facility kind is a matcher).
    InpatientAdmission => "inpatient_admission",
    /// Moving an inpatient from one facility to another.
    InpatientTransfer => "inpatient_transfer",
    /// Observation stays other than obstetric ones.
    ObservationStay => "observation_stay",
    Experimental => "experimental",
    Cosmetic => "cosmetic",
    Reconstructive => "reconstructive",
    /// Maternity stays beyond the length the plan covers without review.
    MaternityStay => "maternity_stay",
    OutpatientSurgery => "outpatient_surgery",
    /// MRI, CT and PET.
    AdvancedImaging => "advanced_imaging",
    InjectableDrug => "injectable_drug",
    DurableMedicalEquipment => "durable_medical_equipment",
    HomeHealth => "home_health",
    HomeInfusion => "home_infusion",
    Dialysis => "dialysis",
    Prosthetics => "prosthetics",
    SpeechTherapy => "speech_therapy",
    Infertility => "infertility",
    DiagnosticCardiology => "diagnostic_cardiology",
    RadiationTherapy => "radiation_therapy",
    PainManagement => "pain_management",
    /// Oncology drugs and regimens, handed to the oncology pathway review.
    Oncology => "oncology",
    BehavioralHealth => "behavioral_health",
});

named!(
    /// What a matching rule says about precertification.
    ///
    /// Precedence when several rules match one service: `not_required` beats
    /// `notify_only`, which beats `required`. An exemption or a notification rule is
    /// always a deliberate carve-out from a broader requirement (self-injectable drugs
    /// out of all injectables, emergency admissions out of all admissions), so the
    /// narrower statement must win or the carve-out could never take effect.
    Effect, "effect", {
    Required => "required",
    /// An explicit exemption, e.g. routine outpatient behavioral health.
    NotRequired => "not_required",
    /// Not precertified in advance; the plan must be notified afterwards (emergency
    /// admissions).
    NotifyOnly => "notify_only",
});

impl Effect {
    /// Lower wins; see the type's documentation.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            Effect::NotRequired => 0,
            Effect::NotifyOnly => 1,
            Effect::Required => 2,
        }
    }
}

named!(
    /// A clinical program a rule hands its requests to instead of line-by-line review.
    Program, "program", {
    /// Whole treatment plans are reviewed against oncology pathways.
    Oncology => "oncology",
});

named!(
    /// How a delivery was made, which sets the maternity stay covered without review.
    Delivery, "delivery type", {
    Vaginal => "vaginal",
    Caesarean => "caesarean",
});

named!(
    /// How an inpatient stay began. Emergency admissions are notified after the fact;
    /// transfers between facilities have their own rule.
    Admission, "admission", {
    Elective => "elective",
    Emergency => "emergency",
    Transfer => "transfer",
});

impl Default for Admission {
    /// A request made in advance is, by definition, for a planned service.
    fn default() -> Self {
        Admission::Elective
    }
}

named!(
    /// The type of a clinical question's answer, so criteria can be checked against it
    /// at load time and answers at submission time.
    AnswerKind, "answer type", {
    Bool => "bool",
    Number => "number",
    Text => "text",
    /// A code (ICD-10-CM, CPT, HCPCS or a plan code), compared case-insensitively.
    Code => "code",
});

/// Which plans a list or a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanFilter {
    AllPlans,
    /// Plans with (`true`) or without (`false`) Preferred Care Management.
    PreferredCareManagement(bool),
    /// Exactly these plans.
    PlanIds(Vec<PlanId>),
}

impl PlanFilter {
    /// Whether `plan` is covered by this filter.
    pub fn applies_to(&self, plan: &Plan) -> bool {
        match self {
            PlanFilter::AllPlans => true,
            PlanFilter::PreferredCareManagement(pcm) => plan.preferred_care_management == *pcm,
            PlanFilter::PlanIds(ids) => ids.contains(&plan.id),
        }
    }

    /// How narrowly the filter picks plans. When lists with different ids apply to the
    /// same plan on the same day, the most specific one is in force: a list written for
    /// named plans beats one for a plan property, which beats one for every plan.
    pub(crate) fn specificity(&self) -> u8 {
        match self {
            PlanFilter::AllPlans => 0,
            PlanFilter::PreferredCareManagement(_) => 1,
            PlanFilter::PlanIds(_) => 2,
        }
    }

    /// Whether some plan could match both filters (used to reject ambiguous lists).
    pub(crate) fn intersects(&self, other: &PlanFilter) -> bool {
        match (self, other) {
            (PlanFilter::AllPlans, _) | (_, PlanFilter::AllPlans) => true,
            (PlanFilter::PreferredCareManagement(a), PlanFilter::PreferredCareManagement(b)) => {
                a == b
            }
            (PlanFilter::PlanIds(a), PlanFilter::PlanIds(b)) => a.iter().any(|id| b.contains(id)),
            // A named plan may have either property value.
            _ => true,
        }
    }
}

impl fmt::Display for PlanFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanFilter::AllPlans => f.write_str("all plans"),
            PlanFilter::PreferredCareManagement(true) => {
                f.write_str("plans with Preferred Care Management")
            }
            PlanFilter::PreferredCareManagement(false) => {
                f.write_str("plans without Preferred Care Management")
            }
            PlanFilter::PlanIds(ids) => {
                let ids: Vec<&str> = ids.iter().map(PlanId::as_str).collect();
                write!(f, "plans {}", ids.join(", "))
            }
        }
    }
}

/// An inclusive range of service codes of one shape (`70540`–`70559`, `J9000`–`J9999`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRange {
    pub from: ServiceCode,
    pub to: ServiceCode,
}

/// An inclusive, hierarchical ICD-10-CM range (`C00`–`D49`), as
/// [`Icd10Code::in_range`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosisRange {
    pub from: Icd10Code,
    pub to: Icd10Code,
}

impl DiagnosisRange {
    pub fn contains(&self, code: &Icd10Code) -> bool {
        code.in_range(&self.from, &self.to)
    }
}

/// A length-of-stay condition; the rule matches only when the stay's length is known
/// and satisfies it, so a request without a length never slips under an exemption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StayThreshold {
    /// Longer than this many hours (e.g. a vaginal delivery stay over 48 hours).
    OverHours(u32),
    /// This many hours or fewer.
    AtMostHours(u32),
}

impl StayThreshold {
    pub fn matches(self, hours: u32) -> bool {
        match self {
            StayThreshold::OverHours(limit) => hours > limit,
            StayThreshold::AtMostHours(limit) => hours <= limit,
        }
    }
}

/// What a service must look like for a rule to apply. Every condition given must hold;
/// a condition left out does not constrain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Matcher {
    /// Individual codes. With `ranges`, the code matchers; a rule with neither applies
    /// to every code (inpatient admission rules match on setting and facility kind).
    pub codes: Vec<ServiceCode>,
    pub ranges: Vec<CodeRange>,
    pub settings: Vec<Setting>,
    pub facility_kinds: Vec<ProviderKind>,
    /// At least one of the request's diagnoses must fall in one of these ranges.
    pub diagnoses: Vec<DiagnosisRange>,
    pub admission: Option<Admission>,
    pub delivery: Option<Delivery>,
    pub length_of_stay: Option<StayThreshold>,
    /// Matches only when more units than this are requested (e.g. therapy visits
    /// beyond an initial allowance).
    pub units_over: Option<u32>,
    pub plans: Option<PlanFilter>,
}

impl Matcher {
    /// Whether the rule names codes at all; rules that do not are indexed by setting.
    pub fn has_codes(&self) -> bool {
        !self.codes.is_empty() || !self.ranges.is_empty()
    }

    /// The number of non-code conditions, used to rank otherwise equally specific
    /// matches: the rule that says more about the service is the more specific one.
    pub(crate) fn condition_count(&self) -> u32 {
        [
            !self.settings.is_empty(),
            !self.facility_kinds.is_empty(),
            !self.diagnoses.is_empty(),
            self.admission.is_some(),
            self.delivery.is_some(),
            self.length_of_stay.is_some(),
            self.units_over.is_some(),
            self.plans.is_some(),
        ]
        .into_iter()
        .map(u32::from)
        .sum()
    }
}

/// A clinical question a rule's criteria are written over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    /// Stable id answers are keyed by (`conservative_therapy_weeks`).
    pub id: String,
    /// The question as shown to the requester.
    pub text: String,
    pub answer: AnswerKind,
    /// The values a code question takes, when the list names them (offered as
    /// choices; criteria compare against them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Asked only when an earlier question of the rule has this answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_when: Option<EnableWhen>,
}

impl Question {
    /// Whether the question is asked once `answers` are given (a form's
    /// `enableWhen`): always, unless it depends on an earlier answer that does not
    /// hold or is not given yet.
    pub fn asked(&self, answers: &BTreeMap<String, Answer>) -> bool {
        self.enable_when.as_ref().is_none_or(|w| w.holds(answers))
    }

    /// Whether `answers` rule the question out: the earlier answer it depends on is
    /// given and does not hold. A question whose condition is still unanswered is not
    /// ruled out, so a request missing both is asked for both at once.
    pub fn ruled_out(&self, answers: &BTreeMap<String, Answer>) -> bool {
        self.enable_when
            .as_ref()
            .is_some_and(|w| answers.contains_key(&w.question) && !w.holds(answers))
    }
}

/// `question == value` or `question != value`, over an earlier yes/no, text or code
/// question of the same rule: the condition under which a question is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnableWhen {
    /// The earlier question.
    pub question: String,
    /// True for `==`, false for `!=`.
    pub equals: bool,
    pub value: EnableValue,
}

/// The answer an [`EnableWhen`] compares with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnableValue {
    Bool(bool),
    /// Text or a code, compared case-insensitively.
    Text(String),
}

impl EnableWhen {
    /// Whether the condition holds; an unanswered question satisfies no condition.
    pub fn holds(&self, answers: &BTreeMap<String, Answer>) -> bool {
        let same = match (answers.get(&self.question), &self.value) {
            (None, _) => return false,
            (Some(Answer::Bool(a)), EnableValue::Bool(b)) => a == b,
            (Some(Answer::Text(a) | Answer::Code(a)), EnableValue::Text(b)) => {
                a.trim().eq_ignore_ascii_case(b.trim())
            }
            _ => false,
        };
        same == self.equals
    }
}

impl fmt::Display for EnableWhen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.equals { "==" } else { "!=" };
        match &self.value {
            EnableValue::Bool(b) => write!(f, "{} {op} {b}", self.question),
            EnableValue::Text(t) => write!(f, "{} {op} \"{t}\"", self.question),
        }
    }
}

/// A typed answer to a clinical question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Bool(bool),
    Number(f64),
    Text(String),
    Code(String),
}

impl Answer {
    pub fn kind(&self) -> AnswerKind {
        match self {
            Answer::Bool(_) => AnswerKind::Bool,
            Answer::Number(_) => AnswerKind::Number,
            Answer::Text(_) => AnswerKind::Text,
            Answer::Code(_) => AnswerKind::Code,
        }
    }
}

/// A comparison operator in a criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// The answer is one of a list of texts or codes.
    In,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
        }
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Literal {
    Bool(bool),
    Number(f64),
    Text(String),
    List(Vec<String>),
}

impl fmt::Display for Literal {
    /// As a list file writes it. Text goes between plain quotes, unescaped, because
    /// that is how the loader reads it (and it rejects text holding a quote): escaping
    /// would show, and store with every decision, a criterion that reads back as
    /// different text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Number(n) => write!(f, "{n}"),
            Literal::Text(s) => write!(f, "\"{s}\""),
            Literal::List(items) => {
                let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
                write!(f, "[{}]", quoted.join(", "))
            }
        }
    }
}

/// `question op value`, e.g. `conservative_therapy_weeks >= 6`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub question: String,
    pub op: Op,
    pub value: Literal,
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.question, self.op.symbol(), self.value)
    }
}

/// Automatic-approval criteria: comparisons combined with all-of and any-of.
///
/// Deliberately small: no arithmetic, no negation beyond `!=`, no references between
/// questions. Plans write criteria; a language they cannot misread is worth more than
/// expressiveness.
#[derive(Debug, Clone, PartialEq)]
pub enum Criterion {
    Compare(Comparison),
    AllOf(Vec<Criterion>),
    AnyOf(Vec<Criterion>),
}

impl Criterion {
    /// Every question id the criterion reads, in order of first use.
    pub fn questions(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_questions(&mut out);
        out
    }

    fn collect_questions<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Criterion::Compare(c) => {
                if !out.contains(&c.question.as_str()) {
                    out.push(&c.question);
                }
            }
            Criterion::AllOf(items) | Criterion::AnyOf(items) => {
                for item in items {
                    item.collect_questions(out);
                }
            }
        }
    }
}

impl fmt::Display for Criterion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = |f: &mut fmt::Formatter<'_>, name: &str, items: &[Criterion]| {
            write!(f, "{name}(")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{item}")?;
            }
            f.write_str(")")
        };
        match self {
            Criterion::Compare(c) => write!(f, "{c}"),
            Criterion::AllOf(items) => group(f, "all_of", items),
            Criterion::AnyOf(items) => group(f, "any_of", items),
        }
    }
}

impl Serialize for Criterion {
    /// The same shape as the list file: a comparison is its text, a group a table.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Criterion::Compare(c) => s.collect_str(c),
            Criterion::AllOf(items) | Criterion::AnyOf(items) => {
                let key = if matches!(self, Criterion::AllOf(_)) {
                    "all_of"
                } else {
                    "any_of"
                };
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry(key, items)?;
                map.end()
            }
        }
    }
}

/// One line of a precertification list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// Stable id (`IMG-MRI`), quoted in every answer and decision so a rule can be
    /// traced across list versions.
    pub id: String,
    /// Plain-language reason, shown to providers and members.
    pub text: String,
    pub category: Category,
    pub effect: Effect,
    #[serde(rename = "match")]
    pub matcher: Matcher,
    /// When true, a request always goes to a clinical reviewer even if the criteria
    /// are met (automation may still ask for missing information first).
    pub clinical_review: bool,
    pub questions: Vec<Question>,
    /// Met criteria approve at once; `None` means only a reviewer can approve.
    pub auto_approve: Option<Criterion>,
    /// Document ids (defined in the list's `documents` table) to be supplied.
    pub documents: Vec<String>,
    /// The specialty a physician reviewer needs to make an adverse decision.
    pub reviewer_specialty: Option<Specialty>,
    /// Whether a gold-card exemption for this category skips review of this rule.
    pub gold_card: bool,
    pub program: Option<Program>,
}

impl Rule {
    /// The question with this id, if the rule asks it.
    pub fn question(&self, id: &str) -> Option<&Question> {
        self.questions.iter().find(|q| q.id == id)
    }
}

/// The identity of one list version, recorded with every answer and decision so it
/// can be explained later even after the list has been replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRef {
    pub id: String,
    pub version: String,
    pub effective_from: NaiveDate,
    pub effective_to: Option<NaiveDate>,
    /// The file or source name the list was loaded from.
    pub source: String,
}

/// One version of a precertification list, validated and indexed.
#[derive(Debug, Clone)]
pub struct RuleList {
    pub id: String,
    pub version: String,
    pub title: String,
    /// Where the list was loaded from, for error messages and audit.
    pub source: String,
    pub effective_from: NaiveDate,
    /// Last day in force, inclusive; `None` while it is the current version. A version
    /// whose file names no end ends the day before the next version of the same list
    /// takes effect (set by [`crate::RuleBook::from_lists`]).
    pub effective_to: Option<NaiveDate>,
    /// The last day as the file states it, if it states one.
    pub declared_to: Option<NaiveDate>,
    pub applies_to: PlanFilter,
    /// The label shown with every answer (these are administrative rules, not clinical
    /// guidance).
    pub notice: String,
    /// Document id → what to supply.
    pub documents: BTreeMap<String, String>,
    pub rules: Vec<Rule>,
    pub(crate) index: CodeIndex,
}

impl RuleList {
    /// Whether the list is in force on `date`.
    pub fn in_force_on(&self, date: NaiveDate) -> bool {
        self.effective_from <= date && self.effective_to.is_none_or(|to| date <= to)
    }

    /// The list's identity, to store next to an answer.
    pub fn reference(&self) -> ListRef {
        ListRef {
            id: self.id.clone(),
            version: self.version.clone(),
            effective_from: self.effective_from,
            effective_to: self.effective_to,
            source: self.source.clone(),
        }
    }

    /// The rule with this id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// What to supply for a document id, or the id itself if the list does not define
    /// it (the loader rejects that, so only hand-built lists can hit it).
    pub fn document_text<'a>(&'a self, id: &'a str) -> &'a str {
        self.documents.get(id).map_or(id, String::as_str)
    }
}
