//! Periodic jobs on several processes sharing one database: each job runs on one
//! process at a time (the holder of its lease row, taken over by another process
//! once the holder stops renewing it), and each period of a job runs once: the run
//! is recorded (`job_run`) before the job starts, and a period already recorded is
//! not run again, whoever recorded it.

use std::{sync::Arc, time::Duration};

use carepath_core::Clock;
use carepath_store::Store;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

/// Periods a lease lasts past its last renewal: a holder renews it every period, so
/// one slow round does not hand the job over, and a dead holder's job is taken over
/// within this many periods.
pub const LEASE_PERIODS: u32 = 3;

/// The periodic jobs of one process: its name as a lease holder, and the store and
/// clock the leases live on.
#[derive(Clone)]
pub struct Jobs {
    store: Store,
    clock: Arc<dyn Clock>,
    holder: Arc<str>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// The period `at` falls in: whole periods of `period` since the Unix epoch.
pub fn period_of(at: DateTime<Utc>, period: Duration) -> i64 {
    let millis = i64::try_from(period.as_millis()).unwrap_or(i64::MAX).max(1);
    at.timestamp_millis().div_euclid(millis)
}

/// How long from `at` to the start of the next period.
fn until_next(at: DateTime<Utc>, period: Duration) -> Duration {
    let millis = i64::try_from(period.as_millis()).unwrap_or(i64::MAX).max(1);
    let into = at.timestamp_millis().rem_euclid(millis);
    Duration::from_millis(u64::try_from(millis - into).unwrap_or(0))
}

impl Jobs {
    /// The jobs of this process, named after its process id and a random suffix
    /// (`<pid>-<uuid>`), so an operator can tell which process holds a job.
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Jobs {
        let holder = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        Jobs {
            store,
            clock,
            holder: holder.into(),
        }
    }

    /// This process's name as a lease holder.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Runs `job` once per `period` (periods counted from the Unix epoch) while this
    /// process holds its lease, until `stop`; a process that does not hold it looks
    /// again each period and takes the job over once the holder's lease has run out.
    /// On stopping the lease is given up, so another process takes over at once.
    pub async fn run_periodic(
        &self,
        job: &'static str,
        period: Duration,
        stop: CancellationToken,
        mut run: impl AsyncFnMut(),
    ) {
        let lease = chrono::Duration::from_std(period.saturating_mul(LEASE_PERIODS))
            .unwrap_or(chrono::Duration::minutes(3));
        let mut held = false;
        while !stop.is_cancelled() {
            let now = self.clock.now();
            match self.store.hold_job(job, &self.holder, now + lease, now).await {
                Ok(now_held) => {
                    if now_held != held {
                        tracing::info!(job, holder = %self.holder, held = now_held, "periodic job lease changed hands");
                    }
                    held = now_held;
                }
                Err(e) => {
                    tracing::warn!(job, error = %e, "periodic job lease unknown");
                    held = false;
                }
            }
            if held {
                let period_no = period_of(now, period);
                match self
                    .store
                    .record_job_run(job, period_no, &self.holder, now)
                    .await
                {
                    Ok(true) => run().await,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(job, error = %e, "periodic job run not recorded"),
                }
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(until_next(self.clock.now(), period)) => {}
            }
        }
        if held && let Err(e) = self.store.release_job(job, &self.holder).await {
            tracing::warn!(job, error = %e, "periodic job lease not given up");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_count_from_the_epoch() {
        let at = DateTime::from_timestamp_millis(125_500).unwrap();
        assert_eq!(period_of(at, Duration::from_secs(60)), 2);
        assert_eq!(period_of(at, Duration::from_secs(1)), 125);
        assert_eq!(until_next(at, Duration::from_secs(60)), Duration::from_millis(54_500));
        assert_eq!(until_next(at, Duration::from_secs(1)), Duration::from_millis(500));
    }
}
