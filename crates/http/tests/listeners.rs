//! What each listener serves (`ADMIN_BIND_ADDR`) and cross-origin calls
//! from the browser front-ends of `CORS_ALLOWED_ORIGINS`.

mod common;

use actix_web::http::{Method, StatusCode, header};
use actix_web::test;
use coffee_http::{AppOptions, Listener, build_app_with, build_app_without_cors};
use common::Fakes;

const FRONT_END: &str = "https://shop.example.com";

fn options(listener: Listener, origins: &[&str]) -> AppOptions {
    AppOptions {
        listener,
        cors_allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
    }
}

async fn status_of(options: AppOptions, path: &str) -> StatusCode {
    let app = test::init_service(build_app_with(Fakes::new().state(), options)).await;
    test::call_service(&app, test::TestRequest::get().uri(path).to_request())
        .await
        .status()
}

#[actix_web::test]
async fn with_an_admin_listener_metrics_leave_the_public_one() {
    assert_eq!(status_of(options(Listener::All, &[]), "/metrics").await, StatusCode::OK);
    assert_eq!(
        status_of(options(Listener::Public, &[]), "/metrics").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(options(Listener::Public, &[]), "/health/live").await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(options(Listener::Public, &[]), "/openapi.json").await,
        StatusCode::OK
    );
}

#[actix_web::test]
async fn the_admin_listener_serves_metrics_and_health_only() {
    for path in ["/metrics", "/health/live"] {
        assert_eq!(
            status_of(options(Listener::Admin, &[]), path).await,
            StatusCode::OK,
            "{path}"
        );
    }
    for path in ["/menus", "/auth/me", "/openapi.json", "/docs/"] {
        assert_eq!(
            status_of(options(Listener::Admin, &[]), path).await,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

fn preflight(origin: &str) -> actix_http::Request {
    test::TestRequest::default()
        .method(Method::OPTIONS)
        .uri("/orders")
        .insert_header((header::ORIGIN, origin))
        .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, "POST"))
        .insert_header((
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, content-type, idempotency-key",
        ))
        .to_request()
}

fn header_of(
    response: &actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
    name: header::HeaderName,
) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[actix_web::test]
async fn an_allowed_origin_gets_a_correct_preflight_and_readable_answers() {
    let app = test::init_service(build_app_with(
        Fakes::new().state(),
        options(Listener::Public, &[FRONT_END, "http://localhost:5173"]),
    ))
    .await;

    let response = test::call_service(&app, preflight(FRONT_END)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_of(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
        Some(FRONT_END)
    );
    let methods = header_of(&response, header::ACCESS_CONTROL_ALLOW_METHODS).unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
    let headers = header_of(&response, header::ACCESS_CONTROL_ALLOW_HEADERS)
        .unwrap_or_default()
        .to_ascii_lowercase();
    for needed in ["authorization", "content-type", "idempotency-key"] {
        assert!(headers.contains(needed), "{headers}");
    }
    assert!(header_of(&response, header::ACCESS_CONTROL_MAX_AGE).is_some());

    // A real request, answered with a problem (no token): still readable.
    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/auth/me")
            .insert_header((header::ORIGIN, FRONT_END))
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header_of(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
        Some(FRONT_END)
    );
    let exposed = header_of(&response, header::ACCESS_CONTROL_EXPOSE_HEADERS)
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("x-request-id") && exposed.contains("idempotent-replayed"),
        "{exposed}"
    );
    assert!(
        header_of(&response, header::VARY).is_some_and(|v| v.to_ascii_lowercase().contains("origin")),
        "caches keep one answer per origin"
    );
}

#[actix_web::test]
async fn other_origins_get_no_cors_headers_and_no_origin_changes_nothing() {
    let app = test::init_service(build_app_with(
        Fakes::new().state(),
        options(Listener::Public, &[FRONT_END]),
    ))
    .await;
    let response = test::call_service(&app, preflight("https://evil.example.net")).await;
    assert!(header_of(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    assert!(
        response.status().is_client_error(),
        "a refused preflight: {}",
        response.status()
    );
    assert_eq!(
        header_of(&response, header::CONTENT_TYPE).as_deref(),
        Some("application/problem+json"),
        "refusals are problems too"
    );

    let response = test::call_service(&app, test::TestRequest::get().uri("/health/live").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header_of(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[actix_web::test]
async fn without_allowed_origins_there_are_no_cors_headers() {
    let app = test::init_service(build_app_with(Fakes::new().state(), options(Listener::All, &[]))).await;
    let response = test::call_service(&app, preflight(FRONT_END)).await;
    assert!(header_of(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// Status, content type, request id (the client's, or "generated") and
/// whether CORS headers came, of one request to `app`.
async fn answer<S, B>(app: &S, request: test::TestRequest) -> (StatusCode, Option<String>, Option<String>, bool)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
{
    let r = test::call_service(app, request.to_request()).await;
    let header = |name: &str| r.headers().get(name).map(|v| v.to_str().unwrap_or_default().to_owned());
    let id = header("x-request-id").map(|id| if id == "trace-me" { id } else { "generated".to_owned() });
    (
        r.status(),
        header("content-type"),
        id,
        r.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
    )
}

/// What `coffee serve` serves without CORS answers as the application with
/// CORS off does: the same statuses, content types and request ids, for
/// routed answers, problems of the routes and of actix itself.
#[actix_web::test]
async fn without_cors_the_served_application_answers_as_the_one_with_cors_off() {
    let with = test::init_service(build_app_with(Fakes::new().state(), options(Listener::All, &[]))).await;
    let without = test::init_service(build_app_without_cors(Fakes::new().state(), Listener::All)).await;
    let requests = || {
        [
            test::TestRequest::get().uri("/health/live"),
            test::TestRequest::get().uri("/no-such-path"),
            test::TestRequest::delete().uri("/menus"),
            test::TestRequest::get()
                .uri("/health/live")
                .insert_header(("x-request-id", "trace-me")),
            test::TestRequest::post()
                .uri("/auth/login")
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .set_payload("{not json"),
        ]
    };
    for (a, b) in requests().into_iter().zip(requests()) {
        let (a, b) = (answer(&with, a).await, answer(&without, b).await);
        assert_eq!(a, b);
        assert!(a.2.is_some(), "every answer has a request id");
    }
}
