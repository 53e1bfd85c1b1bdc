//! `PgMenuRepository` against a real, freshly migrated database.

use std::sync::Arc;

use coffee_application::CachedMenus;
use coffee_ports::MenuRepository;
use coffee_postgres::{PgMenuRepository, PgPool, PgPoolSettings};
use coffee_test_support::TestDatabase;
use diesel_async::SimpleAsyncConnection;

#[tokio::test]
async fn lists_the_seeded_menu_ordered_by_name() {
    let db = TestDatabase::create().await;
    let repo = PgMenuRepository::new(PgPool::new(&PgPoolSettings::local(db.url())).expect("pool"));

    let menus = repo.list().await.expect("listed");

    assert!(
        menus.len() >= 8,
        "the migration seeds at least 8 coffees, got {}",
        menus.len()
    );
    let names: Vec<_> = menus.iter().map(|m| m.name.as_str().to_owned()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(menus.iter().all(|m| m.price.value() > 0));
}

#[tokio::test]
async fn a_new_menu_appears_in_name_order() {
    let db = TestDatabase::create().await;
    db.connect()
        .await
        .batch_execute("INSERT INTO menus (id, name, price) VALUES (gen_random_uuid(), 'Affogato', 6000)")
        .await
        .expect("insert");
    let repo = PgMenuRepository::new(PgPool::new(&PgPoolSettings::local(db.url())).expect("pool"));

    let menus = repo.list().await.expect("listed");

    assert_eq!(menus[0].name.as_str(), "Affogato");
    assert_eq!(menus[0].price.value(), 6000);
}

#[tokio::test]
async fn a_cached_list_is_reread_only_after_its_ttl() {
    let db = TestDatabase::create().await;
    let pool = PgPool::new(&PgPoolSettings::local(db.url())).expect("pool");
    let cached = CachedMenus::new(
        Arc::new(PgMenuRepository::new(pool.clone())),
        std::time::Duration::from_millis(300),
    );
    let uncached = PgMenuRepository::new(pool);
    let before = cached.list().await.expect("listed").len();

    db.connect()
        .await
        .batch_execute("INSERT INTO menus (id, name, price) VALUES (gen_random_uuid(), 'Affogato', 6000)")
        .await
        .expect("insert");

    assert_eq!(cached.list().await.expect("listed").len(), before, "served from memory");
    assert_eq!(
        uncached.list().await.expect("listed").len(),
        before + 1,
        "no cache, no delay"
    );
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    assert_eq!(
        cached.list().await.expect("listed").len(),
        before + 1,
        "re-read after the ttl"
    );
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    let mut settings = PgPoolSettings::local("postgres://postgres@127.0.0.1:1/none");
    settings.connect_timeout = std::time::Duration::from_millis(500);
    let repo = PgMenuRepository::new(PgPool::new(&settings).expect("pool"));

    let err = repo.list().await.expect_err("nothing listens on port 1");

    assert!(err.is_unavailable(), "{err:?}");
}
