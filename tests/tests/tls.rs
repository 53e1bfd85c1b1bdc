//! TLS to PostgreSQL and Redis: a throwaway PostgreSQL cluster that accepts
//! only `hostssl` connections and a `redis-server` listening with TLS only,
//! with certificates the test makes (scripts/data-tier.sh). The service
//! serves signup, charge and order over both with `verify-full`; settings
//! that can never work stop the start with a message naming them.

use std::time::Duration;

use coffee_e2e::{Api, DataTier, coffee_env, free_port, override_env, run_coffee, run_coffee_within, start_coffee};
use serde_json::json;

const AMERICANO: &str = "0192f0a0-0000-7000-8000-000000000001";

/// A TLS-only PostgreSQL and Redis, and the URLs that reach them with full
/// verification.
struct Servers {
    tier: DataTier,
    pg: u16,
    redis: u16,
}

impl Servers {
    fn start() -> Self {
        let tier = DataTier::with_certificates().expect("certificates");
        let (pg, redis) = (free_port(), free_port());
        tier.pg_primary(pg, None).expect("PostgreSQL with TLS");
        tier.redis(redis, None).expect("Redis with TLS");
        Self { tier, pg, redis }
    }

    fn database_url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/coffee?{query}", self.pg)
    }

    fn verified_database_url(&self) -> String {
        self.tier.verified_database_url(&[self.pg], "")
    }

    fn env(&self, port: u16, database_url: String, redis_url: String, ca: &str) -> Vec<(&'static str, String)> {
        let mut env = coffee_env(
            port,
            &database_url,
            &coffee_test_support::unique_key_prefix(),
            "http://127.0.0.1:1",
        );
        override_env(
            &mut env,
            [
                ("REDIS_URL", redis_url),
                ("REDIS_CA_FILE", self.tier.file(ca)),
                ("DATABASE_ACQUIRE_TIMEOUT_MS", "3000".to_owned()),
            ],
        );
        env
    }

    fn verified_env(&self, port: u16) -> Vec<(&'static str, String)> {
        self.env(
            port,
            self.verified_database_url(),
            format!("rediss://localhost:{}", self.redis),
            "ca.crt",
        )
    }
}

