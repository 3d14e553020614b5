//! The one wiring module: builds a gRPC server with the chosen areas, health,
//! reflection, authentication, request ids and limits, and runs it until shutdown.
//!
//! The server takes its listener and its shutdown signal as arguments, so tests start
//! it on port 0 and stop it cleanly, and every binary wires it the same way.

use std::{future::Future, num::NonZeroU32, sync::Arc, time::Duration};

use carepath_proto::{
    audit::v1::audit_service_server::AuditServiceServer,
    cases::v1::case_service_server::CaseServiceServer,
    directory::v1::directory_service_server::DirectoryServiceServer,
    notify::v1::notification_service_server::NotificationServiceServer,
    oncology::v1::oncology_service_server::OncologyServiceServer,
    precert::v1::precert_service_server::PrecertServiceServer,
    secondopinion::v1::second_opinion_service_server::SecondOpinionServiceServer,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{
    service::RoutesBuilder,
    transport::{Server, ServerTlsConfig},
};
use tonic_health::ServingStatus;
use tower_http::{
    classify::GrpcFailureClass,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

use carepath_app::pacing::Pacing;

use crate::{
    audit::Audit,
    connections::{self, ConnectionLimits, Connections},
    context::{App, RpcMethod},
    directory::Directory,
    oncology::Oncology,
    overload::{Admission, CallerRate},
    precert::{
        Precert,
        engine::{EngineError, PrecertEngine},
    },
};

/// A functional area of carepath; each binary serves one or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Area {
    /// Plans, members, providers, staff.
    Directory,
    /// Precertification: requirement checks, cases, review, gold cards, metrics.
    Precert,
    /// Notices from events: the outbox consumer, the dispatcher and the service.
    Notify,
    /// Oncology pathway review of whole treatment plans.
    Oncology,
    /// Nurse case management, with the referral consumer.
    Cases,
    /// Remote expert second opinion.
    SecondOpinion,
}

impl Area {
    /// Every area, as served by the all-in-one binary.
    pub const ALL: &'static [Area] = &[
        Area::Directory,
        Area::Precert,
        Area::Notify,
        Area::Oncology,
        Area::Cases,
        Area::SecondOpinion,
    ];

    /// The gRPC services the area exposes, by full name (for health).
    pub fn service_names(self) -> &'static [&'static str] {
        match self {
            Area::Directory => &["carepath.directory.v1.DirectoryService"],
            Area::Precert => &["carepath.precert.v1.PrecertService"],
            Area::Notify => &["carepath.notify.v1.NotificationService"],
            Area::Oncology => &["carepath.oncology.v1.OncologyService"],
            Area::Cases => &["carepath.cases.v1.CaseService"],
            Area::SecondOpinion => &["carepath.secondopinion.v1.SecondOpinionService"],
        }
    }
}

