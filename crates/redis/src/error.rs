//! Translation of Redis and pool failures into [`InfraError`].

use coffee_ports::InfraError;
use deadpool_redis::redis::RedisError;

/// The name under which Redis appears in errors and readiness reports.
pub const DEPENDENCY: &str = "cache";

/// Any pool failure (timeout, refused connection) means Redis is unreachable.
pub fn from_pool(error: deadpool_redis::PoolError) -> InfraError {
    InfraError::unavailable(DEPENDENCY, anyhow::Error::new(error).context("no redis connection"))
}

/// I/O, timeouts, dropped connections and every error Redis itself says is
/// worth retrying (`LOADING` during a restart, `READONLY` after a failover,
/// `TRYAGAIN`, ...) are `Unavailable`; a reply the adapter did not expect
/// (wrong type, script error) is `Unexpected`.
pub fn from_redis(error: RedisError) -> InfraError {
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
        || !matches!(error.retry_method(), deadpool_redis::redis::RetryMethod::NoRetry)
    {
        InfraError::unavailable(DEPENDENCY, error)
    } else {
        InfraError::Unexpected(anyhow::Error::new(error).context("redis command failed"))
    }
}
