//! Typed configuration, read once from the environment (and `.env`).

use std::time::Duration;

use coffee_application::RelaySettings;
use coffee_collector::CollectorSettings;
use coffee_crypto::JwtSettings;
use coffee_domain::{ChargeLimits, Points, RetryPolicy, TOKEN_LEEWAY};
use coffee_postgres::PgPoolSettings;
use coffee_redis::RedisSettings;
use secrecy::{ExposeSecret, SecretString};

/// Where the service runs; production refuses development defaults for secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Test,
    Production,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Everything the service reads from its environment, one part per adapter
/// or concern; each adapter is handed its own part as it is. `Debug` never
/// shows a secret: URLs that may carry passwords and the signing key are
/// redacted.
#[derive(Debug, Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub log_format: LogFormat,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub redis: RedisSettings,
    pub auth: AuthConfig,
    /// The largest charge and the largest balance a charge may produce.
    pub charge_limits: ChargeLimits,
    pub outbox: OutboxConfig,
    pub housekeeping: HousekeepingConfig,
}

/// The HTTP server: where it listens and how it stops.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub bind_addr: String,
    /// Where `/metrics` and `/health/*` are served for operators and
    /// balancers (`ADMIN_BIND_ADDR`); when set, `BIND_ADDR` no longer serves
    /// `/metrics`.
    pub admin_bind_addr: Option<String>,
    /// Origins a browser front-end may call the API from; empty: no CORS.
    pub cors_allowed_origins: Vec<String>,
    pub workers: Option<usize>,
    pub shutdown_timeout: Duration,
    /// How long an instance keeps serving after SIGTERM, answering
    /// `/health/ready` with `503`, before it stops accepting connections.
    pub shutdown_drain: Duration,
    /// How long a client may take to send a request's headers, and then its
    /// body; past it the request is answered `408`.
    pub request_timeout: Duration,
    /// How long an idle keep-alive connection stays open: longer than any
    /// balancer's idle timeout, so the balancer, never the API, closes it.
    pub keep_alive: Duration,
    /// Balancers whose `X-Forwarded-For` entries name the client.
    pub trusted_proxies: coffee_http::TrustedProxies,
}

/// PostgreSQL: one database, a pool per kind of work, and the repositories'
/// own settings.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// The requests' pool.
    pub requests: PgPoolSettings,
    /// Connections of the outbox relay and the housekeeping jobs, a pool of
    /// their own so they can never take the requests' connections.
    pub background: PgPoolSettings,
    /// How long `GET /menus` may serve a list read earlier (0: never).
    pub menu_cache_ttl: Duration,
    /// How long a request waits for an unfinished one with its idempotency key.
    pub idempotency_wait: Duration,
}

impl DatabaseConfig {
    /// The database's URL, for the `migrate` command.
    pub fn url(&self) -> &str {
        self.requests.url.expose_secret()
    }
}

/// Tokens, login throttling and password hashing.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub jwt: JwtSettings,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// How long a refresh token just rotated still gets the new token (a
    /// client retrying a refresh whose answer it lost) instead of counting
    /// as a replay that ends the session.
    pub refresh_retry_grace: Duration,
    pub login_max_attempts: u32,
    pub login_window: Duration,
    /// Signups, and failed logins, per client address per `client_window`.
    pub client_max_attempts: u32,
    pub client_window: Duration,
    /// Password hashes computed at once; the rest queue.
    pub password_hash_concurrency: usize,
    /// Hashes (logins, signups) that may wait for one of those; past it they
    /// are answered `503` at once, before a login attempt is counted.
    pub password_hash_queue_max: usize,
}

/// The outbox relay and the collector it delivers to.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    pub collector: CollectorSettings,
    pub relay: RelaySettings,
    /// The longest pause between polls when there is nothing to send.
    pub idle_poll_max: Duration,
    /// Whether this instance runs a relay (`OUTBOX_RELAY_ENABLED`): off on
    /// instances that only serve, as long as another instance relays, and
    /// for instruction counts of requests alone (`bench/instructions.bench.sh`).
    pub relay_enabled: bool,
}

