//! The HTTP foundation, through the real router with mocked ports: problem+json
//! for every failure, request ids, health, and `GET /menus`.

mod common;

use actix_web::http::{StatusCode, header};
use actix_web::{App, HttpResponse, test, web};
use coffee_domain::{Menu, MenuId, MenuName, Points};
use coffee_http::extract::ApiJson;
use coffee_http::{AppState, build_app};
use coffee_ports::InfraError;
use coffee_ports::menu::MockMenuRepository;
use common::Fakes;
use serde_json::Value;

fn menu(n: u128, name: &str, price: i64) -> Menu {
    Menu {
        id: MenuId::from_uuid(uuid::Uuid::from_u128(n)),
        name: MenuName::parse(name).expect("name"),
        price: Points::new(price).expect("price"),
    }
}

fn state(menus: MockMenuRepository, database_up: bool) -> web::Data<AppState> {
    let mut fakes = Fakes::new();
    fakes.menus = menus;
    fakes.database_up = database_up;
    fakes.state()
}

fn no_menus() -> MockMenuRepository {
    MockMenuRepository::new()
}

async fn problem_of(response: actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>) -> Value {
    assert_eq!(
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes().to_vec()),
        Some(b"application/problem+json".to_vec()),
        "status {}",
        response.status()
    );
    let body = test::read_body(response).await;
    serde_json::from_slice(&body).expect("problem body is JSON")
}

#[actix_web::test]
async fn menus_are_listed_with_id_name_and_price() {
    let mut repo = MockMenuRepository::new();
    repo.expect_in_memory().return_const(None);
    repo.expect_list()
        .return_once(|| Ok(vec![menu(1, "Americano", 4000), menu(2, "Latte", 4500)].into()));
    let app = test::init_service(build_app(state(repo, true))).await;

    let response = test::call_service(&app, test::TestRequest::get().uri("/menus").to_request()).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(
        body,
        serde_json::json!([
            {"id": "00000000-0000-0000-0000-000000000001", "name": "Americano", "price": 4000},
            {"id": "00000000-0000-0000-0000-000000000002", "name": "Latte", "price": 4500},
        ])
    );
}

#[actix_web::test]
async fn menus_answer_503_when_the_database_is_down() {
    let mut repo = MockMenuRepository::new();
    repo.expect_in_memory().return_const(None);
    repo.expect_list()
        .return_once(|| Err(InfraError::unavailable("database", anyhow::anyhow!("refused"))));
    let app = test::init_service(build_app(state(repo, true))).await;

    let response = test::call_service(&app, test::TestRequest::get().uri("/menus").to_request()).await;

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem_of(response).await["code"], "DEPENDENCY_UNAVAILABLE");
}

#[actix_web::test]
async fn an_unexpected_failure_is_an_opaque_500() {
    let mut repo = MockMenuRepository::new();
    repo.expect_in_memory().return_const(None);
    repo.expect_list().return_once(|| {
        Err(InfraError::Unexpected(anyhow::anyhow!(
            "relation \"menus\" does not exist"
        )))
    });
    let app = test::init_service(build_app(state(repo, true))).await;

    let response = test::call_service(&app, test::TestRequest::get().uri("/menus").to_request()).await;

    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let problem = problem_of(response).await;
    assert_eq!(problem["code"], "INTERNAL");
    assert!(
        !problem.to_string().contains("relation"),
        "internal detail leaked: {problem}"
    );
}

#[actix_web::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = test::init_service(build_app(state(no_menus(), true))).await;

    let response = test::call_service(&app, test::TestRequest::get().uri("/nope").to_request()).await;

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let problem = problem_of(response).await;
    assert_eq!(problem["code"], "NOT_FOUND");
    assert_eq!(problem["status"], 404);
}

#[actix_web::test]
async fn a_wrong_method_is_a_405_problem_with_allow() {
    let app = test::init_service(build_app(state(no_menus(), true))).await;

    let response = test::call_service(&app, test::TestRequest::delete().uri("/menus").to_request()).await;

    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response.headers().get(header::ALLOW).map(|v| v.as_bytes().to_vec()),
        Some(b"GET".to_vec())
    );
    assert_eq!(problem_of(response).await["code"], "METHOD_NOT_ALLOWED");
}

