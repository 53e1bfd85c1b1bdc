//! The foundation, black-box: the built `coffee` and `mock-collector`
//! binaries against the real PostgreSQL and Redis.

use std::time::Duration;

use coffee_e2e::{coffee_env, free_port, run_coffee, start_coffee, start_mock_collector};
use coffee_test_support::{TcpProxy, TestDatabase, host_port, unique_key_prefix};
use serde_json::Value;

#[tokio::test]
async fn migrate_creates_a_missing_database() {
    let db = TestDatabase::create_empty().await;
    let missing = db.url().replace(db.name(), &format!("{}_new", db.name()));
    let env = coffee_env(free_port(), &missing, &unique_key_prefix(), "http://127.0.0.1:1");

    let (status, output) = run_coffee(&["migrate"], &env).expect("coffee migrate runs");
    let dropped = db.drop_sibling(&format!("{}_new", db.name())).await;

    assert!(status.success(), "coffee migrate failed: {output}");
    assert!(output.contains("created the database"), "{output}");
    assert!(dropped, "the new database existed");
}

#[tokio::test]
async fn migrate_then_serve_the_menu_from_an_empty_database() {
    let db = TestDatabase::create_empty().await;
    let port = free_port();
    let env = coffee_env(port, db.url(), &unique_key_prefix(), "http://127.0.0.1:1");

    let (status, output) = run_coffee(&["migrate"], &env).expect("coffee migrate runs");
    assert!(status.success(), "coffee migrate failed: {output}");
    assert!(output.contains("migrations applied"), "{output}");
    let (status, output) = run_coffee(&["migrate"], &env).expect("coffee migrate runs again");
    assert!(status.success(), "second coffee migrate failed: {output}");
    assert!(output.contains("up to date"), "a second run applies nothing: {output}");

    let server = start_coffee(port, &env).await.expect("coffee serve starts");
    let client = reqwest::Client::new();
    let menus: Vec<Value> = client
        .get(format!("{}/menus", server.base_url))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert!(menus.len() >= 8, "{menus:?}");

    let ready = client
        .get(format!("{}/health/ready", server.base_url))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn bad_requests_get_problem_json_from_the_binary() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let server = start_coffee(
        port,
        &coffee_env(port, db.url(), &unique_key_prefix(), "http://127.0.0.1:1"),
    )
    .await
    .expect("coffee serve starts");
    let client = reqwest::Client::new();

    let unknown = client
        .get(format!("{}/no/such/route", server.base_url))
        .header("x-request-id", "e2e-1")
        .send()
        .await
        .expect("sent");
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.headers()["x-request-id"], "e2e-1");
    assert_eq!(unknown.headers()["content-type"], "application/problem+json");
    let problem: Value = unknown.json().await.expect("problem");
    assert_eq!(problem["code"], "NOT_FOUND");

    let oversized = client
        .post(format!("{}/menus", server.base_url))
        .header("content-type", "application/json")
        .body(vec![b'x'; 17 * 1024])
        .send()
        .await
        .expect("sent");
    assert_eq!(oversized.status(), 413);
    let problem: Value = oversized.json().await.expect("problem");
    assert_eq!(problem["code"], "PAYLOAD_TOO_LARGE");

    let malformed = client
        .post(format!("{}/auth/login", server.base_url))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .expect("sent");
    assert_eq!(malformed.status(), 400);
    let problem: Value = malformed.json().await.expect("problem");
    assert_eq!(problem["code"], "MALFORMED_REQUEST");

    let not_json = client
        .post(format!("{}/auth/login", server.base_url))
        .header("content-type", "text/plain")
        .body("email=a")
        .send()
        .await
        .expect("sent");
    assert_eq!(not_json.status(), 415);
    let problem: Value = not_json.json().await.expect("problem");
    assert_eq!(problem["code"], "UNSUPPORTED_MEDIA_TYPE");

    let wrong_method = client
        .put(format!("{}/menus", server.base_url))
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "GET");
}

