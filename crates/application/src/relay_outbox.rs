//! Use case: deliver outbox events to the data-collection platform, at least
//! once, whatever fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coffee_domain::{DeliveryResult, OutboxMessage, RetryPolicy};
use coffee_ports::{EventSink, InfraError, OutboxStore};
use futures_util::future::join_all;

/// Running totals of one relay, for metrics.
#[derive(Debug, Default)]
pub struct RelayCounters {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dead: AtomicU64,
}

/// How a relay claims work (the configuration's part; the relay's name is
/// given apart, see [`RelayOutbox::new`]).
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub batch_size: u32,
    /// How long a claim holds; a killed relay's claims are retried after it.
    pub lease: Duration,
    pub retry: RetryPolicy,
}

/// Claims a batch, sends every event outside any database transaction, and
/// records each result: delivered, retry later with backoff and full jitter,
/// or dead-lettered after the last allowed attempt.
#[derive(Clone)]
pub struct RelayOutbox {
    outbox: Arc<dyn OutboxStore>,
    sink: Arc<dyn EventSink>,
    /// This relay's name in claims (unique per process).
    owner: String,
    settings: RelaySettings,
    /// Uniform in `[0, 1)`: the jitter.
    random: Arc<dyn Fn() -> f64 + Send + Sync>,
    counters: Arc<RelayCounters>,
}

