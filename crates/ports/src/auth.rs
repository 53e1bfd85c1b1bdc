//! What authentication needs: accounts, password hashing, token signing,
//! shared sessions and login throttling.

use std::time::Duration;

use async_trait::async_trait;
use coffee_domain::{
    Email, Password, PasswordHash, SessionId, TokenClaims, TokenId, TokenKind, User, UserId, UserName,
};

use crate::InfraError;

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub email: Email,
    pub name: UserName,
    pub password_hash: PasswordHash,
}

/// What login needs to check a password.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user_id: UserId,
    pub password_hash: PasswordHash,
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// Another account has this email; decided by the store's unique index,
    /// so of two concurrent signups exactly one wins.
    #[error("the email is already registered")]
    EmailTaken,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Where accounts live.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait UserRepository: Send + Sync + std::fmt::Debug {
    /// Creates the user with a zero balance.
    /// Errors: `EmailTaken` when the email exists; `Infra` otherwise.
    async fn create(&self, user: NewUser) -> Result<User, CreateUserError>;

    /// The credentials of the account with this email, if any.
    async fn find_credentials(&self, email: &Email) -> Result<Option<Credentials>, InfraError>;

    /// The account with this id, if it exists.
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, InfraError>;
}

/// Slow, salted password hashing. Implementations must not block the async
/// runtime (the work runs on a bounded blocking pool).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync + std::fmt::Debug {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, InfraError>;

    /// Whether `password` matches `hash`. A malformed hash is `Unexpected`.
    async fn verify(&self, password: &str, hash: &PasswordHash) -> Result<bool, InfraError>;

    /// Spends the same time as a real `verify` without any account, so an
    /// unknown email cannot be told from a wrong password by timing.
    async fn verify_dummy(&self, password: &str) -> Result<(), InfraError>;
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    /// Forged, malformed, wrong algorithm, wrong issuer or audience, or the
    /// wrong kind (an access token where a refresh token is expected).
    #[error("the token is not valid")]
    Invalid,
}

/// Signs and checks tokens. Pure CPU work, so synchronous.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait TokenCodec: Send + Sync + std::fmt::Debug {
    fn encode(&self, claims: &TokenClaims) -> Result<String, InfraError>;

    /// Checks signature, algorithm, issuer, audience, expiry (with a few
    /// seconds of leeway) and that the token is of `kind`.
    fn decode(&self, token: &str, kind: TokenKind) -> Result<TokenClaims, TokenError>;
}

/// A new login session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub id: SessionId,
    pub user_id: UserId,
    /// The `jti` of the one refresh token currently valid for the session.
    pub refresh_token_id: TokenId,
    /// How long the session lives without a refresh.
    pub ttl: Duration,
}

/// What presenting a refresh token did to its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// It was the session's current token; the new one replaces it.
    Rotated,
    /// It was an older token of a live session: a replay. The session has
    /// been ended, so every token of it is now refused.
    Reused,
    /// The session does not exist (ended, revoked or expired).
    Unknown,
}

/// Sessions and revocations shared by every API instance.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    async fn create(&self, session: NewSession) -> Result<(), InfraError>;

    /// Atomically: if `presented` is the session's current refresh token,
    /// replace it with `next` and extend the session by `ttl`; if it is not,
    /// end the session. Of concurrent rotations with one token exactly one
    /// gets `Rotated`.
    async fn rotate(
        &self,
        session: SessionId,
        presented: TokenId,
        next: TokenId,
        ttl: Duration,
    ) -> Result<Rotation, InfraError>;

    /// Ends the session: its refresh token and access tokens stop working.
    async fn end(&self, session: SessionId) -> Result<(), InfraError>;

    /// Blacklists one access token for `ttl` (its remaining life plus leeway).
    async fn revoke_access_token(&self, token: TokenId, ttl: Duration) -> Result<(), InfraError>;

    /// Whether an access token may no longer be used: it is blacklisted or
    /// its session has ended. One round trip.
    async fn is_revoked(&self, token: TokenId, session: SessionId) -> Result<bool, InfraError>;
}

/// Whether a login attempt may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAttempt {
    Allowed,
    /// Too many attempts in the window; try again after this long.
    Blocked {
        retry_after: Duration,
    },
}

/// Counts login attempts per account, across every instance.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait LoginThrottle: Send + Sync + std::fmt::Debug {
    /// Counts one attempt for `email` (normalised) and says whether it may
    /// proceed. Counting before the password is checked means a burst of
    /// concurrent guesses cannot slip past the limit.
    async fn attempt(&self, email: &str) -> Result<LoginAttempt, InfraError>;

    /// Forgets the attempts after a successful login.
    async fn reset(&self, email: &str) -> Result<(), InfraError>;
}
