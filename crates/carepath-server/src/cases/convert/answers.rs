//! The answers of the case-management service: domain values (cases already redacted
//! for their caller) as `carepath.cases.v1` messages.

use carepath_app::{
    Page,
    cases::{CaseTask, Opened, SeenCase, Specialists, WorkList},
};
use carepath_cases::{
    ArrangedService, CareAbroad, CareSetting, CareTransition, CaseKind, DecisionReason,
    DecisionSupport, Goal, GoalStatus, Interaction, InteractionChannel, ManagedCase, Outcome,
    Phase, Priority, ReferralSource, SatisfactionReport, ServiceKind, ServiceState, Task,
    TaskStatus,
};
use carepath_proto::cases::v1 as pb;
use chrono::{DateTime, NaiveDate, Utc};

use super::to_proto;
use crate::convert::{provider_to_proto, timestamp};

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(timestamp(t))
}

fn opt_string<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

pub fn goal_to_proto(g: &Goal) -> pb::Goal {
    pb::Goal {
        id: g.id.clone(),
        description: g.description.clone(),
        target_date: g.target_date.to_string(),
        status: to_proto(GoalStatus::ALL, g.status),
    }
}

pub fn task_to_proto(case_id: &str, t: &Task, today: NaiveDate) -> pb::Task {
    pb::Task {
        id: t.id.clone(),
        title: t.title.clone(),
        owner: t.owner.clone(),
        due_date: t.due_on.to_string(),
        priority: to_proto(Priority::ALL, t.priority),
        status: to_proto(TaskStatus::ALL, t.status),
        goal_id: opt_string(&t.goal_id),
        overdue: t.is_overdue(today),
        case_id: case_id.to_owned(),
    }
}

pub fn service_to_proto(s: &ArrangedService) -> pb::ArrangedService {
    pb::ArrangedService {
        id: s.id.clone(),
        kind: to_proto(ServiceKind::ALL, s.kind),
        description: s.description.clone(),
        vendor_npi: opt_string(&s.vendor),
        state: to_proto(ServiceState::ALL, s.state),
        needs_precertification: s.needs_precertification,
        precert_case_id: opt_string(&s.precert_case_id),
        start_date: opt_string(&s.start_date),
        requested_at: ts(s.requested_at),
    }
}

pub fn decision_support_to_proto(d: &DecisionSupport) -> pb::DecisionSupport {
    pb::DecisionSupport {
        id: d.id.clone(),
        reason: to_proto(DecisionReason::ALL, d.reason),
        diagnosis: opt_string(&d.diagnosis),
        specialty: opt_string(&d.specialty),
        notes: d.notes.clone(),
        requested_by: d.requested_by.clone(),
        requested_at: ts(d.requested_at),
        care_abroad: d.care_abroad.as_ref().map(|a| pb::CareAbroadAssessment {
            country: a.country.to_string(),
            recommendation: to_proto(CareAbroad::ALL, a.recommendation),
            rationale: a.rationale.clone(),
            specialist_npi: opt_string(&a.specialist),
            assessed_by: a.assessed_by.clone(),
            assessed_at: ts(a.assessed_at),
        }),
    }
}

pub fn interaction_to_proto(i: &Interaction) -> pb::Interaction {
    pb::Interaction {
        id: i.id.clone(),
        channel: to_proto(InteractionChannel::ALL, i.channel),
        occurred_at: ts(i.at),
        author_id: i.author_id.clone(),
        author_name: i.author_name.clone(),
        summary: i.summary.clone(),
        next_steps: opt_string(&i.next_steps),
        private: i.private,
        notify_member: i.notify_member,
    }
}

pub fn transition_to_proto(t: &CareTransition) -> pb::Transition {
    pb::Transition {
        id: t.id.clone(),
        from_setting: to_proto(CareSetting::ALL, t.from_setting),
        to_setting: to_proto(CareSetting::ALL, t.to_setting),
        from_facility_npi: opt_string(&t.from_facility),
        to_facility_npi: opt_string(&t.to_facility),
        discharge_date: t.discharge_date.to_string(),
        arrival_date: t.arrival_date.to_string(),
        notes: t.notes.clone(),
        recorded_by: t.recorded_by.clone(),
        recorded_at: ts(t.recorded_at),
    }
}

