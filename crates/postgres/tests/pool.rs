//! `PgPool`'s session settings, on a real database.

use coffee_postgres::{PgPool, PgPoolSettings};
use coffee_test_support::{TestDatabase, on_worker_thread};
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

#[derive(QueryableByName)]
struct Backend {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

async fn backend_pid(pool: &PgPool) -> i32 {
    let mut conn = pool.get().await.expect("connection");
    let row: Backend = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result(&mut *conn)
        .await
        .expect("backend pid");
    row.pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn each_worker_has_connections_of_its_own_which_end_with_it() {
    let db = TestDatabase::create().await;
    let pool = PgPool::per_worker(
        &PgPoolSettings {
            max_size: 4,
            ..PgPoolSettings::local(db.url())
        },
        tokio::runtime::Handle::current(),
        2,
    )
    .expect("pool");

    // A worker reuses its own connection; it is closed when the worker's
    // thread ends, not handed to anyone else.
    let first = on_worker_thread(&pool, PgPool::adopt_worker, async |pool| {
        (backend_pid(pool).await, backend_pid(pool).await)
    })
    .join()
    .expect("worker");
    assert_eq!(first.0, first.1, "a worker reuses its idle connection");
    let second = on_worker_thread(&pool, PgPool::adopt_worker, async |pool| backend_pid(pool).await)
        .join()
        .expect("worker");
    assert_ne!(second, first.0, "a worker never gets another worker's connection");
    let outside = backend_pid(&pool).await;
    assert!(
        outside != first.0 && outside != second,
        "a thread that is no worker uses the shared pool"
    );
    assert_eq!(
        pool.usage(),
        (0, 2),
        "only the shared pool is left once the workers ended"
    );

    let mut watcher = db.connect().await;
    let mut open = true;
    for _ in 0..100 {
        let rows: Vec<Backend> = diesel::sql_query(format!(
            "SELECT pid FROM pg_stat_activity WHERE pid IN ({}, {second})",
            first.0
        ))
        .load(&mut watcher)
        .await
        .expect("activity");
        open = !rows.is_empty();
        if !open {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!open, "the ended workers' connections were closed with their threads");
}
