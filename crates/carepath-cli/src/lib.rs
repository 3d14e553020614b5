//! The command line and start-up every carepath binary shares: flags with
//! environment fallbacks, logging, opening and migrating the database, keys, call
//! limits, TLS, where notices go out, and serving until a signal. The doors it starts
//! (the gRPC server) and the application they call know nothing of flags.

pub mod events;
pub mod fhir;
pub mod notify;
pub mod smart;
pub mod telemetry;

use std::{
    fmt,
    net::SocketAddr,
    num::NonZeroU32,
    path::{Path, PathBuf},
    time::Duration,
};

use carepath_core::{Actor, Clock, DirectoryBundle, Role, SystemClock};
use carepath_store::Store;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tonic::transport::ServerTlsConfig;

use carepath_app::{
    auth::{Authenticator, TokenPolicy},
    precert::PrecertEngine,
};
use carepath_server::{
    connections::{self, ConnectionLimits},
    overload::CallerRate,
    server::{self, Area, Limits},
};
use tokio_util::sync::CancellationToken;

/// Where the data lives.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// `sqlite://FILE` (created on first start) or `postgres://USER@HOST:PORT/DB`.
    #[arg(
        long,
        env = "CAREPATH_DATABASE_URL",
        default_value = "sqlite://carepath.db"
    )]
    pub database_url: String,
}

/// Which dates of service precertification requests may carry.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceDateArgs {
    /// Days after the day a request is received its date of service may be; a date
    /// further ahead is refused (INVALID_ARGUMENT naming `lines[i].date_of_service`).
    #[arg(
        long,
        env = "CAREPATH_SERVICE_DATE_MAX_DAYS_AHEAD",
        default_value_t = 730
    )]
    pub service_date_max_days_ahead: u32,
    /// Days before the day a request is received a date of service may be: an
    /// emergency admission notified after the fact, or a retrospective request.
    #[arg(
        long,
        env = "CAREPATH_SERVICE_DATE_MAX_DAYS_PAST",
        default_value_t = 90
    )]
    pub service_date_max_days_past: u32,
    /// What becomes of a request for services already given (a date of service before
    /// the day of receipt, but for emergency admissions): `review` takes it as a
    /// retrospective review, decided by a reviewer within 30 calendar days; `refuse`
    /// answers INVALID_ARGUMENT naming the date.
    #[arg(
        long,
        env = "CAREPATH_RETROSPECTIVE_REQUESTS",
        value_enum,
        default_value_t = RetrospectiveRequests::Review
    )]
    pub retrospective_requests: RetrospectiveRequests,
}

/// The plan's setting for requests about services already given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RetrospectiveRequests {
    /// Take them as retrospective reviews.
    Review,
    /// Refuse them.
    Refuse,
}

impl ServiceDateArgs {
    /// The window these flags set.
    pub fn service_dates(&self) -> carepath_app::precert::ServiceDates {
        carepath_app::precert::ServiceDates {
            max_days_ahead: self.service_date_max_days_ahead,
            max_days_past: self.service_date_max_days_past,
            retrospective: match self.retrospective_requests {
                RetrospectiveRequests::Review => carepath_app::precert::Retrospective::Review,
                RetrospectiveRequests::Refuse => carepath_app::precert::Retrospective::Refuse,
            },
        }
    }
}

/// Where a plan's own reference data is.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DataArgs {
    /// Folder of the plan's own reference data, laid out as the repository's `data/`:
    /// `calendars/` (one calendar), `notify/rules.toml`, `notify/templates/`,
    /// `oncology/`, `secondopinion/`. Each part present replaces the shipped one and
    /// is checked as the shipped one is; a part absent keeps the shipped data.
    #[arg(long, env = "CAREPATH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataArgs {
    /// Loads the data directory, if one is set, as this process's reference data.
    /// Call before building an application.
    pub fn configure(&self) -> Result<(), CliError> {
        if let Some(dir) = &self.data_dir {
            let data = carepath_app::data::ReferenceData::load(dir)?;
            tracing::info!(
                dir = %dir.display(),
                calendar = data.calendar.id(),
                "reference data loaded"
            );
            carepath_app::data::configure(data);
        }
        Ok(())
    }
}

/// Where copies of the audit log's chain heads are kept outside the database.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AnchorArgs {
    /// Append-only file the server copies each audit chain's newest entry to every
    /// minute, and `audit verify` checks: removing the newest entries of the log and
    /// setting its heads back is then caught. Defaults to a file beside a SQLite
    /// database (`carepath.db.audit-anchors`); set it for PostgreSQL, on storage the
    /// database's administrators cannot rewrite.
    #[arg(long, env = "CAREPATH_AUDIT_ANCHOR_FILE")]
    pub audit_anchor_file: Option<PathBuf>,
}

impl AnchorArgs {
    /// The file set, or the default beside a SQLite database.
    pub fn path(&self, db: &DbArgs) -> Option<PathBuf> {
        self.audit_anchor_file.clone().or_else(|| {
            sqlite_file(&db.database_url).map(|p| PathBuf::from(format!("{p}.audit-anchors")))
        })
    }
}

pub use carepath_app::audit::archive::ArchiveVerdict;

/// Where the audit log's archived segments are kept.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ArchiveArgs {
    /// Object store location of the audit log's archive: `file:///PATH` (a folder,
    /// made the owner's only) or `s3://BUCKET/PREFIX` (from the AWS_* environment,
    /// like --records-url). The retention sweep moves entries older than
    /// --audit-archive-after-days there, as hash-chained segments; `audit verify`
    /// checks them with the live log. Unset: the audit log stays whole in the database.
    #[arg(long, env = "CAREPATH_AUDIT_ARCHIVE_URL")]
    pub audit_archive_url: Option<String>,
}