#[tokio::test]
async fn losing_the_database_turns_ready_into_503_and_back_without_a_crash() {
    let db = TestDatabase::create().await;
    let upstream = host_port(db.url()).expect("database host:port").to_owned();
    let proxy = TcpProxy::start(&upstream).await.expect("proxy");
    let port = free_port();
    let env = coffee_env(
        port,
        &db.url_via(&proxy.addr().to_string()),
        &unique_key_prefix(),
        "http://127.0.0.1:1",
    );
    let mut server = start_coffee(port, &env).await.expect("coffee serve starts");
    let client = reqwest::Client::new();
    // Ready stays 200 (a shared dependency's outage must not take every
    // instance out of the balancer); its body says what is down.
    let ready = || async {
        let response = client
            .get(format!("{}/health/ready", server.base_url))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.expect("JSON");
        body["dependencies"]["database"].as_str().unwrap_or_default().to_owned()
    };

    assert_eq!(ready().await, "up");

    proxy.cut();
    assert_eq!(ready().await, "down");
    let menus = client
        .get(format!("{}/menus", server.base_url))
        .send()
        .await
        .expect("sent");
    assert_eq!(menus.status(), 503);

    proxy.restore();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ready().await != "up" {
        assert!(
            std::time::Instant::now() < deadline,
            "the database was not reported up again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.is_running());
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let mut server = start_coffee(
        port,
        &coffee_env(port, db.url(), &unique_key_prefix(), "http://127.0.0.1:1"),
    )
    .await
    .expect("coffee serve starts");

    server.signal("TERM").expect("signal sent");
    let status = server.wait_exit(Duration::from_secs(10)).await.expect("exits");

    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn the_configuration_refuses_a_short_signing_key() {
    let (status, output) = run_coffee(&["serve"], &[("JWT_SECRET", "short".to_owned())]).expect("runs");
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("JWT_SECRET"), "{output}");
}

#[tokio::test]
async fn the_built_in_signing_key_never_serves_a_public_address() {
    for env in [
        vec![("BIND_ADDR", format!("0.0.0.0:{}", free_port()))],
        vec![
            ("BIND_ADDR", format!("[::]:{}", free_port())),
            ("APP_ENV", "test".to_owned()),
        ],
        vec![
            ("BIND_ADDR", format!("127.0.0.1:{}", free_port())),
            ("APP_ENV", "production".to_owned()),
        ],
    ] {
        let (status, output) = run_coffee(&["serve"], &env).expect("runs");
        assert_eq!(status.code(), Some(2), "{env:?}: {output}");
        assert!(
            output.contains("JWT_SECRET") && output.contains("openssl rand"),
            "{env:?}: {output}"
        );
    }
}

#[tokio::test]
async fn the_mock_collector_binary_deduplicates_and_counts() {
    let collector = start_mock_collector(&[]).await.expect("mock collector starts");
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let response = client
            .post(format!("{}/events", collector.base_url))
            .header("idempotency-key", "evt-1")
            .json(&serde_json::json!({"eventId": "evt-1", "type": "ORDER_PLACED"}))
            .send()
            .await
            .expect("sent");
        assert!(response.status().is_success());
    }
    let events: Vec<Value> = client
        .get(format!("{}/events", collector.base_url))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["deliveries"], 2);
}

#[tokio::test]
async fn the_mock_collector_fails_on_demand() {
    let collector = start_mock_collector(&[("MOCK_COLLECTOR_FAIL_RATE", "1.0".to_owned())])
        .await
        .expect("mock collector starts");
    let response = reqwest::Client::new()
        .post(format!("{}/events", collector.base_url))
        .json(&serde_json::json!({"eventId": "evt-1"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn one_json_line_per_request_with_its_context_and_no_secret() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let mut env = coffee_env(port, db.url(), &unique_key_prefix(), "http://127.0.0.1:1");
    env.push(("RUST_LOG", "info".to_owned()));
    let log = std::env::temp_dir().join(format!("coffee-log-{}.json", uuid::Uuid::new_v4().simple()));
    let server = coffee_e2e::Process::start_logging_to("coffee", &["serve"], &env, port, "/health/live", Some(&log))
        .await
        .expect("coffee serve starts");
    let api = coffee_e2e::Api::new(&server.base_url);
    let password = "a very private passphrase";
    let email = format!("log-{}@example.com", uuid::Uuid::new_v4().simple());
    let user = api.signup(&email, password, "Logger").await;
    let pair = api.login(&email, password).await;
    let (access, refresh) = (pair.str("accessToken"), pair.str("refreshToken"));
    let me = api
        .send(
            api.client
                .get(api.url("/auth/me"))
                .bearer_auth(&access)
                .header("x-request-id", "log-test-1"),
        )
        .await;
    assert_eq!(me.status, 200);
    drop(server);

    let text = std::fs::read_to_string(&log).expect("log written");
    let _ = std::fs::remove_file(&log);
    let line: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "request completed" && l["span"]["request_id"] == "log-test-1")
        .unwrap_or_else(|| panic!("no request line for log-test-1 in:\n{text}"));
    assert_eq!(line["span"]["route"], "/auth/me");
    assert_eq!(line["span"]["method"], "GET");
    assert_eq!(line["span"]["user_id"], user.str("id").as_str());
    assert_eq!(line["status"], 200);
    assert!(line["latency_ms"].as_f64().is_some());
    for secret in [password, access.as_str(), refresh.as_str(), coffee_e2e::E2E_JWT_SECRET] {
        assert!(!text.contains(secret), "a secret reached the log");
    }
}
