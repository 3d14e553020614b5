//! New precertification cases and audit entries of reads, written together.
//!
//! Each statement is a round trip: to a server process on PostgreSQL, to the writer
//! connection's thread on SQLite (where every write waits its turn on the one
//! connection). A new case needs four statements (case, events, chain head, audit
//! entry) plus a commit or a savepoint release; the audit entry of a read needs two
//! plus the commit. So [`Store::create_case`] and [`Store::audit`] hand their work to
//! a queue, and a few writer tasks each take everything queued and write it in one
//! transaction: one multi-row insert per table for the whole batch. A lone case or
//! entry is written at once; under load the batches grow by themselves. PostgreSQL binds each
//! column as an array (`UNNEST`), one statement text for any batch size; SQLite has no
//! arrays and takes numbered `VALUES` rows. Either way a batch is two statements
//! plus the transaction's begin and commit: the cases, their events and the locked
//! chain head in one (a data-modifying `WITH` on PostgreSQL, three statements in one
//! query on SQLite), then the audit entries linked onto that head.
//!
//! Invariants:
//! - `create_case` returns only after the transaction holding the case committed;
//! - `audit` returns only after the transaction holding the entry committed;
//! - a case, its events and its audit entry commit together or not at all;
//! - a batch that fails is written again one job at a time, so a case or entry whose
//!   writing fails fails alone, with its own error;
//! - the audit entries of a batch are linked, in batch order, onto one chain whose
//!   head stays locked until commit, exactly as single appends are.
//!
//! On SQLite a batch is one savepoint on the writer connection, which then commits it
//! durably with whatever else is queued ([`crate::SqliteWriter`]).

use std::sync::Arc;

use carepath_core::DomainEvent;
use chrono::{DateTime, Utc};
use sqlx::{Column, PgPool, Row, types::Json};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{
    AuditEntry, CaseRecord, SqliteTx, SqliteWriter, Store, StoreError, Tx,
    audit::{chain_hash, head_sql, next_chain},
    values_sql,
};

/// A case to create, with the outbox events and the audit entry that go with it.
#[derive(Debug, Clone)]
pub struct NewCase {
    pub record: CaseRecord,
    pub events: Vec<DomainEvent>,
    /// The access that made the case.
    pub audit: AuditEntry,
    /// When it was made: the case's `updated_at` and the audit entry's time.
    pub at: DateTime<Utc>,
}

/// What [`Store::create_case`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseCreated {
    /// The case, its events and audit entry are committed.
    Created,
    /// A case with the same request key exists already (committed, or committing in
    /// a concurrent transaction); nothing was written.
    Duplicate,
}

/// Most cases one transaction writes.
const MAX_BATCH: usize = 64;
/// Writer tasks: while one batch commits, the next is being gathered and written.
const WRITERS: usize = 2;

/// Where the writer tasks write.
#[derive(Debug)]
pub(crate) enum Target {
    Postgres(PgPool),
    Sqlite(Arc<SqliteWriter>),
}

/// What one job writes.
#[derive(Debug)]
enum Work {
    /// A new case with its events and audit entry.
    Case(Box<NewCase>),
    /// The audit entry of an access that changed nothing else.
    Audit(AuditEntry, DateTime<Utc>),
}

impl Work {
    /// The case, if this is one.
    fn case(&self) -> Option<&NewCase> {
        match self {
            Work::Case(case) => Some(case),
            Work::Audit(..) => None,
        }
    }
}

struct Job {
    work: Work,
    /// The trace context of the call that queued the job, for its events.
    trace: Option<String>,
    /// `Created` once written (for an audit entry: once committed).
    done: oneshot::Sender<Result<CaseCreated, StoreError>>,
}

/// The queue of cases and audit entries waiting to be written, shared by the writer
/// tasks.
#[derive(Debug)]
pub struct CaseAppender {
    queue: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.work {
            Work::Case(case) => f
                .debug_struct("Job")
                .field("case", &case.record.id)
                .finish(),
            Work::Audit(entry, _) => f.debug_struct("Job").field("audit", &entry.rpc).finish(),
        }
    }
}

