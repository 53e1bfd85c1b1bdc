//! Prometheus metrics: what the HTTP layer records, and `GET /metrics`.
//!
//! Recording goes through the `metrics` facade (a no-op until a recorder is
//! installed, as `coffee serve` does); the route renders the Prometheus
//! handle held in [`crate::AppState`].

use actix_web::HttpResponse;
use actix_web::web;

use crate::app::AppState;

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const ORDERS_PLACED: &str = "coffee_orders_placed_total";
pub const POINTS_CHARGED: &str = "coffee_points_charged_total";
pub const CHARGES: &str = "coffee_charges_total";
pub const LOGIN_FAILURES: &str = "coffee_login_failures_total";
pub const LOGINS_THROTTLED: &str = "coffee_logins_throttled_total";
pub const IDEMPOTENT_REPLAYS: &str = "coffee_idempotent_replays_total";

/// One finished request, labelled by route template (never the raw path, so
/// ids do not explode the label space) and status.
pub fn record_request(method: &str, route: &str, status: u16, seconds: f64) {
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &labels).record(seconds);
}

/// A response replayed from an idempotency record.
pub fn record_replay(endpoint: &'static str) {
    metrics::counter!(IDEMPOTENT_REPLAYS, "endpoint" => endpoint).increment(1);
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
pub async fn render(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
