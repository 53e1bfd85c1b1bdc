//! `GET /menus`.

use std::sync::Arc;

use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::{HttpResponse, web};
use coffee_application::ListMenusError;
use coffee_domain::{Menu, PopularMenu};
use serde::Serialize;
use uuid::Uuid;

use crate::problem::ApiError;
use crate::state::AppState;

/// A menu item as clients see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MenuResponse {
    pub id: Uuid,
    pub name: String,
    pub price: i64,
}

impl From<Menu> for MenuResponse {
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

/// List the menu
///
/// Every menu item, ordered by name.
#[utoipa::path(get, path = "/menus", tag = "menus", operation_id = "listMenus",
    responses(
        (status = 200, description = "Every menu item, ordered by name", body = [MenuResponse]),
        crate::openapi::ServerProblems,
    )
)]
pub async fn list_menus(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let menus = state.list_menus.execute().await?;
    let body = WORKER_JSON.with(|json| json.render(menus))?;
    Ok(json_response(body))
}

/// `application/json`, as a header value that points at this constant:
/// `ContentType::json()` (and `HttpResponseBuilder::json`) copy the type's
/// text into a new allocation for every response.
const APPLICATION_JSON: &str = "application/json";

/// A `200` carrying `body`, JSON already rendered.
fn json_response(body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, HeaderValue::from_static(APPLICATION_JSON)))
        .body(body)
}

thread_local! {
    /// The [`MenusJson`] of the HTTP worker this thread is: a request runs
    /// on its worker's thread, so it reaches its worker's without looking
    /// anything up in the application's data.
    static WORKER_JSON: MenusJson = MenusJson::default();
}

/// The last menu list a worker rendered, with its JSON: the list changes
/// rarely, so most `GET /menus` reuse the bytes instead of serialising again
/// (serialisation was a tenth of the endpoint's CPU in the benchmark). The
/// menu cache hands each thread the same list until it reads again, so the
/// same list is recognised by its address before any comparison.
#[derive(Debug, Default)]
pub struct MenusJson(std::cell::RefCell<Option<(Arc<[Menu]>, web::Bytes)>>);

impl MenusJson {
    fn render(&self, menus: Arc<[Menu]>) -> Result<web::Bytes, ApiError> {
        let mut last = self.0.borrow_mut();
        if let Some((rendered, bytes)) = last.as_mut() {
            if Arc::ptr_eq(rendered, &menus) {
                return Ok(bytes.clone());
            }
            if **rendered == *menus {
                // The cache read the same menus again: this list is the one
                // it hands out from now on, so the next request is
                // recognised by its address, not compared menu by menu.
                *rendered = menus;
                return Ok(bytes.clone());
            }
        }
        let body: Vec<MenuResponse> = menus.iter().cloned().map(MenuResponse::from).collect();
        let bytes = web::Bytes::from(serde_json::to_vec(&body).map_err(|e| {
            tracing::error!(error = %e, "serialising the menu failed");
            ApiError::new(crate::problem::ProblemCode::Internal, "Internal server error")
        })?);
        *last = Some((menus, bytes.clone()));
        Ok(bytes)
    }
}

/// One entry of `GET /menus/popular`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PopularMenuResponse {
    pub rank: u32,
    pub id: Uuid,
    pub name: String,
    pub price: i64,
    pub quantity: i64,
    pub order_count: i64,
}

impl From<PopularMenu> for PopularMenuResponse {
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

/// Popular menus
///
/// The top 3 menus by cups ordered in the last 7 days; ties go to the menu
/// with more orders, then by name.
#[utoipa::path(get, path = "/menus/popular", tag = "menus", operation_id = "popularMenus",
    responses(
        (status = 200, description = "Top 3 menus by cups ordered in (now - 7 days, now]; ties by order count, then name", body = [PopularMenuResponse]),
        crate::openapi::ServerProblems,
    )
)]
pub async fn popular(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let ranking = state.get_popular_menus.execute().await?;
    let body: Vec<PopularMenuResponse> = ranking.into_iter().map(PopularMenuResponse::from).collect();
    Ok(HttpResponse::Ok().json(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffee_domain::{MenuId, MenuName, Points};

    fn menu(n: u128, name: &str, price: i64) -> Menu {
        Menu {
            id: MenuId::from_uuid(Uuid::from_u128(n)),
            name: MenuName::parse(name).expect("valid name"),
            price: Points::new(price).expect("valid price"),
        }
    }

    #[test]
    fn the_content_type_is_not_copied_for_each_response() {
        let response = json_response(web::Bytes::from_static(b"[]"));

        let content_type = response.headers().get(CONTENT_TYPE).expect("a content type");
        assert_eq!(content_type, "application/json");
        assert_eq!(
            content_type.as_bytes().as_ptr(),
            APPLICATION_JSON.as_ptr(),
            "the header points at the constant"
        );
    }

    #[test]
    fn an_equal_list_read_again_is_kept_so_the_next_is_recognised_by_address() {
        let json = MenusJson::default();
        let first = json.render(vec![menu(1, "Americano", 4_000)].into()).expect("rendered");
        let reread: Arc<[Menu]> = vec![menu(1, "Americano", 4_000)].into();
        let again = json.render(Arc::clone(&reread)).expect("rendered");

        assert_eq!(first.as_ptr(), again.as_ptr(), "the same bytes");
        let kept = json.0.borrow();
        assert!(
            kept.as_ref().is_some_and(|(list, _)| Arc::ptr_eq(list, &reread)),
            "the list read again is the one kept"
        );
    }

    #[test]
    fn the_same_list_reuses_its_json_and_a_changed_one_is_rendered_again() {
        let json = MenusJson::default();
        let first = json.render(vec![menu(1, "Americano", 4_000)].into()).expect("rendered");
        let again = json.render(vec![menu(1, "Americano", 4_000)].into()).expect("rendered");
        assert_eq!(first.as_ptr(), again.as_ptr(), "the same bytes, not a new rendering");

        let changed = json.render(vec![menu(1, "Americano", 4_500)].into()).expect("rendered");

        let body: serde_json::Value = serde_json::from_slice(&changed).expect("json");
        assert_eq!(
            body,
            serde_json::json!([{"id": "00000000-0000-0000-0000-000000000001", "name": "Americano", "price": 4500}])
        );
    }
}
