//! The menu, read from the `menus` table.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coffee_domain::{Menu, MenuId, MenuName, Points};
use coffee_ports::{InfraError, MenuRepository};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::error::Settle as _;
use crate::pool::PgPool;
use crate::schema::menus;

/// [`MenuRepository`] on PostgreSQL, optionally keeping the list in memory
/// for a short while: `GET /menus` is the hottest read and the menu changes
/// only when an operator edits the table, so a list up to `ttl` old is fine.
/// Orders never use this list: they price from the table in their own
/// transaction.
#[derive(Debug, Clone)]
pub struct PgMenuRepository {
    pool: PgPool,
    ttl: Duration,
    cached: Arc<RwLock<Option<CachedList>>>,
}

/// The list and when it was read.
type CachedList = (Instant, Vec<Menu>);

impl PgMenuRepository {
    /// Reads the table on every call.
    pub fn new(pool: PgPool) -> Self {
        Self::with_cache(pool, Duration::ZERO)
    }

    /// Reads the table at most once per `ttl`.
    pub fn with_cache(pool: PgPool, ttl: Duration) -> Self {
        Self {
            pool,
            ttl,
            cached: Arc::new(RwLock::new(None)),
        }
    }

    fn fresh_copy(&self) -> Option<Vec<Menu>> {
        let cached = self.cached.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        cached
            .as_ref()
            .filter(|(read_at, _)| read_at.elapsed() < self.ttl)
            .map(|(_, menus)| menus.clone())
    }

    async fn read_table(&self) -> Result<Vec<Menu>, InfraError> {
        let mut conn = self.pool.get().await?;
        let rows: Vec<MenuRow> = menus::table
            .select(MenuRow::as_select())
            .order((menus::name.asc(), menus::id.asc()))
            .load(&mut conn)
            .await
            .settle(&conn)
            .await?;
        rows.into_iter().map(Menu::try_from).collect()
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = menus, check_for_backend(diesel::pg::Pg))]
pub(crate) struct MenuRow {
    pub id: Uuid,
    pub name: String,
    pub price: i64,
}

impl TryFrom<MenuRow> for Menu {
    type Error = InfraError;

    fn try_from(row: MenuRow) -> Result<Self, Self::Error> {
        let invalid = |what: String| {
            InfraError::Unexpected(anyhow::anyhow!("menu {} in the database is invalid: {what}", row.id))
        };
        Ok(Menu {
            id: MenuId::from_uuid(row.id),
            name: MenuName::parse(&row.name).map_err(|e| invalid(e.to_string()))?,
            price: Points::new(row.price).map_err(|e| invalid(e.to_string()))?,
        })
    }
}

#[async_trait]
impl MenuRepository for PgMenuRepository {
    #[tracing::instrument(name = "pg.menus.list", skip(self))]
    async fn list(&self) -> Result<Vec<Menu>, InfraError> {
        if let Some(menus) = self.fresh_copy() {
            return Ok(menus);
        }
        let read_at = Instant::now();
        let menus = self.read_table().await?;
        if !self.ttl.is_zero() {
            *self.cached.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((read_at, menus.clone()));
        }
        Ok(menus)
    }
}
