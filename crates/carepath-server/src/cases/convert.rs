//! Conversions between `carepath.cases.v1` messages and the case-management use
//! cases: each request becomes a command of domain types (every bad field collected
//! under the field path the caller sent), each answer a message.
//!
//! Every proto enum lists the domain values in the domain's declaration order after
//! its `_UNSPECIFIED` zero, so value `n` is `ALL[n - 1]`; a test holds the two in step
//! by name.

use carepath_app::{
    PageRequest,
    cases::{
        AddGoal, AddTask, ArrangeService, AssessCareAbroad, AssignCase, CloseCase, DeclineCase,
        FindSpecialists, ListCases, MoveCase, OpenCase, RateCase, RecordConsent, RecordInteraction,
        RecordTransition, RequestDecisionSupport, SatisfactionPeriod, UpdateGoal, UpdateService,
        UpdateTask,
    },
    pipeline::record_id,
};
use carepath_cases::{
    self as cases, CareAbroad, CareSetting, CaseKind, DecisionReason, GoalStatus,
    InteractionChannel, NewDecisionSupport, NewGoal, NewService, Outcome, Phase, Priority,
    ServiceKind, ServiceState, TaskChange, TaskStatus,
};
use carepath_core::{CountryCode, Icd10Code, Invalid, MemberId, Npi, Specialty, StaffId};
use carepath_proto::cases::v1 as pb;
use chrono::NaiveDate;

mod answers;

pub use self::answers::*;
use crate::{
    convert::{instant, optional, required},
    error::ApiResult,
};

/// The domain value of proto enum value `v`, if it names one.
pub fn from_proto<T: Copy>(all: &[T], v: i32) -> Option<T> {
    usize::try_from(v)
        .ok()
        .filter(|i| *i >= 1)
        .and_then(|i| all.get(i - 1).copied())
}

pub fn to_proto<T: PartialEq + Copy>(all: &[T], x: T) -> i32 {
    all.iter().position(|a| *a == x).map_or(0, |i| i as i32 + 1)
}

/// A required enum field: records a violation naming the field when unset or unknown.
pub fn required_enum<T: Copy>(
    invalid: &mut Invalid,
    field: &str,
    all: &[T],
    v: i32,
    prefix: &str,
) -> Option<T> {
    let found = from_proto(all, v);
    if found.is_none() {
        invalid.push(field, format!("is required: one of the {prefix}_* values"));
    }
    found
}

/// An optional enum field: unset is `None`, an unknown value is a violation.
pub fn optional_enum<T: Copy>(
    invalid: &mut Invalid,
    field: &str,
    all: &[T],
    v: i32,
    prefix: &str,
) -> Option<T> {
    if v == 0 {
        return None;
    }
    let found = from_proto(all, v);
    if found.is_none() {
        invalid.push(field, format!("must be one of the {prefix}_* values"));
    }
    found
}

/// An ISO 8601 date.
pub fn date(invalid: &mut Invalid, field: &str, value: &str, required: bool) -> Option<NaiveDate> {
    let v = value.trim();
    if v.is_empty() {
        if required {
            invalid.push(field, "is required (ISO 8601 date, e.g. 2026-12-01)");
        }
        return None;
    }
    match NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            invalid.push(field, "must be an ISO 8601 date, e.g. 2026-12-01");
            None
        }
    }
}

/// A case id the request must carry: recorded with the request's other field
/// problems; the id as it is kept (trimmed).
fn case_id(invalid: &mut Invalid, id: &str) -> String {
    let id = id.trim();
    if id.is_empty() {
        invalid.push("case_id", "is required");
    }
    id.to_owned()
}

/// An id of an item of the case (goal, task, service) the request must carry.
fn item_id(invalid: &mut Invalid, field: &str, id: &str) -> String {
    let id = id.trim();
    if id.is_empty() {
        invalid.push(field, "is required");
    }
    id.to_owned()
}

