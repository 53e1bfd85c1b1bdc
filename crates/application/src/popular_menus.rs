//! Use cases: the popular-menu ranking, and keeping its statistics compact.

use std::sync::Arc;
use std::time::Duration;

use coffee_domain::PopularMenu;
use coffee_ports::{Clock, InfraError, PopularMenus};

/// How many menus the ranking lists (SPEC.md section 3).
pub const POPULAR_LIMIT: u32 = 3;

/// The top 3 menus of the last 7 days, as of now by the store's clock (the
/// one that stamps orders, so instances' clocks cannot hide an order).
#[derive(Clone, Debug)]
pub struct GetPopularMenus {
    popular: Arc<dyn PopularMenus>,
}

impl GetPopularMenus {
    pub fn new(popular: Arc<dyn PopularMenus>) -> Self {
        Self { popular }
    }

    pub async fn execute(&self) -> Result<Vec<PopularMenu>, InfraError> {
        self.popular.top(POPULAR_LIMIT).await
    }
}

/// Merges the write shards of statistics buckets that closed more than
/// `grace` ago, so the ranking sums few rows however busy the week was.
#[derive(Clone, Debug)]
pub struct CompactSalesStatistics {
    popular: Arc<dyn PopularMenus>,
    clock: Arc<dyn Clock>,
    grace: Duration,
}

impl CompactSalesStatistics {
    pub fn new(popular: Arc<dyn PopularMenus>, clock: Arc<dyn Clock>, grace: Duration) -> Self {
        Self { popular, clock, grace }
    }

    pub async fn execute(&self) -> Result<u64, InfraError> {
        let compacted = self.popular.compact(self.clock.now() - self.grace).await?;
        if compacted > 0 {
            tracing::debug!(compacted, "compacted popular-menu statistics");
        }
        Ok(compacted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{clock, fixed_now};
    use coffee_ports::orders::MockPopularMenus;

    #[tokio::test]
    async fn asks_for_the_top_three() {
        let mut popular = MockPopularMenus::new();
        popular
            .expect_top()
            .withf(|limit| *limit == 3)
            .returning(|_| Ok(vec![]));
        let ranking = GetPopularMenus::new(Arc::new(popular))
            .execute()
            .await
            .expect("ranking");
        assert!(ranking.is_empty());
    }

    #[tokio::test]
    async fn a_store_failure_is_reported() {
        let mut popular = MockPopularMenus::new();
        popular
            .expect_top()
            .returning(|_| Err(InfraError::unavailable("database", anyhow::anyhow!("down"))));
        assert!(GetPopularMenus::new(Arc::new(popular)).execute().await.is_err());
    }

    #[tokio::test]
    async fn compaction_leaves_recent_buckets_alone() {
        let mut popular = MockPopularMenus::new();
        popular
            .expect_compact()
            .withf(|before| *before == fixed_now() - Duration::from_secs(7200))
            .returning(|_| Ok(12));
        let compacted = CompactSalesStatistics::new(Arc::new(popular), clock(), Duration::from_secs(7200))
            .execute()
            .await
            .expect("compacted");
        assert_eq!(compacted, 12);
    }
}