impl ArchiveArgs {
    /// The archive named, if any; a bad address is an error naming the flag.
    pub fn archive(&self) -> Result<Option<carepath_app::audit::archive::AuditArchive>, CliError> {
        self.audit_archive_url
            .as_deref()
            .map(|url| {
                carepath_app::audit::archive::AuditArchive::open(url)
                    .map_err(|e| CliError::Usage(format!("--audit-archive-url: {e}")))
            })
            .transpose()
    }
}

/// What the retention sweep removes from the database, and how often it runs.
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionArgs {
    /// Days an acknowledged (or dead) outbox delivery is kept; then it is removed, and
    /// an event with no delivery left goes with it. Undelivered events are never
    /// removed.
    #[arg(long, env = "CAREPATH_RETAIN_OUTBOX_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub retain_outbox_days: u32,
    /// Days the delivery attempts of a sent or dead notice are kept after they
    /// finished. A notice pending or in flight keeps its attempts.
    #[arg(long, env = "CAREPATH_RETAIN_NOTICE_ATTEMPTS_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub retain_notice_attempts_days: u32,
    /// Days an audit entry stays in the database before it moves to the archive
    /// (--audit-archive-url); 0 never moves any.
    #[arg(long, env = "CAREPATH_AUDIT_ARCHIVE_AFTER_DAYS", default_value_t = 400, value_parser = clap::value_parser!(u32).range(0..=36_500))]
    pub audit_archive_after_days: u32,
    /// Seconds between retention sweeps. Processes sharing a database run them one at
    /// a time (the holder of the sweep's lease).
    #[arg(long, env = "CAREPATH_RETENTION_INTERVAL_SECS", default_value_t = 3_600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub retention_interval_secs: u64,
    #[command(flatten)]
    pub archive: ArchiveArgs,
}

impl RetentionArgs {
    /// The sweep's settings; an archive address that cannot be used is an error.
    pub fn settings(&self) -> Result<carepath_app::retention::RetentionSettings, CliError> {
        let mut settings = carepath_app::retention::RetentionSettings::new(
            self.retain_outbox_days,
            self.retain_notice_attempts_days,
        );
        settings.interval = Duration::from_secs(self.retention_interval_secs);
        if self.audit_archive_after_days > 0
            && let Some(archive) = self.archive.archive()?
        {
            settings = settings.with_archive(self.audit_archive_after_days, archive);
        }
        Ok(settings)
    }
}

/// Verifies the audit log of `db` with its archive at `archive` (segments first, then
/// the live log continuing from them) and the anchors `anchors` names.
pub async fn verify_audit_archived(
    db: &DbArgs,
    anchors: &AnchorArgs,
    archive: &carepath_app::audit::archive::AuditArchive,
) -> Result<(ArchiveVerdict, Option<PathBuf>), CliError> {
    let store = open_store(db).await?;
    let (heads, path) = anchored_heads(db, anchors)?;
    let verdict = archive.verify(&store, &heads).await?;
    store.close().await;
    Ok((verdict, path))
}

/// The chain heads anchored in the file `anchors` names, and that file: an explicit
/// file must exist; the default one is read when it does.
fn anchored_heads(
    db: &DbArgs,
    anchors: &AnchorArgs,
) -> Result<(Vec<carepath_store::AuditHead>, Option<PathBuf>), CliError> {
    let path = anchors
        .path(db)
        .filter(|p| anchors.audit_anchor_file.is_some() || p.exists());
    let heads = match &path {
        Some(p) => carepath_app::audit::anchor::read_anchors(p)?,
        None => Vec::new(),
    };
    Ok((heads, path))
}

/// Verifies the audit log of `db` against the anchors `anchors` names: an explicit
/// file must exist; the default one is used when it does.
pub async fn verify_audit(
    db: &DbArgs,
    anchors: &AnchorArgs,
) -> Result<(carepath_store::AuditVerification, Option<PathBuf>), CliError> {
    let store = open_store(db).await?;
    let (heads, path) = anchored_heads(db, anchors)?;
    let verdict = store.verify_audit_anchored(&heads).await?;
    store.close().await;
    Ok((verdict, path))
}

