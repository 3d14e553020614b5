//! Case management end to end through the real server, on both backends: an oncology
//! plan opening a case by itself, a nurse working it to closure and the member rating
//! it; idempotent automatic referrals; who may see what; decision support for a member
//! abroad; illegal moves and bad input.

use std::{sync::Arc, time::Duration};

use carepath_app::cases::referrals::{CONSUMER, ReferralConsumer};
use carepath_core::{Clock, DomainEvent, FixedClock, MemberId, Role};
use carepath_oncology::{
    Catalogue, ClinicalContext, Intent, LineOfTherapy, PatientFactors, SiteOfService, StageGroup,
    TreatmentPlan, adopt_alternative,
};
use carepath_proto::{
    cases::v1::{self as pb, case_service_client::CaseServiceClient},
    common::v1::Urgency,
    oncology::v1::{self as onc, oncology_service_client::OncologyServiceClient},
    precert::v1::precert_service_client::PrecertServiceClient,
};
use carepath_server::{
    oncology::plan_to_proto,
    outbox::{ConsumerOptions, EventHandler, process_batch},
};
use carepath_store::{ManagedCaseFilter, Store};
use carepath_tests::{
    TestDb, TestServer, contract_tests,
    load::{IMAGING, mri},
    test_start,
};
use serde_json::json;
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

contract_tests!(
    an_oncology_plan_opens_a_case_that_a_nurse_works_to_closure,
    the_same_referral_event_delivered_twice_opens_one_case,
    inpatient_approvals_and_second_opinions_refer_and_other_approvals_do_not,
    the_member_in_dubai_is_offered_an_in_network_orthopaedic_surgeon_at_home,
    cases_are_visible_only_to_those_entitled,
    illegal_moves_and_bad_input_are_refused_and_a_decline_closes_the_case,
    supervisors_assign_by_specialty_and_language_and_reassignment_keeps_history,
    consumers_are_subscribed_before_they_first_run,
);

const ONCOLOGIST: &str = "1381083801";
const MEMBER: &str = "M100001";
const DUBAI_MEMBER: &str = "M100015";
const HOSPITAL: &str = "1603758941";
const SNF: &str = "1052545435";
const AE_ORTHOPAEDIST: &str = "1495212221";

fn client(channel: Channel) -> CaseServiceClient<Channel> {
    CaseServiceClient::new(channel)
}

fn tchp_plan() -> TreatmentPlan {
    let context = ClinicalContext {
        stage_group: Some(StageGroup::parse("II").unwrap()),
        biomarkers: [("HER2".to_string(), "positive".to_string())]
            .into_iter()
            .collect(),
        histology: None,
        line: Some(LineOfTherapy::Neoadjuvant),
        intent: Some(Intent::Curative),
        performance_status: Some(0),
    };
    let base = TreatmentPlan {
        diagnosis: carepath_core::Icd10Code::parse("C50.911").unwrap(),
        cancer_id: None,
        context,
        patient: PatientFactors {
            age_years: Some(52),
            body_surface_area_m2: Some(1.8),
            weight_kg: Some(70.0),
            creatinine_clearance_ml_min: Some(95.0),
            risk_factors: Default::default(),
        },
        drugs: Vec::new(),
        supportive: Vec::new(),
        site_of_service: Some(SiteOfService::Office),
    };
    adopt_alternative(&Catalogue::shipped(), &base, "tchp").unwrap()
}