/// The periodic jobs every instance runs.
#[derive(Debug, Clone)]
pub struct HousekeepingConfig {
    /// How long idempotency keys are kept (at least 24 hours).
    pub idempotency_retention: Duration,
    pub idempotency_purge_interval: Duration,
    /// How often each instance merges the shards of closed statistics buckets.
    pub statistics_compact_interval: Duration,
    pub outbox_delivered_retention: Duration,
    /// How long popular-menu statistics are kept (at least the ranking's
    /// 7 days and the hour its edge reads).
    pub statistics_retention: Duration,
    /// How often the pool, outbox and relay gauges are sampled for `/metrics`.
    pub gauge_sample_interval: Duration,
}

/// Why the configuration is unusable. The message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not valid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("{name} must be set when APP_ENV=production ({HOW_TO_SET_JWT_SECRET})")]
    MissingInProduction { name: &'static str },
    #[error(
        "JWT_SECRET is not set, and the built-in development key may only serve a loopback address, \
         not BIND_ADDR={bind_addr} ({HOW_TO_SET_JWT_SECRET})"
    )]
    DevKeyOffLoopback { bind_addr: String },
}

/// What every refusal over the signing key tells the operator to do.
const HOW_TO_SET_JWT_SECRET: &str =
    "set JWT_SECRET to a random secret of at least 32 bytes, e.g. JWT_SECRET=$(openssl rand -base64 48)";

/// Whether `addr` (`host:port`) listens only on this machine.
fn is_loopback(addr: &str) -> bool {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => addr.rsplit_once(':').is_some_and(|(host, _)| host == "localhost"),
    }
}

/// Only for development and tests: the server refuses it in production.
const DEV_JWT_SECRET: &str = "dev-only-secret-do-not-use-in-production-0123456789";
/// The shortest signing key the server accepts (HS256 wants at least 256 bits).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

