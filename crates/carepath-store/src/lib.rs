//! carepath's storage: one API over SQLite and PostgreSQL, chosen by the database URL.
//!
//! Every query is written once and compiled twice, once per backend, by the
//! [`on_db!`] and [`on_tx!`] macros: the SQL text is shared (placeholders are `$1`,
//! which both engines accept) and only the few statements that must differ (row locks
//! on PostgreSQL) are spelled out per backend. Callers never see which backend they
//! talk to.
//!
//! Invariants:
//! - a state change and the domain events describing it commit in one transaction
//!   ([`Tx::append_event`]);
//! - audit entries form a hash chain that only grows ([`Tx::append_audit`]); its
//!   oldest entries leave only by the exact positions of an archived segment
//!   ([`Store::remove_archived_audit`]);
//! - timestamps are passed in by the caller (from its clock), never read here.

mod appender;
mod audit;
mod cases;
mod coverage;
mod directory;
mod gauges;
mod history;
mod jobs;
mod notify;
mod oncology;
mod outbox;
mod page;
mod precert;
mod retention;
mod secondopinion;
mod smart;
mod subscriptions;
pub mod trace;
mod writer;

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    Connection, PgConnection, PgPool, Postgres, SqlitePool, Transaction,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

pub use appender::{CaseAppender, CaseCreated, NewCase};
pub use audit::{
    AUDIT_CHAINS, AuditEntry, AuditHead, AuditOutcome, AuditQuery, AuditRecord, AuditVerification,
    MAX_AUDIT_BATCH,
};
pub use cases::{ManagedCaseFilter, ManagedCaseRecord};
pub use coverage::CoverageAssertionRecord;
pub use directory::{ImportSummary, MemberFilter, ProviderFilter, StaffFilter};
pub use gauges::{
    AUDIT_ENTRIES_TOTAL, BEGIN_WAIT_SECONDS, LabelledCount, OutboxBacklog, PoolState,
};
pub use history::{HistoryCase, HistoryNotice, HistoryWritten, MAX_HISTORY_BATCH, SentNotice};
pub use jobs::{JOB_RUNS_KEPT, JobRun, NOTICE_CHANNEL, OPINION_CHANNEL, OUTBOX_CHANNEL, Wakeups};
pub use notify::{
    DeliveryOutcome, LeasedNotice, NewNotice, NoticeAttempt, NoticeCount, NoticeRecord,
};
pub use oncology::PlanRecord;
pub use outbox::{ClaimedEvent, DeliveryState, OutboxStats};
pub use page::{Page, json_bytes, micros};
pub use precert::{
    CASES_PER_READ, CaseFilter, CaseRecord, GoldCardRecord, RuleListRecord, SubmissionParties,
};
pub use retention::{
    AUDIT_CHAIN_START, ArchivedAudit, AuditSegmentRecord, ChainedAuditRecord, MAX_ARCHIVE_READ,
    MAX_PARTITION_MONTHS, OutboxRemoved, RETENTION_BATCH, audit_entry_hash, rest_after,
};
pub use secondopinion::{OpinionMessageRecord, OpinionRequestFilter, OpinionRequestRecord};
pub use smart::{ASSERTION_PURGE_BATCH, FhirClientRecord};
/// The JSON column type of stored documents.
pub use sqlx::types::Json;
pub use subscriptions::{
    FailureRecorded, MAX_DELIVERY_ERROR_CHARS, NewSubscriptionRecord, NotificationRecord,
    OWNERS_PER_READ, SubscriptionRecord,
};
pub use writer::{SqliteTx, SqliteWriter};

