//! The order-event outbox in `outbox_events`.
//!
//! A claim is a lease: `locked_until` and `locked_by` are set by one
//! `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`, so relays on
//! several instances never take the same row, and a killed relay's rows
//! become claimable again when its lease runs out. Results are recorded only
//! by the relay that still holds the claim.

use std::time::Duration;

use async_trait::async_trait;
use coffee_domain::{DeadEvent, DeliveryResult, OutboxMessage, OutboxStats};
use coffee_ports::{InfraError, OutboxStore};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Integer, Interval, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::error::Settle as _;
use crate::pool::PgPool;
use crate::sql::{interval, purge_in_batches};

/// [`OutboxStore`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgOutboxStore {
    pool: PgPool,
}

impl PgOutboxStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Text)]
    payload: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

#[derive(QueryableByName)]
struct StatsRow {
    #[diesel(sql_type = BigInt)]
    pending: i64,
    #[diesel(sql_type = BigInt)]
    in_flight: i64,
    #[diesel(sql_type = BigInt)]
    delivered: i64,
    #[diesel(sql_type = BigInt)]
    dead: i64,
}

const CLAIM: &str = "
UPDATE outbox_events SET locked_until = now() + $3, locked_by = $1
WHERE id IN (
    SELECT id FROM outbox_events
    WHERE status = 'PENDING' AND next_attempt_at <= now() AND (locked_until IS NULL OR locked_until < now())
    ORDER BY next_attempt_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING id, event_type, payload::text AS payload, attempts";

#[derive(QueryableByName)]
struct DeadRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = SqlUuid)]
    aggregate_id: Uuid,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    created_at: time::OffsetDateTime,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

