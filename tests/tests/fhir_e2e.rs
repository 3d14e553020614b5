//! The FHIR door end to end, on both backends, checked by an independent FHIR library:
//! the real `carepath serve` process with its FHIR listener, two SMART backend clients
//! registered with `carepath fhir-client`, and `tests/fhir/pas_e2e.py` (Python,
//! fhir.resources) submitting and inquiring PAS Bundles, subscribing to notifications
//! and reading every answer as the R4 resource it claims to be. A pended request is
//! approved in between by `carepath-approve`, over gRPC, as a physician reviewer.
//!
//! The test needs python3 and the packages of `tests/fhir/requirements.txt` (tests/run.sh
//! installs them); without them it says so and stops, and says which.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
};

use carepath_proto::{
    audit::v1::{self as apb, audit_service_client::AuditServiceClient},
    precert::v1 as pb,
};
use carepath_tests::{
    TestDb, contract_tests,
    fhir::{
        SCOPES, carepath, example_bundle, fhir_addr, register_client, registered_client_token,
        service_date,
    },
    precert::{IMAGING_IN, INTERNIST, flag, mri, number},
    process::{ServerProcess, binary},
};

contract_tests!(
    pas_requests_notifications_and_refusals_through_the_fhir_door,
    the_same_request_over_grpc_and_over_fhir_is_decided_alike,
    coverage_requirements_and_questionnaires_through_the_fhir_door,
);

/// A radiologist of the demo directory who earns a gold card for advanced imaging.
const RADIOLOGIST: &str = "1064567880";
/// The Python packages the checks import (module names).
const PYTHON_MODULES: &str = "fhir.resources, jwt, requests, cryptography";

/// Why the checks cannot run here (python3 or its packages missing), if they cannot.
fn python_missing() -> Option<String> {
    let probe = Command::new("python3")
        .args(["-c", &format!("import {PYTHON_MODULES}")])
        .output();
    match probe {
        Err(e) => Some(format!("python3 cannot be run ({e})")),
        Ok(out) if !out.status.success() => Some(format!(
            "python3 lacks a package of tests/fhir/requirements.txt ({}); install them with \
             `python3 -m pip install -r tests/fhir/requirements.txt`",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        )),
        Ok(_) => None,
    }
}

/// One of the checks' scripts (`tests/fhir/NAME`), beside this crate's manifest.
fn fhir_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fhir")
        .join(name)
}

/// What the checks can verify without a server: the Bundles and the Subscription they
/// send validate as R4, their client assertions verify against the JWKS of their key,
/// and their notification receiver takes a notification Bundle.
#[test]
fn the_checks_hold_without_a_server() {
    if let Some(why) = python_missing() {
        eprintln!("SKIPPED the FHIR checks' self-test: {why}");
        return;
    }
    let output = Command::new("python3")
        .arg(fhir_script("pas_e2e.py"))
        .arg("--self-test")
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "the self-test failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Quotes `text` for the POSIX-style splitting the script applies to `--decide-cmd`.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Starts `carepath serve --demo` on `db` with its files in `dir`, both doors on
/// free ports; returns the server, its FHIR address and its signing key's path.
fn start_server(db: &TestDb, dir: &Path) -> (ServerProcess, SocketAddr, PathBuf) {
    let signing_key = dir.join("signing.pem");
    let mut command = Command::new(binary("carepath", Some("--fhir-listen")));
    command
        .args(["serve", "--demo", "--database-url", &db.url])
        .arg("--signing-key")
        .arg(&signing_key)
        .arg("--records-dir")
        .arg(dir.join("records"))
        .arg("--print-batch-dir")
        .arg(dir.join("print"))
        .args(["--fhir-listen", "127.0.0.1:0"])
        // One client makes every call here; its rate is not what is tested.
        .args(["--rate-limit-per-caller", "0"]);
    let server = ServerProcess::start("carepath", command);
    let fhir = fhir_addr(&server);
    (server, fhir, signing_key)
}

/// A gRPC token for `subject` in `role`, signed with the server's key.
fn grpc_token(db: &TestDb, signing_key: &Path, role: &str, subject: &str) -> String {
    let token = carepath(&[
        "token",
        "--role",
        role,
        "--subject",
        subject,
        "--database-url",
        &db.url,
        "--signing-key",
        signing_key.to_str().expect("utf-8 path"),
    ])
    .stdout;
    String::from_utf8(token).expect("utf-8").trim().to_owned()
}

/// `message` with `token` as its bearer.
fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token.trim()).parse().expect("header"),
    );
    request
}

