//! Popular menus from hourly statistics buckets, exact at the window's edges.
//!
//! The window is `(now - 7 days, now]`. Let `lo = now - 7 days` and
//! `first_full` the first whole UTC hour after `lo`. Whole hours from
//! `first_full` on are summed from `menu_sales_hourly` (their shards
//! included); the partial hour `(lo, first_full)` is counted exactly from
//! `order_items` through an index-only scan of at most one hour of items.
//! Buckets after `now` are counted too: only clock skew between instances can
//! put an order there, and an acknowledged order must never be missed.

use std::time::Duration;

use async_trait::async_trait;
use coffee_domain::{Menu, MenuId, MenuName, Points, PopularMenu};
use coffee_ports::{InfraError, PopularMenus};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error;
use crate::orders::hour_of;
use crate::pool::PgPool;

/// The ranking's window.
pub const WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

const TOP: &str = "
WITH counts AS (
    SELECT menu_id, quantity, order_count FROM menu_sales_hourly WHERE bucket_start >= $2
    UNION ALL
    SELECT menu_id, quantity::bigint, 1::bigint FROM order_items WHERE created_at > $1 AND created_at < $2
)
SELECT m.id, m.name, m.price, SUM(c.quantity)::bigint AS quantity, SUM(c.order_count)::bigint AS order_count
FROM counts c JOIN menus m ON m.id = c.menu_id
GROUP BY m.id, m.name, m.price
ORDER BY quantity DESC, order_count DESC, m.name ASC, m.id ASC
LIMIT $3";

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
}

impl PgPopularMenus {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(QueryableByName)]
struct Ranked {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    price: i64,
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

/// The window's bounds for `now`: `(lo, first_full)`.
pub fn window_bounds(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let lo = now - WINDOW;
    (lo, hour_of(lo) + Duration::from_secs(3600))
}

#[async_trait]
impl PopularMenus for PgPopularMenus {
    #[tracing::instrument(name = "pg.popular.top", skip(self))]
    async fn top(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<PopularMenu>, InfraError> {
        let (lo, first_full) = window_bounds(now);
        let mut conn = self.pool.get().await?;
        let rows: Vec<Ranked> = diesel::sql_query(TOP)
            .bind::<Timestamptz, _>(lo)
            .bind::<Timestamptz, _>(first_full)
            .bind::<BigInt, _>(i64::from(limit))
            .load(&mut conn)
            .await
            .map_err(error::from_diesel)?;
        rows.into_iter()
            .zip(1..)
            .map(|(row, rank)| {
                let invalid = |e: String| InfraError::Unexpected(anyhow::anyhow!("menu {} is invalid: {e}", row.id));
                Ok(PopularMenu {
                    rank,
                    menu: Menu {
                        id: MenuId::from_uuid(row.id),
                        name: MenuName::parse(&row.name).map_err(|e| invalid(e.to_string()))?,
                        price: Points::new(row.price).map_err(|e| invalid(e.to_string()))?,
                    },
                    quantity: row.quantity,
                    order_count: row.order_count,
                })
            })
            .collect()
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
