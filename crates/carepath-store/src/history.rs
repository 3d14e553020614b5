//! Bulk writes of past precertification history: cases as they stand today with the
//! outbox events they published (delivered), the notices those events caused (sent,
//! with their attempt) and the audit entries of the calls that made and read them
//! (linked onto the audit chains with [`chain_hash`], as [`Tx::append_audit`] links
//! them), many cases per statement and per transaction.
//!
//! For filling a database that no server is using yet (scale tests, benchmarks): the
//! deliveries of the events written are acknowledged at once, so a server started on
//! the database later has no backlog to work through. SQLite takes numbered `VALUES`
//! rows; PostgreSQL binds each column as an array (`UNNEST`), one statement per table
//! and batch.

use carepath_core::DomainEvent;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, types::Json};

use crate::{
    AUDIT_CHAINS, AuditEntry, CaseRecord, NewNotice, Store, StoreError, Tx,
    audit::{chain_hash, stored_time},
    on_tx, values_sql,
};

/// Most cases [`Store::write_history`] takes at once: a batch is one transaction.
pub const MAX_HISTORY_BATCH: usize = 10_000;

/// One past case and everything it left behind.
#[derive(Debug, Clone)]
pub struct HistoryCase {
    pub record: CaseRecord,
    /// When the case last changed (its `updated_at`).
    pub updated_at: DateTime<Utc>,
    /// Its events, in the order they were published.
    pub events: Vec<DomainEvent>,
    /// The calls that made, changed and read it, each with its time.
    pub audit: Vec<(AuditEntry, DateTime<Utc>)>,
    pub notices: Vec<HistoryNotice>,
}

/// A notice an event of the case called for.
#[derive(Debug, Clone)]
pub struct HistoryNotice {
    pub notice: NewNotice,
    pub created_at: DateTime<Utc>,
    /// How it was sent, or `None` for a notice that was never sendable (it stays in
    /// the state it has, `dead`).
    pub sent: Option<SentNotice>,
}

/// The one attempt that delivered a notice.
#[derive(Debug, Clone)]
pub struct SentNotice {
    pub at: DateTime<Utc>,
    pub reference: String,
    pub detail: String,
}

/// Rows [`Store::write_history`] wrote, by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryWritten {
    pub cases: u64,
    pub events: u64,
    /// Outbox deliveries made for the events (by the fan-out trigger) and
    /// acknowledged.
    pub deliveries: u64,
    pub notices: u64,
    pub attempts: u64,
    pub audit_entries: u64,
}

impl HistoryWritten {
    pub fn add(&mut self, other: HistoryWritten) {
        self.cases += other.cases;
        self.events += other.events;
        self.deliveries += other.deliveries;
        self.notices += other.notices;
        self.attempts += other.attempts;
        self.audit_entries += other.audit_entries;
    }

    /// Every row written.
    pub fn rows(&self) -> u64 {
        self.cases
            + self.events
            + self.deliveries
            + self.notices
            + self.attempts
            + self.audit_entries
    }
}

/// Bound parameters per SQLite statement: far below the engine's limit (32,766).
const SQLITE_PARAMETERS: usize = 30_000;

/// Rows per SQLite statement for a table of `columns` columns.
fn sqlite_rows(columns: usize) -> usize {
    (SQLITE_PARAMETERS / columns).min(200)
}

const CASE_HEAD: &str = "INSERT INTO precert_case (id, request_key, member_id, requesting_npi,
        servicing_npi, status, urgency, queue, reviewer_id, received_at, due_at, decided_at, doc,
        updated_at) VALUES ";
const CASE_COLUMNS: usize = 14;
const CASE_UNNEST: &str = "INSERT INTO precert_case (id, request_key, member_id, requesting_npi,
        servicing_npi, status, urgency, queue, reviewer_id, received_at, due_at, decided_at, doc,
        updated_at)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[],
        $12::timestamptz[], $13::jsonb[], $14::timestamptz[])";

