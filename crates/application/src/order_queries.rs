//! Use cases: one's own orders, one or a page at a time.

use std::sync::Arc;

use coffee_domain::{Cursor, Page, PageSize, PlacedOrder, Principal};
use coffee_ports::{InfraError, OrderStore};
use uuid::Uuid;

/// Why an order query failed.
#[derive(Debug, thiserror::Error)]
pub enum OrderQueryError {
    /// No such order, or not the caller's: the two are not told apart.
    #[error("no such order")]
    NotFound,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// One of the caller's orders.
#[derive(Clone, Debug)]
pub struct GetOrder {
    orders: Arc<dyn OrderStore>,
}

impl GetOrder {
    pub fn new(orders: Arc<dyn OrderStore>) -> Self {
        Self { orders }
    }

    pub async fn execute(&self, caller: &Principal, order: Uuid) -> Result<PlacedOrder, OrderQueryError> {
        self.orders
            .find(caller.user_id, order)
            .await?
            .ok_or(OrderQueryError::NotFound)
    }
}

/// The caller's orders, newest first.
#[derive(Clone, Debug)]
pub struct ListOrders {
    orders: Arc<dyn OrderStore>,
}

impl ListOrders {
    pub fn new(orders: Arc<dyn OrderStore>) -> Self {
        Self { orders }
    }

    pub async fn execute(
        &self,
        caller: &Principal,
        size: PageSize,
        after: Option<Cursor>,
    ) -> Result<Page<PlacedOrder>, OrderQueryError> {
        Ok(self.orders.list(caller.user_id, size, after).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::caller;
    use coffee_domain::UserId;
    use coffee_ports::orders::MockOrderStore;

    #[tokio::test]
    async fn an_order_is_looked_up_within_the_callers_own() {
        let mut store = MockOrderStore::new();
        store
            .expect_find()
            .withf(|user, order| *user == UserId::from_uuid(Uuid::from_u128(1)) && *order == Uuid::from_u128(9))
            .returning(|_, _| Ok(None));

        let err = GetOrder::new(Arc::new(store))
            .execute(&caller(), Uuid::from_u128(9))
            .await
            .expect_err("none");

        assert!(matches!(err, OrderQueryError::NotFound));
    }

    #[tokio::test]
    async fn the_list_is_the_callers_own() {
        let mut store = MockOrderStore::new();
        store
            .expect_list()
            .withf(|user, size, after| {
                *user == UserId::from_uuid(Uuid::from_u128(1)) && size.get() == 20 && after.is_none()
            })
            .returning(|_, _, _| {
                Ok(Page {
                    items: vec![],
                    next: None,
                })
            });

        let page = ListOrders::new(Arc::new(store))
            .execute(&caller(), PageSize::DEFAULT, None)
            .await
            .expect("page");

        assert!(page.items.is_empty());
    }

    #[tokio::test]
    async fn store_failures_are_infrastructure() {
        let mut store = MockOrderStore::new();
        store
            .expect_find()
            .returning(|_, _| Err(InfraError::unavailable("database", anyhow::anyhow!("down"))));
        let err = GetOrder::new(Arc::new(store))
            .execute(&caller(), Uuid::from_u128(9))
            .await
            .expect_err("down");
        assert!(matches!(err, OrderQueryError::Infra(_)));
    }
}
