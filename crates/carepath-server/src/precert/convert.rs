//! Conversions between the precertification contract and the precert crate's types
//! (here), and between its requests and the use cases' commands ([`requests`]).

mod requests;

pub use requests::*;

use carepath_core::{Icd10Code, Invalid, ServiceCode, Setting};
use carepath_precert::{
    Admission, Answer, ApprovalBasis, CaseState, CheckAnswer, Decision, DecisionMaker, Delivery,
    LineOutcome, PendReason, PrecertCase, RecordRef, Requirement, Responsible, RuleSummary,
    ServiceLine,
};
use carepath_proto::precert::v1 as pb;
use chrono::{DateTime, NaiveDate, Utc};

use crate::convert::{
    json_name, provider_kind_from_proto, provider_kind_to_proto, required, setting_from_proto,
    setting_to_proto, timestamp,
};

/// Every case state with its contract value.
pub const STATES: [(CaseState, pb::CaseStatus); 15] = [
    (CaseState::Received, pb::CaseStatus::Received),
    (CaseState::Approved, pb::CaseStatus::Approved),
    (
        CaseState::PendedInformation,
        pb::CaseStatus::PendedInformation,
    ),
    (CaseState::PendedReview, pb::CaseStatus::PendedReview),
    (CaseState::InReview, pb::CaseStatus::InReview),
    (
        CaseState::PartiallyApproved,
        pb::CaseStatus::PartiallyApproved,
    ),
    (CaseState::Denied, pb::CaseStatus::Denied),
    (
        CaseState::PeerToPeerRequested,
        pb::CaseStatus::PeerToPeerRequested,
    ),
    (
        CaseState::PeerToPeerScheduled,
        pb::CaseStatus::PeerToPeerScheduled,
    ),
    (CaseState::AppealRequested, pb::CaseStatus::AppealRequested),
    (CaseState::AppealUpheld, pb::CaseStatus::AppealUpheld),
    (
        CaseState::AppealOverturned,
        pb::CaseStatus::AppealOverturned,
    ),
    (CaseState::Withdrawn, pb::CaseStatus::Withdrawn),
    (
        CaseState::NotificationReceived,
        pb::CaseStatus::NotificationReceived,
    ),
    (
        CaseState::RetrospectiveReview,
        pb::CaseStatus::RetrospectiveReview,
    ),
];

pub fn state_to_proto(state: CaseState) -> i32 {
    STATES
        .iter()
        .find(|(s, _)| *s == state)
        .map_or(0, |(_, p)| *p as i32)
}

pub fn state_from_proto(value: i32) -> Option<CaseState> {
    let status = pb::CaseStatus::try_from(value).ok()?;
    STATES.iter().find(|(_, p)| *p == status).map(|(s, _)| *s)
}

pub fn date(invalid: &mut Invalid, field: &str, value: &str) -> Option<NaiveDate> {
    required(invalid, field, value, crate::convert::parse_date)
}

pub fn diagnoses(invalid: &mut Invalid, field: &str, values: &[String]) -> Vec<Icd10Code> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, d)| required(invalid, &format!("{field}[{i}]"), d, Icd10Code::parse))
        .collect()
}

