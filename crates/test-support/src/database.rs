//! Per-test databases cloned from a migrated template.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use diesel::sql_types::Text;
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tokio::sync::OnceCell;

use crate::host_port as coffee_url_host_port;

/// The template's name for the current migrations; created once per machine
/// and per change of `migrations/`, shared by every test process.
static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// A database that exists for one test and is dropped with this value.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates a fresh database with every migration applied (and the menu seeded).
    ///
    /// # Panics
    /// When PostgreSQL cannot be reached or the migrations fail: a test cannot
    /// do anything useful without its database, and the message says why.
    pub async fn create() -> Self {
        match Self::try_create().await {
            Ok(db) => db,
            Err(e) => panic!("could not create a test database: {e:#}"),
        }
    }

    /// Creates an empty database with no tables, for testing `coffee migrate`.
    pub async fn create_empty() -> Self {
        let name = new_database_name();
        let created = async {
            admin_connection()
                .await?
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = created {
            panic!("could not create an empty test database: {e:#}");
        }
        Self {
            url: database_url(&name),
            name,
        }
    }

    /// The admin URL's server with another database name, for a test that
    /// points the application at some other address (a proxy).
    pub fn url_via(&self, host_port: &str) -> String {
        match coffee_url_host_port(&self.url) {
            Some(current) => self.url.replacen(current, host_port, 1),
            None => self.url.clone(),
        }
    }

    async fn try_create() -> anyhow::Result<Self> {
        let template = TEMPLATE.get_or_try_init(ensure_template).await?.clone();
        let name = new_database_name();
        let mut admin = admin_connection().await?;
        // Concurrent clones of one template can collide while PostgreSQL checks
        // that nobody else uses it; a short retry covers that window.
        let mut attempt = 0;
        loop {
            let created = admin
                .batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""))
                .await;
            match created {
                Ok(()) => break,
                Err(e) if attempt < 20 && e.to_string().contains("being accessed by other users") => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(e).context("CREATE DATABASE from the template"),
            }
        }
        Ok(Self {
            url: database_url(&name),
            name,
        })
    }

    /// Connection URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops another database on the same server (one a test made through
    /// the application); returns whether it existed.
    pub async fn drop_sibling(&self, name: &str) -> bool {
        let dropped = async {
            let mut admin = admin_connection().await?;
            let existing: Vec<DatabaseName> = sql_query("SELECT datname FROM pg_database WHERE datname = $1")
                .bind::<Text, _>(name)
                .load(&mut admin)
                .await?;
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await?;
            anyhow::Ok(!existing.is_empty())
        }
        .await;
        dropped.unwrap_or_else(|e| panic!("dropping {name}: {e:#}"))
    }

    /// Makes PostgreSQL speak Korean to every new connection to this
    /// database (`lc_messages = 'ko_KR.UTF-8'`), as a server set up for
    /// Korean users does, so tests can prove nothing reads English error
    /// text. Generates the locale first when the machine lacks it (glibc's
    /// `localedef`, as a directory, which running servers pick up at once).
    ///
    /// # Panics
    /// When the locale cannot be made or the server refuses it.
    pub async fn speak_korean(&self) {
        crate::locale::ensure_locale("ko_KR", "ko_KR.UTF-8");
        let set = async {
            admin_connection()
                .await?
                .batch_execute(&format!(
                    "ALTER DATABASE \"{}\" SET lc_messages = 'ko_KR.UTF-8'",
                    self.name
                ))
                .await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = set {
            panic!("could not switch {} to Korean messages: {e:#}", self.name);
        }
    }

    /// Drops the test databases that killed runs left behind; every test
    /// process does this once, before its first database.
    pub async fn sweep_abandoned() -> anyhow::Result<()> {
        drop_abandoned(&mut admin_connection().await?).await
    }

    /// A direct connection, for tests that check rows behind an adapter's back.
    pub async fn connect(&self) -> AsyncPgConnection {
        match AsyncPgConnection::establish(&self.url).await {
            Ok(conn) => conn,
            Err(e) => panic!("could not connect to {}: {e}", self.name),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down, so
        // the DROP runs on a thread with a runtime of its own.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut admin = admin_connection().await?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await?;
                Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: test database {} was not dropped", self.name);
        }
    }
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".to_owned())
}

/// The admin URL with its database name replaced by `name`.
fn database_url(name: &str) -> String {
    let admin = admin_url();
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base.to_owned(), format!("?{query}")),
        None => (admin.clone(), String::new()),
    };
    // Everything up to the first '/' after "scheme://authority".
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base.as_str(),
    };
    format!("{server}/{name}{query}")
}

async fn admin_connection() -> anyhow::Result<AsyncPgConnection> {
    AsyncPgConnection::establish(&admin_url())
        .await
        .with_context(|| "connecting to PostgreSQL as admin (set TEST_DATABASE_URL)".to_owned())
}

fn migrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations")
}

/// A fingerprint of every file under `migrations/`, so that a changed
/// migration gets a new template instead of a stale one.
fn migrations_fingerprint() -> anyhow::Result<u64> {
    let mut files = Vec::new();
    collect_files(&migrations_dir(), &mut files)?;
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.file_name().hash(&mut hasher);
        std::fs::read(&file)
            .with_context(|| format!("reading {}", file.display()))?
            .hash(&mut hasher);
    }
    Ok(hasher.finish())
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[derive(QueryableByName)]
struct DatabaseName {
    #[diesel(sql_type = Text)]
    datname: String,
}

