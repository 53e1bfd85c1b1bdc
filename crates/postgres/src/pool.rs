//! The connection pool, with timeouts so a sick database gives a timely error.
//!
//! Each connection's I/O task runs on the runtime that opened it. The server
//! hands the pool a runtime of its own ([`PgPool::with_io_runtime`]) that
//! outlives every HTTP worker: a connection opened by one worker and checked
//! out by another's request must not die with the first worker's runtime
//! when idle workers stop first during a graceful shutdown.
//!
//! A server built with [`PgPool::per_worker`] gives each HTTP worker a pool
//! of its own instead ([`PgPool::adopt_worker`], `coffee-worker-pool`), whose
//! connections do their I/O on the worker's thread: no answer is handed from
//! one thread to another. The shared pool then serves only what runs outside
//! the workers.

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, Pool, RecycleError, RecycleResult};
use diesel_async::SimpleAsyncConnection;
use diesel_async::pooled_connection::PoolableConnection as _;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use tokio::runtime::Handle;

use coffee_ports::InfraError;
use coffee_worker_pool::Pools;

use crate::connect::{ConnectError, Connection, PgTarget};
use crate::error;

pub use crate::error::PoolError;

/// A pooled connection; it dereferences to diesel-async's connection.
pub type PgConnection = Object<PgManager>;

/// How the pool talks to PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgPoolSettings {
    /// `postgres://user:password@host:port/db`; may hold a password.
    pub url: SecretString,
    pub max_size: usize,
    /// How long a request waits for a free connection before `503`.
    pub acquire_timeout: Duration,
    /// How long opening a new connection may take.
    pub connect_timeout: Duration,
    /// Server-side cap on any one statement (`statement_timeout`).
    pub statement_timeout: Duration,
    /// Server-side cap on a transaction left idle
    /// (`idle_in_transaction_session_timeout`): the backstop that rolls back
    /// a transaction whose client went silent without closing its socket.
    pub idle_in_transaction_timeout: Duration,
    /// `false` sets `synchronous_commit = off`: a commit returns before its
    /// WAL reaches the disk, so a crash may forget the last fraction of a
    /// second of commits (each still all or nothing). Only for work that is
    /// safe to do again, such as the outbox relay's bookkeeping.
    pub durable_commits: bool,
}

impl PgPoolSettings {
    /// Settings for local development and tests.
    pub fn local(url: impl Into<String>) -> Self {
        Self {
            url: SecretString::from(url.into()),
            max_size: 16,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: Duration::from_secs(5),
            durable_commits: true,
        }
    }
}

/// A cloneable handle on the pool.
#[derive(Clone)]
pub struct PgPool {
    /// The shared pool, and the HTTP workers' own ([`PgPool::per_worker`]).
    pools: Pools<PgManager>,
    /// How long a request's writes, `COMMIT` included, may take.
    commit_deadline: Duration,
    /// Where connection tasks run, and where a discarded connection's cancel
    /// request is sent from; `None`: the runtime of whoever opens them.
    io: Option<Handle>,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("status", &self.pools.shared().status())
            .finish()
    }
}

impl PgPool {
    /// Builds the pool. No connection is opened until the first request, so a
    /// server can start while the database is still down and become ready later.
    /// Connections run their I/O on the runtime of the task that opens them.
    pub fn new(settings: &PgPoolSettings) -> anyhow::Result<Self> {
        Self::build(settings, None)
    }

    /// Like [`PgPool::new`], with every connection's I/O task on `io`, a
    /// runtime that outlives whatever checks connections out.
    pub fn with_io_runtime(settings: &PgPoolSettings, io: Handle) -> anyhow::Result<Self> {
        Self::build(settings, Some(io))
    }

    /// The server's pool: each of `workers` HTTP workers that adopts it
    /// ([`PgPool::adopt_worker`]) gets a pool of its own of
    /// `max_size / workers` connections (at least one) whose I/O runs on its
    /// thread; everything else (the main runtime's tasks) shares a pool of
    /// [`coffee_worker_pool::OUTSIDE_WORKERS`] on `io`.
    pub fn per_worker(settings: &PgPoolSettings, io: Handle, workers: usize) -> anyhow::Result<Self> {
        let shared = PgPoolSettings {
            max_size: coffee_worker_pool::OUTSIDE_WORKERS,
            ..settings.clone()
        };
        let mut pool = Self::build(&shared, Some(io))?;
        let manager = pool.pools.shared().manager();
        let (target, setup, learned) = (
            Arc::clone(&manager.target),
            manager.setup.clone(),
            Arc::clone(&manager.learned),
        );
        let own = PgPoolSettings {
            max_size: coffee_worker_pool::share(settings.max_size, workers),
            ..settings.clone()
        };
        pool.pools = Pools::per_worker(pool.pools.shared().clone(), "PostgreSQL", move || {
            let manager = PgManager {
                target: Arc::clone(&target),
                setup: setup.clone(),
                connect_timeout: own.connect_timeout,
                // The adopting worker's runtime.
                io: None,
                learned: Arc::clone(&learned),
            };
            pool_of(manager, &own)
        });
        Ok(pool)
    }

