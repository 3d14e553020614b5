//! Overload protection and authentication of every call: who is calling, how many
//! calls each caller has in progress, when a request must have arrived, and a
//! server-wide limit on calls in progress that refuses the excess at once.
//!
//! Every call but health and reflection passes [`Admission`], in this order:
//!
//! 1. its bearer token is checked ([`App::authenticate`]; staff roles against the
//!    staff directory) and refused at once with UNAUTHENTICATED, before anything is
//!    read or held;
//! 2. its caller's token bucket ([`CallerLimiter`]): over its rate, RESOURCE_EXHAUSTED
//!    with a `google.rpc.RetryInfo`;
//! 3. its caller's calls in progress, at most [`Limits::calls_per_caller`]: beyond it,
//!    RESOURCE_EXHAUSTED at once, so one caller holds at most that many of the server's
//!    slots however it behaves;
//! 4. its request must arrive within [`Limits::request_body_timeout`] of its headers
//!    (the whole request, or for an upload stream its first message), or the call ends
//!    with DEADLINE_EXCEEDED; until then it holds no server slot;
//! 5. only then does it take one of the server's slots ([`Limits::max_concurrent_calls`]),
//!    or gets UNAVAILABLE at once (the standard "try again shortly", which clients may
//!    retry).
//!
//! Nothing waits in a queue, so an overloaded server stays responsive: health checks
//! and reflection are never counted or refused, and the health service `readiness`
//! says NOT_SERVING while calls are being refused for want of a slot.
//!
//! Background work (event consumers, the notice dispatcher) gives way to calls: while
//! any call is in progress it rests between rounds (`carepath_app::pacing`, which
//! counts the calls [`Admission`] holds), so callers keep most of the machine and the
//! backlog is worked off as soon as they let up.

use std::{
    fmt,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use carepath_app::{
    App,
    limits::{CallerLimits, CallerRates, InProgress, Slot},
};
use carepath_core::Actor;
use http_body::{Body as _, Frame};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, body::Body};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    connections::{
        CallOnConnection, ConnectionInfo, Connections, StreamPermit, connection_of, is_long_lived,
    },
    server::Limits,
};

/// The door label of this door's metrics.
const DOOR: &str = "grpc";

/// Services that stay outside every limit, so probes keep answering under overload.
const UNLIMITED_SERVICES: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

fn is_unlimited(path: &str) -> bool {
    let service = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    UNLIMITED_SERVICES.contains(&service)
}

/// The limited methods whose request is a stream of messages (client streaming): for
/// these the first message, not the whole request, must arrive before a slot is taken.
/// Every other limited method sends one message.
const STREAMED_REQUESTS: &[&str] =
    &["/carepath.secondopinion.v1.SecondOpinionService/UploadRecord"];

/// The gRPC frame header before each message: a compression flag and a 4-byte length.
const FRAME_HEADER: usize = 5;

/// The server-wide limit on calls in progress, the per-caller limits and the arrival
/// deadline of requests, as a tower layer over every route (see the module's words).
///
/// A call holds one of the server's slots from the moment its request has arrived
/// until its answer starts (for a streamed answer, until the stream is set up; a long
/// status watch does not keep a slot while it waits).
#[derive(Clone)]
pub struct Admission {
    app: App,
    connections: Connections,
    slots: Arc<Semaphore>,
    limit: usize,
    callers: Option<Arc<CallerLimiter>>,
    in_progress: Arc<InProgress<Actor>>,
    request_body_timeout: Duration,
    max_message_bytes: usize,
    /// Calls refused for want of a slot, since start.
    refused: Arc<AtomicU64>,
    /// Calls whose request did not arrive in time, since start.
    late: Arc<AtomicU64>,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("limit", &self.limit)
            .field("free", &self.slots.available_permits())
            .field("calls_per_caller", &self.in_progress.limit())
            .field("request_body_timeout", &self.request_body_timeout)
            .finish()
    }
}

