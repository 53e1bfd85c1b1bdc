//! `GET /metrics`.

use actix_web::{HttpResponse, web};

use crate::state::AppState;

/// Metrics
///
/// The process's counters and histograms in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
pub async fn render(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render() + &crate::metrics::render_requests())
}