pub fn service_line(
    invalid: &mut Invalid,
    field: &str,
    line: Option<pb::ServiceLine>,
) -> Option<ServiceLine> {
    let Some(l) = line else {
        invalid.push(field, "is required");
        return None;
    };
    let code = required(
        invalid,
        &format!("{field}.service_code"),
        &l.service_code,
        ServiceCode::parse,
    );
    let date_of_service = date(
        invalid,
        &format!("{field}.date_of_service"),
        &l.date_of_service,
    );
    let setting = setting_from_proto(l.setting, &format!("{field}.setting"), invalid);
    let facility_kind = match l.facility_kind {
        0 => Some(None),
        k => {
            let kind = provider_kind_from_proto(k);
            if kind.is_none() {
                invalid.push(
                    format!("{field}.facility_kind"),
                    "is not a known PROVIDER_KIND_* value",
                );
            }
            kind.map(Some)
        }
    };
    let delivery = match pb::Delivery::try_from(l.delivery) {
        Ok(pb::Delivery::Unspecified) => Some(None),
        Ok(pb::Delivery::Vaginal) => Some(Some(Delivery::Vaginal)),
        Ok(pb::Delivery::Caesarean) => Some(Some(Delivery::Caesarean)),
        Err(_) => {
            invalid.push(
                format!("{field}.delivery"),
                "is not a known DELIVERY_* value",
            );
            None
        }
    };
    let admission = match pb::Admission::try_from(l.admission) {
        Ok(pb::Admission::Unspecified | pb::Admission::Elective) => Some(Admission::Elective),
        Ok(pb::Admission::Emergency) => Some(Admission::Emergency),
        Ok(pb::Admission::Transfer) => Some(Admission::Transfer),
        Err(_) => {
            invalid.push(
                format!("{field}.admission"),
                "is not a known ADMISSION_* value",
            );
            None
        }
    };
    if setting == Some(Setting::Inpatient) && facility_kind == Some(None) {
        invalid.push(
            format!("{field}.facility_kind"),
            "is required for an inpatient stay (PROVIDER_KIND_ACUTE_HOSPITAL, _SKILLED_NURSING, \
             _REHABILITATION, _LONG_TERM_ACUTE_CARE or _HOSPICE)",
        );
        return None;
    }
    Some(ServiceLine {
        code: code?,
        units: l.units.max(1),
        date_of_service: date_of_service?,
        setting: setting?,
        facility_kind: facility_kind?,
        length_of_stay_hours: (l.length_of_stay_hours > 0).then_some(l.length_of_stay_hours),
        delivery: delivery?,
        admission: admission?,
    })
}

pub fn service_line_to_proto(l: &ServiceLine) -> pb::ServiceLine {
    pb::ServiceLine {
        service_code: l.code.to_string(),
        units: l.units,
        date_of_service: l.date_of_service.format("%Y-%m-%d").to_string(),
        setting: setting_to_proto(l.setting),
        facility_kind: l.facility_kind.map_or(0, provider_kind_to_proto),
        length_of_stay_hours: l.length_of_stay_hours.unwrap_or(0),
        delivery: match l.delivery {
            None => 0,
            Some(Delivery::Vaginal) => pb::Delivery::Vaginal as i32,
            Some(Delivery::Caesarean) => pb::Delivery::Caesarean as i32,
        },
        admission: match l.admission {
            Admission::Emergency => pb::Admission::Emergency as i32,
            Admission::Transfer => pb::Admission::Transfer as i32,
            Admission::Elective => pb::Admission::Elective as i32,
        },
    }
}

/// Answers to the rules' clinical questions, in the order sent, each question once.
pub fn answers(
    invalid: &mut Invalid,
    field: &str,
    values: Vec<pb::ClinicalAnswer>,
) -> Vec<(String, Answer)> {
    let mut out: Vec<(String, Answer)> = Vec::new();
    for (i, a) in values.into_iter().enumerate() {
        let at = format!("{field}[{i}]");
        if a.question_id.trim().is_empty() {
            invalid.push(format!("{at}.question_id"), "is required");
            continue;
        }
        let answer = match a.value {
            Some(pb::clinical_answer::Value::Flag(b)) => Answer::Bool(b),
            Some(pb::clinical_answer::Value::Number(n)) if n.is_finite() => Answer::Number(n),
            Some(pb::clinical_answer::Value::Number(_)) => {
                invalid.push(format!("{at}.number"), "must be a finite number");
                continue;
            }
            Some(pb::clinical_answer::Value::Text(t)) => Answer::Text(t),
            Some(pb::clinical_answer::Value::Code(c)) => Answer::Code(c.trim().to_uppercase()),
            None => {
                invalid.push(
                    format!("{at}.value"),
                    "one of flag, number, text or code is required",
                );
                continue;
            }
        };
        let id = a.question_id.trim();
        if out.iter().any(|(known, _)| known == id) {
            invalid.push(format!("{at}.question_id"), "is answered twice");
        } else {
            out.push((id.to_owned(), answer));
        }
    }
    out
}

pub fn records(
    invalid: &mut Invalid,
    field: &str,
    values: Vec<pb::RecordReference>,
) -> Vec<RecordRef> {
    values
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let ok_id = !r.id.trim().is_empty();
            let ok_doc = !r.document.trim().is_empty();
            if !ok_id {
                invalid.push(format!("{field}[{i}].id"), "is required");
            }
            if !ok_doc {
                invalid.push(format!("{field}[{i}].document"), "is required");
            }
            (ok_id && ok_doc).then(|| RecordRef {
                id: r.id.trim().to_owned(),
                document: r.document.trim().to_owned(),
            })
        })
        .collect()
}