const EVENT_HEAD: &str = "INSERT INTO outbox_event (id, kind, aggregate_kind, aggregate_id,
        member_id, occurred_at, payload) VALUES ";
const EVENT_COLUMNS: usize = 7;
const EVENT_UNNEST: &str = "INSERT INTO outbox_event (id, kind, aggregate_kind, aggregate_id,
        member_id, occurred_at, payload)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::timestamptz[], $7::jsonb[])";

/// The deliveries the fan-out trigger made for the events just written, acknowledged
/// when each event occurred.
const ACKNOWLEDGE: &str = "UPDATE outbox_delivery SET done_at = available_at, attempts = 1
    WHERE seq > $1 AND done_at IS NULL AND dead_at IS NULL";

const AUDIT_HEAD: &str = "INSERT INTO audit_log (at, subject, role, rpc, record_kind, record_id,
        member_id, outcome, prev_hash, hash, chain, repeats) VALUES ";
const AUDIT_COLUMNS: usize = 12;
const AUDIT_UNNEST: &str = "INSERT INTO audit_log (at, subject, role, rpc, record_kind, record_id,
        member_id, outcome, prev_hash, hash, chain, repeats)
    SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int[], $12::bigint[])";

const NOTICE_HEAD: &str = "INSERT INTO notice (id, idempotency_key, event_id, event_kind, rule_id,
        rules_version, recipient_id, recipient_role, recipient_name, member_id, channel,
        destination, template_id, template_version, language, subject, priority, planned,
        rendered, state, attempts, tries, sent_at, receipt_reference, receipt_detail, last_error,
        created_at, updated_at) VALUES ";
const NOTICE_COLUMNS: usize = 28;
const NOTICE_UNNEST: &str =
    "INSERT INTO notice (id, idempotency_key, event_id, event_kind, rule_id,
        rules_version, recipient_id, recipient_role, recipient_name, member_id, channel,
        destination, template_id, template_version, language, subject, priority, planned,
        rendered, state, attempts, tries, sent_at, receipt_reference, receipt_detail, last_error,
        created_at, updated_at)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
        $14::int[], $15::text[], $16::text[], $17::int[], $18::jsonb[], $19::jsonb[], $20::text[],
        $21::int[], $22::int[], $23::timestamptz[], $24::text[], $25::text[], $26::text[],
        $27::timestamptz[], $28::timestamptz[])";

const ATTEMPT_HEAD: &str = "INSERT INTO notice_attempt (notice_id, number, started_at, finished_at,
        outcome, detail) VALUES ";
const ATTEMPT_COLUMNS: usize = 6;
const ATTEMPT_UNNEST: &str = "INSERT INTO notice_attempt (notice_id, number, started_at,
        finished_at, outcome, detail)
    SELECT * FROM UNNEST($1::text[], $2::int[], $3::timestamptz[], $4::timestamptz[], $5::text[],
        $6::text[])";

/// An audit entry linked onto its chain: (entry, time, chain, previous hash, hash).
type Linked<'a> = (&'a AuditEntry, DateTime<Utc>, i32, String, String);

/// A notice row as written: the notice, its state, attempts and sent time.
struct NoticeRow<'a> {
    history: &'a HistoryNotice,
    state: &'a str,
    attempts: i32,
}

impl<'a> NoticeRow<'a> {
    fn of(history: &'a HistoryNotice) -> Self {
        match &history.sent {
            Some(_) => NoticeRow {
                history,
                state: "sent",
                attempts: 1,
            },
            None => NoticeRow {
                history,
                state: history.notice.state.as_str(),
                attempts: 0,
            },
        }
    }

    fn updated_at(&self) -> DateTime<Utc> {
        self.history
            .sent
            .as_ref()
            .map_or(self.history.created_at, |s| s.at)
    }
}

/// (notice id, sent) of every notice that was sent.
fn attempts(cases: &[HistoryCase]) -> Vec<(&str, &SentNotice)> {
    cases
        .iter()
        .flat_map(|c| &c.notices)
        .filter_map(|n| n.sent.as_ref().map(|s| (n.notice.id.as_str(), s)))
        .collect()
}

