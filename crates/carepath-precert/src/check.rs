//! The requirement check: does this service need precertification for this member,
//! who must ask for it, why, and with what documentation.
//!
//! Pure and allocation-light: the answer borrows the rules it cites, and the lookup
//! goes through the list's index, so a check costs a binary search and a look at the
//! few rules covering the code.

use carepath_core::{Icd10Code, NetworkStatus, Npi, Plan, ProviderKind, ServiceCode, Setting};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::goldcard::{Exemption, GoldCards};
use crate::index::Candidate;
use crate::load::{RuleBook, union_documents};
use crate::rules::{
    Admission, Category, Delivery, Effect, ListRef, Program, Question, Rule, RuleList,
};

/// One service as submitted: what, how much, when, where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLine {
    pub code: ServiceCode,
    pub units: u32,
    pub date_of_service: NaiveDate,
    pub setting: Setting,
    /// The kind of facility the service is delivered in, when it is one.
    #[serde(default)]
    pub facility_kind: Option<ProviderKind>,
    /// Expected length of an inpatient stay, in hours.
    #[serde(default)]
    pub length_of_stay_hours: Option<u32>,
    /// For maternity stays.
    #[serde(default)]
    pub delivery: Option<Delivery>,
    /// How an inpatient stay began; `elective` for anything planned.
    #[serde(default)]
    pub admission: Admission,
}

/// The answer to "is precertification needed?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    Required,
    NotRequired,
    /// Not precertified in advance; the plan must be told after (emergency admissions).
    NotifyOnly,
    /// Out of network on a plan that does not cover out-of-network care: there is
    /// nothing to precertify because the plan will not pay.
    NotCovered,
}

/// Who must ask for precertification (or notify).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Responsible {
    /// In network: the doctor or facility asks.
    Provider,
    /// Out of network on a plan that covers it: the member asks.
    Member,
    /// Nothing to ask for.
    Nobody,
}

/// Why a check could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// No list covers this plan on the date of service (a gap in the loaded versions);
    /// the edge reports it as FAILED_PRECONDITION since it is a data problem, not a
    /// caller's mistake.
    #[error("no precertification list is in force for plan {plan} on {date}")]
    NoListInForce { plan: String, date: NaiveDate },
}

/// The answer, borrowing the list and rules it cites. Use [`Check::to_answer`] for an
/// owned, serializable copy.
#[derive(Debug, Clone)]
pub struct Check<'a> {
    pub requirement: Requirement,
    pub responsible: Responsible,
    /// The list version in force for the plan on the date of service.
    pub list: &'a RuleList,
    /// The rule that decided the answer; `None` when no rule matched (not required).
    pub rule: Option<&'a Rule>,
    /// Other rules that matched, in precedence order, for the explanation.
    pub also_matched: Vec<&'a Rule>,
    pub network: NetworkStatus,
    /// Whether an out-of-network emergency on a plan without out-of-network coverage
    /// was let through (emergency care is covered regardless of network).
    pub emergency_exception: bool,
}

impl<'a> Check<'a> {
    /// The program the request is handed to, if any.
    pub fn program(&self) -> Option<Program> {
        match self.requirement {
            Requirement::Required => self.rule.and_then(|r| r.program),
            _ => None,
        }
    }

