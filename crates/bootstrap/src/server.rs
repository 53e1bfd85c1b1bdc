//! Wiring: adapters into use cases into the HTTP server.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::web;
use anyhow::Context as _;
use secrecy::ExposeSecret;

use coffee_application::{
    CachedMenus, CompactSalesStatistics, OutboxAdmin, PurgeIdempotencyKeys, RelayCounters, RelayOutbox,
};
use coffee_collector::CollectorClient;
use coffee_crypto::{Argon2Hasher, JwtCodec};
use coffee_http::{AppState, Ports, StateSettings};
use coffee_ports::{Clock, SystemClock, TokenCodec};
use coffee_postgres::ConnectError;
use coffee_postgres::{
    PgIdempotencyRecords, PgMenuRepository, PgOrderStore, PgOutboxStore, PgPointStore, PgPool, PgPoolSettings, PgProbe,
    PgSalesStatistics, PgUserRepository,
};
use coffee_redis::{
    FirstConnection, RedisClientThrottle, RedisLoginThrottle, RedisPool, RedisProbe, RedisSessionStore,
};

use crate::config::{Config, HousekeepingConfig, OutboxConfig};

/// A built, bound, not yet running API server.
pub struct Application {
    port: u16,
    /// The admin listener's port, when `ADMIN_BIND_ADDR` is set.
    admin_port: Option<u16>,
    server: Server,
    /// Periodic housekeeping, stopped when the server stops.
    background: Vec<tokio::task::JoinHandle<()>>,
    relay: RelayHandle,
    shutdown_timeout: std::time::Duration,
    shutdown_drain: std::time::Duration,
    drain: coffee_http::Drain,
    /// SIGTERM and SIGINT, caught from the moment the instance is built.
    signals: Option<Signals>,
    /// The runtime the connections outside the HTTP workers do their I/O on
    /// (see [`IoRuntime`]).
    io: IoRuntime,
}

/// A runtime of its own for the connection tasks of the pools used outside
/// the HTTP workers (the background pool, and the request pools' shared part;
/// each worker's own connections run on its thread). actix runs
/// each HTTP worker on a runtime of its own and, on a graceful stop, stops
/// idle workers first: a connection opened by such a worker (its I/O task
/// spawned there) but checked out by a request of a busy worker died with
/// it ("connection closed", `503`). This runtime outlives every worker; it
/// is shut down once the server and the relay have stopped.
struct IoRuntime(Option<tokio::runtime::Runtime>);

