//! The transactional outbox: domain events written with the change they describe, and
//! delivered at least once to every subscribed consumer.
//!
//! Each consumer subscribes to event-kind prefixes. Appending an event inserts one
//! delivery row per subscribed consumer in the same transaction (a trigger of the
//! insert, `outbox_fan_out`, migration 0010), so an event that committed is never
//! missed. Consumers claim a batch of deliveries under a lease
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several processes share the work without
//! taking the same rows; SQLite has a single writer), process them, and acknowledge.
//! A delivery whose lease expires (its consumer died) is claimed again: processing
//! must be idempotent.

use carepath_core::{DomainEvent, MemberId};
use chrono::{DateTime, Utc};
use sqlx::types::Json;

use crate::{Store, StoreError, Tx, on_db, on_tx, write_alone};

/// An event handed to a consumer, with how many times it has been handed out so far.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedEvent {
    pub seq: i64,
    pub attempts: i32,
    pub event: DomainEvent,
    /// The `traceparent` of the span that appended the event, when traces were on
    /// ([`crate::trace`]): the work the event causes continues that trace.
    pub trace_context: Option<String>,
}

/// Where a delivery stands for one consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Done,
    Dead,
}

/// Delivery counts for one consumer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub pending: i64,
    pub done: i64,
    pub dead: i64,
}

pub(crate) const INSERT_EVENTS: &str = "INSERT INTO outbox_event
    (id, kind, aggregate_kind, aggregate_id, member_id, occurred_at, payload, trace_context) VALUES ";
/// Columns of one event row in [`INSERT_EVENTS`].
pub(crate) const EVENT_COLUMNS: usize = 8;
/// Most events [`Store::held_back`] looks at in one call.
pub const MAX_HELD_BACK_BATCH: usize = 256;
/// Most deliveries one acknowledging statement names.
const MAX_ACKNOWLEDGED_PER_STATEMENT: usize = 500;
/// Most events one insert statement carries.
const EVENTS_PER_INSERT: usize = 32;

/// `INSERT_EVENTS` with `rows` rows of numbered placeholders.
fn insert_events_sql(rows: usize) -> String {
    crate::values_sql(INSERT_EVENTS, EVENT_COLUMNS, rows)
}

const CLAIM_SQLITE: &str = "UPDATE outbox_delivery
    SET lease_owner = $1, lease_until = $2, attempts = attempts + 1
    WHERE consumer = $3 AND seq IN (
        SELECT seq FROM outbox_delivery
        WHERE consumer = $3 AND done_at IS NULL AND dead_at IS NULL AND available_at <= $4
          AND (lease_until IS NULL OR lease_until < $4)
        ORDER BY seq LIMIT $5)
    RETURNING seq, attempts";

/// The claim on PostgreSQL, returning the events leased in the same statement (so a
/// lease is never taken without its events read).
const CLAIM_POSTGRES: &str = "WITH leased AS (
        UPDATE outbox_delivery
        SET lease_owner = $1, lease_until = $2, attempts = attempts + 1
        WHERE consumer = $3 AND seq IN (
            SELECT seq FROM outbox_delivery
            WHERE consumer = $3 AND done_at IS NULL AND dead_at IS NULL AND available_at <= $4
              AND (lease_until IS NULL OR lease_until < $4)
            ORDER BY seq LIMIT $5
            FOR UPDATE SKIP LOCKED)
        RETURNING seq, attempts)
    SELECT l.seq, l.attempts, e.id, e.kind, e.aggregate_kind, e.aggregate_id, e.member_id,
        e.occurred_at, e.payload, e.trace_context
    FROM leased l JOIN outbox_event e ON e.seq = l.seq
    ORDER BY l.seq";

/// The claimed events, read after the claim committed, outside the writer.
const CLAIMED_EVENTS: &str = "SELECT seq, 0, id, kind, aggregate_kind, aggregate_id, member_id,
        occurred_at, payload, trace_context
    FROM outbox_event WHERE seq IN ";

type EventRow = (
    i64,
    i32,
    String,
    String,
    String,
    String,
    Option<String>,
    DateTime<Utc>,
    Json<serde_json::Value>,
    Option<String>,
);

fn event_from_row(row: EventRow) -> Result<ClaimedEvent, StoreError> {
    let (
        seq,
        attempts,
        id,
        kind,
        aggregate_kind,
        aggregate_id,
        member_id,
        occurred_at,
        payload,
        trace_context,
    ) = row;
    let member_id = member_id
        .map(|m| MemberId::parse(&m))
        .transpose()
        .map_err(|e| StoreError::Corrupt {
            kind: "outbox event",
            id: id.clone(),
            reason: e.to_string(),
        })?;
    Ok(ClaimedEvent {
        seq,
        attempts,
        event: DomainEvent {
            id,
            kind,
            aggregate_kind,
            aggregate_id,
            member_id,
            occurred_at,
            payload: payload.0,
        },
        trace_context,
    })
}

