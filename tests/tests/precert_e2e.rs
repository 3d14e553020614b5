//! Precertification end to end through the real server, on both backends: requirement
//! answers per rule category, submission and idempotency, automation that approves or
//! pends but never denies, clinical review with its permissions, the paths after a
//! denial, visibility, and metrics.

use carepath_core::Role;
use carepath_proto::{
    common::v1::{Setting, Urgency},
    directory::v1::ProviderKind,
    precert::v1::{self as pb, precert_service_client::PrecertServiceClient},
};
use carepath_tests::{
    TestDb, TestServer, contract_tests,
    precert::{
        HOSPITAL, IMAGING_IN, IMAGING_OUT, INTERNIST, MEMBER, client, flag, line, mri, number,
    },
};
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

contract_tests!(
    requirement_answers_follow_the_rule_list,
    a_submission_that_meets_the_criteria_is_approved_at_once_and_retries_return_it,
    missing_information_pends_then_approves_when_supplied,
    review_denial_and_the_paths_after_it,
    cases_are_visible_only_to_those_entitled,
    invalid_submissions_name_the_fields_and_store_nothing,
    overdue_information_withdraws_the_case,
    metrics_report_the_cases_made,
    metrics_report_appeals_extended_reviews_and_times,
);

const LOCAL_MEMBER: &str = "M100008"; // PLAN-PCM-LOCAL: in network only

fn check(
    member: &str,
    npi: &str,
    line: pb::ServiceLine,
    diagnoses: &[&str],
) -> pb::CheckRequirementRequest {
    pb::CheckRequirementRequest {
        member_id: member.into(),
        rendering_provider_npi: npi.into(),
        diagnoses: diagnoses.iter().map(|d| d.to_string()).collect(),
        line: Some(line),
    }
}

async fn answer(
    server: &TestServer,
    c: &mut PrecertServiceClient<Channel>,
    token: &str,
    req: pb::CheckRequirementRequest,
) -> pb::RequirementAnswer {
    c.check_requirement(server.request(token, req))
        .await
        .unwrap()
        .into_inner()
        .answer
        .unwrap()
}

