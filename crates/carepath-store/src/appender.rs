//! New precertification cases written together.
//!
//! Each statement is a round trip: to a server process on PostgreSQL, to the writer
//! connection's thread on SQLite (where every write waits its turn on the one
//! connection). A new case needs four statements (case, events, chain head, audit
//! entry) plus a commit or a savepoint release. So [`Store::create_case`] hands the
//! case to a queue, and a few writer tasks each take everything queued and write it in
//! one transaction: one multi-row insert per table for the whole batch. A lone case is
//! written at once; under load the batches grow by themselves. PostgreSQL binds each
//! column as an array (`UNNEST`), one statement text for any batch size; SQLite has no
//! arrays and takes numbered `VALUES` rows.
//!
//! Invariants:
//! - `create_case` returns only after the transaction holding the case committed;
//! - a case, its events and its audit entry commit together or not at all;
//! - a batch that fails is written again one case at a time, so a case whose writing
//!   fails fails alone, with its own error;
//! - the audit entries of a batch are linked, in batch order, onto one chain whose
//!   head stays locked until commit, exactly as single appends are.
//!
//! On SQLite a batch is one savepoint on the writer connection, which then commits it
//! durably with whatever else is queued ([`crate::SqliteWriter`]).

use std::sync::Arc;

use carepath_core::DomainEvent;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, types::Json};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{
    AuditEntry, CaseRecord, SqliteWriter, Store, StoreError, Tx,
    audit::{chain_hash, head_sql, next_chain},
    on_tx, values_sql,
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

struct Job {
    case: NewCase,
    /// The trace context of the call that queued the case, for its events.
    trace: Option<String>,
    done: oneshot::Sender<Result<CaseCreated, StoreError>>,
}

/// The queue of cases waiting to be written, shared by the writer tasks.
#[derive(Debug)]
pub struct CaseAppender {
    queue: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("case", &self.case.record.id)
            .finish()
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
    let cases: Vec<(&NewCase, Option<&str>)> =
        jobs.iter().map(|j| (&j.case, j.trace.as_deref())).collect();
    let results = match write_batch(target, &cases).await {
        Ok(created) => created.into_iter().map(Ok).collect(),
        // Each case again on its own, so only a case that cannot be written fails.
        Err(_) if jobs.len() > 1 => {
            let mut results = Vec::with_capacity(jobs.len());
            for case in &cases {
                results.push(match write_batch(target, &[*case]).await {
                    Ok(created) => Ok(created[0]),
                    Err(e) => Err(e),
                });
            }
            results
        }
        Err(e) => vec![Err(e)],
    };
    for (job, result) in jobs.into_iter().zip(results) {
        // The caller may have gone (its call was cancelled); the case stands.
        let _ = job.done.send(result);
    }
}

const INSERT_CASES: &str = "INSERT INTO precert_case (id, request_key, member_id, requesting_npi,
        servicing_npi, status, urgency, queue, reviewer_id, received_at, due_at, decided_at, doc,
        updated_at)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[],
        $12::timestamptz[], $13::jsonb[], $14::timestamptz[])
    ON CONFLICT (request_key) DO NOTHING
    RETURNING id";

const INSERT_EVENTS: &str = "INSERT INTO outbox_event (id, kind, aggregate_kind, aggregate_id,
        member_id, occurred_at, payload, trace_context)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::timestamptz[], $7::jsonb[], $8::text[])";

const INSERT_AUDIT: &str = "INSERT INTO audit_log (at, subject, role, rpc, record_kind, record_id,
        member_id, outcome, prev_hash, hash, chain)
    SELECT *, $11::int FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[],
        $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])";

/// Writes `cases` in one transaction: those whose request key is new, with their
/// events and audit entries, in batch order, so each case's events keep theirs and the
/// audit chain links in that order.
async fn write_batch(
    target: &Target,
    cases: &[(&NewCase, Option<&str>)],
) -> Result<Vec<CaseCreated>, StoreError> {
    match target {
        Target::Postgres(pool) => write_batch_postgres(pool, cases).await,
        Target::Sqlite(writer) => {
            write_batch_values(Tx::Sqlite(writer.begin().await?), cases).await
        }
    }
}