    /// Gives the calling HTTP worker its own pool ([`PgPool::per_worker`];
    /// nothing otherwise). Called on the worker's thread, in its runtime.
    pub fn adopt_worker(&self) {
        self.pools.adopt();
    }

    fn build(settings: &PgPoolSettings, io: Option<Handle>) -> anyhow::Result<Self> {
        let manager = PgManager {
            target: Arc::new(PgTarget::parse(settings.url.expose_secret())?),
            setup: session_setup(settings),
            connect_timeout: settings.connect_timeout,
            io: io.clone(),
            learned: Arc::new(tokio::sync::OnceCell::new()),
        };
        Ok(Self {
            pools: Pools::shared_only(pool_of(manager, settings)?),
            io,
            commit_deadline: settings.statement_timeout,
        })
    }

    /// How long a round trip that commits may take: the statement timeout,
    /// which PostgreSQL itself does not apply to a commit's wait for a
    /// synchronous standby.
    pub(crate) fn commit_deadline(&self) -> Duration {
        self.commit_deadline
    }

    /// Opens one connection outside the pool, to tell a setting that can
    /// never work (a certificate not accepted, a server refusing the
    /// connection) from a server that is only unreachable for now.
    pub async fn first_connection(&self) -> Result<(), ConnectError> {
        let manager = self.pools.shared().manager();
        manager.target.connect(manager.connect_timeout).await.map(drop)
    }

    /// Checks out a connection, or says the database is unavailable.
    pub async fn get(&self) -> Result<PgConnection, InfraError> {
        self.pools.get().await.map_err(error::from_pool)
    }

    /// Takes `conn` out of the pool for good and closes it at once, then asks
    /// the server to cancel whatever statement it still runs for it (one that
    /// waits on a lock, say), so the server rolls back its transaction now.
    /// For a connection whose transaction was cut short: returned to the
    /// pool, it would sit idle holding that transaction's locks until some
    /// later checkout happened to pick it.
    pub(crate) fn discard(&self, conn: PgConnection) {
        let conn = Object::take(conn);
        let cancel = conn.cancel_token();
        // Over the same TLS settings as the connection.
        let target = Arc::clone(&self.pools.shared().manager().target);
        let close_then_cancel = async move {
            // Dropping the connection ends its I/O task, which closes the socket.
            drop(conn);
            if let Err(e) = target.cancel(cancel).await {
                tracing::debug!(error = %e, "cancel request for a discarded connection failed");
            }
        };
        // With no runtime at all (the process is ending), the socket closes
        // with the process.
        if let Some(runtime) = self.io.clone().or_else(|| Handle::try_current().ok()) {
            drop(runtime.spawn(close_then_cancel));
        }
    }

    /// Connections in use and the pool's size, for metrics.
    pub fn usage(&self) -> (usize, usize) {
        self.pools.usage()
    }
}

fn pool_of(manager: PgManager, settings: &PgPoolSettings) -> anyhow::Result<Pool<PgManager>> {
    Ok(Pool::builder(manager)
        .max_size(settings.max_size)
        .runtime(deadpool::Runtime::Tokio1)
        .wait_timeout(Some(settings.acquire_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(settings.connect_timeout))
        .build()?)
}

/// Opens the pool's connections: through [`PgTarget`] (TLS, several hosts),
/// on the I/O runtime when there is one, each set up for the service.
pub struct PgManager {
    target: Arc<PgTarget>,
    /// The `SET` statements every new connection runs.
    setup: String,
    connect_timeout: Duration,
    io: Option<Handle>,
    /// Whether the server's statement-timeout text is known (see [`error`]).
    learned: Arc<tokio::sync::OnceCell<()>>,
}

impl std::fmt::Debug for PgManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgManager")
            .field("target", &self.target)
            .field("io", &self.io.is_some())
            .finish_non_exhaustive()
    }
}

impl managed::Manager for PgManager {
    type Type = Connection;
    type Error = ConnectError;