/// How tokens are checked (and, on the embedded default, minted).
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// Ed25519 signing key (PKCS#8 PEM), created when missing. Defaults to a file
    /// beside a SQLite database (`carepath.db.key.pem`).
    #[arg(long, env = "CAREPATH_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// Public keys (Ed25519 or RSA, PEM) that verify tokens from the organisation's
    /// issuer; when given, the instance verifies with these only and mints nothing.
    #[arg(
        long = "jwt-public-key",
        env = "CAREPATH_JWT_PUBLIC_KEYS",
        value_delimiter = ','
    )]
    pub jwt_public_keys: Vec<PathBuf>,
    /// A JSON Web Key Set file (the `jwks_uri` document of an OIDC provider) whose
    /// signing keys verify tokens; instead of --jwt-public-key.
    #[arg(long, env = "CAREPATH_JWKS_FILE", conflicts_with_all = ["jwt_public_keys", "jwks_url"])]
    pub jwks_file: Option<PathBuf>,
    /// The URL of an OIDC provider's key set (its `jwks_uri`), fetched at start and
    /// every ten minutes, so rotated keys are taken up; instead of --jwt-public-key.
    #[arg(long, env = "CAREPATH_JWKS_URL", conflicts_with = "jwt_public_keys")]
    pub jwks_url: Option<String>,
    /// Issuers (`iss`) whose tokens are accepted, comma-separated.
    #[arg(
        long = "jwt-issuer",
        env = "CAREPATH_JWT_ISSUERS",
        value_delimiter = ',',
        default_value = carepath_app::auth::ISSUER
    )]
    pub jwt_issuers: Vec<String>,
    /// The audience (`aud`) tokens must name, as the identity provider issues them for
    /// this service; when unset, a token naming any audience is refused.
    #[arg(long, env = "CAREPATH_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The longest lifetime (`exp - iat`) of a token accepted, in hours; `carepath
    /// token` mints none longer.
    #[arg(long, env = "CAREPATH_JWT_MAX_LIFETIME_HOURS", default_value_t = carepath_app::auth::DEFAULT_MAX_TOKEN_HOURS, value_parser = clap::value_parser!(i64).range(1..=24 * 366))]
    pub jwt_max_lifetime_hours: i64,
}

impl KeyArgs {
    /// What tokens are checked against, beyond their signature.
    pub fn policy(&self) -> TokenPolicy {
        TokenPolicy {
            issuers: self.jwt_issuers.clone(),
            audience: self.jwt_audience.clone(),
            max_lifetime: chrono::Duration::hours(self.jwt_max_lifetime_hours),
        }
    }
}

/// Overload protection: how many calls the server takes at once, and how fast one
/// caller may call.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Calls in progress across the server; more are refused at once with UNAVAILABLE.
    /// Health checks and reflection are never refused.
    #[arg(long, env = "CAREPATH_MAX_CONCURRENT_CALLS", default_value_t = server::DEFAULT_MAX_CONCURRENT_CALLS)]
    pub max_concurrent_calls: NonZeroU32,
    /// Calls one caller (a token's role and subject) may have in progress at once;
    /// more are refused at once with RESOURCE_EXHAUSTED. Keep it well under
    /// --max-concurrent-calls, so no one caller can take every slot.
    #[arg(long, env = "CAREPATH_MAX_CALLS_PER_CALLER", default_value_t = server::DEFAULT_CALLS_PER_CALLER)]
    pub max_calls_per_caller: NonZeroU32,
    /// Seconds a call's request may take to arrive after its headers (for an upload,
    /// its first message); a call still waiting then ends with DEADLINE_EXCEEDED. A
    /// call takes a server slot only once its request has arrived.
    #[arg(long, env = "CAREPATH_REQUEST_BODY_TIMEOUT_SECS", default_value_t = server::DEFAULT_REQUEST_BODY_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_body_timeout_secs: u64,
    /// Connections open at once; more are closed as soon as they are accepted, so
    /// their clients fail fast. Keep it under the process's file-descriptor limit.
    #[arg(long, env = "CAREPATH_MAX_CONNECTIONS", default_value_t = connections::DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds a new connection may take to begin its first call (its TLS handshake
    /// included) before it is closed.
    #[arg(long, env = "CAREPATH_FIRST_CALL_TIMEOUT_SECS", default_value_t = connections::DEFAULT_FIRST_CALL_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub first_call_timeout_secs: u64,
    /// Seconds a connection may stay open with no call in progress before it is
    /// closed; clients reconnect on their next call.
    #[arg(long, env = "CAREPATH_IDLE_TIMEOUT_SECS", default_value_t = connections::DEFAULT_IDLE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout_secs: u64,
    /// Long-lived streams (health watches, reflection, status watches) one connection
    /// may hold; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "CAREPATH_MAX_STREAMS_PER_CONNECTION", default_value_t = connections::DEFAULT_LONG_LIVED_PER_CONNECTION, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_connection: u32,
    /// Long-lived streams the whole server may hold; more are refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "CAREPATH_MAX_STREAMS", default_value_t = connections::DEFAULT_LONG_LIVED_TOTAL, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: u32,
    /// Calls per second one system (a token's role and subject: a provider's system, an
    /// internal service, a FHIR client) may make on average; beyond it,
    /// RESOURCE_EXHAUSTED with a retry delay. 0 turns the limit off.
    #[arg(long, env = "CAREPATH_RATE_LIMIT_PER_CALLER", default_value_t = server::DEFAULT_CALLER_RATE)]
    pub rate_limit_per_caller: u32,
    /// Calls one system may make back to back before its average rate applies.
    #[arg(long, env = "CAREPATH_RATE_LIMIT_BURST", default_value_t = server::DEFAULT_CALLER_BURST)]
    pub rate_limit_burst: NonZeroU32,
    /// Calls per second one person (a member's, nurse's, reviewer's or administrator's
    /// token) may make on gRPC on average; 0 turns the limit off.
    #[arg(long, env = "CAREPATH_RATE_LIMIT_PER_PERSON", default_value_t = server::DEFAULT_PERSON_RATE)]
    pub rate_limit_per_person: u32,
    /// Calls one person may make back to back before their average rate applies.
    #[arg(long, env = "CAREPATH_RATE_LIMIT_PERSON_BURST", default_value_t = server::DEFAULT_PERSON_BURST)]
    pub rate_limit_person_burst: NonZeroU32,
    /// Seconds an event consumer (notices, referrals) keeps a claimed outbox event.
    /// After a crash, another process, or this one restarted, takes the event over once
    /// the lease has run out; keep it above the slowest handling of one batch.
    #[arg(long, env = "CAREPATH_EVENT_LEASE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub event_lease_secs: u64,
    /// The share of the time background work (notices, referrals) takes while calls
    /// are in progress, from 0.01 to 1; with no call in progress it runs flat out.
    /// Raise it when notices must keep pace with sustained heavy traffic.
    #[arg(long, env = "CAREPATH_BACKGROUND_SHARE", default_value_t = server::DEFAULT_BACKGROUND_SHARE, value_parser = background_share)]
    pub background_share: f64,
    /// Seconds between precertification sweeps (overdue information, gold cards).
    /// Processes sharing a database run them one at a time: the one holding the
    /// sweep's lease, taken over within three intervals when it stops.
    #[arg(long, env = "CAREPATH_SWEEP_INTERVAL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub sweep_interval_secs: u64,
}

