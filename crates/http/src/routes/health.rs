//! `GET /health/live` and `GET /health/ready`.

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use crate::problem::{ApiError, ProblemCode};
use crate::state::AppState;

/// Liveness
///
/// The process is up and serving HTTP; says nothing about dependencies.
#[utoipa::path(get, path = "/health/live", tag = "operations", operation_id = "live",
    responses((status = 200, description = "The process is up", body = crate::openapi::LiveResponse))
)]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "up" }))
}

/// Readiness
///
/// This instance's own state: `200` while it serves, `503` while it drains
/// before a shutdown. A load balancer should route on this. The state of
/// PostgreSQL and Redis is reported in the body (`dependencies`) but does not
/// turn it `503`: they are shared by every instance, so a blip would take all
/// of them out of the balancer at once, and clients would get the balancer's
/// bare error instead of this service's own `503` problem (and lose what
/// still works without that dependency).
#[utoipa::path(get, path = "/health/ready", tag = "operations", operation_id = "ready",
    responses(
        (status = 200, description = "Serving; `dependencies` says whether PostgreSQL and Redis answer", body = crate::openapi::ReadyResponse),
        (status = 503, description = "Draining before a shutdown (DEPENDENCY_UNAVAILABLE with `draining: true`)", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.drain.is_draining() {
        return Err(ApiError::new(
            ProblemCode::DependencyUnavailable,
            "Draining: this instance is shutting down; send requests to another one",
        )
        .with_extension("draining", true));
    }
    let report = state.check_readiness.execute().await;
    let dependencies: Map<String, Value> = report
        .dependencies
        .iter()
        .map(|d| (d.name.to_owned(), Value::from(if d.up { "up" } else { "down" })))
        .collect();
    let status = if report.is_ready() { "ready" } else { "degraded" };
    Ok(HttpResponse::Ok().json(json!({ "status": status, "dependencies": dependencies })))
}
