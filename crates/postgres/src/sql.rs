//! SQL functions the adapters call through diesel's query builder.

use std::time::Duration;

use coffee_ports::InfraError;
use diesel::data_types::PgInterval;
use diesel::sql_types::{BigInt, Nullable, Timestamptz};
use diesel_async::RunQueryDsl as _;

use crate::error::Settle as _;

diesel::define_sql_function! {
    /// The database's wall clock when the expression is evaluated (unlike
    /// `now()`, not the transaction's start). Read by the statement that
    /// locks the user's row, it orders a user's ledger exactly as the locks
    /// serialised the balance changes, and gives every instance one clock.
    fn clock_timestamp() -> Timestamptz;
}

diesel::define_sql_function! {
    /// `coalesce(at, otherwise)`: a given instant, else `otherwise`.
    #[sql_name = "coalesce"]
    fn instant_or(at: Nullable<Timestamptz>, otherwise: Timestamptz) -> Timestamptz;
}

/// `d` as a PostgreSQL `interval` (microseconds; saturating).
pub(crate) fn interval(d: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[derive(diesel::QueryableByName)]
struct Deleted {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Rows one purge statement deletes at most: each batch is a short
/// transaction of its own, so no purge holds many row locks or a long
/// snapshot, and requests never wait behind it.
pub const PURGE_BATCH: i64 = 5_000;

/// Deletes in batches of [`PURGE_BATCH`] with `delete_batch` (a statement
/// whose only parameter is the batch size and that answers `n`, the rows it
/// deleted) until a batch comes back short; returns the total.
pub(crate) async fn purge_in_batches(
    pool: &crate::pool::PgPool,
    delete_batch: impl Fn()
        -> diesel::query_builder::BoxedSqlQuery<'static, diesel::pg::Pg, diesel::query_builder::SqlQuery>,
) -> Result<u64, InfraError> {
    let mut conn = pool.get().await?;
    let mut total = 0;
    loop {
        let batch: Deleted = delete_batch()
            .bind::<BigInt, _>(PURGE_BATCH)
            .get_result(&mut conn)
            .await
            .settle(&conn)
            .await?;
        total += u64::try_from(batch.n).unwrap_or_default();
        if batch.n < PURGE_BATCH {
            return Ok(total);
        }
    }
}

/// Declares a statement with fixed SQL whose binds are written `$1`, `$2`,
/// ... and filled from the struct's fields in declaration order (a number
/// may appear more than once). It has a static `QueryId`, so diesel-async
/// prepares it once per connection and afterwards sends it in one message
/// batch, which lets several be pipelined in one round trip. Diesel's own
/// `UPDATE`, upsert and multi-row `INSERT` builders are never cached: each
/// of those costs a round trip to prepare before it runs.
macro_rules! statement {
    (
        $(#[$doc:meta])*
        $vis:vis struct $name:ident { $($field:ident: $ty:ty = $sql_ty:ty),* $(,)? }
        $(returns $row:ty)?
        = $sql:expr;
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, diesel::query_builder::QueryId)]
        $vis struct $name {
            $(pub $field: $ty),*
        }

        impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for $name {
            #[allow(unused_variables, unused_mut)]
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
            ) -> diesel::QueryResult<()> {
                // The SQL is split at its binds once, not at every execution.
                static PARTS: std::sync::OnceLock<$crate::sql::Parts> = std::sync::OnceLock::new();
                let parts = PARTS.get_or_init(|| $crate::sql::split_binds($sql));
                for &(before, number) in &parts.binds {
                    out.push_sql(before);
                    let mut field = 0usize;
                    let mut bound = false;
                    $(
                        field += 1;
                        if field == number {
                            out.push_bind_param::<$sql_ty, $ty>(&self.$field)?;
                            bound = true;
                        }
                    )*
                    if !bound {
                        return Err(diesel::result::Error::QueryBuilderError(
                            format!("{} has no bind ${number}", stringify!($name)).into(),
                        ));
                    }
                }
                out.push_sql(parts.tail);
                Ok(())
            }
        }

        $(impl diesel::query_builder::Query for $name {
            type SqlType = $row;
        })?
    };
}
pub(crate) use statement;