fn background_share(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(share) if (0.01..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("{value:?} is not a number from 0.01 to 1")),
    }
}

impl LimitArgs {
    /// The call limits these settings ask for.
    pub fn limits(&self) -> Limits {
        Limits {
            max_concurrent_calls: self.max_concurrent_calls.get() as usize,
            calls_per_caller: self.max_calls_per_caller.get() as usize,
            request_body_timeout: Duration::from_secs(self.request_body_timeout_secs),
            connections: ConnectionLimits {
                max_connections: self.max_connections,
                first_call_timeout: Duration::from_secs(self.first_call_timeout_secs),
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
                long_lived_per_connection: self.max_streams_per_connection,
                long_lived_total: self.max_streams,
            },
            per_caller: NonZeroU32::new(self.rate_limit_per_caller).map(|per_second| CallerRate {
                per_second,
                burst: self.rate_limit_burst,
            }),
            per_person: NonZeroU32::new(self.rate_limit_per_person).map(|per_second| CallerRate {
                per_second,
                burst: self.rate_limit_person_burst,
            }),
            event_lease: Duration::from_secs(self.event_lease_secs),
            background_share: self.background_share,
            sweep_interval: Duration::from_secs(self.sweep_interval_secs),
            ..Limits::default()
        }
    }
}

/// Transport security: TLS, and client certificates for mutual TLS between services.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Server certificate chain (PEM). With --tls-key the server speaks TLS only.
    #[arg(long, env = "CAREPATH_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the server certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "CAREPATH_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that sign client certificates. When set, every client must
    /// present a certificate signed by one of them (mutual TLS); bearer tokens are still
    /// required.
    #[arg(long, env = "CAREPATH_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// Reads and checks the files; `None` when the server is to speak plain text.
    pub fn server_tls(&self) -> Result<Option<ServerTlsConfig>, CliError> {
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (None, None) => {
                return match &self.tls_client_ca {
                    Some(ca) => Err(CliError::Usage(format!(
                        "--tls-client-ca {} needs --tls-cert and --tls-key: client \
                         certificates are only asked for over TLS",
                        ca.display()
                    ))),
                    None => Ok(None),
                };
            }
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => return Err(CliError::Usage("--tls-cert needs --tls-key".into())),
            (None, Some(_)) => return Err(CliError::Usage("--tls-key needs --tls-cert".into())),
        };
        let cert_pem = read_certificates("--tls-cert", cert)?;
        let key_pem = read_private_key("--tls-key", key)?;
        let mut config = ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert_pem, key_pem));
        if let Some(ca) = &self.tls_client_ca {
            let ca_pem = read_certificates("--tls-client-ca", ca)?;
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca_pem));
        }
        // Built once here so a key that does not match its certificate is reported
        // with the flags that name them, before anything listens.
        tonic::transport::Server::builder()
            .tls_config(config.clone())
            .map_err(|e| {
                CliError::Usage(format!(
                    "--tls-cert {} and --tls-key {} do not make a usable server identity{}: {}",
                    cert.display(),
                    key.display(),
                    match &self.tls_client_ca {
                        Some(ca) => format!(" with --tls-client-ca {}", ca.display()),
                        None => String::new(),
                    },
                    error_chain(&e)
                ))
            })?;
        Ok(Some(config))
    }
}

