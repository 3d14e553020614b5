//! Per-caller rate limits, shared by every door: one token bucket per key (an
//! authenticated caller, or for unauthenticated endpoints the peer's address), so one
//! caller can never take what others need.
//!
//! Only keys that reached the limiter get a bucket, and [`KeyedLimiter::forget_idle`]
//! (called every minute by the door that owns the limiter) drops the buckets that are
//! back to full, so the table holds the recently active keys at most.

use std::{
    collections::HashMap,
    fmt,
    hash::Hash,
    num::NonZeroU32,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use carepath_core::{Actor, Role};
use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};

/// The steady rate and the burst each key is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerRate {
    /// Calls per second on average.
    pub per_second: NonZeroU32,
    /// Calls that may arrive back to back before the steady rate applies.
    pub burst: NonZeroU32,
}

/// One token bucket per key.
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    buckets: DefaultKeyedRateLimiter<K>,
    rate: CallerRate,
    refused: AtomicU64,
}

impl<K: Hash + Eq + Clone> fmt::Debug for KeyedLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("rate", &self.rate)
            .field("keys", &self.buckets.len())
            .finish()
    }
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter giving every key `rate`.
    pub fn new(rate: CallerRate) -> Self {
        let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
        KeyedLimiter {
            buckets: DefaultKeyedRateLimiter::keyed(quota),
            rate,
            refused: AtomicU64::new(0),
        }
    }

    /// The rate every key gets.
    pub fn rate(&self) -> CallerRate {
        self.rate
    }

    /// Takes one call from `key`'s bucket, or says how long until the next one is
    /// let in (at least a millisecond).
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Err(not_until) = self.buckets.check_key(key) else {
            return Ok(());
        };
        self.refused.fetch_add(1, Ordering::Relaxed);
        Err(not_until
            .wait_time_from(self.buckets.clock().now())
            .max(Duration::from_millis(1)))
    }

    /// Calls refused since the previous look.
    pub fn take_refused(&self) -> u64 {
        self.refused.swap(0, Ordering::Relaxed)
    }

    /// Drops the buckets of keys whose state is the same as a fresh one.
    pub fn forget_idle(&self) {
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
    }
}

/// Whether calls by `role` come from a person at a screen (a member, a nurse, a
/// physician reviewer, an administrator) rather than from a system (a provider's
/// practice or hospital system, an internal service). People get a rate a person can
/// use and a script cannot; systems one sized for integrations.
pub fn is_person(role: Role) -> bool {
    matches!(
        role,
        Role::Member | Role::Nurse | Role::PhysicianReviewer | Role::Admin
    )
}

/// The rates of people and of systems; `None` turns that limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallerRates {
    pub people: Option<CallerRate>,
    pub systems: Option<CallerRate>,
}

/// One token bucket per caller, at the people's or the systems' rate by the caller's
/// role ([`is_person`]).
#[derive(Debug)]
pub struct CallerLimits {
    people: Option<KeyedLimiter<Actor>>,
    systems: Option<KeyedLimiter<Actor>>,
}

impl CallerLimits {
    /// The limits `rates` sets; `None` when both are off.
    pub fn new(rates: CallerRates) -> Option<Self> {
        (rates.people.is_some() || rates.systems.is_some()).then(|| CallerLimits {
            people: rates.people.map(KeyedLimiter::new),
            systems: rates.systems.map(KeyedLimiter::new),
        })
    }

    /// Takes one call from `actor`'s bucket, or says how long until the next one is
    /// let in and the rate that applies.
    pub fn check(&self, actor: &Actor) -> Result<(), (Duration, CallerRate)> {
        let limiter = if is_person(actor.role) {
            &self.people
        } else {
            &self.systems
        };
        match limiter {
            Some(l) => l.check(actor).map_err(|wait| (wait, l.rate())),
            None => Ok(()),
        }
    }

    /// Calls refused since the previous look.
    pub fn take_refused(&self) -> u64 {
        [&self.people, &self.systems]
            .into_iter()
            .flatten()
            .map(KeyedLimiter::take_refused)
            .sum()
    }

