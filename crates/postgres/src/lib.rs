//! Outbound PostgreSQL adapter.
//!
//! Repositories implement the `coffee-ports` traits with diesel + diesel-async
//! over a deadpool pool. Every business operation that must be atomic runs as
//! one database transaction inside this crate; the application never sees a
//! connection or a transaction. Diesel and pool failures are translated into
//! [`coffee_ports::InfraError`] here (see [`error`]).

pub mod connect;
pub mod error;
pub mod health;
pub mod idempotency;
pub mod menus;
pub mod migrate;
pub mod orders;
pub mod outbox;
mod page;
pub mod points;
pub mod pool;
pub mod popular;
pub mod schema;
pub mod sql;
pub mod users;

pub use connect::{ConnectError, PgTarget, SslMode};
pub use health::PgProbe;
pub use idempotency::PgIdempotencyRecords;
pub use menus::PgMenuRepository;
pub use migrate::{MigrationSettings, ensure_database_exists, run_migrations};
pub use orders::{PgOrderStore, longest_order_transaction};
pub use outbox::PgOutboxStore;
pub use points::PgPointStore;
pub use pool::{PgPool, PgPoolSettings};
pub use popular::PgSalesStatistics;
pub use users::PgUserRepository;
