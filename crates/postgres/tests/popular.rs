//! The server's ranking (`coffee_application::PopularRanking`) over
//! `PgSalesStatistics` on the real database, at the window's old edge with a
//! busy edge hour: exact a second either side of the edge and across the
//! hour boundary, whether the sums were prepared in the background or loaded
//! by the request, and exact on every instance as soon as another one places
//! an order. The rules themselves are unit-tested against fakes in
//! `crates/application/src/popular_ranking/tests.rs`; here the statements'
//! rows are checked against ground truth queries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use coffee_application::place_order::decide;
use coffee_application::{PopularRanking, Prepared};
use coffee_domain::Menu;
use coffee_domain::popular::SalesSum;
use coffee_domain::{
    Fingerprint, IdempotencyContext, IdempotencyKey, IdempotencyScope, MenuId, OrderRequest, PlaceOrderOutcome, UserId,
};
use coffee_ports::{LiveWindow, MenuRepository, OrderStore, SalesStatistics};
use coffee_postgres::{PgMenuRepository, PgOrderStore, PgPool, PgPoolSettings, PgSalesStatistics};
use coffee_test_support::{GroundTruthRow, TestDatabase};
use diesel::sql_types::Timestamptz;
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::{OffsetDateTime, Time};
use uuid::Uuid;

/// The bench's bulk seeding: orders, items and statistics rows together.
const SEED: &str = include_str!("../../../bench/seed_popular.sql");

const HOUR: Duration = Duration::from_secs(3600);
const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
const SECOND: Duration = Duration::from_secs(1);

fn pool(db: &TestDatabase) -> PgPool {
    PgPool::new(&PgPoolSettings::local(db.url())).expect("pool")
}

/// An instance's ranking, as the server builds it.
fn instance(db: &TestDatabase) -> PopularRanking {
    PopularRanking::new(Arc::new(PgSalesStatistics::new(pool(db))))
}

/// Bulk orders through `bench/seed_popular.sql`, each call its own batch.
struct Seeder {
    conn: AsyncPgConnection,
    payer: Uuid,
    batch: u16,
}

impl Seeder {
    async fn new(db: &TestDatabase) -> Self {
        let mut conn = db.connect().await;
        conn.batch_execute(SEED).await.expect("seeding functions");
        Self {
            conn,
            payer: db.insert_user(0).await,
            batch: 0,
        }
    }

    /// `n` orders stamped evenly over `[from, to)`.
    async fn orders(&mut self, n: u64, from: OffsetDateTime, to: OffsetDateTime) {
        self.batch += 1;
        let (from, to) = (from.format(&Rfc3339).expect("time"), to.format(&Rfc3339).expect("time"));
        self.conn
            .batch_execute(&format!(
                "SELECT pg_temp.seed_orders({}, {n}, '{from}', '{to}', '{}')",
                self.batch, self.payer
            ))
            .await
            .expect("seeded");
    }

    /// One order stamped `at`.
    async fn order_at(&mut self, at: OffsetDateTime) {
        self.orders(1, at, at + Duration::from_micros(1)).await;
    }
}

/// The ranking of every menu as of `now`.
async fn ranking(popular: &PopularRanking, now: Option<OffsetDateTime>) -> Vec<GroundTruthRow> {
    let ranked = match now {
        Some(now) => popular.top_as_of(now, 100).await,
        None => popular.top(100).await,
    };
    ranked
        .expect("ranking")
        .into_iter()
        .map(|r| GroundTruthRow {
            id: r.menu.id.as_uuid(),
            quantity: r.quantity,
            order_count: r.order_count,
        })
        .collect()
}

/// The instant after which the ranking as of `now` counts orders: `now - 7
/// days`, rounded up to the whole second inside the partial hour at the old
/// edge (so exact when `now` is a whole second); the whole hours always count.
fn counted_after(now: OffsetDateTime) -> OffsetDateTime {
    let lo = now - WEEK;
    let first_full = lo.replace_time(Time::from_hms(lo.hour(), 0, 0).expect("hour")) + HOUR;
    let rounded_up = if lo.nanosecond() == 0 {
        lo
    } else {
        lo.replace_nanosecond(0).expect("second") + SECOND
    };
    rounded_up.min(first_full - Duration::from_micros(1))
}

/// A history with a busy hour at the window's old edge (and the hour after)
/// for rankings as of `E + 7 days + 15 minutes` and later.
const E: OffsetDateTime = datetime!(2026-11-10 09:00 UTC);

