//! The Redis adapters against the real Redis, each test in its own key prefix.

use std::sync::Arc;
use std::time::Duration;

use coffee_domain::{SessionId, TokenId, UserId};
use coffee_ports::{
    AccessCheck, ClientAction, ClientThrottle, LoginAttempt, LoginThrottle, NewSession, Rotation, SessionStore,
};
use coffee_redis::{RedisClientThrottle, RedisLoginThrottle, RedisPool, RedisSessionStore, RedisSettings};
use coffee_test_support::{RedisNamespace, on_worker_thread};
use uuid::Uuid;

/// A pool in a fresh namespace; hold the namespace for the test's length.
fn pool_in(namespace: &RedisNamespace) -> RedisPool {
    RedisPool::new(&RedisSettings::local(
        coffee_test_support::redis_url(),
        namespace.prefix(),
    ))
    .expect("pool")
}

async fn pttl(pool: &RedisPool, suffix: &str) -> i64 {
    let mut conn = pool.get().await.expect("connection");
    redis::cmd("PTTL")
        .arg(pool.key(suffix))
        .query_async(&mut conn)
        .await
        .expect("PTTL")
}

async fn keys(pool: &RedisPool) -> Vec<String> {
    let mut conn = pool.get().await.expect("connection");
    redis::cmd("KEYS")
        .arg(format!("{}*", pool.prefix()))
        .query_async(&mut conn)
        .await
        .expect("KEYS")
}

fn ids() -> (SessionId, TokenId) {
    (SessionId::from_uuid(Uuid::new_v4()), TokenId::from_uuid(Uuid::new_v4()))
}

fn new_user() -> UserId {
    UserId::from_uuid(Uuid::new_v4())
}

fn new_token() -> TokenId {
    TokenId::from_uuid(Uuid::new_v4())
}

/// A session of a fresh user: (session, its user, its refresh token id).
async fn open_session(store: &RedisSessionStore, ttl: Duration) -> (SessionId, UserId, TokenId) {
    let (session, refresh) = ids();
    let user = new_user();
    store
        .create(NewSession {
            id: session,
            user_id: user,
            refresh_token_id: refresh,
            ttl,
        })
        .await
        .expect("created");
    (session, user, refresh)
}

async fn stored_jti(pool: &RedisPool, session: SessionId) -> Option<String> {
    let mut conn = pool.get().await.expect("connection");
    redis::cmd("HGET")
        .arg(pool.key(&format!("session:{session}")))
        .arg("jti")
        .query_async(&mut conn)
        .await
        .expect("HGET")
}

#[tokio::test]
async fn a_session_lives_for_its_ttl_and_keeps_its_tokens_valid() {
    let ns = RedisNamespace::new();
    let pool = pool_in(&ns);
    let store = RedisSessionStore::new(pool.clone());
    let (session, user, _) = open_session(&store, Duration::from_secs(3600)).await;

    let ttl = pttl(&pool, &format!("session:{session}")).await;
    assert!((3_590_000..=3_600_000).contains(&ttl), "session TTL {ttl} ms");
    let access = TokenId::from_uuid(Uuid::new_v4());
    assert_eq!(
        store.check_access(access, session, user).await.expect("checked"),
        AccessCheck::Granted
    );
}

