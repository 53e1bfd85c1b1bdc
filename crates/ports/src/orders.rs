//! Orders and the popular-menu statistics they feed.

use async_trait::async_trait;
use coffee_domain::{
    Cursor, IdempotencyContext, Idempotent, Menu, OrderRequest, Page, PageSize, PlaceOrderOutcome, PlacedOrder, Points,
    UserId,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{IdempotencyError, InfraError};

/// What an order's transaction reads before it decides, with the payer's
/// balance locked until the transaction ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderReads {
    /// The menus the request names that exist, at their current names and
    /// prices (one the request names is missing when it does not exist).
    pub menus: Vec<Menu>,
    /// The payer's balance; `None` when there is no such user.
    pub balance: Option<Points>,
    /// The order's instant: the store's clock once the balance is locked.
    pub at: OffsetDateTime,
}

/// The rules that decide an order from what its transaction read (the
/// application's `PlaceOrder`): the outcome, and for `Placed` the order the
/// store then writes, stamped `at` and paid by `user`. An error rolls the
/// transaction back.
pub type DecideOrder = fn(UserId, &OrderRequest, OrderReads) -> Result<PlaceOrderOutcome, InfraError>;

/// Where orders are placed and kept.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait OrderStore: Send + Sync + std::fmt::Debug {
    /// In one transaction: claims the idempotency key, reads the menus the
    /// request names and the user's balance, locking it, and the store's
    /// clock once it is locked ([`OrderReads`]); `decide` turns them into
    /// the outcome. A `Placed` order is then written: the balance deducted
    /// (no read-modify-write), the order, its items, the `DEDUCT` ledger row,
    /// the popular-menu statistics, the outbox event and the idempotency
    /// record, all stamped with that one instant (so a user's orders and
    /// ledger rows are in the order their balances changed, and every
    /// instance stamps with the same clock). Any other outcome writes
    /// nothing but the idempotency record. A repeated context replays the
    /// first outcome without deciding again.
    async fn place_order(
        &self,
        context: IdempotencyContext,
        request: OrderRequest,
        decide: DecideOrder,
    ) -> Result<Idempotent<PlaceOrderOutcome>, IdempotencyError>;

    /// The order if it exists and belongs to `user`.
    async fn find(&self, user: UserId, order: Uuid) -> Result<Option<PlacedOrder>, InfraError>;

    /// The user's orders, newest first, starting after `after`.
    async fn list(&self, user: UserId, size: PageSize, after: Option<Cursor>) -> Result<Page<PlacedOrder>, InfraError>;
}
