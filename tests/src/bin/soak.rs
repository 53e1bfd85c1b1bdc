//! The soak: three `coffee serve` instances, a collector failing 30% of
//! deliveries, 200 simulated customers and four deliberate faults, then every
//! invariant of the system checked at the end (README.md, "Soak"; the
//! choices behind it in docs/DECISIONS.md, "Soak and benchmarks").
//!
//! `SOAK_SECS` (default 60) is how long the customers run; `make test` runs
//! the short version, `make soak` a long one. Exits non-zero on any violation.

// The report goes to stdout: that is this program's output channel.
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use coffee_e2e::{Process, RedisServer, coffee_env, free_port, override_env, start_mock_collector_on};
use coffee_test_support::TestDatabase;
use diesel_async::{AsyncConnection as _, SimpleAsyncConnection as _};
use rand::Rng as _;
use serde_json::{Value, json};

/// The timeouts every instance runs with; a request may legitimately chain
/// them, never more.
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(3_000);
const STATEMENT_TIMEOUT: Duration = Duration::from_millis(3_000);
const REDIS_TIMEOUT: Duration = Duration::from_millis(1_000);
const IDEMPOTENCY_WAIT: Duration = Duration::from_millis(2_000);
const POOL_SIZE: usize = 16;
const PASSWORD: &str = "correct horse battery staple";

