//! Automatic determination: approve at once what meets the plan's criteria, and pend
//! the rest for information or review.
//!
//! Automation may approve; it never denies. That is not a policy checked at run time
//! but a property of the types: [`LineOutcome`] and [`CaseOutcome`] have no denied
//! variant, so no code path here can produce one. Every adverse decision is made by a
//! physician reviewer in the case workflow.

use std::collections::{BTreeMap, HashSet};

use carepath_core::{
    Icd10Code, Invalid, MemberId, NetworkStatus, Npi, Plan, ServiceCode, Specialty, Urgency,
};
use serde::{Deserialize, Serialize};

use crate::check::{Check, CheckError, DocumentRequest, Requirement, RuleSummary, ServiceLine};
use crate::goldcard::GoldCards;
use crate::load::RuleBook;
use crate::rules::{Answer, AnswerKind, Comparison, Criterion, ListRef, Literal, Op, Rule};

use crate::limits::{self, MAX_DIAGNOSES, MAX_LINES};

/// A provider as named on a request, with its network status for the member's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderParty {
    pub npi: Npi,
    pub network: NetworkStatus,
}

/// A clinical record attached to a request, by reference (the document itself lives
/// in the document store). `document` is the list's document id it satisfies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRef {
    pub id: String,
    pub document: String,
}

/// A precertification request as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub member_id: MemberId,
    /// The member's plan, as of the request (kept with the case so a later plan change
    /// does not change how it was decided).
    pub plan: Plan,
    /// Who asks; gold-card exemptions belong to this provider.
    pub requesting_provider: ProviderParty,
    /// Who renders the service (a physician or facility); its network status decides
    /// who is responsible and whether the service is covered.
    pub servicing_provider: ProviderParty,
    pub lines: Vec<ServiceLine>,
    pub diagnoses: Vec<Icd10Code>,
    pub urgency: Urgency,
    /// Question id → answer, for every line's questions.
    #[serde(default)]
    pub answers: BTreeMap<String, Answer>,
    #[serde(default)]
    pub records: Vec<RecordRef>,
    /// The coverage assertions (given when the services were ordered) this request
    /// follows, as the requester cites them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coverage_assertions: Vec<String>,
}

/// Why a request could not be determined at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DetermineError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Check(#[from] CheckError),
}

/// A question still to be answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingQuestion {
    pub id: String,
    pub text: String,
    pub answer: AnswerKind,
}

/// Exactly what is missing: the questions and documents, nothing else, so a provider
/// can answer in one go.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Missing {
    pub questions: Vec<MissingQuestion>,
    pub documents: Vec<DocumentRequest>,
}

impl Missing {
    pub fn is_empty(&self) -> bool {
        self.questions.is_empty() && self.documents.is_empty()
    }

    /// A reviewer's request for information is bounded ([`limits`]): how many items,
    /// and each item's id and text.
    pub fn check_limits(&self) -> Result<(), Invalid> {
        let mut invalid = Invalid::new();
        if self.questions.len() + self.documents.len() > limits::MAX_REQUESTED_ITEMS {
            invalid.push(
                "missing",
                format!("must list at most {} items", limits::MAX_REQUESTED_ITEMS),
            );
        }
        let items = self
            .questions
            .iter()
            .map(|q| (&q.id, &q.text))
            .chain(self.documents.iter().map(|d| (&d.id, &d.text)));
        for (i, (id, text)) in items.enumerate() {
            limits::check_text(
                &mut invalid,
                &format!("missing[{i}].id"),
                id,
                limits::MAX_RECORD_REF,
            );
            limits::check_text(
                &mut invalid,
                &format!("missing[{i}].text"),
                text,
                limits::MAX_NOTE,
            );
        }
        invalid.into_result()
    }

    /// Adds what `other` lists and this does not.
    pub fn merge(&mut self, other: &Missing) {
        for q in &other.questions {
            if !self.questions.iter().any(|x| x.id == q.id) {
                self.questions.push(q.clone());
            }
        }
        for d in &other.documents {
            if !self.documents.iter().any(|x| x.id == d.id) {
                self.documents.push(d.clone());
            }
        }
    }
}

/// Why automation approved a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "basis", rename_all = "snake_case")]
pub enum ApprovalBasis {
    /// Precertification is not required (no rule, an exemption or a notify-only rule).
    NotRequired { rule: Option<String> },
    /// The rule's automatic-approval criteria are met; `criteria` lists the
    /// comparisons that held.
    CriteriaMet { rule: String, criteria: Vec<String> },
    /// The requesting provider holds a gold-card exemption for the rule's category.
    GoldCard { exemption: String, rule: String },
}

