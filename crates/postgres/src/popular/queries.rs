//! The statements behind the popular-menu ranking, and what they return.

use std::time::Duration;

use coffee_ports::InfraError;
use diesel::data_types::PgInterval;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Interval, Nullable, Text, Timestamptz, Untyped, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;
use uuid::Uuid;

use super::sums::{EdgeHour, HOUR, Sum};
use crate::error::Settle as _;
use crate::pool::PgConnection;
use crate::sql::statement;

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
    } returns Untyped = "WITH clock AS (SELECT coalesce($1, now()) AS now, now() AS db_now, \
        $2::timestamptz AS held_from, $3::timestamptz AS held_to, $4::interval AS window_length
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

/// The clock for a preparation (`$1` instead of the database's `now` when
/// given) and the database's own.
const CLOCK: &str = "SELECT coalesce($1, now()) AS now, now() AS db_now";

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

/// One row of [`RankQuery`]: the clock, a menu, or a menu's live sums.
#[derive(QueryableByName)]
pub(super) struct RankRow {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub now: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub db_now: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub live_from: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    pub name: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub price: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub quantity: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub order_count: Option<i64>,
}

/// The clock a preparation reads.
#[derive(QueryableByName)]
pub(super) struct Clock {
    #[diesel(sql_type = Timestamptz)]
    pub now: OffsetDateTime,
    #[diesel(sql_type = Timestamptz)]
    pub db_now: OffsetDateTime,
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

fn interval(duration: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(duration.as_micros()).unwrap_or(i64::MAX))
}

/// The ranking's rows as of `as_of` (the database's clock when `None`),
/// the settled hours `held` in memory being `[from, to)`.
pub(super) async fn rank(
    conn: &mut PgConnection,
    as_of: Option<OffsetDateTime>,
    held: Option<(OffsetDateTime, OffsetDateTime)>,
    window: Duration,
) -> Result<Vec<RankRow>, InfraError> {
    RankQuery {
        as_of,
        held_from: held.map(|(from, _)| from),
        held_to: held.map(|(_, to)| to),
        window: interval(window),
    }
    .load(conn)
    .await
    .settle(conn)
    .await
}

/// `as_of` (the database's clock when `None`) and the database's clock.
pub(super) async fn clock(conn: &mut PgConnection, as_of: Option<OffsetDateTime>) -> Result<Clock, InfraError> {
    diesel::sql_query(CLOCK)
        .bind::<Nullable<Timestamptz>, _>(as_of)
        .get_result(conn)
        .await
        .settle(conn)
        .await
}

/// Per-hour, per-menu sums of the buckets in `[from, to)`.
pub(super) async fn settled_hours(
    conn: &mut PgConnection,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Vec<Sum>, InfraError> {
    load_sums(conn, SETTLED, from, to).await
}

/// The edge hour starting at `hour`, from its order items.
pub(super) async fn edge_hour(conn: &mut PgConnection, hour: OffsetDateTime) -> Result<EdgeHour, InfraError> {
    Ok(EdgeHour::new(&load_sums(conn, EDGE, hour, hour + HOUR).await?))
}

/// Merges the shards of the buckets before `before`; returns rows removed.
pub(super) async fn compact(conn: &mut PgConnection, before: OffsetDateTime) -> Result<u64, InfraError> {
    let moved: Count = diesel::sql_query(COMPACT)
        .bind::<Timestamptz, _>(before)
        .get_result(conn)
        .await
        .settle(conn)
        .await?;
    Ok(u64::try_from(moved.n).unwrap_or_default())
}

/// Per-hour or per-second sums, as `query` reads them for `[from, to)`.
async fn load_sums(
    conn: &mut PgConnection,
    query: &'static str,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Vec<Sum>, InfraError> {
    let rows: Vec<SumRow> = diesel::sql_query(query)
        .bind::<Timestamptz, _>(from)
        .bind::<Timestamptz, _>(to)
        .load(conn)
        .await
        .settle(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Sum {
            at: r.at,
            menu: r.menu_id,
            quantity: r.quantity,
            order_count: r.order_count,
        })
        .collect())
}
