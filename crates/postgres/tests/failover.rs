//! What a failover does to the adapter, provoked on the machine's server:
//! a server that stops taking writes (a primary demoted, seen here as a
//! database whose new sessions are read-only) and a backend terminated
//! under a statement (a primary dying or shutting down) are `503`, never
//! `500`; after a read-only answer the pool drops every connection opened
//! before, so the next request gets one that takes writes again.

use coffee_domain::{Email, PasswordHash, UserId, UserName};
use coffee_ports::{CreateUserError, NewUser, UserRepository};
use coffee_postgres::{PgPool, PgPoolSettings, PgUserRepository};
use coffee_test_support::TestDatabase;
use diesel_async::SimpleAsyncConnection;
use uuid::Uuid;

fn new_user() -> NewUser {
    NewUser {
        id: UserId::from_uuid(Uuid::now_v7()),
        email: Email::parse(&format!("{}@example.com", Uuid::new_v4().simple())).expect("email"),
        name: UserName::parse("Kim").expect("name"),
        password_hash: PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
    }
}

async fn set_read_only(db: &TestDatabase, on: bool) {
    let mut conn = db.connect().await;
    // This session's own transactions take writes whatever the database says.
    conn.batch_execute("SET default_transaction_read_only = off")
        .await
        .expect("SET");
    let statement = if on {
        format!(
            "ALTER DATABASE \"{}\" SET default_transaction_read_only = on",
            db.name()
        )
    } else {
        format!("ALTER DATABASE \"{}\" RESET default_transaction_read_only", db.name())
    };
    conn.batch_execute(&statement).await.expect("ALTER DATABASE");
}

#[tokio::test]
async fn a_read_only_server_is_503_and_its_connections_are_not_reused() {
    let db = TestDatabase::create().await;
    set_read_only(&db, true).await;
    let mut settings = PgPoolSettings::local(db.url());
    settings.max_size = 2;
    let users = PgUserRepository::new(PgPool::new(&settings).expect("pool"));

    // Both connections of the pool open while the server is read-only.
    let (first, second) = tokio::join!(users.create(new_user()), users.create(new_user()));
    for refused in [first, second] {
        match refused {
            Err(CreateUserError::Infra(e)) => assert!(e.is_unavailable(), "read-only must be 503: {e:?}"),
            other => panic!("a write on a read-only server answered {other:?}"),
        }
    }

    // The server takes writes again (the new primary): the read-only
    // connections are dropped on checkout, not handed out again.
    set_read_only(&db, false).await;
    for _ in 0..3 {
        users
            .create(new_user())
            .await
            .expect("written through a new connection");
    }
}

/// A backend terminated under a statement (`pg_terminate_backend`, as a
/// server shutting down or a dying primary does) answers `FATAL` with a
/// code diesel-async hides and a text the server translates: `503`, never
/// `500`.
#[tokio::test]
async fn a_statement_whose_backend_is_terminated_is_503() {
    let db = TestDatabase::create().await;
    let users = PgUserRepository::new(PgPool::new(&PgPoolSettings::local(db.url())).expect("pool"));
    let user = new_user();
    // Another session inserts the same email and holds its transaction:
    // the service's insert waits on the unique index.
    let mut holder = db.connect().await;
    holder
        .batch_execute(&format!(
            "BEGIN; INSERT INTO users (id, email, password_hash, name) VALUES ('{}', '{}', 'x', 'Lee')",
            Uuid::now_v7(),
            user.email.as_str()
        ))
        .await
        .expect("holding the email");
    let waiting = tokio::spawn(async move { users.create(user).await });
    db.wait_for_lock_waiters(1).await;
    db.count(&format!(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE datname = '{}' \
         AND application_name = 'coffee' AND wait_event_type = 'Lock'",
        db.name()
    ))
    .await;
    match waiting.await.expect("task") {
        Err(CreateUserError::Infra(e)) => assert!(e.is_unavailable(), "a terminated backend must be 503: {e:?}"),
        other => panic!("the insert of a terminated backend answered {other:?}"),
    }
    drop(holder);
}
