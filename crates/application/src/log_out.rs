//! Use case: end the caller's session and revoke its tokens.

use std::sync::Arc;

use coffee_domain::{Principal, TOKEN_LEEWAY, TokenKind};
use coffee_ports::{Clock, InfraError, SessionStore, TokenCodec};

/// Why the logout could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum LogOutError {
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Blacklists the caller's access token until it would have expired (plus the
/// leeway) and ends its session, which kills the session's refresh token and
/// every other access token of it, on every instance.
#[derive(Clone, Debug)]
pub struct LogOut {
    codec: Arc<dyn TokenCodec>,
    sessions: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
}

impl LogOut {
    pub fn new(codec: Arc<dyn TokenCodec>, sessions: Arc<dyn SessionStore>, clock: Arc<dyn Clock>) -> Self {
        Self { codec, sessions, clock }
    }

    /// `refresh_token`, when given and valid for the same user, ends that
    /// token's session too (a client that kept a second login), provided the
    /// store confirms the session is that user's. An invalid one, or one
    /// naming another user's session, is ignored: logout succeeds for what
    /// the caller proved.
    #[tracing::instrument(name = "log_out", skip_all, fields(user = %principal.user_id))]
    pub async fn execute(&self, principal: &Principal, refresh_token: Option<&str>) -> Result<(), LogOutError> {
        let remaining = time::Duration::max(principal.expires_at - self.clock.now(), time::Duration::ZERO);
        let ttl = std::time::Duration::try_from(remaining).unwrap_or_default() + TOKEN_LEEWAY;
        // The caller's own session ends last but one: until then a failure
        // (`503`) leaves its access token working, so the client's retry
        // finds everything still to do. Once it has ended, every token of it
        // is refused (an access token needs its session), and a retry that
        // gets `401` is right: nothing is left to revoke.
        if let Some(claims) = refresh_token.and_then(|t| self.codec.decode(t, TokenKind::Refresh).ok())
            && claims.user_id == principal.user_id
            && claims.session_id != principal.session_id
        {
            self.sessions.end(claims.session_id, principal.user_id).await?;
        }
        self.sessions.end(principal.session_id, principal.user_id).await?;
        self.sessions.revoke_access_token(principal.token_id, ttl).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{clock, fixed_now};
    use coffee_domain::{SessionId, TokenClaims, TokenId, UserId};
    use coffee_ports::TokenError;
    use coffee_ports::auth::{MockSessionStore, MockTokenCodec};
    use std::time::Duration;
    use uuid::Uuid;

    fn principal() -> Principal {
        Principal {
            user_id: UserId::from_uuid(Uuid::from_u128(1)),
            session_id: SessionId::from_uuid(Uuid::from_u128(2)),
            token_id: TokenId::from_uuid(Uuid::from_u128(3)),
            expires_at: fixed_now() + Duration::from_secs(600),
        }
    }

    fn codec_for(user: u128, session: u128) -> MockTokenCodec {
        let mut codec = MockTokenCodec::new();
        codec.expect_decode().returning(move |token, kind| {
            if token != "refresh" {
                return Err(TokenError::Invalid);
            }
            Ok(TokenClaims {
                user_id: UserId::from_uuid(Uuid::from_u128(user)),
                session_id: SessionId::from_uuid(Uuid::from_u128(session)),
                token_id: TokenId::from_uuid(Uuid::from_u128(9)),
                kind,
                issued_at: fixed_now(),
                expires_at: fixed_now(),
            })
        });
        codec
    }

    #[tokio::test]
    async fn the_access_token_is_blacklisted_for_its_remaining_life_plus_leeway_and_the_session_ended() {
        let mut sessions = MockSessionStore::new();
        sessions
            .expect_revoke_access_token()
            .withf(|t, ttl| t.as_uuid() == Uuid::from_u128(3) && *ttl == Duration::from_secs(600) + TOKEN_LEEWAY)
            .times(1)
            .returning(|_, _| Ok(()));
        sessions
            .expect_end()
            .withf(|s, u| s.as_uuid() == Uuid::from_u128(2) && u.as_uuid() == Uuid::from_u128(1))
            .times(1)
            .returning(|_, _| Ok(()));

        LogOut::new(Arc::new(codec_for(1, 2)), Arc::new(sessions), clock())
            .execute(&principal(), None)
            .await
            .expect("logged out");
    }

    #[tokio::test]
    async fn a_refresh_token_of_another_session_of_the_same_user_is_ended_too() {
        let mut sessions = MockSessionStore::new();
        sessions.expect_revoke_access_token().returning(|_, _| Ok(()));
        sessions
            .expect_end()
            .withf(|s, _| s.as_uuid() == Uuid::from_u128(2))
            .times(1)
            .returning(|_, _| Ok(()));
        // The store is told whose session it must be, so a token signed with
        // a leaked key cannot end a session of another user.
        sessions
            .expect_end()
            .withf(|s, u| s.as_uuid() == Uuid::from_u128(5) && u.as_uuid() == Uuid::from_u128(1))
            .times(1)
            .returning(|_, _| Ok(()));

        LogOut::new(Arc::new(codec_for(1, 5)), Arc::new(sessions), clock())
            .execute(&principal(), Some("refresh"))
            .await
            .expect("logged out");
    }

    #[tokio::test]
    async fn another_users_or_an_invalid_refresh_token_is_ignored() {
        for (codec, token) in [(codec_for(99, 5), "refresh"), (codec_for(1, 5), "garbage")] {
            let mut sessions = MockSessionStore::new();
            sessions.expect_revoke_access_token().returning(|_, _| Ok(()));
            sessions.expect_end().times(1).returning(|_, _| Ok(()));

            LogOut::new(Arc::new(codec), Arc::new(sessions), clock())
                .execute(&principal(), Some(token))
                .await
                .expect("logged out");
        }
    }

    #[tokio::test]
    async fn a_store_failure_is_reported_so_the_client_can_retry() {
        let mut sessions = MockSessionStore::new();
        sessions
            .expect_end()
            .returning(|_, _| Err(InfraError::unavailable("cache", anyhow::anyhow!("refused"))));
        sessions.expect_revoke_access_token().never();

        let err = LogOut::new(Arc::new(codec_for(1, 2)), Arc::new(sessions), clock())
            .execute(&principal(), None)
            .await
            .expect_err("down");

        assert!(matches!(err, LogOutError::Infra(ref e) if e.is_unavailable()));
    }

    /// A retry must still be able to authenticate with the access token:
    /// nothing that revokes it happens before every session is ended.
    #[tokio::test]
    async fn the_callers_token_is_revoked_only_once_every_session_has_ended() {
        let other_session = SessionId::from_uuid(Uuid::from_u128(9));
        let mut sessions = MockSessionStore::new();
        sessions
            .expect_end()
            .withf(move |session, _| *session == other_session)
            .times(1)
            .returning(|_, _| Err(InfraError::unavailable("cache", anyhow::anyhow!("failover"))));
        sessions.expect_revoke_access_token().never();

        let err = LogOut::new(Arc::new(codec_for(1, 9)), Arc::new(sessions), clock())
            .execute(&principal(), Some("refresh"))
            .await
            .expect_err("down");

        assert!(matches!(err, LogOutError::Infra(ref e) if e.is_unavailable()));
    }
}
