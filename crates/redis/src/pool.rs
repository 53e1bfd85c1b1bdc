//! The Redis connection pool and the key namespace.
//!
//! The pool (deadpool) has a manager of its own rather than deadpool-redis's,
//! for four things that one does not offer:
//! - each connection's I/O task runs on the runtime the server hands over
//!   ([`RedisPool::with_io_runtime`]), which outlives every HTTP worker, so
//!   a connection opened by one worker and used by another's request does
//!   not die when idle workers stop first during a graceful shutdown;
//! - `rediss://` with a CA file of the operator's (`REDIS_CA_FILE`);
//! - the master found through Sentinel, with the lookup bounded by the
//!   connect timeout, and connections to a master demoted by a failover
//!   dropped on checkout (`ROLE`) or when answered `READONLY`;
//! - a connection checked on checkout only when its last check is older than
//!   [`CHECKED_FOR`] (deadpool-redis sends `PING` on every checkout: a
//!   second round trip for every request that reads a session), and one
//!   whose command failed on its connection dropped instead of returned;
//! - `WAIT` for replicas after the writes a failover must not lose
//!   ([`RedisPool::replicated`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deadpool::Runtime;
use deadpool::managed::{self, Object, RecycleError, Timeouts};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisError, RedisFuture,
    TlsCertificates, TlsMode, Value,
};
use tokio::runtime::Handle;

use coffee_ports::InfraError;
use coffee_worker_pool::Pools;

use crate::error;

/// How long a connection's last check (`PING`, or `ROLE` through Sentinel)
/// vouches for it: a checkout within this of it hands the connection out
/// without a round trip (as HikariCP's `aliveBypassWindowMs`, 500 ms too).
/// A connection in steady use is checked about twice a second; one that
/// died since its check fails the one command sent on it and is dropped
/// ([`Connection`]); through Sentinel, a connection to a master demoted by a
/// failover that still answers reads is dropped at most this long after
/// the demotion (its writes are refused `READONLY` at once).
pub const CHECKED_FOR: Duration = Duration::from_millis(500);

/// How the adapter talks to Redis.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` (TLS) `[user:password@]host:port[/db]`;
    /// may hold a password. With [`RedisSettings::sentinel`], the host is
    /// ignored: the URL gives the scheme, credentials and database number.
    pub url: String,
    /// PEM file of the CA that signed the server's certificate (`rediss://`
    /// only); the system's roots when `None`.
    pub ca_file: Option<PathBuf>,
    /// Reach the master through Sentinel.
    pub sentinel: Option<SentinelSettings>,
    /// Writes that must survive a failover (a session, its rotation, a
    /// revocation) are answered only once this many replicas have them
    /// (`WAIT`); `0` answers at once.
    pub min_replicas_ack: u32,
    /// How long such a write waits for the replicas before `503`.
    pub replica_ack_timeout: Duration,
    /// Prepended to every key (`"coffee:"` by default).
    pub key_prefix: String,
    pub max_size: usize,
    /// Connect, response and pool-wait timeout: a hung Redis costs at most this.
    pub timeout: Duration,
}

/// Where the Sentinels are and which master to ask them for.
#[derive(Debug, Clone)]
pub struct SentinelSettings {
    /// `host:port` of each Sentinel, reached over plain TCP.
    pub addresses: Vec<(String, u16)>,
    pub master_name: String,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &"[redacted]")
            .field("ca_file", &self.ca_file)
            .field("sentinel", &self.sentinel)
            .field("min_replicas_ack", &self.min_replicas_ack)
            .field("replica_ack_timeout", &self.replica_ack_timeout)
            .field("key_prefix", &self.key_prefix)
            .field("max_size", &self.max_size)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisSettings {
    /// Settings for local development and tests.
    pub fn local(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_file: None,
            sentinel: None,
            min_replicas_ack: 0,
            replica_ack_timeout: Duration::from_millis(500),
            key_prefix: key_prefix.into(),
            max_size: 16,
            timeout: Duration::from_secs(2),
        }
    }
}

/// Where new connections go: one server, or whichever master the Sentinels
/// name at the time.
enum Source {
    Direct(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// Opens connections (on `io` when given, so that their I/O task outlives
/// the HTTP workers) and checks them on checkout.
struct IoManager {
    source: Arc<Source>,
    config: AsyncConnectionConfig,
    timeout: Duration,
    io: Option<Handle>,
    ping: AtomicUsize,
}

impl std::fmt::Debug for IoManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoManager")
            .field("sentinel", &matches!(*self.source, Source::Sentinel(_)))
            .field("io", &self.io.is_some())
            .finish_non_exhaustive()
    }
}

