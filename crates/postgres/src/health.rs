//! Readiness probe for PostgreSQL.

use async_trait::async_trait;
use coffee_ports::{DependencyProbe, InfraError};
use diesel_async::SimpleAsyncConnection;

use crate::error::{DEPENDENCY, Settle as _};
use crate::pool::PgPool;

/// Checks out a connection and runs `SELECT 1`.
#[derive(Debug, Clone)]
pub struct PgProbe {
    pool: PgPool,
}

impl PgProbe {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl DependencyProbe for PgProbe {
    fn name(&self) -> &'static str {
        DEPENDENCY
    }

    async fn check(&self) -> Result<(), InfraError> {
        let mut conn = self.pool.get().await?;
        conn.batch_execute("SELECT 1").await.settle(&conn).await
    }
}
