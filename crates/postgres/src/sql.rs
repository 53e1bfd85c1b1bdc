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

/// A hand-written SQL text of this crate, registered where it is written so
/// that one test (`crates/postgres/tests/hand_sql.rs`) prepares every one of
/// them against the migrated schema: a renamed column fails that test, with
/// no data needed.
#[derive(Debug)]
pub struct HandSql {
    /// Where it is written (`file:line`) or the statement's name.
    pub origin: &'static str,
    pub sql: &'static str,
    /// Whether its binds are `$name`s ([`statement!`]) or `$1`, `$2`, ...
    /// (`sql_query`).
    pub named: bool,
}

inventory::collect!(HandSql);

/// Every hand-written SQL text of this crate.
pub fn hand_written() -> impl Iterator<Item = &'static HandSql> {
    inventory::iter::<HandSql>.into_iter()
}

impl HandSql {
    /// The text as PostgreSQL receives it: named binds numbered in order,
    /// one number per occurrence, as diesel numbers them.
    pub fn positional(&self) -> Result<String, String> {
        if !self.named {
            return Ok(self.sql.to_owned());
        }
        let parts = split_binds(self.sql)?;
        let mut out = String::new();
        for (n, (before, _)) in parts.binds.iter().enumerate() {
            out.push_str(before);
            out.push_str(&format!("${}", n + 1));
        }
        out.push_str(parts.tail);
        Ok(out)
    }
}

/// `diesel::sql_query(sql)`, with `sql` (a literal or a constant) registered
/// as hand-written ([`HandSql`]).
macro_rules! query {
    ($sql:expr $(,)?) => {{
        inventory::submit! {
            $crate::sql::HandSql { origin: concat!(file!(), ":", line!()), sql: $sql, named: false }
        }
        diesel::sql_query($sql)
    }};
}
pub(crate) use query;

/// Registers SQL texts that reach `sql_query` through a variable.
macro_rules! register {
    ($($sql:expr),+ $(,)?) => {
        $(inventory::submit! {
            $crate::sql::HandSql { origin: concat!(file!(), ":", line!(), " ", stringify!($sql)), sql: $sql, named: false }
        })+
    };
}
pub(crate) use register;

