//! Test harness shared by adapter, application-level and end-to-end tests.
//!
//! - [`TestDatabase`]: a fresh PostgreSQL database per test, cloned from a
//!   template that has every migration applied, and dropped when the value is
//!   dropped. Tests never share a database, so they run in parallel.
//! - [`RedisNamespace`]: every test gets its own key prefix in the shared
//!   Redis, and its keys are deleted when the test ends.
//!
//! - [`TcpProxy`]: a TCP proxy the test can cut and restore, to take a
//!   dependency "down" for one application without touching the shared server.
//! - [`RoundTripCounter`]: a proxy in front of PostgreSQL that counts the
//!   round trips a client makes, so a test can pin them.
//! - [`on_worker_thread`]: code run as on an HTTP worker's thread.
//!
//! The servers come from `TEST_DATABASE_URL` (an admin connection, default
//! `postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable`) and `TEST_REDIS_URL`
//! (default `redis://127.0.0.1:6379`).
//!
//! This crate exchanges only plain strings with the adapters it helps test, so
//! it can be a dev-dependency of those very adapters.

mod database;
mod ledger;
mod locale;
mod locks;
mod proxy;
mod redis;
mod round_trips;

pub use database::TestDatabase;
pub use ledger::{GroundTruthRow, HeldBalance};
pub use proxy::TcpProxy;
pub use redis::{RedisNamespace, RedisServer};
pub use round_trips::RoundTripCounter;

/// Runs `f` with `pool` on a thread of its own, in a current-thread runtime
/// as an HTTP worker does, after `adopt` ran there with it (a pool's
/// `adopt_worker`); the thread ends with `f`.
pub fn on_worker_thread<P: Clone + Send + 'static, T: Send + 'static>(
    pool: &P,
    adopt: impl FnOnce(&P) + Send + 'static,
    f: impl AsyncFnOnce(&P) -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let pool = pool.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a worker's runtime");
        runtime.block_on(async {
            adopt(&pool);
            f(&pool).await
        })
    })
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// The Redis server tests use.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A Redis key prefix no other test uses: `coffee-test:<uuid>:`.
pub fn unique_key_prefix() -> String {
    format!("coffee-test:{}:", uuid::Uuid::new_v4().simple())
}

/// `host:port` of an `scheme://[user@]host:port/...` URL.
pub fn host_port(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    Some(authority.rsplit_once('@').map_or(authority, |(_, hp)| hp))
}
