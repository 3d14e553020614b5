//! Errors as FHIR answers: an HTTP status and an OperationOutcome whose issues name
//! the element at fault.

use carepath_app::AppError;
use std::time::Duration;

use carepath_core::Invalid;
use http::StatusCode;
use serde_json::{Value, json};

use crate::pas::FieldMap;

/// An error answer: the status and the OperationOutcome to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The HTTP status.
    pub status: StatusCode,
    /// The OperationOutcome.
    pub outcome: Value,
    /// When to come back, for a refusal that passes (a rate limit).
    pub retry_after: Option<Duration>,
}

/// An OperationOutcome with one issue per `(code, diagnostics, expression)`.
pub fn operation_outcome<'a>(
    issues: impl IntoIterator<Item = (&'a str, String, Option<String>)>,
) -> Value {
    let issue: Vec<Value> = issues
        .into_iter()
        .map(|(code, diagnostics, expression)| {
            let mut issue = json!({"severity": "error", "code": code, "diagnostics": diagnostics});
            if let Some(expression) = expression {
                issue["expression"] = json!([expression]);
            }
            issue
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": issue})
}

impl Failure {
    /// One issue with no element.
    pub fn new(status: StatusCode, code: &str, diagnostics: impl Into<String>) -> Self {
        Failure {
            status,
            outcome: operation_outcome([(code, diagnostics.into(), None)]),
            retry_after: None,
        }
    }

    /// 429: over a rate limit; come back after `wait`.
    pub fn throttled(wait: Duration, why: &str) -> Self {
        Failure {
            retry_after: Some(wait),
            ..Failure::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                format!("{why}; retry in {} ms", wait.as_millis().max(1)),
            )
        }
    }

    /// Bad input read from FHIR, each problem under the element named in it.
    pub fn invalid(status: StatusCode, invalid: &Invalid) -> Self {
        Failure {
            status,
            outcome: operation_outcome(invalid.violations.iter().map(|v| {
                (
                    "invalid",
                    format!("{}: {}", v.field, v.description),
                    Some(v.field.clone()),
                )
            })),
            retry_after: None,
        }
    }

    /// An application error; `fields` names the FHIR element of each of the
    /// application's field names.
    pub fn of_app(error: &AppError, fields: &FieldMap) -> Self {
        match error {
            AppError::Invalid(invalid) => Failure {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                outcome: operation_outcome(invalid.violations.iter().map(|v| {
                    let expression = fields.expression(&v.field);
                    (
                        "invalid",
                        format!("{expression}: {}", v.description),
                        Some(expression),
                    )
                })),
                retry_after: None,
            },
            AppError::NotFound { kind, id } => Failure::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("{kind} {id} not found"),
            ),
            AppError::AlreadyExists { kind, id } => Failure::new(
                StatusCode::CONFLICT,
                "duplicate",
                format!("{kind} {id} is already taken"),
            ),
            AppError::FailedPrecondition(m) => {
                Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "business-rule", m.clone())
            }
            AppError::PermissionDenied(m) => {
                Failure::new(StatusCode::FORBIDDEN, "forbidden", m.clone())
            }
            AppError::Unauthenticated(e) => {
                Failure::new(StatusCode::UNAUTHORIZED, "login", e.to_string())
            }
            AppError::ResourceExhausted(m) => {
                Failure::new(StatusCode::TOO_MANY_REQUESTS, "throttled", m.clone())
            }
            AppError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "exception",
                    "internal error; the cause is in the server's log",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_fields_become_fhir_expressions() {
        let mut fields = FieldMap::new("Claim");
        fields.insert("lines[0]", "Claim.item[0]");
        fields.insert("lines[0].service_code", "Claim.item[0].productOrService");
        fields.insert("member_id", "Patient.identifier");
        let mut invalid = Invalid::new();
        invalid.push("lines[0].service_code", "unknown code");
        invalid.push("lines[0].units", "too many");
        invalid.push("member_id", "no member with this id");
        invalid.push("something_else", "odd");
        let failure = Failure::of_app(&AppError::Invalid(invalid), &fields);
        assert_eq!(failure.status, StatusCode::UNPROCESSABLE_ENTITY);
        let expressions: Vec<&str> = failure.outcome["issue"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["expression"][0].as_str().unwrap())
            .collect();
        assert_eq!(
            expressions,
            [
                "Claim.item[0].productOrService",
                "Claim.item[0]",
                "Patient.identifier",
                "Claim"
            ]
        );
    }

    #[test]
    fn hidden_records_are_not_found_and_internal_causes_stay_in_the_log() {
        let fields = FieldMap::new("Claim");
        let nf = Failure::of_app(&AppError::hidden("case", "PA-1"), &fields);
        assert_eq!(nf.status, StatusCode::NOT_FOUND);
        assert_eq!(nf.outcome["issue"][0]["code"], "not-found");
        let internal = Failure::of_app(&AppError::Internal("disk on fire".into()), &fields);
        assert!(!internal.outcome.to_string().contains("disk"));
    }
}
