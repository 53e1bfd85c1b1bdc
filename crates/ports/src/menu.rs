//! Reading the coffee menu.

use std::sync::Arc;

use async_trait::async_trait;
use coffee_domain::Menu;

use crate::InfraError;

/// Where the menu lives.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait MenuRepository: Send + Sync + std::fmt::Debug {
    /// Every menu item, ordered by name (ascending, by the database's collation
    /// of the name and then by id, so the order is total and stable).
    ///
    /// Errors: [`InfraError::Unavailable`] when the store cannot be reached in
    /// time; [`InfraError::Unexpected`] for anything else, including a stored
    /// row that no longer satisfies the domain's rules.
    ///
    /// Shared and read-only: a cache hands every caller the same list.
    async fn list(&self) -> Result<Arc<[Menu]>, InfraError>;

    /// The list at once, when this repository holds a fresh one in memory
    /// (a cache's hit): callers try it before [`list`](Self::list), whose
    /// future is allocated for every call. `None` (the default): the list
    /// must be read.
    fn in_memory(&self) -> Option<Arc<[Menu]>> {
        None
    }
}
