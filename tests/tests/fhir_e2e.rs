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
    process::{Command, Output},
    time::{Duration, Instant},
};

use carepath_proto::precert::v1 as pb;
use carepath_tests::{
    TestDb, contract_tests,
    precert::{IMAGING_IN, INTERNIST, flag, mri, number},
    process::{ServerProcess, binary},
};

contract_tests!(
    pas_requests_notifications_and_refusals_through_the_fhir_door,
    the_same_request_over_grpc_and_over_fhir_is_decided_alike,
);

/// The scopes both clients are registered with and ask for.
const SCOPES: &str = "system/Claim.cr system/ClaimResponse.rs system/Subscription.crd";
/// The Python packages the checks import (module names).
const PYTHON_MODULES: &str = "fhir.resources, jwt, requests, cryptography";
/// How long the server may take to say where its FHIR listener is, once it listens.
const FHIR_ADDR_DEADLINE: Duration = Duration::from_secs(10);

/// Runs a one-shot `carepath` command and returns its output, failing with it if the
/// command fails.
fn carepath(args: &[&str]) -> Output {
    let output = Command::new(binary("carepath", None))
        .args(args)
        .env("CAREPATH_LOG", "warn")
        .output()
        .expect("run carepath");
    assert!(
        output.status.success(),
        "carepath {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

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

/// The address of the FHIR listener, from the server's JSON log: the `fhir_addr` field
/// of its listening line, or the `addr` of a line saying the FHIR door listens.
fn fhir_addr(server: &ServerProcess) -> SocketAddr {
    let deadline = Instant::now() + FHIR_ADDR_DEADLINE;
    loop {
        for line in server.log() {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let Some(fields) = entry.get("fields") else {
                continue;
            };
            let message = fields["message"].as_str().unwrap_or_default();
            let named = match fields.get("fhir_addr") {
                Some(addr) => Some(addr),
                None if message.contains("fhir") && message.contains("listening") => {
                    fields.get("addr")
                }
                None => None,
            };
            if let Some(addr) = named.and_then(|a| a.as_str()).and_then(|a| a.parse().ok()) {
                return addr;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the server's log names no FHIR address (a `fhir_addr` field):\n{}",
            server.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A registered client's private key file and the id of its key in its JWKS.
struct ClientKey {
    key: PathBuf,
    kid: String,
}

/// Makes a key pair for `client_id` in `dir` and registers the client for `npi`.
fn register_client(db: &TestDb, dir: &Path, client_id: &str, npi: &str) -> ClientKey {
    let out = dir.to_str().expect("utf-8 temp dir");
    carepath(&[
        "fhir-client",
        "keygen",
        "--client-id",
        client_id,
        "--out",
        out,
    ]);
    let key = dir.join(format!("{client_id}.key.pem"));
    let jwks = dir.join(format!("{client_id}.jwks.json"));
    assert!(key.is_file(), "keygen wrote no {}", key.display());
    assert!(jwks.is_file(), "keygen wrote no {}", jwks.display());
    carepath(&[
        "fhir-client",
        "register",
        "--client-id",
        client_id,
        "--name",
        &format!("{client_id} (end-to-end checks)"),
        "--npi",
        npi,
        "--jwks",
        jwks.to_str().expect("utf-8 path"),
        "--scope",
        SCOPES,
        "--database-url",
        &db.url,
    ]);
    let published: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&jwks).expect("read the JWKS")).expect("JWKS JSON");
    let kid = published["keys"][0]["kid"]
        .as_str()
        .unwrap_or_else(|| panic!("the JWKS keygen wrote names no kid: {published}"))
        .to_owned();
    ClientKey { key, kid }
}

/// The checks' own script, beside this crate's manifest.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fhir/pas_e2e.py")
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
        .arg(script())
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

/// One example PAS request Bundle of `crates/carepath-fhir/examples`, under the
/// Claim identifier `request_id`.
fn example_bundle(name: &str, request_id: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/carepath-fhir/examples")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("example bundle");
    let mut bundle: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let claim = &mut bundle["entry"][0]["resource"];
    claim["identifier"][0]["value"] = request_id.into();
    // A fixed date of service would become a service already given, which
    // precertification refuses.
    if claim["item"][0].get("servicedDate").is_some() {
        claim["item"][0]["servicedDate"] = service_date().into();
    }
    bundle
}

/// The date of service the examples are sent with: two weeks from today.
fn service_date() -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(14))
        .format("%Y-%m-%d")
        .to_string()
}

/// A token for a registered client from the token endpoint: the client assertion is
/// made by `carepath fhir-client assertion`, exchanged over HTTP.
async fn fhir_token(
    http: &reqwest::Client,
    fhir: SocketAddr,
    client_id: &str,
    key: &Path,
) -> String {
    let aud = format!("http://{fhir}/auth/token");
    let assertion = carepath(&[
        "fhir-client",
        "assertion",
        "--client-id",
        client_id,
        "--key",
        key.to_str().expect("utf-8 path"),
        "--aud",
        &aud,
    ]);
    let assertion = String::from_utf8(assertion.stdout).expect("utf-8");
    let answer: serde_json::Value = http
        .post(&aud)
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.trim()),
            ("scope", "system/Claim.cr"),
        ])
        .send()
        .await
        .expect("token endpoint")
        .json()
        .await
        .expect("token JSON");
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {answer}"))
        .to_owned()
}

/// The same MRI requests over gRPC `Submit` and over FHIR `$submit` are decided
/// alike: the same state, rule and list version, read back over gRPC for both.
async fn the_same_request_over_grpc_and_over_fhir_is_decided_alike(db: &TestDb) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, fhir, signing_key) = start_server(db, dir.path());
    let keys = dir.path().join("clients");
    std::fs::create_dir_all(&keys).expect("keys folder");
    let client = register_client(db, &keys, "clearview-imaging", IMAGING_IN);
    let http = reqwest::Client::new();
    let fhir_token = fhir_token(&http, fhir, "clearview-imaging", &client.key).await;
    let grpc_token = String::from_utf8(
        carepath(&[
            "token",
            "--role",
            "provider",
            "--subject",
            IMAGING_IN,
            "--database-url",
            &db.url,
            "--signing-key",
            signing_key.to_str().expect("utf-8 path"),
        ])
        .stdout,
    )
    .expect("utf-8");
    let mut precert = carepath_tests::precert::client(server.channel().await);
    fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", token.trim()).parse().expect("header"),
        );
        request
    }

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
    let mut checks = Command::new("python3");
    checks
        .arg(script())
        .args(["--base", &format!("http://{fhir}")])
        .args(["--client-id", "clearview-imaging", "--npi", IMAGING_IN])
        .arg("--key")
        .arg(&imaging.key)
        .args(["--kid", &imaging.kid])
        .args(["--other-client-id", "southside-primary-care"])
        .args(["--other-npi", INTERNIST])
        .arg("--other-key")
        .arg(&internist.key)
        .args(["--other-kid", &internist.kid])
        .args(["--scope", SCOPES])
        .args(["--decide-cmd", &decide]);
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
        "the FHIR checks failed ({}):\n{printed}",
        output.status
    );
    eprintln!("{printed}");
    assert!(
        printed.contains("all FHIR end-to-end checks passed"),
        "the checks stopped early:\n{printed}"
    );
    server.terminate();
}
