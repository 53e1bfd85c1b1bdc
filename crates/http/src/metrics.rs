//! Prometheus metrics: what the HTTP layer records, and `GET /metrics`.
//!
//! Recording goes through the `metrics` facade (a no-op until a recorder is
//! installed, as `coffee serve` does); `GET /metrics` (`routes/metrics.rs`)
//! renders the Prometheus handle held in [`crate::AppState`].
//!
//! Every label value comes from a small set the service decides, never from
//! the request as sent: the exporter keeps each series for the life of the
//! process, so one label a client could choose would let anyone grow
//! `/metrics` and the process's memory without limit. Methods are folded to
//! the standard ones plus `OTHER` ([`method_label`]), routes to the
//! registered templates plus `unmatched` ([`route_label`]), statuses are the
//! numbers the service itself answered with.

use std::cell::RefCell;

use actix_web::http::{Method, StatusCode};
use metrics::{Counter, Histogram, Label};

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const ORDERS_PLACED: &str = "coffee_orders_placed_total";
pub const POINTS_CHARGED: &str = "coffee_points_charged_total";
pub const CHARGES: &str = "coffee_charges_total";
pub const LOGIN_FAILURES: &str = "coffee_login_failures_total";
pub const LOGINS_THROTTLED: &str = "coffee_logins_throttled_total";
pub const IDEMPOTENT_REPLAYS: &str = "coffee_idempotent_replays_total";

/// The `route` label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// The `method` label of any method but the eight of RFC 9110 and PATCH.
pub const OTHER_METHOD: &str = "OTHER";

/// The `method` label: the method itself when it is a standard one (methods
/// are case-sensitive, so `get` is not `GET`), `OTHER` for anything else.
pub fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "CONNECT" => "CONNECT",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "PATCH" => "PATCH",
        _ => OTHER_METHOD,
    }
}

/// The templates of the routes the application registers, handed to the
/// request middleware as data (`app.rs` builds it from its route table).
#[derive(Debug, Clone)]
pub struct RouteTemplates(Vec<&'static str>);

impl RouteTemplates {
    pub fn new(templates: Vec<&'static str>) -> Self {
        Self(templates)
    }

    /// The `route` label: the template of the route the router matched
    /// (never the raw path, so ids do not become labels), looked up among
    /// these; anything else, including no match, is `unmatched`.
    pub fn label(&self, pattern: Option<&str>) -> &'static str {
        let Some(pattern) = pattern else {
            return UNMATCHED;
        };
        self.0
            .iter()
            .copied()
            .find(|known| *known == pattern)
            .unwrap_or(UNMATCHED)
    }
}

/// One finished request, labelled by folded method, route template and
/// status (see the module documentation for why each is bounded).
///
/// The two series of a label set are looked up in the recorder once per
/// worker thread and kept ([`REQUEST_SERIES`]): a lookup builds the key, hashes
/// its labels and searches the registry, several times the cost of counting.
/// The label sets are bounded (see above), so the cache is too; it is a list
/// searched by the labels' addresses (each label is one of a fixed set of
/// `'static` strings), which the few sets a worker meets make faster than
/// hashing.
pub fn record_request(method: &Method, route: &'static str, status: StatusCode, seconds: f64) {
    let key = RequestLabels {
        method: method_label(method),
        route,
        status: status.as_u16(),
    };
    REQUEST_SERIES.with_borrow_mut(|series| {
        let at = match series.iter().position(|(known, _)| known.is(&key)) {
            Some(at) => at,
            None => {
                let labels = [
                    Label::from_static_parts("method", key.method),
                    Label::from_static_parts("route", key.route),
                    Label::new("status", key.status.to_string()),
                ];
                let handles = (
                    metrics::counter!(HTTP_REQUESTS, labels.iter()),
                    metrics::histogram!(HTTP_DURATION, labels.iter()),
                );
                series.push((key, handles));
                series.len() - 1
            }
        };
        let (_, (count, duration)) = &series[at];
        count.increment(1);
        duration.record(seconds);
    });
}

/// A request's label set.
#[derive(Debug, Clone, Copy)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

impl RequestLabels {
    /// The same set: the same status and the same strings, compared by
    /// address first (the common case) and by content when the addresses
    /// differ, so two copies of one label still share their series.
    fn is(&self, other: &Self) -> bool {
        self.status == other.status && same(self.route, other.route) && same(self.method, other.method)
    }
}

fn same(a: &'static str, b: &'static str) -> bool {
    std::ptr::eq(a, b) || a == b
}

thread_local! {
    /// The series [`record_request`] has used on this thread.
    static REQUEST_SERIES: RefCell<Vec<(RequestLabels, (Counter, Histogram))>> = const { RefCell::new(Vec::new()) };
}

/// A response replayed from an idempotency record.
pub fn record_replay(endpoint: &'static str) {
    metrics::counter!(IDEMPOTENT_REPLAYS, "endpoint" => endpoint).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_keep_their_name_and_every_other_one_is_other() {
        for standard in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ] {
            let method = Method::from_bytes(standard.as_bytes()).expect("method");
            assert_eq!(method_label(&method), standard);
        }
        for invented in [
            "get",
            "Post",
            "BREW",
            "PROPFIND",
            "X-EVERY-REQUEST-A-NEW-ONE-1234567890",
        ] {
            let method = Method::from_bytes(invented.as_bytes()).expect("method");
            assert_eq!(method_label(&method), OTHER_METHOD, "{invented}");
        }
    }

    #[test]
    fn every_registered_template_is_its_own_label_and_anything_else_is_unmatched() {
        let templates = RouteTemplates::new(vec!["/orders/{orderId}", "/menus"]);
        for path in ["/orders/{orderId}", "/menus"] {
            assert_eq!(templates.label(Some(path)), path);
        }
        assert_eq!(templates.label(None), UNMATCHED);
        assert_eq!(
            templates.label(Some("/orders/0192f0a0-0000-7000-8000-000000000001")),
            UNMATCHED
        );
        assert_eq!(templates.label(Some("/anything/{else}")), UNMATCHED);
    }
}