/// Runs one of the checks' scripts with `args`; fails with what it printed unless it
/// passes. Returns what it printed.
async fn run_checks(script: &str, args: Vec<std::ffi::OsString>) -> String {
    let mut checks = Command::new("python3");
    checks.arg(fhir_script(script)).args(args);
    let output = tokio::task::spawn_blocking(move || checks.output())
        .await
        .expect("the checks ran")
        .expect("run python3");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{printed}",
        output.status
    );
    printed
}

/// Coverage requirements at ordering time and their questionnaires, end to end: a
/// practitioner earns a gold card over gRPC, then `tests/fhir/crd_e2e.py` (Python,
/// fhir.resources) calls the CDS Hooks services as an EHR would, fetches the
/// questionnaire package, fills it in and submits it with PAS. Back over gRPC: the
/// case cites the assertion, the same answers over gRPC are decided alike, and the
/// audit log holds every hook and questionnaire call with its caller.
async fn coverage_requirements_and_questionnaires_through_the_fhir_door(db: &TestDb) {
    if let Some(why) = python_missing() {
        eprintln!("SKIPPED the CRD end-to-end checks: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, fhir, signing_key) = start_server(db, dir.path());
    let keys = dir.path().join("clients");
    std::fs::create_dir_all(&keys).expect("keys folder");
    let ehr = register_client(db, &keys, "clearview-ehr", IMAGING_IN);
    let mut precert = carepath_tests::precert::client(server.channel().await);
    let soon = (chrono::Utc::now().date_naive() + chrono::Duration::days(14)).to_string();

    // Five approved MRIs the radiologist asked for earn a gold card for imaging.
    let radiologist = grpc_token(db, &signing_key, "provider", RADIOLOGIST);
    for i in 0..5 {
        let mut request = mri(&format!("gold-{i}"), vec![flag("red_flag_symptoms", true)]);
        request.requesting_provider_npi = RADIOLOGIST.into();
        request.lines[0].date_of_service = soon.clone();
        let case = precert
            .submit(bearer(&radiologist, request))
            .await
            .expect("Submit")
            .into_inner()
            .case
            .expect("a case");
        assert_eq!(case.status(), pb::CaseStatus::Approved);
    }
    let admin = grpc_token(db, &signing_key, "admin", "AD-001");
    let cards = precert
        .evaluate_gold_cards(bearer(&admin, pb::EvaluateGoldCardsRequest {}))
        .await
        .expect("EvaluateGoldCards")
        .into_inner()
        .gold_cards;
    assert!(
        cards
            .iter()
            .any(|g| g.provider_npi == RADIOLOGIST && g.category == "advanced_imaging" && g.exempt),
        "the radiologist's gold card: {cards:?}"
    );

    let printed = run_checks(
        "crd_e2e.py",
        vec![
            "--base".into(),
            format!("http://{fhir}").into(),
            "--client-id".into(),
            "clearview-ehr".into(),
            "--key".into(),
            ehr.key.clone().into(),
            "--kid".into(),
            ehr.kid.clone().into(),
            "--npi".into(),
            IMAGING_IN.into(),
            "--gold-npi".into(),
            RADIOLOGIST.into(),
        ],
    )
    .await;
    let (assertion, case_id) = printed
        .lines()
        .find_map(|l| l.strip_prefix("linked "))
        .and_then(|l| l.split_once(' '))
        .unwrap_or_else(|| panic!("the checks name the linked assertion and case:\n{printed}"));

    // The case cites the assertion; the same answers over gRPC are decided alike.
    let provider = grpc_token(db, &signing_key, "provider", IMAGING_IN);
    let fhir_case = precert
        .get_case(bearer(&provider, pb::GetCaseRequest { id: case_id.into() }))
        .await
        .expect("GetCase")
        .into_inner()
        .case
        .expect("a case");
    assert_eq!(fhir_case.coverage_assertion_ids, [assertion]);
    let mut request = mri("crd-grpc", vec![flag("red_flag_symptoms", true)]);
    request.lines[0].service_code = "70551".into();
    request.lines[0].date_of_service = soon.clone();
    let grpc_case = precert
        .submit(bearer(&provider, request))
        .await
        .expect("Submit")
        .into_inner()
        .case
        .expect("a case");
    for case in [&grpc_case, &fhir_case] {
        assert_eq!(case.status(), pb::CaseStatus::Approved, "{case:?}");
    }
    assert_eq!(
        grpc_case.lines[0].approval_basis,
        fhir_case.lines[0].approval_basis
    );
    assert_eq!(
        grpc_case.lines[0].list_version,
        fhir_case.lines[0].list_version
    );

    // Every hook and questionnaire call is in the audit log with its caller.
    let mut audit = AuditServiceClient::new(server.channel().await);
    let mut entries = Vec::new();
    let mut token = String::new();
    loop {
        let page = audit
            .search_audit(bearer(
                &admin,
                apb::SearchAuditRequest {
                    subject: IMAGING_IN.into(),
                    page: Some(carepath_proto::common::v1::PageRequest {
                        page_size: 500,
                        page_token: token.clone(),
                    }),
                    ..Default::default()
                },
            ))
            .await
            .expect("SearchAudit")
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let seen = |rpc: &str, kind: &str, outcome: apb::AuditOutcome| {
        entries
            .iter()
            .filter(|e| e.rpc == rpc && e.record_kind == kind && e.outcome() == outcome)
            .count()
    };
    use apb::AuditOutcome::{Allowed, Denied};
    // The in-network, psychotherapy, out-of-network and gold-card orders.
    assert!(seen("cds-hooks/order-sign", "coverage_assertion", Allowed) >= 4);
    // The unknown member.
    assert!(
        seen("cds-hooks/order-sign", "coverage_assertion", Denied) >= 1,
        "{:#?}",
        entries
            .iter()
            .map(|e| (&e.rpc, &e.record_kind, &e.member_id, e.outcome))
            .collect::<Vec<_>>()
    );
    // The JWT signed by another key, for another service, and replayed.
    assert!(seen("cds-hooks/authenticate", "fhir_client", Denied) >= 3);
    assert!(
        seen(
            "fhir.Questionnaire.questionnaire-package",
            "questionnaire",
            Allowed
        ) >= 1
    );
    assert!(
        entries.iter().any(|e| e.rpc == "fhir.Claim.submit"
            && e.record_kind == "coverage_assertion"
            && e.record_id == assertion
            && e.member_id == "M100001"),
        "the submission cites the assertion in the audit log"
    );
    server.terminate();
}

/// The same MRI requests over gRPC `Submit` and over FHIR `$submit` are decided
/// alike: the same state, rule and list version, read back over gRPC for both.
async fn the_same_request_over_grpc_and_over_fhir_is_decided_alike(db: &TestDb) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, fhir, signing_key) = start_server(db, dir.path());
    let http = reqwest::Client::new();
    let fhir_token = registered_client_token(
        db,
        dir.path(),
        &http,
        fhir,
        "clearview-imaging",
        IMAGING_IN,
        "system/Claim.cr",
    )
    .await;
    let grpc_token = grpc_token(db, &signing_key, "provider", IMAGING_IN);
    let mut precert = carepath_tests::precert::client(server.channel().await);

    for (example, answers, state) in [
        (
            "pas-mri-approved.json",
            vec![flag("red_flag_symptoms", true)],
            pb::CaseStatus::Approved,
        ),
        (
            "pas-mri-pended.json",
            vec![
                flag("red_flag_symptoms", false),
                number("conservative_therapy_weeks", 2.0),
            ],
            pb::CaseStatus::PendedReview,
        ),
    ] {
        // Over FHIR.
        let bundle = example_bundle(example, &format!("fhir-{example}"));
        let response = http
            .post(format!("http://{fhir}/fhir/Claim/$submit"))
            .bearer_auth(&fhir_token)
            .header("content-type", "application/fhir+json")
            .body(bundle.to_string())
            .send()
            .await
            .expect("$submit");
        assert_eq!(response.status(), 200, "{example}");
        let answer: serde_json::Value = response.json().await.expect("a Bundle");
        let fhir_case = answer["entry"][0]["resource"]["id"]
            .as_str()
            .expect("a ClaimResponse id")
            .to_owned();

        // Over gRPC, the same request (the examples' date of service).
        let mut request = mri(&format!("grpc-{example}"), answers);
        request.lines[0].date_of_service = service_date();
        let grpc_case = precert
            .submit(bearer(&grpc_token, request))
            .await
            .expect("Submit")
            .into_inner()
            .case
            .expect("a case");

        let fhir_case = precert
            .get_case(bearer(&grpc_token, pb::GetCaseRequest { id: fhir_case }))
            .await
            .expect("GetCase")
            .into_inner()
            .case
            .expect("a case");
        for case in [&grpc_case, &fhir_case] {
            assert_eq!(case.status, state as i32, "{example}: {case:?}");
        }
        let (g, f) = (&grpc_case.lines[0], &fhir_case.lines[0]);
        assert_eq!(
            g.rule.as_ref().map(|r| &r.id),
            f.rule.as_ref().map(|r| &r.id),
            "{example}"
        );
        assert_eq!(g.list_version, f.list_version, "{example}");
        assert!(!g.list_version.is_empty(), "{example}");
        assert_eq!(
            (&g.outcome, &g.approval_basis, &g.pend_reason),
            (&f.outcome, &f.approval_basis, &f.pend_reason),
            "{example}"
        );
    }
    server.terminate();
}

async fn pas_requests_notifications_and_refusals_through_the_fhir_door(db: &TestDb) {
    if let Some(why) = python_missing() {
        eprintln!("SKIPPED the FHIR end-to-end checks: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, fhir, signing_key) = start_server(db, dir.path());

    // Registered once the server has loaded the demo directory the NPIs belong to.
    let keys = dir.path().join("clients");
    std::fs::create_dir_all(&keys).expect("keys folder");
    let imaging = register_client(db, &keys, "clearview-imaging", IMAGING_IN);
    let internist = register_client(db, &keys, "southside-primary-care", INTERNIST);
    let listed = String::from_utf8_lossy(
        &carepath(&["fhir-client", "list", "--database-url", &db.url]).stdout,
    )
    .into_owned();
    for client in ["clearview-imaging", "southside-primary-care"] {
        assert!(
            listed.contains(client),
            "fhir-client list omits {client}:\n{listed}"
        );
    }

    let decide = format!(
        "{} --addr {} --signing-key {}",
        quoted(env!("CARGO_BIN_EXE_carepath-approve")),
        server.addr,
        quoted(signing_key.to_str().expect("utf-8 path")),
    );
    let base = format!("http://{fhir}");
    let args: Vec<std::ffi::OsString> = [
        "--base",
        &base,
        "--client-id",
        "clearview-imaging",
        "--npi",
        IMAGING_IN,
        "--kid",
        &imaging.kid,
        "--other-client-id",
        "southside-primary-care",
        "--other-npi",
        INTERNIST,
        "--other-kid",
        &internist.kid,
        "--scope",
        SCOPES,
        "--decide-cmd",
        &decide,
    ]
    .into_iter()
    .map(Into::into)
    .chain([
        "--key".into(),
        imaging.key.clone().into(),
        "--other-key".into(),
        internist.key.clone().into(),
    ])
    .collect();
    let printed = run_checks("pas_e2e.py", args).await;
    eprintln!("{printed}");
    assert!(
        printed.contains("all FHIR end-to-end checks passed"),
        "the checks stopped early:\n{printed}"
    );
    server.terminate();
}
