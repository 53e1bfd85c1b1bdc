//! `PgPointStore` on the real database: exact under concurrency, idempotent,
//! and the ledger invariant after every test.

use std::sync::Arc;
use std::time::Duration;

use coffee_domain::{
    ChargeAmount, ChargeLimits, ChargeOutcome, Fingerprint, IdempotencyContext, IdempotencyKey, IdempotencyScope,
    Idempotent, PageSize, Points, TransactionKind, UserId,
};
use coffee_ports::{IdempotencyConflict, IdempotencyError, IdempotencyRecords, PointStore};
use coffee_postgres::{PgIdempotencyRecords, PgPointStore, PgPool, PgPoolSettings};
use coffee_test_support::TestDatabase;
use diesel_async::SimpleAsyncConnection;
use uuid::Uuid;

fn limits() -> ChargeLimits {
    ChargeLimits {
        max_amount: Points::new(1_000_000).expect("points"),
        max_balance: Points::new(100_000_000).expect("points"),
    }
}

fn store(db: &TestDatabase, wait: Duration) -> PgPointStore {
    let mut settings = PgPoolSettings::local(db.url());
    settings.max_size = 60;
    PgPointStore::new(PgPool::new(&settings).expect("pool"), wait)
}

fn context(user: Uuid, key: &str, amount: i64) -> IdempotencyContext {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&amount.to_be_bytes());
    IdempotencyContext {
        user_id: UserId::from_uuid(user),
        scope: IdempotencyScope::PointsCharge,
        key: IdempotencyKey::parse(key).expect("key"),
        fingerprint: Fingerprint::from_bytes(bytes),
    }
}

fn amount(value: i64) -> ChargeAmount {
    ChargeAmount::new(value, &limits()).expect("amount")
}

async fn charge(
    store: &PgPointStore,
    user: Uuid,
    key: &str,
    value: i64,
) -> Result<Idempotent<ChargeOutcome>, IdempotencyError> {
    store.charge(context(user, key, value), amount(value), limits()).await
}

