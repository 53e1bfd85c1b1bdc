//! What a checkout costs and what it hands out: a connection checked within
//! the last [`CHECKED_FOR`] goes out without a round trip of its own, one
//! checked longer ago is checked (`PING`) first, and one whose command
//! failed on its connection is dropped, not handed out again. Against a
//! throwaway `redis-server` of each test's own, whose command counts are
//! the test's alone.

use std::time::Duration;

use coffee_redis::pool::CHECKED_FOR;
use coffee_redis::{RedisPool, RedisSettings};
use coffee_test_support::{RedisServer, free_port};

/// `PING`s the server has answered, from `INFO commandstats` (asked on a
/// connection of its own, outside the pool).
async fn pings(server: &RedisServer) -> u64 {
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("connection");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_ping:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("a count"))
}

/// One checkout and one command on it.
async fn get_on(pool: &RedisPool) -> Result<Option<String>, String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    redis::cmd("GET")
        .arg(pool.key("nothing"))
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_connection_checked_lately_goes_out_without_a_round_trip() {
    let server = RedisServer::start(free_port()).await.expect("redis-server");
    let pool = RedisPool::new(&RedisSettings::local(server.url(), "checkout:")).expect("pool");
    for _ in 0..20 {
        get_on(&pool).await.expect("GET");
    }
    assert_eq!(pool.open_connections(), 1, "one connection served every checkout");
    assert_eq!(
        pings(&server).await,
        0,
        "a connection opened or checked within {CHECKED_FOR:?} was checked again on checkout"
    );

    tokio::time::sleep(CHECKED_FOR + Duration::from_millis(100)).await;
    get_on(&pool).await.expect("GET");
    get_on(&pool).await.expect("GET");
    assert_eq!(
        pings(&server).await,
        1,
        "a connection not checked for longer is checked once before it goes out"
    );
}

#[tokio::test]
async fn a_connection_that_failed_is_dropped_not_handed_out_again() {
    let port = free_port();
    let mut server = RedisServer::start(port).await.expect("redis-server");
    let pool = RedisPool::new(&RedisSettings::local(server.url(), "checkout:")).expect("pool");
    get_on(&pool).await.expect("GET");

    // The server goes away and comes back at once: the pooled connection
    // was checked a moment ago, so its next checkout does not check it and
    // its command fails; the pool must not hand it out again.
    server.kill();
    let _server = RedisServer::start(port).await.expect("redis-server again");
    let first = get_on(&pool).await;
    get_on(&pool)
        .await
        .unwrap_or_else(|e| panic!("the next checkout got the failed connection again ({first:?}): {e}"));
    assert_eq!(pool.open_connections(), 1, "the failed connection was kept");
}
