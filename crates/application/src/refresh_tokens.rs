//! Use case: trade a refresh token for a new pair, rotating it.

use coffee_domain::{TokenKind, TokenPair};
use coffee_ports::{InfraError, Rotation, TokenError};

use crate::token_issuer::TokenIssuer;
use std::sync::Arc;

use coffee_ports::SessionStore;

/// Why no new pair was issued.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh token has expired")]
    Expired,
    /// Forged, malformed, an access token, its session has ended, or its
    /// session belongs to another user than its `sub`.
    #[error("the refresh token is not valid")]
    Invalid,
    /// An already-rotated token was presented: its session is now revoked.
    #[error("the refresh token was already used")]
    Reused,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Rotates the session's refresh token atomically in the shared store, only
/// if the session belongs to the token's `sub`.
#[derive(Clone, Debug)]
pub struct RefreshTokens {
    sessions: Arc<dyn SessionStore>,
    issuer: TokenIssuer,
}

impl RefreshTokens {
    pub fn new(sessions: Arc<dyn SessionStore>, issuer: TokenIssuer) -> Self {
        Self { sessions, issuer }
    }

    #[tracing::instrument(name = "refresh_tokens", skip_all)]
    pub async fn execute(&self, refresh_token: &str) -> Result<TokenPair, RefreshError> {
        let claims = self
            .issuer
            .codec()
            .decode(refresh_token, TokenKind::Refresh)
            .map_err(|e| match e {
                TokenError::Expired => RefreshError::Expired,
                TokenError::Invalid => RefreshError::Invalid,
            })?;
        let next = TokenIssuer::new_token_id();
        let rotation = self
            .sessions
            .rotate(
                claims.session_id,
                claims.user_id,
                claims.token_id,
                next,
                self.issuer.refresh_ttl(),
            )
            .await?;
        match rotation {
            Rotation::Rotated => Ok(self.issuer.issue(claims.user_id, claims.session_id, next)?),
            // The retry of a rotation whose answer was lost: a pair for the
            // token that rotation made current.
            Rotation::Retried(current) => Ok(self.issuer.issue(claims.user_id, claims.session_id, current)?),
            Rotation::Reused => {
                tracing::warn!(session = %claims.session_id, user = %claims.user_id, "refresh token reuse: session revoked");
                Err(RefreshError::Reused)
            }
            Rotation::Unknown => Err(RefreshError::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{REFRESH_TTL, encoding_codec, fixed_now, issuer};
    use coffee_domain::{SessionId, TokenClaims, TokenId, UserId};
    use coffee_ports::auth::{MockSessionStore, MockTokenCodec};
    use uuid::Uuid;

    const USER: Uuid = Uuid::from_u128(1);
    const SESSION: Uuid = Uuid::from_u128(11);
    const PRESENTED: Uuid = Uuid::from_u128(12);

    fn codec_decoding(result: Result<TokenKind, TokenError>) -> MockTokenCodec {
        let mut codec = encoding_codec();
        codec.expect_decode().returning(move |_, kind| {
            let token_kind = result?;
            assert_eq!(kind, TokenKind::Refresh, "refresh must ask for a refresh token");
            Ok(TokenClaims {
                user_id: UserId::from_uuid(USER),
                session_id: SessionId::from_uuid(SESSION),
                token_id: TokenId::from_uuid(PRESENTED),
                kind: token_kind,
                issued_at: fixed_now(),
                expires_at: fixed_now(),
            })
        });
        codec
    }

    fn sessions_answering(rotation: Rotation) -> MockSessionStore {
        let mut sessions = MockSessionStore::new();
        sessions
            .expect_rotate()
            .withf(|s, user, presented, next, ttl| {
                s.as_uuid() == SESSION
                    && user.as_uuid() == USER
                    && presented.as_uuid() == PRESENTED
                    && next.as_uuid() != PRESENTED
                    && *ttl == REFRESH_TTL
            })
            .times(1)
            .returning(move |_, _, _, _, _| Ok(rotation));
        sessions
    }

    #[tokio::test]
    async fn the_current_token_is_rotated_into_a_new_pair() {
        let use_case = RefreshTokens::new(
            Arc::new(sessions_answering(Rotation::Rotated)),
            issuer(codec_decoding(Ok(TokenKind::Refresh))),
        );

        let pair = use_case.execute("refresh-token").await.expect("rotated");

        assert!(
            !pair.refresh_token.contains(&PRESENTED.to_string()),
            "a new refresh token id"
        );
    }

    #[tokio::test]
    async fn a_retried_rotation_gets_a_pair_for_the_token_it_made_current() {
        let current = TokenId::from_uuid(Uuid::from_u128(13));
        let use_case = RefreshTokens::new(
            Arc::new(sessions_answering(Rotation::Retried(current))),
            issuer(codec_decoding(Ok(TokenKind::Refresh))),
        );

        let pair = use_case.execute("refresh-token").await.expect("a pair");

        assert!(
            pair.refresh_token.contains(&current.as_uuid().to_string()),
            "the refresh token carries the current id: {}",
            pair.refresh_token
        );
    }

    #[tokio::test]
    async fn an_already_rotated_token_is_reuse() {
        let use_case = RefreshTokens::new(
            Arc::new(sessions_answering(Rotation::Reused)),
            issuer(codec_decoding(Ok(TokenKind::Refresh))),
        );

        let err = use_case.execute("old-token").await.expect_err("reuse");

        assert!(matches!(err, RefreshError::Reused));
    }

    #[tokio::test]
    async fn a_token_of_an_ended_session_is_invalid() {
        let use_case = RefreshTokens::new(
            Arc::new(sessions_answering(Rotation::Unknown)),
            issuer(codec_decoding(Ok(TokenKind::Refresh))),
        );

        let err = use_case.execute("token").await.expect_err("ended");

        assert!(matches!(err, RefreshError::Invalid));
    }

    #[tokio::test]
    async fn a_token_whose_session_belongs_to_another_user_is_invalid_and_issues_nothing() {
        // The store answers `Unknown` for a session of another user than the
        // one passed; the codec must not be asked to sign a new pair.
        let mut codec = MockTokenCodec::new();
        codec.expect_encode().never();
        codec.expect_decode().returning(|_, kind| {
            Ok(TokenClaims {
                user_id: UserId::from_uuid(USER),
                session_id: SessionId::from_uuid(SESSION),
                token_id: TokenId::from_uuid(PRESENTED),
                kind,
                issued_at: fixed_now(),
                expires_at: fixed_now(),
            })
        });
        let use_case = RefreshTokens::new(Arc::new(sessions_answering(Rotation::Unknown)), issuer(codec));

        let err = use_case.execute("token").await.expect_err("not the session's user");

        assert!(matches!(err, RefreshError::Invalid));
    }

    #[tokio::test]
    async fn expired_and_invalid_tokens_never_reach_the_store() {
        for (decoded, expected_expired) in [(TokenError::Expired, true), (TokenError::Invalid, false)] {
            let mut sessions = MockSessionStore::new();
            sessions.expect_rotate().never();
            let use_case = RefreshTokens::new(Arc::new(sessions), issuer(codec_decoding(Err(decoded))));

            let err = use_case.execute("token").await.expect_err("refused");

            assert_eq!(matches!(err, RefreshError::Expired), expected_expired, "{err:?}");
            assert_eq!(matches!(err, RefreshError::Invalid), !expected_expired, "{err:?}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_store_is_infrastructure() {
        let mut sessions = MockSessionStore::new();
        sessions
            .expect_rotate()
            .returning(|_, _, _, _, _| Err(InfraError::unavailable("cache", anyhow::anyhow!("down"))));
        let use_case = RefreshTokens::new(Arc::new(sessions), issuer(codec_decoding(Ok(TokenKind::Refresh))));

        let err = use_case.execute("token").await.expect_err("down");

        assert!(matches!(err, RefreshError::Infra(ref e) if e.is_unavailable()));
    }
}
