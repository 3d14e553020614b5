//! When to try a failed delivery again, and when to give up: exponential backoff with
//! a cap and a maximum number of attempts. Pure: "now" is an argument.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::channel::ChannelError;

/// How failed deliveries are retried.
///
/// The first retry waits `first_delay`, each next one twice as long, never more than
/// `max_delay`; after `max_attempts` attempts in all, the notice is dead and shown to
/// staff. A permanent failure is dead at once: retrying a rejected fax number only
/// delays the moment someone fixes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(with = "seconds")]
    pub first_delay: Duration,
    #[serde(with = "seconds")]
    pub max_delay: Duration,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// One minute doubling to at most six hours, twelve attempts: about a day and a
    /// half of retries, enough to ride out a gateway outage over a night.
    fn default() -> Self {
        Self {
            first_delay: Duration::minutes(1),
            max_delay: Duration::hours(6),
            max_attempts: 12,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum RetryDecision {
    /// Try again at this time.
    RetryAt { at: DateTime<Utc> },
    /// Stop: mark the notice dead, with why.
    Dead { reason: String },
}

impl RetryPolicy {
    /// The wait after attempt number `attempts` (1-based) failed.
    pub fn delay(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        let factor = 1_i32 << doublings;
        self.first_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// Decides after `attempts` attempts (counting the one that just failed at
    /// `failed_at` with `error`).
    pub fn after_failure(
        &self,
        attempts: u32,
        failed_at: DateTime<Utc>,
        error: &ChannelError,
    ) -> RetryDecision {
        if !error.is_retryable() {
            return RetryDecision::Dead {
                reason: format!("permanent failure: {error}"),
            };
        }
        if attempts >= self.max_attempts {
            return RetryDecision::Dead {
                reason: format!("gave up after {attempts} attempts; last error: {error}"),
            };
        }
        RetryDecision::RetryAt {
            at: failed_at + self.delay(attempts),
        }
    }
}

mod seconds {
    use chrono::Duration;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.num_seconds())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = u32::deserialize(d)?;
        Ok(Duration::seconds(i64::from(secs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RetryPolicy {
            first_delay: Duration::seconds(10),
            max_delay: Duration::seconds(100),
            max_attempts: 50,
        };
        let got: Vec<_> = (1..=6).map(|a| p.delay(a).num_seconds()).collect();
        assert_eq!(got, [10, 20, 40, 80, 100, 100]);
        assert_eq!(p.delay(0).num_seconds(), 10);
        assert_eq!(p.delay(u32::MAX).num_seconds(), 100);
    }

    #[test]
    fn retryable_failures_are_retried_until_the_last_attempt() {
        let p = RetryPolicy::default();
        let now = at("2026-11-25T15:00:00Z");
        let err = ChannelError::retryable("connection refused");
        assert_eq!(
            p.after_failure(1, now, &err),
            RetryDecision::RetryAt {
                at: at("2026-11-25T15:01:00Z")
            }
        );
        assert_eq!(
            p.after_failure(11, now, &err),
            RetryDecision::RetryAt {
                at: at("2026-11-25T21:00:00Z")
            }
        );
        assert!(matches!(
            p.after_failure(12, now, &err),
            RetryDecision::Dead { reason } if reason.contains("after 12 attempts")
        ));
    }

    #[test]
    fn permanent_failures_are_dead_at_once() {
        let p = RetryPolicy::default();
        let err = ChannelError::permanent("gateway answered 400: bad fax number");
        assert!(matches!(
            p.after_failure(1, at("2026-11-25T15:00:00Z"), &err),
            RetryDecision::Dead { reason } if reason.contains("bad fax number")
        ));
    }

    #[test]
    fn policies_read_from_config_in_seconds() {
        let p: RetryPolicy =
            toml::from_str("first_delay = 30\nmax_delay = 3600\nmax_attempts = 5").unwrap();
        assert_eq!(p.first_delay, Duration::seconds(30));
        assert_eq!(p.max_attempts, 5);
    }
}
