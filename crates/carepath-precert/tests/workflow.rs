//! The case workflow: every transition, legal and illegal, every permission rule, the
//! history and the events.

mod common;

use std::sync::LazyLock;

use carepath_core::{Actor, BusinessCalendar, Role, Setting, Specialty, StaffId};
use carepath_precert::metrics::{FinalOutcome, metrics};
use carepath_precert::{
    AdverseDetermination, Answer, AppealDecision, AppealPriority, Caller, CaseState, Ctx,
    DecisionMaker, DecisionOutcome, DecisionStage, ErrorCode, GoldCards, LineApproval, Missing,
    MissingQuestion, PeerToPeerOutcome, PermissionReason, PrecertCase, ReasonCode, RuleBook,
    StaffRef, WithdrawReason, WorkflowError, event_kinds, is_late, shipped,
};
use chrono::{DateTime, Duration, Utc};
use common::*;

static BOOK: LazyLock<RuleBook> = LazyLock::new(shipped);
static CAL: LazyLock<BusinessCalendar> = LazyLock::new(BusinessCalendar::us_federal);
static CARDS: LazyLock<GoldCards> = LazyLock::new(GoldCards::default);

fn ctx() -> Ctx<'static> {
    Ctx {
        calendar: &CAL,
        rules: &BOOK,
        gold_cards: &CARDS,
    }
}

fn caller(role: Role, subject: &str, specialty: Option<&str>) -> Caller {
    Caller::new(
        Actor::new(role, subject).unwrap(),
        specialty.map(|s| Specialty::parse(s).unwrap()),
    )
}

fn provider() -> Caller {
    caller(Role::Provider, PROVIDER_NPI, None)
}
fn other_provider() -> Caller {
    caller(Role::Provider, "1679576722", None)
}
fn member() -> Caller {
    caller(Role::Member, MEMBER, None)
}
fn nurse() -> Caller {
    caller(Role::Nurse, "RN-001", None)
}
fn radiologist() -> Caller {
    caller(Role::PhysicianReviewer, "MD-RAD-01", Some("radiology"))
}
fn radiologist2() -> Caller {
    caller(Role::PhysicianReviewer, "MD-RAD-02", Some("radiology"))
}
fn orthopaedist() -> Caller {
    caller(
        Role::PhysicianReviewer,
        "MD-ORT-01",
        Some("orthopaedic_surgery"),
    )
}
fn admin() -> Caller {
    caller(Role::Admin, "ADM-001", None)
}
fn service() -> Caller {
    caller(Role::Service, "precert-scheduler", None)
}

fn staff(c: &Caller) -> StaffRef {
    StaffRef {
        staff_id: StaffId::parse(&c.actor.subject).unwrap(),
        role: c.actor.role,
        specialty: c.specialty.clone(),
    }
}

/// Monday 2026-03-09, 10:00 in New York.
fn t0() -> DateTime<Utc> {
    utc("2026-03-09T14:00:00Z")
}

fn adverse() -> AdverseDetermination {
    AdverseDetermination::new(
        "not_medically_necessary",
        "Six weeks of conservative therapy have not been tried and there are no red-flag symptoms.",
        "Illustrative imaging criteria: MRI brain, section 2",
    )
    .unwrap()
}

fn kinds(events: &[carepath_precert::EventDraft]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind).collect()
}

fn illegal(r: Result<carepath_precert::Events, WorkflowError>, state: CaseState) {
    match r {
        Err(e @ WorkflowError::IllegalTransition { .. }) => {
            assert_eq!(e.code(), ErrorCode::FailedPrecondition);
            let WorkflowError::IllegalTransition { state: s, .. } = e else {
                unreachable!()
            };
            assert_eq!(s, state);
        }
        other => panic!("expected an illegal transition from {state}, got {other:?}"),
    }
}

fn denied(r: Result<carepath_precert::Events, WorkflowError>, expected: PermissionReason) {
    match r {
        Err(e @ WorkflowError::PermissionDenied { .. }) => {
            assert_eq!(e.code(), ErrorCode::PermissionDenied);
            let WorkflowError::PermissionDenied { reason, .. } = e else {
                unreachable!()
            };
            assert_eq!(reason, expected);
        }
        other => panic!("expected permission denied ({expected}), got {other:?}"),
    }
}

