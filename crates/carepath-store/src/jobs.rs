//! Several processes on one database: who runs a periodic job (a lease row with an
//! expiry, so it works on both backends), the record of each run, and the wake-ups
//! PostgreSQL sends other processes when a commit adds events or notices.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, watch};

use crate::{Store, StoreError, on_db};

/// The channel a statement appending outbox events notifies (migration 0017).
pub const OUTBOX_CHANNEL: &str = "carepath_outbox";
/// The channel a statement storing notices notifies.
pub const NOTICE_CHANNEL: &str = "carepath_notice";
/// The channel a second-opinion request's change notifies, with the request's id.
pub const OPINION_CHANNEL: &str = "carepath_opinion";

/// Runs kept per job: a week of one-minute periods. Recording a run removes the
/// job's runs older than this many periods, so the table stays bounded.
pub const JOB_RUNS_KEPT: i64 = 7 * 24 * 60;
/// Request ids kept for a slow reader of [`Wakeups::opinions`] before it lags.
const OPINION_BUFFER: usize = 1024;
/// The longest payload passed on (a request id is far shorter); longer ones are dropped.
const MAX_PAYLOAD_CHARS: usize = 128;

/// One run of a periodic job, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    /// The job's name.
    pub job: String,
    /// The period it ran for: whole periods since the Unix epoch.
    pub period: i64,
    /// The process that ran it.
    pub holder: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// Wake-ups of this process's background work. On PostgreSQL, once
/// [`Store::listen`] has started the one listener of the process, every commit that
/// appends events or stores notices, on any process, bumps the matching counter, and
/// a second-opinion request's change is passed on by id; without a listener (SQLite,
/// or notifications off) nothing fires and the background loops poll.
#[derive(Debug)]
pub struct Wakeups {
    outbox: watch::Sender<u64>,
    notices: watch::Sender<u64>,
    opinions: broadcast::Sender<String>,
    listening: AtomicBool,
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups {
            outbox: watch::Sender::new(0),
            notices: watch::Sender::new(0),
            opinions: broadcast::Sender::new(OPINION_BUFFER),
            listening: AtomicBool::new(false),
        }
    }
}

impl Wakeups {
    /// Changes each time events may have been appended.
    pub fn outbox(&self) -> watch::Receiver<u64> {
        self.outbox.subscribe()
    }

    /// Changes each time notices may have been stored.
    pub fn notices(&self) -> watch::Receiver<u64> {
        self.notices.subscribe()
    }

    /// The ids of second-opinion requests changed by some process.
    pub fn opinions(&self) -> broadcast::Receiver<String> {
        self.opinions.subscribe()
    }

    /// Whether a listener passes other processes' commits on.
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    fn deliver(&self, channel: &str, payload: &str) {
        match channel {
            OUTBOX_CHANNEL => self.outbox.send_modify(|n| *n = n.wrapping_add(1)),
            NOTICE_CHANNEL => self.notices.send_modify(|n| *n = n.wrapping_add(1)),
            OPINION_CHANNEL if payload.len() <= MAX_PAYLOAD_CHARS => {
                // No receiver is fine: nobody watches.
                let _ = self.opinions.send(payload.to_owned());
            }
            _ => {}
        }
    }

