//! Domain events for other services: every event of the outbox published as a
//! CloudEvents 1.0 JSON message (structured mode) on NATS JetStream.
//!
//! `catalogue` says what each kind's `data` keeps (ids and codes, never names,
//! addresses, dates of birth or free text) and yields its JSON Schema; this module
//! builds the envelope and the subject, purely; `relay` is the outbox consumer that
//! publishes.

pub mod catalogue;
pub mod relay;

use carepath_core::DomainEvent;
use serde_json::{Value, json};

/// Longest subject prefix accepted (the kinds add at most about sixty characters).
pub const MAX_PREFIX: usize = 64;

/// The subject an event of `kind` is published on: `<prefix>.<kind>`, e.g.
/// `carepath.precert.case.approved`.
pub fn subject(prefix: &str, kind: &str) -> String {
    format!("{prefix}.{kind}")
}

/// Whether `prefix` can head a subject: dot-separated tokens of letters, digits, `-`
/// and `_`, no wildcards.
pub fn valid_prefix(prefix: &str) -> bool {
    prefix.len() <= MAX_PREFIX
        && prefix.split('.').all(|token| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Whether `name` can name a JetStream stream: letters, digits, `-` and `_`, at most
/// 64 characters.
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The CloudEvents 1.0 structured-mode message of `event`: `id` is the event id (so
/// a subscriber can drop a copy), `subject` the aggregate's id, `type`
/// `carepath.<kind>`, `source` `/carepath/<area>`, and `data` the catalogue's
/// projection of the payload.
pub fn cloud_event(event: &DomainEvent) -> Value {
    let area = event.kind.split('.').next().unwrap_or_default();
    json!({
        "specversion": "1.0",
        "id": event.id,
        "source": format!("/carepath/{area}"),
        "type": format!("carepath.{}", event.kind),
        "subject": event.aggregate_id,
        "time": event.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "datacontenttype": "application/json",
        "dataschema": catalogue::schema_id(&event.kind),
        "data": catalogue::project(&event.kind, &event.payload),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use carepath_core::MemberId;

    #[test]
    fn an_event_becomes_a_cloud_event_with_its_projection() {
        let event = DomainEvent {
            id: "0190f3a4-0000-7000-8000-000000000001".into(),
            kind: "precert.case.approved".into(),
            aggregate_kind: "precert_case".into(),
            aggregate_id: "PC-1".into(),
            member_id: Some(MemberId::parse("M100001").unwrap()),
            occurred_at: chrono::DateTime::parse_from_rfc3339("2026-11-25T15:00:00Z")
                .unwrap()
                .to_utc(),
            payload: json!({ "case_id": "PC-1", "note": "free text" }),
        };
        assert_eq!(
            cloud_event(&event),
            json!({
                "specversion": "1.0",
                "id": "0190f3a4-0000-7000-8000-000000000001",
                "source": "/carepath/precert",
                "type": "carepath.precert.case.approved",
                "subject": "PC-1",
                "time": "2026-11-25T15:00:00.000000Z",
                "datacontenttype": "application/json",
                "dataschema": "urn:carepath:events:v1:precert.case.approved",
                "data": { "case_id": "PC-1" },
            })
        );
        assert_eq!(
            subject("carepath", &event.kind),
            "carepath.precert.case.approved"
        );
    }

    #[test]
    fn prefixes_and_stream_names_are_checked() {
        assert!(valid_prefix("carepath"));
        assert!(valid_prefix("test-1.carepath"));
        for bad in ["", "a..b", "a.*", "a.>", "a b", ".a"] {
            assert!(!valid_prefix(bad), "{bad}");
        }
        assert!(valid_stream_name("CAREPATH_EVENTS"));
        for bad in ["", "A.B", "A B", "A*"] {
            assert!(!valid_stream_name(bad), "{bad}");
        }
    }
}
