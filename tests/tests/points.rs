//! Points end to end across two instances: ownership, idempotency, limits,
//! history, and the ledger invariant after each test.

use coffee_e2e::Cluster;
use coffee_test_support::TestDatabase;
use serde_json::{Value, json};

#[tokio::test]
async fn charging_someone_elses_account_is_forbidden_and_changes_nothing() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    let (a, b) = (cluster.api(0), cluster.api(1));
    let (alice, alice_token, _) = a.new_user().await;
    let (bob, _, _) = b.new_user().await;

    let reply = b.charge(&alice_token, &bob, Some("k1"), json!({"amount": 1000})).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.code(), "FORBIDDEN");
    assert_eq!(
        a.get(&format!("/users/{bob}/points"), Some(&alice_token)).await.status,
        403
    );
    assert_eq!(
        a.get(&format!("/users/{bob}/points/transactions"), Some(&alice_token))
            .await
            .status,
        403
    );

    let alice_balance = a.get(&format!("/users/{alice}/points"), Some(&alice_token)).await;
    assert_eq!(alice_balance.body, json!({"userId": alice, "balance": 0}));
    assert_eq!(db.count("SELECT count(*) AS n FROM point_transactions").await, 0);
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn a_charge_replays_across_instances_and_a_reused_key_is_refused() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    let (a, b) = (cluster.api(0), cluster.api(1));
    let (user, token, _) = a.new_user().await;

    let first = a.charge(&token, &user, Some("charge-1"), json!({"amount": 5000})).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["amount"], 5000);
    assert_eq!(first.body["balance"], 5000);
    assert!(first.headers.get("idempotent-replayed").is_none());

    let replay = b
        .charge(&token, &user, Some("charge-1"), json!({ "amount": 5000 }))
        .await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.body, first.body, "the very same body");
    assert_eq!(replay.headers["idempotent-replayed"], "true");

    let reused = b.charge(&token, &user, Some("charge-1"), json!({"amount": 7000})).await;
    assert_eq!(reused.status, 422);
    assert_eq!(reused.code(), "IDEMPOTENCY_KEY_REUSED");

    let balance = b.get(&format!("/users/{user}/points"), Some(&token)).await;
    assert_eq!(balance.body["balance"], 5000);
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn twenty_simultaneous_identical_charges_on_two_instances_take_effect_once() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    let (user, token, _) = cluster.api(0).new_user().await;

    let charges: Vec<_> = (0..20)
        .map(|i| {
            let api = cluster.api(i % 2);
            let (user, token) = (user.clone(), token.clone());
            tokio::spawn(async move { api.charge(&token, &user, Some("burst"), json!({"amount": 100})).await })
        })
        .collect();
    let mut bodies = Vec::new();
    let mut replayed = 0;
    for charge in charges {
        let reply = charge.await.expect("joined");
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        if reply.headers.get("idempotent-replayed").is_some() {
            replayed += 1;
        }
        bodies.push(reply.body);
    }

    assert_eq!(replayed, 19);
    assert!(bodies.iter().all(|b| *b == bodies[0]), "identical bodies");
    assert_eq!(db.count("SELECT point AS n FROM users").await, 100);
    assert_eq!(db.count("SELECT count(*) AS n FROM point_transactions").await, 1);
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn bad_amounts_and_keys_are_400_and_change_nothing() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(1, db.url(), &[]).await.expect("cluster");
    let api = cluster.api(0);
    let (user, token, _) = api.new_user().await;

    for (i, amount) in [
        json!(1.5),
        json!("100"),
        json!(0),
        json!(-1),
        json!(1e9),
        Value::Null,
        json!(1_000_001),
    ]
    .into_iter()
    .enumerate()
    {
        let reply = api
            .charge(&token, &user, Some(&format!("bad-{i}")), json!({"amount": amount}))
            .await;
        assert_eq!(reply.status, 400, "{amount}");
        assert_eq!(reply.code(), "VALIDATION_FAILED", "{amount}");
        assert_eq!(reply.body["errors"][0]["field"], "amount", "{amount}");
    }
    let missing = api.charge(&token, &user, None, json!({"amount": 100})).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.code(), "IDEMPOTENCY_KEY_MISSING");
    let long = api
        .charge(&token, &user, Some(&"k".repeat(256)), json!({"amount": 100}))
        .await;
    assert_eq!(long.status, 400);
    assert_eq!(long.code(), "VALIDATION_FAILED");
    let not_uuid = api
        .charge(&token, "not-a-uuid", Some("k"), json!({"amount": 100}))
        .await;
    assert_eq!(not_uuid.status, 400);

    assert_eq!(db.count("SELECT count(*) AS n FROM point_transactions").await, 0);
    assert_eq!(db.count("SELECT count(*) AS n FROM idempotency_keys").await, 0);
}