impl Config {
    /// Reads `.env` when present, then the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is normal; a present one is applied under the real
        // environment (real variables win).
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any variable source (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let app_env = match get("APP_ENV").as_deref() {
            None | Some("development") => AppEnv::Development,
            Some("test") => AppEnv::Test,
            Some("production") => AppEnv::Production,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "APP_ENV",
                    reason: format!("{other:?} is not one of development, test, production"),
                });
            }
        };
        let bind_addr = get("BIND_ADDR").unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let jwt_secret = match get("JWT_SECRET") {
            Some(secret) => secret,
            None if app_env == AppEnv::Production => {
                return Err(ConfigError::MissingInProduction { name: "JWT_SECRET" });
            }
            // The built-in key is in the repository: anyone could mint tokens
            // with it, so it only ever serves this machine.
            None if !is_loopback(&bind_addr) => return Err(ConfigError::DevKeyOffLoopback { bind_addr }),
            None => DEV_JWT_SECRET.to_owned(),
        };
        let jwt_secret = signing_key("JWT_SECRET", &jwt_secret)?;
        let previous_secrets = comma_list(&get, "JWT_PREVIOUS_SECRETS")
            .iter()
            .map(|secret| signing_key("JWT_PREVIOUS_SECRETS", secret))
            .collect::<Result<Vec<_>, _>>()?;
        let log_format = log_format(&get)?;
        let base_pool = base_pool(&get)?;
        let database_acquire_timeout = base_pool.acquire_timeout;
        let database_statement_timeout = base_pool.statement_timeout;
        let pool = |max_size| PgPoolSettings {
            max_size,
            ..base_pool.clone()
        };
        let config = Self {
            app_env,
            log_format,
            http: HttpConfig {
                bind_addr,
                admin_bind_addr: get("ADMIN_BIND_ADDR"),
                cors_allowed_origins: cors_allowed_origins(&get)?,
                workers: optional_number(&get, "HTTP_WORKERS")?,
                shutdown_timeout: Duration::from_secs(number(&get, "SHUTDOWN_TIMEOUT_SECS", 30)?),
                // Long enough for a balancer that checks every 1 to 2 s to see
                // the instance is not ready (two failed checks) and move away.
                shutdown_drain: Duration::from_secs(number(&get, "SHUTDOWN_DRAIN_SECS", 5)?),
                request_timeout: Duration::from_millis(number(&get, "HTTP_REQUEST_TIMEOUT_MS", 10_000)?.max(1)),
                // nginx's and the cloud balancers' upstream idle timeouts are 60 s.
                keep_alive: Duration::from_secs(number(&get, "HTTP_KEEP_ALIVE_SECS", 75)?),
                trusted_proxies: coffee_http::TrustedProxies::parse(&get("TRUSTED_PROXIES").unwrap_or_default())
                    .map_err(|reason| ConfigError::Invalid {
                        name: "TRUSTED_PROXIES",
                        reason,
                    })?,
            },
            database: DatabaseConfig {
                requests: pool(number(&get, "DATABASE_POOL_SIZE", 16)?),
                // The relay records a whole batch of deliveries at once: on
                // the requests' pool that starved requests into 503s whenever
                // the collector was down (found by the soak). Its commits do
                // not wait for the disk: a crash can only forget that an
                // event was delivered (it is sent again: at least once) or
                // undo a purge or a compaction as a whole (done again later).
                // On this machine the relay's per-event flushes halved
                // POST /orders.
                background: PgPoolSettings {
                    durable_commits: false,
                    ..pool(number(&get, "DATABASE_BACKGROUND_POOL_SIZE", 2)?.max(1))
                },
                menu_cache_ttl: Duration::from_millis(number(&get, "MENU_CACHE_TTL_MS", 1_000)?),
                idempotency_wait: Duration::from_millis(number(&get, "IDEMPOTENCY_WAIT_MS", 5_000)?),
            },
            redis: redis_settings(&get)?,
            auth: AuthConfig {
                jwt: JwtSettings {
                    secret: jwt_secret,
                    previous_secrets,
                    issuer: get("JWT_ISSUER").unwrap_or_else(|| "coffee".to_owned()),
                    audience: get("JWT_AUDIENCE").unwrap_or_else(|| "coffee-api".to_owned()),
                    leeway: TOKEN_LEEWAY,
                },
                access_token_ttl: Duration::from_secs(number(&get, "ACCESS_TOKEN_TTL_SECS", 15 * 60)?),
                refresh_token_ttl: Duration::from_secs(number(&get, "REFRESH_TOKEN_TTL_SECS", 14 * 24 * 3600)?),
                refresh_retry_grace: Duration::from_millis(number(&get, "REFRESH_RETRY_GRACE_MS", 10_000)?),
                login_max_attempts: number(&get, "LOGIN_MAX_ATTEMPTS", 5)?,
                login_window: Duration::from_secs(number(&get, "LOGIN_WINDOW_SECS", 15 * 60)?),
                // Four accounts' worth of failures (5 each) per client per window.
                client_max_attempts: number(&get, "CLIENT_LOGIN_MAX_ATTEMPTS", 20)?,
                client_window: Duration::from_secs(number(&get, "CLIENT_LOGIN_WINDOW_SECS", 15 * 60)?),
                // One core stays free for everything else during a login storm.
                password_hash_concurrency: number(&get, "PASSWORD_HASH_CONCURRENCY", default_hash_concurrency())?,
                // About 3 s of waiting at ~35 release hashes per second and core.
                password_hash_queue_max: number(&get, "PASSWORD_HASH_QUEUE_MAX", 128)?,
            },
            charge_limits: ChargeLimits {
                max_amount: points(&get, "CHARGE_MAX_AMOUNT", 1_000_000)?,
                max_balance: points(&get, "BALANCE_MAX", 100_000_000)?,
            },
            outbox: OutboxConfig {
                collector: CollectorSettings {
                    base_url: get("COLLECTOR_URL").unwrap_or_else(|| "http://127.0.0.1:9100".to_owned()),
                    connect_timeout: Duration::from_millis(number(&get, "COLLECTOR_CONNECT_TIMEOUT_MS", 2_000)?),
                    request_timeout: Duration::from_millis(number(&get, "COLLECTOR_TIMEOUT_MS", 5_000)?),
                },
                relay: RelaySettings {
                    batch_size: number(&get, "OUTBOX_BATCH_SIZE", 50)?,
                    lease: Duration::from_millis(number(&get, "OUTBOX_LEASE_MS", 30_000)?),
                    retry: RetryPolicy {
                        base: Duration::from_millis(number(&get, "OUTBOX_RETRY_BASE_MS", 1_000)?),
                        cap: Duration::from_millis(number(&get, "OUTBOX_RETRY_CAP_MS", 300_000)?),
                        max_attempts: number(&get, "OUTBOX_MAX_ATTEMPTS", 20)?,
                    },
                },
                idle_poll_max: Duration::from_millis(number(&get, "OUTBOX_IDLE_POLL_MAX_MS", 500)?),
                relay_enabled: number(&get, "OUTBOX_RELAY_ENABLED", true)?,
            },
            housekeeping: HousekeepingConfig {
                idempotency_retention: Duration::from_secs(number(&get, "IDEMPOTENCY_RETENTION_SECS", 24 * 3600)?),
                idempotency_purge_interval: Duration::from_secs(number(&get, "IDEMPOTENCY_PURGE_INTERVAL_SECS", 600)?),
                statistics_compact_interval: Duration::from_secs(number(
                    &get,
                    "STATISTICS_COMPACT_INTERVAL_SECS",
                    300,
                )?),
                outbox_delivered_retention: Duration::from_secs(number(
                    &get,
                    "OUTBOX_DELIVERED_RETENTION_SECS",
                    7 * 24 * 3600,
                )?),
                statistics_retention: Duration::from_secs(number(&get, "STATISTICS_RETENTION_SECS", 8 * 24 * 3600)?),
                gauge_sample_interval: Duration::from_millis(number(&get, "METRICS_SAMPLE_INTERVAL_MS", 5_000)?.max(1)),
            },
        };
        if config.housekeeping.statistics_retention < coffee_application::MIN_STATISTICS_RETENTION {
            return Err(ConfigError::Invalid {
                name: "STATISTICS_RETENTION_SECS",
                reason: format!(
                    "it must be at least {} (7 days and the hour the ranking's older edge reads)",
                    coffee_application::MIN_STATISTICS_RETENTION.as_secs()
                ),
            });
        }
        // A claim must outlive a delivery attempt, or another instance takes
        // the event over while it is still being sent.
        if config.outbox.collector.request_timeout >= config.outbox.relay.lease {
            return Err(ConfigError::Invalid {
                name: "OUTBOX_LEASE_MS",
                reason: "it must be longer than COLLECTOR_TIMEOUT_MS".to_owned(),
            });
        }
        // The ranking trusts statistics older than SETTLE to be final; an
        // order that could still commit after that would be missed by every
        // instance until its cache turns over.
        let longest = coffee_postgres::longest_order_transaction(
            database_acquire_timeout,
            config.database.idempotency_wait,
            database_statement_timeout,
        );
        if longest >= coffee_application::SETTLE {
            return Err(ConfigError::Invalid {
                name: "DATABASE_STATEMENT_TIMEOUT_MS",
                reason: format!(
                    "an order's transaction could then stay open {} s (DATABASE_ACQUIRE_TIMEOUT_MS + \
                     IDEMPOTENCY_WAIT_MS + {} statements at DATABASE_STATEMENT_TIMEOUT_MS), which must stay \
                     under the popular ranking's {} s settling margin",
                    longest.as_secs(),
                    coffee_postgres::orders::ORDER_STATEMENTS,
                    coffee_application::SETTLE.as_secs()
                ),
            });
        }
        Ok(config)
    }
}

