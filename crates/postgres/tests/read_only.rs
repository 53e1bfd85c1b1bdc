//! A server that stops taking writes (a primary demoted by a failover, seen
//! here as a database whose new sessions are read-only): a write is `503`,
//! never `500`, and the pool drops every connection opened before, so the
//! next request gets a connection that takes writes again.

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
