//! Embedded migrations, applied over diesel-async (no libpq, no diesel CLI).

use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, RunQueryDsl as _};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// Every migration under the workspace's `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Applies every pending migration to the database at `url` and returns the
/// versions it applied. Runs the synchronous migration harness on a blocking
/// thread so it never stalls the async runtime.
pub async fn run_migrations(url: &str) -> anyhow::Result<Vec<String>> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        use diesel::Connection as _;
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)?;
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
    use diesel_async::{AsyncConnection as _, SimpleAsyncConnection as _};
    let Err(unreachable) = AsyncPgConnection::establish(url).await else {
        return Ok(false);
    };
    let (maintenance_url, name) = split_database(url)?;
    let mut conn = AsyncPgConnection::establish(&maintenance_url).await.map_err(|e| {
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

/// Splits `postgres://host/db?x` into (`postgres://host/postgres?x`, `db`).
/// Only plain names (letters, digits, `_`, `-`) are accepted, since the name
/// ends up in a `CREATE DATABASE` statement.
fn split_database(url: &str) -> anyhow::Result<(String, String)> {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let slash = base[authority_start..]
        .find('/')
        .map(|i| authority_start + i)
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL names no database"))?;
    let name = &base[slash + 1..];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        anyhow::bail!("database name {name:?} must be letters, digits, '_' or '-'");
    }
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    Ok((format!("{}/postgres{query}", &base[..slash]), name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maintenance_url_keeps_server_and_options() {
        let (url, name) = split_database("postgres://u:p@h:5432/coffee?sslmode=disable").expect("valid");
        assert_eq!(url, "postgres://u:p@h:5432/postgres?sslmode=disable");
        assert_eq!(name, "coffee");
    }

    #[test]
    fn odd_database_names_are_refused() {
        assert!(split_database("postgres://h/cof\"fee").is_err());
        assert!(split_database("postgres://h").is_err());
    }
}
