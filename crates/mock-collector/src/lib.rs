//! A stand-in for the external data-collection API, for tests and demos.
//!
//! - `POST /events` accepts an event (JSON with a string `eventId`), stores it
//!   once per `eventId`, and counts every delivery of it.
//! - `GET /events` lists each event once with its delivery count, in order of
//!   first receipt; `GET /stats` sums them up; `DELETE /events` forgets all.
//! - `MOCK_COLLECTOR_FAIL_RATE` (0.0 to 1.0) answers that share of
//!   `POST /events` with `503` without storing anything;
//!   `MOCK_COLLECTOR_LATENCY_MS` delays every answer.

use std::collections::HashMap;
use std::net::TcpListener;
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
    let mut store = shared.store();
    let deliveries = match store.events.get_mut(&event_id) {
        Some(existing) => {
            existing.deliveries += 1;
            existing.deliveries
        }
        None => {
            store.order.push(event_id.clone());
            store.events.insert(
                event_id.clone(),
                Received {
                    event_id: event_id.clone(),
                    deliveries: 1,
                    idempotency_key,
                    event,
                },
            );
            1
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
    *shared.store() = Store::default();
    HttpResponse::NoContent().finish()
}

/// Starts the mock on `listener`; the returned server runs when awaited.
pub fn run(listener: TcpListener, config: MockConfig) -> std::io::Result<Server> {
    let shared = web::Data::new(Shared {
        store: Mutex::new(Store::default()),
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
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let config = MockConfig {
            addr: String::new(),
            fail_rate,
            latency: Duration::ZERO,
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
        let stats: Value = client
            .get(format!("{base}/stats"))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        assert_eq!(stats["duplicateDeliveries"], 1);
    }

    #[tokio::test]
    async fn a_fail_rate_of_one_rejects_everything_and_stores_nothing() {
        let base = start(1.0).await;
        let client = reqwest::Client::new();

        assert_eq!(post(&client, &base, "a").await, 503);

        let stats: Value = client
            .get(format!("{base}/stats"))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
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