async fn busy_history(db: &TestDatabase) -> Seeder {
    let mut seed = Seeder::new(db).await;
    seed.orders(30_000, E, E + HOUR * 2).await;
    seed.orders(2_000, E + HOUR * 2, E + WEEK).await;
    seed.orders(300, E + WEEK, E + WEEK + Duration::from_secs(15 * 60))
        .await;
    seed
}

#[tokio::test]
async fn a_busy_edge_hour_ranks_exactly_a_second_either_side_of_the_edge() {
    let db = TestDatabase::create().await;
    let mut seed = busy_history(&db).await;
    let minute = |m: u64| E + Duration::from_secs(m * 60);
    let around = |edge: OffsetDateTime| [-2, -1, 0, 1, 2].map(|s| edge + time::Duration::seconds(s));
    // Orders at, and one and two seconds either side of, each edge the
    // rankings below ask for: mid-hour and at the hour boundary.
    let edges = [minute(20), minute(60)];
    for at in edges.into_iter().flat_map(around) {
        seed.order_at(at).await;
    }
    let cold = instance(&db);
    let warm = instance(&db);

    let inside_a_second = [
        // Up to the next whole second is left out.
        minute(20) + Duration::from_millis(500),
        minute(60) - Duration::from_millis(500),
        minute(60) - Duration::from_micros(1),
    ];
    for lo in edges
        .into_iter()
        .flat_map(around)
        .chain([minute(90)])
        .chain(inside_a_second)
    {
        let now = lo + WEEK;
        let want = db.popular_sales(Some(counted_after(now)), Some(now)).await;
        assert!(want.len() >= 8, "as of {now}: {want:?}");
        warm.prepare_as_of(now).await.expect("prepared");
        assert_eq!(ranking(&warm, Some(now)).await, want, "prepared, as of {now}");
        assert_eq!(
            ranking(&cold, Some(now)).await,
            want,
            "loaded by the request, as of {now}"
        );
    }
    assert_eq!(warm.prepared().loaded_by_requests, 0);
    assert!(cold.prepared().loaded_by_requests > 0);

    // Whole seconds are exact: the same as the ground truth of the window.
    for now in [minute(20) + WEEK, minute(60) + SECOND + WEEK] {
        assert_eq!(
            ranking(&cold, Some(now)).await,
            db.popular_sales(Some(now - WEEK), Some(now)).await
        );
    }
    // Rounding up never counts an order older than seven days; inside a
    // second it leaves out the rest of that second.
    let now = minute(20) + Duration::from_millis(500) + WEEK;
    assert_eq!(
        ranking(&cold, Some(now)).await,
        db.popular_sales(Some(minute(20) + SECOND), Some(now)).await
    );
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn prepared_sums_carry_the_ranking_over_the_hour_without_a_request_loading() {
    let db = TestDatabase::create().await;
    busy_history(&db).await;
    let popular = instance(&db);
    // Half a minute before the edge hour E gives way to E + 1 hour.
    let now = E + WEEK + HOUR - Duration::from_secs(30);

    popular.prepare_as_of(now).await.expect("prepared");
    assert_eq!(
        popular.prepared(),
        Prepared {
            // From the hour before the first whole one (for requests that read
            // the clock a moment earlier) to the last final one.
            settled: Some((E, E + WEEK)),
            edge_hours: vec![E, E + HOUR],
            loaded_by_requests: 0,
        }
    );
    for later in [0, 29, 30, 31, 60, 600, 1800] {
        let at = now + Duration::from_secs(later);
        assert_eq!(
            ranking(&popular, Some(at)).await,
            db.popular_sales(Some(at - WEEK), Some(at)).await,
            "{later} s later"
        );
    }
    assert_eq!(popular.prepared().loaded_by_requests, 0);

    // The next preparation drops what the window has passed, adds the hour
    // after the new edge hour and the hour that has become final.
    let later = now + Duration::from_secs(600);
    popular.prepare_as_of(later).await.expect("prepared");
    let prepared = popular.prepared();
    assert_eq!(prepared.settled, Some((E + HOUR, E + WEEK + HOUR)));
    assert_eq!(prepared.edge_hours, vec![E, E + HOUR, E + HOUR * 2]);
    assert_eq!(
        ranking(&popular, Some(later)).await,
        db.popular_sales(Some(later - WEEK), Some(later)).await
    );
    assert_eq!(popular.prepared().loaded_by_requests, 0);
}

#[derive(QueryableByName)]
struct Clock {
    #[diesel(sql_type = Timestamptz)]
    now: OffsetDateTime,
}

/// The request and idempotency context of one order of `quantity` cups of `menu`.
fn one_order(user: Uuid, key: &str, menu: Uuid, quantity: i64) -> (OrderRequest, IdempotencyContext) {
    let request = OrderRequest::new(&[(MenuId::from_uuid(menu), quantity)]).expect("valid");
    let context = IdempotencyContext {
        user_id: UserId::from_uuid(user),
        scope: IdempotencyScope::OrdersPlace,
        key: IdempotencyKey::parse(key).expect("key"),
        fingerprint: Fingerprint::from_bytes([7; 32]),
    };
    (request, context)
}

async fn place(store: &PgOrderStore, user: Uuid, key: &str, menu: Uuid, quantity: i64) {
    let (request, context) = one_order(user, key, menu, quantity);
    let placed = store.place_order(context, request, decide).await.expect("answered");
    assert!(matches!(placed.into_inner(), PlaceOrderOutcome::Placed(_)));
}

#[tokio::test]
async fn every_instance_counts_an_order_placed_through_another_at_once() {
    let db = TestDatabase::create().await;
    let now: Clock = sql_query("SELECT now() AS now")
        .get_result(&mut db.connect().await)
        .await
        .expect("clock");
    // A busy edge hour, far enough inside the window to stay there while the
    // test runs, and a week of history.
    let mut seed = Seeder::new(&db).await;
    let lo = now.now - WEEK;
    seed.orders(20_000, lo + Duration::from_secs(120), lo + HOUR).await;
    seed.orders(1_000, lo + HOUR, now.now - HOUR).await;
    let instances = [instance(&db), instance(&db)];
    for instance in &instances {
        instance.prepare().await.expect("prepared");
    }
    let stores = [
        PgOrderStore::new(pool(&db), Duration::from_secs(5)),
        PgOrderStore::new(pool(&db), Duration::from_secs(5)),
    ];
    let user = db.insert_user(10_000_000).await;

    let before = db.popular_sales(Some(lo), None).await;
    for (i, entry) in before.iter().enumerate().take(6) {
        place(&stores[i % 2], user, &format!("o{i}"), entry.id, 1 + i as i64).await;
        for instance in &instances {
            let now: Clock = sql_query("SELECT now() AS now")
                .get_result(&mut db.connect().await)
                .await
                .expect("clock");
            let got = ranking(instance, None).await;
            assert_eq!(
                got,
                db.popular_sales(Some(now.now - WEEK), None).await,
                "after order {i}"
            );
            let counted = got.iter().find(|e| e.id == entry.id).expect("ranked");
            assert_eq!(
                counted.quantity,
                entry.quantity + 1 + i as i64,
                "order {i} counted at once"
            );
        }
    }
    for instance in &instances {
        assert_eq!(instance.prepared().loaded_by_requests, 0);
    }
    db.assert_ledger_consistent().await;
}

/// Requests that share ranking queries still see every order committed
/// before they arrived: readers keep the ranking busy all along, so nearly
/// every check below joins a round, and each must count the order just
/// placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_rankings_count_every_order_committed_before_the_request() {
    let db = TestDatabase::create().await;
    let popular = instance(&db);
    popular.prepare().await.expect("prepared");
    let store = PgOrderStore::new(pool(&db), Duration::from_secs(5));
    let user = db.insert_user(10_000_000).await;
    let menus = PgMenuRepository::new(pool(&db)).list().await.expect("menus");
    let menu = menus[0].id.as_uuid();

    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..8 {
        let (popular, stop) = (popular.clone(), Arc::clone(&stop));
        readers.push(tokio::spawn(async move {
            let mut requests = 0_u64;
            while !AtomicBool::load(&stop, Ordering::Relaxed) {
                popular.top(3).await.expect("ranking");
                requests += 1;
            }
            requests
        }));
    }
    let checks = 40_i64;
    for i in 1..=checks {
        place(&store, user, &format!("shared-{i}"), menu, 1).await;
        let got = ranking(&popular, None).await;
        let counted = got.iter().find(|e| e.id == menu).map(|e| e.quantity);
        assert_eq!(counted, Some(i), "order {i} counted by the next request");
    }
    stop.store(true, Ordering::Relaxed);
    let mut requests = u64::try_from(checks).expect("positive");
    for reader in readers {
        requests += reader.await.expect("reader");
    }
    let rounds = popular.ranking_rounds();
    assert!(rounds < requests, "{requests} requests shared {rounds} ranking queries");
    db.assert_ledger_consistent().await;
}

