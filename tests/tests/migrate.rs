//! `coffee migrate` during a rolling deploy: several runners at once, a
//! migration behind a long transaction, and no serving settings needed.

use std::time::{Duration, Instant};

use coffee_e2e::run_coffee;
use coffee_test_support::TestDatabase;
use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// What an operator's migration job has: the database and nothing else. A
/// production environment without `JWT_SECRET` (serving would refuse it).
fn migration_job_env(database_url: &str, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("APP_ENV", "production".to_owned()),
        ("BIND_ADDR", "0.0.0.0:8080".to_owned()),
        ("DATABASE_URL", database_url.to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(url: &str, sql: &str) -> i64 {
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .map(|c| c.n)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test]
async fn four_migrations_at_once_on_a_database_not_yet_created_all_succeed_and_apply_once() {
    let db = TestDatabase::create_empty().await;
    let name = format!("{}_racing", db.name());
    let url = db.url().replace(db.name(), &name);
    let env = migration_job_env(&url, &[]);

    let runs: Vec<_> = (0..4)
        .map(|_| {
            let env = env.clone();
            std::thread::spawn(move || run_coffee(&["migrate"], &env))
        })
        .collect();
    let outputs: Vec<(bool, String)> = runs
        .into_iter()
        .map(|run| {
            let (status, output) = run.join().expect("thread").expect("coffee migrate runs");
            (status.success(), output)
        })
        .collect();

    let applied_versions = count(&url, "SELECT count(*) AS n FROM __diesel_schema_migrations").await;
    let menus = count(&url, "SELECT count(*) AS n FROM menus").await;
    let dropped = db.drop_sibling(&name).await;

    for (success, output) in &outputs {
        assert!(success, "a concurrent coffee migrate failed: {output}");
    }
    let said = |what: &str| outputs.iter().filter(|(_, o)| o.contains(what)).count();
    assert_eq!(said("created the database"), 1, "{outputs:#?}");
    assert_eq!(said("migrations applied"), 1, "{outputs:#?}");
    assert_eq!(said("up to date"), 3, "{outputs:#?}");
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .expect("migrations directory")
        .count();
    assert_eq!(applied_versions, i64::try_from(migrations).expect("few"));
    assert!(menus >= 8, "the seed menu was inserted once: {menus}");
    assert!(dropped);
}

/// Takes migrations 3 and 4 back out of a migrated database, so that
/// `coffee migrate` has to create tables referencing `users` again.
async fn revert_last_two_migrations(db: &TestDatabase) {
    let mut conn = db.connect().await;
    conn.batch_execute(concat!(
        include_str!("../../migrations/2026-11-29-000004_claim_idempotency_key/down.sql"),
        include_str!("../../migrations/2026-11-29-000003_idempotency_outbox_statistics/down.sql"),
        "DELETE FROM __diesel_schema_migrations WHERE version IN ('20261129000003', '20261129000004');"
    ))
    .await
    .expect("reverted");
}

#[tokio::test]
async fn a_migration_behind_a_long_transaction_fails_fast_and_applies_nothing() {
    let db = TestDatabase::create().await;
    revert_last_two_migrations(&db).await;
    // A long transaction that wrote to `users`: its lock conflicts with the
    // one the migration's foreign keys to `users` need.
    let mut long = db.connect().await;
    long.batch_execute("BEGIN; LOCK TABLE users IN ROW EXCLUSIVE MODE;")
        .await
        .expect("long transaction");
    let env = migration_job_env(db.url(), &[("MIGRATION_LOCK_TIMEOUT_MS", "300")]);

    let started = Instant::now();
    let (status, output) = tokio::task::spawn_blocking({
        let env = env.clone();
        move || run_coffee(&["migrate"], &env)
    })
    .await
    .expect("joined")
    .expect("coffee migrate runs");
    let took = started.elapsed();
    let half_applied = count(
        db.url(),
        "SELECT count(*) AS n FROM pg_tables WHERE tablename IN ('idempotency_keys', 'outbox_events')",
    )
    .await;

    assert!(!status.success(), "it must fail, not wait: {output}");
    assert!(took < Duration::from_secs(10), "failed fast: {took:?}");
    assert!(
        output.contains("MIGRATION_LOCK_TIMEOUT_MS") && output.contains("run `coffee migrate` again"),
        "a message that says what happened and what to do: {output}"
    );
    assert_eq!(half_applied, 0, "nothing of the failed migration stays");

    long.batch_execute("ROLLBACK").await.expect("ended");
    let (status, output) = run_coffee(&["migrate"], &env).expect("coffee migrate runs");
    assert!(status.success(), "once the transaction ends it applies: {output}");
    assert!(output.contains("migrations applied"), "{output}");
}

#[tokio::test]
async fn a_runner_that_cannot_get_the_migration_lock_gives_up_with_a_clear_message() {
    let db = TestDatabase::create().await;
    let mut holder = db.connect().await;
    holder
        .batch_execute("SELECT pg_advisory_lock(x'636f66666565'::bigint)")
        .await
        .expect("lock held");
    let env = migration_job_env(db.url(), &[("MIGRATION_WAIT_SECS", "1")]);

    let started = Instant::now();
    let (status, output) = tokio::task::spawn_blocking(move || run_coffee(&["migrate"], &env))
        .await
        .expect("joined")
        .expect("coffee migrate runs");

    assert!(!status.success(), "{output}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        output.contains("another `coffee migrate`") && output.contains("MIGRATION_WAIT_SECS"),
        "{output}"
    );
}

#[tokio::test]
async fn outbox_commands_list_and_discard_dead_letters_without_serving_settings() {
    let db = TestDatabase::create().await;
    db.connect()
        .await
        .batch_execute(
            "INSERT INTO outbox_events (id, event_type, aggregate_id, payload, status, attempts, created_at, last_error) \
             VALUES ('00000000-0000-0000-0000-0000000000d1', 'ORDER_PLACED', gen_random_uuid(), '{}', 'DEAD', 20, \
                     now() - interval '31 days', 'collector said 500'), \
                    ('00000000-0000-0000-0000-0000000000d2', 'ORDER_PLACED', gen_random_uuid(), '{}', 'DEAD', 20, \
                     now() - interval '1 day', 'timed out')",
        )
        .await
        .expect("dead letters");
    let env = migration_job_env(db.url(), &[]);
    let coffee = |args: &'static [&'static str]| {
        let (status, output) = run_coffee(args, &env).expect("runs");
        assert!(status.success(), "coffee {args:?}: {output}");
        output
    };

    assert!(coffee(&["outbox", "stats"]).contains("dead 2"));
    let listed = coffee(&["outbox", "list-dead"]);
    let lines: Vec<&str> = listed.lines().filter(|l| l.contains("ORDER_PLACED")).collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(
        lines[0].starts_with("00000000-0000-0000-0000-0000000000d1\t"),
        "oldest first: {listed}"
    );
    assert!(lines[0].ends_with("collector said 500"), "{listed}");

    assert!(coffee(&["outbox", "discard-dead", "--older-than", "30d"]).contains("discarded 1"));
    assert!(coffee(&["outbox", "stats"]).contains("dead 1"));

    let (status, output) = run_coffee(&["outbox", "discard-dead", "--older-than", "soon"], &env).expect("runs");
    assert!(!status.success(), "{output}");
    assert!(output.contains("--older-than"), "{output}");
}
