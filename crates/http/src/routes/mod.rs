//! Route handlers, one module per resource. Handlers only translate between
//! HTTP and use cases: they never touch a database.

pub mod auth;
pub mod health;
pub mod menus;
pub mod orders;
pub mod points;
