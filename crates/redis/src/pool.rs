//! The Redis connection pool and the key namespace.

use std::time::Duration;

use deadpool_redis::redis::AsyncConnectionConfig;
use deadpool_redis::{Connection, Manager, Pool, Runtime, Timeouts};

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

/// A cloneable handle on the pool plus the key prefix.
#[derive(Clone)]
pub struct RedisPool {
    pool: Pool,
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
    /// before Redis does and become ready when it appears.
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout));
        let manager = Manager::new_with_config(settings.url.as_str(), connection)?;
        let pool = Pool::builder(manager)
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
        self.pool.get().await.map_err(error::from_pool)
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