    /// Document ids to supply: those of every matched rule with the deciding effect, so
    /// an admission for a listed surgery asks for both rules' documents.
    pub fn documents(&self) -> Vec<&'a str> {
        let Some(rule) = self.rule else {
            return Vec::new();
        };
        if self.requirement == Requirement::NotCovered {
            return Vec::new();
        }
        union_documents(
            std::iter::once(rule).chain(
                self.also_matched
                    .iter()
                    .copied()
                    .filter(|r| r.effect == rule.effect),
            ),
        )
    }

    /// The clinical questions to answer with the request: the deciding rule's, when
    /// precertification is required and the plan decides it here (not when the request
    /// goes to a program such as the oncology review).
    pub fn questions(&self) -> &'a [Question] {
        match self.rule {
            Some(rule) if self.requirement == Requirement::Required && rule.program.is_none() => {
                &rule.questions
            }
            _ => &[],
        }
    }

    /// The gold-card exemption of `npi` that lets a request for this service be
    /// approved without review: when precertification is required here, the deciding
    /// rule admits gold cards, and `npi` holds one for the rule's category.
    pub fn gold_card_exemption<'g>(
        &self,
        gold_cards: &'g GoldCards,
        npi: &Npi,
    ) -> Option<&'g Exemption> {
        match self.rule {
            Some(rule)
                if self.requirement == Requirement::Required
                    && rule.program.is_none()
                    && rule.gold_card =>
            {
                gold_cards.exemption_for(npi, rule.category)
            }
            _ => None,
        }
    }

    /// A plain-language explanation: the rule, the list version, the precedence
    /// applied and who must ask.
    pub fn explanation(&self) -> String {
        let list = self.list;
        let in_force = format!(
            "list {} version {} (in force from {})",
            list.id, list.version, list.effective_from
        );
        let mut text = match self.rule {
            None => format!("No rule on {in_force} covers this service."),
            Some(rule) => format!(
                "Rule {} ({}) on {in_force}: {}",
                rule.id, rule.category, rule.text
            ),
        };
        if let Some(rule) = self.rule {
            let overridden: Vec<&str> = self
                .also_matched
                .iter()
                .filter(|r| r.effect.precedence() > rule.effect.precedence())
                .map(|r| r.id.as_str())
                .collect();
            if !overridden.is_empty() {
                text.push_str(&format!(
                    " This {} takes precedence over {}: explicit exemptions and notification rules are carve-outs from broader requirements.",
                    match rule.effect {
                        Effect::NotRequired => "exemption",
                        Effect::NotifyOnly => "notification rule",
                        Effect::Required => "rule",
                    },
                    overridden.join(", ")
                ));
            }
        }
        text.push(' ');
        text.push_str(match (self.requirement, self.responsible) {
            (Requirement::NotCovered, _) => {
                "The provider is out of network and the plan does not cover out-of-network care, so the service is not covered."
            }
            (Requirement::NotRequired, _) => "No precertification is needed.",
            (Requirement::NotifyOnly, Responsible::Member) => {
                "No precertification in advance; the member must notify the plan after admission."
            }
            (Requirement::NotifyOnly, _) => {
                "No precertification in advance; the provider must notify the plan after admission."
            }
            (Requirement::Required, Responsible::Member) => {
                "Precertification is required; the provider is out of network, so the member must ask for it."
            }
            (Requirement::Required, _) => {
                "Precertification is required; the in-network provider must ask for it."
            }
        });
        if self.emergency_exception {
            text.push_str(
                " Emergency care is covered out of network even on plans without out-of-network coverage.",
            );
        }
        if self.program() == Some(Program::Oncology) {
            text.push_str(" The request is handed to the oncology pathway review.");
        }
        text
    }

    /// An owned copy for the wire or for storage.
    pub fn to_answer(&self) -> CheckAnswer {
        CheckAnswer {
            requirement: self.requirement,
            responsible: self.responsible,
            rule: self.rule.map(RuleSummary::of),
            also_matched: self
                .also_matched
                .iter()
                .map(|r| RuleSummary::of(r))
                .collect(),
            explanation: self.explanation(),
            documents: self
                .documents()
                .into_iter()
                .map(|id| DocumentRequest {
                    id: id.to_owned(),
                    text: self.list.document_text(id).to_owned(),
                })
                .collect(),
            questions: self.questions().to_vec(),
            program: self.program(),
            reviewer_specialty: self
                .rule
                .filter(|_| self.requirement == Requirement::Required)
                .and_then(|r| r.reviewer_specialty.as_ref())
                .map(|s| s.as_str().to_owned()),
            list: self.list.reference(),
            notice: self.list.notice.clone(),
        }
    }
}

/// A rule as cited in an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSummary {
    pub id: String,
    pub text: String,
    pub category: Category,
    pub effect: Effect,
}

impl RuleSummary {
    pub fn of(rule: &Rule) -> Self {
        Self {
            id: rule.id.clone(),
            text: rule.text.clone(),
            category: rule.category,
            effect: rule.effect,
        }
    }
}

/// A document to supply: its id (matched against attached records) and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentRequest {
    pub id: String,
    pub text: String,
}