async fn requirement_answers_follow_the_rule_list(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let token = server.token(Role::Provider, IMAGING_IN);

    let a = answer(
        &server,
        &mut c,
        &token,
        check(
            MEMBER,
            IMAGING_IN,
            line("70553", Setting::Outpatient),
            &["G43.909"],
        ),
    )
    .await;
    assert_eq!(
        (a.requirement(), a.responsible()),
        (pb::Requirement::Required, pb::Responsible::Provider)
    );
    assert_eq!(a.rule.as_ref().unwrap().id, "IMG-MRI");
    assert_eq!(a.rule.as_ref().unwrap().category, "advanced_imaging");
    assert!(!a.list_version.is_empty());
    assert!(a.documents.iter().any(|d| d.id == "clinical_notes"));

    let a = answer(
        &server,
        &mut c,
        &token,
        check(
            MEMBER,
            IMAGING_OUT,
            line("70553", Setting::Outpatient),
            &["G43.909"],
        ),
    )
    .await;
    assert_eq!(
        (a.requirement(), a.responsible()),
        (pb::Requirement::Required, pb::Responsible::Member)
    );

    let a = answer(
        &server,
        &mut c,
        &token,
        check(
            LOCAL_MEMBER,
            IMAGING_OUT,
            line("70553", Setting::Outpatient),
            &["G43.909"],
        ),
    )
    .await;
    assert_eq!(a.requirement(), pb::Requirement::NotCovered);

    let a = answer(
        &server,
        &mut c,
        &token,
        check(
            MEMBER,
            INTERNIST,
            line("90834", Setting::Office),
            &["F41.1"],
        ),
    )
    .await;
    assert_eq!(
        a.requirement(),
        pb::Requirement::NotRequired,
        "{}",
        a.explanation
    );

    let stay = |hours: u32| pb::ServiceLine {
        length_of_stay_hours: hours,
        delivery: pb::Delivery::Vaginal as i32,
        facility_kind: ProviderKind::AcuteHospital as i32,
        ..line("59400", Setting::Inpatient)
    };
    let a = answer(
        &server,
        &mut c,
        &token,
        check(MEMBER, HOSPITAL, stay(72), &["O80"]),
    )
    .await;
    assert_eq!(
        a.requirement(),
        pb::Requirement::Required,
        "{}",
        a.explanation
    );
    let a = answer(
        &server,
        &mut c,
        &token,
        check(MEMBER, HOSPITAL, stay(36), &["O80"]),
    )
    .await;
    assert_eq!(
        a.requirement(),
        pb::Requirement::NotRequired,
        "{}",
        a.explanation
    );

    let emergency = pb::ServiceLine {
        admission: pb::Admission::Emergency as i32,
        facility_kind: ProviderKind::AcuteHospital as i32,
        length_of_stay_hours: 72,
        ..line("99223", Setting::Inpatient)
    };
    let a = answer(
        &server,
        &mut c,
        &token,
        check(MEMBER, HOSPITAL, emergency, &["I21.9"]),
    )
    .await;
    assert_eq!(
        a.requirement(),
        pb::Requirement::NotifyOnly,
        "{}",
        a.explanation
    );

    let next_year = pb::ServiceLine {
        date_of_service: "2027-02-01".into(),
        ..line("70553", Setting::Outpatient)
    };
    let a = answer(
        &server,
        &mut c,
        &token,
        check(MEMBER, IMAGING_IN, next_year, &["G43.909"]),
    )
    .await;
    assert!(
        a.list_version.starts_with("2027"),
        "the list in force on the date of service: {}",
        a.list_version
    );

    let batch = c
        .batch_check_requirements(server.request(
            &token,
            pb::BatchCheckRequirementsRequest {
                member_id: MEMBER.into(),
                rendering_provider_npi: IMAGING_IN.into(),
                diagnoses: vec!["G43.909".into()],
                lines: vec![
                    line("70553", Setting::Outpatient),
                    line("99213", Setting::Office),
                ],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let got: Vec<_> = batch.answers.iter().map(|a| a.requirement()).collect();
    assert_eq!(
        got,
        [pb::Requirement::Required, pb::Requirement::NotRequired]
    );

    let err = c
        .check_requirement(server.request(
            &token,
            check(
                MEMBER,
                "9999999904",
                line("70553", Setting::Outpatient),
                &["G43.909"],
            ),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let violations = err.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].field, "rendering_provider_npi");
    server.stop().await;
}

async fn a_submission_that_meets_the_criteria_is_approved_at_once_and_retries_return_it(
    db: &TestDb,
) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let token = server.token(Role::Provider, IMAGING_IN);
    let first = c
        .submit(server.request(
            &token,
            mri("req-approve-1", vec![flag("red_flag_symptoms", true)]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(first.created);
    let case = first.case.unwrap();
    assert_eq!(case.status(), pb::CaseStatus::Approved);
    assert_eq!(case.decisions.len(), 1);
    assert_eq!(case.decisions[0].decided_by, "automation");
    assert_eq!(case.lines[0].approval_basis, "criteria_met");
    assert!(case.due_at.is_some());

    let again = c
        .submit(server.request(
            &token,
            mri("req-approve-1", vec![flag("red_flag_symptoms", true)]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(
        again.case.unwrap().id,
        case.id,
        "a retry returns the same case"
    );

    let events = db.store.events_for("precert_case", &case.id).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.contains(&"precert.case.submitted") && kinds.contains(&"precert.case.approved"),
        "{kinds:?}"
    );
    server.stop().await;
}

async fn missing_information_pends_then_approves_when_supplied(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let token = server.token(Role::Provider, IMAGING_IN);
    let case = c
        .submit(server.request(&token, mri("req-info-1", vec![])))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(case.status(), pb::CaseStatus::PendedInformation);
    assert!(
        case.missing.iter().any(|m| m.id == "red_flag_symptoms"),
        "{:?}",
        case.missing
    );
    assert!(case.information_due_at.is_some());
    assert!(case.decisions.iter().all(|d| d.outcome != "denied"));

    let supplied = c
        .supply_information(server.request(
            &token,
            pb::SupplyInformationRequest {
                case_id: case.id.clone(),
                answers: vec![flag("red_flag_symptoms", true)],
                records: vec![],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(supplied.status(), pb::CaseStatus::Approved);
    server.stop().await;
}

async fn review_denial_and_the_paths_after_it(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let provider = server.token(Role::Provider, IMAGING_IN);
    let nurse = server.token(Role::Nurse, "RN-004");
    let radiologist = server.token(Role::PhysicianReviewer, "MD-RAD-01");
    let second_radiologist = server.token(Role::PhysicianReviewer, "MD-RAD-02");

    let answers = vec![
        flag("red_flag_symptoms", false),
        number("conservative_therapy_weeks", 2.0),
    ];
    let case = c
        .submit(server.request(&provider, mri("req-review-1", answers)))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(
        case.status(),
        pb::CaseStatus::PendedReview,
        "criteria not met: pended, never denied by automation"
    );
    assert!(case.decisions.is_empty());
    let id = case.id.clone();

    let queue = c
        .list_review_queue(server.request(&nurse, pb::ListReviewQueueRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(queue.cases.iter().any(|q| q.id == id));
    let err = c
        .list_review_queue(server.request(&provider, pb::ListReviewQueueRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let claimed = c
        .claim_case(server.request(
            &nurse,
            pb::ClaimCaseRequest {
                case_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(
        (claimed.status(), claimed.claimed_by.as_str()),
        (pb::CaseStatus::InReview, "RN-004")
    );
    let deny = |token: &str| {
        server.request(
            token,
            pb::RecordDecisionRequest {
                case_id: id.clone(),
                outcome: pb::DecisionOutcome::Denied as i32,
                reason_code: "not_medically_necessary".into(),
                rationale: "Two weeks of conservative therapy and no red-flag symptoms.".into(),
                guideline: "Advanced imaging criteria AI-12, section 3 (illustrative)".into(),
                ..Default::default()
            },
        )
    };
    let err = c.record_decision(deny(&nurse)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "a nurse may not deny");
    c.release_case(server.request(
        &nurse,
        pb::ReleaseCaseRequest {
            case_id: id.clone(),
        },
    ))
    .await
    .unwrap();

    c.claim_case(server.request(
        &radiologist,
        pb::ClaimCaseRequest {
            case_id: id.clone(),
        },
    ))
    .await
    .unwrap();
    let missing_reason = c
        .record_decision(server.request(
            &radiologist,
            pb::RecordDecisionRequest {
                case_id: id.clone(),
                outcome: pb::DecisionOutcome::Denied as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing_reason.code(), Code::InvalidArgument);
    assert!(
        !missing_reason
            .get_details_bad_request()
            .unwrap()
            .field_violations
            .is_empty()
    );
    let denied = c
        .record_decision(deny(&radiologist))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(denied.status(), pb::CaseStatus::Denied);
    let decision = denied.decisions.last().unwrap();
    assert_eq!(
        (decision.outcome.as_str(), decision.decided_by.as_str()),
        ("denied", "MD-RAD-01")
    );
    assert_eq!(decision.reason_code, "not_medically_necessary");
    assert!(decision.guideline.contains("AI-12"));

    let err = c
        .record_decision(server.request(
            &radiologist,
            pb::RecordDecisionRequest {
                case_id: id.clone(),
                outcome: pb::DecisionOutcome::Approved as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::FailedPrecondition,
        "a decided case is not edited"
    );

    let p2p = c
        .request_peer_to_peer(server.request(
            &provider,
            pb::RequestPeerToPeerRequest {
                case_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(p2p.status(), pb::CaseStatus::PeerToPeerRequested);
    let at = carepath_server::convert::timestamp(server.clock_now() + chrono::Duration::days(1));
    let scheduled = c
        .schedule_peer_to_peer(server.request(
            &radiologist,
            pb::SchedulePeerToPeerRequest {
                case_id: id.clone(),
                scheduled_for: Some(at),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(
        (
            scheduled.status(),
            scheduled.peer_to_peer_physician.as_str()
        ),
        (pb::CaseStatus::PeerToPeerScheduled, "MD-RAD-01")
    );
    let stands = c
        .complete_peer_to_peer(server.request(
            &radiologist,
            pb::CompletePeerToPeerRequest {
                case_id: id.clone(),
                overturned: false,
                note: "discussed; no new findings".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(stands.status(), pb::CaseStatus::Denied);

    let appealed = c
        .request_appeal(server.request(
            &provider,
            pb::RequestAppealRequest {
                case_id: id.clone(),
                expedited: true,
                reason: "worsening headaches".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(appealed.status(), pb::CaseStatus::AppealRequested);
    assert!(appealed.appeal_expedited);
    let due = appealed.appeal_due_at.unwrap().seconds - server.clock_now().timestamp();
    assert!(
        due <= 72 * 3600,
        "expedited appeals are due within 72 hours"
    );

    let err = c
        .decide_appeal(server.request(
            &radiologist,
            pb::DecideAppealRequest {
                case_id: id.clone(),
                overturn: true,
                rationale: "new information".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "the physician who denied does not decide the appeal"
    );
    let overturned = c
        .decide_appeal(server.request(
            &second_radiologist,
            pb::DecideAppealRequest {
                case_id: id.clone(),
                overturn: true,
                rationale: "Symptoms progressed; imaging indicated.".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(overturned.status(), pb::CaseStatus::AppealOverturned);

    let actions: Vec<_> = overturned
        .history
        .iter()
        .map(|h| h.action.as_str())
        .collect();
    for expected in [
        "submit",
        "claim",
        "release",
        "deny",
        "request_peer_to_peer",
        "schedule_peer_to_peer",
        "appeal",
        "decide_appeal",
    ] {
        assert!(
            actions.contains(&expected),
            "history has {expected}: {actions:?}"
        );
    }
    let kinds = db.event_kinds("precert_case", &id).await;
    assert!(kinds.iter().any(|k| k == "precert.case.denied"));
    assert!(kinds.iter().any(|k| k == "precert.case.appeal_decided"));
    server.stop().await;
}

async fn cases_are_visible_only_to_those_entitled(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let provider = server.token(Role::Provider, IMAGING_IN);
    let case = c
        .submit(server.request(
            &provider,
            mri("req-visible-1", vec![flag("red_flag_symptoms", true)]),
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    let get = |token: &str| {
        server.request(
            token,
            pb::GetCaseRequest {
                id: case.id.clone(),
            },
        )
    };

    assert!(
        c.get_case(get(&server.token(Role::Member, MEMBER)))
            .await
            .is_ok()
    );
    assert!(
        c.get_case(get(&server.token(Role::Nurse, "RN-001")))
            .await
            .is_ok()
    );
    let other_provider = c
        .get_case(get(&server.token(Role::Provider, INTERNIST)))
        .await
        .unwrap_err();
    assert_eq!(other_provider.code(), Code::NotFound);
    let other_member = c
        .get_case(get(&server.token(Role::Member, "M100014")))
        .await
        .unwrap_err();
    assert_eq!(other_member.code(), Code::NotFound);

    let mine = c
        .list_cases(server.request(&provider, pb::ListCasesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.cases.len(), 1);
    let theirs = c
        .list_cases(server.request(
            &server.token(Role::Provider, INTERNIST),
            pb::ListCasesRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.cases.is_empty());
    let err = c
        .list_cases(server.request(
            &server.token(Role::Provider, INTERNIST),
            pb::ListCasesRequest {
                provider_npi: IMAGING_IN.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .submit(server.request(
            &server.token(Role::Provider, INTERNIST),
            mri("req-visible-2", vec![]),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "a provider cannot submit for another provider"
    );
    server.stop().await;
}

async fn invalid_submissions_name_the_fields_and_store_nothing(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let provider = server.token(Role::Provider, IMAGING_IN);
    let mut bad = mri("req-bad-1", vec![]);
    bad.servicing_provider_npi = "1234567890".into();
    bad.lines[0].service_code = "ABC".into();
    bad.lines[0].date_of_service = "12/01/2026".into();
    bad.urgency = 0;
    let err = c.submit(server.request(&provider, bad)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<_> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    for f in [
        "servicing_provider_npi",
        "lines[0].service_code",
        "lines[0].date_of_service",
        "urgency",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} named in {fields:?}");
    }
    // A date of service that makes no sense is named too, as the request names it.
    let mut far = mri("req-bad-far", vec![]);
    far.lines[0].date_of_service = "2200-01-01".into();
    let err = c.submit(server.request(&provider, far)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let named = err.get_details_bad_request().unwrap().field_violations;
    assert_eq!(named.len(), 1, "{named:?}");
    assert_eq!(named[0].field, "lines[0].date_of_service");
    let check = pb::CheckRequirementRequest {
        member_id: MEMBER.into(),
        rendering_provider_npi: IMAGING_IN.into(),
        diagnoses: vec!["G43.909".into()],
        line: Some(pb::ServiceLine {
            date_of_service: "1900-01-01".into(),
            ..line("70553", Setting::Outpatient)
        }),
    };
    let err = c
        .check_requirement(server.request(&provider, check))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let named = err.get_details_bad_request().unwrap().field_violations;
    assert_eq!(named.len(), 1, "{named:?}");
    assert_eq!(named[0].field, "line.date_of_service");
    // Well-formed ids that point at nothing in the directory.
    let mut unknown = mri("req-bad-2", vec![]);
    unknown.member_id = "M999999".into();
    unknown.servicing_provider_npi = "9999999904".into();
    let err = c
        .submit(server.request(&provider, unknown))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<_> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| (v.field, v.description))
        .collect();
    assert_eq!(
        fields,
        [
            ("member_id".to_owned(), "no member with this id".to_owned()),
            (
                "servicing_provider_npi".to_owned(),
                "no provider with this NPI in the directory".to_owned()
            ),
        ]
    );
    // A misspelt question and a document no list names would leave the request
    // waiting for what it meant to send.
    let mut misspelt = mri("req-bad-3", vec![flag("red_flag_symptom", true)]);
    misspelt.records[0].document = "clinical_note".into();
    let err = c
        .submit(server.request(&provider, misspelt))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<_> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["answers[0].question_id", "records[0].document"]);
    let listed = c
        .list_cases(server.request(&provider, pb::ListCasesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.cases.is_empty(),
        "nothing stored from invalid requests"
    );
    server.stop().await;
}

async fn overdue_information_withdraws_the_case(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let provider = server.token(Role::Provider, IMAGING_IN);
    let case = c
        .submit(server.request(&provider, mri("req-withdraw-1", vec![])))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(case.status(), pb::CaseStatus::PendedInformation);
    let precert = server.precert().await;
    assert_eq!(
        precert.withdraw_overdue().await.unwrap(),
        0,
        "not overdue yet"
    );
    server.clock.advance(chrono::Duration::days(30));
    assert_eq!(precert.withdraw_overdue().await.unwrap(), 1);
    let after = c
        .get_case(server.request(&provider, pb::GetCaseRequest { id: case.id }))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(after.status(), pb::CaseStatus::Withdrawn);
    server.stop().await;
}

async fn metrics_report_the_cases_made(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let provider = server.token(Role::Provider, IMAGING_IN);
    c.submit(server.request(
        &provider,
        mri("req-m-1", vec![flag("red_flag_symptoms", true)]),
    ))
    .await
    .unwrap();
    c.submit(server.request(
        &provider,
        mri("req-m-2", vec![flag("red_flag_symptoms", true)]),
    ))
    .await
    .unwrap();
    let mut urgent = mri(
        "req-m-3",
        vec![
            flag("red_flag_symptoms", false),
            number("conservative_therapy_weeks", 1.0),
        ],
    );
    urgent.urgency = Urgency::Urgent as i32;
    c.submit(server.request(&provider, urgent)).await.unwrap();

    let admin = server.token(Role::Admin, "AD-001");
    let m = c
        .get_metrics(server.request(&admin, pb::GetMetricsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.total_requests, 3);
    let standard = m.standard.unwrap();
    let expedited = m.expedited.unwrap();
    assert_eq!((standard.requests, standard.decided), (2, 2));
    assert_eq!(standard.approved_share, 1.0);
    assert_eq!((expedited.requests, expedited.decided), (1, 0));
    assert!(
        (m.auto_approval_rate - 1.0).abs() < 1e-9,
        "both decided requests were auto-approved: {}",
        m.auto_approval_rate
    );
    let err = c
        .get_metrics(server.request(&provider, pb::GetMetricsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    server.stop().await;
}

/// The CMS-0057-F figures beyond the counts: approved after an extended review time,
/// approved after appeal, and hours from receipt to the first decision.
async fn metrics_report_appeals_extended_reviews_and_times(db: &TestDb) {
    let server = TestServer::start(db).await;
    let mut c = client(server.channel().await);
    let provider = server.token(Role::Provider, IMAGING_IN);
    let radiologist = server.token(Role::PhysicianReviewer, "MD-RAD-01");
    let second_radiologist = server.token(Role::PhysicianReviewer, "MD-RAD-02");
    let admin = server.token(Role::Admin, "AD-001");
    let start = server.clock_now();

    // Routine, approved at once: 0 hours.
    c.submit(server.request(
        &provider,
        mri("req-x-1", vec![flag("red_flag_symptoms", true)]),
    ))
    .await
    .unwrap();
    // Routine, waits for answers; they come three days later, past the due time set at
    // receipt, and the clock starts again: approved after an extended review, 72 hours.
    let waiting = c
        .submit(server.request(&provider, mri("req-x-2", Vec::new())))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(waiting.status(), pb::CaseStatus::PendedInformation);
    // Urgent, denied by a radiologist, overturned on an expedited appeal by another.
    let mut urgent = mri(
        "req-x-3",
        vec![
            flag("red_flag_symptoms", false),
            number("conservative_therapy_weeks", 1.0),
        ],
    );
    urgent.urgency = Urgency::Urgent as i32;
    let urgent = c
        .submit(server.request(&provider, urgent))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    server.clock.advance(chrono::Duration::hours(2));
    c.claim_case(server.request(
        &radiologist,
        pb::ClaimCaseRequest {
            case_id: urgent.id.clone(),
        },
    ))
    .await
    .unwrap();
    c.record_decision(server.request(
        &radiologist,
        pb::RecordDecisionRequest {
            case_id: urgent.id.clone(),
            outcome: pb::DecisionOutcome::Denied as i32,
            reason_code: "not_medically_necessary".into(),
            rationale: "One week of conservative therapy and no red-flag symptoms.".into(),
            guideline: "Advanced imaging criteria AI-12, section 3 (illustrative)".into(),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    c.request_appeal(server.request(
        &provider,
        pb::RequestAppealRequest {
            case_id: urgent.id.clone(),
            expedited: true,
            reason: "new neurological deficit".into(),
        },
    ))
    .await
    .unwrap();
    let overturned = c
        .decide_appeal(server.request(
            &second_radiologist,
            pb::DecideAppealRequest {
                case_id: urgent.id.clone(),
                overturn: true,
                rationale: "A new deficit is a red-flag symptom.".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(overturned.status(), pb::CaseStatus::AppealOverturned);

    server.clock.set(start + chrono::Duration::hours(72));
    let supplied = c
        .supply_information(server.request(
            &provider,
            pb::SupplyInformationRequest {
                case_id: waiting.id.clone(),
                answers: vec![flag("red_flag_symptoms", true)],
                records: Vec::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(supplied.status(), pb::CaseStatus::Approved);

    let m = c
        .get_metrics(server.request(
            &admin,
            pb::GetMetricsRequest {
                from: Some(prost_types::Timestamp {
                    seconds: start.timestamp() - 3600,
                    nanos: 0,
                }),
                to: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let standard = m.standard.unwrap();
    let expedited = m.expedited.unwrap();
    assert_eq!(m.total_requests, 3);
    assert_eq!((standard.requests, standard.decided), (2, 2));
    assert_eq!(standard.approved_share, 1.0);
    assert_eq!(standard.approved_after_extended_review_share, 0.5);
    assert_eq!(
        (
            standard.average_hours_to_decision,
            standard.median_hours_to_decision
        ),
        (36.0, 36.0)
    );
    assert_eq!((expedited.requests, expedited.decided), (1, 1));
    assert_eq!(
        (expedited.approved_share, expedited.denied_share),
        (0.0, 1.0)
    );
    assert_eq!(expedited.approved_after_extended_review_share, 0.0);
    assert_eq!(
        (
            expedited.average_hours_to_decision,
            expedited.median_hours_to_decision
        ),
        (2.0, 2.0)
    );
    assert!((m.approved_after_appeal_share - 1.0 / 3.0).abs() < 1e-9);
    assert!((m.approved_after_extended_review_share - 1.0 / 3.0).abs() < 1e-9);
    assert!((m.auto_approval_rate - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(m.late_cases, 0);

    // A timestamp that names no instant is refused by name.
    let err = c
        .get_metrics(server.request(
            &admin,
            pb::GetMetricsRequest {
                from: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                }),
                to: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.get_details_bad_request().unwrap().field_violations[0].field,
        "from"
    );
    server.stop().await;
}