/// One order of `quantity` cups of `menu` stamped `at`.
async fn order_at(store: &PgOrderStore, user: Uuid, key: &str, menu: Uuid, quantity: i64, at: OffsetDateTime) {
    let (request, context) = one_order(user, key, menu, quantity);
    let placed = store
        .place_order_at(context, request, decide, at)
        .await
        .expect("answered");
    assert!(matches!(placed.into_inner(), PlaceOrderOutcome::Placed(_)));
}

fn sums(rows: &[SalesSum]) -> Vec<(OffsetDateTime, Uuid, i64, i64)> {
    let mut sums: Vec<_> = rows
        .iter()
        .map(|s| (s.at, s.menu.as_uuid(), s.quantity, s.order_count))
        .collect();
    sums.sort();
    sums
}

#[tokio::test]
async fn the_statistics_rows_sum_hours_seconds_and_live_buckets_exactly() {
    let db = TestDatabase::create().await;
    let statistics = PgSalesStatistics::new(pool(&db));
    let store = PgOrderStore::new(pool(&db), Duration::from_secs(5));
    let user = db.insert_user(10_000_000).await;
    let menus = PgMenuRepository::new(pool(&db)).list().await.expect("menus");
    let (a, b) = (menus[0].id.as_uuid(), menus[1].id.as_uuid());
    let h = datetime!(2026-11-20 10:00 UTC);
    let ms = |n: u64| Duration::from_millis(n);
    for (i, (menu, quantity, at)) in [
        (a, 1, h - ms(100)),
        (a, 2, h),
        (a, 3, h + ms(200)),
        (b, 4, h + ms(1000)),
        (a, 5, h + HOUR - ms(500)),
        (b, 6, h + HOUR),
        (b, 7, h + HOUR * 3 + ms(1)),
    ]
    .into_iter()
    .enumerate()
    {
        order_at(&store, user, &format!("s{i}"), menu, quantity, at).await;
    }
    let second = |n: u64| h + Duration::from_secs(n);

    // Each item in the second its creation rounds up to; `[h, h + 1 h)` only.
    assert_eq!(
        sums(&statistics.second_sums(h).await.expect("seconds")),
        vec![
            (second(0), a, 2, 1),
            (second(1), a, 3, 1),
            (second(1), b, 4, 1),
            (second(3600), a, 5, 1)
        ]
        .tap_sorted()
    );
    assert_eq!(
        sums(&statistics.hour_sums(h, h + HOUR * 3).await.expect("hours")),
        vec![(h, a, 10, 3), (h, b, 4, 1), (h + HOUR, b, 6, 1)].tap_sorted()
    );

    // The live buckets start at the first whole hour after `now - length`,
    // or where the held hours end when they contain it; later buckets count.
    let now = h + HOUR * 2 + ms(1500);
    let length = Duration::from_secs(2 * 3600);
    let live = |held| {
        statistics.live_sales(LiveWindow {
            as_of: Some(now),
            length,
            held,
        })
    };
    let cold = live(None).await.expect("live");
    assert_eq!((cold.now, cold.live_from), (now, h + HOUR));
    assert_eq!(
        sums(&cold.sales),
        vec![(h + HOUR, b, 13, 2)],
        "the hours from h + 1 h on, the one after now included"
    );
    let by_id = |mut menus: Vec<Menu>| {
        menus.sort_by_key(|m| m.id);
        menus
    };
    assert_eq!(by_id(cold.menus), by_id(menus.to_vec()), "every menu");
    let clock = statistics.clock().await.expect("clock");
    assert!((cold.db_now - clock).abs() < time::Duration::minutes(1));
    let held = live(Some((h, h + HOUR * 2))).await.expect("live");
    assert_eq!(held.live_from, h + HOUR * 2);
    assert_eq!(sums(&held.sales), vec![(h + HOUR * 2, b, 7, 1)]);
    let not_reaching = live(Some((h + HOUR * 2, h + HOUR * 3))).await.expect("live");
    assert_eq!(not_reaching.live_from, h + HOUR);
}

trait Sorted {
    fn tap_sorted(self) -> Self;
}

impl<T: Ord> Sorted for Vec<T> {
    fn tap_sorted(mut self) -> Self {
        self.sort();
        self
    }
}
