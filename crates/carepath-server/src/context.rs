//! What every handler needs: the shared application state, who is calling, and the
//! audit trail of member data access.

pub use carepath_app::{App, Caller, page_in_memory, page_size};
use carepath_core::Actor;
use tonic::Request;

use crate::error::ApiError;

/// The full gRPC method of the current call, put in the request extensions by the
/// server's request layer.
#[derive(Debug, Clone)]
pub struct RpcMethod(pub String);

/// The caller of a request: the actor authentication ([`crate::overload::Admission`])
/// put in its extensions, calling through the gRPC method the request layer recorded.
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
