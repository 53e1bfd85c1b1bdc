//! The hand-written `schema.rs` against the tables the migrations create.

use coffee_postgres::schema::*;
use coffee_test_support::TestDatabase;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct TableName {
    #[diesel(sql_type = Text)]
    table_name: String,
}

/// Selecting every column diesel knows fails if a name drifted from the SQL.
#[tokio::test]
async fn every_column_in_schema_rs_exists() {
    let db = TestDatabase::create().await;
    let mut conn = db.connect().await;
    macro_rules! probe {
        ($($table:ident),*) => {$(
            $table::table
                .select($table::all_columns)
                .limit(0)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", stringify!($table)));
        )*};
    }
    probe!(
        users,
        menus,
        orders,
        order_items,
        point_transactions,
        idempotency_keys,
        outbox_events,
        menu_sales_hourly
    );
}

/// Every table the migrations create is known to diesel (and vice versa).
#[tokio::test]
async fn schema_rs_knows_every_table() {
    let db = TestDatabase::create().await;
    let mut conn = db.connect().await;
    let mut tables: Vec<String> = diesel::sql_query(
        "SELECT table_name::text AS table_name FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
    )
    .load::<TableName>(&mut conn)
    .await
    .expect("tables")
    .into_iter()
    .map(|t| t.table_name)
    .collect();
    tables.sort();

    assert_eq!(
        tables,
        [
            "idempotency_keys",
            "menu_sales_hourly",
            "menus",
            "order_items",
            "orders",
            "outbox_events",
            "point_transactions",
            "users"
        ]
    );
}

#[tokio::test]
async fn the_menu_is_seeded_with_at_least_eight_coffees() {
    let db = TestDatabase::create().await;
    let mut conn = db.connect().await;
    let count: Count = diesel::sql_query("SELECT count(*) AS n FROM menus")
        .get_result(&mut conn)
        .await
        .expect("count");
    assert!(count.n >= 8);
}