/// The case as the caller may see it (the use case redacted it for the caller's view).
pub fn case_to_proto(seen: &SeenCase) -> pb::Case {
    let (c, today): (&ManagedCase, NaiveDate) = (&seen.case, seen.today);
    pb::Case {
        id: c.id.clone(),
        member_id: c.member_id.to_string(),
        kind: to_proto(CaseKind::ALL, c.kind),
        phase: to_proto(Phase::ALL, c.phase),
        opened_at: ts(c.opened_at),
        nurse_id: c
            .nurse
            .as_ref()
            .map(|n| n.staff_id.to_string())
            .unwrap_or_default(),
        nurse_name: c.nurse.as_ref().map(|n| n.name.clone()).unwrap_or_default(),
        referrals: c
            .referrals
            .iter()
            .map(|r| pb::Referral {
                source: to_proto(ReferralSource::ALL, r.source),
                reason: r.reason.clone(),
                referred_by: r.referred_by.clone(),
                event_id: opt_string(&r.event_id),
                source_id: opt_string(&r.source_id),
                diagnosis: opt_string(&r.diagnosis),
                at: ts(r.at),
            })
            .collect(),
        assignments: c
            .assignments
            .iter()
            .map(|a| pb::Assignment {
                nurse_id: a.nurse.staff_id.to_string(),
                nurse_name: a.nurse.name.clone(),
                assigned_by: a.assigned_by.clone(),
                assigned_at: ts(a.assigned_at),
                ended_at: a.ended_at.map(timestamp),
                reason: a.reason.clone(),
            })
            .collect(),
        goals: c.goals.iter().map(goal_to_proto).collect(),
        tasks: c
            .tasks
            .iter()
            .map(|t| task_to_proto(&c.id, t, today))
            .collect(),
        interactions: c.interactions.iter().map(interaction_to_proto).collect(),
        transitions: c.transitions.iter().map(transition_to_proto).collect(),
        services: c.services.iter().map(service_to_proto).collect(),
        decision_support: c
            .decision_support
            .iter()
            .map(decision_support_to_proto)
            .collect(),
        consented_provider_npis: c
            .consented_providers()
            .iter()
            .map(ToString::to_string)
            .collect(),
        outcome: c.outcome.map_or(0, |o| to_proto(Outcome::ALL, o)),
        closure_note: c.closure_note.clone(),
        closed_at: c.closed_at.map(timestamp),
        satisfaction: c.satisfaction.as_ref().map(|s| pb::Satisfaction {
            rating: u32::from(s.rating),
            comment: s.comment.clone(),
            rated_at: ts(s.rated_at),
        }),
        history: c
            .history
            .iter()
            .map(|h| pb::HistoryEntry {
                at: ts(h.at),
                by: h.by.clone(),
                role: h.role.as_str().to_owned(),
                action: h.action.clone(),
                note: h.note.clone(),
            })
            .collect(),
    }
}

pub fn open_case_to_proto(opened: Opened) -> pb::OpenCaseResponse {
    match opened.case {
        // A referrer who may not see the case is told only that the referral was
        // taken: not the case it reached, nor whether the member already had one.
        None => pb::OpenCaseResponse::default(),
        Some(seen) => pb::OpenCaseResponse {
            case_id: seen.case.id.clone(),
            absorbed: opened.absorbed,
            case: Some(case_to_proto(&seen)),
        },
    }
}

pub fn find_specialists_to_proto(found: Specialists) -> pb::FindSpecialistsResponse {
    pb::FindSpecialistsResponse {
        providers: found.providers.iter().map(provider_to_proto).collect(),
        country: found.country.to_string(),
        plan_id: found.plan_id.to_string(),
        next_page_token: found.next_page_token,
    }
}

pub fn get_satisfaction_report_to_proto(
    report: SatisfactionReport,
) -> pb::GetSatisfactionReportResponse {
    pb::GetSatisfactionReportResponse {
        ratings: report.ratings,
        satisfied: report.satisfied,
        satisfaction_rate: report.rate,
        average_rating: report.average,
        distribution: report.distribution.to_vec(),
    }
}

pub fn get_work_list_to_proto(list: WorkList) -> pb::GetWorkListResponse {
    let tasks = |items: Vec<CaseTask>| {
        items
            .iter()
            .map(|t| task_to_proto(&t.case_id, &t.task, list.today))
            .collect()
    };
    pb::GetWorkListResponse {
        nurse_id: list.nurse_id.to_string(),
        open_cases: list.open_cases,
        caseload_cap: list.caseload_cap,
        overdue_tasks: tasks(list.overdue),
        upcoming_tasks: tasks(list.upcoming),
        unassigned_queue: list.unassigned_queue,
    }
}