fn text_opt(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

fn page_request(page: Option<carepath_proto::common::v1::PageRequest>) -> PageRequest {
    let page = page.unwrap_or_default();
    PageRequest {
        token: page.page_token,
        size: page.page_size,
    }
}

pub fn get_case(req: pb::GetCaseRequest) -> ApiResult<String> {
    record_id(&req.case_id, "case_id")
}

/// The case id as sent: the use case checks it after the caller's standing as a nurse.
pub fn claim_case(req: pb::ClaimCaseRequest) -> ApiResult<String> {
    Ok(req.case_id)
}

pub fn open_case(req: pb::OpenCaseRequest) -> ApiResult<OpenCase> {
    let mut invalid = Invalid::new();
    let member_id = required(&mut invalid, "member_id", &req.member_id, MemberId::parse);
    let kind = required_enum(&mut invalid, "kind", CaseKind::ALL, req.kind, "CASE_KIND");
    let diagnosis = optional(&mut invalid, "diagnosis", &req.diagnosis, Icd10Code::parse);
    let reason = req.reason.trim().to_owned();
    if reason.is_empty() {
        invalid.push("reason", "is required");
    } else if reason.chars().count() > cases::MAX_TEXT {
        let limit = cases::MAX_TEXT;
        invalid.push("reason", format!("must be at most {limit} characters"));
    }
    invalid.into_result()?;
    Ok(OpenCase {
        member_id: member_id.expect("checked"),
        kind: kind.expect("checked"),
        diagnosis: diagnosis.flatten(),
        reason,
    })
}

pub fn list_cases(req: pb::ListCasesRequest) -> ApiResult<ListCases> {
    let mut invalid = Invalid::new();
    let member_id = optional(&mut invalid, "member_id", &req.member_id, MemberId::parse).flatten();
    let nurse_id = optional(&mut invalid, "nurse_id", &req.nurse_id, StaffId::parse).flatten();
    let kind = optional_enum(&mut invalid, "kind", CaseKind::ALL, req.kind, "CASE_KIND");
    let phase = optional_enum(&mut invalid, "phase", Phase::ALL, req.phase, "PHASE");
    invalid.into_result()?;
    Ok(ListCases {
        member_id,
        nurse_id,
        kind,
        phase,
        unassigned_only: req.unassigned_only,
        open_only: req.open_only,
        page: page_request(req.page),
    })
}

pub fn assign_case(req: pb::AssignCaseRequest) -> ApiResult<AssignCase> {
    let mut invalid = Invalid::new();
    let nurse_id = optional(&mut invalid, "nurse_id", &req.nurse_id, StaffId::parse).flatten();
    invalid.into_result()?;
    Ok(AssignCase {
        case_id: record_id(&req.case_id, "case_id")?,
        nurse_id,
        reason: req.reason,
    })
}

pub fn move_case(req: pb::MoveCaseRequest) -> ApiResult<MoveCase> {
    let mut invalid = Invalid::new();
    let case_id = case_id(&mut invalid, &req.case_id);
    let phase = required_enum(&mut invalid, "phase", Phase::ALL, req.phase, "PHASE");
    invalid.into_result()?;
    let (phase, note) = (phase.expect("checked"), req.note);
    Ok(MoveCase {
        case_id,
        phase,
        note,
    })
}

pub fn close_case(req: pb::CloseCaseRequest) -> ApiResult<CloseCase> {
    let mut invalid = Invalid::new();
    let case_id = case_id(&mut invalid, &req.case_id);
    let outcome = required_enum(
        &mut invalid,
        "outcome",
        Outcome::ALL,
        req.outcome,
        "OUTCOME",
    );
    invalid.into_result()?;
    let (outcome, note) = (outcome.expect("checked"), req.note);
    Ok(CloseCase {
        case_id,
        outcome,
        note,
    })
}

pub fn decline_case(req: pb::DeclineCaseRequest) -> ApiResult<DeclineCase> {
    let case_id = record_id(&req.case_id, "case_id")?;
    Ok(DeclineCase {
        case_id,
        note: req.note,
    })
}

pub fn add_goal(req: pb::AddGoalRequest) -> ApiResult<AddGoal> {
    let mut invalid = Invalid::new();
    let case_id = case_id(&mut invalid, &req.case_id);
    let target = date(&mut invalid, "target_date", &req.target_date, true);
    invalid.into_result()?;
    let goal = NewGoal {
        description: req.description,
        target_date: target.expect("checked"),
    };
    Ok(AddGoal { case_id, goal })
}

pub fn update_goal(req: pb::UpdateGoalRequest) -> ApiResult<UpdateGoal> {
    let mut invalid = Invalid::new();
    let case_id = case_id(&mut invalid, &req.case_id);
    let status = required_enum(
        &mut invalid,
        "status",
        GoalStatus::ALL,
        req.status,
        "GOAL_STATUS",
    );
    let goal_id = item_id(&mut invalid, "goal_id", &req.goal_id);
    invalid.into_result()?;
    let status = status.expect("checked");
    Ok(UpdateGoal {
        case_id,
        goal_id,
        status,
    })
}

pub fn add_task(req: pb::AddTaskRequest) -> ApiResult<AddTask> {
    let mut invalid = Invalid::new();
    let case_id = case_id(&mut invalid, &req.case_id);
    let due = date(&mut invalid, "due_date", &req.due_date, true);
    let priority = optional_enum(
        &mut invalid,
        "priority",
        Priority::ALL,
        req.priority,
        "PRIORITY",
    );
    invalid.into_result()?;
    Ok(AddTask {
        case_id,
        title: req.title,
        owner: text_opt(&req.owner),
        due_on: due.expect("checked"),
        priority,
        goal_id: text_opt(&req.goal_id),
    })
}

pub fn update_task(req: pb::UpdateTaskRequest) -> ApiResult<UpdateTask> {
    let mut invalid = Invalid::new();
    let case_id = case_id(&mut invalid, &req.case_id);
    let status = optional_enum(
        &mut invalid,
        "status",
        TaskStatus::ALL,
        req.status,
        "TASK_STATUS",
    );
    let priority = optional_enum(
        &mut invalid,
        "priority",
        Priority::ALL,
        req.priority,
        "PRIORITY",
    );
    let due_on = date(&mut invalid, "due_date", &req.due_date, false);
    let task_id = item_id(&mut invalid, "task_id", &req.task_id);
    invalid.into_result()?;
    let owner = text_opt(&req.owner);
    let change = TaskChange {
        status,
        owner,
        due_on,
        priority,
    };
    Ok(UpdateTask {
        case_id,
        task_id,
        change,
    })
}

pub fn record_interaction(req: pb::RecordInteractionRequest) -> ApiResult<RecordInteraction> {
    let mut invalid = Invalid::new();
    let case_id = case_id(&mut invalid, &req.case_id);
    let channel = required_enum(
        &mut invalid,
        "channel",
        InteractionChannel::ALL,
        req.channel,
        "INTERACTION_CHANNEL",
    );
    let at = req.occurred_at.and_then(|t| {
        let parsed = instant(t);
        if parsed.is_none() {
            invalid.push("occurred_at", "is not a valid instant");
        }
        parsed
    });
    invalid.into_result()?;
    Ok(RecordInteraction {
        case_id,
        channel: channel.expect("checked"),
        at,
        summary: req.summary,
        next_steps: text_opt(&req.next_steps),
        private: req.private,
        notify_member: req.notify_member,
    })
}

pub fn record_transition(req: pb::RecordTransitionRequest) -> ApiResult<RecordTransition> {
    let mut invalid = Invalid::new();
    let case_id = case_id(&mut invalid, &req.case_id);
    let (all, prefix) = (CareSetting::ALL, "CARE_SETTING");
    let from = required_enum(&mut invalid, "from_setting", all, req.from_setting, prefix);
    let to = required_enum(&mut invalid, "to_setting", all, req.to_setting, prefix);
    let from_facility = optional(
        &mut invalid,
        "from_facility_npi",
        &req.from_facility_npi,
        Npi::parse,
    );
    let to_facility = optional(
        &mut invalid,
        "to_facility_npi",
        &req.to_facility_npi,
        Npi::parse,
    );
    let discharge = date(&mut invalid, "discharge_date", &req.discharge_date, true);
    let arrival = date(&mut invalid, "arrival_date", &req.arrival_date, false);
    invalid.into_result()?;
    Ok(RecordTransition {
        case_id,
        from_setting: from.expect("checked"),
        to_setting: to.expect("checked"),
        from_facility: from_facility.flatten(),
        to_facility: to_facility.flatten(),
        discharge_date: discharge.expect("checked"),
        arrival_date: arrival,
        notes: req.notes,
    })
}

pub fn arrange_service(req: pb::ArrangeServiceRequest) -> ApiResult<ArrangeService> {
    let mut invalid = Invalid::new();
    let case_id = case_id(&mut invalid, &req.case_id);
    let kind = required_enum(
        &mut invalid,
        "kind",
        ServiceKind::ALL,
        req.kind,
        "SERVICE_KIND",
    );
    let vendor = optional(&mut invalid, "vendor_npi", &req.vendor_npi, Npi::parse).flatten();
    let start_date = date(&mut invalid, "start_date", &req.start_date, false);
    invalid.into_result()?;
    let service = NewService {
        kind: kind.expect("checked"),
        description: req.description,
        vendor,
        precert_case_id: text_opt(&req.precert_case_id),
        start_date,
    };
    Ok(ArrangeService { case_id, service })
}

pub fn update_service(req: pb::UpdateServiceRequest) -> ApiResult<UpdateService> {
    let mut invalid = Invalid::new();
    let case_id = case_id(&mut invalid, &req.case_id);
    let (all, prefix) = (ServiceState::ALL, "SERVICE_STATE");
    let state = optional_enum(&mut invalid, "state", all, req.state, prefix);
    let service_id = item_id(&mut invalid, "service_id", &req.service_id);
    invalid.into_result()?;
    let precert_case_id = text_opt(&req.precert_case_id);
    Ok(UpdateService {
        case_id,
        service_id,
        state,
        precert_case_id,
    })
}

pub fn request_decision_support(
    req: pb::RequestDecisionSupportRequest,
) -> ApiResult<RequestDecisionSupport> {
    let mut invalid = Invalid::new();
    let case_id = case_id(&mut invalid, &req.case_id);
    let (all, prefix) = (DecisionReason::ALL, "DECISION_REASON");
    let reason = required_enum(&mut invalid, "reason", all, req.reason, prefix);
    let diagnosis = optional(&mut invalid, "diagnosis", &req.diagnosis, Icd10Code::parse);
    let specialty = optional(&mut invalid, "specialty", &req.specialty, Specialty::parse);
    invalid.into_result()?;
    let request = NewDecisionSupport {
        reason: reason.expect("checked"),
        diagnosis: diagnosis.flatten(),
        specialty: specialty.flatten().map(|s| s.to_string()),
        notes: req.notes,
    };
    Ok(RequestDecisionSupport { case_id, request })
}

pub fn find_specialists(req: pb::FindSpecialistsRequest) -> ApiResult<FindSpecialists> {
    let mut invalid = Invalid::new();
    let specialty = required(&mut invalid, "specialty", &req.specialty, Specialty::parse);
    let country = optional(&mut invalid, "country", &req.country, CountryCode::parse).flatten();
    invalid.into_result()?;
    Ok(FindSpecialists {
        case_id: record_id(&req.case_id, "case_id")?,
        specialty: specialty.expect("checked"),
        country,
        page: page_request(req.page),
    })
}

pub fn assess_care_abroad(req: pb::AssessCareAbroadRequest) -> ApiResult<AssessCareAbroad> {
    let mut invalid = Invalid::new();
    let (all, prefix) = (CareAbroad::ALL, "CARE_ABROAD");
    let recommendation = required_enum(
        &mut invalid,
        "recommendation",
        all,
        req.recommendation,
        prefix,
    );
    let specialist = optional(
        &mut invalid,
        "specialist_npi",
        &req.specialist_npi,
        Npi::parse,
    );
    let country = optional(&mut invalid, "country", &req.country, CountryCode::parse).flatten();
    let decision_support_id = item_id(
        &mut invalid,
        "decision_support_id",
        &req.decision_support_id,
    );
    invalid.into_result()?;
    Ok(AssessCareAbroad {
        case_id: record_id(&req.case_id, "case_id")?,
        decision_support_id,
        recommendation: recommendation.expect("checked"),
        rationale: req.rationale,
        specialist: specialist.flatten(),
        country,
    })
}

pub fn record_consent(req: pb::RecordConsentRequest) -> ApiResult<RecordConsent> {
    let mut invalid = Invalid::new();
    let case_id = case_id(&mut invalid, &req.case_id);
    let provider = required(&mut invalid, "provider_npi", &req.provider_npi, Npi::parse);
    invalid.into_result()?;
    let (provider, granted) = (provider.expect("checked"), req.granted);
    Ok(RecordConsent {
        case_id,
        provider,
        granted,
    })
}

pub fn rate_case(req: pb::RateCaseRequest) -> ApiResult<RateCase> {
    let case_id = record_id(&req.case_id, "case_id")?;
    let (rating, comment) = (req.rating, req.comment);
    Ok(RateCase {
        case_id,
        rating,
        comment,
    })
}

/// The period of the report; an instant that names no time counts as not given.
pub fn get_satisfaction_report(
    req: pb::GetSatisfactionReportRequest,
) -> ApiResult<SatisfactionPeriod> {
    Ok(SatisfactionPeriod {
        from: req.from.and_then(instant),
        to: req.to.and_then(instant),
    })
}

pub fn get_work_list(req: pb::GetWorkListRequest) -> ApiResult<Option<StaffId>> {
    let mut invalid = Invalid::new();
    let nurse = optional(&mut invalid, "nurse_id", &req.nurse_id, StaffId::parse).flatten();
    invalid.into_result()?;
    Ok(nurse)
}

#[cfg(test)]
mod tests {
    use carepath_cases::ReferralSource;

    use super::*;

    /// Each proto enum value must name the domain value at the same position.
    fn same_names<T: Copy + std::fmt::Display>(
        all: &[T],
        proto_name: impl Fn(i32) -> Option<&'static str>,
        prefix: &str,
    ) {
        for (i, value) in all.iter().enumerate() {
            let name = proto_name(i as i32 + 1).expect("proto value exists");
            assert_eq!(
                name,
                format!("{prefix}_{}", value.to_string().to_uppercase()),
                "position {}",
                i + 1
            );
        }
        assert!(
            proto_name(all.len() as i32 + 1).is_none(),
            "{prefix} has extra values"
        );
    }

    #[test]
    fn proto_enums_follow_the_domain_order() {
        same_names(
            CaseKind::ALL,
            |v| pb::CaseKind::try_from(v).ok().map(|e| e.as_str_name()),
            "CASE_KIND",
        );
        same_names(
            Phase::ALL,
            |v| pb::Phase::try_from(v).ok().map(|e| e.as_str_name()),
            "PHASE",
        );
        same_names(
            Outcome::ALL,
            |v| pb::Outcome::try_from(v).ok().map(|e| e.as_str_name()),
            "OUTCOME",
        );
        same_names(
            ReferralSource::ALL,
            |v| {
                pb::ReferralSource::try_from(v)
                    .ok()
                    .map(|e| e.as_str_name())
            },
            "REFERRAL_SOURCE",
        );
        same_names(
            GoalStatus::ALL,
            |v| pb::GoalStatus::try_from(v).ok().map(|e| e.as_str_name()),
            "GOAL_STATUS",
        );
        same_names(
            TaskStatus::ALL,
            |v| pb::TaskStatus::try_from(v).ok().map(|e| e.as_str_name()),
            "TASK_STATUS",
        );
        same_names(
            Priority::ALL,
            |v| pb::Priority::try_from(v).ok().map(|e| e.as_str_name()),
            "PRIORITY",
        );
        same_names(
            InteractionChannel::ALL,
            |v| {
                pb::InteractionChannel::try_from(v)
                    .ok()
                    .map(|e| e.as_str_name())
            },
            "INTERACTION_CHANNEL",
        );
        same_names(
            CareSetting::ALL,
            |v| pb::CareSetting::try_from(v).ok().map(|e| e.as_str_name()),
            "CARE_SETTING",
        );
        same_names(
            ServiceKind::ALL,
            |v| pb::ServiceKind::try_from(v).ok().map(|e| e.as_str_name()),
            "SERVICE_KIND",
        );
        same_names(
            ServiceState::ALL,
            |v| pb::ServiceState::try_from(v).ok().map(|e| e.as_str_name()),
            "SERVICE_STATE",
        );
        same_names(
            DecisionReason::ALL,
            |v| {
                pb::DecisionReason::try_from(v)
                    .ok()
                    .map(|e| e.as_str_name())
            },
            "DECISION_REASON",
        );
        same_names(
            CareAbroad::ALL,
            |v| pb::CareAbroad::try_from(v).ok().map(|e| e.as_str_name()),
            "CARE_ABROAD",
        );
    }
}
