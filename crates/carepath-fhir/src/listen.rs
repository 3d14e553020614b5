//! The FHIR door's connections, bounded as the gRPC door's are: how many may be open,
//! how long a client may take to send a request's headers, how long a connection may
//! stay open with no request in progress, and how many requests one HTTP/2 connection
//! may carry at once.
//!
//! [`serve_connections`] accepts connections itself (rather than through
//! `axum::serve`, which has none of these bounds):
//!
//! - beyond [`ConnectionBounds::max_connections`] a new connection is closed at once,
//!   so its client fails fast and tries elsewhere rather than waiting in the listen
//!   queue;
//! - HTTP/1.1 request headers must arrive within
//!   [`ConnectionBounds::first_request_timeout`] of the server starting to wait for
//!   them; that also closes a keep-alive connection waiting that long for its next
//!   request;
//! - a connection that has begun no request within the first-request timeout, or has
//!   had none in progress for [`ConnectionBounds::idle_timeout`], is shut down
//!   gracefully (HTTP/2 peers get a GOAWAY); HTTP/2 keep-alive pings find peers that
//!   vanished without closing;
//! - at shutdown, connections finish the requests they carry, for at most
//!   [`ConnectionBounds::drain_timeout`].

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::ConnectInfo};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    net::TcpListener,
    sync::Semaphore,
    task::JoinSet,
    time::{Instant, sleep, sleep_until},
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How often an idle HTTP/2 peer is pinged, and how long its answer may take.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The bounds every connection to the FHIR door meets.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionBounds {
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// How long a new connection may take to begin its first request, and an HTTP/1.1
    /// client to send a request's headers.
    pub first_request_timeout: Duration,
    /// How long a connection may stay open with no request in progress.
    pub idle_timeout: Duration,
    /// Requests one HTTP/2 connection may carry at once.
    pub streams_per_connection: u32,
    /// How long connections may take to finish their requests at shutdown.
    pub drain_timeout: Duration,
}

impl Default for ConnectionBounds {
    fn default() -> Self {
        ConnectionBounds {
            max_connections: 512,
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            streams_per_connection: 32,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Connections turned away for the limit, and closed for idling, since start.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    pub refused: AtomicU64,
    pub idle_closed: AtomicU64,
}

/// The requests of one connection: how many are in progress, whether one ever began,
/// and when the last one began or ended.
#[derive(Debug)]
struct Activity {
    in_progress: AtomicUsize,
    since: Mutex<(Instant, bool)>,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            in_progress: AtomicUsize::new(0),
            since: Mutex::new((Instant::now(), false)),
        })
    }

    fn touch(&self) {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        *since = (Instant::now(), true);
    }

    /// A request begins; it ends when the returned guard drops.
    fn begin(self: &Arc<Self>) -> Request {
        self.in_progress.fetch_add(1, Ordering::SeqCst);
        self.touch();
        Request {
            activity: self.clone(),
        }
    }

    /// Completes once the connection has carried no request for `idle` (`first` while
    /// none has begun yet).
    async fn idle(&self, first: Duration, idle: Duration) {
        loop {
            let (last, began) = *self.since.lock().unwrap_or_else(|e| e.into_inner());
            let limit = if began { idle } else { first };
            let busy = self.in_progress.load(Ordering::SeqCst) > 0;
            let deadline = last + limit;
            if !busy && Instant::now() >= deadline {
                return;
            }
            if busy {
                sleep(limit.min(Duration::from_secs(1))).await;
            } else {
                sleep_until(deadline).await;
            }
        }
    }
}

/// One request in progress on a connection.
struct Request {
    activity: Arc<Activity>,
}

impl Drop for Request {
    fn drop(&mut self) {
        self.activity.touch();
        self.activity.in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `router` on `listener` within `bounds` until `shutdown` is cancelled, then
/// lets the connections finish their requests (for at most the drain timeout). Every
/// request carries its peer's address as [`ConnectInfo`].
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    bounds: ConnectionBounds,
    counts: Arc<ConnectionCounts>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.first_request_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .max_concurrent_streams(bounds.streams_per_connection);
    let open = Arc::new(Semaphore::new(bounds.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was
                    // accepted: wait a moment rather than spin.
                    tracing::warn!(error = %e, "FHIR connection not accepted");
                    sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            carepath_app::telemetry::refused("fhir", "connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let service = {
            let (router, activity) = (router.clone(), activity.clone());
            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let request_in_progress = activity.begin();
                let mut request = request.map(axum::body::Body::new);
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                let answer = router.clone().oneshot(request);
                async move {
                    let response = answer.await;
                    drop(request_in_progress);
                    Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
                }
            })
        };
        let (builder, shutdown, counts) = (builder.clone(), shutdown.clone(), counts.clone());
        connections.spawn(async move {
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let mut closing = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "FHIR connection ended with an error");
                        }
                        break;
                    }
                    () = activity.idle(bounds.first_request_timeout, bounds.idle_timeout), if !closing => {
                        counts.idle_closed.fetch_add(1, Ordering::Relaxed);
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    () = shutdown.cancelled(), if !closing => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(bounds.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            left = connections.len(),
            "FHIR connections still busy after the drain timeout; closing them"
        );
        connections.abort_all();
    }
    Ok(())
}
