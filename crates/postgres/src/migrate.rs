//! Embedded migrations, applied over diesel-async (no libpq, no diesel CLI).

use std::time::Duration;

use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, RunQueryDsl as _};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::connect::PgTarget;

/// How long the migrator waits for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Every migration under the workspace's `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Applies every pending migration to the database at `url` and returns the
/// versions it applied. Runs the synchronous migration harness on a blocking
/// thread so it never stalls the async runtime.
pub async fn run_migrations(url: &str) -> anyhow::Result<Vec<String>> {
    let conn = PgTarget::parse(url)?.connect(CONNECT_TIMEOUT).await?.into_inner();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("applying migrations failed: {e}"))?;
        Ok(applied.iter().map(ToString::to_string).collect())
    })
    .await?
}

/// Creates the database named in `url` when it does not exist yet, so a fresh
/// machine needs nothing but a running server. Returns whether it created it.
/// When the database cannot be reached, asks the server's `postgres` database
/// whether it exists (rather than reading the error's text, which the server
/// may have translated into another language).
pub async fn ensure_database_exists(url: &str) -> anyhow::Result<bool> {
    use diesel_async::SimpleAsyncConnection as _;
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
        })?;
    let existing: Vec<Existing> = diesel::sql_query("SELECT 1 AS one FROM pg_database WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(&name)
        .load(&mut conn)
        .await?;
    if !existing.is_empty() {
        return Err(anyhow::Error::new(unreachable).context("connecting to PostgreSQL"));
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
