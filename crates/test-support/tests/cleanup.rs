//! What killed test runs leave behind is dropped by the next run.

use coffee_test_support::TestDatabase;
use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn exists(admin: &mut AsyncPgConnection, name: &str) -> bool {
    let found: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM pg_database WHERE datname = '{name}'"
    ))
    .get_result(admin)
    .await
    .expect("pg_database");
    found.n == 1
}

#[tokio::test]
async fn databases_of_killed_runs_are_dropped_and_live_ones_kept() {
    // Through a real database's URL, to reach the same server as admin.
    let db = TestDatabase::create().await;
    let admin_url = db.url().replacen(db.name(), "postgres", 1);
    let mut admin = AsyncPgConnection::establish(&admin_url).await.expect("admin");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // A process id no process can have, and this very process.
    let killed = format!("coffee_test_{}_{}_feedfacefeedface", now - 600, u32::MAX);
    let running = format!("coffee_test_{}_{}_feedfacefeedface", now - 600, std::process::id());
    for name in [&killed, &running] {
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create");
    }

    TestDatabase::sweep_abandoned().await.expect("sweep");

    assert!(
        !exists(&mut admin, &killed).await,
        "{killed} was left behind by a killed run"
    );
    assert!(
        exists(&mut admin, &running).await,
        "{running} belongs to a running process"
    );
    assert!(exists(&mut admin, db.name()).await, "a database in use is kept");
    admin
        .batch_execute(&format!("DROP DATABASE \"{running}\""))
        .await
        .expect("drop");
}