impl CaseAppender {
    /// Starts the writer tasks on the current runtime. They end when the store (every
    /// clone of it) is dropped.
    pub(crate) fn start(target: Target) -> Arc<Self> {
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        let target = Arc::new(target);
        for _ in 0..WRITERS {
            tokio::spawn(write_batches(target.clone(), receiver.clone()));
        }
        Arc::new(CaseAppender { queue })
    }
}

/// One writer task: takes whatever is queued (waiting for the first case), writes it.
async fn write_batches(target: Arc<Target>, receiver: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>) {
    loop {
        let mut jobs = Vec::new();
        {
            let mut receiver = receiver.lock().await;
            match receiver.recv().await {
                Some(job) => jobs.push(job),
                None => return,
            }
            while jobs.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        write_jobs(&target, jobs).await;
    }
}

async fn write_jobs(target: &Target, jobs: Vec<Job>) {
    let batch: Vec<(&Work, Option<&str>)> =
        jobs.iter().map(|j| (&j.work, j.trace.as_deref())).collect();
    let results = match write_batch(target, &batch).await {
        Ok(created) => created.into_iter().map(Ok).collect(),
        // Each job again on its own, so only a job that cannot be written fails.
        Err(_) if jobs.len() > 1 => {
            let mut results = Vec::with_capacity(jobs.len());
            for job in &batch {
                results.push(match write_batch(target, &[*job]).await {
                    Ok(created) => Ok(created[0]),
                    Err(e) => Err(e),
                });
            }
            results
        }
        Err(e) => vec![Err(e)],
    };
    for (job, result) in jobs.into_iter().zip(results) {
        // The caller may have gone (its call was cancelled); what it queued stands.
        let _ = job.done.send(result);
    }
}

/// The first statement of a PostgreSQL batch: the new cases, the events of the cases
/// it inserted (in batch order; `$23` names each event's case), and the head of
/// chain `$24`, locked until commit. Rows: one `(id, NULL)` per case inserted, then
/// `(NULL, hash)`.
const CASES_EVENTS_AND_HEAD: &str = "WITH new_cases AS (
        INSERT INTO precert_case (id, request_key, member_id, requesting_npi, servicing_npi,
            status, urgency, queue, reviewer_id, received_at, due_at, decided_at, doc, updated_at)
        SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[],
            $11::timestamptz[], $12::timestamptz[], $13::jsonb[], $14::timestamptz[])
        ON CONFLICT (request_key) DO NOTHING
        RETURNING id),
    new_events AS (
        INSERT INTO outbox_event (id, kind, aggregate_kind, aggregate_id, member_id,
            occurred_at, payload, trace_context)
        SELECT e.id, e.kind, e.aggregate_kind, e.aggregate_id, e.member_id, e.occurred_at,
            e.payload, e.trace_context
        FROM UNNEST($15::text[], $16::text[], $17::text[], $18::text[], $19::text[],
            $20::timestamptz[], $21::jsonb[], $22::text[], $23::text[])
            WITH ORDINALITY AS e(id, kind, aggregate_kind, aggregate_id, member_id,
                occurred_at, payload, trace_context, case_id, n)
        WHERE e.case_id IN (SELECT id FROM new_cases)
        ORDER BY e.n),
    head AS (SELECT hash FROM audit_head WHERE id = $24 FOR UPDATE)
    SELECT id, NULL::text AS hash FROM new_cases
    UNION ALL SELECT NULL::text, hash FROM head";

const INSERT_AUDIT: &str = "INSERT INTO audit_log (at, subject, role, rpc, record_kind, record_id,
        member_id, outcome, prev_hash, hash, repeats, chain)
    SELECT *, $12::int FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[],
        $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[])";

/// What a batch writes once its new cases are known: the events of the created cases,
/// and the audit entries (of created cases and of reads), in batch order.
struct Written<'a> {
    outcome: Vec<CaseCreated>,
    events: Vec<(&'a DomainEvent, Option<&'a str>)>,
    audit: Vec<(&'a AuditEntry, DateTime<Utc>)>,
}

