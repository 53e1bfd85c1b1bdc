//! Helpers for black-box tests of the real binaries.
//!
//! The binaries are found next to the test executable's `deps/` folder (the
//! `target/debug` of this workspace) or in `COFFEE_BIN_DIR`; `make test` and
//! `make e2e` build them first (`cargo build --bins`).

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub mod balancer;
pub mod data_tier;
pub use balancer::{Balancer, ready};
pub use coffee_test_support::{RedisServer, free_port};
pub use data_tier::DataTier;

/// Path of a workspace binary (`coffee`, `mock-collector`).
pub fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("COFFEE_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        // A test runs from `target/debug/deps/`, the soak from `target/debug/`.
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(PathBuf::from))
            .map(|dir| {
                if dir.ends_with("deps") {
                    dir.parent().map(PathBuf::from).unwrap_or(dir)
                } else {
                    dir
                }
            })
            .unwrap_or_else(|| PathBuf::from("target/debug")),
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --bins), or set COFFEE_BIN_DIR",
        path.display()
    );
    path
}

/// A child process that is killed when dropped.
#[derive(Debug)]
pub struct Process {
    name: &'static str,
    child: Child,
    pub base_url: String,
}

impl Process {
    /// Starts `binary` with `args` and `env` (on top of a minimal environment)
    /// and waits until `GET {base_url}{health_path}` answers.
    pub async fn start(
        name: &'static str,
        args: &[&str],
        env: &[(&str, String)],
        port: u16,
        health_path: &str,
    ) -> anyhow::Result<Self> {
        Self::start_logging_to(name, args, env, port, health_path, None).await
    }

    /// Like [`Process::start`], with stdout and stderr written to `log`.
    pub async fn start_logging_to(
        name: &'static str,
        args: &[&str],
        env: &[(&str, String)],
        port: u16,
        health_path: &str,
        log: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(binary(name));
        if let Some(log) = log {
            let file = std::fs::File::create(log)?;
            command.stdout(file.try_clone()?).stderr(file);
        }
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("E2E_RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().with_context(|| format!("starting {name}"))?;
        let process = Self {
            name,
            child,
            base_url: format!("http://127.0.0.1:{port}"),
        };
        process.wait_until_answering(health_path).await?;
        Ok(process)
    }

    async fn wait_until_answering(&self, path: &str) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = client.get(format!("{}{path}", self.base_url)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} did not answer on {} within 20 s", self.name, self.base_url);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `KILL`, ...) with the system's `kill`.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.pid());
        }
        Ok(())
    }

    /// Waits for the process to exit, up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} did not exit within {timeout:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Is the process still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `coffee <args>` to completion with `env`, returning its exit status
/// and combined output.
pub fn run_coffee(args: &[&str], env: &[(&str, String)]) -> anyhow::Result<(ExitStatus, String)> {
    run_coffee_within(args, env, Duration::from_secs(300))
}

/// Like [`run_coffee`], killed (coreutils' `timeout`) if it has not ended
/// after `limit`: for a `coffee serve` expected to refuse to start.
pub fn run_coffee_within(
    args: &[&str],
    env: &[(&str, String)],
    limit: Duration,
) -> anyhow::Result<(ExitStatus, String)> {
    let mut command = Command::new("timeout");
    command
        .arg("--signal=KILL")
        .arg(format!("{}s", limit.as_secs().max(1)))
        .arg(binary("coffee"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status, text))
}

/// The signing key every e2e instance uses, so tests can forge tokens.
pub const E2E_JWT_SECRET: &str = "e2e-signing-key-of-at-least-thirty-two-bytes";

