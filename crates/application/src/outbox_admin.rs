//! Use cases: operating the outbox (statistics, re-queueing dead letters,
//! purging what was delivered long ago).

use std::sync::Arc;
use std::time::Duration;

use coffee_domain::{DeadEvent, OutboxStats};
use coffee_ports::{InfraError, OutboxStore};

/// Operator commands and housekeeping on the outbox.
#[derive(Clone, Debug)]
pub struct OutboxAdmin {
    outbox: Arc<dyn OutboxStore>,
}

impl OutboxAdmin {
    pub fn new(outbox: Arc<dyn OutboxStore>) -> Self {
        Self { outbox }
    }

    pub async fn stats(&self) -> Result<OutboxStats, InfraError> {
        self.outbox.stats().await
    }

    /// Pending and dead counts, cheap enough for metrics sampling.
    pub async fn backlog(&self) -> Result<(u64, u64), InfraError> {
        self.outbox.backlog().await
    }

    /// Puts dead-lettered events back in the queue with a fresh attempt count.
    pub async fn requeue_dead(&self) -> Result<u64, InfraError> {
        let requeued = self.outbox.requeue_dead().await?;
        tracing::info!(requeued, "dead-lettered events re-queued");
        Ok(requeued)
    }

    /// The oldest `limit` dead-lettered events.
    pub async fn list_dead(&self, limit: u32) -> Result<Vec<DeadEvent>, InfraError> {
        self.outbox.list_dead(limit).await
    }

    /// Deletes the dead-lettered events created more than `older_than` ago:
    /// undelivered business events, so only ever on an operator's command.
    pub async fn discard_dead(&self, older_than: Duration) -> Result<u64, InfraError> {
        let discarded = self.outbox.discard_dead(older_than).await?;
        tracing::warn!(
            discarded,
            older_than_secs = older_than.as_secs(),
            "dead-lettered events discarded by an operator"
        );
        Ok(discarded)
    }

    /// Deletes delivered events older than `retention`.
    pub async fn purge_delivered(&self, retention: Duration) -> Result<u64, InfraError> {
        self.outbox.purge_delivered(retention).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffee_ports::outbox::MockOutboxStore;

    #[tokio::test]
    async fn passes_operator_commands_through() {
        let mut store = MockOutboxStore::new();
        store.expect_requeue_dead().times(1).returning(|| Ok(4));
        store.expect_stats().returning(|| {
            Ok(OutboxStats {
                pending: 1,
                in_flight: 0,
                delivered: 7,
                dead: 0,
            })
        });
        store
            .expect_purge_delivered()
            .withf(|r| *r == Duration::from_secs(3600))
            .returning(|_| Ok(2));
        store
            .expect_discard_dead()
            .withf(|older| *older == Duration::from_secs(30 * 24 * 3600))
            .times(1)
            .returning(|_| Ok(3));
        store
            .expect_list_dead()
            .withf(|limit| *limit == 50)
            .returning(|_| Ok(Vec::new()));
        let admin = OutboxAdmin::new(Arc::new(store));

        assert_eq!(admin.requeue_dead().await.expect("requeued"), 4);
        assert_eq!(
            admin
                .discard_dead(Duration::from_secs(30 * 24 * 3600))
                .await
                .expect("discarded"),
            3
        );
        assert!(admin.list_dead(50).await.expect("listed").is_empty());
        assert_eq!(admin.stats().await.expect("stats").delivered, 7);
        assert_eq!(
            admin.purge_delivered(Duration::from_secs(3600)).await.expect("purged"),
            2
        );
    }

    #[tokio::test]
    async fn store_failures_are_reported() {
        let mut store = MockOutboxStore::new();
        store
            .expect_requeue_dead()
            .returning(|| Err(InfraError::unavailable("database", anyhow::anyhow!("down"))));
        assert!(OutboxAdmin::new(Arc::new(store)).requeue_dead().await.is_err());
    }
}
