//! The precertification case workflow end to end through the real server, on both
//! backends: each transition a reviewer, a physician or the requester makes (approval
//! after a claim, approval in part, the paths after an adverse decision, reconsideration,
//! information requests, withdrawal), who may make it, what the case, its decisions,
//! its history and its outbox events say afterwards, and how cases are listed and
//! queued for review.

use carepath_core::Role;
use carepath_proto::{
    common::v1::{PageRequest, Urgency},
    precert::v1::{self as pb, precert_service_client::PrecertServiceClient},
};
use carepath_server::convert::timestamp;
use carepath_tests::{
    TestDb, TestServer, contract_tests,
    precert::{
        HOSPITAL, IMAGING_IN, INTERNIST, MEMBER, client, flag, hospital_stay, mri, number, record,
    },
};
use chrono::{DateTime, Duration, Utc};
use tonic::{Code, transport::Channel};

contract_tests!(
    a_nurse_approves_a_case_she_claimed,
    peer_to_peer_overturns_a_denial,
    an_appeal_is_upheld_by_a_physician_other_than_the_denier,
    reconsideration_runs_automation_on_the_new_information,
    reviewers_ask_for_information_and_answers_go_back_through_automation,
    requesters_withdraw_undecided_cases_and_decided_cases_stay_as_decided,
    physicians_approve_in_part_and_the_paths_after_a_partial_approval,
    providers_list_their_cases_by_status_and_date_page_by_page,
    the_review_queue_puts_urgent_cases_first_and_marks_late_ones,
    list_cases_received_range_keeps_sub_second_bounds,
);

/// The aggregate kind precertification events are recorded under.
const CASE: &str = "precert_case";

const NURSE: &str = "RN-004";
const OTHER_NURSE: &str = "RN-001";
const RADIOLOGIST: &str = "MD-RAD-01";
const SECOND_RADIOLOGIST: &str = "MD-RAD-02";
const ORTHOPAEDIST: &str = "MD-ORT-01";
const INTERNIST_REVIEWER: &str = "MD-IM-01";
const CARDIOLOGIST_REVIEWER: &str = "MD-CAR-01";

const REASON: &str = "not_medically_necessary";
const RATIONALE: &str = "Two weeks of conservative therapy and no red-flag symptoms.";
const GUIDELINE: &str = "Advanced imaging criteria AI-12, section 3 (illustrative)";

/// Answers IMG-MRI evaluates that do not meet its criteria.
fn criteria_not_met() -> Vec<pb::ClinicalAnswer> {
    vec![
        flag("red_flag_symptoms", false),
        number("conservative_therapy_weeks", 2.0),
    ]
}

fn instant(ts: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    let ts = ts.expect("timestamp present");
    DateTime::from_timestamp(ts.seconds, ts.nanos as u32).expect("valid timestamp")
}

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().expect("valid instant")
}

/// The last history entry as (action, from, to, actor subject, actor role).
fn last_step(case: &pb::Case) -> (&str, &str, &str, &str, &str) {
    step(case.history.last().expect("history"))
}

fn step(h: &pb::HistoryEntry) -> (&str, &str, &str, &str, &str) {
    (
        h.action.as_str(),
        h.from_status.as_str(),
        h.to_status.as_str(),
        h.actor_subject.as_str(),
        h.actor_role.as_str(),
    )
}

/// (outcome, stage, decided_by, decided_by_role, reason_code, guideline).
fn summary(d: &pb::Decision) -> (&str, &str, &str, &str, &str, &str) {
    (
        d.outcome.as_str(),
        d.stage.as_str(),
        d.decided_by.as_str(),
        d.decided_by_role.as_str(),
        d.reason_code.as_str(),
        d.guideline.as_str(),
    )
}

fn line_decision(
    requested_units: u32,
    approved_units: u32,
    requested_days: u32,
    approved_days: u32,
) -> pb::LineDecision {
    pb::LineDecision {
        line_number: 1,
        requested_units,
        approved_units,
        requested_days,
        approved_days,
    }
}

fn ids(cases: &[pb::Case]) -> Vec<&str> {
    cases.iter().map(|c| c.id.as_str()).collect()
}

fn kinds(names: &[&str]) -> Vec<String> {
    names.iter().map(|k| format!("precert.case.{k}")).collect()
}

/// The workflow driven through one server, as each role.
struct Flow<'a> {
    server: &'a TestServer,
    c: PrecertServiceClient<Channel>,
}

