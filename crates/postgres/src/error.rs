//! Translation of diesel and pool failures into [`InfraError`].
//!
//! PostgreSQL identifies an error by its SQLSTATE, but diesel-async hands
//! over only the message, which the server translates into its
//! `lc_messages` language (`ko_KR` is common where this API's users are).
//! So nothing here matches English text:
//! - a lock wait that runs out is caught inside the database by its
//!   condition name (`claim_idempotency_key`, migration 4);
//! - a statement timeout is recognised by the text the server itself used
//!   for one, learned on every new connection ([`learn_statement_timeout`]),
//!   whatever its language.

use std::sync::RwLock;

use coffee_ports::InfraError;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::pool::PoolError;

/// The name under which PostgreSQL appears in errors and readiness reports.
pub const DEPENDENCY: &str = "database";

/// The message texts PostgreSQL servers of this process used for a
/// statement cancelled by `statement_timeout` (SQLSTATE 57014): one per
/// language in use, so a handful at most. Process-wide because the texts are
/// facts about the servers, shared by every pool.
static STATEMENT_TIMEOUT_TEXTS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers `text` as what a statement timeout says on some connection.
pub(crate) fn learn_statement_timeout(text: &str) {
    let known = STATEMENT_TIMEOUT_TEXTS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .any(|t| t == text);
    if !known {
        let mut texts = STATEMENT_TIMEOUT_TEXTS
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !texts.iter().any(|t| t == text) {
            texts.push(text.to_owned());
        }
    }
}

fn is_statement_timeout(text: &str) -> bool {
    STATEMENT_TIMEOUT_TEXTS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .any(|t| t == text)
}

/// A pool that could not hand out a connection in time, or could not open one,
/// means the database is unreachable or saturated: retryable, `503`.
pub fn from_pool(error: PoolError) -> InfraError {
    InfraError::unavailable(DEPENDENCY, anyhow::Error::new(error).context("no database connection"))
}

/// Connection-level failures and statement timeouts are `Unavailable`;
/// everything else (constraint violations the adapter did not expect,
/// decoding errors, bugs) is `Unexpected`.
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
            ) || (matches!(kind, DatabaseErrorKind::Unknown) && is_statement_timeout(info.message()))
        }
        DieselError::BrokenTransactionManager => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn a_closed_connection_is_unavailable() {
        let error = database_error(
            DatabaseErrorKind::ClosedConnection,
            "server closed the connection unexpectedly",
        );
        assert!(from_diesel(error).is_unavailable());
    }

    #[test]
    fn a_statement_timeout_in_a_learned_language_is_unavailable() {
        let korean = "명령실행시간 초과로 작업을 취소합니다.";
        assert!(!from_diesel(database_error(DatabaseErrorKind::Unknown, korean)).is_unavailable());
        learn_statement_timeout(korean);
        learn_statement_timeout(korean);
        assert!(from_diesel(database_error(DatabaseErrorKind::Unknown, korean)).is_unavailable());
        assert_eq!(
            STATEMENT_TIMEOUT_TEXTS
                .read()
                .map(|t| t.iter().filter(|t| *t == korean).count())
                .unwrap_or_default(),
            1,
            "learned once"
        );
    }

    #[test]
    fn english_text_alone_proves_nothing() {
        // Never learned from a server in this test process's unit tests.
        let error = database_error(DatabaseErrorKind::Unknown, "canceling statement due to some timeout");
        assert!(!from_diesel(error).is_unavailable());
    }

    #[test]
    fn a_missing_row_is_unexpected() {
        assert!(!from_diesel(DieselError::NotFound).is_unavailable());
    }
}
