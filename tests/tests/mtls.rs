//! Mutual TLS between services: two thin area binaries run as real processes with TLS
//! and client certificates required. A client with a certificate from the configured
//! CA and a bearer token is answered by each; a client without a certificate, with a
//! certificate from another CA, or speaking plain text is refused; a client with a
//! good certificate but no token is still unauthenticated.
//!
//! The certificates are made here, at test time. The binaries come from the same
//! target folder as this test: `cargo build --workspace --bins` builds them, and
//! tests/run.sh runs it before the tests.

use std::{net::SocketAddr, path::Path, process::Command, time::Duration};

use carepath_core::{Actor, Role};
use carepath_proto::{
    notify::v1::{
        ListFailedNoticesRequest, notification_service_client::NotificationServiceClient,
    },
    precert::v1::{ListRuleListsRequest, precert_service_client::PrecertServiceClient},
};
use carepath_server::auth::Authenticator;
use carepath_tests::process::{ServerProcess, binary};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::{
    Code, Status,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

/// No step comes near this; reaching it means something hung.
const DEADLINE: Duration = Duration::from_secs(120);

/// A certificate and its private key, in PEM.
#[derive(Clone)]
struct Pem {
    cert: String,
    key: String,
}

/// A certificate authority made for the test.
struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        Authority {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn issue(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Pem {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Starts the thin binary `name` with mutual TLS required (`tls`: flag and file).
fn start(name: &str, dir: &Path, tls: &[(&str, &Path)]) -> ServerProcess {
    let mut command = Command::new(binary(name, Some("--tls-client-ca")));
    command
        .arg("--database-url")
        .arg(format!(
            "sqlite://{}",
            dir.join(format!("{name}.db")).display()
        ))
        .arg("--signing-key")
        .arg(dir.join("signing.pem"))
        // The demo directory holds the admin whose token the client sends: a staff
        // token is honoured only for someone on the staff directory.
        .arg("--demo")
        .env(
            "CAREPATH_PRINT_BATCH_DIR",
            dir.join(format!("{name}.print")),
        )
        .env("CAREPATH_RECORDS_DIR", dir.join(format!("{name}.records")));
    for (flag, path) in tls {
        command.arg(flag).arg(path);
    }
    ServerProcess::start(name, command)
}

/// A client connection over TLS trusting `server_ca`, presenting `identity` if any.
/// `Err` when the connection itself is refused.
async fn tls_channel(
    addr: SocketAddr,
    server_ca: &str,
    identity: Option<&Pem>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_ca))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert, &id.key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
}

fn bearer<T>(token: Option<&str>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(20));
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii token"),
        );
    }
    request
}

/// One call to the area `name` serves.
async fn call(name: &str, channel: Channel, token: Option<&str>) -> Result<(), Status> {
    match name {
        "carepath-precert-server" => {
            let lists = PrecertServiceClient::new(channel)
                .list_rule_lists(bearer(token, ListRuleListsRequest::default()))
                .await?
                .into_inner()
                .lists;
            assert!(!lists.is_empty(), "the shipped rule lists are listed");
        }
        "carepath-notify-server" => {
            NotificationServiceClient::new(channel)
                .list_failed_notices(bearer(token, ListFailedNoticesRequest::default()))
                .await?;
        }
        other => panic!("no call for {other}"),
    }
    Ok(())
}

/// How an attempt ended.
enum Outcome {
    Answered,
    /// The server answered with a refusal of its own (a gRPC status).
    Refused(Code),
    /// The connection failed or was closed before any answer.
    NoConnection(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Answered => f.write_str("answered"),
            Outcome::Refused(code) => write!(f, "refused by the server: {code:?}"),
            Outcome::NoConnection(why) => write!(f, "no connection: {why}"),
        }
    }
}