/// Why a line needs a clinical reviewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ReviewReason {
    /// The rule always goes to a reviewer.
    ReviewAlways { rule: String },
    /// Criteria were answered and not met; `unmet` lists the comparisons that failed.
    CriteriaNotMet { rule: String, unmet: Vec<String> },
    /// The rule has no automatic criteria.
    NoAutomaticCriteria { rule: String },
    /// Out of network on a plan without out-of-network coverage: a benefit question
    /// for a reviewer, never an automatic denial.
    OutOfNetworkNotCovered,
    /// The service was already given: a retrospective request goes to a reviewer,
    /// never through the rules as if it were asked in advance.
    RetrospectiveRequest,
}

/// Why a line is waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "pended_for", rename_all = "snake_case")]
pub enum PendReason {
    NeedsInformation {
        missing: Missing,
    },
    NeedsClinicalReview {
        reason: ReviewReason,
        reviewer_specialty: Option<Specialty>,
    },
    /// Handed to the oncology pathway review, which looks at the whole plan of care.
    OncologyReview {
        rule: String,
        reviewer_specialty: Option<Specialty>,
    },
}

/// A line's outcome. There is deliberately no denied variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LineOutcome {
    Approved {
        basis: ApprovalBasis,
    },
    Pended {
        reason: PendReason,
    },
    /// A service the plan is told of after the fact (an emergency admission): received,
    /// with nothing decided.
    Notified {
        rule: Option<String>,
    },
}

/// One line's determination, with the rule and list version behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineDetermination {
    pub line: usize,
    pub code: ServiceCode,
    pub requirement: Requirement,
    pub rule: Option<RuleSummary>,
    pub list: ListRef,
    /// The specialty an adverse decision on this line needs, if the rule names one.
    pub reviewer_specialty: Option<Specialty>,
    pub outcome: LineOutcome,
}

/// What the case waits for when pended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendedFor {
    /// Something is missing; asked first, since a reviewer would ask for it anyway.
    Information,
    ClinicalReview,
    /// Every pended line is for the oncology program.
    OncologyReview,
}

/// The case's outcome. There is deliberately no denied variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CaseOutcome {
    /// Every line approved.
    Approved,
    /// At least one line pended; `missing` is the union over lines, `reasons` every
    /// line's reason.
    Pended {
        next: PendedFor,
        missing: Missing,
        reasons: Vec<PendReason>,
    },
}

/// The full result of automation for a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Determination {
    pub lines: Vec<LineDetermination>,
    pub outcome: CaseOutcome,
}

impl Determination {
    pub fn is_approved(&self) -> bool {
        self.outcome == CaseOutcome::Approved
    }
}

/// Three-valued truth: a criterion over unanswered questions is unknown, not false.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    True,
    False,
    Unknown,
}

fn compare(c: &Comparison, answer: Option<&Answer>) -> Truth {
    let Some(answer) = answer else {
        return Truth::Unknown;
    };
    let text_eq = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
    let holds = match (answer, c.op, &c.value) {
        (Answer::Bool(a), Op::Eq, Literal::Bool(b)) => a == b,
        (Answer::Bool(a), Op::Ne, Literal::Bool(b)) => a != b,
        (Answer::Number(a), op, Literal::Number(b)) => match op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::In => false,
        },
        (Answer::Text(a) | Answer::Code(a), Op::Eq, Literal::Text(b)) => text_eq(a, b),
        (Answer::Text(a) | Answer::Code(a), Op::Ne, Literal::Text(b)) => !text_eq(a, b),
        (Answer::Text(a) | Answer::Code(a), Op::In, Literal::List(items)) => {
            items.iter().any(|b| text_eq(a, b))
        }
        // Types are checked before evaluation; a mismatch cannot be judged.
        _ => return Truth::Unknown,
    };
    if holds { Truth::True } else { Truth::False }
}

