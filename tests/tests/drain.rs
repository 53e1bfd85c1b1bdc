//! Graceful shutdown behind a balancer: on SIGTERM an instance first drains
//! (ready turns 503, it keeps serving, and asks clients to reconnect
//! elsewhere), then stops; a second signal stops it at once.

use std::time::{Duration, Instant};

use coffee_e2e::{coffee_env, free_port, override_env, start_coffee};
use coffee_test_support::{TestDatabase, unique_key_prefix};

async fn instance(db: &TestDatabase, drain_secs: u64) -> coffee_e2e::Process {
    let port = free_port();
    let mut env = coffee_env(port, db.url(), &unique_key_prefix(), "http://127.0.0.1:1");
    override_env(&mut env, [("SHUTDOWN_DRAIN_SECS", drain_secs.to_string())]);
    start_coffee(port, &env).await.expect("coffee serve starts")
}

#[tokio::test]
async fn sigterm_drains_then_stops() {
    let db = TestDatabase::create().await;
    let mut server = instance(&db, 2).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.base_url);
    let ready = client.get(url("/health/ready")).send().await.expect("ready");
    assert_eq!(ready.status(), 200);
    assert_ne!(
        ready.headers().get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );

    let signalled = Instant::now();
    server.signal("TERM").expect("signal sent");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let ready = client.get(url("/health/ready")).send().await.expect("ready");
    assert_eq!(ready.status(), 503);
    assert_eq!(
        ready.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body: serde_json::Value = ready.json().await.expect("problem");
    assert_eq!(body["draining"], true, "{body}");
    assert_eq!(
        client.get(url("/health/live")).send().await.expect("live").status(),
        200
    );
    // Still serving, but asking the client to go elsewhere.
    let menus = client.get(url("/menus")).send().await.expect("menus");
    assert_eq!(menus.status(), 200);
    assert_eq!(
        menus.headers().get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );

    let status = server.wait_exit(Duration::from_secs(15)).await.expect("exits");
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "it served through the drain before stopping ({:?})",
        signalled.elapsed()
    );
}

#[tokio::test]
async fn a_second_signal_stops_at_once() {
    let db = TestDatabase::create().await;
    let mut server = instance(&db, 60).await;
    server.signal("TERM").expect("first signal");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = Instant::now();
    server.signal("INT").expect("second signal");
    let status = server.wait_exit(Duration::from_secs(10)).await.expect("exits");
    assert!(status.success(), "exit status {status}");
    assert!(second.elapsed() < Duration::from_secs(5), "{:?}", second.elapsed());
}
