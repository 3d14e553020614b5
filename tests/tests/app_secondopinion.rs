//! Second-opinion use cases through `carepath_app` directly, without gRPC, on both
//! backends: a member checks eligibility and submits a request, answers the
//! questionnaire and a nurse logs the records; another member is told the request
//! does not exist, and a nurse may not answer the member's questionnaire.

use std::sync::Arc;

use carepath_app::{
    App, AppError, Caller,
    secondopinion::{
        CheckEligibility, LogRecord, RecordStorage, SecondOpinion, StatusChange, Submit,
    },
};
use carepath_core::{Actor, Icd10Code, MemberId, Npi, Role};
use carepath_secondopinion::{
    Answer, AnswerValue, FirstOpinion, RecordChannel, RecordKind, Status,
};
use carepath_store::{AuditOutcome, AuditQuery};
use carepath_tests::{TestDb, contract_tests};
use futures::StreamExt;

contract_tests!(
    a_member_checks_eligibility_and_submits_a_request,
    another_member_is_told_the_request_does_not_exist,
    a_request_takes_a_bounded_number_of_records,
);

const UK_MEMBER: &str = "M100014";
const OTHER_MEMBER: &str = "M100016";
const UK_OWN_NEPHROLOGIST: &str = "1230457628";
const NURSE: &str = "RN-004";

struct Ctx {
    app: App,
    opinions: SecondOpinion,
    _keys: tempfile::TempDir,
    _records: tempfile::TempDir,
}

async fn start(db: &TestDb) -> Ctx {
    let keys = tempfile::tempdir().expect("temp dir");
    let records = tempfile::tempdir().expect("temp dir");
    let app = carepath_tests::demo_app(db, &keys).await;
    let opinions = SecondOpinion::new(
        app.clone(),
        Arc::new(carepath_secondopinion::shipped()),
        RecordStorage::local(records.path()).expect("records folder"),
    );
    Ctx {
        app,
        opinions,
        _keys: keys,
        _records: records,
    }
}

fn caller(role: Role, subject: &str, operation: &str) -> Caller {
    Caller::new(Actor::new(role, subject).expect("valid actor"), operation)
}

fn first_opinion() -> FirstOpinion {
    FirstOpinion {
        physician_npi: Some(Npi::parse(UK_OWN_NEPHROLOGIST).unwrap()),
        physician_name: "Dr. Fiona MacAllister".into(),
        practice: None,
        given_on: "2026-10-02".parse().unwrap(),
        summary: "Chronic kidney disease stage 4; continue a daily oral ACE inhibitor".into(),
    }
}

fn kidney_request() -> Submit {
    Submit {
        member_id: MemberId::parse(UK_MEMBER).unwrap(),
        diagnosis: Icd10Code::parse("N18.4").unwrap(),
        major_surgery_recommended: false,
        emergency: false,
        current_treatment: "A daily ACE inhibitor to slow further damage to the kidneys".into(),
        first_opinion: Some(first_opinion()),
    }
}

fn kidney_answers() -> Vec<Answer> {
    let answer = |id: &str, value| Answer {
        question_id: id.into(),
        value,
    };
    vec![
        answer("stage", AnswerValue::Choice("4".into())),
        answer("on_dialysis", AnswerValue::YesNo(false)),
        answer(
            "current_treatment",
            AnswerValue::Text("Lisinopril 10 mg daily".into()),
        ),
        answer("latest_egfr", AnswerValue::Number(22.0)),
        answer(
            "questions_for_expert",
            AnswerValue::Text("Is my treatment aggressive enough?".into()),
        ),
    ]
}

