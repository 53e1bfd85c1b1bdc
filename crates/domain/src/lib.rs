//! Pure business types and rules of the coffee order service.
//!
//! Nothing here performs I/O, awaits, or knows about HTTP, SQL or Redis: values
//! are validated when they are built (`Points::new`, `MenuName::parse`, ...) so
//! that every other layer can trust them.

pub mod menu;
pub mod points;

pub use menu::{Menu, MenuId, MenuName};
pub use points::{Points, PointsError};
