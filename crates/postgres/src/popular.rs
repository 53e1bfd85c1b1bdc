//! The popular-menu statistics on PostgreSQL: the statements the ranking
//! reads, their rows, and the statistics' upkeep. The ranking itself is the
//! application's (`coffee_application::PopularRanking`).
//!
//! The statistics are per-menu, per-UTC-hour buckets in `menu_sales_hourly`,
//! written in the order's transaction (`orders.rs`), each split into shards;
//! the order items carry the order's time for the hour at the window's old
//! edge.

use async_trait::async_trait;
use coffee_domain::popular::{HOUR, SalesSum, hour_of};
use coffee_domain::{Menu, MenuId};
use coffee_ports::{InfraError, LiveSales, LiveWindow, SalesStatistics, StatisticsUpkeep};
use diesel::data_types::PgInterval;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Interval, Nullable, Text, Timestamptz, Untyped, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::Settle as _;
use crate::menus::MenuRow;
use crate::pool::PgPool;
use crate::sql::{interval, statement};

statement! {
    /// What one request reads, in one round trip and as rows of three kinds:
    /// one with the clock (`as_of` instead of the database's `now` when given)
    /// and the start of the live buckets, one per menu, and one per menu sold in
    /// the live buckets with their sums. The live buckets start at `held_to`, the
    /// end of the settled hours in memory, when those cover `[first_full,
    /// held_to)` (they start at `held_from`), else at `first_full`. A query type
    /// of its own (`statement!`), so diesel prepares it once per connection (a
    /// `sql_query` is parsed and planned on every call).
    struct RankQuery {
        as_of: Option<OffsetDateTime> = Nullable<Timestamptz>,
        held_from: Option<OffsetDateTime> = Nullable<Timestamptz>,
        held_to: Option<OffsetDateTime> = Nullable<Timestamptz>,
        window: PgInterval = Interval,
    } returns Untyped = "WITH clock AS (SELECT coalesce($as_of, now()) AS now, now() AS db_now, \
        $held_from::timestamptz AS held_from, $held_to::timestamptz AS held_to, $window::interval AS window_length
), start AS (
    SELECT now, db_now,
           CASE WHEN held_from <= first_full AND first_full < held_to THEN held_to ELSE first_full END AS live_from
    FROM (SELECT *, date_trunc('hour', now - window_length, 'UTC') + interval '1 hour' AS first_full FROM clock) bounds
)
SELECT now, db_now, live_from, NULL::uuid AS id, NULL::text AS name, NULL::bigint AS price,
       NULL::bigint AS quantity, NULL::bigint AS order_count
FROM start
UNION ALL
SELECT NULL, NULL, NULL, id, name, price, NULL, NULL FROM menus
UNION ALL
SELECT NULL, NULL, NULL, s.menu_id, NULL, NULL, SUM(s.quantity)::bigint, SUM(s.order_count)::bigint
FROM menu_sales_hourly s, start WHERE s.bucket_start >= start.live_from GROUP BY s.menu_id";
}

/// The database's clock.
const CLOCK: &str = "SELECT now() AS now";

/// Per-hour, per-menu sums of the buckets in `[$1, $2)` (final ones).
const SETTLED: &str = "
SELECT bucket_start AS at, menu_id, SUM(quantity)::bigint AS quantity, SUM(order_count)::bigint AS order_count
FROM menu_sales_hourly WHERE bucket_start >= $1 AND bucket_start < $2 GROUP BY bucket_start, menu_id";

/// Per-second, per-menu sums of the items of `[$1, $2)` (an hour at the
/// window's old edge), each item in the second its creation rounds up to: at
/// most 3,601 seconds times the menus, however many orders the hour had.
const EDGE: &str = "
SELECT to_timestamp(ceil(extract(epoch FROM created_at))) AS at, menu_id,
       SUM(quantity)::bigint AS quantity, count(*) AS order_count
FROM order_items WHERE created_at >= $1 AND created_at < $2 GROUP BY 1, 2";

crate::sql::register!(SETTLED, EDGE);

/// One statement, so readers see the shards either all before or all after.
const COMPACT: &str = "
WITH moved AS (
    DELETE FROM menu_sales_hourly WHERE bucket_start < $1 AND shard <> 0
    RETURNING bucket_start, menu_id, quantity, order_count
), merged AS (
    SELECT bucket_start, menu_id, SUM(quantity)::bigint AS quantity, SUM(order_count)::bigint AS order_count
    FROM moved GROUP BY bucket_start, menu_id
), upserted AS (
    INSERT INTO menu_sales_hourly (bucket_start, menu_id, shard, quantity, order_count)
    SELECT bucket_start, menu_id, 0, quantity, order_count FROM merged
    ON CONFLICT (bucket_start, menu_id, shard) DO UPDATE
    SET quantity = menu_sales_hourly.quantity + EXCLUDED.quantity,
        order_count = menu_sales_hourly.order_count + EXCLUDED.order_count
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved)::bigint AS n";

