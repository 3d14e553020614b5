//! The precertification use cases without gRPC: `carepath_app::precert::Precert`
//! called directly over an embedded or PostgreSQL store with the demo directory.

use carepath_app::{
    AppError, Caller, PageRequest,
    context::MAX_PAGE_BYTES,
    precert::{Adverse, CheckRequest, Decision, ListCases, Precert, PrecertEngine, SubmitRequest},
};
use carepath_core::{
    Actor, Icd10Code, MemberId, Npi, ProviderKind, Role, ServiceCode, Setting, Urgency,
};
use carepath_precert::limits::{MAX_NOTE, MAX_RECORD_REF, MAX_RECORDS};
use carepath_precert::{
    Admission, Answer, CaseState, LineOutcome, PendReason, RecordRef, Requirement, Responsible,
    ReviewReason, ServiceLine,
};
use carepath_tests::{
    TestDb, contract_tests,
    precert::{HOSPITAL, IMAGING_IN, INTERNIST, MEMBER},
};

contract_tests!(
    a_check_and_a_submission_approved_at_once,
    a_nurse_may_not_deny,
    a_provider_outside_the_case_is_told_it_does_not_exist,
    a_request_id_is_the_submitting_callers_own,
    a_retry_that_changes_the_request_is_already_exists,
    free_text_past_its_bound_is_refused_naming_the_field,
    a_page_of_cases_stays_under_the_byte_bound_whatever_is_stored,
    dates_of_service_that_make_no_sense_are_refused_naming_the_line,
    a_service_already_given_is_a_retrospective_review_for_a_reviewer,
    a_plan_that_takes_no_retrospective_requests_refuses_them,
    an_emergency_admission_is_a_notification_not_an_approval,
    repeated_refusals_are_counted_not_written_one_by_one,
    a_directory_change_reaches_checks_at_once_here_and_within_seconds_elsewhere,
);

struct Fixture {
    app: carepath_app::App,
    precert: Precert,
    _keys: tempfile::TempDir,
}

