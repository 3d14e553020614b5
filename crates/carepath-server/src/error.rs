//! The one place where errors become gRPC statuses.
//!
//! Handlers return [`ApiError`]; field problems become INVALID_ARGUMENT with a
//! `google.rpc.BadRequest` naming each field, and internal causes are logged with the
//! request id and replaced by a generic message, so nothing internal reaches a caller.

pub use carepath_app::{AppError as ApiError, AppResult as ApiResult};
use carepath_core::clip;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Longest status message sent, in characters: a message can echo what the caller
/// sent, and it travels in a header. Field details (`BadRequest`) carry every
/// violation, each already bounded.
pub const MAX_STATUS_MESSAGE: usize = 1_000;

/// The gRPC status of an application error: the one mapping every answer leaves
/// through. (A function, not `From`: both types belong to other crates.)
pub fn status_of(err: ApiError) -> Status {
    let message = |m: String| clip(m, MAX_STATUS_MESSAGE);
    match err {
        ApiError::Invalid(invalid) => {
            let mut details = ErrorDetails::new();
            for v in &invalid.violations {
                details.add_bad_request_violation(v.field.clone(), v.description.clone());
            }
            Status::with_error_details(Code::InvalidArgument, message(invalid.to_string()), details)
        }
        ApiError::NotFound { .. } => Status::not_found(message(err.to_string())),
        ApiError::AlreadyExists { .. } => Status::already_exists(message(err.to_string())),
        ApiError::FailedPrecondition(m) => Status::failed_precondition(message(m)),
        ApiError::PermissionDenied(m) => Status::permission_denied(message(m)),
        ApiError::Unauthenticated(e) => Status::unauthenticated(message(e.to_string())),
        ApiError::ResourceExhausted(m) => Status::resource_exhausted(message(m)),
        ApiError::Internal(cause) => {
            tracing::error!(%cause, "internal error");
            Status::internal(
                "internal error; the server log has the details under this call's request id",
            )
        }
    }
}

/// Runs a handler body and converts its outcome for tonic: the single exit through
/// which every answer and every error leaves a service.
pub async fn respond<T>(
    body: impl Future<Output = ApiResult<T>>,
) -> Result<tonic::Response<T>, Status> {
    body.await.map(tonic::Response::new).map_err(status_of)
}

#[cfg(test)]
mod tests {
    use carepath_core::Invalid;
    use carepath_store::StoreError;

    use super::*;

    #[test]
    fn invalid_input_names_each_field_in_bad_request_details() {
        let mut invalid = Invalid::new();
        invalid.push("member.id", "must not be empty");
        invalid.push("provider.npi", "check digit does not match");
        let status = status_of(ApiError::Invalid(invalid));
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
    fn messages_echoing_input_are_cut() {
        let huge = "9".repeat(3_000_000);
        let status = status_of(ApiError::NotFound {
            kind: "member",
            id: huge.clone(),
        });
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().chars().count() <= MAX_STATUS_MESSAGE);
        let status = status_of(ApiError::FailedPrecondition(huge));
        assert!(status.message().chars().count() <= MAX_STATUS_MESSAGE);
    }

    #[test]
    fn internal_causes_are_not_sent() {
        let status = status_of(ApiError::Internal("password=hunter2 at db host".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("hunter2"));
    }

    #[test]
    fn store_errors_map_to_their_codes() {
        let nf = status_of(ApiError::from(StoreError::NotFound {
            kind: "member",
            id: "M1".into(),
        }));
        assert_eq!(nf.code(), Code::NotFound);
        let conflict = status_of(ApiError::from(StoreError::Conflict {
            kind: "case",
            id: "x".into(),
        }));
        assert_eq!(conflict.code(), Code::AlreadyExists);
    }
}
