//! A Redis key namespace per test, deleted when the test ends.

/// A unique key prefix; every key under it is deleted on drop.
#[derive(Debug)]
pub struct RedisNamespace {
    prefix: String,
}

impl RedisNamespace {
    pub fn new() -> Self {
        Self {
            prefix: crate::unique_key_prefix(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Default for RedisNamespace {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RedisNamespace {
    fn drop(&mut self) {
        let pattern = format!("{}*", self.prefix);
        // Drop cannot await; a plain synchronous connection does the cleanup.
        let cleaned = std::thread::spawn(move || -> anyhow::Result<()> {
            let client = redis::Client::open(crate::redis_url())?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut conn = client.get_multiplexed_async_connection().await?;
                let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut conn).await?;
                if !keys.is_empty() {
                    redis::cmd("DEL").arg(keys).query_async::<()>(&mut conn).await?;
                }
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(cleaned, Ok(Ok(()))) {
            eprintln!("warning: redis keys under {} were not deleted", self.prefix);
        }
    }
}
