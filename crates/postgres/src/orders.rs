//! Orders: placed in one transaction with everything they touch.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use coffee_domain::{
    Cursor, IdempotencyContext, Idempotent, Menu, MenuId, OrderDraft, OrderLine, OrderPlacedEvent, OrderRequest, Page,
    PageSize, PlaceOrderOutcome, PlacedOrder, Points, PricingError, TransactionKind, UserId,
};
use coffee_ports::{IdempotencyError, InfraError, OrderStore};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error;
use crate::idempotency::{self, TxError};
use crate::menus::MenuRow;
use crate::pool::PgPool;
use crate::schema::{menu_sales_hourly, menus, order_items, orders, outbox_events, point_transactions, users};
use crate::sql::{clock_timestamp, instant_or};
use futures_util::FutureExt as _;

/// Write shards per (hour, menu) statistics bucket: concurrent orders of one
/// menu spread over this many rows instead of queueing on one.
pub const STATISTICS_SHARDS: u128 = 16;

/// Statements an order's transaction runs at most, `BEGIN` and `COMMIT`
/// included; each is bounded by the pool's statement timeout.
pub const ORDER_STATEMENTS: u32 = 11;

/// The longest an order's transaction can stay open, measured from a request
/// asking for a connection: waiting for one, waiting for a duplicate with the
/// same idempotency key, then every statement at its timeout. The popular
/// ranking trusts statistics older than [`crate::popular::SETTLE`] to be
/// final, so the server refuses settings where this reaches it.
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
        at: OffsetDateTime,
    ) -> Result<Idempotent<PlaceOrderOutcome>, IdempotencyError> {
        self.place(context, request, Some(at)).await
    }

    async fn place(
        &self,
        context: IdempotencyContext,
        request: OrderRequest,
        at: Option<OffsetDateTime>,
    ) -> Result<Idempotent<PlaceOrderOutcome>, IdempotencyError> {
        let user = context.user_id;
        idempotency::run(&self.pool, &context, self.idempotency_wait, move |conn| {
            async move { apply_order(conn, user, &request, at).await }.boxed()
        })
        .await
    }
}

fn points(value: i64) -> Result<Points, InfraError> {
    Points::new(value).map_err(|e| InfraError::Unexpected(anyhow::anyhow!("stored points are invalid: {e}")))
}

/// The start of the UTC hour containing `t`: the statistics bucket.
pub(crate) fn hour_of(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    t - Duration::from_secs(u64::from(t.minute()) * 60 + u64::from(t.second()))
        - Duration::from_nanos(u64::from(t.nanosecond()))
}

