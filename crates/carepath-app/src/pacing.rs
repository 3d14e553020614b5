//! How background work (event consumers, the notice dispatcher) shares the machine
//! with calls: while any call is in progress it rests between rounds, so callers keep
//! most of the machine and the backlog is worked off as soon as they let up; but once
//! the work in hand has waited longer than [`CATCH_UP_AFTER`], it stops resting until
//! it has caught up, so under sustained load its backlog stays a few seconds long
//! instead of growing for as long as the load lasts.

use std::{fmt, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The longest rest after one round.
const MAX_REST: Duration = Duration::from_millis(500);

/// Background work whose oldest item had waited longer than this when taken does not
/// rest: it is falling behind the calls that make its work.
pub const CATCH_UP_AFTER: Duration = Duration::from_secs(2);

/// What one round of background work did: how many items it handled, and how long
/// the oldest of them had waited when it was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    pub handled: usize,
    pub behind: Duration,
}

impl Round {
    /// A round of `handled` items, the oldest waiting since `oldest`, taken at `now`.
    pub fn of(handled: usize, oldest: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Round {
        let behind = oldest
            .and_then(|at| (now - at).to_std().ok())
            .unwrap_or_default();
        Round { handled, behind }
    }
}

/// Counts the calls a door has in progress (the gRPC server's admission limit does).
pub trait CallsInProgress: Send + Sync + fmt::Debug {
    fn in_progress(&self) -> usize;
}

/// A door with no calls: background work never rests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCalls;

impl CallsInProgress for NoCalls {
    fn in_progress(&self) -> usize {
        0
    }
}

/// While calls are in progress, a round of background work that took `t` is followed
/// by a rest of `t × (1 − share) / share` (at most half a second), so it holds about
/// `share` of the time; with no call in progress, or with work that waited longer than
/// [`CATCH_UP_AFTER`], it runs flat out.
#[derive(Debug, Clone)]
pub struct Pacing {
    calls: Arc<dyn CallsInProgress>,
    share: f64,
}

impl Pacing {
    /// Background work that gives way to the calls `calls` counts; `share` is
    /// clamped to [0.01, 1], and 1 never rests.
    pub fn behind(calls: Arc<dyn CallsInProgress>, share: f64) -> Self {
        Pacing {
            calls,
            share: share.clamp(0.01, 1.0),
        }
    }

    /// Background work that never rests (no door counts calls).
    pub fn flat_out() -> Self {
        Pacing::behind(Arc::new(NoCalls), 1.0)
    }

    /// The rest owed after a round that took `worked` and whose oldest item had
    /// waited `behind` when taken, given the calls in progress.
    pub fn rest_after(&self, worked: Duration, behind: Duration) -> Duration {
        if behind > CATCH_UP_AFTER {
            return Duration::ZERO;
        }
        rest(worked, self.calls.in_progress() > 0, self.share)
    }

    /// Rests as owed after a round that took `worked` (see [`Pacing::rest_after`]);
    /// returns early when `stop` is cancelled.
    pub async fn rest(&self, worked: Duration, behind: Duration, stop: &CancellationToken) {
        let rest = self.rest_after(worked, behind);
        if !rest.is_zero() {
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(rest) => {}
            }
        }
    }
}

/// How a loop of background rounds runs ([`run_rounds`]).
#[derive(Debug, Clone, Copy)]
pub struct Lanes {
    /// Rounds under way at once while rounds come back full and need no rest.
    pub most: usize,
    /// Items a full round handles (its claim's limit).
    pub full: usize,
    /// Pause after a round that found nothing, unless woken first.
    pub idle_poll: Duration,
    /// Pause after a round that came back short of full: the backlog is gone, and the
    /// next claim waits this long to find a batch's worth, instead of claiming
    /// whatever one commit brought (each claim is a write and a commit of its own).
    pub gather: Duration,
}

/// The usual [`Lanes::gather`]: far below the seconds a notice or a referral may take,
/// and long enough that a steady trickle of events is claimed a dozen at a time.
pub const GATHER: Duration = Duration::from_millis(50);

