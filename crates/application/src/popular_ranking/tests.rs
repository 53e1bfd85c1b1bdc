//! The ranking against a fake store: a mockall [`MockSalesStatistics`] that
//! answers like the PostgreSQL adapter's SQL over an in-memory history of
//! orders. Exact a second either side of the window's old edge and across
//! the hour boundary with a busy edge hour, whether the sums were prepared
//! or loaded by the request; one read per request; shared reads.

use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use coffee_domain::popular::{SalesSum, ceil_second};
use coffee_domain::{Menu, MenuId, MenuName, Points};
use coffee_ports::LiveSales;
use coffee_ports::statistics::MockSalesStatistics;
use time::macros::datetime;
use uuid::Uuid;

use super::*;

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const MENUS: u128 = 10;

fn menu_id(n: u128) -> MenuId {
    MenuId::from_uuid(Uuid::from_u128(n + 1))
}

fn menus() -> Vec<Menu> {
    (0..MENUS)
        .map(|n| Menu {
            id: menu_id(n),
            name: MenuName::parse(format!("Coffee {n:02}")).expect("name"),
            price: Points::new(1000).expect("price"),
        })
        .collect()
}

/// One order of one menu.
#[derive(Debug, Clone, Copy)]
struct Order {
    at: OffsetDateTime,
    menu: MenuId,
    quantity: i64,
}

/// How often each read of the fake was called.
#[derive(Debug, Default)]
struct Calls {
    clock: AtomicUsize,
    hours: AtomicUsize,
    seconds: AtomicUsize,
    live: AtomicUsize,
}

impl Calls {
    fn take(&self) -> [usize; 4] {
        [&self.clock, &self.hours, &self.seconds, &self.live].map(|c| c.swap(0, Ordering::SeqCst))
    }
}

/// A store's history of orders and its clock.
#[derive(Debug)]
pub(crate) struct Store {
    orders: Mutex<Vec<Order>>,
    db_now: OffsetDateTime,
    calls: Calls,
    /// How long each live read blocks (mockall's answers are not async).
    live_delay: Duration,
}

impl Store {
    fn new(db_now: OffsetDateTime) -> Arc<Self> {
        Self::slow(db_now, Duration::ZERO)
    }

    fn slow(db_now: OffsetDateTime, live_delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            orders: Mutex::default(),
            db_now,
            calls: Calls::default(),
            live_delay,
        })
    }

    /// `n` orders stamped evenly over `[from, to)`, whole microseconds.
    fn orders(&self, n: u64, from: OffsetDateTime, to: OffsetDateTime) {
        let step = u64::try_from((to - from).whole_microseconds()).expect("forward") / n;
        let mut orders = self.orders.lock().expect("orders");
        for i in 0..n {
            orders.push(Order {
                at: from + Duration::from_micros(step * i),
                menu: menu_id(u128::from(i) % MENUS),
                quantity: 1 + i64::try_from(i % 3).expect("small"),
            });
        }
    }

    fn order_at(&self, at: OffsetDateTime) {
        self.orders(1, at, at + Duration::from_micros(1));
    }

    /// Per (bucket, menu) sums of the orders `bucket` places.
    fn sums(&self, bucket: impl Fn(OffsetDateTime) -> Option<OffsetDateTime>) -> Vec<SalesSum> {
        let mut sums: BTreeMap<(OffsetDateTime, MenuId), (i64, i64)> = BTreeMap::new();
        for order in self.orders.lock().expect("orders").iter() {
            if let Some(at) = bucket(order.at) {
                let sum = sums.entry((at, order.menu)).or_default();
                sum.0 += order.quantity;
                sum.1 += 1;
            }
        }
        sums.into_iter()
            .map(|((at, menu), (quantity, order_count))| SalesSum {
                at,
                menu,
                quantity,
                order_count,
            })
            .collect()
    }

    fn hour_sums(&self, from: OffsetDateTime, to: OffsetDateTime) -> Vec<SalesSum> {
        self.sums(|at| Some(hour_of(at)).filter(|hour| from <= *hour && *hour < to))
    }

    fn second_sums(&self, hour: OffsetDateTime) -> Vec<SalesSum> {
        self.sums(|at| {
            (hour <= at && at < hour + HOUR)
                .then(|| OffsetDateTime::from_unix_timestamp(ceil_second(at)).expect("second"))
        })
    }

    fn live_sales(&self, window: LiveWindow) -> LiveSales {
        std::thread::sleep(self.live_delay);
        let now = window.as_of.unwrap_or(self.db_now);
        let first_full = hour_of(now - window.length) + HOUR;
        let live_from = match window.held {
            Some((from, to)) if from <= first_full && first_full < to => to,
            _ => first_full,
        };
        LiveSales {
            now,
            db_now: self.db_now,
            live_from,
            menus: menus(),
            sales: self.sums(|at| (hour_of(at) >= live_from).then_some(live_from)),
        }
    }

    /// The ranking of every order after [`counted_after`]`(now)`, later ones
    /// included (committed before the read, stamped after its `now`).
    fn truth(&self, now: OffsetDateTime) -> Vec<PopularMenu> {
        let after = counted_after(now);
        let mut totals = Totals::new();
        for order in self.orders.lock().expect("orders").iter().filter(|o| o.at > after) {
            add(&mut totals, order.menu, order.quantity, 1);
        }
        rank(menus(), &totals)
    }
}