fn tls_file(flag: &'static str, path: &Path, reason: impl fmt::Display) -> CliError {
    CliError::TlsFile {
        flag,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Reads a PEM file that must hold at least one certificate.
fn read_certificates(flag: &'static str, path: &Path) -> Result<Vec<u8>, CliError> {
    let pem = std::fs::read(path).map_err(|e| tls_file(flag, path, e))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_file(flag, path, format!("not PEM certificates: {e}")))?;
    if certificates.is_empty() {
        return Err(tls_file(flag, path, "no CERTIFICATE block in the file"));
    }
    Ok(pem)
}

/// Reads a PEM file that must hold a private key.
fn read_private_key(flag: &'static str, path: &Path) -> Result<Vec<u8>, CliError> {
    let pem = std::fs::read(path).map_err(|e| tls_file(flag, path, e))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        tls_file(
            flag,
            path,
            format!("no PKCS#8, PKCS#1 or SEC1 private key in PEM: {e}"),
        )
    })?;
    Ok(pem)
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Makes ring the process's TLS crypto provider. Called once at start by every
/// serving binary (and by clients in the same process); later calls do nothing.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Settings of a serving binary.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on for gRPC.
    #[arg(long, env = "CAREPATH_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Load the shipped demo directory (plans, members, providers, staff) at start.
    #[arg(long, env = "CAREPATH_DEMO")]
    pub demo: bool,
    #[command(flatten)]
    pub notify: notify::NotifyArgs,
    /// Folder for uploaded second-opinion records. Defaults to `<database>.records`
    /// beside a SQLite file (a temporary folder for PostgreSQL: set it in production).
    #[arg(long, env = "CAREPATH_RECORDS_DIR", conflicts_with = "records_url")]
    pub records_dir: Option<PathBuf>,
    /// Keep uploaded second-opinion records in S3-compatible storage instead of a
    /// folder: `s3://BUCKET/PREFIX`, with the endpoint, region and keys from the usual
    /// AWS_* environment (AWS_ENDPOINT, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY; AWS_ALLOW_HTTP=true for a plain-HTTP endpoint). Replicas
    /// sharing a database must share their records too.
    #[arg(long, env = "CAREPATH_RECORDS_URL")]
    pub records_url: Option<String>,
    /// Wake background work (event consumers, the notice dispatcher, status watches)
    /// when any process sharing the PostgreSQL database commits, through LISTEN/NOTIFY
    /// on one connection per process; with false they only poll. No effect on SQLite.
    #[arg(long, env = "CAREPATH_DATABASE_NOTIFICATIONS", default_value_t = true, action = clap::ArgAction::Set)]
    pub database_notifications: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub anchors: AnchorArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub service_dates: ServiceDateArgs,
    #[command(flatten)]
    pub events: events::EventArgs,
    #[command(flatten)]
    pub telemetry: telemetry::TelemetryArgs,
}

/// Errors of start-up and of the one-shot commands, shown to the operator.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Store(#[from] carepath_store::StoreError),
    #[error("{0}")]
    Key(#[from] carepath_app::auth::KeyError),
    #[error("{0}")]
    Serve(#[from] server::ServeError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Directory(#[from] carepath_core::DirectoryError),
    #[error("{0}")]
    Invalid(#[from] carepath_core::Invalid),
    #[error("{0}")]
    App(#[from] carepath_app::AppError),
    #[error("{0}")]
    Calendar(#[from] carepath_core::CalendarError),
    #[error("{0}")]
    Data(#[from] carepath_app::data::DataError),
    #[error("{flag} {path}: {reason}")]
    TlsFile {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Usage(String),
}

/// Logs to stderr; `CAREPATH_LOG` (or `RUST_LOG`) filters, `CAREPATH_LOG_FORMAT=json`
/// switches to JSON lines. Colours only when stderr is a terminal, so a log file or a
/// log collector gets plain text.
pub fn init_logging() {
    install_logging(None);
}

/// Starts logging as [`init_logging`] does and, when `otlp_endpoint` names a
/// collector, exports spans to it (`--otlp-endpoint`); the same filter chooses the
/// spans exported. Call within the runtime.
pub fn init_logging_with_traces(
    otlp_endpoint: Option<&str>,
    service: &'static str,
) -> Result<(), CliError> {
    let traces = match otlp_endpoint {
        Some(endpoint) => Some(telemetry::trace_layer(endpoint, service)?),
        None => None,
    };
    install_logging(traces);
    Ok(())
}

fn install_logging(traces: Option<telemetry::TraceLayer>) {
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAREPATH_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("CAREPATH_LOG_FORMAT").is_ok_and(|f| f == "json");
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let text = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
    });
    let json = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
    });
    let result = tracing_subscriber::registry()
        .with(traces)
        .with(text)
        .with(json)
        .with(filter)
        .try_init();
    // A second initialisation (tests) keeps the first subscriber.
    drop(result);
}

/// Opens the database and applies pending migrations, then converts stored data
/// whose shape SQL cannot change (oncology evaluations stored as encoded messages;
/// see [`carepath_app::oncology::record`]).
pub async fn open_store(db: &DbArgs) -> Result<Store, CliError> {
    Ok(carepath_app::setup::open_store(&db.database_url).await?)
}

/// Flags of `carepath generate-history`.
#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// How many precertification cases to make (at most 10,000,000).
    #[arg(long)]
    pub cases: u64,
    /// Seeds the choices; the same seed makes the same history. Request ids carry it,
    /// so another seed adds more history to the same database.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How many years back the history starts (at most 10).
    #[arg(long, default_value_t = 3)]
    pub years: u32,
    /// Load the shipped demo directory first (the history is made over its members,
    /// radiology providers and reviewers).
    #[arg(long)]
    pub demo: bool,
}

/// Migrates the database, loads the demo directory when asked, and fills it with
/// precertification history (`carepath_app::precert::history`), reporting progress
/// on stderr.
pub async fn generate_history(
    args: &HistoryArgs,
) -> Result<carepath_app::precert::history::HistorySummary, CliError> {
    let store = open_store(&args.db).await?;
    if args.demo {
        load_demo(&store).await?;
    }
    let options = carepath_app::precert::history::HistoryOptions {
        cases: args.cases,
        seed: args.seed,
        years: args.years,
    };
    let started = std::time::Instant::now();
    let mut reported = 0;
    let summary = carepath_app::precert::history::generate(
        &store,
        &options,
        carepath_app::micros(SystemClock.now()),
        |cases| {
            if cases >= reported + 100_000 || cases == options.cases {
                reported = cases;
                eprintln!(
                    "{cases} of {} cases written ({:.0} s)",
                    options.cases,
                    started.elapsed().as_secs_f64()
                );
            }
        },
    )
    .await?;
    store.close().await;
    Ok(summary)
}

/// What `carepath generate-history` wrote: rows by table and seconds, then cases by
/// how they stand.
pub fn history_report(summary: &carepath_app::precert::history::HistorySummary) -> String {
    let w = summary.written;
    let outcomes: Vec<String> = carepath_app::precert::history::Outcome::ALL
        .iter()
        .zip(summary.outcomes)
        .map(|(o, n)| format!("{}={n}", o.as_str()))
        .collect();
    format!(
        "wrote {} rows in {:.1} s: {} cases, {} outbox events, {} deliveries, {} notices, {} notice attempts, {} audit entries\ncases: {}",
        w.rows(),
        summary.seconds,
        w.cases,
        w.events,
        w.deliveries,
        w.notices,
        w.attempts,
        w.audit_entries,
        outcomes.join(" ")
    )
}

/// The key file beside a SQLite database: `sqlite://data/carepath.db` gives
/// `data/carepath.db.key.pem`.
fn default_signing_key(database_url: &str) -> Option<PathBuf> {
    sqlite_file(database_url).map(|path| PathBuf::from(format!("{path}.key.pem")))
}

/// The file of a `sqlite://` URL, when it names one.
fn sqlite_file(database_url: &str) -> Option<&str> {
    let path = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// Builds the authenticator the settings ask for. A key set named by URL is fetched
/// here once; [`keep_jwks_fresh`] fetches it again while serving.
pub async fn authenticator(keys: &KeyArgs, db: &DbArgs) -> Result<Authenticator, CliError> {
    Ok(keys_of(keys, db).await?.with_policy(keys.policy()))
}

async fn keys_of(keys: &KeyArgs, db: &DbArgs) -> Result<Authenticator, CliError> {
    if let Some(url) = &keys.jwks_url {
        return Ok(Authenticator::with_jwks_url(url).await?);
    }
    if let Some(path) = &keys.jwks_file {
        return Ok(Authenticator::with_jwks_file(path)?);
    }
    if !keys.jwt_public_keys.is_empty() {
        return Ok(Authenticator::with_public_keys(&keys.jwt_public_keys)?);
    }
    let path = keys
        .signing_key
        .clone()
        .or_else(|| default_signing_key(&db.database_url))
        .ok_or_else(|| {
            CliError::Usage(
                "no token keys configured: pass --jwt-public-key (production) or --signing-key"
                    .into(),
            )
        })?;
    Ok(Authenticator::with_local_key(&path)?)
}

/// With `--jwks-url`, fetches its key set into `auth` again every
/// [`carepath_app::auth::JWKS_REFRESH`] until `stop`, in a task of its own.
pub fn keep_keys_fresh(keys: &KeyArgs, auth: &Authenticator, stop: &CancellationToken) {
    if let Some(url) = &keys.jwks_url {
        tokio::spawn(keep_jwks_fresh(auth.clone(), url.clone(), stop.clone()));
    }
}

/// Fetches the key set at `url` again every [`carepath_app::auth::JWKS_REFRESH`] until
/// `stop`; a failed fetch is logged and the keys in use stay.
async fn keep_jwks_fresh(auth: Authenticator, url: String, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(carepath_app::auth::JWKS_REFRESH) => {}
        }
        match auth.refresh_jwks(&url).await {
            Ok(keys) => tracing::debug!(keys, "token key set fetched again"),
            Err(e) => {
                tracing::warn!(error = %e, "token key set not refreshed; the keys in use stay")
            }
        }
    }
}

