//! Use case: forget idempotency records past their retention.

use std::sync::Arc;
use std::time::Duration;

use coffee_ports::{IdempotencyRecords, InfraError};

/// Run periodically by every instance; deleting is idempotent, so several
/// instances doing it at once is harmless.
#[derive(Clone, Debug)]
pub struct PurgeIdempotencyKeys {
    records: Arc<dyn IdempotencyRecords>,
    retention: Duration,
}

impl PurgeIdempotencyKeys {
    /// `retention` below 24 hours is raised to 24 hours: the API promises
    /// keys are kept at least that long (docs/API.md, "Idempotency").
    pub fn new(records: Arc<dyn IdempotencyRecords>, retention: Duration) -> Self {
        Self {
            records,
            retention: retention.max(Self::MIN_RETENTION),
        }
    }

    pub const MIN_RETENTION: Duration = Duration::from_secs(24 * 3600);

    pub async fn execute(&self) -> Result<u64, InfraError> {
        let purged = self.records.purge_older_than(self.retention).await?;
        if purged > 0 {
            tracing::info!(purged, "purged expired idempotency keys");
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffee_ports::points::MockIdempotencyRecords;

    #[tokio::test]
    async fn purges_with_the_configured_retention() {
        let mut records = MockIdempotencyRecords::new();
        records
            .expect_purge_older_than()
            .withf(|r| *r == Duration::from_secs(48 * 3600))
            .returning(|_| Ok(3));
        let purged = PurgeIdempotencyKeys::new(Arc::new(records), Duration::from_secs(48 * 3600))
            .execute()
            .await
            .expect("purged");
        assert_eq!(purged, 3);
    }

    #[tokio::test]
    async fn never_purges_younger_than_a_day() {
        let mut records = MockIdempotencyRecords::new();
        records
            .expect_purge_older_than()
            .withf(|r| *r == PurgeIdempotencyKeys::MIN_RETENTION)
            .returning(|_| Ok(0));
        PurgeIdempotencyKeys::new(Arc::new(records), Duration::from_secs(60))
            .execute()
            .await
            .expect("purged");
    }

    #[tokio::test]
    async fn a_store_failure_is_reported() {
        let mut records = MockIdempotencyRecords::new();
        records
            .expect_purge_older_than()
            .returning(|_| Err(InfraError::unavailable("database", anyhow::anyhow!("down"))));
        let result = PurgeIdempotencyKeys::new(Arc::new(records), Duration::from_secs(60))
            .execute()
            .await;
        assert!(result.is_err());
    }
}