    async fn create(&self) -> Result<Connection, ConnectError> {
        let target = Arc::clone(&self.target);
        let learned = Arc::clone(&self.learned);
        let setup = self.setup.clone();
        let timeout = self.connect_timeout;
        let open = async move {
            // Once per pool (retried until it works), on a connection of its
            // own that is closed afterwards.
            let _ = learned.get_or_try_init(|| learn_timeout_texts(&target, timeout)).await;
            let mut conn = target.connect(timeout).await?;
            conn.batch_execute(&setup)
                .await
                .map_err(|e| ConnectError::Unreachable(format!("setting up the session: {e}")))?;
            Ok(conn)
        };
        on_runtime(self.io.as_ref(), open).await
    }

    /// No round trip (a `SELECT 1` on every checkout was one in front of
    /// every request). A connection is dropped when its socket has closed (a
    /// restarted server closes them), a transaction was left open, or it was
    /// opened before some connection learned that its server no longer takes
    /// writes (a failover: [`error::opened_before_a_failover`]). One that died
    /// silently fails its first statement (`503`) and is then dropped.
    async fn recycle(&self, conn: &mut Connection, metrics: &Metrics) -> RecycleResult<ConnectError> {
        if std::thread::panicking() || conn.is_broken() {
            return Err(RecycleError::message("broken connection"));
        }
        if error::opened_before_a_failover(metrics.created) {
            return Err(RecycleError::message("opened before the server stopped taking writes"));
        }
        Ok(())
    }
}

/// What every new connection runs once. `client_connection_check_interval`:
/// a backend busy for a client that has gone (waiting on a lock, say)
/// notices within a second and rolls back, instead of when it next writes.
fn session_setup(settings: &PgPoolSettings) -> String {
    let statement_timeout_ms = settings.statement_timeout.as_millis();
    let idle_in_transaction_ms = settings.idle_in_transaction_timeout.as_millis();
    let commit_mode = if settings.durable_commits {
        ""
    } else {
        "; SET synchronous_commit = off"
    };
    format!(
        "SET statement_timeout = {statement_timeout_ms}; \
         SET idle_in_transaction_session_timeout = {idle_in_transaction_ms}; \
         SET client_connection_check_interval = 1000; \
         SET application_name = 'coffee'; SET TIME ZONE 'UTC'{commit_mode}"
    )
}

/// Runs `open` (which opens a connection) as a task on `io` when given, so
/// the connection's I/O task is spawned there.
fn on_runtime(
    io: Option<&Handle>,
    open: impl Future<Output = Result<Connection, ConnectError>> + Send + 'static,
) -> BoxFuture<'static, Result<Connection, ConnectError>> {
    match io {
        Some(io) => {
            let task = io.spawn(open);
            async move {
                task.await
                    .unwrap_or_else(|e| Err(ConnectError::Unreachable(format!("opening a connection: {e}"))))
            }
            .boxed()
        }
        None => open.boxed(),
    }
}

/// Provokes one statement timeout and one lock timeout on throwaway
/// connections and remembers the server's texts for them, in the server's
/// own language (see [`error`]). The connections are closed afterwards, so
/// no pooled connection ever runs with the probes' 1 ms timeouts.
async fn learn_timeout_texts(target: &PgTarget, timeout: Duration) -> Result<(), ()> {
    let probe = async {
        let mut conn = target.connect(timeout).await?;
        conn.batch_execute("SET statement_timeout = 1").await?;
        error::learn_statement_timeout(
            &provoked_error(
                &mut conn,
                "SELECT pg_sleep(0.05)",
                "a 1 ms statement timeout did not cancel a 50 ms sleep",
            )
            .await?,
        );
        // A session-level advisory lock held by one connection, asked for by
        // a second that waits at most 1 ms for it.
        let key = i64::from_le_bytes(uuid::Uuid::new_v4().as_u64_pair().0.to_le_bytes());
        let mut holder = target.connect(timeout).await?;
        holder.batch_execute(&format!("SELECT pg_advisory_lock({key})")).await?;
        conn.batch_execute("SET statement_timeout = 0; SET lock_timeout = 1")
            .await?;
        error::learn_lock_timeout(
            &provoked_error(
                &mut conn,
                &format!("SELECT pg_advisory_lock({key})"),
                "a 1 ms lock timeout did not cut a wait for a held lock",
            )
            .await?,
        );
        anyhow::Ok(())
    };
    probe.await.map_err(|e| {
        tracing::warn!(
            error = format!("{e:#}"),
            "could not learn the server's statement- and lock-timeout messages; will try again"
        );
    })
}

/// The message of the error `sql` must fail with on `conn` (`unexpected`
/// when it does not fail).
async fn provoked_error(conn: &mut Connection, sql: &str, unexpected: &str) -> anyhow::Result<String> {
    match conn.batch_execute(sql).await {
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::Unknown, info)) => {
            Ok(info.message().to_owned())
        }
        Err(other) => Err(other.into()),
        Ok(()) => Err(anyhow::anyhow!("{unexpected}")),
    }
}
