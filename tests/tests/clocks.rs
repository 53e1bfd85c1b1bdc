//! The instances' own clocks decide nothing: an order is stamped by the
//! database once the balance is locked, and the ranking's "now" is the
//! database's too. Three instances, one 2 hours behind and one 2 hours ahead
//! (libfaketime), must place orders at the real time and every instance must
//! count every order at once.

use coffee_e2e::{Cluster, skewed_clock};
use coffee_test_support::TestDatabase;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const AMERICANO: &str = "0192f0a0-0000-7000-8000-000000000001";
const LATTE: &str = "0192f0a0-0000-7000-8000-000000000002";

fn seconds_from_now(stamp: &serde_json::Value) -> i64 {
    let at = OffsetDateTime::parse(stamp.as_str().expect("a timestamp"), &Rfc3339).expect("RFC 3339");
    (at - OffsetDateTime::now_utc()).whole_seconds().abs()
}

#[tokio::test]
async fn skewed_instances_neither_misplace_nor_hide_an_order() {
    let db = TestDatabase::create().await;
    // Tokens are checked against each instance's clock (a JWT's `exp`), so
    // they live longer than the skew here; everything else must not care.
    let long_tokens = ("ACCESS_TOKEN_TTL_SECS", "21600".to_owned());
    let mut cluster = Cluster::start(1, db.url(), std::slice::from_ref(&long_tokens))
        .await
        .expect("cluster");
    for offset in ["-2h", "+2h"] {
        let mut env = skewed_clock(offset);
        env.push(long_tokens.clone());
        cluster.add_instance(db.url(), &env).await.expect("skewed instance");
    }
    let (honest, behind, ahead) = (cluster.api(0), cluster.api(1), cluster.api(2));
    let (_, token) = honest.funded_user(100_000).await;

    // Every instance has ranked once, so each holds its settled sums.
    for api in [&honest, &behind, &ahead] {
        assert_eq!(api.get("/menus/popular", None).await.status, 200);
    }

    let mut placed = Vec::new();
    for (i, (api, menu, quantity)) in [(&behind, AMERICANO, 5), (&ahead, LATTE, 3), (&behind, LATTE, 4)]
        .into_iter()
        .enumerate()
    {
        let reply = api
            .order(
                &token,
                Some(&format!("k{i}")),
                json!([{"menuId": menu, "quantity": quantity}]),
            )
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        assert!(
            seconds_from_now(&reply.body["createdAt"]) < 60,
            "the order is stamped at the real time, not its instance's: {}",
            reply.body["createdAt"]
        );
        placed.push(reply.body["id"].as_str().expect("id").to_owned());
    }
    let charge = ahead
        .charge(
            &token,
            &honest_user(&honest, &token).await,
            Some("c"),
            json!({"amount": 1}),
        )
        .await;
    assert_eq!(charge.status, 200, "{:?}", charge.body);
    assert!(
        seconds_from_now(&charge.body["chargedAt"]) < 60,
        "{}",
        charge.body["chargedAt"]
    );

    let truth = coffee_e2e::ranking_truth(&db).await;
    assert_eq!(truth, vec![(LATTE.to_owned(), 7, 2), (AMERICANO.to_owned(), 5, 1)]);
    for (name, api) in [("honest", &honest), ("behind", &behind), ("ahead", &ahead)] {
        let reply = api.get("/menus/popular", None).await;
        assert_eq!(coffee_e2e::ranking(&reply.body), truth, "the {name} instance's ranking");
    }
    // Newest first, in the order they were placed, whichever instance did.
    let listed = honest.get("/orders", Some(&token)).await;
    let ids: Vec<&str> = listed.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    placed.reverse();
    assert_eq!(ids, placed);
    db.assert_ledger_consistent().await;
}

async fn honest_user(api: &coffee_e2e::Api, token: &str) -> String {
    api.me(token).await.str("id")
}