/// Runs rounds of background work until `stop` is cancelled; the rounds under way
/// are finished first. After a round that found nothing the loop waits for
/// `idle_poll` or a change on `wake`; after one that handled something it rests as
/// `pacing` says. One lane of rounds runs always; while rounds come back full (a
/// backlog) and `pacing` lets them run without rest (no call in progress, or the work
/// has fallen behind), up to `lanes.most` run at once, each working while the others
/// wait on the store, until one comes back short or has to rest.
pub async fn run_rounds<R, F>(
    lanes: Lanes,
    pacing: &Pacing,
    wake: watch::Receiver<u64>,
    stop: &CancellationToken,
    round: R,
) where
    R: Fn() -> F,
    F: Future<Output = Round>,
{
    let backlog = watch::Sender::new(false);
    let all = (0..lanes.most.max(1))
        .map(|n| run_lane(n == 0, lanes, pacing, wake.clone(), &backlog, stop, &round));
    futures::future::join_all(all).await;
}

/// One lane of [`run_rounds`]: the first polls for work; the others wait until a
/// round comes back full with no rest owed, and run until one does not.
async fn run_lane<R, F>(
    first: bool,
    lanes: Lanes,
    pacing: &Pacing,
    mut wake: watch::Receiver<u64>,
    backlog: &watch::Sender<bool>,
    stop: &CancellationToken,
    round: &R,
) where
    R: Fn() -> F,
    F: Future<Output = Round>,
{
    let mut full = backlog.subscribe();
    while !stop.is_cancelled() {
        if !first {
            tokio::select! {
                () = stop.cancelled() => break,
                seen = full.wait_for(|full| *full) => if seen.is_err() { break },
            }
        }
        let started = std::time::Instant::now();
        let done = round().await;
        let worked = started.elapsed();
        let short = done.handled < lanes.full;
        // More lanes only where the work may run flat out (no call in progress, or
        // fallen behind): while it gives way to calls, one lane holds its share.
        let more = !short && pacing.rest_after(worked, done.behind).is_zero();
        backlog.send_if_modified(|full| std::mem::replace(full, more) != more);
        if done.handled > 0 {
            pacing.rest(worked, done.behind, stop).await;
            if short {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(lanes.gather.saturating_sub(started.elapsed())) => {}
                }
            }
        } else if first {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(lanes.idle_poll) => {}
                _ = wake.changed() => {}
            }
        }
    }
}