/// The longest any request may wait: the configured timeouts it can chain,
/// plus the password-hash queue of a re-login crowd (logins only).
fn request_bound() -> Duration {
    ACQUIRE_TIMEOUT + STATEMENT_TIMEOUT + REDIS_TIMEOUT + IDEMPOTENCY_WAIT
}
/// Signup and login wait for a password hash, which has no timeout: it is
/// CPU, not a dependency, queued `PASSWORD_HASH_CONCURRENCY` at a time. After
/// Redis loses every session the whole crowd logs in again at once.
const LOGIN_BOUND: Duration = Duration::from_secs(30);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What the customers saw, for the checks at the end.
#[derive(Debug, Default)]
struct Observations {
    /// (seconds since start, status, latency, endpoint) of every response.
    responses: Vec<(f64, u16, Duration, &'static str)>,
    /// Requests that got no answer within the client's timeout.
    hung: Vec<(&'static str, Duration)>,
    /// Money requests, by key: their first definitive answer.
    charges: Vec<MoneyRecord>,
    orders: Vec<MoneyRecord>,
    /// Same-key retries whose answer differed from the first.
    replay_mismatches: Vec<String>,
    replays: u64,
    /// `408 Request Timeout` from actix itself (the request never reached a
    /// handler); clients retry those like a lost answer.
    request_timeouts: u64,
}

#[derive(Debug, Clone)]
struct MoneyRecord {
    user: String,
    status: u16,
    body: Value,
}

/// A fault window: from its start until the system had a moment to recover.
#[derive(Debug, Clone)]
struct Fault {
    name: &'static str,
    from: f64,
    to: f64,
}

/// Everything the customers share.
struct World {
    started: Instant,
    deadline: Instant,
    bases: Vec<String>,
    http: reqwest::Client,
    menus: Vec<String>,
    seen: Mutex<Observations>,
    faults: Mutex<Vec<Fault>>,
}

/// One answer, or none (connection refused, reset, timed out).
enum Answer {
    Reply(u16, Value),
    Lost,
}

impl World {
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Observations> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One request to a random instance, as a load balancer would send it.
    async fn call(
        &self,
        endpoint: &'static str,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        self.call_on(&self.http, endpoint, method, path, token, key, body).await
    }

    /// [`World::call`] through `http`.
    #[allow(clippy::too_many_arguments)]
    async fn call_on(
        &self,
        http: &reqwest::Client,
        endpoint: &'static str,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let base = &self.bases[rand::rng().random_range(0..self.bases.len())];
        let mut request = http.request(method, format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let sent = Instant::now();
        let at = self.now();
        let reply = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                response.bytes().await.map(|bytes| (status, bytes))
            }
            Err(e) => Err(e),
        };
        let (status, bytes) = match reply {
            Ok(reply) => reply,
            Err(e) => {
                if e.is_timeout() {
                    self.seen().hung.push((endpoint, sent.elapsed()));
                }
                // Refused or reset (the instance is down) or timed out: the
                // client tries again.
                return Answer::Lost;
            }
        };
        let mut seen = self.seen();
        seen.responses.push((at, status, sent.elapsed(), endpoint));
        if status == 408 {
            seen.request_timeouts += 1;
            return Answer::Lost;
        }
        Answer::Reply(status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn fault(&self, name: &'static str, from: f64) {
        // Two seconds after a fault ends, pools and clients have recovered.
        let to = self.now() + 2.0;
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Fault { name, from, to });
    }
}

/// A simulated customer.
struct Customer {
    world: Arc<World>,
    email: String,
    id: String,
    access: String,
    refresh: String,
}

async fn pause(ms: std::ops::Range<u64>) {
    let ms = rand::rng().random_range(ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

impl Customer {
    /// Signs up (a lost answer is retried; `409` then means it did land) and logs in.
    async fn join(world: Arc<World>, n: usize) -> anyhow::Result<Self> {
        let email = format!("soak-{n}-{}@example.com", uuid::Uuid::new_v4().simple());
        let body = json!({"email": email, "password": PASSWORD, "name": format!("Soak {n}")});
        let give_up = Instant::now() + Duration::from_secs(120);
        let mut id = String::new();
        loop {
            match world
                .call("signup", reqwest::Method::POST, "/auth/signup", None, None, Some(&body))
                .await
            {
                Answer::Reply(201, user) => {
                    id = user["id"].as_str().unwrap_or_default().to_owned();
                    break;
                }
                // An earlier attempt landed but its answer was lost.
                Answer::Reply(409, _) => break,
                Answer::Reply(status, body) if status < 500 => bail!("signup answered {status}: {body}"),
                _ if Instant::now() > give_up => bail!("signup never succeeded"),
                _ => pause(100..300).await,
            }
        }
        let mut customer = Self {
            world,
            email,
            id,
            access: String::new(),
            refresh: String::new(),
        };
        customer.log_in().await?;
        while customer.id.is_empty() {
            customer.me().await?;
            if Instant::now() > give_up {
                bail!("GET /auth/me never answered");
            }
        }
        Ok(customer)
    }

    /// Takes the tokens of a login or refresh answer.
    fn keep_tokens(&mut self, pair: &Value) {
        self.access = pair["accessToken"].as_str().unwrap_or_default().to_owned();
        self.refresh = pair["refreshToken"].as_str().unwrap_or_default().to_owned();
    }

    async fn log_in(&mut self) -> anyhow::Result<()> {
        let body = json!({"email": self.email, "password": PASSWORD});
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            match self
                .world
                .call("login", reqwest::Method::POST, "/auth/login", None, None, Some(&body))
                .await
            {
                Answer::Reply(200, pair) => {
                    self.keep_tokens(&pair);
                    return Ok(());
                }
                Answer::Reply(status, body) if status < 500 && status != 429 => {
                    bail!("login answered {status}: {body}")
                }
                _ if Instant::now() > give_up => bail!("login never succeeded"),
                _ => pause(200..600).await,
            }
        }
    }

    async fn me(&mut self) -> anyhow::Result<()> {
        let token = self.access.clone();
        match self
            .world
            .call("me", reqwest::Method::GET, "/auth/me", Some(&token), None, None)
            .await
        {
            Answer::Reply(200, me) => {
                self.id = me["id"].as_str().unwrap_or_default().to_owned();
                Ok(())
            }
            Answer::Reply(401, _) => self.log_in().await,
            Answer::Reply(status, body) if status < 500 => bail!("me answered {status}: {body}"),
            _ => {
                pause(100..300).await;
                Ok(())
            }
        }
    }

    /// A money request with a fresh key, retried with the same key and body
    /// until it has a definitive answer, and sometimes re-sent afterwards as
    /// a client whose answer got lost would.
    async fn money(&mut self, scope: &'static str, path: String, body: Value) -> anyhow::Result<()> {
        let key = uuid::Uuid::new_v4().to_string();
        let (status, first) = self.until_definitive(scope, &path, &key, &body).await?;
        let retries = if rand::rng().random_bool(0.3) {
            rand::rng().random_range(1..=2)
        } else {
            0
        };
        for _ in 0..retries {
            pause(0..200).await;
            let (again_status, again) = self.until_definitive(scope, &path, &key, &body).await?;
            let mut seen = self.world.seen();
            seen.replays += 1;
            if again_status != status || again != first {
                seen.replay_mismatches.push(format!(
                    "{scope} key {key}: first {status} {first}, retry {again_status} {again}"
                ));
            }
        }
        let record = MoneyRecord {
            user: self.id.clone(),
            status,
            body: first,
        };
        let mut seen = self.world.seen();
        match scope {
            "charge" => seen.charges.push(record),
            _ => seen.orders.push(record),
        }
        Ok(())
    }

    async fn until_definitive(
        &mut self,
        scope: &'static str,
        path: &str,
        key: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            let token = self.access.clone();
            match self
                .world
                .call(scope, reqwest::Method::POST, path, Some(&token), Some(key), Some(body))
                .await
            {
                Answer::Reply(401, _) => self.log_in().await?,
                // Not answered yet: an outage, or the same key still in flight.
                Answer::Reply(503, _) | Answer::Lost => pause(100..400).await,
                Answer::Reply(409, problem) if problem["code"] == "IDEMPOTENCY_KEY_IN_USE" => pause(100..400).await,
                Answer::Reply(status, answer) => return Ok((status, answer)),
            }
            if Instant::now() > give_up {
                bail!("{scope} with key {key} never got a definitive answer");
            }
        }
    }

    async fn read(&mut self, endpoint: &'static str, path: String) -> anyhow::Result<()> {
        let token = self.access.clone();
        match self
            .world
            .call(endpoint, reqwest::Method::GET, &path, Some(&token), None, None)
            .await
        {
            Answer::Reply(401, _) => self.log_in().await,
            Answer::Reply(status, body) if (400..500).contains(&status) => {
                bail!("{endpoint} answered {status}: {body}")
            }
            _ => Ok(()),
        }
    }

    async fn refresh_tokens(&mut self) -> anyhow::Result<()> {
        let body = json!({"refreshToken": self.refresh});
        match self
            .world
            .call(
                "refresh",
                reqwest::Method::POST,
                "/auth/refresh",
                None,
                None,
                Some(&body),
            )
            .await
        {
            Answer::Reply(200, pair) => {
                self.keep_tokens(&pair);
                Ok(())
            }
            // The session is gone (Redis restarted) or the answer was lost
            // after a rotation: log in again.
            Answer::Reply(401, _) | Answer::Lost => self.log_in().await,
            Answer::Reply(status, body) if status < 500 => bail!("refresh answered {status}: {body}"),
            Answer::Reply(..) => Ok(()),
        }
    }

    async fn log_out_and_in(&mut self) -> anyhow::Result<()> {
        let token = self.access.clone();
        let body = json!({"refreshToken": self.refresh});
        match self
            .world
            .call(
                "logout",
                reqwest::Method::POST,
                "/auth/logout",
                Some(&token),
                None,
                Some(&body),
            )
            .await
        {
            Answer::Reply(status, body) if (400..500).contains(&status) && status != 401 => {
                bail!("logout answered {status}: {body}")
            }
            _ => self.log_in().await,
        }
    }

    async fn live(mut self) -> anyhow::Result<()> {
        while Instant::now() < self.world.deadline {
            let roll = rand::rng().random_range(0..100);
            match roll {
                0..25 => {
                    let amount = rand::rng().random_range(1..=30) * 1_000;
                    let path = format!("/users/{}/points/charge", self.id);
                    self.money("charge", path, json!({ "amount": amount })).await?;
                }
                25..55 => {
                    let items = self.basket();
                    self.money("order", "/orders".to_owned(), json!({ "items": items }))
                        .await?;
                }
                55..65 => {
                    self.read("history", format!("/users/{}/points/transactions", self.id))
                        .await?
                }
                65..73 => self.read("orders", "/orders".to_owned()).await?,
                73..80 => self.read("balance", format!("/users/{}/points", self.id)).await?,
                80..88 => self.refresh_tokens().await?,
                88..92 => self.log_out_and_in().await?,
                _ => self.read("popular", "/menus/popular".to_owned()).await?,
            }
            pause(50..400).await;
        }
        Ok(())
    }

    fn basket(&self) -> Value {
        let mut rng = rand::rng();
        let lines = rng.random_range(1..=2);
        let mut items = Vec::new();
        for _ in 0..lines {
            let menu = &self.world.menus[rng.random_range(0..self.world.menus.len())];
            items.push(json!({"menuId": menu, "quantity": rng.random_range(1..=3)}));
        }
        Value::Array(items)
    }
}

struct Rig {
    db: TestDatabase,
    env: Vec<Vec<(&'static str, String)>>,
    ports: Vec<u16>,
    instances: Vec<Process>,
    collector_port: u16,
    collector_env: Vec<(&'static str, String)>,
    journal: std::path::PathBuf,
    collector: Option<Process>,
    /// The soak's own Redis, so restarting it disturbs nobody else.
    redis: RedisServer,
}

impl Rig {
    async fn start() -> anyhow::Result<Self> {
        let db = TestDatabase::create().await;
        let redis = RedisServer::start(free_port()).await?;
        let collector_port = free_port();
        let journal = std::env::temp_dir().join(format!("coffee-soak-{}.jsonl", uuid::Uuid::new_v4()));
        let collector_env = vec![
            ("MOCK_COLLECTOR_FAIL_RATE", "0.3".to_owned()),
            ("MOCK_COLLECTOR_JOURNAL", journal.display().to_string()),
        ];
        let collector = start_mock_collector_on(collector_port, &collector_env).await?;
        let mut rig = Self {
            db,
            env: Vec::new(),
            ports: Vec::new(),
            instances: Vec::new(),
            collector_port,
            collector_env,
            journal,
            collector: Some(collector),
            redis,
        };
        for _ in 0..3 {
            let port = free_port();
            let mut env = coffee_env(
                port,
                rig.db.url(),
                "soak:",
                &format!("http://127.0.0.1:{collector_port}"),
            );
            let overrides = [
                ("REDIS_URL", format!("redis://127.0.0.1:{}", rig.redis.port)),
                ("DATABASE_POOL_SIZE", POOL_SIZE.to_string()),
                ("DATABASE_ACQUIRE_TIMEOUT_MS", ACQUIRE_TIMEOUT.as_millis().to_string()),
                (
                    "DATABASE_STATEMENT_TIMEOUT_MS",
                    STATEMENT_TIMEOUT.as_millis().to_string(),
                ),
                ("REDIS_TIMEOUT_MS", REDIS_TIMEOUT.as_millis().to_string()),
                ("IDEMPOTENCY_WAIT_MS", IDEMPOTENCY_WAIT.as_millis().to_string()),
                ("COLLECTOR_TIMEOUT_MS", "1000".to_owned()),
                ("OUTBOX_LEASE_MS", "3000".to_owned()),
                ("OUTBOX_RETRY_BASE_MS", "100".to_owned()),
                ("OUTBOX_RETRY_CAP_MS", "1000".to_owned()),
                ("OUTBOX_MAX_ATTEMPTS", "1000".to_owned()),
                ("LOG_FORMAT", "json".to_owned()),
            ];
            override_env(&mut env, overrides);
            rig.instances
                .push(start_instance(rig.instances.len(), port, &env).await?);
            rig.ports.push(port);
            rig.env.push(env);
        }
        Ok(rig)
    }

    fn bases(&self) -> Vec<String> {
        self.ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect()
    }
}

/// Starts instance `n` with its output in `target/soak/instance-{n}.log`; a
/// restart keeps the previous run's log as `instance-{n}.log.1`.
async fn start_instance(n: usize, port: u16, env: &[(&'static str, String)]) -> anyhow::Result<Process> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/soak");
    std::fs::create_dir_all(&dir)?;
    let log = dir.join(format!("instance-{n}.log"));
    if log.exists() {
        std::fs::rename(&log, dir.join(format!("instance-{n}.log.1")))?;
    }
    Process::start_logging_to("coffee", &["serve"], env, port, "/health/live", Some(&log)).await
}

/// Runs the four faults at fixed points of the run.
async fn inject_faults(world: Arc<World>, rig: Arc<tokio::sync::Mutex<Rig>>, secs: f64) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    let at = |share: f64| world.started + Duration::from_secs_f64(secs * share);

    tokio::time::sleep_until(at(0.15).into()).await;
    {
        let from = world.now();
        let mut rig = rig.lock().await;
        rig.instances[1].signal("KILL")?;
        rig.instances[1].wait_exit(Duration::from_secs(5)).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (port, env) = (rig.ports[1], rig.env[1].clone());
        rig.instances[1] = start_instance(1, port, &env).await?;
        world.fault("instance 1 killed (SIGKILL) and restarted", from);
        notes.push(format!("SIGKILL instance 1 at {from:.1}s, back at {:.1}s", world.now()));
    }

    tokio::time::sleep_until(at(0.35).into()).await;
    {
        let from = world.now();
        let mut rig = rig.lock().await;
        rig.redis.kill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let port = rig.redis.port;
        rig.redis = RedisServer::start(port).await?;
        world.fault("Redis restarted (every session lost)", from);
        notes.push(format!("Redis down at {from:.1}s, back at {:.1}s", world.now()));
    }

    tokio::time::sleep_until(at(0.55).into()).await;
    {
        let from = world.now();
        let mut rig = rig.lock().await;
        rig.collector = None;
        tokio::time::sleep(Duration::from_secs_f64((secs * 0.1).max(5.0))).await;
        let (port, env) = (rig.collector_port, rig.collector_env.clone());
        rig.collector = Some(start_mock_collector_on(port, &env).await?);
        world.fault("collector stopped and started", from);
        notes.push(format!("collector down at {from:.1}s, back at {:.1}s", world.now()));
    }

    tokio::time::sleep_until(at(0.75).into()).await;
    let from = world.now();
    let storm = pool_storm(&world, &rig).await?;
    world.fault("PostgreSQL pool storm", from);
    notes.push(storm);
    Ok(notes)
}

/// A session outside the service locks the users table, and 40 balance reads
/// per instance pile in: every pooled connection ends up waiting on the lock,
/// and the rest must be turned away with a timely `503` instead of queueing.
/// Balance reads, because each takes a pooled connection of its own (popular
/// menus no longer do: concurrent rankings share one query), and they change
/// nothing.
async fn pool_storm(world: &Arc<World>, rig: &Arc<tokio::sync::Mutex<Rig>>) -> anyhow::Result<String> {
    let url = rig.lock().await.db.url().to_owned();
    let reader = Customer::join(world.clone(), usize::MAX).await?;
    let (path, token) = (format!("/users/{}/points", reader.id), reader.access.clone());
    let mut locker = diesel_async::AsyncPgConnection::establish(&url).await?;
    locker
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE;")
        .await?;
    let started = Instant::now();
    // Every storm request on a connection of its own: a pooled one that sat
    // idle could be closed by the server's keep-alive timer just as it is
    // reused, a client-side race that says nothing about the service (seen
    // once in a fresh-clone run). The regular load retries such a loss.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(request_bound() + Duration::from_secs(5))
        .build()?;
    let mut storm = Vec::new();
    for _ in 0..(40 * world.bases.len()) {
        let world = world.clone();
        let fresh = fresh.clone();
        let (path, token) = (path.clone(), token.clone());
        storm.push(tokio::spawn(async move {
            let sent = Instant::now();
            let answer = world
                .call_on(&fresh, "storm", reqwest::Method::GET, &path, Some(&token), None, None)
                .await;
            (answer, sent.elapsed())
        }));
    }
    tokio::time::sleep(STATEMENT_TIMEOUT + Duration::from_secs(1)).await;
    locker.batch_execute("ROLLBACK").await?;
    let (mut unavailable, mut ok, mut slowest) = (0, 0, Duration::ZERO);
    for request in storm {
        let (answer, took) = request.await?;
        slowest = slowest.max(took);
        match answer {
            Answer::Reply(503, _) => unavailable += 1,
            Answer::Reply(200, _) => ok += 1,
            Answer::Reply(status, body) => bail!("a storm request answered {status}: {body}"),
            Answer::Lost => bail!("a storm request got no answer"),
        }
    }
    if unavailable == 0 {
        bail!("the storm never exhausted a pool (no 503): the fault did not happen");
    }
    Ok(format!(
        "pool storm for {:.1}s: {unavailable} requests turned away with 503, {ok} served, slowest {slowest:.2?}",
        started.elapsed().as_secs_f64()
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = env_or("SOAK_SECS", 60);
    let customers: usize = env_or("SOAK_USERS", 200);
    println!("soak: {customers} customers for {secs}s on 3 instances (pool {POOL_SIZE} each), collector failing 30%");
    let rig = Rig::start().await?;
    let bases = rig.bases();
    let menus: Vec<Value> = reqwest::get(format!("{}/menus", bases[0])).await?.json().await?;
    let menus = menus
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect();
    let client_timeout = request_bound().max(LOGIN_BOUND) + Duration::from_secs(5);
    let world = Arc::new(World {
        started: Instant::now(),
        deadline: Instant::now() + Duration::from_secs(secs),
        bases,
        http: reqwest::Client::builder()
            .timeout(client_timeout)
            .pool_max_idle_per_host(64)
            .build()?,
        menus,
        seen: Mutex::new(Observations::default()),
        faults: Mutex::new(Vec::new()),
    });
    let rig = Arc::new(tokio::sync::Mutex::new(rig));

    let faults = tokio::spawn(inject_faults(world.clone(), rig.clone(), secs as f64));
    let mut crowd = Vec::new();
    for n in 0..customers {
        let world = world.clone();
        crowd.push(tokio::spawn(async move {
            // Arrivals spread over the first fifth of the run.
            pause(0..(secs * 200).max(1)).await;
            Customer::join(world, n).await?.live().await
        }));
    }
    let mut failures = Vec::new();
    for customer in crowd {
        if let Err(e) = customer.await? {
            failures.push(format!("a customer failed: {e:#}"));
        }
    }
    let notes = match faults.await? {
        Ok(notes) => notes,
        Err(e) => {
            failures.push(format!("a fault could not be injected: {e:#}"));
            Vec::new()
        }
    };
    let load_secs = world.now();
    println!("soak: load done after {load_secs:.1}s");
    for note in &notes {
        println!("soak: fault: {note}");
    }

    let mut rig = rig.lock().await;
    verify(&world, &rig, &mut failures).await?;
    // Stop the instances before their database goes.
    rig.instances.clear();
    rig.collector = None;
    let _ = std::fs::remove_file(&rig.journal);
    if failures.is_empty() {
        println!("soak: PASSED");
        Ok(())
    } else {
        for failure in &failures {
            println!("soak: FAILED: {failure}");
        }
        bail!("{} invariant(s) broken", failures.len())
    }
}

async fn verify(world: &World, rig: &Rig, failures: &mut Vec<String>) -> anyhow::Result<()> {
    let seen = std::mem::take(&mut *world.seen());
    let faults = world
        .faults
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();

    // 1. The ledger, for every user.
    let ledger = rig.db.ledger_violations().await.len();
    let users = rig.db.count("SELECT count(*) AS n FROM users").await;
    report(
        failures,
        ledger == 0,
        format!("ledger: point = sum(ADD) - sum(DEDUCT) >= 0 for all {users} users ({ledger} broken)"),
    );

    // 2. Every 201 order exists exactly once; no order nobody saw a 201 for;
    //    every charge the same.
    let placed: Vec<&MoneyRecord> = seen.orders.iter().filter(|r| r.status == 201).collect();
    let ids: HashSet<&str> = placed.iter().filter_map(|r| r.body["id"].as_str()).collect();
    let in_db = rig.db.count("SELECT count(*) AS n FROM orders").await;
    let id_list = ids.iter().copied().collect::<Vec<_>>().join(",");
    let found = rig
        .db
        .count(&format!(
            "SELECT count(*) AS n FROM orders WHERE id = ANY('{{{id_list}}}'::uuid[])"
        ))
        .await;
    let missing = ids.len() as i64 - found;
    report(
        failures,
        missing == 0 && ids.len() == placed.len() && in_db == placed.len() as i64,
        format!(
            "orders: {} answered 201 ({} distinct ids), {in_db} in the database, {missing} missing",
            placed.len(),
            ids.len()
        ),
    );
    let charged: Vec<&MoneyRecord> = seen.charges.iter().filter(|r| r.status == 200).collect();
    let mut expected_adds: BTreeMap<&str, i64> = BTreeMap::new();
    for record in &charged {
        *expected_adds.entry(record.user.as_str()).or_default() += record.body["amount"].as_i64().unwrap_or(0);
    }
    let adds = rig
        .db
        .count("SELECT count(*) AS n FROM point_transactions WHERE type = 'ADD'")
        .await;
    let added = rig
        .db
        .count("SELECT COALESCE(sum(amount), 0)::bigint AS n FROM point_transactions WHERE type = 'ADD'")
        .await;
    let expected: i64 = expected_adds.values().sum();
    report(
        failures,
        adds == charged.len() as i64 && added == expected,
        format!(
            "charges: {} answered 200 for {expected} points; the ledger holds {adds} ADD rows for {added}",
            charged.len()
        ),
    );
    let outcomes: BTreeMap<String, usize> =
        seen.orders
            .iter()
            .chain(&seen.charges)
            .fold(BTreeMap::new(), |mut m, r| {
                *m.entry(format!("{} {}", r.status, r.body["code"].as_str().unwrap_or("ok")))
                    .or_default() += 1;
                m
            });
    println!("soak: money outcomes by status: {outcomes:?}");
    println!(
        "soak: {} answers were actix's own 408 (request not read in time), retried by the client",
        seen.request_timeouts
    );
    report(
        failures,
        seen.replay_mismatches.is_empty(),
        format!(
            "idempotency: {} same-key retries, {} answered differently from the first{}",
            seen.replays,
            seen.replay_mismatches.len(),
            seen.replay_mismatches
                .first()
                .map(|m| format!(" (first: {m})"))
                .unwrap_or_default()
        ),
    );

    // 3. Popular menus equal the ground truth.
    let popular: Value = reqwest::get(format!("{}/menus/popular", world.bases[0]))
        .await?
        .json()
        .await?;
    let truth = rig.db.popular_ground_truth(None).await;
    let api: Vec<(String, i64, i64)> = popular
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["id"].as_str().unwrap_or_default().to_owned(),
                        p["quantity"].as_i64().unwrap_or(-1),
                        p["orderCount"].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let truth: Vec<(String, i64, i64)> = truth
        .iter()
        .map(|t| (t.id.to_string(), t.quantity, t.order_count))
        .collect();
    report(
        failures,
        api == truth,
        format!("popular menus: API {api:?}, ground truth {truth:?}"),
    );

    // 4. Every order event reached the collector (the relay gets a minute).
    let collector = format!("http://127.0.0.1:{}", rig.collector_port);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (delivered, undelivered) = loop {
        let events: Vec<Value> = reqwest::get(format!("{collector}/events")).await?.json().await?;
        let delivered: HashSet<String> = events
            .iter()
            .filter_map(|e| e["event"]["orderId"].as_str().map(str::to_owned))
            .collect();
        let undelivered = ids.iter().filter(|id| !delivered.contains(**id)).count();
        if undelivered == 0 || Instant::now() > deadline {
            break (delivered.len(), undelivered);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let stats: Value = reqwest::get(format!("{collector}/stats")).await?.json().await?;
    report(
        failures,
        undelivered == 0,
        format!("events: {delivered} orders reached the collector, {undelivered} did not; collector stats {stats}"),
    );

    // 5. No 5xx but 503, and 503 only during a deliberate fault.
    // A request counts as during a fault when its time in flight overlaps one.
    let in_fault = |at: f64, took: Duration| {
        let answered = at + took.as_secs_f64();
        faults.iter().any(|f| answered >= f.from && at <= f.to)
    };
    let server_errors: Vec<_> = seen.responses.iter().filter(|r| r.1 >= 500).collect();
    let bad_5xx = server_errors.iter().filter(|r| r.1 != 503).count();
    let stray_503: Vec<_> = server_errors
        .iter()
        .filter(|r| r.1 == 503 && !in_fault(r.0, r.2))
        .collect();
    report(
        failures,
        bad_5xx == 0 && stray_503.is_empty(),
        format!(
            "errors: {} responses, {} were 503 (all during a fault: {}), {bad_5xx} other 5xx{}",
            seen.responses.len(),
            server_errors.len() - bad_5xx,
            stray_503.is_empty(),
            stray_503
                .first()
                .map(|r| format!("; first stray 503 at {:.1}s on {}", r.0, r.3))
                .unwrap_or_default()
        ),
    );
    for fault in &faults {
        println!(
            "soak: fault window {:.1}s..{:.1}s: {}",
            fault.from, fault.to, fault.name
        );
    }

    // 6. No request waited beyond the configured timeouts.
    let bound = request_bound();
    let slow: Vec<_> = seen
        .responses
        .iter()
        .filter(|r| {
            r.2 > if r.3 == "login" || r.3 == "signup" {
                LOGIN_BOUND
            } else {
                bound
            }
        })
        .collect();
    let mut slowest: BTreeMap<&str, Duration> = BTreeMap::new();
    for r in &seen.responses {
        let entry = slowest.entry(r.3).or_default();
        *entry = (*entry).max(r.2);
    }
    report(
        failures,
        slow.is_empty() && seen.hung.is_empty(),
        format!(
            "latency: {} answers over the bound of {bound:?} ({LOGIN_BOUND:?} for password hashing), {} unanswered; slowest per endpoint {slowest:?}",
            slow.len(),
            seen.hung.len()
        ),
    );
    Ok(())
}

fn report(failures: &mut Vec<String>, ok: bool, line: String) {
    println!("soak: {} {line}", if ok { "ok  " } else { "FAIL" });
    if !ok {
        failures.push(line);
    }
}
