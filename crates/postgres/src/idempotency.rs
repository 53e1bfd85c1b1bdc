//! The idempotency mechanism every idempotent operation shares.
//!
//! Inside the operation's own transaction, [`claim`] inserts the
//! `(user, scope, key)` row first. A concurrent duplicate's insert waits on
//! the primary key until the first transaction ends: if it committed, the
//! duplicate finds the stored outcome and replays it (or sees a different
//! fingerprint: `KeyReused`); if it rolled back (a failure), the duplicate
//! proceeds as the first. No lock service, no in-process lock: correctness
//! comes from the database, across any number of instances. The effect then
//! runs, and [`store`] writes its outcome before the commit.

use std::time::Duration;

use coffee_domain::IdempotencyContext;
use coffee_ports::{IdempotencyConflict, IdempotencyError, IdempotencyRecords, InfraError};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{BigInt, Bytea, Integer, Interval, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error;
use crate::pool::PgPool;
use crate::schema::idempotency_keys;

/// An error inside an idempotent transaction; rolls it back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TxError {
    #[error(transparent)]
    Diesel(#[from] DieselError),
    #[error(transparent)]
    Idempotency(IdempotencyError),
}

impl From<IdempotencyError> for TxError {
    fn from(error: IdempotencyError) -> Self {
        Self::Idempotency(error)
    }
}

impl From<InfraError> for TxError {
    fn from(error: InfraError) -> Self {
        Self::Idempotency(IdempotencyError::Infra(error))
    }
}

impl From<TxError> for IdempotencyError {
    fn from(error: TxError) -> Self {
        match error {
            TxError::Idempotency(e) => e,
            TxError::Diesel(e) => IdempotencyError::Infra(error::from_diesel(e)),
        }
    }
}

/// What claiming a key found.
enum Claim<T> {
    /// The key is ours: run the effect, then [`store`] its outcome.
    Fresh,
    /// The key was used before with this very request: its outcome.
    Replay(T),
}

#[derive(QueryableByName)]
struct ClaimRow {
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Nullable<Bytea>)]
    fingerprint: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    outcome: Option<serde_json::Value>,
}

/// Claims `context`'s key, waiting at most `wait` for a concurrent duplicate:
/// one call of `claim_idempotency_key` (migration 4), which tells a wait that
/// ran out by its SQLSTATE, so no error text is ever interpreted here.
async fn claim<T: DeserializeOwned>(
    conn: &mut AsyncPgConnection,
    context: &IdempotencyContext,
    wait: Duration,
) -> Result<Claim<T>, TxError> {
    let row: ClaimRow =
        diesel::sql_query("SELECT state, fingerprint, outcome FROM claim_idempotency_key($1, $2, $3, $4, $5)")
            .bind::<SqlUuid, _>(context.user_id.as_uuid())
            .bind::<Text, _>(context.scope.as_str())
            .bind::<Text, _>(context.key.as_str())
            .bind::<Bytea, _>(context.fingerprint.as_bytes().as_slice())
            .bind::<Integer, _>(i32::try_from(wait.as_millis()).unwrap_or(i32::MAX))
            .get_result(conn)
            .await?;
    match (row.state.as_str(), row.fingerprint, row.outcome) {
        ("fresh", _, _) => Ok(Claim::Fresh),
        ("in_use", _, _) => Err(IdempotencyError::from(IdempotencyConflict::KeyInUse).into()),
        ("stored", Some(fingerprint), _) if fingerprint.as_slice() != context.fingerprint.as_bytes().as_slice() => {
            Err(IdempotencyError::from(IdempotencyConflict::KeyReused).into())
        }
        ("stored", Some(_), Some(outcome)) => serde_json::from_value(outcome).map(Claim::Replay).map_err(|e| {
            InfraError::Unexpected(anyhow::Error::new(e).context("stored idempotent outcome is unreadable")).into()
        }),
        (state, _, _) => {
            Err(InfraError::Unexpected(anyhow::anyhow!("claim_idempotency_key answered {state:?}")).into())
        }
    }
}

/// Stores the outcome of a fresh claim, in the same transaction.
async fn store<T: Serialize>(
    conn: &mut AsyncPgConnection,
    context: &IdempotencyContext,
    outcome: &T,
) -> Result<(), TxError> {
    let outcome = serde_json::to_value(outcome)
        .map_err(|e| InfraError::Unexpected(anyhow::Error::new(e).context("serialising an idempotent outcome")))?;
    diesel::update(idempotency_keys::table.find((
        context.user_id.as_uuid(),
        context.scope.as_str(),
        context.key.as_str(),
    )))
    .set(idempotency_keys::outcome.eq(outcome))
    .execute(conn)
    .await?;
    Ok(())
}

/// Runs `effect` as an idempotent operation, in one transaction: claims the
/// key (replaying a stored outcome instead of running), runs the effect,
/// stores its outcome. Both idempotent adapters go through here.
pub(crate) async fn run<T, F>(
    pool: &PgPool,
    context: &IdempotencyContext,
    wait: Duration,
    effect: F,
) -> Result<coffee_domain::Idempotent<T>, IdempotencyError>
where
    T: Serialize + DeserializeOwned + Send + Sync,
    F: for<'r> FnOnce(&'r mut AsyncPgConnection) -> BoxFuture<'r, Result<T, TxError>> + Send,
{
    use coffee_domain::Idempotent;
    use diesel_async::AsyncConnection as _;
    let mut conn = pool.get().await?;
    let conn: &mut AsyncPgConnection = &mut conn;
    let result = conn
        .transaction::<_, TxError, _>(async |conn| {
            if let Claim::Replay(outcome) = claim(conn, context, wait).await? {
                return Ok(Idempotent::Replayed(outcome));
            }
            let outcome = effect(conn).await?;
            store(conn, context, &outcome).await?;
            Ok(Idempotent::Fresh(outcome))
        })
        .await;
    Ok(result?)
}

/// [`IdempotencyRecords`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgIdempotencyRecords {
    pool: PgPool,
}

impl PgIdempotencyRecords {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(QueryableByName)]
struct Deleted {
    #[diesel(sql_type = BigInt)]
    deleted: i64,
}

#[async_trait::async_trait]
impl IdempotencyRecords for PgIdempotencyRecords {
    /// Deletes in batches of 5,000 so no statement holds many locks for long.
    async fn purge_older_than(&self, retention: Duration) -> Result<u64, InfraError> {
        let mut conn = self.pool.get().await?;
        let interval =
            diesel::data_types::PgInterval::from_microseconds(i64::try_from(retention.as_micros()).unwrap_or(i64::MAX));
        let mut total = 0u64;
        loop {
            let batch: Deleted = diesel::sql_query(
                "WITH gone AS (DELETE FROM idempotency_keys WHERE ctid IN \
                 (SELECT ctid FROM idempotency_keys WHERE created_at < now() - $1 LIMIT 5000) RETURNING 1) \
                 SELECT count(*) AS deleted FROM gone",
            )
            .bind::<Interval, _>(interval)
            .get_result(&mut conn)
            .await
            .map_err(error::from_diesel)?;
            total += u64::try_from(batch.deleted).unwrap_or_default();
            if batch.deleted < 5000 {
                return Ok(total);
            }
        }
    }
}