fn rest(worked: Duration, busy: bool, share: f64) -> Duration {
    if !busy || share >= 1.0 {
        return Duration::ZERO;
    }
    worked.mul_f64((1.0 - share) / share).min(MAX_REST)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn background_rests_only_while_calls_are_in_progress() {
        let worked = Duration::from_millis(10);
        assert_eq!(rest(worked, false, 0.25), Duration::ZERO);
        assert_eq!(rest(worked, true, 0.25), Duration::from_millis(30));
        assert_eq!(rest(worked, true, 0.5), Duration::from_millis(10));
        assert_eq!(
            rest(worked, true, 1.0),
            Duration::ZERO,
            "a share of 1 never rests"
        );
        assert_eq!(rest(Duration::from_secs(2), true, 0.25), MAX_REST);
    }

    /// Runs rounds of `sizes` (one round's items each, in turn) in `most` lanes and
    /// returns the most rounds that were under way at once, and the items handled.
    async fn rounds_at_once(most: usize, full: usize, sizes: Vec<usize>) -> (usize, usize) {
        rounds_paced(Pacing::flat_out(), Duration::ZERO, most, full, sizes).await
    }

    /// As [`rounds_at_once`], under `pacing`, every round's oldest item `behind`.
    async fn rounds_paced(
        pacing: Pacing,
        behind: Duration,
        most: usize,
        full: usize,
        sizes: Vec<usize>,
    ) -> (usize, usize) {
        let lanes = Lanes {
            most,
            full,
            idle_poll: Duration::from_millis(1),
            gather: Duration::from_millis(1),
        };
        let stop = CancellationToken::new();
        let (_wake, woken) = watch::channel(0);
        let next = AtomicUsize::new(0);
        let (under_way, most_at_once, handled) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        let (sizes, next, stop) = (&sizes, &next, &stop);
        let (under_way, most_at_once, handled) = (&under_way, &most_at_once, &handled);
        run_rounds(lanes, &pacing, woken, stop, || async move {
            let now = under_way.fetch_add(1, Ordering::SeqCst) + 1;
            most_at_once.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
            under_way.fetch_sub(1, Ordering::SeqCst);
            let size = sizes
                .get(next.fetch_add(1, Ordering::SeqCst))
                .copied()
                .unwrap_or_else(|| {
                    stop.cancel();
                    0
                });
            handled.fetch_add(size, Ordering::SeqCst);
            Round {
                handled: size,
                behind,
            }
        })
        .await;
        (
            most_at_once.load(Ordering::SeqCst),
            handled.load(Ordering::SeqCst),
        )
    }

    #[tokio::test]
    async fn a_backlog_runs_in_several_lanes_and_light_work_in_one() {
        let (at_once, handled) = rounds_at_once(4, 8, vec![8; 40]).await;
        assert_eq!(at_once, 4, "full rounds bring every lane in");
        assert_eq!(handled, 320);
        let (at_once, handled) = rounds_at_once(4, 8, vec![7; 40]).await;
        assert_eq!(at_once, 1, "rounds short of full stay in one lane");
        assert_eq!(handled, 280);
        let (at_once, _) = rounds_at_once(1, 8, vec![8; 40]).await;
        assert_eq!(at_once, 1, "one lane at most");
    }

    #[tokio::test]
    async fn work_that_gives_way_to_calls_keeps_to_one_lane_until_it_falls_behind() {
        let calls = Arc::new(Gauge::default());
        calls.0.store(3, Ordering::Relaxed);
        let pacing = Pacing::behind(calls, 0.9);
        let (at_once, handled) =
            rounds_paced(pacing.clone(), Duration::ZERO, 4, 8, vec![8; 20]).await;
        assert_eq!(at_once, 1, "calls in progress, and the work not behind");
        assert_eq!(handled, 160);
        let behind = CATCH_UP_AFTER + Duration::from_secs(1);
        let (at_once, _) = rounds_paced(pacing, behind, 4, 8, vec![8; 20]).await;
        assert_eq!(at_once, 4, "fallen behind: every lane");
    }

    #[derive(Debug, Default)]
    struct Gauge(AtomicUsize);

    impl CallsInProgress for Gauge {
        fn in_progress(&self) -> usize {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn a_round_is_behind_by_the_wait_of_its_oldest_item() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let round = Round::of(3, Some(now - chrono::Duration::milliseconds(2_500)), now);
        assert_eq!(round.handled, 3);
        assert_eq!(round.behind, Duration::from_millis(2_500));
        assert_eq!(Round::of(0, None, now).behind, Duration::ZERO);
        // An item stamped ahead of this process's clock is not behind at all.
        let ahead = Round::of(1, Some(now + chrono::Duration::seconds(1)), now);
        assert_eq!(ahead.behind, Duration::ZERO);
    }

    #[test]
    fn pacing_follows_the_calls_in_progress() {
        let calls = Arc::new(Gauge::default());
        let pacing = Pacing::behind(calls.clone(), 0.25);
        let worked = Duration::from_millis(4);
        let fresh = Duration::from_millis(100);
        assert_eq!(
            pacing.rest_after(worked, fresh),
            Duration::ZERO,
            "idle server"
        );
        calls.0.store(1, Ordering::Relaxed);
        assert_eq!(pacing.rest_after(worked, fresh), Duration::from_millis(12));
        assert_eq!(
            pacing.rest_after(worked, CATCH_UP_AFTER + Duration::from_millis(1)),
            Duration::ZERO,
            "work that waited too long catches up without resting"
        );
        calls.0.store(0, Ordering::Relaxed);
        assert_eq!(pacing.rest_after(worked, fresh), Duration::ZERO);
    }
}
