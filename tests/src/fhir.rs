//! The FHIR door of a running `carepath serve` as the end-to-end tests reach it: its
//! address from the log, SMART backend clients registered with `carepath fhir-client`,
//! their tokens from the token endpoint, and the example PAS Bundles.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use crate::{
    TestDb,
    process::{ServerProcess, binary},
};

/// The scopes the end-to-end clients are registered with and ask for.
pub const SCOPES: &str =
    "system/Claim.cr system/ClaimResponse.rs system/Subscription.crd system/Questionnaire.r";
/// How long the server may take to say where its FHIR listener is, once it listens.
const FHIR_ADDR_DEADLINE: Duration = Duration::from_secs(10);

/// Runs a one-shot `carepath` command and returns its output, failing with it if the
/// command fails.
pub fn carepath(args: &[&str]) -> Output {
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

/// The address of the FHIR listener, from the server's JSON log: the `fhir_addr` field
/// of its listening line, or the `addr` of a line saying the FHIR door listens.
pub fn fhir_addr(server: &ServerProcess) -> SocketAddr {
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
#[derive(Debug)]
pub struct ClientKey {
    pub key: PathBuf,
    pub kid: String,
}

/// Makes a key pair for `client_id` in `dir` and registers the client for `npi`, with
/// the scopes the end-to-end checks use ([`SCOPES`]).
pub fn register_client(db: &TestDb, dir: &Path, client_id: &str, npi: &str) -> ClientKey {
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

/// One example PAS request Bundle of `crates/carepath-fhir/examples`, under the
/// Claim identifier `request_id`.
pub fn example_bundle(name: &str, request_id: &str) -> serde_json::Value {
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
pub fn service_date() -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(14))
        .format("%Y-%m-%d")
        .to_string()
}

/// A token for `scope` for a registered client from the token endpoint: the client
/// assertion is made by `carepath fhir-client assertion`, exchanged over HTTP.
pub async fn fhir_token(
    http: &reqwest::Client,
    fhir: SocketAddr,
    client_id: &str,
    key: &Path,
    scope: &str,
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
            ("scope", scope),
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

/// A client `client_id` acting for the provider `npi`, registered with keys in a
/// `clients` folder under `dir`, and an access token with `scope` from the door at
/// `fhir`.
pub async fn registered_client_token(
    db: &TestDb,
    dir: &Path,
    http: &reqwest::Client,
    fhir: SocketAddr,
    client_id: &str,
    npi: &str,
    scope: &str,
) -> String {
    let keys = dir.join("clients");
    std::fs::create_dir_all(&keys).expect("keys folder");
    let client = register_client(db, &keys, client_id, npi);
    fhir_token(http, fhir, client_id, &client.key, scope).await
}
