//! The PAS mapping over the real use cases, without HTTP: a PAS request Bundle read
//! into a submission, decided by the precertification use case, and written back as
//! a PAS response; on SQLite and PostgreSQL.

use carepath_app::{
    AppError, Caller,
    precert::{Adverse, Decision, ListCases, Precert, PrecertEngine, SubmitRequest},
};
use carepath_core::{Actor, Role};
use carepath_fhir::{
    codes,
    outcome::Failure,
    pas::{self, ReviewAction},
};
use carepath_precert::{Answer, CaseState};
use carepath_tests::{TestDb, contract_tests, precert::IMAGING_IN};
use serde_json::Value;

contract_tests!(
    an_mri_meeting_the_criteria_is_certified_at_once_and_a_retry_changes_nothing,
    a_pended_request_then_denied_by_a_physician_reads_as_pended_then_not_certified,
    fhir_and_the_command_decide_alike,
    a_question_no_rule_asks_is_named_by_its_element,
    a_request_without_its_answers_says_what_is_missing,
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

fn provider() -> Caller {
    Caller::new(Actor::new(Role::Provider, IMAGING_IN).unwrap(), "test:fhir")
}

fn example(name: &str) -> Value {
    let text = match name {
        "approved" => include_str!("../../crates/carepath-fhir/examples/pas-mri-approved.json"),
        "pended" => include_str!("../../crates/carepath-fhir/examples/pas-mri-pended.json"),
        _ => unreachable!(),
    };
    serde_json::from_str(text).unwrap()
}

/// The response Bundle for a submission, and its ClaimResponse.
async fn submit(f: &Fixture, bundle: &Value) -> (Value, Value) {
    let read = pas::submission(bundle).expect("a valid PAS request");
    let out = f
        .precert
        .submit(&provider(), read.request)
        .await
        .expect("submitted");
    let response = pas::response_bundle(
        &out.case,
        &read.claim_identifier,
        read.bundle_identifier.as_ref(),
        codes::PROFILE_RESPONSE_BUNDLE,
        codes::PROFILE_CLAIM_RESPONSE,
        "http://payer.example/fhir",
    );
    let claim_response = response["entry"][0]["resource"].clone();
    (response, claim_response)
}

/// How many cases are filed, as an admin sees them.
async fn cases(f: &Fixture) -> usize {
    let admin = Caller::new(Actor::new(Role::Admin, "AD-001").unwrap(), "test:list");
    f.precert
        .list_cases(&admin, ListCases::default())
        .await
        .expect("list")
        .items
        .len()
}

fn review_code(claim_response: &Value, item: usize) -> String {
    let review = &claim_response["item"][item]["adjudication"][0]["extension"][0];
    assert_eq!(review["url"], codes::EXT_REVIEW_ACTION);
    review["extension"][0]["valueCodeableConcept"]["coding"][0]["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn an_mri_meeting_the_criteria_is_certified_at_once_and_a_retry_changes_nothing(db: &TestDb) {
    let f = fixture(db).await;
    let (bundle, response) = submit(&f, &example("approved")).await;
    assert_eq!(bundle["type"], "collection");
    assert_eq!(bundle["identifier"]["value"], "B-mri-fhir-0001");
    assert_eq!(response["resourceType"], "ClaimResponse");
    assert_eq!(response["outcome"], "complete");
    assert_eq!(review_code(&response, 0), ReviewAction::Certified.code());
    let case_id = response["id"].as_str().unwrap().to_owned();
    assert!(case_id.starts_with("PA-"), "{case_id}");
    assert_eq!(response["preAuthRef"], case_id.as_str());
    // Valid from the decision for 90 days past the last date of service (2027-03-10).
    assert_eq!(response["preAuthPeriod"]["end"], "2027-06-08");
    assert_eq!(response["identifier"][0]["value"], "mri-fhir-0001");
    assert_eq!(
        response["extension"][0]["extension"][0]["valueBoolean"], false,
        "decided by automation, not a person"
    );
    let notes = response["processNote"].to_string();
    assert!(
        notes.contains("Item 1: rule IMG-MRI") && notes.contains("version 2027.1"),
        "the rule and list version are named: {notes}"
    );

    let (_, again) = submit(&f, &example("approved")).await;
    assert_eq!(again["id"], case_id.as_str());
    assert_eq!(again["preAuthRef"], case_id.as_str());
    assert_eq!(cases(&f).await, 1, "a retry files nothing");
}

async fn a_pended_request_then_denied_by_a_physician_reads_as_pended_then_not_certified(
    db: &TestDb,
) {
    let f = fixture(db).await;
    let read = pas::submission(&example("pended")).unwrap();
    let (_, response) = submit(&f, &example("pended")).await;
    assert_eq!(review_code(&response, 0), ReviewAction::Pended.code());
    assert!(response.get("preAuthRef").is_none());
    let notes = response["processNote"].to_string();
    assert!(notes.contains("clinical review"), "{notes}");

    let id = response["id"].as_str().unwrap().to_owned();
    let md = Caller::new(
        Actor::new(Role::PhysicianReviewer, "MD-RAD-01").unwrap(),
        "test:decide",
    );
    f.precert.claim(&md, &id).await.expect("claim");
    let denied = f
        .precert
        .decide(
            &md,
            &id,
            Decision::Deny(Adverse {
                reason_code: "not_medically_necessary".into(),
                rationale: "Six weeks of conservative therapy come first.".into(),
                guideline: "IMG-MRI".into(),
            }),
        )
        .await
        .expect("denied");
    assert_eq!(denied.case.state, CaseState::Denied);
    let (response, _) = pas::claim_response(
        &denied,
        &read.claim_identifier,
        codes::PROFILE_CLAIM_RESPONSE,
    );
    assert_eq!(review_code(&response, 0), ReviewAction::NotCertified.code());
    let review = &response["item"][0]["adjudication"][0]["extension"][0]["extension"];
    let reason = review
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "reasonCode")
        .expect("a reason for the denial");
    assert_eq!(
        reason["valueCodeableConcept"]["coding"][0]["code"],
        "not_medically_necessary"
    );
    assert!(
        response["processNote"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Guideline: IMG-MRI")
    );
    assert_eq!(
        response["extension"][0]["extension"][0]["valueBoolean"], true,
        "a person decided"
    );
}

/// The same request as a command (as the gRPC door builds it) and as a PAS Bundle
/// is decided by the same rule, list version and outcome.
async fn fhir_and_the_command_decide_alike(db: &TestDb) {
    let f = fixture(db).await;
    for (name, answers) in [
        ("approved", vec![("red_flag_symptoms", Answer::Bool(true))]),
        (
            "pended",
            vec![
                ("red_flag_symptoms", Answer::Bool(false)),
                ("conservative_therapy_weeks", Answer::Number(2.0)),
            ],
        ),
    ] {
        let read = pas::submission(&example(name)).unwrap();
        let mut command: SubmitRequest = read.request.clone();
        command.request_id = format!("grpc-{name}");
        command.answers = answers
            .into_iter()
            .map(|(id, a)| (id.to_owned(), a))
            .collect();
        let by_command = f.precert.submit(&provider(), command).await.unwrap();
        let by_fhir = f.precert.submit(&provider(), read.request).await.unwrap();
        let (a, b) = (&by_command.case.case, &by_fhir.case.case);
        assert_eq!(a.state, b.state, "{name}");
        let (da, db_) = (
            a.determination.as_ref().unwrap(),
            b.determination.as_ref().unwrap(),
        );
        assert_eq!(da.lines[0].rule, db_.lines[0].rule, "{name}");
        assert_eq!(da.lines[0].list, db_.lines[0].list, "{name}");
        assert_eq!(da.lines[0].outcome, db_.lines[0].outcome, "{name}");
        assert_eq!(a.request.requesting_provider, b.request.requesting_provider);
    }
}

async fn a_question_no_rule_asks_is_named_by_its_element(db: &TestDb) {
    let f = fixture(db).await;
    let mut bundle = example("approved");
    bundle["entry"][6]["resource"]["item"][0]["linkId"] = "red_flags".into();
    let read = pas::submission(&bundle).unwrap();
    let refused = f
        .precert
        .submit(&provider(), read.request.clone())
        .await
        .unwrap_err();
    assert!(matches!(refused, AppError::Invalid(_)), "{refused:?}");
    let failure = Failure::of_app(&refused, &read.fields);
    assert_eq!(failure.status.as_u16(), 422);
    assert_eq!(
        failure.outcome["issue"][0]["expression"][0],
        "QuestionnaireResponse.item[0].linkId"
    );
    assert_eq!(cases(&f).await, 0, "nothing stored");
}

async fn a_request_without_its_answers_says_what_is_missing(db: &TestDb) {
    let f = fixture(db).await;
    let mut bundle = example("approved");
    let claim = &mut bundle["entry"][0]["resource"];
    claim["identifier"][0]["value"] = "mri-fhir-missing".into();
    claim
        .as_object_mut()
        .unwrap()
        .remove("supportingInfo")
        .unwrap();
    let (response_bundle, response) = submit(&f, &bundle).await;
    assert_eq!(review_code(&response, 0), ReviewAction::Pended.code());
    let asked: Vec<&str> = response_bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "CommunicationRequest")
        .map(|r| r["category"][0]["coding"][0]["code"].as_str().unwrap())
        .collect();
    for wanted in ["red_flag_symptoms", "clinical_notes"] {
        assert!(asked.contains(&wanted), "{wanted} is asked for: {asked:?}");
    }
    let refs = response["communicationRequest"].as_array().unwrap();
    assert_eq!(
        refs.len(),
        asked.len(),
        "each one referenced from the ClaimResponse"
    );
}