/// Evaluates `c`, recording the comparisons that held and that failed.
fn evaluate(
    c: &Criterion,
    answers: &BTreeMap<String, Answer>,
    held: &mut Vec<String>,
    failed: &mut Vec<String>,
) -> Truth {
    match c {
        Criterion::Compare(cmp) => {
            let t = compare(cmp, answers.get(&cmp.question));
            match t {
                Truth::True => held.push(cmp.to_string()),
                Truth::False => failed.push(cmp.to_string()),
                Truth::Unknown => {}
            }
            t
        }
        Criterion::AllOf(items) => {
            let results: Vec<Truth> = items
                .iter()
                .map(|i| evaluate(i, answers, held, failed))
                .collect();
            if results.contains(&Truth::False) {
                Truth::False
            } else if results.contains(&Truth::Unknown) {
                Truth::Unknown
            } else {
                Truth::True
            }
        }
        Criterion::AnyOf(items) => {
            let results: Vec<Truth> = items
                .iter()
                .map(|i| evaluate(i, answers, held, failed))
                .collect();
            if results.contains(&Truth::True) {
                Truth::True
            } else if results.contains(&Truth::Unknown) {
                Truth::Unknown
            } else {
                Truth::False
            }
        }
    }
}

fn check_answer_types(rule: &Rule, answers: &BTreeMap<String, Answer>, invalid: &mut Invalid) {
    for q in &rule.questions {
        if let Some(a) = answers.get(&q.id) {
            if a.kind() != q.answer {
                let field = format!("answers.{}", q.id);
                if !invalid.violations.iter().any(|v| v.field == field) {
                    invalid.push(field, format!("must be a {} answer", q.answer));
                }
            }
            if let Answer::Number(n) = a
                && !n.is_finite()
            {
                invalid.push(format!("answers.{}", q.id), "must be a finite number");
            }
        }
    }
}

fn validate(submission: &Submission) -> Result<(), Invalid> {
    let mut invalid = Invalid::new();
    if submission.lines.is_empty() {
        invalid.push("lines", "must list at least one service");
    }
    if submission.lines.len() > MAX_LINES {
        invalid.push("lines", format!("must list at most {MAX_LINES} services"));
    }
    for (i, line) in submission.lines.iter().enumerate() {
        limits::check_line(&mut invalid, &format!("lines[{i}]"), line);
    }
    if submission.diagnoses.len() > MAX_DIAGNOSES {
        invalid.push(
            "diagnoses",
            format!("must list at most {MAX_DIAGNOSES} diagnoses"),
        );
    }
    limits::check_information(&mut invalid, &submission.answers, &submission.records);
    for (i, record) in submission.records.iter().enumerate() {
        if record.id.trim().is_empty() {
            invalid.push(format!("records[{i}].id"), "must not be empty");
        }
        if record.document.trim().is_empty() {
            invalid.push(format!("records[{i}].document"), "must not be empty");
        }
    }
    invalid.into_result()
}

/// Determines a request: per line, then for the case.
///
/// `gold_cards` holds the exemptions in force; pass [`GoldCards::default`] for none.
pub fn determine(
    book: &RuleBook,
    submission: &Submission,
    gold_cards: &GoldCards,
) -> Result<Determination, DetermineError> {
    validate(submission)?;
    let checks: Vec<Check<'_>> = submission
        .lines
        .iter()
        .map(|line| {
            book.check(
                &submission.plan,
                submission.servicing_provider.network,
                line,
                &submission.diagnoses,
            )
        })
        .collect::<Result<_, _>>()?;

    let mut invalid = Invalid::new();
    for check in &checks {
        for rule in check.rule.iter().chain(&check.also_matched) {
            check_answer_types(rule, &submission.answers, &mut invalid);
        }
    }
    invalid.into_result()?;

    let attached: HashSet<&str> = submission
        .records
        .iter()
        .map(|r| r.document.as_str())
        .collect();
    let lines: Vec<LineDetermination> = checks
        .iter()
        .enumerate()
        .map(|(i, check)| {
            determine_line(
                i,
                &submission.lines[i],
                check,
                submission,
                &attached,
                gold_cards,
            )
        })
        .collect();
    let outcome = case_outcome(&lines);
    Ok(Determination { lines, outcome })
}

fn determine_line(
    index: usize,
    line: &ServiceLine,
    check: &Check<'_>,
    submission: &Submission,
    attached: &HashSet<&str>,
    gold_cards: &GoldCards,
) -> LineDetermination {
    let rule = check.rule;
    let reviewer_specialty = rule
        .filter(|_| check.requirement != Requirement::NotRequired)
        .and_then(|r| r.reviewer_specialty.clone());
    let outcome = line_outcome(check, submission, attached, gold_cards);
    LineDetermination {
        line: index,
        code: line.code.clone(),
        requirement: check.requirement,
        rule: rule.map(RuleSummary::of),
        list: check.list.reference(),
        reviewer_specialty,
        outcome,
    }
}