impl Admission {
    /// The limits of `limits` for calls authenticated by `app`, coming on `connections`.
    pub fn new(app: &App, limits: &Limits, connections: Connections) -> Self {
        let limit = limits.max_concurrent_calls.max(1);
        Admission {
            app: app.clone(),
            connections,
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            callers: CallerLimiter::new(CallerRates {
                people: limits.per_person,
                systems: limits.per_caller,
            })
            .map(Arc::new),
            in_progress: InProgress::new(limits.calls_per_caller),
            request_body_timeout: limits.request_body_timeout,
            max_message_bytes: limits.max_message_bytes,
            refused: Arc::new(AtomicU64::new(0)),
            late: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Calls in progress now.
    pub fn in_progress(&self) -> usize {
        self.limit.saturating_sub(self.slots.available_permits())
    }

    /// Whether every slot, or every connection, is taken now.
    pub fn is_full(&self) -> bool {
        self.slots.available_permits() == 0 || self.connections.is_full()
    }

    /// Calls refused for want of a slot since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn refusal(&self) -> Status {
        self.refused.fetch_add(1, Ordering::Relaxed);
        carepath_app::telemetry::refused(DOOR, "concurrency");
        Status::unavailable(format!(
            "server overloaded: {} calls already in progress, the most it takes at once; \
             retry shortly",
            self.limit
        ))
    }

    /// Takes `request` through the steps of the module's words; the request as the
    /// service is to read it (with the caller in its extensions) and what it holds
    /// until its answer starts.
    async fn admit(
        &self,
        mut request: http::Request<Body>,
    ) -> Result<(http::Request<Body>, Held), Status> {
        let header = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let actor = self.app.authenticate(header).await.map_err(|e| {
            tracing::info!(reason = %e, "unauthenticated call refused");
            crate::error::status_of(e)
        })?;
        tracing::debug!(role = actor.role.as_str(), "authenticated");
        if let Some(callers) = &self.callers {
            callers.check(&actor).inspect_err(|_| {
                carepath_app::telemetry::refused(DOOR, "rate");
                tracing::debug!(
                    role = actor.role.as_str(),
                    "call refused: caller over its rate limit"
                );
            })?;
        }
        let caller = self.in_progress.take(&actor).ok_or_else(|| {
            carepath_app::telemetry::refused(DOOR, "per_caller_calls");
            Status::resource_exhausted(format!(
                "too many calls in progress: a caller may have at most {} at once; retry \
                 when one has been answered",
                self.in_progress.limit()
            ))
        })?;
        request.extensions_mut().insert(actor);
        let request = self.arrived(request).await?;
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.refusal())?;
        Ok((
            request,
            Held {
                _slot: slot,
                _caller: caller,
            },
        ))
    }

    /// `request` once its message has arrived (the whole request, or the first message
    /// of a streamed one), read into memory and replayed to the service; refused when
    /// it takes longer than the deadline or is larger than a message may be.
    async fn arrived(&self, request: http::Request<Body>) -> Result<http::Request<Body>, Status> {
        let streamed = STREAMED_REQUESTS.contains(&request.uri().path());
        let (parts, mut body) = request.into_parts();
        let mut head = BytesMut::new();
        let mut trailers = None;
        let mut ended = false;
        let largest = self.max_message_bytes + FRAME_HEADER;
        let read = async {
            loop {
                if streamed && first_message_in(&head, self.max_message_bytes) {
                    return Ok(());
                }
                let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
                let Some(frame) = frame else {
                    ended = true;
                    return Ok(());
                };
                let frame = frame.map_err(|_| Status::cancelled("the request stream failed"))?;
                match frame.into_data() {
                    Ok(data) => {
                        if !streamed && head.len() + data.len() > largest {
                            return Err(Status::out_of_range(format!(
                                "the request is larger than the {} bytes a message may have",
                                self.max_message_bytes
                            )));
                        }
                        head.extend_from_slice(&data);
                    }
                    Err(frame) => {
                        trailers = frame.into_trailers().ok();
                        ended = true;
                        return Ok(());
                    }
                }
            }
        };
        match tokio::time::timeout(self.request_body_timeout, read).await {
            Ok(outcome) => outcome?,
            Err(_) => {
                self.late.fetch_add(1, Ordering::Relaxed);
                carepath_app::telemetry::refused(DOOR, "request_body_timeout");
                return Err(Status::deadline_exceeded(format!(
                    "the request did not arrive within {} ms of its headers",
                    self.request_body_timeout.as_millis()
                )));
            }
        }
        let replay = Replay {
            head: head.freeze(),
            trailers,
            rest: (!ended).then_some(body),
        };
        Ok(http::Request::from_parts(parts, Body::new(replay)))
    }
}

