//! Use case: exchange email and password for a token pair.

use std::sync::Arc;
use std::time::Duration;

use coffee_domain::{Email, SessionId, TokenPair};
use coffee_ports::{
    ClientAction, ClientThrottle, InfraError, LoginAttempt, LoginThrottle, NewSession, PasswordHasher, SessionStore,
    UserRepository,
};
use uuid::Uuid;

use crate::token_issuer::TokenIssuer;

/// A login request, as typed. The password is never printed.
#[derive(Clone)]
pub struct LogInCommand {
    pub email: String,
    pub password: String,
    /// Where the request comes from (`None` when unknown: not counted).
    pub client: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for LogInCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogInCommand")
            .field("email", &self.email)
            .field("password", &"[redacted]")
            .field("client", &self.client)
            .finish()
    }
}

/// Why no tokens were issued.
#[derive(Debug, thiserror::Error)]
pub enum LogInError {
    /// Unknown email or wrong password: deliberately indistinguishable.
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("too many login attempts")]
    TooManyAttempts { retry_after: Duration },
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Looks the account up, takes a place in the hashing queue, counts the
/// attempt against its client's and its account's throttles, then checks the
/// password and opens a session. A successful login does not count against
/// its client (only failures do), and clears its account's count.
#[derive(Clone, Debug)]
pub struct LogIn {
    users: Arc<dyn UserRepository>,
    hasher: Arc<dyn PasswordHasher>,
    throttle: Arc<dyn LoginThrottle>,
    clients: Arc<dyn ClientThrottle>,
    sessions: Arc<dyn SessionStore>,
    issuer: TokenIssuer,
}

/// The ports [`LogIn`] uses.
#[derive(Clone, Debug)]
pub struct LogInPorts {
    pub users: Arc<dyn UserRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub throttle: Arc<dyn LoginThrottle>,
    pub clients: Arc<dyn ClientThrottle>,
    pub sessions: Arc<dyn SessionStore>,
}

impl LogIn {
    pub fn new(ports: LogInPorts, issuer: TokenIssuer) -> Self {
        Self {
            users: ports.users,
            hasher: ports.hasher,
            throttle: ports.throttle,
            clients: ports.clients,
            sessions: ports.sessions,
            issuer,
        }
    }

