//! Every purge on the real database, with rows just inside and just outside
//! its retention: delivered events, dead-lettered events (only on an
//! operator's command), idempotency keys and popular-menu statistics.

use std::time::Duration;

use coffee_ports::{IdempotencyRecords, OutboxStore, StatisticsUpkeep};
use coffee_postgres::{PgIdempotencyRecords, PgOutboxStore, PgPool, PgPoolSettings, PgSalesStatistics};
use coffee_test_support::TestDatabase;
use diesel_async::SimpleAsyncConnection;
use time::OffsetDateTime;

const DAY: i64 = 24 * 3600;

fn pool(db: &TestDatabase) -> PgPool {
    PgPool::new(&PgPoolSettings::local(db.url())).expect("pool")
}

async fn run(db: &TestDatabase, sql: &str) {
    db.connect()
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `n` outbox rows in `status`, created (and, when delivered, delivered)
/// `age` ago, tagged `tag` in their payload.
async fn events(db: &TestDatabase, n: u32, status: &str, age: &str, tag: &str) {
    run(
        db,
        &format!(
            "INSERT INTO outbox_events (id, event_type, aggregate_id, payload, status, attempts, created_at, \
             delivered_at, last_error) \
             SELECT gen_random_uuid(), 'ORDER_PLACED', gen_random_uuid(), jsonb_build_object('tag', '{tag}'), \
             '{status}', 20, now() - interval '{age}', \
             CASE WHEN '{status}' = 'DELIVERED' THEN now() - interval '{age}' END, \
             CASE WHEN '{status}' = 'DEAD' THEN 'collector said 500' END \
             FROM generate_series(1, {n})"
        ),
    )
    .await;
}

async fn tagged(db: &TestDatabase, tag: &str) -> i64 {
    db.count(&format!(
        "SELECT count(*) AS n FROM outbox_events WHERE payload->>'tag' = '{tag}'"
    ))
    .await
}

#[tokio::test]
async fn delivered_events_go_just_after_their_retention() {
    let db = TestDatabase::create().await;
    events(&db, 2, "DELIVERED", "7 days 1 minute", "outside").await;
    events(&db, 3, "DELIVERED", "6 days 23 hours 59 minutes", "inside").await;
    events(&db, 1, "DEAD", "30 days", "dead").await;
    events(&db, 1, "PENDING", "30 days", "pending").await;

    let purged = PgOutboxStore::new(pool(&db))
        .purge_delivered(Duration::from_secs(7 * DAY as u64))
        .await
        .expect("purged");

    assert_eq!(purged, 2);
    assert_eq!(tagged(&db, "outside").await, 0);
    assert_eq!(tagged(&db, "inside").await, 3);
    assert_eq!(
        tagged(&db, "dead").await,
        1,
        "dead letters are never purged by age alone"
    );
    assert_eq!(tagged(&db, "pending").await, 1);
}

#[tokio::test]
async fn dead_letters_are_listed_and_discarded_only_past_the_age_given_in_batches() {
    let db = TestDatabase::create().await;
    // More than one batch (5,000 rows) outside, a few just inside.
    events(&db, 12_001, "DEAD", "30 days 1 minute", "outside").await;
    events(&db, 4, "DEAD", "29 days 23 hours 59 minutes", "inside").await;
    events(&db, 2, "DELIVERED", "60 days", "delivered").await;
    let store = PgOutboxStore::new(pool(&db));

    let listed = store.list_dead(3).await.expect("listed");
    assert_eq!(listed.len(), 3);
    assert!(
        listed
            .iter()
            .all(|e| e.attempts == 20 && e.last_error.as_deref() == Some("collector said 500"))
    );
    assert!(
        listed.windows(2).all(|w| w[0].created_at <= w[1].created_at),
        "oldest first"
    );

    let discarded = store
        .discard_dead(Duration::from_secs(30 * DAY as u64))
        .await
        .expect("discarded");

    assert_eq!(discarded, 12_001);
    assert_eq!(tagged(&db, "outside").await, 0);
    assert_eq!(tagged(&db, "inside").await, 4);
    assert_eq!(tagged(&db, "delivered").await, 2, "only dead letters");
    assert_eq!(
        store.backlog().await.expect("backlog"),
        (0, 4),
        "the dead count /metrics shows"
    );
}

#[tokio::test]
async fn idempotency_keys_go_just_after_their_retention() {
    let db = TestDatabase::create().await;
    let user = db.insert_user(0).await;
    for (key, age) in [("outside", "24 hours 1 minute"), ("inside", "23 hours 59 minutes")] {
        run(
            &db,
            &format!(
                "INSERT INTO idempotency_keys (user_id, scope, key, fingerprint, outcome, created_at) \
                 VALUES ('{user}', 'points.charge', '{key}', sha256('x'), '{{}}', now() - interval '{age}')"
            ),
        )
        .await;
    }

    let purged = PgIdempotencyRecords::new(pool(&db))
        .purge_older_than(Duration::from_secs(DAY as u64))
        .await
        .expect("purged");

    assert_eq!(purged, 1);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM idempotency_keys WHERE key = 'inside'")
            .await,
        1
    );
}

#[tokio::test]
async fn statistics_buckets_go_once_they_start_before_the_cutoff() {
    let db = TestDatabase::create().await;
    let cutoff = OffsetDateTime::now_utc() - time::Duration::days(8);
    let hour = cutoff
        .replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .expect("hour");
    // The bucket of the hour before the cutoff's (ends before it), the
    // cutoff's own hour (starts before it), and the next (starts after it).
    for (bucket, shards) in [
        (hour - time::Duration::hours(1), 3),
        (hour, 2),
        (hour + time::Duration::hours(1), 4),
    ] {
        run(
            &db,
            &format!(
                "INSERT INTO menu_sales_hourly (bucket_start, menu_id, shard, quantity, order_count) \
                 SELECT to_timestamp({}), m.id, s, 1, 1 FROM (SELECT id FROM menus LIMIT 2) m, \
                 generate_series(0, {shards} - 1) s",
                bucket.unix_timestamp()
            ),
        )
        .await;
    }

    let purged = PgSalesStatistics::new(pool(&db)).purge(cutoff).await.expect("purged");

    assert_eq!(purged, 2 * 3 + 2 * 2, "both buckets that start before the cutoff");
    let kept = db
        .count(&format!(
            "SELECT count(*) AS n FROM menu_sales_hourly WHERE bucket_start = to_timestamp({})",
            (hour + time::Duration::hours(1)).unix_timestamp()
        ))
        .await;
    assert_eq!(kept, 2 * 4);
    assert_eq!(db.count("SELECT count(*) AS n FROM menu_sales_hourly").await, 2 * 4);
}