#[tokio::test]
async fn rotation_replaces_the_token_and_a_replay_revokes_the_session() {
    let ns = RedisNamespace::new();
    let pool = pool_in(&ns);
    let store = RedisSessionStore::with_retry_grace(pool.clone(), Duration::from_millis(300));
    let (session, user, first) = open_session(&store, Duration::from_secs(60)).await;
    let second = TokenId::from_uuid(Uuid::new_v4());
    let third = TokenId::from_uuid(Uuid::new_v4());

    let rotated = store
        .rotate(session, user, first, second, Duration::from_secs(7200))
        .await
        .expect("rotate");
    assert_eq!(rotated, Rotation::Rotated);
    let ttl = pttl(&pool, &format!("session:{session}")).await;
    assert!(ttl > 7_000_000, "rotation extends the session, TTL {ttl} ms");

    // Within the grace, the replaced token is a retry: the current id back,
    // nothing changed.
    let retry = store
        .rotate(session, user, first, third, Duration::from_secs(60))
        .await
        .expect("rotate");
    assert_eq!(retry, Rotation::Retried(second));
    assert_eq!(stored_jti(&pool, session).await, Some(second.to_string()));

    tokio::time::sleep(Duration::from_millis(350)).await;
    let replay = store
        .rotate(session, user, first, third, Duration::from_secs(60))
        .await
        .expect("rotate");
    assert_eq!(replay, Rotation::Reused);
    assert_eq!(
        store.check_access(new_token(), session, user).await.expect("checked"),
        AccessCheck::Revoked
    );

    let after = store
        .rotate(session, user, second, third, Duration::from_secs(60))
        .await
        .expect("rotate");
    assert_eq!(after, Rotation::Unknown, "even the current token dies with the session");
}

#[tokio::test]
async fn of_ten_concurrent_refreshes_with_one_token_exactly_one_rotates_and_the_rest_get_its_token() {
    let ns = RedisNamespace::new();
    let store = Arc::new(RedisSessionStore::new(pool_in(&ns)));
    let (session, user, refresh) = open_session(&store, Duration::from_secs(60)).await;

    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let store = Arc::clone(&store);
            let next = TokenId::from_uuid(Uuid::new_v4());
            tokio::spawn(async move {
                let rotation = store
                    .rotate(session, user, refresh, next, Duration::from_secs(60))
                    .await
                    .expect("rotate");
                (next, rotation)
            })
        })
        .collect();
    let mut rotated = Vec::new();
    let mut handed_back = Vec::new();
    for attempt in attempts {
        match attempt.await.expect("joined") {
            (next, Rotation::Rotated) => rotated.push(next),
            (_, Rotation::Retried(current)) => handed_back.push(current),
            (_, other) => panic!("a concurrent refresh with the current token answered {other:?}"),
        }
    }

    assert_eq!(rotated.len(), 1);
    assert_eq!(
        handed_back,
        vec![rotated[0]; 9],
        "the others get the winner's token, in the same session"
    );
}

#[tokio::test]
async fn a_revoked_access_token_stays_revoked_for_the_given_ttl() {
    let ns = RedisNamespace::new();
    let pool = pool_in(&ns);
    let store = RedisSessionStore::new(pool.clone());
    let (session, user, _) = open_session(&store, Duration::from_secs(60)).await;
    let access = TokenId::from_uuid(Uuid::new_v4());

    store
        .revoke_access_token(access, Duration::from_secs(905))
        .await
        .expect("revoked");

    assert_eq!(
        store.check_access(access, session, user).await.expect("checked"),
        AccessCheck::Revoked
    );
    let other = TokenId::from_uuid(Uuid::new_v4());
    assert_eq!(
        store.check_access(other, session, user).await.expect("checked"),
        AccessCheck::Granted,
        "other tokens of the session still work"
    );
    let ttl = pttl(&pool, &format!("revoked-token:{access}")).await;
    assert!((900_000..=905_000).contains(&ttl), "blacklist TTL {ttl} ms");
}

#[tokio::test]
async fn ending_a_session_revokes_its_access_tokens() {
    let ns = RedisNamespace::new();
    let store = RedisSessionStore::new(pool_in(&ns));
    let (session, user, refresh) = open_session(&store, Duration::from_secs(60)).await;

    store.end(session, user).await.expect("ended");

    assert_eq!(
        store.check_access(new_token(), session, user).await.expect("checked"),
        AccessCheck::Revoked
    );
    let rotation = store
        .rotate(
            session,
            user,
            refresh,
            TokenId::from_uuid(Uuid::new_v4()),
            Duration::from_secs(60),
        )
        .await
        .expect("rotate");
    assert_eq!(rotation, Rotation::Unknown);
}

