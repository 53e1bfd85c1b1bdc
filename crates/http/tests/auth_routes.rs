//! `/auth/*` through the real router and use cases, with faked ports: the
//! HTTP contract of each outcome (status, code, headers).

mod common;

use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::test;
use coffee_domain::{SessionId, TokenClaims, TokenId, TokenKind, UserId};
use coffee_http::build_app;
use coffee_ports::{AccessCheck, HashSlot, InfraError, LoginAttempt, TokenError};
use common::Fakes;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

fn post(uri: &str, body: Value) -> actix_http::Request {
    test::TestRequest::post().uri(uri).set_json(body).to_request()
}

/// A codec that accepts the token "good" as an access token.
fn accepting_codec(fakes: &mut Fakes) {
    fakes.codec.expect_decode().returning(|token, kind| {
        if token != "good" {
            return Err(TokenError::Invalid);
        }
        Ok(TokenClaims {
            user_id: UserId::from_uuid(Uuid::from_u128(1)),
            session_id: SessionId::from_uuid(Uuid::from_u128(2)),
            token_id: TokenId::from_uuid(Uuid::from_u128(3)),
            kind,
            issued_at: OffsetDateTime::now_utc(),
            expires_at: OffsetDateTime::now_utc() + Duration::from_secs(600),
        })
    });
}

#[actix_web::test]
async fn signup_lists_every_invalid_field_and_stores_nothing() {
    let mut fakes = Fakes::new();
    fakes.users.expect_create().never();
    fakes.hasher.expect_hash().never();
    let app = test::init_service(build_app(fakes.state())).await;

    let response = test::call_service(
        &app,
        post(
            "/auth/signup",
            json!({"email": "nope", "password": "password1", "name": " "}),
        ),
    )
    .await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["code"], "VALIDATION_FAILED");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["email", "password", "name"]);
}

#[actix_web::test]
async fn a_throttled_login_is_429_with_retry_after() {
    let mut fakes = Fakes::new();
    fakes.throttle.expect_attempt().returning(|_| {
        Ok(LoginAttempt::Blocked {
            retry_after: Duration::from_secs(840),
        })
    });
    // The account is looked up and a hashing place taken before the attempt
    // is counted.
    fakes.users.expect_find_credentials().returning(|_| Ok(None));
    fakes.hasher.expect_reserve().returning(|| Ok(HashSlot::unbounded()));
    let app = test::init_service(build_app(fakes.state())).await;

    let response = test::call_service(
        &app,
        post(
            "/auth/login",
            json!({"email": "kim@example.com", "password": "whatever1"}),
        ),
    )
    .await;

    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.as_bytes().to_vec()),
        Some(b"840".to_vec())
    );
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["code"], "TOO_MANY_ATTEMPTS");
}

#[actix_web::test]
async fn a_full_hashing_queue_sheds_logins_and_signups_with_503_and_retry_after() {
    let mut fakes = Fakes::new();
    fakes.users.expect_find_credentials().returning(|_| Ok(None));
    fakes
        .hasher
        .expect_reserve()
        .returning(|| Err(InfraError::unavailable("password hasher", anyhow::anyhow!("full"))));
    fakes.hasher.expect_hash().never();
    fakes.hasher.expect_verify_dummy().never();
    fakes.throttle.expect_attempt().never();
    fakes.users.expect_create().never();
    let app = test::init_service(build_app(fakes.state())).await;

    for (uri, body) in [
        (
            "/auth/login",
            json!({"email": "kim@example.com", "password": "whatever1"}),
        ),
        (
            "/auth/signup",
            json!({"email": "kim@example.com", "password": "a long unusual passphrase", "name": "Kim"}),
        ),
    ] {
        let response = test::call_service(&app, post(uri, body)).await;

        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes().to_vec()),
            Some(b"1".to_vec()),
            "{uri}"
        );
        let body: Value = test::read_body_json(response).await;
        assert_eq!(body["code"], "DEPENDENCY_UNAVAILABLE", "{uri}");
    }
}

#[actix_web::test]
async fn unknown_email_and_wrong_password_get_the_identical_body() {
    let mut fakes = Fakes::new();
    fakes.throttle.expect_attempt().returning(|_| Ok(LoginAttempt::Allowed));
    fakes.users.expect_find_credentials().returning(|email| {
        if email.as_str() == "kim@example.com" {
            Ok(Some(coffee_ports::Credentials {
                user_id: UserId::from_uuid(Uuid::from_u128(1)),
                password_hash: coffee_domain::PasswordHash::new("h".to_owned()),
            }))
        } else {
            Ok(None)
        }
    });
    fakes.hasher.expect_reserve().returning(|| Ok(HashSlot::unbounded()));
    fakes.hasher.expect_verify().returning(|_, _, _| Ok(false));
    fakes.hasher.expect_verify_dummy().returning(|_, _| Ok(()));
    let app = test::init_service(build_app(fakes.state())).await;

    let wrong = test::call_service(
        &app,
        post("/auth/login", json!({"email": "kim@example.com", "password": "x"})),
    )
    .await;
    let unknown = test::call_service(
        &app,
        post("/auth/login", json!({"email": "lee@example.com", "password": "x"})),
    )
    .await;

    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().contains_key(header::WWW_AUTHENTICATE));
    let wrong: Value = test::read_body_json(wrong).await;
    let unknown: Value = test::read_body_json(unknown).await;
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["code"], "INVALID_CREDENTIALS");
}