#[tokio::test]
async fn fifty_concurrent_charges_with_distinct_keys_all_apply() {
    let db = TestDatabase::create().await;
    let store = Arc::new(store(&db, Duration::from_secs(5)));
    let user = db.insert_user(0).await;

    let charges: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { charge(&store, user, &format!("key-{i}"), 100).await })
        })
        .collect();
    for charge in charges {
        let outcome = charge.await.expect("joined").expect("charged");
        assert!(matches!(outcome, Idempotent::Fresh(ChargeOutcome::Charged(_))));
    }

    assert_eq!(db.balance_of(user).await, 5_000);
    let rows = db
        .count(&format!(
            "SELECT count(*) AS n FROM point_transactions WHERE user_id = '{user}' AND type = 'ADD'"
        ))
        .await;
    assert_eq!(rows, 50);
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn twenty_concurrent_charges_with_one_key_apply_once_and_replay_the_same_outcome() {
    let db = TestDatabase::create().await;
    let store = Arc::new(store(&db, Duration::from_secs(5)));
    let user = db.insert_user(0).await;

    let charges: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { charge(&store, user, "same-key", 100).await })
        })
        .collect();
    let mut fresh = Vec::new();
    let mut replayed = Vec::new();
    for charge in charges {
        match charge.await.expect("joined").expect("answered") {
            Idempotent::Fresh(outcome) => fresh.push(outcome),
            Idempotent::Replayed(outcome) => replayed.push(outcome),
        }
    }

    assert_eq!(fresh.len(), 1);
    assert_eq!(replayed.len(), 19);
    assert!(
        replayed.iter().all(|r| *r == fresh[0]),
        "every replay is the first outcome"
    );
    assert_eq!(db.balance_of(user).await, 100);
    let rows = db
        .count(&format!(
            "SELECT count(*) AS n FROM point_transactions WHERE user_id = '{user}'"
        ))
        .await;
    assert_eq!(rows, 1);
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn a_charge_past_the_balance_cap_changes_nothing_and_is_replayed() {
    let db = TestDatabase::create().await;
    let store = store(&db, Duration::from_secs(5));
    let user = db.insert_user(99_999_950).await;

    let first = charge(&store, user, "k", 100).await.expect("answered");
    let again = charge(&store, user, "k", 100).await.expect("answered");

    let expected = ChargeOutcome::BalanceLimitExceeded {
        balance: Points::new(99_999_950).expect("points"),
        amount: Points::new(100).expect("points"),
        max_balance: Points::new(100_000_000).expect("points"),
    };
    assert_eq!(first, Idempotent::Fresh(expected.clone()));
    assert_eq!(again, Idempotent::Replayed(expected));
    assert_eq!(db.balance_of(user).await, 99_999_950);
    let rows = db
        .count(&format!(
            "SELECT count(*) AS n FROM point_transactions WHERE user_id = '{user}'"
        ))
        .await;
    assert_eq!(rows, 1, "only the seed row");
    let exact = charge(&store, user, "k2", 50).await.expect("answered");
    assert!(matches!(exact, Idempotent::Fresh(ChargeOutcome::Charged(ref c)) if c.balance.value() == 100_000_000));
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn a_key_reused_with_another_request_is_refused() {
    let db = TestDatabase::create().await;
    let store = store(&db, Duration::from_secs(5));
    let user = db.insert_user(0).await;
    charge(&store, user, "k", 100).await.expect("charged");

    let err = charge(&store, user, "k", 200).await.expect_err("reused");

    assert!(matches!(
        err,
        IdempotencyError::Conflict(IdempotencyConflict::KeyReused)
    ));
    assert_eq!(db.balance_of(user).await, 100);
    let other_user = db.insert_user(0).await;
    assert!(
        charge(&store, other_user, "k", 200).await.is_ok(),
        "keys are scoped per user"
    );
}

/// A charge whose key a transaction that has not ended holds (opened by
/// `holds`, which must claim the key `held`) is `KeyInUse` once the wait
/// runs out, changes nothing, and goes through once that transaction rolls
/// back.
async fn in_use_while(holds: &str) {
    let db = TestDatabase::create().await;
    let store = store(&db, Duration::from_millis(300));
    let user = db.insert_user(0).await;
    let mut holder = db.connect().await;
    holder
        .batch_execute(&holds.replace("{user}", &user.to_string()))
        .await
        .expect("held");

    let err = charge(&store, user, "held", 100).await.expect_err("in use");

    assert!(
        matches!(err, IdempotencyError::Conflict(IdempotencyConflict::KeyInUse)),
        "{err:?}"
    );
    assert_eq!(db.balance_of(user).await, 0);
    holder.batch_execute("ROLLBACK").await.expect("released");
    assert!(matches!(
        charge(&store, user, "held", 100).await.expect("now free"),
        Idempotent::Fresh(ChargeOutcome::Charged(_))
    ));
    assert_eq!(db.balance_of(user).await, 100);
    db.assert_ledger_consistent().await;
}

/// The key's record inserted, nothing else locked: the claim itself waits.
#[tokio::test]
async fn a_key_held_by_an_unfinished_request_is_in_use() {
    in_use_while(
        "BEGIN; INSERT INTO idempotency_keys (user_id, scope, key, fingerprint, outcome) \
         VALUES ('{user}', 'points.charge', 'held', decode(repeat('00', 32), 'hex'), 'null')",
    )
    .await;
}

/// Held as the service's own requests hold it (the user's row locked
/// first, then the key claimed): the duplicate waits for the row, and when
/// the wait runs out the probe finds the key held, so the answer is
/// `KeyInUse`, not a busy balance.
#[tokio::test]
async fn a_duplicate_of_a_request_in_flight_is_in_use_after_the_wait() {
    in_use_while(
        "BEGIN; SELECT 1 FROM users WHERE id = '{user}' FOR NO KEY UPDATE; \
         INSERT INTO idempotency_keys (user_id, scope, key, fingerprint, outcome) \
         VALUES ('{user}', 'points.charge', 'held', decode(repeat('00', 32), 'hex'), 'null')",
    )
    .await;
}

/// A fresh key whose balance stays busy past the wait is a `503`: the probe
/// finds the key free, so the wait was the balance's, and claims nothing
/// (its insert is rolled back).
#[tokio::test]
async fn a_fresh_key_whose_balance_stays_busy_is_unavailable_and_claims_nothing() {
    let db = TestDatabase::create().await;
    let store = store(&db, Duration::from_millis(200));
    let user = db.insert_user(0).await;
    let holder = db.hold_balance(user).await;

    let err = charge(&store, user, "busy", 100).await.expect_err("busy balance");

    assert!(
        matches!(&err, IdempotencyError::Infra(e) if e.is_unavailable()),
        "{err:?}"
    );
    holder.release().await;
    let records = db
        .count("SELECT count(*) AS n FROM idempotency_keys WHERE key = 'busy'")
        .await;
    assert_eq!(records, 0, "the probe's insert was rolled back");
    assert!(matches!(
        charge(&store, user, "busy", 100).await.expect("now free"),
        Idempotent::Fresh(ChargeOutcome::Charged(_))
    ));
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn history_pages_are_complete_ordered_and_never_repeat() {
    let db = TestDatabase::create().await;
    let store = store(&db, Duration::from_secs(5));
    let user = db.insert_user(0).await;
    for i in 0..23 {
        charge(&store, user, &format!("k{i}"), i + 1).await.expect("charged");
    }

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .history(UserId::from_uuid(user), PageSize::new(5).expect("size"), cursor)
            .await
            .expect("page");
        assert!(page.items.len() <= 5);
        seen.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }

    assert_eq!(seen.len(), 23);
    let amounts: Vec<i64> = seen.iter().map(|t| t.amount.value()).collect();
    assert_eq!(amounts, (1..=23).rev().collect::<Vec<_>>(), "newest first");
    assert!(seen.iter().all(|t| t.kind == TransactionKind::Add));
    let mut ids: Vec<_> = seen.iter().map(|t| t.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 23, "no item twice");
    assert_eq!(seen[0].balance_after.value(), (1..=23).sum::<i64>());
}

#[tokio::test]
async fn balance_of_an_unknown_user_is_none() {
    let db = TestDatabase::create().await;
    let store = store(&db, Duration::from_secs(5));
    assert_eq!(
        store.balance(UserId::from_uuid(Uuid::now_v7())).await.expect("query"),
        None
    );
}

#[tokio::test]
async fn purging_removes_only_records_past_their_retention() {
    let db = TestDatabase::create().await;
    let store = store(&db, Duration::from_secs(5));
    let user = db.insert_user(0).await;
    charge(&store, user, "old", 1).await.expect("charged");
    charge(&store, user, "new", 2).await.expect("charged");
    db.connect()
        .await
        .batch_execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'")
        .await
        .expect("aged");
    let records = PgIdempotencyRecords::new(PgPool::new(&PgPoolSettings::local(db.url())).expect("pool"));

    let purged = records
        .purge_older_than(Duration::from_secs(24 * 3600))
        .await
        .expect("purged");

    assert_eq!(purged, 1);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM idempotency_keys WHERE key = 'new'")
            .await,
        1
    );
}