fn line_outcome(
    check: &Check<'_>,
    submission: &Submission,
    attached: &HashSet<&str>,
    gold_cards: &GoldCards,
) -> LineOutcome {
    let pend = |reason| LineOutcome::Pended { reason };
    let rule = match (check.requirement, check.rule) {
        (Requirement::NotCovered, _) => {
            return pend(PendReason::NeedsClinicalReview {
                reason: ReviewReason::OutOfNetworkNotCovered,
                reviewer_specialty: None,
            });
        }
        (Requirement::NotifyOnly, rule) => {
            return LineOutcome::Notified {
                rule: rule.map(|r| r.id.clone()),
            };
        }
        // Only a required answer carries a rule to apply; without one there is
        // nothing to precertify.
        (Requirement::NotRequired, rule) | (Requirement::Required, rule @ None) => {
            return LineOutcome::Approved {
                basis: ApprovalBasis::NotRequired {
                    rule: rule.map(|r| r.id.clone()),
                },
            };
        }
        (Requirement::Required, Some(rule)) => rule,
    };
    if rule.program.is_some() {
        return pend(PendReason::OncologyReview {
            rule: rule.id.clone(),
            reviewer_specialty: rule.reviewer_specialty.clone(),
        });
    }
    if let Some(exemption) =
        check.gold_card_exemption(gold_cards, &submission.requesting_provider.npi)
    {
        return LineOutcome::Approved {
            basis: ApprovalBasis::GoldCard {
                exemption: exemption.id.clone(),
                rule: rule.id.clone(),
            },
        };
    }

    let missing = Missing {
        questions: rule
            .questions
            .iter()
            .filter(|q| {
                !submission.answers.contains_key(&q.id) && !q.ruled_out(&submission.answers)
            })
            .map(|q| MissingQuestion {
                id: q.id.clone(),
                text: q.text.clone(),
                answer: q.answer,
            })
            .collect(),
        documents: check
            .documents()
            .into_iter()
            .filter(|d| !attached.contains(d))
            .map(|d| DocumentRequest {
                id: d.to_owned(),
                text: check.list.document_text(d).to_owned(),
            })
            .collect(),
    };
    let review = |reason| {
        pend(PendReason::NeedsClinicalReview {
            reason,
            reviewer_specialty: rule.reviewer_specialty.clone(),
        })
    };
    if rule.clinical_review {
        if !missing.is_empty() {
            return pend(PendReason::NeedsInformation { missing });
        }
        return review(ReviewReason::ReviewAlways {
            rule: rule.id.clone(),
        });
    }
    let Some(criteria) = &rule.auto_approve else {
        if !missing.is_empty() {
            return pend(PendReason::NeedsInformation { missing });
        }
        return review(ReviewReason::NoAutomaticCriteria {
            rule: rule.id.clone(),
        });
    };
    let (mut held, mut failed) = (Vec::new(), Vec::new());
    let truth = evaluate(criteria, &submission.answers, &mut held, &mut failed);
    let mut missing = missing;
    if truth == Truth::False {
        // The answers given already fail the criteria: no further answer could approve
        // the line, so only the documents the reviewer needs are asked for.
        missing.questions.clear();
    }
    if truth == Truth::True && missing.documents.is_empty() {
        return LineOutcome::Approved {
            basis: ApprovalBasis::CriteriaMet {
                rule: rule.id.clone(),
                criteria: held,
            },
        };
    }
    if !missing.is_empty() {
        return pend(PendReason::NeedsInformation { missing });
    }
    review(ReviewReason::CriteriaNotMet {
        rule: rule.id.clone(),
        unmet: failed,
    })
}

/// Approved when every line is; otherwise pended with every reason, waiting first for
/// information if anything is missing.
pub fn case_outcome(lines: &[LineDetermination]) -> CaseOutcome {
    let mut missing = Missing::default();
    let mut reasons = Vec::new();
    let (mut review, mut oncology) = (false, false);
    for line in lines {
        let LineOutcome::Pended { reason } = &line.outcome else {
            continue;
        };
        match reason {
            PendReason::NeedsInformation { missing: m } => missing.merge(m),
            PendReason::NeedsClinicalReview { .. } => review = true,
            PendReason::OncologyReview { .. } => oncology = true,
        }
        if !reasons.contains(reason) {
            reasons.push(reason.clone());
        }
    }
    if reasons.is_empty() {
        return CaseOutcome::Approved;
    }
    let next = if !missing.is_empty() {
        PendedFor::Information
    } else if review || !oncology {
        PendedFor::ClinicalReview
    } else {
        PendedFor::OncologyReview
    };
    CaseOutcome::Pended {
        next,
        missing,
        reasons,
    }
}
