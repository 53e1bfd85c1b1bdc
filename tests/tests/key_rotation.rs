//! Rotating the signing key without logging anyone out: tokens and cursors
//! issued under key A keep working after a restart with key B and A as a
//! previous key, and stop working once A is removed.

use coffee_e2e::{Api, coffee_env, free_port, override_env, start_coffee};
use coffee_test_support::{TestDatabase, unique_key_prefix};
use serde_json::json;

const KEY_A: &str = "signing-key-a-of-at-least-thirty-two-bytes";
const KEY_B: &str = "signing-key-b-of-at-least-thirty-two-bytes";

#[tokio::test]
async fn tokens_and_cursors_survive_a_rotation_until_the_old_key_is_removed() {
    let db = TestDatabase::create().await;
    let prefix = unique_key_prefix();
    let port = free_port();
    let env_with = |secret: &str, previous: &str| {
        let mut env = coffee_env(port, db.url(), &prefix, "http://127.0.0.1:1");
        override_env(
            &mut env,
            [
                ("JWT_SECRET", secret.to_owned()),
                ("JWT_PREVIOUS_SECRETS", previous.to_owned()),
            ],
        );
        env
    };

    // Under key A: a user with two ledger entries, a page cursor, and two
    // sessions (one to refresh under B, one to try once A is gone).
    let server = start_coffee(port, &env_with(KEY_A, "")).await.expect("starts with A");
    let api = Api::new(&server.base_url);
    let (user, access_a, refresh_a) = api.new_user().await;
    for key in ["first", "second"] {
        let charged = api.charge(&access_a, &user, Some(key), json!({ "amount": 1000 })).await;
        assert_eq!(charged.status, 200, "{:?}", charged.body);
    }
    let history = format!("/users/{user}/points/transactions?limit=1");
    let first_page = api.get(&history, Some(&access_a)).await;
    let cursor_a = first_page.str("nextCursor");
    let me = api.get(&format!("/users/{user}/points"), Some(&access_a)).await;
    assert_eq!(me.status, 200);
    drop(server);

    // Key B signs; A still verifies.
    let server = start_coffee(port, &env_with(KEY_B, KEY_A))
        .await
        .expect("starts with B, A previous");
    let api = Api::new(&server.base_url);
    assert_eq!(api.me(&access_a).await.status, 200, "an access token of A");
    let next_page = api.get(&format!("{history}&cursor={cursor_a}"), Some(&access_a)).await;
    assert_eq!(next_page.status, 200, "a cursor of A: {:?}", next_page.body);
    assert_eq!(next_page.body["items"].as_array().map(Vec::len), Some(1));
    let refreshed = api.refresh(&refresh_a).await;
    assert_eq!(refreshed.status, 200, "a refresh token of A: {:?}", refreshed.body);
    let (access_b, refresh_b) = (refreshed.str("accessToken"), refreshed.str("refreshToken"));
    let cursor_b = api.get(&history, Some(&access_b)).await.str("nextCursor");
    assert_ne!(cursor_a, cursor_b, "B seals new cursors");
    drop(server);

    // A is removed: what A issued no longer works; what B issued does.
    let server = start_coffee(port, &env_with(KEY_B, ""))
        .await
        .expect("starts with B only");
    let api = Api::new(&server.base_url);
    assert_eq!(api.me(&access_a).await.status, 401, "A's access token is refused");
    let stale = api.get(&format!("{history}&cursor={cursor_a}"), Some(&access_b)).await;
    assert_eq!(stale.status, 400, "A's cursor is refused: {:?}", stale.body);
    assert_eq!(api.me(&access_b).await.status, 200);
    let page = api.get(&format!("{history}&cursor={cursor_b}"), Some(&access_b)).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert_eq!(api.refresh(&refresh_b).await.status, 200, "B's refresh token");
}
