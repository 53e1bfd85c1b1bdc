//! Points: charging (idempotently), balances and the ledger.

use std::time::Duration;

use async_trait::async_trait;
use coffee_domain::{
    ChargeAmount, ChargeLimits, ChargeOutcome, Cursor, IdempotencyContext, Idempotent, Page, PageSize,
    PointTransaction, Points, UserId,
};

use crate::InfraError;

/// Why a request's idempotency key cannot be used for it: the same two
/// answers for every idempotent operation (charges and orders alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyConflict {
    /// The key was used before with a different request.
    #[error("the idempotency key was used with a different request")]
    KeyReused,
    /// A request with the key is still being processed (it did not finish
    /// within the wait the store allows).
    #[error("a request with this idempotency key is in progress")]
    KeyInUse,
}

/// Why an idempotent operation was not carried out or replayed.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error(transparent)]
    Conflict(#[from] IdempotencyConflict),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl IdempotencyError {
    /// Into a use case's own error, which has a variant for each part:
    /// `store.call(...).await.map_err(IdempotencyError::split)?`.
    pub fn split<E: From<IdempotencyConflict> + From<InfraError>>(self) -> E {
        match self {
            Self::Conflict(conflict) => conflict.into(),
            Self::Infra(e) => e.into(),
        }
    }
}

/// The points ledger. Every balance change and its ledger row commit together,
/// so `point = sum(ADD) - sum(DEDUCT) >= 0` holds at every moment.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PointStore: Send + Sync + std::fmt::Debug {
    /// Adds `amount` to the user's balance unless that would pass
    /// `limits.max_balance`, atomically with the `ADD` ledger row and the
    /// idempotency record of `context`. A repeated context replays the first
    /// outcome (both `Charged` and `BalanceLimitExceeded` are stored); of
    /// concurrent duplicates exactly one takes effect.
    async fn charge(
        &self,
        context: IdempotencyContext,
        amount: ChargeAmount,
        limits: ChargeLimits,
    ) -> Result<Idempotent<ChargeOutcome>, IdempotencyError>;

    /// The user's balance, or `None` when there is no such user.
    async fn balance(&self, user: UserId) -> Result<Option<Points>, InfraError>;

    /// The user's ledger, newest first, starting after `after`.
    async fn history(
        &self,
        user: UserId,
        size: PageSize,
        after: Option<Cursor>,
    ) -> Result<Page<PointTransaction>, InfraError>;
}

/// Housekeeping of stored idempotency records.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait IdempotencyRecords: Send + Sync + std::fmt::Debug {
    /// Deletes records older than `retention`; returns how many went.
    async fn purge_older_than(&self, retention: Duration) -> Result<u64, InfraError>;
}
