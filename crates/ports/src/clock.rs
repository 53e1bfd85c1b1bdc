//! Time, as a port, so use cases can be tested at a chosen instant.

use time::OffsetDateTime;

/// Tells the current time.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

/// The system clock (UTC).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}