    /// Wakes every loop: notifications may have been missed.
    fn wake_all(&self) {
        self.outbox.send_modify(|n| *n = n.wrapping_add(1));
        self.notices.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Store {
    /// This store's wake-ups (see [`Wakeups`]).
    pub fn wakeups(&self) -> &Arc<Wakeups> {
        match self {
            Store::Sqlite { wakeups, .. } | Store::Postgres { wakeups, .. } => wakeups,
        }
    }

    /// Starts the process's one listener for other processes' commits (PostgreSQL:
    /// `LISTEN` on a connection of its own, which sqlx re-opens when it drops; a
    /// reconnection wakes every loop, since notifications may have been missed while
    /// it was down). Returns false on SQLite, where one process writes the file and
    /// the loops poll. Starting it again does nothing. The listener ends when the
    /// pool is closed.
    pub async fn listen(&self) -> Result<bool, StoreError> {
        let Store::Postgres { pool, wakeups, .. } = self else {
            return Ok(false);
        };
        if wakeups.listening.swap(true, Ordering::SeqCst) {
            return Ok(true);
        }
        let mut listener = match sqlx::postgres::PgListener::connect_with(pool).await {
            Ok(l) => l,
            Err(e) => {
                wakeups.listening.store(false, Ordering::SeqCst);
                return Err(e.into());
            }
        };
        if let Err(e) = listener
            .listen_all([OUTBOX_CHANNEL, NOTICE_CHANNEL, OPINION_CHANNEL])
            .await
        {
            wakeups.listening.store(false, Ordering::SeqCst);
            return Err(e.into());
        }
        let wakeups = wakeups.clone();
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => wakeups.deliver(n.channel(), n.payload()),
                    Ok(None) => {
                        tracing::warn!("database listener reconnecting; waking every loop");
                        wakeups.wake_all();
                    }
                    Err(sqlx::Error::PoolClosed) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "database listener failed; retrying");
                        wakeups.wake_all();
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
            wakeups.listening.store(false, Ordering::SeqCst);
        });
        Ok(true)
    }

    /// Takes or renews the lease of `job` for `holder` until `until`: true when
    /// `holder` holds it now (it held it already, or the last holder's lease ran out
    /// before `now`, or nobody held it).
    pub async fn hold_job(
        &self,
        job: &str,
        holder: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let held: Option<(String,)> = crate::on_tx!(&mut tx, c => sqlx::query_as(
            "INSERT INTO job_lease (job, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE job_lease.holder = excluded.holder OR job_lease.expires_at < $4
             RETURNING holder")
            .bind(job).bind(holder).bind(until).bind(now).fetch_optional(c).await)?;
        tx.commit().await?;
        Ok(held.is_some_and(|(h,)| h == holder))
    }

    /// Gives the lease of `job` up, when `holder` has it, so another process takes
    /// the job over at its next look instead of after the lease runs out.
    pub async fn release_job(&self, job: &str, holder: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        crate::on_tx!(&mut tx, c => sqlx::query("DELETE FROM job_lease WHERE job = $1 AND holder = $2")
            .bind(job).bind(holder).execute(c).await.map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(())
    }

    /// The process holding the lease of `job`, with its expiry, if any.
    pub async fn job_holder(
        &self,
        job: &str,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        Ok(on_db!(self, c => sqlx::query_as(
            "SELECT holder, expires_at FROM job_lease WHERE job = $1")
            .bind(job).fetch_optional(c).await)?)
    }

    /// Records that `holder` runs `job` for `period`: false when that period has run
    /// already (on any process), and then the caller does not run it. Runs more than
    /// [`JOB_RUNS_KEPT`] periods old are removed.
    pub async fn record_job_run(
        &self,
        job: &str,
        period: i64,
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let inserted = crate::on_tx!(&mut tx, c => sqlx::query(
            "INSERT INTO job_run (job, period, holder, started_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (job, period) DO NOTHING")
            .bind(job).bind(period).bind(holder).bind(now).execute(c).await
            .map(|r| r.rows_affected()))?;
        if inserted == 1 {
            crate::on_tx!(&mut tx, c => sqlx::query("DELETE FROM job_run WHERE job = $1 AND period < $2")
                .bind(job).bind(period.saturating_sub(JOB_RUNS_KEPT)).execute(c).await
                .map(|r| r.rows_affected()))?;
        }
        tx.commit().await?;
        Ok(inserted == 1)
    }

    /// The recorded runs of `job` in periods from `from`, oldest first, at most `limit`.
    pub async fn job_runs(
        &self,
        job: &str,
        from: i64,
        limit: u32,
    ) -> Result<Vec<JobRun>, StoreError> {
        let rows: Vec<(String, i64, String, DateTime<Utc>)> = on_db!(self, c => sqlx::query_as(
            "SELECT job, period, holder, started_at FROM job_run
             WHERE job = $1 AND period >= $2 ORDER BY period LIMIT $3")
            .bind(job).bind(from).bind(i64::from(limit)).fetch_all(c).await)?;
        Ok(rows
            .into_iter()
            .map(|(job, period, holder, started_at)| JobRun {
                job,
                period,
                holder,
                started_at,
            })
            .collect())
    }
}
