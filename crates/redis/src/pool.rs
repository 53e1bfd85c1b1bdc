//! The Redis connection pool and the key namespace.
//!
//! Each connection's I/O task runs on the runtime that opened it. The server
//! hands the pool a runtime of its own ([`RedisPool::with_io_runtime`]) that
//! outlives every HTTP worker, so a connection opened by one worker and used
//! by another's request does not die with the first worker's runtime when
//! idle workers stop first during a graceful shutdown. deadpool-redis has no
//! hook for that, so its manager is wrapped here.

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Object};
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisFuture, Value};
use deadpool_redis::{Manager, Runtime, Timeouts};
use tokio::runtime::Handle;

use coffee_ports::InfraError;

use crate::error;

/// How the adapter talks to Redis.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port[/db]`; may hold a password.
    pub url: String,
    /// Prepended to every key (`"coffee:"` by default).
    pub key_prefix: String,
    pub max_size: usize,
    /// Connect, response and pool-wait timeout: a hung Redis costs at most this.
    pub timeout: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &"[redacted]")
            .field("key_prefix", &self.key_prefix)
            .field("max_size", &self.max_size)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisSettings {
    /// Settings for local development and tests.
    pub fn local(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: key_prefix.into(),
            max_size: 16,
            timeout: Duration::from_secs(2),
        }
    }
}

/// deadpool-redis's manager, opening each connection on `io` when given.
struct IoManager {
    inner: Arc<Manager>,
    io: Option<Handle>,
}

impl std::fmt::Debug for IoManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoManager").field("io", &self.io.is_some()).finish()
    }
}

impl managed::Manager for IoManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        match &self.io {
            None => self.inner.create().await,
            Some(io) => {
                let inner = Arc::clone(&self.inner);
                io.spawn(async move { inner.create().await })
                    .await
                    .map_err(|e| RedisError::from(std::io::Error::other(e)))?
            }
        }
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        metrics: &managed::Metrics,
    ) -> managed::RecycleResult<RedisError> {
        self.inner.recycle(conn, metrics).await
    }
}

/// A pooled Redis connection; commands run on it as on any connection.
pub struct Connection(Object<IoManager>);

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// A cloneable handle on the pool plus the key prefix.
#[derive(Clone)]
pub struct RedisPool {
    pool: managed::Pool<IoManager>,
    prefix: String,
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPool")
            .field("prefix", &self.prefix)
            .field("status", &self.pool.status())
            .finish()
    }
}

impl RedisPool {
    /// Builds the pool; connections are opened lazily, so the server can start
    /// before Redis does and become ready when it appears. Connections run
    /// their I/O on the runtime of the task that opens them.
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        Self::build(settings, None)
    }

    /// Like [`RedisPool::new`], with every connection's I/O task on `io`, a
    /// runtime that outlives whatever checks connections out.
    pub fn with_io_runtime(settings: &RedisSettings, io: Handle) -> anyhow::Result<Self> {
        Self::build(settings, Some(io))
    }

    fn build(settings: &RedisSettings, io: Option<Handle>) -> anyhow::Result<Self> {
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout));
        let manager = IoManager {
            inner: Arc::new(Manager::new_with_config(settings.url.as_str(), connection)?),
            io,
        };
        let pool = managed::Pool::builder(manager)
            .max_size(settings.max_size)
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(settings.timeout),
                create: Some(settings.timeout),
                recycle: Some(settings.timeout),
            })
            .build()?;
        Ok(Self {
            pool,
            prefix: settings.key_prefix.clone(),
        })
    }

    /// Checks out a connection, or says Redis is unavailable.
    pub async fn get(&self) -> Result<Connection, InfraError> {
        self.pool.get().await.map(Connection).map_err(error::from_pool)
    }

    /// The full key for a logical key: `"{prefix}{suffix}"`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Connections in use and the pool's size, for metrics.
    pub fn usage(&self) -> (usize, usize) {
        let status = self.pool.status();
        (status.size.saturating_sub(status.available), status.max_size)
    }
}
