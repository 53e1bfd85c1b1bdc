//! `GET /health/live` and `GET /health/ready`.

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use crate::app::AppState;
use crate::problem::{ApiError, ProblemCode};

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
/// `200` when PostgreSQL and Redis both answer; otherwise `503` with a problem
/// body naming what is down, or saying the instance is draining before a
/// shutdown. A load balancer should route on this.
#[utoipa::path(get, path = "/health/ready", tag = "operations", operation_id = "ready",
    responses(
        (status = 200, description = "PostgreSQL and Redis answer", body = crate::openapi::ReadyResponse),
        (status = 503, description = "A dependency is down (DEPENDENCY_UNAVAILABLE, with `dependencies`), or the instance is draining before a shutdown (with `draining: true`)", body = crate::openapi::Problem, content_type = "application/problem+json"),
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
    if report.is_ready() {
        return Ok(HttpResponse::Ok().json(json!({ "status": "ready", "dependencies": dependencies })));
    }
    let down: Vec<_> = report.down().collect();
    Err(ApiError::new(
        ProblemCode::DependencyUnavailable,
        format!("Not ready: {} unavailable", down.join(" and ")),
    )
    .with_extension("dependencies", Value::Object(dependencies)))
}