/// The instant after which the ranking as of `now` counts orders: `now - 7
/// days`, rounded up to the whole second inside the partial hour at the old
/// edge (so exact when `now` is a whole second); the whole hours always count.
fn counted_after(now: OffsetDateTime) -> OffsetDateTime {
    let lo = now - WINDOW;
    let first_full = lo.replace_time(time::Time::from_hms(lo.hour(), 0, 0).expect("hour")) + HOUR;
    let rounded_up = if lo.nanosecond() == 0 {
        lo
    } else {
        lo.replace_nanosecond(0).expect("second") + SECOND
    };
    rounded_up.min(first_full - Duration::from_micros(1))
}

/// The fake store: each read answered from `store`'s history, and counted.
fn fake(store: &Arc<Store>) -> MockSalesStatistics {
    let mut fake = MockSalesStatistics::new();
    let s = Arc::clone(store);
    fake.expect_clock().returning(move || {
        s.calls.clock.fetch_add(1, Ordering::SeqCst);
        Ok(s.db_now)
    });
    let s = Arc::clone(store);
    fake.expect_hour_sums().returning(move |from, to| {
        s.calls.hours.fetch_add(1, Ordering::SeqCst);
        Ok(s.hour_sums(from, to))
    });
    let s = Arc::clone(store);
    fake.expect_second_sums().returning(move |hour| {
        s.calls.seconds.fetch_add(1, Ordering::SeqCst);
        Ok(s.second_sums(hour))
    });
    let s = Arc::clone(store);
    fake.expect_live_sales().returning(move |window| {
        s.calls.live.fetch_add(1, Ordering::SeqCst);
        Ok(s.live_sales(window))
    });
    fake
}

pub(crate) fn ranking(store: &Arc<Store>) -> PopularRanking {
    PopularRanking::new(Arc::new(fake(store)))
}

async fn all(ranking: &PopularRanking, now: OffsetDateTime) -> Vec<PopularMenu> {
    ranking.top_as_of(now, 100).await.expect("ranking")
}

/// A history with a busy hour at the window's old edge (and the hour after)
/// for rankings as of `E + 7 days + 15 minutes` and later; the store's clock
/// is weeks later, so every hour of it is final.
const E: OffsetDateTime = datetime!(2026-11-10 09:00 UTC);

/// Orders of every menu over the last few hours before the store's clock.
pub(crate) fn recent_history() -> Arc<Store> {
    let now = E + WINDOW * 3;
    let store = Store::new(now);
    store.orders(1_000, now - HOUR * 5, now - MINUTE);
    store
}

