//! SQL functions the adapters call through diesel's query builder.

use diesel::sql_types::{Nullable, Timestamptz};

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
