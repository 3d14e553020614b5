//! Repeated refusals, aggregated: the first refusal of a caller, call and record in a
//! minute is written at once, like any access; the identical refusals that follow in
//! that minute are counted in memory and written as one entry with their count
//! (`repeats`) once the minute is over. A caller hammering a record it may not see
//! then adds two entries a minute, not thousands, and a search for the member still
//! finds every attempt.
//!
//! Counts not yet written are lost if the process dies; the first refusal of each
//! minute never is. At most [`MAX_TRACKED`] keys are held: past that, refusals are
//! written one by one again.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use carepath_store::AuditEntry;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::App;

/// Most (caller, call, record, minute) keys counted at once.
pub const MAX_TRACKED: usize = 10_000;

/// How often counted repeats of past minutes are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    subject: String,
    role: String,
    rpc: String,
    record_kind: String,
    record_id: String,
    member_id: Option<String>,
    minute: i64,
}

impl Key {
    fn of(entry: &AuditEntry, at: DateTime<Utc>) -> Self {
        Key {
            subject: entry.subject.clone(),
            role: entry.role.clone(),
            rpc: entry.rpc.clone(),
            record_kind: entry.record_kind.clone(),
            record_id: entry.record_id.clone(),
            member_id: entry.member_id.clone(),
            minute: at.timestamp().div_euclid(60),
        }
    }
}

/// The refusals of the current minutes: for each key, the entry and its repeats.
#[derive(Debug, Default)]
pub struct RefusalTally {
    keys: Mutex<HashMap<Key, (AuditEntry, u32)>>,
}

impl RefusalTally {
    /// Whether the refusal `entry` at `at` must be written now: the first of its key in
    /// its minute, or any refusal when [`MAX_TRACKED`] keys are held. Otherwise it is
    /// counted, to be written by [`RefusalTally::take_due`].
    pub fn first_of_minute(&self, entry: &AuditEntry, at: DateTime<Utc>) -> bool {
        let key = Key::of(entry, at);
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, repeats)) = keys.get_mut(&key) {
            *repeats = repeats.saturating_add(1);
            return false;
        }
        if keys.len() < MAX_TRACKED {
            keys.insert(key, (entry.clone(), 0));
        }
        true
    }

    /// Removes the keys of minutes before `now`'s (every key with `all`) and returns
    /// the entries to write for those with repeats, each carrying its count.
    pub fn take_due(&self, now: DateTime<Utc>, all: bool) -> Vec<AuditEntry> {
        let minute = now.timestamp().div_euclid(60);
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let due: Vec<Key> = keys
            .keys()
            .filter(|k| all || k.minute < minute)
            .cloned()
            .collect();
        due.into_iter()
            .filter_map(|k| keys.remove(&k))
            .filter(|(_, repeats)| *repeats > 0)
            .map(|(entry, repeats)| AuditEntry { repeats, ..entry })
            .collect()
    }

    /// How many keys are held.
    pub fn tracked(&self) -> usize {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Writes counted repeats every [`FLUSH_EVERY`], and all of them when `stop` is
/// cancelled.
pub async fn run_flush(app: App, stop: CancellationToken) {
    loop {
        let last = tokio::select! {
            () = stop.cancelled() => true,
            () = tokio::time::sleep(FLUSH_EVERY) => false,
        };
        if let Err(e) = app.flush_refusals(last).await {
            tracing::warn!(error = %e, "repeated refusals not written yet; retrying");
        }
        if last {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use carepath_store::AuditOutcome;

    use super::*;

    fn entry(record: &str) -> AuditEntry {
        AuditEntry {
            subject: "M100002".into(),
            role: "member".into(),
            rpc: "/carepath.precert.v1.PrecertService/GetCase".into(),
            record_kind: "precert_case".into(),
            record_id: record.into(),
            member_id: None,
            outcome: AuditOutcome::Denied,
            repeats: 0,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_first_refusal_of_a_minute_is_written_and_the_rest_counted() {
        let tally = RefusalTally::default();
        assert!(tally.first_of_minute(&entry("PA-1"), at("2026-12-07T10:31:05Z")));
        for _ in 0..999 {
            assert!(!tally.first_of_minute(&entry("PA-1"), at("2026-12-07T10:31:30Z")));
        }
        // Another record, and the next minute, are written at once.
        assert!(tally.first_of_minute(&entry("PA-2"), at("2026-12-07T10:31:31Z")));
        assert!(tally.first_of_minute(&entry("PA-1"), at("2026-12-07T10:32:00Z")));
        // Nothing is due within the minute; after it, one entry with the count.
        assert!(tally.take_due(at("2026-12-07T10:31:59Z"), false).is_empty());
        let due = tally.take_due(at("2026-12-07T10:32:10Z"), false);
        assert_eq!(due.len(), 1, "PA-2 had no repeats");
        assert_eq!(due[0].record_id, "PA-1");
        assert_eq!(due[0].repeats, 999);
        assert_eq!(tally.tracked(), 1, "10:32's key stays");
        assert!(tally.take_due(at("2026-12-07T10:32:10Z"), true).is_empty());
        assert_eq!(tally.tracked(), 0);
    }

    #[test]
    fn past_the_bound_every_refusal_is_written() {
        let tally = RefusalTally::default();
        let now = at("2026-12-07T10:31:05Z");
        for i in 0..MAX_TRACKED {
            assert!(tally.first_of_minute(&entry(&format!("PA-{i}")), now));
        }
        assert!(tally.first_of_minute(&entry("PA-new"), now));
        assert!(tally.first_of_minute(&entry("PA-new"), now), "not tracked");
        assert_eq!(tally.tracked(), MAX_TRACKED);
    }
}