/// Writes `batch` in one transaction: the cases whose request key is new, with their
/// events and audit entries, and the audit entries of reads, in batch order, so each
/// case's events keep theirs and the audit chain links in that order.
async fn write_batch(
    target: &Target,
    batch: &[(&Work, Option<&str>)],
) -> Result<Vec<CaseCreated>, StoreError> {
    match target {
        Target::Postgres(pool) => write_batch_postgres(pool, batch).await,
        Target::Sqlite(writer) => {
            let chain = next_chain();
            if let Some(head) = writer.known_head(chain) {
                match write_batch_sqlite_at_once(writer, batch, chain, head).await {
                    Ok((outcome, head)) => {
                        writer.remember_head(chain, Some(head));
                        return Ok(outcome);
                    }
                    // A case whose request key is taken, or a head another process
                    // moved: the batch again the careful way.
                    Err(e) => {
                        tracing::debug!(error = %e, "batch written again with the head read");
                        writer.remember_head(chain, None);
                    }
                }
            }
            let (outcome, head) = write_batch_sqlite(writer.begin().await?, batch, chain).await?;
            writer.remember_head(chain, head);
            Ok(outcome)
        }
    }
}

/// The PostgreSQL batch: every column bound as an array (`UNNEST` yields its arrays
/// in order).
async fn write_batch_postgres(
    pool: &PgPool,
    batch: &[(&Work, Option<&str>)],
) -> Result<Vec<CaseCreated>, StoreError> {
    let cases: Vec<&NewCase> = batch.iter().filter_map(|(w, _)| w.case()).collect();
    let cases = cases.as_slice();
    let events = case_events(batch);
    let events = events.as_slice();
    let chain = next_chain();
    let mut tx = pool.begin().await?;
    if cases.is_empty() {
        // Audit entries of reads only: the head alone (the statement below would fire
        // the outbox's statement triggers for no rows).
        let head: String = sqlx::query_scalar(head_sql(crate::Backend::Postgres))
            .bind(chain)
            .fetch_one(&mut *tx)
            .await?;
        let written = sort_out(batch, &[]);
        return write_audit_postgres(tx, written, chain, head).await;
    }
    // One statement: the cases whose request key is new, the events of those cases,
    // and the chain head, locked until commit.
    let rows: Vec<(Option<String>, Option<String>)> = sqlx::query_as(CASES_EVENTS_AND_HEAD)
        .bind(column(cases, |c| c.record.id.clone()))
        .bind(column(cases, |c| c.record.request_key.clone()))
        .bind(column(cases, |c| c.record.member_id.clone()))
        .bind(column(cases, |c| c.record.requesting_npi.clone()))
        .bind(column(cases, |c| c.record.servicing_npi.clone()))
        .bind(column(cases, |c| c.record.status.clone()))
        .bind(column(cases, |c| c.record.urgency.clone()))
        .bind(column(cases, |c| c.record.queue.clone()))
        .bind(column(cases, |c| c.record.reviewer_id.clone()))
        .bind(column(cases, |c| c.record.received_at))
        .bind(column(cases, |c| c.record.due_at))
        .bind(column(cases, |c| c.record.decided_at))
        .bind(column(cases, |c| Json(&c.record.doc)))
        .bind(column(cases, |c| c.at))
        .bind(column(events, |e| e.0.id.clone()))
        .bind(column(events, |e| e.0.kind.clone()))
        .bind(column(events, |e| e.0.aggregate_kind.clone()))
        .bind(column(events, |e| e.0.aggregate_id.clone()))
        .bind(column(events, |e| {
            e.0.member_id.as_ref().map(|m| m.as_str().to_owned())
        }))
        .bind(column(events, |e| e.0.occurred_at))
        .bind(column(events, |e| Json(&e.0.payload)))
        .bind(column(events, |e| e.1.map(str::to_owned)))
        .bind(column(events, |e| e.2.to_owned()))
        .bind(chain)
        .fetch_all(&mut *tx)
        .await?;
    let mut inserted = Vec::with_capacity(cases.len());
    let mut head = None;
    for (id, hash) in rows {
        match (id, hash) {
            (Some(id), _) => inserted.push(id),
            (None, hash) => head = hash,
        }
    }
    let written = sort_out(batch, &inserted);
    if written.audit.is_empty() {
        return Ok(written.outcome);
    }
    let head = head.ok_or_else(|| StoreError::Corrupt {
        kind: "audit chain",
        id: chain.to_string(),
        reason: "the chain has no head row".into(),
    })?;
    write_audit_postgres(tx, written, chain, head).await
}

