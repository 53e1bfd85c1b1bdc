use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_with, spawn_app_without_database};

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
async fn ready_stays_200_and_names_the_database_down_without_one() {
    let app = spawn_app_without_database().await;

    assert_eq!(app.get("/health/live").await.status(), 200);
    let started = std::time::Instant::now();
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 200);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "readiness must answer promptly"
    );
    let body: Value = ready.json().await.expect("JSON body");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["dependencies"]["database"], "down");
    assert_eq!(body["dependencies"]["cache"], "up");
}

/// Redis down (nothing listens at its address): ready stays `200`, so the
/// balancer keeps routing here and clients get this service's own `503`
/// problem where Redis is needed, and `GET /menus` where it is not.
#[tokio::test]
async fn ready_stays_200_and_names_redis_down_without_it() {
    let app = spawn_app_with(&[
        ("REDIS_URL", "redis://127.0.0.1:1".to_owned()),
        ("REDIS_TIMEOUT_MS", "300".to_owned()),
    ])
    .await;

    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.expect("JSON body");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["dependencies"]["cache"], "down");
    assert_eq!(body["dependencies"]["database"], "up");
    assert_eq!(app.get("/menus").await.status(), 200);
}