fn attempt_detail(sent: &SentNotice) -> String {
    format!("{}: {}", sent.reference, sent.detail)
}

/// Links `entries` onto the chains whose newest hashes are `heads` (chain `i + 1` at
/// index `i`), taking the chains in turn from `first`, and moves `heads` on.
fn link<'a>(
    entries: impl Iterator<Item = &'a (AuditEntry, DateTime<Utc>)>,
    heads: &mut [String],
    first: usize,
) -> Vec<Linked<'a>> {
    entries
        .enumerate()
        .map(|(i, (entry, at))| {
            let index = (first + i) % heads.len();
            let at = stored_time(*at);
            let hash = chain_hash(&heads[index], at, entry);
            let prev = std::mem::replace(&mut heads[index], hash.clone());
            (entry, at, index as i32 + 1, prev, hash)
        })
        .collect()
}

/// One field of every row, as the array bound to an `UNNEST` parameter.
fn column<'a, T, U>(rows: &'a [T], field: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(field).collect()
}

impl Store {
    /// Writes `cases` (at most [`MAX_HISTORY_BATCH`]) with their events, notices and
    /// audit entries in one transaction; see the module docs. Meant for a database no
    /// server is serving: the deliveries of every event still pending when this
    /// batch's events are written are acknowledged with them.
    pub async fn write_history(&self, cases: &[HistoryCase]) -> Result<HistoryWritten, StoreError> {
        if cases.len() > MAX_HISTORY_BATCH {
            return Err(StoreError::Corrupt {
                kind: "history batch",
                id: cases.len().to_string(),
                reason: format!("at most {MAX_HISTORY_BATCH} cases in one batch"),
            });
        }
        let mut tx = self.begin().await?;
        let last_seq: i64 = on_tx!(&mut tx, c => sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), 0) FROM outbox_event").fetch_one(c).await)?;
        let mut heads: Vec<String> = on_tx!(&mut tx, c => sqlx::query_scalar(
            "SELECT hash FROM audit_head ORDER BY id").fetch_all(c).await)?;
        if heads.len() != AUDIT_CHAINS as usize {
            return Err(StoreError::Corrupt {
                kind: "audit head",
                id: heads.len().to_string(),
                reason: format!("expected {AUDIT_CHAINS} chain heads"),
            });
        }
        // Start on a chain that depends on the batch, so small batches do not all
        // lengthen the first chains.
        let first = cases
            .first()
            .map_or(0, |c| c.record.received_at.timestamp_subsec_micros())
            as usize;
        let linked = link(cases.iter().flat_map(|c| &c.audit), &mut heads, first);
        let events: Vec<&DomainEvent> = cases.iter().flat_map(|c| &c.events).collect();
        let notices: Vec<NoticeRow> = cases
            .iter()
            .flat_map(|c| &c.notices)
            .map(NoticeRow::of)
            .collect();
        let sent = attempts(cases);
        let deliveries = match &mut tx {
            Tx::Sqlite(_) => {
                write_cases_values(&mut tx, cases).await?;
                write_events_values(&mut tx, &events).await?;
                let deliveries = acknowledge(&mut tx, last_seq).await?;
                write_audit_values(&mut tx, &linked).await?;
                write_notices_values(&mut tx, &notices).await?;
                write_attempts_values(&mut tx, &sent).await?;
                deliveries
            }
            Tx::Postgres(t) => {
                let c: &mut PgConnection = t;
                write_cases_unnest(c, cases).await?;
                write_events_unnest(c, &events).await?;
                let deliveries = sqlx::query(ACKNOWLEDGE)
                    .bind(last_seq)
                    .execute(&mut *c)
                    .await?
                    .rows_affected();
                write_audit_unnest(c, &linked).await?;
                write_notices_unnest(c, &notices).await?;
                write_attempts_unnest(c, &sent).await?;
                deliveries
            }
        };
        tx.commit().await?;
        Ok(HistoryWritten {
            cases: cases.len() as u64,
            events: events.len() as u64,
            deliveries,
            notices: notices.len() as u64,
            attempts: sent.len() as u64,
            audit_entries: linked.len() as u64,
        })
    }
}

