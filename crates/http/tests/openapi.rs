//! The OpenAPI document against the router: the same routes, the same
//! methods, and both served.

mod common;

use std::collections::BTreeSet;

use actix_web::http::{StatusCode, header};
use actix_web::test;
use coffee_http::app::API_ROUTES;
use coffee_http::build_app;
use common::Fakes;
use serde_json::Value;

fn documented() -> BTreeSet<(String, String)> {
    let doc = serde_json::to_value(coffee_http::api_document()).expect("serialisable");
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                ops.insert((path.clone(), method.to_owned()));
            }
        }
    }
    ops
}

fn served() -> BTreeSet<(String, String)> {
    API_ROUTES
        .iter()
        .flat_map(|(path, methods)| methods.iter().map(move |m| ((*path).to_owned(), (*m).to_owned())))
        .collect()
}

#[actix_web::test]
async fn every_served_route_is_documented_and_vice_versa() {
    assert_eq!(served(), documented());
}

#[actix_web::test]
async fn the_router_serves_exactly_the_documented_methods_on_each_path() {
    let app = test::init_service(build_app(Fakes::new().state())).await;
    let paths: BTreeSet<String> = documented().into_iter().map(|(p, _)| p).collect();
    for path in paths {
        let concrete = path
            .replace("{userId}", "00000000-0000-0000-0000-000000000001")
            .replace("{orderId}", "00000000-0000-0000-0000-000000000002");
        // A method no route uses: the resource answers 405 listing what it serves.
        let response = test::call_service(
            &app,
            test::TestRequest::with_uri(&concrete)
                .method(actix_web::http::Method::PATCH)
                .to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{path} is routed");
        let allow: BTreeSet<String> = response
            .headers()
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(',')
            .map(|m| m.trim().to_ascii_lowercase())
            .collect();
        let expected: BTreeSet<String> = documented()
            .into_iter()
            .filter(|(p, _)| *p == path)
            .map(|(_, m)| m)
            .collect();
        assert_eq!(allow, expected, "{path}");
    }
}

#[actix_web::test]
async fn the_document_is_openapi_3_1_with_bearer_auth_and_problem_responses() {
    let app = test::init_service(build_app(Fakes::new().state())).await;

    let response = test::call_service(&app, test::TestRequest::get().uri("/openapi.json").to_request()).await;

    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = test::read_body_json(response).await;
    assert!(
        doc["openapi"].as_str().unwrap_or_default().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let charge = &doc["paths"]["/users/{userId}/points/charge"]["post"];
    assert!(
        charge["parameters"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == "Idempotency-Key"))
    );
    assert!(charge["responses"]["422"]["content"]["application/problem+json"].is_object());
    let amount = &doc["components"]["schemas"]["ChargeRequest"]["properties"]["amount"];
    assert_eq!(
        (amount["minimum"].as_i64(), amount["maximum"].as_i64()),
        (Some(1), Some(1_000_000))
    );
}

#[actix_web::test]
async fn the_docs_page_is_served_without_the_internet() {
    let app = test::init_service(build_app(Fakes::new().state())).await;

    let redirect = test::call_service(&app, test::TestRequest::get().uri("/docs").to_request()).await;
    assert_eq!(
        redirect.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()),
        Some("/docs/")
    );
    let page = test::call_service(&app, test::TestRequest::get().uri("/docs/").to_request()).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = String::from_utf8(test::read_body(page).await.to_vec()).expect("utf-8");
    assert!(html.contains("swagger-ui"), "{html}");
    let bundle = test::call_service(
        &app,
        test::TestRequest::get().uri("/docs/swagger-ui-bundle.js").to_request(),
    )
    .await;
    assert_eq!(
        bundle.status(),
        StatusCode::OK,
        "the UI's JavaScript is bundled, not fetched from a CDN"
    );
}