/// Connects as described and makes one call.
async fn attempt(
    server: &ServerProcess,
    server_ca: Option<&str>,
    identity: Option<&Pem>,
    token: Option<&str>,
) -> Outcome {
    let channel = match server_ca {
        Some(ca) => tls_channel(server.addr, ca, identity).await,
        None => {
            Channel::from_shared(format!("http://{}", server.addr))
                .expect("uri")
                .connect_timeout(Duration::from_secs(10))
                .connect()
                .await
        }
    };
    let channel = match channel {
        Ok(channel) => channel,
        Err(e) => return Outcome::NoConnection(format!("{e:?}")),
    };
    match call(&server.name, channel, token).await {
        Ok(()) => Outcome::Answered,
        Err(status) => {
            let transport = std::error::Error::source(&status)
                .is_some_and(|s| s.downcast_ref::<tonic::transport::Error>().is_some());
            if transport {
                Outcome::NoConnection(format!("{status:?}"))
            } else {
                Outcome::Refused(status.code())
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_require_a_client_certificate_from_the_configured_ca() {
    carepath_cli::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write PEM");
        path
    };

    let ca = Authority::new("carepath test services CA");
    let stranger_ca = Authority::new("some other CA");
    let server_pem = ca.issue("carepath server", ExtendedKeyUsagePurpose::ServerAuth);
    let client = ca.issue("carepath-portal", ExtendedKeyUsagePurpose::ClientAuth);
    let stranger = stranger_ca.issue("carepath-portal", ExtendedKeyUsagePurpose::ClientAuth);
    let ca_pem = ca.pem();
    let cert = write("server.pem", &server_pem.cert);
    let key = write("server.key.pem", &server_pem.key);
    let client_ca = write("clients-ca.pem", &ca_pem);

    let auth = Authenticator::with_local_key(&dir.path().join("signing.pem")).expect("key");
    let token = auth
        .mint(
            &Actor::new(Role::Admin, "AD-001").expect("actor"),
            chrono::Utc::now(),
            chrono::Duration::hours(1),
        )
        .expect("token");

    let tls: [(&str, &Path); 3] = [
        ("--tls-cert", &cert),
        ("--tls-key", &key),
        ("--tls-client-ca", &client_ca),
    ];
    let servers = [
        start("carepath-precert-server", dir.path(), &tls),
        start("carepath-notify-server", dir.path(), &tls),
    ];

    tokio::time::timeout(DEADLINE, async {
        for server in &servers {
            let name = &server.name;
            let outcome = attempt(server, Some(&ca_pem), Some(&client), Some(&token)).await;
            assert!(
                matches!(outcome, Outcome::Answered),
                "{name}: a client with a valid certificate and a token is answered: {outcome}"
            );

            // The certificate does not replace the token.
            let outcome = attempt(server, Some(&ca_pem), Some(&client), None).await;
            assert!(
                matches!(outcome, Outcome::Refused(Code::Unauthenticated)),
                "{name}: no token, no answer: {outcome}"
            );

            let outcome = attempt(server, Some(&ca_pem), None, Some(&token)).await;
            assert!(
                matches!(outcome, Outcome::NoConnection(_)),
                "{name}: a client without a certificate is refused at the connection: {outcome}"
            );

            let outcome = attempt(server, Some(&ca_pem), Some(&stranger), Some(&token)).await;
            assert!(
                matches!(outcome, Outcome::NoConnection(_)),
                "{name}: a certificate from another CA is refused at the connection: {outcome}"
            );

            let outcome = attempt(server, None, None, Some(&token)).await;
            assert!(
                matches!(outcome, Outcome::NoConnection(_)),
                "{name}: plain text is refused by a TLS server: {outcome}"
            );

            // Refusing bad clients leaves the server serving good ones.
            let outcome = attempt(server, Some(&ca_pem), Some(&client), Some(&token)).await;
            assert!(
                matches!(outcome, Outcome::Answered),
                "{name}: still serving: {outcome}"
            );
        }
    })
    .await
    .expect("the TLS scenario finished in time");
}

#[test]
fn bad_tls_files_are_named_with_their_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = binary("carepath-precert-server", Some("--tls-client-ca"));
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    let missing = dir.path().join("missing.pem");
    let run = |tls: &[(&str, &Path)]| {
        let mut command = Command::new(&binary);
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--database-url")
            .arg(format!("sqlite://{}", dir.path().join("x.db").display()));
        for (flag, path) in tls {
            command.arg(flag).arg(path);
        }
        let output = command.output().expect("runs");
        assert!(!output.status.success(), "refuses to start with {tls:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };

    let stderr = run(&[("--tls-cert", &missing), ("--tls-key", &not_pem)]);
    assert!(
        stderr.contains("--tls-cert") && stderr.contains(&missing.display().to_string()),
        "{stderr}"
    );
    let authority = Authority::new("carepath test CA");
    let good = authority.issue("server", ExtendedKeyUsagePurpose::ServerAuth);
    let cert = dir.path().join("server.pem");
    std::fs::write(&cert, &good.cert).expect("write");
    let stderr = run(&[("--tls-cert", &cert), ("--tls-key", &not_pem)]);
    assert!(
        stderr.contains("--tls-key") && stderr.contains(&not_pem.display().to_string()),
        "{stderr}"
    );
    let stderr = run(&[("--tls-client-ca", &cert)]);
    assert!(
        stderr.contains("--tls-client-ca") && stderr.contains("--tls-cert"),
        "{stderr}"
    );
}
