//! A Redis key namespace per test, deleted when the test ends, and
//! throwaway Redis servers.

use std::time::{Duration, Instant};

/// A unique key prefix; every key under it is deleted on drop.
#[derive(Debug)]
pub struct RedisNamespace {
    prefix: String,
}

impl RedisNamespace {
    pub fn new() -> Self {
        Self {
            prefix: crate::unique_key_prefix(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Default for RedisNamespace {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RedisNamespace {
    fn drop(&mut self) {
        let pattern = format!("{}*", self.prefix);
        // Drop cannot await; a plain synchronous connection does the cleanup.
        let cleaned = std::thread::spawn(move || -> anyhow::Result<()> {
            let client = redis::Client::open(crate::redis_url())?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut conn = client.get_multiplexed_async_connection().await?;
                let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut conn).await?;
                if !keys.is_empty() {
                    redis::cmd("DEL").arg(keys).query_async::<()>(&mut conn).await?;
                }
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(cleaned, Ok(Ok(()))) {
            eprintln!("warning: redis keys under {} were not deleted", self.prefix);
        }
    }
}

/// A throwaway `redis-server` on `port` (no persistence), for a test that
/// stops or restarts Redis, or needs a replica, without disturbing anyone
/// else; killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    child: std::process::Child,
}

impl RedisServer {
    pub async fn start(port: u16) -> anyhow::Result<Self> {
        Self::spawn(port, &[]).await
    }

    /// A replica of the Redis at `master` (`host:port`), returned once it
    /// has synced.
    pub async fn replica_of(port: u16, master: &str) -> anyhow::Result<Self> {
        let (host, master_port) = master
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("{master} is not host:port"))?;
        let server = Self::spawn(port, &["--replicaof", host, master_port]).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(server.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        loop {
            let info: String = redis::cmd("INFO").arg("replication").query_async(&mut conn).await?;
            if info.contains("master_link_status:up") {
                return Ok(server);
            }
            if Instant::now() > deadline {
                anyhow::bail!("the replica on {port} never synced with {master}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn spawn(port: u16, extra: &[&str]) -> anyhow::Result<Self> {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            // A replica writes the master's data here while syncing.
            .args(["--dir", &std::env::temp_dir().display().to_string()])
            .args(["--dbfilename", &format!("coffee-test-redis-{port}.rdb")])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting redis-server: {e}"))?;
        let server = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if Instant::now() > deadline {
                anyhow::bail!("redis-server on {port} did not start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops it at once (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
