//! Use cases: the popular-menu ranking (computed by [`crate::PopularRanking`]),
//! and keeping its statistics compact.

use std::sync::Arc;
use std::time::Duration;

use coffee_domain::PopularMenu;
use coffee_ports::{Clock, InfraError, PopularMenus, StatisticsUpkeep};

/// How many menus the ranking lists (docs/API.md, "Popular menus").
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

/// Keeps the popular-menu statistics small: merges the write shards of
/// buckets that closed more than `grace` ago, so the ranking sums few rows
/// however busy the week was, and deletes the buckets older than
/// `retention`, which the ranking's 7-day window no longer reads.
#[derive(Clone, Debug)]
pub struct CompactSalesStatistics {
    statistics: Arc<dyn StatisticsUpkeep>,
    clock: Arc<dyn Clock>,
    grace: Duration,
    retention: Duration,
}

/// The shortest statistics retention: the ranking's window plus the hour
/// its older edge may still read.
pub const MIN_STATISTICS_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600 + 3600);

impl CompactSalesStatistics {
    /// `retention` below [`MIN_STATISTICS_RETENTION`] is raised to it.
    pub fn new(
        statistics: Arc<dyn StatisticsUpkeep>,
        clock: Arc<dyn Clock>,
        grace: Duration,
        retention: Duration,
    ) -> Self {
        Self {
            statistics,
            clock,
            grace,
            retention: retention.max(MIN_STATISTICS_RETENTION),
        }
    }

    /// Returns the rows compacted and the rows purged.
    pub async fn execute(&self) -> Result<(u64, u64), InfraError> {
        let now = self.clock.now();
        let compacted = self.statistics.compact(now - self.grace).await?;
        let purged = self.statistics.purge(now - self.retention).await?;
        if compacted > 0 || purged > 0 {
            tracing::debug!(compacted, purged, "compacted popular-menu statistics");
        }
        Ok((compacted, purged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{clock, fixed_now};
    use coffee_ports::orders::MockPopularMenus;
    use coffee_ports::statistics::MockStatisticsUpkeep;

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
    async fn compaction_leaves_recent_buckets_alone_and_the_purge_keeps_the_window() {
        let mut statistics = MockStatisticsUpkeep::new();
        statistics
            .expect_compact()
            .withf(|before| *before == fixed_now() - Duration::from_secs(7200))
            .returning(|_| Ok(12));
        statistics
            .expect_purge()
            .withf(|before| *before == fixed_now() - Duration::from_secs(8 * 24 * 3600))
            .returning(|_| Ok(5));
        let done = CompactSalesStatistics::new(
            Arc::new(statistics),
            clock(),
            Duration::from_secs(7200),
            Duration::from_secs(8 * 24 * 3600),
        )
        .execute()
        .await
        .expect("compacted");
        assert_eq!(done, (12, 5));
    }

    #[tokio::test]
    async fn a_retention_shorter_than_the_window_is_raised_to_it() {
        let mut statistics = MockStatisticsUpkeep::new();
        statistics.expect_compact().returning(|_| Ok(0));
        statistics
            .expect_purge()
            .withf(|before| *before == fixed_now() - MIN_STATISTICS_RETENTION)
            .returning(|_| Ok(0));
        CompactSalesStatistics::new(
            Arc::new(statistics),
            clock(),
            Duration::from_secs(3600),
            Duration::from_secs(60),
        )
        .execute()
        .await
        .expect("compacted");
    }
}
