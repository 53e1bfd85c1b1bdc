//! Embedded migrations, applied over diesel-async (no libpq, no diesel CLI).
//!
//! Safe to run from several instances or jobs at once: creating the database
//! and applying migrations each happen under a PostgreSQL advisory lock, so
//! one runner does the work and the others then find nothing to do. And a
//! migration never queues behind a long transaction: `lock_timeout` bounds
//! every lock it waits for, so it fails fast (nothing of the failed
//! migration is applied) instead of holding its place in the lock queue,
//! where every request touching the table would queue behind it.

use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, RunQueryDsl as _, SimpleAsyncConnection as _};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::connect::PgTarget;

/// How long the migrator waits for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The advisory lock key `coffee migrate` holds while it creates the
/// database (taken in the server's `postgres` database) and while it applies
/// migrations (in the service's database): "coffee" in ASCII.
const MIGRATION_LOCK: i64 = 0x636f_6666_6565;

/// Every migration under the workspace's `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// How long a migration may wait.
#[derive(Debug, Clone, Copy)]
pub struct MigrationSettings {
    /// The longest wait for a lock on something a migration changes (a table
    /// a long transaction uses): PostgreSQL's `lock_timeout`.
    pub lock_timeout: Duration,
    /// The longest wait for another `coffee migrate` to finish.
    pub wait: Duration,
}

impl Default for MigrationSettings {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(5),
            wait: Duration::from_secs(120),
        }
    }
}

/// Applies every pending migration to the database at `url` and returns the
/// versions it applied. Waits for any other runner first (see the module's
/// documentation). Runs the synchronous migration harness on a blocking
/// thread so it never stalls the async runtime.
pub async fn run_migrations(url: &str, settings: MigrationSettings) -> anyhow::Result<Vec<String>> {
    let mut conn = PgTarget::parse(url)?.connect(CONNECT_TIMEOUT).await?.into_inner();
    take_migration_lock(&mut conn, settings.wait).await?;
    conn.batch_execute(&format!("SET lock_timeout = {}", millis(settings.lock_timeout)))
        .await?;
    let lock_timeout_ms = millis(settings.lock_timeout);
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        // Each migration runs in a transaction of its own: one that fails
        // leaves nothing behind. The lock goes with the connection.
        let applied = conn.run_pending_migrations(MIGRATIONS).map_err(|e| {
            anyhow::anyhow!(
                "applying migrations failed: {e}. If it waited for a lock (lock timeout, SQLSTATE 55P03: \
                 MIGRATION_LOCK_TIMEOUT_MS={lock_timeout_ms}), a transaction holds a table this migration \
                 changes; nothing of the failed migration was applied: run `coffee migrate` again once that \
                 transaction ends"
            )
        })?;
        Ok(applied.iter().map(ToString::to_string).collect())
    })
    .await?
}

fn millis(duration: Duration) -> u128 {
    duration.as_millis().max(1)
}

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

/// Takes [`MIGRATION_LOCK`] on `conn`'s database, polling so the wait needs
/// no error text to recognise its end (the server translates its messages).
async fn take_migration_lock(conn: &mut AsyncPgConnection, wait: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        let taken: Locked = crate::sql::query!("SELECT pg_try_advisory_lock($1) AS locked")
            .bind::<BigInt, _>(MIGRATION_LOCK)
            .get_result(conn)
            .await?;
        if taken.locked {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "another `coffee migrate` has held the migration lock for {} s (MIGRATION_WAIT_SECS): it may \
                 still be applying a long migration; run this one again once it is done",
                wait.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates the database named in `url` when it does not exist yet, so a fresh
/// machine needs nothing but a running server. Returns whether it created it.
/// When the database cannot be reached, asks the server's `postgres` database
/// whether it exists (rather than reading the error's text, which the server
/// may have translated into another language), under the migration lock so
/// that of several runners starting at once only one creates it.
pub async fn ensure_database_exists(url: &str, settings: MigrationSettings) -> anyhow::Result<bool> {
    let target = PgTarget::parse(url)?;
    let Err(unreachable) = target.connect(CONNECT_TIMEOUT).await else {
        return Ok(false);
    };
    let name = database_name(&target)?;
    let mut conn = target
        .with_database("postgres")
        .connect(CONNECT_TIMEOUT)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "connecting to PostgreSQL failed ({unreachable}), and so did connecting to its maintenance database to \
             see whether {name:?} exists ({e})"
            )
        })?
        .into_inner();
    take_migration_lock(&mut conn, settings.wait).await?;
    let existing: Vec<Existing> = crate::sql::query!("SELECT 1 AS one FROM pg_database WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(&name)
        .load(&mut conn)
        .await?;
    if !existing.is_empty() {
        // Created by a runner that held the lock before this one, or there
        // all along and unreachable for another reason.
        return match target.connect(CONNECT_TIMEOUT).await {
            Ok(_) => Ok(false),
            Err(_) => Err(anyhow::Error::new(unreachable).context("connecting to PostgreSQL")),
        };
    }
    conn.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await?;
    Ok(true)
}

#[derive(diesel::QueryableByName)]
struct Existing {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    #[allow(dead_code)]
    one: i32,
}

/// The database `target` names. Only plain names (letters, digits, `_`,
/// `-`) are accepted, since the name ends up in a `CREATE DATABASE`
/// statement.
fn database_name(target: &PgTarget) -> anyhow::Result<String> {
    let name = target
        .database()
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL names no database"))?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        anyhow::bail!("database name {name:?} must be letters, digits, '_' or '-'");
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(url: &str) -> anyhow::Result<String> {
        database_name(&PgTarget::parse(url)?)
    }

    #[test]
    fn the_database_name_is_read_from_the_url() {
        assert_eq!(
            name_of("postgres://u:p@h:5432/coffee?sslmode=disable").expect("valid"),
            "coffee"
        );
    }

    #[test]
    fn odd_database_names_are_refused() {
        assert!(name_of("postgres://h/cof\"fee").is_err());
        assert!(name_of("postgres://h").is_err());
    }
}