/// Loads the shipped demo directory into `store` (idempotent upserts).
pub async fn load_demo(store: &Store) -> Result<carepath_store::ImportSummary, CliError> {
    let bundle = DirectoryBundle::demo()?;
    import_bundle(store, &bundle).await
}

/// Validates and imports a directory bundle in one transaction.
pub async fn import_bundle(
    store: &Store,
    bundle: &DirectoryBundle,
) -> Result<carepath_store::ImportSummary, CliError> {
    Ok(carepath_app::setup::import_directory(store, &SystemClock, bundle).await?)
}

/// Reads and imports a directory JSON file.
pub async fn import_file(
    store: &Store,
    path: &PathBuf,
) -> Result<carepath_store::ImportSummary, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
        path: path.clone(),
        source,
    })?;
    let bundle = DirectoryBundle::from_json(&path.display().to_string(), &text)?;
    import_bundle(store, &bundle).await
}

/// Mints a token with the instance's signing key.
pub async fn mint_token(
    keys: &KeyArgs,
    db: &DbArgs,
    role: &str,
    subject: &str,
    ttl: chrono::Duration,
) -> Result<String, CliError> {
    let role = Role::parse(role).map_err(|e| CliError::Usage(e.to_string()))?;
    let actor = Actor::new(role, subject)?;
    let auth = authenticator(keys, db).await?;
    Ok(auth.mint(&actor, SystemClock.now(), ttl)?)
}

/// The application a serving binary runs over `store`. Refuses a business calendar
/// that does not cover this year and the next, as every due date would then be
/// reckoned without the holidays of a year it does not know.
pub fn serving_app(store: Store, auth: Authenticator) -> Result<carepath_app::App, CliError> {
    let app = carepath_app::setup::app(store, auth);
    app.calendar
        .require_cover_from(app.clock.now().date_naive())?;
    Ok(app)
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: finishing calls in flight");
}