/// Calls in progress across the server by default: sized for a small machine by
/// Little's law, its capacity (about 1,500 submissions a second on two cores) times
/// the latency to keep (about 20 ms). Offered twice its capacity, a server with this
/// limit kept the p99 of the calls it took at its p99 at capacity (BENCHMARKS.md,
/// Overload); with 256 the admitted calls queued behind each other for ten times as
/// long. Raise it for calls that wait on something other than this server (uploads
/// over slow links).
pub const DEFAULT_MAX_CONCURRENT_CALLS: NonZeroU32 = NonZeroU32::new(32).unwrap();
/// Background work's share of the time while calls are in progress: a quarter, so a
/// burst of calls keeps three quarters of the machine and its notices and referrals
/// follow within seconds (BENCHMARKS.md, "Background work gives way to calls").
pub const DEFAULT_BACKGROUND_SHARE: f64 = 0.25;
/// Calls per second one system (a provider's system, an internal service) may make by
/// default: far above what one integration needs, so the limit only stops a runaway
/// client.
pub const DEFAULT_CALLER_RATE: u32 = 10_000;
/// Calls one system may make back to back by default.
pub const DEFAULT_CALLER_BURST: NonZeroU32 = NonZeroU32::new(2_000).unwrap();
/// Calls per second one person (a member, a nurse, a reviewer, an administrator) may
/// make by default: more than any screen needs, far less than a script repeating a
/// call.
pub const DEFAULT_PERSON_RATE: u32 = 20;
/// Calls one person may make back to back by default (a screen that loads many
/// records at once).
pub const DEFAULT_PERSON_BURST: NonZeroU32 = NonZeroU32::new(200).unwrap();
/// Calls one caller may have in progress at once by default: a quarter of the
/// server's slots, so no one caller (a stuck client, a script, a token that leaked) can
/// take them all, while a client with a few calls in flight is never refused.
pub const DEFAULT_CALLS_PER_CALLER: NonZeroU32 = NonZeroU32::new(8).unwrap();
/// How long a call's request may take to arrive after its headers by default: ample
/// for a request of the 4 MiB message cap on a slow link, short enough that calls
/// whose body never comes are ended long before the call timeout.
pub const DEFAULT_REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits applied to every call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Upper bound for a call when the client sets no shorter deadline.
    pub request_timeout: Duration,
    /// Largest request or response message, in bytes.
    pub max_message_bytes: usize,
    /// Calls one connection may have open at once (HTTP/2 streams); a client that
    /// wants more waits on its own side. Kept above `max_concurrent_calls`, so one busy
    /// connection (a gateway, a load generator) meets the server-wide limit and is
    /// answered at once rather than left waiting.
    pub streams_per_connection: u32,
    /// Calls in progress across the server; more are refused at once with
    /// UNAVAILABLE. Health checks and reflection are not counted. A call takes its slot
    /// once its request has arrived.
    pub max_concurrent_calls: usize,
    /// Calls one caller (a token's role and subject) may have in progress, from their
    /// headers to the start of their answer; more are refused at once with
    /// RESOURCE_EXHAUSTED.
    pub calls_per_caller: usize,
    /// How long a call's request (for an upload stream, its first message) may take to
    /// arrive after its headers; a later one ends with DEADLINE_EXCEEDED.
    pub request_body_timeout: Duration,
    /// Bounds on connections: how many, how long idle, long-lived streams on each.
    pub connections: ConnectionLimits,
    /// Token bucket per authenticated system (a provider's system, an internal
    /// service); `None` turns it off.
    pub per_caller: Option<CallerRate>,
    /// Token bucket per authenticated person (members and plan staff); `None` turns it
    /// off.
    pub per_person: Option<CallerRate>,
    /// How long an outbox consumer keeps a claimed event before another worker (or
    /// this one, restarted after a crash) may take it over.
    pub event_lease: Duration,
    /// The share of the time background work (event consumers, the notice
    /// dispatcher) takes while calls are in progress; 1 lets it run flat out.
    pub background_share: f64,
    /// How often the precertification sweeps run (on one process of those sharing the
    /// database at a time).
    pub sweep_interval: Duration,
    /// How often the metrics that need a database query (outbox backlog, cases open
    /// and past due, notices not sent) are read again.
    pub gauge_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Duration::from_secs(30),
            max_message_bytes: 4 * 1024 * 1024,
            streams_per_connection: 1024,
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS.get() as usize,
            calls_per_caller: DEFAULT_CALLS_PER_CALLER.get() as usize,
            connections: ConnectionLimits::default(),
            request_body_timeout: DEFAULT_REQUEST_BODY_TIMEOUT,
            per_caller: NonZeroU32::new(DEFAULT_CALLER_RATE).map(|per_second| CallerRate {
                per_second,
                burst: DEFAULT_CALLER_BURST,
            }),
            per_person: NonZeroU32::new(DEFAULT_PERSON_RATE).map(|per_second| CallerRate {
                per_second,
                burst: DEFAULT_PERSON_BURST,
            }),
            event_lease: carepath_app::outbox::ConsumerOptions::default().lease,
            background_share: DEFAULT_BACKGROUND_SHARE,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            gauge_interval: carepath_app::telemetry::GAUGE_INTERVAL,
        }
    }
}

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC transport failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection set-up failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("precertification engine: {0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Notify(#[from] crate::notify::NotifyError),
    #[error("second-opinion record store: {0}")]
    Records(std::io::Error),
}

/// Served by every server next to its areas.
const AUDIT_SERVICE: &str = "carepath.audit.v1.AuditService";

