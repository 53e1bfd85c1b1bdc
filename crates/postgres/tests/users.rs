//! `PgUserRepository` against a real, freshly migrated database.

use std::sync::Arc;

use coffee_domain::{Email, PasswordHash, Points, UserId, UserName};
use coffee_ports::{CreateUserError, NewUser, UserRepository};
use coffee_postgres::{PgPool, PgPoolSettings, PgUserRepository};
use coffee_test_support::TestDatabase;
use uuid::Uuid;

fn new_user(email: &str) -> NewUser {
    NewUser {
        id: UserId::from_uuid(Uuid::now_v7()),
        email: Email::parse(email).expect("email"),
        name: UserName::parse("Kim").expect("name"),
        password_hash: PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
    }
}

fn repo(db: &TestDatabase) -> PgUserRepository {
    PgUserRepository::new(PgPool::new(&PgPoolSettings::local(db.url())).expect("pool"))
}

#[tokio::test]
async fn a_created_user_starts_at_zero_and_can_be_found() {
    let db = TestDatabase::create().await;
    let repo = repo(&db);

    let user = repo.create(new_user("kim@example.com")).await.expect("created");
    let found = repo.find_by_id(user.id).await.expect("query").expect("exists");
    let credentials = repo
        .find_credentials(&Email::parse("kim@example.com").expect("email"))
        .await
        .expect("query")
        .expect("exists");

    assert_eq!(user.point, Points::ZERO);
    assert_eq!(found, user);
    assert_eq!(credentials.user_id, user.id);
    assert!(credentials.password_hash.as_str().starts_with("$argon2id$"));
}

#[tokio::test]
async fn unknown_users_are_none() {
    let db = TestDatabase::create().await;
    let repo = repo(&db);

    assert!(
        repo.find_by_id(UserId::from_uuid(Uuid::now_v7()))
            .await
            .expect("query")
            .is_none()
    );
    assert!(
        repo.find_credentials(&Email::parse("nobody@example.com").expect("email"))
            .await
            .expect("query")
            .is_none()
    );
}

#[tokio::test]
async fn a_second_account_with_the_same_email_is_taken() {
    let db = TestDatabase::create().await;
    let repo = repo(&db);
    repo.create(new_user("kim@example.com")).await.expect("first");

    let err = repo.create(new_user("kim@example.com")).await.expect_err("second");

    assert!(matches!(err, CreateUserError::EmailTaken), "{err:?}");
}

#[tokio::test]
async fn of_concurrent_signups_with_one_email_exactly_one_wins() {
    let db = TestDatabase::create().await;
    let repo = Arc::new(repo(&db));

    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let repo = Arc::clone(&repo);
            tokio::spawn(async move { repo.create(new_user("race@example.com")).await })
        })
        .collect();
    let mut created = 0;
    let mut taken = 0;
    for attempt in attempts {
        match attempt.await.expect("joined") {
            Ok(_) => created += 1,
            Err(CreateUserError::EmailTaken) => taken += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    assert_eq!((created, taken), (1, 9));
}