pub fn get_case_to_proto(case: SeenCase) -> pb::GetCaseResponse {
    pb::GetCaseResponse {
        case: Some(case_to_proto(&case)),
    }
}

pub fn list_cases_to_proto(page: Page<SeenCase>) -> pb::ListCasesResponse {
    pb::ListCasesResponse {
        cases: page.items.iter().map(case_to_proto).collect(),
        next_page_token: page.next_page_token,
    }
}

pub fn claim_case_to_proto(case: SeenCase) -> pb::ClaimCaseResponse {
    pb::ClaimCaseResponse {
        case: Some(case_to_proto(&case)),
    }
}

pub fn assign_case_to_proto(case: SeenCase) -> pb::AssignCaseResponse {
    pb::AssignCaseResponse {
        case: Some(case_to_proto(&case)),
    }
}

pub fn move_case_to_proto(case: SeenCase) -> pb::MoveCaseResponse {
    pb::MoveCaseResponse {
        case: Some(case_to_proto(&case)),
    }
}

pub fn close_case_to_proto(case: SeenCase) -> pb::CloseCaseResponse {
    pb::CloseCaseResponse {
        case: Some(case_to_proto(&case)),
    }
}

pub fn decline_case_to_proto(case: SeenCase) -> pb::DeclineCaseResponse {
    pb::DeclineCaseResponse {
        case: Some(case_to_proto(&case)),
    }
}

pub fn update_goal_to_proto(case: SeenCase) -> pb::UpdateGoalResponse {
    pb::UpdateGoalResponse {
        case: Some(case_to_proto(&case)),
    }
}

pub fn assess_care_abroad_to_proto(case: SeenCase) -> pb::AssessCareAbroadResponse {
    pb::AssessCareAbroadResponse {
        case: Some(case_to_proto(&case)),
    }
}

pub fn record_consent_to_proto(case: SeenCase) -> pb::RecordConsentResponse {
    pb::RecordConsentResponse {
        case: Some(case_to_proto(&case)),
    }
}

pub fn rate_case_to_proto(case: SeenCase) -> pb::RateCaseResponse {
    pb::RateCaseResponse {
        case: Some(case_to_proto(&case)),
    }
}

pub fn add_goal_to_proto((case, goal): (SeenCase, Goal)) -> pb::AddGoalResponse {
    let case = case_to_proto(&case);
    pb::AddGoalResponse {
        goal: case.goals.iter().find(|g| g.id == goal.id).cloned(),
        case: Some(case),
    }
}

pub fn add_task_to_proto((case, task): (SeenCase, Task)) -> pb::AddTaskResponse {
    pb::AddTaskResponse {
        task: Some(task_to_proto(&case.case.id, &task, case.today)),
        case: Some(case_to_proto(&case)),
    }
}

pub fn update_task_to_proto((case, task): (SeenCase, Task)) -> pb::UpdateTaskResponse {
    pb::UpdateTaskResponse {
        task: Some(task_to_proto(&case.case.id, &task, case.today)),
        case: Some(case_to_proto(&case)),
    }
}

pub fn record_interaction_to_proto(
    (case, interaction): (SeenCase, Interaction),
) -> pb::RecordInteractionResponse {
    pb::RecordInteractionResponse {
        interaction: Some(interaction_to_proto(&interaction)),
        case: Some(case_to_proto(&case)),
    }
}

pub fn record_transition_to_proto(
    (case, transition): (SeenCase, CareTransition),
) -> pb::RecordTransitionResponse {
    pb::RecordTransitionResponse {
        transition: Some(transition_to_proto(&transition)),
        case: Some(case_to_proto(&case)),
    }
}

pub fn arrange_service_to_proto(
    (case, service): (SeenCase, ArrangedService),
) -> pb::ArrangeServiceResponse {
    pb::ArrangeServiceResponse {
        service: Some(service_to_proto(&service)),
        case: Some(case_to_proto(&case)),
    }
}

pub fn update_service_to_proto(
    (case, service): (SeenCase, ArrangedService),
) -> pb::UpdateServiceResponse {
    pb::UpdateServiceResponse {
        service: Some(service_to_proto(&service)),
        case: Some(case_to_proto(&case)),
    }
}

pub fn request_decision_support_to_proto(
    (case, request): (SeenCase, DecisionSupport),
) -> pb::RequestDecisionSupportResponse {
    pb::RequestDecisionSupportResponse {
        decision_support: Some(decision_support_to_proto(&request)),
        case: Some(case_to_proto(&case)),
    }
}
