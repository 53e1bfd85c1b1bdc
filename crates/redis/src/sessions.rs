//! Login sessions and revoked access tokens, shared by every instance.
//!
//! Keys (under the configured prefix):
//! - `session:{sid}`: hash `{user, jti}` holding the one refresh token id
//!   currently valid for the session; expires with the refresh token.
//! - `revoked-token:{jti}`: a blacklisted access token, kept until the token
//!   would have expired plus the leeway.
//!
//! An access token is accepted only while its session key exists, belongs to
//! the token's `sub`, and its own id is not blacklisted, so ending a session
//! (logout, refresh-token reuse) revokes every token of it at once, and a
//! live session never vouches for another user. Rotation and ending compare
//! the stored user too, inside their scripts.
//!
//! Every write here waits for the replicas the settings ask for
//! ([`RedisPool::replicated`]) before it is answered, so that a Sentinel
//! failover neither loses a session nor brings a revoked token back.

use std::time::Duration;

use async_trait::async_trait;
use coffee_domain::{SessionId, TokenId, UserId};
use coffee_ports::{AccessCheck, InfraError, NewSession, Rotation, SessionStore};
use redis::{self, Script};

use crate::error;
use crate::pool::RedisPool;

/// Compare-and-swap of the session's refresh token id, or revocation on a
/// mismatch, in one atomic step; a session of another user than ARGV[1] is
/// answered as unknown and not touched. The replaced id is kept as `prev`
/// until `prev_until` (the server's clock plus ARGV[5] ms): presenting it
/// again before then is a retry, answered with the current id.
const ROTATE: &str = r"
local session = redis.call('HMGET', KEYS[1], 'user', 'jti', 'prev', 'prev_until')
local user, current, prev, prev_until = session[1], session[2], session[3], session[4]
if not current or user ~= ARGV[1] then return {'unknown'} end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if current == ARGV[2] then
  redis.call('HSET', KEYS[1], 'jti', ARGV[3], 'prev', ARGV[2], 'prev_until', now + tonumber(ARGV[5]))
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {'rotated'}
end
if prev == ARGV[2] and now < tonumber(prev_until) then return {'retried', current} end
redis.call('DEL', KEYS[1])
return {'reused'}
";

/// How long the token a rotation replaced still counts as a retry of that
/// rotation rather than a replay: long enough for a client to retry a
/// refresh answered `503` during a Redis failover, short enough that a
/// stolen token is rarely worth anything.
pub const DEFAULT_RETRY_GRACE: Duration = Duration::from_secs(10);

/// Deletes the session only if it belongs to ARGV[1].
const END: &str = r"
if redis.call('HGET', KEYS[1], 'user') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// [`SessionStore`] on Redis.
#[derive(Debug, Clone)]
pub struct RedisSessionStore {
    pool: RedisPool,
    rotate: Script,
    end: Script,
    retry_grace: Duration,
}

impl RedisSessionStore {
    pub fn new(pool: RedisPool) -> Self {
        Self::with_retry_grace(pool, DEFAULT_RETRY_GRACE)
    }

    /// With another retry grace than [`DEFAULT_RETRY_GRACE`]
    /// (`REFRESH_RETRY_GRACE_MS`).
    pub fn with_retry_grace(pool: RedisPool, retry_grace: Duration) -> Self {
        Self {
            pool,
            rotate: Script::new(ROTATE),
            end: Script::new(END),
            retry_grace,
        }
    }

    fn session_key(&self, session: SessionId) -> String {
        self.pool.key(&format!("session:{session}"))
    }

    fn revoked_key(&self, token: TokenId) -> String {
        self.pool.key(&format!("revoked-token:{token}"))
    }
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn create(&self, session: NewSession) -> Result<(), InfraError> {
        let mut conn = self.pool.get().await?;
        let key = self.session_key(session.id);
        redis::pipe()
            .atomic()
            .hset_multiple(
                &key,
                &[
                    ("user", session.user_id.to_string()),
                    ("jti", session.refresh_token_id.to_string()),
                ],
            )
            .ignore()
            .pexpire(&key, millis(session.ttl) as i64)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(error::from_redis)?;
        self.pool.replicated(&mut conn).await
    }

    async fn rotate(
        &self,
        session: SessionId,
        user: UserId,
        presented: TokenId,
        next: TokenId,
        ttl: Duration,
    ) -> Result<Rotation, InfraError> {
        let mut conn = self.pool.get().await?;
        let outcome: Vec<String> = self
            .rotate
            .key(self.session_key(session))
            .arg(user.to_string())
            .arg(presented.to_string())
            .arg(next.to_string())
            .arg(millis(ttl))
            // Not `millis`: a grace of 0 must stay 0 (strict), not 1 ms.
            .arg(u64::try_from(self.retry_grace.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut conn)
            .await
            .map_err(error::from_redis)?;
        let answer: Vec<&str> = outcome.iter().map(String::as_str).collect();
        let rotation = match answer.as_slice() {
            ["rotated"] => Rotation::Rotated,
            ["reused"] => Rotation::Reused,
            ["unknown"] => return Ok(Rotation::Unknown),
            ["retried", current] => {
                Rotation::Retried(TokenId::from_uuid(current.parse::<uuid::Uuid>().map_err(|e| {
                    InfraError::Unexpected(anyhow::Error::new(e).context("a session holds a malformed token id"))
                })?))
            }
            other => {
                return Err(InfraError::Unexpected(anyhow::anyhow!(
                    "rotate script answered {other:?}"
                )));
            }
        };
        // The new token id, a revocation on reuse, and the rotation a retry
        // repeats must all outlive a failover.
        self.pool.replicated(&mut conn).await?;
        Ok(rotation)
    }

    async fn end(&self, session: SessionId, user: UserId) -> Result<(), InfraError> {
        let mut conn = self.pool.get().await?;
        self.end
            .key(self.session_key(session))
            .arg(user.to_string())
            .invoke_async::<()>(&mut conn)
            .await
            .map_err(error::from_redis)?;
        self.pool.replicated(&mut conn).await
    }

    async fn revoke_access_token(&self, token: TokenId, ttl: Duration) -> Result<(), InfraError> {
        let mut conn = self.pool.get().await?;
        redis::cmd("SET")
            .arg(self.revoked_key(token))
            .arg(1)
            .arg("PX")
            .arg(millis(ttl))
            .query_async::<()>(&mut conn)
            .await
            .map_err(error::from_redis)?;
        self.pool.replicated(&mut conn).await
    }

    async fn check_access(&self, token: TokenId, session: SessionId, user: UserId) -> Result<AccessCheck, InfraError> {
        let mut conn = self.pool.get().await?;
        let (blacklisted, owner): (bool, Option<String>) = redis::pipe()
            .exists(self.revoked_key(token))
            .hget(self.session_key(session), "user")
            .query_async(&mut conn)
            .await
            .map_err(error::from_redis)?;
        Ok(match owner {
            _ if blacklisted => AccessCheck::Revoked,
            None => AccessCheck::Revoked,
            Some(owner) if owner == user.to_string() => AccessCheck::Granted,
            Some(_) => AccessCheck::WrongUser,
        })
    }
}
