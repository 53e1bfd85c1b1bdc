//! Graceful shutdown behind a balancer: on SIGTERM an instance first drains
//! (ready turns 503, it keeps serving, and asks clients to reconnect
//! elsewhere), then stops; a second signal stops it at once.

use std::time::{Duration, Instant};

use coffee_e2e::{Api, Process, coffee_env, free_port, override_env, start_coffee};
use coffee_test_support::{TestDatabase, unique_key_prefix};
use diesel_async::SimpleAsyncConnection;

async fn instance(db: &TestDatabase, drain_secs: u64) -> coffee_e2e::Process {
    let port = free_port();
    let mut env = coffee_env(port, db.url(), &unique_key_prefix(), "http://127.0.0.1:1");
    override_env(&mut env, [("SHUTDOWN_DRAIN_SECS", drain_secs.to_string())]);
    start_coffee(port, &env).await.expect("coffee serve starts")
}

#[tokio::test]
async fn sigterm_drains_then_stops() {
    let db = TestDatabase::create().await;
    let mut server = instance(&db, 2).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.base_url);
    let ready = client.get(url("/health/ready")).send().await.expect("ready");
    assert_eq!(ready.status(), 200);
    assert_ne!(
        ready.headers().get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );

    let signalled = Instant::now();
    server.signal("TERM").expect("signal sent");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let ready = client.get(url("/health/ready")).send().await.expect("ready");
    assert_eq!(ready.status(), 503);
    assert_eq!(
        ready.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body: serde_json::Value = ready.json().await.expect("problem");
    assert_eq!(body["draining"], true, "{body}");
    assert_eq!(
        client.get(url("/health/live")).send().await.expect("live").status(),
        200
    );
    // Still serving, but asking the client to go elsewhere.
    let menus = client.get(url("/menus")).send().await.expect("menus");
    assert_eq!(menus.status(), 200);
    assert_eq!(
        menus.headers().get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );

    let status = server.wait_exit(Duration::from_secs(15)).await.expect("exits");
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "it served through the drain before stopping ({:?})",
        signalled.elapsed()
    );
}

#[tokio::test]
async fn a_second_signal_stops_at_once() {
    let db = TestDatabase::create().await;
    let mut server = instance(&db, 60).await;
    server.signal("TERM").expect("first signal");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = Instant::now();
    server.signal("INT").expect("second signal");
    let status = server.wait_exit(Duration::from_secs(10)).await.expect("exits");
    assert!(status.success(), "exit status {status}");
    assert!(second.elapsed() < Duration::from_secs(5), "{:?}", second.elapsed());
}

