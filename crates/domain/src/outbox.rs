//! The order-event outbox: messages waiting to reach the data-collection
//! platform, and the retry policy that gets them there.

use std::time::Duration;

use uuid::Uuid;

/// One event claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// The `eventId`, also sent as the `Idempotency-Key`.
    pub id: Uuid,
    pub event_type: String,
    /// The JSON body to send, as stored.
    pub payload: String,
    /// Delivery attempts made before this one.
    pub attempts: u32,
}

/// What an attempt came to, for the store to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered,
    /// Try again at `retry_in` from now.
    Retry {
        retry_in: Duration,
        error: String,
    },
    /// Out of attempts: kept, counted, re-queueable by an operator.
    Dead {
        error: String,
    },
}

/// A dead-lettered event, as an operator lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadEvent {
    /// The `eventId`.
    pub id: Uuid,
    pub event_type: String,
    /// The order it tells of.
    pub aggregate_id: Uuid,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: time::OffsetDateTime,
}

/// How the outbox looks right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Waiting for their next attempt (including those in flight).
    pub pending: u64,
    /// Claimed by a relay right now.
    pub in_flight: u64,
    pub delivered: u64,
    pub dead: u64,
}

/// Exponential backoff with full jitter, and a cap on attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay ceiling after the first failure (1 s by default).
    pub base: Duration,
    /// The largest delay ceiling (5 min by default).
    pub cap: Duration,
    /// Attempts before an event is dead-lettered (20 by default).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
            max_attempts: 20,
        }
    }
}

impl RetryPolicy {
    /// The ceiling after the `failures`-th failure: `base * 2^(failures - 1)`,
    /// at most `cap`.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(63);
        self.base
            .checked_mul(1u32.checked_shl(doublings.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// Full jitter: `unit` (uniform in `[0, 1)`) times the ceiling.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        self.ceiling(failures).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// What a failed attempt means for a message that had `attempts` before.
    pub fn after_failure(&self, attempts_before: u32, error: String, unit: f64) -> DeliveryResult {
        let failures = attempts_before.saturating_add(1);
        if failures >= self.max_attempts {
            DeliveryResult::Dead { error }
        } else {
            DeliveryResult::Retry {
                retry_in: self.delay(failures, unit),
                error,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_ceiling_doubles_from_the_base_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let ceilings: Vec<u64> = (1..=11).map(|n| policy.ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(policy.ceiling(1000), Duration::from_secs(300));
    }

    #[test]
    fn the_last_allowed_failure_dead_letters() {
        let policy = RetryPolicy::default();
        assert!(matches!(
            policy.after_failure(18, "x".into(), 0.5),
            DeliveryResult::Retry { .. }
        ));
        assert_eq!(
            policy.after_failure(19, "x".into(), 0.5),
            DeliveryResult::Dead { error: "x".into() }
        );
    }

    proptest! {
        #[test]
        fn every_delay_is_within_zero_and_the_ceiling(failures in 1u32..100, unit in 0.0f64..1.0) {
            let policy = RetryPolicy::default();
            let delay = policy.delay(failures, unit);
            prop_assert!(delay <= policy.ceiling(failures));
            prop_assert!(delay <= policy.cap);
        }
    }
}
