//! `PgOrderStore` and the ranking over `PgSalesStatistics` on the real
//! database: atomic payment under concurrency, idempotency, and exact
//! popularity counts.

use std::sync::Arc;
use std::time::Duration;

use coffee_application::PopularRanking;
use coffee_application::place_order::decide;
use coffee_domain::{
    ChargeAmount, ChargeLimits, ChargeOutcome, Fingerprint, IdempotencyContext, IdempotencyKey, IdempotencyScope,
    Idempotent, MenuId, OrderRequest, PageSize, PlaceOrderOutcome, Points, UserId,
};
use coffee_ports::{OrderStore, PointStore, StatisticsUpkeep};
use coffee_postgres::{PgOrderStore, PgPointStore, PgPool, PgPoolSettings, PgSalesStatistics};
use coffee_test_support::TestDatabase;
use diesel_async::SimpleAsyncConnection;
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

const AMERICANO: u128 = 0x0192f0a0_0000_7000_8000_000000000001;
const LATTE: u128 = 0x0192f0a0_0000_7000_8000_000000000002;

fn pool(db: &TestDatabase) -> PgPool {
    let mut settings = PgPoolSettings::local(db.url());
    settings.max_size = 70;
    PgPool::new(&settings).expect("pool")
}

/// The ranking of the server, over the statistics of `pool`'s database.
fn ranking(pool: &PgPool) -> PopularRanking {
    PopularRanking::new(Arc::new(PgSalesStatistics::new(pool.clone())))
}

fn context(user: Uuid, key: &str, request: &OrderRequest) -> IdempotencyContext {
    let mut bytes = [0u8; 32];
    let canonical = request.canonical();
    for (i, b) in canonical.bytes().enumerate() {
        bytes[i % 32] ^= b.rotate_left((i / 32) as u32);
    }
    IdempotencyContext {
        user_id: UserId::from_uuid(user),
        scope: IdempotencyScope::OrdersPlace,
        key: IdempotencyKey::parse(key).expect("key"),
        fingerprint: Fingerprint::from_bytes(bytes),
    }
}

fn request(items: &[(u128, i64)]) -> OrderRequest {
    let items: Vec<_> = items
        .iter()
        .map(|(m, q)| (MenuId::from_uuid(Uuid::from_u128(*m)), *q))
        .collect();
    OrderRequest::new(&items).expect("valid")
}

/// Stamps an order with the database's clock, as production does.
const DB_CLOCK: Option<OffsetDateTime> = None;

/// Places an order stamped `at`, or by the database's clock (`DB_CLOCK`).
async fn order(
    store: &PgOrderStore,
    user: Uuid,
    key: &str,
    items: &[(u128, i64)],
    at: impl Into<Option<OffsetDateTime>>,
) -> Idempotent<PlaceOrderOutcome> {
    let request = request(items);
    let context = context(user, key, &request);
    let placed = match at.into() {
        Some(at) => store.place_order_at(context, request, decide, at).await,
        None => store.place_order(context, request, decide).await,
    };
    placed.expect("answered")
}

/// A menu priced 1,000, for round arithmetic.
async fn thousand_menu(db: &TestDatabase) -> u128 {
    let id = Uuid::now_v7();
    db.connect()
        .await
        .batch_execute(&format!(
            "INSERT INTO menus (id, name, price) VALUES ('{id}', 'Test Brew {id}', 1000)"
        ))
        .await
        .expect("menu");
    id.as_u128()
}

