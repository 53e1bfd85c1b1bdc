//! Use case: list the coffee menu.

use std::sync::Arc;

use coffee_domain::Menu;
use coffee_ports::{InfraError, MenuRepository};

/// Lists every menu item, ordered by name.
#[derive(Clone, Debug)]
pub struct ListMenus {
    menus: Arc<dyn MenuRepository>,
}

/// Why the menu could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListMenusError {
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl ListMenus {
    pub fn new(menus: Arc<dyn MenuRepository>) -> Self {
        Self { menus }
    }

    pub async fn execute(&self) -> Result<Arc<[Menu]>, ListMenusError> {
        // The list this thread holds is answered without a span: nothing
        // is read, and nearly every request is answered so.
        if let Some(menus) = self.menus.in_memory() {
            return Ok(menus);
        }
        self.read().await
    }

    #[tracing::instrument(name = "list_menus", skip(self))]
    async fn read(&self) -> Result<Arc<[Menu]>, ListMenusError> {
        Ok(self.menus.list().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffee_domain::{MenuId, MenuName, Points};
    use coffee_ports::menu::MockMenuRepository;

    fn menu(name: &str, price: i64) -> Menu {
        Menu {
            id: MenuId::from_uuid(uuid::Uuid::from_u128(name.len() as u128)),
            name: MenuName::parse(name).expect("valid name"),
            price: Points::new(price).expect("valid price"),
        }
    }

    #[tokio::test]
    async fn lists_the_menus_in_the_order_the_repository_gives() {
        let expected = vec![menu("Americano", 4_000), menu("Latte", 4_500)];
        let mut repo = MockMenuRepository::new();
        repo.expect_in_memory().return_const(None);
        let returned = expected.clone();
        repo.expect_list().times(1).return_once(move || Ok(returned.into()));

        let menus = ListMenus::new(Arc::new(repo)).execute().await.expect("listed");

        assert_eq!(*menus, *expected);
    }

    #[tokio::test]
    async fn an_unreachable_store_is_reported_as_unavailable() {
        let mut repo = MockMenuRepository::new();
        repo.expect_in_memory().return_const(None);
        repo.expect_list()
            .return_once(|| Err(InfraError::unavailable("database", anyhow::anyhow!("refused"))));

        let err = ListMenus::new(Arc::new(repo)).execute().await.expect_err("must fail");

        assert!(matches!(err, ListMenusError::Infra(ref e) if e.is_unavailable()));
    }

    #[tokio::test]
    async fn a_list_held_in_memory_is_served_without_a_read() {
        let held: Arc<[Menu]> = vec![menu("Mocha", 5_000)].into();
        let mut repo = MockMenuRepository::new();
        repo.expect_in_memory().return_const(Some(Arc::clone(&held)));
        repo.expect_list().never();

        let menus = ListMenus::new(Arc::new(repo)).execute().await.expect("listed");

        assert!(Arc::ptr_eq(&menus, &held));
    }
}
