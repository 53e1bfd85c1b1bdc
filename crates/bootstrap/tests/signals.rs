//! The instance listens for SIGTERM and SIGINT before it can answer anyone:
//! a balancer or an orchestrator may stop an instance the moment it is
//! ready, and a signal with no handler yet ends the process at once, with no
//! drain. Its own test binary, so that no other test has installed handlers.

use std::collections::HashMap;

use coffee_bootstrap::{Application, Config};
use coffee_test_support::TestDatabase;

/// The signals this process catches (`SigCgt` of `/proc/self/status`), as a
/// bit set: bit `n - 1` for signal `n`.
fn caught_signals() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .expect("a SigCgt line");
    u64::from_str_radix(mask.trim(), 16).expect("a hexadecimal mask")
}

const SIGINT: u32 = 2;
const SIGTERM: u32 = 15;

fn catches(mask: u64, signal: u32) -> bool {
    mask & (1 << (signal - 1)) != 0
}

#[tokio::test]
async fn signals_are_caught_once_the_application_is_built_before_it_runs() {
    let before = caught_signals();
    assert!(
        !catches(before, SIGTERM) && !catches(before, SIGINT),
        "nothing in this test binary caught them before"
    );
    let db = TestDatabase::create().await;
    let vars: HashMap<&str, String> = HashMap::from([
        ("APP_ENV", "test".to_owned()),
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
        ("HTTP_WORKERS", "1".to_owned()),
        ("DATABASE_URL", db.url().to_owned()),
        ("REDIS_URL", coffee_test_support::redis_url()),
        ("REDIS_KEY_PREFIX", coffee_test_support::unique_key_prefix()),
        ("COLLECTOR_URL", "http://127.0.0.1:1".to_owned()),
    ]);
    let config = Config::from_lookup(|name| vars.get(name).cloned()).expect("test configuration is valid");
    // Built: its listener is bound and its workers may already serve.
    let _app = Application::build(&config).await.expect("application builds");
    let after = caught_signals();
    assert!(
        catches(after, SIGTERM),
        "SIGTERM is caught as soon as the instance can serve"
    );
    assert!(
        catches(after, SIGINT),
        "SIGINT is caught as soon as the instance can serve"
    );
}
