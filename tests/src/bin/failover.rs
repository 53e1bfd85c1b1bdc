//! `make failover-test`: both failovers of the data tier under load, with
//! TLS on every server.
//!
//! On loopback (scripts/data-tier.sh): a PostgreSQL primary with a
//! synchronous standby, a Redis master with a replica and three Sentinels,
//! the mock collector, and two `coffee serve` behind the shipped HAProxy
//! configuration. Customers sign up, log in, charge, order, refresh and log
//! out, with idempotency keys and retries; then the Redis master is
//! SIGKILLed (Sentinel promotes the replica; the old master comes back as a
//! replica), and later the PostgreSQL primary (the standby is promoted).
//! Afterwards, on the new primary: every order and charge answered `2xx` is
//! there exactly once, every balance equals its ledger, every session opened
//! before the failovers still works, every token revoked stays revoked, every
//! order's event reached the collector, and no answer was a `5xx` but `503`.
//! How long each failover answered `503` is printed. Exits non-zero on any
//! violation.

// A report for a human: printing is its job.
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use coffee_e2e::{
    Api, Balancer, DataTier, Process, coffee_env, free_port, override_env, run_coffee, start_mock_collector_on,
};
use serde_json::{Value, json};

const MASTER_NAME: &str = "coffee";
const STANDBY_NAME: &str = "standby1";
const CUSTOMERS: usize = 12;
const PASSWORD: &str = "correct horse battery staple";
const AMERICANO: &str = "0192f0a0-0000-7000-8000-000000000001";
/// How long a request is retried before the run counts it as lost.
const GIVE_UP: Duration = Duration::from_secs(60);

/// What every customer saw.
#[derive(Debug, Default)]
struct Seen {
    /// Each `503`, as seconds since the start.
    unavailable: Vec<f64>,
    /// Every other `5xx` (a bug), and failed exchanges past the balancer.
    errors: Vec<String>,
    /// Order ids answered `201`, by user.
    orders: BTreeMap<String, BTreeSet<String>>,
    /// Points charged with a `200`, by user, and how many charges.
    charged: BTreeMap<String, i64>,
    charges: u64,
    /// Keyed requests that never got a definitive answer.
    abandoned: Vec<String>,
    answers: u64,
    /// Logouts retried after a `503` that found the token already revoked.
    logouts_already_done: u64,
}

struct World {
    api: Api,
    started: Instant,
    seen: Mutex<Seen>,
    stop: AtomicBool,
}

enum Answer {
    Reply(u16, Value),
    Lost,
}

impl World {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One exchange through the balancer, recorded.
    async fn call(&self, request: reqwest::RequestBuilder, what: &str) -> Answer {
        match self.api.try_send(request).await {
            Ok(reply) => {
                let mut seen = self.seen();
                seen.answers += 1;
                if reply.status == 503 {
                    seen.unavailable.push(self.started.elapsed().as_secs_f64());
                } else if reply.status >= 500 {
                    seen.errors.push(format!("{what}: {} {}", reply.status, reply.body));
                }
                Answer::Reply(reply.status, reply.body)
            }
            Err(e) => {
                self.seen()
                    .errors
                    .push(format!("{what}: no answer through the balancer: {e}"));
                Answer::Lost
            }
        }
    }

    /// Sends `build()` until it is answered anything but `503` (or a lost
    /// exchange); the same request (same idempotency key) every time.
    async fn until_definitive(&self, what: &str, build: impl Fn() -> reqwest::RequestBuilder) -> Option<(u16, Value)> {
        self.until_definitive_retried(what, build)
            .await
            .map(|(status, body, _)| (status, body))
    }

