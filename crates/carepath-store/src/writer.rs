//! The SQLite writer: one connection that every read-write transaction shares, with
//! group commit.
//!
//! SQLite allows one writer at a time, so writes queue in-process for this connection
//! instead of failing with "database is locked". Each [`Tx`](crate::Tx) on SQLite is a
//! savepoint inside a longer batch transaction. When a transaction commits, its
//! savepoint is released; if other transactions are queued behind it, it leaves the
//! batch open for them and waits, and the last one of a burst (or the one that fills
//! the batch, or finds it open for longer than [`MAX_BATCH_OPEN`]) commits the batch
//! with a single fsync for all of them. A transaction's
//! `commit` returns only once its batch is durable, so an acknowledged write is on
//! disk exactly as before; a caller alone pays no wait at all.
//!
//! Every statement is a hand-off to the connection's worker thread and back, so the
//! bookkeeping statements travel together where they can: a batch begins with its
//! first savepoint (`BEGIN IMMEDIATE; SAVEPOINT tx`), and the transaction that ends a
//! batch releases its savepoint and commits in one (`RELEASE tx; COMMIT`).
//!
//! The write connection never checkpoints: copying the write-ahead log back into the
//! database file (and syncing that file) would stall every transaction queued behind
//! the commit that crossed SQLite's threshold, for tens of milliseconds. A task with
//! its own connection checkpoints instead, every [`CHECKPOINT_EVERY`], without
//! blocking the writer (`PRAGMA wal_checkpoint(PASSIVE)`).
//!
//! Invariants:
//! - `commit` returns `Ok` only after the batch holding the transaction committed;
//!   if that batch fails, every transaction in it gets the error;
//! - a transaction dropped or rolled back undoes only its own savepoint;
//! - no batch stays open while nobody is writing: the last writer of a burst commits
//!   it, and a waiter that sees no progress for [`FLUSH_AFTER`] commits it itself.
//! - no transaction's commit waits on the writers queued behind it for much longer
//!   than [`MAX_BATCH_OPEN`] plus the one transaction running then.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex as StdMutex, Weak,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{ConnectOptions, Connection, SqliteConnection, sqlite::SqliteConnectOptions};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use crate::StoreError;

/// Most transactions one batch holds before it is committed regardless of waiters.
const MAX_BATCH: usize = 256;
/// How long a batch stays open for the transactions queued behind it: the transaction
/// that finds it older commits it, others waiting or not. Without it a steady queue of
/// writers (background work catching up) would hold the first transaction's commit
/// back until the batch was full.
const MAX_BATCH_OPEN: Duration = Duration::from_millis(4);
/// How long a transaction waits for its batch to be committed by others before it
/// commits the batch itself.
const FLUSH_AFTER: Duration = Duration::from_millis(20);
/// How often the checkpoint task copies the write-ahead log into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// Pages the write-ahead log may hold before the writer checkpoints it itself (64 MiB
/// of 4 KiB pages).
const WAL_PAGES_BEFORE_CHECKPOINT: &str = "16384";

/// The shared write connection and the batch it is filling.
pub struct SqliteWriter {
    state: Arc<Mutex<WriterState>>,
    /// Transactions waiting to start; while there are any, a committing transaction
    /// leaves the batch open for them.
    queued: AtomicUsize,
    /// The newest committed (or failed) batch number.
    finished: watch::Sender<u64>,
    /// Batches whose commit failed, so their transactions report it.
    failed: StdMutex<HashSet<u64>>,
    /// Set by [`SqliteWriter::close`]; ends the checkpoint task.
    closed: AtomicBool,
    /// The newest hash of each audit chain as this process last wrote it, so the
    /// appender can link a batch without reading the head first. Only a hint: the
    /// database refuses an entry that does not link onto its chain's head
    /// (`audit_link_checked`, migration 0021), and a transaction that appends to a
    /// chain any other way forgets it here.
    heads: StdMutex<HashMap<i32, String>>,
    options: SqliteConnectOptions,
}

