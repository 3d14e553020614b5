//! The precertification use cases without gRPC: `carepath_app::precert::Precert`
//! called directly over an embedded or PostgreSQL store with the demo directory.

use carepath_app::{
    AppError, Caller,
    precert::{Adverse, CheckRequest, Decision, Precert, PrecertEngine, SubmitRequest},
};
use carepath_core::{Actor, Icd10Code, MemberId, Npi, Role, ServiceCode, Setting, Urgency};
use carepath_precert::{Admission, Answer, CaseState, RecordRef, Requirement, ServiceLine};
use carepath_tests::{
    TestDb, contract_tests,
    precert::{IMAGING_IN, INTERNIST, MEMBER},
};

contract_tests!(
    a_check_and_a_submission_approved_at_once,
    a_nurse_may_not_deny,
    a_provider_outside_the_case_is_told_it_does_not_exist,
);

struct Fixture {
    precert: Precert,
    _keys: tempfile::TempDir,
}

async fn fixture(db: &TestDb) -> Fixture {
    let keys = tempfile::tempdir().expect("temp dir");
    let app = carepath_tests::demo_app(db, &keys).await;
    let engine = PrecertEngine::load(&db.store).await.expect("engine");
    Fixture {
        precert: Precert::new(app, engine),
        _keys: keys,
    }
}

fn caller(role: Role, subject: &str, operation: &str) -> Caller {
    Caller::new(Actor::new(role, subject).expect("actor"), operation)
}

/// A routine outpatient brain MRI on 2026-12-01.
fn mri_line() -> ServiceLine {
    ServiceLine {
        code: ServiceCode::parse("70553").unwrap(),
        units: 1,
        date_of_service: "2026-12-01".parse().unwrap(),
        setting: Setting::Outpatient,
        facility_kind: None,
        length_of_stay_hours: None,
        delivery: None,
        admission: Admission::Elective,
    }
}

fn mri(request_id: &str, answers: Vec<(&str, Answer)>) -> SubmitRequest {
    SubmitRequest {
        request_id: request_id.into(),
        member_id: MemberId::parse(MEMBER).unwrap(),
        requesting_npi: Npi::parse(IMAGING_IN).unwrap(),
        servicing_npi: Npi::parse(IMAGING_IN).unwrap(),
        lines: vec![mri_line()],
        diagnoses: vec![Icd10Code::parse("G43.909").unwrap()],
        urgency: Urgency::Routine,
        answers: answers
            .into_iter()
            .map(|(id, a)| (id.to_owned(), a))
            .collect(),
        records: vec![RecordRef {
            id: "rec-1".into(),
            document: "clinical_notes".into(),
        }],
        coverage_assertions: Vec::new(),
    }
}

async fn a_check_and_a_submission_approved_at_once(db: &TestDb) {
    let f = fixture(db).await;
    let provider = caller(Role::Provider, IMAGING_IN, "test:check");
    let answers = f
        .precert
        .check(
            &provider,
            CheckRequest {
                member_id: MemberId::parse(MEMBER).unwrap(),
                rendering_npi: Npi::parse(IMAGING_IN).unwrap(),
                diagnoses: vec![Icd10Code::parse("G43.909").unwrap()],
                lines: vec![mri_line()],
            },
        )
        .await
        .expect("check");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].requirement, Requirement::Required);

    let request = mri("app-1", vec![("red_flag_symptoms", Answer::Bool(true))]);
    let first = f
        .precert
        .submit(&provider, request.clone())
        .await
        .expect("submit");
    assert!(first.created);
    assert_eq!(first.case.case.state, CaseState::Approved);
    assert_eq!(first.case.request_id, "app-1");

    // A retry answers with the case filed first.
    let again = f.precert.submit(&provider, request).await.expect("retry");
    assert!(!again.created);
    assert_eq!(again.case.case.id, first.case.case.id);

    let kinds = db.event_kinds("precert_case", &first.case.case.id).await;
    assert!(
        kinds.contains(&"precert.case.approved".to_owned()),
        "{kinds:?}"
    );
    let seen = f
        .precert
        .get_case(&provider, &first.case.case.id)
        .await
        .expect("get");
    assert_eq!(seen.case.state, CaseState::Approved);
}

async fn a_nurse_may_not_deny(db: &TestDb) {
    let f = fixture(db).await;
    let provider = caller(Role::Provider, IMAGING_IN, "test:submit");
    let pended = f
        .precert
        .submit(
            &provider,
            mri(
                "app-2",
                vec![
                    ("red_flag_symptoms", Answer::Bool(false)),
                    ("conservative_therapy_weeks", Answer::Number(1.0)),
                ],
            ),
        )
        .await
        .expect("submit");
    assert_eq!(pended.case.case.state, CaseState::PendedReview);
    let id = pended.case.case.id.clone();

    let nurse = caller(Role::Nurse, "RN-001", "test:decide");
    let denied = f
        .precert
        .decide(
            &nurse,
            &id,
            Decision::Deny(Adverse {
                reason_code: "not_medically_necessary".into(),
                rationale: "Conservative therapy has not been tried.".into(),
                guideline: "IMG-MRI".into(),
            }),
        )
        .await;
    assert!(
        matches!(denied, Err(AppError::PermissionDenied(ref m)) if m.contains("physician reviewer")),
        "{denied:?}"
    );
    // Nothing changed.
    let after = f.precert.get_case(&nurse, &id).await.expect("get");
    assert_eq!(after.case.state, CaseState::PendedReview);
    assert!(after.case.decisions.is_empty());
}

async fn a_provider_outside_the_case_is_told_it_does_not_exist(db: &TestDb) {
    let f = fixture(db).await;
    let provider = caller(Role::Provider, IMAGING_IN, "test:submit");
    let filed = f
        .precert
        .submit(
            &provider,
            mri(
                "app-3",
                vec![
                    ("red_flag_symptoms", Answer::Bool(false)),
                    ("conservative_therapy_weeks", Answer::Number(1.0)),
                ],
            ),
        )
        .await
        .expect("submit");
    let id = filed.case.case.id.clone();
    let outsider = caller(Role::Provider, INTERNIST, "test:claim");
    let claimed = f.precert.claim(&outsider, &id).await;
    assert!(
        matches!(
            claimed,
            Err(AppError::NotFound {
                kind: "precert case",
                ..
            })
        ),
        "{claimed:?}"
    );
    // The case's own provider may see it but not claim it: the workflow refuses, and
    // the refusal is audited once the case's transaction has ended.
    let refused = f.precert.claim(&provider, &id).await;
    assert!(
        matches!(refused, Err(AppError::PermissionDenied(_))),
        "{refused:?}"
    );
    let nurse = caller(Role::Nurse, "RN-001", "test:claim");
    let taken = f.precert.claim(&nurse, &id).await.expect("claim");
    assert_eq!(taken.case.state, CaseState::InReview);
}
