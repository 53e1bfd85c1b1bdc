//! Use cases of the coffee order service.
//!
//! One use case per module: a struct that holds the ports it needs, one
//! `execute` method, and one error enum whose variants are the business
//! outcomes plus the infrastructure failure. Use cases are written only against
//! `coffee-ports`, so every branch is unit-tested with mockall fakes.

pub mod check_readiness;
pub mod list_menus;

pub use check_readiness::{CheckReadiness, DependencyStatus, ReadinessReport};
pub use list_menus::{ListMenus, ListMenusError};
