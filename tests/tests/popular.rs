//! Popular menus end to end with a busy hour at the window's old edge: every
//! instance ranks exactly like the ground truth, from the sums it prepared in
//! the background, and counts an order placed through another one at once.

use coffee_e2e::{Cluster, ranking, ranking_truth};
use coffee_test_support::TestDatabase;
use diesel_async::SimpleAsyncConnection;
use serde_json::json;

/// The bench's bulk seeding: orders, items and statistics rows together.
const SEED: &str = include_str!("../../bench/seed_popular.sql");

#[tokio::test]
async fn a_busy_edge_hour_ranks_exactly_and_at_once_on_every_instance() {
    let db = TestDatabase::create().await;
    let payer = db.insert_user(0).await;
    let mut conn = db.connect().await;
    conn.batch_execute(SEED).await.expect("seeding functions");
    // 40,000 orders in the hour after the window's old edge, from two minutes
    // in (none leaves the window while the test runs), and a week behind them.
    conn.batch_execute(&format!(
        "SELECT pg_temp.seed_orders(1, 40000, now() - interval '7 days' + interval '2 minutes', \
                                    now() - interval '6 days 23 hours', '{payer}'); \
         SELECT pg_temp.seed_orders(2, 2000, now() - interval '6 days 23 hours', now() - interval '1 minute', '{payer}')"
    ))
    .await
    .expect("seeded");
    let cluster = Cluster::start(2, db.url(), &[]).await.expect("cluster");
    for i in 0..2 {
        let popular = cluster.api(i).get("/menus/popular", None).await;
        assert_eq!(popular.status, 200, "{:?}", popular.body);
        assert_eq!(ranking(&popular.body), ranking_truth(&db).await, "instance {i}");
    }

    let (_, token) = cluster.api(0).funded_user(1_000_000).await;
    for i in 0..4 {
        let (writer, reader) = (cluster.api(i % 2), cluster.api(1 - i % 2));
        let (menu, quantity, _) = ranking(&reader.get("/menus/popular", None).await.body)[2].clone();
        let placed = writer
            .order(&token, Some(&format!("o{i}")), json!([{"menuId": menu, "quantity": 5}]))
            .await;
        assert_eq!(placed.status, 201, "{:?}", placed.body);

        let after = ranking(&reader.get("/menus/popular", None).await.body);
        assert!(
            after.iter().any(|(id, q, _)| *id == menu && *q == quantity + 5),
            "order {i} counted at once on the other instance: {after:?}"
        );
        assert_eq!(after, ranking_truth(&db).await, "after order {i}");
    }
    db.assert_ledger_consistent().await;
}