/// Which engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Creates the SQLite database file readable and writable by its owner only (0600),
/// when it does not exist yet, so health data is not left readable by other accounts
/// whatever the umask; SQLite gives its `-wal` and `-shm` files the same mode. A file
/// that exists is left as it is. A missing folder is an error naming it.
fn create_owner_only(path: &std::path::Path) -> std::io::Result<()> {
    let name = path.as_os_str();
    if name.is_empty() || name == ":memory:" || path.exists() {
        return Ok(());
    }
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !folder.is_dir()
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("the folder {} does not exist", folder.display()),
        ));
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Errors of the storage layer. `NotFound` and `Conflict` are meaningful to callers;
/// the rest are internal causes the gRPC edge logs and never sends.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} {id} already exists")]
    Conflict { kind: &'static str, id: String },
    #[error("{kind} {id} is referenced but does not exist")]
    MissingReference { kind: &'static str, id: String },
    #[error("unsupported database url {0:?}: expected sqlite:// or postgres://")]
    UnsupportedUrl(String),
    /// The database could not be opened at start: `target` names it (the SQLite
    /// file's path, or the PostgreSQL host and port), `reason` says why.
    #[error("cannot open {target}: {reason}")]
    Open { target: String, reason: String },
    #[error("stored {kind} {id} cannot be read: {reason}")]
    Corrupt {
        kind: &'static str,
        id: String,
        reason: String,
    },
    /// A bad argument to a store call, naming it.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A connection pool on one of the two backends. Cloning is cheap (pools are shared).
#[derive(Debug, Clone)]
pub enum Store {
    /// SQLite allows one writer at a time: writes go through one shared connection
    /// with group commit ([`SqliteWriter`]), while reads use their own pool and never
    /// wait for a writer (WAL mode).
    Sqlite {
        writer: Arc<SqliteWriter>,
        read: SqlitePool,
        appender: Arc<CaseAppender>,
        /// Never fired: one process writes a SQLite file, and its loops poll.
        wakeups: Arc<Wakeups>,
    },
    /// New precertification cases are written in shared transactions by `appender`
    /// (on both backends).
    Postgres {
        pool: PgPool,
        appender: Arc<CaseAppender>,
        /// Fired by the process's listener ([`Store::listen`]).
        wakeups: Arc<Wakeups>,
    },
}

/// Runs `$body` with `$c` bound to the pool of whichever backend `$store` is on. The
/// body is compiled once per backend, so one query text serves both.
#[macro_export]
macro_rules! on_db {
    ($store:expr, $c:ident => $body:expr) => {
        match $store {
            $crate::Store::Sqlite { read: $c, .. } => $body,
            $crate::Store::Postgres { pool: $c, .. } => $body,
        }
    };
}

/// Runs `$body`, one statement made from `$s` (the SQL text `$sql`, asserted safe),
/// as a transaction of its own with `$c` its connection: on SQLite in one hand-off to
/// the writer's thread with its savepoint, and the batch's begin and commit when they
/// fall to it ([`SqliteWriter::write_in_one`]); on PostgreSQL alone on the pool,
/// where a single statement commits by itself. `$body` returns a `sqlx` result.
#[macro_export]
macro_rules! write_alone {
    ($store:expr, $sql:expr, |$s:ident, $c:ident| $body:expr) => {
        match $store {
            $crate::Store::Sqlite { writer, .. } => {
                writer
                    .write_in_one($sql, async |$c, text| {
                        let $s = sqlx::AssertSqlSafe(text);
                        $body
                    })
                    .await
            }
            $crate::Store::Postgres { pool: $c, .. } => {
                let $s = sqlx::AssertSqlSafe($sql);
                $body.map_err($crate::StoreError::from)
            }
        }
    };
}

/// Runs `$body` with `$c` bound to the connection of the open transaction `$tx`.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx {
            $crate::Tx::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::Tx::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}

/// An open transaction. Dropped without [`Tx::commit`], it rolls back.
#[derive(Debug)]
pub enum Tx {
    Sqlite(SqliteTx),
    Postgres(Transaction<'static, Postgres>),
}

/// `head` (an `INSERT ... VALUES` without its rows) followed by `rows` rows of
/// `columns` numbered placeholders each: `($1, $2), ($3, $4)`.
pub(crate) fn values_sql(head: &str, columns: usize, rows: usize) -> String {
    values_sql_after(head, columns, rows, 0)
}

/// [`values_sql`] numbered after `first` leading parameters: two rows of two after two
/// are `($3, $4), ($5, $6)`.
pub(crate) fn values_sql_after(head: &str, columns: usize, rows: usize, first: usize) -> String {
    let mut sql = String::from(head);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 1..=columns {
            if col > 1 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", first + row * columns + col));
        }
        sql.push(')');
    }
    sql
}

/// [`values_sql`] with anonymous placeholders, `(?, ?), (?, ?)`, for SQLite only,
/// in a query whose parameters are all anonymous (they are bound in order, across
/// its statements). SQLite finds a numbered parameter's name by a walk over the
/// statement's names, so binding n of them costs n²; anonymous ones cost n.
pub(crate) fn anonymous_values_sql(head: &str, columns: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    let mut sql = String::with_capacity(head.len() + rows * (row.len() + 2));
    sql.push_str(head);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
    sql
}

/// `$1, $2, …, $count`: the numbered placeholders of an `IN (...)` list.
pub(crate) fn placeholder_list(count: usize) -> String {
    (1..=count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `IN (...)` list of integer positions, written into the statement (numbers only,
/// so nothing a caller sends reaches the SQL text).
pub(crate) fn seq_list(seqs: &[i64]) -> String {
    seqs.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Warns when the PostgreSQL server does not vacuum by itself: the claimed queues
/// (migration 0023) then keep every dead row version, and each claim walks past more
/// of them until someone runs `VACUUM`.
async fn warn_without_autovacuum(pool: &PgPool) {
    let setting: Result<String, _> = sqlx::query_scalar("SELECT current_setting('autovacuum')")
        .fetch_one(pool)
        .await;
    if setting.is_ok_and(|on| on == "off") {
        tracing::warn!(
            "PostgreSQL's autovacuum is off: the notice and outbox queues will slow down as \
             dead rows gather in their claim indexes; turn it on, or vacuum them regularly"
        );
    }
}

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

impl Store {
    /// Opens the database named by `url`: `sqlite://PATH` (the file is created on first
    /// use) or `postgres://...`. Does not migrate; call [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?;
            let target = format!("SQLite database {}", options.get_filename().display());
            let open_error = |e: &dyn std::fmt::Display| StoreError::Open {
                target: target.clone(),
                reason: e.to_string(),
            };
            create_owner_only(options.get_filename()).map_err(|e| open_error(&e))?;
            let options = options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a committed transaction survives power loss, not only a crash.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // Each write is a savepoint in a batch (see `SqliteWriter`); its
                // statement journal then lives in memory instead of a temporary file
                // opened and written per statement.
                .pragma("temp_store", "memory");
            let writer = SqliteWriter::open(options.clone())
                .await
                .map_err(|e| open_error(&e))?;
            // A connection to a local file does not go stale: no check before use
            // (sqlx's default pings every connection on every acquire, a round trip to
            // the connection's thread before each query).
            let read = SqlitePoolOptions::new()
                .max_connections(4)
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            let appender = CaseAppender::start(appender::Target::Sqlite(writer.clone()));
            return Ok(Store::Sqlite {
                writer,
                read,
                appender,
                wakeups: Arc::default(),
            });
        }
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            // sqlx checks each pooled connection before use (a round trip): after a
            // server restart or failover a dead connection is replaced instead of
            // failing a call. Skipping the check measured no faster (BENCHMARKS.md).
            let options = PgConnectOptions::from_str(url)?;
            let target = format!(
                "PostgreSQL at {}:{}",
                options.get_host(),
                options.get_port()
            );
            // One connection first, so a refusal is reported as the server's or the
            // network's own words rather than as the pool's timeout.
            let first = tokio::time::timeout(
                Duration::from_secs(10),
                PgConnection::connect_with(&options),
            )
            .await
            .map_err(|_| StoreError::Open {
                target: target.clone(),
                reason: "no answer within 10 s".into(),
            })?
            .map_err(|e| StoreError::Open {
                target: target.clone(),
                reason: e.to_string(),
            })?;
            let _ = first.close().await;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .map_err(|e| StoreError::Open {
                    target,
                    reason: e.to_string(),
                })?;
            let appender = CaseAppender::start(appender::Target::Postgres(pool.clone()));
            return Ok(Store::Postgres {
                pool,
                appender,
                wakeups: Arc::default(),
            });
        }
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }

    /// Applies the backend's migrations from `migrations/<backend>/`; idempotent.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite { writer, .. } => {
                writer
                    .exclusive(async |conn| Ok(SQLITE_MIGRATOR.run(conn).await?))
                    .await?
            }
            Store::Postgres { pool, .. } => {
                POSTGRES_MIGRATOR.run(pool).await?;
                warn_without_autovacuum(pool).await;
            }
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite { .. } => Backend::Sqlite,
            Store::Postgres { .. } => Backend::Postgres,
        }
    }

    /// Starts a read-write transaction. The time it waited for a connection (on
    /// SQLite, for its turn on the writer) is recorded as [`BEGIN_WAIT_SECONDS`].
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let started = std::time::Instant::now();
        let (tx, backend) = match self {
            Store::Sqlite { writer, .. } => (Tx::Sqlite(writer.begin().await?), "sqlite"),
            Store::Postgres { pool, .. } => (Tx::Postgres(pool.begin().await?), "postgres"),
        };
        metrics::histogram!(BEGIN_WAIT_SECONDS, "backend" => backend)
            .record(started.elapsed().as_secs_f64());
        Ok(tx)
    }

    /// Waits until every transaction committed so far is visible to reads. On SQLite a
    /// write may be released into a batch that is not yet committed (see
    /// [`SqliteWriter`]); use this before reading back a row another transaction just
    /// wrote, e.g. after a [`StoreError::Conflict`].
    pub async fn settle(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite { writer, .. } => writer.settle().await,
            Store::Postgres { .. } => Ok(()),
        }
    }

    /// Checks that the database answers; used by the health service.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_db!(self, c => sqlx::query("SELECT 1").execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        match self {
            Store::Sqlite { writer, read, .. } => {
                read.close().await;
                writer.close().await;
            }
            Store::Postgres { pool, .. } => pool.close().await,
        }
    }
}

impl Tx {
    /// Rolls back, ignoring errors: for paths that found nothing to write.
    pub(crate) async fn rollback_quietly(self) {
        let _ = match self {
            Tx::Sqlite(t) => t.rollback().await,
            Tx::Postgres(t) => t.rollback().await.map_err(StoreError::from),
        };
    }

    /// Makes every change of the transaction durable, or none of them.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Turns a unique-constraint violation into [`StoreError::Conflict`]; other errors
/// pass through.
pub fn conflict_on_unique(err: sqlx::Error, kind: &'static str, id: &str) -> StoreError {
    if let sqlx::Error::Database(db) = &err
        && db.is_unique_violation()
    {
        return StoreError::Conflict {
            kind,
            id: id.to_owned(),
        };
    }
    StoreError::Database(err)
}
