//! Login throttling: a sliding window of attempts per account (and, with
//! [`RedisClientThrottle`], per client address), in Redis.
//!
//! Key `login-attempts:{sha256(email)}` (the address itself is not written to
//! Redis) is a sorted set of the attempts of the last window, scored by time
//! (Redis's own clock, so instances' clocks do not matter). An attempt is let
//! through only while fewer than the limit were made in the window before it,
//! so no 15-minute span ever holds more than the limit. Counting happens before
//! the password is checked, in one atomic script, so a burst of concurrent
//! guesses on several instances cannot exceed the limit either.

use std::time::Duration;

use async_trait::async_trait;
use coffee_ports::{ClientAction, ClientThrottle, InfraError, LoginAttempt, LoginThrottle};
use redis::{self, Script};
use sha2::{Digest, Sha256};

use crate::error;
use crate::pool::RedisPool;

/// Drops attempts older than the window, then either records this one
/// (`{1, 0}`) or refuses it (`{0, ms until the oldest attempt leaves the
/// window}`). ARGV: window in ms, the limit, a unique member for this attempt.
const ATTEMPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return {1, 0}
";

/// The sliding window both throttles count in: at most `max_attempts` per
/// key per `window`.
#[derive(Debug, Clone)]
struct Window {
    pool: RedisPool,
    max_attempts: u32,
    window: Duration,
    script: Script,
}

impl Window {
    fn new(pool: RedisPool, max_attempts: u32, window: Duration) -> Self {
        Self {
            pool,
            max_attempts,
            window,
            script: Script::new(ATTEMPT),
        }
    }

    /// Runs the [`ATTEMPT`] script on `key` for the attempt `member`.
    async fn count(&self, key: String, member: String) -> Result<LoginAttempt, InfraError> {
        let mut conn = self.pool.get().await?;
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX).max(1);
        let (allowed, wait_ms): (u8, i64) = self
            .script
            .key(key)
            .arg(window_ms)
            .arg(self.max_attempts)
            .arg(member)
            .invoke_async(&mut conn)
            .await
            .map_err(error::from_redis)?;
        if allowed == 1 {
            Ok(LoginAttempt::Allowed)
        } else {
            // Rounded up, so a client that waits exactly this long is let in.
            let wait_ms = u64::try_from(wait_ms).unwrap_or_default();
            Ok(LoginAttempt::Blocked {
                retry_after: Duration::from_secs(wait_ms.div_ceil(1000).max(1)),
            })
        }
    }
}

/// [`LoginThrottle`] on Redis.
#[derive(Debug, Clone)]
pub struct RedisLoginThrottle {
    window: Window,
}

impl RedisLoginThrottle {
    /// At most `max_attempts` attempts per account per `window`; a successful
    /// login clears the count.
    pub fn new(pool: RedisPool, max_attempts: u32, window: Duration) -> Self {
        Self {
            window: Window::new(pool, max_attempts, window),
        }
    }

    fn key(&self, email: &str) -> String {
        let digest = Sha256::digest(email.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.window.pool.key(&format!("login-attempts:{hex}"))
    }
}

#[async_trait]
impl LoginThrottle for RedisLoginThrottle {
    async fn attempt(&self, email: &str) -> Result<LoginAttempt, InfraError> {
        self.window
            .count(self.key(email), uuid::Uuid::new_v4().to_string())
            .await
    }

    async fn reset(&self, email: &str) -> Result<(), InfraError> {
        let mut conn = self.window.pool.get().await?;
        redis::cmd("DEL")
            .arg(self.key(email))
            .query_async::<()>(&mut conn)
            .await
            .map_err(error::from_redis)
    }
}

/// [`ClientThrottle`] on Redis: the same sliding window, one key per action
/// and client address (`client-attempts:{action}:{address}`), each attempt a
/// member of its own so a withdrawn one leaves the window at once.
#[derive(Debug, Clone)]
pub struct RedisClientThrottle {
    window: Window,
}

impl RedisClientThrottle {
    /// At most `max_attempts` counted attempts per client address and action
    /// per `window`.
    pub fn new(pool: RedisPool, max_attempts: u32, window: Duration) -> Self {
        Self {
            window: Window::new(pool, max_attempts, window),
        }
    }

    fn key(&self, action: ClientAction, client: std::net::IpAddr) -> String {
        self.window
            .pool
            .key(&format!("client-attempts:{}:{client}", action.as_str()))
    }
}

#[async_trait]
impl ClientThrottle for RedisClientThrottle {
    async fn attempt(
        &self,
        action: ClientAction,
        client: std::net::IpAddr,
        attempt: uuid::Uuid,
    ) -> Result<LoginAttempt, InfraError> {
        self.window.count(self.key(action, client), attempt.to_string()).await
    }

    async fn withdraw(
        &self,
        action: ClientAction,
        client: std::net::IpAddr,
        attempt: uuid::Uuid,
    ) -> Result<(), InfraError> {
        let mut conn = self.window.pool.get().await?;
        redis::cmd("ZREM")
            .arg(self.key(action, client))
            .arg(attempt.to_string())
            .query_async::<()>(&mut conn)
            .await
            .map_err(error::from_redis)
    }
}