/// Opens everything `args` names and serves `areas` over gRPC, and the FHIR API
/// when `fhir` is given, until Ctrl-C or SIGTERM. Both doors share one rule engine,
/// so a request decides the same way whichever door it comes through.
pub async fn run_server(
    args: &ServeArgs,
    areas: &[Area],
    fhir: Option<&fhir::FhirArgs>,
) -> Result<(), CliError> {
    install_crypto_provider();
    let tls = args.tls.server_tls()?;
    args.data.configure()?;
    let store = open_store(&args.db).await?;
    let relay = args.events.relay();
    if relay.is_some() {
        // Subscribed before anything is written, so every event from now on is owed
        // to the relay, the demo directory's included.
        store
            .subscribe(
                carepath_app::events::relay::CONSUMER,
                carepath_app::events::relay::PREFIXES,
            )
            .await?;
    }
    if args.demo {
        let summary = load_demo(&store).await?;
        tracing::info!(
            plans = summary.plans,
            members = summary.members,
            providers = summary.providers,
            staff = summary.staff,
            "demo directory loaded"
        );
    }
    let auth = authenticator(&args.keys, &args.db).await?;
    let mut app = serving_app(store.clone(), auth.clone())?;
    let retention = args.retention.settings()?;
    app.outside_copies = carepath_app::audit::OutsideCopies {
        archive: args.retention.archive.archive()?,
        anchor_file: args.anchors.path(&args.db),
    };
    if retention.audit.is_none() {
        tracing::info!("no audit archive: the audit log stays whole in the database");
    }
    // This month's partitions and the next, before anything is written.
    carepath_app::retention::ensure_partitions(&store, app.clock.now()).await?;
    let engine = PrecertEngine::load_with(&store, args.service_dates.service_dates())
        .await
        .map_err(|e| CliError::Serve(e.into()))?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|source| CliError::Listen {
            addr: args.listen,
            source,
        })?;
    // Started once everything before it could fail, so a start-up error is the
    // first problem's and not a busy metrics port's.
    let telemetry = telemetry::start(&args.telemetry)?;
    tracing::info!(
        addr = %listener.local_addr().unwrap_or(args.listen),
        backend = ?store.backend(),
        tls = tls.is_some(),
        client_certificates = args.tls.tls_client_ca.is_some(),
        "carepath listening"
    );
    if let Some(folder) = &args.records_dir {
        carepath_app::secondopinion::records::configure_folder(folder.clone());
    }
    if let Some(url) = &args.records_url {
        carepath_app::secondopinion::records::configure_url(url)
            .map_err(|e| CliError::Usage(format!("--records-url: {e}")))?;
    }
    if args.database_notifications {
        match store.listen().await {
            Ok(true) => tracing::info!("listening for other processes' commits"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other processes' commits; polling")
            }
        }
    }
    let notify = args
        .notify
        .settings(&args.db.database_url)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let stop = CancellationToken::new();
    keep_keys_fresh(&args.keys, &auth, &stop);
    let fhir_door = match fhir {
        Some(fhir) => {
            Some(fhir::start(fhir, &app, engine.clone(), &args.limits, stop.clone()).await?)
        }
        None => None,
    };
    let anchoring = match app.outside_copies.anchor_file.clone() {
        Some(path) => {
            tracing::info!(file = %path.display(), "audit heads anchored here");
            Some(tokio::spawn(carepath_app::audit::anchor::run_anchoring(
                store.clone(),
                carepath_app::audit::anchor::AnchorFile::new(path),
                stop.clone(),
            )))
        }
        None => {
            tracing::warn!(
                "no audit anchor file: set --audit-anchor-file so audit verify can catch removed newest entries"
            );
            None
        }
    };
    let signal = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signal.cancel();
    });
    let refusals = tokio::spawn(carepath_app::audit::refusals::run_flush(
        app.clone(),
        stop.clone(),
    ));
    let retention = tokio::spawn(carepath_app::retention::run_retention(
        store.clone(),
        app.clock.clone(),
        carepath_app::jobs::Jobs::new(store.clone(), app.clock.clone()),
        retention,
        stop.clone(),
    ));
    let served = server::serve_with(
        app,
        engine,
        listener,
        areas,
        args.limits.limits(),
        &notify,
        tls,
        relay,
        stop.clone().cancelled_owned(),
    )
    .await;
    stop.cancel();
    if let Some(door) = fhir_door {
        let _ = door.await;
    }
    if let Some(task) = anchoring {
        let _ = task.await;
    }
    let _ = refusals.await;
    let _ = retention.await;
    telemetry.shutdown().await;
    served?;
    store.close().await;
    Ok(())
}

/// The whole `main` of a thin binary: parses [`ServeArgs`] under the binary's own
/// name, then serves `areas` until Ctrl-C or SIGTERM.
pub fn thin_main(
    name: &'static str,
    about: &'static str,
    areas: &'static [Area],
) -> std::process::ExitCode {
    main_with::<ServeArgs, _>(name, about, move |args| async move {
        run_server(&args, areas, None).await
    })
}

