//! Three instances behind HAProxy under mixed load (reads and keyed orders):
//!
//! (a) a rolling restart (SIGTERM, wait, start, wait until ready) through a
//!     balancer that never retries: the drain alone must fail no request;
//! (b) a SIGKILL of one instance through the shipped `docker/haproxy.cfg`,
//!     whose layer-7 retries resend reads and keyed requests elsewhere.
//!
//! Afterwards 0 failed requests in both, and the soak's invariants: ledger =
//! balances, one order per `201`, every event at the collector, popular = a
//! count from `orders`. `CLUSTER_TEST_ROUNDS` (default 1) repeats both
//! scenarios; `make cluster-test` runs more. `haproxy -c` also checks the
//! shipped configuration on its own (`shipped_haproxy_config_is_valid`).

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coffee_e2e::balancer::{haproxy, shipped_config, write_config};
use coffee_e2e::{
    Api, Balancer, Cluster, Process, RedisServer, coffee_env, free_port, override_env, ready, start_coffee,
    start_mock_collector,
};
use coffee_test_support::{RedisNamespace, TestDatabase};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const AMERICANO: &str = "0192f0a0-0000-7000-8000-000000000001";
const LATTE: &str = "0192f0a0-0000-7000-8000-000000000002";
/// Checks every 500 ms, two failures: out within about 1 s, inside the drain.
const DRAIN_SECS: &str = "2";

