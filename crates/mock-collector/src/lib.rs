//! A stand-in for the external data-collection API, for tests and demos.
//!
//! - `POST /events` accepts an event (JSON with a string `eventId`), stores it
//!   once per `eventId`, and counts every delivery of it.
//! - `GET /events` lists each event once with its delivery count, in order of
//!   first receipt; `GET /stats` sums them up; `DELETE /events` forgets all.
//! - `MOCK_COLLECTOR_FAIL_RATE` (0.0 to 1.0) answers that share of
//!   `POST /events` with `503` without storing anything;
//!   `MOCK_COLLECTOR_LATENCY_MS` delays every answer.
//! - `MOCK_COLLECTOR_JOURNAL` names a file to which every accepted delivery is
//!   appended (one JSON line, written before the `202`) and from which the
//!   store is rebuilt at start: a collector that is stopped and started again
//!   (the soak test does) still knows every event it acknowledged.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde::Serialize;
use serde_json::{Value, json};

/// How the mock behaves.
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub addr: String,
    /// Share of `POST /events` answered with `503`, from 0.0 to 1.0.
    pub fail_rate: f64,
    /// Delay before every answer.
    pub latency: Duration,
    /// Where accepted deliveries are kept across restarts, if anywhere.
    pub journal: Option<PathBuf>,
}

impl MockConfig {
    /// Reads `MOCK_COLLECTOR_ADDR`, `MOCK_COLLECTOR_FAIL_RATE` and
    /// `MOCK_COLLECTOR_LATENCY_MS`.
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let fail_rate = match var("MOCK_COLLECTOR_FAIL_RATE") {
            Some(raw) => raw
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| {
                    anyhow::anyhow!("MOCK_COLLECTOR_FAIL_RATE must be a number from 0.0 to 1.0, got {raw:?}")
                })?,
            None => 0.0,
        };
        let latency_ms = match var("MOCK_COLLECTOR_LATENCY_MS") {
            Some(raw) => raw
                .trim()
                .parse::<u64>()
                .map_err(|_| anyhow::anyhow!("MOCK_COLLECTOR_LATENCY_MS must be a whole number, got {raw:?}"))?,
            None => 0,
        };
        Ok(Self {
            addr: var("MOCK_COLLECTOR_ADDR").unwrap_or_else(|| "127.0.0.1:9100".to_owned()),
            fail_rate,
            latency: Duration::from_millis(latency_ms),
            journal: var("MOCK_COLLECTOR_JOURNAL").map(PathBuf::from),
        })
    }
}

/// One distinct event and how often it arrived.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Received {
    event_id: String,
    deliveries: u64,
    /// The `Idempotency-Key` header of the first delivery.
    idempotency_key: Option<String>,
    event: Value,
}

#[derive(Debug, Default)]
struct Store {
    order: Vec<String>,
    events: HashMap<String, Received>,
    /// `POST /events` answered with a deliberate `503`.
    rejected: u64,
    journal: Option<std::fs::File>,
}

/// One line of the journal.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    event_id: String,
    idempotency_key: Option<String>,
    event: Value,
}

impl Store {
    /// Opens (creating it if needed) `path` and replays its deliveries.
    fn from_journal(path: &std::path::Path) -> std::io::Result<Self> {
        let mut store = Self::default();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        // A line cut short by a kill mid-write was never acknowledged.
        for delivery in text
            .lines()
            .filter_map(|line| serde_json::from_str::<Delivery>(line).ok())
        {
            store.apply(delivery);
        }
        let mut journal = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        if !text.is_empty() && !text.ends_with('\n') {
            // End the torn line so the next delivery starts a line of its own.
            journal.write_all(b"\n")?;
        }
        store.journal = Some(journal);
        Ok(store)
    }

    /// Journals `delivery` (when there is a journal), then counts it.
    fn record(&mut self, delivery: Delivery) -> std::io::Result<u64> {
        if let Some(journal) = self.journal.as_mut() {
            let mut line = serde_json::to_vec(&delivery).map_err(std::io::Error::other)?;
            line.push(b'\n');
            journal.write_all(&line)?;
        }
        Ok(self.apply(delivery))
    }

    fn apply(&mut self, delivery: Delivery) -> u64 {
        match self.events.get_mut(&delivery.event_id) {
            Some(existing) => {
                existing.deliveries += 1;
                existing.deliveries
            }
            None => {
                self.order.push(delivery.event_id.clone());
                self.events.insert(
                    delivery.event_id.clone(),
                    Received {
                        event_id: delivery.event_id,
                        deliveries: 1,
                        idempotency_key: delivery.idempotency_key,
                        event: delivery.event,
                    },
                );
                1
            }
        }
    }
}

#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    config: MockConfig,
}