/// The rest of a PostgreSQL batch: its audit entries linked onto `head` of `chain`
/// (locked in `tx`), then the commit.
async fn write_audit_postgres(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    written: Written<'_>,
    chain: i32,
    head: String,
) -> Result<Vec<CaseCreated>, StoreError> {
    let audit = &written.audit;
    let links = link(head, audit);
    sqlx::query(INSERT_AUDIT)
        .bind(column(&links, |l| l.0))
        .bind(column(audit, |a| a.0.subject.clone()))
        .bind(column(audit, |a| a.0.role.clone()))
        .bind(column(audit, |a| a.0.rpc.clone()))
        .bind(column(audit, |a| a.0.record_kind.clone()))
        .bind(column(audit, |a| a.0.record_id.clone()))
        .bind(column(audit, |a| a.0.member_id.clone()))
        .bind(column(audit, |a| a.0.outcome.as_str().to_owned()))
        .bind(column(&links, |l| l.1.clone()))
        .bind(column(&links, |l| l.2.clone()))
        .bind(column(audit, |a| i64::from(a.0.repeats)))
        .bind(chain)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    count_audit(audit);
    Ok(written.outcome)
}

const INSERT_CASES_VALUES: &str = "INSERT INTO precert_case (id, request_key, member_id,
        requesting_npi, servicing_npi, status, urgency, queue, reviewer_id, received_at, due_at,
        decided_at, doc, updated_at)
    VALUES ";
const CASE_COLUMNS: usize = 14;
const NEW_REQUEST_KEYS_ONLY: &str = " ON CONFLICT (request_key) DO NOTHING RETURNING id";

const INSERT_AUDIT_VALUES: &str = "INSERT INTO audit_log (at, subject, role, rpc, record_kind,
        record_id, member_id, outcome, prev_hash, hash, repeats, chain)
    VALUES ";
const AUDIT_COLUMNS: usize = 12;

