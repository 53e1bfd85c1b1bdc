//! `spawn_app()`: the real application on a free port, with its own database
//! and Redis key prefix.

use std::collections::HashMap;

use coffee_bootstrap::{Application, Config};
use coffee_test_support::TestDatabase;

/// A running application and typed helpers to call it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// Held so the database lives as long as the app.
    #[allow(dead_code)]
    pub db: Option<TestDatabase>,
}

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_menus(&self) -> reqwest::Response {
        self.get("/menus").await
    }
}

fn base_config(overrides: &[(&str, String)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("APP_ENV".to_owned(), "test".to_owned()),
        ("BIND_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("HTTP_WORKERS".to_owned(), "2".to_owned()),
        ("REDIS_URL".to_owned(), coffee_test_support::redis_url()),
        ("REDIS_KEY_PREFIX".to_owned(), coffee_test_support::unique_key_prefix()),
        // Nothing listens on port 1: order events stay pending and are retried.
        ("COLLECTOR_URL".to_owned(), "http://127.0.0.1:1".to_owned()),
        // Every test client is 127.0.0.1.
        ("CLIENT_LOGIN_MAX_ATTEMPTS".to_owned(), "1000000".to_owned()),
    ]);
    for (name, value) in overrides {
        vars.insert((*name).to_owned(), value.clone());
    }
    Config::from_lookup(|name| vars.get(name).cloned()).expect("test configuration is valid")
}

async fn start(config: Config, db: Option<TestDatabase>) -> TestApp {
    let app = Application::build(&config).await.expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        db,
    }
}

/// The application on a fresh, migrated database.
pub async fn spawn_app() -> TestApp {
    let db = TestDatabase::create().await;
    let config = base_config(&[("DATABASE_URL", db.url().to_owned())]);
    start(config, Some(db)).await
}

/// The application on a fresh, migrated database, with `overrides` of the
/// test configuration.
pub async fn spawn_app_with(overrides: &[(&str, String)]) -> TestApp {
    let db = TestDatabase::create().await;
    let mut vars = vec![("DATABASE_URL", db.url().to_owned())];
    vars.extend(overrides.iter().cloned());
    start(base_config(&vars), Some(db)).await
}

/// The application pointed at a PostgreSQL that does not exist.
pub async fn spawn_app_without_database() -> TestApp {
    let config = base_config(&[
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none".to_owned()),
        ("DATABASE_ACQUIRE_TIMEOUT_MS", "500".to_owned()),
    ]);
    start(config, None).await
}
