//! `PgPool`'s session settings, on a real database.

use coffee_postgres::{PgPool, PgPoolSettings};
use coffee_test_support::TestDatabase;
use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

async fn setting(pool: &PgPool, name: &str) -> String {
    let mut conn = pool.get().await.expect("connection");
    let row: Setting = diesel::sql_query(format!("SELECT current_setting('{name}') AS value"))
        .get_result(&mut *conn)
        .await
        .expect("setting");
    row.value
}

#[tokio::test]
async fn commits_are_durable_unless_the_pool_says_otherwise() {
    let db = TestDatabase::create().await;
    let durable = PgPool::new(&PgPoolSettings::local(db.url())).expect("pool");
    let relaxed = PgPool::new(&PgPoolSettings {
        durable_commits: false,
        ..PgPoolSettings::local(db.url())
    })
    .expect("pool");

    assert_eq!(setting(&durable, "synchronous_commit").await, "on");
    assert_eq!(setting(&relaxed, "synchronous_commit").await, "off");
    assert_eq!(setting(&relaxed, "statement_timeout").await, "10s");
    assert_eq!(setting(&relaxed, "TimeZone").await, "UTC");
}