impl std::fmt::Debug for SqliteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteWriter")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .field("finished", &*self.finished.borrow())
            .finish_non_exhaustive()
    }
}

struct WriterState {
    /// `None` once the store is closed.
    conn: Option<SqliteConnection>,
    /// The number of the batch being filled.
    batch: u64,
    /// Whether the batch transaction has begun.
    open: bool,
    /// When the open batch began.
    opened_at: Option<Instant>,
    /// Transactions released into the open batch and waiting for its commit.
    members: usize,
    /// A transaction's savepoint that was neither released nor rolled back (its `Tx`
    /// was dropped); undone before anything else uses the connection.
    dangling: bool,
}

/// The open transaction of one caller: the write connection, held exclusively, inside
/// a savepoint. Dereferences to the connection for queries.
pub struct SqliteTx {
    guard: Option<OwnedMutexGuard<WriterState>>,
    writer: Arc<SqliteWriter>,
}

impl std::fmt::Debug for SqliteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTx").finish_non_exhaustive()
    }
}

impl SqliteWriter {
    /// The head of audit chain `chain` as this process last wrote it, if known.
    pub(crate) fn known_head(&self, chain: i32) -> Option<String> {
        self.heads
            .lock()
            .expect("not poisoned")
            .get(&chain)
            .cloned()
    }

    /// Records the head of `chain` after a write of this process, or forgets it.
    pub(crate) fn remember_head(&self, chain: i32, head: Option<String>) {
        let mut heads = self.heads.lock().expect("not poisoned");
        match head {
            Some(hash) => heads.insert(chain, hash),
            None => heads.remove(&chain),
        };
    }

    /// Transactions waiting for the connection now.
    pub fn queued(&self) -> u32 {
        u32::try_from(self.queued.load(Ordering::Relaxed)).unwrap_or(u32::MAX)
    }

    /// Opens the write connection, and the checkpoint task's connection.
    pub async fn open(options: SqliteConnectOptions) -> Result<Arc<Self>, StoreError> {
        let checkpointer = options.connect().await?;
        let conn = options
            .clone()
            .pragma("wal_autocheckpoint", WAL_PAGES_BEFORE_CHECKPOINT)
            .connect()
            .await?;
        let writer = Arc::new(SqliteWriter {
            state: Arc::new(Mutex::new(WriterState {
                conn: Some(conn),
                batch: 1,
                open: false,
                opened_at: None,
                members: 0,
                dangling: false,
            })),
            queued: AtomicUsize::new(0),
            finished: watch::Sender::new(0),
            failed: StdMutex::new(HashSet::new()),
            closed: AtomicBool::new(false),
            heads: StdMutex::new(HashMap::new()),
            options,
        });
        tokio::spawn(checkpoint(checkpointer, Arc::downgrade(&writer)));
        Ok(writer)
    }

    pub fn connect_options(&self) -> &SqliteConnectOptions {
        &self.options
    }