/// Whether `head` holds a whole first message (or the header of one larger than
/// `max_message_bytes`, which the service refuses as soon as it reads the header).
fn first_message_in(head: &[u8], max_message_bytes: usize) -> bool {
    let Some(length) = head.get(1..FRAME_HEADER) else {
        return false;
    };
    let length = u32::from_be_bytes(length.try_into().expect("four bytes")) as usize;
    length > max_message_bytes || head.len() >= FRAME_HEADER + length
}

/// A request body read ahead: the bytes already read, then any trailers, then the
/// rest of the stream (for a streamed request).
struct Replay {
    head: Bytes,
    trailers: Option<http::HeaderMap>,
    rest: Option<Body>,
}

impl http_body::Body for Replay {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if !self.head.is_empty() {
            let head = std::mem::take(&mut self.head);
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        match &mut self.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty()
            && self.trailers.is_none()
            && self
                .rest
                .as_ref()
                .is_none_or(http_body::Body::is_end_stream)
    }
}

/// An answer's body with what its call holds until the answer has ended.
struct Guarded {
    body: Body,
    _held: (Option<CallOnConnection>, Option<StreamPermit>),
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// What an admitted call holds until its answer starts.
struct Held {
    _slot: OwnedSemaphorePermit,
    _caller: Slot<Actor>,
}

impl<S> tower::Layer<S> for Admission {
    type Service = Admitted<S>;

    fn layer(&self, inner: S) -> Admitted<S> {
        Admitted {
            inner,
            admission: self.clone(),
        }
    }
}

/// A service behind [`Admission`].
#[derive(Debug, Clone)]
pub struct Admitted<S> {
    inner: S,
    admission: Admission,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ResBody> tower::Service<http::Request<Body>> for Admitted<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: tonic::codegen::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // Every call counts on its connection (which is not idle while it lasts), and a
        // long-lived stream holds its place, until its answer has ended.
        let connection = connection_of(&request).cloned();
        let call = connection.as_ref().map(ConnectionInfo::call);
        let stream = match &connection {
            Some(connection) if is_long_lived(request.uri().path()) => {
                match self.admission.connections.long_lived(connection) {
                    Ok(permit) => Some(permit),
                    Err(refusal) => return Box::pin(std::future::ready(Ok(refusal.into_http()))),
                }
            }
            _ => None,
        };
        let body = move |answer: http::Response<ResBody>| {
            answer.map(|body| {
                Body::new(Guarded {
                    body: Body::new(body),
                    _held: (call, stream),
                })
            })
        };
        if is_unlimited(request.uri().path()) {
            let call = self.inner.call(request);
            return Box::pin(async move { call.await.map(body) });
        }
        // The service made ready by `poll_ready` serves this call; a clone takes its
        // place for the next one.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let admission = self.admission.clone();
        Box::pin(async move {
            match admission.admit(request).await {
                Ok((request, held)) => {
                    let answer = inner.call(request).await;
                    drop(held);
                    answer.map(body)
                }
                Err(refusal) => Ok(refusal.into_http()),
            }
        })
    }
}

pub use carepath_app::limits::CallerRate;

/// One token bucket per caller, keyed by the token's role and subject, at the
/// people's or the systems' rate (the application's [`CallerLimits`]); a refusal is
/// RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo`. Only callers with a valid token
/// get a bucket.
#[derive(Debug)]
pub struct CallerLimiter(CallerLimits);

impl CallerLimiter {
    /// The limiter `rates` sets; `None` when both rates are off.
    pub fn new(rates: CallerRates) -> Option<Self> {
        CallerLimits::new(rates).map(CallerLimiter)
    }

    /// Takes one call from `actor`'s bucket, or says when the next one will be let in.
    pub fn check(&self, actor: &Actor) -> Result<(), Status> {
        let Err((wait, rate)) = self.0.check(actor) else {
            return Ok(());
        };
        let mut details = ErrorDetails::with_retry_info(Some(wait));
        details.add_quota_failure_violation(
            format!("caller:{}:{}", actor.role.as_str(), actor.subject),
            format!(
                "at most {} calls per second per caller (bursts of {})",
                rate.per_second, rate.burst
            ),
        );
        Err(Status::with_error_details(
            Code::ResourceExhausted,
            format!(
                "rate limit exceeded: this caller may make at most {} calls per second \
                 (bursts of {}); retry in {} ms",
                rate.per_second,
                rate.burst,
                wait.as_millis().max(1)
            ),
            details,
        ))
    }