/// A binary's `main`: parses `A` under the binary's own name, starts logging and a
/// runtime, and runs `run` to the end; an error is printed and exits non-zero.
pub fn main_with<A, F>(
    name: &'static str,
    about: &'static str,
    run: impl FnOnce(A) -> F,
) -> std::process::ExitCode
where
    A: clap::Args + clap::FromArgMatches,
    F: Future<Output = Result<(), CliError>>,
{
    // The binary's own words, not the doc comment of its settings struct.
    let command = A::augment_args(clap::Command::new(name))
        .about(about)
        .version(env!("CARGO_PKG_VERSION"));
    let matches = command.get_matches();
    let args = A::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let logging = {
        let _runtime = runtime.enter();
        init_logging_with_traces(telemetry::endpoint_in(&matches).as_deref(), name)
    };
    if let Err(e) = logging {
        eprintln!("{name}: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The limit flags alone, as a binary parses them.
    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        limits: LimitArgs,
    }

    #[test]
    fn a_zero_rate_turns_the_caller_limit_off() {
        let defaults = Flags::parse_from(["x"]).limits.limits();
        assert_eq!(defaults.max_concurrent_calls, 32);
        assert!(defaults.per_caller.is_some());
        assert_eq!(
            defaults.per_person.map(|r| r.per_second.get()),
            Some(server::DEFAULT_PERSON_RATE)
        );
        let off = Flags::parse_from(["x", "--rate-limit-per-caller", "0"])
            .limits
            .limits();
        assert!(off.per_caller.is_none());
        assert!(off.per_person.is_some(), "each rate has its own switch");
        let off = Flags::parse_from(["x", "--rate-limit-per-person", "0"])
            .limits
            .limits();
        assert!(off.per_person.is_none());
        assert!(Flags::try_parse_from(["x", "--max-concurrent-calls", "0"]).is_err());
    }

    #[test]
    fn per_caller_connection_and_stream_limits_have_defaults_and_flags() {
        let defaults = Flags::parse_from(["x"]).limits.limits();
        assert_eq!(defaults.calls_per_caller, 8);
        assert!(defaults.calls_per_caller < defaults.max_concurrent_calls);
        assert_eq!(defaults.request_body_timeout, Duration::from_secs(10));
        assert_eq!(defaults.connections.max_connections, 512);
        assert_eq!(defaults.connections.long_lived_per_connection, 16);
        let set = Flags::parse_from([
            "x",
            "--max-calls-per-caller=3",
            "--request-body-timeout-secs=2",
            "--max-connections=7",
            "--first-call-timeout-secs=4",
            "--idle-timeout-secs=60",
            "--max-streams-per-connection=2",
            "--max-streams=9",
        ])
        .limits
        .limits();
        assert_eq!(set.calls_per_caller, 3);
        assert_eq!(set.request_body_timeout, Duration::from_secs(2));
        assert_eq!(set.connections.max_connections, 7);
        assert_eq!(set.connections.first_call_timeout, Duration::from_secs(4));
        assert_eq!(set.connections.idle_timeout, Duration::from_secs(60));
        assert_eq!(set.connections.long_lived_per_connection, 2);
        assert_eq!(set.connections.long_lived_total, 9);
        for bad in [
            "--max-calls-per-caller=0",
            "--max-connections=0",
            "--max-streams=0",
        ] {
            assert!(Flags::try_parse_from(["x", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_policy_flags() {
        #[derive(Debug, Parser)]
        struct Keys {
            #[command(flatten)]
            keys: KeyArgs,
        }
        let defaults = Keys::parse_from(["x"]).keys.policy();
        assert_eq!(defaults, TokenPolicy::default());
        let set = Keys::parse_from([
            "x",
            "--jwt-issuer=https://a.example,https://b.example",
            "--jwt-audience=carepath-api",
            "--jwt-max-lifetime-hours=2",
        ])
        .keys
        .policy();
        assert_eq!(set.issuers, ["https://a.example", "https://b.example"]);
        assert_eq!(set.audience.as_deref(), Some("carepath-api"));
        assert_eq!(set.max_lifetime, chrono::Duration::hours(2));
        assert!(Keys::try_parse_from(["x", "--jwt-max-lifetime-hours=0"]).is_err());
        assert!(
            Keys::try_parse_from(["x", "--jwks-file=a.json", "--jwks-url=https://x"]).is_err(),
            "one source of keys"
        );
    }

    #[test]
    fn the_background_share_is_a_fraction() {
        let defaults = Flags::parse_from(["x"]).limits.limits();
        assert_eq!(defaults.background_share, 0.25);
        let all = Flags::parse_from(["x", "--background-share", "1"])
            .limits
            .limits();
        assert_eq!(all.background_share, 1.0);
        for bad in ["0", "1.5", "-0.2", "half"] {
            let flag = format!("--background-share={bad}");
            let err = Flags::try_parse_from(["x", flag.as_str()]).unwrap_err();
            assert!(err.to_string().contains("--background-share"), "{err}");
        }
    }

    #[test]
    fn client_certificates_need_a_server_certificate() {
        let args = TlsArgs {
            tls_client_ca: Some(PathBuf::from("ca.pem")),
            ..TlsArgs::default()
        };
        let err = args.server_tls().unwrap_err().to_string();
        assert!(
            err.contains("--tls-client-ca") && err.contains("--tls-cert"),
            "{err}"
        );
        assert!(TlsArgs::default().server_tls().unwrap().is_none());
    }

    #[test]
    fn the_signing_key_sits_beside_a_sqlite_database() {
        assert_eq!(
            default_signing_key("sqlite://carepath.db"),
            Some(PathBuf::from("carepath.db.key.pem"))
        );
        assert_eq!(
            default_signing_key("sqlite:///var/lib/cp/x.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/cp/x.db.key.pem"))
        );
        assert_eq!(
            default_signing_key("postgres://postgres@localhost/test"),
            None
        );
        assert_eq!(default_signing_key("sqlite::memory:"), None);
    }
}