impl IoManager {
    async fn open(source: Arc<Source>, config: AsyncConnectionConfig) -> Result<MultiplexedConnection, RedisError> {
        match &*source {
            Source::Direct(client) => client.get_multiplexed_async_connection_with_config(&config).await,
            Source::Sentinel(sentinel) => {
                // Asks the Sentinels for the master now, and checks that the
                // server it names says it is the master (`ROLE`).
                let client = sentinel.lock().await.async_get_client().await?;
                client.get_multiplexed_async_connection_with_config(&config).await
            }
        }
    }
}

/// A pooled connection and when it was last checked.
struct Checked {
    conn: MultiplexedConnection,
    checked_at: Instant,
}

impl managed::Manager for IoManager {
    type Type = Checked;
    type Error = RedisError;

    async fn create(&self) -> Result<Checked, RedisError> {
        // Boxed: opening a connection (TLS, Sentinel) is a future of many
        // kilobytes, and deadpool's checkout future holds this one in
        // place, so every checkout, nearly all served by an idle
        // connection, moved those kilobytes; now only an opening pays.
        let open = Box::pin(Self::open(Arc::clone(&self.source), self.config.clone()));
        // The Sentinel lookup has no timeout of its own.
        let timeout = self.timeout;
        let bounded = async move {
            tokio::time::timeout(timeout, open).await.unwrap_or_else(|_| {
                Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no Redis connection within the timeout",
                )))
            })
        };
        let conn = match &self.io {
            None => bounded.await,
            Some(io) => io
                .spawn(bounded)
                .await
                .map_err(|e| RedisError::from(std::io::Error::other(e)))?,
        }?;
        Ok(Checked {
            conn,
            checked_at: Instant::now(),
        })
    }

    /// Nothing when the connection was checked within [`CHECKED_FOR`];
    /// otherwise one round trip, as deadpool-redis's `PING`. Through
    /// Sentinel it is a `ROLE` instead, so a connection to a master demoted
    /// by a failover is dropped (its writes would answer `READONLY`, its
    /// reads could be stale) and a new one goes to the new master.
    async fn recycle(&self, checked: &mut Checked, _: &managed::Metrics) -> managed::RecycleResult<RedisError> {
        if checked.checked_at.elapsed() < CHECKED_FOR {
            return Ok(());
        }
        let conn = &mut checked.conn;
        if matches!(*self.source, Source::Sentinel(_)) {
            let role: Vec<Value> = redis::cmd("ROLE").query_async(conn).await?;
            match role.first() {
                Some(Value::BulkString(role)) if role.as_slice() == b"master" => {}
                _ => return Err(RecycleError::message("the server is no longer the master")),
            }
        } else {
            let number = self.ping.fetch_add(1, Ordering::Relaxed).to_string();
            let answer: String = redis::cmd("PING").arg(&number).query_async(conn).await?;
            if answer != number {
                return Err(RecycleError::message("unexpected PING answer"));
            }
        }
        checked.checked_at = Instant::now();
        Ok(())
    }
}

/// A pooled Redis connection; commands run on it as on any connection. One
/// that is answered `READONLY` (its server was demoted to a replica behind a
/// fixed address), or whose command failed on the connection itself (closed,
/// timed out, unreadable), is dropped instead of going back to the pool: a
/// checkout soon after its last check does not check it again
/// ([`CHECKED_FOR`]), so the pool must not get it back.
pub struct Connection {
    conn: Option<Object<IoManager>>,
    unusable: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("unusable", &self.unusable).finish()
    }
}

impl Connection {
    fn inner(&mut self) -> &mut MultiplexedConnection {
        match self.conn.as_mut() {
            Some(checked) => &mut checked.conn,
            None => unreachable!("the connection is only taken on drop"),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.unusable
            && let Some(conn) = self.conn.take()
        {
            drop(Object::take(conn));
        }
    }
}

/// Whether an answer says the server is a replica now.
fn is_read_only(value: &Value) -> bool {
    match value {
        Value::ServerError(e) => e.code() == "READONLY",
        Value::Array(values) => values.iter().any(is_read_only),
        _ => false,
    }
}

/// Whether a failed command leaves its connection unusable: answered
/// `READONLY`, or failed on the connection (I/O, a timeout, an answer that
/// could not be parsed) rather than refused by the server.
fn unusable_after(error: &RedisError) -> bool {
    error.is_io_error() || error.is_unrecoverable_error() || error::codes(error).iter().any(|code| code == "READONLY")
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let answer = self.inner().req_packed_command(cmd).await;
            if answer.as_ref().map_or_else(unusable_after, is_read_only) {
                self.unusable = true;
            }
            answer
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let answers = self.inner().req_packed_commands(cmd, offset, count).await;
            if answers
                .as_ref()
                .map_or_else(unusable_after, |values| values.iter().any(is_read_only))
            {
                self.unusable = true;
            }
            answers
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.as_ref().map_or(0, |checked| checked.conn.get_db())
    }
}