    /// Like [`World::until_definitive`], also saying whether an earlier
    /// attempt was answered `503` or lost.
    async fn until_definitive_retried(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Option<(u16, Value, bool)> {
        let give_up = Instant::now() + GIVE_UP;
        let mut retried = false;
        loop {
            match self.call(build(), what).await {
                Answer::Reply(status, body) if status != 503 && status != 429 => return Some((status, body, retried)),
                _ if Instant::now() > give_up => {
                    self.seen().abandoned.push(what.to_owned());
                    return None;
                }
                _ => {
                    retried = true;
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
            }
        }
    }
}

/// A customer's sessions: one opened before the failovers and left alone,
/// one rotated throughout, and the tokens of the sessions it logged out.
struct Customer {
    world: Arc<World>,
    id: String,
    email: String,
    kept: (String, String),
    rotating: (String, String),
    revoked: Vec<(String, String)>,
}

impl Customer {
    async fn join(world: Arc<World>, n: usize) -> anyhow::Result<Self> {
        let email = format!("failover-{n}-{}@example.com", uuid::Uuid::new_v4().simple());
        let body = json!({"email": email, "password": PASSWORD, "name": format!("Failover {n}")});
        let api = &world.api;
        let (status, created) = world
            .until_definitive("signup", || api.client.post(api.url("/auth/signup")).json(&body))
            .await
            .context("signup never answered")?;
        if status != 201 {
            bail!("signup answered {status}: {created}");
        }
        let mut customer = Self {
            id: created["id"].as_str().unwrap_or_default().to_owned(),
            world: Arc::clone(&world),
            email,
            kept: Default::default(),
            rotating: Default::default(),
            revoked: Vec::new(),
        };
        customer.kept = customer.log_in().await?;
        customer.rotating = customer.log_in().await?;
        customer.log_out_a_session().await?;
        customer.charge(1_000_000).await?;
        Ok(customer)
    }

    async fn log_in(&self) -> anyhow::Result<(String, String)> {
        let api = &self.world.api;
        let body = json!({"email": self.email, "password": PASSWORD});
        let (status, pair) = self
            .world
            .until_definitive("login", || api.client.post(api.url("/auth/login")).json(&body))
            .await
            .context("login never answered")?;
        if status != 200 {
            bail!("login answered {status}: {pair}");
        }
        Ok(tokens(&pair))
    }

    /// Logs in and out; the session's tokens must stay revoked.
    async fn log_out_a_session(&mut self) -> anyhow::Result<()> {
        let (access, refresh) = self.log_in().await?;
        let api = &self.world.api;
        let body = json!({"refreshToken": refresh});
        let (status, answer, retried) = self
            .world
            .until_definitive_retried("logout", || {
                api.client
                    .post(api.url("/auth/logout"))
                    .bearer_auth(&access)
                    .json(&body)
            })
            .await
            .context("logout never answered")?;
        match status {
            204 => {}
            // An earlier attempt revoked the token and then lost its answer
            // (the master died before WAIT answered, say): logged out.
            401 if retried => self.world.seen().logouts_already_done += 1,
            _ => bail!("logout answered {status}: {answer}"),
        }
        self.revoked.push((access, refresh));
        Ok(())
    }

    /// A POST with a fresh idempotency key, as the session kept from before
    /// the failovers, until it has a definitive answer.
    async fn keyed(&self, what: &str, url: &str, body: Value) -> Option<(u16, Value)> {
        let key = uuid::Uuid::new_v4().to_string();
        let api = &self.world.api;
        self.world
            .until_definitive(what, || {
                api.client
                    .post(url)
                    .bearer_auth(&self.kept.0)
                    .header("Idempotency-Key", &key)
                    .json(&body)
            })
            .await
    }

    async fn charge(&self, amount: i64) -> anyhow::Result<()> {
        let url = self.world.api.url(&format!("/users/{}/points/charge", self.id));
        match self.keyed("charge", &url, json!({"amount": amount})).await {
            None => {}
            Some((200, _)) => {
                let mut seen = self.world.seen();
                *seen.charged.entry(self.id.clone()).or_default() += amount;
                seen.charges += 1;
            }
            Some((status, answer)) => bail!("charge answered {status}: {answer}"),
        }
        Ok(())
    }

    async fn order(&self) -> anyhow::Result<()> {
        let body = json!({"items": [{"menuId": AMERICANO, "quantity": 1}]});
        match self.keyed("order", &self.world.api.url("/orders"), body).await {
            None => {}
            Some((201, answer)) => {
                let id = answer["id"].as_str().unwrap_or_default().to_owned();
                self.world.seen().orders.entry(self.id.clone()).or_default().insert(id);
            }
            Some((status, answer)) => bail!("order answered {status}: {answer}"),
        }
        Ok(())
    }

    /// Rotates the second session's refresh token.
    async fn refresh(&mut self) -> anyhow::Result<()> {
        let api = &self.world.api;
        let body = json!({"refreshToken": self.rotating.1});
        let Some((status, pair)) = self
            .world
            .until_definitive("refresh", || api.client.post(api.url("/auth/refresh")).json(&body))
            .await
        else {
            return Ok(());
        };
        if status != 200 {
            bail!("refresh answered {status}: {pair} (a session was lost)");
        }
        self.rotating = tokens(&pair);
        Ok(())
    }

    async fn run(mut self) -> anyhow::Result<Self> {
        let mut round = 0u64;
        while !self.world.stop.load(Ordering::Relaxed) {
            match round % 5 {
                0 | 2 => self.order().await?,
                1 => self.charge(100).await?,
                3 => self.refresh().await?,
                _ => self.log_out_a_session().await?,
            }
            round += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(self)
    }
}

fn tokens(pair: &Value) -> (String, String) {
    (
        pair["accessToken"].as_str().unwrap_or_default().to_owned(),
        pair["refreshToken"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The servers and the instances.
struct Rig {
    tier: DataTier,
    pg: [u16; 2],
    redis: [u16; 2],
    sentinels: Vec<u16>,
    collector: (Process, u16),
    _instances: Vec<Process>,
    balancer: Balancer,
}

impl Rig {
    async fn start() -> anyhow::Result<Self> {
        let tier = DataTier::with_certificates()?;
        let pg = [free_port(), free_port()];
        tier.pg_primary(pg[0], Some(STANDBY_NAME))?;
        tier.pg_standby(pg[1], pg[0], STANDBY_NAME)?;
        let redis = [free_port(), free_port()];
        // As docs/DEPLOYMENT.md advises: a master without a replica refuses
        // session writes before making them, so a retry finds nothing half
        // done (a rotation already made, a logout already applied).
        tier.redis_needing_replicas(redis[0], None, 1)?;
        tier.redis_needing_replicas(redis[1], Some(redis[0]), 1)?;
        let sentinels: Vec<u16> = (0..3).map(|_| free_port()).collect();
        for sentinel in &sentinels {
            tier.sentinel(*sentinel, free_port(), MASTER_NAME, redis[0])?;
        }
        let collector_port = free_port();
        let collector = start_mock_collector_on(collector_port, &[]).await?;

        let database_url = tier.verified_database_url(&pg, "&target_session_attrs=read-write");
        let sentinel_list = sentinels
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let prefix = coffee_test_support::unique_key_prefix();
        let ports = [free_port(), free_port()];
        let envs: Vec<Vec<(&'static str, String)>> = ports
            .iter()
            .map(|port| {
                let mut env = coffee_env(
                    *port,
                    &database_url,
                    &prefix,
                    &format!("http://127.0.0.1:{collector_port}"),
                );
                override_env(
                    &mut env,
                    [
                        // The host is Sentinel's to name; the scheme asks for TLS.
                        ("REDIS_URL", "rediss://ignored:6379/0".to_owned()),
                        ("REDIS_CA_FILE", tier.file("ca.crt")),
                        ("REDIS_SENTINELS", sentinel_list.clone()),
                        ("REDIS_MASTER_NAME", MASTER_NAME.to_owned()),
                        ("REDIS_TIMEOUT_MS", "1000".to_owned()),
                        ("TRUSTED_PROXIES", "127.0.0.1".to_owned()),
                        ("ACCESS_TOKEN_TTL_SECS", "3600".to_owned()),
                        ("DATABASE_STATEMENT_TIMEOUT_MS", "3000".to_owned()),
                        ("OUTBOX_RETRY_BASE_MS", "200".to_owned()),
                    ],
                );
                env
            })
            .collect();
        let (status, output) = run_coffee(&["migrate"], &envs[0])?;
        if !status.success() {
            bail!("coffee migrate failed:\n{output}");
        }
        // The instances' logs, kept after the run (the data tier's
        // directory is removed): `target/failover-logs/`.
        let logs = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/failover-logs");
        std::fs::create_dir_all(&logs)?;
        let mut instances = Vec::new();
        for (n, (port, env)) in ports.iter().zip(&envs).enumerate() {
            let log = logs.join(format!("coffee-{n}.log"));
            instances
                .push(Process::start_logging_to("coffee", &["serve"], env, *port, "/health/live", Some(&log)).await?);
        }
        let balancer = Balancer::start(&ports, true).await;
        Ok(Self {
            tier,
            pg,
            redis,
            sentinels,
            collector: (collector, collector_port),
            _instances: instances,
            balancer,
        })
    }

    /// Runs `sql` on the new primary.
    fn sql(&self, sql: &str) -> anyhow::Result<String> {
        self.tier.psql(self.pg[1], "coffee", sql)
    }
}

/// The longest run of `503`s starting after `from` (seconds) and before
/// `until`, measured from `from` to the last one.
fn window(unavailable: &[f64], from: f64, until: f64) -> (usize, f64) {
    let inside: Vec<f64> = unavailable
        .iter()
        .copied()
        .filter(|t| *t >= from && *t < until)
        .collect();
    let last = inside.iter().copied().fold(from, f64::max);
    (inside.len(), last - from)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let rig = Rig::start().await.context("starting the data tier and the instances")?;
    let world = Arc::new(World {
        api: Api::new(&rig.balancer.api.url("")),
        started: Instant::now(),
        seen: Mutex::new(Seen::default()),
        stop: AtomicBool::new(false),
    });
    let mut joining = Vec::new();
    for n in 0..CUSTOMERS {
        joining.push(tokio::spawn(Customer::join(Arc::clone(&world), n)));
    }
    let mut running = Vec::new();
    for customer in joining {
        running.push(tokio::spawn(customer.await??.run()));
    }
    println!(
        "failover: {CUSTOMERS} customers running ({:.1} s set-up)",
        started.elapsed().as_secs_f64()
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    let redis_killed = world.started.elapsed().as_secs_f64();
    rig.tier.kill(rig.redis[0])?;
    let new_master = rig.tier.wait_master(rig.sentinels[0], MASTER_NAME, rig.redis[0], 30)?;
    println!(
        "failover: Redis master {} killed; Sentinel named {new_master} after {:.1} s",
        rig.redis[0],
        world.started.elapsed().as_secs_f64() - redis_killed
    );
    // The old master comes back, empty, and is made a replica of the new one.
    rig.tier.redis_needing_replicas(rig.redis[0], Some(new_master), 1)?;
    println!(
        "failover: old master back as a replica at {:.1} s",
        world.started.elapsed().as_secs_f64() - redis_killed
    );
    tokio::time::sleep(Duration::from_secs(4)).await;

    let pg_killed = world.started.elapsed().as_secs_f64();
    rig.tier.kill(rig.pg[0])?;
    rig.tier.pg_promote(rig.pg[1])?;
    println!(
        "failover: PostgreSQL primary {} killed, standby {} promoted after {:.1} s",
        rig.pg[0],
        rig.pg[1],
        world.started.elapsed().as_secs_f64() - pg_killed
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    world.stop.store(true, Ordering::Relaxed);
    let ended = world.started.elapsed().as_secs_f64();
    let mut customers = Vec::new();
    for customer in running {
        customers.push(customer.await??);
    }

    let mut failures = Vec::new();
    verify(&rig, &world, &customers, &mut failures).await?;
    let seen = world.seen();
    let (redis_503s, redis_window) = window(&seen.unavailable, redis_killed, pg_killed);
    let (pg_503s, pg_window) = window(&seen.unavailable, pg_killed, ended + 60.0);
    println!("failover: Redis failover answered {redis_503s} × 503 over {redis_window:.1} s");
    println!("failover: PostgreSQL failover answered {pg_503s} × 503 over {pg_window:.1} s");
    println!(
        "failover: {} answers in all ({} logout retries found the token already revoked); done in {:.1} s \
         (instance logs in target/failover-logs/)",
        seen.answers,
        seen.logouts_already_done,
        started.elapsed().as_secs_f64()
    );
    drop(seen);
    if failures.is_empty() {
        println!("failover: every check passed");
        Ok(())
    } else {
        for failure in &failures {
            eprintln!("failover: FAILED {failure}");
        }
        bail!("{} check(s) failed", failures.len())
    }
}

async fn verify(rig: &Rig, world: &World, customers: &[Customer], failures: &mut Vec<String>) -> anyhow::Result<()> {
    let (orders, charged, errors, abandoned) = {
        let seen = world.seen();
        (
            seen.orders.clone(),
            seen.charged.clone(),
            seen.errors.clone(),
            seen.abandoned.clone(),
        )
    };
    let mut check = |ok: bool, line: String| {
        println!("failover: {} {line}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            failures.push(line);
        }
    };
    check(
        errors.is_empty(),
        format!("no 5xx but 503, no lost exchange: {errors:?}"),
    );
    check(
        abandoned.is_empty(),
        format!("every request answered within {GIVE_UP:?}: {abandoned:?}"),
    );

    // Orders: every 201 on the new primary, once, and nothing else of ours.
    let stored = rig.sql("SELECT user_id || ' ' || id FROM orders")?;
    let mut in_db: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in stored.lines().filter(|l| !l.is_empty()) {
        if let Some((user, id)) = line.split_once(' ') {
            in_db.entry(user.to_owned()).or_default().insert(id.to_owned());
        }
    }
    let answered: usize = orders.values().map(BTreeSet::len).sum();
    let stored_count: usize = in_db.values().map(BTreeSet::len).sum();
    let mut missing = Vec::new();
    for (user, ids) in &orders {
        let kept = in_db.get(user);
        missing.extend(ids.iter().filter(|id| !kept.is_some_and(|s| s.contains(*id))).cloned());
    }
    check(
        missing.is_empty(),
        format!("{answered} orders answered 201, all on the new primary (missing {missing:?})"),
    );
    check(
        stored_count == answered,
        format!("{stored_count} orders stored, one per order answered 201"),
    );

    // Charges and balances: balance = 2xx charges - 2xx orders' totals = ledger.
    let balances = rig.sql(
        "SELECT u.id || ' ' || u.point || ' ' || \
         COALESCE((SELECT sum(CASE WHEN t.type = 'ADD' THEN t.amount ELSE -t.amount END) \
                   FROM point_transactions t WHERE t.user_id = u.id), 0) || ' ' || \
         COALESCE((SELECT sum(total_price) FROM orders o WHERE o.user_id = u.id), 0) FROM users u",
    )?;
    let mut money_ok = 0;
    let mut money_bad = Vec::new();
    for line in balances.lines().filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(' ').collect();
        let [user, point, ledger, spent] = fields.as_slice() else {
            continue;
        };
        let (point, ledger, spent): (i64, i64, i64) = (point.parse()?, ledger.parse()?, spent.parse()?);
        let expected = charged.get(*user).copied().unwrap_or_default() - spent;
        if point == ledger && point == expected && point >= 0 {
            money_ok += 1;
        } else {
            money_bad.push(format!(
                "{user}: point {point}, ledger {ledger}, charged-spent {expected}"
            ));
        }
    }
    check(
        money_bad.is_empty() && money_ok == customers.len(),
        format!(
            "{money_ok} balances = ledger = the {} charges answered 200 - orders ({money_bad:?})",
            world.seen().charges
        ),
    );

    // Sessions opened before the failovers, and revoked tokens.
    let api = &world.api;
    let mut kept_ok = 0;
    let mut revoked_ok = 0;
    let mut revoked_all = 0;
    let mut session_failures = Vec::new();
    for customer in customers {
        let me = api.me(&customer.kept.0).await;
        let refreshed = api.refresh(&customer.kept.1).await;
        if me.status == 200 && refreshed.status == 200 {
            kept_ok += 1;
        } else {
            session_failures.push(format!(
                "{}: me {}, refresh {}",
                customer.id, me.status, refreshed.status
            ));
        }
        for (access, refresh) in &customer.revoked {
            revoked_all += 1;
            let me = api.me(access).await;
            let refreshed = api.refresh(refresh).await;
            if me.status == 401 && refreshed.status == 401 {
                revoked_ok += 1;
            } else {
                session_failures.push(format!(
                    "{} revoked: me {}, refresh {}",
                    customer.id, me.status, refreshed.status
                ));
            }
        }
    }
    check(
        kept_ok == customers.len(),
        format!(
            "{kept_ok} of {} sessions opened before the failovers still work",
            customers.len()
        ),
    );
    check(
        revoked_ok == revoked_all,
        format!("{revoked_ok} of {revoked_all} logged-out sessions stay revoked ({session_failures:?})"),
    );

    // Every order's event at the collector.
    let collector = Api::new(&format!("http://127.0.0.1:{}", rig.collector.1));
    let wanted: BTreeSet<String> = orders.values().flatten().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut delivered = BTreeSet::new();
    while Instant::now() < deadline {
        let events = collector.get("/events", None).await;
        delivered = events
            .body
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .filter_map(|e| e["event"]["orderId"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if wanted.is_subset(&delivered) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let undelivered = wanted.difference(&delivered).count();
    check(
        undelivered == 0,
        format!("{} order events at the collector ({undelivered} missing)", wanted.len()),
    );
    Ok(())
}
