//! What every handler needs: the shared application state, who is calling, and the
//! audit trail of member data access.

use std::sync::Arc;

use carepath_app::auth::Authenticator;
pub use carepath_app::{App, Caller, page_in_memory, page_size};
use carepath_core::{Actor, Clock};
use tonic::Request;

use crate::{error::ApiError, overload::CallerLimiter};

/// The full gRPC method of the current call, put in the request extensions by the
/// server's request layer.
#[derive(Debug, Clone)]
pub struct RpcMethod(pub String);

/// The caller of a request: the actor the authentication interceptor put in its
/// extensions, calling through the gRPC method the request layer recorded.
pub fn caller_of<T>(request: &Request<T>) -> Result<Caller, ApiError> {
    let actor = request
        .extensions()
        .get::<Actor>()
        .cloned()
        .ok_or(ApiError::Unauthenticated(
            carepath_app::auth::AuthError::Missing,
        ))?;
    let rpc = request
        .extensions()
        .get::<RpcMethod>()
        .map(|m| m.0.clone())
        .unwrap_or_default();
    Ok(Caller::new(actor, rpc))
}

/// The authentication interceptor: every call of a wrapped service must carry a valid
/// bearer token; the actor it names is put in the request extensions. With a caller
/// limiter, each authenticated call is also taken from its caller's token bucket.
#[derive(Debug, Clone)]
pub struct Authenticate {
    auth: Arc<Authenticator>,
    clock: Arc<dyn Clock>,
    callers: Option<Arc<CallerLimiter>>,
}

impl Authenticate {
    pub fn new(app: &App, callers: Option<Arc<CallerLimiter>>) -> Self {
        Authenticate {
            auth: app.auth.clone(),
            clock: app.clock.clone(),
            callers,
        }
    }
}

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        match self.auth.authenticate(header, self.clock.now()) {
            Ok(actor) => {
                tracing::debug!(role = actor.role.as_str(), "authenticated");
                if let Some(callers) = &self.callers {
                    callers.check(&actor).inspect_err(|_| {
                        tracing::debug!(
                            role = actor.role.as_str(),
                            "call refused: caller over its rate limit"
                        );
                    })?;
                }
                request.extensions_mut().insert(actor);
                Ok(request)
            }
            Err(e) => {
                tracing::info!(reason = %e, "unauthenticated call refused");
                Err(crate::error::status_of(ApiError::Unauthenticated(e)))
            }
        }
    }
}
