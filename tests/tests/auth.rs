//! Authentication end to end: two `coffee` instances sharing PostgreSQL and
//! Redis, as behind a load balancer.

use std::time::Duration;

use coffee_e2e::{Api, Cluster, E2E_JWT_SECRET, base64url};
use coffee_test_support::{TcpProxy, TestDatabase, host_port};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";
const AMERICANO: &str = "0192f0a0-0000-7000-8000-000000000001";

fn email() -> String {
    format!("kim-{}@example.com", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn the_whole_life_cycle_holds_across_instances() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    let (a, b) = (cluster.api(0), cluster.api(1));
    let email = email();

    let created = a
        .signup(&format!("  {}  ", email.to_uppercase()), PASSWORD, " Kim ")
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.str("email"), email, "stored trimmed and lower-cased");
    assert_eq!(created.str("name"), "Kim");
    assert_eq!(created.body["point"], 0);
    assert!(created.body.get("password").is_none() && !created.body.to_string().contains("argon2"));

    let login = b.login(&email, PASSWORD).await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    assert_eq!(login.str("tokenType"), "Bearer");
    assert_eq!(login.body["expiresIn"], 900);
    assert_eq!(login.body["refreshExpiresIn"], 1_209_600);
    let (access1, refresh1) = (login.str("accessToken"), login.str("refreshToken"));

    let me = a.me(&access1).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.str("id"), created.str("id"));

    let refreshed = b.refresh(&refresh1).await;
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
    let (access2, refresh2) = (refreshed.str("accessToken"), refreshed.str("refreshToken"));
    assert_ne!(refresh2, refresh1);

    let logout = a.logout(&access2, Some(&refresh2)).await;
    assert_eq!(logout.status, 204, "{:?}", logout.body);

    for api in [&a, &b] {
        for access in [&access1, &access2] {
            let me = api.me(access).await;
            assert_eq!(me.status, 401, "a revoked access token on {}", api.base_url);
            assert!(me.headers.contains_key("www-authenticate"));
        }
        assert_eq!(
            api.refresh(&refresh2).await.status,
            401,
            "a revoked refresh token on {}",
            api.base_url
        );
    }
}

#[tokio::test]
async fn a_refresh_retried_within_the_grace_gets_the_rotated_token_and_keeps_the_session() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    let (a, b) = (cluster.api(0), cluster.api(1));
    let (_, _, refresh1) = a.new_user().await;

    let rotated = a.refresh(&refresh1).await;
    assert_eq!(rotated.status, 200);
    // The client never saw that answer (a 503, a lost connection) and retries.
    let retried = b.refresh(&refresh1).await;
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    assert_eq!(b.me(&retried.str("accessToken")).await.status, 200);
    // Both answers name the same current token: either can rotate next.
    let next = a.refresh(&retried.str("refreshToken")).await;
    assert_eq!(next.status, 200, "{:?}", next.body);
}

#[tokio::test]
async fn replaying_a_rotated_refresh_token_revokes_the_whole_session() {
    let db = TestDatabase::create().await;
    // No retry grace: the replay comes at once.
    let cluster = Cluster::start(2, db.url(), &[("REFRESH_RETRY_GRACE_MS", "0".to_owned())])
        .await
        .expect("cluster");
    let (a, b) = (cluster.api(0), cluster.api(1));
    let (_, access, refresh1) = a.new_user().await;

    let rotated = a.refresh(&refresh1).await;
    assert_eq!(rotated.status, 200);
    let (access2, refresh2) = (rotated.str("accessToken"), rotated.str("refreshToken"));

    let replay = b.refresh(&refresh1).await;
    assert_eq!(replay.status, 401);
    assert_eq!(replay.code(), "REFRESH_TOKEN_REUSED");

    assert_eq!(
        a.me(&access).await.status,
        401,
        "the session's old access token is revoked"
    );
    assert_eq!(b.me(&access2).await.status, 401, "so is its newest access token");
    assert_eq!(a.refresh(&refresh2).await.status, 401, "and its newest refresh token");
}

#[tokio::test]
async fn of_concurrent_refreshes_with_one_token_exactly_one_succeeds() {
    let db = TestDatabase::create().await;
    // Without the retry grace (with it, the others would get the winner's token).
    let cluster = Cluster::start(2, db.url(), &[("REFRESH_RETRY_GRACE_MS", "0".to_owned())])
        .await
        .expect("cluster");
    let (_, _, refresh) = cluster.api(0).new_user().await;

    let attempts: Vec<_> = (0..10)
        .map(|i| {
            let api = cluster.api(i % 2);
            let refresh = refresh.clone();
            tokio::spawn(async move { api.refresh(&refresh).await.status })
        })
        .collect();
    let mut ok = 0;
    for attempt in attempts {
        if attempt.await.expect("joined") == 200 {
            ok += 1;
        }
    }

    assert_eq!(ok, 1);
}