const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Serves `areas` on `listener` in plain text until `shutdown` completes, with the
/// default notification settings (see [`serve_with`]).
pub async fn serve(
    app: App,
    listener: TcpListener,
    areas: &[Area],
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let notify = carepath_app::notify::settings::NotifySettings::default();
    let engine = PrecertEngine::load(&app.store).await?;
    serve_with(
        app, engine, listener, areas, limits, &notify, None, None, shutdown,
    )
    .await
}

/// Serves `areas` on `listener` until `shutdown` completes; calls in flight finish,
/// then background work is told to stop and awaited. `engine` holds the rules and
/// exemptions in force (shared with any other door of the process, so every door
/// decides by the same list version); this server keeps it fresh. `notify` says where notices
/// go out when the notification area is served; with `tls` the server speaks TLS
/// only (and asks for client certificates when the configuration names a client CA).
/// With `relay` every domain event is also published to NATS JetStream
/// (`carepath_app::events::relay`).
#[allow(clippy::too_many_arguments)]
pub async fn serve_with(
    app: App,
    engine: Arc<PrecertEngine>,
    listener: TcpListener,
    areas: &[Area],
    limits: Limits,
    notify: &carepath_app::notify::settings::NotifySettings,
    tls: Option<ServerTlsConfig>,
    relay: Option<carepath_app::events::relay::RelaySettings>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let mut notify_area = None;
    let mut second_opinion: Option<crate::secondopinion::SecondOpinion> = None;
    let (health, health_service) = tonic_health::server::health_reporter();
    // Authenticates every call but health and reflection, and applies the limits.
    let connections = Connections::new(limits.connections);
    let admission = Admission::new(&app, &limits, connections.clone());

    let mut routes = RoutesBuilder::default();
    // Adds a generated service with the message-size limits both ways (a macro: each
    // generated server has the size methods as its own). Its calls are authenticated
    // by `admission`, which puts the caller in each request's extensions.
    macro_rules! add_authenticated {
        ($service:expr) => {
            routes.add_service(
                $service
                    .max_decoding_message_size(limits.max_message_bytes)
                    .max_encoding_message_size(limits.max_message_bytes),
            )
        };
    }
    routes.add_service(health_service);
    let precert = Precert::new(app.clone(), engine.clone());
    // Every server answers audit searches: the log lives in the shared database.
    add_authenticated!(AuditServiceServer::new(Audit::new(app.clone())));
    let mut names = vec![AUDIT_SERVICE];
    for area in areas {
        match area {
            Area::Directory => {
                add_authenticated!(DirectoryServiceServer::new(Directory::new(app.clone())));
            }
            Area::Precert => {
                add_authenticated!(PrecertServiceServer::new(precert.clone()));
            }
            Area::Oncology => {
                let catalogue = carepath_app::data::current().oncology;
                add_authenticated!(OncologyServiceServer::new(Oncology::new(
                    app.clone(),
                    engine.clone(),
                    catalogue,
                )));
            }
            Area::Cases => {
                let cases = crate::cases::Cases::new(app.clone());
                add_authenticated!(CaseServiceServer::new(cases));
            }
            Area::Notify => {
                let area = crate::notify::NotifyArea::new(app.clone(), notify)?;
                add_authenticated!(NotificationServiceServer::new(area.service.clone()));
                notify_area = Some(area);
            }
            Area::SecondOpinion => {
                let service = crate::secondopinion::SecondOpinion::for_app(app.clone())
                    .map_err(ServeError::Records)?;
                add_authenticated!(SecondOpinionServiceServer::new(service.clone()));
                second_opinion = Some(service);
            }
        }
        names.extend_from_slice(area.service_names());
    }
    // Reflection lists the services this binary answers, not every contract compiled in.
    routes.add_service(reflection_builder(&names).build_v1()?);
    routes.add_service(reflection_builder(&names).build_v1alpha()?);

    // Readiness is set with the rest, so it answers from the first call on.
    for name in [&"", &READINESS].into_iter().chain(&names) {
        health
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    let background = CancellationToken::new();
    let mut tasks = vec![
        tokio::spawn(probe_health(
            app.clone(),
            health,
            names,
            admission.clone(),
            background.clone(),
        )),
        tokio::spawn(crate::overload::maintain(
            admission.clone(),
            background.clone(),
        )),
        tokio::spawn(carepath_app::telemetry::run_gauges(
            app.store.clone(),
            app.clock.clone(),
            limits.gauge_interval,
            background.clone(),
        )),
    ];
    let pacing = Pacing::behind(Arc::new(admission.clone()), limits.background_share);
    let consumer_options = carepath_app::outbox::ConsumerOptions {
        lease: limits.event_lease,
        ..carepath_app::outbox::ConsumerOptions::default()
    };
    if let Some(area) = notify_area {
        tasks.push(tokio::spawn(carepath_app::outbox::run_consumer(
            app.store.clone(),
            app.clock.clone(),
            Arc::new(area.handler),
            consumer_options,
            pacing.clone(),
            background.clone(),
        )));
        tasks.push(tokio::spawn(carepath_app::notify::run_dispatcher(
            area.dispatcher,
            pacing.clone(),
            background.clone(),
        )));
    }
    if areas.contains(&Area::Cases) {
        tasks.push(tokio::spawn(carepath_app::outbox::run_consumer(
            app.store.clone(),
            app.clock.clone(),
            Arc::new(carepath_app::cases::referrals::ReferralConsumer::new(
                app.store.clone(),
                app.clock.clone(),
            )),
            consumer_options,
            pacing.clone(),
            background.clone(),
        )));
    }
    if let Some(settings) = relay {
        tasks.push(tokio::spawn(carepath_app::events::relay::run_relay(
            app.store.clone(),
            app.clock.clone(),
            settings,
            consumer_options,
            pacing.clone(),
            background.clone(),
        )));
    }
    // Sweeps run on one process of those sharing the database at a time.
    let jobs = carepath_app::jobs::Jobs::new(app.store.clone(), app.clock.clone());
    if let Some(service) = &second_opinion {
        tasks.push(tokio::spawn(
            service
                .use_cases()
                .clone()
                .sweep_records(jobs.clone(), background.clone()),
        ));
        tasks.push(tokio::spawn(
            service
                .use_cases()
                .clone()
                .follow_other_processes(background.clone()),
        ));
    }
    if areas.contains(&Area::Precert) {
        tasks.push(tokio::spawn(precert_sweeps(
            precert.use_cases().clone(),
            jobs.clone(),
            limits.sweep_interval,
            background.clone(),
        )));
    }
    if areas.contains(&Area::Precert) || areas.contains(&Area::Oncology) {
        tasks.push(tokio::spawn(carepath_app::precert::engine::keep_fresh(
            engine.clone(),
            app.store.clone(),
            background.clone(),
        )));
    }

    // Calls refused for overload carry a request id but get no span or log line of
    // their own: refusing must stay cheap when many arrive at once (`overload::maintain`
    // logs how many there were).
    let layers = tower::ServiceBuilder::new()
        .layer(crate::metrics::CallMetrics)
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(admission.clone())
        .layer(
            TraceLayer::new_for_grpc()
                .make_span_with(|req: &http::Request<_>| {
                    let request_id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    let span = tracing::info_span!("rpc", method = %req.uri().path(), request_id = %request_id);
                    // A caller's W3C trace context makes the call part of its trace.
                    carepath_app::telemetry::follow(
                        &span,
                        req.headers().get("traceparent").and_then(|v| v.to_str().ok()),
                    );
                    span
                })
                // A refused call is routine (bad input, no token); server faults are
                // logged at error level where they happen. Only the status code is
                // logged: the message can name the record the caller asked for.
                .on_failure(
                    |failure: GrpcFailureClass, latency: Duration, _span: &tracing::Span| {
                        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
                        if let GrpcFailureClass::Status(status) = &failure {
                            tracing::info!(
                                code = ?tonic::Code::from(status.code_raw()),
                                latency_ms,
                                "response failed"
                            );
                        } else {
                            tracing::info!(%failure, latency_ms, "response failed");
                        }
                    },
                ),
        )
        .map_request(|mut req: http::Request<_>| {
            let method = RpcMethod(req.uri().path().to_owned());
            req.extensions_mut().insert(method);
            req
        });

    // Open status watches end when shutdown begins, so they do not hold it open.
    let shutdown = async move {
        shutdown.await;
        if let Some(service) = &second_opinion {
            service.stop_watchers();
        }
    };
    let incoming = connections::incoming(listener, connections);
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(connections::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(connections::KEEPALIVE_TIMEOUT));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.timeout(TLS_HANDSHAKE_TIMEOUT))?;
    }
    let result = builder
        .timeout(limits.request_timeout)
        .max_concurrent_streams(limits.streams_per_connection)
        .layer(layers)
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;

    background.cancel();
    for task in tasks {
        let _ = task.await;
    }
    tracing::info!("server stopped");
    result.map_err(ServeError::from)
}