fn invalid(r: Result<carepath_precert::Events, WorkflowError>, field: &str) {
    match r {
        Err(WorkflowError::Invalid(i)) => {
            assert!(i.violations.iter().any(|v| v.field == field), "{i}");
        }
        other => panic!("expected invalid {field}, got {other:?}"),
    }
}

/// An MRI request whose criteria are not met: pended for review.
fn pended_for_review(units: u32) -> PrecertCase {
    let mut l = line("70553", Setting::Outpatient);
    l.units = units;
    let mut req = request(vec![l]);
    req.answers = answers(&[
        ("red_flag_symptoms", Answer::Bool(false)),
        ("conservative_therapy_weeks", Answer::Number(2.0)),
    ]);
    req.records = vec![record("clinical_notes")];
    let (case, events) = PrecertCase::submit("PC-1", req, None, &provider(), &ctx(), t0()).unwrap();
    assert_eq!(case.state, CaseState::PendedReview);
    assert_eq!(
        kinds(&events),
        [event_kinds::SUBMITTED, event_kinds::PENDED_FOR_REVIEW]
    );
    case
}

fn in_review(reviewer: &Caller) -> PrecertCase {
    let mut case = pended_for_review(1);
    case.claim(reviewer, t0() + Duration::hours(1)).unwrap();
    case
}

fn denied_case() -> PrecertCase {
    let mut case = in_review(&radiologist());
    case.deny(&radiologist(), adverse(), t0() + Duration::hours(2))
        .unwrap();
    case
}

#[test]
fn criteria_met_is_approved_on_submission() {
    let mut req = request(vec![line("70553", Setting::Outpatient)]);
    req.answers = answers(&[("red_flag_symptoms", Answer::Bool(true))]);
    req.records = vec![record("clinical_notes")];
    let (mut case, events) =
        PrecertCase::submit("PC-1", req, None, &provider(), &ctx(), t0()).unwrap();
    assert_eq!(case.state, CaseState::Approved);
    assert_eq!(
        kinds(&events),
        [event_kinds::SUBMITTED, event_kinds::APPROVED]
    );
    let decision = case.current_decision().unwrap();
    assert_eq!(decision.by, DecisionMaker::Automation);
    assert!(decision.note.contains("IMG-MRI"), "{}", decision.note);
    // Routine, Monday morning: due Wednesday 17:00 New York.
    assert_eq!(case.due.at, utc("2026-03-11T21:00:00Z"));
    assert_eq!(case.history.len(), 2);
    assert_eq!(case.history[1].by.subject, "precert-automation");
    // A decided case is never edited.
    illegal(case.claim(&nurse(), t0()), CaseState::Approved);
    illegal(
        case.deny(&radiologist(), adverse(), t0()),
        CaseState::Approved,
    );
    illegal(
        case.request_peer_to_peer(&provider(), t0()),
        CaseState::Approved,
    );
    illegal(
        case.appeal(&provider(), AppealPriority::Standard, "x", t0()),
        CaseState::Approved,
    );
    illegal(
        case.withdraw(&provider(), WithdrawReason::ByRequester, "", t0()),
        CaseState::Approved,
    );
    illegal(case.run_automation(&ctx(), t0()), CaseState::Approved);

    // The event is complete but for its id.
    let event = events[1].clone().into_event("evt-1");
    assert_eq!(event.kind, "precert.case.approved");
    assert_eq!(event.aggregate_kind, "precert_case");
    assert_eq!(event.payload["services"][0]["code"], "70553");
    assert_eq!(event.payload["services"][0]["rule_id"], "IMG-MRI");
    assert_eq!(event.payload["services"][0]["list"]["version"], "2026.1");
    assert_eq!(event.payload["decided_by"]["kind"], "automation");
}

#[test]
fn who_may_submit() {
    let req = request(vec![line("70553", Setting::Outpatient)]);
    for c in [provider(), member(), nurse(), admin()] {
        assert!(PrecertCase::submit("PC-1", req.clone(), None, &c, &ctx(), t0()).is_ok());
    }
    let err = PrecertCase::submit("PC-1", req.clone(), None, &other_provider(), &ctx(), t0())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    let err =
        PrecertCase::submit("PC-1", req.clone(), None, &radiologist(), &ctx(), t0()).unwrap_err();
    assert!(matches!(
        err,
        WorkflowError::PermissionDenied {
            reason: PermissionReason::Role {
                role: Role::PhysicianReviewer
            },
            ..
        }
    ));
    let err = PrecertCase::submit("PC-1", request(Vec::new()), None, &provider(), &ctx(), t0())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
}