fn busy_history() -> Arc<Store> {
    let store = Store::new(E + WINDOW * 3);
    store.orders(30_000, E, E + HOUR * 2);
    store.orders(2_000, E + HOUR * 2, E + WINDOW);
    store.orders(300, E + WINDOW, E + WINDOW + MINUTE * 15);
    store
}

#[tokio::test]
async fn a_busy_edge_hour_ranks_exactly_a_second_either_side_of_the_edge() {
    let store = busy_history();
    let around = |edge: OffsetDateTime| [-2, -1, 0, 1, 2].map(|s| edge + time::Duration::seconds(s));
    // Orders at, and one and two seconds either side of, each edge the
    // rankings below ask for: mid-hour and at the hour boundary.
    let edges = [E + MINUTE * 20, E + MINUTE * 60];
    for at in edges.into_iter().flat_map(around) {
        store.order_at(at);
    }
    let (cold, warm) = (ranking(&store), ranking(&store));

    let inside_a_second = [
        // Up to the next whole second is left out.
        E + MINUTE * 20 + Duration::from_millis(500),
        E + MINUTE * 60 - Duration::from_millis(500),
        E + MINUTE * 60 - Duration::from_micros(1),
    ];
    for lo in edges
        .into_iter()
        .flat_map(around)
        .chain([E + MINUTE * 90])
        .chain(inside_a_second)
    {
        let now = lo + WINDOW;
        let want = store.truth(now);
        assert_eq!(want.len(), 10, "as of {now}");
        warm.prepare_as_of(now).await.expect("prepared");
        assert_eq!(all(&warm, now).await, want, "prepared, as of {now}");
        assert_eq!(all(&cold, now).await, want, "loaded by the request, as of {now}");
    }
    assert_eq!(warm.prepared().loaded_by_requests, 0);
    assert!(cold.prepared().loaded_by_requests > 0);
}

#[tokio::test]
async fn prepared_sums_carry_the_ranking_over_the_hour_without_a_request_loading() {
    let store = busy_history();
    let popular = ranking(&store);
    // Half a minute before the edge hour E gives way to E + 1 hour.
    let now = E + WINDOW + HOUR - Duration::from_secs(30);

    popular.prepare_as_of(now).await.expect("prepared");
    assert_eq!(
        popular.prepared(),
        Prepared {
            // From the hour before the first whole one (for requests that read
            // the clock a moment earlier) to the last final one.
            settled: Some((E, E + WINDOW)),
            edge_hours: vec![E, E + HOUR],
            loaded_by_requests: 0,
        }
    );
    for later in [0, 29, 30, 31, 60, 600, 1800] {
        let at = now + Duration::from_secs(later);
        assert_eq!(all(&popular, at).await, store.truth(at), "{later} s later");
    }
    assert_eq!(popular.prepared().loaded_by_requests, 0);

    // The next preparation drops what the window has passed, adds the hour
    // after the new edge hour and the hour that has become final.
    let later = now + Duration::from_secs(600);
    popular.prepare_as_of(later).await.expect("prepared");
    let prepared = popular.prepared();
    assert_eq!(prepared.settled, Some((E + HOUR, E + WINDOW + HOUR)));
    assert_eq!(prepared.edge_hours, vec![E, E + HOUR, E + HOUR * 2]);
    assert_eq!(all(&popular, later).await, store.truth(later));
    assert_eq!(popular.prepared().loaded_by_requests, 0);
}

#[tokio::test]
async fn a_prepared_request_reads_once_and_only_the_live_buckets() {
    let store = busy_history();
    let popular = ranking(&store);
    let now = E + WINDOW + MINUTE * 10;
    popular.prepare_as_of(now).await.expect("prepared");
    store.calls.take();

    assert_eq!(all(&popular, now).await, store.truth(now));
    // [clock, hour sums, second sums, live]
    assert_eq!(store.calls.take(), [0, 0, 0, 1]);
}