fn reflection_builder(served: &[&str]) -> tonic_reflection::server::Builder<'static> {
    served.iter().fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(carepath_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health"),
        |builder, name| builder.with_service_name(*name),
    )
}

/// How often the precertification sweeps run by default.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
const GOLD_CARD_INTERVAL: chrono::Duration = chrono::Duration::hours(24);
/// The lease name of the precertification sweeps.
pub const PRECERT_SWEEP_JOB: &str = "precert.sweeps";

/// Precertification housekeeping, on one process of those sharing the database at a
/// time ([`carepath_app::jobs`]): withdraws cases whose requested information is
/// overdue past the limit (every `interval`) and re-evaluates gold cards a day after
/// the last evaluation stored (read from the database at each run, so neither a
/// restart nor another process taking the job over evaluates again; on a new database
/// the first is a day after the first sweep, or when an admin asks).
async fn precert_sweeps(
    precert: carepath_app::precert::Precert,
    jobs: carepath_app::jobs::Jobs,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut first_sweep = None;
    let mut turns = jobs.periodic(PRECERT_SWEEP_JOB, interval);
    while turns.next(&stop).await {
        match precert.withdraw_overdue().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                withdrawn = n,
                "withdrew cases whose information did not come"
            ),
            Err(e) => tracing::warn!(error = %e, "withdrawal sweep failed"),
        }
        let now = precert.now();
        let last = match precert.gold_cards_evaluated_at().await {
            Ok(at) => at.unwrap_or(*first_sweep.get_or_insert(now)),
            Err(e) => {
                tracing::warn!(error = %e, "last gold-card evaluation unknown");
                continue;
            }
        };
        if now - last >= GOLD_CARD_INTERVAL {
            // A failed evaluation is tried again at the next sweep, not the next day.
            match precert.evaluate_gold_cards(now).await {
                Ok(cards) => tracing::info!(standings = cards.len(), "gold cards re-evaluated"),
                Err(e) => tracing::warn!(error = %e, "gold-card evaluation failed"),
            }
        }
    }
}

