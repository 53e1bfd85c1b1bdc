//! Wiring: adapters into use cases into the HTTP server.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{HttpServer, web};
use anyhow::Context as _;
use secrecy::ExposeSecret;

use coffee_application::{
    Authenticate, ChargePoints, CheckReadiness, CompactSalesStatistics, GetBalance, GetMe, GetOrder, GetPopularMenus,
    ListMenus, ListOrders, ListPointTransactions, LogIn, LogOut, PlaceOrder, PurgeIdempotencyKeys, RefreshTokens,
    SignUp, TokenIssuer,
};
use coffee_crypto::{Argon2Hasher, JwtCodec, JwtSettings};
use coffee_domain::{ChargeLimits, Points, TOKEN_LEEWAY};
use coffee_http::{AppState, build_app};
use coffee_ports::{Clock, SessionStore, SystemClock, TokenCodec};
use coffee_postgres::{
    PgIdempotencyRecords, PgMenuRepository, PgOrderStore, PgPointStore, PgPool, PgPoolSettings, PgPopularMenus,
    PgProbe, PgUserRepository,
};
use coffee_redis::{RedisLoginThrottle, RedisPool, RedisProbe, RedisSessionStore, RedisSettings};

use crate::config::Config;

/// A built, bound, not yet running API server.
pub struct Application {
    port: u16,
    server: Server,
    /// Periodic housekeeping, stopped when the server stops.
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Builds the pools, the use cases and the server, and binds `BIND_ADDR`
    /// (port 0 picks a free port: see [`Application::port`]). No connection to
    /// PostgreSQL or Redis is made here, so the server starts (and reports
    /// not-ready) while they are down.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let pg = PgPool::new(&PgPoolSettings {
            url: config.database_url.clone(),
            max_size: config.database_pool_size,
            acquire_timeout: config.database_acquire_timeout,
            connect_timeout: config.database_acquire_timeout,
            statement_timeout: config.database_statement_timeout,
        })
        .context("building the PostgreSQL pool")?;
        let redis = RedisPool::new(&RedisSettings {
            url: config.redis_url.expose_secret().to_owned(),
            key_prefix: config.redis_key_prefix.clone(),
            max_size: config.redis_pool_size,
            timeout: config.redis_timeout,
        })
        .context("building the Redis pool")?;

        let state = web::Data::new(build_state(config, &pg, &redis)?);
        let background = maintenance_tasks(config, &pg);
        let listener = TcpListener::bind(&config.bind_addr).with_context(|| format!("binding {}", config.bind_addr))?;
        let port = listener.local_addr()?.port();
        let mut server = HttpServer::new(move || build_app(state.clone()))
            .listen(listener)?
            .shutdown_timeout(config.shutdown_timeout.as_secs());
        if let Some(workers) = config.http_workers {
            server = server.workers(workers);
        }
        tracing::info!(port, "listening");
        Ok(Self {
            port,
            server: server.run(),
            background,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT, then lets in-flight requests finish
    /// (up to `SHUTDOWN_TIMEOUT_SECS`).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        for task in self.background {
            task.abort();
        }
        result
    }
}

/// Housekeeping every instance runs; each job is safe to run concurrently
/// on several instances, and a failure is logged and retried next tick.
fn maintenance_tasks(config: &Config, pg: &PgPool) -> Vec<tokio::task::JoinHandle<()>> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let purge = PurgeIdempotencyKeys::new(
        Arc::new(PgIdempotencyRecords::new(pg.clone())),
        config.idempotency_retention,
    );
    let compact = CompactSalesStatistics::new(
        Arc::new(PgPopularMenus::new(pg.clone())),
        clock,
        std::time::Duration::from_secs(3600),
    );
    vec![
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
            "compacting statistics",
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

/// Every use case, wired to its adapters.
fn build_state(config: &Config, pg: &PgPool, redis: &RedisPool) -> anyhow::Result<AppState> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let codec: Arc<dyn TokenCodec> = Arc::new(
        JwtCodec::new(&JwtSettings {
            secret: config.jwt_secret.clone(),
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            leeway: TOKEN_LEEWAY,
        })
        .context("building the token codec")?,
    );
    let sessions: Arc<dyn SessionStore> = Arc::new(RedisSessionStore::new(redis.clone()));
    let users = Arc::new(PgUserRepository::new(pg.clone()));
    let points = Arc::new(PgPointStore::new(pg.clone(), config.idempotency_wait));
    let orders = Arc::new(PgOrderStore::new(pg.clone(), config.idempotency_wait));
    let hasher = Arc::new(Argon2Hasher::new(config.password_hash_concurrency)?);
    let throttle = Arc::new(RedisLoginThrottle::new(
        redis.clone(),
        config.login_max_attempts,
        config.login_window,
    ));
    let issuer = TokenIssuer::new(
        codec.clone(),
        clock.clone(),
        config.access_token_ttl,
        config.refresh_token_ttl,
    );
    Ok(AppState {
        list_menus: ListMenus::new(Arc::new(PgMenuRepository::new(pg.clone()))),
        check_readiness: CheckReadiness::new(vec![
            Arc::new(PgProbe::new(pg.clone())),
            Arc::new(RedisProbe::new(redis.clone())),
        ]),
        sign_up: SignUp::new(users.clone(), hasher.clone()),
        log_in: LogIn::new(users.clone(), hasher, throttle, sessions.clone(), issuer.clone()),
        log_out: LogOut::new(codec.clone(), sessions.clone(), clock.clone()),
        refresh_tokens: RefreshTokens::new(sessions.clone(), issuer),
        get_me: GetMe::new(users),
        authenticate: Authenticate::new(codec, sessions),
        charge_points: ChargePoints::new(points.clone(), charge_limits(config)?),
        get_balance: GetBalance::new(points.clone()),
        list_point_transactions: ListPointTransactions::new(points),
        place_order: PlaceOrder::new(orders.clone(), clock.clone()),
        get_order: GetOrder::new(orders.clone()),
        list_orders: ListOrders::new(orders),
        get_popular_menus: GetPopularMenus::new(Arc::new(PgPopularMenus::new(pg.clone())), clock.clone()),
    })
}

fn charge_limits(config: &Config) -> anyhow::Result<ChargeLimits> {
    Ok(ChargeLimits {
        max_amount: Points::new(config.charge_max_amount).context("CHARGE_MAX_AMOUNT")?,
        max_balance: Points::new(config.balance_max).context("BALANCE_MAX")?,
    })
}
