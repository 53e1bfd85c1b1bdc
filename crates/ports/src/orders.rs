//! Orders and the popular-menu statistics they feed.

use async_trait::async_trait;
use coffee_domain::{
    Cursor, IdempotencyContext, Idempotent, OrderRequest, Page, PageSize, PlaceOrderOutcome, PlacedOrder, PopularMenu,
    UserId,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{IdempotencyError, InfraError};

/// Where orders are placed and kept.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait OrderStore: Send + Sync + std::fmt::Debug {
    /// In one transaction: claims the idempotency key, prices the request at
    /// the current menu prices, deducts the total only if the balance covers
    /// it (no read-modify-write), and writes the order, its items, the
    /// `DEDUCT` ledger row, the popular-menu statistics, the outbox event and
    /// the idempotency record, all stamped with one instant taken from the
    /// store's own clock once the user's balance is locked (so a user's
    /// orders and ledger rows are in the order their balances changed, and
    /// every instance stamps with the same clock). A missing menu or short
    /// balance writes nothing but the idempotency record. A repeated context
    /// replays the first outcome.
    async fn place_order(
        &self,
        context: IdempotencyContext,
        request: OrderRequest,
    ) -> Result<Idempotent<PlaceOrderOutcome>, IdempotencyError>;

    /// The order if it exists and belongs to `user`.
    async fn find(&self, user: UserId, order: Uuid) -> Result<Option<PlacedOrder>, InfraError>;

    /// The user's orders, newest first, starting after `after`.
    async fn list(&self, user: UserId, size: PageSize, after: Option<Cursor>) -> Result<Page<PlacedOrder>, InfraError>;
}

/// The popular-menu ranking over committed orders.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PopularMenus: Send + Sync + std::fmt::Debug {
    /// The top `limit` menus by cups ordered in `(now - 7 days, now]`, ties
    /// broken by order count (descending) then name (ascending); exact, and
    /// read from the primary so an acknowledged order is always counted.
    /// `now` is the store's own clock, the one that stamps orders.
    async fn top(&self, limit: u32) -> Result<Vec<PopularMenu>, InfraError>;

    /// Merges the write shards of statistics buckets that ended before
    /// `before` into one row each (counts unchanged); returns rows removed.
    async fn compact(&self, before: OffsetDateTime) -> Result<u64, InfraError>;

    /// Deletes the statistics buckets that started before `before` (past
    /// the ranking's window), in short batches; returns rows removed.
    async fn purge(&self, before: OffsetDateTime) -> Result<u64, InfraError>;
}
