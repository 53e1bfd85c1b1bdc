//! Every hand-written SQL text of the adapter (`statement!`, `query!`,
//! `register!`) prepared against the migrated schema: a renamed column, a
//! misspelt table or a bind no field fills fails here, with no data needed.

use coffee_postgres::sql::hand_written;
use coffee_test_support::TestDatabase;

/// A plain client of `db`, to prepare statements without running them.
async fn connect(db: &TestDatabase) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn every_hand_written_statement_prepares_against_the_schema() {
    let db = TestDatabase::create().await;
    let client = connect(&db).await;

    let mut failures = Vec::new();
    let mut prepared = 0;
    for statement in hand_written() {
        let sql = match statement.positional() {
            Ok(sql) => sql,
            Err(e) => {
                failures.push(format!("{}: {e}", statement.origin));
                continue;
            }
        };
        match client.prepare(&sql).await {
            Ok(_) => prepared += 1,
            Err(e) => failures.push(format!("{}: {e:?}\n  {sql}", statement.origin)),
        }
    }

    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(prepared >= 30, "every statement is registered: only {prepared} were");
}

#[tokio::test]
async fn a_statement_with_a_renamed_column_fails_to_prepare() {
    let db = TestDatabase::create().await;
    let client = connect(&db).await;
    client
        .batch_execute("ALTER TABLE users RENAME COLUMN point TO points")
        .await
        .expect("renamed");
    let lock = hand_written().find(|s| s.origin == "ReadCharge").expect("registered");
    assert!(client.prepare(&lock.positional().expect("splits")).await.is_err());
}
