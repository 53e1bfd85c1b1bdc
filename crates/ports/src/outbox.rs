//! The transactional outbox and the data-collection platform it feeds.

use std::time::Duration;

use async_trait::async_trait;
use coffee_domain::{DeadEvent, DeliveryResult, OutboxMessage, OutboxStats};
use uuid::Uuid;

use crate::InfraError;

/// Outbox rows, written by the order transaction (see `OrderStore`) and
/// delivered by the relay in every instance.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait OutboxStore: Send + Sync + std::fmt::Debug {
    /// Claims up to `limit` due events for `lease` under the name `owner`,
    /// skipping rows other relays hold (`FOR UPDATE SKIP LOCKED`) and taking
    /// over claims whose lease has run out (a killed instance's).
    async fn claim(&self, owner: &str, limit: u32, lease: Duration) -> Result<Vec<OutboxMessage>, InfraError>;

    /// Records an attempt's result, if `owner` still holds the claim.
    async fn record(&self, owner: &str, id: Uuid, result: DeliveryResult) -> Result<(), InfraError>;

    /// Gives back every claim `owner` still holds (graceful shutdown).
    async fn release(&self, owner: &str) -> Result<u64, InfraError>;

    /// Puts every dead-lettered event back in the queue; returns how many.
    async fn requeue_dead(&self) -> Result<u64, InfraError>;

    /// Every count, delivered ones included (a full scan: for operators).
    async fn stats(&self) -> Result<OutboxStats, InfraError>;

    /// Pending and dead counts only, from their partial indexes: cheap enough
    /// to sample every few seconds for metrics.
    async fn backlog(&self) -> Result<(u64, u64), InfraError>;

    /// Deletes delivered events older than `retention`; returns how many.
    async fn purge_delivered(&self, retention: Duration) -> Result<u64, InfraError>;

    /// Up to `limit` dead-lettered events, oldest first: for an operator to
    /// decide what to requeue and what to discard.
    async fn list_dead(&self, limit: u32) -> Result<Vec<DeadEvent>, InfraError>;

    /// Deletes dead-lettered events created more than `older_than` ago (an
    /// operator's explicit decision; never done by itself); returns how many.
    async fn discard_dead(&self, older_than: Duration) -> Result<u64, InfraError>;
}

/// Why the data-collection platform did not take an event. Every kind is
/// retried by the relay; the text is what the outbox row records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// No answer within the request timeout.
    #[error("collector timed out")]
    TimedOut,
    /// No connection could be made.
    #[error("collector unreachable")]
    Unreachable,
    /// It answered, with a status other than `2xx`.
    #[error("collector answered {0}")]
    Refused(u16),
    /// The exchange failed some other way (a cut connection, a bad answer).
    #[error("collector request failed: {0}")]
    Failed(String),
}

/// The data-collection platform.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// Sends one event with `Idempotency-Key: <event_id>`. Any `2xx` is
    /// `Ok`; `Err` says why it was not accepted, and the relay retries.
    async fn send(&self, event_id: Uuid, payload: &str) -> Result<(), DeliveryError>;
}
