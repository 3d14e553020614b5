//! Flags and start-up of the FHIR door (`carepath serve`, `carepath-fhir-server`).

use std::net::SocketAddr;

use carepath_app::{
    App,
    precert::{Precert, PrecertEngine},
};
use carepath_fhir::{FhirDoor, http::HttpLimits, listen::ConnectionBounds};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{CliError, DbArgs, KeyArgs, LimitArgs};

/// Where the FHIR API listens and how it is reached.
#[derive(Debug, Clone, clap::Args)]
pub struct FhirArgs {
    /// Address the FHIR API (Da Vinci PAS, SMART backend services) listens on.
    #[arg(long, env = "CAREPATH_FHIR_LISTEN", default_value = "127.0.0.1:8080")]
    pub fhir_listen: SocketAddr,
    /// The FHIR API's public origin as clients reach it (`https://fhir.plan.example`):
    /// token audiences and full URLs are written under it. Defaults to
    /// `http://<the address it listens on>`.
    #[arg(long, env = "CAREPATH_FHIR_PUBLIC_URL")]
    pub fhir_public_url: Option<String>,
    /// Hosts subscription notifications may be sent to, comma-separated (each also
    /// covers its subdomains). Unset: any host, as for trying it out; set it in
    /// production, so member data goes only where the plan agreed.
    #[arg(long, env = "CAREPATH_FHIR_SUBSCRIPTION_HOSTS", value_delimiter = ',')]
    pub fhir_subscription_hosts: Vec<String>,
}

/// Binds the FHIR door and serves it in the background until `stop`; the returned
/// task ends when the door has stopped.
pub async fn start(
    args: &FhirArgs,
    app: &App,
    engine: std::sync::Arc<PrecertEngine>,
    limits: &LimitArgs,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, CliError> {
    let listener = TcpListener::bind(args.fhir_listen)
        .await
        .map_err(|source| CliError::Listen {
            addr: args.fhir_listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(args.fhir_listen);
    let public_url = args
        .fhir_public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    tracing::info!(fhir_addr = %addr, public_url = %public_url, "carepath FHIR API listening");
    let grpc = limits.limits();
    let limits = HttpLimits {
        max_body_bytes: grpc.max_message_bytes,
        max_concurrent_requests: grpc.max_concurrent_calls,
        request_body_timeout: grpc.request_body_timeout,
        requests_per_caller: grpc.calls_per_caller,
        connections: ConnectionBounds {
            max_connections: grpc.connections.max_connections as usize,
            first_request_timeout: grpc.connections.first_call_timeout,
            idle_timeout: grpc.connections.idle_timeout,
            ..ConnectionBounds::default()
        },
        per_caller: grpc.per_caller,
        event_lease: grpc.event_lease,
        background_share: grpc.background_share,
        ..HttpLimits::default()
    };
    let door = FhirDoor::new(
        app.clone(),
        Precert::new(app.clone(), engine),
        &public_url,
        &limits,
    )
    .with_subscription_hosts(args.fhir_subscription_hosts.clone());
    Ok(tokio::spawn(async move {
        if let Err(e) = carepath_fhir::serve(door, listener, limits, stop.cancelled_owned()).await {
            tracing::error!(error = %e, "the FHIR API stopped with an error");
        }
    }))
}

/// Settings of the FHIR API served on its own (`carepath-fhir-server`).
#[derive(Debug, Clone, clap::Args)]
pub struct FhirServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Load the shipped demo directory (plans, members, providers, staff) at start.
    #[arg(long, env = "CAREPATH_DEMO")]
    pub demo: bool,
    #[command(flatten)]
    pub fhir: FhirArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub data: crate::DataArgs,
    #[command(flatten)]
    pub service_dates: crate::ServiceDateArgs,
    #[command(flatten)]
    pub telemetry: crate::telemetry::TelemetryArgs,
}

/// Serves the FHIR API alone until Ctrl-C or SIGTERM, keeping its rule engine in
/// step with the database (lists activated and gold cards evaluated elsewhere).
pub async fn run_fhir_server(args: FhirServeArgs) -> Result<(), CliError> {
    crate::install_crypto_provider();
    args.data.configure()?;
    let store = crate::open_store(&args.db).await?;
    if args.demo {
        crate::load_demo(&store).await?;
    }
    let auth = crate::authenticator(&args.keys, &args.db).await?;
    let app = crate::serving_app(store.clone(), auth.clone())?;
    let engine = PrecertEngine::load_with(&store, args.service_dates.service_dates())
        .await
        .map_err(|e| CliError::Serve(e.into()))?;
    let telemetry = crate::telemetry::start(&args.telemetry)?;
    let stop = CancellationToken::new();
    crate::keep_keys_fresh(&args.keys, &auth, &stop);
    let fresh = tokio::spawn(carepath_app::precert::engine::keep_fresh(
        engine.clone(),
        store.clone(),
        stop.clone(),
    ));
    let refusals = tokio::spawn(carepath_app::audit::refusals::run_flush(
        app.clone(),
        stop.clone(),
    ));
    let gauges = tokio::spawn(carepath_app::telemetry::run_gauges(
        store.clone(),
        app.clock.clone(),
        carepath_app::telemetry::GAUGE_INTERVAL,
        stop.clone(),
    ));
    let door = start(&args.fhir, &app, engine, &args.limits, stop.clone()).await?;
    crate::shutdown_signal().await;
    stop.cancel();
    let _ = tokio::join!(door, fresh, refusals, gauges);
    telemetry.shutdown().await;
    store.close().await;
    Ok(())
}