#[test]
fn receive_then_automation_in_two_steps() {
    let req = request(vec![line("90834", Setting::Office)]);
    let (mut case, events) =
        PrecertCase::receive("PC-2", req, None, &member(), &CAL, t0()).unwrap();
    assert_eq!(
        (case.state, kinds(&events)),
        (CaseState::Received, vec![event_kinds::SUBMITTED])
    );
    assert!(is_late(&case, case.due.at + Duration::seconds(1)));
    let events = case.run_automation(&ctx(), t0()).unwrap();
    assert_eq!(
        (case.state, kinds(&events)),
        (CaseState::Approved, vec![event_kinds::APPROVED])
    );
    assert!(!is_late(&case, case.due.at + Duration::days(30)));
}

#[test]
fn information_requested_received_and_withdrawn() {
    let req = request(vec![line("70553", Setting::Outpatient)]);
    let (mut case, events) =
        PrecertCase::submit("PC-3", req, None, &provider(), &ctx(), t0()).unwrap();
    assert_eq!(case.state, CaseState::PendedInformation);
    assert_eq!(
        kinds(&events),
        [event_kinds::SUBMITTED, event_kinds::INFORMATION_REQUESTED]
    );
    let info = case.information_request.clone().unwrap();
    assert_eq!(info.missing.questions.len(), 2);
    // Routine: 15 business days to answer, then the case may be withdrawn.
    assert_eq!(info.due_at, utc("2026-03-30T21:00:00Z"));
    assert_eq!(info.withdraw_after, info.due_at);
    assert_eq!(
        events[1].payload["missing"]["documents"][0]["id"],
        "clinical_notes"
    );
    // Waiting on the provider is not late.
    assert!(!case.is_late(case.due.at + Duration::days(3)));

    // Only the requester (or intake staff) may answer.
    denied(
        case.supply_information(
            &other_provider(),
            answers(&[("red_flag_symptoms", Answer::Bool(false))]),
            vec![],
            &ctx(),
            t0(),
        ),
        PermissionReason::NotTheRequester,
    );
    invalid(
        case.supply_information(&provider(), Default::default(), vec![], &ctx(), t0()),
        "answers",
    );

    // Partial answer: still missing the rest, asked again.
    let later = t0() + Duration::days(1);
    let events = case
        .supply_information(
            &provider(),
            answers(&[("red_flag_symptoms", Answer::Bool(false))]),
            vec![record("clinical_notes")],
            &ctx(),
            later,
        )
        .unwrap();
    assert_eq!(
        kinds(&events),
        [
            event_kinds::INFORMATION_RECEIVED,
            event_kinds::INFORMATION_REQUESTED
        ]
    );
    assert_eq!(case.state, CaseState::PendedInformation);
    let ids: Vec<String> = case
        .information_request
        .as_ref()
        .unwrap()
        .missing
        .questions
        .iter()
        .map(|q| q.id.clone())
        .collect();
    assert_eq!(ids, ["conservative_therapy_weeks"]);

    // Auto-withdrawal only once 15 business days have passed without an answer.
    let asked = case.information_request.as_ref().unwrap().withdraw_after;
    let early = case.withdraw(
        &service(),
        WithdrawReason::InformationNotReceived,
        "",
        asked - Duration::minutes(1),
    );
    assert!(
        matches!(early, Err(WorkflowError::Precondition { .. })),
        "{early:?}"
    );
    denied(
        case.withdraw(
            &provider(),
            WithdrawReason::InformationNotReceived,
            "",
            asked,
        ),
        PermissionReason::Role {
            role: Role::Provider,
        },
    );
    let events = case
        .withdraw(
            &service(),
            WithdrawReason::InformationNotReceived,
            "",
            asked,
        )
        .unwrap();
    assert_eq!(kinds(&events), [event_kinds::WITHDRAWN]);
    assert_eq!(case.state, CaseState::Withdrawn);
    assert_eq!(
        case.history.last().unwrap().note,
        "withdrawn: the information asked for did not come within 15 business days"
    );
    illegal(
        case.supply_information(
            &provider(),
            answers(&[("bmi", Answer::Number(1.0))]),
            vec![],
            &ctx(),
            asked,
        ),
        CaseState::Withdrawn,
    );
}

