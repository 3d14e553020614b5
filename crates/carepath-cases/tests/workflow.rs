//! The case workflow as a story: a referral opens a case, a nurse claims it, builds the
//! care plan, records a transition and an arranged service, closes it, and the member
//! rates it; with the refusals along the way.

use carepath_cases::*;
use carepath_core::{Actor, MemberId, Npi, Role, StaffId};
use chrono::{DateTime, Duration, NaiveDate, Utc};

fn t0() -> DateTime<Utc> {
    "2026-11-23T14:00:00Z".parse().unwrap()
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn caller(role: Role, subject: &str) -> Caller {
    Caller::new(Actor::new(role, subject).unwrap(), subject)
}

fn nurse_ref(id: &str) -> NurseRef {
    NurseRef {
        staff_id: StaffId::parse(id).unwrap(),
        name: format!("Nurse {id}"),
    }
}

fn referral() -> Referral {
    Referral {
        source: ReferralSource::OncologyPlan,
        reason: "early referral".into(),
        referred_by: "oncology_plan".into(),
        event_id: Some("ev-1".into()),
        source_id: Some("OP-1".into()),
        diagnosis: Some("C50.911".into()),
        at: t0(),
    }
}

fn new_case() -> ManagedCase {
    let (case, events) = ManagedCase::open(
        "CM-1".into(),
        MemberId::parse("M100001").unwrap(),
        CaseKind::Oncology,
        referral(),
        t0(),
    );
    assert_eq!(events[0].kind, event_kinds::OPENED);
    case
}

fn is_illegal<T: std::fmt::Debug>(r: Result<T, CaseError>) -> bool {
    matches!(r, Err(CaseError::IllegalTransition { .. }))
}

fn is_denied<T: std::fmt::Debug>(r: Result<T, CaseError>) -> bool {
    matches!(r, Err(CaseError::PermissionDenied { .. }))
}

#[test]
fn a_case_from_referral_to_rating() {
    let mut case = new_case();
    let rn1 = caller(Role::Nurse, "RN-001");
    let rn5 = caller(Role::Nurse, "RN-005");
    let member = caller(Role::Member, "M100001");
    let now = t0();

    assert_eq!(case.view_for(&rn1.actor), View::Full, "unassigned queue");
    assert!(is_denied(case.add_goal(
        &rn1,
        NewGoal {
            description: "x".into(),
            target_date: day("2027-01-01")
        },
        now
    )));
    case.assign(&rn1, nurse_ref("RN-001"), "claim", now)
        .unwrap();
    assert_eq!(case.view_for(&rn5.actor), View::None);
    assert!(is_illegal(case.assign(
        &rn5,
        nurse_ref("RN-005"),
        "claim",
        now
    )));

    let (goal, _) = case
        .add_goal(
            &rn1,
            NewGoal {
                description: "Complete 6 cycles".into(),
                target_date: day("2027-03-01"),
            },
            now,
        )
        .unwrap();
    for title in ["Call member", "Arrange antiemetics"] {
        case.add_task(
            &rn1,
            NewTask {
                title: title.into(),
                owner: "RN-001".into(),
                due_on: day("2026-11-25"),
                priority: Priority::High,
                goal_id: Some(goal.id.clone()),
            },
            now,
        )
        .unwrap();
    }
    assert_eq!(case.overdue_tasks(day("2026-11-26")).len(), 2);
    case.update_task(
        &rn1,
        "T1",
        TaskChange {
            status: Some(TaskStatus::Done),
            ..Default::default()
        },
        now,
    )
    .unwrap();
    assert_eq!(case.overdue_tasks(day("2026-11-26")).len(), 1);
    assert!(is_illegal(case.update_task(
        &rn1,
        "T1",
        TaskChange {
            status: Some(TaskStatus::Open),
            ..Default::default()
        },
        now
    )));

    let (_, events) = case
        .record_interaction(
            &rn1,
            NewInteraction {
                channel: InteractionChannel::Call,
                at: now,
                summary: "Introduced the program".into(),
                next_steps: Some("Call back Friday".into()),
                private: false,
                notify_member: true,
            },
            now,
        )
        .unwrap();
    let p = &events[0].payload;
    assert_eq!(p["contact_channel"], "call");
    assert_eq!(p["nurse_id"], "RN-001");
    assert_eq!(p["notify_member"], true);
    assert_eq!(p["next_steps"], "Call back Friday");
    case.record_interaction(
        &rn1,
        NewInteraction {
            channel: InteractionChannel::Note,
            at: now,
            summary: "Private worry".into(),
            next_steps: None,
            private: true,
            notify_member: true,
        },
        now,
    )
    .unwrap();
    assert!(
        !case.interactions[1].notify_member,
        "private notes never notify"
    );
    let shared = case.redacted(case.view_for(&member.actor));
    assert_eq!(shared.interactions.len(), 1);

    for phase in [Phase::Assessment, Phase::Planning, Phase::Implementation] {
        case.move_to(&rn1, phase, "", now).unwrap();
    }
    assert!(is_illegal(case.move_to(&rn1, Phase::Screening, "", now)));
    case.record_transition(
        &rn1,
        NewTransition {
            from_setting: CareSetting::AcuteHospital,
            to_setting: CareSetting::SkilledNursing,
            from_facility: Some(Npi::parse("1603758941").unwrap()),
            to_facility: Some(Npi::parse("1052545435").unwrap()),
            discharge_date: day("2026-11-24"),
            arrival_date: day("2026-11-24"),
            notes: String::new(),
        },
        now,
    )
    .unwrap();
    let (service, _) = case
        .arrange_service(
            &rn1,
            NewService {
                kind: ServiceKind::HomeHealthCare,
                description: "Skilled nursing visits".into(),
                vendor: None,
                precert_case_id: Some("PA-1".into()),
                start_date: None,
            },
            now,
        )
        .unwrap();
    assert!(service.needs_precertification);
    assert!(is_illegal(case.update_service(
        &rn1,
        "S1",
        Some(ServiceState::Delivered),
        None,
        now
    )));
    case.update_service(&rn1, "S1", Some(ServiceState::Arranged), None, now)
        .unwrap();

    assert!(
        is_illegal(case.rate(&member, 5, "", now)),
        "open cases are not rated"
    );
    case.close(&rn1, Outcome::GoalsMet, "done", now).unwrap();
    assert!(is_illegal(case.add_goal(
        &rn1,
        NewGoal {
            description: "x".into(),
            target_date: day("2027-01-01")
        },
        now
    )));
    assert!(is_denied(case.rate(&rn1, 5, "", now)));
    assert!(matches!(
        case.rate(&member, 6, "", now),
        Err(CaseError::Invalid(_))
    ));
    case.rate(&member, 5, "very helpful", now + Duration::days(1))
        .unwrap();
    assert!(is_illegal(case.rate(&member, 4, "", now)));
    assert_eq!(case.assignments[0].ended_at, Some(now));
}

#[test]
fn goals_met_needs_care_delivered_but_a_decline_closes_from_screening() {
    let mut case = new_case();
    let admin = caller(Role::Admin, "AD-001");
    case.assign(&admin, nurse_ref("RN-001"), "", t0()).unwrap();
    assert!(is_illegal(case.close(&admin, Outcome::GoalsMet, "", t0())));
    let member = caller(Role::Member, "M100001");
    let other = caller(Role::Member, "M100002");
    assert!(is_denied(case.decline(&other, "", t0())));
    let events = case.decline(&member, "no thanks", t0()).unwrap();
    assert_eq!(events[0].payload["outcome"], "member_declined");
    assert_eq!(case.outcome, Some(Outcome::MemberDeclined));
    assert!(is_illegal(case.decline(&member, "", t0())));
}

#[test]
fn reassignment_keeps_the_history() {
    let mut case = new_case();
    let admin = caller(Role::Admin, "AD-001");
    case.assign(&admin, nurse_ref("RN-001"), "", t0()).unwrap();
    let later = t0() + Duration::hours(2);
    let events = case
        .assign(&admin, nurse_ref("RN-005"), "language", later)
        .unwrap();
    assert_eq!(events[0].payload["previous_nurse_id"], "RN-001");
    assert_eq!(case.assignments.len(), 2);
    assert_eq!(case.assignments[0].ended_at, Some(later));
    assert_eq!(case.assignments[1].ended_at, None);
    assert!(case.is_assigned_to(&StaffId::parse("RN-005").unwrap()));
}

#[test]
fn providers_see_a_case_only_with_the_members_consent() {
    let mut case = new_case();
    let provider = Actor::new(Role::Provider, "1381083801").unwrap();
    assert_eq!(case.view_for(&provider), View::None);
    let member = caller(Role::Member, "M100001");
    let npi = Npi::parse("1381083801").unwrap();
    case.record_consent(&member, npi.clone(), true, t0())
        .unwrap();
    assert_eq!(case.view_for(&provider), View::Shared);
    case.record_consent(&member, npi, false, t0()).unwrap();
    assert_eq!(case.view_for(&provider), View::None);
    let reviewer = Actor::new(Role::PhysicianReviewer, "MD-ONC-01").unwrap();
    assert_eq!(case.view_for(&reviewer), View::None);
}

#[test]
fn the_phase_graph_is_the_documented_one() {
    use Phase::*;
    let open = [
        Screening,
        Assessment,
        Planning,
        Implementation,
        Monitoring,
        TransitionsOfCare,
    ];
    let allowed: Vec<_> = open
        .iter()
        .flat_map(|a| Phase::ALL.iter().map(move |b| (*a, *b)))
        .filter(|(a, b)| phase_move_allowed(*a, *b))
        .collect();
    assert_eq!(
        allowed,
        [
            (Screening, Assessment),
            (Assessment, Planning),
            (Planning, Implementation),
            (Implementation, Monitoring),
            (Implementation, TransitionsOfCare),
            (Monitoring, Planning),
            (Monitoring, TransitionsOfCare),
            (TransitionsOfCare, Planning),
            (TransitionsOfCare, Monitoring),
        ]
    );
    assert!(Phase::ALL.iter().all(|p| !phase_move_allowed(Closed, *p)));
}