impl Tx {
    /// Records `event` in the outbox, in this transaction, for every consumer
    /// subscribed to its kind, with the current span's trace context. Returns the
    /// event's position in the outbox.
    pub async fn append_event(&mut self, event: &DomainEvent) -> Result<i64, StoreError> {
        let sql = format!("{} RETURNING seq", insert_events_sql(1));
        let member = event.member_id.as_ref().map(|m| m.as_str().to_owned());
        let trace = crate::trace::current();
        let seq: i64 = on_tx!(self, c => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(&event.id).bind(&event.kind).bind(&event.aggregate_kind)
            .bind(&event.aggregate_id).bind(member.clone()).bind(event.occurred_at)
            .bind(Json(&event.payload)).bind(trace.clone())
            .fetch_one(c).await)?;
        Ok(seq)
    }

    /// Records `events` in the outbox, in this transaction and in their order, like
    /// [`Tx::append_event`] for each, in as few statements as the batch allows. Each
    /// carries the trace context of the span current here ([`crate::trace`]).
    pub async fn append_events(&mut self, events: &[DomainEvent]) -> Result<(), StoreError> {
        let trace = crate::trace::current();
        let traced: Vec<(&DomainEvent, Option<&str>)> =
            events.iter().map(|e| (e, trace.as_deref())).collect();
        self.append_traced_events(&traced).await
    }

