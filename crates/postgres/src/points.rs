//! The points ledger: balances on `users`, rows in `point_transactions`.

use std::time::Duration;

use async_trait::async_trait;
use coffee_domain::{
    Charge, ChargeAmount, ChargeLimits, ChargeOutcome, Cursor, IdempotencyContext, Idempotent, Page, PageSize,
    PointTransaction, Points, TransactionKind, UserId,
};
use coffee_ports::{IdempotencyError, InfraError, PointStore};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error;
use crate::idempotency::{self, TxError};
use crate::pool::PgPool;
use crate::schema::{point_transactions, users};
use crate::sql::clock_timestamp;
use futures_util::FutureExt as _;

/// [`PointStore`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgPointStore {
    pool: PgPool,
    /// How long a duplicate waits for the first request with its key before
    /// answering `IDEMPOTENCY_KEY_IN_USE`.
    idempotency_wait: Duration,
}

impl PgPointStore {
    pub fn new(pool: PgPool, idempotency_wait: Duration) -> Self {
        Self { pool, idempotency_wait }
    }
}

fn points(value: i64) -> Result<Points, InfraError> {
    Points::new(value).map_err(|e| InfraError::Unexpected(anyhow::anyhow!("stored points are invalid: {e}")))
}

/// The charge itself: one conditional UPDATE (no read-modify-write race),
/// then the ledger row with the balance it produced.
async fn apply_charge(
    conn: &mut AsyncPgConnection,
    user: UserId,
    amount: Points,
    limits: ChargeLimits,
) -> Result<ChargeOutcome, TxError> {
    let user_id = user.as_uuid();
    // RETURNING reads the clock after the row lock: the ledger row's time.
    let changed: Option<(i64, OffsetDateTime)> = diesel::update(
        users::table
            .filter(users::id.eq(user_id))
            .filter((users::point + amount.value()).le(limits.max_balance.value())),
    )
    .set((
        users::point.eq(users::point + amount.value()),
        users::updated_at.eq(clock_timestamp()),
    ))
    .returning((users::point, users::updated_at))
    .get_result(conn)
    .await
    .optional()?;
    let Some((balance, charged_at)) = changed else {
        let current: Option<i64> = users::table
            .find(user_id)
            .select(users::point)
            .first(conn)
            .await
            .optional()?;
        let current = current.ok_or_else(|| InfraError::Unexpected(anyhow::anyhow!("user {user} does not exist")))?;
        return Ok(ChargeOutcome::BalanceLimitExceeded {
            balance: points(current)?,
            amount,
            max_balance: limits.max_balance,
        });
    };
    let transaction_id = Uuid::now_v7();
    diesel::insert_into(point_transactions::table)
        .values((
            point_transactions::id.eq(transaction_id),
            point_transactions::user_id.eq(user_id),
            point_transactions::kind.eq(TransactionKind::Add.as_str()),
            point_transactions::amount.eq(amount.value()),
            point_transactions::balance_after.eq(balance),
            point_transactions::created_at.eq(charged_at),
        ))
        .execute(conn)
        .await?;
    Ok(ChargeOutcome::Charged(Charge {
        user_id: user,
        amount,
        balance: points(balance)?,
        transaction_id,
        charged_at,
    }))
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = point_transactions, check_for_backend(diesel::pg::Pg))]
struct TransactionRow {
    id: Uuid,
    kind: String,
    amount: i64,
    balance_after: i64,
    order_id: Option<Uuid>,
    created_at: OffsetDateTime,
}

impl TryFrom<TransactionRow> for PointTransaction {
    type Error = InfraError;

    fn try_from(row: TransactionRow) -> Result<Self, Self::Error> {
        let kind = match row.kind.as_str() {
            "ADD" => TransactionKind::Add,
            "DEDUCT" => TransactionKind::Deduct,
            other => {
                return Err(InfraError::Unexpected(anyhow::anyhow!(
                    "unknown ledger row type {other:?}"
                )));
            }
        };
        Ok(PointTransaction {
            id: row.id,
            kind,
            amount: points(row.amount)?,
            balance_after: points(row.balance_after)?,
            order_id: row.order_id,
            created_at: row.created_at,
        })
    }
}

#[async_trait]
impl PointStore for PgPointStore {
    #[tracing::instrument(name = "pg.points.charge", skip_all, fields(user = %context.user_id))]
    async fn charge(
        &self,
        context: IdempotencyContext,
        amount: ChargeAmount,
        limits: ChargeLimits,
    ) -> Result<Idempotent<ChargeOutcome>, IdempotencyError> {
        let user = context.user_id;
        idempotency::run(&self.pool, &context, self.idempotency_wait, move |conn| {
            async move { apply_charge(conn, user, amount.points(), limits).await }.boxed()
        })
        .await
    }

    async fn balance(&self, user: UserId) -> Result<Option<Points>, InfraError> {
        let mut conn = self.pool.get().await?;
        let balance: Option<i64> = users::table
            .find(user.as_uuid())
            .select(users::point)
            .first(&mut conn)
            .await
            .optional()
            .map_err(error::from_diesel)?;
        balance.map(points).transpose()
    }

    async fn history(
        &self,
        user: UserId,
        size: PageSize,
        after: Option<Cursor>,
    ) -> Result<Page<PointTransaction>, InfraError> {
        let mut conn = self.pool.get().await?;
        let mut query = point_transactions::table
            .filter(point_transactions::user_id.eq(user.as_uuid()))
            .select(TransactionRow::as_select())
            .into_boxed();
        if let Some(cursor) = after {
            query = query.filter(
                point_transactions::created_at
                    .lt(cursor.created_at)
                    .or(point_transactions::created_at
                        .eq(cursor.created_at)
                        .and(point_transactions::id.lt(cursor.id))),
            );
        }
        let rows: Vec<TransactionRow> = query
            .order((point_transactions::created_at.desc(), point_transactions::id.desc()))
            .limit(i64::from(size.get()) + 1)
            .load(&mut conn)
            .await
            .map_err(error::from_diesel)?;
        let mut items = rows
            .into_iter()
            .map(PointTransaction::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() > usize::from(size.get()) {
            items.truncate(usize::from(size.get()));
            items.last().map(|last| Cursor {
                created_at: last.created_at,
                id: last.id,
            })
        } else {
            None
        };
        Ok(Page { items, next })
    }
}
