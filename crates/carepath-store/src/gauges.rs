//! Figures for the operations gauges: counts read with a few indexed queries, and the
//! state of the connection pools. Read periodically by the application's metrics
//! task, never on a call's path. Every label they produce is a fixed name (a consumer,
//! a state, a channel), never a member, case or request id.

use chrono::{DateTime, Utc};

use crate::{Store, StoreError, on_db};

/// Metric the store records itself: how long [`Store::begin`] waited for a
/// connection (SQLite: its turn on the writer), in seconds, by backend.
pub const BEGIN_WAIT_SECONDS: &str = "carepath_db_begin_wait_seconds";
/// Metric the store records itself: audit entries appended, by outcome.
pub const AUDIT_ENTRIES_TOTAL: &str = "carepath_audit_entries_total";

/// Undelivered events of one outbox consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxBacklog {
    pub consumer: String,
    /// Deliveries neither done nor dead.
    pub pending: i64,
    /// When the oldest of them occurred.
    pub oldest: Option<DateTime<Utc>>,
}

/// A count under two labels (state and channel; status and nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledCount {
    pub label: String,
    pub second: String,
    pub count: i64,
}

/// The connections of the store's pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Connections open in the pool (reads on SQLite; all on PostgreSQL).
    pub size: u32,
    /// Of those, in use now.
    pub in_use: u32,
    /// The pool's bound.
    pub max: u32,
    /// Transactions waiting for SQLite's one writer connection (0 on PostgreSQL).
    pub writer_queued: u32,
}

impl Store {
    /// Each consumer's undelivered events and the time of the first in line (the
    /// lowest position), from the partial index of pending deliveries: a count over
    /// the index, and one event read. Joining every pending delivery to its event
    /// instead took over 15 minutes on PostgreSQL with 1.6 million waiting.
    pub async fn outbox_backlog(&self) -> Result<Vec<OutboxBacklog>, StoreError> {
        type Row = (String, i64, Option<DateTime<Utc>>);
        let rows: Vec<Row> = on_db!(self, c => sqlx::query_as(
            "SELECT s.consumer,
                (SELECT COUNT(*) FROM outbox_delivery d
                 WHERE d.consumer = s.consumer AND d.done_at IS NULL AND d.dead_at IS NULL),
                (SELECT e.occurred_at FROM outbox_event e
                 WHERE e.seq = (SELECT MIN(d.seq) FROM outbox_delivery d
                                WHERE d.consumer = s.consumer
                                  AND d.done_at IS NULL AND d.dead_at IS NULL))
             FROM (SELECT DISTINCT consumer FROM outbox_subscription) s
             ORDER BY s.consumer")
            .fetch_all(c).await)?;
        Ok(rows
            .into_iter()
            .map(|(consumer, pending, oldest)| OutboxBacklog {
                consumer,
                pending,
                oldest,
            })
            .collect())
    }

    /// Notices not yet sent (pending, sending, failed, dead), by state and channel.
    /// Sent notices are not counted here (they only grow); the dispatcher counts
    /// deliveries as they happen.
    pub async fn unsent_notices(&self) -> Result<Vec<LabelledCount>, StoreError> {
        let rows: Vec<(String, String, i64)> = on_db!(self, c => sqlx::query_as(
            "SELECT state, channel, COUNT(*) FROM notice
             WHERE state IN ('pending', 'sending', 'failed', 'dead')
             GROUP BY state, channel ORDER BY state, channel")
            .fetch_all(c).await)?;
        Ok(rows
            .into_iter()
            .map(|(label, second, count)| LabelledCount {
                label,
                second,
                count,
            })
            .collect())
    }

    /// Precertification cases open (waiting in a queue: something is owed), by
    /// status, and how many of them are past their due time at `now`.
    pub async fn open_cases(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(Vec<LabelledCount>, i64), StoreError> {
        let rows: Vec<(String, i64, i64)> = on_db!(self, c => sqlx::query_as(
            "SELECT status, COUNT(*), COALESCE(SUM(CASE WHEN due_at < $1 THEN 1 ELSE 0 END), 0)
             FROM precert_case WHERE queue <> '' GROUP BY status ORDER BY status")
            .bind(now).fetch_all(c).await)?;
        let past_due = rows.iter().map(|r| r.2).sum();
        Ok((
            rows.into_iter()
                .map(|(label, count, _)| LabelledCount {
                    label,
                    second: String::new(),
                    count,
                })
                .collect(),
            past_due,
        ))
    }

    /// Gold-card exemptions in force: standings evaluated exempt.
    pub async fn gold_card_exemptions(&self) -> Result<i64, StoreError> {
        Ok(on_db!(self, c => sqlx::query_scalar(
            "SELECT COUNT(*) FROM precert_gold_card WHERE exempt")
            .fetch_one(c).await)?)
    }

    /// The pools' connections now (no query).
    pub fn pool_state(&self) -> PoolState {
        match self {
            Store::Sqlite { writer, read, .. } => PoolState {
                size: read.size(),
                in_use: read.size().saturating_sub(read.num_idle() as u32),
                max: read.options().get_max_connections(),
                writer_queued: writer.queued(),
            },
            Store::Postgres { pool, .. } => PoolState {
                size: pool.size(),
                in_use: pool.size().saturating_sub(pool.num_idle() as u32),
                max: pool.options().get_max_connections(),
                writer_queued: 0,
            },
        }
    }
}
