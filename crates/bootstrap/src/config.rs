//! Typed configuration, read once from the environment (and `.env`).

use std::time::Duration;

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

/// Everything the service reads from its environment. `Debug` never shows a
/// secret: URLs that may carry passwords and the signing key are redacted.
#[derive(Debug, Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub bind_addr: String,
    pub http_workers: Option<usize>,
    pub database_url: SecretString,
    pub database_pool_size: usize,
    /// Connections of the outbox relay and the housekeeping jobs, a pool of
    /// their own so they can never take the requests' connections.
    pub database_background_pool_size: usize,
    pub database_acquire_timeout: Duration,
    pub database_statement_timeout: Duration,
    /// How long `GET /menus` may serve a list read earlier (0: never).
    pub menu_cache_ttl: Duration,
    pub redis_url: SecretString,
    pub redis_key_prefix: String,
    pub redis_pool_size: usize,
    pub redis_timeout: Duration,
    pub jwt_secret: SecretString,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub login_max_attempts: u32,
    pub login_window: Duration,
    /// Password hashes computed at once; the rest queue.
    pub password_hash_concurrency: usize,
    /// Hashes (logins, signups) that may wait for one of those; past it they
    /// are answered `503` at once, before a login attempt is counted.
    pub password_hash_queue_max: usize,
    pub charge_max_amount: i64,
    pub balance_max: i64,
    /// How long a request waits for an unfinished one with its idempotency key.
    pub idempotency_wait: Duration,
    /// How long idempotency keys are kept (at least 24 hours).
    pub idempotency_retention: Duration,
    pub idempotency_purge_interval: Duration,
    /// How often each instance merges the shards of closed statistics buckets.
    pub statistics_compact_interval: Duration,
    pub collector_url: String,
    pub collector_connect_timeout: Duration,
    pub collector_timeout: Duration,
    pub outbox_batch_size: u32,
    /// How long a relay's claim holds before another relay may take it over.
    pub outbox_lease: Duration,
    pub outbox_retry: coffee_domain::RetryPolicy,
    /// The longest pause between polls when there is nothing to send.
    pub outbox_idle_poll_max: Duration,
    pub outbox_delivered_retention: Duration,
    pub log_format: LogFormat,
    pub shutdown_timeout: Duration,
    /// How long an instance keeps serving after SIGTERM, answering
    /// `/health/ready` with `503`, before it stops accepting connections.
    pub shutdown_drain: Duration,
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
        if jwt_secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(ConfigError::Invalid {
                name: "JWT_SECRET",
                reason: format!("it must be at least {MIN_JWT_SECRET_BYTES} bytes long"),
            });
        }
        let log_format = match get("LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "LOG_FORMAT",
                    reason: format!("{other:?} is not one of pretty, json"),
                });
            }
        };
        let config = Self {
            app_env,
            bind_addr,
            http_workers: optional_number(&get, "HTTP_WORKERS")?,
            database_url: SecretString::from(
                get("DATABASE_URL").unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/coffee".to_owned()),
            ),
            database_pool_size: number(&get, "DATABASE_POOL_SIZE", 16)?,
            database_background_pool_size: number(&get, "DATABASE_BACKGROUND_POOL_SIZE", 2)?,
            database_acquire_timeout: Duration::from_millis(number(&get, "DATABASE_ACQUIRE_TIMEOUT_MS", 3_000)?),
            database_statement_timeout: Duration::from_millis(number(&get, "DATABASE_STATEMENT_TIMEOUT_MS", 10_000)?),
            menu_cache_ttl: Duration::from_millis(number(&get, "MENU_CACHE_TTL_MS", 1_000)?),
            redis_url: SecretString::from(get("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())),
            redis_key_prefix: get("REDIS_KEY_PREFIX").unwrap_or_else(|| "coffee:".to_owned()),
            redis_pool_size: number(&get, "REDIS_POOL_SIZE", 16)?,
            redis_timeout: Duration::from_millis(number(&get, "REDIS_TIMEOUT_MS", 2_000)?),
            jwt_secret: SecretString::from(jwt_secret),
            jwt_issuer: get("JWT_ISSUER").unwrap_or_else(|| "coffee".to_owned()),
            jwt_audience: get("JWT_AUDIENCE").unwrap_or_else(|| "coffee-api".to_owned()),
            access_token_ttl: Duration::from_secs(number(&get, "ACCESS_TOKEN_TTL_SECS", 15 * 60)?),
            refresh_token_ttl: Duration::from_secs(number(&get, "REFRESH_TOKEN_TTL_SECS", 14 * 24 * 3600)?),
            login_max_attempts: number(&get, "LOGIN_MAX_ATTEMPTS", 5)?,
            login_window: Duration::from_secs(number(&get, "LOGIN_WINDOW_SECS", 15 * 60)?),
            // One core stays free for everything else during a login storm.
            password_hash_concurrency: number(&get, "PASSWORD_HASH_CONCURRENCY", default_hash_concurrency())?,
            // About 3 s of waiting at ~35 release hashes per second and core.
            password_hash_queue_max: number(&get, "PASSWORD_HASH_QUEUE_MAX", 128)?,
            charge_max_amount: number(&get, "CHARGE_MAX_AMOUNT", 1_000_000)?,
            balance_max: number(&get, "BALANCE_MAX", 100_000_000)?,
            idempotency_wait: Duration::from_millis(number(&get, "IDEMPOTENCY_WAIT_MS", 5_000)?),
            idempotency_retention: Duration::from_secs(number(&get, "IDEMPOTENCY_RETENTION_SECS", 24 * 3600)?),
            idempotency_purge_interval: Duration::from_secs(number(&get, "IDEMPOTENCY_PURGE_INTERVAL_SECS", 600)?),
            statistics_compact_interval: Duration::from_secs(number(&get, "STATISTICS_COMPACT_INTERVAL_SECS", 300)?),
            collector_url: get("COLLECTOR_URL").unwrap_or_else(|| "http://127.0.0.1:9100".to_owned()),
            collector_connect_timeout: Duration::from_millis(number(&get, "COLLECTOR_CONNECT_TIMEOUT_MS", 2_000)?),
            collector_timeout: Duration::from_millis(number(&get, "COLLECTOR_TIMEOUT_MS", 5_000)?),
            outbox_batch_size: number(&get, "OUTBOX_BATCH_SIZE", 50)?,
            outbox_lease: Duration::from_millis(number(&get, "OUTBOX_LEASE_MS", 30_000)?),
            outbox_retry: coffee_domain::RetryPolicy {
                base: Duration::from_millis(number(&get, "OUTBOX_RETRY_BASE_MS", 1_000)?),
                cap: Duration::from_millis(number(&get, "OUTBOX_RETRY_CAP_MS", 300_000)?),
                max_attempts: number(&get, "OUTBOX_MAX_ATTEMPTS", 20)?,
            },
            outbox_idle_poll_max: Duration::from_millis(number(&get, "OUTBOX_IDLE_POLL_MAX_MS", 500)?),
            outbox_delivered_retention: Duration::from_secs(number(
                &get,
                "OUTBOX_DELIVERED_RETENTION_SECS",
                7 * 24 * 3600,
            )?),
            log_format,
            shutdown_timeout: Duration::from_secs(number(&get, "SHUTDOWN_TIMEOUT_SECS", 30)?),
            // Long enough for a balancer that checks every 1 to 2 s to see
            // the instance is not ready (two failed checks) and move away.
            shutdown_drain: Duration::from_secs(number(&get, "SHUTDOWN_DRAIN_SECS", 5)?),
        };
        // A claim must outlive a delivery attempt, or another instance takes
        // the event over while it is still being sent.
        if config.collector_timeout >= config.outbox_lease {
            return Err(ConfigError::Invalid {
                name: "OUTBOX_LEASE_MS",
                reason: "it must be longer than COLLECTOR_TIMEOUT_MS".to_owned(),
            });
        }
        // The ranking trusts statistics older than SETTLE to be final; an
        // order that could still commit after that would be missed by every
        // instance until its cache turns over.
        let longest = coffee_postgres::longest_order_transaction(
            config.database_acquire_timeout,
            config.idempotency_wait,
            config.database_statement_timeout,
        );
        if longest >= coffee_postgres::popular::SETTLE {
            return Err(ConfigError::Invalid {
                name: "DATABASE_STATEMENT_TIMEOUT_MS",
                reason: format!(
                    "an order's transaction could then stay open {} s (DATABASE_ACQUIRE_TIMEOUT_MS + \
                     IDEMPOTENCY_WAIT_MS + {} statements at DATABASE_STATEMENT_TIMEOUT_MS), which must stay \
                     under the popular ranking's {} s settling margin",
                    longest.as_secs(),
                    coffee_postgres::orders::ORDER_STATEMENTS,
                    coffee_postgres::popular::SETTLE.as_secs()
                ),
            });
        }
        Ok(config)
    }

    pub fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }
}

fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

fn number<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    Ok(optional_number(get, name)?.unwrap_or(default))
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

    #[test]
    fn local_defaults_need_no_variables() {
        let config = config(&[]).expect("defaults");
        assert_eq!(config.bind_addr, "127.0.0.1:8080");
        assert_eq!(config.access_token_ttl, Duration::from_secs(900));
        assert_eq!(config.refresh_token_ttl, Duration::from_secs(14 * 24 * 3600));
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
        let err = config(&[("DATABASE_STATEMENT_TIMEOUT_MS", "30000")]).expect_err("refused");
        assert!(err.to_string().contains("DATABASE_STATEMENT_TIMEOUT_MS"), "{err}");
        let err = config(&[("IDEMPOTENCY_WAIT_MS", "300000")]).expect_err("refused");
        assert!(err.to_string().contains("settling margin"), "{err}");
        assert!(config(&[("DATABASE_STATEMENT_TIMEOUT_MS", "20000")]).is_ok());
    }

    #[test]
    fn bad_numbers_name_their_variable() {
        let err = config(&[("ACCESS_TOKEN_TTL_SECS", "soon")]).expect_err("must refuse");
        assert!(err.to_string().contains("ACCESS_TOKEN_TTL_SECS"), "{err}");
    }
}
