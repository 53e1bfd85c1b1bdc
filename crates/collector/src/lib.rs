//! Outbound adapter for the external data-collection API.
//!
//! Order events leave the service through here, always from the outbox relay
//! and never on a request path. This module holds the HTTP client (with
//! connect and request timeouts, so a slow collector cannot hold a relay
//! forever) and the rule that turns an HTTP exchange into a delivery outcome.

use std::time::Duration;

use coffee_ports::{DeliveryError, EventSink};
use uuid::Uuid;

/// How the client reaches the collector.
#[derive(Debug, Clone)]
pub struct CollectorSettings {
    /// Base URL; events go to `{base_url}/events`.
    pub base_url: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

/// Classifies a finished exchange: only `2xx` counts as delivered.
pub fn classify(result: Result<reqwest::StatusCode, &reqwest::Error>) -> Result<(), DeliveryError> {
    match result {
        Ok(status) if status.is_success() => Ok(()),
        Ok(status) => Err(DeliveryError::Refused(status.as_u16())),
        Err(e) if e.is_timeout() => Err(DeliveryError::TimedOut),
        Err(e) if e.is_connect() => Err(DeliveryError::Unreachable),
        Err(e) => Err(DeliveryError::Failed(e.to_string())),
    }
}

/// The HTTP client used for every delivery.
#[derive(Debug, Clone)]
pub struct CollectorClient {
    http: reqwest::Client,
    events_url: String,
}

impl CollectorClient {
    pub fn new(settings: &CollectorSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(concat!("coffee/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            events_url: format!("{}/events", settings.base_url.trim_end_matches('/')),
        })
    }

    /// Sends one event body (JSON text) with `Idempotency-Key: <event_id>` so
    /// the collector can deduplicate retries.
    pub async fn send(&self, event_id: &str, body: &str) -> Result<(), DeliveryError> {
        let result = self
            .http
            .post(&self.events_url)
            .header("Idempotency-Key", event_id)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_owned())
            .send()
            .await;
        match result {
            Ok(response) => classify(Ok(response.status())),
            Err(e) => classify(Err(&e)),
        }
    }
}

#[async_trait::async_trait]
impl EventSink for CollectorClient {
    async fn send(&self, event_id: Uuid, payload: &str) -> Result<(), DeliveryError> {
        CollectorClient::send(self, &event_id.to_string(), payload).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{App, HttpResponse, HttpServer, web};
    use std::net::TcpListener;

    /// A local server that answers `/events` with `status` after `delay`.
    fn server(status: u16, delay: Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = HttpServer::new(move || {
            App::new().route(
                "/events",
                web::post().to(move |req: actix_web::HttpRequest| async move {
                    tokio::time::sleep(delay).await;
                    let key = req.headers().get("idempotency-key").cloned();
                    let mut response =
                        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"));
                    if let Some(key) = key {
                        response.insert_header(("x-seen-key", key));
                    }
                    response.finish()
                }),
            )
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        format!("http://127.0.0.1:{port}")
    }

    fn client(base_url: String) -> CollectorClient {
        CollectorClient::new(&CollectorSettings {
            base_url,
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_millis(500),
        })
        .expect("client")
    }

    fn event() -> String {
        serde_json::json!({ "eventId": "e-1", "type": "ORDER_PLACED" }).to_string()
    }

    #[tokio::test]
    async fn a_2xx_is_delivered() {
        for status in [200, 202, 204] {
            let sink = client(server(status, Duration::ZERO));
            assert_eq!(CollectorClient::send(&sink, "e-1", &event()).await, Ok(()), "{status}");
        }
    }

    #[tokio::test]
    async fn a_4xx_or_5xx_is_a_failure() {
        for status in [400, 409, 500, 503] {
            let sink = client(server(status, Duration::ZERO));
            assert!(
                CollectorClient::send(&sink, "e-1", &event()).await == Err(DeliveryError::Refused(status)),
                "{status}"
            );
        }
    }

    #[tokio::test]
    async fn a_slow_collector_times_out() {
        let sink = client(server(200, Duration::from_secs(3)));
        assert_eq!(
            CollectorClient::send(&sink, "e-1", &event()).await,
            Err(DeliveryError::TimedOut)
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_failure() {
        let sink = client("http://127.0.0.1:1".to_owned());
        assert_eq!(
            CollectorClient::send(&sink, "e-1", &event()).await,
            Err(DeliveryError::Unreachable)
        );
    }
}