/// [`ACKNOWLEDGE`] on SQLite.
impl Store {
    /// Tidies up after [`Store::write_history`]: on PostgreSQL, vacuums and analyses
    /// the tables it wrote (each delivery was inserted pending and acknowledged in
    /// the same transaction, which leaves a dead row and index entry behind that the
    /// backlog gauge would read until autovacuum came by); on SQLite, analyses.
    pub async fn settle_history(&self) -> Result<(), StoreError> {
        match self {
            Store::Postgres { pool, .. } => {
                sqlx::query(
                    "VACUUM (ANALYZE) precert_case, outbox_event, outbox_delivery, notice,
                        notice_attempt, audit_log, audit_head",
                )
                .execute(pool)
                .await?;
            }
            Store::Sqlite { .. } => {
                let mut tx = self.begin().await?;
                on_tx!(&mut tx, c => sqlx::query("ANALYZE").execute(c).await.map(|r| r.rows_affected()))?;
                tx.commit().await?;
            }
        }
        Ok(())
    }
}

async fn acknowledge(tx: &mut Tx, last_seq: i64) -> Result<u64, StoreError> {
    Ok(on_tx!(tx, c => sqlx::query(ACKNOWLEDGE).bind(last_seq)
        .execute(c).await.map(|r| r.rows_affected()))?)
}

