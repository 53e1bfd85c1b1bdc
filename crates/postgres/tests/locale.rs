//! Errors are told apart by what they are, not by their English text: on a
//! server that answers in Korean (`lc_messages = ko_KR`), a concurrent
//! duplicate is still `IDEMPOTENCY_KEY_IN_USE` and a statement timeout is
//! still "unavailable" (`503`), never `500`.

use std::time::Duration;

use coffee_domain::{
    ChargeAmount, ChargeLimits, Fingerprint, IdempotencyContext, IdempotencyKey, IdempotencyScope, Points, UserId,
};
use coffee_ports::{IdempotencyConflict, IdempotencyError, PointStore};
use coffee_postgres::{PgPointStore, PgPool, PgPoolSettings};
use coffee_test_support::TestDatabase;
use diesel_async::SimpleAsyncConnection;
use uuid::Uuid;

fn limits() -> ChargeLimits {
    ChargeLimits {
        max_amount: Points::new(1_000_000).expect("points"),
        max_balance: Points::new(100_000_000).expect("points"),
    }
}

fn charge_context(user: Uuid, key: &str) -> IdempotencyContext {
    IdempotencyContext {
        user_id: UserId::from_uuid(user),
        scope: IdempotencyScope::PointsCharge,
        key: IdempotencyKey::parse(key).expect("key"),
        fingerprint: Fingerprint::from_bytes([7; 32]),
    }
}

/// A database whose server messages are Korean, checked on a connection.
async fn korean_database() -> TestDatabase {
    let db = TestDatabase::create().await;
    db.speak_korean().await;
    let error = db
        .connect()
        .await
        .batch_execute("SELECT 1 / 0")
        .await
        .expect_err("division by zero");
    assert!(
        !error.to_string().is_ascii(),
        "the server should answer in Korean, said {error}"
    );
    db
}

#[tokio::test]
async fn a_duplicate_still_in_progress_is_in_use_in_korean() {
    let db = korean_database().await;
    let user = db.insert_user(0).await;
    // The first request with the key: its transaction is still open.
    let mut first = db.connect().await;
    first
        .batch_execute(&format!(
            "BEGIN; INSERT INTO idempotency_keys (user_id, scope, key, fingerprint, outcome) \
             VALUES ('{user}', 'points.charge', 'dup', '\\x{}', 'null')",
            "07".repeat(32)
        ))
        .await
        .expect("first claim");

    let store = PgPointStore::new(
        PgPool::new(&PgPoolSettings::local(db.url())).expect("pool"),
        Duration::from_millis(200),
    );
    let amount = ChargeAmount::new(100, &limits()).expect("amount");
    let answer = store.charge(charge_context(user, "dup"), amount, limits()).await;

    assert!(
        matches!(answer, Err(IdempotencyError::Conflict(IdempotencyConflict::KeyInUse))),
        "{answer:?}"
    );
    first.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(db.balance_of(user).await, 0);
}

#[tokio::test]
async fn a_statement_timeout_is_unavailable_in_korean() {
    let db = korean_database().await;
    let user = db.insert_user(0).await;
    // Another transaction holds the user's row, so the charge's UPDATE waits
    // until its statement timeout cancels it.
    let holder = db.hold_balance(user).await;

    let store = PgPointStore::new(
        PgPool::new(&PgPoolSettings {
            statement_timeout: Duration::from_millis(300),
            ..PgPoolSettings::local(db.url())
        })
        .expect("pool"),
        Duration::from_millis(200),
    );
    let amount = ChargeAmount::new(100, &limits()).expect("amount");
    let answer = store.charge(charge_context(user, "slow"), amount, limits()).await;

    assert!(
        matches!(&answer, Err(IdempotencyError::Infra(e)) if e.is_unavailable()),
        "{answer:?}"
    );
    holder.release().await;
    assert_eq!(db.balance_of(user).await, 0);
    assert_eq!(db.count("SELECT count(*) AS n FROM idempotency_keys").await, 0);
}
