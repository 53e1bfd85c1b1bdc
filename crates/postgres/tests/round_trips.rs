//! Round trips to PostgreSQL per order and per charge, counted by a proxy on
//! the wire (`RoundTripCounter`), so they cannot creep back: each is network
//! latency every request pays, on top of the database's own work.

use std::time::Duration;

use coffee_application::place_order::decide;
use coffee_domain::{
    ChargeAmount, ChargeLimits, ChargeOutcome, Fingerprint, IdempotencyContext, IdempotencyKey, IdempotencyScope,
    MenuId, OrderRequest, PlaceOrderOutcome, Points, UserId,
};
use coffee_ports::{OrderStore, PointStore};
use coffee_postgres::{PgOrderStore, PgPointStore, PgPool, PgPoolSettings};
use coffee_test_support::{RoundTripCounter, TestDatabase, host_port};
use diesel_async::SimpleAsyncConnection;
use uuid::Uuid;

/// The seeded Americano and Latte.
const AMERICANO: u128 = 0x0192f0a0_0000_7000_8000_000000000001;
const LATTE: u128 = 0x0192f0a0_0000_7000_8000_000000000002;

/// The most an order may take: `BEGIN`, the claim and the reads; then the
/// writes with the stored outcome, and `COMMIT`.
const ORDER_ROUND_TRIPS: u64 = 2;
/// The most a charge may take, likewise.
const CHARGE_ROUND_TRIPS: u64 = 2;
/// The most statements either may send on a connection that already has
/// the idempotency wait: `BEGIN`, the balance locked with the key claimed
/// and the reads, in one; then the writes with the stored outcome, and
/// `COMMIT`. Each is a bind, an execution and a flushed answer for the
/// server, and a response for the client to read.
const STATEMENTS: u64 = 4;

/// A pool of one connection through the counter: every request reuses it,
/// with its statements prepared by the warm-up.
async fn counted(db: &TestDatabase) -> (RoundTripCounter, PgPool) {
    let upstream = host_port(db.url()).expect("host:port").to_owned();
    let counter = RoundTripCounter::start(&upstream).await.expect("counter");
    let mut settings = PgPoolSettings::local(db.url_via(&counter.addr().to_string()));
    settings.max_size = 1;
    (counter, PgPool::new(&settings).expect("pool"))
}

fn context(user: Uuid, scope: IdempotencyScope, key: &str, fingerprint: u8) -> IdempotencyContext {
    IdempotencyContext {
        user_id: UserId::from_uuid(user),
        scope,
        key: IdempotencyKey::parse(key).expect("key"),
        fingerprint: Fingerprint::from_bytes([fingerprint; 32]),
    }
}

fn two_coffees() -> OrderRequest {
    OrderRequest::new(&[
        (MenuId::from_uuid(Uuid::from_u128(AMERICANO)), 2),
        (MenuId::from_uuid(Uuid::from_u128(LATTE)), 1),
    ])
    .expect("valid")
}

async fn set_balance(db: &TestDatabase, user: Uuid, point: i64) {
    db.connect()
        .await
        .batch_execute(&format!("UPDATE users SET point = {point} WHERE id = '{user}'"))
        .await
        .expect("balance set");
}

/// Round trips and statements `operation` makes.
async fn trips<T>(counter: &RoundTripCounter, operation: impl std::future::Future<Output = T>) -> ((u64, u64), T) {
    let before = (counter.trips(), counter.statements());
    let answer = operation.await;
    ((counter.trips() - before.0, counter.statements() - before.1), answer)
}

#[tokio::test]
async fn an_order_takes_two_round_trips_paid_short_or_replayed() {
    let db = TestDatabase::create().await;
    let (counter, pool) = counted(&db).await;
    let store = PgOrderStore::new(pool, Duration::from_secs(5));
    let user = db.insert_user(1_000_000).await;
    let place = |key: &'static str| {
        store.place_order(
            context(user, IdempotencyScope::OrdersPlace, key, 1),
            two_coffees(),
            decide,
        )
    };
    // Each statement is prepared once per connection: warm every path up
    // (paid, replayed, refused: a refused order stores its outcome alone).
    place("warm-up").await.expect("placed");
    place("warm-up").await.expect("replayed");
    set_balance(&db, user, 10).await;
    place("warm-up short").await.expect("refused");
    set_balance(&db, user, 1_000_000).await;

    let ((placed, placed_statements), outcome) = trips(&counter, place("paid")).await;
    let ((replayed, replayed_statements), replay) = trips(&counter, place("paid")).await;
    set_balance(&db, user, 10).await;
    let ((short, short_statements), refused) = trips(&counter, place("short")).await;

    eprintln!(
        "round trips (statements) per order: paid {placed} ({placed_statements}), \
         replayed {replayed} ({replayed_statements}), refused {short} ({short_statements})"
    );
    assert!(matches!(
        outcome.expect("answered").into_inner(),
        PlaceOrderOutcome::Placed(_)
    ));
    assert!(replay.expect("answered").is_replayed());
    assert!(matches!(
        refused.expect("answered").into_inner(),
        PlaceOrderOutcome::InsufficientPoints { .. }
    ));
    assert!(placed <= ORDER_ROUND_TRIPS, "a paid order took {placed} round trips");
    assert!(
        replayed <= ORDER_ROUND_TRIPS,
        "a replayed order took {replayed} round trips"
    );
    assert!(short <= ORDER_ROUND_TRIPS, "a refused order took {short} round trips");
    assert!(placed >= 1, "the counter sees the order's traffic");
    assert!(
        placed_statements <= STATEMENTS,
        "a paid order sent {placed_statements} statements"
    );
    assert!(
        short_statements <= STATEMENTS,
        "a refused order sent {short_statements} statements"
    );
}