#[tokio::test]
async fn only_final_hours_are_held_and_the_rest_is_read_live() {
    // The store's clock is the ranking's: the last hours are not final yet.
    let db_now = datetime!(2026-11-29 10:17:23.5 UTC);
    let store = Store::new(db_now);
    store.orders(5_000, db_now - WINDOW - HOUR, db_now - Duration::from_secs(1));
    // Stamped after `now` but committed before the read: counted.
    store.order_at(db_now + SECOND);
    let popular = ranking(&store);

    popular.prepare().await.expect("prepared");
    let prepared = popular.prepared();
    let (_, first_full) = window_bounds(db_now);
    assert_eq!(
        prepared.settled,
        Some((first_full - HOUR, hour_of(db_now - SETTLE))),
        "up to the last hour that ended {SETTLE:?} ago"
    );
    assert_eq!(
        prepared.edge_hours,
        vec![first_full - HOUR, first_full],
        "the edge hour and the next"
    );
    let ranked = popular.top(100).await.expect("ranking");
    assert_eq!(ranked, store.truth(db_now));
    assert_eq!(popular.prepared().loaded_by_requests, 0);
}

#[tokio::test]
async fn the_first_ranking_starts_the_background_preparation() {
    let db_now = datetime!(2026-11-29 10:17:23.5 UTC);
    let store = Store::new(db_now);
    store.orders(2_000, db_now - WINDOW - HOUR, db_now);
    let popular = ranking(&store);
    assert_eq!(popular.prepared().settled, None);

    assert_eq!(popular.top(100).await.expect("ranking"), store.truth(db_now));
    for _ in 0..1_000 {
        if popular.prepared().settled.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let prepared = popular.prepared();
    assert!(prepared.settled.is_some(), "prepared in the background");
    assert_eq!(prepared.edge_hours.len(), 2);
    let loaded = prepared.loaded_by_requests;
    assert!(loaded <= 1, "at most the first request loaded its edge hour");

    store.calls.take();
    assert_eq!(popular.top(3).await.expect("ranking"), store.truth(db_now)[..3]);
    assert_eq!(store.calls.take()[3], 1, "one read");
    assert_eq!(popular.prepared().loaded_by_requests, loaded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_reads() {
    let db_now = datetime!(2026-11-29 10:17:23.5 UTC);
    let store = Store::slow(db_now, Duration::from_millis(20));
    store.orders(1_000, db_now - WINDOW, db_now);
    let popular = ranking(&store);
    popular.prepare().await.expect("prepared");
    store.calls.take();

    let requests: Vec<_> = (0..16)
        .map(|_| {
            let popular = popular.clone();
            tokio::spawn(async move { popular.top(3).await.expect("ranking") })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.expect("joined"), store.truth(db_now)[..3]);
    }
    let reads = store.calls.take()[3];
    assert!(reads < 16, "16 requests, {reads} reads");
    assert_eq!(popular.ranking_rounds(), u64::try_from(reads).expect("small"));
}

#[tokio::test]
async fn a_store_failure_fails_the_request_and_the_preparation() {
    let mut fake = MockSalesStatistics::new();
    fake.expect_clock()
        .returning(|| Err(InfraError::unavailable("database", anyhow::anyhow!("down"))));
    fake.expect_live_sales()
        .returning(|_| Err(InfraError::unavailable("database", anyhow::anyhow!("down"))));
    let popular = PopularRanking::new(Arc::new(fake));

    assert!(popular.prepare().await.expect_err("down").is_unavailable());
    assert!(popular.top(3).await.expect_err("down").is_unavailable());
}

#[tokio::test]
async fn live_buckets_the_held_hours_do_not_reach_are_an_error() {
    let now = datetime!(2026-11-29 10:17:23.5 UTC);
    let mut fake = MockSalesStatistics::new();
    fake.expect_live_sales().returning(move |_| {
        Ok(LiveSales {
            now,
            db_now: now,
            // Neither the first whole hour nor the end of held hours.
            live_from: now - HOUR * 30,
            menus: menus(),
            sales: Vec::new(),
        })
    });
    let error = PopularRanking::new(Arc::new(fake))
        .top_as_of(now, 3)
        .await
        .expect_err("inconsistent");
    assert!(!error.is_unavailable());
}