/// Runs `coffee serve` expecting it to refuse to start; returns its output.
fn refused_start(env: &[(&'static str, String)]) -> String {
    let (status, output) = run_coffee_within(&["serve"], env, Duration::from_secs(30)).expect("coffee runs");
    assert!(!status.success(), "the start was not refused:\n{output}");
    output
}

#[tokio::test]
async fn signup_charge_and_order_go_over_tls_with_full_verification() {
    let servers = Servers::start();
    let port = free_port();
    let env = servers.verified_env(port);
    let (status, output) = run_coffee(&["migrate"], &env).expect("coffee migrate runs");
    assert!(status.success(), "migrate over verify-full failed:\n{output}");

    let _coffee = start_coffee(port, &env).await.expect("coffee serve starts");
    let api = Api::new(&format!("http://127.0.0.1:{port}"));
    let (user, token) = api.funded_user(10_000).await;
    let order = api
        .order(
            &token,
            Some("tls-order"),
            json!([{ "menuId": AMERICANO, "quantity": 1 }]),
        )
        .await;
    assert_eq!(order.status, 201, "{:?}", order.body);
    let me = api.me(&token).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.str("id"), user);

    // The server saw only encrypted connections from the service.
    let ssl = servers
        .tier
        .psql(
            servers.pg,
            "coffee",
            "SELECT count(*) FILTER (WHERE NOT ssl) || ' ' || count(*) FROM pg_stat_ssl \
             JOIN pg_stat_activity USING (pid) WHERE application_name = 'coffee'",
        )
        .expect("psql");
    let (plain, all) = ssl.split_once(' ').expect("two counts");
    assert_eq!(plain, "0", "plain-text connections: {ssl}");
    assert_ne!(all, "0", "no connection of the service seen: {ssl}");
}

#[tokio::test]
async fn settings_that_can_never_work_stop_the_start_naming_them() {
    let servers = Servers::start();
    let ca = servers.tier.file("ca.crt");
    let other_ca = servers.tier.file("other-ca.crt");
    let redis_url = format!("rediss://localhost:{}", servers.redis);
    let (status, output) = run_coffee(&["migrate"], &servers.verified_env(free_port())).expect("migrate");
    assert!(status.success(), "{output}");

    // PostgreSQL's certificate signed by another CA.
    let wrong_ca = servers.database_url("localhost", &format!("sslmode=verify-full&sslrootcert={other_ca}"));
    let output = refused_start(&servers.env(free_port(), wrong_ca, redis_url.clone(), "ca.crt"));
    assert!(
        output.contains("DATABASE_URL") && output.contains("sslrootcert"),
        "{output}"
    );

    // A host name the certificate does not name (the address is the
    // server's; the name checked is `misnamed.invalid`).
    let wrong_name = servers.database_url(
        "misnamed.invalid",
        &format!("hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}"),
    );
    let output = refused_start(&servers.env(free_port(), wrong_name, redis_url.clone(), "ca.crt"));
    assert!(
        output.contains("DATABASE_URL") && output.contains("not valid for name"),
        "{output}"
    );
    // verify-ca does not check the name; prefer checks nothing.
    let any_name = servers.database_url(
        "misnamed.invalid",
        &format!("hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert={ca}"),
    );
    let unverified = servers.database_url("localhost", &format!("sslmode=prefer&sslrootcert={other_ca}"));
    for url in [any_name, unverified] {
        let env = servers.env(free_port(), url.clone(), redis_url.clone(), "ca.crt");
        let (status, output) = run_coffee(&["migrate"], &env).expect("migrate");
        assert!(status.success(), "{url} refused:\n{output}");
    }

    // Plain text against `hostssl` only: the server's own refusal.
    let plain = servers.database_url("localhost", "sslmode=disable");
    let output = refused_start(&servers.env(free_port(), plain, redis_url.clone(), "ca.crt"));
    assert!(
        output.contains("DATABASE_URL") && output.contains("pg_hba.conf"),
        "{output}"
    );

    // Redis's certificate signed by another CA.
    let output = refused_start(&servers.env(free_port(), servers.verified_database_url(), redis_url, "other-ca.crt"));
    assert!(output.contains("REDIS_CA_FILE"), "{output}");
    // A Redis whose certificate names another host.
    let misnamed = free_port();
    servers
        .tier
        .redis_with_certificate(misnamed, "misnamed")
        .expect("Redis with a misnamed certificate");
    let env = servers.env(
        free_port(),
        servers.verified_database_url(),
        format!("rediss://localhost:{misnamed}"),
        "ca.crt",
    );
    let output = refused_start(&env);
    assert!(
        output.contains("REDIS_URL") && output.contains("not valid for name"),
        "{output}"
    );
}

#[tokio::test]
async fn unreachable_servers_do_not_stop_the_start() {
    let tier = DataTier::with_certificates().expect("certificates");
    let port = free_port();
    let mut env = coffee_env(
        port,
        &tier.verified_database_url(&[free_port()], ""),
        &coffee_test_support::unique_key_prefix(),
        "http://127.0.0.1:1",
    );
    override_env(
        &mut env,
        [
            ("REDIS_URL", format!("rediss://localhost:{}", free_port())),
            ("REDIS_CA_FILE", tier.file("ca.crt")),
        ],
    );
    let _coffee = start_coffee(port, &env)
        .await
        .expect("coffee serve starts with both servers down");
    let api = Api::new(&format!("http://127.0.0.1:{port}"));
    let ready = api.get("/health/ready", None).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["dependencies"]["database"], "down");
    assert_eq!(ready.body["dependencies"]["cache"], "down");
}
