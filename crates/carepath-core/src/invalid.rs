//! Field-level validation errors shared by every service.
//!
//! Services collect every problem with a request before answering, so a caller fixes
//! them all in one round trip; the gRPC edge turns an [`Invalid`] into
//! `INVALID_ARGUMENT` with one field violation per entry.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Most violations one answer lists; past it one more entry says there were more, so
/// a request with a million bad fields gets a short answer.
pub const MAX_VIOLATIONS: usize = 100;
/// Longest field path kept, in characters (a path can carry a key the caller sent).
pub const MAX_FIELD_PATH: usize = 200;
/// Longest description kept, in characters (a description can echo the value sent).
pub const MAX_DESCRIPTION: usize = 500;

/// `text` cut to at most `max` characters, marked with an ellipsis when cut.
pub fn clip(text: String, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((end, _)) if text.chars().count() > max => format!("{}…", &text[..end]),
        _ => text,
    }
}

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

    /// Records one more violation. Field and description are cut to
    /// [`MAX_FIELD_PATH`] and [`MAX_DESCRIPTION`] characters (an echoed value can be
    /// megabytes long); past [`MAX_VIOLATIONS`] one entry says there were more and the
    /// rest are dropped.
    pub fn push(&mut self, field: impl Into<String>, description: impl Into<String>) {
        match self.violations.len() {
            n if n < MAX_VIOLATIONS => self.violations.push(FieldViolation {
                field: clip(field.into(), MAX_FIELD_PATH),
                description: clip(description.into(), MAX_DESCRIPTION),
            }),
            MAX_VIOLATIONS => self.violations.push(FieldViolation {
                field: String::new(),
                description: format!(
                    "more than {MAX_VIOLATIONS} problems were found; fix these and send the request again"
                ),
            }),
            _ => {}
        }
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
            let field = if v.field.is_empty() {
                prefix.to_owned()
            } else if v.field.starts_with('[') {
                format!("{prefix}{}", v.field)
            } else {
                format!("{prefix}.{}", v.field)
            };
            v.field = clip(field, MAX_FIELD_PATH);
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

    /// Appends another collector's violations, e.g. from a nested validator, within
    /// the same bound as [`Invalid::push`].
    pub fn extend(&mut self, other: Invalid) {
        for v in other.violations {
            if self.violations.len() > MAX_VIOLATIONS {
                break;
            }
            self.push(v.field, v.description);
        }
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
    fn echoed_input_is_cut_and_the_list_is_bounded() {
        let huge = "x".repeat(5_000_000);
        let mut invalid = Invalid::new();
        invalid.push(format!("answers[{huge}]"), format!("{huge} is not a code"));
        let v = &invalid.violations[0];
        assert_eq!(v.field.chars().count(), MAX_FIELD_PATH);
        assert!(v.field.ends_with('…') && v.field.starts_with("answers["));
        assert_eq!(v.description.chars().count(), MAX_DESCRIPTION);
        // Multi-byte text is cut on a character boundary.
        let cut = clip("é".repeat(10), 4);
        assert_eq!(cut, "ééé…");
        assert_eq!(clip("short".into(), 10), "short");

        let mut many = Invalid::new();
        for i in 0..10_000 {
            many.push(format!("lines[{i}].code"), "bad");
        }
        assert_eq!(many.violations.len(), MAX_VIOLATIONS + 1);
        assert!(
            many.violations[MAX_VIOLATIONS]
                .description
                .contains("more than 100")
        );
        let mut outer = Invalid::new();
        outer.extend(many);
        assert_eq!(outer.violations.len(), MAX_VIOLATIONS + 1);
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
