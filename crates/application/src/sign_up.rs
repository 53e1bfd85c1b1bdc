//! Use case: create an account.

use std::sync::Arc;

use coffee_domain::{Email, Password, User, UserId, UserName};
use coffee_ports::{CreateUserError, InfraError, NewUser, PasswordHasher, UserRepository};
use uuid::Uuid;

/// A validated signup request (the HTTP edge builds the value types).
#[derive(Debug, Clone)]
pub struct SignUpCommand {
    pub email: Email,
    pub password: Password,
    pub name: UserName,
}

/// Why the account was not created.
#[derive(Debug, thiserror::Error)]
pub enum SignUpError {
    #[error("the email is already registered")]
    EmailTaken,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Takes a place in the hashing queue, hashes the password and stores the
/// user with a zero balance. A full queue is `Unavailable` at once.
#[derive(Clone, Debug)]
pub struct SignUp {
    users: Arc<dyn UserRepository>,
    hasher: Arc<dyn PasswordHasher>,
}

impl SignUp {
    pub fn new(users: Arc<dyn UserRepository>, hasher: Arc<dyn PasswordHasher>) -> Self {
        Self { users, hasher }
    }

    #[tracing::instrument(name = "sign_up", skip_all)]
    pub async fn execute(&self, command: SignUpCommand) -> Result<User, SignUpError> {
        let slot = self.hasher.reserve()?;
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
    use coffee_ports::auth::{MockPasswordHasher, MockUserRepository};
    use time::OffsetDateTime;

    fn command() -> SignUpCommand {
        SignUpCommand {
            email: Email::parse("kim@example.com").expect("email"),
            password: Password::parse("a long unusual passphrase").expect("password"),
            name: UserName::parse("Kim").expect("name"),
        }
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
            .returning(|u| {
                Ok(User {
                    id: u.id,
                    email: u.email,
                    name: u.name,
                    point: Points::ZERO,
                    created_at: OffsetDateTime::UNIX_EPOCH,
                    updated_at: OffsetDateTime::UNIX_EPOCH,
                })
            });

        let user = SignUp::new(Arc::new(users), Arc::new(hasher()))
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

        let err = SignUp::new(Arc::new(users), Arc::new(hasher()))
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

        let err = SignUp::new(Arc::new(users), Arc::new(hasher()))
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

        let err = SignUp::new(Arc::new(users), Arc::new(hasher))
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

        let err = SignUp::new(Arc::new(users), Arc::new(hasher))
            .execute(command())
            .await
            .expect_err("shed");

        assert!(matches!(err, SignUpError::Infra(ref e) if e.is_unavailable()));
    }
}
