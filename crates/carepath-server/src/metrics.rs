//! Call metrics of the gRPC door: every call, refused ones included, counted by
//! service, method and status code with its latency, and the calls in progress
//! ([`carepath_app::telemetry`] names them). The outermost layer, so it sees what the
//! admission layer refuses.
//!
//! Label values are bounded: a path that names no method of the served contracts
//! (the compiled carepath services, health, reflection) counts as `other`, whatever
//! a client sends. The status code is read from the answer's headers (an answer with
//! no message) or from its trailers when the body ends; an answer abandoned before
//! its trailers counts as `Cancelled`.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::LazyLock,
    task::{Context, Poll},
};

use bytes::Bytes;
use carepath_app::telemetry::CallInProgress;
use http_body::{Frame, SizeHint};
use prost::Message;
use tonic::{Code, body::Body};

/// The door label of this door's metrics.
const DOOR: &str = "grpc";
/// Service and method label of a path that names no served method.
const OTHER: &str = "other";

/// `/package.Service/Method` to its (service, method) labels, for every method of the
/// contracts compiled in, health and reflection.
static METHODS: LazyLock<HashMap<String, (&'static str, &'static str)>> = LazyLock::new(|| {
    let mut methods = HashMap::new();
    let mut add = |service: &str, method: &str| {
        let labels: (&'static str, &'static str) = (
            Box::leak(service.to_owned().into_boxed_str()),
            Box::leak(method.to_owned().into_boxed_str()),
        );
        methods.insert(format!("/{service}/{method}"), labels);
    };
    if let Ok(set) = prost_types::FileDescriptorSet::decode(carepath_proto::FILE_DESCRIPTOR_SET) {
        for file in &set.file {
            for service in &file.service {
                let name = format!("{}.{}", file.package(), service.name());
                for method in &service.method {
                    add(&name, method.name());
                }
            }
        }
    }
    add("grpc.health.v1.Health", "Check");
    add("grpc.health.v1.Health", "Watch");
    add(
        "grpc.reflection.v1.ServerReflection",
        "ServerReflectionInfo",
    );
    add(
        "grpc.reflection.v1alpha.ServerReflection",
        "ServerReflectionInfo",
    );
    methods
});

fn labels_of(path: &str) -> (&'static str, &'static str) {
    METHODS.get(path).copied().unwrap_or((OTHER, OTHER))
}

/// The name of a gRPC status code, as a label.
fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The `grpc-status` of a header map, if it has one.
fn status_in(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// The layer that counts calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallMetrics;

impl<S> tower::Layer<S> for CallMetrics {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted { inner }
    }
}

/// A service behind [`CallMetrics`].
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<Body>> for Counted<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let (service, method) = labels_of(request.uri().path());
        let call = CallInProgress::start(DOOR);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            if let Some(code) = status_in(response.headers()) {
                call.finish(service, method, code_label(code));
                return Ok(response);
            }
            Ok(response.map(|body| {
                Body::new(Observed {
                    body,
                    call: Some((call, service, method)),
                })
            }))
        })
    }
}

/// An answer's body, watched for the trailers that carry its status.
struct Observed {
    body: Body,
    call: Option<(CallInProgress, &'static str, &'static str)>,
}

impl Observed {
    fn finish(&mut self, code: Code) {
        if let Some((call, service, method)) = self.call.take() {
            call.finish(service, method, code_label(code));
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_in) {
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(Code::Internal),
            Poll::Ready(None) => self.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_become_labels() {
        assert_eq!(
            labels_of("/carepath.precert.v1.PrecertService/Submit"),
            ("carepath.precert.v1.PrecertService", "Submit")
        );
        assert_eq!(
            labels_of("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(
            labels_of("/carepath.precert.v1.PrecertService/Nope"),
            (OTHER, OTHER)
        );
        assert_eq!(labels_of("/x/y"), (OTHER, OTHER));
    }
}