#[actix_web::test]
async fn a_body_over_16_kib_is_a_413_problem_on_any_route() {
    let app = test::init_service(build_app(state(no_menus(), true))).await;

    let request = test::TestRequest::post()
        .uri("/menus")
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload(vec![b' '; 16 * 1024 + 1])
        .to_request();
    let response = test::call_service(&app, request).await;

    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem_of(response).await["code"], "PAYLOAD_TOO_LARGE");
}

#[actix_web::test]
async fn the_request_id_is_echoed_or_generated() {
    let app = test::init_service(build_app(state(no_menus(), true))).await;

    let echoed = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/health/live")
            .insert_header(("x-request-id", "abc-123"))
            .to_request(),
    )
    .await;
    let generated = test::call_service(&app, test::TestRequest::get().uri("/nope").to_request()).await;
    let junk = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/health/live")
            .insert_header(("x-request-id", "a b"))
            .to_request(),
    )
    .await;

    assert_eq!(
        echoed.headers().get("x-request-id").map(|v| v.as_bytes().to_vec()),
        Some(b"abc-123".to_vec())
    );
    let id = generated
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "generated id {id:?}");
    let replaced = junk
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        uuid::Uuid::parse_str(replaced).is_ok(),
        "a request id with a space is replaced, got {replaced:?}"
    );
}

#[actix_web::test]
async fn ready_is_200_when_every_dependency_is_up() {
    let app = test::init_service(build_app(state(no_menus(), true))).await;

    let response = test::call_service(&app, test::TestRequest::get().uri("/health/ready").to_request()).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["dependencies"]["database"], "up");
    assert_eq!(body["dependencies"]["cache"], "up");
}

/// A shared dependency being down does not take the instance out of the
/// balancer (every instance would leave at once): ready stays `200` and
/// names what is down.
#[actix_web::test]
async fn ready_stays_200_naming_the_dependency_that_is_down() {
    let app = test::init_service(build_app(state(no_menus(), false))).await;

    let response = test::call_service(&app, test::TestRequest::get().uri("/health/ready").to_request()).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["dependencies"]["database"], "down");
    assert_eq!(body["dependencies"]["cache"], "up");
}

/// A JSON route like the ones later features add, to exercise [`ApiJson`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Charge {
    amount: u32,
}

async fn echo_amount(body: ApiJson<Charge>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "amount": body.0.amount }))
}

async fn json_route() -> impl actix_web::dev::Service<
    actix_http::Request,
    Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
    Error = actix_web::Error,
> {
    test::init_service(
        App::new().route("/charge", web::post().to(echo_amount)).wrap(
            actix_web::middleware::ErrorHandlers::new().default_handler(coffee_http::middleware::problem_fallback),
        ),
    )
    .await
}

fn post_json(body: &'static str, content_type: &'static str) -> actix_http::Request {
    test::TestRequest::post()
        .uri("/charge")
        .insert_header((header::CONTENT_TYPE, content_type))
        .set_payload(body)
        .to_request()
}

#[actix_web::test]
async fn json_bodies_are_checked_for_syntax_shape_and_content_type() {
    let app = json_route().await;

    let ok = test::call_service(&app, post_json(r#"{"amount": 5}"#, "application/json; charset=utf-8")).await;
    assert_eq!(ok.status(), StatusCode::OK);

    let cases = [
        (r#"{"amount": "#, "application/json", 400, "MALFORMED_REQUEST"),
        (r#"{"amount": 1.5}"#, "application/json", 400, "VALIDATION_FAILED"),
        (
            r#"{"amount": 5, "extra": true}"#,
            "application/json",
            400,
            "VALIDATION_FAILED",
        ),
        (r#"{}"#, "application/json", 400, "VALIDATION_FAILED"),
        (r#"{"amount": 5}"#, "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ];
    for (body, content_type, status, code) in cases {
        let response = test::call_service(&app, post_json(body, content_type)).await;
        assert_eq!(response.status().as_u16(), status, "{body} as {content_type}");
        assert_eq!(problem_of(response).await["code"], code, "{body} as {content_type}");
    }
}

#[actix_web::test]
async fn a_chunked_body_over_the_limit_is_refused_while_reading() {
    let app = json_route().await;
    let big = format!("{{\"amount\": 5, \"pad\": \"{}\"}}", "x".repeat(17 * 1024));
    let request = test::TestRequest::post()
        .uri("/charge")
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload(big)
        .to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}
