//! The points ledger: balances on `users`, rows in `point_transactions`.

use std::time::Duration;

use async_trait::async_trait;
use coffee_domain::{
    Charge, ChargeAmount, ChargeLimits, ChargeOutcome, Cursor, IdempotencyContext, Idempotent, Page, PageSize,
    PointTransaction, Points, TransactionKind, UserId,
};
use coffee_ports::{IdempotencyError, InfraError, PointStore};
use diesel::QueryResult;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Bytea, Jsonb, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::Settle as _;
use crate::idempotency::{self, Claim, IdempotentWrite, Record, Written, lock_then_claim};
use crate::page::{newest_first, page_of};
use crate::pool::PgPool;
use crate::schema::{point_transactions, users};
use crate::sql::statement;

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

statement! {
    /// What a charge reads before it decides, in one statement that first
    /// locks the user's row and claims the key ([`lock_then_claim!`]): the
    /// balance, the instant of the balance change (the database's clock,
    /// read above the locked row, so after any wait for the lock) and
    /// whether the key is this request's. No row when there is no such user.
    struct ReadCharge {
        user: Uuid = SqlUuid,
        scope: String = Text,
        key: String = Text,
        fingerprint: Vec<u8> = Bytea,
    } returns (BigInt, Timestamptz, Bool)
        = concat!(
            lock_then_claim!(),
            "SELECT balance.point, clock_timestamp(), EXISTS (SELECT FROM claim) FROM balance"
        );
}

statement! {
    /// A charge's writes in one statement: the amount added to the locked
    /// balance, the `ADD` row with the balance it produced, and the outcome
    /// stored in the key's record ([`Record::storing`]).
    struct RecordCharge {
        id: Uuid = SqlUuid,
        user: Uuid = SqlUuid,
        add: String = Text,
        amount: i64 = BigInt,
        balance_after: i64 = BigInt,
        at: OffsetDateTime = Timestamptz,
        scope: String = Text,
        key: String = Text,
        outcome: serde_json::Value = Jsonb,
    } = "WITH credit AS (UPDATE users SET point = point + $amount, updated_at = $at WHERE id = $user), \
         ledger AS (INSERT INTO point_transactions (id, user_id, type, amount, balance_after, created_at) \
                    VALUES ($id, $user, $add, $amount, $balance_after, $at)) \
         UPDATE idempotency_keys SET outcome = $outcome WHERE user_id = $user AND scope = $scope AND key = $key";
}

/// One charge, as an idempotent write: the balance is locked and read, and
/// the key claimed, in the first round trip with the database's clock once
/// the balance is locked; the domain applies the balance limit, and the new
/// balance, its ledger row (stamped with that clock) and the stored outcome
/// are written in the second.
struct ChargeWrite {
    user: UserId,
    amount: ChargeAmount,
    limits: ChargeLimits,
}

impl IdempotentWrite for ChargeWrite {
    /// The locked balance and the instant, none when there is no such user.
    type Reads = Option<(i64, OffsetDateTime)>;
    type Outcome = ChargeOutcome;

    fn read<'c>(&self, conn: &'c AsyncPgConnection, claim: Claim) -> BoxFuture<'c, QueryResult<(Self::Reads, bool)>> {
        let mut q = conn;
        ReadCharge {
            user: self.user.as_uuid(),
            scope: claim.scope,
            key: claim.key,
            fingerprint: claim.fingerprint,
        }
        .load::<(i64, OffsetDateTime, bool)>(&mut q)
        .map(|rows| {
            rows.map(|rows| match rows.into_iter().next() {
                Some((balance, at, claimed)) => (Some((balance, at)), claimed),
                // No such user: nothing was claimed, and the write says so.
                None => (None, true),
            })
        })
        .boxed()
    }

    fn write<'c>(
        &self,
        conn: &'c AsyncPgConnection,
        reads: Self::Reads,
        record: Record<'_>,
    ) -> Result<Written<'c, ChargeOutcome>, InfraError> {
        let (balance, charged_at) =
            reads.ok_or_else(|| InfraError::Unexpected(anyhow::anyhow!("user {} does not exist", self.user)))?;
        let balance = points(balance)?;
        let amount = self.amount.points();
        let Some(after) = self.limits.credit(balance, self.amount) else {
            let max_balance = self.limits.max_balance;
            return Ok(Written::Unchanged(ChargeOutcome::BalanceLimitExceeded {
                balance,
                amount,
                max_balance,
            }));
        };
        let charge = Charge {
            user_id: self.user,
            amount,
            balance: after,
            transaction_id: Uuid::now_v7(),
            charged_at,
        };
        let write = record_charge(&charge, &record)?;
        let mut q = conn;
        Ok(Written::Changed(ChargeOutcome::Charged(charge), write.execute(&mut q)))
    }
}

/// The statement that writes `charge` and stores it as the outcome in
/// `record`.
fn record_charge(charge: &Charge, record: &Record<'_>) -> Result<RecordCharge, InfraError> {
    let stored = record.storing(&ChargeOutcome::Charged(charge.clone()))?;
    Ok(RecordCharge {
        id: charge.transaction_id,
        user: charge.user_id.as_uuid(),
        add: TransactionKind::Add.as_str().to_owned(),
        amount: charge.amount.value(),
        balance_after: charge.balance.value(),
        at: charge.charged_at,
        scope: stored.scope,
        key: stored.key,
        outcome: stored.outcome,
    })
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
        let charge = ChargeWrite {
            user: context.user_id,
            amount,
            limits,
        };
        idempotency::run(&self.pool, &context, self.idempotency_wait, charge).await
    }

    async fn balance(&self, user: UserId) -> Result<Option<Points>, InfraError> {
        let mut conn = self.pool.get().await?;
        let balance: Option<i64> = users::table
            .find(user.as_uuid())
            .select(users::point)
            .first(&mut conn)
            .await
            .optional()
            .settle(&conn)
            .await?;
        balance.map(points).transpose()
    }

    async fn history(
        &self,
        user: UserId,
        size: PageSize,
        after: Option<Cursor>,
    ) -> Result<Page<PointTransaction>, InfraError> {
        let mut conn = self.pool.get().await?;
        let query = point_transactions::table
            .filter(point_transactions::user_id.eq(user.as_uuid()))
            .select(TransactionRow::as_select())
            .into_boxed();
        let rows: Vec<TransactionRow> = newest_first!(query, point_transactions, size, after)
            .load(&mut conn)
            .await
            .settle(&conn)
            .await?;
        let page = page_of(rows, size, |row| Cursor {
            created_at: row.created_at,
            id: row.id,
        });
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(PointTransaction::try_from)
                .collect::<Result<_, _>>()?,
            next: page.next,
        })
    }
}
