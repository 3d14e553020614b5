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
        let holder = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple());
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

    /// The turns of `job` every `period` (periods counted from the Unix epoch); see
    /// [`Periodic::next`].
    pub fn periodic(&self, job: &'static str, period: Duration) -> Periodic {
        Periodic {
            jobs: self.clone(),
            job,
            period,
            lease: chrono::Duration::from_std(period.saturating_mul(LEASE_PERIODS))
                .unwrap_or(chrono::Duration::minutes(3)),
            held: false,
            started: false,
        }
    }
}

/// One periodic job's turns on this process.
#[derive(Debug)]
pub struct Periodic {
    jobs: Jobs,
    job: &'static str,
    period: Duration,
    lease: chrono::Duration,
    /// Whether this process held the lease at its last look.
    held: bool,
    /// Whether the first look (at once, not at a period's start) has been taken.
    started: bool,
}

impl Periodic {
    /// Waits for this process's next run of the job and returns true when it is due:
    /// this process holds the job's lease (it held it already, or the holder's lease
    /// ran out) and has recorded the period's run. The first look is at once, the next
    /// ones at the start of each period. Returns false once `stop` is cancelled, after
    /// giving the lease up so another process takes over at once.
    pub async fn next(&mut self, stop: &CancellationToken) -> bool {
        loop {
            if self.started {
                let wait = until_next(self.jobs.clock.now(), self.period);
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
            self.started = true;
            if stop.is_cancelled() {
                self.give_up().await;
                return false;
            }
            if self.look().await {
                return true;
            }
        }
    }

    /// Takes or renews the lease and, when held, records this period's run: true when
    /// this process is to run it.
    async fn look(&mut self) -> bool {
        let (job, holder) = (self.job, &*self.jobs.holder);
        let store = &self.jobs.store;
        let now = self.jobs.clock.now();
        let held = match store.hold_job(job, holder, now + self.lease, now).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(job, error = %e, "periodic job lease unknown");
                false
            }
        };
        if held != self.held {
            tracing::info!(job, holder, held, "periodic job lease changed hands");
            self.held = held;
        }
        if !held {
            return false;
        }
        match store
            .record_job_run(job, period_of(now, self.period), holder, now)
            .await
        {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::warn!(job, error = %e, "periodic job run not recorded");
                false
            }
        }
    }

    async fn give_up(&mut self) {
        if !self.held {
            return;
        }
        self.held = false;
        if let Err(e) = self
            .jobs
            .store
            .release_job(self.job, &self.jobs.holder)
            .await
        {
            tracing::warn!(job = self.job, error = %e, "periodic job lease not given up");
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
        assert_eq!(
            until_next(at, Duration::from_secs(60)),
            Duration::from_millis(54_500)
        );
        assert_eq!(
            until_next(at, Duration::from_secs(1)),
            Duration::from_millis(500)
        );
    }
}