    async fn lock(&self) -> OwnedMutexGuard<WriterState> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let guard = self.state.clone().lock_owned().await;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        guard
    }

    /// Starts a transaction: a savepoint in the open batch (beginning one if needed).
    pub async fn begin(self: &Arc<Self>) -> Result<SqliteTx, StoreError> {
        let mut guard = self.lock().await;
        guard.undo_dangling().await?;
        if guard.open {
            guard.execute("SAVEPOINT tx").await?;
        } else {
            if let Err(e) = guard.execute("BEGIN IMMEDIATE; SAVEPOINT tx").await {
                // The batch may have begun without its savepoint: end it, empty.
                let _ = guard.execute("ROLLBACK").await;
                return Err(e);
            }
            guard.open = true;
            guard.opened_at = Some(Instant::now());
        }
        guard.dangling = true;
        Ok(SqliteTx {
            guard: Some(guard),
            writer: self.clone(),
        })
    }

    /// Runs a whole transaction in one hand-off to the connection's thread: `run` is
    /// given the connection and the text to send, `sql` wrapped in the
    /// transaction's savepoint, behind the batch's `BEGIN IMMEDIATE` when this opens
    /// the batch and ahead of its `COMMIT` when nobody else is waiting to write.
    /// `sql` may hold several statements; `run` must send the text as one query
    /// (its numbered parameters are shared by the statements).
    ///
    /// If the query fails, its savepoint is undone and the batch goes on as if the
    /// transaction never began (committed now if this one was to end it); where
    /// SQLite no longer holds the savepoint (the failure was the batch's own begin
    /// or commit), the whole batch is rolled back and each of its transactions gets
    /// the error, as when a commit fails. Returns once the transaction is durable.
    pub async fn write_in_one<T>(
        self: &Arc<Self>,
        sql: &str,
        run: impl AsyncFnOnce(&mut SqliteConnection, &str) -> Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        let mut guard = self.lock().await;
        guard.undo_dangling().await?;
        let opens = !guard.open;
        let ends = self.ends_batch(&guard);
        let text = format!(
            "{}SAVEPOINT tx;\n{sql};\nRELEASE tx{}",
            if opens { "BEGIN IMMEDIATE; " } else { "" },
            if ends { "; COMMIT" } else { "" }
        );
        let conn = guard.conn.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        let outcome = run(conn, &text).await;
        // From here the batch is open unless the text ended it (or failed to begin it).
        guard.open = true;
        if opens {
            guard.opened_at = Some(Instant::now());
        }
        match outcome {
            Ok(value) => {
                guard.members += 1;
                if ends {
                    self.close_batch(&mut guard, false);
                    Ok(value)
                } else {
                    let batch = guard.batch;
                    drop(guard);
                    self.durable(batch).await?;
                    Ok(value)
                }
            }
            Err(e) => {
                if guard.execute("ROLLBACK TO tx; RELEASE tx").await.is_ok() {
                    // Only this transaction's statements are undone; the batch holds
                    // what others released into it.
                    if ends {
                        let _ = self.end_batch(&mut guard, "COMMIT").await;
                    }
                } else {
                    // The begin, the savepoint or the commit itself failed: nothing
                    // of the batch is known to stand.
                    let _ = guard.execute("ROLLBACK").await;
                    self.close_batch(&mut guard, true);
                }
                Err(e.into())
            }
        }
    }

    /// Whether the transaction releasing its savepoint now commits the batch: nobody
    /// else is waiting to write, the batch is full, or it has been open for
    /// [`MAX_BATCH_OPEN`].
    fn ends_batch(&self, state: &WriterState) -> bool {
        self.queued.load(Ordering::SeqCst) == 0
            || state.members + 1 >= MAX_BATCH
            || state
                .opened_at
                .is_some_and(|at| at.elapsed() >= MAX_BATCH_OPEN)
    }

    /// Runs `f` on the write connection outside any batch (migrations): the open batch
    /// is committed first.
    pub async fn exclusive<T>(
        &self,
        f: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.lock().await;
        guard.undo_dangling().await?;
        self.flush(&mut guard).await?;
        let conn = guard.conn.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        f(conn).await
    }

    /// Makes every transaction released so far durable.
    pub async fn settle(&self) -> Result<(), StoreError> {
        let mut guard = self.lock().await;
        guard.undo_dangling().await?;
        self.flush(&mut guard).await
    }

    /// Commits what is pending and closes the connection; later transactions fail.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut guard = self.lock().await;
        let _ = guard.undo_dangling().await;
        let _ = self.flush(&mut guard).await;
        if let Some(conn) = guard.conn.take() {
            let _ = conn.close().await;
        }
    }

    /// Commits the open batch, if any, and tells its waiting transactions.
    async fn flush(&self, guard: &mut WriterState) -> Result<(), StoreError> {
        self.end_batch(guard, "COMMIT").await
    }

    /// Ends the open batch, if any, with `sql` (a `COMMIT`, after whatever must go
    /// with it), and tells its waiting transactions; if `sql` fails the batch is
    /// rolled back and every transaction in it gets the error.
    async fn end_batch(
        &self,
        guard: &mut WriterState,
        sql: &'static str,
    ) -> Result<(), StoreError> {
        if !guard.open {
            return Ok(());
        }
        let result = guard.execute(sql).await;
        if result.is_err() {
            // Whatever SQLite kept of the batch is abandoned with it.
            let _ = guard.execute("ROLLBACK").await;
        }
        self.close_batch(guard, result.is_err());
        result
    }

    /// Records that the open batch ended, committed or (`failed`) not, and tells its
    /// waiting transactions.
    fn close_batch(&self, guard: &mut WriterState, failed: bool) {
        let batch = guard.batch;
        if failed {
            self.failed.lock().expect("not poisoned").insert(batch);
        }
        guard.open = false;
        guard.opened_at = None;
        guard.members = 0;
        guard.batch += 1;
        self.finished.send_replace(batch);
    }

    /// Waits until `batch` is committed, committing it after [`FLUSH_AFTER`] without
    /// progress.
    async fn durable(&self, batch: u64) -> Result<(), StoreError> {
        let mut finished = self.finished.subscribe();
        loop {
            if *finished.borrow_and_update() >= batch {
                return if self.failed.lock().expect("not poisoned").contains(&batch) {
                    Err(StoreError::Database(sqlx::Error::Protocol(format!(
                        "write batch {batch} failed to commit"
                    ))))
                } else {
                    Ok(())
                };
            }
            if tokio::time::timeout(FLUSH_AFTER, finished.changed())
                .await
                .is_err()
            {
                let mut guard = self.lock().await;
                if guard.batch == batch {
                    guard.undo_dangling().await?;
                    // Errors reach every member through `failed`, this one included.
                    let _ = self.flush(&mut guard).await;
                }
            }
        }
    }

    /// After a transaction ended without committing: commits the batch if nobody
    /// else is about to.
    async fn tidy(&self, mut guard: OwnedMutexGuard<WriterState>) {
        if guard.undo_dangling().await.is_err() {
            return;
        }
        if self.queued.load(Ordering::SeqCst) == 0 {
            let _ = self.flush(&mut guard).await;
        }
    }
}