#[actix_web::test]
async fn protected_routes_need_a_bearer_token() {
    let app = test::init_service(build_app(Fakes::new().state())).await;

    let response = test::call_service(&app, test::TestRequest::get().uri("/auth/me").to_request()).await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.as_bytes().to_vec()),
        Some(b"Bearer".to_vec())
    );
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["code"], "UNAUTHORIZED");
}

#[actix_web::test]
async fn an_expired_token_says_so() {
    let mut fakes = Fakes::new();
    fakes.codec.expect_decode().returning(|_, _| Err(TokenError::Expired));
    let app = test::init_service(build_app(fakes.state())).await;

    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/auth/me")
            .insert_header((header::AUTHORIZATION, "Bearer old"))
            .to_request(),
    )
    .await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["code"], "TOKEN_EXPIRED");
}

#[actix_web::test]
async fn an_unreachable_session_store_fails_closed_with_503() {
    let mut fakes = Fakes::new();
    accepting_codec(&mut fakes);
    fakes
        .sessions
        .expect_check_access()
        .returning(|_, _, _| Err(InfraError::unavailable("cache", anyhow::anyhow!("refused"))));
    let app = test::init_service(build_app(fakes.state())).await;

    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/auth/me")
            .insert_header((header::AUTHORIZATION, "Bearer good"))
            .to_request(),
    )
    .await;

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["code"], "DEPENDENCY_UNAVAILABLE");
}

#[actix_web::test]
async fn a_token_whose_session_is_another_users_is_401_like_a_forged_one() {
    let mut fakes = Fakes::new();
    accepting_codec(&mut fakes);
    fakes
        .sessions
        .expect_check_access()
        .returning(|_, _, _| Ok(AccessCheck::WrongUser));
    let app = test::init_service(build_app(fakes.state())).await;

    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/auth/me")
            .insert_header((header::AUTHORIZATION, "Bearer good"))
            .to_request(),
    )
    .await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["code"], "UNAUTHORIZED");
}

#[actix_web::test]
async fn logout_takes_no_body_or_a_refresh_token_and_answers_204() {
    let mut fakes = Fakes::new();
    accepting_codec(&mut fakes);
    fakes
        .sessions
        .expect_check_access()
        .returning(|_, _, _| Ok(AccessCheck::Granted));
    fakes
        .sessions
        .expect_revoke_access_token()
        .times(2)
        .returning(|_, _| Ok(()));
    fakes.sessions.expect_end().times(2).returning(|_, _| Ok(()));
    let app = test::init_service(build_app(fakes.state())).await;

    let bare = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/auth/logout")
            .insert_header((header::AUTHORIZATION, "Bearer good"))
            .to_request(),
    )
    .await;
    let with_body = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/auth/logout")
            .insert_header((header::AUTHORIZATION, "Bearer good"))
            .set_json(json!({"refreshToken": "whatever"}))
            .to_request(),
    )
    .await;

    assert_eq!(bare.status(), StatusCode::NO_CONTENT);
    assert_eq!(with_body.status(), StatusCode::NO_CONTENT);
}

#[actix_web::test]
async fn a_reused_refresh_token_is_refresh_token_reused() {
    let mut fakes = Fakes::new();
    fakes.codec.expect_decode().returning(|_, kind| {
        assert_eq!(kind, TokenKind::Refresh);
        Ok(TokenClaims {
            user_id: UserId::from_uuid(Uuid::from_u128(1)),
            session_id: SessionId::from_uuid(Uuid::from_u128(2)),
            token_id: TokenId::from_uuid(Uuid::from_u128(3)),
            kind,
            issued_at: OffsetDateTime::now_utc(),
            expires_at: OffsetDateTime::now_utc(),
        })
    });
    fakes
        .sessions
        .expect_rotate()
        .returning(|_, _, _, _, _| Ok(coffee_ports::Rotation::Reused));
    let app = test::init_service(build_app(fakes.state())).await;

    let response = test::call_service(&app, post("/auth/refresh", json!({"refreshToken": "old"}))).await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["code"], "REFRESH_TOKEN_REUSED");
}