impl std::fmt::Debug for RelayOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayOutbox")
            .field("owner", &self.owner)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RelayOutbox {
    /// `owner` names this relay in its claims: unique per process, so one
    /// relay never records or releases another's events.
    pub fn new(
        outbox: Arc<dyn OutboxStore>,
        sink: Arc<dyn EventSink>,
        owner: String,
        settings: RelaySettings,
        random: Arc<dyn Fn() -> f64 + Send + Sync>,
    ) -> Self {
        Self {
            outbox,
            sink,
            owner,
            settings,
            random,
            counters: Arc::default(),
        }
    }

    pub fn counters(&self) -> Arc<RelayCounters> {
        Arc::clone(&self.counters)
    }

    /// One round: returns how many events it claimed (0 means idle).
    pub async fn run_once(&self) -> Result<usize, InfraError> {
        let batch = self
            .outbox
            .claim(&self.owner, self.settings.batch_size, self.settings.lease)
            .await?;
        let claimed = batch.len();
        let results = join_all(batch.into_iter().map(|message| self.deliver(message))).await;
        // Every result is recorded even if one recording fails; the first
        // failure is reported (its event's lease runs out and it is retried).
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(claimed)
    }

    async fn deliver(&self, message: OutboxMessage) -> Result<(), InfraError> {
        let result = match self.sink.send(message.id, &message.payload).await {
            Ok(()) => DeliveryResult::Delivered,
            Err(error) => self
                .settings
                .retry
                .after_failure(message.attempts, error.to_string(), (self.random)()),
        };
        let counter = match &result {
            DeliveryResult::Delivered => &self.counters.delivered,
            DeliveryResult::Retry { error, .. } => {
                tracing::debug!(event = %message.id, attempts = message.attempts + 1, error, "delivery failed; will retry");
                &self.counters.retried
            }
            DeliveryResult::Dead { error } => {
                tracing::warn!(event = %message.id, attempts = message.attempts + 1, error, "event dead-lettered");
                &self.counters.dead
            }
        };
        self.outbox.record(&self.owner, message.id, result).await?;
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Gives back this relay's claims (called on shutdown).
    pub async fn release(&self) -> Result<u64, InfraError> {
        self.outbox.release(&self.owner).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffee_ports::DeliveryError;
    use coffee_ports::outbox::{MockEventSink, MockOutboxStore};
    use uuid::Uuid;

    fn settings() -> RelaySettings {
        RelaySettings {
            batch_size: 10,
            lease: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }

    fn message(n: u128, attempts: u32) -> OutboxMessage {
        OutboxMessage {
            id: Uuid::from_u128(n),
            event_type: "ORDER_PLACED".to_owned(),
            payload: format!("{{\"eventId\":\"{}\"}}", Uuid::from_u128(n)),
            attempts,
        }
    }

    fn store_with(batch: Vec<OutboxMessage>, expected: Vec<(u128, DeliveryResult)>) -> MockOutboxStore {
        let mut store = MockOutboxStore::new();
        store
            .expect_claim()
            .withf(|owner, limit, lease| owner == "relay-1" && *limit == 10 && *lease == Duration::from_secs(30))
            .times(1)
            .return_once(move |_, _, _| Ok(batch));
        for (n, result) in expected {
            store
                .expect_record()
                .withf(move |owner, id, r| owner == "relay-1" && *id == Uuid::from_u128(n) && *r == result)
                .times(1)
                .returning(|_, _, _| Ok(()));
        }
        store
    }

    fn relay(store: MockOutboxStore, sink: MockEventSink) -> RelayOutbox {
        RelayOutbox::new(
            Arc::new(store),
            Arc::new(sink),
            "relay-1".to_owned(),
            settings(),
            Arc::new(|| 0.5),
        )
    }

    #[tokio::test]
    async fn delivered_events_are_marked_delivered() {
        let store = store_with(
            vec![message(1, 0), message(2, 3)],
            vec![(1, DeliveryResult::Delivered), (2, DeliveryResult::Delivered)],
        );
        let mut sink = MockEventSink::new();
        sink.expect_send()
            .withf(|id, payload| payload.contains(&id.to_string()))
            .times(2)
            .returning(|_, _| Ok(()));
        let relay = relay(store, sink);

        assert_eq!(relay.run_once().await.expect("round"), 2);
        assert_eq!(relay.counters().delivered.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_collector_error_schedules_a_jittered_retry() {
        // Third failure: ceiling 4 s, jitter 0.5 -> 2 s.
        let store = store_with(
            vec![message(1, 2)],
            vec![(
                1,
                DeliveryResult::Retry {
                    retry_in: Duration::from_secs(2),
                    error: "collector answered 503".to_owned(),
                },
            )],
        );
        let mut sink = MockEventSink::new();
        sink.expect_send().returning(|_, _| Err(DeliveryError::Refused(503)));
        let relay = relay(store, sink);

        relay.run_once().await.expect("round");

        assert_eq!(relay.counters().retried.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_timeout_is_retried_like_any_failure() {
        let store = store_with(
            vec![message(1, 0)],
            vec![(
                1,
                DeliveryResult::Retry {
                    retry_in: Duration::from_millis(500),
                    error: "collector timed out".to_owned(),
                },
            )],
        );
        let mut sink = MockEventSink::new();
        sink.expect_send().returning(|_, _| Err(DeliveryError::TimedOut));
        relay(store, sink).run_once().await.expect("round");
    }

    #[tokio::test]
    async fn an_error_then_a_success_delivers() {
        let mut store = MockOutboxStore::new();
        let mut rounds = vec![vec![message(1, 1)], vec![message(1, 0)]];
        store
            .expect_claim()
            .times(2)
            .returning(move |_, _, _| Ok(rounds.pop().unwrap_or_default()));
        let mut recorded = mockall::Sequence::new();
        store
            .expect_record()
            .withf(|_, _, r| matches!(r, DeliveryResult::Retry { .. }))
            .times(1)
            .in_sequence(&mut recorded)
            .returning(|_, _, _| Ok(()));
        store
            .expect_record()
            .withf(|_, _, r| *r == DeliveryResult::Delivered)
            .times(1)
            .in_sequence(&mut recorded)
            .returning(|_, _, _| Ok(()));
        let mut sink = MockEventSink::new();
        let mut answers = vec![Ok(()), Err(DeliveryError::Unreachable)];
        sink.expect_send()
            .times(2)
            .returning(move |_, _| answers.pop().unwrap_or(Ok(())));
        let relay = relay(store, sink);

        relay.run_once().await.expect("first round");
        relay.run_once().await.expect("second round");

        assert_eq!(relay.counters().retried.load(Ordering::Relaxed), 1);
        assert_eq!(relay.counters().delivered.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn the_last_allowed_attempt_dead_letters() {
        let store = store_with(
            vec![message(1, 19)],
            vec![(
                1,
                DeliveryResult::Dead {
                    error: "collector answered 500".to_owned(),
                },
            )],
        );
        let mut sink = MockEventSink::new();
        sink.expect_send().returning(|_, _| Err(DeliveryError::Refused(500)));
        let relay = relay(store, sink);

        relay.run_once().await.expect("round");

        assert_eq!(relay.counters().dead.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn an_empty_round_sends_nothing() {
        let store = store_with(vec![], vec![]);
        let mut sink = MockEventSink::new();
        sink.expect_send().never();
        assert_eq!(relay(store, sink).run_once().await.expect("round"), 0);
    }

    #[tokio::test]
    async fn a_store_failure_is_reported() {
        let mut store = MockOutboxStore::new();
        store
            .expect_claim()
            .returning(|_, _, _| Err(InfraError::unavailable("database", anyhow::anyhow!("down"))));
        let mut sink = MockEventSink::new();
        sink.expect_send().never();
        assert!(relay(store, sink).run_once().await.is_err());
    }
}