#[tokio::test]
async fn a_charge_takes_two_round_trips_credited_or_over_the_limit() {
    let db = TestDatabase::create().await;
    let (counter, pool) = counted(&db).await;
    let store = PgPointStore::new(pool, Duration::from_secs(5));
    let user = db.insert_user(0).await;
    let limits = ChargeLimits {
        max_amount: Points::new(1_000_000).expect("points"),
        max_balance: Points::new(1_500_000).expect("points"),
    };
    let amount = ChargeAmount::new(1_000_000, &limits).expect("amount");
    let charge =
        |key: &'static str| store.charge(context(user, IdempotencyScope::PointsCharge, key, 2), amount, limits);
    // Every path, as for orders (a refused charge stores its outcome alone).
    charge("warm-up").await.expect("charged");
    charge("warm-up").await.expect("replayed");
    charge("warm-up over").await.expect("refused");

    let ((over, over_statements), refused) = trips(&counter, charge("over the limit")).await;
    set_balance(&db, user, 0).await;
    let ((credited, credited_statements), outcome) = trips(&counter, charge("credited")).await;

    eprintln!(
        "round trips (statements) per charge: credited {credited} ({credited_statements}), \
         over the limit {over} ({over_statements})"
    );
    assert!(matches!(
        refused.expect("answered").into_inner(),
        ChargeOutcome::BalanceLimitExceeded { .. }
    ));
    assert!(matches!(
        outcome.expect("answered").into_inner(),
        ChargeOutcome::Charged(_)
    ));
    assert!(credited <= CHARGE_ROUND_TRIPS, "a charge took {credited} round trips");
    assert!(over <= CHARGE_ROUND_TRIPS, "a refused charge took {over} round trips");
    assert!(credited >= 1, "the counter sees the charge's traffic");
    assert!(
        credited_statements <= STATEMENTS,
        "a charge sent {credited_statements} statements"
    );
    assert!(
        over_statements <= STATEMENTS,
        "a refused charge sent {over_statements} statements"
    );
}

/// An order's and a charge's transactions, read back from the WAL
/// (pg_walinspect): no subtransaction (the idempotency claim once caught a
/// duplicate's wait in an `EXCEPTION` block), and so no multixact on the
/// user's row, which the claim's foreign-key lock taken by a subtransaction
/// and the payment's update by its parent made PostgreSQL record on every
/// order and charge.
#[tokio::test]
async fn an_order_and_a_charge_commit_without_subtransactions_or_multixacts() {
    let db = TestDatabase::create().await;
    db.connect()
        .await
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .await
        .expect("pg_walinspect");
    let pool = PgPool::new(&PgPoolSettings::local(db.url())).expect("pool");
    let orders = PgOrderStore::new(pool.clone(), Duration::from_secs(5));
    let points = PgPointStore::new(pool, Duration::from_secs(5));
    let user = db.insert_user(1_000_000).await;
    let flushed = "SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::bigint AS n";
    let start = db.count(flushed).await;

    let placed = orders
        .place_order(
            context(user, IdempotencyScope::OrdersPlace, "wal", 1),
            two_coffees(),
            decide,
        )
        .await
        .expect("answered");
    assert!(matches!(placed.into_inner(), PlaceOrderOutcome::Placed(_)));
    let limits = ChargeLimits {
        max_amount: Points::new(1_000_000).expect("points"),
        max_balance: Points::new(100_000_000).expect("points"),
    };
    let amount = ChargeAmount::new(5_000, &limits).expect("amount");
    let charged = points
        .charge(context(user, IdempotencyScope::PointsCharge, "wal", 2), amount, limits)
        .await
        .expect("answered");
    assert!(matches!(charged.into_inner(), ChargeOutcome::Charged(_)));

    let end = db.count(flushed).await;
    let records = |filter: &str| {
        format!(
            "SELECT count(*) AS n FROM pg_get_wal_records_info('0/0'::pg_lsn + {start}, '0/0'::pg_lsn + {end}) w \
             WHERE w.xid IN (SELECT xmin FROM orders WHERE user_id = '{user}' \
                             UNION SELECT xmin FROM point_transactions WHERE user_id = '{user}' AND type = 'ADD') \
             AND {filter}"
        )
    };
    let commits = db
        .count(&records(
            "w.resource_manager = 'Transaction' AND w.record_type = 'COMMIT'",
        ))
        .await;
    let with_subtransactions = db
        .count(&records(
            "w.resource_manager = 'Transaction' AND w.description LIKE '%subxacts%'",
        ))
        .await;
    let multixacts = db.count(&records("w.resource_manager = 'MultiXact'")).await;
    assert_eq!(commits, 2, "the WAL holds both commits");
    assert_eq!(with_subtransactions, 0, "a commit listed subtransactions");
    assert_eq!(multixacts, 0, "the transactions recorded multixacts");
}