#[async_trait]
impl OutboxStore for PgOutboxStore {
    async fn claim(&self, owner: &str, limit: u32, lease: Duration) -> Result<Vec<OutboxMessage>, InfraError> {
        let mut conn = self.pool.get().await?;
        let rows: Vec<Claimed> = crate::sql::query!(CLAIM)
            .bind::<Text, _>(owner)
            .bind::<BigInt, _>(i64::from(limit))
            .bind::<Interval, _>(interval(lease))
            .load(&mut conn)
            .await
            .settle(&conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| OutboxMessage {
                id: r.id,
                event_type: r.event_type,
                payload: r.payload,
                attempts: u32::try_from(r.attempts).unwrap_or_default(),
            })
            .collect())
    }

    async fn record(&self, owner: &str, id: Uuid, result: DeliveryResult) -> Result<(), InfraError> {
        let mut conn = self.pool.get().await?;
        let recorded =
            match result {
                DeliveryResult::Delivered => {
                    crate::sql::query!(
                        "UPDATE outbox_events SET status = 'DELIVERED', delivered_at = now(), attempts = attempts + 1, \
                     locked_until = NULL, locked_by = NULL, last_error = NULL WHERE id = $1 AND locked_by = $2",
                    )
                    .bind::<SqlUuid, _>(id)
                    .bind::<Text, _>(owner)
                    .execute(&mut conn)
                    .await
                }
                DeliveryResult::Retry { retry_in, error } => crate::sql::query!(
                    "UPDATE outbox_events SET attempts = attempts + 1, next_attempt_at = now() + $3, last_error = $4, \
                     locked_until = NULL, locked_by = NULL WHERE id = $1 AND locked_by = $2",
                )
                .bind::<SqlUuid, _>(id)
                .bind::<Text, _>(owner)
                .bind::<Interval, _>(interval(retry_in))
                .bind::<Text, _>(error)
                .execute(&mut conn)
                .await,
                DeliveryResult::Dead { error } => {
                    crate::sql::query!(
                        "UPDATE outbox_events SET status = 'DEAD', attempts = attempts + 1, last_error = $3, \
                     locked_until = NULL, locked_by = NULL WHERE id = $1 AND locked_by = $2",
                    )
                    .bind::<SqlUuid, _>(id)
                    .bind::<Text, _>(owner)
                    .bind::<Text, _>(error)
                    .execute(&mut conn)
                    .await
                }
            };
        recorded.settle(&conn).await?;
        Ok(())
    }

    async fn release(&self, owner: &str) -> Result<u64, InfraError> {
        let mut conn = self.pool.get().await?;
        let released = crate::sql::query!(
            "UPDATE outbox_events SET locked_until = NULL, locked_by = NULL WHERE locked_by = $1 AND status = 'PENDING'",
        )
        .bind::<Text, _>(owner)
        .execute(&mut conn)
        .await
        .settle(&conn).await?;
        Ok(released as u64)
    }

    async fn requeue_dead(&self) -> Result<u64, InfraError> {
        let mut conn = self.pool.get().await?;
        let requeued = crate::sql::query!(
            "UPDATE outbox_events SET status = 'PENDING', attempts = 0, next_attempt_at = now(), \
             locked_until = NULL, locked_by = NULL WHERE status = 'DEAD'",
        )
        .execute(&mut conn)
        .await
        .settle(&conn)
        .await?;
        Ok(requeued as u64)
    }

    async fn stats(&self) -> Result<OutboxStats, InfraError> {
        let mut conn = self.pool.get().await?;
        let row: StatsRow = crate::sql::query!(
            "SELECT count(*) FILTER (WHERE status = 'PENDING') AS pending, \
                    count(*) FILTER (WHERE status = 'PENDING' AND locked_until > now()) AS in_flight, \
                    count(*) FILTER (WHERE status = 'DELIVERED') AS delivered, \
                    count(*) FILTER (WHERE status = 'DEAD') AS dead \
             FROM outbox_events",
        )
        .get_result(&mut conn)
        .await
        .settle(&conn)
        .await?;
        Ok(OutboxStats {
            pending: count(row.pending),
            in_flight: count(row.in_flight),
            delivered: count(row.delivered),
            dead: count(row.dead),
        })
    }

    async fn backlog(&self) -> Result<(u64, u64), InfraError> {
        #[derive(QueryableByName)]
        struct Backlog {
            #[diesel(sql_type = BigInt)]
            pending: i64,
            #[diesel(sql_type = BigInt)]
            dead: i64,
        }
        let mut conn = self.pool.get().await?;
        let row: Backlog = crate::sql::query!(
            "SELECT (SELECT count(*) FROM outbox_events WHERE status = 'PENDING') AS pending, \
                    (SELECT count(*) FROM outbox_events WHERE status = 'DEAD') AS dead",
        )
        .get_result(&mut conn)
        .await
        .settle(&conn)
        .await?;
        Ok((count(row.pending), count(row.dead)))
    }

    async fn purge_delivered(&self, retention: Duration) -> Result<u64, InfraError> {
        purge_in_batches(&self.pool, || {
            crate::sql::query!(
                "WITH gone AS (DELETE FROM outbox_events WHERE id IN \
                 (SELECT id FROM outbox_events WHERE status = 'DELIVERED' AND delivered_at < now() - $1::interval LIMIT $2) \
                 RETURNING 1) SELECT count(*) AS n FROM gone",
            )
            .into_boxed()
            .bind::<Interval, _>(interval(retention))
        })
        .await
    }

    async fn list_dead(&self, limit: u32) -> Result<Vec<DeadEvent>, InfraError> {
        let mut conn = self.pool.get().await?;
        let rows: Vec<DeadRow> = crate::sql::query!(
            "SELECT id, event_type, aggregate_id, attempts, last_error, created_at FROM outbox_events \
             WHERE status = 'DEAD' ORDER BY created_at, id LIMIT $1",
        )
        .bind::<BigInt, _>(i64::from(limit))
        .load(&mut conn)
        .await
        .settle(&conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DeadEvent {
                id: r.id,
                event_type: r.event_type,
                aggregate_id: r.aggregate_id,
                attempts: u32::try_from(r.attempts).unwrap_or_default(),
                last_error: r.last_error,
                created_at: r.created_at,
            })
            .collect())
    }

    /// The status is checked again on the row being deleted, so an event an
    /// operator requeues meanwhile is not deleted.
    async fn discard_dead(&self, older_than: Duration) -> Result<u64, InfraError> {
        purge_in_batches(&self.pool, || {
            crate::sql::query!(
                "WITH gone AS (DELETE FROM outbox_events WHERE status = 'DEAD' AND id IN \
                 (SELECT id FROM outbox_events WHERE status = 'DEAD' AND created_at < now() - $1::interval LIMIT $2) \
                 RETURNING 1) SELECT count(*) AS n FROM gone",
            )
            .into_boxed()
            .bind::<Interval, _>(interval(older_than))
        })
        .await
    }
}