    #[tracing::instrument(name = "log_in", skip_all)]
    pub async fn execute(&self, command: LogInCommand) -> Result<TokenPair, LogInError> {
        // The account is looked up before the attempt is counted: a database
        // outage answers 503 without using up the user's attempts (the soak
        // test saw customers locked out for 15 minutes by a busy pool).
        // An address that cannot be an email is treated like an unknown one.
        let credentials = match Email::parse(&command.email) {
            Ok(email) => self.users.find_credentials(&email).await?,
            Err(_) => None,
        };
        // A place in the hashing queue is taken before the attempt is counted:
        // when the queue is full the login is refused at once (503) without
        // using up one of the user's attempts.
        let slot = self.hasher.reserve()?;
        // The client first: a client over its limit uses up no account's
        // attempts (else one client could lock any account out).
        let attempt = Uuid::new_v4();
        if let Some(client) = command.client
            && let LoginAttempt::Blocked { retry_after } =
                self.clients.attempt(ClientAction::LogIn, client, attempt).await?
        {
            tracing::warn!(%client, "login throttled for this client address");
            return Err(LogInError::TooManyAttempts { retry_after });
        }
        let throttle_key = Email::normalize(&command.email);
        if let LoginAttempt::Blocked { retry_after } = self.throttle.attempt(&throttle_key).await? {
            tracing::warn!("login throttled");
            return Err(LogInError::TooManyAttempts { retry_after });
        }
        let Some(credentials) = credentials else {
            self.hasher.verify_dummy(slot, &command.password).await?;
            return Err(LogInError::InvalidCredentials);
        };
        if !self
            .hasher
            .verify(slot, &command.password, &credentials.password_hash)
            .await?
        {
            return Err(LogInError::InvalidCredentials);
        }
        self.throttle.reset(&throttle_key).await?;
        if let Some(client) = command.client {
            self.clients.withdraw(ClientAction::LogIn, client, attempt).await?;
        }

        let session = SessionId::from_uuid(Uuid::new_v4());
        let refresh_id = TokenIssuer::new_token_id();
        self.sessions
            .create(NewSession {
                id: session,
                user_id: credentials.user_id,
                refresh_token_id: refresh_id,
                ttl: self.issuer.refresh_ttl(),
            })
            .await?;
        Ok(self.issuer.issue(credentials.user_id, session, refresh_id)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{REFRESH_TTL, encoding_codec, issuer};
    use coffee_domain::{PasswordHash, UserId};
    use coffee_ports::auth::{
        MockClientThrottle, MockLoginThrottle, MockPasswordHasher, MockSessionStore, MockUserRepository,
    };
    use coffee_ports::{Credentials, HashSlot};

    const USER: Uuid = Uuid::from_u128(7);

    struct Fakes {
        users: MockUserRepository,
        hasher: MockPasswordHasher,
        throttle: MockLoginThrottle,
        clients: MockClientThrottle,
        sessions: MockSessionStore,
    }

    impl Fakes {
        fn new() -> Self {
            let mut throttle = MockLoginThrottle::new();
            throttle.expect_attempt().returning(|_| Ok(LoginAttempt::Allowed));
            let mut hasher = MockPasswordHasher::new();
            hasher.expect_reserve().returning(|| Ok(HashSlot::unbounded()));
            Self {
                users: MockUserRepository::new(),
                hasher,
                throttle,
                clients: MockClientThrottle::new(),
                sessions: MockSessionStore::new(),
            }
        }

        fn with_account(mut self) -> Self {
            self.users.expect_find_credentials().returning(|_| {
                Ok(Some(Credentials {
                    user_id: UserId::from_uuid(USER),
                    password_hash: PasswordHash::new("$argon2id$stored".to_owned()),
                }))
            });
            self
        }

        fn use_case(self) -> LogIn {
            LogIn::new(
                LogInPorts {
                    users: Arc::new(self.users),
                    hasher: Arc::new(self.hasher),
                    throttle: Arc::new(self.throttle),
                    clients: Arc::new(self.clients),
                    sessions: Arc::new(self.sessions),
                },
                issuer(encoding_codec()),
            )
        }
    }

    fn command(email: &str, password: &str) -> LogInCommand {
        LogInCommand {
            email: email.to_owned(),
            password: password.to_owned(),
            client: None,
        }
    }

    const CLIENT: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 5));

    fn from_client(email: &str, password: &str) -> LogInCommand {
        LogInCommand {
            client: Some(CLIENT),
            ..command(email, password)
        }
    }

    #[tokio::test]
    async fn a_throttled_client_is_refused_before_its_account_is_counted() {
        let mut fakes = Fakes::new().with_account();
        fakes.throttle = MockLoginThrottle::new();
        fakes.throttle.expect_attempt().never();
        fakes
            .clients
            .expect_attempt()
            .withf(|action, client, _| *action == ClientAction::LogIn && *client == CLIENT)
            .times(1)
            .returning(|_, _, _| {
                Ok(LoginAttempt::Blocked {
                    retry_after: Duration::from_secs(60),
                })
            });
        fakes.hasher.expect_verify().never();

        let err = fakes
            .use_case()
            .execute(from_client("kim@example.com", "whatever"))
            .await
            .expect_err("throttled");

        assert!(matches!(err, LogInError::TooManyAttempts { retry_after } if retry_after.as_secs() == 60));
    }