/// Waits (up to 5 s) for the server's referral consumer to open a case matching `pred`.
async fn wait_for_case(
    server: &TestServer,
    c: &mut CaseServiceClient<Channel>,
    token: &str,
    member: &str,
    kind: pb::CaseKind,
) -> pb::Case {
    // Generous: the referral consumer backs off for a second after a failed attempt,
    // and a loaded machine running many suites at once is slow; a case that never
    // opens still fails the test.
    for _ in 0..300 {
        let found = c
            .list_cases(server.request(
                token,
                pb::ListCasesRequest {
                    member_id: member.into(),
                    kind: kind as i32,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .cases;
        if let Some(case) = found.into_iter().next() {
            return case;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waiting: Vec<(String, i64, i32, Option<String>)> =
        carepath_store::on_db!(&server.app.store, conn => sqlx::query_as(
        "SELECT consumer, seq, attempts, last_error FROM outbox_delivery
         WHERE done_at IS NULL ORDER BY seq")
        .fetch_all(conn).await)
        .unwrap_or_default();
    panic!("no {kind:?} case for {member} after 30 s; deliveries not done: {waiting:?}");
}

fn event(id: &str, kind: &str, member: &str, payload: serde_json::Value) -> DomainEvent {
    DomainEvent {
        id: id.into(),
        kind: kind.into(),
        aggregate_kind: kind.split('.').take(2).collect::<Vec<_>>().join("_"),
        aggregate_id: format!("AGG-{id}"),
        member_id: Some(MemberId::parse(member).unwrap()),
        occurred_at: test_start(),
        payload,
    }
}

async fn append(store: &Store, event: &DomainEvent) {
    let mut tx = store.begin().await.unwrap();
    tx.append_event(event).await.unwrap();
    tx.commit().await.unwrap();
}

async fn cases_of(store: &Store, member: &str) -> Vec<carepath_store::ManagedCaseRecord> {
    store
        .list_managed_cases(
            &ManagedCaseFilter {
                member_id: Some(member.into()),
                ..Default::default()
            },
            "",
            50,
        )
        .await
        .unwrap()
        .items
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    r.expect_err("the call must fail").code()
}

async fn an_oncology_plan_opens_a_case_that_a_nurse_works_to_closure(db: &TestDb) {
    let server = TestServer::start(db).await;
    let channel = server.channel().await;
    let mut onc = OncologyServiceClient::new(channel.clone());
    let mut c = client(channel.clone());
    let provider = server.token(Role::Provider, ONCOLOGIST);
    let rn1 = server.token(Role::Nurse, "RN-001");
    let rn5 = server.token(Role::Nurse, "RN-005");
    let member = server.token(Role::Member, MEMBER);
    let admin = server.token(Role::Admin, "AD-001");

    // The oncology plan, and nothing else: the consumer opens the case.
    let submitted = onc
        .submit_plan(server.request(
            &provider,
            onc::SubmitPlanRequest {
                request_id: "onc-cm-1".into(),
                member_id: MEMBER.into(),
                treating_provider_npi: ONCOLOGIST.into(),
                servicing_provider_npi: String::new(),
                urgency: Urgency::Urgent as i32,
                start_date: "2026-12-01".into(),
                plan: Some(plan_to_proto(&tchp_plan())),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let plan_id = submitted.plan.unwrap().id;
    let queued = wait_for_case(&server, &mut c, &rn1, MEMBER, pb::CaseKind::Oncology).await;
    assert_eq!(queued.phase(), pb::Phase::Screening);
    assert!(queued.nurse_id.is_empty(), "in the unassigned queue");
    assert_eq!(
        queued.referrals[0].source(),
        pb::ReferralSource::OncologyPlan
    );
    assert_eq!(queued.referrals[0].source_id, plan_id);
    let queue = c
        .list_cases(server.request(
            &rn5,
            pb::ListCasesRequest {
                unassigned_only: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .cases;
    assert!(
        queue.iter().any(|q| q.id == queued.id),
        "every nurse sees the queue"
    );
    let id = queued.id.clone();

    let claimed = c
        .claim_case(server.request(
            &rn1,
            pb::ClaimCaseRequest {
                case_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(claimed.nurse_id, "RN-001");
    assert_eq!(claimed.nurse_name, "Maria Delgado, RN");
    assert_eq!(
        code(
            c.claim_case(server.request(
                &rn5,
                pb::ClaimCaseRequest {
                    case_id: id.clone()
                }
            ))
            .await
        ),
        Code::NotFound,
        "a claimed case leaves the other nurses' view"
    );

    let goal = c
        .add_goal(server.request(
            &rn1,
            pb::AddGoalRequest {
                case_id: id.clone(),
                description: "Complete six cycles of TCHP without an unplanned admission".into(),
                target_date: "2027-04-01".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .goal
        .unwrap();
    for (title, due) in [
        ("Call the member about side effects", "2026-11-24"),
        ("Confirm antiemetics at the pharmacy", "2026-11-30"),
    ] {
        c.add_task(server.request(
            &rn1,
            pb::AddTaskRequest {
                case_id: id.clone(),
                title: title.into(),
                owner: String::new(),
                due_date: due.into(),
                priority: pb::Priority::High as i32,
                goal_id: goal.id.clone(),
            },
        ))
        .await
        .unwrap();
    }
    let logged = c
        .record_interaction(server.request(
            &rn1,
            pb::RecordInteractionRequest {
                case_id: id.clone(),
                channel: pb::InteractionChannel::Call as i32,
                summary: "Introduced the program; member agreed to weekly calls".into(),
                next_steps: "Call on Friday".into(),
                notify_member: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(logged.interaction.unwrap().author_name, "Maria Delgado, RN");

    // Two days later the first task is overdue in the nurse's work list.
    server.clock.advance(chrono::Duration::days(2));
    let work = c
        .get_work_list(server.request(&rn1, pb::GetWorkListRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(work.open_cases, 1);
    assert_eq!(work.overdue_tasks.len(), 1, "{:?}", work.overdue_tasks);
    assert_eq!(work.overdue_tasks[0].case_id, id);
    assert!(work.overdue_tasks[0].overdue);
    assert_eq!(work.upcoming_tasks.len(), 1);

    for phase in [
        pb::Phase::Assessment,
        pb::Phase::Planning,
        pb::Phase::Implementation,
        pb::Phase::TransitionsOfCare,
    ] {
        c.move_case(server.request(
            &rn1,
            pb::MoveCaseRequest {
                case_id: id.clone(),
                phase: phase as i32,
                note: String::new(),
            },
        ))
        .await
        .unwrap();
    }
    let transition = c
        .record_transition(server.request(
            &rn1,
            pb::RecordTransitionRequest {
                case_id: id.clone(),
                from_setting: pb::CareSetting::AcuteHospital as i32,
                to_setting: pb::CareSetting::SkilledNursing as i32,
                from_facility_npi: HOSPITAL.into(),
                to_facility_npi: SNF.into(),
                discharge_date: "2026-11-25".into(),
                arrival_date: "2026-11-25".into(),
                notes: "Neutropenic fever admission; short SNF stay".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .transition
        .unwrap();
    assert_eq!(transition.to_facility_npi, SNF);
    let service = c
        .arrange_service(server.request(
            &rn1,
            pb::ArrangeServiceRequest {
                case_id: id.clone(),
                kind: pb::ServiceKind::HomeHealthCare as i32,
                description: "Skilled nursing visits after the SNF stay".into(),
                start_date: "2026-12-02".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .service
        .unwrap();
    assert_eq!(service.state(), pb::ServiceState::Requested);
    assert!(service.needs_precertification);

    // The service links to the member's own precertification; another member's case
    // reads as absent.
    let mut precert = PrecertServiceClient::new(channel.clone());
    let imaging = server.token(Role::Provider, IMAGING);
    let mut precert_case_of = async |member: &str| {
        let mut request = mri(format!("cm-link-{member}"));
        request.member_id = member.into();
        precert
            .submit(server.request(&imaging, request))
            .await
            .unwrap()
            .into_inner()
            .case
            .unwrap()
            .id
    };
    let own = precert_case_of(MEMBER).await;
    let others = precert_case_of("M100007").await;
    let link = |precert_case_id: &str| {
        server.request(
            &rn1,
            pb::UpdateServiceRequest {
                case_id: id.clone(),
                service_id: service.id.clone(),
                state: pb::ServiceState::Arranged as i32,
                precert_case_id: precert_case_id.into(),
            },
        )
    };
    let refused = c.update_service(link(&others)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let bad = refused.get_details_bad_request().expect("field details");
    assert_eq!(bad.field_violations[0].field, "precert_case_id");
    let arranged = c
        .update_service(link(&own))
        .await
        .unwrap()
        .into_inner()
        .service
        .unwrap();
    assert_eq!(arranged.state(), pb::ServiceState::Arranged);
    assert_eq!(arranged.precert_case_id, own);

    // Open cases cannot be rated.
    assert_eq!(
        code(
            c.rate_case(server.request(
                &member,
                pb::RateCaseRequest {
                    case_id: id.clone(),
                    rating: 5,
                    comment: String::new()
                }
            ))
            .await
        ),
        Code::FailedPrecondition
    );
    let closed = c
        .close_case(server.request(
            &rn1,
            pb::CloseCaseRequest {
                case_id: id.clone(),
                outcome: pb::Outcome::GoalsMet as i32,
                note: "Treatment completed at home".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(closed.phase(), pb::Phase::Closed);
    assert_eq!(closed.outcome(), pb::Outcome::GoalsMet);
    assert_eq!(
        code(
            c.add_goal(server.request(
                &rn1,
                pb::AddGoalRequest {
                    case_id: id.clone(),
                    description: "x".into(),
                    target_date: "2027-01-01".into()
                }
            ))
            .await
        ),
        Code::FailedPrecondition
    );

    let rated = c
        .rate_case(server.request(
            &member,
            pb::RateCaseRequest {
                case_id: id.clone(),
                rating: 5,
                comment: "Maria made everything easier".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(rated.satisfaction.unwrap().rating, 5);
    assert_eq!(
        code(
            c.rate_case(server.request(
                &member,
                pb::RateCaseRequest {
                    case_id: id.clone(),
                    rating: 1,
                    comment: String::new()
                }
            ))
            .await
        ),
        Code::FailedPrecondition,
        "rated once"
    );
    let report = c
        .get_satisfaction_report(
            server.request(&admin, pb::GetSatisfactionReportRequest::default()),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!((report.ratings, report.satisfied), (1, 1));
    assert!((report.satisfaction_rate - 1.0).abs() < 1e-9);
    assert_eq!(report.distribution, [0, 0, 0, 0, 1]);

    // A second nurse cannot read the first nurse's case.
    assert_eq!(
        code(
            c.get_case(server.request(
                &rn5,
                pb::GetCaseRequest {
                    case_id: id.clone()
                }
            ))
            .await
        ),
        Code::NotFound
    );

    // The events for notifications.
    let events = server
        .app
        .store
        .events_for("managed_case", &id)
        .await
        .unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    for kind in [
        "cases.case.opened",
        "cases.case.assigned",
        "cases.interaction.recorded",
        "cases.transition.recorded",
        "cases.service.requested",
        "cases.case.closed",
        "cases.case.rated",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let call = events
        .iter()
        .find(|e| e.kind == "cases.interaction.recorded")
        .unwrap();
    let mut keys: Vec<&str> = call
        .payload
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "case_id",
            "contact_channel",
            "interaction_id",
            "member_id",
            "next_steps",
            "notify_member",
            "nurse_id",
            "nurse_name",
            "summary"
        ]
    );
    assert_eq!(call.payload["contact_channel"], "call");
    assert_eq!(call.payload["nurse_name"], "Maria Delgado, RN");
    assert_eq!(call.payload["notify_member"], true);
    server.stop().await;
}

async fn the_same_referral_event_delivered_twice_opens_one_case(db: &TestDb) {
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(test_start()));
    let consumer = ReferralConsumer::new(db.store.clone(), clock.clone());
    db.store
        .subscribe(CONSUMER, consumer.prefixes())
        .await
        .unwrap();
    let onc = event(
        "0190f3a4-0000-7000-8000-00000000c001",
        "oncology.plan.submitted",
        MEMBER,
        json!({"plan_id": "OP-1", "precert_case_id": "PA-1", "member_id": MEMBER, "treating_provider_npi": ONCOLOGIST, "cancer_id": "BRCA", "diagnosis": "C50.911", "on_pathway": true}),
    );
    append(&db.store, &onc).await;
    let options = ConsumerOptions::default();
    let lease = chrono::Duration::seconds(60);
    assert_eq!(
        process_batch(&db.store, clock.as_ref(), &consumer, &options, lease)
            .await
            .unwrap(),
        1
    );
    // The same event again (a delivery whose acknowledgement was lost).
    consumer.handle(&onc).await.unwrap();
    let cases = cases_of(&db.store, MEMBER).await;
    assert_eq!(cases.len(), 1, "one event, one case");
    assert_eq!(cases[0].kind, "oncology");
    assert_eq!(cases[0].nurse_id, None);

    // A second plan for the same member is absorbed by the open case.
    let again = event(
        "0190f3a4-0000-7000-8000-00000000c002",
        "oncology.plan.submitted",
        MEMBER,
        json!({"plan_id": "OP-2", "member_id": MEMBER, "diagnosis": "C50.911", "on_pathway": false}),
    );
    append(&db.store, &again).await;
    assert_eq!(
        process_batch(&db.store, clock.as_ref(), &consumer, &options, lease)
            .await
            .unwrap(),
        1
    );
    let cases = cases_of(&db.store, MEMBER).await;
    assert_eq!(cases.len(), 1);
    let referrals = cases[0].doc["referrals"].as_array().unwrap();
    assert_eq!(referrals.len(), 2);
    assert_eq!(referrals[1]["source_id"], "OP-2");
    let events = db
        .store
        .events_for("managed_case", &cases[0].id)
        .await
        .unwrap();
    let opened = events
        .iter()
        .filter(|e| e.kind == "cases.case.opened")
        .count();
    let absorbed = events
        .iter()
        .filter(|e| e.kind == "cases.referral.absorbed")
        .count();
    assert_eq!((opened, absorbed), (1, 1));
    assert_eq!(db.store.outbox_stats(CONSUMER).await.unwrap().pending, 0);
}

async fn inpatient_approvals_and_second_opinions_refer_and_other_approvals_do_not(db: &TestDb) {
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(test_start()));
    let consumer = ReferralConsumer::new(db.store.clone(), clock.clone());
    db.store
        .subscribe(CONSUMER, consumer.prefixes())
        .await
        .unwrap();
    append(
        &db.store,
        &event(
            "0190f3a4-0000-7000-8000-00000000c101",
            "precert.case.approved",
            "M100002",
            json!({"case_id": "PA-9", "member_id": "M100002", "state": "approved", "diagnoses": ["I21.4"],
                   "services": [{"line": 0, "code": "99223", "category": "inpatient_admission"}]}),
        ),
    )
    .await;
    append(
        &db.store,
        &event(
            "0190f3a4-0000-7000-8000-00000000c102",
            "precert.case.approved",
            "M100003",
            json!({"case_id": "PA-10", "member_id": "M100003", "state": "approved",
                   "services": [{"line": 0, "code": "70553", "category": "advanced_imaging"}]}),
        ),
    )
    .await;
    append(
        &db.store,
        &event(
            "0190f3a4-0000-7000-8000-00000000c103",
            "secondopinion.request.submitted",
            DUBAI_MEMBER,
            json!({"request_id": "SO-1", "member_id": DUBAI_MEMBER, "diagnosis": "M17.0", "diagnosis_group": "musculoskeletal", "major_surgery": true, "country": "AE"}),
        ),
    )
    .await;
    let options = ConsumerOptions::default();
    let handled = process_batch(
        &db.store,
        clock.as_ref(),
        &consumer,
        &options,
        chrono::Duration::seconds(60),
    )
    .await
    .unwrap();
    assert_eq!(handled, 3);
    let transitions = cases_of(&db.store, "M100002").await;
    assert_eq!(transitions.len(), 1);
    assert_eq!(transitions[0].kind, "transitions");
    assert_eq!(transitions[0].doc["referrals"][0]["source_id"], "PA-9");
    assert!(
        cases_of(&db.store, "M100003").await.is_empty(),
        "an MRI needs no case"
    );
    let decision = cases_of(&db.store, DUBAI_MEMBER).await;
    assert_eq!(decision.len(), 1);
    assert_eq!(decision[0].kind, "decision_support");
    assert_eq!(
        decision[0].doc["decision_support"][0]["reason"],
        "major_surgery"
    );
    assert_eq!(decision[0].doc["decision_support"][0]["diagnosis"], "M17.0");
    assert_eq!(db.store.outbox_stats(CONSUMER).await.unwrap().done, 3);
}

async fn the_member_in_dubai_is_offered_an_in_network_orthopaedic_surgeon_at_home(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let rn3 = server.token(Role::Nurse, "RN-003");
    let admin = server.token(Role::Admin, "AD-001");
    let opened = c
        .open_case(server.request(
            &rn3,
            pb::OpenCaseRequest {
                member_id: DUBAI_MEMBER.into(),
                kind: pb::CaseKind::DecisionSupport as i32,
                reason: "Double knee replacement recommended in Dubai".into(),
                diagnosis: "M17.0".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!opened.absorbed);
    let id = opened.case_id;
    // The supervisor's automatic match: a general nurse for decision support.
    let assigned = c
        .assign_case(server.request(
            &admin,
            pb::AssignCaseRequest {
                case_id: id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(assigned.nurse_id, "RN-004");
    let assigned = c
        .assign_case(server.request(
            &admin,
            pb::AssignCaseRequest {
                case_id: id.clone(),
                nurse_id: "RN-003".into(),
                reason: "speaks Arabic with the member".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(assigned.nurse_id, "RN-003");
    assert_eq!(assigned.assignments.len(), 2);
    assert!(assigned.assignments[0].ended_at.is_some());

    let request = c
        .request_decision_support(server.request(
            &rn3,
            pb::RequestDecisionSupportRequest {
                case_id: id.clone(),
                reason: pb::DecisionReason::MajorSurgery as i32,
                diagnosis: "M17.0".into(),
                specialty: "orthopaedic_surgery".into(),
                notes: "Bilateral total knee arthroplasty recommended".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .decision_support
        .unwrap();
    let found = c
        .find_specialists(server.request(
            &rn3,
            pb::FindSpecialistsRequest {
                case_id: id.clone(),
                specialty: "orthopaedic_surgery".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.country, "AE");
    assert_eq!(found.plan_id, "PLAN-GLOBAL");
    let npis: Vec<&str> = found.providers.iter().map(|p| p.npi.as_str()).collect();
    assert_eq!(npis, [AE_ORTHOPAEDIST]);
    assert_eq!(found.providers[0].name, "Dr. Layla Al-Mansoori");

    let assessed = c
        .assess_care_abroad(server.request(
            &rn3,
            pb::AssessCareAbroadRequest {
                case_id: id.clone(),
                decision_support_id: request.id.clone(),
                recommendation: pb::CareAbroad::LocalCareAppropriate as i32,
                rationale: "An in-network knee specialist practises in Dubai".into(),
                specialist_npi: AE_ORTHOPAEDIST.into(),
                country: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    let abroad = assessed.decision_support[0].care_abroad.clone().unwrap();
    assert_eq!(
        abroad.recommendation(),
        pb::CareAbroad::LocalCareAppropriate
    );
    assert_eq!(abroad.specialist_npi, AE_ORTHOPAEDIST);
    // A specialist elsewhere is not "local".
    let err = c
        .assess_care_abroad(server.request(
            &rn3,
            pb::AssessCareAbroadRequest {
                case_id: id.clone(),
                decision_support_id: request.id,
                recommendation: pb::CareAbroad::LocalCareAppropriate as i32,
                rationale: "x".into(),
                specialist_npi: "1159891922".into(),
                country: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    server.stop().await;
}

async fn cases_are_visible_only_to_those_entitled(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let rn1 = server.token(Role::Nurse, "RN-001");
    let rn5 = server.token(Role::Nurse, "RN-005");
    let member = server.token(Role::Member, MEMBER);
    let other_member = server.token(Role::Member, "M100002");
    let provider = server.token(Role::Provider, ONCOLOGIST);
    let reviewer = server.token(Role::PhysicianReviewer, "MD-ONC-01");
    let admin = server.token(Role::Admin, "AD-002");

    let opened = c
        .open_case(server.request(
            &member,
            pb::OpenCaseRequest {
                member_id: MEMBER.into(),
                kind: pb::CaseKind::General as i32,
                reason: "I would like help understanding my coverage".into(),
                diagnosis: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let id = opened.case_id.clone();
    assert_eq!(
        opened.case.unwrap().referrals[0].source(),
        pb::ReferralSource::Member
    );
    assert_eq!(
        code(
            c.open_case(server.request(
                &other_member,
                pb::OpenCaseRequest {
                    member_id: MEMBER.into(),
                    kind: pb::CaseKind::General as i32,
                    reason: "x".into(),
                    diagnosis: String::new()
                }
            ))
            .await
        ),
        Code::PermissionDenied
    );
    // A provider's referral for the same member is absorbed; the provider learns
    // neither the case it reached nor that the member had one.
    let by_provider = c
        .open_case(server.request(
            &provider,
            pb::OpenCaseRequest {
                member_id: MEMBER.into(),
                kind: pb::CaseKind::General as i32,
                reason: "Needs help coordinating care".into(),
                diagnosis: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!by_provider.absorbed);
    assert!(by_provider.case_id.is_empty());
    assert!(by_provider.case.is_none());
    let reached = c
        .get_case(server.request(
            &admin,
            pb::GetCaseRequest {
                case_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(
        reached.referrals.len(),
        2,
        "the provider's referral is on the case"
    );
    assert_eq!(reached.referrals[1].referred_by, ONCOLOGIST);

    c.claim_case(server.request(
        &rn1,
        pb::ClaimCaseRequest {
            case_id: id.clone(),
        },
    ))
    .await
    .unwrap();
    for private in [false, true] {
        c.record_interaction(
            server.request(
                &rn1,
                pb::RecordInteractionRequest {
                    case_id: id.clone(),
                    channel: pb::InteractionChannel::Note as i32,
                    summary: if private {
                        "internal: family conflict"
                    } else {
                        "Sent coverage summary"
                    }
                    .into(),
                    private,
                    ..Default::default()
                },
            ),
        )
        .await
        .unwrap();
    }
    let get = |token: &str| {
        server.request(
            token,
            pb::GetCaseRequest {
                case_id: id.clone(),
            },
        )
    };
    assert_eq!(
        c.get_case(get(&rn1))
            .await
            .unwrap()
            .into_inner()
            .case
            .unwrap()
            .interactions
            .len(),
        2
    );
    assert_eq!(
        c.get_case(get(&admin))
            .await
            .unwrap()
            .into_inner()
            .case
            .unwrap()
            .interactions
            .len(),
        2
    );
    let seen = c
        .get_case(get(&member))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(
        seen.interactions.len(),
        1,
        "members do not see private notes"
    );
    assert!(!seen.interactions[0].private);
    for token in [&rn5, &other_member, &provider, &reviewer] {
        assert_eq!(code(c.get_case(get(token)).await), Code::NotFound);
    }
    let missing = c
        .get_case(server.request(
            &admin,
            pb::GetCaseRequest {
                case_id: "CM-nope".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // The member agrees the oncologist may see it; the private note stays hidden.
    c.record_consent(server.request(
        &member,
        pb::RecordConsentRequest {
            case_id: id.clone(),
            provider_npi: ONCOLOGIST.into(),
            granted: true,
        },
    ))
    .await
    .unwrap();
    let shared = c
        .get_case(get(&provider))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(shared.interactions.len(), 1);
    assert_eq!(shared.consented_provider_npis, [ONCOLOGIST]);
    let listed = c
        .list_cases(server.request(
            &provider,
            pb::ListCasesRequest {
                member_id: MEMBER.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .cases;
    assert_eq!(listed.len(), 1);
    // Providers may not change the care plan.
    assert_eq!(
        code(
            c.add_goal(server.request(
                &provider,
                pb::AddGoalRequest {
                    case_id: id.clone(),
                    description: "x".into(),
                    target_date: "2027-01-01".into()
                }
            ))
            .await
        ),
        Code::PermissionDenied
    );

    // Lists follow the same rules.
    let list = |token: &str| server.request(token, pb::ListCasesRequest::default());
    assert!(
        c.list_cases(list(&rn5))
            .await
            .unwrap()
            .into_inner()
            .cases
            .iter()
            .all(|x| x.id != id)
    );
    assert!(
        c.list_cases(list(&rn1))
            .await
            .unwrap()
            .into_inner()
            .cases
            .iter()
            .any(|x| x.id == id)
    );
    assert!(
        c.list_cases(list(&admin))
            .await
            .unwrap()
            .into_inner()
            .cases
            .iter()
            .any(|x| x.id == id)
    );
    assert!(
        c.list_cases(list(&other_member))
            .await
            .unwrap()
            .into_inner()
            .cases
            .is_empty()
    );
    assert_eq!(
        code(c.list_cases(list(&reviewer)).await),
        Code::PermissionDenied
    );

    // Every access is audited, refusals included.
    let audit = server
        .app
        .store
        .search_audit(
            &carepath_store::AuditQuery {
                member_id: Some(MEMBER.into()),
                ..Default::default()
            },
            0,
            500,
        )
        .await
        .unwrap();
    let audit: Vec<_> = audit
        .into_iter()
        .filter(|r| r.entry.record_id == id)
        .collect();
    assert!(
        audit.iter().any(|r| r.entry.subject == "RN-005"
            && r.entry.outcome == carepath_store::AuditOutcome::Denied)
    );
    assert!(
        audit.iter().any(|r| r.entry.subject == MEMBER
            && r.entry.outcome == carepath_store::AuditOutcome::Allowed)
    );
    server.stop().await;
}

async fn illegal_moves_and_bad_input_are_refused_and_a_decline_closes_the_case(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let rn2 = server.token(Role::Nurse, "RN-002");
    let member = server.token(Role::Member, "M100004");
    let id = c
        .open_case(server.request(
            &rn2,
            pb::OpenCaseRequest {
                member_id: "M100004".into(),
                kind: pb::CaseKind::Maternity as i32,
                reason: "High-risk pregnancy".into(),
                diagnosis: "O09.90".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case_id;
    c.claim_case(server.request(
        &rn2,
        pb::ClaimCaseRequest {
            case_id: id.clone(),
        },
    ))
    .await
    .unwrap();
    let mv = |phase: pb::Phase| {
        server.request(
            &rn2,
            pb::MoveCaseRequest {
                case_id: id.clone(),
                phase: phase as i32,
                note: String::new(),
            },
        )
    };
    assert_eq!(
        code(c.move_case(mv(pb::Phase::Monitoring)).await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(c.move_case(mv(pb::Phase::Closed)).await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(
            c.close_case(server.request(
                &rn2,
                pb::CloseCaseRequest {
                    case_id: id.clone(),
                    outcome: pb::Outcome::GoalsMet as i32,
                    note: String::new()
                }
            ))
            .await
        ),
        Code::FailedPrecondition,
        "goals cannot be met in screening"
    );

    // Bad input names every field and stores nothing.
    let err = c
        .add_task(server.request(
            &rn2,
            pb::AddTaskRequest {
                case_id: id.clone(),
                title: "  ".into(),
                due_date: "next week".into(),
                priority: 42,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut fields: Vec<String> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    fields.sort();
    assert_eq!(fields, ["due_date", "priority"], "shape errors first");
    let err = c
        .add_task(server.request(
            &rn2,
            pb::AddTaskRequest {
                case_id: id.clone(),
                title: " ".into(),
                due_date: "2026-12-01".into(),
                goal_id: "G9".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    let fields: Vec<String> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["title", "goal_id"]);
    let err = c
        .open_case(server.request(
            &rn2,
            pb::OpenCaseRequest {
                member_id: "M!".into(),
                kind: 0,
                reason: String::new(),
                diagnosis: "XYZ".into(),
            },
        ))
        .await
        .unwrap_err();
    let fields: Vec<String> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["member_id", "kind", "diagnosis", "reason"]);
    let case = c
        .get_case(server.request(
            &rn2,
            pb::GetCaseRequest {
                case_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert!(case.tasks.is_empty());

    // Task state machine through the service.
    c.add_task(server.request(
        &rn2,
        pb::AddTaskRequest {
            case_id: id.clone(),
            title: "Book the glucose tolerance test".into(),
            due_date: "2026-12-01".into(),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let upd = |status: pb::TaskStatus| {
        server.request(
            &rn2,
            pb::UpdateTaskRequest {
                case_id: id.clone(),
                task_id: "T1".into(),
                status: status as i32,
                ..Default::default()
            },
        )
    };
    assert_eq!(
        code(c.update_task(upd(pb::TaskStatus::Blocked)).await),
        Code::FailedPrecondition
    );
    c.update_task(upd(pb::TaskStatus::InProgress))
        .await
        .unwrap();
    c.update_task(upd(pb::TaskStatus::Blocked)).await.unwrap();
    c.update_task(upd(pb::TaskStatus::InProgress))
        .await
        .unwrap();
    let done = c
        .update_task(upd(pb::TaskStatus::Done))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(done.status(), pb::TaskStatus::Done);
    assert_eq!(
        code(c.update_task(upd(pb::TaskStatus::Open)).await),
        Code::FailedPrecondition
    );

    // The member declines: the case closes with that outcome.
    let declined = c
        .decline_case(server.request(
            &member,
            pb::DeclineCaseRequest {
                case_id: id.clone(),
                note: "Managing with my midwife".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(declined.phase(), pb::Phase::Closed);
    assert_eq!(declined.outcome(), pb::Outcome::MemberDeclined);
    assert_eq!(
        code(c.move_case(mv(pb::Phase::Assessment)).await),
        Code::FailedPrecondition
    );
    let events = server
        .app
        .store
        .events_for("managed_case", &id)
        .await
        .unwrap();
    let closed = events
        .iter()
        .find(|e| e.kind == "cases.case.closed")
        .unwrap();
    assert_eq!(closed.payload["outcome"], "member_declined");
    server.stop().await;
}

async fn supervisors_assign_by_specialty_and_language_and_reassignment_keeps_history(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let admin = server.token(Role::Admin, "AD-001");
    let rn1 = server.token(Role::Nurse, "RN-001");
    // M100016 speaks French: of the two oncology nurses, RN-005 does.
    let id = c
        .open_case(server.request(
            &admin,
            pb::OpenCaseRequest {
                member_id: "M100016".into(),
                kind: pb::CaseKind::Oncology as i32,
                reason: "New lymphoma diagnosis".into(),
                diagnosis: "C83.30".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case_id;
    let case = c
        .assign_case(server.request(
            &admin,
            pb::AssignCaseRequest {
                case_id: id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(case.nurse_id, "RN-005");
    // Nurses do not assign; a nurse who is not a nurse in the directory cannot be named.
    assert_eq!(
        code(
            c.assign_case(server.request(
                &rn1,
                pb::AssignCaseRequest {
                    case_id: id.clone(),
                    nurse_id: "RN-001".into(),
                    reason: String::new()
                }
            ))
            .await
        ),
        Code::PermissionDenied
    );
    let err = c
        .assign_case(server.request(
            &admin,
            pb::AssignCaseRequest {
                case_id: id.clone(),
                nurse_id: "MD-ONC-01".into(),
                reason: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let case = c
        .assign_case(server.request(
            &admin,
            pb::AssignCaseRequest {
                case_id: id.clone(),
                nurse_id: "RN-001".into(),
                reason: "cover during leave".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(case.nurse_id, "RN-001");
    let history: Vec<(&str, bool)> = case
        .assignments
        .iter()
        .map(|a| (a.nurse_id.as_str(), a.ended_at.is_some()))
        .collect();
    assert_eq!(history, [("RN-005", true), ("RN-001", false)]);
    let events = server
        .app
        .store
        .events_for("managed_case", &id)
        .await
        .unwrap();
    let assigned: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "cases.case.assigned")
        .collect();
    assert_eq!(assigned.len(), 2);
    assert_eq!(assigned[1].payload["previous_nurse_id"], "RN-005");
    server.stop().await;
}

/// The migrations subscribe the case-referral consumer and the subscription feed to
/// exactly the kinds they handle, so an event committed before either first runs (a
/// call taken while it is still starting, or before the process running it has
/// started at all) is kept for it.
async fn consumers_are_subscribed_before_they_first_run(db: &TestDb) {
    let held: Vec<(String, String)> = carepath_store::on_db!(&db.store, conn => sqlx::query_as(
        "SELECT consumer, kind_prefix FROM outbox_subscription ORDER BY consumer, kind_prefix")
        .fetch_all(conn).await)
    .unwrap();
    let of = |consumer: &str| {
        held.iter()
            .filter(|(c, _)| c == consumer)
            .map(|(_, k)| k.clone())
            .collect::<Vec<_>>()
    };
    let sorted = |kinds: &[&str]| {
        let mut kinds: Vec<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
        kinds.sort();
        kinds
    };
    assert_eq!(of(CONSUMER), sorted(carepath_cases::REFERRAL_EVENT_KINDS));
    assert_eq!(
        of(carepath_app::subscriptions::feed::FEED_CONSUMER),
        sorted(&carepath_app::subscriptions::feed::NOTIFIED_KINDS)
    );
}
