//! Use cases: operating the outbox (statistics, re-queueing dead letters,
//! purging what was delivered long ago).

use std::sync::Arc;
use std::time::Duration;

use coffee_domain::OutboxStats;
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
        let admin = OutboxAdmin::new(Arc::new(store));

        assert_eq!(admin.requeue_dead().await.expect("requeued"), 4);
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
