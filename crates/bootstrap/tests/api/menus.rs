use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_without_database};

#[tokio::test]
async fn menus_come_from_the_seeded_database_ordered_by_name() {
    let app = spawn_app().await;

    let response = app.get_menus().await;

    assert_eq!(response.status(), 200);
    let menus: Vec<Value> = response.json().await.expect("JSON array");
    assert!(menus.len() >= 8);
    let names: Vec<&str> = menus.iter().filter_map(|m| m["name"].as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    for menu in &menus {
        assert!(
            uuid::Uuid::parse_str(menu["id"].as_str().unwrap_or_default()).is_ok(),
            "{menu}"
        );
        assert!(menu["price"].as_i64().unwrap_or_default() > 0, "{menu}");
    }
}

#[tokio::test]
async fn menus_answer_503_problem_when_the_database_is_unreachable() {
    let app = spawn_app_without_database().await;

    let response = app.get_menus().await;

    assert_eq!(response.status(), 503);
    let problem: Value = response.json().await.expect("problem body");
    assert_eq!(problem["code"], "DEPENDENCY_UNAVAILABLE");
}