async fn a_member_checks_eligibility_and_submits_a_request(db: &TestDb) {
    let ctx = start(db).await;
    let member = caller(Role::Member, UK_MEMBER, "app/CheckEligibility");

    let emergency = ctx
        .opinions
        .check_eligibility(
            &member,
            CheckEligibility {
                member_id: MemberId::parse(UK_MEMBER).unwrap(),
                diagnosis: Icd10Code::parse("N18.4").unwrap(),
                major_surgery_recommended: false,
                emergency: true,
                first_opinion: Some(first_opinion()),
            },
        )
        .await
        .unwrap();
    assert!(!emergency.eligible());
    assert_eq!(emergency.ineligible.unwrap().code(), "emergency");

    let eligible = ctx
        .opinions
        .check_eligibility(
            &member,
            CheckEligibility {
                member_id: MemberId::parse(UK_MEMBER).unwrap(),
                diagnosis: Icd10Code::parse("N18.4").unwrap(),
                major_surgery_recommended: false,
                emergency: false,
                first_opinion: Some(first_opinion()),
            },
        )
        .await
        .unwrap();
    assert!(eligible.eligible());
    assert_eq!(eligible.group.unwrap().id, "chronic_kidney_disease");

    let member = caller(Role::Member, UK_MEMBER, "app/Submit");
    let submitted = ctx
        .opinions
        .submit(&member, kidney_request())
        .await
        .unwrap();
    let request = &submitted.request.request;
    assert!(request.id.starts_with("SO-"));
    assert_eq!(request.member_id.as_str(), UK_MEMBER);
    assert_eq!(request.status, Status::Submitted);
    assert!(!submitted.request.late);
    let questionnaire = submitted.questionnaire.expect("a questionnaire to answer");
    assert_eq!(questionnaire.id, request.questionnaire.id);
    let id = request.id.clone();
    assert_eq!(
        db.event_kinds(carepath_secondopinion::AGGREGATE_KIND, &id)
            .await
            .first()
            .map(String::as_str),
        Some(carepath_secondopinion::event_kinds::SUBMITTED)
    );

    // A watcher hears each status change after the snapshot.
    let mut watch = ctx
        .opinions
        .watch_status(&caller(Role::Member, UK_MEMBER, "app/WatchStatus"), &id)
        .await
        .unwrap();
    let snapshot: StatusChange = watch.next().await.unwrap();
    assert!(snapshot.snapshot);
    assert_eq!(snapshot.status, Status::Submitted);

    let answered = ctx
        .opinions
        .answer_questionnaire(
            &caller(Role::Member, UK_MEMBER, "app/AnswerQuestionnaire"),
            &id,
            kidney_answers(),
        )
        .await
        .unwrap();
    assert!(answered.request.missing_answers.is_empty());
    assert_eq!(answered.request.status, Status::AwaitingRecords);
    let change = watch.next().await.unwrap();
    assert_eq!(
        (change.status, change.snapshot),
        (Status::AwaitingRecords, false)
    );

    // A nurse logs a faxed record.
    let nurse = caller(Role::Nurse, NURSE, "app/LogRecord");
    let logged = ctx
        .opinions
        .log_record(
            &nurse,
            LogRecord {
                request_id: id.clone(),
                kind: RecordKind::LabResult,
                channel: RecordChannel::Fax,
                description: "Latest kidney function tests, by fax".into(),
            },
        )
        .await
        .unwrap();
    let record = logged.record.expect("the logged record");
    assert_eq!(record.channel, RecordChannel::Fax);
    assert_eq!(
        logged
            .request
            .request
            .coordinator
            .as_ref()
            .map(|c| c.as_str()),
        Some(NURSE)
    );

    // The member reads it back; the read is audited.
    let shown = ctx
        .opinions
        .get_request(&caller(Role::Member, UK_MEMBER, "app/GetRequest"), &id)
        .await
        .unwrap();
    assert_eq!(shown.request.records.len(), 1);
    let audit = ctx
        .app
        .store
        .search_audit(
            &AuditQuery {
                member_id: Some(UK_MEMBER.into()),
                ..Default::default()
            },
            0,
            100,
        )
        .await
        .unwrap();
    assert!(
        audit
            .iter()
            .map(|r| &r.entry)
            .any(|e| e.rpc == "app/GetRequest"
                && e.record_id == id
                && e.outcome == AuditOutcome::Allowed)
    );
    assert!(audit.iter().map(|r| &r.entry).any(|e| e.rpc == "app/Submit"
        && e.record_kind == "secondopinion_request"
        && e.record_id == id));
}

