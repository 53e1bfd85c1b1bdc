//! Prometheus metrics: what the HTTP layer records, and `GET /metrics`.
//!
//! Recording goes through the `metrics` facade (a no-op until a recorder is
//! installed, as `coffee serve` does); `GET /metrics` (`routes/metrics.rs`)
//! renders the Prometheus handle held in [`crate::AppState`], followed by
//! the two request series, which this module keeps itself
//! ([`record_request`], [`render_requests`]).
//!
//! Every label value comes from a small set the service decides, never from
//! the request as sent: the exporter keeps each series for the life of the
//! process, so one label a client could choose would let anyone grow
//! `/metrics` and the process's memory without limit. Methods are folded to
//! the standard ones plus `OTHER` ([`method_label`]), routes to the
//! registered templates plus `unmatched` ([`route_label`]), statuses are the
//! numbers the service itself answered with.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::http::{Method, StatusCode};

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const ORDERS_PLACED: &str = "coffee_orders_placed_total";
pub const POINTS_CHARGED: &str = "coffee_points_charged_total";
pub const CHARGES: &str = "coffee_charges_total";
pub const LOGIN_FAILURES: &str = "coffee_login_failures_total";
pub const LOGINS_THROTTLED: &str = "coffee_logins_throttled_total";
pub const IDEMPOTENT_REPLAYS: &str = "coffee_idempotent_replays_total";