/// The batch as numbered `VALUES` rows, in the savepoint `tx` on the SQLite writer
/// connection. At most [`MAX_BATCH`] jobs: 896 parameters for the cases, 9 per event
/// and 768 for the audit entries, far below SQLite's limit.
///
/// Every statement is a hand-off to the connection's thread, made while the one
/// writer is held, so the cases, their events and the chain head are one query of
/// three statements sharing its numbered parameters: the events insert keeps only
/// the events of cases the first statement inserted (a case whose request key was
/// taken writes nothing), and the head is read last. The audit entries, linked onto
/// that head here, are the second query.
async fn write_batch_sqlite(
    mut tx: SqliteTx,
    batch: &[(&Work, Option<&str>)],
    chain: i32,
) -> Result<(Vec<CaseCreated>, Option<String>), StoreError> {
    let cases: Vec<&NewCase> = batch.iter().filter_map(|(w, _)| w.case()).collect();
    let events = case_events(batch);
    let sql = cases_events_and_head_sql(cases.len(), events.len());
    let rows = {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for case in &cases {
            query = bind_case(query, case);
        }
        for (event, trace, case_id) in &events {
            query = bind_event(query, event, *trace).bind(*case_id);
        }
        query.bind(chain).fetch_all(&mut *tx).await?
    };
    let mut inserted = Vec::with_capacity(cases.len());
    let mut head = None;
    for row in rows {
        let value: String = row.try_get(0)?;
        match row.columns().first().map(|c| c.name()) {
            Some("hash") => head = Some(value),
            _ => inserted.push(value),
        }
    }
    let written = sort_out(batch, &inserted);
    if written.audit.is_empty() {
        return Ok((written.outcome, None));
    }
    let head = head.ok_or_else(|| StoreError::Corrupt {
        kind: "audit chain",
        id: chain.to_string(),
        reason: "the chain has no head row".into(),
    })?;
    let audit = &written.audit;
    let links = link(head, audit);
    let sql = values_sql(INSERT_AUDIT_VALUES, AUDIT_COLUMNS, audit.len());
    {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        query = bind_audit(query, audit, &links, chain);
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    count_audit(audit);
    let head = links.last().map(|(_, _, hash)| hash.clone());
    Ok((written.outcome, head))
}

/// The SQLite batch in one hand-off to the writer connection's thread, linked onto
/// `head`, the head of `chain` this process wrote last: the cases (every one must be
/// new: a request key already taken fails the query), their events and the audit
/// entries, inside the transaction's savepoint ([`SqliteWriter::write_in_one`]).
/// If another process moved the head meanwhile, the database refuses the first
/// entry (`audit_link_checked`) and nothing of the batch stays. Returns the outcomes
/// and the chain's new head.
async fn write_batch_sqlite_at_once(
    writer: &Arc<SqliteWriter>,
    batch: &[(&Work, Option<&str>)],
    chain: i32,
    head: String,
) -> Result<(Vec<CaseCreated>, String), StoreError> {
    let cases: Vec<&NewCase> = batch.iter().filter_map(|(w, _)| w.case()).collect();
    let events = case_events(batch);
    let written = sort_out(
        batch,
        &cases
            .iter()
            .map(|c| c.record.id.clone())
            .collect::<Vec<_>>(),
    );
    let audit = &written.audit;
    let links = link(head, audit);
    // Anonymous placeholders, bound in the order of the statements.
    let mut sql = String::new();
    if !cases.is_empty() {
        sql.push_str(&crate::anonymous_values_sql(
            INSERT_CASES_VALUES,
            CASE_COLUMNS,
            cases.len(),
        ));
        sql.push_str(";\n");
    }
    if !events.is_empty() {
        sql.push_str(&crate::anonymous_values_sql(
            crate::outbox::INSERT_EVENTS,
            crate::outbox::EVENT_COLUMNS,
            events.len(),
        ));
        sql.push_str(";\n");
    }
    sql.push_str(&crate::anonymous_values_sql(
        INSERT_AUDIT_VALUES,
        AUDIT_COLUMNS,
        audit.len(),
    ));
    writer
        .write_in_one(&sql, async |conn, text| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(text));
            for case in &cases {
                query = bind_case(query, case);
            }
            for (event, trace, _) in &events {
                query = bind_event(query, event, *trace);
            }
            query = bind_audit(query, audit, &links, chain);
            query.execute(conn).await
        })
        .await?;
    count_audit(audit);
    let head = links
        .last()
        .map(|(_, _, hash)| hash.clone())
        .unwrap_or_default();
    Ok((written.outcome, head))
}

/// The events of every case in `batch`, in batch order, each with the trace context
/// of the call that queued its case and the id of its case.
fn case_events<'a>(
    batch: &[(&'a Work, Option<&'a str>)],
) -> Vec<(&'a DomainEvent, Option<&'a str>, &'a str)> {
    batch
        .iter()
        .filter_map(|(w, trace)| w.case().map(|case| (case, *trace)))
        .flat_map(|(case, trace)| {
            case.events
                .iter()
                .map(move |e| (e, trace, case.record.id.as_str()))
        })
        .collect()
}

/// A query of `VALUES` rows on SQLite.
type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds the [`CASE_COLUMNS`] columns of `case`.
fn bind_case<'q>(query: SqliteQuery<'q>, case: &'q NewCase) -> SqliteQuery<'q> {
    let r = &case.record;
    query
        .bind(&r.id)
        .bind(&r.request_key)
        .bind(&r.member_id)
        .bind(&r.requesting_npi)
        .bind(&r.servicing_npi)
        .bind(&r.status)
        .bind(&r.urgency)
        .bind(&r.queue)
        .bind(r.reviewer_id.clone())
        .bind(r.received_at)
        .bind(r.due_at)
        .bind(r.decided_at)
        .bind(Json(&r.doc))
        .bind(case.at)
}

