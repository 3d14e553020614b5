//! Automatic referrals: which domain events open (or are absorbed by) a case, and how a
//! referral is read from each.
//!
//! - `oncology.plan.submitted`: every oncology plan gets an early referral to oncology
//!   case management.
//! - `precert.case.approved` with an `inpatient_admission` or `inpatient_transfer`
//!   service, and `precert.case.notification_received` (an emergency admission
//!   notified after the fact): transition planning.
//! - `secondopinion.request.submitted`: decision support (major surgery when the
//!   request says so).
//!
//! One event opens at most one case: storage keys each referral by its event id, and an
//! open case of the same kind for the member absorbs a new referral.

use carepath_core::{DomainEvent, Icd10Code, MemberId};
use serde_json::Value;

use crate::case::Referral;
use crate::model::{CaseKind, DecisionReason, ReferralSource};

/// The event kinds the referral consumer subscribes to.
pub const REFERRAL_EVENT_KINDS: &[&str] = &[
    ONCOLOGY_PLAN_SUBMITTED,
    PRECERT_APPROVED,
    PRECERT_NOTIFICATION_RECEIVED,
    SECOND_OPINION_SUBMITTED,
];
pub const ONCOLOGY_PLAN_SUBMITTED: &str = "oncology.plan.submitted";
pub const PRECERT_APPROVED: &str = "precert.case.approved";
pub const PRECERT_NOTIFICATION_RECEIVED: &str = "precert.case.notification_received";
pub const SECOND_OPINION_SUBMITTED: &str = "secondopinion.request.submitted";

/// Precertification categories that call for transition planning.
pub const TRANSITION_CATEGORIES: &[&str] = &["inpatient_admission", "inpatient_transfer"];

/// A referral read from an event: which member, which kind of case, and, for decision
/// support, the request to add to the case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoReferral {
    pub member_id: MemberId,
    pub kind: CaseKind,
    pub referral: Referral,
    pub decision_support: Option<(DecisionReason, Option<Icd10Code>)>,
}

/// Why an event that should make a referral cannot be read; the consumer retries and
/// finally parks it, so the cause must be clear.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event_id} ({kind}) cannot be read as a referral: {reason}")]
pub struct ReferralError {
    pub event_id: String,
    pub kind: String,
    pub reason: String,
}