impl<'a> Flow<'a> {
    async fn new(server: &'a TestServer) -> Flow<'a> {
        Flow {
            server,
            c: client(server.channel().await),
        }
    }

    fn provider(&self) -> String {
        self.server.token(Role::Provider, IMAGING_IN)
    }

    fn staff(&self, role: Role, id: &str) -> String {
        self.server.token(role, id)
    }

    fn nurse(&self, id: &str) -> String {
        self.staff(Role::Nurse, id)
    }

    fn physician(&self, id: &str) -> String {
        self.staff(Role::PhysicianReviewer, id)
    }

    async fn submit(&mut self, token: &str, req: pb::SubmitRequest) -> pb::Case {
        let response = self
            .c
            .submit(self.server.request(token, req))
            .await
            .unwrap()
            .into_inner();
        assert!(response.created);
        response.case.unwrap()
    }

    /// An MRI whose criteria are not met, waiting in the review queue.
    async fn pended_review(&mut self, request_id: &str, units: u32) -> pb::Case {
        let mut req = mri(request_id, criteria_not_met());
        req.lines[0].units = units;
        let token = self.provider();
        let case = self.submit(&token, req).await;
        assert_eq!(case.status(), pb::CaseStatus::PendedReview);
        assert!(case.decisions.is_empty(), "automation never denies");
        case
    }

    async fn get(&mut self, token: &str, id: &str) -> pb::Case {
        self.c
            .get_case(
                self.server
                    .request(token, pb::GetCaseRequest { id: id.into() }),
            )
            .await
            .unwrap()
            .into_inner()
            .case
            .unwrap()
    }

    async fn claim(&mut self, token: &str, id: &str) -> Result<pb::Case, tonic::Status> {
        self.c
            .claim_case(
                self.server
                    .request(token, pb::ClaimCaseRequest { case_id: id.into() }),
            )
            .await
            .map(|r| r.into_inner().case.unwrap())
    }

    async fn release(&mut self, token: &str, id: &str) -> pb::Case {
        self.c
            .release_case(
                self.server
                    .request(token, pb::ReleaseCaseRequest { case_id: id.into() }),
            )
            .await
            .unwrap()
            .into_inner()
            .case
            .unwrap()
    }

    async fn decide(
        &mut self,
        token: &str,
        req: pb::RecordDecisionRequest,
    ) -> Result<pb::Case, tonic::Status> {
        self.c
            .record_decision(self.server.request(token, req))
            .await
            .map(|r| r.into_inner().case.unwrap())
    }

    async fn approve(
        &mut self,
        token: &str,
        id: &str,
        note: &str,
    ) -> Result<pb::Case, tonic::Status> {
        self.decide(
            token,
            pb::RecordDecisionRequest {
                case_id: id.into(),
                outcome: pb::DecisionOutcome::Approved as i32,
                note: note.into(),
                ..Default::default()
            },
        )
        .await
    }

    async fn deny(&mut self, token: &str, id: &str) -> Result<pb::Case, tonic::Status> {
        self.decide(
            token,
            pb::RecordDecisionRequest {
                case_id: id.into(),
                outcome: pb::DecisionOutcome::Denied as i32,
                reason_code: REASON.into(),
                rationale: RATIONALE.into(),
                guideline: GUIDELINE.into(),
                ..Default::default()
            },
        )
        .await
    }

    async fn approve_in_part(
        &mut self,
        token: &str,
        id: &str,
        units: u32,
        days: u32,
    ) -> Result<pb::Case, tonic::Status> {
        self.decide(
            token,
            pb::RecordDecisionRequest {
                case_id: id.into(),
                outcome: pb::DecisionOutcome::PartiallyApproved as i32,
                reason_code: "lower_level_of_care".into(),
                rationale: "Fewer units meet the need documented in the notes.".into(),
                guideline: "Utilization criteria UC-7, section 2 (illustrative)".into(),
                lines: vec![pb::LineApproval {
                    line_number: 1,
                    approved_units: units,
                    approved_days: days,
                }],
                ..Default::default()
            },
        )
        .await
    }

    /// An MRI pended for review, claimed and denied by `RADIOLOGIST`.
    async fn denied(&mut self, request_id: &str) -> pb::Case {
        let case = self.pended_review(request_id, 1).await;
        let radiologist = self.physician(RADIOLOGIST);
        self.claim(&radiologist, &case.id).await.unwrap();
        let denied = self.deny(&radiologist, &case.id).await.unwrap();
        assert_eq!(denied.status(), pb::CaseStatus::Denied);
        denied
    }

    async fn supply(
        &mut self,
        token: &str,
        id: &str,
        answers: Vec<pb::ClinicalAnswer>,
        records: Vec<pb::RecordReference>,
    ) -> Result<pb::Case, tonic::Status> {
        self.c
            .supply_information(self.server.request(
                token,
                pb::SupplyInformationRequest {
                    case_id: id.into(),
                    answers,
                    records,
                },
            ))
            .await
            .map(|r| r.into_inner().case.unwrap())
    }

    async fn withdraw(&mut self, token: &str, id: &str) -> Result<pb::Case, tonic::Status> {
        self.c
            .withdraw_case(self.server.request(
                token,
                pb::WithdrawCaseRequest {
                    case_id: id.into(),
                    reason: "the member chose another treatment".into(),
                },
            ))
            .await
            .map(|r| r.into_inner().case.unwrap())
    }

    async fn request_information(
        &mut self,
        token: &str,
        id: &str,
        missing: Vec<pb::RequiredItem>,
    ) -> Result<pb::Case, tonic::Status> {
        self.c
            .request_information(self.server.request(
                token,
                pb::RequestInformationRequest {
                    case_id: id.into(),
                    missing,
                },
            ))
            .await
            .map(|r| r.into_inner().case.unwrap())
    }

    async fn request_peer_to_peer(
        &mut self,
        token: &str,
        id: &str,
    ) -> Result<pb::Case, tonic::Status> {
        self.c
            .request_peer_to_peer(
                self.server
                    .request(token, pb::RequestPeerToPeerRequest { case_id: id.into() }),
            )
            .await
            .map(|r| r.into_inner().case.unwrap())
    }

    async fn schedule_peer_to_peer(
        &mut self,
        token: &str,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<pb::Case, tonic::Status> {
        self.c
            .schedule_peer_to_peer(self.server.request(
                token,
                pb::SchedulePeerToPeerRequest {
                    case_id: id.into(),
                    scheduled_for: Some(timestamp(at)),
                },
            ))
            .await
            .map(|r| r.into_inner().case.unwrap())
    }

    async fn complete_peer_to_peer(
        &mut self,
        token: &str,
        id: &str,
        overturned: bool,
        note: &str,
    ) -> Result<pb::Case, tonic::Status> {
        self.c
            .complete_peer_to_peer(self.server.request(
                token,
                pb::CompletePeerToPeerRequest {
                    case_id: id.into(),
                    overturned,
                    note: note.into(),
                },
            ))
            .await
            .map(|r| r.into_inner().case.unwrap())
    }

    async fn reconsider(
        &mut self,
        token: &str,
        id: &str,
        answers: Vec<pb::ClinicalAnswer>,
    ) -> Result<pb::Case, tonic::Status> {
        self.c
            .request_reconsideration(self.server.request(
                token,
                pb::RequestReconsiderationRequest {
                    case_id: id.into(),
                    answers,
                    records: vec![],
                },
            ))
            .await
            .map(|r| r.into_inner().case.unwrap())
    }

    async fn appeal(
        &mut self,
        token: &str,
        id: &str,
        expedited: bool,
    ) -> Result<pb::Case, tonic::Status> {
        self.c
            .request_appeal(self.server.request(
                token,
                pb::RequestAppealRequest {
                    case_id: id.into(),
                    expedited,
                    reason: "symptoms have worsened since the request".into(),
                },
            ))
            .await
            .map(|r| r.into_inner().case.unwrap())
    }

    async fn decide_appeal(
        &mut self,
        token: &str,
        req: pb::DecideAppealRequest,
    ) -> Result<pb::Case, tonic::Status> {
        self.c
            .decide_appeal(self.server.request(token, req))
            .await
            .map(|r| r.into_inner().case.unwrap())
    }

    async fn queue(&mut self, token: &str) -> Vec<pb::Case> {
        self.c
            .list_review_queue(
                self.server
                    .request(token, pb::ListReviewQueueRequest::default()),
            )
            .await
            .unwrap()
            .into_inner()
            .cases
    }

    async fn list(&mut self, token: &str, req: pb::ListCasesRequest) -> pb::ListCasesResponse {
        self.c
            .list_cases(self.server.request(token, req))
            .await
            .unwrap()
            .into_inner()
    }
}

fn uphold(id: &str) -> pb::DecideAppealRequest {
    pb::DecideAppealRequest {
        case_id: id.into(),
        overturn: false,
        reason_code: REASON.into(),
        rationale: "The records still show no red-flag symptoms.".into(),
        guideline: GUIDELINE.into(),
    }
}

fn code_of<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
    result.expect_err("the call is refused").code()
}

async fn a_nurse_approves_a_case_she_claimed(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut f = Flow::new(&server).await;
    let nurse = f.nurse(NURSE);
    let other_nurse = f.nurse(OTHER_NURSE);
    let case = f.pended_review("req-nurse-1", 1).await;
    let id = case.id.clone();
    assert_eq!(
        last_step(&case),
        (
            "determine",
            "received",
            "pended_review",
            "precert-automation",
            "service"
        )
    );

    assert_eq!(
        code_of(f.approve(&nurse, &id, "criteria met on review").await),
        Code::FailedPrecondition,
        "a case is claimed before it is decided"
    );
    let claimed = f.claim(&nurse, &id).await.unwrap();
    assert_eq!(
        (claimed.status(), claimed.claimed_by.as_str()),
        (pb::CaseStatus::InReview, NURSE)
    );
    assert_eq!(
        last_step(&claimed),
        ("claim", "pended_review", "in_review", NURSE, "nurse")
    );
    assert_eq!(
        code_of(f.claim(&other_nurse, &id).await),
        Code::FailedPrecondition,
        "a claimed case cannot be claimed again"
    );
    assert_eq!(
        code_of(f.approve(&other_nurse, &id, "criteria met on review").await),
        Code::PermissionDenied,
        "only the claimant decides"
    );
    assert_eq!(
        code_of(f.approve(&nurse, &id, "  ").await),
        Code::InvalidArgument,
        "an approval says on what basis"
    );

    let approved = f
        .approve(
            &nurse,
            &id,
            "Symptoms documented in the notes meet the criteria.",
        )
        .await
        .unwrap();
    assert_eq!(approved.status(), pb::CaseStatus::Approved);
    assert_eq!(approved.claimed_by, "", "a decided case is held by nobody");
    assert_eq!(approved.decisions.len(), 1);
    let d = &approved.decisions[0];
    assert_eq!(summary(d), ("approved", "initial", NURSE, "nurse", "", ""));
    assert_eq!(
        d.note,
        "Symptoms documented in the notes meet the criteria."
    );
    assert_eq!(d.lines, [line_decision(1, 1, 0, 0)]);
    assert_eq!(instant(d.decided_at.as_ref()), server.clock_now());
    assert_eq!(
        last_step(&approved),
        ("approve", "in_review", "approved", NURSE, "nurse")
    );
    assert!(!approved.late);

    let stored = f.get(&f.provider(), &id).await;
    assert_eq!(stored.status(), pb::CaseStatus::Approved);
    assert_eq!(stored.history, approved.history);
    assert!(
        f.queue(&nurse).await.iter().all(|q| q.id != id),
        "a decided case leaves the review queue"
    );
    assert_eq!(
        db.event_kinds(CASE, &id).await,
        kinds(&["submitted", "pended_for_review", "claimed", "approved"])
    );
    server.stop().await;
}

async fn peer_to_peer_overturns_a_denial(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut f = Flow::new(&server).await;
    let provider = f.provider();
    let radiologist = f.physician(RADIOLOGIST);
    let second = f.physician(SECOND_RADIOLOGIST);
    let denied = f.denied("req-p2p-1").await;
    let id = denied.id.clone();
    let d = &denied.decisions[0];
    assert_eq!(
        summary(d),
        (
            "denied",
            "initial",
            RADIOLOGIST,
            "physician_reviewer",
            REASON,
            GUIDELINE
        )
    );
    assert_eq!(d.decided_by_specialty, "radiology");
    assert_eq!(d.rationale, RATIONALE);
    assert_eq!(d.lines, [line_decision(1, 0, 0, 0)]);
    assert_eq!(
        last_step(&denied),
        (
            "deny",
            "in_review",
            "denied",
            RADIOLOGIST,
            "physician_reviewer"
        )
    );

    assert_eq!(
        code_of(f.request_peer_to_peer(&f.nurse(NURSE), &id).await),
        Code::PermissionDenied,
        "the requesting provider asks for a peer-to-peer"
    );
    let requested = f.request_peer_to_peer(&provider, &id).await.unwrap();
    assert_eq!(requested.status(), pb::CaseStatus::PeerToPeerRequested);
    assert_eq!(
        last_step(&requested),
        (
            "request_peer_to_peer",
            "denied",
            "peer_to_peer_requested",
            IMAGING_IN,
            "provider"
        )
    );

    let at = server.clock_now() + Duration::days(1);
    assert_eq!(
        code_of(
            f.schedule_peer_to_peer(&f.physician(ORTHOPAEDIST), &id, at)
                .await
        ),
        Code::PermissionDenied,
        "the peer is a radiologist, like the requesting provider"
    );
    assert_eq!(
        code_of(
            f.schedule_peer_to_peer(&second, &id, server.clock_now() - Duration::hours(1))
                .await
        ),
        Code::InvalidArgument,
        "a peer-to-peer is scheduled in the future"
    );
    let scheduled = f.schedule_peer_to_peer(&second, &id, at).await.unwrap();
    assert_eq!(scheduled.status(), pb::CaseStatus::PeerToPeerScheduled);
    assert_eq!(scheduled.peer_to_peer_physician, SECOND_RADIOLOGIST);
    assert_eq!(instant(scheduled.peer_to_peer_scheduled_for.as_ref()), at);
    assert_eq!(
        last_step(&scheduled),
        (
            "schedule_peer_to_peer",
            "peer_to_peer_requested",
            "peer_to_peer_scheduled",
            SECOND_RADIOLOGIST,
            "physician_reviewer"
        )
    );

    server.clock.advance(Duration::days(1) + Duration::hours(1));
    assert_eq!(
        code_of(
            f.complete_peer_to_peer(&radiologist, &id, true, "discussed")
                .await
        ),
        Code::PermissionDenied,
        "only the scheduled physician records the outcome"
    );
    assert_eq!(
        code_of(f.complete_peer_to_peer(&second, &id, true, " ").await),
        Code::InvalidArgument,
        "the discussion is summarised"
    );
    let note = "New weakness of the left hand reported in the discussion.";
    let approved = f
        .complete_peer_to_peer(&second, &id, true, note)
        .await
        .unwrap();
    assert_eq!(approved.status(), pb::CaseStatus::Approved);
    assert_eq!(approved.decisions.len(), 2, "the denial is kept");
    assert_eq!(approved.decisions[0].outcome, "denied");
    let d = &approved.decisions[1];
    assert_eq!(
        summary(d),
        (
            "approved",
            "peer_to_peer",
            SECOND_RADIOLOGIST,
            "physician_reviewer",
            "",
            ""
        )
    );
    assert_eq!(d.note, note);
    assert_eq!(d.lines, [line_decision(1, 1, 0, 0)]);
    assert_eq!(instant(d.decided_at.as_ref()), server.clock_now());
    assert_eq!(
        last_step(&approved),
        (
            "complete_peer_to_peer",
            "peer_to_peer_scheduled",
            "approved",
            SECOND_RADIOLOGIST,
            "physician_reviewer"
        )
    );
    assert_eq!(
        code_of(f.request_peer_to_peer(&provider, &id).await),
        Code::FailedPrecondition,
        "an approved case has no peer-to-peer"
    );
    assert_eq!(
        db.event_kinds(CASE, &id).await,
        kinds(&[
            "submitted",
            "pended_for_review",
            "claimed",
            "denied",
            "peer_to_peer_requested",
            "peer_to_peer_scheduled",
            "peer_to_peer_completed",
            "approved",
        ])
    );
    server.stop().await;
}

async fn an_appeal_is_upheld_by_a_physician_other_than_the_denier(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut f = Flow::new(&server).await;
    let provider = f.provider();
    let radiologist = f.physician(RADIOLOGIST);
    let second = f.physician(SECOND_RADIOLOGIST);
    let denied = f.denied("req-appeal-1").await;
    let id = denied.id.clone();

    server.clock.advance(Duration::hours(5));
    let filed = server.clock_now();
    let appealed = f.appeal(&provider, &id, true).await.unwrap();
    assert_eq!(appealed.status(), pb::CaseStatus::AppealRequested);
    assert!(appealed.appeal_expedited);
    let due = instant(appealed.appeal_due_at.as_ref());
    assert_eq!(due, filed + Duration::hours(72), "expedited: 72 hours");
    assert!(!appealed.late);
    assert_eq!(
        last_step(&appealed),
        (
            "appeal",
            "denied",
            "appeal_requested",
            IMAGING_IN,
            "provider"
        )
    );
    assert_eq!(
        code_of(f.appeal(&provider, &id, false).await),
        Code::FailedPrecondition,
        "a case is appealed once"
    );

    assert_eq!(
        code_of(f.decide_appeal(&radiologist, uphold(&id)).await),
        Code::PermissionDenied,
        "the physician who denied does not decide the appeal"
    );
    assert_eq!(
        code_of(
            f.decide_appeal(&f.physician(ORTHOPAEDIST), uphold(&id))
                .await
        ),
        Code::PermissionDenied,
        "the appeal needs a radiologist, as the rule names"
    );
    assert_eq!(
        code_of(f.decide_appeal(&f.nurse(NURSE), uphold(&id)).await),
        Code::PermissionDenied,
        "nurses do not decide appeals"
    );
    let mut no_guideline = uphold(&id);
    no_guideline.guideline.clear();
    assert_eq!(
        code_of(f.decide_appeal(&second, no_guideline).await),
        Code::InvalidArgument,
        "an upheld denial names its guideline"
    );

    server.clock.advance(Duration::hours(73));
    let overdue = f.get(&provider, &id).await;
    assert!(
        overdue.late,
        "an expedited appeal undecided after 72 hours is late"
    );
    let upheld = f.decide_appeal(&second, uphold(&id)).await.unwrap();
    assert_eq!(upheld.status(), pb::CaseStatus::AppealUpheld);
    assert!(!upheld.late, "a decided appeal is no longer owed");
    assert_eq!(upheld.decisions.len(), 2);
    let d = &upheld.decisions[1];
    assert_eq!(
        summary(d),
        (
            "denied",
            "appeal",
            SECOND_RADIOLOGIST,
            "physician_reviewer",
            REASON,
            GUIDELINE
        )
    );
    assert_eq!(d.decided_by_specialty, "radiology");
    assert_eq!(d.rationale, "The records still show no red-flag symptoms.");
    assert_eq!(d.lines, [line_decision(1, 0, 0, 0)]);
    assert_eq!(
        last_step(&upheld),
        (
            "decide_appeal",
            "appeal_requested",
            "appeal_upheld",
            SECOND_RADIOLOGIST,
            "physician_reviewer"
        )
    );
    assert_eq!(
        code_of(f.appeal(&provider, &id, true).await),
        Code::FailedPrecondition
    );
    assert_eq!(
        db.event_kinds(CASE, &id).await,
        kinds(&[
            "submitted",
            "pended_for_review",
            "claimed",
            "denied",
            "appeal_requested",
            "appeal_decided",
        ])
    );
    server.stop().await;
}

async fn reconsideration_runs_automation_on_the_new_information(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut f = Flow::new(&server).await;
    let provider = f.provider();
    let member = server.token(Role::Member, MEMBER);
    let met = f.denied("req-recon-met").await;
    let unmet = f.denied("req-recon-unmet").await;
    server.clock.advance(Duration::days(1));

    assert_eq!(
        code_of(
            f.reconsider(
                &server.token(Role::Provider, INTERNIST),
                &met.id,
                vec![flag("red_flag_symptoms", true)]
            )
            .await
        ),
        Code::NotFound,
        "another provider does not see the case"
    );
    assert_eq!(
        code_of(f.reconsider(&provider, &met.id, vec![]).await),
        Code::InvalidArgument,
        "reconsideration brings new information"
    );

    // (a) The new answers meet the criteria: automation approves.
    let approved = f
        .reconsider(&provider, &met.id, vec![flag("red_flag_symptoms", true)])
        .await
        .unwrap();
    assert_eq!(approved.status(), pb::CaseStatus::Approved);
    assert_eq!(approved.decisions.len(), 2);
    assert_eq!(
        approved.decisions[0].outcome, "denied",
        "the denial is kept"
    );
    let d = &approved.decisions[1];
    assert_eq!(
        summary(d),
        (
            "approved",
            "reconsideration",
            "automation",
            "service",
            "",
            ""
        )
    );
    assert_eq!(d.lines, [line_decision(1, 1, 0, 0)]);
    assert_eq!(approved.lines[0].approval_basis, "criteria_met");
    let n = approved.history.len();
    assert_eq!(
        step(&approved.history[n - 2]),
        ("reconsider", "denied", "received", IMAGING_IN, "provider")
    );
    assert_eq!(
        last_step(&approved),
        (
            "determine",
            "received",
            "approved",
            "precert-automation",
            "service"
        )
    );
    let kinds_met = db.event_kinds(CASE, &met.id).await;
    assert_eq!(
        kinds_met[kinds_met.len() - 2..],
        kinds(&["reconsidered", "approved"])
    );

    // (b) Still short of the criteria: back to a reviewer, with a fresh due time.
    let back = f
        .reconsider(
            &member,
            &unmet.id,
            vec![number("conservative_therapy_weeks", 4.0)],
        )
        .await
        .unwrap();
    assert_eq!(back.status(), pb::CaseStatus::PendedReview);
    assert_eq!(back.decisions.len(), 1, "automation never denies");
    assert_eq!(back.lines[0].pend_reason, "needs_clinical_review");
    assert!(
        instant(back.due_at.as_ref()) > instant(unmet.due_at.as_ref()),
        "the decision clock restarts"
    );
    let n = back.history.len();
    assert_eq!(
        step(&back.history[n - 2]),
        ("reconsider", "denied", "received", MEMBER, "member")
    );
    assert_eq!(
        last_step(&back),
        (
            "determine",
            "received",
            "pended_review",
            "precert-automation",
            "service"
        )
    );
    let nurse = f.nurse(NURSE);
    assert!(f.queue(&nurse).await.iter().any(|q| q.id == unmet.id));
    f.claim(&nurse, &unmet.id).await.unwrap();
    let reviewed = f
        .approve(
            &nurse,
            &unmet.id,
            "Four weeks of therapy with worsening pain.",
        )
        .await
        .unwrap();
    assert_eq!(
        summary(&reviewed.decisions[1]),
        ("approved", "reconsideration", NURSE, "nurse", "", ""),
        "a reviewer deciding after reconsideration decides the reconsideration"
    );
    assert_eq!(
        db.event_kinds(CASE, &unmet.id).await,
        kinds(&[
            "submitted",
            "pended_for_review",
            "claimed",
            "denied",
            "reconsidered",
            "pended_for_review",
            "claimed",
            "approved",
        ])
    );
    server.stop().await;
}

async fn reviewers_ask_for_information_and_answers_go_back_through_automation(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut f = Flow::new(&server).await;
    let provider = f.provider();
    let nurse = f.nurse(NURSE);
    let case = f.submit(&provider, mri("req-info-1", vec![])).await;
    let id = case.id.clone();
    assert_eq!(case.status(), pb::CaseStatus::PendedInformation);
    let missing: Vec<_> = case.missing.iter().map(|m| m.id.as_str()).collect();
    assert!(missing.contains(&"red_flag_symptoms"), "{missing:?}");

    // Answers that do not meet the criteria: pended for review, not approved.
    server.clock.advance(Duration::days(1));
    let supplied = f
        .supply(&provider, &id, criteria_not_met(), vec![])
        .await
        .unwrap();
    assert_eq!(supplied.status(), pb::CaseStatus::PendedReview);
    assert!(supplied.decisions.is_empty());
    assert!(supplied.missing.is_empty());
    assert!(supplied.information_due_at.is_none());
    assert_eq!(
        (
            supplied.lines[0].outcome.as_str(),
            supplied.lines[0].pend_reason.as_str()
        ),
        ("pended", "needs_clinical_review")
    );
    assert!(
        instant(supplied.due_at.as_ref()) > instant(case.due_at.as_ref()),
        "the decision clock restarts when the information arrives"
    );
    let n = supplied.history.len();
    assert_eq!(
        step(&supplied.history[n - 2]),
        (
            "supply_information",
            "pended_information",
            "received",
            IMAGING_IN,
            "provider"
        )
    );
    assert_eq!(
        last_step(&supplied),
        (
            "determine",
            "received",
            "pended_review",
            "precert-automation",
            "service"
        )
    );
    assert_eq!(
        code_of(
            f.supply(
                &provider,
                &id,
                vec![flag("red_flag_symptoms", true)],
                vec![]
            )
            .await
        ),
        Code::FailedPrecondition,
        "information is supplied while it is asked for"
    );

    // A reviewer holding the case asks for more.
    f.claim(&nurse, &id).await.unwrap();
    let items = vec![
        pb::RequiredItem {
            id: "imaging_reports".into(),
            text: "Reports of prior imaging of the head".into(),
        },
        pb::RequiredItem {
            id: "conservative_therapy_weeks".into(),
            text: "Weeks of therapy tried since the last visit".into(),
        },
    ];
    assert_eq!(
        code_of(
            f.request_information(&f.nurse(OTHER_NURSE), &id, items.clone())
                .await
        ),
        Code::PermissionDenied,
        "only the reviewer holding the case asks"
    );
    assert_eq!(
        code_of(f.request_information(&nurse, &id, vec![]).await),
        Code::InvalidArgument
    );
    server.clock.advance(Duration::hours(1));
    let asked_at = server.clock_now();
    let asked = f
        .request_information(&nurse, &id, items.clone())
        .await
        .unwrap();
    assert_eq!(asked.status(), pb::CaseStatus::PendedInformation);
    assert_eq!(asked.claimed_by, "");
    let mut got: Vec<_> = asked
        .missing
        .iter()
        .map(|m| (m.id.as_str(), m.text.as_str()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                "conservative_therapy_weeks",
                "Weeks of therapy tried since the last visit"
            ),
            ("imaging_reports", "Reports of prior imaging of the head"),
        ]
    );
    // Asked Tuesday 24 November 2026: 15 business days (Thanksgiving is a holiday)
    // end on Wednesday 16 December, 17:00 in New York.
    assert_eq!(asked_at, utc("2026-11-24T15:00:00Z"));
    assert_eq!(
        instant(asked.information_due_at.as_ref()),
        utc("2026-12-16T22:00:00Z")
    );
    assert_eq!(
        last_step(&asked),
        (
            "request_information",
            "in_review",
            "pended_information",
            NURSE,
            "nurse"
        )
    );
    assert!(
        f.queue(&nurse).await.iter().all(|q| q.id != id),
        "a case waiting for the provider is not in the review queue"
    );

