//! Password hashing under a flood: past the hashing queue's bound, logins and
//! signups are turned away at once with `503` and `Retry-After`, and a login
//! turned away uses up none of the account's attempts.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

const PASSWORD: &str = "correct horse battery staple";

/// Sends `count` copies of `body` to `path` at once; returns each answer's
/// status, `Retry-After` and problem code.
async fn burst(app: &TestApp, path: &str, count: usize, body: impl Fn(usize) -> Value) -> Vec<(u16, String, String)> {
    let requests: Vec<_> = (0..count)
        .map(|n| {
            let request = app.client.post(format!("{}{path}", app.address)).json(&body(n));
            tokio::spawn(async move {
                let response = request.send().await.expect("sent");
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                (
                    status,
                    retry_after,
                    body["code"].as_str().unwrap_or_default().to_owned(),
                )
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.expect("request task"));
    }
    answers
}

fn assert_shed_properly(answers: &[(u16, String, String)], ok: u16) {
    let shed: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert!(
        answers.iter().all(|a| a.0 == ok || a.0 == 503),
        "only {ok} or 503 expected: {answers:?}"
    );
    assert!(!shed.is_empty(), "nothing was shed: {answers:?}");
    assert!(answers.iter().any(|a| a.0 == ok), "nothing got through: {answers:?}");
    for (_, retry_after, code) in shed {
        assert_eq!(retry_after, "1");
        assert_eq!(code, "DEPENDENCY_UNAVAILABLE");
    }
}

#[tokio::test]
async fn a_login_flood_past_the_hashing_queue_is_shed_without_counting_attempts() {
    // One hash at a time and no room to wait: of concurrent requests, those
    // arriving while a hash runs must be turned away.
    let app = spawn_app_with(&[
        ("PASSWORD_HASH_CONCURRENCY", "1".to_owned()),
        ("PASSWORD_HASH_QUEUE_MAX", "0".to_owned()),
    ])
    .await;
    let email = format!("flood-{}@example.com", uuid::Uuid::new_v4().simple());
    let created = app
        .client
        .post(format!("{}/auth/signup", app.address))
        .json(&json!({"email": email, "password": PASSWORD, "name": "Flood"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), 201);

    // 30 right-password logins of one account at once. Were a shed login
    // counted, more than the 5 allowed attempts would pile up and the
    // account would answer 429 even to its own password.
    let logins = burst(
        &app,
        "/auth/login",
        30,
        |_| json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_shed_properly(&logins, 200);

    let signups = burst(&app, "/auth/signup", 10, |n| {
        json!({"email": format!("flood-{n}-{}@example.com", uuid::Uuid::new_v4().simple()), "password": PASSWORD, "name": "Flood"})
    })
    .await;
    assert_shed_properly(&signups, 201);
}