    /// Records events each with the trace context given beside it (the appender's
    /// batches hold the events of several calls).
    pub(crate) async fn append_traced_events(
        &mut self,
        events: &[(&DomainEvent, Option<&str>)],
    ) -> Result<(), StoreError> {
        for chunk in events.chunks(EVENTS_PER_INSERT) {
            let sql = insert_events_sql(chunk.len());
            on_tx!(self, c => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for (event, trace) in chunk {
                    let member = event.member_id.as_ref().map(|m| m.as_str().to_owned());
                    query = query
                        .bind(&event.id).bind(&event.kind).bind(&event.aggregate_kind)
                        .bind(&event.aggregate_id).bind(member).bind(event.occurred_at)
                        .bind(Json(&event.payload)).bind(*trace);
                }
                query.execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }
}

impl Store {
    /// Subscribes `consumer` to every event whose kind starts with one of `prefixes`
    /// (an empty prefix means all events), and to nothing else: prefixes it held
    /// before and no longer names are dropped, so a consumer that narrows what it
    /// wants stops receiving the rest. Idempotent; takes effect for events appended
    /// from now on (deliveries already made stay).
    pub async fn subscribe(&self, consumer: &str, prefixes: &[&str]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let held: Vec<String> = on_tx!(&mut tx, c => sqlx::query_scalar(
            "SELECT kind_prefix FROM outbox_subscription WHERE consumer = $1")
            .bind(consumer).fetch_all(c).await)?;
        for stale in held.iter().filter(|h| !prefixes.contains(&h.as_str())) {
            on_tx!(&mut tx, c => sqlx::query(
                "DELETE FROM outbox_subscription WHERE consumer = $1 AND kind_prefix = $2")
                .bind(consumer).bind(stale).execute(c).await.map(|r| r.rows_affected()))?;
        }
        for prefix in prefixes.iter().filter(|p| !held.iter().any(|h| h == *p)) {
            on_tx!(&mut tx, c => sqlx::query(
                "INSERT INTO outbox_subscription (consumer, kind_prefix) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING")
                .bind(consumer).bind(*prefix).execute(c).await.map(|r| r.rows_affected()))?;
        }
        tx.commit().await
    }

    /// Claims up to `limit` deliveries that are due for `consumer`, leased to a fresh
    /// owner until `now + lease`. Concurrent claimers never get the same delivery while
    /// its lease runs.
    pub async fn claim(
        &self,
        consumer: &str,
        limit: u32,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<(String, Vec<ClaimedEvent>), StoreError> {
        let owner = uuid::Uuid::now_v7().to_string();
        let Store::Sqlite { writer, .. } = self else {
            // One statement leases the deliveries and returns their events.
            let rows: Vec<EventRow> = on_db!(self, c => sqlx::query_as(CLAIM_POSTGRES)
                .bind(&owner).bind(now + lease).bind(consumer).bind(now).bind(i64::from(limit))
                .fetch_all(c).await)?;
            let events = rows
                .into_iter()
                .map(event_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            return Ok((owner, events));
        };
        // On SQLite the claim is one hand-off to the writer; the events (their
        // payloads are the bulk of the read) are read afterwards on a read
        // connection, so the writer is not held while they are decoded.
        let mut leased: Vec<(i64, i32)> = writer
            .write_in_one(CLAIM_SQLITE, async |c, text| {
                sqlx::query_as(sqlx::AssertSqlSafe(text))
                    .bind(&owner)
                    .bind(now + lease)
                    .bind(consumer)
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(c)
                    .await
            })
            .await?;
        if leased.is_empty() {
            return Ok((owner, Vec::new()));
        }
        leased.sort_unstable();
        let seqs: Vec<i64> = leased.iter().map(|(seq, _)| *seq).collect();
        let sql = format!("{CLAIMED_EVENTS}({}) ORDER BY seq", crate::seq_list(&seqs));
        let rows: Result<Vec<EventRow>, StoreError> = on_db!(self, c => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .fetch_all(c).await.map_err(StoreError::from));
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                // Give the leases back, so the events are not held until the lease
                // runs out; if that fails too, the lease's end frees them.
                let _ = self.give_back(consumer, &owner).await;
                return Err(e);
            }
        };
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let mut event = event_from_row(row)?;
            if let Ok(i) = leased.binary_search_by_key(&event.seq, |(seq, _)| *seq) {
                event.attempts = leased[i].1;
            }
            events.push(event);
        }
        Ok((owner, events))
    }

    /// Ends the leases of `owner` on `consumer`'s deliveries without counting the
    /// attempt, after a claim whose events could not be read.
    async fn give_back(&self, consumer: &str, owner: &str) -> Result<(), StoreError> {
        let _: Vec<i64> = write_alone!(
            self,
            "UPDATE outbox_delivery
                SET lease_owner = NULL, lease_until = NULL, attempts = attempts - 1
                WHERE consumer = $1 AND lease_owner = $2 AND done_at IS NULL
                RETURNING seq",
            |text, c| sqlx::query_scalar(text)
                .bind(consumer)
                .bind(owner)
                .fetch_all(c)
                .await
        )?;
        Ok(())
    }

    /// Acknowledges processed deliveries, all in one transaction. Returns how many
    /// were still leased to `owner`; a delivery whose lease was lost (re-claimed by
    /// another worker) is left as it is.
    pub async fn acknowledge(
        &self,
        consumer: &str,
        seqs: &[i64],
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        if seqs.is_empty() {
            return Ok(0);
        }
        // One statement per chunk, each a transaction of its own (an acknowledgement
        // stands alone): on SQLite every statement is a hand-off to the writer's
        // thread, and a batch's acknowledgements are all alike.
        let mut done = 0;
        for chunk in seqs.chunks(MAX_ACKNOWLEDGED_PER_STATEMENT) {
            let sql = format!(
                "UPDATE outbox_delivery SET done_at = $1, lease_owner = NULL, lease_until = NULL
                 WHERE consumer = $2 AND lease_owner = $3 AND done_at IS NULL AND seq IN ({})
                 RETURNING seq",
                crate::seq_list(chunk)
            );
            // Counted from the rows returned: SQLite's count of changes is not the
            // update's alone when the statement travels with others.
            let acknowledged: Vec<i64> =
                write_alone!(self, sql.as_str(), |text, c| sqlx::query_scalar(text)
                    .bind(now)
                    .bind(consumer)
                    .bind(owner)
                    .fetch_all(c)
                    .await)?;
            done += acknowledged.len();
        }
        Ok(done)
    }

    /// Gives a delivery back after a failure: it becomes due again at `retry_at`, or is
    /// marked dead (kept, listed, never retried automatically) when `retry_at` is None.
    pub async fn release(
        &self,
        consumer: &str,
        seq: i64,
        owner: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        match retry_at {
            Some(at) => on_tx!(&mut tx, c => sqlx::query(
                "UPDATE outbox_delivery SET available_at = $1, lease_owner = NULL, lease_until = NULL,
                    last_error = $2
                 WHERE consumer = $3 AND seq = $4 AND lease_owner = $5")
                .bind(at).bind(error).bind(consumer).bind(seq).bind(owner).execute(c).await.map(|r| r.rows_affected()))?,
            None => on_tx!(&mut tx, c => sqlx::query(
                "UPDATE outbox_delivery SET dead_at = $1, lease_owner = NULL, lease_until = NULL,
                    last_error = $2
                 WHERE consumer = $3 AND seq = $4 AND lease_owner = $5")
                .bind(now).bind(error).bind(consumer).bind(seq).bind(owner).execute(c).await.map(|r| r.rows_affected()))?,
        };
        tx.commit().await
    }

    /// Counts deliveries of `consumer` by state.
    pub async fn outbox_stats(&self, consumer: &str) -> Result<OutboxStats, StoreError> {
        let (pending, done, dead): (i64, i64, i64) = on_db!(self, c => sqlx::query_as(
            "SELECT
                COALESCE(SUM(CASE WHEN done_at IS NULL AND dead_at IS NULL THEN 1 ELSE 0 END), 0),
                COALESCE(SUM(CASE WHEN done_at IS NOT NULL THEN 1 ELSE 0 END), 0),
                COALESCE(SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END), 0)
             FROM outbox_delivery WHERE consumer = $1")
            .bind(consumer).fetch_one(c).await)?;
        Ok(OutboxStats {
            pending,
            done,
            dead,
        })
    }

    /// The events recorded for one aggregate, oldest first (for histories and tests).
    pub async fn events_for(
        &self,
        aggregate_kind: &str,
        aggregate_id: &str,
    ) -> Result<Vec<DomainEvent>, StoreError> {
        let rows: Vec<EventRow> = on_db!(self, c => sqlx::query_as(
            "SELECT seq, 0, id, kind, aggregate_kind, aggregate_id, member_id, occurred_at, payload,
                trace_context
             FROM outbox_event WHERE aggregate_kind = $1 AND aggregate_id = $2 ORDER BY seq")
            .bind(aggregate_kind).bind(aggregate_id).fetch_all(c).await)?;
        rows.into_iter()
            .map(|r| event_from_row(r).map(|c| c.event))
            .collect()
    }

    /// Of the events `ids` (one claimed batch of `consumer`), those that must wait:
    /// their aggregate has an earlier event, outside the batch, still owed to
    /// `consumer` (neither done nor dead). A consumer that must keep each aggregate's
    /// order (the event relay) hands these back, so an event never overtakes an
    /// earlier one that another worker holds, or that a killed process held until its
    /// lease runs out. At most [`MAX_HELD_BACK_BATCH`] ids are looked at.
    pub async fn held_back(
        &self,
        consumer: &str,
        ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let ids = &ids[..ids.len().min(MAX_HELD_BACK_BATCH)];
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = (0..ids.len())
            .map(|i| format!("${}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT DISTINCT e.id FROM outbox_event e
             JOIN outbox_event p ON p.aggregate_kind = e.aggregate_kind
                AND p.aggregate_id = e.aggregate_id AND p.seq < e.seq
             JOIN outbox_delivery d ON d.consumer = $1 AND d.seq = p.seq
             WHERE e.id IN ({list}) AND p.id NOT IN ({list})
               AND d.done_at IS NULL AND d.dead_at IS NULL"
        );
        let held: Vec<String> = on_db!(self, c => {
            let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.as_str())).bind(consumer);
            for id in ids {
                query = query.bind(id);
            }
            query.fetch_all(c).await
        })?;
        Ok(held)
    }

    /// Up to `limit` events after position `after`, in outbox order, with their
    /// positions (for reports and tests that compare the outbox with what left it).
    pub async fn events_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, DomainEvent)>, StoreError> {
        let rows: Vec<EventRow> = on_db!(self, c => sqlx::query_as(
            "SELECT seq, 0, id, kind, aggregate_kind, aggregate_id, member_id, occurred_at, payload, trace_context
             FROM outbox_event WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after).bind(i64::from(limit.min(1000))).fetch_all(c).await)?;
        rows.into_iter()
            .map(|r| event_from_row(r).map(|c| (c.seq, c.event)))
            .collect()
    }

    /// The trace context the event with id `event_id` was appended under, if any
    /// (for the notices it caused: their delivery joins its trace).
    pub async fn event_trace_context(&self, event_id: &str) -> Result<Option<String>, StoreError> {
        let row: Option<Option<String>> = on_db!(self, c => sqlx::query_scalar(
            "SELECT trace_context FROM outbox_event WHERE id = $1")
            .bind(event_id).fetch_optional(c).await)?;
        Ok(row.flatten())
    }

    /// The delivery state of event `seq` for `consumer`, if it was delivered to it.
    pub async fn delivery_state(
        &self,
        consumer: &str,
        seq: i64,
    ) -> Result<Option<DeliveryState>, StoreError> {
        type Row = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
        let row: Option<Row> = on_db!(self, c => sqlx::query_as(
            "SELECT done_at, dead_at FROM outbox_delivery WHERE consumer = $1 AND seq = $2")
            .bind(consumer).bind(seq).fetch_optional(c).await)?;
        Ok(row.map(|(done, dead)| match (done, dead) {
            (Some(_), _) => DeliveryState::Done,
            (None, Some(_)) => DeliveryState::Dead,
            (None, None) => DeliveryState::Pending,
        }))
    }
}
