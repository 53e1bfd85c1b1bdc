//! `GET /menus`.

use actix_web::{HttpResponse, web};
use coffee_application::ListMenusError;
use coffee_domain::{Menu, PopularMenu};
use serde::Serialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::problem::ApiError;

/// A menu item as clients see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MenuBody {
    pub id: Uuid,
    pub name: String,
    pub price: i64,
}

impl From<Menu> for MenuBody {
    fn from(menu: Menu) -> Self {
        Self {
            id: menu.id.as_uuid(),
            name: menu.name.into(),
            price: menu.price.value(),
        }
    }
}

impl From<ListMenusError> for ApiError {
    fn from(error: ListMenusError) -> Self {
        match error {
            ListMenusError::Infra(e) => e.into(),
        }
    }
}

/// Every menu item, ordered by name.
#[utoipa::path(get, path = "/menus", tag = "menus", operation_id = "listMenus",
    responses(
        (status = 200, description = "Every menu item, ordered by name", body = [MenuBody]),
        (status = 503, description = "A dependency is unavailable: DEPENDENCY_UNAVAILABLE", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure: INTERNAL", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_menus(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let menus = state.list_menus.execute().await?;
    let body: Vec<MenuBody> = menus.into_iter().map(MenuBody::from).collect();
    Ok(HttpResponse::Ok().json(body))
}

/// One entry of `GET /menus/popular`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PopularMenuBody {
    pub rank: u32,
    pub id: Uuid,
    pub name: String,
    pub price: i64,
    pub quantity: i64,
    pub order_count: i64,
}

impl From<PopularMenu> for PopularMenuBody {
    fn from(p: PopularMenu) -> Self {
        Self {
            rank: p.rank,
            id: p.menu.id.as_uuid(),
            name: p.menu.name.into(),
            price: p.menu.price.value(),
            quantity: p.quantity,
            order_count: p.order_count,
        }
    }
}

/// The top 3 menus by cups ordered in the last 7 days.
#[utoipa::path(get, path = "/menus/popular", tag = "menus", operation_id = "popularMenus",
    responses(
        (status = 200, description = "Top 3 menus by cups ordered in (now - 7 days, now]; ties by order count, then name", body = [PopularMenuBody]),
        (status = 503, description = "A dependency is unavailable: DEPENDENCY_UNAVAILABLE", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Unexpected failure: INTERNAL", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn popular(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let ranking = state.get_popular_menus.execute().await?;
    let body: Vec<PopularMenuBody> = ranking.into_iter().map(PopularMenuBody::from).collect();
    Ok(HttpResponse::Ok().json(body))
}