#[tokio::test]
async fn a_session_of_one_user_does_not_vouch_for_another() {
    let ns = RedisNamespace::new();
    let store = RedisSessionStore::new(pool_in(&ns));
    let (session, alice, _) = open_session(&store, Duration::from_secs(60)).await;
    let bob = new_user();
    let access = new_token();

    assert_eq!(
        store.check_access(access, session, bob).await.expect("checked"),
        AccessCheck::WrongUser,
        "Alice's live session with Bob's sub"
    );
    assert_eq!(
        store.check_access(access, session, alice).await.expect("checked"),
        AccessCheck::Granted,
        "and Alice is still herself"
    );

    store
        .revoke_access_token(access, Duration::from_secs(60))
        .await
        .expect("revoked");
    assert_eq!(
        store.check_access(access, session, bob).await.expect("checked"),
        AccessCheck::Revoked,
        "a blacklisted token is revoked whoever it names"
    );
}

#[tokio::test]
async fn rotating_a_session_for_another_user_is_unknown_and_leaves_it_alone() {
    let ns = RedisNamespace::new();
    let pool = pool_in(&ns);
    let store = RedisSessionStore::new(pool.clone());
    let (session, alice, current) = open_session(&store, Duration::from_secs(60)).await;
    let bob = new_user();

    let with_current = store
        .rotate(session, bob, current, new_token(), Duration::from_secs(7200))
        .await
        .expect("rotate");
    let with_stale = store
        .rotate(session, bob, new_token(), new_token(), Duration::from_secs(7200))
        .await
        .expect("rotate");

    assert_eq!(with_current, Rotation::Unknown, "Alice's current token with Bob's sub");
    assert_eq!(
        with_stale,
        Rotation::Unknown,
        "a mismatch for another user is not reuse: it must not end Alice's session"
    );
    assert_eq!(
        stored_jti(&pool, session).await,
        Some(current.to_string()),
        "not rotated"
    );
    let ttl = pttl(&pool, &format!("session:{session}")).await;
    assert!(ttl <= 60_000, "not extended, TTL {ttl} ms");
    assert_eq!(
        store.check_access(new_token(), session, alice).await.expect("checked"),
        AccessCheck::Granted
    );
    let alices = store
        .rotate(session, alice, current, new_token(), Duration::from_secs(60))
        .await
        .expect("rotate");
    assert_eq!(alices, Rotation::Rotated, "Alice's own refresh still works");
}

#[tokio::test]
async fn ending_a_session_for_another_user_leaves_it_alone() {
    let ns = RedisNamespace::new();
    let store = RedisSessionStore::new(pool_in(&ns));
    let (session, alice, current) = open_session(&store, Duration::from_secs(60)).await;

    store.end(session, new_user()).await.expect("end");

    assert_eq!(
        store.check_access(new_token(), session, alice).await.expect("checked"),
        AccessCheck::Granted
    );
    let rotation = store
        .rotate(session, alice, current, new_token(), Duration::from_secs(60))
        .await
        .expect("rotate");
    assert_eq!(rotation, Rotation::Rotated);
}

#[tokio::test]
async fn the_sixth_attempt_in_the_window_is_blocked_until_it_ends() {
    let ns = RedisNamespace::new();
    let pool = pool_in(&ns);
    let throttle = RedisLoginThrottle::new(pool.clone(), 5, Duration::from_secs(900));

    for n in 1..=5 {
        assert_eq!(
            throttle.attempt("kim@example.com").await.expect("counted"),
            LoginAttempt::Allowed,
            "attempt {n}"
        );
    }
    let blocked = throttle.attempt("kim@example.com").await.expect("counted");

    match blocked {
        LoginAttempt::Blocked { retry_after } => {
            assert!(
                retry_after <= Duration::from_secs(900) && retry_after >= Duration::from_secs(890),
                "{retry_after:?}"
            );
        }
        LoginAttempt::Allowed => panic!("the sixth attempt must be blocked"),
    }
    assert_eq!(
        throttle.attempt("lee@example.com").await.expect("counted"),
        LoginAttempt::Allowed,
        "per account"
    );
    let stored = keys(&pool).await;
    assert!(
        stored.iter().all(|k| !k.contains("example.com")),
        "emails are not written to Redis: {stored:?}"
    );
}

