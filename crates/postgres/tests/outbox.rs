//! `PgOutboxStore` on the real database: claims never overlap, leases expire,
//! results are recorded only by the claim's holder.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use coffee_domain::DeliveryResult;
use coffee_ports::OutboxStore;
use coffee_postgres::{PgOutboxStore, PgPool, PgPoolSettings};
use coffee_test_support::TestDatabase;
use diesel_async::SimpleAsyncConnection;
use uuid::Uuid;

async fn seed(db: &TestDatabase, n: usize) {
    db.connect()
        .await
        .batch_execute(&format!(
            "INSERT INTO outbox_events (id, event_type, aggregate_id, payload) \
             SELECT gen_random_uuid(), 'ORDER_PLACED', gen_random_uuid(), jsonb_build_object('n', g) \
             FROM generate_series(1, {n}) g"
        ))
        .await
        .expect("seeded");
}

fn store(db: &TestDatabase) -> PgOutboxStore {
    PgOutboxStore::new(PgPool::new(&PgPoolSettings::local(db.url())).expect("pool"))
}

#[tokio::test]
async fn two_relays_claiming_at_once_never_take_the_same_event() {
    let db = TestDatabase::create().await;
    seed(&db, 300).await;
    let store = Arc::new(store(&db));

    let relays: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|owner| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim(owner, 7, Duration::from_secs(60)).await.expect("claimed");
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|m| m.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for relay in relays {
        all.extend(relay.await.expect("joined"));
    }

    let distinct: HashSet<Uuid> = all.iter().copied().collect();
    assert_eq!(all.len(), 300, "every event claimed once");
    assert_eq!(distinct.len(), 300, "no event claimed twice");
}

#[tokio::test]
async fn an_expired_lease_is_claimed_again() {
    let db = TestDatabase::create().await;
    seed(&db, 1).await;
    let store = store(&db);

    let first = store
        .claim("killed", 10, Duration::from_millis(300))
        .await
        .expect("claimed");
    assert_eq!(first.len(), 1);
    assert!(
        store
            .claim("other", 10, Duration::from_secs(60))
            .await
            .expect("claimed")
            .is_empty(),
        "held"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = store
        .claim("other", 10, Duration::from_secs(60))
        .await
        .expect("claimed");

    assert_eq!(second.iter().map(|m| m.id).collect::<Vec<_>>(), vec![first[0].id]);
    // The killed relay's late result no longer counts.
    store
        .record("killed", first[0].id, DeliveryResult::Delivered)
        .await
        .expect("recorded");
    assert_eq!(store.stats().await.expect("stats").delivered, 0);
    store
        .record("other", first[0].id, DeliveryResult::Delivered)
        .await
        .expect("recorded");
    assert_eq!(store.stats().await.expect("stats").delivered, 1);
}

#[tokio::test]
async fn retries_wait_their_turn_and_dead_letters_can_be_requeued() {
    let db = TestDatabase::create().await;
    seed(&db, 2).await;
    let store = store(&db);
    let batch = store.claim("r", 10, Duration::from_secs(60)).await.expect("claimed");
    assert_eq!(store.stats().await.expect("stats").in_flight, 2);

    store
        .record(
            "r",
            batch[0].id,
            DeliveryResult::Retry {
                retry_in: Duration::from_millis(400),
                error: "503".into(),
            },
        )
        .await
        .expect("recorded");
    store
        .record(
            "r",
            batch[1].id,
            DeliveryResult::Dead {
                error: "gave up".into(),
            },
        )
        .await
        .expect("recorded");

    assert!(
        store
            .claim("r", 10, Duration::from_secs(60))
            .await
            .expect("claimed")
            .is_empty(),
        "not due yet"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = store.claim("r", 10, Duration::from_secs(60)).await.expect("claimed");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.dead), (1, 1));

    assert_eq!(store.requeue_dead().await.expect("requeued"), 1);
    assert_eq!(store.release("r").await.expect("released"), 1);
    let requeued = store.claim("r", 10, Duration::from_secs(60)).await.expect("claimed");
    assert_eq!(requeued.len(), 2, "the requeued event and the released one");
    assert!(requeued.iter().any(|m| m.id == batch[1].id && m.attempts == 0));
}

#[tokio::test]
async fn delivered_events_are_purged_after_their_retention() {
    let db = TestDatabase::create().await;
    seed(&db, 3).await;
    let store = store(&db);
    for message in store.claim("r", 10, Duration::from_secs(60)).await.expect("claimed") {
        store
            .record("r", message.id, DeliveryResult::Delivered)
            .await
            .expect("recorded");
    }
    db.connect()
        .await
        .batch_execute(
            "UPDATE outbox_events SET delivered_at = now() - interval '8 days' \
             WHERE id IN (SELECT id FROM outbox_events LIMIT 2)",
        )
        .await
        .expect("aged");

    assert_eq!(
        store
            .purge_delivered(Duration::from_secs(7 * 24 * 3600))
            .await
            .expect("purged"),
        2
    );
    assert_eq!(store.stats().await.expect("stats").delivered, 1);
}
