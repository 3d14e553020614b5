//! Overload protection: a server-wide limit on calls in progress that refuses the
//! excess at once, and a token bucket per authenticated caller.
//!
//! Both answer immediately. A call beyond the server's limit gets UNAVAILABLE (the
//! standard "try again shortly" code, which clients may retry); a caller beyond its own
//! rate gets RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo` saying when to come back.
//! Nothing waits in a queue, so an overloaded server stays responsive: health checks
//! and reflection are never counted or refused.
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

use carepath_app::limits::KeyedLimiter;
use carepath_core::Actor;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

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

/// The server-wide limit on calls in progress, as a tower layer over every route.
///
/// A call holds one of `limit` slots from its arrival until its answer starts (for a
/// streamed answer, until the stream is set up; a long status watch does not keep a
/// slot while it waits). When none is free the call is refused at once.
#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    limit: usize,
    refused: Arc<AtomicU64>,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("limit", &self.limit)
            .field("free", &self.slots.available_permits())
            .finish()
    }
}

impl Admission {
    /// At most `limit` calls in progress (at least one).
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        Admission {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            refused: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Calls in progress now.
    pub fn in_progress(&self) -> usize {
        self.limit.saturating_sub(self.slots.available_permits())
    }

    /// Calls refused since the previous look.
    pub fn take_refused(&self) -> u64 {
        self.refused.swap(0, Ordering::Relaxed)
    }

    fn refusal(&self) -> Status {
        self.refused.fetch_add(1, Ordering::Relaxed);
        Status::unavailable(format!(
            "server overloaded: {} calls already in progress, the most it takes at once; \
             retry shortly",
            self.limit
        ))
    }
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

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Admitted<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: tonic::codegen::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let body = |answer: http::Response<ResBody>| answer.map(tonic::body::Body::new);
        if is_unlimited(request.uri().path()) {
            let call = self.inner.call(request);
            return Box::pin(async move { call.await.map(body) });
        }
        match self.admission.slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let call = self.inner.call(request);
                Box::pin(async move {
                    let answer = call.await;
                    drop(slot);
                    answer.map(body)
                })
            }
            Err(_) => {
                let refusal = self.admission.refusal();
                Box::pin(std::future::ready(Ok(refusal.into_http())))
            }
        }
    }
}

pub use carepath_app::limits::CallerRate;

/// One token bucket per caller, keyed by the token's role and subject (the
/// application's [`KeyedLimiter`]); a refusal is RESOURCE_EXHAUSTED with a
/// `google.rpc.RetryInfo`. Only callers with a valid token get a bucket.
#[derive(Debug)]
pub struct CallerLimiter(KeyedLimiter<Actor>);

impl CallerLimiter {
    pub fn new(rate: CallerRate) -> Self {
        CallerLimiter(KeyedLimiter::new(rate))
    }

    /// Takes one call from `actor`'s bucket, or says when the next one will be let in.
    pub fn check(&self, actor: &Actor) -> Result<(), Status> {
        let Err(wait) = self.0.check(actor) else {
            return Ok(());
        };
        let rate = self.0.rate();
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
pub async fn maintain(
    admission: Admission,
    callers: Option<Arc<CallerLimiter>>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(MAINTENANCE_INTERVAL) => {}
        }
        let shed = admission.take_refused();
        if shed > 0 {
            tracing::warn!(
                refused = shed,
                limit = admission.limit,
                "calls refused in the last minute: too many in progress"
            );
        }
        if let Some(callers) = &callers {
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
    fn a_caller_over_its_burst_is_told_when_to_retry() {
        let limiter = CallerLimiter::new(CallerRate {
            per_second: NonZeroU32::MIN,
            burst: NonZeroU32::new(2).unwrap(),
        });
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