async fn write_cases_values(tx: &mut Tx, cases: &[HistoryCase]) -> Result<(), StoreError> {
    for chunk in cases.chunks(sqlite_rows(CASE_COLUMNS)) {
        let sql = values_sql(CASE_HEAD, CASE_COLUMNS, chunk.len());
        on_tx!(tx, c => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for case in chunk {
                let r = &case.record;
                query = query
                    .bind(&r.id).bind(&r.request_key).bind(&r.member_id).bind(&r.requesting_npi)
                    .bind(&r.servicing_npi).bind(&r.status).bind(&r.urgency).bind(&r.queue)
                    .bind(r.reviewer_id.clone()).bind(r.received_at).bind(r.due_at)
                    .bind(r.decided_at).bind(Json(&r.doc)).bind(case.updated_at);
            }
            query.execute(c).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

async fn write_cases_unnest(c: &mut PgConnection, cases: &[HistoryCase]) -> Result<(), StoreError> {
    sqlx::query(CASE_UNNEST)
        .bind(column(cases, |c| c.record.id.as_str()))
        .bind(column(cases, |c| c.record.request_key.as_str()))
        .bind(column(cases, |c| c.record.member_id.as_str()))
        .bind(column(cases, |c| c.record.requesting_npi.as_str()))
        .bind(column(cases, |c| c.record.servicing_npi.as_str()))
        .bind(column(cases, |c| c.record.status.as_str()))
        .bind(column(cases, |c| c.record.urgency.as_str()))
        .bind(column(cases, |c| c.record.queue.as_str()))
        .bind(column(cases, |c| c.record.reviewer_id.as_deref()))
        .bind(column(cases, |c| c.record.received_at))
        .bind(column(cases, |c| c.record.due_at))
        .bind(column(cases, |c| c.record.decided_at))
        .bind(column(cases, |c| Json(&c.record.doc)))
        .bind(column(cases, |c| c.updated_at))
        .execute(c)
        .await?;
    Ok(())
}

async fn write_events_values(tx: &mut Tx, events: &[&DomainEvent]) -> Result<(), StoreError> {
    for chunk in events.chunks(sqlite_rows(EVENT_COLUMNS)) {
        let sql = values_sql(EVENT_HEAD, EVENT_COLUMNS, chunk.len());
        on_tx!(tx, c => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for e in chunk {
                query = query
                    .bind(&e.id).bind(&e.kind).bind(&e.aggregate_kind).bind(&e.aggregate_id)
                    .bind(e.member_id.as_ref().map(|m| m.as_str())).bind(e.occurred_at)
                    .bind(Json(&e.payload));
            }
            query.execute(c).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

async fn write_events_unnest(
    c: &mut PgConnection,
    events: &[&DomainEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(EVENT_UNNEST)
        .bind(column(events, |e| e.id.as_str()))
        .bind(column(events, |e| e.kind.as_str()))
        .bind(column(events, |e| e.aggregate_kind.as_str()))
        .bind(column(events, |e| e.aggregate_id.as_str()))
        .bind(column(events, |e| e.member_id.as_ref().map(|m| m.as_str())))
        .bind(column(events, |e| e.occurred_at))
        .bind(column(events, |e| Json(&e.payload)))
        .execute(c)
        .await?;
    Ok(())
}

async fn write_audit_values(tx: &mut Tx, linked: &[Linked<'_>]) -> Result<(), StoreError> {
    for chunk in linked.chunks(sqlite_rows(AUDIT_COLUMNS)) {
        let sql = values_sql(AUDIT_HEAD, AUDIT_COLUMNS, chunk.len());
        on_tx!(tx, c => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for (e, at, chain, prev, hash) in chunk {
                query = query
                    .bind(*at).bind(&e.subject).bind(&e.role).bind(&e.rpc).bind(&e.record_kind)
                    .bind(&e.record_id).bind(e.member_id.as_deref()).bind(e.outcome.as_str())
                    .bind(prev).bind(hash).bind(*chain).bind(i64::from(e.repeats));
            }
            query.execute(c).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

async fn write_audit_unnest(c: &mut PgConnection, linked: &[Linked<'_>]) -> Result<(), StoreError> {
    if linked.is_empty() {
        return Ok(());
    }
    sqlx::query(AUDIT_UNNEST)
        .bind(column(linked, |l| l.1))
        .bind(column(linked, |l| l.0.subject.as_str()))
        .bind(column(linked, |l| l.0.role.as_str()))
        .bind(column(linked, |l| l.0.rpc.as_str()))
        .bind(column(linked, |l| l.0.record_kind.as_str()))
        .bind(column(linked, |l| l.0.record_id.as_str()))
        .bind(column(linked, |l| l.0.member_id.as_deref()))
        .bind(column(linked, |l| l.0.outcome.as_str()))
        .bind(column(linked, |l| l.3.as_str()))
        .bind(column(linked, |l| l.4.as_str()))
        .bind(column(linked, |l| l.2))
        .bind(column(linked, |l| i64::from(l.0.repeats)))
        .execute(c)
        .await?;
    Ok(())
}

async fn write_notices_values(tx: &mut Tx, notices: &[NoticeRow<'_>]) -> Result<(), StoreError> {
    for chunk in notices.chunks(sqlite_rows(NOTICE_COLUMNS)) {
        let sql = values_sql(NOTICE_HEAD, NOTICE_COLUMNS, chunk.len());
        on_tx!(tx, c => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for row in chunk {
                let n = &row.history.notice;
                let sent = row.history.sent.as_ref();
                query = query
                    .bind(&n.id).bind(&n.idempotency_key).bind(&n.event_id).bind(&n.event_kind)
                    .bind(&n.rule_id).bind(&n.rules_version).bind(&n.recipient_id)
                    .bind(&n.recipient_role).bind(&n.recipient_name).bind(n.member_id.as_deref())
                    .bind(&n.channel).bind(&n.destination).bind(&n.template_id)
                    .bind(n.template_version).bind(&n.language).bind(&n.subject).bind(n.priority)
                    .bind(n.planned.as_ref().map(Json)).bind(n.rendered.as_ref().map(Json))
                    .bind(row.state).bind(row.attempts).bind(row.attempts)
                    .bind(sent.map(|s| s.at)).bind(sent.map_or("", |s| s.reference.as_str()))
                    .bind(sent.map_or("", |s| s.detail.as_str())).bind(&n.last_error)
                    .bind(row.history.created_at).bind(row.updated_at());
            }
            query.execute(c).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

async fn write_notices_unnest(
    c: &mut PgConnection,
    notices: &[NoticeRow<'_>],
) -> Result<(), StoreError> {
    if notices.is_empty() {
        return Ok(());
    }
    sqlx::query(NOTICE_UNNEST)
        .bind(column(notices, |r| r.history.notice.id.as_str()))
        .bind(column(notices, |r| {
            r.history.notice.idempotency_key.as_str()
        }))
        .bind(column(notices, |r| r.history.notice.event_id.as_str()))
        .bind(column(notices, |r| r.history.notice.event_kind.as_str()))
        .bind(column(notices, |r| r.history.notice.rule_id.as_str()))
        .bind(column(notices, |r| r.history.notice.rules_version.as_str()))
        .bind(column(notices, |r| r.history.notice.recipient_id.as_str()))
        .bind(column(notices, |r| {
            r.history.notice.recipient_role.as_str()
        }))
        .bind(column(notices, |r| {
            r.history.notice.recipient_name.as_str()
        }))
        .bind(column(notices, |r| r.history.notice.member_id.as_deref()))
        .bind(column(notices, |r| r.history.notice.channel.as_str()))
        .bind(column(notices, |r| r.history.notice.destination.as_str()))
        .bind(column(notices, |r| r.history.notice.template_id.as_str()))
        .bind(column(notices, |r| r.history.notice.template_version))
        .bind(column(notices, |r| r.history.notice.language.as_str()))
        .bind(column(notices, |r| r.history.notice.subject.as_str()))
        .bind(column(notices, |r| r.history.notice.priority))
        .bind(column(notices, |r| {
            r.history.notice.planned.as_ref().map(Json)
        }))
        .bind(column(notices, |r| {
            r.history.notice.rendered.as_ref().map(Json)
        }))
        .bind(column(notices, |r| r.state))
        .bind(column(notices, |r| r.attempts))
        .bind(column(notices, |r| r.attempts))
        .bind(column(notices, |r| r.history.sent.as_ref().map(|s| s.at)))
        .bind(column(notices, |r| {
            r.history.sent.as_ref().map_or("", |s| s.reference.as_str())
        }))
        .bind(column(notices, |r| {
            r.history.sent.as_ref().map_or("", |s| s.detail.as_str())
        }))
        .bind(column(notices, |r| r.history.notice.last_error.as_str()))
        .bind(column(notices, |r| r.history.created_at))
        .bind(column(notices, NoticeRow::updated_at))
        .execute(c)
        .await?;
    Ok(())
}

async fn write_attempts_values(
    tx: &mut Tx,
    sent: &[(&str, &SentNotice)],
) -> Result<(), StoreError> {
    for chunk in sent.chunks(sqlite_rows(ATTEMPT_COLUMNS)) {
        let sql = values_sql(ATTEMPT_HEAD, ATTEMPT_COLUMNS, chunk.len());
        on_tx!(tx, c => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for (id, s) in chunk {
                query = query
                    .bind(*id).bind(1_i32).bind(s.at).bind(s.at).bind("sent")
                    .bind(attempt_detail(s));
            }
            query.execute(c).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

async fn write_attempts_unnest(
    c: &mut PgConnection,
    sent: &[(&str, &SentNotice)],
) -> Result<(), StoreError> {
    if sent.is_empty() {
        return Ok(());
    }
    sqlx::query(ATTEMPT_UNNEST)
        .bind(column(sent, |s| s.0))
        .bind(column(sent, |_| 1_i32))
        .bind(column(sent, |s| s.1.at))
        .bind(column(sent, |s| s.1.at))
        .bind(column(sent, |_| "sent"))
        .bind(column(sent, |s| attempt_detail(s.1)))
        .execute(c)
        .await?;
    Ok(())
}
