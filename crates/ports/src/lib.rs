//! The traits the application needs from the outside world.
//!
//! Each port is a small `Send + Sync` async trait held as `Arc<dyn Port>`.
//! Adapters (`coffee-postgres`, `coffee-redis`, `coffee-collector`) implement
//! them and translate their own failures into [`InfraError`], so no
//! infrastructure type ever reaches the application or the domain. With the
//! `mock` feature (dev-dependencies only) every port gets a mockall fake.

pub mod auth;
pub mod clock;
pub mod error;
pub mod health;
pub mod menu;
pub mod orders;
pub mod outbox;
pub mod points;
pub mod statistics;

pub use auth::{
    AccessCheck, ClientAction, ClientThrottle, CreateUserError, Credentials, HashSlot, LoginAttempt, LoginThrottle,
    NewSession, NewUser, PasswordHasher, Rotation, SessionStore, TokenCodec, TokenError, UserRepository,
};
pub use clock::{Clock, SystemClock};
pub use error::InfraError;
pub use health::DependencyProbe;
pub use menu::MenuRepository;
pub use orders::{DecideOrder, OrderReads, OrderStore};
pub use outbox::{DeliveryError, EventSink, OutboxStore};
pub use points::{IdempotencyConflict, IdempotencyError, IdempotencyRecords, PointStore};
pub use statistics::{LiveSales, LiveWindow, SalesStatistics, StatisticsUpkeep};