#[tokio::test]
async fn a_reset_clears_the_count() {
    let ns = RedisNamespace::new();
    let throttle = RedisLoginThrottle::new(pool_in(&ns), 2, Duration::from_secs(900));
    throttle.attempt("kim@example.com").await.expect("counted");
    throttle.attempt("kim@example.com").await.expect("counted");

    throttle.reset("kim@example.com").await.expect("reset");

    assert_eq!(
        throttle.attempt("kim@example.com").await.expect("counted"),
        LoginAttempt::Allowed
    );
}

#[tokio::test]
async fn a_concurrent_burst_gets_exactly_the_allowed_number_of_attempts() {
    let ns = RedisNamespace::new();
    let throttle = Arc::new(RedisLoginThrottle::new(pool_in(&ns), 5, Duration::from_secs(900)));

    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let throttle = Arc::clone(&throttle);
            tokio::spawn(async move { throttle.attempt("burst@example.com").await.expect("counted") })
        })
        .collect();
    let mut allowed = 0;
    for attempt in attempts {
        if attempt.await.expect("joined") == LoginAttempt::Allowed {
            allowed += 1;
        }
    }

    assert_eq!(allowed, 5);
}

#[tokio::test]
async fn the_window_expires() {
    let ns = RedisNamespace::new();
    let throttle = RedisLoginThrottle::new(pool_in(&ns), 1, Duration::from_millis(300));
    throttle.attempt("kim@example.com").await.expect("counted");
    assert!(matches!(
        throttle.attempt("kim@example.com").await.expect("counted"),
        LoginAttempt::Blocked { .. }
    ));

    tokio::time::sleep(Duration::from_millis(400)).await;

    assert_eq!(
        throttle.attempt("kim@example.com").await.expect("counted"),
        LoginAttempt::Allowed
    );
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable() {
    let mut settings = RedisSettings::local("redis://127.0.0.1:1", "x:");
    settings.timeout = Duration::from_millis(300);
    let pool = RedisPool::new(&settings).expect("pool");
    let store = RedisSessionStore::new(pool.clone());
    let throttle = RedisLoginThrottle::new(pool, 5, Duration::from_secs(60));
    let (session, token) = ids();

    assert!(
        store
            .check_access(token, session, new_user())
            .await
            .expect_err("down")
            .is_unavailable()
    );
    assert!(
        throttle
            .attempt("kim@example.com")
            .await
            .expect_err("down")
            .is_unavailable()
    );
}

#[tokio::test]
async fn the_window_slides_so_no_span_of_it_holds_more_than_the_limit() {
    let ns = RedisNamespace::new();
    let throttle = RedisLoginThrottle::new(pool_in(&ns), 2, Duration::from_millis(600));
    let attempt = || async { throttle.attempt("kim@example.com").await.expect("counted") };

    assert_eq!(attempt().await, LoginAttempt::Allowed); // t = 0
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(attempt().await, LoginAttempt::Allowed); // t = 400
    assert!(
        matches!(attempt().await, LoginAttempt::Blocked { .. }),
        "two in the window already"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;

    // t = 650: the first attempt has left the window, the second has not, so
    // exactly one more fits (a fixed window would have reset to two).
    assert_eq!(attempt().await, LoginAttempt::Allowed);
    assert!(matches!(attempt().await, LoginAttempt::Blocked { .. }));
}

/// Per client address and action; a withdrawn attempt leaves the window at
/// once, so successful logins never use up a client's allowance.
#[tokio::test]
async fn client_attempts_count_per_address_and_action_and_can_be_withdrawn() {
    let ns = RedisNamespace::new();
    let pool = pool_in(&ns);
    let clients = RedisClientThrottle::new(pool.clone(), 2, Duration::from_secs(900));
    let one: std::net::IpAddr = "203.0.113.5".parse().expect("address");
    let other: std::net::IpAddr = "2001:db8::7".parse().expect("address");
    let attempt = |ip, action| {
        let clients = clients.clone();
        async move { clients.attempt(action, ip, Uuid::new_v4()).await.expect("counted") }
    };

    assert_eq!(attempt(one, ClientAction::LogIn).await, LoginAttempt::Allowed);
    let succeeded = Uuid::new_v4();
    assert_eq!(
        clients
            .attempt(ClientAction::LogIn, one, succeeded)
            .await
            .expect("counted"),
        LoginAttempt::Allowed
    );
    assert!(matches!(
        attempt(one, ClientAction::LogIn).await,
        LoginAttempt::Blocked { .. }
    ));
    clients
        .withdraw(ClientAction::LogIn, one, succeeded)
        .await
        .expect("withdrawn");
    assert_eq!(
        attempt(one, ClientAction::LogIn).await,
        LoginAttempt::Allowed,
        "room again"
    );
    assert!(matches!(
        attempt(one, ClientAction::LogIn).await,
        LoginAttempt::Blocked { .. }
    ));

    assert_eq!(
        attempt(one, ClientAction::SignUp).await,
        LoginAttempt::Allowed,
        "per action"
    );
    assert_eq!(
        attempt(other, ClientAction::LogIn).await,
        LoginAttempt::Allowed,
        "per address"
    );
    let ttl = pttl(&pool, "client-attempts:login:203.0.113.5").await;
    assert!(ttl > 0 && ttl <= 900_000, "expires with its window: {ttl}");
}

#[tokio::test]
async fn with_no_retry_grace_an_immediate_replay_is_reuse() {
    let ns = RedisNamespace::new();
    let store = RedisSessionStore::with_retry_grace(pool_in(&ns), Duration::ZERO);
    let (session, user, first) = open_session(&store, Duration::from_secs(60)).await;
    let rotated = store
        .rotate(session, user, first, new_token(), Duration::from_secs(60))
        .await
        .expect("rotate");
    assert_eq!(rotated, Rotation::Rotated);
    let replay = store
        .rotate(session, user, first, new_token(), Duration::from_secs(60))
        .await
        .expect("rotate");
    assert_eq!(
        replay,
        Rotation::Reused,
        "a grace of 0 is strict, even within the same millisecond"
    );
}

async fn client_id(pool: &RedisPool) -> i64 {
    let mut conn = pool.get().await.expect("connection");
    redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await
        .expect("client id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn each_worker_has_connections_of_its_own_which_end_with_it() {
    let namespace = RedisNamespace::new();
    let settings = RedisSettings::local(coffee_test_support::redis_url(), namespace.prefix());
    let pool = RedisPool::per_worker(&settings, tokio::runtime::Handle::current(), 2).expect("pool");

    let first = on_worker_thread(&pool, RedisPool::adopt_worker, async |pool| {
        (client_id(pool).await, client_id(pool).await)
    })
    .join()
    .expect("worker");
    assert_eq!(first.0, first.1, "a worker reuses its idle connection");
    let second = on_worker_thread(&pool, RedisPool::adopt_worker, async |pool| client_id(pool).await)
        .join()
        .expect("worker");
    assert_ne!(second, first.0, "a worker never gets another worker's connection");
    let outside = client_id(&pool).await;
    assert!(
        outside != first.0 && outside != second,
        "a thread that is no worker uses the shared pool"
    );
    assert_eq!(
        pool.usage(),
        (0, 2),
        "only the shared pool is left once the workers ended"
    );

    let mut open = true;
    for _ in 0..100 {
        let mut conn = pool.get().await.expect("connection");
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut conn)
            .await
            .expect("client list");
        open = clients
            .lines()
            .any(|line| line.starts_with(&format!("id={} ", first.0)) || line.starts_with(&format!("id={second} ")));
        if !open {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!open, "the ended workers' connections were closed with their threads");
}

/// A checkout's future stays small: it is built and moved on every
/// checkout (each authenticated request's session lookup), and when it held
/// a connection's opening in place (TLS, Sentinel: about 22 KB) every
/// request paid for copying that much.
#[tokio::test]
async fn a_checkout_future_is_small() {
    let namespace = RedisNamespace::new();
    let pool = pool_in(&namespace);

    let checkout = pool.get();
    let size = std::mem::size_of_val(&checkout);
    drop(checkout);

    assert!(size <= 4096, "a checkout's future is {size} bytes");
}
