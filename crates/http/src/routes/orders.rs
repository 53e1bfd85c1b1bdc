//! `/orders*`: place an order, list them, get one.

use actix_web::{HttpResponse, web};
use coffee_application::{OrderQueryError, PlaceOrderCommand, PlaceOrderError};
use coffee_domain::{MenuId, OrderLine, OrderRequestError, PlaceOrderOutcome, PlacedOrder};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::extract::ApiJson;
use crate::idempotency::{IdempotencyKeyHeader, mark_replayed, mark_replayed_problem};
use crate::json_time;
use crate::pagination::{CursorScope, PageQuery};
use crate::problem::{ApiError, FieldError, ProblemCode};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    /// 1 to 20 lines; lines with the same menu are merged.
    #[schema(min_items = 1, max_items = 20)]
    pub items: Vec<OrderItemRequest>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OrderItemRequest {
    pub menu_id: Uuid,
    /// JSON integers only; the range is checked by the domain.
    #[schema(minimum = 1, maximum = 100)]
    #[serde(deserialize_with = "crate::extract::whole_number")]
    pub quantity: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderLineResponse {
    pub menu_id: Uuid,
    pub name: String,
    pub quantity: u32,
    pub unit_price: i64,
    pub total_price: i64,
}

impl From<OrderLine> for OrderLineResponse {
    fn from(line: OrderLine) -> Self {
        Self {
            menu_id: line.menu_id.as_uuid(),
            name: line.name,
            quantity: line.quantity,
            unit_price: line.unit_price.value(),
            total_price: line.total_price.value(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderResponse {
    pub id: Uuid,
    pub user_id: Uuid,
    pub items: Vec<OrderLineResponse>,
    pub total_price: i64,
    /// The caller's balance right after this order.
    pub balance: i64,
    #[serde(serialize_with = "json_time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<PlacedOrder> for OrderResponse {
    fn from(order: PlacedOrder) -> Self {
        Self {
            id: order.id,
            user_id: order.user_id.as_uuid(),
            items: order.lines.into_iter().map(OrderLineResponse::from).collect(),
            total_price: order.total_price.value(),
            balance: order.balance_after.value(),
            created_at: order.created_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPageResponse {
    pub items: Vec<OrderResponse>,
    pub next_cursor: Option<String>,
}

impl From<PlaceOrderError> for ApiError {
    fn from(error: PlaceOrderError) -> Self {
        match error {
            PlaceOrderError::Invalid(e) => {
                let field = match &e {
                    OrderRequestError::Quantity { index } => format!("items[{index}].quantity"),
                    OrderRequestError::ItemCount | OrderRequestError::MergedQuantity { .. } => "items".to_owned(),
                };
                ApiError::validation(vec![FieldError::new(field, e.to_string())])
            }
            PlaceOrderError::Conflict(conflict) => conflict.into(),
            PlaceOrderError::Infra(e) => e.into(),
        }
    }
}

impl From<OrderQueryError> for ApiError {
    fn from(error: OrderQueryError) -> Self {
        match error {
            OrderQueryError::NotFound => ApiError::new(ProblemCode::NotFound, "No such order"),
            OrderQueryError::Infra(e) => e.into(),
        }
    }
}

/// Place an order
///
/// Orders menu items and pays for them from the caller's points, answering
/// `201` with the order. Retrying with the same `Idempotency-Key` and body
/// replays the first response, including a stored `404` (unknown menu) or
/// `409` (not enough points).
#[utoipa::path(post, path = "/orders", tag = "orders", operation_id = "placeOrder", request_body = PlaceOrderRequest,
    security(("bearer" = [])),
    params(IdempotencyKeyHeader),
    responses(
        (status = 201, description = "Placed and paid (or the replay of the first response, with Idempotent-Replayed: true)", body = OrderResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed response")),
            links(("getOrder" = (operation_id = "getOrder", parameters(("orderId" = "$response.body#/id")),
                description = "The order just placed")))),
        crate::openapi::JsonBodyProblems,
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "MENU_NOT_FOUND, with `menuIds` (stored and replayed)", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "INSUFFICIENT_POINTS, with `balance` and `required` (stored and replayed), or IDEMPOTENCY_KEY_IN_USE", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "IDEMPOTENCY_KEY_REUSED", body = crate::openapi::Problem, content_type = "application/problem+json"),
        crate::openapi::ServerProblems,
    )
)]
pub async fn place(
    state: web::Data<AppState>,
    caller: Authenticated,
    key: IdempotencyKeyHeader,
    body: ApiJson<PlaceOrderRequest>,
) -> Result<HttpResponse, ApiError> {
    let command = PlaceOrderCommand {
        items: body
            .0
            .items
            .iter()
            .map(|i| (MenuId::from_uuid(i.menu_id), i.quantity))
            .collect(),
        key: key.0,
    };
    let outcome = state.place_order.execute(&caller.0, command).await?;
    if outcome.is_replayed() {
        crate::metrics::record_replay("orders.place");
    }
    match outcome.as_inner() {
        PlaceOrderOutcome::Placed(order) => {
            if !outcome.is_replayed() {
                crate::metrics::count(crate::metrics::ORDERS_PLACED, 1);
            }
            let mut response = HttpResponse::Created().json(OrderResponse::from(order.clone()));
            mark_replayed(&outcome, &mut response);
            Ok(response)
        }
        PlaceOrderOutcome::InsufficientPoints { balance, required } => {
            let problem = ApiError::new(
                ProblemCode::InsufficientPoints,
                format!("This order costs {required} points; the balance is {balance}"),
            )
            .with_extension("balance", balance.value())
            .with_extension("required", required.value());
            Err(mark_replayed_problem(&outcome, problem))
        }
        PlaceOrderOutcome::MenuNotFound { menu_ids } => {
            let ids: Vec<String> = menu_ids.iter().map(ToString::to_string).collect();
            let problem = ApiError::new(ProblemCode::MenuNotFound, format!("No such menu: {}", ids.join(", ")))
                .with_extension("menuIds", ids);
            Err(mark_replayed_problem(&outcome, problem))
        }
    }
}

/// List your orders
///
/// The caller's orders, newest first, a page at a time (`limit` and
/// `cursor`).
#[utoipa::path(get, path = "/orders", tag = "orders", operation_id = "listOrders",
    security(("bearer" = [])),
    params(crate::pagination::PageQuery),
    responses(
        (status = 200, description = "Your orders, newest first", body = OrderPageResponse),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        crate::openapi::ServerProblems,
    )
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Authenticated,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (size, cursor) = query.parse(&state.cursors, CursorScope::Orders, caller.0.user_id)?;
    let page = state.list_orders.execute(&caller.0, size, cursor).await?;
    Ok(HttpResponse::Ok().json(OrderPageResponse {
        items: page.items.into_iter().map(OrderResponse::from).collect(),
        next_cursor: page
            .next
            .as_ref()
            .map(|next| state.cursors.seal(CursorScope::Orders, caller.0.user_id, next)),
    }))
}

/// Get an order
///
/// The order if it is the caller's; anyone else's order answers `404`, as
/// if it did not exist.
#[utoipa::path(get, path = "/orders/{orderId}", tag = "orders", operation_id = "getOrder",
    security(("bearer" = [])),
    params(("orderId" = uuid::Uuid, Path)),
    responses(
        (status = 200, description = "The order", body = OrderResponse),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "NOT_FOUND: no such order of yours", body = crate::openapi::Problem, content_type = "application/problem+json"),
        crate::openapi::ServerProblems,
    )
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: Authenticated,
    order_id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let order = state.get_order.execute(&caller.0, order_id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(OrderResponse::from(order)))
}