/// The owned form of [`Check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckAnswer {
    pub requirement: Requirement,
    pub responsible: Responsible,
    pub rule: Option<RuleSummary>,
    pub also_matched: Vec<RuleSummary>,
    pub explanation: String,
    pub documents: Vec<DocumentRequest>,
    /// The clinical questions the deciding rule's criteria are written over: answer
    /// them with the request and it can be approved at once.
    #[serde(default)]
    pub questions: Vec<Question>,
    pub program: Option<Program>,
    pub reviewer_specialty: Option<String>,
    pub list: ListRef,
    /// The list's label (illustrative administrative rules, not clinical guidance).
    pub notice: String,
}

fn matches(rule: &Rule, plan: &Plan, line: &ServiceLine, diagnoses: &[Icd10Code]) -> bool {
    let m = &rule.matcher;
    if !m.settings.is_empty() && !m.settings.contains(&line.setting) {
        return false;
    }
    if !m.facility_kinds.is_empty()
        && !line
            .facility_kind
            .is_some_and(|k| m.facility_kinds.contains(&k))
    {
        return false;
    }
    if m.admission.is_some_and(|a| a != line.admission) {
        return false;
    }
    if m.delivery.is_some() && m.delivery != line.delivery {
        return false;
    }
    if let Some(threshold) = m.length_of_stay
        && !line
            .length_of_stay_hours
            .is_some_and(|h| threshold.matches(h))
    {
        return false;
    }
    if m.units_over.is_some_and(|limit| line.units <= limit) {
        return false;
    }
    if let Some(plans) = &m.plans
        && !plans.applies_to(plan)
    {
        return false;
    }
    if !m.diagnoses.is_empty()
        && !diagnoses
            .iter()
            .any(|d| m.diagnoses.iter().any(|r| r.contains(d)))
    {
        return false;
    }
    true
}

/// Precedence key: effect first, then the narrowest code match, then the rule that
/// states more conditions, then file order. Lower wins.
type Rank = (u8, u32, u32, u32);

fn rank(rule: &Rule, candidate: Candidate) -> Rank {
    (
        rule.effect.precedence(),
        candidate.width,
        u32::MAX - rule.matcher.condition_count(),
        candidate.rule,
    )
}

impl RuleBook {
    /// Checks one service line for a member of `plan` whose rendering provider has
    /// `network` status for that plan.
    pub fn check<'a>(
        &'a self,
        plan: &Plan,
        network: NetworkStatus,
        line: &ServiceLine,
        diagnoses: &[Icd10Code],
    ) -> Result<Check<'a>, CheckError> {
        let list =
            self.list_for(plan, line.date_of_service)
                .ok_or_else(|| CheckError::NoListInForce {
                    plan: plan.id.to_string(),
                    date: line.date_of_service,
                })?;
        Ok(check_list(list, plan, network, line, diagnoses))
    }

    /// Checks many lines for the same member and provider, in order.
    pub fn check_many<'a>(
        &'a self,
        plan: &Plan,
        network: NetworkStatus,
        lines: &[ServiceLine],
        diagnoses: &[Icd10Code],
    ) -> Vec<Result<Check<'a>, CheckError>> {
        lines
            .iter()
            .map(|line| self.check(plan, network, line, diagnoses))
            .collect()
    }
}

