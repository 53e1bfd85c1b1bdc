//! The session store's writes and replicas: `WAIT` before answering, and a
//! connection answered `READONLY` (a demoted master) dropped, not reused.
//! Against the machine's Redis and, for the replica, a throwaway
//! `redis-server --replicaof` it on a free loopback port.

use std::time::{Duration, Instant};

use coffee_domain::{SessionId, TokenId, UserId};
use coffee_ports::{NewSession, SessionStore};
use coffee_redis::{RedisPool, RedisSessionStore, RedisSettings};
use coffee_test_support::{RedisNamespace, RedisServer};
use uuid::Uuid;

fn session() -> NewSession {
    NewSession {
        id: SessionId::from_uuid(Uuid::new_v4()),
        user_id: UserId::from_uuid(Uuid::new_v4()),
        refresh_token_id: TokenId::from_uuid(Uuid::new_v4()),
        ttl: Duration::from_secs(60),
    }
}

/// A replica of the machine's Redis, synced.
async fn replica() -> RedisServer {
    let master = coffee_test_support::redis_url();
    let master = master
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or_default();
    RedisServer::replica_of(coffee_test_support::free_port(), master)
        .await
        .expect("replica")
}

fn settings(url: String, namespace: &RedisNamespace, min_replicas_ack: u32) -> RedisSettings {
    let mut settings = RedisSettings::local(url, namespace.prefix());
    settings.min_replicas_ack = min_replicas_ack;
    settings.replica_ack_timeout = Duration::from_millis(200);
    settings
}

#[tokio::test]
async fn a_session_write_waits_for_a_replica_and_is_503_without_one() {
    let namespace = RedisNamespace::new();
    // More replicas than the machine's Redis has: none acknowledges.
    let pool = RedisPool::new(&settings(coffee_test_support::redis_url(), &namespace, 64)).expect("pool");
    let store = RedisSessionStore::new(pool);
    let started = Instant::now();
    let error = store.create(session()).await.expect_err("no replica acknowledges");
    assert!(error.is_unavailable(), "{error:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "WAIT waited its timeout"
    );

    let _replica = replica().await;
    // Generous: another test's replica may be syncing from the same master.
    let mut generous = settings(coffee_test_support::redis_url(), &namespace, 1);
    generous.replica_ack_timeout = Duration::from_secs(2);
    generous.timeout = Duration::from_secs(5);
    let pool = RedisPool::new(&generous).expect("pool");
    RedisSessionStore::new(pool)
        .create(session())
        .await
        .expect("the replica acknowledges");
}

#[tokio::test]
async fn a_connection_answered_readonly_is_dropped_not_reused() {
    let namespace = RedisNamespace::new();
    let replica = replica().await;
    let pool = RedisPool::new(&settings(format!("redis://127.0.0.1:{}", replica.port), &namespace, 0)).expect("pool");
    let store = RedisSessionStore::new(pool.clone());
    let error = store.create(session()).await.expect_err("a replica refuses writes");
    assert!(error.is_unavailable(), "READONLY is 503, not 500: {error:?}");
    assert_eq!(pool.open_connections(), 0, "the demoted server's connection was kept");

    // A connection that only read is kept.
    let mut conn = pool.get().await.expect("connection");
    let _: Option<String> = redis::cmd("GET")
        .arg(pool.key("nothing"))
        .query_async(&mut conn)
        .await
        .expect("GET");
    drop(conn);
    assert_eq!(pool.open_connections(), 1);
}