    // Answers that meet the criteria: approved by automation.
    let approved = f
        .supply(
            &provider,
            &id,
            vec![number("conservative_therapy_weeks", 8.0)],
            vec![record("img-1", "imaging_reports")],
        )
        .await
        .unwrap();
    assert_eq!(approved.status(), pb::CaseStatus::Approved);
    assert_eq!(
        summary(&approved.decisions[0]),
        ("approved", "initial", "automation", "service", "", "")
    );
    assert_eq!(
        db.event_kinds(CASE, &id).await,
        kinds(&[
            "submitted",
            "information_requested",
            "information_received",
            "pended_for_review",
            "claimed",
            "information_requested",
            "information_received",
            "approved",
        ])
    );
    server.stop().await;
}

async fn requesters_withdraw_undecided_cases_and_decided_cases_stay_as_decided(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut f = Flow::new(&server).await;
    let provider = f.provider();
    let member = server.token(Role::Member, MEMBER);
    let nurse = f.nurse(NURSE);

    // Waiting for information, withdrawn by the provider.
    let waiting = f.submit(&provider, mri("req-wd-info", vec![])).await;
    assert_eq!(waiting.status(), pb::CaseStatus::PendedInformation);
    assert_eq!(
        code_of(
            f.withdraw(&server.token(Role::Provider, INTERNIST), &waiting.id)
                .await
        ),
        Code::NotFound,
        "another provider does not see the case"
    );
    let withdrawn = f.withdraw(&provider, &waiting.id).await.unwrap();
    assert_eq!(withdrawn.status(), pb::CaseStatus::Withdrawn);
    assert_eq!(
        withdrawn.history.last().unwrap().note,
        "withdrawn by the requester: the member chose another treatment"
    );
    assert!(withdrawn.decisions.is_empty());
    assert!(withdrawn.missing.is_empty());
    assert!(withdrawn.information_due_at.is_none());
    assert_eq!(
        last_step(&withdrawn),
        (
            "withdraw",
            "pended_information",
            "withdrawn",
            IMAGING_IN,
            "provider"
        )
    );
    assert_eq!(
        db.event_kinds(CASE, &waiting.id).await,
        kinds(&["submitted", "information_requested", "withdrawn"])
    );
    assert_eq!(
        code_of(
            f.supply(
                &provider,
                &waiting.id,
                vec![flag("red_flag_symptoms", true)],
                vec![]
            )
            .await
        ),
        Code::FailedPrecondition
    );
    assert_eq!(
        code_of(f.withdraw(&provider, &waiting.id).await),
        Code::FailedPrecondition
    );

    // In review, withdrawn by the member.
    let reviewing = f.pended_review("req-wd-review", 1).await;
    f.claim(&nurse, &reviewing.id).await.unwrap();
    assert_eq!(
        code_of(f.withdraw(&nurse, &reviewing.id).await),
        Code::PermissionDenied,
        "only the requester withdraws"
    );
    let withdrawn = f.withdraw(&member, &reviewing.id).await.unwrap();
    assert_eq!(withdrawn.status(), pb::CaseStatus::Withdrawn);
    assert_eq!(withdrawn.claimed_by, "");
    assert_eq!(
        last_step(&withdrawn),
        ("withdraw", "in_review", "withdrawn", MEMBER, "member")
    );
    assert!(f.queue(&nurse).await.iter().all(|q| q.id != reviewing.id));
    assert_eq!(
        code_of(f.approve(&nurse, &reviewing.id, "too late").await),
        Code::FailedPrecondition
    );
    assert_eq!(
        db.event_kinds(CASE, &reviewing.id).await,
        kinds(&["submitted", "pended_for_review", "claimed", "withdrawn"])
    );

    // Decided cases: nothing withdraws or edits them.
    let approved = f
        .submit(
            &provider,
            mri("req-wd-approved", vec![flag("red_flag_symptoms", true)]),
        )
        .await;
    assert_eq!(approved.status(), pb::CaseStatus::Approved);
    let denied = f.denied("req-wd-denied").await;
    let radiologist = f.physician(RADIOLOGIST);
    for case in [&approved, &denied] {
        let id = &case.id;
        let events = db.event_kinds(CASE, id).await;
        assert_eq!(
            code_of(f.withdraw(&provider, id).await),
            Code::FailedPrecondition
        );
        assert_eq!(
            code_of(f.withdraw(&member, id).await),
            Code::FailedPrecondition
        );
        assert_eq!(
            code_of(
                f.supply(&provider, id, vec![flag("red_flag_symptoms", true)], vec![])
                    .await
            ),
            Code::FailedPrecondition
        );
        assert_eq!(code_of(f.claim(&nurse, id).await), Code::FailedPrecondition);
        assert_eq!(
            code_of(f.approve(&radiologist, id, "changed my mind").await),
            Code::FailedPrecondition
        );
        assert_eq!(
            code_of(f.deny(&radiologist, id).await),
            Code::FailedPrecondition
        );
        assert_eq!(
            code_of(
                f.request_information(
                    &radiologist,
                    id,
                    vec![pb::RequiredItem {
                        id: "imaging_reports".into(),
                        text: "Prior imaging".into(),
                    }]
                )
                .await
            ),
            Code::FailedPrecondition
        );
        let after = f.get(&provider, id).await;
        assert_eq!(after.status(), case.status());
        assert_eq!(
            after.decisions, case.decisions,
            "decisions are never edited"
        );
        assert_eq!(after.history, case.history);
        assert_eq!(db.event_kinds(CASE, id).await, events);
    }
    server.stop().await;
}