/// Prices and pays for `request`, then writes everything an order touches,
/// all stamped with the instant the balance changed: the database's clock
/// read after the user's row is locked (or `at`, when seeding history).
async fn apply_order(
    conn: &mut AsyncPgConnection,
    user: UserId,
    request: &OrderRequest,
    at: Option<OffsetDateTime>,
) -> Result<PlaceOrderOutcome, TxError> {
    let ids: Vec<Uuid> = request.menu_ids().iter().map(MenuId::as_uuid).collect();
    let rows: Vec<MenuRow> = menus::table
        .filter(menus::id.eq_any(&ids))
        .select(MenuRow::as_select())
        .load(conn)
        .await?;
    let menus = rows.into_iter().map(Menu::try_from).collect::<Result<Vec<_>, _>>()?;
    let draft = match OrderDraft::price(request, &menus) {
        Ok(draft) => draft,
        Err(PricingError::MenuNotFound(menu_ids)) => return Ok(PlaceOrderOutcome::MenuNotFound { menu_ids }),
        Err(PricingError::Overflow) => {
            return Err(InfraError::Unexpected(anyhow::anyhow!("an order total overflowed")).into());
        }
    };
    let total = draft.total_price.value();

    // The payment: one conditional UPDATE, so N concurrent orders against a
    // balance that covers K of them give exactly K successes. Its RETURNING
    // reads the clock after the row lock: the order's one timestamp.
    let paid: Option<(i64, OffsetDateTime)> = diesel::update(
        users::table
            .filter(users::id.eq(user.as_uuid()))
            .filter(users::point.ge(total)),
    )
    .set((
        users::point.eq(users::point - total),
        users::updated_at.eq(instant_or(at, clock_timestamp())),
    ))
    .returning((users::point, users::updated_at))
    .get_result(conn)
    .await
    .optional()?;
    let Some((balance, at)) = paid else {
        let current: Option<i64> = users::table
            .find(user.as_uuid())
            .select(users::point)
            .first(conn)
            .await
            .optional()?;
        let current = current.ok_or_else(|| InfraError::Unexpected(anyhow::anyhow!("user {user} does not exist")))?;
        return Ok(PlaceOrderOutcome::InsufficientPoints {
            balance: points(current)?,
            required: draft.total_price,
        });
    };

    let order = PlacedOrder {
        id: Uuid::now_v7(),
        user_id: user,
        lines: draft.lines,
        total_price: draft.total_price,
        balance_after: points(balance)?,
        created_at: at,
    };
    diesel::insert_into(orders::table)
        .values((
            orders::id.eq(order.id),
            orders::user_id.eq(user.as_uuid()),
            orders::total_price.eq(total),
            orders::balance_after.eq(balance),
            orders::created_at.eq(at),
        ))
        .execute(conn)
        .await?;
    let items: Vec<_> = order
        .lines
        .iter()
        .map(|line| {
            (
                order_items::id.eq(Uuid::now_v7()),
                order_items::order_id.eq(order.id),
                order_items::menu_id.eq(line.menu_id.as_uuid()),
                order_items::menu_name.eq(line.name.as_str()),
                order_items::quantity.eq(i32::try_from(line.quantity).unwrap_or(i32::MAX)),
                order_items::unit_price.eq(line.unit_price.value()),
                order_items::total_price.eq(line.total_price.value()),
                order_items::created_at.eq(at),
            )
        })
        .collect();
    diesel::insert_into(order_items::table)
        .values(items)
        .execute(conn)
        .await?;
    diesel::insert_into(point_transactions::table)
        .values((
            point_transactions::id.eq(Uuid::now_v7()),
            point_transactions::user_id.eq(user.as_uuid()),
            point_transactions::kind.eq(TransactionKind::Deduct.as_str()),
            point_transactions::amount.eq(total),
            point_transactions::balance_after.eq(balance),
            point_transactions::order_id.eq(Some(order.id)),
            // The instant of the balance change, like a charge's row, so
            // the history's order is the order of the balances.
            point_transactions::created_at.eq(at),
        ))
        .execute(conn)
        .await?;

    // Popular-menu statistics: one shard of each (hour, menu) bucket, rows
    // locked in menu-id order (the lines are sorted) so orders never deadlock.
    let shard = i16::try_from(order.id.as_u128() % STATISTICS_SHARDS).unwrap_or_default();
    let bucket = hour_of(at);
    let stats: Vec<_> = order
        .lines
        .iter()
        .map(|line| {
            (
                menu_sales_hourly::bucket_start.eq(bucket),
                menu_sales_hourly::menu_id.eq(line.menu_id.as_uuid()),
                menu_sales_hourly::shard.eq(shard),
                menu_sales_hourly::quantity.eq(i64::from(line.quantity)),
                menu_sales_hourly::order_count.eq(1i64),
            )
        })
        .collect();
    diesel::insert_into(menu_sales_hourly::table)
        .values(stats)
        .on_conflict((
            menu_sales_hourly::bucket_start,
            menu_sales_hourly::menu_id,
            menu_sales_hourly::shard,
        ))
        .do_update()
        .set((
            menu_sales_hourly::quantity.eq(menu_sales_hourly::quantity + excluded(menu_sales_hourly::quantity)),
            menu_sales_hourly::order_count
                .eq(menu_sales_hourly::order_count + excluded(menu_sales_hourly::order_count)),
        ))
        .execute(conn)
        .await?;

    // The event for the data-collection platform, delivered by the relay.
    let event = OrderPlacedEvent::new(Uuid::now_v7(), &order);
    let payload = serde_json::to_value(&event)
        .map_err(|e| InfraError::Unexpected(anyhow::Error::new(e).context("serialising the order event")))?;
    diesel::insert_into(outbox_events::table)
        .values((
            outbox_events::id.eq(event.event_id),
            outbox_events::event_type.eq(OrderPlacedEvent::TYPE),
            outbox_events::aggregate_id.eq(order.id),
            outbox_events::payload.eq(payload),
        ))
        .execute(conn)
        .await?;
    Ok(PlaceOrderOutcome::Placed(order))
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
async fn with_items(conn: &mut AsyncPgConnection, rows: Vec<OrderRow>) -> Result<Vec<PlacedOrder>, InfraError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let items: Vec<ItemRow> = order_items::table
        .filter(order_items::order_id.eq_any(&ids))
        .select(ItemRow::as_select())
        .order((order_items::order_id, order_items::menu_id))
        .load(conn)
        .await
        .map_err(error::from_diesel)?;
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
    ) -> Result<Idempotent<PlaceOrderOutcome>, IdempotencyError> {
        self.place(context, request, None).await
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
            .map_err(error::from_diesel)?;
        match row {
            Some(row) => Ok(with_items(&mut conn, vec![row]).await?.pop()),
            None => Ok(None),
        }
    }

    async fn list(&self, user: UserId, size: PageSize, after: Option<Cursor>) -> Result<Page<PlacedOrder>, InfraError> {
        let mut conn = self.pool.get().await?;
        let mut query = orders::table
            .filter(orders::user_id.eq(user.as_uuid()))
            .select(OrderRow::as_select())
            .into_boxed();
        if let Some(cursor) = after {
            query = query.filter(
                orders::created_at
                    .lt(cursor.created_at)
                    .or(orders::created_at.eq(cursor.created_at).and(orders::id.lt(cursor.id))),
            );
        }
        let mut rows: Vec<OrderRow> = query
            .order((orders::created_at.desc(), orders::id.desc()))
            .limit(i64::from(size.get()) + 1)
            .load(&mut conn)
            .await
            .map_err(error::from_diesel)?;
        let more = rows.len() > usize::from(size.get());
        rows.truncate(usize::from(size.get()));
        let items = with_items(&mut conn, rows).await?;
        let next = if more {
            items.last().map(|o| Cursor {
                created_at: o.created_at,
                id: o.id,
            })
        } else {
            None
        };
        Ok(Page { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn buckets_are_utc_hours() {
        assert_eq!(
            hour_of(datetime!(2026-11-29 10:59:59.999999 UTC)),
            datetime!(2026-11-29 10:00 UTC)
        );
        assert_eq!(
            hour_of(datetime!(2026-11-29 10:00 UTC)),
            datetime!(2026-11-29 10:00 UTC)
        );
        assert_eq!(
            hour_of(datetime!(2026-11-29 19:30:00 +09:30)),
            datetime!(2026-11-29 10:00 UTC)
        );
    }
}