/// Binds the eight columns of `event` in the outbox, with the trace context it carries.
fn bind_event<'q>(
    query: SqliteQuery<'q>,
    event: &'q DomainEvent,
    trace: Option<&'q str>,
) -> SqliteQuery<'q> {
    let member = event.member_id.as_ref().map(|m| m.as_str().to_owned());
    query
        .bind(&event.id)
        .bind(&event.kind)
        .bind(&event.aggregate_kind)
        .bind(&event.aggregate_id)
        .bind(member)
        .bind(event.occurred_at)
        .bind(Json(&event.payload))
        .bind(trace)
}

/// Binds the [`AUDIT_COLUMNS`] columns of each audit entry with its link on `chain`.
fn bind_audit<'q>(
    mut query: SqliteQuery<'q>,
    audit: &'q [(&'q AuditEntry, DateTime<Utc>)],
    links: &'q [(DateTime<Utc>, String, String)],
    chain: i32,
) -> SqliteQuery<'q> {
    for ((a, _), (at, prev, hash)) in audit.iter().zip(links) {
        query = query
            .bind(*at)
            .bind(&a.subject)
            .bind(&a.role)
            .bind(&a.rpc)
            .bind(&a.record_kind)
            .bind(&a.record_id)
            .bind(a.member_id.clone())
            .bind(a.outcome.as_str())
            .bind(prev)
            .bind(hash)
            .bind(i64::from(a.repeats))
            .bind(chain);
    }
    query
}

/// Columns of one event row in [`cases_events_and_head_sql`]: the event's eight and
/// the id of the case it belongs to.
const EVENT_VALUES_COLUMNS: usize = 9;

/// The first query of a SQLite batch of `cases` cases with `events` events: insert
/// the cases whose request key is new (returning their ids), insert the events of
/// those cases in batch order, and read the chain head (`hash`) of the last
/// parameter's chain. Case rows come first in the parameters, then event rows.
fn cases_events_and_head_sql(cases: usize, events: usize) -> String {
    let mut sql = String::new();
    if cases > 0 {
        sql.push_str(&values_sql(INSERT_CASES_VALUES, CASE_COLUMNS, cases));
        sql.push_str(NEW_REQUEST_KEYS_ONLY);
        sql.push_str(";\n");
    }
    if events > 0 {
        let first = cases * CASE_COLUMNS;
        let rows: Vec<String> = (0..events)
            .map(|row| {
                let cells: Vec<String> = (1..=EVENT_VALUES_COLUMNS)
                    .map(|col| format!("${}", first + row * EVENT_VALUES_COLUMNS + col))
                    .collect();
                // The row's place in the batch, written as a number, keeps the order.
                format!("({}, {row})", cells.join(", "))
            })
            .collect();
        sql.push_str(&format!(
            "INSERT INTO outbox_event (id, kind, aggregate_kind, aggregate_id, member_id,
                occurred_at, payload, trace_context)
             SELECT column1, column2, column3, column4, column5, column6, column7, column8
             FROM (VALUES {})
             WHERE EXISTS (SELECT 1 FROM precert_case WHERE id = column9)
             ORDER BY column10;\n",
            rows.join(", ")
        ));
    }
    let chain = cases * CASE_COLUMNS + events * EVENT_VALUES_COLUMNS + 1;
    sql.push_str(&format!("SELECT hash FROM audit_head WHERE id = ${chain}"));
    sql
}

/// Counts the audit entries of a committed batch.
fn count_audit(audit: &[(&AuditEntry, DateTime<Utc>)]) {
    for (entry, _) in audit {
        metrics::counter!(crate::AUDIT_ENTRIES_TOTAL, "outcome" => entry.outcome.as_str())
            .increment(1);
    }
}

