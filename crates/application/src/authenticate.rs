//! Use case: who is calling? Checks an access token on every protected route.

use std::sync::Arc;

use coffee_domain::{Principal, TokenKind};
use coffee_ports::{AccessCheck, InfraError, SessionStore, TokenCodec, TokenError};

/// Why a request is not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticateError {
    #[error("the access token has expired")]
    Expired,
    /// Forged, malformed, a refresh token, revoked, or of a session that
    /// belongs to another user than its `sub`.
    #[error("the access token is not valid")]
    Invalid,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Verifies signature, expiry and kind, then asks the shared store whether
/// the token or its session has been revoked (so a logout on one instance is
/// honoured by all) and whether the session is the `sub`'s own (so a leaked
/// signing key does not turn one live session into every account).
#[derive(Clone, Debug)]
pub struct Authenticate {
    codec: Arc<dyn TokenCodec>,
    sessions: Arc<dyn SessionStore>,
}

impl Authenticate {
    pub fn new(codec: Arc<dyn TokenCodec>, sessions: Arc<dyn SessionStore>) -> Self {
        Self { codec, sessions }
    }

    pub async fn execute(&self, access_token: &str) -> Result<Principal, AuthenticateError> {
        let claims = self
            .codec
            .decode(access_token, TokenKind::Access)
            .map_err(|e| match e {
                TokenError::Expired => AuthenticateError::Expired,
                TokenError::Invalid => AuthenticateError::Invalid,
            })?;
        match self
            .sessions
            .check_access(claims.token_id, claims.session_id, claims.user_id)
            .await?
        {
            AccessCheck::Granted => {}
            AccessCheck::Revoked => return Err(AuthenticateError::Invalid),
            AccessCheck::WrongUser => {
                tracing::warn!(
                    session = %claims.session_id,
                    user = %claims.user_id,
                    "a validly signed access token names another user than its session's"
                );
                return Err(AuthenticateError::Invalid);
            }
        }
        Ok(Principal {
            user_id: claims.user_id,
            session_id: claims.session_id,
            token_id: claims.token_id,
            expires_at: claims.expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffee_domain::{SessionId, TokenClaims, TokenId, UserId};
    use coffee_ports::auth::{MockSessionStore, MockTokenCodec};
    use time::OffsetDateTime;
    use uuid::Uuid;

    fn codec(result: Result<(), TokenError>) -> MockTokenCodec {
        let mut codec = MockTokenCodec::new();
        codec.expect_decode().returning(move |_, kind| {
            result?;
            assert_eq!(kind, TokenKind::Access, "protected routes take access tokens only");
            Ok(TokenClaims {
                user_id: UserId::from_uuid(Uuid::from_u128(1)),
                session_id: SessionId::from_uuid(Uuid::from_u128(2)),
                token_id: TokenId::from_uuid(Uuid::from_u128(3)),
                kind,
                issued_at: OffsetDateTime::UNIX_EPOCH,
                expires_at: OffsetDateTime::UNIX_EPOCH,
            })
        });
        codec
    }

    /// A store answering `check` for the token, session and user the codec
    /// decodes, and nothing else.
    fn sessions(check: Result<AccessCheck, ()>) -> MockSessionStore {
        let mut sessions = MockSessionStore::new();
        sessions
            .expect_check_access()
            .withf(|token, session, user| {
                *token == TokenId::from_uuid(Uuid::from_u128(3))
                    && *session == SessionId::from_uuid(Uuid::from_u128(2))
                    && *user == UserId::from_uuid(Uuid::from_u128(1))
            })
            .times(1)
            .returning(move |_, _, _| check.map_err(|()| InfraError::unavailable("cache", anyhow::anyhow!("refused"))));
        sessions
    }

    #[tokio::test]
    async fn a_valid_unrevoked_token_names_the_caller() {
        let principal = Authenticate::new(Arc::new(codec(Ok(()))), Arc::new(sessions(Ok(AccessCheck::Granted))))
            .execute("token")
            .await
            .expect("authenticated");
        assert_eq!(principal.user_id, UserId::from_uuid(Uuid::from_u128(1)));
        assert_eq!(principal.session_id, SessionId::from_uuid(Uuid::from_u128(2)));
    }

    #[tokio::test]
    async fn a_revoked_token_is_invalid() {
        let err = Authenticate::new(Arc::new(codec(Ok(()))), Arc::new(sessions(Ok(AccessCheck::Revoked))))
            .execute("token")
            .await
            .expect_err("revoked");
        assert!(matches!(err, AuthenticateError::Invalid));
    }

    #[tokio::test]
    async fn a_token_whose_session_belongs_to_another_user_is_invalid() {
        let err = Authenticate::new(Arc::new(codec(Ok(()))), Arc::new(sessions(Ok(AccessCheck::WrongUser))))
            .execute("token")
            .await
            .expect_err("another user's session");
        assert!(matches!(err, AuthenticateError::Invalid));
    }

    #[tokio::test]
    async fn expired_and_forged_tokens_are_told_apart_without_asking_the_store() {
        let mut store = MockSessionStore::new();
        store.expect_check_access().never();
        let store = Arc::new(store);
        let expired = Authenticate::new(Arc::new(codec(Err(TokenError::Expired))), store.clone())
            .execute("t")
            .await;
        let forged = Authenticate::new(Arc::new(codec(Err(TokenError::Invalid))), store)
            .execute("t")
            .await;
        assert!(matches!(expired, Err(AuthenticateError::Expired)));
        assert!(matches!(forged, Err(AuthenticateError::Invalid)));
    }

    #[tokio::test]
    async fn an_unreachable_store_fails_closed() {
        let err = Authenticate::new(Arc::new(codec(Ok(()))), Arc::new(sessions(Err(()))))
            .execute("token")
            .await
            .expect_err("fails closed");
        assert!(matches!(err, AuthenticateError::Infra(ref e) if e.is_unavailable()));
    }
}
