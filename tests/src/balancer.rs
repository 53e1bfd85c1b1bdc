//! HAProxy with the shipped `docker/haproxy.cfg` in front of instances on
//! loopback ports, as `make cluster` runs it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Api, free_port};

/// HAProxy with `docker/haproxy.cfg`, its servers replaced by ours, killed
/// when dropped.
#[derive(Debug)]
pub struct Balancer {
    child: Child,
    pub api: Api,
    _config: tempfile_path::TempPath,
}

/// A path removed when dropped (no crate needed for one file).
mod tempfile_path {
    #[derive(Debug)]
    pub struct TempPath(pub std::path::PathBuf);

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// `docker/haproxy.cfg` with its `server-template` line replaced by one
/// `server` line per port, as `make cluster` does. `retries`: the shipped
/// retry rules, or none at all (a balancer like many cloud ones).
pub fn shipped_config(ports: &[u16], retries: bool) -> String {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docker/haproxy.cfg");
    let text = std::fs::read_to_string(&shipped).expect("docker/haproxy.cfg");
    let servers: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("    server api{i} 127.0.0.1:{port} check"))
        .collect();
    let mut config: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("server-template ") {
            config.extend(servers.iter().cloned());
        } else if !retries && line.trim_start().starts_with("retry-on ") {
            config.push("    retry-on none".to_owned());
        } else if !retries && line.trim_start().starts_with("retries ") {
            config.push("    retries 0".to_owned());
        } else {
            config.push(line.to_owned());
        }
    }
    config.join("\n") + "\n"
}

/// `config` in a file of its own under the temp directory, removed when
/// dropped.
pub fn write_config(config: &str) -> tempfile_path::TempPath {
    let path = std::env::temp_dir().join(format!("coffee-haproxy-{}.cfg", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, config).expect("write config");
    tempfile_path::TempPath(path)
}

/// The HAProxy binary: Debian's package or the official image.
pub fn haproxy() -> &'static str {
    ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| panic!("HAProxy is missing: run scripts/test-tools.sh (apt-get install haproxy)"))
}

impl Balancer {
    /// `retries`: the shipped retry rules, or none at all (a balancer like
    /// many cloud ones).
    pub async fn start(ports: &[u16], retries: bool) -> Self {
        let config = write_config(&shipped_config(ports, retries));
        let port = free_port();
        let child = Command::new(haproxy())
            .arg("-q")
            .arg("-f")
            .arg(&config.0)
            .env("LB_BIND", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("haproxy starts");
        let api = Api::new(&format!("http://127.0.0.1:{port}"));
        let balancer = Self {
            child,
            api,
            _config: config,
        };
        balancer.wait_until_all_up().await;
        balancer
    }

    /// Waits until the balancer answers ready, then for its checks' rise
    /// (2 × 500 ms), so every server has been seen up.
    async fn wait_until_all_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while ready(&self.api).await != Some(200) {
            assert!(Instant::now() < deadline, "the balancer never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of `/health/ready`, or `None` while nothing answers.
pub async fn ready(api: &Api) -> Option<u16> {
    let request = api.client.get(api.url("/health/ready"));
    api.try_send(request).await.ok().map(|reply| reply.status)
}
