//! Orders: placed in one transaction with everything they touch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use coffee_domain::popular::hour_of;
use coffee_domain::{
    Cursor, IdempotencyContext, Idempotent, Menu, MenuId, OrderLine, OrderPlacedEvent, OrderRequest, Page, PageSize,
    PlaceOrderOutcome, PlacedOrder, Points, TransactionKind, UserId,
};
use coffee_ports::{DecideOrder, IdempotencyError, InfraError, OrderReads, OrderStore};
use diesel::QueryResult;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Bytea, Integer, Jsonb, SmallInt, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::Settle as _;
use crate::idempotency::{self, Claim, IdempotentWrite, Record, StoreOutcome, Written, lock_then_claim};
use crate::menus::MenuRow;
use crate::page::{newest_first, page_of};
use crate::pool::{PgConnection, PgPool};
use crate::schema::{order_items, orders};
use crate::sql::statement;

/// Write shards per (hour, menu) statistics bucket: concurrent orders of one
/// menu spread over this many rows instead of queueing on one.
pub const STATISTICS_SHARDS: u16 = 16;

/// Statements an order's transaction runs at most, in two round trips:
/// the session's `lock_timeout` when it changes, `BEGIN`, and one statement
/// that locks the balance, claims the key and reads the menus and the
/// clock; then the writes with the stored outcome, and `COMMIT`. Each is
/// bounded by the pool's statement timeout.
pub const ORDER_STATEMENTS: u32 = 5;

/// The longest an order's transaction can stay open, measured from a request
/// asking for a connection: waiting for one, waiting for a duplicate with the
/// same idempotency key, then every statement at its timeout. The popular
/// ranking trusts statistics older than its settling margin
/// (`coffee_application::SETTLE`) to be final, so the server refuses settings
/// where this reaches it.
pub fn longest_order_transaction(
    acquire_timeout: Duration,
    idempotency_wait: Duration,
    statement_timeout: Duration,
) -> Duration {
    acquire_timeout + idempotency_wait + statement_timeout * ORDER_STATEMENTS
}

/// [`OrderStore`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgOrderStore {
    pool: PgPool,
    idempotency_wait: Duration,
}

impl PgOrderStore {
    pub fn new(pool: PgPool, idempotency_wait: Duration) -> Self {
        Self { pool, idempotency_wait }
    }

    /// [`OrderStore::place_order`] stamped `at` instead of the database's
    /// clock: only for seeding a history in tests and benchmarks.
    pub async fn place_order_at(
        &self,
        context: IdempotencyContext,
        request: OrderRequest,
        decide: DecideOrder,
        at: OffsetDateTime,
    ) -> Result<Idempotent<PlaceOrderOutcome>, IdempotencyError> {
        self.place(context, request, decide, Some(at)).await
    }

    async fn place(
        &self,
        context: IdempotencyContext,
        request: OrderRequest,
        decide: DecideOrder,
        at: Option<OffsetDateTime>,
    ) -> Result<Idempotent<PlaceOrderOutcome>, IdempotencyError> {
        let order = OrderWrite {
            user: context.user_id,
            request,
            decide,
            at,
        };
        idempotency::run(&self.pool, &context, self.idempotency_wait, order).await
    }
}

fn points(value: i64) -> Result<Points, InfraError> {
    Points::new(value).map_err(|e| InfraError::Unexpected(anyhow::anyhow!("stored points are invalid: {e}")))
}

statement! {
    /// What an order reads before it decides, in one row of one statement
    /// that first locks the user's row and claims the key
    /// ([`lock_then_claim!`]): the user's balance (`NULL` when there is no
    /// such user), the instant of the balance change (the database's clock,
    /// read above the locked row, so after any wait for the lock; or `at`
    /// when seeding history), the menu rows the order names, as three arrays
    /// in one order, and whether the key is this request's.
    struct ReadOrder {
        ids: Vec<Uuid> = Array<SqlUuid>,
        user: Uuid = SqlUuid,
        at: Option<OffsetDateTime> = diesel::sql_types::Nullable<Timestamptz>,
        scope: String = Text,
        key: String = Text,
        fingerprint: Vec<u8> = Bytea,
    } returns (diesel::sql_types::Nullable<BigInt>, Timestamptz, Array<SqlUuid>, Array<Text>, Array<BigInt>, Bool)
        = concat!(
            lock_then_claim!(),
            "SELECT balance.point, coalesce($at, clock_timestamp()), m.ids, m.names, m.prices, \
                    EXISTS (SELECT FROM claim) \
             FROM (SELECT coalesce(array_agg(id), '{}') AS ids, coalesce(array_agg(name), '{}') AS names, \
                          coalesce(array_agg(price), '{}') AS prices \
                   FROM menus WHERE id = ANY($ids)) m \
             LEFT JOIN balance ON true"
        );
}

