//! `scripts/partition-by-month.sql` keeps working as the schema evolves: run
//! on a migrated database holding an order, it leaves the API serving the
//! same answers over monthly partitions, and new months land in their own.

use std::process::Command;

use coffee_e2e::{Api, coffee_env, free_port, start_coffee};
use coffee_test_support::{TestDatabase, unique_key_prefix};
use serde_json::json;
use time::OffsetDateTime;

/// The first day of next month (UTC), as the script wants its cutover.
fn next_month() -> String {
    let now = OffsetDateTime::now_utc();
    let (year, month) = match now.month() {
        time::Month::December => (now.year() + 1, 1),
        month => (now.year(), u8::from(month) + 1),
    };
    format!("{year:04}-{month:02}-01")
}

fn partition(db: &TestDatabase, cutover: &str) -> String {
    let output = Command::new("psql")
        .arg(db.url())
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-v"])
        .arg(format!("cutover={cutover}"))
        .args(["-v", "months=3", "-f"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/partition-by-month.sql"
        ))
        .env("PGOPTIONS", "-c client_min_messages=debug1")
        .output()
        .expect("psql runs (scripts/test-tools.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    text
}

#[tokio::test]
async fn the_api_serves_the_same_over_monthly_partitions() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let server = start_coffee(
        port,
        &coffee_env(port, db.url(), &unique_key_prefix(), "http://127.0.0.1:1"),
    )
    .await
    .expect("starts");
    let api = Api::new(&server.base_url);
    let (user, token) = api.funded_user(20_000).await;
    let menu = api.get("/menus", None).await.body[0]["id"]
        .as_str()
        .expect("menu")
        .to_owned();
    let items = json!([{ "menuId": menu, "quantity": 2 }]);
    let first = api.order(&token, Some("before"), items.clone()).await;
    assert_eq!(first.status, 201, "{:?}", first.body);

    let cutover = next_month();
    let log = partition(&db, &cutover);
    // Step 2 read no table: PostgreSQL saw the partition bounds implied by
    // the checks of step 1.
    assert_eq!(log.matches("is implied by existing constraints").count(), 3, "{log}");

    let second = api.order(&token, Some("after"), items.clone()).await;
    assert_eq!(second.status, 201, "{:?}", second.body);
    let replay = api.order(&token, Some("before"), items).await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.body["id"], first.body["id"], "replayed, not placed again");
    let order = api.get(&format!("/orders/{}", first.str("id")), Some(&token)).await;
    assert_eq!(order.status, 200, "{:?}", order.body);
    let orders = api.get("/orders", Some(&token)).await;
    assert_eq!(orders.body["items"].as_array().map(Vec::len), Some(2));
    let ledger = api
        .get(&format!("/users/{user}/points/transactions"), Some(&token))
        .await;
    assert_eq!(
        ledger.body["items"].as_array().map(Vec::len),
        Some(3),
        "one charge, two orders"
    );
    let popular = api.get("/menus/popular", None).await;
    assert_eq!(popular.body[0]["quantity"], 4, "{:?}", popular.body);
    let balance = api.get(&format!("/users/{user}/points"), Some(&token)).await;
    assert_eq!(
        balance.body["balance"],
        20_000 - 2 * second.body["totalPrice"].as_i64().expect("total")
    );

    // A row of the cutover's month goes to that month's partition.
    let month = format!("orders_{}", cutover[..7].replace('-', "_"));
    let in_month = db
        .count(&format!(
            "WITH o AS (INSERT INTO orders (id, user_id, total_price, balance_after, created_at) \
             VALUES (gen_random_uuid(), '{user}', 1, 0, '{cutover}T12:00:00Z') RETURNING tableoid::regclass::text AS t) \
             SELECT count(*) AS n FROM o WHERE t = '{month}'"
        ))
        .await;
    assert_eq!(in_month, 1);
}
