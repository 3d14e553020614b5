//! Command-line settings and start-up shared by every binary: flags with environment
//! fallbacks, logging, opening and migrating the database, keys, signals.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use carepath_core::{Actor, BusinessCalendar, DirectoryBundle, Role, SystemClock};
use carepath_store::Store;
use tokio::net::TcpListener;

use crate::{
    auth::Authenticator,
    context::App,
    server::{self, Area, Limits},
};

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
    pub notify: crate::notify::settings::NotifyArgs,
    /// Folder for uploaded second-opinion records. Defaults to `<database>.records`
    /// beside a SQLite file (a temporary folder for PostgreSQL: set it in production).
    #[arg(long, env = "CAREPATH_RECORDS_DIR")]
    pub records_dir: Option<PathBuf>,
}

/// Errors of start-up and of the one-shot commands, shown to the operator.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Store(#[from] carepath_store::StoreError),
    #[error("{0}")]
    Key(#[from] crate::auth::KeyError),
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
    Usage(String),
}

/// Logs to stderr; `CAREPATH_LOG` (or `RUST_LOG`) filters, `CAREPATH_LOG_FORMAT=json`
/// switches to JSON lines.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAREPATH_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if std::env::var("CAREPATH_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A second initialisation (tests) keeps the first subscriber.
    drop(result);
}

/// Opens the database and applies pending migrations.
pub async fn open_store(db: &DbArgs) -> Result<Store, CliError> {
    let store = Store::connect(&db.database_url).await?;
    store.migrate().await?;
    Ok(store)
}

/// The key file beside a SQLite database: `sqlite://data/carepath.db` gives
/// `data/carepath.db.key.pem`.
fn default_signing_key(database_url: &str) -> Option<PathBuf> {
    let path = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(format!("{path}.key.pem")))
}

/// Builds the authenticator the settings ask for.
pub fn authenticator(keys: &KeyArgs, db: &DbArgs) -> Result<Authenticator, CliError> {
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
    let now = chrono::Utc::now();
    bundle.validate(now.date_naive())?;
    Ok(store.import_directory(bundle, now).await?)
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
pub fn mint_token(
    keys: &KeyArgs,
    db: &DbArgs,
    role: &str,
    subject: &str,
    ttl: chrono::Duration,
) -> Result<String, CliError> {
    let role = Role::parse(role).map_err(|e| CliError::Usage(e.to_string()))?;
    let actor = Actor::new(role, subject)?;
    let auth = authenticator(keys, db)?;
    Ok(auth.mint(&actor, chrono::Utc::now(), ttl)?)
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

/// Opens everything `args` names and serves `areas` until Ctrl-C or SIGTERM.
pub async fn run_server(args: &ServeArgs, areas: &[Area]) -> Result<(), CliError> {
    let store = open_store(&args.db).await?;
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
    let app = App {
        store: store.clone(),
        clock: Arc::new(SystemClock),
        calendar: Arc::new(BusinessCalendar::us_federal()),
        auth: Arc::new(authenticator(&args.keys, &args.db)?),
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|source| CliError::Listen {
            addr: args.listen,
            source,
        })?;
    tracing::info!(addr = %listener.local_addr().unwrap_or(args.listen), backend = ?store.backend(), "carepath listening");
    if let Some(folder) = &args.records_dir {
        crate::secondopinion::records::configure_folder(folder.clone());
    }
    let notify = args
        .notify
        .settings(&args.db.database_url)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    server::serve_with(
        app,
        listener,
        areas,
        Limits::default(),
        &notify,
        shutdown_signal(),
    )
    .await?;
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
    use clap::{Args, FromArgMatches};
    let command = ServeArgs::augment_args(
        clap::Command::new(name)
            .about(about)
            .version(env!("CARGO_PKG_VERSION")),
    );
    let args = ServeArgs::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    init_logging();
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
    match runtime.block_on(run_server(&args, areas)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