statement! {
    /// Everything a placed order writes, in one statement: the payment from
    /// the locked balance (the table's `CHECK (point >= 0)` is the last line
    /// of defence), the order, all its items whatever their number, its
    /// `DEDUCT` row, one shard of each (hour, menu) statistics bucket it sells
    /// (rows taken in menu-id order, the lines are sorted, so orders never
    /// deadlock), its event for the relay, and the outcome stored in the
    /// key's record ([`Record::storing`]). One statement instead of seven:
    /// each costs the server a parse-bind-execute, an executor start and a
    /// message of its own, and the request a response to wait for.
    struct RecordPlacedOrder {
        id: Uuid = SqlUuid,
        user: Uuid = SqlUuid,
        total: i64 = BigInt,
        balance_after: i64 = BigInt,
        at: OffsetDateTime = Timestamptz,
        item_ids: Vec<Uuid> = Array<SqlUuid>,
        menus: Vec<Uuid> = Array<SqlUuid>,
        names: Vec<String> = Array<Text>,
        quantities: Vec<i32> = Array<Integer>,
        unit_prices: Vec<i64> = Array<BigInt>,
        totals: Vec<i64> = Array<BigInt>,
        ledger_id: Uuid = SqlUuid,
        deduct: String = Text,
        bucket: OffsetDateTime = Timestamptz,
        shard: i16 = SmallInt,
        sold: Vec<i64> = Array<BigInt>,
        event_id: Uuid = SqlUuid,
        event_type: String = Text,
        payload: serde_json::Value = Jsonb,
        scope: String = Text,
        key: String = Text,
        outcome: serde_json::Value = Jsonb,
    } = "WITH pay AS (UPDATE users SET point = point - $total, updated_at = $at WHERE id = $user), \
         placed AS (INSERT INTO orders (id, user_id, total_price, balance_after, created_at) \
                    VALUES ($id, $user, $total, $balance_after, $at)), \
         items AS (INSERT INTO order_items (id, order_id, menu_id, menu_name, quantity, unit_price, total_price, created_at) \
                   SELECT i.id, $id, i.menu_id, i.name, i.quantity, i.unit_price, i.total, $at \
                   FROM unnest($item_ids::uuid[], $menus::uuid[], $names::text[], $quantities::integer[], \
                               $unit_prices::bigint[], $totals::bigint[]) AS i(id, menu_id, name, quantity, unit_price, total)), \
         ledger AS (INSERT INTO point_transactions (id, user_id, type, amount, balance_after, order_id, created_at) \
                    VALUES ($ledger_id, $user, $deduct, $total, $balance_after, $id, $at)), \
         sales AS (INSERT INTO menu_sales_hourly (bucket_start, menu_id, shard, quantity, order_count) \
                   SELECT $bucket, s.menu_id, $shard, s.quantity, 1 \
                   FROM unnest($menus::uuid[], $sold::bigint[]) AS s(menu_id, quantity) ORDER BY s.menu_id \
                   ON CONFLICT (bucket_start, menu_id, shard) DO UPDATE \
                   SET quantity = menu_sales_hourly.quantity + excluded.quantity, \
                       order_count = menu_sales_hourly.order_count + excluded.order_count), \
         queued AS (INSERT INTO outbox_events (id, event_type, aggregate_id, payload) \
                   VALUES ($event_id, $event_type, $id, $payload)) \
         UPDATE idempotency_keys SET outcome = $outcome WHERE user_id = $user AND scope = $scope AND key = $key";
}

/// One order, as an idempotent write: the menus and the locked balance are
/// read in the first round trip, `decide` (the application's rules) comes to
/// the outcome, and everything a placed order touches is written in the
/// second, stamped with one instant: the database's clock read once the
/// balance is locked (or `at`, when seeding history).
struct OrderWrite {
    user: UserId,
    request: OrderRequest,
    decide: DecideOrder,
    at: Option<OffsetDateTime>,
}