#[actix_web::test]
async fn every_operation_has_a_short_human_summary_and_a_description() {
    const METHOD_WORDS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    let doc = serde_json::to_value(coffee_http::api_document()).expect("serialisable");
    let mut problems = Vec::new();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(operation) = item.get(method) else { continue };
            checked += 1;
            let at = format!("{} {path}", method.to_ascii_uppercase());
            let summary = operation["summary"].as_str().unwrap_or_default();
            if summary.is_empty() || summary.chars().count() > 40 {
                problems.push(format!("{at}: summary {summary:?} is empty or over 40 characters"));
            }
            if !summary.chars().next().is_some_and(char::is_uppercase) {
                problems.push(format!(
                    "{at}: summary {summary:?} does not start with an uppercase letter"
                ));
            }
            if summary.contains('`') || summary.contains('/') {
                problems.push(format!("{at}: summary {summary:?} has a backtick or a path"));
            }
            if summary
                .split(|c: char| !c.is_ascii_alphabetic())
                .any(|word| METHOD_WORDS.contains(&word))
            {
                problems.push(format!("{at}: summary {summary:?} names an HTTP method"));
            }
            if operation["description"].as_str().unwrap_or_default().trim().is_empty() {
                problems.push(format!("{at}: no description"));
            }
        }
    }
    assert!(checked > 0, "the document has operations");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every `$ref` in `value` (a JSON pointer into the document).
fn refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                found.push(target.clone());
            }
            map.values().for_each(|v| refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[actix_web::test]
async fn shared_problem_responses_are_declared_once_and_referred_to() {
    let doc = serde_json::to_value(coffee_http::api_document()).expect("serialisable");
    let shared = doc["components"]["responses"]
        .as_object()
        .expect("components/responses");
    for name in [
        "BadRequest",
        "Unauthorized",
        "PayloadTooLarge",
        "UnsupportedMediaType",
        "Internal",
    ] {
        assert!(shared.contains_key(name), "{name} is a shared response");
    }
    let shared_descriptions: BTreeSet<&str> = shared.values().filter_map(|r| r["description"].as_str()).collect();

    let mut found = Vec::new();
    refs(&doc, &mut found);
    for target in &found {
        let pointer = target.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "{target} resolves");
    }
    let mut pasted = Vec::new();
    let mut referred = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                if response.get("$ref").is_some() {
                    referred += 1;
                } else if response["description"]
                    .as_str()
                    .is_some_and(|d| shared_descriptions.contains(d))
                {
                    pasted.push(format!("{method} {path} {status}"));
                }
            }
        }
    }
    assert!(pasted.is_empty(), "pasted copies of shared responses: {pasted:?}");
    assert!(referred >= 40, "operations refer to the shared responses ({referred})");
}

#[actix_web::test]
async fn the_documented_problem_codes_are_problem_codes_list() {
    let doc = serde_json::to_value(coffee_http::api_document()).expect("serialisable");
    let documented: Vec<&str> = doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
        .as_array()
        .expect("an enum of codes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let codes: Vec<&str> = coffee_http::ProblemCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(documented, codes);
}

#[actix_web::test]
async fn dtos_are_named_alike_requests_and_responses() {
    let doc = serde_json::to_value(coffee_http::api_document()).expect("serialisable");
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let misnamed: Vec<&String> = schemas
        .keys()
        .filter(|name| !["Problem", "FieldError"].contains(&name.as_str()))
        .filter(|name| !name.ends_with("Request") && !name.ends_with("Response"))
        .collect();
    assert!(
        misnamed.is_empty(),
        "schemas named neither …Request nor …Response: {misnamed:?}"
    );

    let mut bodies = Vec::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for operation in item.as_object().expect("path item").values() {
            refs(&operation["requestBody"], &mut bodies);
        }
    }
    assert!(!bodies.is_empty(), "some operations take a body");
    for body in bodies {
        assert!(body.ends_with("Request"), "request body {body} is not named …Request");
    }
}