/// The PostgreSQL batch: every column bound as an array (`UNNEST` yields its arrays
/// in order).
async fn write_batch_postgres(
    pool: &PgPool,
    traced: &[(&NewCase, Option<&str>)],
) -> Result<Vec<CaseCreated>, StoreError> {
    let cases: Vec<&NewCase> = traced.iter().map(|(c, _)| *c).collect();
    let cases = cases.as_slice();
    let mut tx = pool.begin().await?;
    let inserted: Vec<String> = sqlx::query_scalar(INSERT_CASES)
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
        .fetch_all(&mut *tx)
        .await?;
    let (outcome, created) = sort_out(cases, &inserted);
    if created.is_empty() {
        return Ok(outcome);
    }

    let events: Vec<(&DomainEvent, Option<&str>)> = traced_events(traced, &created);
    if !events.is_empty() {
        sqlx::query(INSERT_EVENTS)
            .bind(column(&events, |e| e.0.id.clone()))
            .bind(column(&events, |e| e.0.kind.clone()))
            .bind(column(&events, |e| e.0.aggregate_kind.clone()))
            .bind(column(&events, |e| e.0.aggregate_id.clone()))
            .bind(column(&events, |e| {
                e.0.member_id.as_ref().map(|m| m.as_str().to_owned())
            }))
            .bind(column(&events, |e| e.0.occurred_at))
            .bind(column(&events, |e| Json(&e.0.payload)))
            .bind(column(&events, |e| e.1.map(str::to_owned)))
            .execute(&mut *tx)
            .await?;
    }

    let chain = next_chain();
    let head: String = sqlx::query_scalar(head_sql(crate::Backend::Postgres))
        .bind(chain)
        .fetch_one(&mut *tx)
        .await?;
    let links = link(head, &created);
    sqlx::query(INSERT_AUDIT)
        .bind(column(&links, |l| l.0))
        .bind(column(&created, |c| c.audit.subject.clone()))
        .bind(column(&created, |c| c.audit.role.clone()))
        .bind(column(&created, |c| c.audit.rpc.clone()))
        .bind(column(&created, |c| c.audit.record_kind.clone()))
        .bind(column(&created, |c| c.audit.record_id.clone()))
        .bind(column(&created, |c| c.audit.member_id.clone()))
        .bind(column(&created, |c| c.audit.outcome.as_str().to_owned()))
        .bind(column(&links, |l| l.1.clone()))
        .bind(column(&links, |l| l.2.clone()))
        .bind(chain)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    count_audit(&created);
    Ok(outcome)
}

const INSERT_CASES_VALUES: &str = "INSERT INTO precert_case (id, request_key, member_id,
        requesting_npi, servicing_npi, status, urgency, queue, reviewer_id, received_at, due_at,
        decided_at, doc, updated_at)
    VALUES ";
const CASE_COLUMNS: usize = 14;
const NEW_REQUEST_KEYS_ONLY: &str = " ON CONFLICT (request_key) DO NOTHING RETURNING id";

const INSERT_AUDIT_VALUES: &str = "INSERT INTO audit_log (at, subject, role, rpc, record_kind,
        record_id, member_id, outcome, prev_hash, hash, chain)
    VALUES ";
const AUDIT_COLUMNS: usize = 11;