/// The row an order reads before it decides ([`ReadOrder`]).
type OrderReadRow = (Option<i64>, OffsetDateTime, Vec<Uuid>, Vec<String>, Vec<i64>);

impl IdempotentWrite for OrderWrite {
    type Reads = OrderReadRow;
    type Outcome = PlaceOrderOutcome;

    fn read<'c>(&self, conn: &'c AsyncPgConnection, claim: Claim) -> BoxFuture<'c, QueryResult<(OrderReadRow, bool)>> {
        let mut q = conn;
        ReadOrder {
            ids: self.request.menu_ids().iter().map(MenuId::as_uuid).collect(),
            user: self.user.as_uuid(),
            at: self.at,
            scope: claim.scope,
            key: claim.key,
            fingerprint: claim.fingerprint,
        }
        .get_result::<(Option<i64>, OffsetDateTime, Vec<Uuid>, Vec<String>, Vec<i64>, bool)>(&mut q)
        .map(|row| {
            row.map(|(balance, at, ids, names, prices, claimed)| {
                // No such user: nothing was claimed, and `decide` says so.
                let fresh = claimed || balance.is_none();
                ((balance, at, ids, names, prices), fresh)
            })
        })
        .boxed()
    }

    fn write<'c>(
        &self,
        conn: &'c AsyncPgConnection,
        (balance, at, ids, names, prices): OrderReadRow,
        record: Record<'_>,
    ) -> Result<Written<'c, PlaceOrderOutcome>, InfraError> {
        let reads = OrderReads {
            menus: ids
                .into_iter()
                .zip(names)
                .zip(prices)
                .map(|((id, name), price)| Menu::try_from(MenuRow { id, name, price }))
                .collect::<Result<_, _>>()?,
            balance: balance.map(points).transpose()?,
            at,
        };
        let outcome = (self.decide)(self.user, &self.request, reads)?;
        let PlaceOrderOutcome::Placed(order) = &outcome else {
            return Ok(Written::Unchanged(outcome));
        };
        let write = record_placed_order(order, record.storing(&outcome)?)?;
        let mut q = conn;
        Ok(Written::Changed(outcome, write.execute(&mut q)))
    }
}

/// The statement that writes `order` and everything it touches, and stores
/// the outcome (`stored`, [`Record::storing`]).
fn record_placed_order(order: &PlacedOrder, stored: StoreOutcome) -> Result<RecordPlacedOrder, InfraError> {
    let lines = &order.lines;
    let event = OrderPlacedEvent::new(Uuid::now_v7(), order);
    let payload = serde_json::to_value(&event)
        .map_err(|e| InfraError::Unexpected(anyhow::Error::new(e).context("serialising the order event")))?;
    Ok(RecordPlacedOrder {
        id: order.id,
        user: order.user_id.as_uuid(),
        total: order.total_price.value(),
        balance_after: order.balance_after.value(),
        at: order.created_at,
        item_ids: lines.iter().map(|_| Uuid::now_v7()).collect(),
        menus: lines.iter().map(|l| l.menu_id.as_uuid()).collect(),
        names: lines.iter().map(|l| l.name.clone()).collect(),
        quantities: lines
            .iter()
            .map(|l| i32::try_from(l.quantity).unwrap_or(i32::MAX))
            .collect(),
        unit_prices: lines.iter().map(|l| l.unit_price.value()).collect(),
        totals: lines.iter().map(|l| l.total_price.value()).collect(),
        // The `DEDUCT` row, at the instant of the balance change like a
        // charge's row, so the history's order is the order of the balances.
        ledger_id: Uuid::now_v7(),
        deduct: TransactionKind::Deduct.as_str().to_owned(),
        bucket: hour_of(order.created_at),
        shard: next_shard(),
        sold: lines.iter().map(|l| i64::from(l.quantity)).collect(),
        event_id: event.event_id,
        event_type: OrderPlacedEvent::TYPE.to_owned(),
        payload,
        scope: stored.scope,
        key: stored.key,
        outcome: stored.outcome,
    })
}