/// What the operator commands (`coffee migrate`, `coffee outbox ...`) read:
/// the database and their own settings, nothing of serving (no signing key,
/// no Redis), so a migration job needs only `DATABASE_URL`.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    pub log_format: LogFormat,
    /// A small pool of the operator command's own.
    pub database: PgPoolSettings,
    pub migration: coffee_postgres::MigrationSettings,
}

impl OperatorConfig {
    /// Reads `.env` when present, then the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let defaults = coffee_postgres::MigrationSettings::default();
        Ok(Self {
            log_format: log_format(&get)?,
            database: PgPoolSettings {
                max_size: 2,
                ..base_pool(&get)?
            },
            migration: coffee_postgres::MigrationSettings {
                lock_timeout: Duration::from_millis(number(
                    &get,
                    "MIGRATION_LOCK_TIMEOUT_MS",
                    u64::try_from(defaults.lock_timeout.as_millis()).unwrap_or(u64::MAX),
                )?),
                wait: Duration::from_secs(number(&get, "MIGRATION_WAIT_SECS", defaults.wait.as_secs())?),
            },
        })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        self.database.url.expose_secret()
    }
}

fn log_format(get: &impl Fn(&str) -> Option<String>) -> Result<LogFormat, ConfigError> {
    match get("LOG_FORMAT").as_deref() {
        None | Some("pretty") => Ok(LogFormat::Pretty),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(ConfigError::Invalid {
            name: "LOG_FORMAT",
            reason: format!("{other:?} is not one of pretty, json"),
        }),
    }
}