/// Claims like the server's, signed by the test.
fn token(secret: &str, alg: Algorithm, typ: &str, exp_offset: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({
        "iss": "coffee", "aud": "coffee-api", "sub": uuid::Uuid::new_v4(), "jti": uuid::Uuid::new_v4(),
        "sid": uuid::Uuid::new_v4(), "typ": typ, "iat": now, "exp": now + exp_offset,
    });
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).expect("key"),
    )
    .expect("signed")
}

#[tokio::test]
async fn forged_expired_unsigned_and_misused_tokens_are_refused() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(1, db.url(), &[]).await.expect("cluster");
    let api = cluster.api(0);
    let (_, access, refresh) = api.new_user().await;

    let forged = token(
        "some-other-secret-that-is-32-bytes-long!!",
        Algorithm::HS256,
        "access",
        600,
    );
    let expired = token(E2E_JWT_SECRET, Algorithm::HS256, "access", -60);
    let hs512 = token(E2E_JWT_SECRET, Algorithm::HS512, "access", 600);
    let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = access.split('.').nth(1).expect("payload").to_owned();
    let unsigned = format!("{header}.{payload}.");

    for (name, bad, code) in [
        ("forged signature", forged.as_str(), "UNAUTHORIZED"),
        ("expired", expired.as_str(), "TOKEN_EXPIRED"),
        ("HS512", hs512.as_str(), "UNAUTHORIZED"),
        ("alg none", unsigned.as_str(), "UNAUTHORIZED"),
        ("refresh token as access token", refresh.as_str(), "UNAUTHORIZED"),
    ] {
        let me = api.me(bad).await;
        assert_eq!(me.status, 401, "{name}");
        assert_eq!(me.code(), code, "{name}");
    }
    let as_refresh = api.refresh(&access).await;
    assert_eq!(as_refresh.status, 401, "access token as refresh token");
    assert_eq!(api.me(&access).await.status, 200, "the genuine token still works");
}

/// The claims of a token the server issued, checked with the e2e key.
fn claims_of(token: &str) -> Value {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&["coffee"]);
    validation.set_audience(&["coffee-api"]);
    decode::<Value>(
        token,
        &DecodingKey::from_secret(E2E_JWT_SECRET.as_bytes()).expect("key"),
        &validation,
    )
    .expect("a token the server issued")
    .claims
}

/// `token` with its `sub` replaced and signed again with the real key: what
/// anyone holding a leaked key and one live session of their own could mint.
fn resigned_for(token: &str, sub: &str) -> String {
    let mut claims = claims_of(token);
    claims["sub"] = json!(sub);
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(E2E_JWT_SECRET.as_bytes()).expect("key"),
    )
    .expect("signed")
}

#[tokio::test]
async fn a_live_session_does_not_vouch_for_another_user() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    let (a, b) = (cluster.api(0), cluster.api(1));
    let (bob, bob_token) = b.funded_user(10_000).await;
    let (alice, alice_access, alice_refresh) = a.new_user().await;
    let forged_access = resigned_for(&alice_access, &bob);
    let forged_refresh = resigned_for(&alice_refresh, &bob);
    assert_eq!(claims_of(&forged_access)["sid"], claims_of(&alice_access)["sid"]);
    assert_eq!(claims_of(&forged_access)["jti"], claims_of(&alice_access)["jti"]);

    let refused = [
        (
            "balance",
            b.get(&format!("/users/{bob}/points"), Some(&forged_access)).await,
        ),
        (
            "charge",
            b.charge(&forged_access, &bob, Some("forged-charge"), json!({"amount": 1000}))
                .await,
        ),
        (
            "order",
            b.order(
                &forged_access,
                Some("forged-order"),
                json!([{"menuId": AMERICANO, "quantity": 1}]),
            )
            .await,
        ),
        ("me", b.me(&forged_access).await),
        ("refresh", b.refresh(&forged_refresh).await),
    ];
    let statuses: Vec<_> = refused.iter().map(|(name, reply)| (*name, reply.status)).collect();
    assert!(statuses.iter().all(|(_, status)| *status == 401), "{statuses:?}");
    for (name, reply) in refused {
        assert_eq!(reply.code(), "UNAUTHORIZED", "{name}, like a forged token");
        assert!(reply.headers.contains_key("www-authenticate"), "{name}");
    }

    let balance = b.get(&format!("/users/{bob}/points"), Some(&bob_token)).await;
    assert_eq!(balance.body, json!({"userId": bob, "balance": 10_000}));
    assert_eq!(db.count("SELECT count(*) AS n FROM orders").await, 0);
    db.assert_ledger_consistent().await;

    let me = b.me(&alice_access).await;
    assert_eq!(me.status, 200, "Alice's own access token still works: {:?}", me.body);
    assert_eq!(me.str("id"), alice);
    let refreshed = a.refresh(&alice_refresh).await;
    assert_eq!(
        refreshed.status, 200,
        "the forged refresh left Alice's session alone: {:?}",
        refreshed.body
    );
    assert_eq!(a.me(&refreshed.str("accessToken")).await.status, 200);
}

