//! Orders and popular menus end to end across two instances: exact payment
//! under concurrency, idempotency across servers, read-your-writes counts.

use coffee_e2e::Cluster;
use coffee_test_support::TestDatabase;
use diesel_async::SimpleAsyncConnection;
use serde_json::{Value, json};

const AMERICANO: &str = "0192f0a0-0000-7000-8000-000000000001";
const LATTE: &str = "0192f0a0-0000-7000-8000-000000000002";

async fn thousand_menu(db: &TestDatabase) -> String {
    let id = uuid::Uuid::now_v7();
    db.connect()
        .await
        .batch_execute(&format!(
            "INSERT INTO menus (id, name, price) VALUES ('{id}', 'House Blend {id}', 1000)"
        ))
        .await
        .expect("menu");
    id.to_string()
}

#[tokio::test]
async fn twenty_orders_on_two_instances_against_a_balance_for_ten() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    let menu = thousand_menu(&db).await;
    let (_, token) = cluster.api(0).funded_user(10_000).await;

    let orders: Vec<_> = (0..20)
        .map(|i| {
            let api = cluster.api(i % 2);
            let (token, menu) = (token.clone(), menu.clone());
            tokio::spawn(async move {
                api.order(&token, Some(&format!("o{i}")), json!([{"menuId": menu, "quantity": 1}]))
                    .await
            })
        })
        .collect();
    let (mut created, mut short) = (0, 0);
    for o in orders {
        let reply = o.await.expect("joined");
        match reply.status {
            201 => created += 1,
            409 => {
                assert_eq!(reply.code(), "INSUFFICIENT_POINTS");
                assert_eq!(reply.body["required"], 1000);
                short += 1;
            }
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }

    assert_eq!((created, short), (10, 10));
    assert_eq!(db.count("SELECT point AS n FROM users").await, 0);
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
async fn one_key_sent_to_both_instances_at_once_places_one_order() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    let (_, token) = cluster.api(0).funded_user(100_000).await;
    let items = json!([{"menuId": LATTE, "quantity": 2}, {"menuId": AMERICANO, "quantity": 1}]);

    let (a, b) = (cluster.api(0), cluster.api(1));
    let (first, second) = tokio::join!(
        a.order(&token, Some("same"), items.clone()),
        b.order(&token, Some("same"), items.clone())
    );

    assert_eq!((first.status, second.status), (201, 201));
    assert_eq!(first.body, second.body);
    let replayed = [&first, &second]
        .iter()
        .filter(|r| r.headers.get("idempotent-replayed").is_some())
        .count();
    assert_eq!(replayed, 1);
    assert_eq!(db.count("SELECT count(*) AS n FROM orders").await, 1);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM point_transactions WHERE type = 'DEDUCT'")
            .await,
        1
    );
    assert_eq!(first.body["totalPrice"], 2 * 4500 + 4000);
    assert_eq!(first.body["balance"], 100_000 - 13_000);
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn a_charge_and_orders_racing_on_one_user_all_apply() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    let (user, token) = cluster.api(0).funded_user(40_000).await;

    let mut tasks = Vec::new();
    for i in 0..8 {
        let api = cluster.api(i % 2);
        let (user, token) = (user.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let (order_key, charge_key) = (format!("o{i}"), format!("c{i}"));
            let order = api.order(&token, Some(&order_key), json!([{"menuId": AMERICANO, "quantity": 1}]));
            let charge = api.charge(&token, &user, Some(&charge_key), json!({"amount": 1500}));
            let (order, charge) = tokio::join!(order, charge);
            (order.status, charge.status)
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("joined"), (201, 200));
    }

    assert_eq!(
        db.count("SELECT point AS n FROM users").await,
        40_000 - 8 * 4000 + 8 * 1500
    );
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn sixty_four_clients_on_one_menu_are_counted_by_the_very_next_query_anywhere() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    let mut tokens = Vec::new();
    for i in 0..64 {
        tokens.push(cluster.api(i % 2).funded_user(100_000).await.1);
    }

    let orders: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let api = cluster.api(i % 2);
            let token = token.clone();
            tokio::spawn(async move {
                let reply = api
                    .order(&token, Some("one"), json!([{"menuId": AMERICANO, "quantity": 2}]))
                    .await;
                assert_eq!(reply.status, 201, "{:?}", reply.body);
            })
        })
        .collect();
    for o in orders {
        o.await.expect("joined");
    }
    // One more, then read it back on the other instance at once.
    let last = cluster
        .api(0)
        .order(&tokens[0], Some("last"), json!([{"menuId": LATTE, "quantity": 1}]))
        .await;
    assert_eq!(last.status, 201);
    let popular = cluster.api(1).get("/menus/popular", None).await;

    assert_eq!(popular.status, 200);
    let ranking = popular.body.as_array().cloned().unwrap_or_default();
    assert_eq!(ranking.len(), 2);
    assert_eq!(
        ranking[0],
        json!({"rank": 1, "id": AMERICANO, "name": "Americano", "price": 4000, "quantity": 128, "orderCount": 64})
    );
    assert_eq!(ranking[1]["id"], LATTE);
    assert_eq!(ranking[1]["quantity"], 1);
    assert_eq!(coffee_e2e::ranking(&popular.body), coffee_e2e::ranking_truth(&db).await);
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn unknown_menus_bad_items_and_other_peoples_orders() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    let (a, b) = (cluster.api(0), cluster.api(1));
    let (_, token) = a.funded_user(50_000).await;
    let (_, other) = b.funded_user(1_000).await;
    let ghost = uuid::Uuid::now_v7().to_string();

    let missing = a
        .order(&token, Some("m1"), json!([{"menuId": ghost, "quantity": 1}]))
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), "MENU_NOT_FOUND");
    let replay = b
        .order(&token, Some("m1"), json!([{"menuId": ghost, "quantity": 1}]))
        .await;
    assert_eq!(replay.status, 404);
    assert_eq!(replay.headers["idempotent-replayed"], "true");

    for (i, items) in [
        json!([]),
        json!([{"menuId": AMERICANO, "quantity": 0}]),
        json!([{"menuId": AMERICANO, "quantity": 101}]),
        json!([{"menuId": AMERICANO, "quantity": 1.5}]),
        json!([{"menuId": "not-a-uuid", "quantity": 1}]),
        json!([{"menuId": AMERICANO, "quantity": 1, "extra": 1}]),
        Value::Array((0..21).map(|_| json!({"menuId": AMERICANO, "quantity": 1})).collect()),
    ]
    .into_iter()
    .enumerate()
    {
        let reply = a.order(&token, Some(&format!("bad-{i}")), items.clone()).await;
        assert_eq!(reply.status, 400, "{items}");
        assert_eq!(reply.code(), "VALIDATION_FAILED", "{items}");
    }
    assert_eq!(
        a.order(&token, None, json!([{"menuId": AMERICANO, "quantity": 1}]))
            .await
            .code(),
        "IDEMPOTENCY_KEY_MISSING"
    );
    let short = b
        .order(&other, Some("s"), json!([{"menuId": AMERICANO, "quantity": 1}]))
        .await;
    assert_eq!(short.status, 409);
    assert_eq!(
        (short.body["balance"].as_i64(), short.body["required"].as_i64()),
        (Some(1000), Some(4000))
    );
    assert_eq!(db.count("SELECT count(*) AS n FROM orders").await, 0);

    let merged = a
        .order(
            &token,
            Some("ok"),
            json!([{"menuId": LATTE, "quantity": 1}, {"menuId": LATTE, "quantity": 2}]),
        )
        .await;
    assert_eq!(merged.status, 201);
    assert_eq!(merged.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(merged.body["items"][0]["quantity"], 3);
    let id = merged.str("id");
    assert_eq!(b.get(&format!("/orders/{id}"), Some(&token)).await.body, merged.body);
    assert_eq!(b.get(&format!("/orders/{id}"), Some(&other)).await.status, 404);
    assert_eq!(b.get("/orders/not-a-uuid", Some(&token)).await.status, 400);
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn order_history_pages_are_complete_and_newest_first() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    let (a, b) = (cluster.api(0), cluster.api(1));
    let (_, token) = a.funded_user(200_000).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let api = if i % 2 == 0 { &a } else { &b };
        let reply = api
            .order(
                &token,
                Some(&format!("h{i}")),
                json!([{"menuId": AMERICANO, "quantity": 1}]),
            )
            .await;
        ids.push(reply.str("id"));
    }

    let mut seen = Vec::new();
    let mut path = "/orders?limit=3".to_owned();
    loop {
        let page = a.get(&path, Some(&token)).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        seen.extend(
            page.body["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|o| o["id"].as_str().unwrap_or_default().to_owned()),
        );
        match page.body["nextCursor"].as_str() {
            Some(cursor) => path = format!("/orders?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
}
