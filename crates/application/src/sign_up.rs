//! Use case: create an account.

use std::sync::Arc;

use coffee_domain::{Email, Password, User, UserId, UserName};
use coffee_ports::{
    ClientAction, ClientThrottle, CreateUserError, InfraError, LoginAttempt, NewUser, PasswordHasher, UserRepository,
};
use uuid::Uuid;

/// A validated signup request (the HTTP edge builds the value types).
#[derive(Debug, Clone)]
pub struct SignUpCommand {
    pub email: Email,
    pub password: Password,
    pub name: UserName,
    /// Where the request comes from (`None` when unknown: not counted).
    pub client: Option<std::net::IpAddr>,
}

/// Why the account was not created.
#[derive(Debug, thiserror::Error)]
pub enum SignUpError {
    #[error("the email is already registered")]
    EmailTaken,
    #[error("too many signups from this client address")]
    TooManyAttempts { retry_after: std::time::Duration },
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Takes a place in the hashing queue, counts the signup against its client
/// address, hashes the password and stores the user with a zero balance. A
/// full queue is `Unavailable` at once. When the client count cannot be
/// reached (Redis down), the signup goes ahead: signing up needs nothing else
/// of Redis, and the hashing queue still bounds the work.
#[derive(Clone, Debug)]
pub struct SignUp {
    users: Arc<dyn UserRepository>,
    hasher: Arc<dyn PasswordHasher>,
    clients: Arc<dyn ClientThrottle>,
}

impl SignUp {
    pub fn new(
        users: Arc<dyn UserRepository>,
        hasher: Arc<dyn PasswordHasher>,
        clients: Arc<dyn ClientThrottle>,
    ) -> Self {
        Self { users, hasher, clients }
    }

