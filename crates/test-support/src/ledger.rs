//! The ledger invariant, checked straight in the database.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;

use crate::TestDatabase;

/// A user whose balance breaks the ledger invariant (read through `Debug`).
#[derive(QueryableByName, Debug)]
#[allow(dead_code)]
pub struct LedgerViolation {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = BigInt)]
    point: i64,
    #[diesel(sql_type = BigInt)]
    ledger: i64,
}

impl TestDatabase {
    /// Panics unless, for every user, `point = sum(ADD) - sum(DEDUCT) >= 0`.
    pub async fn assert_ledger_consistent(&self) {
        let violations = self.ledger_violations().await;
        assert!(violations.is_empty(), "ledger invariant broken: {violations:?}");
    }

    /// Every user for whom `point = sum(ADD) - sum(DEDUCT) >= 0` does not hold.
    pub async fn ledger_violations(&self) -> Vec<LedgerViolation> {
        let mut conn = self.connect().await;
        diesel::sql_query(
            "SELECT u.id::text AS user_id, u.point, \
                    COALESCE(SUM(CASE WHEN t.type = 'ADD' THEN t.amount ELSE -t.amount END), 0)::bigint AS ledger \
             FROM users u LEFT JOIN point_transactions t ON t.user_id = u.id \
             GROUP BY u.id, u.point \
             HAVING u.point <> COALESCE(SUM(CASE WHEN t.type = 'ADD' THEN t.amount ELSE -t.amount END), 0) \
                 OR u.point < 0",
        )
        .load(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("ledger check failed to run: {e}"))
    }

    /// Inserts a user with `point` and a matching `ADD` row (so the ledger
    /// stays consistent); returns its id.
    pub async fn insert_user(&self, point: i64) -> uuid::Uuid {
        let id = uuid::Uuid::now_v7();
        let mut conn = self.connect().await;
        let sql = format!(
            "INSERT INTO users (id, email, password_hash, name, point) \
             VALUES ('{id}', 'user-{}@example.com', '$argon2id$x', 'Test', {point}); \
             INSERT INTO point_transactions (id, user_id, type, amount, balance_after) \
             SELECT gen_random_uuid(), '{id}', 'ADD', {point}, {point} WHERE {point} > 0;",
            id.simple()
        );
        diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, &sql)
            .await
            .unwrap_or_else(|e| panic!("inserting a user: {e}"));
        id
    }

    /// One user's balance.
    pub async fn balance_of(&self, user: uuid::Uuid) -> i64 {
        self.count(&format!("SELECT point AS n FROM users WHERE id = '{user}'"))
            .await
    }

    /// Runs `SELECT ... AS n` returning one bigint.
    pub async fn count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = self.connect().await;
        let row: N = diesel::sql_query(sql)
            .get_result(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.n
    }
}

/// One line of the popular-menu ranking as the ground-truth query sees it.
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct GroundTruthRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: uuid::Uuid,
    #[diesel(sql_type = BigInt)]
    pub quantity: i64,
    #[diesel(sql_type = BigInt)]
    pub order_count: i64,
}

impl TestDatabase {
    /// The top 3 menus of `(now - 7 days, now]` counted straight from
    /// `orders` and `order_items` (no statistics tables), as of `now` or of
    /// the database's clock when `None`.
    pub async fn popular_ground_truth(&self, now: Option<time::OffsetDateTime>) -> Vec<GroundTruthRow> {
        let mut top = self.popular_sales(None, now).await;
        top.truncate(3);
        top
    }

    /// Every menu ordered in `(after, until]`, counted straight from `orders`
    /// and `order_items`, in the ranking's order (cups, orders, name by bytes,
    /// id). `until` is the database's clock when `None`, `after` is `until -
    /// 7 days` when `None`.
    pub async fn popular_sales(
        &self,
        after: Option<time::OffsetDateTime>,
        until: Option<time::OffsetDateTime>,
    ) -> Vec<GroundTruthRow> {
        use diesel::sql_types::{Nullable, Timestamptz};
        let mut conn = self.connect().await;
        let sql = "SELECT m.id, SUM(oi.quantity)::bigint AS quantity, COUNT(DISTINCT o.id)::bigint AS order_count \
                   FROM orders o JOIN order_items oi ON oi.order_id = o.id JOIN menus m ON m.id = oi.menu_id \
                   WHERE o.created_at > COALESCE($1, COALESCE($2, now()) - interval '7 days') \
                     AND o.created_at <= COALESCE($2, now()) \
                   GROUP BY m.id, m.name ORDER BY quantity DESC, order_count DESC, m.name COLLATE \"C\" ASC, m.id ASC";
        diesel::sql_query(sql)
            .bind::<Nullable<Timestamptz>, _>(after)
            .bind::<Nullable<Timestamptz>, _>(until)
            .load(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("ground truth query: {e}"))
    }
}

/// Another transaction holding a user's row `FOR NO KEY UPDATE`, as a
/// balance change in flight does, without changing it: what makes a request
/// wait for the balance ([`TestDatabase::hold_balance`]).
pub struct HeldBalance {
    conn: diesel_async::AsyncPgConnection,
}

impl std::fmt::Debug for HeldBalance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldBalance").finish_non_exhaustive()
    }
}

#[derive(QueryableByName)]
struct Clock {
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    at: time::OffsetDateTime,
}

impl TestDatabase {
    /// Locks `user`'s row in a transaction of its own until
    /// [`HeldBalance::release`].
    pub async fn hold_balance(&self, user: uuid::Uuid) -> HeldBalance {
        let mut conn = self.connect().await;
        diesel_async::SimpleAsyncConnection::batch_execute(
            &mut conn,
            &format!("BEGIN; SELECT 1 FROM users WHERE id = '{user}' FOR NO KEY UPDATE"),
        )
        .await
        .unwrap_or_else(|e| panic!("locking the user's row: {e}"));
        HeldBalance { conn }
    }
}

impl HeldBalance {
    /// Commits, the row unchanged; returns the database's clock read just
    /// before, while the row was still held.
    pub async fn release(mut self) -> time::OffsetDateTime {
        let clock: Clock = diesel::sql_query("SELECT clock_timestamp() AS at")
            .get_result(&mut self.conn)
            .await
            .unwrap_or_else(|e| panic!("reading the clock: {e}"));
        diesel_async::SimpleAsyncConnection::batch_execute(&mut self.conn, "COMMIT")
            .await
            .unwrap_or_else(|e| panic!("releasing the user's row: {e}"));
        clock.at
    }
}