#[tokio::test]
async fn concurrent_signups_with_one_email_give_exactly_one_account() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    let email = email();

    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let api = cluster.api(i % 2);
            let email = email.clone();
            tokio::spawn(async move { api.signup(&email, PASSWORD, "Racer").await })
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in attempts {
        let reply = attempt.await.expect("joined");
        if reply.status == 409 {
            assert_eq!(reply.code(), "EMAIL_TAKEN");
        }
        statuses.push(reply.status);
    }
    statuses.sort_unstable();

    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
}

#[tokio::test]
async fn five_failed_logins_throttle_the_account_on_every_instance() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    let (a, b) = (cluster.api(0), cluster.api(1));
    let email = email();
    assert_eq!(a.signup(&email, PASSWORD, "Kim").await.status, 201);

    for i in 0..5 {
        let api = if i % 2 == 0 { &a } else { &b };
        let reply = api.login(&email, "wrong password!").await;
        assert_eq!(reply.status, 401, "attempt {i}");
        assert_eq!(reply.code(), "INVALID_CREDENTIALS");
    }
    for api in [&a, &b] {
        let reply = api.login(&email, PASSWORD).await;
        assert_eq!(reply.status, 429, "even the right password waits");
        assert_eq!(reply.code(), "TOO_MANY_ATTEMPTS");
        let retry_after: u64 = reply.headers["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=900).contains(&retry_after), "{retry_after}");
    }
    let unknown = a.login("nobody@example.com", "wrong password!").await;
    assert_eq!(unknown.status, 401, "other accounts are not affected");
}

#[tokio::test]
async fn a_successful_login_resets_the_failure_count() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(1, db.url(), &[]).await.expect("cluster");
    let api = cluster.api(0);
    let email = email();
    assert_eq!(api.signup(&email, PASSWORD, "Kim").await.status, 201);

    for _ in 0..4 {
        assert_eq!(api.login(&email, "wrong password!").await.status, 401);
    }
    assert_eq!(api.login(&email, PASSWORD).await.status, 200);
    for _ in 0..4 {
        assert_eq!(api.login(&email, "wrong password!").await.status, 401);
    }
    assert_eq!(api.login(&email, PASSWORD).await.status, 200, "the count started over");
}

#[tokio::test]
async fn without_redis_auth_fails_closed_and_recovers_by_itself() {
    let db = TestDatabase::create().await;
    let redis = host_port(&coffee_test_support::redis_url())
        .expect("redis host:port")
        .to_owned();
    let proxy = TcpProxy::start(&redis).await.expect("proxy");
    let cluster = Cluster::start(
        1,
        db.url(),
        &[
            ("REDIS_URL", format!("redis://{}", proxy.addr())),
            ("REDIS_TIMEOUT_MS", "500".to_owned()),
        ],
    )
    .await
    .expect("cluster");
    let api = cluster.api(0);
    let (_, access, _) = api.new_user().await;

    proxy.cut();
    let me = api.me(&access).await;
    assert_eq!(me.status, 503, "{:?}", me.body);
    assert_eq!(me.code(), "DEPENDENCY_UNAVAILABLE");
    let login = api.login("anyone@example.com", PASSWORD).await;
    assert_eq!(login.status, 503);
    assert_eq!(
        api.get("/menus", None).await.status,
        200,
        "routes that need no Redis keep working"
    );

    proxy.restore();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let me = api.me(&access).await;
        if me.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "did not recover: {:?}", me.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn signup_refuses_common_passwords_and_bad_input_with_field_errors() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(1, db.url(), &[]).await.expect("cluster");
    let api: Api = cluster.api(0);

    let common = api.signup(&email(), "password123", "Kim").await;
    assert_eq!(common.status, 400);
    assert_eq!(common.code(), "VALIDATION_FAILED");
    assert_eq!(common.body["errors"][0]["field"], "password");

    let unknown_field = api
        .post(
            "/auth/signup",
            None,
            json!({"email": email(), "password": PASSWORD, "name": "K", "admin": true}),
        )
        .await;
    assert_eq!(unknown_field.status, 400);

    let taken = email();
    assert_eq!(api.signup(&taken, PASSWORD, "Kim").await.status, 201);
    let again = api.signup(&taken, PASSWORD, "Kim").await;
    assert_eq!(again.status, 409);
    assert_eq!(again.code(), "EMAIL_TAKEN");
}