    #[tokio::test]
    async fn a_successful_login_takes_its_client_attempt_back() {
        let mut fakes = Fakes::new().with_account();
        fakes.hasher.expect_verify().returning(|_, _, _| Ok(true));
        fakes.throttle.expect_reset().returning(|_| Ok(()));
        fakes.sessions.expect_create().returning(|_| Ok(()));
        let counted = Arc::new(std::sync::Mutex::new(None));
        let seen = Arc::clone(&counted);
        fakes.clients.expect_attempt().times(1).returning(move |_, _, attempt| {
            *seen.lock().expect("lock") = Some(attempt);
            Ok(LoginAttempt::Allowed)
        });
        let expected = Arc::clone(&counted);
        fakes
            .clients
            .expect_withdraw()
            .withf(move |action, client, attempt| {
                *action == ClientAction::LogIn && *client == CLIENT && Some(*attempt) == *expected.lock().expect("lock")
            })
            .times(1)
            .returning(|_, _, _| Ok(()));

        fakes
            .use_case()
            .execute(from_client("kim@example.com", "right"))
            .await
            .expect("logged in");
    }

    #[tokio::test]
    async fn a_failed_login_stays_counted_against_its_client() {
        let mut fakes = Fakes::new().with_account();
        fakes.hasher.expect_verify().returning(|_, _, _| Ok(false));
        fakes
            .clients
            .expect_attempt()
            .times(1)
            .returning(|_, _, _| Ok(LoginAttempt::Allowed));
        fakes.clients.expect_withdraw().never();

        let err = fakes
            .use_case()
            .execute(from_client("kim@example.com", "wrong"))
            .await
            .expect_err("refused");

        assert!(matches!(err, LogInError::InvalidCredentials));
    }

    #[tokio::test]
    async fn the_right_password_opens_a_session_and_resets_the_throttle() {
        let mut fakes = Fakes::new().with_account();
        fakes
            .hasher
            .expect_verify()
            .returning(|_, p, _| Ok(p == "right password"));
        fakes
            .throttle
            .expect_reset()
            .withf(|e| e == "kim@example.com")
            .times(1)
            .returning(|_| Ok(()));
        fakes
            .sessions
            .expect_create()
            .withf(|s| s.user_id == UserId::from_uuid(USER) && s.ttl == REFRESH_TTL)
            .times(1)
            .returning(|_| Ok(()));

        let pair = fakes
            .use_case()
            .execute(command(" Kim@Example.com ", "right password"))
            .await
            .expect("logged in");

        assert!(pair.access_token.starts_with("access:"));
        assert!(pair.refresh_token.starts_with("refresh:"));
    }

    #[tokio::test]
    async fn a_wrong_password_is_invalid_credentials_and_opens_nothing() {
        let mut fakes = Fakes::new().with_account();
        fakes.hasher.expect_verify().returning(|_, _, _| Ok(false));
        fakes.throttle.expect_reset().never();
        fakes.sessions.expect_create().never();

        let err = fakes
            .use_case()
            .execute(command("kim@example.com", "wrong"))
            .await
            .expect_err("refused");

        assert!(matches!(err, LogInError::InvalidCredentials));
    }

    #[tokio::test]
    async fn an_unknown_email_spends_a_dummy_verification_and_looks_the_same() {
        let mut fakes = Fakes::new();
        fakes.users.expect_find_credentials().returning(|_| Ok(None));
        fakes.hasher.expect_verify_dummy().times(1).returning(|_, _| Ok(()));

        let err = fakes
            .use_case()
            .execute(command("nobody@example.com", "whatever"))
            .await
            .expect_err("refused");

        assert!(matches!(err, LogInError::InvalidCredentials));
    }

    #[tokio::test]
    async fn a_malformed_email_is_treated_as_unknown() {
        let mut fakes = Fakes::new();
        fakes.users.expect_find_credentials().never();
        fakes.hasher.expect_verify_dummy().times(1).returning(|_, _| Ok(()));

        let err = fakes
            .use_case()
            .execute(command("not an email", "whatever"))
            .await
            .expect_err("refused");

        assert!(matches!(err, LogInError::InvalidCredentials));
    }

    #[tokio::test]
    async fn a_throttled_account_is_refused_before_the_password_is_checked() {
        let mut fakes = Fakes::new();
        fakes.throttle = MockLoginThrottle::new();
        fakes.throttle.expect_attempt().returning(|_| {
            Ok(LoginAttempt::Blocked {
                retry_after: Duration::from_secs(600),
            })
        });
        fakes.users.expect_find_credentials().returning(|_| Ok(None));
        fakes.hasher.expect_verify().never();
        fakes.hasher.expect_verify_dummy().never();

        let err = fakes
            .use_case()
            .execute(command("kim@example.com", "right password"))
            .await
            .expect_err("throttled");

        assert!(matches!(err, LogInError::TooManyAttempts { retry_after } if retry_after == Duration::from_secs(600)));
    }

