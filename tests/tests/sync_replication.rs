//! A synchronous standby that does not answer: PostgreSQL keeps a commit
//! whose wait for it was cancelled (here by `statement_timeout`) and reports
//! it done with only a warning. Such an order must not be answered `201`:
//! it is `503`, and the retry with the same key answers the stored order
//! only once the standby has it.

use coffee_e2e::{Api, DataTier, coffee_env, free_port, override_env, run_coffee, start_coffee};
use serde_json::json;

const AMERICANO: &str = "0192f0a0-0000-7000-8000-000000000001";

#[tokio::test]
async fn an_order_whose_commit_did_not_reach_the_synchronous_standby_is_not_201() {
    let tier = DataTier::with_certificates().expect("certificates");
    let primary = free_port();
    tier.pg_primary(primary, None).expect("primary");
    let database_url = tier.verified_database_url(&[primary], "");
    let port = free_port();
    let mut env = coffee_env(
        port,
        &database_url,
        &coffee_test_support::unique_key_prefix(),
        "http://127.0.0.1:1",
    );
    override_env(
        &mut env,
        [
            ("DATABASE_STATEMENT_TIMEOUT_MS", "1000".to_owned()),
            ("DATABASE_ACQUIRE_TIMEOUT_MS", "3000".to_owned()),
        ],
    );
    let (status, output) = run_coffee(&["migrate"], &env).expect("migrate");
    assert!(status.success(), "{output}");
    let _coffee = start_coffee(port, &env).await.expect("coffee serve");
    let api = Api::new(&format!("http://127.0.0.1:{port}"));
    let (user, token) = api.funded_user(10_000).await;

    // From now on every commit waits for a standby named `late`.
    tier.psql(
        primary,
        "postgres",
        "ALTER SYSTEM SET synchronous_standby_names = 'late'",
    )
    .expect("ALTER SYSTEM");
    tier.psql(primary, "postgres", "SELECT pg_reload_conf()")
        .expect("reload");

    let items = json!([{ "menuId": AMERICANO, "quantity": 1 }]);
    let unreplicated = api.order(&token, Some("late-standby"), items.clone()).await;
    assert_eq!(unreplicated.status, 503, "{:?}", unreplicated.body);
    // The order was kept on the primary all the same (once the service's
    // cancel ended the wait): that is the danger.
    let count = format!("SELECT count(*) FROM orders WHERE user_id = '{user}'");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while tier.psql(primary, "coffee", &count).expect("count") != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the cancelled wait did not leave the order on the primary"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A retry is no better while the standby is away: its answer too would
    // claim what a failover could lose.
    let retried = api.order(&token, Some("late-standby"), items.clone()).await;
    assert_eq!(retried.status, 503, "{:?}", retried.body);

    // The standby arrives and catches up: the retry answers the stored order.
    tier.pg_standby(free_port(), primary, "late").expect("standby");
    let replayed = api.order(&token, Some("late-standby"), items).await;
    assert_eq!(replayed.status, 201, "{:?}", replayed.body);
    let stored = tier
        .psql(
            primary,
            "coffee",
            &format!("SELECT id FROM orders WHERE user_id = '{user}'"),
        )
        .expect("id");
    assert_eq!(replayed.str("id"), stored);
}