    #[tracing::instrument(name = "sign_up", skip_all)]
    pub async fn execute(&self, command: SignUpCommand) -> Result<User, SignUpError> {
        let slot = self.hasher.reserve()?;
        if let Some(client) = command.client {
            match self.clients.attempt(ClientAction::SignUp, client, Uuid::new_v4()).await {
                Ok(LoginAttempt::Allowed) => {}
                Ok(LoginAttempt::Blocked { retry_after }) => {
                    tracing::warn!(%client, "signup throttled for this client address");
                    return Err(SignUpError::TooManyAttempts { retry_after });
                }
                Err(e) => tracing::warn!(
                    error = e.describe(),
                    "signup not counted per client: throttle unavailable"
                ),
            }
        }
        let password_hash = self.hasher.hash(slot, &command.password).await?;
        let new_user = NewUser {
            id: UserId::from_uuid(Uuid::now_v7()),
            email: command.email,
            name: command.name,
            password_hash,
        };
        self.users.create(new_user).await.map_err(|e| match e {
            CreateUserError::EmailTaken => SignUpError::EmailTaken,
            CreateUserError::Infra(e) => SignUpError::Infra(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffee_domain::{PasswordHash, Points};
    use coffee_ports::HashSlot;
    use coffee_ports::auth::{MockClientThrottle, MockPasswordHasher, MockUserRepository};
    use time::OffsetDateTime;

    fn command() -> SignUpCommand {
        SignUpCommand {
            email: Email::parse("kim@example.com").expect("email"),
            password: Password::parse("a long unusual passphrase").expect("password"),
            name: UserName::parse("Kim").expect("name"),
            client: None,
        }
    }

    fn no_clients() -> Arc<dyn ClientThrottle> {
        Arc::new(MockClientThrottle::new())
    }

    const CLIENT: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 5));

    fn created(u: NewUser) -> Result<User, CreateUserError> {
        Ok(User {
            id: u.id,
            email: u.email,
            name: u.name,
            point: Points::ZERO,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        })
    }

    #[tokio::test]
    async fn a_throttled_client_hashes_and_creates_nothing() {
        let mut clients = MockClientThrottle::new();
        clients
            .expect_attempt()
            .withf(|action, client, _| *action == ClientAction::SignUp && *client == CLIENT)
            .returning(|_, _, _| {
                Ok(LoginAttempt::Blocked {
                    retry_after: std::time::Duration::from_secs(30),
                })
            });
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_reserve().returning(|| Ok(HashSlot::unbounded()));
        hasher.expect_hash().never();
        let mut users = MockUserRepository::new();
        users.expect_create().never();

        let err = SignUp::new(Arc::new(users), Arc::new(hasher), Arc::new(clients))
            .execute(SignUpCommand {
                client: Some(CLIENT),
                ..command()
            })
            .await
            .expect_err("throttled");

        assert!(matches!(err, SignUpError::TooManyAttempts { retry_after } if retry_after.as_secs() == 30));
    }

    #[tokio::test]
    async fn an_unreachable_client_throttle_lets_the_signup_through() {
        let mut clients = MockClientThrottle::new();
        clients
            .expect_attempt()
            .times(1)
            .returning(|_, _, _| Err(InfraError::unavailable("cache", anyhow::anyhow!("down"))));
        let mut users = MockUserRepository::new();
        users.expect_create().times(1).returning(created);

        SignUp::new(Arc::new(users), Arc::new(hasher()), Arc::new(clients))
            .execute(SignUpCommand {
                client: Some(CLIENT),
                ..command()
            })
            .await
            .expect("created");
    }

    fn hasher() -> MockPasswordHasher {
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_reserve().returning(|| Ok(HashSlot::unbounded()));
        hasher
            .expect_hash()
            .times(1)
            .returning(|_, _| Ok(PasswordHash::new("$argon2id$hash".to_owned())));
        hasher
    }

    #[tokio::test]
    async fn stores_the_hash_never_the_password() {
        let mut users = MockUserRepository::new();
        users
            .expect_create()
            .withf(|u| u.password_hash.as_str() == "$argon2id$hash" && u.email.as_str() == "kim@example.com")
            .times(1)
            .returning(created);

        let user = SignUp::new(Arc::new(users), Arc::new(hasher()), no_clients())
            .execute(command())
            .await
            .expect("created");

        assert_eq!(user.point, Points::ZERO);
        assert_eq!(user.name.as_str(), "Kim");
    }

    #[tokio::test]
    async fn a_taken_email_is_reported_as_such() {
        let mut users = MockUserRepository::new();
        users.expect_create().returning(|_| Err(CreateUserError::EmailTaken));

        let err = SignUp::new(Arc::new(users), Arc::new(hasher()), no_clients())
            .execute(command())
            .await
            .expect_err("taken");

        assert!(matches!(err, SignUpError::EmailTaken));
    }

    #[tokio::test]
    async fn a_store_failure_is_infrastructure() {
        let mut users = MockUserRepository::new();
        users.expect_create().returning(|_| {
            Err(CreateUserError::Infra(InfraError::unavailable(
                "database",
                anyhow::anyhow!("down"),
            )))
        });

        let err = SignUp::new(Arc::new(users), Arc::new(hasher()), no_clients())
            .execute(command())
            .await
            .expect_err("down");

        assert!(matches!(err, SignUpError::Infra(ref e) if e.is_unavailable()));
    }

    #[tokio::test]
    async fn a_hashing_failure_creates_nothing() {
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_reserve().returning(|| Ok(HashSlot::unbounded()));
        hasher
            .expect_hash()
            .returning(|_, _| Err(InfraError::Unexpected(anyhow::anyhow!("pool closed"))));
        let mut users = MockUserRepository::new();
        users.expect_create().never();

        let err = SignUp::new(Arc::new(users), Arc::new(hasher), no_clients())
            .execute(command())
            .await
            .expect_err("fails");

        assert!(matches!(err, SignUpError::Infra(_)));
    }

    #[tokio::test]
    async fn a_full_hashing_queue_is_unavailable_and_hashes_nothing() {
        let mut hasher = MockPasswordHasher::new();
        hasher
            .expect_reserve()
            .returning(|| Err(InfraError::unavailable("password hasher", anyhow::anyhow!("full"))));
        hasher.expect_hash().never();
        let mut users = MockUserRepository::new();
        users.expect_create().never();

        let err = SignUp::new(Arc::new(users), Arc::new(hasher), no_clients())
            .execute(command())
            .await
            .expect_err("shed");

        assert!(matches!(err, SignUpError::Infra(ref e) if e.is_unavailable()));
    }
}