/// Copies the write-ahead log into the database file every [`CHECKPOINT_EVERY`] until
/// the writer is closed or dropped. A passive checkpoint copies what no reader still
/// needs and never waits for, or blocks, the writer; the log starts over from its
/// beginning once all of it has been copied.
async fn checkpoint(mut conn: SqliteConnection, writer: Weak<SqliteWriter>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match writer.upgrade() {
            Some(w) if !w.closed.load(Ordering::SeqCst) => {}
            _ => break,
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await
        {
            tracing::warn!(error = %e, "checkpoint of the SQLite write-ahead log failed; retrying");
        }
    }
    let _ = conn.close().await;
}

impl WriterState {
    async fn execute(&mut self, sql: &'static str) -> Result<(), StoreError> {
        let conn = self.conn.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        sqlx::query(sql).execute(conn).await?;
        Ok(())
    }

    async fn undo_dangling(&mut self) -> Result<(), StoreError> {
        if self.dangling {
            self.execute("ROLLBACK TO tx; RELEASE tx").await?;
            self.dangling = false;
        }
        Ok(())
    }
}

impl SqliteTx {
    /// Forgets the remembered head of audit chain `chain`, which this transaction
    /// appends to outside the appender.
    pub(crate) fn forget_head(&self, chain: i32) {
        self.writer.remember_head(chain, None);
    }

    fn state(&mut self) -> &mut OwnedMutexGuard<WriterState> {
        self.guard.as_mut().expect("transaction in use")
    }

