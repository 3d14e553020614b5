//! The one error type of every use case.
//!
//! Each door turns an [`AppError`] into its own answer (a gRPC status, an HTTP status
//! with an OperationOutcome); the variants say what happened in the caller's terms, so
//! no door has to look inside a cause. Internal causes are for the log, never for the
//! caller.

use carepath_core::Invalid;
use carepath_store::StoreError;

use crate::auth::AuthError;

/// Every way a use case can fail, as seen by the caller.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad input, each problem under the field path the caller sent.
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

impl AppError {
    /// One invalid field.
    pub fn field(field: &str, description: impl Into<String>) -> Self {
        AppError::Invalid(Invalid::field(field, description))
    }

    /// A caller who may not see or do this.
    pub fn denied(what: impl Into<String>) -> Self {
        AppError::PermissionDenied(what.into())
    }

    /// Hides whether a record exists from a caller not entitled to it.
    pub fn hidden(kind: &'static str, id: impl Into<String>) -> Self {
        AppError::NotFound {
            kind,
            id: id.into(),
        }
    }
}

impl From<Invalid> for AppError {
    fn from(value: Invalid) -> Self {
        AppError::Invalid(value)
    }
}

impl From<StoreError> for AppError {
    fn from(value: StoreError) -> Self {
        match value {
            StoreError::NotFound { kind, id } => AppError::NotFound { kind, id },
            StoreError::Conflict { kind, id } => AppError::AlreadyExists { kind, id },
            StoreError::MissingReference { kind, id } => {
                AppError::FailedPrecondition(format!("{kind} {id} does not exist"))
            }
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl From<carepath_precert::WorkflowError> for AppError {
    fn from(e: carepath_precert::WorkflowError) -> Self {
        use carepath_precert::{DetermineError, ErrorCode, WorkflowError};
        match e {
            WorkflowError::Invalid(invalid) => AppError::Invalid(invalid),
            WorkflowError::Determine(DetermineError::Invalid(invalid)) => {
                AppError::Invalid(invalid)
            }
            other => match other.code() {
                ErrorCode::PermissionDenied => AppError::PermissionDenied(other.to_string()),
                ErrorCode::InvalidArgument => AppError::field("request", other.to_string()),
                ErrorCode::FailedPrecondition => AppError::FailedPrecondition(other.to_string()),
            },
        }
    }
}

impl From<carepath_cases::CaseError> for AppError {
    fn from(e: carepath_cases::CaseError) -> Self {
        use carepath_cases::CaseError;
        match e {
            CaseError::Invalid(invalid) => AppError::Invalid(invalid),
            CaseError::PermissionDenied { .. } => AppError::PermissionDenied(e.to_string()),
            CaseError::IllegalTransition { .. } => AppError::FailedPrecondition(e.to_string()),
        }
    }
}

impl From<carepath_secondopinion::WorkflowError> for AppError {
    fn from(e: carepath_secondopinion::WorkflowError) -> Self {
        use carepath_secondopinion::WorkflowError;
        match e {
            WorkflowError::Invalid(invalid) => AppError::Invalid(invalid),
            WorkflowError::NotAllowed(m) => AppError::PermissionDenied(m),
            other @ (WorkflowError::WrongState { .. } | WorkflowError::Rule(_)) => {
                AppError::FailedPrecondition(other.to_string())
            }
        }
    }
}

/// The result type of every use case.
pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_keep_their_meaning() {
        let nf = AppError::from(StoreError::NotFound {
            kind: "member",
            id: "M1".into(),
        });
        assert!(matches!(nf, AppError::NotFound { kind: "member", .. }));
        let conflict = AppError::from(StoreError::Conflict {
            kind: "case",
            id: "x".into(),
        });
        assert!(matches!(
            conflict,
            AppError::AlreadyExists { kind: "case", .. }
        ));
    }
}