/// `DATABASE_*`: the URL and the timeouts every pool shares (16 connections).
fn base_pool(get: &impl Fn(&str) -> Option<String>) -> Result<PgPoolSettings, ConfigError> {
    let url =
        get("DATABASE_URL").unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/coffee?sslmode=disable".to_owned());
    // Read once here so a bad `sslmode` or `sslrootcert` is a configuration error.
    coffee_postgres::PgTarget::parse(&url).map_err(|e| ConfigError::Invalid {
        name: "DATABASE_URL",
        reason: e.to_string(),
    })?;
    let acquire_timeout = Duration::from_millis(number(get, "DATABASE_ACQUIRE_TIMEOUT_MS", 3_000)?);
    Ok(PgPoolSettings {
        url: SecretString::from(url),
        max_size: 16,
        acquire_timeout,
        connect_timeout: acquire_timeout,
        statement_timeout: Duration::from_millis(number(get, "DATABASE_STATEMENT_TIMEOUT_MS", 10_000)?),
        idle_in_transaction_timeout: Duration::from_millis(
            number(get, "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS", 5_000)?.max(1),
        ),
        durable_commits: true,
    })
}

/// `CORS_ALLOWED_ORIGINS`: comma-separated origins (`https://shop.example.com`).
fn cors_allowed_origins(get: &impl Fn(&str) -> Option<String>) -> Result<Vec<String>, ConfigError> {
    comma_list(get, "CORS_ALLOWED_ORIGINS")
        .into_iter()
        .map(|origin| {
            if coffee_http::is_cors_origin(&origin) {
                Ok(origin)
            } else {
                Err(ConfigError::Invalid {
                    name: "CORS_ALLOWED_ORIGINS",
                    reason: format!(
                        "{origin:?} is not an origin such as https://shop.example.com or http://localhost:5173"
                    ),
                })
            }
        })
        .collect()
}