async fn fixture(db: &TestDb) -> Fixture {
    let keys = tempfile::tempdir().expect("temp dir");
    let app = carepath_tests::demo_app(db, &keys).await;
    let engine = PrecertEngine::load(&db.store).await.expect("engine");
    Fixture {
        precert: Precert::new(app.clone(), engine),
        app,
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

/// A family physician with no part in the member's imaging.
const FAMILY_PHYSICIAN: &str = "1500125129";

async fn a_request_id_is_the_submitting_callers_own(db: &TestDb) {
    let f = fixture(db).await;
    let imaging = caller(Role::Provider, IMAGING_IN, "test:submit");
    let other = caller(Role::Provider, FAMILY_PHYSICIAN, "test:submit");
    let red_flags = || vec![("red_flag_symptoms", Answer::Bool(true))];
    // Another provider files "mri-0042" first, naming the imaging center as requester
    // and itself as servicing provider, for another member.
    let mut squat = mri("mri-0042", red_flags());
    squat.member_id = MemberId::parse("M100004").unwrap();
    squat.servicing_npi = Npi::parse(FAMILY_PHYSICIAN).unwrap();
    let theirs = f
        .precert
        .submit(&other, squat.clone())
        .await
        .expect("the other provider's request");
    assert!(theirs.created);
    // The imaging center's own "mri-0042" is still its own request.
    let mine = f
        .precert
        .submit(&imaging, mri("mri-0042", red_flags()))
        .await
        .expect("the imaging center's request");
    assert!(mine.created, "the request id was taken by another caller");
    assert_ne!(mine.case.case.id, theirs.case.case.id);
    assert_eq!(mine.case.case.request.member_id.as_str(), MEMBER);
    assert_eq!(mine.case.request_id, "mri-0042");
    // Each caller's retry answers with its own case.
    let again = f.precert.submit(&other, squat).await.expect("retry");
    assert_eq!(
        (again.created, again.case.case.id),
        (false, theirs.case.case.id)
    );
    let again = f
        .precert
        .submit(&imaging, mri("mri-0042", red_flags()))
        .await
        .expect("retry");
    assert_eq!(
        (again.created, again.case.case.id.as_str()),
        (false, mine.case.case.id.as_str())
    );
    // A provider finds its own request by its id.
    let found = f
        .precert
        .find_request(&imaging, None, "mri-0042")
        .await
        .expect("found");
    assert_eq!(found.case.id, mine.case.case.id);
}

async fn a_retry_that_changes_the_request_is_already_exists(db: &TestDb) {
    let f = fixture(db).await;
    let provider = caller(Role::Provider, IMAGING_IN, "test:submit");
    let first = mri("app-retry", vec![("red_flag_symptoms", Answer::Bool(true))]);
    let filed = f
        .precert
        .submit(&provider, first.clone())
        .await
        .expect("submit");
    let mut changed = first.clone();
    changed.member_id = MemberId::parse("M100004").unwrap();
    changed.lines[0].units = 2;
    let refused = f.precert.submit(&provider, changed).await;
    match refused {
        Err(AppError::AlreadyExists { kind, id }) => {
            assert_eq!(kind, "request id");
            assert!(id.starts_with("app-retry "), "{id}");
            assert!(id.contains(&filed.case.case.id), "{id}");
            assert!(id.contains("member_id, lines"), "{id}");
        }
        other => panic!("a changed retry got {other:?}"),
    }
    // Only one case was filed, and the true retry still answers with it.
    let again = f.precert.submit(&provider, first).await.expect("retry");
    assert_eq!(
        (again.created, again.case.case.id),
        (false, filed.case.case.id)
    );
}

fn fields(result: Result<impl std::fmt::Debug, AppError>) -> Vec<String> {
    match result {
        Err(AppError::Invalid(invalid)) => {
            invalid.violations.into_iter().map(|v| v.field).collect()
        }
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
}

async fn free_text_past_its_bound_is_refused_naming_the_field(db: &TestDb) {
    let f = fixture(db).await;
    let provider = caller(Role::Provider, IMAGING_IN, "test:submit");
    let mut many = mri("app-many", vec![("red_flag_symptoms", Answer::Bool(true))]);
    many.records = (0..=MAX_RECORDS)
        .map(|i| RecordRef {
            id: format!("rec-{i}"),
            document: "clinical_notes".into(),
        })
        .collect();
    assert_eq!(fields(f.precert.submit(&provider, many).await), ["records"]);
    let mut long = mri("app-long", vec![("red_flag_symptoms", Answer::Bool(true))]);
    long.records[0].id = "r".repeat(MAX_RECORD_REF + 1);
    assert_eq!(
        fields(f.precert.submit(&provider, long).await),
        ["records[0].id"]
    );

    // A withdrawal reason past its bound leaves the case as it was.
    let pended = f
        .precert
        .submit(
            &provider,
            mri(
                "app-withdraw",
                vec![
                    ("red_flag_symptoms", Answer::Bool(false)),
                    ("conservative_therapy_weeks", Answer::Number(1.0)),
                ],
            ),
        )
        .await
        .expect("submit");
    let id = pended.case.case.id;
    let huge = "x".repeat(MAX_NOTE + 1);
    assert_eq!(
        fields(f.precert.withdraw(&provider, &id, &huge).await),
        ["reason"]
    );
    let after = f.precert.get_case(&provider, &id).await.expect("get");
    assert_eq!(after.case.state, CaseState::PendedReview);
    let fine = "x".repeat(MAX_NOTE);
    f.precert
        .withdraw(&provider, &id, &fine)
        .await
        .expect("a reason at the bound is taken");
}

/// Cases stored before text was bounded can be large: three of 1.5 MiB each.
async fn a_page_of_cases_stays_under_the_byte_bound_whatever_is_stored(db: &TestDb) {
    let f = fixture(db).await;
    let provider = caller(Role::Provider, IMAGING_IN, "test:submit");
    let mut ids = Vec::new();
    for n in 0..3 {
        let filed = f
            .precert
            .submit(
                &provider,
                mri(
                    &format!("app-big-{n}"),
                    vec![("red_flag_symptoms", Answer::Bool(true))],
                ),
            )
            .await
            .expect("submit");
        let mut record = db.store.get_case(&filed.case.case.id).await.unwrap();
        record.doc["history"][0]["note"] = "y".repeat(3 * MAX_PAGE_BYTES / 4).into();
        let mut tx = db.store.begin().await.unwrap();
        tx.update_case(&record, record.received_at).await.unwrap();
        tx.commit().await.unwrap();
        ids.push(filed.case.case.id);
    }
    let admin = caller(Role::Admin, "AD-001", "test:list");
    let (mut token, mut seen, mut pages) = (String::new(), Vec::new(), 0);
    loop {
        let page = f
            .precert
            .list_cases(
                &admin,
                ListCases {
                    page: PageRequest { token, size: 50 },
                    ..ListCases::default()
                },
            )
            .await
            .expect("list");
        let bytes: usize = page
            .items
            .iter()
            .map(|v| serde_json::to_vec(&v.case).unwrap().len())
            .sum();
        assert!(
            page.items.len() == 1 || bytes <= MAX_PAGE_BYTES,
            "a page of {} cases carries {bytes} bytes",
            page.items.len()
        );
        pages += 1;
        seen.extend(page.items.into_iter().map(|v| v.case.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(pages >= 2, "every case came in one page");
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
}

/// The field and message of a refusal that names one field.
fn one_field(err: AppError) -> (String, String) {
    let AppError::Invalid(invalid) = err else {
        panic!("expected a field error, got {err:?}");
    };
    assert_eq!(invalid.violations.len(), 1, "{invalid}");
    let v = &invalid.violations[0];
    (v.field.clone(), v.description.clone())
}

async fn dates_of_service_that_make_no_sense_are_refused_naming_the_line(db: &TestDb) {
    // The test clock reads 2026-11-23 (New York) throughout.
    let f = fixture(db).await;
    let provider = caller(Role::Provider, IMAGING_IN, "test:submit");
    let cases = [
        (
            "2200-01-01",
            "more than 730 days after the request was received (2026-11-23)",
        ),
        (
            "9999-12-31",
            "more than 730 days after the request was received (2026-11-23)",
        ),
        (
            "1900-01-01",
            "more than 90 days before the request was received (2026-11-23)",
        ),
    ];
    for (date, message) in cases {
        let mut request = mri(
            &format!("dos-{date}"),
            vec![("red_flag_symptoms", Answer::Bool(true))],
        );
        request.lines.push(mri_line());
        request.lines[1].date_of_service = date.parse().unwrap();
        let err = f.precert.submit(&provider, request).await.unwrap_err();
        let (field, description) = one_field(err);
        assert_eq!(field, "lines[1].date_of_service", "{date}");
        assert!(description.contains(message), "{date}: {description}");
    }
    // Nothing was filed for any of them.
    let retry = mri(
        "dos-2200-01-01",
        vec![("red_flag_symptoms", Answer::Bool(true))],
    );
    assert!(f.precert.submit(&provider, retry).await.unwrap().created);

    // A requirement check names the field too, and may ask about a past date.
    let check = |date: &str| CheckRequest {
        member_id: MemberId::parse(MEMBER).unwrap(),
        rendering_npi: Npi::parse(IMAGING_IN).unwrap(),
        diagnoses: vec![Icd10Code::parse("G43.909").unwrap()],
        lines: vec![ServiceLine {
            date_of_service: date.parse().unwrap(),
            ..mri_line()
        }],
    };
    let err = f
        .precert
        .check(&provider, check("2200-01-01"))
        .await
        .unwrap_err();
    assert_eq!(one_field(err).0, "lines[0].date_of_service");
    f.precert
        .check(&provider, check("2026-11-01"))
        .await
        .expect("a coverage question about a past date");

    // An emergency admission two days ago, notified now, is still taken.
    let hospital = caller(Role::Provider, HOSPITAL, "test:submit");
    let mut emergency = emergency_admission("er-notice");
    emergency.lines[0].date_of_service = "2026-11-21".parse().unwrap();
    let filed = f
        .precert
        .submit(&hospital, emergency)
        .await
        .expect("an emergency admission notified after the fact");
    assert!(filed.created);
    assert_eq!(filed.case.case.state, CaseState::NotificationReceived);
}

fn emergency_admission(request_id: &str) -> SubmitRequest {
    SubmitRequest {
        request_id: request_id.into(),
        member_id: MemberId::parse(MEMBER).unwrap(),
        requesting_npi: Npi::parse(HOSPITAL).unwrap(),
        servicing_npi: Npi::parse(HOSPITAL).unwrap(),
        lines: vec![ServiceLine {
            code: ServiceCode::parse("99223").unwrap(),
            units: 1,
            date_of_service: "2026-11-22".parse().unwrap(),
            setting: Setting::Inpatient,
            facility_kind: Some(ProviderKind::AcuteHospital),
            length_of_stay_hours: Some(72),
            delivery: None,
            admission: Admission::Emergency,
        }],
        diagnoses: vec![Icd10Code::parse("I21.9").unwrap()],
        urgency: Urgency::Urgent,
        answers: Vec::new(),
        records: Vec::new(),
        coverage_assertions: Vec::new(),
    }
}

/// The kinds of the events stored for case `id`, in order.
async fn event_kinds_of(db: &TestDb, id: &str) -> Vec<String> {
    db.store
        .events_for(carepath_precert::AGGREGATE_KIND, id)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

async fn a_service_already_given_is_a_retrospective_review_for_a_reviewer(db: &TestDb) {
    // The test clock reads 2026-11-23 (New York). An MRI given on 2026-11-01 whose
    // answers would meet the criteria in advance is not approved by the rules.
    let f = fixture(db).await;
    let provider = caller(Role::Provider, IMAGING_IN, "test:submit");
    let mut request = mri("retro-1", vec![("red_flag_symptoms", Answer::Bool(true))]);
    request.lines[0].date_of_service = "2026-11-01".parse().unwrap();
    let filed = f.precert.submit(&provider, request).await.expect("submit");
    let case = &filed.case.case;
    assert_eq!(case.state, CaseState::RetrospectiveReview);
    assert!(case.retrospective);
    assert!(case.decisions.is_empty(), "{:?}", case.decisions);
    // The post-service clock: 30 calendar days from receipt.
    assert_eq!(case.due.basis, carepath_precert::DueBasis::PostService);
    assert_eq!(case.due.at - case.received_at, chrono::Duration::days(30));
    let line = &case.determination.as_ref().expect("determination").lines[0];
    assert!(
        matches!(
            &line.outcome,
            LineOutcome::Pended {
                reason: PendReason::NeedsClinicalReview {
                    reason: ReviewReason::RetrospectiveRequest,
                    ..
                }
            }
        ),
        "{:?}",
        line.outcome
    );
    assert_eq!(
        event_kinds_of(db, &case.id).await,
        ["precert.case.submitted", "precert.case.pended_for_review"]
    );

    // It waits in the review queue; a nurse claims it, releases it back to its own
    // status, claims it again and approves it.
    let nurse = caller(Role::Nurse, "RN-001", "test:review");
    let id = case.id.clone();
    let queue = f
        .precert
        .review_queue(&nurse, PageRequest::default())
        .await
        .expect("review queue");
    assert!(
        queue.items.iter().any(|c| c.case.id == id),
        "in the review queue"
    );
    f.precert.claim(&nurse, &id).await.expect("claim");
    let released = f.precert.release(&nurse, &id).await.expect("release");
    assert_eq!(released.case.state, CaseState::RetrospectiveReview);
    f.precert.claim(&nurse, &id).await.expect("claim again");
    let approved = f
        .precert
        .decide(
            &nurse,
            &id,
            Decision::Approve {
                note: "records support the service given".into(),
            },
        )
        .await
        .expect("approve");
    assert_eq!(approved.case.state, CaseState::Approved);
    assert_eq!(approved.case.decisions.len(), 1);
}

async fn a_plan_that_takes_no_retrospective_requests_refuses_them(db: &TestDb) {
    let keys = tempfile::tempdir().expect("temp dir");
    let app = carepath_tests::demo_app(db, &keys).await;
    let window = carepath_app::precert::ServiceDates {
        retrospective: carepath_app::precert::Retrospective::Refuse,
        ..carepath_app::precert::ServiceDates::default()
    };
    let engine = PrecertEngine::load_with(&db.store, window)
        .await
        .expect("engine");
    let precert = Precert::new(app, engine);
    let provider = caller(Role::Provider, IMAGING_IN, "test:submit");
    let mut request = mri("retro-2", vec![("red_flag_symptoms", Answer::Bool(true))]);
    request.lines.push(mri_line());
    request.lines[1].date_of_service = "2026-11-01".parse().unwrap();
    let err = precert.submit(&provider, request).await.unwrap_err();
    let (field, description) = one_field(err);
    assert_eq!(field, "lines[1].date_of_service");
    assert!(
        description.contains("a service already given is a retrospective request"),
        "{description}"
    );
    // Nothing was filed; an emergency admission notified after the fact still is.
    let retry = mri("retro-2", vec![("red_flag_symptoms", Answer::Bool(true))]);
    assert!(precert.submit(&provider, retry).await.unwrap().created);
    let hospital = caller(Role::Provider, HOSPITAL, "test:submit");
    let filed = precert
        .submit(&hospital, emergency_admission("er-refuse-plan"))
        .await
        .expect("an emergency admission");
    assert_eq!(filed.case.case.state, CaseState::NotificationReceived);
}

async fn an_emergency_admission_is_a_notification_not_an_approval(db: &TestDb) {
    let f = fixture(db).await;
    let hospital = caller(Role::Provider, HOSPITAL, "test:submit");
    let filed = f
        .precert
        .submit(&hospital, emergency_admission("er-1"))
        .await
        .expect("submit");
    let case = &filed.case.case;
    assert_eq!(case.state, CaseState::NotificationReceived);
    assert!(case.decisions.is_empty(), "no coverage decision");
    let line = &case.determination.as_ref().unwrap().lines[0];
    assert_eq!(line.requirement, Requirement::NotifyOnly);
    assert!(
        matches!(line.outcome, LineOutcome::Notified { .. }),
        "{:?}",
        line.outcome
    );
    assert_eq!(
        event_kinds_of(db, &case.id).await,
        [
            "precert.case.submitted",
            "precert.case.notification_received"
        ]
    );
    // Nothing is owed: no post-decision path applies.
    assert!(!case.state.awaits_plan());
    assert!(case.state.is_closed());
    let nurse = caller(Role::Nurse, "RN-001", "test:review");
    let err = f.precert.claim(&nurse, &case.id).await.unwrap_err();
    assert!(matches!(err, AppError::FailedPrecondition(_)), "{err:?}");
}

async fn repeated_refusals_are_counted_not_written_one_by_one(db: &TestDb) {
    let f = fixture(db).await;
    let provider = caller(Role::Provider, IMAGING_IN, "test:submit");
    let filed = f
        .precert
        .submit(
            &provider,
            mri("refused-1", vec![("red_flag_symptoms", Answer::Bool(true))]),
        )
        .await
        .expect("submit");
    let id = filed.case.case.id.clone();
    // Another member asks for the case 500 times in the same minute.
    let stranger = caller(Role::Member, "M100002", "test:get-case");
    for _ in 0..500 {
        let err = f.precert.get_case(&stranger, &id).await.unwrap_err();
        assert!(matches!(err, AppError::NotFound { .. }), "{err:?}");
    }
    let refusals = |entries: Vec<carepath_store::AuditRecord>| -> Vec<u32> {
        entries
            .into_iter()
            .filter(|r| r.entry.subject == "M100002" && r.entry.record_id == id)
            .inspect(|r| assert_eq!(r.entry.outcome, carepath_store::AuditOutcome::Denied))
            .map(|r| r.entry.repeats)
            .collect()
    };
    let query = carepath_store::AuditQuery {
        subject: Some("M100002".into()),
        ..Default::default()
    };
    let written = refusals(db.store.search_audit(&query, 0, 1_000).await.unwrap());
    assert_eq!(written, [0], "only the first refusal is written at once");
    // The count is written when the minute is over (here: at shutdown, `all`).
    // (The test clock stands still, so the minute is never over by itself.)
    assert_eq!(
        f.app.flush_refusals(false).await.unwrap(),
        0,
        "the minute is not over"
    );
    assert_eq!(f.app.flush_refusals(true).await.unwrap(), 1);
    let written = refusals(db.store.search_audit(&query, 0, 1_000).await.unwrap());
    assert_eq!(written, [0, 499], "every refusal is accounted for");
    assert!(matches!(
        db.store.verify_audit().await.unwrap(),
        carepath_store::AuditVerification::Intact { .. }
    ));
}

/// Checks remember the member, plan and provider they read: a change made through this
/// process is seen by the next check, one made through another process on the same
/// database once [`carepath_app::directory::memory::MEMORY_SECS`] have passed.
async fn a_directory_change_reaches_checks_at_once_here_and_within_seconds_elsewhere(db: &TestDb) {
    let here = fixture(db).await;
    let elsewhere = fixture(db).await;
    let provider = caller(Role::Provider, IMAGING_IN, "test:check");
    let responsible = |f: &Fixture| {
        let precert = f.precert.clone();
        let provider = provider.clone();
        async move {
            let request = CheckRequest {
                member_id: MemberId::parse(MEMBER).unwrap(),
                rendering_npi: Npi::parse(IMAGING_IN).unwrap(),
                diagnoses: vec![Icd10Code::parse("G43.909").unwrap()],
                lines: vec![mri_line()],
            };
            precert.check(&provider, request).await.expect("check")[0].responsible
        }
    };
    assert_eq!(responsible(&here).await, Responsible::Provider);
    assert_eq!(responsible(&elsewhere).await, Responsible::Provider);

    // The imaging centre leaves every network, through this process.
    let admin = caller(Role::Admin, "AD-001", "test:directory");
    let directory = carepath_app::directory::Directory::new(here.app.clone());
    let npi = Npi::parse(IMAGING_IN).unwrap();
    let mut centre = directory
        .get_provider(&admin, &npi)
        .await
        .expect("provider");
    centre.in_network_plans.clear();
    directory
        .upsert_provider(&admin, centre)
        .await
        .expect("upsert");

    assert_eq!(
        responsible(&here).await,
        Responsible::Member,
        "out of network: the member must ask"
    );
    assert_eq!(
        responsible(&elsewhere).await,
        Responsible::Provider,
        "the other process still uses what it read"
    );
    let clock = carepath_core::FixedClock::new(
        elsewhere.app.now()
            + chrono::Duration::seconds(carepath_app::directory::memory::MEMORY_SECS + 1),
    );
    let mut later = elsewhere.app.clone();
    later.clock = std::sync::Arc::new(clock);
    let engine = PrecertEngine::load(&db.store).await.expect("engine");
    let later = Fixture {
        precert: Precert::new(later.clone(), engine),
        app: later,
        _keys: tempfile::tempdir().expect("temp dir"),
    };
    assert_eq!(responsible(&later).await, Responsible::Member);
}
