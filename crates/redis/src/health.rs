//! Readiness probe for Redis.

use async_trait::async_trait;
use coffee_ports::{DependencyProbe, InfraError};

use crate::error::{self, DEPENDENCY};
use crate::pool::RedisPool;

/// Sends `PING` on a pooled connection.
#[derive(Debug, Clone)]
pub struct RedisProbe {
    pool: RedisPool,
}

impl RedisProbe {
    pub fn new(pool: RedisPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl DependencyProbe for RedisProbe {
    fn name(&self) -> &'static str {
        DEPENDENCY
    }

    async fn check(&self) -> Result<(), InfraError> {
        let mut conn = self.pool.get().await?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(error::from_redis)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_reachable_redis_is_up() {
        let namespace = coffee_test_support::RedisNamespace::new();
        let settings = crate::RedisSettings::local(coffee_test_support::redis_url(), namespace.prefix());
        let probe = RedisProbe::new(RedisPool::new(&settings).expect("pool"));
        probe.check().await.expect("redis answers PING");
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_unavailable_quickly() {
        // Port 1 on loopback: nothing listens there, so the connect is refused.
        let mut settings = crate::RedisSettings::local("redis://127.0.0.1:1", "coffee-test:");
        settings.timeout = Duration::from_millis(500);
        let probe = RedisProbe::new(RedisPool::new(&settings).expect("pool"));

        let started = std::time::Instant::now();
        let err = probe.check().await.expect_err("nothing listens on port 1");

        assert!(err.is_unavailable(), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
