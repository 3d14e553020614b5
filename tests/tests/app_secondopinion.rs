//! Second-opinion use cases through `carepath_app` directly, without gRPC, on both
//! backends: a member checks eligibility and submits a request, answers the
//! questionnaire and a nurse logs the records; another member is told the request
//! does not exist, and a nurse may not answer the member's questionnaire; what a
//! crash left in the records folder is swept, and records are the owner's only.

use std::sync::Arc;

use carepath_app::{
    App, AppError, Caller,
    secondopinion::{
        CheckEligibility, LogRecord, RecordStorage, SecondOpinion, StatusChange, Submit,
        UploadRecord,
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
    what_a_crash_left_in_the_records_folder_is_swept,
    a_watch_learns_of_a_change_another_process_made_without_being_told,
);

const UK_MEMBER: &str = "M100014";
const OTHER_MEMBER: &str = "M100016";
const UK_OWN_NEPHROLOGIST: &str = "1230457628";
const NURSE: &str = "RN-004";

struct Ctx {
    app: App,
    opinions: SecondOpinion,
    _keys: tempfile::TempDir,
    records: tempfile::TempDir,
}

async fn start(db: &TestDb) -> Ctx {
    let keys = tempfile::tempdir().expect("temp dir");
    let records = tempfile::tempdir().expect("temp dir");
    let app = carepath_tests::demo_app(db, &keys).await;
    let opinions = opinions_over(&app, records.path());
    Ctx {
        app,
        opinions,
        _keys: keys,
        records,
    }
}

/// The second-opinion use cases over `app`, with records kept in `records`.
fn opinions_over(app: &App, records: &std::path::Path) -> SecondOpinion {
    SecondOpinion::new(
        app.clone(),
        Arc::new(carepath_secondopinion::shipped()),
        RecordStorage::local(records).expect("records folder"),
    )
}

/// The id of a kidney request the member submitted.
async fn kidney_request_id(ctx: &Ctx) -> String {
    ctx.opinions
        .submit(
            &caller(Role::Member, UK_MEMBER, "app/Submit"),
            kidney_request(),
        )
        .await
        .unwrap()
        .request
        .request
        .id
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
    let id = kidney_request_id(&ctx).await;
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

/// Sets a file's modification time `age` into the past, as if written before a crash.
fn age_file(path: &std::path::Path, age: std::time::Duration) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open to age");
    file.set_modified(std::time::SystemTime::now() - age)
        .expect("set modification time");
}

async fn what_a_crash_left_in_the_records_folder_is_swept(db: &TestDb) {
    use std::os::unix::fs::PermissionsExt;

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
    ctx.opinions
        .answer_questionnaire(
            &caller(Role::Member, UK_MEMBER, "app/AnswerQuestionnaire"),
            &id,
            kidney_answers(),
        )
        .await
        .unwrap();
    let bytes = b"%PDF-1.4 latest kidney function tests".to_vec();
    let added = ctx
        .opinions
        .upload_record(
            &caller(Role::Member, UK_MEMBER, "app/UploadRecord"),
            UploadRecord {
                request_id: id.clone(),
                kind: RecordKind::LabResult,
                file_name: "labs.pdf".into(),
                content_type: "application/pdf".into(),
                size_bytes: bytes.len() as u64,
                sha256: carepath_app::secondopinion::records::sha256_hex(&bytes),
                description: "Kidney function tests".into(),
            },
            futures::stream::iter([Ok(bytes::Bytes::from(bytes.clone()))]),
        )
        .await
        .unwrap();
    let record = added.record.expect("the uploaded record");
    let folder = ctx.records.path();
    let kept = folder.join(record.object_key.as_deref().expect("a file"));
    // Health data is the owner's only, whatever the umask.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(folder), 0o700);
    assert_eq!(mode(&kept), 0o600);

    // What a SIGKILL leaves: an upload cut off (its temporary object and the local
    // folder's staging file of another), and files kept whose request never listed
    // them, for this request and for one that was never stored.
    let hour = std::time::Duration::from_secs(3600);
    let left = [
        folder.join("tmp/REC-cut-off"),
        folder.join("tmp/REC-staging#1"),
        folder.join(format!("requests/{id}/REC-never-listed")),
        folder.join("requests/SO-never-stored/REC-lost"),
    ];
    for path in &left {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"member health data").unwrap();
        age_file(path, hour);
    }
    age_file(&kept, hour);
    // An upload still in progress (written just now) is left alone.
    let in_progress = folder.join("tmp/REC-in-progress");
    std::fs::write(&in_progress, b"arriving").unwrap();

    let storage = RecordStorage::local(folder).unwrap();
    let swept = storage.sweep(&ctx.app.store, None).await.unwrap();
    assert_eq!((swept.temporary, swept.orphans), (2, 2));
    for path in &left {
        assert!(!path.exists(), "{} is still there", path.display());
    }
    assert!(kept.exists(), "the listed record was removed");
    assert!(in_progress.exists(), "an upload in progress was removed");
    // The record is still whole and downloads.
    let download = ctx
        .opinions
        .download_record(
            &caller(Role::Member, UK_MEMBER, "app/DownloadRecord"),
            carepath_app::secondopinion::DownloadRecord {
                request_id: id.clone(),
                record_id: record.id.clone(),
            },
        )
        .await
        .unwrap();
    let got: Vec<u8> = download.bytes.map(|b| b.unwrap().to_vec()).concat().await;
    assert_eq!(got, bytes);
    // A second sweep finds nothing. A periodic sweep checks only files new since the
    // last one's cutoff; the sweep at the next start checks everything.
    let again = storage
        .sweep(&ctx.app.store, Some(swept.cutoff))
        .await
        .unwrap();
    assert_eq!((again.temporary, again.orphans), (0, 0));
    let late = folder.join(format!("requests/{id}/REC-orphaned-earlier"));
    std::fs::write(&late, b"member health data").unwrap();
    age_file(&late, 2 * hour);
    let periodic = storage
        .sweep(&ctx.app.store, Some(swept.cutoff))
        .await
        .unwrap();
    assert_eq!(periodic.orphans, 0);
    assert!(late.exists());
    let at_start = storage.sweep(&ctx.app.store, None).await.unwrap();
    assert_eq!(at_start.orphans, 1);
    assert!(!late.exists());
}

/// Another process sharing the database (here a second `SecondOpinion` over the same
/// store, with its own broadcast) changes the request, and no notification says so:
/// the watch still reports the change, from its periodic re-read.
async fn a_watch_learns_of_a_change_another_process_made_without_being_told(db: &TestDb) {
    let ctx = start(db).await;
    let other = opinions_over(&ctx.app, ctx.records.path());
    let id = kidney_request_id(&ctx).await;
    let mut watch = ctx
        .opinions
        .watch_status(&caller(Role::Member, UK_MEMBER, "app/WatchStatus"), &id)
        .await
        .unwrap();
    assert!(watch.next().await.unwrap().snapshot);

    other
        .answer_questionnaire(
            &caller(Role::Member, UK_MEMBER, "app/AnswerQuestionnaire"),
            &id,
            kidney_answers(),
        )
        .await
        .unwrap();
    let change = tokio::time::timeout(std::time::Duration::from_secs(30), watch.next())
        .await
        .expect("the watch re-reads its request within seconds")
        .expect("the watch goes on");
    assert_eq!(
        (change.status, change.snapshot),
        (Status::AwaitingRecords, false)
    );
}
