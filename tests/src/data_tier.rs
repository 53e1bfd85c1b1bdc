//! Throwaway PostgreSQL and Redis servers with TLS, replicas and Sentinels,
//! started by `scripts/data-tier.sh` on loopback ports in a directory of
//! their own, and stopped (the directory removed) when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The servers of one test, in one directory.
#[derive(Debug)]
pub struct DataTier {
    dir: PathBuf,
}

impl DataTier {
    /// A fresh directory with a test CA, a server certificate for
    /// `localhost` and `127.0.0.1`, one for another name, and an unrelated CA.
    pub fn with_certificates() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("coffee-data-tier-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let tier = Self { dir };
        tier.run(&["certs"])?;
        Ok(tier)
    }

    /// A file of the directory (`ca.crt`, `other-ca.crt`, ...).
    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The URL of database `coffee` on the clusters on `ports` (tried in
    /// that order), as `postgres`, with full verification against the test
    /// CA; `options` (`&key=value...`) are appended.
    pub fn verified_database_url(&self, ports: &[u16], options: &str) -> String {
        let hosts: Vec<String> = ports.iter().map(|port| format!("localhost:{port}")).collect();
        format!(
            "postgres://postgres@{}/coffee?sslmode=verify-full&sslrootcert={}{options}",
            hosts.join(","),
            self.file("ca.crt")
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `scripts/data-tier.sh <subcommand> DIR <args...>` and returns
    /// what it printed.
    pub fn run(&self, words: &[&str]) -> anyhow::Result<String> {
        self.run_with(&[], words)
    }

    fn run_with(&self, env: &[(&str, &str)], words: &[&str]) -> anyhow::Result<String> {
        let (subcommand, args) = words.split_first().context("a subcommand")?;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/data-tier.sh");
        let output = Command::new(&script)
            .envs(env.iter().copied())
            .arg(subcommand)
            .arg(&self.dir)
            .args(args)
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !output.status.success() {
            bail!(
                "data-tier.sh {} failed ({}):\n{}{}",
                words.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// A PostgreSQL primary with TLS only (`hostssl`), waiting for the
    /// synchronous standby `sync_standby` when given.
    pub fn pg_primary(&self, port: u16, sync_standby: Option<&str>) -> anyhow::Result<()> {
        let port = port.to_string();
        let mut args = vec!["pg-primary", port.as_str()];
        args.extend(sync_standby);
        self.run(&args).map(drop)
    }

    /// A streaming standby of the primary on `primary`, named `name`.
    pub fn pg_standby(&self, port: u16, primary: u16, name: &str) -> anyhow::Result<()> {
        self.run(&["pg-standby", &port.to_string(), &primary.to_string(), name])
            .map(drop)
    }

    /// Promotes the standby on `port` and clears its synchronous standby
    /// names (a promoted standby inherits them, and would wait forever).
    pub fn pg_promote(&self, port: u16) -> anyhow::Result<()> {
        self.run(&["pg-promote", &port.to_string()]).map(drop)
    }

    /// A Redis server with TLS only, replica of `master` when given.
    pub fn redis(&self, port: u16, master: Option<u16>) -> anyhow::Result<()> {
        let port = port.to_string();
        let master = master.map(|m| m.to_string());
        let mut args = vec!["redis", port.as_str()];
        args.extend(master.as_deref());
        self.run(&args).map(drop)
    }

    /// A Redis server with TLS only that refuses writes while fewer than
    /// `min_replicas` replicas are in sync (`min-replicas-to-write`),
    /// replica of `master` when given.
    pub fn redis_needing_replicas(&self, port: u16, master: Option<u16>, min_replicas: u32) -> anyhow::Result<()> {
        let port = port.to_string();
        let master = master.map(|m| m.to_string());
        let mut args = vec!["redis", port.as_str()];
        args.extend(master.as_deref());
        let min_replicas = min_replicas.to_string();
        self.run_with(&[("DATA_TIER_MIN_REPLICAS", min_replicas.as_str())], &args)
            .map(drop)
    }

    /// A Redis server with TLS only whose certificate is `name.crt`
    /// (`misnamed`: a certificate for `misnamed.invalid`).
    pub fn redis_with_certificate(&self, port: u16, name: &str) -> anyhow::Result<()> {
        self.run_with(&[("DATA_TIER_CERT", name)], &["redis", &port.to_string()])
            .map(drop)
    }

    /// Runs `sql` in `database` of the cluster on `port` as `postgres` and
    /// returns its unaligned, tuples-only output.
    pub fn psql(&self, port: u16, database: &str, sql: &str) -> anyhow::Result<String> {
        self.run(&["psql", &port.to_string(), database, sql])
    }

    /// A Sentinel on `port` (plain TCP) and `tls_port` watching `master`.
    pub fn sentinel(&self, port: u16, tls_port: u16, master_name: &str, master: u16) -> anyhow::Result<()> {
        self.run(&[
            "sentinel",
            &port.to_string(),
            &tls_port.to_string(),
            master_name,
            &master.to_string(),
        ])
        .map(drop)
    }

    /// Waits until the Sentinel on `sentinel` names a master other than
    /// `old`, and returns its port.
    pub fn wait_master(&self, sentinel: u16, master_name: &str, old: u16, timeout_secs: u32) -> anyhow::Result<u16> {
        let port = self.run(&[
            "wait-master",
            &sentinel.to_string(),
            master_name,
            &old.to_string(),
            &timeout_secs.to_string(),
        ])?;
        port.parse().with_context(|| format!("wait-master printed {port:?}"))
    }

    /// SIGKILLs the server on `port`.
    pub fn kill(&self, port: u16) -> anyhow::Result<()> {
        self.run(&["kill", &port.to_string()]).map(drop)
    }
}

impl Drop for DataTier {
    fn drop(&mut self) {
        if let Err(e) = self.run(&["stop"]) {
            eprintln!("stopping the data tier: {e:#}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