/// The batch as numbered `VALUES` rows, in the open transaction `tx` (SQLite: a
/// savepoint on the writer connection). At most [`MAX_BATCH`] cases: 896 parameters,
/// far below SQLite's limit.
async fn write_batch_values(
    mut tx: Tx,
    traced: &[(&NewCase, Option<&str>)],
) -> Result<Vec<CaseCreated>, StoreError> {
    let cases: Vec<&NewCase> = traced.iter().map(|(c, _)| *c).collect();
    let cases = cases.as_slice();
    let sql = values_sql(INSERT_CASES_VALUES, CASE_COLUMNS, cases.len()) + NEW_REQUEST_KEYS_ONLY;
    let inserted: Vec<String> = on_tx!(&mut tx, c => {
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()));
        for case in cases {
            let r = &case.record;
            query = query
                .bind(&r.id).bind(&r.request_key).bind(&r.member_id).bind(&r.requesting_npi)
                .bind(&r.servicing_npi).bind(&r.status).bind(&r.urgency).bind(&r.queue)
                .bind(r.reviewer_id.clone()).bind(r.received_at).bind(r.due_at)
                .bind(r.decided_at).bind(Json(&r.doc)).bind(case.at);
        }
        query.fetch_all(c).await
    })?;
    let (outcome, created) = sort_out(cases, &inserted);
    if created.is_empty() {
        return Ok(outcome);
    }
    let events = traced_events(traced, &created);
    tx.append_traced_events(&events).await?;

    let chain = next_chain();
    let backend = tx.backend();
    let head: String =
        on_tx!(&mut tx, c => sqlx::query_scalar(head_sql(backend)).bind(chain).fetch_one(c).await)?;
    let links = link(head, &created);
    let sql = values_sql(INSERT_AUDIT_VALUES, AUDIT_COLUMNS, created.len());
    on_tx!(&mut tx, c => {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for (case, (at, prev, hash)) in created.iter().zip(&links) {
            let a = &case.audit;
            query = query
                .bind(*at).bind(&a.subject).bind(&a.role).bind(&a.rpc).bind(&a.record_kind)
                .bind(&a.record_id).bind(a.member_id.clone()).bind(a.outcome.as_str())
                .bind(prev).bind(hash).bind(chain);
        }
        query.execute(c).await.map(|r| r.rows_affected())
    })?;
    tx.commit().await?;
    count_audit(&created);
    Ok(outcome)
}

/// Counts the audit entries of a committed batch.
fn count_audit(created: &[&NewCase]) {
    for case in created {
        metrics::counter!(crate::AUDIT_ENTRIES_TOTAL, "outcome" => case.audit.outcome.as_str())
            .increment(1);
    }
}

/// Which of `cases` were written (their ids came back from the insert), and those
/// cases, in batch order.
fn sort_out<'a>(
    cases: &[&'a NewCase],
    inserted: &[String],
) -> (Vec<CaseCreated>, Vec<&'a NewCase>) {
    let outcome: Vec<CaseCreated> = cases
        .iter()
        .map(|c| match inserted.contains(&c.record.id) {
            true => CaseCreated::Created,
            false => CaseCreated::Duplicate,
        })
        .collect();
    let created = cases
        .iter()
        .zip(&outcome)
        .filter(|(_, o)| **o == CaseCreated::Created)
        .map(|(c, _)| *c)
        .collect();
    (outcome, created)
}

/// The events of the `created` cases in batch order, each with the trace context of
/// the call that queued its case.
fn traced_events<'a>(
    traced: &[(&'a NewCase, Option<&'a str>)],
    created: &[&'a NewCase],
) -> Vec<(&'a DomainEvent, Option<&'a str>)> {
    traced
        .iter()
        .filter(|(case, _)| created.iter().any(|c| std::ptr::eq(*c, *case)))
        .flat_map(|(case, trace)| case.events.iter().map(|e| (e, *trace)))
        .collect()
}

/// (time, previous hash, hash) of each case's audit entry, linked in batch order onto
/// the chain whose newest hash is `head`.
fn link(mut head: String, created: &[&NewCase]) -> Vec<(DateTime<Utc>, String, String)> {
    let mut links = Vec::with_capacity(created.len());
    for case in created {
        let at = crate::audit::stored_time(case.at);
        let hash = chain_hash(&head, at, &case.audit);
        links.push((at, std::mem::replace(&mut head, hash.clone()), hash));
    }
    links
}

/// One field of every row, as the array bound to an `UNNEST` parameter.
fn column<'a, T, U>(rows: &'a [T], field: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(field).collect()
}

impl Store {
    /// Creates a precertification case with its outbox events and audit entry, in one
    /// transaction, unless a case with its request key exists already. Cases created
    /// at the same time share transactions (see the module docs).
    pub async fn create_case(&self, case: NewCase) -> Result<CaseCreated, StoreError> {
        let (Store::Postgres { appender, .. } | Store::Sqlite { appender, .. }) = self;
        let (done, answer) = oneshot::channel();
        let trace = crate::trace::current();
        if let Err(refused) = appender.queue.send(Job { case, trace, done }) {
            // The writer tasks are gone (their runtime ended): write it here.
            let case = refused.0.case;
            return create_in_tx(self.begin().await?, &case).await;
        }
        // A writer that stops without answering was ended with its runtime; whether
        // the case committed is unknown, and a retry of the request finds out.
        answer
            .await
            .unwrap_or(Err(StoreError::Database(sqlx::Error::WorkerCrashed)))
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