/// Deletes one batch of the buckets that started before `$1`.
const PURGE: &str = "WITH gone AS (DELETE FROM menu_sales_hourly WHERE ctid IN \
    (SELECT ctid FROM menu_sales_hourly WHERE bucket_start < $1 LIMIT $2) RETURNING 1) \
    SELECT count(*) AS n FROM gone";

/// One row of [`RankQuery`]: the clock, a menu, or a menu's live sums.
#[derive(QueryableByName)]
struct RankRow {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    now: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    db_now: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    live_from: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    name: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    price: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    quantity: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    order_count: Option<i64>,
}

#[derive(QueryableByName)]
struct Clock {
    #[diesel(sql_type = Timestamptz)]
    now: OffsetDateTime,
}

#[derive(QueryableByName)]
struct SumRow {
    #[diesel(sql_type = Timestamptz)]
    at: OffsetDateTime,
    #[diesel(sql_type = SqlUuid)]
    menu_id: Uuid,
    #[diesel(sql_type = BigInt)]
    quantity: i64,
    #[diesel(sql_type = BigInt)]
    order_count: i64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// [`SalesStatistics`] and [`StatisticsUpkeep`] on PostgreSQL: statements
/// only, nothing kept.
#[derive(Debug, Clone)]
pub struct PgSalesStatistics {
    pool: PgPool,
}

impl PgSalesStatistics {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Per-hour or per-second sums, as `query` reads them for `[from, to)`.
    async fn sums(
        &self,
        query: &'static str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<SalesSum>, InfraError> {
        let mut conn = self.pool.get().await?;
        let rows: Vec<SumRow> = diesel::sql_query(query)
            .bind::<Timestamptz, _>(from)
            .bind::<Timestamptz, _>(to)
            .load(&mut conn)
            .await
            .settle(&conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| SalesSum {
                at: r.at,
                menu: MenuId::from_uuid(r.menu_id),
                quantity: r.quantity,
                order_count: r.order_count,
            })
            .collect())
    }
}

/// The rows of [`RankQuery`] as what a ranking request reads.
fn live_sales(rows: Vec<RankRow>) -> Result<LiveSales, InfraError> {
    let (now, db_now, live_from) = rows
        .iter()
        .find_map(|row| Some((row.now?, row.db_now?, row.live_from?)))
        .ok_or_else(|| InfraError::Unexpected(anyhow::anyhow!("the ranking query returned no clock")))?;
    let (mut menus, mut sales) = (Vec::new(), Vec::new());
    for row in rows {
        match (row.id, row.name, row.price, row.quantity, row.order_count) {
            (Some(id), Some(name), Some(price), _, _) => menus.push(Menu::try_from(MenuRow { id, name, price })?),
            (Some(id), _, _, Some(quantity), Some(order_count)) => sales.push(SalesSum {
                at: live_from,
                menu: MenuId::from_uuid(id),
                quantity,
                order_count,
            }),
            _ => {}
        }
    }
    Ok(LiveSales {
        now,
        db_now,
        live_from,
        menus,
        sales,
    })
}

#[async_trait]
impl SalesStatistics for PgSalesStatistics {
    async fn clock(&self) -> Result<OffsetDateTime, InfraError> {
        let mut conn = self.pool.get().await?;
        let clock: Clock = crate::sql::query!(CLOCK)
            .get_result(&mut conn)
            .await
            .settle(&conn)
            .await?;
        Ok(clock.now)
    }

    async fn hour_sums(&self, from: OffsetDateTime, to: OffsetDateTime) -> Result<Vec<SalesSum>, InfraError> {
        self.sums(SETTLED, from, to).await
    }

    async fn second_sums(&self, hour: OffsetDateTime) -> Result<Vec<SalesSum>, InfraError> {
        self.sums(EDGE, hour, hour + HOUR).await
    }

    #[tracing::instrument(name = "pg.popular.live", skip(self))]
    async fn live_sales(&self, window: LiveWindow) -> Result<LiveSales, InfraError> {
        let mut conn = self.pool.get().await?;
        let rows: Vec<RankRow> = RankQuery {
            as_of: window.as_of,
            held_from: window.held.map(|(from, _)| from),
            held_to: window.held.map(|(_, to)| to),
            window: interval(window.length),
        }
        .load(&mut conn)
        .await
        .settle(&conn)
        .await?;
        live_sales(rows)
    }
}

#[async_trait]
impl StatisticsUpkeep for PgSalesStatistics {
    async fn compact(&self, before: OffsetDateTime) -> Result<u64, InfraError> {
        let mut conn = self.pool.get().await?;
        let moved: Count = crate::sql::query!(COMPACT)
            .bind::<Timestamptz, _>(hour_of(before))
            .get_result(&mut conn)
            .await
            .settle(&conn)
            .await?;
        Ok(u64::try_from(moved.n).unwrap_or_default())
    }

    async fn purge(&self, before: OffsetDateTime) -> Result<u64, InfraError> {
        crate::sql::purge_in_batches(&self.pool, || {
            crate::sql::query!(PURGE).into_boxed().bind::<Timestamptz, _>(before)
        })
        .await
    }
}