#[test]
fn information_received_restarts_the_clock_and_can_approve() {
    let req = request(vec![line("70553", Setting::Outpatient)]);
    let (mut case, _) = PrecertCase::submit("PC-4", req, None, &provider(), &ctx(), t0()).unwrap();
    // Thursday 2026-03-12 15:00 New York: due two business days later, Monday.
    let received = utc("2026-03-12T19:00:00Z");
    let events = case
        .supply_information(
            &member(),
            answers(&[("red_flag_symptoms", Answer::Bool(true))]),
            vec![record("clinical_notes")],
            &ctx(),
            received,
        )
        .unwrap();
    assert_eq!(
        kinds(&events),
        [event_kinds::INFORMATION_RECEIVED, event_kinds::APPROVED]
    );
    assert_eq!(case.state, CaseState::Approved);
    assert_eq!(case.due.at, utc("2026-03-16T21:00:00Z"));
    assert_eq!(case.original_due.at, utc("2026-03-11T21:00:00Z"));
    let summary = case.summary(received);
    assert!(!summary.decided_late);
    assert_eq!(summary.final_outcome, FinalOutcome::Approved);
}

#[test]
fn claiming_and_releasing() {
    let mut case = pended_for_review(1);
    denied(
        case.claim(&provider(), t0()),
        PermissionReason::Role {
            role: Role::Provider,
        },
    );
    denied(
        case.claim(&admin(), t0()),
        PermissionReason::Role { role: Role::Admin },
    );
    let events = case.claim(&nurse(), t0()).unwrap();
    assert_eq!(kinds(&events), [event_kinds::CLAIMED]);
    assert_eq!(case.state, CaseState::InReview);
    illegal(case.claim(&radiologist(), t0()), CaseState::InReview);
    denied(
        case.release(&radiologist(), t0()),
        PermissionReason::NotTheClaimant {
            claimed_by: "RN-001 (nurse)".into(),
        },
    );
    case.release(&nurse(), t0()).unwrap();
    assert_eq!(case.state, CaseState::PendedReview);
    illegal(case.release(&nurse(), t0()), CaseState::PendedReview);
    illegal(case.approve(&nurse(), "ok", t0()), CaseState::PendedReview);
    case.claim(&radiologist(), t0()).unwrap();
    case.release(&admin(), t0()).unwrap();
    assert!(case.claimed_by.is_none());
}

#[test]
fn nurses_approve_but_never_deny() {
    let mut case = in_review(&nurse());
    denied(
        case.deny(&nurse(), adverse(), t0()),
        PermissionReason::Role { role: Role::Nurse },
    );
    denied(
        case.approve_in_part(
            &nurse(),
            &[LineApproval {
                line: 0,
                approved_units: 0,
                approved_days: None,
            }],
            adverse(),
            t0(),
        ),
        PermissionReason::Role { role: Role::Nurse },
    );
    // Someone else may not decide a case the nurse holds.
    denied(
        case.approve(&radiologist(), "fine", t0()),
        PermissionReason::NotTheClaimant {
            claimed_by: "RN-001 (nurse)".into(),
        },
    );
    invalid(case.approve(&nurse(), "  ", t0()), "note");
    let events = case
        .approve(&nurse(), "criteria met on review of the notes", t0())
        .unwrap();
    assert_eq!(kinds(&events), [event_kinds::APPROVED]);
    assert_eq!(case.state, CaseState::Approved);
    assert_eq!(events[0].payload["decided_by"]["role"], "nurse");
}

