//! Translation of Redis and pool failures into [`InfraError`].

use coffee_ports::InfraError;
use redis::RedisError;

/// The name under which Redis appears in errors and readiness reports.
pub const DEPENDENCY: &str = "cache";

/// Any pool failure (timeout, refused connection) means Redis is unreachable.
pub fn from_pool(error: deadpool::managed::PoolError<RedisError>) -> InfraError {
    InfraError::unavailable(DEPENDENCY, anyhow::Error::new(error).context("no redis connection"))
}

/// The codes by which Redis says it cannot take the command now, though it
/// may soon: a failover (`READONLY`, `MASTERDOWN`), fewer replicas than
/// `min-replicas-to-write` (`NOREPLICAS`), a restart (`LOADING`), a busy
/// script (`BUSY`).
const UNAVAILABLE_CODES: [&str; 6] = ["READONLY", "MASTERDOWN", "NOREPLICAS", "LOADING", "BUSY", "TRYAGAIN"];

/// Whether `error` carries one of [`UNAVAILABLE_CODES`]: itself, as the
/// reason the server discarded a `MULTI` block (`EXECABORT Transaction
/// discarded because of: NOREPLICAS ...`), or as the error of a command
/// queued in one (the client's "transaction aborted").
fn says_unavailable(error: &RedisError) -> bool {
    codes(error)
        .iter()
        .any(|code| UNAVAILABLE_CODES.contains(&code.as_str()))
        || (error.code() == Some("EXECABORT")
            && error
                .detail()
                .is_some_and(|detail| UNAVAILABLE_CODES.iter().any(|c| detail.contains(c))))
}

/// The error codes `error` carries: its own, and those of the commands of
/// an aborted `MULTI` block.
pub(crate) fn codes(error: &RedisError) -> Vec<String> {
    let queued = error.clone().into_server_errors().unwrap_or_default();
    error
        .code()
        .into_iter()
        .map(str::to_owned)
        .chain(queued.iter().map(|(_, e)| e.code().to_owned()))
        .collect()
}

/// I/O, timeouts, dropped connections and every error Redis itself says is
/// worth retrying (`LOADING` during a restart, `READONLY` after a failover,
/// `TRYAGAIN`, ...) are `Unavailable`; a reply the adapter did not expect
/// (wrong type, script error) is `Unexpected`.
pub fn from_redis(error: RedisError) -> InfraError {
    if says_unavailable(&error)
        || error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
        || !matches!(error.retry_method(), redis::RetryMethod::NoRetry)
    {
        InfraError::unavailable(DEPENDENCY, error)
    } else {
        InfraError::Unexpected(anyhow::Error::new(error).context("redis command failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: &str, detail: &str) -> RedisError {
        let reply = format!("-{code} {detail}\r\n");
        match redis::parse_redis_value(reply.as_bytes()) {
            Ok(redis::Value::ServerError(e)) => e.into(),
            other => panic!("not a server error: {other:?}"),
        }
    }

    #[test]
    fn failover_and_replica_refusals_are_unavailable() {
        for (code, detail) in [
            ("READONLY", "You can't write against a read only replica."),
            ("NOREPLICAS", "Not enough good replicas to write."),
            (
                "MASTERDOWN",
                "Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            ),
            (
                "EXECABORT",
                "Transaction discarded because of: NOREPLICAS Not enough good replicas to write.",
            ),
        ] {
            assert!(from_redis(server_error(code, detail)).is_unavailable(), "{code}");
        }
    }

    #[test]
    fn a_bad_command_is_unexpected() {
        assert!(!from_redis(server_error("ERR", "unknown command 'NOPE'")).is_unavailable());
        assert!(
            !from_redis(server_error(
                "EXECABORT",
                "Transaction discarded because of: ERR syntax error"
            ))
            .is_unavailable()
        );
    }
}