/// `coffee_test_<unix seconds>_<pid>_<random>`: when and by which process
/// the database was made, so a later run can tell what a killed run left.
fn new_database_name() -> String {
    let created = time::OffsetDateTime::now_utc().unix_timestamp();
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("coffee_test_{created}_{}_{}", std::process::id(), &random[..16])
}

/// How old a test database may get before any run may drop it, whoever made
/// it (its maker could be on another machine sharing the server).
const ABANDONED_AFTER_SECS: i64 = 6 * 3600;

/// Whether a database named by [`new_database_name`] (or the older
/// `coffee_test_<uuid>`) was left behind: its process is gone from this
/// machine, or it is older than [`ABANDONED_AFTER_SECS`]. The caller also
/// checks that nobody is connected to it.
fn is_abandoned(name: &str, now: i64) -> bool {
    let Some(rest) = name.strip_prefix("coffee_test_") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('_').collect();
    match parts.as_slice() {
        [created, pid, _random] => {
            let (Ok(created), Ok(pid)) = (created.parse::<i64>(), pid.parse::<u32>()) else {
                return false;
            };
            let process_gone = !Path::new(&format!("/proc/{pid}")).exists();
            now - created > ABANDONED_AFTER_SECS || (process_gone && now - created > 60)
        }
        // The format before creators were recorded: no run makes it any more.
        [legacy] => legacy.len() == 32,
        _ => false,
    }
}

/// Drops the test databases that killed runs left behind (a finished test
/// drops its own), skipping any database someone is connected to.
async fn drop_abandoned(admin: &mut AsyncPgConnection) -> anyhow::Result<()> {
    let idle: Vec<DatabaseName> = sql_query(
        "SELECT datname FROM pg_database d WHERE datname LIKE 'coffee\\_test\\_%' \
         AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)",
    )
    .load(admin)
    .await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for db in idle.into_iter().filter(|db| is_abandoned(&db.datname, now)) {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", db.datname))
            .await?;
    }
    Ok(())
}

/// Creates the template for the current migrations unless it exists, after
/// clearing what killed runs left. Several test processes may race here; a
/// session advisory lock serialises them.
async fn ensure_template() -> anyhow::Result<String> {
    let fingerprint = migrations_fingerprint()?;
    let template = format!("coffee_tpl_{fingerprint:016x}");
    let mut admin = admin_connection().await?;
    drop_abandoned(&mut admin)
        .await
        .context("dropping abandoned test databases")?;
    admin
        .batch_execute("SELECT pg_advisory_lock(727274)")
        .await
        .context("taking the template lock")?;
    let result = create_template_if_missing(&mut admin, &template).await;
    admin.batch_execute("SELECT pg_advisory_unlock(727274)").await?;
    result.map(|()| template)
}

async fn create_template_if_missing(admin: &mut AsyncPgConnection, template: &str) -> anyhow::Result<()> {
    let existing: Vec<DatabaseName> =
        sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'coffee\\_tpl\\_%'")
            .load(admin)
            .await?;
    if existing.iter().any(|d| d.datname == template) {
        return Ok(());
    }
    // Templates of older migrations are of no further use.
    for stale in existing {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", stale.datname))
            .await?;
    }
    let building = format!("{template}_building");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"))
        .await?;
    admin.batch_execute(&format!("CREATE DATABASE \"{building}\"")).await?;
    coffee_postgres::run_migrations(&database_url(&building), coffee_postgres::MigrationSettings::default())
        .await
        .context("migrating the template database")?;
    // Renamed only once complete, so no test ever clones a half-built template.
    admin
        .batch_execute(&format!("ALTER DATABASE \"{building}\" RENAME TO \"{template}\""))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_databases_of_gone_or_ancient_runs_are_abandoned() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mine = format!("coffee_test_{now}_{}_0123456789abcdef", std::process::id());
        let old_mine = format!("coffee_test_{}_{}_0123456789abcdef", now - 7 * 3600, std::process::id());
        let gone = format!("coffee_test_{}_{}_0123456789abcdef", now - 120, u32::MAX);
        let just_made = format!("coffee_test_{}_{}_0123456789abcdef", now - 5, u32::MAX);
        assert!(!is_abandoned(&mine, now));
        assert!(is_abandoned(&old_mine, now));
        assert!(is_abandoned(&gone, now));
        assert!(!is_abandoned(&just_made, now));
        assert!(is_abandoned("coffee_test_0123456789abcdef0123456789abcdef", now));
        assert!(!is_abandoned("coffee_tpl_0123456789abcdef", now));
        assert!(!is_abandoned("coffee", now));
        assert!(new_database_name().len() <= 63, "PostgreSQL's identifier limit");
    }

    #[test]
    fn database_url_replaces_only_the_database_name() {
        let url = database_url("x");
        let (base, query) = url.split_once('?').unwrap_or((&url, ""));
        assert!(base.ends_with("/x"), "{url}");
        assert_eq!(base.matches('/').count(), 3, "{url}");
        assert_eq!(
            admin_url().split_once('?').map(|(_, q)| q).unwrap_or(""),
            query,
            "the options are kept"
        );
    }
}