/// The upper bounds, in seconds, of [`HTTP_DURATION`]'s buckets.
pub const DURATION_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

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
/// status (see the module documentation for why each is bounded): one more
/// in [`HTTP_REQUESTS`], and its latency in [`HTTP_DURATION`].
///
/// Each thread counts in series of its own ([`Series`], kept in
/// [`REQUEST_SERIES`]), which `GET /metrics` adds up: with one series per
/// label set for the whole process (the recorder's), every request wrote
/// the same counters from both HTTP workers, and each write moved their
/// cache line from the other core. The label sets are bounded (see above),
/// so the series are too; a thread finds its own in a short list compared
/// by the labels' addresses (each label is one of a fixed set of `'static`
/// strings), which the few sets a worker meets make faster than hashing.
pub fn record_request(method: &Method, route: &'static str, status: StatusCode, seconds: f64) {
    let key = RequestLabels {
        method: method_label(method),
        route,
        status: status.as_u16(),
    };
    REQUEST_SERIES.with_borrow_mut(|series| {
        if let Some(known) = series.iter().find(|known| known.labels.is(&key)) {
            known.record(seconds);
            return;
        }
        let new = Arc::new(Series::new(key));
        new.record(seconds);
        lock(&ALL_SERIES).push(Arc::clone(&new));
        series.push(new);
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

/// One label set's requests as one thread counted them. Only that thread
/// writes it, with plain loads and stores (no read-modify-write is needed
/// with one writer); `GET /metrics` reads every thread's.
#[derive(Debug)]
struct Series {
    labels: RequestLabels,
    count: AtomicU64,
    /// The latencies' sum in seconds, as `f64` bits.
    sum: AtomicU64,
    /// Requests in each of [`DURATION_BUCKETS`] (at most its bound and more
    /// than the one before); the slower ones are `count` less all these.
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
}

impl Series {
    fn new(labels: RequestLabels) -> Self {
        Self {
            labels,
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0.0f64.to_bits()),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// One request of `seconds`; only the series' own thread calls it.
    fn record(&self, seconds: f64) {
        if let Some(at) = DURATION_BUCKETS.iter().position(|bound| seconds <= *bound) {
            bump(&self.buckets[at]);
        }
        self.sum
            .store((f64::from_bits(self.sum.load(Relaxed)) + seconds).to_bits(), Relaxed);
        // Last: a reader that sees this count sees the bucket and the sum.
        self.count
            .store(self.count.load(Relaxed) + 1, std::sync::atomic::Ordering::Release);
    }
}

/// One more in a counter only its own thread writes.
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Relaxed) + 1, Relaxed);
}

thread_local! {
    /// This thread's series ([`record_request`]).
    static REQUEST_SERIES: RefCell<Vec<Arc<Series>>> = const { RefCell::new(Vec::new()) };
}

/// Every thread's series, for [`render_requests`]; a thread's stay after it
/// ends, so the totals never go down.
static ALL_SERIES: Mutex<Vec<Arc<Series>>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One label set's totals over every thread.
struct Totals {
    labels: RequestLabels,
    count: u64,
    sum: f64,
    buckets: [u64; DURATION_BUCKETS.len()],
}

/// [`HTTP_REQUESTS`] and [`HTTP_DURATION`] in the Prometheus text format
/// (as the exporter writes its own), every thread's series of a label set
/// added up; nothing before the first request.
pub fn render_requests() -> String {
    let mut totals: Vec<Totals> = Vec::new();
    for series in lock(&ALL_SERIES).iter() {
        let count = series.count.load(std::sync::atomic::Ordering::Acquire);
        let at = match totals.iter().position(|t| t.labels.is(&series.labels)) {
            Some(at) => at,
            None => {
                totals.push(Totals {
                    labels: series.labels,
                    count: 0,
                    sum: 0.0,
                    buckets: [0; DURATION_BUCKETS.len()],
                });
                totals.len() - 1
            }
        };
        let total = &mut totals[at];
        total.count += count;
        total.sum += f64::from_bits(series.sum.load(Relaxed));
        for (sum, bucket) in total.buckets.iter_mut().zip(&series.buckets) {
            *sum += bucket.load(Relaxed);
        }
    }
    if totals.is_empty() {
        return String::new();
    }
    totals.sort_by(|a, b| {
        (a.labels.route, a.labels.method, a.labels.status).cmp(&(b.labels.route, b.labels.method, b.labels.status))
    });
    let mut out = String::new();
    let _ = writeln!(out, "# TYPE {HTTP_REQUESTS} counter");
    for total in &totals {
        let _ = writeln!(out, "{HTTP_REQUESTS}{{{}}} {}", labels_of(&total.labels), total.count);
    }
    let _ = writeln!(out, "\n# TYPE {HTTP_DURATION} histogram");
    for total in &totals {
        let labels = labels_of(&total.labels);
        let mut below = 0;
        for (bound, in_bucket) in DURATION_BUCKETS.iter().zip(total.buckets) {
            below += in_bucket;
            let _ = writeln!(out, "{HTTP_DURATION}_bucket{{{labels},le=\"{bound}\"}} {below}");
        }
        // A count read before its last buckets were: never fewer than them.
        let count = total.count.max(below);
        let _ = writeln!(out, "{HTTP_DURATION}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{HTTP_DURATION}_sum{{{labels}}} {}", total.sum);
        let _ = writeln!(out, "{HTTP_DURATION}_count{{{labels}}} {count}");
    }
    out.push('\n');
    out
}

/// `method="...",route="...",status="..."`: the label values are the
/// service's own (standard methods, route templates, numbers), with no
/// character the text format would need escaped.
fn labels_of(labels: &RequestLabels) -> String {
    format!(
        "method=\"{}\",route=\"{}\",status=\"{}\"",
        labels.method, labels.route, labels.status
    )
}

/// Adds `by` to the recorder's counter `name` (one of this module's
/// constants, unlabelled). Its handle is looked up once per thread and
/// kept: each `metrics::counter!` call hashes the key and searches the
/// recorder's registry, taking its lock and the handle's reference count,
/// all shared by the HTTP workers.
pub fn count(name: &'static str, by: u64) {
    COUNTERS.with_borrow_mut(|counters| {
        if let Some((_, counter)) = counters.iter().find(|(known, _)| same(known, name)) {
            counter.increment(by);
            return;
        }
        let counter = metrics::counter!(name);
        counter.increment(by);
        counters.push((name, counter));
    });
}

thread_local! {
    /// The counters [`count`] has used on this thread.
    static COUNTERS: RefCell<Vec<(&'static str, metrics::Counter)>> = const { RefCell::new(Vec::new()) };
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

    /// The requests two threads counted in series of their own come out as
    /// one series per label set: a counter, and a histogram whose buckets
    /// are cumulative and whose `+Inf` bucket is the count.
    #[test]
    fn each_threads_requests_are_added_up_by_label_set() {
        const ROUTE: &str = "/test/each-thread";
        let record = |seconds: f64| {
            std::thread::spawn(move || {
                record_request(&Method::GET, ROUTE, StatusCode::OK, seconds);
                record_request(&Method::GET, ROUTE, StatusCode::OK, seconds);
            })
            .join()
            .expect("joined");
        };
        record(0.002);
        record(7.0);
        std::thread::spawn(|| record_request(&Method::POST, ROUTE, StatusCode::CREATED, 0.0005))
            .join()
            .expect("joined");

        let text = render_requests();
        let get = "method=\"GET\",route=\"/test/each-thread\",status=\"200\"";
        let lines: Vec<&str> = text.lines().filter(|line| line.contains(get)).collect();
        assert!(
            lines.contains(&format!("{HTTP_REQUESTS}{{{get}}} 4").as_str()),
            "{text}"
        );
        for (le, below) in [("0.001", 0), ("0.0025", 2), ("5", 2), ("+Inf", 4)] {
            let line = format!("{HTTP_DURATION}_bucket{{{get},le=\"{le}\"}} {below}");
            assert!(lines.contains(&line.as_str()), "{line} in {text}");
        }
        assert!(
            lines.contains(&format!("{HTTP_DURATION}_count{{{get}}} 4").as_str()),
            "{text}"
        );
        let sum: f64 = lines
            .iter()
            .find_map(|line| line.strip_prefix(&format!("{HTTP_DURATION}_sum{{{get}}} ")))
            .and_then(|value| value.parse().ok())
            .expect("a sum");
        assert!((sum - 14.004).abs() < 1e-9, "{text}");
        let created = "method=\"POST\",route=\"/test/each-thread\",status=\"201\"";
        assert!(text.contains(&format!("{HTTP_REQUESTS}{{{created}}} 1")), "{text}");
        assert_eq!(text.matches(&format!("# TYPE {HTTP_REQUESTS} counter")).count(), 1);
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