fn citation(rule: &RuleSummary) -> pb::RuleCitation {
    pb::RuleCitation {
        id: rule.id.clone(),
        text: rule.text.clone(),
        category: rule.category.as_str().to_owned(),
        effect: rule.effect.as_str().to_owned(),
    }
}

pub fn requirement_to_proto(r: Requirement) -> i32 {
    (match r {
        Requirement::Required => pb::Requirement::Required,
        Requirement::NotRequired => pb::Requirement::NotRequired,
        Requirement::NotifyOnly => pb::Requirement::NotifyOnly,
        Requirement::NotCovered => pb::Requirement::NotCovered,
    }) as i32
}

pub fn answer_to_proto(a: &CheckAnswer) -> pb::RequirementAnswer {
    pb::RequirementAnswer {
        requirement: requirement_to_proto(a.requirement),
        responsible: (match a.responsible {
            Responsible::Provider => pb::Responsible::Provider,
            Responsible::Member => pb::Responsible::Member,
            Responsible::Nobody => pb::Responsible::Nobody,
        }) as i32,
        rule: a.rule.as_ref().map(citation),
        also_matched: a.also_matched.iter().map(citation).collect(),
        explanation: a.explanation.clone(),
        documents: a
            .documents
            .iter()
            .map(|d| pb::RequiredItem {
                id: d.id.clone(),
                text: d.text.clone(),
            })
            .collect(),
        questions: a
            .questions
            .iter()
            .map(|q| pb::ClinicalQuestion {
                id: q.id.clone(),
                text: q.text.clone(),
                answer_type: q.answer.as_str().to_owned(),
            })
            .collect(),
        program: a.program.map(|p| p.as_str().to_owned()).unwrap_or_default(),
        reviewer_specialty: a.reviewer_specialty.clone().unwrap_or_default(),
        list_id: a.list.id.clone(),
        list_version: a.list.version.clone(),
        list_effective_from: a.list.effective_from.format("%Y-%m-%d").to_string(),
    }
}

