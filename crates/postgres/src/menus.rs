//! The menu, read from the `menus` table.

use std::sync::Arc;

use async_trait::async_trait;
use coffee_domain::{Menu, MenuId, MenuName, Points};
use coffee_ports::{InfraError, MenuRepository};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::error::Settle as _;
use crate::pool::PgPool;
use crate::schema::menus;

/// [`MenuRepository`] on PostgreSQL: reads the table on every call (the
/// server keeps the list for a second in front of it with
/// `coffee_application::CachedMenus`).
#[derive(Debug, Clone)]
pub struct PgMenuRepository {
    pool: PgPool,
}

impl PgMenuRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
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
    async fn list(&self) -> Result<Arc<[Menu]>, InfraError> {
        let mut conn = self.pool.get().await?;
        let rows: Vec<MenuRow> = menus::table
            .select(MenuRow::as_select())
            .order((menus::name.asc(), menus::id.asc()))
            .load(&mut conn)
            .await
            .settle(&conn)
            .await?;
        rows.into_iter()
            .map(Menu::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map(Arc::from)
    }
}