    /// Drops the buckets of callers gone idle.
    pub fn forget_idle(&self) {
        for l in [&self.people, &self.systems].into_iter().flatten() {
            l.forget_idle();
        }
    }
}

/// Each key's requests in progress, at most `limit` at once: a door takes a slot for
/// a request once it is admitted and gives it back when the answer starts. A key has
/// an entry only while it has a request in progress, so the table is bounded by the
/// requests the door's connections can carry.
#[derive(Debug)]
pub struct InProgress<K: Hash + Eq + Clone> {
    limit: usize,
    held: Mutex<HashMap<K, usize>>,
    refused: AtomicU64,
}

impl<K: Hash + Eq + Clone> InProgress<K> {
    /// At most `limit` (at least one) requests in progress per key.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(InProgress {
            limit: limit.max(1),
            held: Mutex::default(),
            refused: AtomicU64::new(0),
        })
    }

    /// The most requests one key may have in progress.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// One more request of `key`, or `None` (counted as refused) when it already has
    /// [`InProgress::limit`] in progress.
    pub fn take(self: &Arc<Self>, key: &K) -> Option<Slot<K>> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(key.clone()).or_default();
        if *count >= self.limit {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *count += 1;
        Some(Slot {
            of: self.clone(),
            key: key.clone(),
        })
    }

    /// Requests refused for their key's limit, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Keys with a request in progress now.
    pub fn keys(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// One request in progress of one key, given back when dropped.
#[derive(Debug)]
pub struct Slot<K: Hash + Eq + Clone> {
    of: Arc<InProgress<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut held = self.of.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_and_systems_have_their_own_rates() {
        let limits = CallerLimits::new(CallerRates {
            people: Some(CallerRate {
                per_second: NonZeroU32::MIN,
                burst: NonZeroU32::new(2).unwrap(),
            }),
            systems: None,
        })
        .expect("one limit is on");
        let member = Actor::new(Role::Member, "M100001").unwrap();
        let system = Actor::new(Role::Provider, "1184649790").unwrap();
        assert!(limits.check(&member).is_ok());
        assert!(limits.check(&member).is_ok());
        let (wait, rate) = limits.check(&member).unwrap_err();
        assert!(wait > Duration::ZERO);
        assert_eq!(rate.burst.get(), 2);
        for _ in 0..100 {
            assert!(
                limits.check(&system).is_ok(),
                "systems are not limited here"
            );
        }
        assert_eq!(limits.take_refused(), 1);
        assert!(CallerLimits::new(CallerRates::default()).is_none());
        assert!(is_person(Role::Admin) && is_person(Role::Nurse));
        assert!(!is_person(Role::Service) && !is_person(Role::Provider));
    }

    #[test]
    fn a_key_holds_at_most_its_limit_in_progress_and_gives_slots_back() {
        let in_progress = InProgress::new(2);
        let a = in_progress.take(&"a").expect("first");
        let _b = in_progress.take(&"a").expect("second");
        assert!(in_progress.take(&"a").is_none(), "a third is refused");
        assert!(in_progress.take(&"b").is_some(), "another key is not");
        assert_eq!(in_progress.refused(), 1);
        drop(a);
        let _c = in_progress.take(&"a").expect("a slot came back");
        assert_eq!(in_progress.keys(), 1, "b's entry went with its last slot");
    }

    #[test]
    fn a_key_over_its_burst_waits_and_others_do_not() {
        let limiter = KeyedLimiter::new(CallerRate {
            per_second: NonZeroU32::MIN,
            burst: NonZeroU32::new(2).unwrap(),
        });
        assert!(limiter.check(&"busy").is_ok());
        assert!(limiter.check(&"busy").is_ok());
        let wait = limiter.check(&"busy").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(limiter.check(&"other").is_ok());
        assert_eq!(limiter.take_refused(), 1);
        assert_eq!(limiter.take_refused(), 0);
    }
}