/// The non-empty, trimmed entries of the comma-separated variable `name`.
fn comma_list(get: &impl Fn(&str) -> Option<String>, name: &str) -> Vec<String> {
    get(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A signing key, refused when shorter than [`MIN_JWT_SECRET_BYTES`].
fn signing_key(name: &'static str, secret: &str) -> Result<SecretString, ConfigError> {
    if secret.len() < MIN_JWT_SECRET_BYTES {
        return Err(ConfigError::Invalid {
            name,
            reason: format!("every key must be at least {MIN_JWT_SECRET_BYTES} bytes long"),
        });
    }
    Ok(SecretString::from(secret.to_owned()))
}

fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// `REDIS_*`: the URL, TLS, Sentinel and the replicas a session write waits for.
fn redis_settings(get: &impl Fn(&str) -> Option<String>) -> Result<RedisSettings, ConfigError> {
    let sentinel = match (get("REDIS_SENTINELS"), get("REDIS_MASTER_NAME")) {
        (None, None) => None,
        (Some(list), master) => Some(coffee_redis::SentinelSettings {
            addresses: list
                .split(',')
                .map(|entry| {
                    let entry = entry.trim();
                    entry
                        .rsplit_once(':')
                        .and_then(|(host, port)| Some((host.to_owned(), port.parse::<u16>().ok()?)))
                        .filter(|(host, _)| !host.is_empty())
                        .ok_or_else(|| ConfigError::Invalid {
                            name: "REDIS_SENTINELS",
                            reason: format!("{entry:?} is not host:port"),
                        })
                })
                .collect::<Result<_, _>>()?,
            master_name: master.unwrap_or_else(|| "mymaster".to_owned()),
        }),
        (None, Some(_)) => {
            return Err(ConfigError::Invalid {
                name: "REDIS_MASTER_NAME",
                reason: "it needs REDIS_SENTINELS".into(),
            });
        }
    };
    let timeout = Duration::from_millis(number(get, "REDIS_TIMEOUT_MS", 2_000)?);
    let replica_ack_timeout = Duration::from_millis(number(get, "REDIS_REPLICA_ACK_TIMEOUT_MS", 500)?.max(1));
    let min_replicas_ack = number(get, "REDIS_MIN_REPLICAS_ACK", u32::from(sentinel.is_some()))?;
    if min_replicas_ack > 0 && replica_ack_timeout >= timeout {
        return Err(ConfigError::Invalid {
            name: "REDIS_REPLICA_ACK_TIMEOUT_MS",
            reason: "it must be shorter than REDIS_TIMEOUT_MS, which bounds every answer".into(),
        });
    }
    Ok(RedisSettings {
        url: get("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned()),
        ca_file: get("REDIS_CA_FILE").map(std::path::PathBuf::from),
        min_replicas_ack,
        replica_ack_timeout,
        sentinel,
        key_prefix: get("REDIS_KEY_PREFIX").unwrap_or_else(|| "coffee:".to_owned()),
        max_size: number(get, "REDIS_POOL_SIZE", 16)?,
        timeout,
    })
}

fn number<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    Ok(optional_number(get, name)?.unwrap_or(default))
}

/// A number of points: a whole number that is not negative.
fn points(get: &impl Fn(&str) -> Option<String>, name: &'static str, default: i64) -> Result<Points, ConfigError> {
    Points::new(number(get, name, default)?).map_err(|e| ConfigError::Invalid {
        name,
        reason: e.to_string(),
    })
}

fn optional_number<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<T>, ConfigError> {
    get(name)
        .map(|raw| {
            raw.trim().parse::<T>().map_err(|_| ConfigError::Invalid {
                name,
                reason: format!("{raw:?} is not a non-negative whole number"),
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    fn config_error(vars: &[(&str, &str)]) -> String {
        config(vars).expect_err("must refuse").to_string()
    }

    #[test]
    fn local_defaults_need_no_variables() {
        let config = config(&[]).expect("defaults");
        assert_eq!(config.http.bind_addr, "127.0.0.1:8080");
        assert_eq!(config.auth.access_token_ttl, Duration::from_secs(900));
        assert_eq!(config.auth.refresh_token_ttl, Duration::from_secs(14 * 24 * 3600));
        assert_eq!(config.log_format, LogFormat::Pretty);
    }

    #[test]
    fn production_has_no_default_signing_key() {
        let err = config(&[("APP_ENV", "production")]).expect_err("must refuse");
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
    }

    #[test]
    fn the_development_key_serves_only_loopback_addresses() {
        for bind in ["127.0.0.1:8080", "[::1]:8080", "localhost:8080", "127.0.0.2:9000"] {
            assert!(config(&[("BIND_ADDR", bind)]).is_ok(), "{bind}");
        }
        for (env, bind) in [
            ("development", "0.0.0.0:8080"),
            ("test", "[::]:8080"),
            ("development", "10.1.2.3:8080"),
            ("development", "api.example.com:8080"),
            ("production", "127.0.0.1:8080"),
        ] {
            let err = config(&[("APP_ENV", env), ("BIND_ADDR", bind)]).expect_err("must refuse");
            let message = err.to_string();
            assert!(
                message.contains("JWT_SECRET") && message.contains("openssl rand"),
                "{message}"
            );
        }
        let key = "k".repeat(MIN_JWT_SECRET_BYTES);
        assert!(config(&[("BIND_ADDR", "0.0.0.0:8080"), ("JWT_SECRET", &key)]).is_ok());
    }

    #[test]
    fn a_short_signing_key_is_refused_everywhere() {
        for env in ["development", "production"] {
            let err = config(&[("APP_ENV", env), ("JWT_SECRET", "too-short")]).expect_err("must refuse");
            assert!(err.to_string().contains("at least 32 bytes"), "{err}");
        }
    }

    #[test]
    fn previous_signing_keys_are_read_and_checked() {
        let current = "c".repeat(MIN_JWT_SECRET_BYTES);
        let (a, b) = ("a".repeat(MIN_JWT_SECRET_BYTES), "b".repeat(40));
        let config = config(&[
            ("JWT_SECRET", &current),
            ("JWT_PREVIOUS_SECRETS", &format!("{a}, {b},")),
        ])
        .expect("valid");
        let previous: Vec<&str> = config
            .auth
            .jwt
            .previous_secrets
            .iter()
            .map(ExposeSecret::expose_secret)
            .collect();
        assert_eq!(previous, [a.as_str(), b.as_str()]);
        let err = config_error(&[("JWT_SECRET", &current), ("JWT_PREVIOUS_SECRETS", "short")]);
        assert!(err.contains("JWT_PREVIOUS_SECRETS"), "{err}");
        assert!(!err.contains("short"), "a key is never printed: {err}");
    }

    #[test]
    fn cors_origins_are_read_and_checked() {
        let configured = config(&[(
            "CORS_ALLOWED_ORIGINS",
            "https://shop.example.com, http://localhost:5173",
        )])
        .expect("valid");
        assert_eq!(
            configured.http.cors_allowed_origins,
            ["https://shop.example.com", "http://localhost:5173"]
        );
        assert!(config(&[]).expect("defaults").http.cors_allowed_origins.is_empty());
        let err = config_error(&[("CORS_ALLOWED_ORIGINS", "https://shop.example.com/app")]);
        assert!(err.contains("CORS_ALLOWED_ORIGINS"), "{err}");
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let secret = "a-very-secret-signing-key-of-more-than-32-bytes";
        let config = config(&[
            ("JWT_SECRET", secret),
            ("DATABASE_URL", "postgres://app:hunter2@db/coffee"),
            ("REDIS_URL", "redis://:sesame@cache:6379"),
        ])
        .expect("valid");
        let debug = format!("{config:?}");
        for leaked in [secret, "hunter2", "sesame"] {
            assert!(!debug.contains(leaked), "{leaked} leaked into {debug}");
        }
    }

    #[test]
    fn a_lease_shorter_than_a_delivery_attempt_is_refused() {
        let err = config(&[("OUTBOX_LEASE_MS", "1000"), ("COLLECTOR_TIMEOUT_MS", "5000")]).expect_err("refused");
        assert!(err.to_string().contains("OUTBOX_LEASE_MS"), "{err}");
    }

    #[test]
    fn timeouts_that_let_an_order_outlive_the_settling_margin_are_refused() {
        let err = config(&[("DATABASE_STATEMENT_TIMEOUT_MS", "60000")]).expect_err("refused");
        assert!(err.to_string().contains("DATABASE_STATEMENT_TIMEOUT_MS"), "{err}");
        let err = config(&[("IDEMPOTENCY_WAIT_MS", "300000")]).expect_err("refused");
        assert!(err.to_string().contains("settling margin"), "{err}");
        assert!(config(&[("DATABASE_STATEMENT_TIMEOUT_MS", "20000")]).is_ok());
    }

    #[test]
    fn sentinel_settings_are_read_and_wait_for_one_replica_by_default() {
        let sentinel_config = config(&[
            ("REDIS_SENTINELS", "127.0.0.1:26379, sentinel-2.internal:26380"),
            ("REDIS_MASTER_NAME", "coffee"),
        ])
        .expect("valid");
        let sentinel = sentinel_config.redis.sentinel.as_ref().expect("sentinel");
        assert_eq!(
            sentinel.addresses,
            vec![
                ("127.0.0.1".to_owned(), 26379),
                ("sentinel-2.internal".to_owned(), 26380)
            ]
        );
        assert_eq!(sentinel.master_name, "coffee");
        assert_eq!(sentinel_config.redis.min_replicas_ack, 1);
        assert_eq!(config(&[]).expect("defaults").redis.min_replicas_ack, 0);
    }

    #[test]
    fn bad_data_tier_settings_name_their_variable() {
        for (vars, name) in [
            (vec![("REDIS_SENTINELS", "no-port")], "REDIS_SENTINELS"),
            (vec![("REDIS_MASTER_NAME", "coffee")], "REDIS_MASTER_NAME"),
            (
                vec![
                    ("REDIS_MIN_REPLICAS_ACK", "1"),
                    ("REDIS_REPLICA_ACK_TIMEOUT_MS", "5000"),
                ],
                "REDIS_REPLICA_ACK_TIMEOUT_MS",
            ),
            (
                vec![("DATABASE_URL", "postgres://h/db?sslmode=verify-everything")],
                "DATABASE_URL",
            ),
        ] {
            let err = config(&vars).expect_err("must refuse");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn operator_commands_need_no_serving_settings() {
        let map: HashMap<&str, &str> = [
            ("APP_ENV", "production"),
            ("BIND_ADDR", "0.0.0.0:8080"),
            ("DATABASE_URL", "postgres://db/coffee?sslmode=require"),
            ("MIGRATION_LOCK_TIMEOUT_MS", "250"),
        ]
        .into_iter()
        .collect();
        let lookup = |name: &str| map.get(name).map(|v| (*v).to_owned());
        assert!(Config::from_lookup(lookup).is_err(), "serving needs JWT_SECRET");
        let operator = OperatorConfig::from_lookup(lookup).expect("no JWT_SECRET needed");
        assert_eq!(operator.url(), "postgres://db/coffee?sslmode=require");
        assert_eq!(operator.migration.lock_timeout, Duration::from_millis(250));
        assert_eq!(operator.migration.wait, Duration::from_secs(120));
    }

    #[test]
    fn a_statistics_retention_shorter_than_the_ranking_window_is_refused() {
        let err = config_error(&[("STATISTICS_RETENTION_SECS", "604800")]);
        assert!(err.contains("STATISTICS_RETENTION_SECS"), "{err}");
        assert!(config(&[("STATISTICS_RETENTION_SECS", "608400")]).is_ok());
    }

    #[test]
    fn bad_numbers_name_their_variable() {
        let err = config(&[("ACCESS_TOKEN_TTL_SECS", "soon")]).expect_err("must refuse");
        assert!(err.to_string().contains("ACCESS_TOKEN_TTL_SECS"), "{err}");
        for name in ["CHARGE_MAX_AMOUNT", "BALANCE_MAX"] {
            let err = config(&[(name, "-1")]).expect_err("must refuse");
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
