//! Translation of diesel and pool failures into [`InfraError`].

use coffee_ports::InfraError;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::pool::PoolError;

/// The name under which PostgreSQL appears in errors and readiness reports.
pub const DEPENDENCY: &str = "database";

/// A pool that could not hand out a connection in time, or could not open one,
/// means the database is unreachable or saturated: retryable, `503`.
pub fn from_pool(error: PoolError) -> InfraError {
    InfraError::unavailable(DEPENDENCY, anyhow::Error::new(error).context("no database connection"))
}

/// Connection-level failures are `Unavailable`; everything else (constraint
/// violations the adapter did not expect, decoding errors, bugs) is
/// `Unexpected`.
pub fn from_diesel(error: DieselError) -> InfraError {
    if is_connection_failure(&error) {
        InfraError::unavailable(DEPENDENCY, error)
    } else {
        InfraError::Unexpected(anyhow::Error::new(error).context("database query failed"))
    }
}

fn is_connection_failure(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(kind, info) => {
            matches!(
                kind,
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand
            ) || info.message().contains("statement timeout")
        }
        DieselError::BrokenTransactionManager => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_connection_is_unavailable() {
        let error = DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection,
            Box::new("server closed the connection unexpectedly".to_owned()),
        );
        assert!(from_diesel(error).is_unavailable());
    }

    #[test]
    fn a_statement_timeout_is_unavailable() {
        let error = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("canceling statement due to statement timeout".to_owned()),
        );
        assert!(from_diesel(error).is_unavailable());
    }

    #[test]
    fn a_missing_row_is_unexpected() {
        assert!(!from_diesel(DieselError::NotFound).is_unavailable());
    }
}
