//! Helpers for black-box tests of the real binaries.
//!
//! The binaries are found next to the test executable's `deps/` folder (the
//! `target/debug` of this workspace) or in `COFFEE_BIN_DIR`; `make test` and
//! `make e2e` build them first (`cargo build --bins`).

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Path of a workspace binary (`coffee`, `mock-collector`).
pub fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("COFFEE_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| {
                exe.parent()
                    .and_then(|deps| deps.parent())
                    .map(PathBuf::from)
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

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
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
        let mut command = Command::new(binary(name));
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
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
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
                bail!(
                    "{} did not answer on {} within 20 s",
                    self.name,
                    self.base_url
                );
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
    let mut command = Command::new(binary("coffee"));
    command
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
        ("SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
    ]
}

/// Starts `coffee serve` with `env` (see [`coffee_env`]) and waits until live.
pub async fn start_coffee(port: u16, env: &[(&str, String)]) -> anyhow::Result<Process> {
    Process::start("coffee", &["serve"], env, port, "/health/live").await
}

/// Starts `mock-collector` on a free port with extra `env`.
pub async fn start_mock_collector(env: &[(&str, String)]) -> anyhow::Result<Process> {
    let port = free_port();
    let mut all = vec![("MOCK_COLLECTOR_ADDR", format!("127.0.0.1:{port}"))];
    all.extend(env.iter().map(|(k, v)| (*k, v.clone())));
    Process::start("mock-collector", &[], &all, port, "/health").await
}
