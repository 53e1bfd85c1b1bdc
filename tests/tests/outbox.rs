//! Order events reach the collector at least once, whatever fails: the
//! collector down or flaky, an instance killed mid-delivery. Each test prints
//! the duplicate deliveries it saw (run with `--nocapture` to read them).

// The duplicate-delivery ratios are this file's report.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use coffee_e2e::{Api, Cluster, free_port, run_coffee, start_mock_collector, start_mock_collector_on};
use coffee_test_support::TestDatabase;
use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

const AMERICANO: &str = "0192f0a0-0000-7000-8000-000000000001";
const LATTE: &str = "0192f0a0-0000-7000-8000-000000000002";

/// Relay settings that keep the tests quick: short backoff, never dead-letter.
fn fast_relay(collector_url: String) -> Vec<(&'static str, String)> {
    vec![
        ("COLLECTOR_URL", collector_url),
        ("OUTBOX_RETRY_BASE_MS", "100".to_owned()),
        ("OUTBOX_RETRY_CAP_MS", "1000".to_owned()),
        ("OUTBOX_MAX_ATTEMPTS", "100000".to_owned()),
        ("OUTBOX_LEASE_MS", "3000".to_owned()),
        ("OUTBOX_IDLE_POLL_MAX_MS", "200".to_owned()),
        ("COLLECTOR_TIMEOUT_MS", "2000".to_owned()),
    ]
}

/// Places `count` orders for one funded user, `parallel` at a time, spread
/// over the cluster's instances.
async fn place_orders(cluster: &Cluster, count: usize, parallel: usize) {
    let (_, token) = cluster.api(0).funded_user(count as i64 * 20_000).await;
    let apis: Vec<Api> = (0..cluster.instances.len()).map(|i| cluster.api(i)).collect();
    for chunk in (0..count).collect::<Vec<_>>().chunks(parallel) {
        let orders: Vec<_> = chunk
            .iter()
            .map(|i| {
                let api = apis[i % apis.len()].clone();
                let token = token.clone();
                let i = *i;
                tokio::spawn(async move {
                    let items = json!([{"menuId": AMERICANO, "quantity": 1 + i % 3}, {"menuId": LATTE, "quantity": 1}]);
                    let reply = api.order(&token, Some(&format!("o{i}")), items).await;
                    assert_eq!(reply.status, 201, "{:?}", reply.body);
                })
            })
            .collect();
        for order in orders {
            order.await.expect("joined");
        }
    }
}

/// The collector's events, keyed by eventId.
async fn received(collector_url: &str) -> HashMap<String, Value> {
    let events: Vec<Value> = reqwest::get(format!("{collector_url}/events"))
        .await
        .and_then(|r| r.error_for_status())
        .map(|r| r.json())
        .expect("collector answers")
        .await
        .expect("JSON");
    events
        .into_iter()
        .map(|e| (e["eventId"].as_str().unwrap_or_default().to_owned(), e))
        .collect()
}

