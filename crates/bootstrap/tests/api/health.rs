use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_without_database};

#[tokio::test]
async fn live_and_ready_are_200_with_both_dependencies_up() {
    let app = spawn_app().await;

    assert_eq!(app.get("/health/live").await.status(), 200);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.expect("JSON");
    assert_eq!(body["dependencies"]["database"], "up");
    assert_eq!(body["dependencies"]["cache"], "up");
}

#[tokio::test]
async fn ready_is_503_and_live_stays_200_without_a_database() {
    let app = spawn_app_without_database().await;

    assert_eq!(app.get("/health/live").await.status(), 200);
    let started = std::time::Instant::now();
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 503);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "readiness must answer promptly"
    );
    assert_eq!(
        ready.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let problem: Value = ready.json().await.expect("problem body");
    assert_eq!(problem["dependencies"]["database"], "down");
    assert_eq!(problem["dependencies"]["cache"], "up");
}
