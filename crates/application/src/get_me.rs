//! Use case: the caller's own account.

use std::sync::Arc;

use coffee_domain::{Principal, User};
use coffee_ports::{InfraError, UserRepository};

/// Why the account could not be returned.
#[derive(Debug, thiserror::Error)]
pub enum GetMeError {
    /// The token is valid but its account no longer exists.
    #[error("the account no longer exists")]
    Gone,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Loads the authenticated user.
#[derive(Clone, Debug)]
pub struct GetMe {
    users: Arc<dyn UserRepository>,
}

impl GetMe {
    pub fn new(users: Arc<dyn UserRepository>) -> Self {
        Self { users }
    }

    pub async fn execute(&self, principal: &Principal) -> Result<User, GetMeError> {
        self.users.find_by_id(principal.user_id).await?.ok_or(GetMeError::Gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::caller;
    use coffee_domain::{Email, Points, UserId, UserName};
    use coffee_ports::auth::MockUserRepository;
    use time::OffsetDateTime;
    use uuid::Uuid;

    #[tokio::test]
    async fn returns_the_callers_account() {
        let mut users = MockUserRepository::new();
        users
            .expect_find_by_id()
            .withf(|id| *id == UserId::from_uuid(Uuid::from_u128(1)))
            .returning(|id| {
                Ok(Some(User {
                    id,
                    email: Email::parse("kim@example.com").expect("email"),
                    name: UserName::parse("Kim").expect("name"),
                    point: Points::new(500).expect("points"),
                    created_at: OffsetDateTime::UNIX_EPOCH,
                    updated_at: OffsetDateTime::UNIX_EPOCH,
                }))
            });

        let user = GetMe::new(Arc::new(users)).execute(&caller()).await.expect("found");

        assert_eq!(user.point.value(), 500);
    }

    #[tokio::test]
    async fn a_deleted_account_is_gone() {
        let mut users = MockUserRepository::new();
        users.expect_find_by_id().returning(|_| Ok(None));

        let err = GetMe::new(Arc::new(users)).execute(&caller()).await.expect_err("gone");

        assert!(matches!(err, GetMeError::Gone));
    }

    #[tokio::test]
    async fn a_store_failure_is_infrastructure() {
        let mut users = MockUserRepository::new();
        users
            .expect_find_by_id()
            .returning(|_| Err(InfraError::unavailable("database", anyhow::anyhow!("down"))));

        let err = GetMe::new(Arc::new(users)).execute(&caller()).await.expect_err("down");

        assert!(matches!(err, GetMeError::Infra(_)));
    }
}