/// Declares a statement with fixed SQL whose binds are written `$field`,
/// each filled from the struct's field of that name (a name may appear more
/// than once; one the struct lacks is an error the test of every statement
/// catches). By name, not by position: swapping two fields of one type can
/// no longer swap what is stored. The SQL is read as PostgreSQL reads it, so
/// a `$` inside a string literal, a quoted identifier, a comment or a
/// dollar-quoted body is text, not a bind. It has a static `QueryId`, so
/// diesel-async prepares it once per connection and afterwards sends it in
/// one message batch, which lets several be pipelined in one round trip.
/// Diesel's own `UPDATE`, upsert and multi-row `INSERT` builders are never
/// cached: each of those costs a round trip to prepare before it runs.
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

        inventory::submit! {
            $crate::sql::HandSql { origin: stringify!($name), sql: $sql, named: true }
        }

        impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for $name {
            #[allow(unused_variables, unused_mut)]
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
            ) -> diesel::QueryResult<()> {
                // The SQL is split at its binds once, not at every execution.
                static PARTS: std::sync::OnceLock<Result<$crate::sql::Parts, String>> = std::sync::OnceLock::new();
                let parts = PARTS
                    .get_or_init(|| $crate::sql::split_binds($sql))
                    .as_ref()
                    .map_err(|e| diesel::result::Error::QueryBuilderError(
                        format!("{}: {e}", stringify!($name)).into(),
                    ))?;
                for &(before, bind) in &parts.binds {
                    out.push_sql(before);
                    match bind {
                        $(stringify!($field) => out.push_bind_param::<$sql_ty, $ty>(&self.$field)?,)*
                        other => {
                            return Err(diesel::result::Error::QueryBuilderError(
                                format!("{} has no field for the bind ${other}", stringify!($name)).into(),
                            ));
                        }
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

/// A statement's SQL split at its binds: each piece of text with the name
/// of the bind after it, then the text after the last bind.
#[derive(Debug, PartialEq, Eq)]
pub struct Parts {
    pub binds: Vec<(&'static str, &'static str)>,
    pub tail: &'static str,
}

/// Splits `sql` at its `$name` binds, reading it as PostgreSQL's lexer does:
/// string literals (`'...'`, with `''`), quoted identifiers (`"..."`), `--`
/// and `/* */` comments and dollar-quoted bodies (`$$...$$`, `$tag$...$tag$`)
/// are skipped. A positional bind (`$1`) is refused: binds are named.
pub fn split_binds(sql: &'static str) -> Result<Parts, String> {
    let bytes = sql.as_bytes();
    let is_ident_start = |b: u8| b.is_ascii_alphabetic() || b == b'_';
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let find = |from: usize, needle: &str| sql[from..].find(needle).map(|at| from + at);
    let mut binds = Vec::new();
    let mut piece = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                let mut j = i + 1;
                loop {
                    match bytes.get(j) {
                        None => return Err(format!("an unterminated {} at byte {i}", char::from(quote))),
                        Some(&b) if b == quote && bytes.get(j + 1) == Some(&quote) => j += 2,
                        Some(&b) if b == quote => break,
                        Some(_) => j += 1,
                    }
                }
                i = j + 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => i = find(i, "\n").unwrap_or(bytes.len()),
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = find(i + 2, "*/").ok_or_else(|| format!("an unterminated comment at byte {i}"))? + 2;
            }
            b'$' => {
                let name_end = i + 1 + bytes[i + 1..].iter().take_while(|&&b| is_ident(b)).count();
                let starts_name = bytes.get(i + 1).is_some_and(|&b| is_ident_start(b));
                if bytes.get(name_end) == Some(&b'$') && (starts_name || name_end == i + 1) {
                    // A dollar quote: `$$` or `$tag$`, up to the same again.
                    let tag = &sql[i..=name_end];
                    i = find(name_end + 1, tag).ok_or_else(|| format!("an unterminated {tag} quote at byte {i}"))?
                        + tag.len();
                } else if starts_name {
                    binds.push((&sql[piece..i], &sql[i + 1..name_end]));
                    piece = name_end;
                    i = name_end;
                } else if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    return Err(format!("a positional bind at byte {i}: name it after its field"));
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    Ok(Parts {
        binds,
        tail: &sql[piece..],
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    statement! {
        /// A statement whose binds come in another order than its fields.
        struct ChangeBalance {
            user: uuid::Uuid = diesel::sql_types::Uuid,
            delta: i64 = diesel::sql_types::BigInt,
            at: time::OffsetDateTime = Timestamptz,
        } = "UPDATE users SET point = point + $delta, updated_at = $at WHERE id = $user";
    }

    #[test]
    fn binds_are_split_by_name_and_literals_comments_and_quotes_are_text() {
        let parts = split_binds(
            "SELECT '$a', \"$b\", $$ $c $$, $tag$ $d $tag$ -- $e\n/* $f */ FROM t WHERE x = $x::int AND y = $y_2",
        )
        .expect("splits");
        let names: Vec<&str> = parts.binds.iter().map(|(_, name)| *name).collect();
        assert_eq!(names, ["x", "y_2"]);
        assert_eq!(parts.tail, "");
        assert!(parts.binds[0].0.ends_with("WHERE x = "), "{parts:?}");
        assert_eq!(split_binds("a = 'it''s $not'").expect("splits").binds, []);
        assert!(split_binds("a = $1").is_err(), "positional binds are refused");
        assert!(split_binds("a = 'open").is_err());
        assert!(split_binds("a = $q$ open").is_err());
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
        assert!(
            sql.contains("binds: [-5, 1970-01-01 0:00:00.0 +00:00:00, 00000000-0000-0000-0000-000000000000]"),
            "the fields bound by name: {sql}"
        );
    }
}