/// A statement's SQL split at its binds: each piece of text with the number
/// of the bind after it, then the text after the last bind.
#[derive(Debug)]
pub(crate) struct Parts {
    pub binds: Vec<(&'static str, usize)>,
    pub tail: &'static str,
}

pub(crate) fn split_binds(sql: &'static str) -> Parts {
    let mut binds = Vec::new();
    let mut rest = sql;
    while let Some((before, number, after)) = next_bind(rest) {
        binds.push((before, number));
        rest = after;
    }
    Parts { binds, tail: rest }
}

/// Splits `sql` at its first bind `$<n>`: the text before, `n`, the rest.
pub(crate) fn next_bind(sql: &str) -> Option<(&str, usize, &str)> {
    let start = sql.find('$')?;
    let digits = sql[start + 1..].bytes().take_while(u8::is_ascii_digit).count();
    let number = sql[start + 1..start + 1 + digits].parse().ok()?;
    Some((&sql[..start], number, &sql[start + 1 + digits..]))
}

statement! {
    /// Opens a transaction; sent with the first statements of a pipeline.
    pub(crate) struct Begin {} = "BEGIN";
}

statement! {
    /// Ends a transaction; sent with its last statements.
    pub(crate) struct Commit {} = "COMMIT";
}

statement! {
    /// Gives the transaction an id, so that its `COMMIT` writes a commit
    /// record and waits for the synchronous standby even when nothing else
    /// was written.
    pub(crate) struct TakeTransactionId {} = "SELECT pg_current_xact_id()";
}

statement! {
    /// Ends a transaction without its effects.
    pub(crate) struct Rollback {} = "ROLLBACK";
}

statement! {
    /// The database's wall clock now, or `at` when seeding history. In a
    /// pipeline after the statement that locks the user's row, it is read
    /// once the lock is held: the instant of the balance change.
    pub(crate) struct Instant { at: Option<time::OffsetDateTime> = Nullable<Timestamptz> }
        returns Timestamptz = "SELECT coalesce($1, clock_timestamp())";
}

statement! {
    /// The user's balance, locking the row until the transaction ends: every
    /// change of one balance is serialised here, across all instances. `NO
    /// KEY` (the lock an `UPDATE` of the balance takes) so it does not wait
    /// for the key-share locks that inserts referencing the user hold, such
    /// as another request's idempotency claim: that would be a deadlock.
    pub(crate) struct LockBalance { user: uuid::Uuid = diesel::sql_types::Uuid }
        returns diesel::sql_types::BigInt = "SELECT point FROM users WHERE id = $1 FOR NO KEY UPDATE";
}

statement! {
    /// Sets the locked balance by `delta` (negative to pay), stamped `at`.
    /// The table's `CHECK (point >= 0)` is the last line of defence.
    pub(crate) struct ChangeBalance {
        user: uuid::Uuid = diesel::sql_types::Uuid,
        delta: i64 = diesel::sql_types::BigInt,
        at: time::OffsetDateTime = Timestamptz,
    } = "UPDATE users SET point = point + $2, updated_at = $3 WHERE id = $1";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_are_split_in_order() {
        assert_eq!(next_bind("a = $1 AND b = $12"), Some(("a = ", 1, " AND b = $12")));
        assert_eq!(next_bind(" AND b = $12"), Some((" AND b = ", 12, "")));
        assert_eq!(next_bind("no binds"), None);
    }

    #[test]
    fn every_bind_is_filled_from_its_field() {
        let sql = diesel::debug_query::<diesel::pg::Pg, _>(&ChangeBalance {
            user: uuid::Uuid::nil(),
            delta: -5,
            at: time::OffsetDateTime::UNIX_EPOCH,
        })
        .to_string();
        assert!(
            sql.starts_with("UPDATE users SET point = point + $1, updated_at = $2 WHERE id = $3"),
            "{sql}"
        );
    }
}
