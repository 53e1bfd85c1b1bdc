//! Outbound Redis adapter.
//!
//! Holds what must be shared by every API instance but need not be durable:
//! refresh sessions, revoked access tokens and login-attempt counters. Every
//! key this crate writes starts with the configured prefix, so several
//! deployments (or several tests) can share one Redis without seeing each
//! other's keys. Redis failures become [`coffee_ports::InfraError::Unavailable`]
//! so callers fail closed with `503`.

pub mod error;
pub mod health;
pub mod pool;
pub mod sessions;
pub mod throttle;

pub use health::RedisProbe;
pub use pool::{FirstConnection, RedisPool, RedisSettings, SentinelSettings};
pub use sessions::RedisSessionStore;
pub use throttle::{RedisClientThrottle, RedisLoginThrottle};