/// A cloneable handle on the pool plus the key prefix.
#[derive(Clone)]
pub struct RedisPool {
    /// The shared pool, and the HTTP workers' own ([`RedisPool::per_worker`]).
    pools: Pools<IoManager>,
    prefix: String,
    min_replicas_ack: u32,
    replica_ack_timeout: Duration,
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPool")
            .field("prefix", &self.prefix)
            .field("status", &self.pools.shared().status())
            .finish()
    }
}

impl RedisPool {
    /// Builds the pool; connections are opened lazily, so the server can start
    /// before Redis does and become ready when it appears. Connections run
    /// their I/O on the runtime of the task that opens them.
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        Self::build(settings, None)
    }

    /// Like [`RedisPool::new`], with every connection's I/O task on `io`, a
    /// runtime that outlives whatever checks connections out.
    pub fn with_io_runtime(settings: &RedisSettings, io: Handle) -> anyhow::Result<Self> {
        Self::build(settings, Some(io))
    }

    /// The server's pool: each of `workers` HTTP workers that adopts it
    /// ([`RedisPool::adopt_worker`]) gets a pool of its own of
    /// `max_size / workers` connections (at least one) whose I/O runs on its
    /// thread, as the PostgreSQL adapter's does; everything
    /// else shares a pool of [`coffee_worker_pool::OUTSIDE_WORKERS`] on `io`.
    pub fn per_worker(settings: &RedisSettings, io: Handle, workers: usize) -> anyhow::Result<Self> {
        let mut pool = Self::build(
            &RedisSettings {
                max_size: coffee_worker_pool::OUTSIDE_WORKERS,
                ..settings.clone()
            },
            Some(io),
        )?;
        let source = Arc::clone(&pool.pools.shared().manager().source);
        let own = RedisSettings {
            max_size: coffee_worker_pool::share(settings.max_size, workers),
            ..settings.clone()
        };
        pool.pools = Pools::per_worker(pool.pools.shared().clone(), "Redis", move || {
            // The adopting worker's runtime.
            pool_of(Arc::clone(&source), &own, None)
        });
        Ok(pool)
    }

    /// Gives the calling HTTP worker its own pool ([`RedisPool::per_worker`];
    /// nothing otherwise). Called on the worker's thread, in its runtime.
    pub fn adopt_worker(&self) {
        self.pools.adopt();
    }

    fn build(settings: &RedisSettings, io: Option<Handle>) -> anyhow::Result<Self> {
        Ok(Self {
            pools: Pools::shared_only(pool_of(Arc::new(source(settings)?), settings, io)?),
            prefix: settings.key_prefix.clone(),
            min_replicas_ack: settings.min_replicas_ack,
            replica_ack_timeout: settings.replica_ack_timeout,
        })
    }

    /// Checks out a connection, or says Redis is unavailable.
    pub async fn get(&self) -> Result<Connection, InfraError> {
        self.pools
            .get()
            .await
            .map(|conn| Connection {
                conn: Some(conn),
                unusable: false,
            })
            .map_err(error::from_pool)
    }

    /// Answers once [`RedisSettings::min_replicas_ack`] replicas have every
    /// write sent so far on `conn` (`WAIT`), or says Redis is unavailable:
    /// a write only the master holds would be lost by a failover (a session
    /// gone, a revoked token valid again).
    pub async fn replicated(&self, conn: &mut Connection) -> Result<(), InfraError> {
        if self.min_replicas_ack == 0 {
            return Ok(());
        }
        let timeout_ms = u64::try_from(self.replica_ack_timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let acknowledged: u32 = redis::cmd("WAIT")
            .arg(self.min_replicas_ack)
            .arg(timeout_ms)
            .query_async(conn)
            .await
            .map_err(error::from_redis)?;
        if acknowledged >= self.min_replicas_ack {
            Ok(())
        } else {
            Err(InfraError::unavailable(
                error::DEPENDENCY,
                anyhow::anyhow!(
                    "{acknowledged} of the {} replicas required acknowledged the write within {timeout_ms} ms",
                    self.min_replicas_ack
                ),
            ))
        }
    }

    /// Opens one connection, to tell a setting that can never work (the
    /// server's certificate not accepted, credentials refused) from a
    /// server that is only unreachable for now.
    pub async fn first_connection(&self) -> Result<(), FirstConnection> {
        match self.pools.shared().get().await {
            Ok(_) => Ok(()),
            Err(managed::PoolError::Backend(e)) => Err(classify(&e)),
            Err(e) => Err(FirstConnection::Unreachable(e.to_string())),
        }
    }

    /// The full key for a logical key: `"{prefix}{suffix}"`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Connections open, idle or in use, of the shared pool.
    pub fn open_connections(&self) -> usize {
        self.pools.shared().status().size
    }

    /// Connections in use and the pools' size, for metrics.
    pub fn usage(&self) -> (usize, usize) {
        self.pools.usage()
    }
}