async fn wait_for_events(collector_url: &str, expected: usize, within: Duration) -> HashMap<String, Value> {
    let deadline = Instant::now() + within;
    loop {
        let events = received(collector_url).await;
        if events.len() >= expected || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(QueryableByName)]
struct Expected {
    #[diesel(sql_type = Text)]
    event: String,
}

/// Every event the database holds, as the collector should have received it,
/// rebuilt from the orders themselves (not from the outbox payload).
async fn expected_events(db: &TestDatabase) -> HashMap<String, Value> {
    let mut conn = db.connect().await;
    let rows: Vec<Expected> = diesel::sql_query(
        "SELECT json_build_object( \
            'eventId', e.id, 'type', 'ORDER_PLACED', 'orderId', o.id, 'userId', o.user_id, \
            'totalAmount', o.total_price, \
            'items', (SELECT json_agg(json_build_object('menuId', i.menu_id, 'quantity', i.quantity, 'amount', i.total_price) \
                      ORDER BY i.menu_id) FROM order_items i WHERE i.order_id = o.id))::text AS event \
         FROM outbox_events e JOIN orders o ON o.id = e.aggregate_id",
    )
    .load(&mut conn)
    .await
    .expect("expected events");
    rows.into_iter()
        .map(|r| {
            let v: Value = serde_json::from_str(&r.event).expect("json");
            (v["eventId"].as_str().unwrap_or_default().to_owned(), v)
        })
        .collect()
}

/// Checks every expected event arrived with the right payload; returns
/// (events, deliveries).
fn assert_all_delivered(expected: &HashMap<String, Value>, got: &HashMap<String, Value>) -> (u64, u64) {
    assert_eq!(got.len(), expected.len(), "every event arrives, none invented");
    let mut deliveries = 0;
    for (id, want) in expected {
        let received = got.get(id).unwrap_or_else(|| panic!("event {id} never arrived"));
        let event = &received["event"];
        for field in ["eventId", "type", "orderId", "userId", "totalAmount", "items"] {
            assert_eq!(event[field], want[field], "{field} of {id}");
        }
        assert!(event["occurredAt"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(
            received["idempotencyKey"], want["eventId"],
            "Idempotency-Key is the eventId"
        );
        deliveries += received["deliveries"].as_u64().unwrap_or_default();
    }
    (expected.len() as u64, deliveries)
}

#[tokio::test]
async fn events_wait_out_a_collector_outage_and_all_arrive() {
    let db = TestDatabase::create().await;
    let collector_port = free_port();
    let collector_url = format!("http://127.0.0.1:{collector_port}");
    let cluster = Cluster::start(1, db.url(), &fast_relay(collector_url.clone()))
        .await
        .expect("cluster");

    let started = Instant::now();
    place_orders(&cluster, 200, 10).await;
    let placing = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pending = db
        .count("SELECT count(*) AS n FROM outbox_events WHERE status = 'PENDING'")
        .await;
    assert_eq!(
        pending, 200,
        "nothing delivered while the collector is down, nothing lost"
    );

    let _collector = start_mock_collector_on(collector_port, &[]).await.expect("collector");
    let got = wait_for_events(&collector_url, 200, Duration::from_secs(30)).await;

    let (events, deliveries) = assert_all_delivered(&expected_events(&db).await, &got);
    println!(
        "outage: {events} events, {deliveries} deliveries, duplicate ratio {:.3}; 200 orders took {placing:?} with the collector down",
        (deliveries - events) as f64 / events as f64
    );
    assert!(placing < Duration::from_secs(20), "orders never wait for the collector");
}

#[tokio::test]
async fn a_collector_failing_half_the_time_still_gets_every_event_from_two_instances() {
    let db = TestDatabase::create().await;
    let collector = start_mock_collector(&[("MOCK_COLLECTOR_FAIL_RATE", "0.5".to_owned())])
        .await
        .expect("collector");
    let cluster = Cluster::start(2, db.url(), &fast_relay(collector.base_url.clone()))
        .await
        .expect("cluster");

    place_orders(&cluster, 500, 16).await;
    let got = wait_for_events(&collector.base_url, 500, Duration::from_secs(60)).await;

    let (events, deliveries) = assert_all_delivered(&expected_events(&db).await, &got);
    let stats: Value = reqwest::get(format!("{}/stats", collector.base_url))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    println!(
        "fail rate 0.5: {events} events, {deliveries} deliveries, duplicate ratio {:.3}, {} requests refused by the collector",
        (deliveries - events) as f64 / events as f64,
        stats["rejected"]
    );
    assert!(
        stats["rejected"].as_u64().unwrap_or_default() > 0,
        "the collector really failed"
    );
}

#[tokio::test]
async fn killing_an_instance_mid_delivery_loses_no_event() {
    let db = TestDatabase::create().await;
    // A slow collector keeps deliveries in flight when the kill comes.
    let collector = start_mock_collector(&[("MOCK_COLLECTOR_LATENCY_MS", "400".to_owned())])
        .await
        .expect("collector");
    let mut relay = fast_relay(collector.base_url.clone());
    relay.push(("OUTBOX_BATCH_SIZE", "20".to_owned()));
    let mut cluster = Cluster::start(1, db.url(), &relay).await.expect("cluster");

    place_orders(&cluster, 120, 12).await;
    let in_flight = db
        .count("SELECT count(*) AS n FROM outbox_events WHERE locked_until > now()")
        .await;
    cluster.instances[0].signal("KILL").expect("killed");
    cluster.instances[0]
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("dead");
    let delivered_before = received(&collector.base_url).await.len();
    cluster.add_instance(db.url(), &relay).await.expect("a second instance");

    let got = wait_for_events(&collector.base_url, 120, Duration::from_secs(60)).await;

    let (events, deliveries) = assert_all_delivered(&expected_events(&db).await, &got);
    println!(
        "SIGKILL: {in_flight} claimed at the kill, {delivered_before} delivered before it; {events} events, {deliveries} deliveries, duplicate ratio {:.3}",
        (deliveries - events) as f64 / events as f64
    );
    assert!(delivered_before < 120, "the kill came mid-delivery");
}

#[tokio::test]
async fn dead_letters_are_kept_counted_and_requeued_by_the_operator() {
    let db = TestDatabase::create().await;
    let collector_port = free_port();
    let collector_url = format!("http://127.0.0.1:{collector_port}");
    let mut relay = fast_relay(collector_url.clone());
    relay.retain(|(k, _)| *k != "OUTBOX_MAX_ATTEMPTS");
    relay.push(("OUTBOX_MAX_ATTEMPTS", "2".to_owned()));
    let cluster = Cluster::start(1, db.url(), &relay).await.expect("cluster");
    place_orders(&cluster, 5, 5).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    while db
        .count("SELECT count(*) AS n FROM outbox_events WHERE status = 'DEAD'")
        .await
        < 5
    {
        assert!(Instant::now() < deadline, "events were not dead-lettered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let env = vec![("DATABASE_URL", db.url().to_owned()), ("APP_ENV", "test".to_owned())];
    let (status, stats) = run_coffee(&["outbox", "stats"], &env).expect("stats");
    assert!(status.success(), "{stats}");
    assert!(stats.contains("dead 5"), "{stats}");

    let _collector = start_mock_collector_on(collector_port, &[]).await.expect("collector");
    let (status, output) = run_coffee(&["outbox", "requeue-dead"], &env).expect("requeue");
    assert!(status.success(), "{output}");
    assert!(output.contains("requeued 5"), "{output}");
    let got = wait_for_events(&collector_url, 5, Duration::from_secs(20)).await;
    assert_all_delivered(&expected_events(&db).await, &got);
}
