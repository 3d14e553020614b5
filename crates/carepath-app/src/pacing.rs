//! How background work (event consumers, the notice dispatcher) shares the machine
//! with calls: while any call is in progress it rests between rounds, so callers keep
//! most of the machine and the backlog is worked off as soon as they let up; but once
//! the work in hand has waited longer than [`CATCH_UP_AFTER`], it stops resting until
//! it has caught up, so under sustained load its backlog stays a few seconds long
//! instead of growing for as long as the load lasts.

use std::{fmt, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};

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