fn pool_of(
    source: Arc<Source>,
    settings: &RedisSettings,
    io: Option<Handle>,
) -> anyhow::Result<managed::Pool<IoManager>> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(settings.timeout))
        .set_response_timeout(Some(settings.timeout));
    let manager = IoManager {
        source,
        config,
        timeout: settings.timeout,
        io,
        ping: AtomicUsize::new(0),
    };
    Ok(managed::Pool::builder(manager)
        .max_size(settings.max_size)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(settings.timeout),
            create: Some(settings.timeout),
            recycle: Some(settings.timeout),
        })
        .build()?)
}

/// The client for `settings`: TLS from the URL's scheme with the CA file
/// when given, through Sentinel when configured.
fn source(settings: &RedisSettings) -> anyhow::Result<Source> {
    let info = settings.url.as_str().into_connection_info()?;
    let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
    if settings.ca_file.is_some() && !tls {
        anyhow::bail!("REDIS_CA_FILE is set but REDIS_URL is not rediss://");
    }
    let certificates = match &settings.ca_file {
        Some(path) => Some(TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(path).map_err(|e| anyhow::anyhow!("REDIS_CA_FILE {}: {e}", path.display()))?),
        }),
        None => None,
    };
    let Some(sentinel) = &settings.sentinel else {
        return Ok(Source::Direct(match certificates {
            Some(certificates) => Client::build_with_tls(info, certificates)?,
            None => Client::open(info)?,
        }));
    };
    let redis = info.redis_settings();
    let addresses = sentinel
        .addresses
        .iter()
        .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
    let mut builder = SentinelClientBuilder::new(addresses, &sentinel.master_name, SentinelServerType::Master)?
        .set_client_to_redis_db(redis.db());
    if let Some(username) = redis.username() {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = redis.password() {
        builder = builder.set_client_to_redis_password(password);
    }
    if tls {
        builder = builder.set_client_to_redis_tls_mode(TlsMode::Secure);
        if let Some(certificates) = certificates {
            builder = builder.set_client_to_redis_certificates(certificates);
        }
    }
    Ok(Source::Sentinel(tokio::sync::Mutex::new(builder.build()?)))
}

/// Why a first connection failed (see [`RedisPool::first_connection`]).
#[derive(Debug, thiserror::Error)]
pub enum FirstConnection {
    /// TLS failed: the certificate did not verify against the CA
    /// (`REDIS_CA_FILE` or the system's roots) or names another host.
    #[error("TLS with Redis failed: {0}")]
    Certificate(String),
    /// Redis answered and refused the credentials.
    #[error("Redis refused the connection: {0}")]
    Refused(String),
    #[error("Redis could not be reached: {0}")]
    Unreachable(String),
}

fn classify(error: &RedisError) -> FirstConnection {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        let tls = current.downcast_ref::<rustls::Error>().or_else(|| {
            current
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            return FirstConnection::Certificate(tls.to_string());
        }
        source = current.source();
    }
    // The redis crate keeps only the text of some TLS failures; rustls's own
    // wording (not a server's, so not translated) still says what failed.
    let text = error.to_string();
    if text.contains("invalid peer certificate") || text.contains("certificate not valid") {
        return FirstConnection::Certificate(text);
    }
    match error.kind() {
        redis::ErrorKind::AuthenticationFailed => FirstConnection::Refused(text),
        _ if error
            .code()
            .is_some_and(|code| code == "WRONGPASS" || code == "NOAUTH" || code == "NOPERM") =>
        {
            FirstConnection::Refused(text)
        }
        _ => FirstConnection::Unreachable(text),
    }
}