/// The health service name that says whether the server takes calls now: NOT_SERVING
/// while calls are being refused for want of a slot (and while the database does not
/// answer), so a load balancer sends new calls elsewhere; the overall status (`""`) and
/// each service's stay SERVING while only busy.
pub const READINESS: &str = "readiness";

/// How often readiness is looked at: saturation comes and goes within seconds.
const READINESS_INTERVAL: Duration = Duration::from_secs(1);

/// Reports each service SERVING while the database answers, NOT_SERVING while it
/// does not; and [`READINESS`] NOT_SERVING also while the server is saturated (every
/// slot taken, or a call refused for want of one since the last look).
async fn probe_health(
    app: App,
    health: tonic_health::server::HealthReporter,
    names: Vec<&'static str>,
    admission: Admission,
    stop: CancellationToken,
) {
    let mut last = Some(ServingStatus::Serving);
    let mut last_ready = Some(ServingStatus::Serving);
    let mut refused = admission.refused();
    let mut next_ping = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_ping {
            next_ping += HEALTH_PROBE_INTERVAL;
            let status = match app.store.ping().await {
                Ok(()) => ServingStatus::Serving,
                Err(e) => {
                    tracing::warn!(error = %e, "database does not answer");
                    ServingStatus::NotServing
                }
            };
            if last != Some(status) {
                health.set_service_status("", status).await;
                for name in &names {
                    health.set_service_status(*name, status).await;
                }
                last = Some(status);
            }
        }
        let refused_now = admission.refused();
        let saturated = admission.is_full() || refused_now != refused;
        refused = refused_now;
        let ready = if saturated || last != Some(ServingStatus::Serving) {
            ServingStatus::NotServing
        } else {
            ServingStatus::Serving
        };
        if last_ready != Some(ready) {
            health.set_service_status(READINESS, ready).await;
            last_ready = Some(ready);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(READINESS_INTERVAL) => {}
        }
    }
}
