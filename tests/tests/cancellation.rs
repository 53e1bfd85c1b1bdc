//! A request cancelled mid-transaction (its client resets the connection)
//! never leaves a transaction open: its connection is closed at once and
//! the server told to cancel, so the rows it locked are free again as soon
//! as the lock it waited on is released, and its idempotency key can be
//! used again at once.

use std::time::{Duration, Instant};

use coffee_e2e::{Api, coffee_env, free_port, override_env, start_coffee};
use coffee_test_support::{TestDatabase, unique_key_prefix};
use diesel_async::SimpleAsyncConnection;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const USERS: usize = 10;
const ROUNDS: usize = 5;

/// `POST /orders` written by hand on a connection of its own, so the test
/// can reset that connection while the order waits.
async fn send_order(port: u16, token: &str, key: &str, menu: &str) -> TcpStream {
    let body = serde_json::json!({ "items": [{ "menuId": menu, "quantity": 1 }] }).to_string();
    let request = format!(
        "POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Idempotency-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("request sent");
    stream
}

#[tokio::test]
async fn a_reset_order_leaves_no_transaction_open() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let mut env = coffee_env(port, db.url(), &unique_key_prefix(), "http://127.0.0.1:1");
    // Room for many idle connections ahead of a cancelled one in the pool's
    // queue, as on a busy instance: nothing happens to check it out soon.
    override_env(&mut env, [("DATABASE_POOL_SIZE", "40".to_owned())]);
    let _server = start_coffee(port, &env).await.expect("coffee serve starts");
    let api = Api::new(&format!("http://127.0.0.1:{port}"));
    let menus = api.get("/menus", None).await;
    let menu = menus.body[0]["id"].as_str().expect("a menu").to_owned();
    let mut users = Vec::new();
    for _ in 0..USERS {
        users.push(api.funded_user(1_000_000).await);
    }

    let ids: Vec<&str> = users.iter().map(|(user, _)| user.as_str()).collect();

    // Fill the pool: three charges per user wait on the locked rows at once,
    // each on a connection of its own.
    let mut locker = db.lock_users(&ids).await;
    let warm_ups: Vec<_> = users
        .iter()
        .flat_map(|(user, token)| (0..3).map(move |n| (user, token, n)))
        .map(|(user, token, n)| {
            let api = api.clone();
            async move {
                api.charge(
                    token,
                    user,
                    Some(&format!("warm-{n}")),
                    serde_json::json!({ "amount": 1 }),
                )
                .await
            }
        })
        .collect();
    let charges = futures_util::future::join_all(warm_ups);
    let release = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        locker.batch_execute("ROLLBACK").await.expect("rows released");
    };
    let (charged, ()) = tokio::join!(charges, release);
    assert!(charged.iter().all(|c| c.status == 200), "warm-up charges");

    for round in 0..ROUNDS {
        // Another session holds every user's row for a moment.
        let mut locker = db.lock_users(&ids).await;
        let mut streams = Vec::new();
        for (i, (_, token)) in users.iter().enumerate() {
            streams.push(send_order(port, token, &format!("reset-{round}-{i}"), &menu).await);
        }
        db.wait_for_lock_waiters(USERS).await;
        // The clients give up: RST, not FIN.
        for stream in streams {
            stream.set_zero_linger().expect("SO_LINGER 0");
            drop(stream);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        locker.batch_execute("ROLLBACK").await.expect("rows released");
        let released = Instant::now();

        // Each user's next order, and the retry of the reset one with its key,
        // go through at once: nothing holds their rows or their keys.
        let next = futures_util::future::join_all(users.iter().enumerate().map(|(i, (_, token))| {
            let api = api.clone();
            let menu = menu.clone();
            async move {
                let items = serde_json::json!([{ "menuId": menu, "quantity": 1 }]);
                let fresh = api
                    .order(token, Some(&format!("next-{round}-{i}")), items.clone())
                    .await;
                let retried = api.order(token, Some(&format!("reset-{round}-{i}")), items).await;
                (fresh, retried)
            }
        }))
        .await;
        let took = released.elapsed();
        for (fresh, retried) in &next {
            assert_eq!(fresh.status, 201, "round {round}: {:?}", fresh.body);
            assert_eq!(retried.status, 201, "round {round}: {:?}", retried.body);
        }
        assert!(
            took < Duration::from_secs(1),
            "round {round}: the next orders took {took:?} after the lock's release"
        );
        let stranded = db
            .service_backends("state LIKE 'idle in transaction%' AND state_change < now() - interval '1 second'")
            .await;
        assert_eq!(stranded, 0, "round {round}: transactions left open");
    }
    db.assert_ledger_consistent().await;
    let orders = db.count("SELECT count(*) AS n FROM orders").await;
    assert_eq!(
        orders,
        (2 * USERS * ROUNDS) as i64,
        "each reset order rolled back; each retry and next order counted once"
    );
}