async fn another_member_is_told_the_request_does_not_exist(db: &TestDb) {
    let ctx = start(db).await;
    let member = caller(Role::Member, UK_MEMBER, "app/Submit");
    let submitted = ctx
        .opinions
        .submit(&member, kidney_request())
        .await
        .unwrap();
    let id = submitted.request.request.id;

    let other = caller(Role::Member, OTHER_MEMBER, "app/GetRequest");
    let err = ctx.opinions.get_request(&other, &id).await.unwrap_err();
    assert!(
        matches!(&err, AppError::NotFound { kind: "second-opinion request", id: got } if *got == id),
        "{err:?}"
    );
    // The same answer as for a request that does not exist at all.
    let missing = ctx
        .opinions
        .get_request(&other, "SO-does-not-exist")
        .await
        .unwrap_err();
    assert!(matches!(missing, AppError::NotFound { .. }), "{missing:?}");

    // Nor may another member submit for the first one.
    let err = ctx
        .opinions
        .submit(
            &caller(Role::Member, OTHER_MEMBER, "app/Submit"),
            kidney_request(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppError::NotFound { kind: "member", .. }),
        "{err:?}"
    );

    // A nurse may see the open request but not answer the member's questionnaire:
    // refused, audited, and nothing changed.
    let nurse = caller(Role::Nurse, NURSE, "app/AnswerQuestionnaire");
    let err = ctx
        .opinions
        .answer_questionnaire(&nurse, &id, kidney_answers())
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::PermissionDenied(_)), "{err:?}");
    let still = ctx
        .opinions
        .get_request(&caller(Role::Member, UK_MEMBER, "app/GetRequest"), &id)
        .await
        .unwrap();
    assert_eq!(still.request.status, Status::Submitted);

    let denied = ctx
        .app
        .store
        .search_audit(
            &AuditQuery {
                member_id: Some(UK_MEMBER.into()),
                ..Default::default()
            },
            0,
            100,
        )
        .await
        .unwrap();
    let outcome = |subject: &str, rpc: &str| {
        denied
            .iter()
            .map(|r| &r.entry)
            .filter(|e| e.subject == subject && e.rpc == rpc && e.record_id == id)
            .map(|e| e.outcome)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        outcome(OTHER_MEMBER, "app/GetRequest"),
        [AuditOutcome::Denied]
    );
    assert_eq!(
        outcome(NURSE, "app/AnswerQuestionnaire"),
        [AuditOutcome::Denied]
    );
}

async fn a_request_takes_a_bounded_number_of_records(db: &TestDb) {
    let ctx = start(db).await;
    let member = caller(Role::Member, UK_MEMBER, "app/Submit");
    let id = ctx
        .opinions
        .submit(&member, kidney_request())
        .await
        .unwrap()
        .request
        .request
        .id;
    let nurse = caller(Role::Nurse, NURSE, "app/LogRecord");
    let log = || LogRecord {
        request_id: id.clone(),
        kind: RecordKind::LabResult,
        channel: RecordChannel::Fax,
        description: "Kidney function tests, by fax".into(),
    };
    for _ in 0..carepath_secondopinion::MAX_RECORDS {
        ctx.opinions
            .log_record(&nurse, log())
            .await
            .expect("logged");
    }
    let refused = ctx.opinions.log_record(&nurse, log()).await;
    assert!(
        matches!(&refused, Err(AppError::FailedPrecondition(m)) if m.contains("at most")),
        "{refused:?}"
    );
    let shown = ctx
        .opinions
        .get_request(&caller(Role::Member, UK_MEMBER, "app/GetRequest"), &id)
        .await
        .unwrap();
    assert_eq!(
        shown.request.records.len(),
        carepath_secondopinion::MAX_RECORDS
    );
}
