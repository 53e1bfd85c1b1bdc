//! The popular-menu statistics, as rows: what the ranking reads, and their
//! upkeep. The ranking itself (the window, the sums held in memory, the
//! order) is the application's (`coffee_application::PopularRanking`); these
//! ports only read and tidy what orders wrote.

use std::time::Duration;

use async_trait::async_trait;
use coffee_domain::Menu;
use coffee_domain::popular::SalesSum;
use time::OffsetDateTime;

use crate::InfraError;

/// Which live buckets [`SalesStatistics::live_sales`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveWindow {
    /// The end of the window; the store's clock when `None`. Only tests
    /// give one, to sweep a window over a seeded history.
    pub as_of: Option<OffsetDateTime>,
    /// How far back the window reaches from its end.
    pub length: Duration,
    /// Whole hours `[from, to)` the caller already holds the sums of.
    pub held: Option<(OffsetDateTime, OffsetDateTime)>,
}

/// What one ranking request reads, in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSales {
    /// The end of the window: [`LiveWindow::as_of`], else the store's clock.
    pub now: OffsetDateTime,
    /// The store's clock, the one that stamps orders.
    pub db_now: OffsetDateTime,
    /// Where the live buckets start: the end of the held hours when those
    /// contain the first whole hour after `now - length`, else that hour.
    pub live_from: OffsetDateTime,
    /// Every menu, at its current name and price.
    pub menus: Vec<Menu>,
    /// Per menu sold in the buckets from `live_from` on (those after `now`
    /// included), their sums; `at` is `live_from`.
    pub sales: Vec<SalesSum>,
}

/// The statistics buckets and order items, summed, as the ranking reads them.
///
/// Every method answers from the primary, so an acknowledged order is
/// always in what it reads. Errors: [`InfraError::Unavailable`] when the
/// store cannot be reached in time; [`InfraError::Unexpected`] otherwise.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SalesStatistics: Send + Sync + std::fmt::Debug {
    /// The store's clock now: the one that stamps orders.
    async fn clock(&self) -> Result<OffsetDateTime, InfraError>;

    /// Per hour and menu, the sums of the buckets that start in `[from, to)`.
    async fn hour_sums(&self, from: OffsetDateTime, to: OffsetDateTime) -> Result<Vec<SalesSum>, InfraError>;

    /// Per second and menu, the sums of the order items created in `[hour,
    /// hour + 1 h)`, each item in the whole second its creation rounds up to
    /// (an item of `10:00:00.2` is in `10:00:01`) and counted as one order.
    async fn second_sums(&self, hour: OffsetDateTime) -> Result<Vec<SalesSum>, InfraError>;

    /// The clock, every menu and the live buckets' sums, in one round trip
    /// (see [`LiveSales`]).
    async fn live_sales(&self, window: LiveWindow) -> Result<LiveSales, InfraError>;
}

/// Keeping the statistics small: run by a maintenance task, apart from the
/// ranking.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait StatisticsUpkeep: Send + Sync + std::fmt::Debug {
    /// Merges the write shards of statistics buckets that ended before
    /// `before` into one row each (counts unchanged); returns rows removed.
    async fn compact(&self, before: OffsetDateTime) -> Result<u64, InfraError>;

    /// Deletes the statistics buckets that started before `before` (past
    /// the ranking's window), in short batches; returns rows removed.
    async fn purge(&self, before: OffsetDateTime) -> Result<u64, InfraError>;
}