/// The instances, restartable on their own ports.
struct Instances {
    envs: Vec<(u16, Vec<(&'static str, String)>)>,
    processes: Vec<Process>,
}

impl Instances {
    async fn start(count: usize, db: &TestDatabase, redis: &RedisNamespace, collector: &str) -> Self {
        let mut envs = Vec::new();
        let mut processes = Vec::new();
        for _ in 0..count {
            let port = free_port();
            let mut env = coffee_env(port, db.url(), redis.prefix(), collector);
            override_env(
                &mut env,
                [
                    // CLUSTER_TEST_DRAIN_SECS=0 shows what the drain saves.
                    (
                        "SHUTDOWN_DRAIN_SECS",
                        std::env::var("CLUSTER_TEST_DRAIN_SECS").unwrap_or_else(|_| DRAIN_SECS.to_owned()),
                    ),
                    ("OUTBOX_IDLE_POLL_MAX_MS", "100".to_owned()),
                    ("OUTBOX_RETRY_BASE_MS", "100".to_owned()),
                    ("OUTBOX_LEASE_MS", "6000".to_owned()),
                    ("DATABASE_ACQUIRE_TIMEOUT_MS", "3000".to_owned()),
                ],
            );
            processes.push(start_coffee(port, &env).await.expect("instance starts"));
            envs.push((port, env));
        }
        Self { envs, processes }
    }

    fn ports(&self) -> Vec<u16> {
        self.envs.iter().map(|(port, _)| *port).collect()
    }

    async fn restart(&mut self, i: usize) {
        let (port, env) = &self.envs[i];
        self.processes[i] = start_coffee(*port, env).await.expect("instance restarts");
        let ready = Api::new(&self.processes[i].base_url);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self::ready(&ready).await != Some(200) {
            assert!(Instant::now() < deadline, "instance {i} never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, wait for the exit (it drains first), start again, wait until
    /// ready and until the balancer has seen it up (2 checks of 500 ms).
    async fn rolling_restart(&mut self) {
        for i in 0..self.processes.len() {
            self.processes[i].signal("TERM").expect("SIGTERM");
            let status = self.processes[i]
                .wait_exit(Duration::from_secs(20))
                .await
                .expect("exits after draining");
            assert!(status.success(), "instance {i} exited with {status}");
            self.restart(i).await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    }

    async fn kill_and_restart(&mut self, i: usize) {
        self.processes[i].signal("KILL").expect("SIGKILL");
        let _ = self.processes[i].wait_exit(Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.restart(i).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}

/// What the load saw.
#[derive(Debug, Default)]
struct Tally {
    answers: BTreeMap<String, usize>,
    failures: Vec<String>,
    /// Idempotency keys of orders answered `201`.
    placed: HashSet<String>,
}

/// One client: reads and keyed orders in a loop until `stop`. Anything but
/// the expected answer counts as a failure, a failed exchange included.
async fn client(api: Api, user: String, token: String, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (what, request, key) = match n % 5 {
            0 | 1 => ("GET /menus", api.client.get(api.url("/menus")), None),
            2 => ("GET /menus/popular", api.client.get(api.url("/menus/popular")), None),
            3 => (
                "GET /points",
                api.client
                    .get(api.url(&format!("/users/{user}/points")))
                    .bearer_auth(&token),
                None,
            ),
            _ => {
                let key = format!("{user}-{n}");
                let menu = if n.is_multiple_of(2) { AMERICANO } else { LATTE };
                let request = api
                    .client
                    .post(api.url("/orders"))
                    .bearer_auth(&token)
                    .header("Idempotency-Key", &key)
                    .json(&json!({"items": [{"menuId": menu, "quantity": 1 + n % 3}]}));
                ("POST /orders", request, Some(key))
            }
        };
        let reply = api.try_send(request).await;
        let mut tally = tally.lock().await;
        let status = reply
            .as_ref()
            .map_or_else(|e| format!("error ({e})"), |r| r.status.to_string());
        *tally.answers.entry(format!("{what} {status}")).or_default() += 1;
        let ok = match (&reply, key) {
            (Ok(reply), Some(key)) if reply.status == 201 => tally.placed.insert(key),
            (Ok(reply), None) => reply.status == 200,
            _ => false,
        };
        if !ok {
            let detail = reply.map_or_else(|e| e.to_string(), |r| format!("{} {}", r.status, r.body));
            tally.failures.push(format!("{what}: {detail}"));
        }
    }
}

/// Runs `scenario` while `clients` load the balancer; returns the tally.
async fn under_load<F: std::future::Future<Output = ()>>(
    balancer: &Api,
    users: &[(String, String)],
    scenario: F,
) -> Tally {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let tasks: Vec<_> = users
        .iter()
        .cloned()
        .map(|(user, token)| tokio::spawn(client(balancer.clone(), user, token, stop.clone(), tally.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    scenario.await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("client");
    }
    Arc::try_unwrap(tally).expect("clients done").into_inner()
}

/// `haproxy -c` accepts the shipped configuration in both forms the cluster
/// test runs it (its servers replaced, with and without retries): a mistake
/// there would otherwise only show as a balancer that never becomes ready.
#[test]
fn shipped_haproxy_config_is_valid() {
    for retries in [true, false] {
        let config = write_config(&shipped_config(&[free_port(), free_port(), free_port()], retries));
        let output = Command::new(haproxy())
            .arg("-c")
            .arg("-f")
            .arg(&config.0)
            .env("LB_BIND", format!("127.0.0.1:{}", free_port()))
            .stdin(Stdio::null())
            .output()
            .expect("haproxy -c runs");
        assert!(
            output.status.success(),
            "haproxy -c rejected docker/haproxy.cfg (retries: {retries}), {}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[tokio::test]
async fn rolling_restarts_and_a_killed_instance_fail_no_request() {
    let rounds: usize = std::env::var("CLUSTER_TEST_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let db = TestDatabase::create().await;
    let redis = RedisNamespace::new();
    let collector = start_mock_collector(&[]).await.expect("mock collector");
    let mut instances = Instances::start(3, &db, &redis, &collector.base_url).await;
    let direct = Api::new(&instances.processes[0].base_url);
    let mut users = Vec::new();
    for _ in 0..6 {
        users.push(direct.funded_user(5_000_000).await);
    }

    let mut placed = HashSet::new();
    for round in 0..rounds {
        // (a) No retries at all: only the drain keeps requests whole.
        let plain = Balancer::start(&instances.ports(), false).await;
        let tally = under_load(&plain.api, &users, instances.rolling_restart()).await;
        eprintln!("round {round}, rolling restart without retries: {:?}", tally.answers);
        assert!(
            tally.failures.is_empty(),
            "rolling restart: {} failed: {:?}",
            tally.failures.len(),
            &tally.failures[..tally.failures.len().min(10)]
        );
        placed.extend(tally.placed);
        drop(plain);

        // (b) The shipped configuration, one instance killed outright.
        let shipped = Balancer::start(&instances.ports(), true).await;
        let victim = round % 3;
        let tally = under_load(&shipped.api, &users, instances.kill_and_restart(victim)).await;
        eprintln!("round {round}, SIGKILL through the shipped config: {:?}", tally.answers);
        assert!(
            tally.failures.is_empty(),
            "SIGKILL: {} failed: {:?}",
            tally.failures.len(),
            &tally.failures[..tally.failures.len().min(10)]
        );
        placed.extend(tally.placed);
    }

    // One order per 201, none without one.
    assert!(!placed.is_empty());
    assert_eq!(
        db.count("SELECT count(*) AS n FROM orders").await,
        i64::try_from(placed.len()).expect("fits")
    );
    db.assert_ledger_consistent().await;
    // Popular = a count from `orders`, on every instance.
    let truth = coffee_e2e::ranking_truth(&db).await;
    for process in &instances.processes {
        let reply = Api::new(&process.base_url).get("/menus/popular", None).await;
        assert_eq!(coffee_e2e::ranking(&reply.body), truth);
    }
    // Every order's event reaches the collector (at least once).
    let orders = db.count("SELECT count(*) AS n FROM orders").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events: Vec<Value> = reqwest::get(format!("{}/events", collector.base_url))
            .await
            .expect("collector")
            .json()
            .await
            .expect("events");
        let delivered = db
            .count(
                "SELECT count(*) AS n FROM outbox_events e JOIN orders o ON o.id = e.aggregate_id \
                 WHERE e.status = 'DELIVERED'",
            )
            .await;
        if i64::try_from(events.len()).expect("fits") >= orders && delivered == orders {
            let ids: HashSet<&str> = events.iter().filter_map(|e| e["eventId"].as_str()).collect();
            assert_eq!(i64::try_from(ids.len()).expect("fits"), orders, "one event per order");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {orders} events at the collector, {delivered} marked delivered",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Redis outage is shared by every instance: none leaves the balancer
/// (their readiness is their own state), so clients keep getting the
/// service's own answers: `GET /menus` from the instances, and the service's
/// `503` problem where Redis is needed, never the balancer's bare error.
#[tokio::test]
async fn a_redis_outage_keeps_every_instance_in_the_balancer() {
    let db = TestDatabase::create().await;
    let mut redis = RedisServer::start(free_port()).await.expect("redis-server starts");
    let extra = [("REDIS_URL", redis.url()), ("REDIS_TIMEOUT_MS", "300".to_owned())];
    let cluster = Cluster::start(3, db.url(), &extra).await.expect("instances");
    let ports: Vec<u16> = cluster
        .instances
        .iter()
        .map(|p| {
            p.base_url
                .rsplit(':')
                .next()
                .and_then(|port| port.parse().ok())
                .expect("port")
        })
        .collect();
    let balancer = Balancer::start(&ports, true).await;
    let api = &balancer.api;
    let (user, token) = api.funded_user(10_000).await;

    redis.kill();
    // Longer than two failed checks 500 ms apart, with their timeouts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for round in 0..9 {
        let menus = api.get("/menus", None).await;
        assert_eq!(menus.status, 200, "round {round}: {:?}", menus.body);
        let balance = api.get(&format!("/users/{user}/points"), Some(&token)).await;
        assert_eq!(balance.status, 503, "round {round}");
        assert_eq!(
            balance.code(),
            "DEPENDENCY_UNAVAILABLE",
            "round {round}: the service's own problem, not the balancer's: {:?}",
            balance.body
        );
        let ready = api.get("/health/ready", None).await;
        assert_eq!(ready.status, 200, "round {round}");
        assert_eq!(ready.body["dependencies"]["cache"], "down", "round {round}");
    }
}
