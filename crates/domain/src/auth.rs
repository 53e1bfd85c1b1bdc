//! Sessions and tokens: the values behind login, refresh and logout.

use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::user::UserId;

/// Clock skew tolerated when checking a token's expiry, and added to the
/// lifetime of a revocation so it outlives the token it revokes.
pub const TOKEN_LEEWAY: Duration = Duration::from_secs(5);

/// One login: the access and refresh tokens it issues share this id, so
/// revoking the session revokes them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(Uuid);

/// A token's own id (`jti`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenId(Uuid);

macro_rules! uuid_newtype {
    ($name:ident) => {
        impl $name {
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_newtype!(SessionId);
uuid_newtype!(TokenId);

/// Which of the pair a token is; neither is accepted in the other's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
        }
    }
}

/// What a token says, once its signature and claims have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub token_id: TokenId,
    pub kind: TokenKind,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl TokenClaims {
    /// How long until the token expires (zero once it has).
    pub fn remaining(&self, now: OffsetDateTime) -> Duration {
        Duration::try_from(self.expires_at - now).unwrap_or(Duration::ZERO)
    }
}

/// The result of a login or a refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub access_expires_in: Duration,
    pub refresh_expires_in: Duration,
}

/// The caller of a request, proven by a valid, unrevoked access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub token_id: TokenId,
    pub expires_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_lifetime_never_goes_negative() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let claims = TokenClaims {
            user_id: UserId::from_uuid(Uuid::nil()),
            session_id: SessionId::from_uuid(Uuid::nil()),
            token_id: TokenId::from_uuid(Uuid::nil()),
            kind: TokenKind::Access,
            issued_at: now,
            expires_at: now + Duration::from_secs(60),
        };
        assert_eq!(claims.remaining(now), Duration::from_secs(60));
        assert_eq!(claims.remaining(now + Duration::from_secs(120)), Duration::ZERO);
    }
}