/// The popular-menu statistics shard of the next order: one hot menu spreads
/// its writes over [`STATISTICS_SHARDS`] rows, each order of this process
/// taking the next shard in turn, so orders in flight together (as many as
/// the pool has connections) rarely share a row lock, where a random shard
/// made half of them queue behind another.
fn next_shard() -> i16 {
    static NEXT_SHARD: AtomicU16 = AtomicU16::new(0);
    // Each process starts the turn elsewhere, so instances drift apart.
    let start = u16::try_from(std::process::id() % u32::from(STATISTICS_SHARDS)).unwrap_or_default();
    let shard = NEXT_SHARD.fetch_add(1, Ordering::Relaxed).wrapping_add(start) % STATISTICS_SHARDS;
    i16::try_from(shard).unwrap_or_default()
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = orders, check_for_backend(diesel::pg::Pg))]
struct OrderRow {
    id: Uuid,
    user_id: Uuid,
    total_price: i64,
    balance_after: i64,
    created_at: OffsetDateTime,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = order_items, check_for_backend(diesel::pg::Pg))]
struct ItemRow {
    order_id: Uuid,
    menu_id: Uuid,
    menu_name: String,
    quantity: i32,
    unit_price: i64,
    total_price: i64,
}

/// Loads the items of `rows` in one query and assembles the orders.
async fn with_items(conn: &mut PgConnection, rows: Vec<OrderRow>) -> Result<Vec<PlacedOrder>, InfraError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let items: Vec<ItemRow> = order_items::table
        .filter(order_items::order_id.eq_any(&ids))
        .select(ItemRow::as_select())
        .order((order_items::order_id, order_items::menu_id))
        .load(conn)
        .await
        .settle(conn)
        .await?;
    let mut lines: HashMap<Uuid, Vec<OrderLine>> = HashMap::new();
    for item in items {
        lines.entry(item.order_id).or_default().push(OrderLine {
            menu_id: MenuId::from_uuid(item.menu_id),
            name: item.menu_name,
            quantity: u32::try_from(item.quantity)
                .map_err(|_| InfraError::Unexpected(anyhow::anyhow!("stored quantity is negative")))?,
            unit_price: points(item.unit_price)?,
            total_price: points(item.total_price)?,
        });
    }
    rows.into_iter()
        .map(|row| {
            Ok(PlacedOrder {
                id: row.id,
                user_id: UserId::from_uuid(row.user_id),
                lines: lines.remove(&row.id).unwrap_or_default(),
                total_price: points(row.total_price)?,
                balance_after: points(row.balance_after)?,
                created_at: row.created_at,
            })
        })
        .collect()
}

#[async_trait]
impl OrderStore for PgOrderStore {
    #[tracing::instrument(name = "pg.orders.place", skip_all, fields(user = %context.user_id))]
    async fn place_order(
        &self,
        context: IdempotencyContext,
        request: OrderRequest,
        decide: DecideOrder,
    ) -> Result<Idempotent<PlaceOrderOutcome>, IdempotencyError> {
        self.place(context, request, decide, None).await
    }

    async fn find(&self, user: UserId, order: Uuid) -> Result<Option<PlacedOrder>, InfraError> {
        let mut conn = self.pool.get().await?;
        let row: Option<OrderRow> = orders::table
            .filter(orders::id.eq(order))
            .filter(orders::user_id.eq(user.as_uuid()))
            .select(OrderRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .settle(&conn)
            .await?;
        match row {
            Some(row) => Ok(with_items(&mut conn, vec![row]).await?.pop()),
            None => Ok(None),
        }
    }

    async fn list(&self, user: UserId, size: PageSize, after: Option<Cursor>) -> Result<Page<PlacedOrder>, InfraError> {
        let mut conn = self.pool.get().await?;
        let query = orders::table
            .filter(orders::user_id.eq(user.as_uuid()))
            .select(OrderRow::as_select())
            .into_boxed();
        let rows: Vec<OrderRow> = newest_first!(query, orders, size, after)
            .load(&mut conn)
            .await
            .settle(&conn)
            .await?;
        let page = page_of(rows, size, |row| Cursor {
            created_at: row.created_at,
            id: row.id,
        });
        Ok(Page {
            items: with_items(&mut conn, page.items).await?,
            next: page.next,
        })
    }
}