#[tokio::test]
async fn twenty_orders_against_a_balance_for_ten_give_exactly_ten() {
    let db = TestDatabase::create().await;
    let store = Arc::new(PgOrderStore::new(pool(&db), Duration::from_secs(5)));
    let user = db.insert_user(10_000).await;
    let menu = thousand_menu(&db).await;

    let orders: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { order(&store, user, &format!("k{i}"), &[(menu, 1)], DB_CLOCK).await })
        })
        .collect();
    let (mut placed, mut short) = (0, 0);
    for o in orders {
        match o.await.expect("joined").into_inner() {
            PlaceOrderOutcome::Placed(_) => placed += 1,
            PlaceOrderOutcome::InsufficientPoints { required, .. } => {
                assert_eq!(required.value(), 1000);
                short += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    assert_eq!((placed, short), (10, 10));
    assert_eq!(db.balance_of(user).await, 0);
    assert_eq!(db.count("SELECT count(*) AS n FROM orders").await, 10);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM point_transactions WHERE type = 'DEDUCT'")
            .await,
        10
    );
    assert_eq!(db.count("SELECT count(*) AS n FROM outbox_events").await, 10);
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn one_key_sent_concurrently_places_one_order() {
    let db = TestDatabase::create().await;
    let store = Arc::new(PgOrderStore::new(pool(&db), Duration::from_secs(5)));
    let user = db.insert_user(100_000).await;

    let orders: Vec<_> = (0..10)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { order(&store, user, "same", &[(LATTE, 2)], DB_CLOCK).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for o in orders {
        outcomes.push(o.await.expect("joined"));
    }

    assert_eq!(outcomes.iter().filter(|o| !o.is_replayed()).count(), 1);
    assert!(outcomes.iter().all(|o| o.as_inner() == outcomes[0].as_inner()));
    assert_eq!(db.count("SELECT count(*) AS n FROM orders").await, 1);
    assert_eq!(db.balance_of(user).await, 100_000 - 9_000);
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn an_unknown_menu_or_short_balance_writes_nothing_but_the_key() {
    let db = TestDatabase::create().await;
    let store = PgOrderStore::new(pool(&db), Duration::from_secs(5));
    let user = db.insert_user(3_000).await;
    let ghost = Uuid::now_v7().as_u128();

    let missing = order(&store, user, "m", &[(AMERICANO, 1), (ghost, 1)], DB_CLOCK).await;
    let short = order(&store, user, "s", &[(LATTE, 1)], DB_CLOCK).await;
    let replay = order(&store, user, "s", &[(LATTE, 1)], DB_CLOCK).await;

    assert_eq!(
        missing,
        Idempotent::Fresh(PlaceOrderOutcome::MenuNotFound {
            menu_ids: vec![MenuId::from_uuid(Uuid::from_u128(ghost))]
        })
    );
    let expected = PlaceOrderOutcome::InsufficientPoints {
        balance: Points::new(3_000).expect("points"),
        required: Points::new(4_500).expect("points"),
    };
    assert_eq!(short, Idempotent::Fresh(expected.clone()));
    assert_eq!(replay, Idempotent::Replayed(expected));
    for table in ["orders", "order_items", "outbox_events", "menu_sales_hourly"] {
        assert_eq!(
            db.count(&format!("SELECT count(*) AS n FROM {table}")).await,
            0,
            "{table}"
        );
    }
    assert_eq!(db.count("SELECT count(*) AS n FROM idempotency_keys").await, 2);
    assert_eq!(db.balance_of(user).await, 3_000);
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn a_charge_and_an_order_racing_on_one_user_both_apply() {
    let db = TestDatabase::create().await;
    let pool = pool(&db);
    let orders = Arc::new(PgOrderStore::new(pool.clone(), Duration::from_secs(5)));
    let points = Arc::new(PgPointStore::new(pool, Duration::from_secs(5)));
    let user = db.insert_user(50_000).await;
    let limits = ChargeLimits {
        max_amount: Points::new(1_000_000).expect("points"),
        max_balance: Points::new(100_000_000).expect("points"),
    };

    let mut tasks = Vec::new();
    for i in 0..10 {
        let orders = Arc::clone(&orders);
        tasks.push(tokio::spawn(async move {
            matches!(
                order(&orders, user, &format!("o{i}"), &[(AMERICANO, 1)], DB_CLOCK)
                    .await
                    .into_inner(),
                PlaceOrderOutcome::Placed(_)
            )
        }));
        let points = Arc::clone(&points);
        tasks.push(tokio::spawn(async move {
            let ctx = IdempotencyContext {
                user_id: UserId::from_uuid(user),
                scope: IdempotencyScope::PointsCharge,
                key: IdempotencyKey::parse(&format!("c{i}")).expect("key"),
                fingerprint: Fingerprint::from_bytes([1; 32]),
            };
            let amount = ChargeAmount::new(700, &limits).expect("amount");
            matches!(
                points.charge(ctx, amount, limits).await.expect("charged").into_inner(),
                ChargeOutcome::Charged(_)
            )
        }));
    }
    for task in tasks {
        assert!(task.await.expect("joined"), "every charge and order applies");
    }

    assert_eq!(db.balance_of(user).await, 50_000 - 10 * 4_000 + 10 * 700);
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn sixty_four_clients_ordering_one_menu_are_all_counted() {
    let db = TestDatabase::create().await;
    let pool = pool(&db);
    let store = Arc::new(PgOrderStore::new(pool.clone(), Duration::from_secs(5)));
    let popular = ranking(&pool);
    let mut users = Vec::new();
    for _ in 0..64 {
        users.push(db.insert_user(1_000_000).await);
    }

    let orders: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let (store, user) = (Arc::clone(&store), *user);
            tokio::spawn(async move {
                for j in 0..3 {
                    let items: &[(u128, i64)] = if j == 2 {
                        &[(AMERICANO, 2), (LATTE, 1)]
                    } else {
                        &[(AMERICANO, 1)]
                    };
                    order(&store, user, &format!("u{i}-{j}"), items, DB_CLOCK).await;
                }
            })
        })
        .collect();
    for o in orders {
        o.await.expect("joined");
    }

    let ranking = popular.top(3).await.expect("ranking");
    let truth = db.popular_ground_truth(None).await;
    assert_eq!(ranking[0].menu.id.as_uuid(), Uuid::from_u128(AMERICANO));
    assert_eq!((ranking[0].quantity, ranking[0].order_count), (64 * 4, 64 * 3));
    assert_eq!((ranking[1].quantity, ranking[1].order_count), (64, 64));
    let got: Vec<_> = ranking
        .iter()
        .map(|r| (r.menu.id.as_uuid(), r.quantity, r.order_count))
        .collect();
    let want: Vec<_> = truth.iter().map(|r| (r.id, r.quantity, r.order_count)).collect();
    assert_eq!(got, want);
    db.assert_ledger_consistent().await;
}

/// xorshift64*: reproducible randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn assert_ranking_matches_ground_truth(db: &TestDatabase, popular: &PopularRanking, now: OffsetDateTime) {
    let ranking = popular.top_as_of(now, 3).await.expect("ranking");
    let got: Vec<_> = ranking
        .iter()
        .map(|r| (r.menu.id.as_uuid(), r.quantity, r.order_count))
        .collect();
    let want: Vec<_> = db
        .popular_ground_truth(Some(now))
        .await
        .iter()
        .map(|r| (r.id, r.quantity, r.order_count))
        .collect();
    assert_eq!(got, want, "as of {now}");
    assert!(ranking.iter().zip(1..).all(|(r, rank)| r.rank == rank));
}

#[tokio::test]
async fn random_orders_over_ten_days_rank_exactly_like_the_ground_truth() {
    let db = TestDatabase::create().await;
    let pool = pool(&db);
    let store = PgOrderStore::new(pool.clone(), Duration::from_secs(5));
    let popular = ranking(&pool);
    let user = db.insert_user(100_000_000).await;
    let menus: Vec<u128> = (1..=10u128)
        .map(|n| 0x0192f0a0_0000_7000_8000_000000000000 + n)
        .collect();
    // Not on an hour boundary, so the window has a real partial hour.
    let now = datetime!(2026-11-29 10:17:23.5 UTC);
    let ten_days = 10 * 24 * 3600 * 1000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    for i in 0..240 {
        let ago_ms = i64::try_from(rng.below(ten_days)).expect("fits");
        let at = now - time::Duration::milliseconds(ago_ms);
        let lines = 1 + rng.below(3) as usize;
        let items: Vec<(u128, i64)> = (0..lines)
            .map(|_| (menus[rng.below(10) as usize], 1 + rng.below(4) as i64))
            .collect();
        order(&store, user, &format!("r{i}"), &items, at).await;
    }
    // The edges: exactly 7 days old is out, a second younger is in, `now` is in.
    let seven_days = time::Duration::days(7);
    order(&store, user, "edge-out", &[(menus[9], 100)], now - seven_days).await;
    order(
        &store,
        user,
        "edge-in",
        &[(menus[8], 90)],
        now - seven_days + time::Duration::seconds(1),
    )
    .await;
    order(&store, user, "edge-now", &[(menus[7], 80)], now).await;

    assert_ranking_matches_ground_truth(&db, &popular, now).await;
    let ranking = popular.top_as_of(now, 3).await.expect("ranking");
    assert!(
        ranking.iter().any(|r| r.menu.id.as_uuid() == Uuid::from_u128(menus[8])),
        "the one-second-younger order counts"
    );

    // Later instants sweep the window's old edge through the data: whole
    // hours, mid-hour, and a second either side of the edge orders. (The
    // ranking is always asked as of the present, after every order it counts,
    // so no instant here precedes an order.)
    for at in [
        datetime!(2026-11-30 00:00 UTC),
        now + time::Duration::hours(30),
        now + time::Duration::days(3) + time::Duration::minutes(42),
        now + time::Duration::seconds(1),
        now + seven_days - time::Duration::seconds(1),
        now + seven_days,
        now + seven_days + time::Duration::seconds(1),
    ] {
        assert_ranking_matches_ground_truth(&db, &popular, at).await;
    }

    // Compacting the shards changes no count.
    let moved = PgSalesStatistics::new(pool.clone())
        .compact(now)
        .await
        .expect("compacted");
    assert!(moved > 0);
    assert_ranking_matches_ground_truth(&db, &popular, now).await;
    assert_ranking_matches_ground_truth(&db, &popular, now + time::Duration::hours(30)).await;
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn orders_are_listed_newest_first_and_only_to_their_owner() {
    let db = TestDatabase::create().await;
    let store = PgOrderStore::new(pool(&db), Duration::from_secs(5));
    let user = db.insert_user(1_000_000).await;
    let other = db.insert_user(1_000_000).await;
    let base = OffsetDateTime::now_utc();
    let mut ids = Vec::new();
    for i in 0..7 {
        let placed = order(
            &store,
            user,
            &format!("o{i}"),
            &[(AMERICANO, 1), (LATTE, i + 1)],
            base + Duration::from_secs(i as u64),
        )
        .await
        .into_inner();
        if let PlaceOrderOutcome::Placed(o) = placed {
            ids.push(o.id);
        }
    }

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(UserId::from_uuid(user), PageSize::new(3).expect("size"), cursor)
            .await
            .expect("page");
        seen.extend(page.items.iter().map(|o| o.id));
        assert!(page.items.iter().all(|o| o.lines.len() == 2));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
    assert!(
        store
            .find(UserId::from_uuid(other), ids[0])
            .await
            .expect("query")
            .is_none()
    );
    let mine = store
        .find(UserId::from_uuid(user), ids[0])
        .await
        .expect("query")
        .expect("found");
    assert_eq!(mine.lines[1].quantity, 7);
    assert!(
        store
            .list(UserId::from_uuid(other), PageSize::DEFAULT, None)
            .await
            .expect("page")
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn a_warm_ranking_still_counts_every_new_order_at_once() {
    let db = TestDatabase::create().await;
    let pool = pool(&db);
    let store = PgOrderStore::new(pool.clone(), Duration::from_secs(5));
    let popular = ranking(&pool);
    let user = db.insert_user(10_000_000).await;
    // History a day old (settled) and at the window's old edge.
    let now = OffsetDateTime::now_utc();
    order(&store, user, "old", &[(LATTE, 5)], now - Duration::from_secs(24 * 3600)).await;
    order(
        &store,
        user,
        "edge",
        &[(AMERICANO, 3)],
        now - Duration::from_secs(7 * 24 * 3600 - 30),
    )
    .await;

    let before = popular.top(3).await.expect("ranking");
    for i in 0..5 {
        order(&store, user, &format!("new{i}"), &[(AMERICANO, 1)], DB_CLOCK).await;
        let after = popular.top(3).await.expect("ranking");
        let americano = after
            .iter()
            .find(|r| r.menu.id.as_uuid() == Uuid::from_u128(AMERICANO))
            .expect("ranked");
        assert_eq!(
            americano.quantity,
            3 + i + 1,
            "order {i} counted by the very next query"
        );
    }

    assert_eq!(before.len(), 2);
    assert_eq!(before[0].menu.id.as_uuid(), Uuid::from_u128(LATTE));
    let truth = db.popular_ground_truth(None).await;
    let now_ranking = popular.top(3).await.expect("ranking");
    let got: Vec<_> = now_ranking
        .iter()
        .map(|r| (r.menu.id.as_uuid(), r.quantity, r.order_count))
        .collect();
    let want: Vec<_> = truth.iter().map(|r| (r.id, r.quantity, r.order_count)).collect();
    assert_eq!(got, want);
}

/// An order that waits for its payer's row is stamped once it holds it,
/// even when the holder it waited for commits without changing the row (see
/// the charge's twin in `points.rs`): its `DEDUCT` row sorts after every
/// balance change before it.
#[tokio::test]
async fn an_order_that_waits_for_the_balance_is_stamped_once_it_holds_it() {
    let db = TestDatabase::create().await;
    let store = Arc::new(PgOrderStore::new(pool(&db), Duration::from_secs(5)));
    let user = db.insert_user(10_000).await;
    let menu = thousand_menu(&db).await;
    let holder = db.hold_balance(user).await;

    let waiting = tokio::spawn({
        let store = Arc::clone(&store);
        async move { order(&store, user, "stamped after the wait", &[(menu, 1)], DB_CLOCK).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released = holder.release().await;

    let PlaceOrderOutcome::Placed(placed) = waiting.await.expect("joined").into_inner() else {
        panic!("placed");
    };
    assert!(
        placed.created_at >= released,
        "stamped {} although the balance was held until {released}",
        placed.created_at
    );
    db.assert_ledger_consistent().await;
}
