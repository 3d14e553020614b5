//! The one place where errors become gRPC statuses.
//!
//! Handlers return [`ApiError`]; field problems become INVALID_ARGUMENT with a
//! `google.rpc.BadRequest` naming each field, and internal causes are logged with the
//! request id and replaced by a generic message, so nothing internal reaches a caller.

use carepath_core::Invalid;
use carepath_store::StoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::AuthError;

/// Every way a call can fail, as seen by the caller.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(Invalid),
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} {id} already exists")]
    AlreadyExists { kind: &'static str, id: String },
    /// An illegal state transition or a rule of the workflow that forbids the call now.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(#[from] AuthError),
    #[error("{0}")]
    ResourceExhausted(String),
    /// Anything else: logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// One invalid field.
    pub fn field(field: &str, description: impl Into<String>) -> Self {
        ApiError::Invalid(Invalid::field(field, description))
    }

    /// A caller who may not see or do this.
    pub fn denied(what: impl Into<String>) -> Self {
        ApiError::PermissionDenied(what.into())
    }

    /// Hides whether a record exists from a caller not entitled to it.
    pub fn hidden(kind: &'static str, id: impl Into<String>) -> Self {
        ApiError::NotFound {
            kind,
            id: id.into(),
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(value: Invalid) -> Self {
        ApiError::Invalid(value)
    }
}

impl From<StoreError> for ApiError {
    fn from(value: StoreError) -> Self {
        match value {
            StoreError::NotFound { kind, id } => ApiError::NotFound { kind, id },
            StoreError::Conflict { kind, id } => ApiError::AlreadyExists { kind, id },
            StoreError::MissingReference { kind, id } => {
                ApiError::FailedPrecondition(format!("{kind} {id} does not exist"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::Invalid(invalid) => {
                let mut details = ErrorDetails::new();
                for v in &invalid.violations {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
                Status::with_error_details(Code::InvalidArgument, invalid.to_string(), details)
            }
            ApiError::NotFound { .. } => Status::not_found(err.to_string()),
            ApiError::AlreadyExists { .. } => Status::already_exists(err.to_string()),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::Unauthenticated(e) => Status::unauthenticated(e.to_string()),
            ApiError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                Status::internal(
                    "internal error; the server log has the details under this call's request id",
                )
            }
        }
    }
}

/// The result type of every handler body.
pub type ApiResult<T> = Result<T, ApiError>;

/// Runs a handler body and converts its outcome for tonic: the single exit through
/// which every answer and every error leaves a service.
pub async fn respond<T>(
    body: impl Future<Output = ApiResult<T>>,
) -> Result<tonic::Response<T>, Status> {
    body.await.map(tonic::Response::new).map_err(Status::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_input_names_each_field_in_bad_request_details() {
        let mut invalid = Invalid::new();
        invalid.push("member.id", "must not be empty");
        invalid.push("provider.npi", "check digit does not match");
        let status: Status = ApiError::Invalid(invalid).into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status
            .get_details_bad_request()
            .expect("bad request details");
        let fields: Vec<_> = details
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["member.id", "provider.npi"]);
    }

    #[test]
    fn internal_causes_are_not_sent() {
        let status: Status = ApiError::Internal("password=hunter2 at db host".into()).into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("hunter2"));
    }

    #[test]
    fn store_errors_map_to_their_codes() {
        let nf: Status = ApiError::from(StoreError::NotFound {
            kind: "member",
            id: "M1".into(),
        })
        .into();
        assert_eq!(nf.code(), Code::NotFound);
        let conflict: Status = ApiError::from(StoreError::Conflict {
            kind: "case",
            id: "x".into(),
        })
        .into();
        assert_eq!(conflict.code(), Code::AlreadyExists);
    }
}
