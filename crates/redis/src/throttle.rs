//! Login throttling: a fixed window of attempts per account, in Redis.
//!
//! Key `login-attempts:{sha256(email)}` (the address itself is not written to
//! Redis) counts attempts; the first one starts the window. Counting happens
//! before the password is checked, in one atomic script, so a burst of
//! concurrent guesses on several instances cannot exceed the limit.

use std::time::Duration;

use async_trait::async_trait;
use coffee_ports::{InfraError, LoginAttempt, LoginThrottle};
use deadpool_redis::redis::{self, Script};
use sha2::{Digest, Sha256};

use crate::error;
use crate::pool::RedisPool;

/// Counts the attempt, starts the window on the first, and returns the count
/// and the window's remaining milliseconds.
const ATTEMPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
";

/// [`LoginThrottle`] on Redis.
#[derive(Debug, Clone)]
pub struct RedisLoginThrottle {
    pool: RedisPool,
    max_attempts: u32,
    window: Duration,
    attempt: Script,
}

impl RedisLoginThrottle {
    /// At most `max_attempts` attempts per account per `window`; a successful
    /// login clears the count.
    pub fn new(pool: RedisPool, max_attempts: u32, window: Duration) -> Self {
        Self {
            pool,
            max_attempts,
            window,
            attempt: Script::new(ATTEMPT),
        }
    }

    fn key(&self, email: &str) -> String {
        let digest = Sha256::digest(email.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.pool.key(&format!("login-attempts:{hex}"))
    }
}

#[async_trait]
impl LoginThrottle for RedisLoginThrottle {
    async fn attempt(&self, email: &str) -> Result<LoginAttempt, InfraError> {
        let mut conn = self.pool.get().await?;
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX).max(1);
        let (count, ttl_ms): (u64, u64) = self
            .attempt
            .key(self.key(email))
            .arg(window_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(error::from_redis)?;
        if count > u64::from(self.max_attempts) {
            // Rounded up, so a client that waits exactly this long is let in.
            Ok(LoginAttempt::Blocked {
                retry_after: Duration::from_secs(ttl_ms.div_ceil(1000).max(1)),
            })
        } else {
            Ok(LoginAttempt::Allowed)
        }
    }

    async fn reset(&self, email: &str) -> Result<(), InfraError> {
        let mut conn = self.pool.get().await?;
        redis::cmd("DEL")
            .arg(self.key(email))
            .query_async::<()>(&mut conn)
            .await
            .map_err(error::from_redis)
    }
}
