//! `GET /metrics` exposes the figures the operations issue asks for, and they
//! move when the corresponding things happen.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// Sum of every sample of `name` whose labels contain all of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter(|line| labels.iter().all(|l| line.contains(l)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/plain"),
        "Prometheus text format"
    );
    response.text().await.expect("text")
}

async fn post(app: &TestApp, path: &str, token: Option<&str>, key: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = app.client.post(format!("{}{path}", app.address)).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.expect("sent")
}

#[tokio::test]
async fn request_and_business_metrics_move_when_things_happen() {
    let app = spawn_app().await;
    let before = metrics(&app).await;

    assert_eq!(app.get_menus().await.status(), 200);
    let email = format!("m-{}@example.com", uuid::Uuid::new_v4().simple());
    let password = "correct horse battery staple";
    let user: Value = post(
        &app,
        "/auth/signup",
        None,
        None,
        json!({"email": email, "password": password, "name": "M"}),
    )
    .await
    .json()
    .await
    .expect("user");
    let id = user["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        post(
            &app,
            "/auth/login",
            None,
            None,
            json!({"email": email, "password": "wrong!"})
        )
        .await
        .status(),
        401
    );
    let pair: Value = post(
        &app,
        "/auth/login",
        None,
        None,
        json!({"email": email, "password": password}),
    )
    .await
    .json()
    .await
    .expect("pair");
    let token = pair["accessToken"].as_str().unwrap_or_default().to_owned();
    let charge = json!({"amount": 10_000});
    let path = format!("/users/{id}/points/charge");
    assert_eq!(
        post(&app, &path, Some(&token), Some("c1"), charge.clone())
            .await
            .status(),
        200
    );
    assert_eq!(post(&app, &path, Some(&token), Some("c1"), charge).await.status(), 200);
    let order = json!({"items": [{"menuId": "0192f0a0-0000-7000-8000-000000000001", "quantity": 1}]});
    assert_eq!(
        post(&app, "/orders", Some(&token), Some("o1"), order).await.status(),
        201
    );

    let after = metrics(&app).await;
    let grew = |name: &str, labels: &[&str], by: f64| {
        let delta = sample(&after, name, labels) - sample(&before, name, labels);
        assert!(
            delta >= by,
            "{name}{labels:?} grew by {delta}, expected at least {by}\n{after}"
        );
    };
    grew(
        "http_requests_total",
        &["route=\"/menus\"", "status=\"200\"", "method=\"GET\""],
        1.0,
    );
    grew("http_requests_total", &["route=\"/users/{userId}/points/charge\""], 2.0);
    grew("http_request_duration_seconds_count", &["route=\"/orders\""], 1.0);
    grew("coffee_login_failures_total", &[], 1.0);
    grew("coffee_charges_total", &[], 1.0);
    grew("coffee_points_charged_total", &[], 10_000.0);
    grew("coffee_orders_placed_total", &[], 1.0);
    grew("coffee_idempotent_replays_total", &["endpoint=\"points.charge\""], 1.0);
    assert!(!after.contains(&id), "raw paths never become labels");
}

#[tokio::test]
async fn pool_and_outbox_figures_are_exported_and_follow_an_undeliverable_event() {
    let app = spawn_app().await;
    let email = format!("g-{}@example.com", uuid::Uuid::new_v4().simple());
    let password = "correct horse battery staple";
    let user: Value = post(
        &app,
        "/auth/signup",
        None,
        None,
        json!({"email": email, "password": password, "name": "G"}),
    )
    .await
    .json()
    .await
    .expect("user");
    let pair: Value = post(
        &app,
        "/auth/login",
        None,
        None,
        json!({"email": email, "password": password}),
    )
    .await
    .json()
    .await
    .expect("pair");
    let token = pair["accessToken"].as_str().unwrap_or_default().to_owned();
    let charge = format!("/users/{}/points/charge", user["id"].as_str().unwrap_or_default());
    assert_eq!(
        post(&app, &charge, Some(&token), Some("c"), json!({"amount": 10_000}))
            .await
            .status(),
        200
    );
    let order = json!({"items": [{"menuId": "0192f0a0-0000-7000-8000-000000000001", "quantity": 1}]});
    assert_eq!(
        post(&app, "/orders", Some(&token), Some("o"), order).await.status(),
        201
    );

    // The collector is unreachable, so the event stays pending and is retried.
    // Sampling runs every 5 seconds; several apps share this process's
    // recorder, so poll until this app's sample shows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let text = metrics(&app).await;
        let pool = sample(&text, "coffee_pool_connections_max", &["pool=\"postgres\""]);
        let pending = sample(&text, "coffee_outbox_pending", &[]);
        let retried = sample(&text, "coffee_outbox_retried_total", &[]);
        let dead_present = text.lines().any(|l| l.starts_with("coffee_outbox_dead "));
        if pool >= 1.0 && pending >= 1.0 && retried >= 1.0 && dead_present {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "outbox figures did not move:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The value of `label` in one sample line, if the line has it.
fn label_value<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    let start = line.find(&format!("{label}=\""))? + label.len() + 2;
    line[start..].split('"').next()
}

#[tokio::test]
async fn invented_methods_and_paths_never_become_labels() {
    let app = spawn_app().await;
    let invented = format!("BREW{}", uuid::Uuid::new_v4().simple().to_string().to_uppercase());
    for method in [invented.as_str(), "get", "PROPFIND"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        for path in [
            "/menus",
            "/orders/0192f0a0-0000-7000-8000-000000000001",
            "/no/such/path?a=b",
        ] {
            let response = app
                .client
                .request(method.clone(), format!("{}{path}", app.address))
                .header("x-anything", "value")
                .send()
                .await
                .expect("sent");
            assert!(
                response.status().is_client_error(),
                "{method} {path}: {}",
                response.status()
            );
        }
    }

    let text = metrics(&app).await;
    assert!(!text.contains(&invented), "an invented method became a label");
    let methods = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "OTHER",
    ];
    let routes: Vec<&str> = coffee_http::app::API_ROUTES
        .iter()
        .map(|(path, _)| *path)
        .chain(["/openapi.json", "/docs", "/docs/{_:.*}"])
        .chain(["unmatched"])
        .collect();
    let mut others = 0;
    for line in text.lines().filter(|l| l.starts_with("http_request")) {
        let method = label_value(line, "method").expect("a method label");
        let route = label_value(line, "route").expect("a route label");
        let status = label_value(line, "status").expect("a status label");
        assert!(methods.contains(&method), "method {method:?} in {line}");
        assert!(routes.contains(&route), "route {route:?} in {line}");
        assert!(status.parse::<u16>().is_ok(), "status {status:?} in {line}");
        others += usize::from(method == "OTHER");
    }
    assert!(others > 0, "the invented methods are counted as OTHER:\n{text}");
}
