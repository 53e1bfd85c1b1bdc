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

/// A place in the password hasher's queue, taken with
/// [`PasswordHasher::reserve`] before any work that must not happen when the
/// hash would be refused (counting a login attempt), then handed to the one
/// hash it was taken for.
///
/// Dropping an unused slot gives the place back. A hasher keeps the slot it
/// is given until the hash has really finished, even when the caller stops
/// waiting for it, so the queue bound also bounds the work in progress.
pub struct HashSlot {
    _guard: Box<dyn std::any::Any + Send>,
}

impl HashSlot {
    /// A slot that holds `guard` (whatever the hasher releases by dropping)
    /// until the slot is dropped.
    pub fn new(guard: impl Send + 'static) -> Self {
        Self {
            _guard: Box::new(guard),
        }
    }

    /// A slot that holds nothing: for hashers without a queue, and fakes.
    pub fn unbounded() -> Self {
        Self::new(())
    }
}

impl std::fmt::Debug for HashSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashSlot")
    }
}

/// Slow, salted password hashing. Implementations must not block the async
/// runtime (the work runs on a bounded blocking pool) and must bound the
/// hashes waiting for it.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync + std::fmt::Debug {
    /// Takes a place in the queue for one hash, without waiting.
    /// Errors: `Unavailable` when the queue is full: the caller should answer
    /// at once and let the client retry, rather than wait behind it.
    fn reserve(&self) -> Result<HashSlot, InfraError>;

    /// Hashes `password` in the place `slot` holds.
    async fn hash(&self, slot: HashSlot, password: &Password) -> Result<PasswordHash, InfraError>;

    /// Whether `password` matches `hash`. A malformed hash is `Unexpected`.
    async fn verify(&self, slot: HashSlot, password: &str, hash: &PasswordHash) -> Result<bool, InfraError>;

    /// Spends the same time as a real `verify` without any account, so an
    /// unknown email cannot be told from a wrong password by timing.
    async fn verify_dummy(&self, slot: HashSlot, password: &str) -> Result<(), InfraError>;
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
    /// It was the token the current one replaced moments ago (within the
    /// store's retry grace): a client retrying a rotation whose answer it
    /// never got (a `503`, a lost connection). Nothing changes; the current
    /// token id is handed back so the client gets a pair for it, and is not
    /// logged out by its own retry.
    Retried(TokenId),
    /// It was an older token of a live session: a replay. The session has
    /// been ended, so every token of it is now refused.
    Reused,
    /// The session does not exist (ended, revoked or expired), or it belongs
    /// to another user than the token's; either way it is left untouched.
    Unknown,
}

/// What the shared store says about an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessCheck {
    /// Its session is live and belongs to the token's user, and the token
    /// itself is not blacklisted.
    Granted,
    /// The token is blacklisted or its session has ended.
    Revoked,
    /// The session is live but belongs to another user: a validly signed
    /// token whose `sub` was not issued for its session (a leaked key).
    WrongUser,
}

/// Sessions and revocations shared by every API instance.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    async fn create(&self, session: NewSession) -> Result<(), InfraError>;

    /// Atomically: if the session belongs to `user` and `presented` is its
    /// current refresh token, replace it with `next` and extend the session
    /// by `ttl`; if `presented` is the token just replaced, within the
    /// store's retry grace, `Retried` with the current one; if it belongs to
    /// `user` and `presented` is older, end the session. A session of
    /// another user is `Unknown` and left as it is. Of concurrent rotations
    /// with one token exactly one gets `Rotated`.
    async fn rotate(
        &self,
        session: SessionId,
        user: UserId,
        presented: TokenId,
        next: TokenId,
        ttl: Duration,
    ) -> Result<Rotation, InfraError>;

    /// Ends the session if it belongs to `user`: its refresh token and
    /// access tokens stop working. A session of another user is left as it is.
    async fn end(&self, session: SessionId, user: UserId) -> Result<(), InfraError>;

    /// Blacklists one access token for `ttl` (its remaining life plus leeway).
    async fn revoke_access_token(&self, token: TokenId, ttl: Duration) -> Result<(), InfraError>;

    /// Whether access token `token` of `session`, issued to `user`, may be
    /// used: not blacklisted, its session live and that session `user`'s.
    /// One round trip.
    async fn check_access(&self, token: TokenId, session: SessionId, user: UserId) -> Result<AccessCheck, InfraError>;
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

/// What a client address is counted for by [`ClientThrottle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAction {
    LogIn,
    SignUp,
}

impl ClientAction {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LogIn => "login",
            Self::SignUp => "signup",
        }
    }
}

/// Counts attempts per client address, across every instance, beside the
/// per-account [`LoginThrottle`]: one client may not lock many accounts out
/// or flood signups into the password-hashing queue.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ClientThrottle: Send + Sync + std::fmt::Debug {
    /// Counts attempt `attempt` (an id the caller makes) of `action` from
    /// `client` and says whether it may proceed.
    async fn attempt(
        &self,
        action: ClientAction,
        client: std::net::IpAddr,
        attempt: uuid::Uuid,
    ) -> Result<LoginAttempt, InfraError>;

    /// Takes a counted attempt back (a login that succeeded does not count
    /// against its client).
    async fn withdraw(
        &self,
        action: ClientAction,
        client: std::net::IpAddr,
        attempt: uuid::Uuid,
    ) -> Result<(), InfraError>;
}