fn str_field<'a>(payload: &'a Value, key: &str) -> Option<&'a str> {
    payload
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Reads a referral from `event`; `Ok(None)` when the event needs none (an approved
/// outpatient MRI, an unrelated kind).
pub fn referral_from_event(event: &DomainEvent) -> Result<Option<AutoReferral>, ReferralError> {
    let fail = |reason: &str| ReferralError {
        event_id: event.id.clone(),
        kind: event.kind.clone(),
        reason: reason.to_owned(),
    };
    let p = &event.payload;
    let member_id = match &event.member_id {
        Some(m) => m.clone(),
        None => {
            let raw = str_field(p, "member_id").ok_or_else(|| fail("no member_id"))?;
            MemberId::parse(raw).map_err(|e| fail(&format!("member_id: {e}")))?
        }
    };
    let diagnosis = str_field(p, "diagnosis").map(str::to_owned);
    let base = |source: ReferralSource, source_id: Option<&str>, reason: String| Referral {
        source,
        reason,
        referred_by: event.aggregate_kind.clone(),
        event_id: Some(event.id.clone()),
        source_id: source_id.map(str::to_owned),
        diagnosis: diagnosis.clone(),
        at: event.occurred_at,
    };
    let referral = match event.kind.as_str() {
        ONCOLOGY_PLAN_SUBMITTED => {
            let plan = str_field(p, "plan_id").unwrap_or(&event.aggregate_id);
            let pathway = match p.get("on_pathway").and_then(Value::as_bool) {
                Some(true) => ", on pathway",
                Some(false) => ", off pathway",
                None => "",
            };
            AutoReferral {
                member_id,
                kind: CaseKind::Oncology,
                referral: base(
                    ReferralSource::OncologyPlan,
                    Some(plan),
                    format!(
                        "early referral: oncology treatment plan {plan} submitted ({}{pathway})",
                        diagnosis.as_deref().unwrap_or("diagnosis not given")
                    ),
                ),
                decision_support: None,
            }
        }
        PRECERT_APPROVED | PRECERT_NOTIFICATION_RECEIVED => {
            let services = p
                .get("services")
                .and_then(Value::as_array)
                .ok_or_else(|| fail("no services"))?;
            let categories: Vec<&str> = services
                .iter()
                .filter_map(|s| s.get("category").and_then(Value::as_str))
                .filter(|c| TRANSITION_CATEGORIES.contains(c))
                .collect();
            let Some(category) = categories.first() else {
                return Ok(None);
            };
            let case = str_field(p, "case_id").unwrap_or(&event.aggregate_id);
            let what = if *category == "inpatient_transfer" {
                "transfer between inpatient facilities approved"
            } else if event.kind == PRECERT_NOTIFICATION_RECEIVED {
                "emergency admission notified"
            } else {
                "inpatient admission approved"
            };
            AutoReferral {
                member_id,
                kind: CaseKind::Transitions,
                referral: Referral {
                    diagnosis: p
                        .get("diagnoses")
                        .and_then(Value::as_array)
                        .and_then(|d| d.first())
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    ..base(
                        ReferralSource::InpatientPrecertification,
                        Some(case),
                        format!("transition planning: {what} (precertification {case})"),
                    )
                },
                decision_support: None,
            }
        }
        SECOND_OPINION_SUBMITTED => {
            let request = str_field(p, "request_id").unwrap_or(&event.aggregate_id);
            let major = p
                .get("major_surgery")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let reason = if major {
                DecisionReason::MajorSurgery
            } else {
                DecisionReason::SeriousDiagnosis
            };
            let country = str_field(p, "country")
                .map(|c| format!(", member in {c}"))
                .unwrap_or_default();
            let code = diagnosis.as_deref().and_then(|d| Icd10Code::parse(d).ok());
            AutoReferral {
                member_id,
                kind: CaseKind::DecisionSupport,
                referral: base(
                    ReferralSource::SecondOpinion,
                    Some(request),
                    format!(
                        "second-opinion request {request}{}{country}",
                        if major {
                            ": major surgery recommended"
                        } else {
                            ""
                        }
                    ),
                ),
                decision_support: Some((reason, code)),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(referral))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, member: Option<&str>, payload: Value) -> DomainEvent {
        DomainEvent {
            id: "ev-1".into(),
            kind: kind.into(),
            aggregate_kind: "x".into(),
            aggregate_id: "A-1".into(),
            member_id: member.map(|m| MemberId::parse(m).unwrap()),
            occurred_at: "2026-11-23T14:00:00Z".parse().unwrap(),
            payload,
        }
    }

    #[test]
    fn every_oncology_plan_is_an_oncology_referral() {
        let r = referral_from_event(&event(
            ONCOLOGY_PLAN_SUBMITTED,
            Some("M100001"),
            json!({"plan_id": "OP-1", "diagnosis": "C50.911", "on_pathway": false}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(r.kind, CaseKind::Oncology);
        assert_eq!(r.member_id.as_str(), "M100001");
        assert_eq!(r.referral.source_id.as_deref(), Some("OP-1"));
        assert_eq!(r.referral.event_id.as_deref(), Some("ev-1"));
        assert!(
            r.referral.reason.contains("off pathway"),
            "{}",
            r.referral.reason
        );
    }

    #[test]
    fn only_inpatient_approvals_make_transition_referrals() {
        let inpatient = event(
            PRECERT_APPROVED,
            Some("M100002"),
            json!({"case_id": "PA-1", "services": [{"line": 0, "code": "99223", "category": "inpatient_transfer"}]}),
        );
        let r = referral_from_event(&inpatient).unwrap().unwrap();
        assert_eq!(r.kind, CaseKind::Transitions);
        assert!(r.referral.reason.contains("transfer"));
        let mri = event(
            PRECERT_APPROVED,
            Some("M100002"),
            json!({"case_id": "PA-2", "services": [{"line": 0, "code": "70553", "category": "advanced_imaging"}]}),
        );
        assert_eq!(referral_from_event(&mri).unwrap(), None);
        let broken = event(
            PRECERT_APPROVED,
            Some("M100002"),
            json!({"case_id": "PA-3"}),
        );
        assert!(referral_from_event(&broken).is_err());
    }

    #[test]
    fn an_emergency_admission_notified_makes_a_transition_referral() {
        let notified = event(
            PRECERT_NOTIFICATION_RECEIVED,
            Some("M100002"),
            json!({"case_id": "PA-4", "services": [{"line": 0, "code": "99223", "category": "inpatient_admission"}]}),
        );
        let r = referral_from_event(&notified).unwrap().unwrap();
        assert_eq!(r.kind, CaseKind::Transitions);
        assert!(
            r.referral.reason.contains("emergency admission notified"),
            "{}",
            r.referral.reason
        );
        assert!(REFERRAL_EVENT_KINDS.contains(&PRECERT_NOTIFICATION_RECEIVED));
    }

    #[test]
    fn second_opinions_are_decision_support_with_the_surgery_flag() {
        let r = referral_from_event(&event(
            SECOND_OPINION_SUBMITTED,
            None,
            json!({"request_id": "SO-1", "member_id": "M100015", "diagnosis": "M17.0", "major_surgery": true, "country": "AE"}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(r.kind, CaseKind::DecisionSupport);
        assert_eq!(r.member_id.as_str(), "M100015");
        let (reason, code) = r.decision_support.unwrap();
        assert_eq!(reason, DecisionReason::MajorSurgery);
        assert_eq!(code.unwrap().as_str(), "M17.0");
        assert!(r.referral.reason.contains("AE"));
    }

    #[test]
    fn an_event_without_a_member_cannot_be_read() {
        let err =
            referral_from_event(&event(SECOND_OPINION_SUBMITTED, None, json!({}))).unwrap_err();
        assert!(err.to_string().contains("member_id"), "{err}");
    }
}