/// The environment of one `coffee serve` instance on `port`, against
/// `database_url` and a Redis key namespace shared by a test's instances.
pub fn coffee_env(
    port: u16,
    database_url: &str,
    redis_prefix: &str,
    collector_url: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("APP_ENV", "test".to_owned()),
        ("BIND_ADDR", format!("127.0.0.1:{port}")),
        ("HTTP_WORKERS", "2".to_owned()),
        ("DATABASE_URL", database_url.to_owned()),
        ("DATABASE_ACQUIRE_TIMEOUT_MS", "1000".to_owned()),
        ("REDIS_URL", coffee_test_support::redis_url()),
        ("REDIS_KEY_PREFIX", redis_prefix.to_owned()),
        ("COLLECTOR_URL", collector_url.to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        ("JWT_SECRET", E2E_JWT_SECRET.to_owned()),
        ("SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
        // No balancer in front of most tests: stop at once on SIGTERM.
        ("SHUTDOWN_DRAIN_SECS", "0".to_owned()),
        // Every test client is 127.0.0.1: the per-client limit on signups
        // and failed logins is tested on its own (tests/tests/auth.rs).
        ("CLIENT_LOGIN_MAX_ATTEMPTS", "1000000".to_owned()),
    ]
}

/// Replaces (or adds) each variable of `overrides` in `env`.
pub fn override_env(
    env: &mut Vec<(&'static str, String)>,
    overrides: impl IntoIterator<Item = (&'static str, String)>,
) {
    for (name, value) in overrides {
        env.retain(|(k, _)| *k != name);
        env.push((name, value));
    }
}

/// Starts `coffee serve` with `env` (see [`coffee_env`]) and waits until live.
pub async fn start_coffee(port: u16, env: &[(&str, String)]) -> anyhow::Result<Process> {
    Process::start("coffee", &["serve"], env, port, "/health/live").await
}

/// Starts `mock-collector` on a free port with extra `env`.
pub async fn start_mock_collector(env: &[(&str, String)]) -> anyhow::Result<Process> {
    start_mock_collector_on(free_port(), env).await
}

/// Starts `mock-collector` on `port` with extra `env`.
pub async fn start_mock_collector_on(port: u16, env: &[(&str, String)]) -> anyhow::Result<Process> {
    let mut all = vec![("MOCK_COLLECTOR_ADDR", format!("127.0.0.1:{port}"))];
    all.extend(env.iter().map(|(k, v)| (*k, v.clone())));
    Process::start("mock-collector", &[], &all, port, "/health").await
}

/// The environment that runs a process with its wall clock moved by
/// `offset` (libfaketime's syntax: `"-3h"`, `"+90m"`), as a server whose
/// clock drifted would be. Timers (the monotonic clock) are left alone.
///
/// # Panics
/// When libfaketime is not installed (Debian's `faketime` package;
/// `make test` installs it through `scripts/test-tools.sh`).
pub fn skewed_clock(offset: &str) -> Vec<(&'static str, String)> {
    let library = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .find(|path| std::path::Path::new(path).exists())
    .unwrap_or_else(|| panic!("libfaketime is missing: run scripts/test-tools.sh (apt-get install faketime)"));
    vec![
        ("LD_PRELOAD", library.to_owned()),
        ("FAKETIME", offset.to_owned()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        ("FAKETIME_DONT_RESET", "1".to_owned()),
    ]
}

/// Several `coffee serve` instances sharing one database and one Redis
/// namespace, as behind a load balancer.
#[derive(Debug)]
pub struct Cluster {
    pub instances: Vec<Process>,
    pub namespace: coffee_test_support::RedisNamespace,
}

impl Cluster {
    /// Starts `count` instances against `database_url` with `extra` env
    /// (overriding the defaults of [`coffee_env`]).
    pub async fn start(count: usize, database_url: &str, extra: &[(&'static str, String)]) -> anyhow::Result<Self> {
        let mut cluster = Self {
            instances: Vec::new(),
            namespace: coffee_test_support::RedisNamespace::new(),
        };
        for _ in 0..count {
            cluster.add_instance(database_url, extra).await?;
        }
        Ok(cluster)
    }

    /// Starts one more instance sharing the cluster's database and Redis.
    pub async fn add_instance(
        &mut self,
        database_url: &str,
        extra: &[(&'static str, String)],
    ) -> anyhow::Result<usize> {
        let port = free_port();
        let mut env = coffee_env(port, database_url, self.namespace.prefix(), "http://127.0.0.1:1");
        override_env(&mut env, extra.iter().cloned());
        self.instances.push(start_coffee(port, &env).await?);
        Ok(self.instances.len() - 1)
    }

    /// A client for instance `i`.
    pub fn api(&self, i: usize) -> Api {
        Api::new(&self.instances[i].base_url)
    }
}

/// Typed calls to one instance.
#[derive(Debug, Clone)]
pub struct Api {
    pub base_url: String,
    pub client: reqwest::Client,
}

/// Status and JSON body of a response (`Null` when there is no body).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
}

impl Reply {
    /// The problem `code`, or "" when there is none.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    pub fn str(&self, field: &str) -> String {
        self.body[field].as_str().unwrap_or_default().to_owned()
    }
}

impl Api {
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        self.try_send(request)
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}"))
    }

    /// Like [`Api::send`], with a failed exchange (no connection, a closed
    /// connection, a body cut short) as an error instead of a panic.
    pub async fn try_send(&self, request: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?;
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Reply { status, headers, body })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: serde_json::Value) -> Reply {
        let mut request = self.client.post(self.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    pub async fn signup(&self, email: &str, password: &str, name: &str) -> Reply {
        self.post(
            "/auth/signup",
            None,
            serde_json::json!({"email": email, "password": password, "name": name}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/auth/login",
            None,
            serde_json::json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post(
            "/auth/refresh",
            None,
            serde_json::json!({"refreshToken": refresh_token}),
        )
        .await
    }

    pub async fn me(&self, access_token: &str) -> Reply {
        self.get("/auth/me", Some(access_token)).await
    }

    pub async fn logout(&self, access_token: &str, refresh_token: Option<&str>) -> Reply {
        let body = match refresh_token {
            Some(token) => serde_json::json!({"refreshToken": token}),
            None => serde_json::json!({}),
        };
        self.post("/auth/logout", Some(access_token), body).await
    }

    /// `POST /users/{user}/points/charge` with an optional idempotency key.
    pub async fn charge(&self, token: &str, user: &str, key: Option<&str>, body: serde_json::Value) -> Reply {
        let mut request = self
            .client
            .post(self.url(&format!("/users/{user}/points/charge")))
            .bearer_auth(token)
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        self.send(request).await
    }

    /// `POST /orders` with an optional idempotency key.
    pub async fn order(&self, token: &str, key: Option<&str>, items: serde_json::Value) -> Reply {
        let mut request = self
            .client
            .post(self.url("/orders"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "items": items }));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        self.send(request).await
    }

    /// A fresh user holding `points` (charged through the API).
    pub async fn funded_user(&self, points: i64) -> (String, String) {
        let (user, token, _) = self.new_user().await;
        let mut left = points;
        let mut n = 0;
        while left > 0 {
            let amount = left.min(1_000_000);
            let reply = self
                .charge(
                    &token,
                    &user,
                    Some(&format!("fund-{n}")),
                    serde_json::json!({ "amount": amount }),
                )
                .await;
            assert_eq!(reply.status, 200, "{:?}", reply.body);
            left -= amount;
            n += 1;
        }
        (user, token)
    }

    /// Signs up and logs in a fresh user; returns (user id, access, refresh).
    pub async fn new_user(&self) -> (String, String, String) {
        let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
        let password = "correct horse battery staple";
        let created = self.signup(&email, password, "Tester").await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        let pair = self.login(&email, password).await;
        assert_eq!(pair.status, 200, "{:?}", pair.body);
        (created.str("id"), pair.str("accessToken"), pair.str("refreshToken"))
    }
}

/// `(id, quantity, orderCount)` of each entry of a `GET /menus/popular` body.
pub fn ranking(body: &serde_json::Value) -> Vec<(String, i64, i64)> {
    body.as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|r| {
                    (
                        r["id"].as_str().unwrap_or_default().to_owned(),
                        r["quantity"].as_i64().unwrap_or(-1),
                        r["orderCount"].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The ground truth of the ranking, counted from `orders`, in the shape of
/// [`ranking`].
pub async fn ranking_truth(db: &coffee_test_support::TestDatabase) -> Vec<(String, i64, i64)> {
    db.popular_ground_truth(None)
        .await
        .iter()
        .map(|t| (t.id.to_string(), t.quantity, t.order_count))
        .collect()
}

/// Unpadded base64url, for tests that hand-craft tokens.
pub fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