async fn physicians_approve_in_part_and_the_paths_after_a_partial_approval(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut f = Flow::new(&server).await;
    let provider = f.provider();
    let nurse = f.nurse(NURSE);
    let radiologist = f.physician(RADIOLOGIST);
    let second = f.physician(SECOND_RADIOLOGIST);
    let orthopaedist = f.physician(ORTHOPAEDIST);

    // Units: three MRI units asked, one approved by a radiologist.
    let mri_case = f.pended_review("req-part-units", 3).await;
    let id = mri_case.id.clone();
    f.claim(&nurse, &id).await.unwrap();
    assert_eq!(
        code_of(f.approve_in_part(&nurse, &id, 1, 0).await),
        Code::PermissionDenied,
        "a nurse does not approve in part"
    );
    f.release(&nurse, &id).await;
    f.claim(&orthopaedist, &id).await.unwrap();
    assert_eq!(
        code_of(f.approve_in_part(&orthopaedist, &id, 1, 0).await),
        Code::PermissionDenied,
        "the rule names radiology"
    );
    f.release(&orthopaedist, &id).await;
    f.claim(&radiologist, &id).await.unwrap();
    assert_eq!(
        code_of(f.approve_in_part(&radiologist, &id, 3, 0).await),
        Code::InvalidArgument,
        "all units requested is an approval, not a partial one"
    );
    assert_eq!(
        code_of(f.approve_in_part(&radiologist, &id, 1, 1).await),
        Code::InvalidArgument,
        "an MRI is not a stay: no days"
    );
    let part = f.approve_in_part(&radiologist, &id, 1, 0).await.unwrap();
    assert_eq!(part.status(), pb::CaseStatus::PartiallyApproved);
    let d = &part.decisions[0];
    assert_eq!(
        summary(d),
        (
            "partially_approved",
            "initial",
            RADIOLOGIST,
            "physician_reviewer",
            "lower_level_of_care",
            "Utilization criteria UC-7, section 2 (illustrative)"
        )
    );
    assert_eq!(
        d.rationale,
        "Fewer units meet the need documented in the notes."
    );
    assert_eq!(d.lines, [line_decision(3, 1, 0, 0)]);
    assert_eq!(
        last_step(&part),
        (
            "approve_in_part",
            "in_review",
            "partially_approved",
            RADIOLOGIST,
            "physician_reviewer"
        )
    );

    // Peer-to-peer from a partial approval: the decision stands.
    let requested = f.request_peer_to_peer(&provider, &id).await.unwrap();
    assert_eq!(requested.status(), pb::CaseStatus::PeerToPeerRequested);
    assert_eq!(
        last_step(&requested),
        (
            "request_peer_to_peer",
            "partially_approved",
            "peer_to_peer_requested",
            IMAGING_IN,
            "provider"
        )
    );
    let at = server.clock_now() + Duration::hours(4);
    f.schedule_peer_to_peer(&second, &id, at).await.unwrap();
    server.clock.advance(Duration::hours(5));
    let stands = f
        .complete_peer_to_peer(&second, &id, false, "One unit answers the question asked.")
        .await
        .unwrap();
    assert_eq!(stands.status(), pb::CaseStatus::PartiallyApproved);
    assert_eq!(
        stands.decisions.len(),
        1,
        "a decision that stands adds none"
    );
    assert_eq!(
        last_step(&stands),
        (
            "complete_peer_to_peer",
            "peer_to_peer_scheduled",
            "partially_approved",
            SECOND_RADIOLOGIST,
            "physician_reviewer"
        )
    );
    assert_eq!(
        code_of(f.request_peer_to_peer(&provider, &id).await),
        Code::FailedPrecondition,
        "one peer-to-peer per case"
    );

    // Then a standard appeal, upheld by the radiologist who did not decide.
    let filed = server.clock_now();
    let appealed = f.appeal(&provider, &id, false).await.unwrap();
    assert_eq!(appealed.status(), pb::CaseStatus::AppealRequested);
    assert!(!appealed.appeal_expedited);
    assert_eq!(
        instant(appealed.appeal_due_at.as_ref()),
        filed + Duration::days(30)
    );
    assert_eq!(
        last_step(&appealed),
        (
            "appeal",
            "partially_approved",
            "appeal_requested",
            IMAGING_IN,
            "provider"
        )
    );
    assert_eq!(
        code_of(f.decide_appeal(&radiologist, uphold(&id)).await),
        Code::PermissionDenied,
        "the physician who approved in part does not decide the appeal"
    );
    let upheld = f.decide_appeal(&second, uphold(&id)).await.unwrap();
    assert_eq!(upheld.status(), pb::CaseStatus::AppealUpheld);
    let d = &upheld.decisions[1];
    assert_eq!(
        summary(d),
        (
            "partially_approved",
            "appeal",
            SECOND_RADIOLOGIST,
            "physician_reviewer",
            REASON,
            GUIDELINE
        )
    );
    assert_eq!(
        d.lines,
        [line_decision(3, 1, 0, 0)],
        "the partial approval stands"
    );
    assert_eq!(
        db.event_kinds(CASE, &id).await,
        kinds(&[
            "submitted",
            "pended_for_review",
            "claimed",
            "claimed",
            "claimed",
            "partially_approved",
            "peer_to_peer_requested",
            "peer_to_peer_scheduled",
            "peer_to_peer_completed",
            "appeal_requested",
            "appeal_decided",
        ])
    );

    // Days: an eight-day stay, five approved; the appeal overturns it in full.
    let hospital = server.token(Role::Provider, HOSPITAL);
    let stay_case = f.submit(&hospital, hospital_stay("req-part-days", 8)).await;
    assert_eq!(
        stay_case.status(),
        pb::CaseStatus::PendedReview,
        "{:?}",
        stay_case.lines
    );
    let sid = stay_case.id.clone();
    let internist = f.physician(INTERNIST_REVIEWER);
    f.claim(&internist, &sid).await.unwrap();
    assert_eq!(
        code_of(f.approve_in_part(&internist, &sid, 1, 9).await),
        Code::InvalidArgument,
        "more days than requested"
    );
    let part = f.approve_in_part(&internist, &sid, 1, 5).await.unwrap();
    assert_eq!(part.status(), pb::CaseStatus::PartiallyApproved);
    let d = &part.decisions[0];
    assert_eq!(
        (d.outcome.as_str(), d.decided_by.as_str()),
        ("partially_approved", INTERNIST_REVIEWER)
    );
    assert_eq!(d.lines, [line_decision(1, 1, 8, 5)]);
    let appealed = f.appeal(&hospital, &sid, true).await.unwrap();
    assert_eq!(
        last_step(&appealed),
        (
            "appeal",
            "partially_approved",
            "appeal_requested",
            HOSPITAL,
            "provider"
        )
    );
    let overturned = f
        .decide_appeal(
            &f.physician(CARDIOLOGIST_REVIEWER),
            pb::DecideAppealRequest {
                case_id: sid.clone(),
                overturn: true,
                rationale: "The complication documented needs the full stay.".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(overturned.status(), pb::CaseStatus::AppealOverturned);
    let d = &overturned.decisions[1];
    assert_eq!(
        summary(d),
        (
            "approved",
            "appeal",
            CARDIOLOGIST_REVIEWER,
            "physician_reviewer",
            "",
            ""
        )
    );
    assert_eq!(d.lines, [line_decision(1, 1, 8, 8)]);
    assert_eq!(
        last_step(&overturned),
        (
            "decide_appeal",
            "appeal_requested",
            "appeal_overturned",
            CARDIOLOGIST_REVIEWER,
            "physician_reviewer"
        )
    );
    assert_eq!(
        db.event_kinds(CASE, &sid).await,
        kinds(&[
            "submitted",
            "pended_for_review",
            "claimed",
            "partially_approved",
            "appeal_requested",
            "appeal_decided",
        ])
    );
    server.stop().await;
}

async fn providers_list_their_cases_by_status_and_date_page_by_page(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut f = Flow::new(&server).await;
    let provider = f.provider();
    let t0 = server.clock_now();
    let a = f
        .submit(
            &provider,
            mri("req-list-a", vec![flag("red_flag_symptoms", true)]),
        )
        .await;
    server.clock.advance(Duration::days(1));
    let b = f.submit(&provider, mri("req-list-b", vec![])).await;
    server.clock.advance(Duration::days(1));
    let c = f
        .submit(&provider, mri("req-list-c", criteria_not_met()))
        .await;
    // Another provider's case, received in the same days, is never listed.
    f.submit(
        &server.token(Role::Provider, HOSPITAL),
        hospital_stay("req-list-h", 8),
    )
    .await;
    assert_eq!(
        (a.status(), b.status(), c.status()),
        (
            pb::CaseStatus::Approved,
            pb::CaseStatus::PendedInformation,
            pb::CaseStatus::PendedReview
        )
    );

    let all = f.list(&provider, pb::ListCasesRequest::default()).await;
    assert_eq!(
        ids(&all.cases),
        [c.id.as_str(), b.id.as_str(), a.id.as_str()],
        "newest first"
    );
    assert_eq!(all.next_page_token, "");

    for (status, want) in [
        (pb::CaseStatus::Approved, vec![a.id.as_str()]),
        (pb::CaseStatus::PendedInformation, vec![b.id.as_str()]),
        (pb::CaseStatus::PendedReview, vec![c.id.as_str()]),
        (pb::CaseStatus::Denied, vec![]),
    ] {
        let got = f
            .list(
                &provider,
                pb::ListCasesRequest {
                    status: status as i32,
                    ..Default::default()
                },
            )
            .await;
        assert_eq!(ids(&got.cases), want, "status {status:?}");
        assert!(got.cases.iter().all(|x| x.status() == status));
    }

    let between = |from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>| pb::ListCasesRequest {
        received_from: from.map(timestamp),
        received_to: to.map(timestamp),
        ..Default::default()
    };
    let half = Duration::hours(12);
    let got = f
        .list(
            &provider,
            between(Some(t0 + half), Some(t0 + Duration::days(1) + half)),
        )
        .await;
    assert_eq!(ids(&got.cases), [b.id.as_str()]);
    let got = f.list(&provider, between(Some(t0 + half), None)).await;
    assert_eq!(ids(&got.cases), [c.id.as_str(), b.id.as_str()]);
    let got = f.list(&provider, between(None, Some(t0 + half))).await;
    assert_eq!(ids(&got.cases), [a.id.as_str()]);
    let got = f
        .list(&provider, between(Some(t0 + Duration::days(1)), None))
        .await;
    assert_eq!(
        ids(&got.cases),
        [c.id.as_str(), b.id.as_str()],
        "a case received at the start of the range is in it"
    );
    let got = f
        .list(
            &provider,
            pb::ListCasesRequest {
                status: pb::CaseStatus::Approved as i32,
                ..between(Some(t0 + half), None)
            },
        )
        .await;
    assert!(got.cases.is_empty(), "filters combine");

    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = f
            .list(
                &provider,
                pb::ListCasesRequest {
                    page: Some(PageRequest {
                        page_size: 1,
                        page_token: token.clone(),
                    }),
                    ..Default::default()
                },
            )
            .await;
        assert_eq!(page.cases.len(), 1, "page {}", pages.len() + 1);
        pages.push(page.cases[0].id.clone());
        if page.next_page_token.is_empty() {
            break;
        }
        assert!(pages.len() < 3, "the third page is the last");
        token = page.next_page_token;
    }
    assert_eq!(pages, [c.id.as_str(), b.id.as_str(), a.id.as_str()]);
    server.stop().await;
}

async fn the_review_queue_puts_urgent_cases_first_and_marks_late_ones(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut f = Flow::new(&server).await;
    let provider = f.provider();
    let nurse = f.nurse(NURSE);

    // Monday 09:00 in New York: a routine case, due Wednesday 17:00.
    let old = f.pended_review("req-queue-old", 1).await;
    assert_eq!(instant(old.due_at.as_ref()), utc("2026-11-25T22:00:00Z"));
    assert!(!old.late);

    // Wednesday 18:00, after its due time: an urgent case (due at the end of the next
    // business day, Friday, as Thursday is Thanksgiving) and another routine one.
    server.clock.set(utc("2026-11-25T23:00:00Z"));
    let mut urgent = mri("req-queue-urgent", criteria_not_met());
    urgent.urgency = Urgency::Urgent as i32;
    let urgent = f.submit(&provider, urgent).await;
    assert_eq!(urgent.status(), pb::CaseStatus::PendedReview);
    let new = f.pended_review("req-queue-new", 1).await;
    assert!(
        instant(urgent.due_at.as_ref()) > instant(old.due_at.as_ref()),
        "the urgent case is due after the overdue routine one"
    );
    assert!(instant(new.due_at.as_ref()) > instant(old.due_at.as_ref()));

    let queue = f.queue(&nurse).await;
    assert_eq!(
        ids(&queue),
        [urgent.id.as_str(), old.id.as_str(), new.id.as_str()],
        "urgent first, then by due time"
    );
    let late: Vec<_> = queue.iter().map(|q| q.late).collect();
    assert_eq!(late, [false, true, false]);
    assert!(f.get(&provider, &old.id).await.late);
    assert!(!f.get(&provider, &urgent.id).await.late);
    assert!(!f.get(&provider, &new.id).await.late);

    // Still late while a reviewer holds it; not once decided.
    let claimed = f.claim(&nurse, &old.id).await.unwrap();
    assert!(claimed.late);
    assert!(
        f.queue(&nurse)
            .await
            .iter()
            .any(|q| q.id == old.id && q.late)
    );
    let approved = f
        .approve(&nurse, &old.id, "Criteria reviewed; imaging indicated.")
        .await
        .unwrap();
    assert!(!approved.late, "the plan no longer owes a decision");
    assert_eq!(
        ids(&f.queue(&nurse).await),
        [urgent.id.as_str(), new.id.as_str()]
    );
    let events = db.store.events_for(CASE, &old.id).await.unwrap();
    let decided = events
        .iter()
        .find(|e| e.kind == "precert.case.approved")
        .expect("approval event");
    assert_eq!(
        decided.payload["late"],
        serde_json::json!(true),
        "the decision is recorded as late"
    );

    // The urgent case becomes late after its own due time.
    server
        .clock
        .set(instant(urgent.due_at.as_ref()) + Duration::minutes(1));
    let queue = f.queue(&nurse).await;
    assert_eq!(ids(&queue), [urgent.id.as_str(), new.id.as_str()]);
    assert!(queue[0].late);
    assert!(f.get(&provider, &urgent.id).await.late);

    // A waiting appeal is ordered by the appeal: an expedited one with the urgent
    // cases by its 72-hour due time, a standard one with the routine cases.
    let expedited = f.denied("req-queue-expedited").await;
    let standard = f.denied("req-queue-standard").await;
    let expedited = f.appeal(&provider, &expedited.id, true).await.unwrap();
    let standard = f.appeal(&provider, &standard.id, false).await.unwrap();
    let appeal_due = instant(expedited.appeal_due_at.as_ref());
    assert!(
        appeal_due > instant(new.due_at.as_ref()),
        "the expedited appeal is due after the routine case"
    );
    let queue = f.queue(&nurse).await;
    assert_eq!(
        ids(&queue),
        [
            urgent.id.as_str(),
            expedited.id.as_str(),
            new.id.as_str(),
            standard.id.as_str()
        ]
    );
    let late: Vec<_> = queue.iter().map(|q| q.late).collect();
    assert_eq!(late, [true, false, false, false]);
    server.clock.set(appeal_due + Duration::seconds(1));
    let queue = f.queue(&nurse).await;
    assert!(queue[1].id == expedited.id && queue[1].late);
    assert!(f.get(&provider, &expedited.id).await.late);
    assert!(!f.get(&provider, &standard.id).await.late);
    server.stop().await;
}

/// `ListCases` keeps the fraction of a second of `received_from` and `received_to`: a
/// case received at 14:00:00.2 is listed up to 14:00:00.5 and not from it.
async fn list_cases_received_range_keeps_sub_second_bounds(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut f = Flow::new(&server).await;
    let provider = f.provider();
    let t0 = server.clock_now();
    server.clock.set(t0 + Duration::milliseconds(200));
    let case = f.pended_review("req-subsecond", 1).await;
    assert_eq!(
        instant(case.received_at.as_ref()),
        t0 + Duration::milliseconds(200)
    );
    let bound = Some(timestamp(t0 + Duration::milliseconds(500)));
    let before = f
        .list(
            &provider,
            pb::ListCasesRequest {
                received_to: bound,
                ..Default::default()
            },
        )
        .await;
    let after = f
        .list(
            &provider,
            pb::ListCasesRequest {
                received_from: bound,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(
        (ids(&before.cases), ids(&after.cases)),
        (vec![case.id.as_str()], vec![]),
        "received before the bound: listed up to it, not from it"
    );
    server.stop().await;
}