    /// Releases the savepoint and returns once the batch holding it is durable.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        let writer = self.writer.clone();
        let mut guard = self.guard.take().expect("transaction in use");
        if !writer.ends_batch(&guard) {
            // Others are waiting: leave the batch open for them.
            // If the release fails the savepoint stays dangling and is undone later.
            guard.execute("RELEASE tx").await?;
            guard.dangling = false;
            guard.members += 1;
            let batch = guard.batch;
            drop(guard);
            writer.durable(batch).await
        } else {
            // The last of a burst: release and commit in one hand-off. If either
            // fails, the batch is rolled back, this savepoint with it.
            guard.dangling = false;
            guard.members += 1;
            writer.end_batch(&mut guard, "RELEASE tx; COMMIT").await
        }
    }

    /// Undoes this transaction's changes.
    pub async fn rollback(mut self) -> Result<(), StoreError> {
        let writer = self.writer.clone();
        let guard = self.guard.take().expect("transaction in use");
        writer.tidy(guard).await;
        Ok(())
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        // Dropped without commit or rollback: the savepoint is undone by the next user
        // of the connection, or here in the background so no batch is left open.
        if let Some(guard) = self.guard.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let writer = self.writer.clone();
            runtime.spawn(async move { writer.tidy(guard).await });
        }
    }
}

impl std::ops::Deref for SqliteTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.guard
            .as_ref()
            .and_then(|g| g.conn.as_ref())
            .expect("transaction in use")
    }
}

impl std::ops::DerefMut for SqliteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.state().conn.as_mut().expect("connection open")
    }
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqliteJournalMode;

    use super::*;

    /// A writer on a new database in a new folder, with `table` created; returns the
    /// folder, the database file and its connect options too.
    async fn writer_with(
        table: &str,
    ) -> (
        Arc<SqliteWriter>,
        std::path::PathBuf,
        std::path::PathBuf,
        SqliteConnectOptions,
    ) {
        let dir = std::env::temp_dir().join(format!("carepath-writer-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let writer = SqliteWriter::open(options.clone()).await.unwrap();
        let mut tx = writer.begin().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE TABLE {table}")))
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        (writer, dir, path, options)
    }

    #[tokio::test]
    async fn the_log_reaches_the_database_file_without_the_writer_checkpointing() {
        let (writer, dir, path, _) = writer_with("t (x BLOB)").await;
        let before = std::fs::metadata(&path).unwrap().len();
        // 2 MiB in 64 commits: far below the writer's own checkpoint threshold, so
        // only the checkpoint task can copy it into the database file.
        for _ in 0..64 {
            let mut tx = writer.begin().await.unwrap();
            sqlx::query("INSERT INTO t (x) VALUES (zeroblob(32768))")
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::metadata(&path).unwrap().len() < before + 2_000_000 {
            assert!(
                Instant::now() < deadline,
                "the database file never received the logged pages"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        writer.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_batch_open_too_long_commits_though_others_wait() {
        let (writer, dir, _, options) = writer_with("t (x INTEGER)").await;

        let mut first = writer.begin().await.unwrap();
        sqlx::query("INSERT INTO t (x) VALUES (1)")
            .execute(&mut *first)
            .await
            .unwrap();
        // A second writer queues behind the first and, once it has the connection,
        // holds it until told to commit.
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let second = tokio::spawn({
            let writer = writer.clone();
            async move {
                let mut tx = writer.begin().await.unwrap();
                sqlx::query("INSERT INTO t (x) VALUES (2)")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                wait.await.unwrap();
                tx.commit().await.unwrap();
            }
        });
        while writer.queued() == 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(MAX_BATCH_OPEN * 2).await;
        // The batch is older than MAX_BATCH_OPEN: the first commits it at once instead
        // of leaving it open for the second, which would hold it until told.
        tokio::time::timeout(Duration::from_secs(10), first.commit())
            .await
            .expect("the first transaction's commit waited for the writer queued behind it")
            .unwrap();
        let mut reader = options.connect().await.unwrap();
        let seen: Vec<i64> = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(&mut reader)
            .await
            .unwrap();
        assert_eq!(seen, [1], "the first write is durable, the second not yet");
        go.send(()).unwrap();
        second.await.unwrap();
        let seen: Vec<i64> = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(&mut reader)
            .await
            .unwrap();
        assert_eq!(seen, [1, 2]);
        writer.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
