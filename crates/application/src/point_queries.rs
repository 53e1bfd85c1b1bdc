//! Use cases: one's own balance and ledger history.

use std::sync::Arc;

use coffee_domain::{Cursor, Page, PageSize, PointTransaction, Points, Principal, UserId};
use coffee_ports::{InfraError, PointStore};

/// Why a points query was refused.
#[derive(Debug, thiserror::Error)]
pub enum PointQueryError {
    #[error("only the account owner may see it")]
    Forbidden,
    #[error("the account does not exist")]
    NotFound,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

fn own_account(caller: &Principal, user: UserId) -> Result<(), PointQueryError> {
    if caller.user_id == user {
        Ok(())
    } else {
        Err(PointQueryError::Forbidden)
    }
}

/// The caller's balance.
#[derive(Clone, Debug)]
pub struct GetBalance {
    points: Arc<dyn PointStore>,
}

impl GetBalance {
    pub fn new(points: Arc<dyn PointStore>) -> Self {
        Self { points }
    }

    pub async fn execute(&self, caller: &Principal, user: UserId) -> Result<Points, PointQueryError> {
        own_account(caller, user)?;
        self.points.balance(user).await?.ok_or(PointQueryError::NotFound)
    }
}

/// The caller's ledger, newest first, a page at a time.
#[derive(Clone, Debug)]
pub struct ListPointTransactions {
    points: Arc<dyn PointStore>,
}

impl ListPointTransactions {
    pub fn new(points: Arc<dyn PointStore>) -> Self {
        Self { points }
    }

    pub async fn execute(
        &self,
        caller: &Principal,
        user: UserId,
        size: PageSize,
        after: Option<Cursor>,
    ) -> Result<Page<PointTransaction>, PointQueryError> {
        own_account(caller, user)?;
        Ok(self.points.history(user, size, after).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::caller;
    use coffee_ports::points::MockPointStore;
    use time::OffsetDateTime;
    use uuid::Uuid;

    fn me() -> UserId {
        UserId::from_uuid(Uuid::from_u128(1))
    }

    fn someone_else() -> UserId {
        UserId::from_uuid(Uuid::from_u128(42))
    }

    #[tokio::test]
    async fn the_owner_sees_the_balance() {
        let mut store = MockPointStore::new();
        store
            .expect_balance()
            .returning(|_| Ok(Some(Points::new(700).expect("points"))));
        let balance = GetBalance::new(Arc::new(store))
            .execute(&caller(), me())
            .await
            .expect("balance");
        assert_eq!(balance.value(), 700);
    }

    #[tokio::test]
    async fn nobody_else_sees_it() {
        let mut store = MockPointStore::new();
        store.expect_balance().never();
        store.expect_history().never();
        let store = Arc::new(store);
        let balance = GetBalance::new(store.clone()).execute(&caller(), someone_else()).await;
        let history = ListPointTransactions::new(store)
            .execute(&caller(), someone_else(), PageSize::DEFAULT, None)
            .await;
        assert!(matches!(balance, Err(PointQueryError::Forbidden)));
        assert!(matches!(history, Err(PointQueryError::Forbidden)));
    }

    #[tokio::test]
    async fn a_vanished_account_is_not_found() {
        let mut store = MockPointStore::new();
        store.expect_balance().returning(|_| Ok(None));
        let err = GetBalance::new(Arc::new(store))
            .execute(&caller(), me())
            .await
            .expect_err("gone");
        assert!(matches!(err, PointQueryError::NotFound));
    }

    #[tokio::test]
    async fn history_passes_the_page_request_through() {
        let cursor = Cursor {
            created_at: OffsetDateTime::UNIX_EPOCH,
            id: Uuid::from_u128(5),
        };
        let mut store = MockPointStore::new();
        store
            .expect_history()
            .withf(move |user, size, after| *user == me() && size.get() == 7 && *after == Some(cursor))
            .returning(|_, _, _| {
                Ok(Page {
                    items: vec![],
                    next: None,
                })
            });
        let page = ListPointTransactions::new(Arc::new(store))
            .execute(&caller(), me(), PageSize::new(7).expect("size"), Some(cursor))
            .await
            .expect("page");
        assert!(page.items.is_empty());
    }

    #[tokio::test]
    async fn store_failures_are_infrastructure() {
        let mut store = MockPointStore::new();
        store
            .expect_history()
            .returning(|_, _, _| Err(InfraError::unavailable("database", anyhow::anyhow!("down"))));
        let err = ListPointTransactions::new(Arc::new(store))
            .execute(&caller(), me(), PageSize::DEFAULT, None)
            .await
            .expect_err("down");
        assert!(matches!(err, PointQueryError::Infra(_)));
    }
}
