//! Metrics and traces of a serving binary: the Prometheus endpoint
//! (`--metrics-listen`) and the export of spans over OTLP/HTTP (`--otlp-endpoint`).
//! What is measured lives in `carepath_app::telemetry` and the doors; this module
//! only installs where it goes.
//!
//! The trace layer is part of the logging subscriber from its start
//! ([`crate::init_logging_with_traces`]): spans can only be read back (for the context
//! stored with outbox events) through a layer installed directly.

use std::{net::SocketAddr, sync::OnceLock, time::Duration};

use bytes::Bytes;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{
    Resource,
    trace::{SdkTracer, SdkTracerProvider},
};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::Registry;

use crate::CliError;

/// Where metrics and traces go.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Address of the Prometheus metrics endpoint (scrape `http://ADDR/metrics`); an
    /// empty value turns it off. It carries counts and timings only, no member data;
    /// keep it on a network only the monitoring system reaches.
    #[arg(
        long,
        env = "CAREPATH_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: String,
    /// OTLP/HTTP (protobuf) endpoint to export traces to, such as
    /// `http://127.0.0.1:4318` (spans go to its `/v1/traces`); off when unset.
    #[arg(long, env = "CAREPATH_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// Buckets (seconds) of call latencies and waits for a connection.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets (seconds) of the time from a notice's creation to its delivery.
const NOTICE_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0,
];

/// How long an export of spans may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a collector's answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The layer spans go through to the exporter.
pub(crate) type TraceLayer = OpenTelemetryLayer<Registry, SdkTracer>;

/// The exporting provider of this process, once traces are on: kept to send the
/// spans still queued at shutdown.
static TRACES: OnceLock<SdkTracerProvider> = OnceLock::new();

/// What [`start`] turned on; [`Telemetry::shutdown`] sends the spans still queued.
#[derive(Debug, Default)]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued (waiting for the collector up to its timeout).
    pub async fn shutdown(self) {
        if let Some(provider) = self.traces {
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// Starts the metrics endpoint `args` ask for, and reports the trace export logging
/// started with. Call within the runtime, once per process.
pub fn start(args: &TelemetryArgs) -> Result<Telemetry, CliError> {
    let listen = args.metrics_listen.trim();
    if !listen.is_empty() {
        let addr: SocketAddr = listen.parse().map_err(|e| {
            CliError::Usage(format!(
                "--metrics-listen {listen:?} is not an address: {e}"
            ))
        })?;
        start_metrics(addr)?;
        tracing::info!(%addr, "metrics endpoint listening at /metrics");
    }
    let traces = TRACES.get().cloned();
    if let Some(endpoint) = args.otlp_endpoint.as_deref().filter(|_| traces.is_some()) {
        tracing::info!(endpoint, "traces exported over OTLP/HTTP");
    }
    Ok(Telemetry { traces })
}

/// The `--otlp-endpoint` a command line set, if it set one (read before the settings
/// struct is known, to start logging with it).
pub(crate) fn endpoint_in(matches: &clap::ArgMatches) -> Option<String> {
    let mut matches = matches;
    while let Some((_, sub)) = matches.subcommand() {
        matches = sub;
    }
    matches
        .try_get_one::<String>("otlp_endpoint")
        .ok()
        .flatten()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
}

/// Installs the Prometheus recorder with its endpoint on `addr`, and describes every
/// metric. Call within the runtime, once per process.
pub fn start_metrics(addr: SocketAddr) -> Result<(), CliError> {
    let usage = |e: &dyn std::fmt::Display| {
        CliError::Usage(format!("metrics endpoint on {addr} not started: {e}"))
    };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(LATENCY_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(carepath_app::telemetry::NOTICE_DELIVERY_SECONDS.into()),
                NOTICE_BUCKETS,
            )
        })
        .map_err(|e| usage(&e))?
        .install()
        .map_err(|e| usage(&e))?;
    carepath_app::telemetry::describe();
    Ok(())
}

/// The layer that exports spans to the OTLP/HTTP collector at `endpoint`; from then
/// on outbox events carry their trace context. Call within the runtime.
pub(crate) fn trace_layer(endpoint: &str, service: &'static str) -> Result<TraceLayer, CliError> {
    let usage =
        |e: &dyn std::fmt::Display| CliError::Usage(format!("--otlp-endpoint {endpoint}: {e}"));
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let client = Collector {
        http: reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| usage(&e))?,
        runtime: tokio::runtime::Handle::current(),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| usage(&e))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));
    let _ = TRACES.set(provider);
    carepath_store::trace::enable();
    Ok(layer)
}

/// The exporter's HTTP client: the process's own (reqwest) on the process's runtime.
/// The batch exporter sends from a thread of its own; each request is spawned onto
/// the runtime and awaited there.
#[derive(Debug)]
struct Collector {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for Collector {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.http.clone();
        let send = async move {
            let (parts, body) = request.into_parts();
            let mut answer = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = answer.status();
            let mut read = Vec::new();
            while let Some(chunk) = answer.chunk().await? {
                let room = MAX_ANSWER_BYTES.saturating_sub(read.len());
                read.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if room <= chunk.len() {
                    break;
                }
            }
            Ok::<_, HttpError>(
                http::Response::builder()
                    .status(status)
                    .body(Bytes::from(read))?,
            )
        };
        self.runtime.spawn(send).await?
    }
}