/// What each job of `batch` did (a case whose id came back from the insert was
/// created; an audit entry is always written), and the events and audit entries to
/// write, in batch order, each event with the trace context of the call that queued
/// its case.
fn sort_out<'a>(batch: &[(&'a Work, Option<&'a str>)], inserted: &[String]) -> Written<'a> {
    let mut written = Written {
        outcome: Vec::with_capacity(batch.len()),
        events: Vec::new(),
        audit: Vec::with_capacity(batch.len()),
    };
    for (work, trace) in batch {
        match work {
            Work::Case(case) if inserted.contains(&case.record.id) => {
                written.outcome.push(CaseCreated::Created);
                written
                    .events
                    .extend(case.events.iter().map(|e| (e, *trace)));
                written.audit.push((&case.audit, case.at));
            }
            Work::Case(_) => written.outcome.push(CaseCreated::Duplicate),
            Work::Audit(entry, at) => {
                written.outcome.push(CaseCreated::Created);
                written.audit.push((entry, *at));
            }
        }
    }
    written
}

/// (time, previous hash, hash) of each audit entry, linked in batch order onto the
/// chain whose newest hash is `head`.
fn link(
    mut head: String,
    audit: &[(&AuditEntry, DateTime<Utc>)],
) -> Vec<(DateTime<Utc>, String, String)> {
    let mut links = Vec::with_capacity(audit.len());
    for (entry, at) in audit {
        let at = crate::audit::stored_time(*at);
        let hash = chain_hash(&head, at, entry);
        links.push((at, std::mem::replace(&mut head, hash.clone()), hash));
    }
    links
}

/// One field of every row, as the array bound to an `UNNEST` parameter.
fn column<'a, T, U>(rows: &'a [T], field: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(field).collect()
}

impl Store {
    /// Queues `work` for the writer tasks and waits for its transaction to commit;
    /// `Err(work)` when the writer tasks are gone (their runtime ended).
    async fn queued(&self, work: Work) -> Result<Result<CaseCreated, StoreError>, Work> {
        let (Store::Postgres { appender, .. } | Store::Sqlite { appender, .. }) = self;
        let (done, answer) = oneshot::channel();
        let trace = crate::trace::current();
        if let Err(refused) = appender.queue.send(Job { work, trace, done }) {
            return Err(refused.0.work);
        }
        // A writer that stops without answering was ended with its runtime; whether
        // the job committed is unknown (a retry of a request finds out).
        Ok(answer
            .await
            .unwrap_or(Err(StoreError::Database(sqlx::Error::WorkerCrashed))))
    }

    /// Creates a precertification case with its outbox events and audit entry, in one
    /// transaction, unless a case with its request key exists already. Cases created
    /// at the same time share transactions (see the module docs).
    pub async fn create_case(&self, case: NewCase) -> Result<CaseCreated, StoreError> {
        match self.queued(Work::Case(Box::new(case))).await {
            Ok(result) => result,
            Err(work) => self.write_alone(work).await,
        }
    }

    /// Records one access that changed nothing else (a read), committed before this
    /// returns. Entries recorded at the same time share transactions with each other
    /// and with new cases (see the module docs).
    pub async fn audit(&self, entry: &AuditEntry, at: DateTime<Utc>) -> Result<(), StoreError> {
        let result = match self.queued(Work::Audit(entry.clone(), at)).await {
            Ok(result) => result,
            Err(work) => self.write_alone(work).await,
        };
        result.map(|_| ())
    }

    /// Writes `work` in a transaction of its own, as the writer tasks would alone.
    async fn write_alone(&self, work: Work) -> Result<CaseCreated, StoreError> {
        let mut tx = self.begin().await?;
        match work {
            Work::Case(case) => return create_in_tx(tx, &case).await,
            Work::Audit(entry, at) => tx.append_audit(&entry, at).await?,
        }
        tx.commit().await?;
        Ok(CaseCreated::Created)
    }
}

async fn create_in_tx(mut tx: Tx, case: &NewCase) -> Result<CaseCreated, StoreError> {
    match tx.insert_case(&case.record, case.at).await {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) => return Ok(CaseCreated::Duplicate),
        Err(e) => return Err(e),
    }
    tx.append_events(&case.events).await?;
    tx.append_audit(&case.audit, case.at).await?;
    tx.commit().await?;
    Ok(CaseCreated::Created)
}
