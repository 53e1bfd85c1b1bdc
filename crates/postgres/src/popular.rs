//! Popular menus from hourly statistics buckets, exact at the window's edges.
//!
//! The window is `(now - 7 days, now]`. Let `lo = now - 7 days` and
//! `first_full` the first whole UTC hour after `lo`. Whole hours from
//! `first_full` on are summed from `menu_sales_hourly` (shards included); the
//! partial hour `(lo, first_full)` is counted exactly from `order_items`.
//!
//! `now` is the database's clock, the same clock that stamps orders (read
//! after the user's row is locked, see `orders.rs`), so the instances' own
//! clocks, skewed or not, decide nothing.
//!
//! Only data that can no longer change is kept in memory. Every order is
//! stamped at about the present, and no order transaction outlives
//! [`SETTLE`] (the server refuses a configuration that would allow it), so
//! buckets that ended more than `SETTLE` ago, and the order items of the hour
//! at the window's old edge (a week old), are final. Those sums are read once
//! per hour; each request then reads only the few live buckets of the last
//! hour or two, in one query that also reads `now`. Buckets after `now` are
//! counted too: an order stamped after this query's `now` and committed
//! before its snapshot was acknowledged, and must never be missed.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use coffee_domain::{Menu, PopularMenu};
use coffee_ports::{InfraError, PopularMenus};
use diesel::data_types::PgInterval;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Interval, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error;
use crate::menus::MenuRow;
use crate::orders::hour_of;
use crate::pool::PgPool;
use crate::schema::menus;

/// The ranking's window.
pub const WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long after its end a bucket can still receive an order: the longest an
/// order transaction can take (lock waits and statement timeouts included)
/// plus clock skew between instances, with a wide margin.
pub const SETTLE: Duration = Duration::from_secs(5 * 60);

/// The database's `now` (or `$1` when given) and the live buckets: those from
/// `max(hour(now - SETTLE), first whole hour of the window)` on, computed as
/// [`window_bounds`] and [`PgPopularMenus::top_as_of`] do. A row with only
/// `now` when there is no live bucket.
const LIVE: &str = "
WITH clock AS (SELECT coalesce($1, now()) AS now)
SELECT clock.now, s.menu_id, s.quantity, s.order_count
FROM clock LEFT JOIN menu_sales_hourly s ON s.bucket_start >= greatest(
    date_trunc('hour', clock.now - $2, 'UTC'),
    date_trunc('hour', clock.now - $3, 'UTC') + interval '1 hour')";

/// Per-menu sums over buckets in `[$1, $2)` (a settled range).
const SETTLED: &str = "
SELECT menu_id, SUM(quantity)::bigint AS quantity, SUM(order_count)::bigint AS order_count
FROM menu_sales_hourly WHERE bucket_start >= $1 AND bucket_start < $2 GROUP BY menu_id";

/// The items of `[$1, $2)`: the hour at the window's old edge.
const EDGE: &str = "
SELECT created_at, menu_id, quantity FROM order_items WHERE created_at >= $1 AND created_at < $2";

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

/// [`PopularMenus`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgPopularMenus {
    pool: PgPool,
    settled: Arc<RwLock<Option<SettledSums>>>,
    edge: Arc<RwLock<Option<EdgeItems>>>,
}

/// Sums of a settled bucket range `[from, to)`.
#[derive(Debug)]
struct SettledSums {
    from: OffsetDateTime,
    to: OffsetDateTime,
    sums: HashMap<Uuid, (i64, i64)>,
}

/// The items of the hour starting at `hour`.
#[derive(Debug)]
struct EdgeItems {
    hour: OffsetDateTime,
    items: Vec<(OffsetDateTime, Uuid, i64)>,
}

impl PgPopularMenus {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            settled: Arc::default(),
            edge: Arc::default(),
        }
    }
}

#[derive(QueryableByName)]
struct SumRow {
    #[diesel(sql_type = SqlUuid)]
    menu_id: Uuid,
    #[diesel(sql_type = BigInt)]
    quantity: i64,
    #[diesel(sql_type = BigInt)]
    order_count: i64,
}

#[derive(QueryableByName)]
struct LiveRow {
    #[diesel(sql_type = Timestamptz)]
    now: OffsetDateTime,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    menu_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<BigInt>)]
    quantity: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    order_count: Option<i64>,
}

fn interval(duration: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(duration.as_micros()).unwrap_or(i64::MAX))
}