    /// Calls refused since the previous look.
    pub fn take_refused(&self) -> u64 {
        self.0.take_refused()
    }

    fn forget_idle(&self) {
        self.0.forget_idle();
    }
}

const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// The longest rest between two rounds of background work.
impl carepath_app::pacing::CallsInProgress for Admission {
    fn in_progress(&self) -> usize {
        Admission::in_progress(self)
    }
}

/// Every minute: forgets idle callers' buckets and logs how many calls were refused.
pub async fn maintain(admission: Admission, stop: CancellationToken) {
    let counters = |a: &Admission| {
        let (connections_refused, idle) = a.connections.closed();
        [
            a.refused.load(Ordering::Relaxed),
            a.in_progress.refused(),
            a.late.load(Ordering::Relaxed),
            connections_refused,
            idle,
        ]
    };
    let mut last = counters(&admission);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(MAINTENANCE_INTERVAL) => {}
        }
        let now = counters(&admission);
        let [shed, crowded, late, turned_away, idle] = [0, 1, 2, 3, 4].map(|i| now[i] - last[i]);
        last = now;
        if shed > 0 {
            tracing::warn!(
                refused = shed,
                limit = admission.limit,
                "calls refused in the last minute: too many in progress"
            );
        }
        if crowded > 0 {
            tracing::warn!(
                refused = crowded,
                limit = admission.in_progress.limit(),
                "calls refused in the last minute: callers with too many in progress"
            );
        }
        if late > 0 {
            tracing::warn!(
                refused = late,
                "calls ended in the last minute: the request did not arrive in time"
            );
        }
        if turned_away > 0 {
            tracing::warn!(
                refused = turned_away,
                open = admission.connections.open(),
                "connections closed at accept in the last minute: too many open"
            );
        }
        if idle > 0 {
            tracing::info!(closed = idle, "idle connections closed in the last minute");
        }
        if let Some(callers) = &admission.callers {
            let throttled = callers.take_refused();
            if throttled > 0 {
                tracing::warn!(
                    refused = throttled,
                    "calls refused in the last minute: callers over their rate limit"
                );
            }
            callers.forget_idle();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use carepath_core::Role;

    #[test]
    fn health_and_reflection_are_outside_the_limit() {
        assert!(is_unlimited("/grpc.health.v1.Health/Check"));
        assert!(is_unlimited("/grpc.health.v1.Health/Watch"));
        assert!(is_unlimited(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!is_unlimited("/carepath.precert.v1.PrecertService/Submit"));
        assert!(!is_unlimited("/grpc.health.v1.HealthX/Check"));
    }

    #[test]
    fn every_streamed_request_of_the_contracts_is_listed() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(carepath_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut streamed = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    if method.client_streaming() {
                        streamed.push(format!(
                            "/{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        assert!(!streamed.is_empty());
        assert_eq!(streamed, STREAMED_REQUESTS);
    }

    #[test]
    fn a_first_message_is_whole_once_its_length_has_arrived() {
        let message = [0, 0, 0, 0, 3, 7, 8, 9];
        assert!(!first_message_in(&message[..4], 100), "header incomplete");
        assert!(!first_message_in(&message[..7], 100), "one byte short");
        assert!(first_message_in(&message, 100));
        assert!(
            first_message_in(&message[..5], 2),
            "too large: refused on reading"
        );
    }

    #[test]
    fn a_caller_over_its_burst_is_told_when_to_retry() {
        let limiter = CallerLimiter::new(CallerRates {
            people: Some(CallerRate {
                per_second: NonZeroU32::MIN,
                burst: NonZeroU32::new(2).unwrap(),
            }),
            systems: None,
        })
        .expect("on");
        let busy = Actor::new(Role::Admin, "AD-001").unwrap();
        let other = Actor::new(Role::Admin, "AD-002").unwrap();
        assert!(limiter.check(&busy).is_ok());
        assert!(limiter.check(&busy).is_ok());
        let refused = limiter.check(&busy).unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        let retry = refused.get_details_retry_info().expect("retry info");
        assert!(retry.retry_delay.is_some_and(|d| d > Duration::ZERO));
        assert!(limiter.check(&other).is_ok());
        assert_eq!(limiter.take_refused(), 1);
    }
}