/// One trial: an instance with `workers` HTTP workers whose pool holds
/// connections opened by every worker; `2 × workers` orders in flight on
/// connections of their own (so spread over the workers), waiting on locked
/// rows; SIGTERM; the rows released one by one, so workers run out of
/// requests (and stop) one after another while others still wait. Every
/// order must still get its `201`. Returns the failures and how many
/// workers served the orders.
async fn drain_trial(
    db: &TestDatabase,
    prefix: &str,
    users: &[(String, String)],
    menu: &str,
    workers: usize,
    trial: usize,
) -> (Vec<String>, usize) {
    let port = free_port();
    let mut env = coffee_env(port, db.url(), prefix, "http://127.0.0.1:1");
    override_env(
        &mut env,
        [
            ("HTTP_WORKERS", workers.to_string()),
            ("DATABASE_ACQUIRE_TIMEOUT_MS", "5000".to_owned()),
        ],
    );
    env.push(("RUST_LOG", "info".to_owned()));
    let log = std::env::temp_dir().join(format!("coffee-drain-{}-{workers}-{trial}.log", std::process::id()));
    let mut server = Process::start_logging_to("coffee", &["serve"], &env, port, "/health/live", Some(&log))
        .await
        .expect("coffee serve starts");
    let url = format!("http://127.0.0.1:{port}");

    // Fill the pool from every worker: 16 charges wait on locked rows at
    // once, each on a TCP connection (and so a worker) of its own.
    let mut lockers = Vec::new();
    for (user, _) in users {
        lockers.push(db.lock_users(&[user.as_str()]).await);
    }
    let charges = futures_util::future::join_all((0..16).map(|n| {
        let (user, token) = &users[n % users.len()];
        let api = Api::new(&url);
        async move {
            api.charge(
                token,
                user,
                Some(&format!("warm-{trial}-{workers}-{n}")),
                serde_json::json!({ "amount": 1 }),
            )
            .await
        }
    }));
    let release = async {
        db.wait_for_lock_waiters(16).await;
        for locker in &mut lockers {
            locker.batch_execute("ROLLBACK").await.expect("released");
        }
    };
    let (charged, ()) = tokio::join!(charges, release);
    assert!(charged.iter().all(|c| c.status == 200), "warm-up charges: {charged:?}");

    // The orders in flight, one per user, each on a connection of its own.
    let mut lockers = Vec::new();
    for (user, _) in users {
        lockers.push(db.lock_users(&[user.as_str()]).await);
    }
    let orders = futures_util::future::join_all(users.iter().enumerate().map(|(i, (_, token))| {
        let api = Api::new(&url);
        let items = serde_json::json!([{ "menuId": menu, "quantity": 1 }]);
        async move {
            api.try_send(
                api.client
                    .post(api.url("/orders"))
                    .bearer_auth(token)
                    .header("Idempotency-Key", format!("drain-{trial}-{workers}-{i}"))
                    .json(&serde_json::json!({ "items": items })),
            )
            .await
        }
    }));
    let stop = async {
        db.wait_for_lock_waiters(users.len()).await;
        server.signal("TERM").expect("SIGTERM sent");
        tokio::time::sleep(Duration::from_millis(300)).await;
        for locker in &mut lockers {
            locker.batch_execute("ROLLBACK").await.expect("released");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    let (answers, ()) = tokio::join!(orders, stop);
    let status = server.wait_exit(Duration::from_secs(20)).await.expect("exits");
    assert!(status.success(), "exit status {status}");

    let failures = answers
        .iter()
        .filter_map(|answer| match answer {
            Ok(reply) if reply.status == 201 => None,
            Ok(reply) => Some(format!("{} {}", reply.status, reply.body)),
            Err(e) => Some(e.to_string()),
        })
        .collect();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let threads: std::collections::HashSet<String> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["message"] == "request completed" && line["span"]["route"] == "/orders")
        .filter_map(|line| line["threadName"].as_str().map(str::to_owned))
        .collect();
    let _ = std::fs::remove_file(&log);
    (failures, threads.len())
}

/// Drain holds with any number of HTTP workers: in 20 trials each with 2 and
/// with 4 workers, no in-flight order fails. (Before every pool's
/// connections did their I/O on a runtime of their own, a connection opened
/// by a worker that stopped first died under another worker's request.)
#[tokio::test]
async fn drain_holds_with_many_workers() {
    let trials: usize = std::env::var("DRAIN_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(20);
    let db = TestDatabase::create().await;
    let port = free_port();
    let prefix = unique_key_prefix();
    let env = coffee_env(port, db.url(), &prefix, "http://127.0.0.1:1");
    let setup = start_coffee(port, &env).await.expect("coffee serve starts");
    let api = Api::new(&setup.base_url);
    let menu = api.get("/menus", None).await.body[0]["id"]
        .as_str()
        .expect("a menu")
        .to_owned();
    let mut users = Vec::new();
    for _ in 0..8 {
        users.push(api.funded_user(1_000_000).await);
    }
    drop(setup);
    for workers in [2, 4] {
        let users = &users[..2 * workers];
        let mut failed = Vec::new();
        for trial in 0..trials {
            let (failures, served_by) = drain_trial(&db, &prefix, users, &menu, workers, trial).await;
            assert_eq!(
                served_by, workers,
                "trial {trial}: the orders in flight were not spread over every worker"
            );
            failed.extend(
                failures
                    .into_iter()
                    .map(|f| format!("{workers} workers, trial {trial}: {f}")),
            );
        }
        assert!(
            failed.is_empty(),
            "in-flight orders failed during the drain: {failed:#?}"
        );
    }
}