/// A login with `X-Forwarded-For: forwarded`.
async fn login_from(api: &Api, forwarded: &str, email: &str, password: &str) -> coffee_e2e::Reply {
    api.send(
        api.client
            .post(api.url("/auth/login"))
            .header("X-Forwarded-For", forwarded)
            .json(&json!({ "email": email, "password": password })),
    )
    .await
}

/// Behind a trusted balancer the client is the address it forwards: one
/// client's failed logins on many accounts hit a limit of their own (on
/// every instance), other clients and successful logins are not affected.
/// A forged `X-Forwarded-For` from an untrusted peer changes nothing.
#[tokio::test]
async fn failed_logins_and_signups_are_limited_per_client_address() {
    let db = TestDatabase::create().await;
    let limits = [
        ("CLIENT_LOGIN_MAX_ATTEMPTS", "3".to_owned()),
        ("TRUSTED_PROXIES", "127.0.0.1/32".to_owned()),
    ];
    let cluster = Cluster::start(2, db.url(), &limits).await.expect("cluster");
    let (a, b) = (cluster.api(0), cluster.api(1));
    let known = email();
    assert_eq!(a.signup(&known, PASSWORD, "Kim").await.status, 201);

    // The client's own logins that succeed are not counted.
    for _ in 0..3 {
        assert_eq!(login_from(&a, "203.0.113.5", &known, PASSWORD).await.status, 200);
    }
    // Three failures, each on another account, spread over both instances.
    for (i, api) in [&a, &b, &a].into_iter().enumerate() {
        let reply = login_from(api, "198.51.100.1, 203.0.113.5", &email(), "wrong password!").await;
        assert_eq!(reply.status, 401, "failure {i}");
    }
    for api in [&a, &b] {
        let reply = login_from(api, "203.0.113.5", &known, PASSWORD).await;
        assert_eq!(
            reply.status, 429,
            "the client is over its limit, even with the right password"
        );
        assert_eq!(reply.code(), "TOO_MANY_ATTEMPTS");
        assert!(reply.headers.contains_key("retry-after"));
    }
    assert_eq!(
        login_from(&b, "203.0.113.6", &known, PASSWORD).await.status,
        200,
        "another client is not affected, nor is the account"
    );

    // Signups: three per client address per window.
    let signup_from = |api: &Api, forwarded: &'static str| {
        let request = api
            .client
            .post(api.url("/auth/signup"))
            .header("X-Forwarded-For", forwarded)
            .json(&json!({ "email": email(), "password": PASSWORD, "name": "Lee" }));
        let api = api.clone();
        async move { api.send(request).await }
    };
    for i in 0..3 {
        assert_eq!(signup_from(&a, "203.0.113.9").await.status, 201, "signup {i}");
    }
    let fourth = signup_from(&b, "203.0.113.9").await;
    assert_eq!(fourth.status, 429, "{:?}", fourth.body);
    assert_eq!(fourth.code(), "TOO_MANY_ATTEMPTS");

    // No trusted proxy: the peer is the client, whatever it forwards.
    let untrusted = Cluster::start(1, db.url(), &[("CLIENT_LOGIN_MAX_ATTEMPTS", "3".to_owned())])
        .await
        .expect("instance");
    let c = untrusted.api(0);
    for i in 0..3 {
        let forged = format!("192.0.2.{i}");
        assert_eq!(login_from(&c, &forged, &email(), "wrong password!").await.status, 401);
    }
    let reply = login_from(&c, "192.0.2.200", &known, PASSWORD).await;
    assert_eq!(reply.status, 429, "forged X-Forwarded-For values are all 127.0.0.1");
}
