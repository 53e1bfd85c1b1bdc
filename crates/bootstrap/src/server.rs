//! Wiring: adapters into use cases into the HTTP server.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{HttpServer, web};
use anyhow::Context as _;
use secrecy::ExposeSecret;

use coffee_application::{CheckReadiness, ListMenus};
use coffee_http::{AppState, build_app};
use coffee_postgres::{PgMenuRepository, PgPool, PgPoolSettings, PgProbe};
use coffee_redis::{RedisPool, RedisProbe, RedisSettings};

use crate::config::Config;

/// A built, bound, not yet running API server.
pub struct Application {
    port: u16,
    server: Server,
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

        let state = web::Data::new(AppState {
            list_menus: ListMenus::new(Arc::new(PgMenuRepository::new(pg.clone()))),
            check_readiness: CheckReadiness::new(vec![
                Arc::new(PgProbe::new(pg)),
                Arc::new(RedisProbe::new(redis)),
            ]),
        });

        let listener = TcpListener::bind(&config.bind_addr)
            .with_context(|| format!("binding {}", config.bind_addr))?;
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
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT, then lets in-flight requests finish
    /// (up to `SHUTDOWN_TIMEOUT_SECS`).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