impl IoRuntime {
    fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("coffee-io")
            .enable_all()
            .build()
            .context("starting the connections' I/O runtime")?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> anyhow::Result<tokio::runtime::Handle> {
        self.0
            .as_ref()
            .map(|runtime| runtime.handle().clone())
            .context("the I/O runtime has stopped")
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed on the async
        // thread this may run on; its remaining tasks are connection tasks.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The outbox relay task and the switch that stops it.
struct RelayHandle {
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    counters: Arc<RelayCounters>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Opens one connection to PostgreSQL and one to Redis, so that a setting
/// that can never work stops the start with a message naming it: a
/// certificate that does not verify (wrong CA, wrong host name), a server
/// that refuses the connection (`sslmode=disable` against `hostssl` only,
/// wrong credentials). A server that is only unreachable does not stop the
/// start: the instance serves `503` until it appears.
async fn check_settings_against_servers(pg: &PgPool, redis: &RedisPool) -> anyhow::Result<()> {
    let database = async {
        match pg.first_connection().await {
            Ok(_) => Ok(()),
            Err(e @ (ConnectError::Certificate(_) | ConnectError::Refused(_))) => Err(anyhow::anyhow!(
                "DATABASE_URL (sslmode, sslrootcert, host names, credentials): {e}"
            )),
            Err(e @ ConnectError::Unreachable(_)) => {
                tracing::warn!(error = %e, "PostgreSQL is not reachable yet; serving 503 until it is");
                Ok(())
            }
        }
    };
    let cache = async {
        match redis.first_connection().await {
            Ok(()) => Ok(()),
            Err(e @ FirstConnection::Certificate(_)) => Err(anyhow::anyhow!("REDIS_URL / REDIS_CA_FILE: {e}")),
            Err(e @ FirstConnection::Refused(_)) => Err(anyhow::anyhow!("REDIS_URL (credentials): {e}")),
            Err(e @ FirstConnection::Unreachable(_)) => {
                tracing::warn!(error = %e, "Redis is not reachable yet; serving 503 until it is");
                Ok(())
            }
        }
    };
    let (database, cache) = tokio::join!(database, cache);
    database.and(cache)
}

/// The number of HTTP workers when `HTTP_WORKERS` is not set: actix-server's
/// own default.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

impl Application {
    /// Builds the pools, the use cases and the server, and binds `BIND_ADDR`
    /// (port 0 picks a free port: see [`Application::port`]). One connection
    /// to each of PostgreSQL and Redis checks the settings; the server still
    /// starts (and reports the dependencies down) while they are unreachable.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let io = IoRuntime::start()?;
        // Each HTTP worker gets its share of the request pools' connections,
        // opened and read on its own thread (`coffee-worker-pool`).
        let workers = config.http.workers.unwrap_or_else(default_workers);
        let pg = PgPool::per_worker(&config.database.requests, io.handle()?, workers)
            .context("building the PostgreSQL pool")?;
        // Background work (the relay, housekeeping) gets a pool of its own,
        // with commits that do not wait for the disk (see `DatabaseConfig`).
        let background_pg = PgPool::with_io_runtime(&config.database.background, io.handle()?)
            .context("building the background PostgreSQL pool")?;
        let redis = RedisPool::per_worker(&config.redis, io.handle()?, workers).context("building the Redis pool")?;
        check_settings_against_servers(&pg, &redis).await?;

        let metrics = crate::telemetry::metrics_handle()?;
        let drain = coffee_http::Drain::default();
        let state = web::Data::new(build_state(config, &pg, &redis, metrics.clone(), drain.clone())?);
        let relay = start_relay(&config.outbox, &background_pg)?;
        let mut background = maintenance_tasks(&config.housekeeping, &background_pg);
        background.push(tokio::spawn(sample_gauges(
            pg.clone(),
            redis.clone(),
            OutboxAdmin::new(Arc::new(PgOutboxStore::new(background_pg.clone()))),
            Arc::clone(&relay.counters),
            metrics,
            config.housekeeping.gauge_sample_interval,
        )));
        let http = &config.http;
        let listener = TcpListener::bind(&http.bind_addr).with_context(|| format!("binding {}", http.bind_addr))?;
        let port = listener.local_addr()?.port();
        let admin = http
            .admin_bind_addr
            .as_ref()
            .map(|addr| TcpListener::bind(addr).with_context(|| format!("binding ADMIN_BIND_ADDR {addr}")))
            .transpose()?;
        let admin_port = admin
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?
            .map(|a| a.port());
        // Signals are ours (see `run_until_stopped`): actix would stop
        // accepting at once, while a balancer still routes here. Caught from
        // before the server starts: an instance may be stopped the moment it
        // is ready, and a signal with no handler yet would end it undrained.
        let signals = Signals::new()
            .inspect_err(|e| {
                tracing::error!(error = %e, "could not listen for SIGTERM and SIGINT; stop this instance with SIGKILL");
            })
            .ok();
        let server = coffee_http::server(
            listener,
            admin,
            state,
            &coffee_http::ServeSettings {
                // The count the pools were shared out for.
                workers: Some(workers),
                shutdown_timeout: http.shutdown_timeout,
                request_timeout: http.request_timeout,
                keep_alive: http.keep_alive,
                cors_allowed_origins: http.cors_allowed_origins.clone(),
                on_worker_start: {
                    let (pg, redis) = (pg.clone(), redis.clone());
                    coffee_http::WorkerStart::new(move || {
                        pg.adopt_worker();
                        redis.adopt_worker();
                    })
                },
            },
        )?;
        tracing::info!(port, admin_port, "listening");
        Ok(Self {
            port,
            admin_port,
            server,
            background,
            relay,
            shutdown_timeout: http.shutdown_timeout,
            shutdown_drain: http.shutdown_drain,
            drain,
            signals,
            io,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin listener's bound port, when `ADMIN_BIND_ADDR` is set.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin_port
    }

    /// Serves until SIGTERM or SIGINT, then drains: `/health/ready` answers
    /// `503` and responses ask clients to reconnect elsewhere while the
    /// instance keeps serving for `SHUTDOWN_DRAIN_SECS`; then it stops
    /// accepting and lets in-flight requests finish (up to
    /// `SHUTDOWN_TIMEOUT_SECS`). A second signal stops it at once.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let signals = tokio::spawn(stop_on_signals(
            self.signals,
            handle,
            self.drain.clone(),
            self.shutdown_drain,
        ));
        let result = self.server.await;
        signals.abort();
        for task in self.background {
            task.abort();
        }
        // The relay finishes its current batch, gives back any claim it still
        // holds, and stops; unsent events stay in the outbox for the others.
        let _ = self.relay.stop.send(true);
        if tokio::time::timeout(self.shutdown_timeout, self.relay.task)
            .await
            .is_err()
        {
            tracing::warn!("the outbox relay did not stop in time; its leases will expire");
        }
        // Nothing uses a connection any more.
        drop(self.io);
        result
    }

    /// The relay's delivered / retried / dead counters.
    pub fn relay_counters(&self) -> Arc<RelayCounters> {
        Arc::clone(&self.relay.counters)
    }
}

/// The shutdown sequence the signals drive (see
/// [`Application::run_until_stopped`]).
async fn stop_on_signals(
    signals: Option<Signals>,
    server: actix_web::dev::ServerHandle,
    drain: coffee_http::Drain,
    drain_for: std::time::Duration,
) {
    // Without handlers (logged by `Application::build`), only SIGKILL stops it.
    let Some(mut signals) = signals else { return };
    let signal = signals.next().await;
    drain.start();
    tracing::info!(signal, drain_secs = drain_for.as_secs(), "draining before shutdown");
    tokio::select! {
        () = tokio::time::sleep(drain_for) => {}
        signal = signals.next() => {
            tracing::warn!(signal, "second signal: stopping at once");
            server.stop(false).await;
            return;
        }
    }
    tracing::info!("no longer accepting connections; finishing in-flight requests");
    tokio::select! {
        () = server.stop(true) => {}
        signal = signals.next() => {
            tracing::warn!(signal, "second signal: stopping at once");
            server.stop(false).await;
        }
    }
}

/// SIGTERM and SIGINT, whichever comes.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The name of the next signal.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// The outbox's operator commands, on their own small pool
/// (`config.database.operator`).
pub fn outbox_admin(pool: &PgPoolSettings) -> anyhow::Result<OutboxAdmin> {
    let pg = PgPool::new(pool)?;
    Ok(OutboxAdmin::new(Arc::new(PgOutboxStore::new(pg))))
}

/// Starts this instance's outbox relay.
fn start_relay(config: &OutboxConfig, pg: &PgPool) -> anyhow::Result<RelayHandle> {
    let collector = CollectorClient::new(&config.collector).context("building the collector client")?;
    let relay = RelayOutbox::new(
        Arc::new(PgOutboxStore::new(pg.clone())),
        Arc::new(collector),
        format!("coffee-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
        config.relay.clone(),
        Arc::new(rand::random::<f64>),
    );
    let counters = relay.counters();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = if config.relay_enabled {
        tokio::spawn(relay_loop(relay, stopped, config.idle_poll_max))
    } else {
        tracing::info!("OUTBOX_RELAY_ENABLED=false: this instance delivers no order events");
        tokio::spawn(async move { while !*stopped.borrow_and_update() && stopped.changed().await.is_ok() {} })
    };
    Ok(RelayHandle { task, stop, counters })
}

/// Delivers batches back to back while there is work; when there is none,
/// waits 50 ms, doubling up to `idle_max`, so an idle outbox costs a few
/// cheap queries per second and a new event goes out within `idle_max`.
async fn relay_loop(relay: RelayOutbox, mut stop: tokio::sync::watch::Receiver<bool>, idle_max: std::time::Duration) {
    const BUSY: std::time::Duration = std::time::Duration::from_millis(50);
    let mut idle = BUSY;
    while !*stop.borrow() {
        match relay.run_once().await {
            Ok(claimed) if claimed > 0 => {
                idle = BUSY;
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = e.describe(), "outbox relay round failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(idle) => {}
            _ = stop.changed() => {}
        }
        idle = (idle * 2).min(idle_max.max(BUSY));
    }
    match relay.release().await {
        Ok(0) => {}
        Ok(released) => tracing::info!(released, "outbox claims released"),
        Err(e) => tracing::warn!(
            error = e.describe(),
            "releasing outbox claims failed; their leases will expire"
        ),
    }
}

/// Every `interval` (`METRICS_SAMPLE_INTERVAL_MS`, 5 s): connection-pool
/// usage, the outbox backlog and this relay's totals as metrics, and the
/// recorder's upkeep.
async fn sample_gauges(
    pg: PgPool,
    redis: RedisPool,
    outbox: OutboxAdmin,
    relay: Arc<RelayCounters>,
    handle: metrics_exporter_prometheus::PrometheusHandle,
    interval: std::time::Duration,
) {
    use std::sync::atomic::Ordering;
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        let (pg_used, pg_size) = pg.usage();
        let (redis_used, redis_size) = redis.usage();
        metrics::gauge!("coffee_pool_connections_in_use", "pool" => "postgres").set(pg_used as f64);
        metrics::gauge!("coffee_pool_connections_max", "pool" => "postgres").set(pg_size as f64);
        metrics::gauge!("coffee_pool_connections_in_use", "pool" => "redis").set(redis_used as f64);
        metrics::gauge!("coffee_pool_connections_max", "pool" => "redis").set(redis_size as f64);
        metrics::counter!("coffee_outbox_delivered_total").absolute(relay.delivered.load(Ordering::Relaxed));
        metrics::counter!("coffee_outbox_retried_total").absolute(relay.retried.load(Ordering::Relaxed));
        metrics::counter!("coffee_outbox_dead_lettered_total").absolute(relay.dead.load(Ordering::Relaxed));
        match outbox.backlog().await {
            Ok((pending, dead)) => {
                metrics::gauge!("coffee_outbox_pending").set(pending as f64);
                metrics::gauge!("coffee_outbox_dead").set(dead as f64);
            }
            Err(e) => tracing::debug!(error = e.describe(), "sampling the outbox backlog failed"),
        }
        handle.run_upkeep();
    }
}

/// Housekeeping every instance runs; each job is safe to run concurrently
/// on several instances, and a failure is logged and retried next tick.
fn maintenance_tasks(config: &HousekeepingConfig, pg: &PgPool) -> Vec<tokio::task::JoinHandle<()>> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let purge = PurgeIdempotencyKeys::new(
        Arc::new(PgIdempotencyRecords::new(pg.clone())),
        config.idempotency_retention,
    );
    let compact = CompactSalesStatistics::new(
        Arc::new(PgSalesStatistics::new(pg.clone())),
        clock,
        std::time::Duration::from_secs(3600),
        config.statistics_retention,
    );
    let outbox = OutboxAdmin::new(Arc::new(PgOutboxStore::new(pg.clone())));
    let retention = config.outbox_delivered_retention;
    vec![
        tokio::spawn(every(
            std::time::Duration::from_secs(3600),
            "purging delivered events",
            move || {
                let outbox = outbox.clone();
                async move { outbox.purge_delivered(retention).await.map(drop) }
            },
        )),
        tokio::spawn(every(
            config.idempotency_purge_interval,
            "purging idempotency keys",
            move || {
                let purge = purge.clone();
                async move { purge.execute().await.map(drop) }
            },
        )),
        tokio::spawn(every(
            config.statistics_compact_interval,
            "compacting and purging statistics",
            move || {
                let compact = compact.clone();
                async move { compact.execute().await.map(drop) }
            },
        )),
    ]
}

/// Runs `job` every `interval` until aborted.
async fn every<F, Fut>(interval: std::time::Duration, what: &'static str, job: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), coffee_ports::InfraError>>,
{
    let mut ticker = tokio::time::interval(interval.max(std::time::Duration::from_secs(1)));
    loop {
        ticker.tick().await;
        if let Err(e) = job().await {
            tracing::warn!(error = e.describe(), "{what} failed");
        }
    }
}

/// The adapters behind every port, and the state built from them.
fn build_state(
    config: &Config,
    pg: &PgPool,
    redis: &RedisPool,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    drain: coffee_http::Drain,
) -> anyhow::Result<AppState> {
    let auth = &config.auth;
    let codec: Arc<dyn TokenCodec> = Arc::new(JwtCodec::new(&auth.jwt).context("building the token codec")?);
    let ports = Ports {
        menus: Arc::new(CachedMenus::new(
            Arc::new(PgMenuRepository::new(pg.clone())),
            config.database.menu_cache_ttl,
        )),
        probes: vec![
            Arc::new(PgProbe::new(pg.clone())),
            Arc::new(RedisProbe::new(redis.clone())),
        ],
        users: Arc::new(PgUserRepository::new(pg.clone())),
        hasher: Arc::new(Argon2Hasher::new(
            auth.password_hash_concurrency,
            auth.password_hash_queue_max,
        )?),
        throttle: Arc::new(RedisLoginThrottle::new(
            redis.clone(),
            auth.login_max_attempts,
            auth.login_window,
        )),
        clients: Arc::new(RedisClientThrottle::new(
            redis.clone(),
            auth.client_max_attempts,
            auth.client_window,
        )),
        sessions: Arc::new(RedisSessionStore::with_retry_grace(
            redis.clone(),
            auth.refresh_retry_grace,
        )),
        codec,
        points: Arc::new(PgPointStore::new(pg.clone(), config.database.idempotency_wait)),
        orders: Arc::new(PgOrderStore::new(pg.clone(), config.database.idempotency_wait)),
        // The ranking keeps its sums in memory and prepares them on this
        // (the main) runtime; the statistics adapter only reads rows.
        statistics: Arc::new(PgSalesStatistics::new(pg.clone())),
        clock: Arc::new(SystemClock),
    };
    Ok(AppState::build(
        ports,
        StateSettings {
            access_token_ttl: auth.access_token_ttl,
            refresh_token_ttl: auth.refresh_token_ttl,
            charge_limits: config.charge_limits,
            cursors: coffee_http::CursorKey::derive_rotating(
                auth.jwt.secret.expose_secret().as_bytes(),
                &auth
                    .jwt
                    .previous_secrets
                    .iter()
                    .map(|secret| secret.expose_secret().as_bytes())
                    .collect::<Vec<_>>(),
            ),
            drain,
            metrics,
            request_timeout: config.http.request_timeout,
            trusted_proxies: config.http.trusted_proxies.clone(),
        },
    ))
}
