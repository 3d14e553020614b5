//! Domain events: facts services record, which the storage layer writes to the
//! transactional outbox in the same transaction as the change they describe.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codes::MemberId;

/// An event a domain command produced, before storage gives it its id. Every area's
/// commands return these; the application layer writes them to the outbox in the
/// transaction of the change.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    /// Dotted event name, e.g. `precert.case.approved`.
    pub kind: &'static str,
    /// The kind of thing that changed, e.g. `precert_case`.
    pub aggregate_kind: &'static str,
    pub aggregate_id: String,
    pub member_id: MemberId,
    pub occurred_at: DateTime<Utc>,
    pub payload: serde_json::Value,
}

impl EventDraft {
    /// The finished event, with the id storage generated.
    pub fn into_event(self, id: impl Into<String>) -> DomainEvent {
        DomainEvent {
            id: id.into(),
            kind: self.kind.to_owned(),
            aggregate_kind: self.aggregate_kind.to_owned(),
            aggregate_id: self.aggregate_id,
            member_id: Some(self.member_id),
            occurred_at: self.occurred_at,
            payload: self.payload,
        }
    }
}

/// Something that happened to an aggregate, for consumers outside the service that
/// made it happen (notifications, reporting, audit).
///
/// Events are facts and are never edited; consumers use `id` to process each one once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEvent {
    /// Unique event id, supplied by the caller (storage generates UUIDv7 strings, so
    /// ids sort by creation time).
    pub id: String,
    /// Dotted event name, e.g. `precert.case.approved` or `directory.member.upserted`.
    pub kind: String,
    /// The kind of thing that changed, e.g. `precert_case` or `member`.
    pub aggregate_kind: String,
    pub aggregate_id: String,
    /// The member the event concerns, so a member's history and data-access requests
    /// can find every event about them.
    pub member_id: Option<MemberId>,
    pub occurred_at: DateTime<Utc>,
    /// Event-specific detail, as defined by the event kind.
    pub payload: serde_json::Value,
}

/// Ties a payload type to its event name, so the name is written in one place.
pub trait EventKind {
    const KIND: &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_json() {
        let event = DomainEvent {
            id: "0190f3a4-0000-7000-8000-000000000001".into(),
            kind: "precert.case.approved".into(),
            aggregate_kind: "precert_case".into(),
            aggregate_id: "PC-1".into(),
            member_id: Some(MemberId::parse("M100001").unwrap()),
            occurred_at: DateTime::parse_from_rfc3339("2026-11-25T15:00:00Z")
                .unwrap()
                .to_utc(),
            payload: serde_json::json!({ "decision": "approved" }),
        };
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains("\"member_id\":\"M100001\""), "{json}");
        let back: DomainEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
    }
}