/// Checks against one given list (the book picks the list; tests and benchmarks may
/// call this directly).
pub fn check_list<'a>(
    list: &'a RuleList,
    plan: &Plan,
    network: NetworkStatus,
    line: &ServiceLine,
    diagnoses: &[Icd10Code],
) -> Check<'a> {
    let mut best: Option<(Rank, &'a Rule)> = None;
    let mut matched: Vec<(Rank, &'a Rule)> = Vec::new();
    let by_code = list.index.by_code(&line.code);
    let by_setting = list.index.by_setting(line.setting);
    for &candidate in by_code.iter().chain(by_setting) {
        let rule = &list.rules[candidate.rule as usize];
        if !matches(rule, plan, line, diagnoses) {
            continue;
        }
        let key = rank(rule, candidate);
        match best {
            Some((best_key, _)) if best_key <= key => matched.push((key, rule)),
            Some(previous) => {
                matched.push(previous);
                best = Some((key, rule));
            }
            None => best = Some((key, rule)),
        }
    }
    if matched.len() > 1 {
        matched.sort_by_key(|(key, _)| *key);
    }
    let rule = best.map(|(_, r)| r);
    let effect = rule.map(|r| r.effect);
    let emergency = line.admission == Admission::Emergency;
    let out_of_network = network == NetworkStatus::OutOfNetwork;
    let uncovered = out_of_network && !plan.covers_out_of_network;
    let (requirement, responsible, emergency_exception) = match effect {
        _ if uncovered && !emergency => (Requirement::NotCovered, Responsible::Nobody, false),
        None | Some(Effect::NotRequired) => (Requirement::NotRequired, Responsible::Nobody, false),
        Some(Effect::NotifyOnly) => (
            Requirement::NotifyOnly,
            if out_of_network {
                Responsible::Member
            } else {
                Responsible::Provider
            },
            uncovered,
        ),
        Some(Effect::Required) => (
            Requirement::Required,
            if out_of_network {
                Responsible::Member
            } else {
                Responsible::Provider
            },
            uncovered,
        ),
    };
    Check {
        requirement,
        responsible,
        list,
        rule,
        also_matched: matched.into_iter().map(|(_, r)| r).collect(),
        network,
        emergency_exception,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{synthetic_codes, synthetic_list};
    use carepath_core::PlanId;
    use proptest::prelude::*;

    fn plan() -> Plan {
        Plan {
            id: PlanId::parse("PLAN-PCM-OAP").unwrap(),
            name: "Test".into(),
            preferred_care_management: true,
            covers_out_of_network: true,
        }
    }

    fn line(code: ServiceCode, setting: Setting) -> ServiceLine {
        ServiceLine {
            code,
            units: 1,
            date_of_service: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
            setting,
            facility_kind: None,
            length_of_stay_hours: None,
            delivery: None,
            admission: Admission::Elective,
        }
    }

    /// The answer a full scan of the rules gives, to check the index against.
    fn scan<'a>(list: &'a RuleList, line: &ServiceLine) -> (Option<&'a str>, usize) {
        let mut found: Vec<(Rank, &Rule)> = Vec::new();
        for (i, rule) in list.rules.iter().enumerate() {
            let m = &rule.matcher;
            let width = if m.has_codes() {
                let exact = m.codes.contains(&line.code).then_some(1);
                let ranged = m
                    .ranges
                    .iter()
                    .filter(|r| line.code.in_range(&r.from, &r.to))
                    .map(|r| crate::index::code_key(&r.to) - crate::index::code_key(&r.from) + 1)
                    .min();
                match exact.into_iter().chain(ranged).min() {
                    Some(w) => w,
                    None => continue,
                }
            } else {
                crate::index::ANY_CODE_WIDTH
            };
            if !matches(rule, &plan(), line, &[]) {
                continue;
            }
            let candidate = Candidate {
                rule: i as u32,
                width,
            };
            found.push((rank(rule, candidate), rule));
        }
        found.sort_by_key(|(k, _)| *k);
        (found.first().map(|(_, r)| r.id.as_str()), found.len())
    }

    #[test]
    fn index_agrees_with_a_full_scan_on_the_shipped_lists() {
        let book = crate::load::shipped();
        for list in book.lists() {
            for code in synthetic_codes(3_000) {
                for setting in Setting::ALL {
                    let l = line(code.clone(), *setting);
                    let check = check_list(list, &plan(), NetworkStatus::InNetwork, &l, &[]);
                    let (rule, count) = scan(list, &l);
                    assert_eq!(check.rule.map(|r| r.id.as_str()), rule, "{code} {setting}");
                    assert_eq!(
                        check.also_matched.len() + usize::from(rule.is_some()),
                        count
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn index_agrees_with_a_full_scan(size in 1usize..400, pick in 0usize..1000, setting in 0usize..4) {
            let list = synthetic_list(size);
            prop_assert!(list.index.intervals() >= 1);
            // Probe the boundaries of a rule's matchers and a random code.
            let rule = &list.rules[pick % size];
            let mut probes: Vec<ServiceCode> = rule.matcher.codes.clone();
            for r in &rule.matcher.ranges {
                probes.push(r.from.clone());
                probes.push(r.to.clone());
            }
            probes.extend(synthetic_codes(pick % 7 + 1));
            for code in probes {
                let l = line(code.clone(), Setting::ALL[setting]);
                let check = check_list(&list, &plan(), NetworkStatus::InNetwork, &l, &[]);
                let (expected, count) = scan(&list, &l);
                prop_assert_eq!(check.rule.map(|r| r.id.as_str()), expected, "{}", code);
                prop_assert_eq!(check.also_matched.len() + usize::from(expected.is_some()), count);
            }
        }
    }
}
