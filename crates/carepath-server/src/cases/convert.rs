//! Conversions between `carepath.cases.v1` messages and the case-management domain.
//!
//! Every proto enum lists the domain values in the domain's declaration order after
//! its `_UNSPECIFIED` zero, so value `n` is `ALL[n - 1]`; a test holds the two in step
//! by name.

use carepath_cases::{
    ArrangedService, CareAbroad, CareSetting, CaseKind, DecisionReason, DecisionSupport,
    GoalStatus, InteractionChannel, ManagedCase, Outcome, Phase, Priority, ReferralSource,
    ServiceKind, ServiceState, Task, TaskStatus,
};
use carepath_core::Invalid;
use carepath_proto::cases::v1 as pb;
use chrono::{DateTime, NaiveDate, Utc};

use crate::convert::timestamp;

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

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(timestamp(t))
}

fn opt_string<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
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

pub fn interaction_to_proto(i: &carepath_cases::Interaction) -> pb::Interaction {
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

pub fn transition_to_proto(t: &carepath_cases::CareTransition) -> pb::Transition {
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

/// The case as the caller may see it (already redacted by the caller's view).
pub fn case_to_proto(c: &ManagedCase, today: NaiveDate) -> pb::Case {
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
        goals: c
            .goals
            .iter()
            .map(|g| pb::Goal {
                id: g.id.clone(),
                description: g.description.clone(),
                target_date: g.target_date.to_string(),
                status: to_proto(GoalStatus::ALL, g.status),
            })
            .collect(),
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

#[cfg(test)]
mod tests {
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