#[tokio::test]
async fn the_balance_cap_is_a_stored_422_that_changes_nothing() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[("BALANCE_MAX", "1500".to_owned())])
        .await
        .expect("cluster");
    let (a, b) = (cluster.api(0), cluster.api(1));
    let (user, token, _) = a.new_user().await;
    assert_eq!(
        a.charge(&token, &user, Some("c1"), json!({"amount": 1000}))
            .await
            .status,
        200
    );

    let over = a.charge(&token, &user, Some("c2"), json!({"amount": 501})).await;
    assert_eq!(over.status, 422);
    assert_eq!(over.code(), "BALANCE_LIMIT_EXCEEDED");
    assert_eq!(over.body["balance"], 1000);
    let replay = b.charge(&token, &user, Some("c2"), json!({"amount": 501})).await;
    assert_eq!(replay.status, 422);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.body, over.body);

    assert_eq!(
        b.charge(&token, &user, Some("c3"), json!({"amount": 500})).await.body["balance"],
        1500
    );
    db.assert_ledger_consistent().await;
}

#[tokio::test]
async fn history_pages_are_complete_ordered_and_never_repeat() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    let (a, b) = (cluster.api(0), cluster.api(1));
    let (user, token, _) = a.new_user().await;
    for i in 1..=12 {
        let api = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            api.charge(&token, &user, Some(&format!("h{i}")), json!({"amount": i}))
                .await
                .status,
            200
        );
    }

    let mut items: Vec<Value> = Vec::new();
    let mut path = format!("/users/{user}/points/transactions?limit=5");
    let mut pages = 0;
    loop {
        let api = if pages % 2 == 0 { &a } else { &b };
        let page = api.get(&path, Some(&token)).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        pages += 1;
        items.extend(page.body["items"].as_array().cloned().unwrap_or_default());
        match page.body["nextCursor"].as_str() {
            Some(cursor) => path = format!("/users/{user}/points/transactions?limit=5&cursor={cursor}"),
            None => break,
        }
    }

    assert_eq!(pages, 3);
    let amounts: Vec<i64> = items.iter().filter_map(|i| i["amount"].as_i64()).collect();
    assert_eq!(amounts, (1..=12).rev().collect::<Vec<_>>());
    assert!(items.iter().all(|i| i["type"] == "ADD" && i["orderId"].is_null()));
    assert_eq!(items[0]["balanceAfter"], 78);
    for bad in ["limit=0", "limit=101", "limit=x", "cursor=not-ours"] {
        let reply = a
            .get(&format!("/users/{user}/points/transactions?{bad}"), Some(&token))
            .await;
        assert_eq!(reply.status, 400, "{bad}");
    }
    db.assert_ledger_consistent().await;
}

async fn next_cursor(api: &coffee_e2e::Api, path: &str, token: &str) -> String {
    let page = api.get(path, Some(token)).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    page.body["nextCursor"].as_str().expect("a next page").to_owned()
}

/// Cursors the API never issued, whatever they decode to: the old unsealed
/// format with a timestamp PostgreSQL cannot hold (before 4713 BC) or a
/// plausible one, another user's real cursor, another list's, an empty one.
#[tokio::test]
async fn cursors_the_api_did_not_issue_are_400_on_both_lists() {
    let db = TestDatabase::create().await;
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    let (a, b) = (cluster.api(0), cluster.api(1));
    let (user, token, _) = a.new_user().await;
    let (other, other_token, _) = b.new_user().await;
    for (api, owner, owner_token) in [(&a, &user, &token), (&b, &other, &other_token)] {
        for i in 0..3 {
            let reply = api
                .charge(owner_token, owner, Some(&format!("c{i}")), json!({"amount": 10_000}))
                .await;
            assert_eq!(reply.status, 200);
            let reply = api
                .order(
                    owner_token,
                    Some(&format!("o{i}")),
                    json!([{"menuId": "0192f0a0-0000-7000-8000-000000000001", "quantity": 1}]),
                )
                .await;
            assert_eq!(reply.status, 201, "{:?}", reply.body);
        }
    }
    let others_history = next_cursor(&a, &format!("/users/{other}/points/transactions?limit=1"), &other_token).await;
    let others_orders = next_cursor(&a, "/orders?limit=1", &other_token).await;
    let my_orders = next_cursor(&a, "/orders?limit=1", &token).await;
    let my_history = next_cursor(&a, &format!("/users/{user}/points/transactions?limit=1"), &token).await;

    let ancient = coffee_e2e::base64url(b"-220000000000000000.0192f0a0-0000-7000-8000-000000000001");
    let plausible = coffee_e2e::base64url(b"1795000000000000.0192f0a0-0000-7000-8000-000000000001");
    let history = format!("/users/{user}/points/transactions?limit=1&cursor=");
    let orders = "/orders?limit=1&cursor=".to_owned();
    let cases = [
        (history.clone(), ancient.clone()),
        (history.clone(), plausible.clone()),
        (history.clone(), others_history),
        (history.clone(), my_orders),
        (history.clone(), String::new()),
        (orders.clone(), ancient),
        (orders.clone(), plausible),
        (orders.clone(), others_orders),
        (orders.clone(), my_history.clone()),
        (orders, String::new()),
    ];
    for (path, cursor) in cases {
        for api in [&a, &b] {
            let reply = api.get(&format!("{path}{cursor}"), Some(&token)).await;
            assert_eq!(reply.status, 400, "{path}{cursor}: {:?}", reply.body);
            assert_eq!(reply.code(), "VALIDATION_FAILED");
            assert_eq!(reply.body["errors"][0]["field"], "cursor");
        }
    }
    // The real one works on either instance.
    let page = b.get(&format!("{history}{my_history}"), Some(&token)).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    db.assert_ledger_consistent().await;
}