#[test]
fn only_a_physician_of_the_named_specialty_denies() {
    let mut case = in_review(&orthopaedist());
    denied(
        case.deny(&orthopaedist(), adverse(), t0()),
        PermissionReason::SpecialtyMismatch {
            required: "radiology".into(),
            actual: "orthopaedic_surgery".into(),
        },
    );
    case.release(&orthopaedist(), t0()).unwrap();
    case.claim(&radiologist(), t0()).unwrap();

    // Reason, rationale and guideline are all required.
    let mut bad = adverse();
    bad.rationale = "no".into();
    bad.guideline = " ".into();
    match case.deny(&radiologist(), bad, t0()) {
        Err(WorkflowError::Invalid(i)) => {
            let fields: Vec<&str> = i.violations.iter().map(|v| v.field.as_str()).collect();
            assert_eq!(fields, ["rationale", "guideline"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(AdverseDetermination::new("because", "A long enough rationale.", "G").is_err());

    let when = t0() + Duration::hours(3);
    let events = case.deny(&radiologist(), adverse(), when).unwrap();
    assert_eq!(kinds(&events), [event_kinds::DENIED]);
    assert_eq!(case.state, CaseState::Denied);
    let p = &events[0].payload;
    assert_eq!(p["reason_code"], "not_medically_necessary");
    assert_eq!(
        p["guideline"],
        "Illustrative imaging criteria: MRI brain, section 2"
    );
    assert_eq!(
        p["appeal_instructions"]["expedited_appeal_decision_hours"],
        72
    );
    assert_eq!(
        p["appeal_instructions"]["peer_to_peer_specialty"],
        "radiology"
    );
    assert_eq!(p["decided_by"]["staff_id"], "MD-RAD-01");
    let decision = case.current_decision().unwrap();
    assert_eq!(
        decision.adverse.as_ref().unwrap().reason_code,
        ReasonCode::NotMedicallyNecessary
    );
    assert_eq!(decision.lines[0].approved_units, 0);
    // Decided: never edited again.
    illegal(
        case.deny(&radiologist(), adverse(), when),
        CaseState::Denied,
    );
    illegal(
        case.approve(&radiologist(), "changed my mind", when),
        CaseState::Denied,
    );
    illegal(case.claim(&radiologist(), when), CaseState::Denied);
    illegal(
        case.withdraw(&provider(), WithdrawReason::ByRequester, "", when),
        CaseState::Denied,
    );
}

#[test]
fn partial_approval_is_checked() {
    let mut case = pended_for_review(3);
    case.claim(&radiologist(), t0()).unwrap();
    let part = |units| {
        [LineApproval {
            line: 0,
            approved_units: units,
            approved_days: None,
        }]
    };
    invalid(
        case.approve_in_part(&radiologist(), &part(4), adverse(), t0()),
        "lines[0].approved_units",
    );
    invalid(
        case.approve_in_part(&radiologist(), &part(3), adverse(), t0()),
        "lines",
    );
    invalid(
        case.approve_in_part(&radiologist(), &part(0), adverse(), t0()),
        "lines",
    );
    invalid(
        case.approve_in_part(
            &radiologist(),
            &[LineApproval {
                line: 5,
                approved_units: 1,
                approved_days: None,
            }],
            adverse(),
            t0(),
        ),
        "lines[0].line",
    );
    invalid(
        case.approve_in_part(
            &radiologist(),
            &[LineApproval {
                line: 0,
                approved_units: 1,
                approved_days: Some(1),
            }],
            adverse(),
            t0(),
        ),
        "lines[0].approved_days",
    );
    let events = case
        .approve_in_part(&radiologist(), &part(1), adverse(), t0())
        .unwrap();
    assert_eq!(kinds(&events), [event_kinds::PARTIALLY_APPROVED]);
    assert_eq!(case.state, CaseState::PartiallyApproved);
    let lines = &case.current_decision().unwrap().lines;
    assert_eq!((lines[0].requested_units, lines[0].approved_units), (3, 1));
}

#[test]
fn peer_to_peer_with_a_physician_of_the_same_specialty() {
    let mut case = denied_case();
    denied(
        case.request_peer_to_peer(&member(), t0()),
        PermissionReason::Role { role: Role::Member },
    );
    denied(
        case.request_peer_to_peer(&other_provider(), t0()),
        PermissionReason::NotTheRequester,
    );
    let events = case.request_peer_to_peer(&provider(), t0()).unwrap();
    assert_eq!(kinds(&events), [event_kinds::PEER_TO_PEER_REQUESTED]);
    assert_eq!(events[0].payload["required_specialty"], "radiology");
    illegal(
        case.request_peer_to_peer(&provider(), t0()),
        CaseState::PeerToPeerRequested,
    );

    let soon = t0() + Duration::days(1);
    denied(
        case.schedule_peer_to_peer(&admin(), staff(&orthopaedist()), soon, t0()),
        PermissionReason::SpecialtyMismatch {
            required: "radiology".into(),
            actual: "orthopaedic_surgery".into(),
        },
    );
    denied(
        case.schedule_peer_to_peer(&admin(), staff(&nurse()), soon, t0()),
        PermissionReason::Role { role: Role::Nurse },
    );
    denied(
        case.schedule_peer_to_peer(&provider(), staff(&radiologist2()), soon, t0()),
        PermissionReason::Role {
            role: Role::Provider,
        },
    );
    invalid(
        case.schedule_peer_to_peer(&admin(), staff(&radiologist2()), t0(), t0()),
        "scheduled_for",
    );
    let events = case
        .schedule_peer_to_peer(&admin(), staff(&radiologist2()), soon, t0())
        .unwrap();
    assert_eq!(kinds(&events), [event_kinds::PEER_TO_PEER_SCHEDULED]);
    assert_eq!(events[0].payload["physician"]["staff_id"], "MD-RAD-02");
    illegal(
        case.request_peer_to_peer(&provider(), t0()),
        CaseState::PeerToPeerScheduled,
    );
    illegal(
        case.reconsider(
            &provider(),
            answers(&[("bmi", Answer::Number(1.0))]),
            vec![],
            &ctx(),
            t0(),
        ),
        CaseState::PeerToPeerScheduled,
    );

    denied(
        case.complete_peer_to_peer(
            &radiologist(),
            PeerToPeerOutcome::DecisionStands,
            "discussed",
            soon,
        ),
        PermissionReason::NotTheScheduledPhysician,
    );
    let events = case
        .complete_peer_to_peer(
            &radiologist2(),
            PeerToPeerOutcome::DecisionStands,
            "discussed; no new findings",
            soon,
        )
        .unwrap();
    assert_eq!(kinds(&events), [event_kinds::PEER_TO_PEER_COMPLETED]);
    assert_eq!(case.state, CaseState::Denied);
    // Offered once.
    assert!(matches!(
        case.request_peer_to_peer(&provider(), soon),
        Err(WorkflowError::Precondition { .. })
    ));
}

#[test]
fn peer_to_peer_can_overturn() {
    let mut case = denied_case();
    case.requesting_specialty = Some(Specialty::parse("radiology").unwrap());
    case.request_peer_to_peer(&provider(), t0()).unwrap();
    let soon = t0() + Duration::days(1);
    case.schedule_peer_to_peer(&radiologist2(), staff(&radiologist2()), soon, t0())
        .unwrap();
    let events = case
        .complete_peer_to_peer(
            &radiologist2(),
            PeerToPeerOutcome::Overturned,
            "red-flag finding discussed",
            soon,
        )
        .unwrap();
    assert_eq!(
        kinds(&events),
        [event_kinds::PEER_TO_PEER_COMPLETED, event_kinds::APPROVED]
    );
    assert_eq!(case.state, CaseState::Approved);
    // The denial is kept; the approval is a new decision.
    assert_eq!(case.decisions.len(), 2);
    assert_eq!(case.decisions[0].outcome, DecisionOutcome::Denied);
    assert_eq!(case.decisions[1].stage, DecisionStage::PeerToPeer);
}

#[test]
fn reconsideration_runs_automation_again() {
    let mut case = denied_case();
    denied(
        case.reconsider(
            &other_provider(),
            answers(&[("red_flag_symptoms", Answer::Bool(true))]),
            vec![],
            &ctx(),
            t0(),
        ),
        PermissionReason::NotTheRequester,
    );
    invalid(
        case.reconsider(&provider(), Default::default(), vec![], &ctx(), t0()),
        "answers",
    );

    // Still not met: back to review, with a fresh clock.
    let mut again = case.clone();
    let when = t0() + Duration::days(2);
    let events = again
        .reconsider(
            &provider(),
            answers(&[("conservative_therapy_weeks", Answer::Number(3.0))]),
            vec![],
            &ctx(),
            when,
        )
        .unwrap();
    assert_eq!(
        kinds(&events),
        [event_kinds::RECONSIDERED, event_kinds::PENDED_FOR_REVIEW]
    );
    assert_eq!(again.state, CaseState::PendedReview);
    assert!(again.due.at > when);
    // A reviewer deciding now decides a reconsideration.
    again.claim(&radiologist2(), when).unwrap();
    again
        .approve(&radiologist2(), "approved on reconsideration", when)
        .unwrap();
    assert_eq!(
        again.current_decision().unwrap().stage,
        DecisionStage::Reconsideration
    );

    // Met: approved by automation.
    let events = case
        .reconsider(
            &member(),
            answers(&[("red_flag_symptoms", Answer::Bool(true))]),
            vec![],
            &ctx(),
            when,
        )
        .unwrap();
    assert_eq!(
        kinds(&events),
        [event_kinds::RECONSIDERED, event_kinds::APPROVED]
    );
    assert_eq!(case.state, CaseState::Approved);
    assert_eq!(
        case.current_decision().unwrap().stage,
        DecisionStage::Reconsideration
    );
    assert_eq!(case.decisions[0].outcome, DecisionOutcome::Denied);
}

#[test]
fn appeals_are_decided_by_another_physician() {
    let mut case = denied_case();
    denied(
        case.appeal(&other_provider(), AppealPriority::Expedited, "urgent", t0()),
        PermissionReason::NotTheRequester,
    );
    denied(
        case.appeal(&nurse(), AppealPriority::Expedited, "urgent", t0()),
        PermissionReason::NotTheRequester,
    );
    invalid(
        case.appeal(&member(), AppealPriority::Expedited, " ", t0()),
        "reason",
    );
    let filed = t0() + Duration::days(1);
    let events = case
        .appeal(
            &member(),
            AppealPriority::Expedited,
            "symptoms worsening",
            filed,
        )
        .unwrap();
    assert_eq!(kinds(&events), [event_kinds::APPEAL_REQUESTED]);
    assert_eq!(
        case.appeal.as_ref().unwrap().due_at,
        filed + Duration::hours(72)
    );
    assert_eq!(case.state, CaseState::AppealRequested);
    assert!(case.is_late(filed + Duration::hours(73)));
    assert!(!case.is_late(filed + Duration::hours(71)));
    illegal(
        case.appeal(&member(), AppealPriority::Standard, "again", filed),
        CaseState::AppealRequested,
    );

    denied(
        case.decide_appeal(
            &radiologist(),
            AppealDecision::Overturned {
                rationale: "x".into(),
            },
            filed,
        ),
        PermissionReason::SameReviewer,
    );
    denied(
        case.decide_appeal(
            &nurse(),
            AppealDecision::Overturned {
                rationale: "x".into(),
            },
            filed,
        ),
        PermissionReason::Role { role: Role::Nurse },
    );
    denied(
        case.decide_appeal(
            &orthopaedist(),
            AppealDecision::Overturned {
                rationale: "x".into(),
            },
            filed,
        ),
        PermissionReason::SpecialtyMismatch {
            required: "radiology".into(),
            actual: "orthopaedic_surgery".into(),
        },
    );
    invalid(
        case.decide_appeal(
            &radiologist2(),
            AppealDecision::Overturned {
                rationale: " ".into(),
            },
            filed,
        ),
        "rationale",
    );

    let mut upheld = case.clone();
    let events = upheld
        .decide_appeal(
            &radiologist2(),
            AppealDecision::Upheld { adverse: adverse() },
            filed + Duration::hours(5),
        )
        .unwrap();
    assert_eq!(kinds(&events), [event_kinds::APPEAL_DECIDED]);
    assert_eq!(events[0].payload["outcome"], "upheld");
    assert_eq!(events[0].payload["external_review_available"], true);
    assert_eq!(upheld.state, CaseState::AppealUpheld);
    assert_eq!(upheld.summary(filed).final_outcome, FinalOutcome::Denied);

    let events = case
        .decide_appeal(
            &radiologist2(),
            AppealDecision::Overturned {
                rationale: "new imaging supports the request".into(),
            },
            filed + Duration::hours(5),
        )
        .unwrap();
    assert_eq!(events[0].payload["outcome"], "overturned");
    assert_eq!(case.state, CaseState::AppealOverturned);
    assert!(case.summary(filed).approved_on_appeal);
    illegal(
        case.decide_appeal(
            &radiologist2(),
            AppealDecision::Upheld { adverse: adverse() },
            filed,
        ),
        CaseState::AppealOverturned,
    );
    illegal(
        case.reconsider(
            &provider(),
            answers(&[("bmi", Answer::Number(1.0))]),
            vec![],
            &ctx(),
            filed,
        ),
        CaseState::AppealOverturned,
    );
}

#[test]
fn the_appeal_window_closes_after_180_days() {
    let mut case = denied_case();
    let late = t0() + Duration::days(181);
    let err = case
        .appeal(&provider(), AppealPriority::Standard, "too late", late)
        .unwrap_err();
    assert!(matches!(err, WorkflowError::Precondition { .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::FailedPrecondition);
    let events = case
        .appeal(
            &provider(),
            AppealPriority::Standard,
            "in time",
            t0() + Duration::days(100),
        )
        .unwrap();
    assert_eq!(
        case.appeal.as_ref().unwrap().due_at,
        t0() + Duration::days(130)
    );
    assert_eq!(events[0].payload["priority"], "standard");
}

#[test]
fn reviewers_ask_for_information() {
    let mut case = pended_for_review(1);
    let missing = Missing {
        questions: vec![MissingQuestion {
            id: "prior_imaging_inconclusive".into(),
            text: "Was prior imaging inconclusive?".into(),
            answer: carepath_precert::AnswerKind::Bool,
        }],
        documents: vec![],
    };
    denied(
        case.request_information(&provider(), missing.clone(), &ctx(), t0()),
        PermissionReason::Role {
            role: Role::Provider,
        },
    );
    invalid(
        case.request_information(&nurse(), Missing::default(), &ctx(), t0()),
        "missing",
    );
    case.claim(&radiologist(), t0()).unwrap();
    denied(
        case.request_information(&nurse(), missing.clone(), &ctx(), t0()),
        PermissionReason::NotTheClaimant {
            claimed_by: "MD-RAD-01 (physician_reviewer)".into(),
        },
    );
    let events = case
        .request_information(&radiologist(), missing, &ctx(), t0())
        .unwrap();
    assert_eq!(kinds(&events), [event_kinds::INFORMATION_REQUESTED]);
    assert_eq!(case.state, CaseState::PendedInformation);
    assert!(case.claimed_by.is_none());
    // The requester withdraws instead of answering.
    denied(
        case.withdraw(&nurse(), WithdrawReason::ByRequester, "", t0()),
        PermissionReason::NotTheRequester,
    );
    let events = case
        .withdraw(
            &member(),
            WithdrawReason::ByRequester,
            "  chose another treatment ",
            t0(),
        )
        .unwrap();
    assert_eq!(case.state, CaseState::Withdrawn);
    assert_eq!(
        case.history.last().unwrap().note,
        "withdrawn by the requester: chose another treatment"
    );
    assert_eq!(events[0].payload["note"], "chose another treatment");
    assert_eq!(events[0].payload["reason"], "by_requester");
    illegal(
        case.withdraw(&member(), WithdrawReason::ByRequester, "", t0()),
        CaseState::Withdrawn,
    );
}

#[test]
fn history_records_every_transition() {
    let mut case = denied_case();
    case.appeal(
        &provider(),
        AppealPriority::Standard,
        "disagree",
        t0() + Duration::days(1),
    )
    .unwrap();
    let actions: Vec<String> = case.history.iter().map(|h| h.action.to_string()).collect();
    assert_eq!(actions, ["submit", "determine", "claim", "deny", "appeal"]);
    let deny = &case.history[3];
    assert_eq!(
        (deny.from, deny.to),
        (CaseState::InReview, CaseState::Denied)
    );
    assert_eq!(deny.by.role, Role::PhysicianReviewer);
    assert_eq!(deny.by.specialty.as_ref().unwrap().as_str(), "radiology");
    assert!(
        deny.note.starts_with("not_medically_necessary: "),
        "{}",
        deny.note
    );
    // States chain: each entry starts where the previous ended.
    for pair in case.history.windows(2) {
        assert_eq!(pair[0].to, pair[1].from);
    }
}

#[test]
fn the_case_round_trips_through_json() {
    let mut case = denied_case();
    case.appeal(&provider(), AppealPriority::Expedited, "worse", t0())
        .unwrap();
    let json = serde_json::to_string(&case).unwrap();
    let back: PrecertCase = serde_json::from_str(&json).unwrap();
    assert_eq!(back, case);
    let value = serde_json::to_value(&case).unwrap();
    assert_eq!(value["state"], "appeal_requested");
}

#[test]
fn metrics_from_cases() {
    let mut approved = pended_for_review(1);
    approved.claim(&nurse(), t0()).unwrap();
    approved
        .approve(&nurse(), "criteria met", t0() + Duration::hours(4))
        .unwrap();
    let denied = denied_case();
    let mut late = pended_for_review(1);
    late.id = "PC-late".into();
    let as_of = t0() + Duration::days(10);
    let summaries: Vec<_> = [&approved, &denied, &late]
        .iter()
        .map(|c| c.summary(as_of))
        .collect();
    let m = metrics(&summaries, t0() - Duration::days(1), as_of);
    assert_eq!(m.standard.received, 3);
    assert_eq!(m.standard.decided, 2);
    assert_eq!((m.standard.approved, m.standard.denied), (1, 1));
    assert_eq!(m.standard.median_hours_to_decision, Some(3.0));
    assert_eq!(m.late_cases, 1);
    assert_eq!(m.expedited.received, 0);
}
