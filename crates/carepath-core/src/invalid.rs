//! Field-level validation errors shared by every service.
//!
//! Services collect every problem with a request before answering, so a caller fixes
//! them all in one round trip; the gRPC edge turns an [`Invalid`] into
//! `INVALID_ARGUMENT` with one field violation per entry.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One problem with one input field.
///
/// `field` is a path into the request (`lines[2].code`, `address.city`) so a client can
/// put the message next to the control that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// Every problem found with an input, in the order they were found.
///
/// An empty `Invalid` means "nothing wrong"; [`Invalid::into_result`] turns it into a
/// `Result` once collection is done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Default)]
#[error("invalid input: {}", DisplayViolations(&self.violations))]
pub struct Invalid {
    pub violations: Vec<FieldViolation>,
}

struct DisplayViolations<'a>(&'a [FieldViolation]);

impl fmt::Display for DisplayViolations<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field, v.description)?;
        }
        Ok(())
    }
}

impl Invalid {
    /// An empty collector, to push violations into while checking a request.
    pub fn new() -> Self {
        Self::default()
    }

    /// A single violation, for the common case of one bad field.
    pub fn field(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut invalid = Self::new();
        invalid.push(field, description);
        invalid
    }

    /// Records one more violation.
    pub fn push(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.violations.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// True when nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// Ends collection: `Ok(())` when nothing was recorded, else `Err(self)`.
    pub fn into_result(self) -> Result<(), Invalid> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// Parses with `r`, recording a violation under `field` on failure.
    ///
    /// Returns the parsed value so the caller can keep going and collect the remaining
    /// violations before giving up.
    pub fn check<T, E: fmt::Display>(&mut self, field: &str, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(value) => Some(value),
            Err(e) => {
                self.push(field, e.to_string());
                None
            }
        }
    }

    /// Prefixes every field, so a nested validator's `code` becomes `lines[2].code`.
    ///
    /// An empty field becomes the prefix itself; a field starting with `[` is appended
    /// without a dot (`lines` + `[2]` is `lines[2]`).
    pub fn nest(mut self, prefix: &str) -> Self {
        if prefix.is_empty() {
            return self;
        }
        for v in &mut self.violations {
            v.field = if v.field.is_empty() {
                prefix.to_owned()
            } else if v.field.starts_with('[') {
                format!("{prefix}{}", v.field)
            } else {
                format!("{prefix}.{}", v.field)
            };
        }
        self
    }

    /// Moves fields under `from` to `to` (`lines[0].date_of_service` becomes
    /// `line.date_of_service`), for a request that names a part differently from the
    /// command it becomes.
    pub fn rename_prefix(mut self, from: &str, to: &str) -> Self {
        for v in &mut self.violations {
            if let Some(rest) = v.field.strip_prefix(from)
                && (rest.is_empty() || rest.starts_with(['.', '[']))
            {
                v.field = format!("{to}{rest}");
            }
        }
        self
    }

    /// Appends another collector's violations, e.g. from a nested validator.
    pub fn extend(&mut self, other: Invalid) {
        self.violations.extend(other.violations);
    }
}

impl From<FieldViolation> for Invalid {
    fn from(v: FieldViolation) -> Self {
        Self {
            violations: vec![v],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_lists_every_violation() {
        let mut invalid = Invalid::field("npi", "npi must be 10 digits");
        invalid.push("first_name", "must not be empty");
        assert_eq!(
            invalid.to_string(),
            "invalid input: npi: npi must be 10 digits; first_name: must not be empty"
        );
    }

    #[test]
    fn into_result_is_ok_only_when_empty() {
        assert_eq!(Invalid::new().into_result(), Ok(()));
        assert!(Invalid::field("a", "b").into_result().is_err());
    }

    #[test]
    fn check_records_failures_and_returns_successes() {
        let mut invalid = Invalid::new();
        assert_eq!(invalid.check("a", "12".parse::<u8>()), Some(12));
        assert_eq!(invalid.check("b", "x".parse::<u8>()), None);
        assert_eq!(invalid.violations.len(), 1);
        assert_eq!(invalid.violations[0].field, "b");
    }

    #[test]
    fn nest_prefixes_fields() {
        let mut inner = Invalid::field("code", "bad");
        inner.push("", "whole line is bad");
        inner.push("[0]", "first is bad");
        let nested = inner.nest("lines[2]");
        let fields: Vec<_> = nested.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["lines[2].code", "lines[2]", "lines[2][0]"]);

        let mut outer = Invalid::field("member_id", "unknown");
        outer.extend(nested.nest("request"));
        assert_eq!(outer.violations.len(), 4);
        assert_eq!(outer.violations[1].field, "request.lines[2].code");
    }
}