    #[tokio::test]
    async fn an_unreachable_throttle_fails_closed() {
        let mut fakes = Fakes::new();
        fakes.throttle = MockLoginThrottle::new();
        fakes
            .throttle
            .expect_attempt()
            .returning(|_| Err(InfraError::unavailable("cache", anyhow::anyhow!("refused"))));
        fakes.users.expect_find_credentials().returning(|_| Ok(None));
        fakes.hasher.expect_verify_dummy().never();

        let err = fakes
            .use_case()
            .execute(command("kim@example.com", "right password"))
            .await
            .expect_err("fails closed");

        assert!(matches!(err, LogInError::Infra(ref e) if e.is_unavailable()));
    }

    #[tokio::test]
    async fn an_unreachable_database_does_not_count_an_attempt() {
        let mut fakes = Fakes::new();
        fakes.throttle = MockLoginThrottle::new();
        fakes.throttle.expect_attempt().never();
        fakes
            .users
            .expect_find_credentials()
            .returning(|_| Err(InfraError::unavailable("database", anyhow::anyhow!("pool timed out"))));

        let err = fakes
            .use_case()
            .execute(command("kim@example.com", "right password"))
            .await
            .expect_err("unavailable");

        assert!(matches!(err, LogInError::Infra(ref e) if e.is_unavailable()));
    }

    #[tokio::test]
    async fn a_session_store_failure_issues_no_tokens() {
        let mut fakes = Fakes::new().with_account();
        fakes.hasher.expect_verify().returning(|_, _, _| Ok(true));
        fakes.throttle.expect_reset().returning(|_| Ok(()));
        fakes
            .sessions
            .expect_create()
            .returning(|_| Err(InfraError::unavailable("cache", anyhow::anyhow!("refused"))));

        let err = fakes
            .use_case()
            .execute(command("kim@example.com", "right password"))
            .await
            .expect_err("no session");

        assert!(matches!(err, LogInError::Infra(_)));
    }

    #[tokio::test]
    async fn a_full_hashing_queue_is_unavailable_and_counts_no_attempt() {
        let mut fakes = Fakes::new().with_account();
        fakes.hasher = MockPasswordHasher::new();
        fakes
            .hasher
            .expect_reserve()
            .times(1)
            .returning(|| Err(InfraError::unavailable("password hasher", anyhow::anyhow!("full"))));
        fakes.hasher.expect_verify().never();
        fakes.hasher.expect_verify_dummy().never();
        fakes.throttle = MockLoginThrottle::new();
        fakes.throttle.expect_attempt().never();
        fakes.throttle.expect_reset().never();
        fakes.sessions.expect_create().never();

        let err = fakes
            .use_case()
            .execute(command("kim@example.com", "right password"))
            .await
            .expect_err("shed");

        assert!(matches!(err, LogInError::Infra(ref e) if e.is_unavailable()));
    }

    #[tokio::test]
    async fn an_unknown_email_is_shed_like_a_known_one() {
        let mut fakes = Fakes::new();
        fakes.users.expect_find_credentials().returning(|_| Ok(None));
        fakes.hasher = MockPasswordHasher::new();
        fakes
            .hasher
            .expect_reserve()
            .returning(|| Err(InfraError::unavailable("password hasher", anyhow::anyhow!("full"))));
        fakes.hasher.expect_verify_dummy().never();
        fakes.throttle = MockLoginThrottle::new();
        fakes.throttle.expect_attempt().never();

        let err = fakes
            .use_case()
            .execute(command("nobody@example.com", "whatever"))
            .await
            .expect_err("shed");

        assert!(matches!(err, LogInError::Infra(ref e) if e.is_unavailable()));
    }
}