impl Shared {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store half-written
        // (every update is a single insert or increment), so keep serving.
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn problem(status: actix_web::http::StatusCode, detail: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .body(json!({ "title": detail, "status": status.as_u16(), "detail": detail }).to_string())
}

async fn receive(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    tokio::time::sleep(shared.config.latency).await;
    if shared.config.fail_rate > 0.0 && rand::random::<f64>() < shared.config.fail_rate {
        shared.store().rejected += 1;
        return problem(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, "deliberate failure");
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return problem(actix_web::http::StatusCode::BAD_REQUEST, "body is not JSON");
    };
    let Some(event_id) = event.get("eventId").and_then(Value::as_str).map(str::to_owned) else {
        return problem(actix_web::http::StatusCode::BAD_REQUEST, "eventId is missing");
    };
    let idempotency_key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let delivery = Delivery {
        event_id: event_id.clone(),
        idempotency_key,
        event,
    };
    let deliveries = match shared.store().record(delivery) {
        Ok(deliveries) => deliveries,
        Err(e) => {
            tracing::error!(error = %e, "writing the journal failed");
            return problem(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                "journal write failed",
            );
        }
    };
    HttpResponse::Accepted().json(json!({ "eventId": event_id, "deliveries": deliveries }))
}

async fn list(shared: web::Data<Shared>) -> HttpResponse {
    tokio::time::sleep(shared.config.latency).await;
    let store = shared.store();
    let events: Vec<&Received> = store.order.iter().filter_map(|id| store.events.get(id)).collect();
    HttpResponse::Ok().json(events)
}

async fn stats(shared: web::Data<Shared>) -> HttpResponse {
    let store = shared.store();
    let deliveries: u64 = store.events.values().map(|e| e.deliveries).sum();
    HttpResponse::Ok().json(json!({
        "uniqueEvents": store.events.len(),
        "deliveries": deliveries,
        "duplicateDeliveries": deliveries - store.events.len() as u64,
        "rejected": store.rejected,
    }))
}

async fn reset(shared: web::Data<Shared>) -> HttpResponse {
    let mut store = shared.store();
    if let Some(journal) = store.journal.as_mut()
        && let Err(e) = journal.set_len(0)
    {
        tracing::error!(error = %e, "emptying the journal failed");
        return problem(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "journal reset failed",
        );
    }
    let journal = store.journal.take();
    *store = Store {
        journal,
        ..Store::default()
    };
    HttpResponse::NoContent().finish()
}

/// Starts the mock on `listener`; the returned server runs when awaited.
pub fn run(listener: TcpListener, config: MockConfig) -> std::io::Result<Server> {
    let store = match &config.journal {
        Some(path) => Store::from_journal(path)?,
        None => Store::default(),
    };
    let shared = web::Data::new(Shared {
        store: Mutex::new(store),
        config,
    });
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .app_data(web::PayloadConfig::new(1024 * 1024))
            .service(
                web::resource("/events")
                    .route(web::post().to(receive))
                    .route(web::get().to(list))
                    .route(web::delete().to(reset)),
            )
            .route("/stats", web::get().to(stats))
            .route("/health", web::get().to(HttpResponse::Ok))
    })
    .workers(2)
    .listen(listener)?
    .run())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start(fail_rate: f64) -> String {
        start_with(fail_rate, None).await
    }

    async fn start_with(fail_rate: f64, journal: Option<PathBuf>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let config = MockConfig {
            addr: String::new(),
            fail_rate,
            latency: Duration::ZERO,
            journal,
        };
        tokio::spawn(run(listener, config).expect("server"));
        format!("http://127.0.0.1:{port}")
    }

    async fn post(client: &reqwest::Client, base: &str, id: &str) -> reqwest::StatusCode {
        client
            .post(format!("{base}/events"))
            .header("idempotency-key", id)
            .json(&json!({ "eventId": id, "type": "ORDER_PLACED" }))
            .send()
            .await
            .expect("sent")
            .status()
    }

    #[tokio::test]
    async fn events_are_stored_once_and_deliveries_counted() {
        let base = start(0.0).await;
        let client = reqwest::Client::new();

        assert_eq!(post(&client, &base, "a").await, 202);
        assert_eq!(post(&client, &base, "a").await, 202);
        assert_eq!(post(&client, &base, "b").await, 202);

        let events: Vec<Value> = client
            .get(format!("{base}/events"))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["eventId"], "a");
        assert_eq!(events[0]["deliveries"], 2);
        assert_eq!(events[0]["idempotencyKey"], "a");
        assert_eq!(events[1]["deliveries"], 1);
        let stats = stats_of(&client, &base).await;
        assert_eq!(stats["duplicateDeliveries"], 1);
    }

    async fn stats_of(client: &reqwest::Client, base: &str) -> Value {
        client
            .get(format!("{base}/stats"))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json")
    }

    #[tokio::test]
    async fn a_restarted_collector_remembers_its_journal() {
        let journal = std::env::temp_dir().join(format!(
            "mock-collector-{}-{:?}.jsonl",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let client = reqwest::Client::new();
        let first = start_with(0.0, Some(journal.clone())).await;
        assert_eq!(post(&client, &first, "a").await, 202);
        assert_eq!(post(&client, &first, "b").await, 202);
        // A line cut short by a kill mid-write is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .and_then(|mut f| f.write_all(b"{\"eventId\":"))
            .expect("torn line");

        let second = start_with(0.0, Some(journal.clone())).await;
        assert_eq!(post(&client, &second, "a").await, 202);
        assert_eq!(post(&client, &second, "c").await, 202);
        let stats = stats_of(&client, &second).await;
        assert_eq!(stats["uniqueEvents"], 3);
        assert_eq!(stats["duplicateDeliveries"], 1);

        let third = start_with(0.0, Some(journal.clone())).await;
        let stats = stats_of(&client, &third).await;
        assert_eq!(
            stats["uniqueEvents"], 3,
            "deliveries after the torn line survive: {stats}"
        );
        let _ = std::fs::remove_file(journal);
    }

    #[tokio::test]
    async fn a_fail_rate_of_one_rejects_everything_and_stores_nothing() {
        let base = start(1.0).await;
        let client = reqwest::Client::new();

        assert_eq!(post(&client, &base, "a").await, 503);

        let stats = stats_of(&client, &base).await;
        assert_eq!(stats["uniqueEvents"], 0);
        assert_eq!(stats["rejected"], 1);
    }

    #[tokio::test]
    async fn an_event_without_an_id_is_a_400() {
        let base = start(0.0).await;
        let response = reqwest::Client::new()
            .post(format!("{base}/events"))
            .json(&json!({ "type": "ORDER_PLACED" }))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 400);
    }
}
