//! Holding rows locked and watching the backends that wait on them, for
//! tests that put requests in flight on purpose.

use std::time::{Duration, Instant};

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

use crate::TestDatabase;

impl TestDatabase {
    /// A session of its own holding the `users` rows of `users` (`FOR
    /// UPDATE`) until it is rolled back or dropped.
    pub async fn lock_users(&self, users: &[&str]) -> AsyncPgConnection {
        let ids: Vec<String> = users.iter().map(|user| format!("'{user}'")).collect();
        let mut conn = self.connect().await;
        conn.batch_execute(&format!(
            "BEGIN; SELECT 1 FROM users WHERE id IN ({}) FOR UPDATE",
            ids.join(",")
        ))
        .await
        .unwrap_or_else(|e| panic!("locking users: {e}"));
        conn
    }

    /// The service's backends on this database (`application_name =
    /// 'coffee'`) that meet an SQL `condition` on `pg_stat_activity`.
    pub async fn service_backends(&self, condition: &str) -> i64 {
        self.count(&format!(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{}' \
             AND application_name = 'coffee' AND {condition}",
            self.name()
        ))
        .await
    }

    /// Waits until at least `count` of the service's backends wait on a lock.
    ///
    /// # Panics
    /// When fewer did within 10 s.
    pub async fn wait_for_lock_waiters(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.service_backends("wait_event_type = 'Lock'").await < count as i64 {
            assert!(
                Instant::now() < deadline,
                "fewer than {count} requests ever waited on the locked rows"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
