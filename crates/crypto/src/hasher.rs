//! argon2id password hashing off the async runtime.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use async_trait::async_trait;
use coffee_domain::{Password, PasswordHash};
use coffee_ports::{InfraError, PasswordHasher};
use tokio::sync::Semaphore;

/// argon2id with `Argon2::default()`: m = 19 MiB, t = 2, p = 1, OWASP's
/// recommended minimum. At most `concurrency` hashes run at once.
#[derive(Debug, Clone)]
pub struct Argon2Hasher {
    permits: Arc<Semaphore>,
    /// A real hash of a random password, verified against when the email is
    /// unknown so both paths cost the same.
    dummy: Arc<str>,
}

impl Argon2Hasher {
    /// Computes the dummy hash once (a few tens of milliseconds).
    pub fn new(concurrency: usize) -> anyhow::Result<Self> {
        let random = uuid::Uuid::new_v4().to_string();
        let dummy = Argon2::default()
            .hash_password(random.as_bytes())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
            .to_string();
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: dummy.into(),
        })
    }

    /// Runs `work` on the blocking pool once a permit is free.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, InfraError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| InfraError::Unexpected(anyhow::Error::new(e).context("hashing pool closed")))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| InfraError::Unexpected(anyhow::Error::new(e).context("hashing task failed")))
    }
}

fn verify(password: &str, phc: &str) -> Result<bool, InfraError> {
    match Argon2::default().verify_password(password.as_bytes(), phc) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(InfraError::Unexpected(anyhow::anyhow!(
            "stored password hash is unusable: {e}"
        ))),
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, InfraError> {
        let password = password.expose().to_owned();
        let hashed = self
            .run(move || {
                Argon2::default()
                    .hash_password(password.as_bytes())
                    .map(|h| h.to_string())
            })
            .await?
            .map_err(|e| InfraError::Unexpected(anyhow::anyhow!("argon2: {e}")))?;
        Ok(PasswordHash::new(hashed))
    }

    async fn verify(&self, password: &str, hash: &PasswordHash) -> Result<bool, InfraError> {
        let password = password.to_owned();
        let phc = hash.as_str().to_owned();
        self.run(move || verify(&password, &phc)).await?
    }

    async fn verify_dummy(&self, password: &str) -> Result<(), InfraError> {
        let password = password.to_owned();
        let phc = Arc::clone(&self.dummy);
        self.run(move || verify(&password, &phc)).await?.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn password(raw: &str) -> Password {
        Password::parse(raw).expect("valid password")
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = Argon2Hasher::new(2).expect("hasher");
        let hash = hasher
            .hash(&password("a long unusual passphrase"))
            .await
            .expect("hashed");

        assert!(
            hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            hash.as_str()
        );
        assert!(
            hasher
                .verify("a long unusual passphrase", &hash)
                .await
                .expect("verified")
        );
        assert!(!hasher.verify("another passphrase", &hash).await.expect("verified"));
    }

    #[tokio::test]
    async fn the_same_password_hashes_differently_each_time() {
        let hasher = Argon2Hasher::new(2).expect("hasher");
        let a = hasher
            .hash(&password("a long unusual passphrase"))
            .await
            .expect("hashed");
        let b = hasher
            .hash(&password("a long unusual passphrase"))
            .await
            .expect("hashed");
        assert_ne!(a.as_str(), b.as_str());
    }

    #[tokio::test]
    async fn a_corrupt_stored_hash_is_an_error_not_a_mismatch() {
        let hasher = Argon2Hasher::new(1).expect("hasher");
        let result = hasher
            .verify("x", &PasswordHash::new("not a phc string".to_owned()))
            .await;
        assert!(result.is_err());
    }

    #[tokio::test]
    async fn the_dummy_verification_costs_about_as_much_as_a_real_one() {
        let hasher = Argon2Hasher::new(1).expect("hasher");
        let hash = hasher
            .hash(&password("a long unusual passphrase"))
            .await
            .expect("hashed");
        // Warm up, then take the best of three of each to damp scheduling noise.
        let mut real = Duration::MAX;
        let mut dummy = Duration::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            hasher.verify("wrong guess", &hash).await.expect("verified");
            real = real.min(started.elapsed());
            let started = Instant::now();
            hasher.verify_dummy("wrong guess").await.expect("dummy");
            dummy = dummy.min(started.elapsed());
        }
        let ratio = dummy.as_secs_f64() / real.as_secs_f64();
        assert!((0.4..2.5).contains(&ratio), "real {real:?} vs dummy {dummy:?}");
    }
}