#[derive(QueryableByName)]
struct EdgeRow {
    #[diesel(sql_type = Timestamptz)]
    created_at: OffsetDateTime,
    #[diesel(sql_type = SqlUuid)]
    menu_id: Uuid,
    #[diesel(sql_type = Integer)]
    quantity: i32,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The window's bounds for `now`: `(lo, first_full)`.
pub fn window_bounds(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let lo = now - WINDOW;
    (lo, hour_of(lo) + Duration::from_secs(3600))
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PgPopularMenus {
    async fn settled_sums(
        &self,
        conn: &mut crate::pool::PgConnection,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<HashMap<Uuid, (i64, i64)>, InfraError> {
        if let Some(cached) = read(&self.settled).as_ref().filter(|c| c.from == from && c.to == to) {
            return Ok(cached.sums.clone());
        }
        let rows: Vec<SumRow> = diesel::sql_query(SETTLED)
            .bind::<Timestamptz, _>(from)
            .bind::<Timestamptz, _>(to)
            .load(conn)
            .await
            .map_err(error::from_diesel)?;
        let sums: HashMap<Uuid, (i64, i64)> = rows
            .into_iter()
            .map(|r| (r.menu_id, (r.quantity, r.order_count)))
            .collect();
        *write(&self.settled) = Some(SettledSums {
            from,
            to,
            sums: sums.clone(),
        });
        Ok(sums)
    }

    /// Adds the edge hour's items after `lo` into `totals`.
    async fn add_edge(
        &self,
        conn: &mut crate::pool::PgConnection,
        lo: OffsetDateTime,
        first_full: OffsetDateTime,
        totals: &mut HashMap<Uuid, (i64, i64)>,
    ) -> Result<(), InfraError> {
        let hour = hour_of(lo);
        let cached = read(&self.edge).as_ref().is_some_and(|e| e.hour == hour);
        if !cached {
            let rows: Vec<EdgeRow> = diesel::sql_query(EDGE)
                .bind::<Timestamptz, _>(hour)
                .bind::<Timestamptz, _>(first_full)
                .load(conn)
                .await
                .map_err(error::from_diesel)?;
            let items = rows
                .into_iter()
                .map(|r| (r.created_at, r.menu_id, i64::from(r.quantity)))
                .collect();
            *write(&self.edge) = Some(EdgeItems { hour, items });
        }
        if let Some(edge) = read(&self.edge).as_ref().filter(|e| e.hour == hour) {
            for (created_at, menu_id, quantity) in &edge.items {
                if *created_at > lo {
                    let entry = totals.entry(*menu_id).or_default();
                    entry.0 += quantity;
                    entry.1 += 1;
                }
            }
        }
        Ok(())
    }
}

impl PgPopularMenus {
    /// The ranking as of `now` instead of the database's clock: only for
    /// tests that sweep the window over a seeded history.
    pub async fn top_as_of(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<PopularMenu>, InfraError> {
        self.rank(Some(now), limit).await
    }

    async fn rank(&self, as_of: Option<OffsetDateTime>, limit: u32) -> Result<Vec<PopularMenu>, InfraError> {
        let mut conn = self.pool.get().await?;
        // The live buckets (a few hundred rows at most) and `now`, together.
        let live: Vec<LiveRow> = diesel::sql_query(LIVE)
            .bind::<Nullable<Timestamptz>, _>(as_of)
            .bind::<Interval, _>(interval(SETTLE))
            .bind::<Interval, _>(interval(WINDOW))
            .load(&mut conn)
            .await
            .map_err(error::from_diesel)?;
        let now = <[LiveRow]>::first(&live)
            .map(|row| row.now)
            .ok_or_else(|| InfraError::Unexpected(anyhow::anyhow!("the live-bucket query returned no row")))?;
        let (lo, first_full) = window_bounds(now);
        let settled_end = hour_of(now - SETTLE).max(first_full);
        let mut totals = self.settled_sums(&mut conn, first_full, settled_end).await?;
        self.add_edge(&mut conn, lo, first_full, &mut totals).await?;
        for row in live {
            if let (Some(menu_id), Some(quantity), Some(order_count)) = (row.menu_id, row.quantity, row.order_count) {
                let entry = totals.entry(menu_id).or_default();
                entry.0 += quantity;
                entry.1 += order_count;
            }
        }
        let menu_rows: Vec<MenuRow> = menus::table
            .select(MenuRow::as_select())
            .load(&mut conn)
            .await
            .map_err(error::from_diesel)?;

        let mut ranked = Vec::new();
        for row in menu_rows {
            let Some(&(quantity, order_count)) = totals.get(&row.id).filter(|(q, _)| *q > 0) else {
                continue;
            };
            ranked.push((Menu::try_from(row)?, quantity, order_count));
        }
        // Cups, then orders (both descending), then name (by bytes), then id.
        ranked.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then(b.2.cmp(&a.2))
                .then_with(|| a.0.name.as_str().cmp(b.0.name.as_str()))
                .then(a.0.id.cmp(&b.0.id))
        });
        Ok(ranked
            .into_iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .zip(1..)
            .map(|((menu, quantity, order_count), rank)| PopularMenu {
                rank,
                menu,
                quantity,
                order_count,
            })
            .collect())
    }
}

#[async_trait]
impl PopularMenus for PgPopularMenus {
    #[tracing::instrument(name = "pg.popular.top", skip(self))]
    async fn top(&self, limit: u32) -> Result<Vec<PopularMenu>, InfraError> {
        self.rank(None, limit).await
    }

    async fn compact(&self, before: OffsetDateTime) -> Result<u64, InfraError> {
        let mut conn = self.pool.get().await?;
        let moved: Count = diesel::sql_query(COMPACT)
            .bind::<Timestamptz, _>(hour_of(before))
            .get_result(&mut conn)
            .await
            .map_err(error::from_diesel)?;
        Ok(u64::try_from(moved.n).unwrap_or_default())
    }
}