/// A retry of a finished charge whose balance read waits out the lock
/// timeout (another transaction holds the user's row) aborts its
/// transaction before the stored outcome is read: that is the database
/// being busy, `503`, not an unexpected error. (Found by the soak: such
/// retries answered `500`, "current transaction is aborted".)
#[tokio::test]
async fn a_replay_whose_balance_stays_locked_is_unavailable_not_an_error() {
    let db = TestDatabase::create().await;
    let store = store(&db, Duration::from_millis(200));
    let user = db.insert_user(0).await;
    charge(&store, user, "locked replay", 100).await.expect("charged");

    let holder = db.hold_balance(user).await;
    let err = charge(&store, user, "locked replay", 100)
        .await
        .expect_err("the balance stays locked");
    assert!(
        matches!(&err, IdempotencyError::Infra(e) if e.is_unavailable()),
        "{err:?}"
    );
    holder.release().await;
    let replay = charge(&store, user, "locked replay", 100).await.expect("answered");
    assert!(replay.is_replayed());
}

/// A charge that waits for its user's row is stamped once it holds it, even
/// when the holder it waited for commits without changing the row: the
/// ledger's order is the order in which the lock serialised the balance
/// changes. (The balance and the clock are read in one statement; a clock
/// read beside the balance in the locking query itself would be the
/// instant the row was first scanned, before the wait.)
#[tokio::test]
async fn a_charge_that_waits_for_the_balance_is_stamped_once_it_holds_it() {
    let db = TestDatabase::create().await;
    let store = store(&db, Duration::from_secs(5));
    let user = db.insert_user(0).await;
    let holder = db.hold_balance(user).await;

    let waiting = tokio::spawn({
        let store = store.clone();
        async move { charge(&store, user, "stamped after the wait", 100).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released = holder.release().await;

    let charged = waiting.await.expect("joined").expect("charged");
    let Idempotent::Fresh(ChargeOutcome::Charged(charge)) = charged else {
        panic!("a fresh charge: {charged:?}");
    };
    assert!(
        charge.charged_at >= released,
        "stamped {} although the balance was held until {released}",
        charge.charged_at
    );
    db.assert_ledger_consistent().await;
}
