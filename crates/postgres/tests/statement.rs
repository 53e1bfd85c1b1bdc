//! A user's history reads like a bank statement at any concurrency: newest
//! first, each row's `balanceAfter` is the next older row's plus or minus its
//! own amount, the newest is the balance, and the orders are listed in the
//! order their payments changed the balance.

use std::sync::Arc;
use std::time::Duration;

use coffee_application::place_order::decide;
use coffee_domain::{
    ChargeAmount, ChargeLimits, Cursor, Fingerprint, IdempotencyContext, IdempotencyKey, IdempotencyScope, MenuId,
    OrderRequest, Page, PageSize, PlaceOrderOutcome, PointTransaction, Points, TransactionKind, UserId,
};
use coffee_ports::{OrderStore, PointStore};
use coffee_postgres::{PgOrderStore, PgPointStore, PgPool, PgPoolSettings};
use coffee_test_support::TestDatabase;
use uuid::Uuid;

const AMERICANO: u128 = 0x0192f0a0_0000_7000_8000_000000000001;

fn limits() -> ChargeLimits {
    ChargeLimits {
        max_amount: Points::new(1_000_000).expect("points"),
        max_balance: Points::new(100_000_000).expect("points"),
    }
}

fn context(user: Uuid, scope: IdempotencyScope, key: String) -> IdempotencyContext {
    IdempotencyContext {
        user_id: UserId::from_uuid(user),
        scope,
        key: IdempotencyKey::parse(&key).expect("key"),
        fingerprint: Fingerprint::from_bytes([3; 32]),
    }
}

async fn whole_history(points: &PgPointStore, user: UserId) -> Vec<PointTransaction> {
    let mut rows = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let Page { items, next } = points
            .history(user, PageSize::new(7).expect("size"), after)
            .await
            .expect("page");
        rows.extend(items);
        match next {
            Some(next) => after = Some(next),
            None => return rows,
        }
    }
}

#[tokio::test]
async fn concurrent_charges_and_orders_leave_a_statement_that_adds_up() {
    let db = TestDatabase::create().await;
    let pool = PgPool::new(&PgPoolSettings {
        max_size: 60,
        ..PgPoolSettings::local(db.url())
    })
    .expect("pool");
    let points = Arc::new(PgPointStore::new(pool.clone(), Duration::from_secs(5)));
    let orders = Arc::new(PgOrderStore::new(pool, Duration::from_secs(5)));
    let user = db.insert_user(2_000_000).await;
    let owner = UserId::from_uuid(user);

    for round in 0..3 {
        let mut tasks = Vec::new();
        for i in 0..24 {
            let points = Arc::clone(&points);
            tasks.push(tokio::spawn(async move {
                let amount = ChargeAmount::new(1_000 + i, &limits()).expect("amount");
                let ctx = context(user, IdempotencyScope::PointsCharge, format!("c{round}-{i}"));
                points.charge(ctx, amount, limits()).await.map(|_| ()).expect("charged");
            }));
            let orders = Arc::clone(&orders);
            tasks.push(tokio::spawn(async move {
                let request =
                    OrderRequest::new(&[(MenuId::from_uuid(Uuid::from_u128(AMERICANO)), 1 + i % 3)]).expect("request");
                let ctx = context(user, IdempotencyScope::OrdersPlace, format!("o{round}-{i}"));
                let placed = orders
                    .place_order(ctx, request, decide)
                    .await
                    .expect("answered")
                    .into_inner();
                assert!(matches!(placed, PlaceOrderOutcome::Placed(_)), "{placed:?}");
            }));
        }
        for task in tasks {
            task.await.expect("joined");
        }
    }

    let history = whole_history(&points, owner).await;
    // The opening balance is one ADD row of its own.
    assert_eq!(history.len(), 3 * 48 + 1);
    let balance = points.balance(owner).await.expect("balance").expect("user");
    assert_eq!(history[0].balance_after, balance, "the newest row is the balance");
    for pair in history.windows(2) {
        let (newer, older) = (&pair[0], &pair[1]);
        let expected = match newer.kind {
            TransactionKind::Add => older.balance_after.value() + newer.amount.value(),
            TransactionKind::Deduct => older.balance_after.value() - newer.amount.value(),
        };
        assert_eq!(
            newer.balance_after.value(),
            expected,
            "row {} ({:?} {}) does not follow row {}",
            newer.id,
            newer.kind,
            newer.amount.value(),
            older.id
        );
    }
    let oldest = history.last().expect("rows");
    let start = match oldest.kind {
        TransactionKind::Add => oldest.balance_after.value() - oldest.amount.value(),
        TransactionKind::Deduct => oldest.balance_after.value() + oldest.amount.value(),
    };
    assert_eq!(start, 0, "the oldest row opens the account");

    // The order history follows the ledger: same order, same instants.
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = orders
            .list(owner, PageSize::new(9).expect("size"), after)
            .await
            .expect("page");
        listed.extend(page.items.iter().map(|o| (o.id, o.created_at, o.balance_after)));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let deducts: Vec<_> = history
        .iter()
        .filter(|t| t.kind == TransactionKind::Deduct)
        .map(|t| (t.order_id.expect("an order's row"), t.created_at, t.balance_after))
        .collect();
    assert_eq!(listed, deducts);
    db.assert_ledger_consistent().await;
}
