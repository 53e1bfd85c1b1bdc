//! Signing a fresh token pair: shared by login and refresh.

use std::sync::Arc;
use std::time::Duration;

use coffee_domain::{SessionId, TokenClaims, TokenId, TokenKind, TokenPair, UserId};
use coffee_ports::{Clock, InfraError, TokenCodec};
use uuid::Uuid;

/// Issues access and refresh tokens with the configured lifetimes.
#[derive(Clone, Debug)]
pub struct TokenIssuer {
    codec: Arc<dyn TokenCodec>,
    clock: Arc<dyn Clock>,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl TokenIssuer {
    pub fn new(codec: Arc<dyn TokenCodec>, clock: Arc<dyn Clock>, access_ttl: Duration, refresh_ttl: Duration) -> Self {
        Self {
            codec,
            clock,
            access_ttl,
            refresh_ttl,
        }
    }

    pub fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }

    pub fn codec(&self) -> &dyn TokenCodec {
        self.codec.as_ref()
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// A new random token id.
    pub fn new_token_id() -> TokenId {
        TokenId::from_uuid(Uuid::new_v4())
    }

    /// Signs a pair for `session`; the refresh token gets the id `refresh_id`
    /// (already recorded in the session store by the caller).
    pub fn issue(&self, user: UserId, session: SessionId, refresh_id: TokenId) -> Result<TokenPair, InfraError> {
        let now = self.clock.now();
        let claims = |kind, token_id, ttl| TokenClaims {
            user_id: user,
            session_id: session,
            token_id,
            kind,
            issued_at: now,
            expires_at: now + ttl,
        };
        let access = claims(TokenKind::Access, Self::new_token_id(), self.access_ttl);
        let refresh = claims(TokenKind::Refresh, refresh_id, self.refresh_ttl);
        Ok(TokenPair {
            access_token: self.codec.encode(&access)?,
            refresh_token: self.codec.encode(&refresh)?,
            access_expires_in: self.access_ttl,
            refresh_expires_in: self.refresh_ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    #[test]
    fn a_pair_carries_both_lifetimes_and_the_given_refresh_id() {
        let refresh_id = TokenIssuer::new_token_id();
        let pair = issuer(encoding_codec())
            .issue(
                UserId::from_uuid(Uuid::nil()),
                SessionId::from_uuid(Uuid::nil()),
                refresh_id,
            )
            .expect("issued");

        assert_eq!(pair.refresh_token, format!("refresh:{refresh_id}"));
        assert!(pair.access_token.starts_with("access:"));
        assert_eq!(pair.access_expires_in, ACCESS_TTL);
        assert_eq!(pair.refresh_expires_in, REFRESH_TTL);
    }

    #[test]
    fn a_signing_failure_is_reported() {
        let mut codec = coffee_ports::auth::MockTokenCodec::new();
        codec
            .expect_encode()
            .returning(|_| Err(InfraError::Unexpected(anyhow::anyhow!("bad key"))));
        let result = issuer(codec).issue(
            UserId::from_uuid(Uuid::nil()),
            SessionId::from_uuid(Uuid::nil()),
            TokenIssuer::new_token_id(),
        );
        assert!(result.is_err());
    }
}
