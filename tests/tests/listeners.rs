//! The binary's listeners: `ADMIN_BIND_ADDR` takes `/metrics` off the public
//! address and serves it (with `/health/*`) on its own; `CORS_ALLOWED_ORIGINS`
//! answers a browser's preflight.

use coffee_e2e::{Api, coffee_env, free_port, override_env, start_coffee};
use coffee_test_support::{TestDatabase, unique_key_prefix};

#[tokio::test]
async fn metrics_and_health_on_the_admin_address_and_cors_on_the_public_one() {
    let db = TestDatabase::create().await;
    let (port, admin_port) = (free_port(), free_port());
    let mut env = coffee_env(port, db.url(), &unique_key_prefix(), "http://127.0.0.1:1");
    override_env(
        &mut env,
        [
            ("ADMIN_BIND_ADDR", format!("127.0.0.1:{admin_port}")),
            ("CORS_ALLOWED_ORIGINS", "https://shop.example.com".to_owned()),
        ],
    );
    let server = start_coffee(port, &env).await.expect("starts");
    let public = Api::new(&server.base_url);
    let admin = Api::new(&format!("http://127.0.0.1:{admin_port}"));

    assert_eq!(
        public.get("/metrics", None).await.status,
        404,
        "no totals on the API's address"
    );
    assert_eq!(public.get("/health/ready", None).await.status, 200);
    assert_eq!(public.get("/menus", None).await.status, 200);

    let metrics = admin.client.get(admin.url("/metrics")).send().await.expect("sent");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("text");
    assert!(text.contains("http_requests_total"), "{text}");
    assert_eq!(admin.get("/health/ready", None).await.status, 200);
    assert_eq!(admin.get("/health/live", None).await.status, 200);
    assert_eq!(
        admin.get("/menus", None).await.status,
        404,
        "the admin address serves no API"
    );

    let preflight = public
        .client
        .request(reqwest::Method::OPTIONS, public.url("/orders"))
        .header("Origin", "https://shop.example.com")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type, idempotency-key",
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(preflight.status(), 200);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    let menus = public
        .client
        .get(public.url("/menus"))
        .header("Origin", "https://elsewhere.example.net")
        .send()
        .await
        .expect("sent");
    assert_eq!(menus.status(), 200, "a non-listed origin is still served");
    assert!(menus.headers().get("access-control-allow-origin").is_none());
}
