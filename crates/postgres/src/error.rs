//! Translation of diesel and pool failures into [`InfraError`].
//!
//! PostgreSQL identifies an error by its SQLSTATE, but diesel-async hands
//! over only the message, which the server translates into its
//! `lc_messages` language (`ko_KR` is common where this API's users are).
//! So nothing here matches English text:
//! - a statement timeout and a lock wait that runs out are recognised by the
//!   texts the server itself used for them, learned once per pool on
//!   throwaway connections ([`learn_statement_timeout`],
//!   [`learn_lock_timeout`]), whatever its language.

use std::sync::{Mutex, RwLock};
use std::time::Instant;

use coffee_ports::InfraError;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::connect::{ConnectError, Connection};

/// Error of [`crate::PgPool::get`]: the pool's own, around a failed connect.
pub type PoolError = deadpool::managed::PoolError<ConnectError>;

/// The name under which PostgreSQL appears in errors and readiness reports.
pub const DEPENDENCY: &str = "database";

/// The message texts PostgreSQL servers of this process used for a
/// statement cancelled by `statement_timeout` (SQLSTATE 57014): one per
/// language in use, so a handful at most. Process-wide because the texts are
/// facts about the servers, shared by every pool.
static STATEMENT_TIMEOUT_TEXTS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// The same for a lock wait cut by `lock_timeout` (SQLSTATE 55P03): how the
/// idempotency claim tells a duplicate still in flight
/// ([`crate::idempotency`]) without a subtransaction to catch it in.
static LOCK_TIMEOUT_TEXTS: RwLock<Vec<String>> = RwLock::new(Vec::new());

fn learn(texts: &RwLock<Vec<String>>, text: &str) {
    let known = texts
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .any(|t| t == text);
    if !known {
        let mut texts = texts.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !texts.iter().any(|t| t == text) {
            texts.push(text.to_owned());
        }
    }
}

fn known(texts: &RwLock<Vec<String>>, text: &str) -> bool {
    texts
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .any(|t| t == text)
}

/// Remembers `text` as what a statement timeout says on some connection.
pub(crate) fn learn_statement_timeout(text: &str) {
    learn(&STATEMENT_TIMEOUT_TEXTS, text);
}

fn is_statement_timeout(text: &str) -> bool {
    known(&STATEMENT_TIMEOUT_TEXTS, text)
}

/// Remembers `text` as what a lock timeout says on some connection.
pub(crate) fn learn_lock_timeout(text: &str) {
    learn(&LOCK_TIMEOUT_TEXTS, text);
}

fn is_lock_timeout_text(text: &str) -> bool {
    known(&LOCK_TIMEOUT_TEXTS, text)
}

/// Whether `error` is a lock wait cut by `lock_timeout`.
pub(crate) fn is_lock_timeout(error: &DieselError) -> bool {
    matches!(error, DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) if is_lock_timeout_text(info.message()))
}

/// When a connection last met a server that no longer takes writes
/// (`read_only_sql_transaction`: the primary it reached was demoted, or
/// the host now holds a standby). Process-wide for the same reason: every
/// pool of the process talks to the same servers.
static LAST_READ_ONLY_ANSWER: Mutex<Option<Instant>> = Mutex::new(None);

/// Whether a connection opened at `created` predates the last
/// read-only answer: such a connection may be attached to the old primary,
/// so the pool drops it on its next checkout instead of handing it out, and
/// opens a new one (which, with `target_session_attrs=read-write`, goes to
/// whichever host takes writes now).
pub(crate) fn opened_before_a_failover(created: Instant) -> bool {
    LAST_READ_ONLY_ANSWER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .is_some_and(|seen| created <= seen)
}

fn note_read_only_answer() {
    *LAST_READ_ONLY_ANSWER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
}

/// A commit that returned with a warning, its wait for the synchronous
/// standby cancelled (`statement_timeout`, a cancel): kept on the primary,
/// possibly lost in a failover, so not answered as done. `503`: a retry with
/// the same idempotency key replays the outcome once the standby has it.
pub(crate) fn unreplicated_commit() -> InfraError {
    InfraError::unavailable(
        DEPENDENCY,
        anyhow::anyhow!("the commit may not have reached the synchronous standby"),
    )
}

/// How long a failed statement's connection is watched for closing (see
/// [`Settle`]).
const ENDED_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Maps a statement's failure on `conn`, telling a backend the server ended
/// under it (a primary dying or shutting down, an administrator's
/// `pg_terminate_backend`) from a bug. Such a statement fails with a
/// `FATAL` error whose SQLSTATE (57P01, 57P02, ...) diesel-async hides and
/// whose text the server translates, and the server closes the connection
/// right behind it: an unclassified error whose connection closes within
/// [`ENDED_WAIT`] is `503`. Only unclassified errors (bugs, deadlocks) pay
/// the wait.
pub(crate) trait Settle<T> {
    async fn settle(self, conn: &Connection) -> Result<T, InfraError>;
}

impl<T> Settle<T> for Result<T, DieselError> {
    async fn settle(self, conn: &Connection) -> Result<T, InfraError> {
        match self {
            Ok(value) => Ok(value),
            Err(error @ DieselError::DatabaseError(DatabaseErrorKind::Unknown, _)) => {
                Err(settle(conn, from_diesel(error)).await)
            }
            Err(error) => Err(from_diesel(error)),
        }
    }
}

/// `error` as `503` when `conn` was ended by its server (see [`Settle`]).
pub(crate) async fn settle(conn: &Connection, error: InfraError) -> InfraError {
    if matches!(error, InfraError::Unexpected(_)) && conn.ended_within(ENDED_WAIT).await {
        InfraError::unavailable(
            DEPENDENCY,
            anyhow::Error::new(error).context("the server ended the connection"),
        )
    } else {
        error
    }
}

/// A commit still waiting for the synchronous standby at `deadline`.
pub(crate) fn commit_wait_exceeded(deadline: std::time::Duration) -> InfraError {
    InfraError::unavailable(
        DEPENDENCY,
        anyhow::anyhow!("the commit was not acknowledged within {deadline:?} (is the synchronous standby away?)"),
    )
}

/// A pool that could not hand out a connection in time, or could not open one,
/// means the database is unreachable or saturated: retryable, `503`.
pub fn from_pool(error: PoolError) -> InfraError {
    InfraError::unavailable(DEPENDENCY, anyhow::Error::new(error).context("no database connection"))
}

/// Connection-level failures, statement and lock timeouts are `Unavailable`;
/// everything else (constraint violations the adapter did not expect,
/// decoding errors, bugs) is `Unexpected`.
pub fn from_diesel(error: DieselError) -> InfraError {
    if let DieselError::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, _) = &error {
        note_read_only_answer();
        return InfraError::unavailable(
            DEPENDENCY,
            anyhow::Error::new(error).context("the server no longer takes writes (a failover?)"),
        );
    }
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
            ) || (matches!(kind, DatabaseErrorKind::Unknown)
                && (is_statement_timeout(info.message()) || is_lock_timeout_text(info.message())))
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
    fn a_read_only_server_is_unavailable_and_retires_older_connections() {
        let before = Instant::now();
        let error = database_error(
            DatabaseErrorKind::ReadOnlyTransaction,
            "cannot execute INSERT in a read-only transaction",
        );
        assert!(from_diesel(error).is_unavailable());
        assert!(opened_before_a_failover(before));
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(!opened_before_a_failover(Instant::now()));
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
