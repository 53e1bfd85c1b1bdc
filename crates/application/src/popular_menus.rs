//! Use cases: the popular-menu ranking (computed by [`crate::PopularRanking`]),
//! and keeping its statistics compact.

use std::sync::Arc;
use std::time::Duration;

use coffee_domain::PopularMenu;
use coffee_ports::{Clock, InfraError, StatisticsUpkeep};

use crate::PopularRanking;

/// How many menus the ranking lists (docs/API.md, "Popular menus").
pub const POPULAR_LIMIT: u32 = 3;

/// The top 3 menus of the last 7 days, as of now by the store's clock (the
/// one that stamps orders, so instances' clocks cannot hide an order),
/// ranked by [`PopularRanking`] from what the statistics port reads.
#[derive(Clone, Debug)]
pub struct GetPopularMenus {
    ranking: PopularRanking,
}

impl GetPopularMenus {
    pub fn new(ranking: PopularRanking) -> Self {
        Self { ranking }
    }

    pub async fn execute(&self) -> Result<Vec<PopularMenu>, InfraError> {
        self.ranking.top(POPULAR_LIMIT).await
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
    use coffee_ports::statistics::MockSalesStatistics;
    use coffee_ports::statistics::MockStatisticsUpkeep;

    #[tokio::test]
    async fn lists_the_first_three_of_the_ranking() {
        let store = crate::popular_ranking::tests::recent_history();
        let ranking = crate::popular_ranking::tests::ranking(&store);
        let everything = ranking.top(100).await.expect("ranking");
        let top = GetPopularMenus::new(ranking).execute().await.expect("ranking");
        assert!(everything.len() > 3, "{everything:?}");
        assert_eq!(top, everything[..3]);
    }

    #[tokio::test]
    async fn a_store_failure_is_reported() {
        let mut statistics = MockSalesStatistics::new();
        let down = || InfraError::unavailable("database", anyhow::anyhow!("down"));
        statistics.expect_clock().returning(move || Err(down()));
        statistics.expect_hour_sums().returning(move |_, _| Err(down()));
        statistics.expect_second_sums().returning(move |_| Err(down()));
        statistics.expect_live_sales().returning(move |_| Err(down()));
        let use_case = GetPopularMenus::new(PopularRanking::new(Arc::new(statistics)));
        assert!(use_case.execute().await.is_err());
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