fn decision_to_proto(d: &Decision) -> pb::Decision {
    let (by, role, specialty) = match &d.by {
        DecisionMaker::Automation => ("automation".to_owned(), "service".to_owned(), String::new()),
        DecisionMaker::Staff(s) => (
            s.staff_id.to_string(),
            s.role.as_str().to_owned(),
            s.specialty
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
    };
    let adverse = d.adverse.as_ref();
    pb::Decision {
        outcome: json_name(&d.outcome),
        stage: json_name(&d.stage),
        decided_by: by,
        decided_by_role: role,
        decided_by_specialty: specialty,
        decided_at: Some(timestamp(d.at)),
        reason_code: adverse
            .map(|a| a.reason_code.as_str().to_owned())
            .unwrap_or_default(),
        rationale: adverse.map(|a| a.rationale.clone()).unwrap_or_default(),
        guideline: adverse.map(|a| a.guideline.clone()).unwrap_or_default(),
        note: d.note.clone(),
        lines: d
            .lines
            .iter()
            .map(|l| pb::LineDecision {
                line_number: l.line as u32 + 1,
                requested_units: l.requested_units,
                approved_units: l.approved_units,
                requested_days: l.requested_days.unwrap_or(0),
                approved_days: l.approved_days.unwrap_or(0),
            })
            .collect(),
    }
}

fn line_to_proto(case: &PrecertCase, i: usize, line: &ServiceLine) -> pb::CaseLine {
    let det = case.determination.as_ref().and_then(|d| d.lines.get(i));
    let mut out = pb::CaseLine {
        line_number: i as u32 + 1,
        line: Some(service_line_to_proto(line)),
        requirement: det.map_or(0, |d| requirement_to_proto(d.requirement)),
        rule: det.and_then(|d| d.rule.as_ref()).map(citation),
        list_version: det.map(|d| d.list.version.clone()).unwrap_or_default(),
        reviewer_specialty: det
            .and_then(|d| d.reviewer_specialty.as_ref())
            .map(ToString::to_string)
            .unwrap_or_default(),
        ..Default::default()
    };
    match det.map(|d| &d.outcome) {
        Some(LineOutcome::Approved { basis }) => {
            out.outcome = "approved".into();
            let (name, detail) = match basis {
                ApprovalBasis::NotRequired { rule } => {
                    ("not_required", rule.clone().unwrap_or_default())
                }
                ApprovalBasis::CriteriaMet { rule, criteria } => {
                    ("criteria_met", format!("{rule}: {}", criteria.join("; ")))
                }
                ApprovalBasis::GoldCard { exemption, rule } => {
                    ("gold_card", format!("{rule}: exemption {exemption}"))
                }
            };
            out.approval_basis = name.into();
            out.detail = detail;
        }
        Some(LineOutcome::Notified { rule }) => {
            out.outcome = "notified".into();
            out.detail = rule.clone().unwrap_or_default();
        }
        Some(LineOutcome::Pended { reason }) => {
            out.outcome = "pended".into();
            let (name, detail) = match reason {
                PendReason::NeedsInformation { missing } => (
                    "needs_information",
                    missing
                        .questions
                        .iter()
                        .map(|q| q.text.clone())
                        .chain(missing.documents.iter().map(|d| d.text.clone()))
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                PendReason::NeedsClinicalReview { reason, .. } => {
                    ("needs_clinical_review", json_compact(reason))
                }
                PendReason::OncologyReview { rule, .. } => ("oncology_review", rule.clone()),
            };
            out.pend_reason = name.into();
            out.detail = detail;
        }
        None => {}
    }
    out
}

fn json_compact<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

pub fn case_to_proto(case: &PrecertCase, request_id: &str, now: DateTime<Utc>) -> pb::Case {
    let info = case
        .information_request
        .as_ref()
        .filter(|_| case.state == CaseState::PendedInformation);
    pb::Case {
        id: case.id.clone(),
        request_id: request_id.to_owned(),
        member_id: case.request.member_id.to_string(),
        requesting_provider_npi: case.request.requesting_provider.npi.to_string(),
        servicing_provider_npi: case.request.servicing_provider.npi.to_string(),
        status: state_to_proto(case.state),
        urgency: crate::convert::urgency_to_proto(case.request.urgency),
        received_at: Some(timestamp(case.received_at)),
        due_at: Some(timestamp(case.due.at)),
        late: case.is_late(now),
        lines: case
            .request
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| line_to_proto(case, i, l))
            .collect(),
        diagnoses: case
            .request
            .diagnoses
            .iter()
            .map(ToString::to_string)
            .collect(),
        missing: info
            .map(|r| {
                r.missing
                    .questions
                    .iter()
                    .map(|q| pb::RequiredItem {
                        id: q.id.clone(),
                        text: q.text.clone(),
                    })
                    .chain(r.missing.documents.iter().map(|d| pb::RequiredItem {
                        id: d.id.clone(),
                        text: d.text.clone(),
                    }))
                    .collect()
            })
            .unwrap_or_default(),
        information_due_at: info.map(|r| timestamp(r.due_at)),
        claimed_by: case
            .claimed_by
            .as_ref()
            .map(|s| s.staff_id.to_string())
            .unwrap_or_default(),
        decisions: case.decisions.iter().map(decision_to_proto).collect(),
        peer_to_peer_scheduled_for: case
            .peer_to_peer
            .as_ref()
            .and_then(|p| p.scheduled_for)
            .map(timestamp),
        peer_to_peer_physician: case
            .peer_to_peer
            .as_ref()
            .and_then(|p| p.physician.as_ref())
            .map(|s| s.staff_id.to_string())
            .unwrap_or_default(),
        appeal_due_at: case.appeal.as_ref().map(|a| timestamp(a.due_at)),
        appeal_expedited: case
            .appeal
            .as_ref()
            .is_some_and(|a| a.priority == carepath_precert::AppealPriority::Expedited),
        coverage_assertion_ids: case.request.coverage_assertions.clone(),
        history: case
            .history
            .iter()
            .map(|h| pb::HistoryEntry {
                at: Some(timestamp(h.at)),
                actor_subject: h.by.subject.clone(),
                actor_role: h.by.role.as_str().to_owned(),
                action: h.action.as_str().to_owned(),
                from_status: h.from.as_str().to_owned(),
                to_status: h.to.as_str().to_owned(),
                note: h.note.clone(),
            })
            .collect(),
    }
}
