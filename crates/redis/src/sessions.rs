//! Login sessions and revoked access tokens, shared by every instance.
//!
//! Keys (under the configured prefix):
//! - `session:{sid}`: hash `{user, jti}` holding the one refresh token id
//!   currently valid for the session; expires with the refresh token.
//! - `revoked-token:{jti}`: a blacklisted access token, kept until the token
//!   would have expired plus the leeway.
//!
//! An access token is accepted only while its session key exists and its own
//! id is not blacklisted, so ending a session (logout, refresh-token reuse)
//! revokes every token of it at once.

use std::time::Duration;

use async_trait::async_trait;
use coffee_domain::{SessionId, TokenId};
use coffee_ports::{InfraError, NewSession, Rotation, SessionStore};
use deadpool_redis::redis::{self, Script};

use crate::error;
use crate::pool::RedisPool;

/// Compare-and-swap of the session's refresh token id, or revocation on a
/// mismatch, in one atomic step.
const ROTATE: &str = r"
local current = redis.call('HGET', KEYS[1], 'jti')
if not current then return 0 end
if current == ARGV[1] then
  redis.call('HSET', KEYS[1], 'jti', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
redis.call('DEL', KEYS[1])
return 2
";

/// [`SessionStore`] on Redis.
#[derive(Debug, Clone)]
pub struct RedisSessionStore {
    pool: RedisPool,
    rotate: Script,
}

impl RedisSessionStore {
    pub fn new(pool: RedisPool) -> Self {
        Self {
            pool,
            rotate: Script::new(ROTATE),
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
            .map_err(error::from_redis)
    }

    async fn rotate(
        &self,
        session: SessionId,
        presented: TokenId,
        next: TokenId,
        ttl: Duration,
    ) -> Result<Rotation, InfraError> {
        let mut conn = self.pool.get().await?;
        let outcome: i64 = self
            .rotate
            .key(self.session_key(session))
            .arg(presented.to_string())
            .arg(next.to_string())
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(error::from_redis)?;
        match outcome {
            1 => Ok(Rotation::Rotated),
            2 => Ok(Rotation::Reused),
            0 => Ok(Rotation::Unknown),
            other => Err(InfraError::Unexpected(anyhow::anyhow!(
                "rotate script answered {other}"
            ))),
        }
    }

    async fn end(&self, session: SessionId) -> Result<(), InfraError> {
        let mut conn = self.pool.get().await?;
        redis::cmd("DEL")
            .arg(self.session_key(session))
            .query_async::<()>(&mut conn)
            .await
            .map_err(error::from_redis)
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
            .map_err(error::from_redis)
    }

    async fn is_revoked(&self, token: TokenId, session: SessionId) -> Result<bool, InfraError> {
        let mut conn = self.pool.get().await?;
        let (blacklisted, session_alive): (bool, bool) = redis::pipe()
            .exists(self.revoked_key(token))
            .exists(self.session_key(session))
            .query_async(&mut conn)
            .await
            .map_err(error::from_redis)?;
        Ok(blacklisted || !session_alive)
    }
}
