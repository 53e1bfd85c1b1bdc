//! argon2id password hashing off the async runtime, with a bounded queue.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use async_trait::async_trait;
use coffee_domain::{Password, PasswordHash};
use coffee_ports::{HashSlot, InfraError, PasswordHasher};
use tokio::sync::{Semaphore, TryAcquireError};

/// argon2id with `Argon2::default()`: m = 19 MiB, t = 2, p = 1, OWASP's
/// recommended minimum. At most `concurrency` hashes run at once, and at most
/// `queue_max` more wait for their turn; beyond that [`PasswordHasher::reserve`]
/// refuses at once.
#[derive(Debug, Clone)]
pub struct Argon2Hasher {
    /// One per hash computing; held by the blocking task itself, so a hash
    /// whose caller went away still counts until it really ends.
    permits: Arc<Semaphore>,
    /// One per hash running or waiting (`concurrency + queue_max`), taken by
    /// [`PasswordHasher::reserve`] and likewise held until the hash ends.
    places: Arc<Semaphore>,
    capacity: usize,
    /// A real hash of a random password, verified against when the email is
    /// unknown so both paths cost the same.
    dummy: Arc<str>,
}

impl Argon2Hasher {
    /// Computes the dummy hash once (a few tens of milliseconds).
    pub fn new(concurrency: usize, queue_max: usize) -> anyhow::Result<Self> {
        let random = uuid::Uuid::new_v4().to_string();
        let dummy = Argon2::default()
            .hash_password(random.as_bytes())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
            .to_string();
        let concurrency = concurrency.clamp(1, Semaphore::MAX_PERMITS);
        let capacity = concurrency.saturating_add(queue_max).min(Semaphore::MAX_PERMITS);
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            places: Arc::new(Semaphore::new(capacity)),
            capacity,
            dummy: dummy.into(),
        })
    }

    /// Runs `work` on the blocking pool once a permit is free. The permit and
    /// the queue place move into the blocking task: if the caller stops
    /// waiting (a client hung up), the hash still runs to its end, and no
    /// other hash may start beside it until then.
    async fn run<T: Send + 'static>(
        &self,
        slot: HashSlot,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, InfraError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| InfraError::Unexpected(anyhow::Error::new(e).context("hashing pool closed")))?;
        tokio::task::spawn_blocking(move || {
            let _held = (permit, slot);
            work()
        })
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
    fn reserve(&self) -> Result<HashSlot, InfraError> {
        match Arc::clone(&self.places).try_acquire_owned() {
            Ok(place) => Ok(HashSlot::new(place)),
            Err(TryAcquireError::NoPermits) => Err(InfraError::unavailable(
                "password hasher",
                anyhow::anyhow!("{} password hashes are already running or queued", self.capacity),
            )),
            Err(e @ TryAcquireError::Closed) => Err(InfraError::Unexpected(
                anyhow::Error::new(e).context("hashing queue closed"),
            )),
        }
    }

    async fn hash(&self, slot: HashSlot, password: &Password) -> Result<PasswordHash, InfraError> {
        let password = password.expose().to_owned();
        let hashed = self
            .run(slot, move || {
                Argon2::default()
                    .hash_password(password.as_bytes())
                    .map(|h| h.to_string())
            })
            .await?
            .map_err(|e| InfraError::Unexpected(anyhow::anyhow!("argon2: {e}")))?;
        Ok(PasswordHash::new(hashed))
    }

    async fn verify(&self, slot: HashSlot, password: &str, hash: &PasswordHash) -> Result<bool, InfraError> {
        let password = password.to_owned();
        let phc = hash.as_str().to_owned();
        self.run(slot, move || verify(&password, &phc)).await?
    }

    async fn verify_dummy(&self, slot: HashSlot, password: &str) -> Result<(), InfraError> {
        let password = password.to_owned();
        let phc = Arc::clone(&self.dummy);
        self.run(slot, move || verify(&password, &phc)).await?.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn password(raw: &str) -> Password {
        Password::parse(raw).expect("valid password")
    }

    fn slot(hasher: &Argon2Hasher) -> HashSlot {
        hasher.reserve().expect("a place in the queue")
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = Argon2Hasher::new(2, 8).expect("hasher");
        let hash = hasher
            .hash(slot(&hasher), &password("a long unusual passphrase"))
            .await
            .expect("hashed");

        assert!(
            hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            hash.as_str()
        );
        assert!(
            hasher
                .verify(slot(&hasher), "a long unusual passphrase", &hash)
                .await
                .expect("verified")
        );
        assert!(
            !hasher
                .verify(slot(&hasher), "another passphrase", &hash)
                .await
                .expect("verified")
        );
    }

    #[tokio::test]
    async fn the_same_password_hashes_differently_each_time() {
        let hasher = Argon2Hasher::new(2, 8).expect("hasher");
        let a = hasher
            .hash(slot(&hasher), &password("a long unusual passphrase"))
            .await
            .expect("hashed");
        let b = hasher
            .hash(slot(&hasher), &password("a long unusual passphrase"))
            .await
            .expect("hashed");
        assert_ne!(a.as_str(), b.as_str());
    }

    #[tokio::test]
    async fn a_corrupt_stored_hash_is_an_error_not_a_mismatch() {
        let hasher = Argon2Hasher::new(1, 8).expect("hasher");
        let result = hasher
            .verify(slot(&hasher), "x", &PasswordHash::new("not a phc string".to_owned()))
            .await;
        assert!(result.is_err());
    }

    #[tokio::test]
    async fn the_dummy_verification_costs_about_as_much_as_a_real_one() {
        let hasher = Argon2Hasher::new(1, 8).expect("hasher");
        let hash = hasher
            .hash(slot(&hasher), &password("a long unusual passphrase"))
            .await
            .expect("hashed");
        // Warm up, then take the best of three of each to damp scheduling noise.
        let mut real = Duration::MAX;
        let mut dummy = Duration::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            hasher
                .verify(slot(&hasher), "wrong guess", &hash)
                .await
                .expect("verified");
            real = real.min(started.elapsed());
            let started = Instant::now();
            hasher.verify_dummy(slot(&hasher), "wrong guess").await.expect("dummy");
            dummy = dummy.min(started.elapsed());
        }
        let ratio = dummy.as_secs_f64() / real.as_secs_f64();
        assert!((0.4..2.5).contains(&ratio), "real {real:?} vs dummy {dummy:?}");
    }

    #[tokio::test]
    async fn past_the_queue_bound_a_reservation_is_refused_at_once() {
        // 2 running + 3 waiting.
        let hasher = Argon2Hasher::new(2, 3).expect("hasher");
        let mut slots: Vec<_> = (0..5).map(|_| slot(&hasher)).collect();

        let refused = hasher.reserve().expect_err("the queue is full");
        assert!(refused.is_unavailable(), "{}", refused.describe());

        slots.pop();
        let again = hasher.reserve().expect("a dropped slot gives its place back");
        assert!(hasher.reserve().is_err());
        drop(again);
        drop(slots);
        assert_eq!(hasher.places.available_permits(), 5);
    }

    /// A hash that blocks until `release` is sent, in a task the test can
    /// abort once the blocking work has started (as actix drops a request
    /// whose client hung up).
    async fn orphan(hasher: &Argon2Hasher) -> std::sync::mpsc::Sender<()> {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let caller = {
            let hasher = hasher.clone();
            let slot = slot(&hasher);
            tokio::spawn(async move {
                hasher
                    .run(slot, move || {
                        let _ = started_tx.send(());
                        let _ = release_rx.recv();
                    })
                    .await
            })
        };
        started_rx.await.expect("the blocking work started");
        caller.abort();
        assert!(caller.await.is_err_and(|e| e.is_cancelled()));
        release_tx
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_goes_away_does_not_free_the_permit_while_its_hash_runs() {
        let hasher = Argon2Hasher::new(1, 1).expect("hasher");
        let release = orphan(&hasher).await;

        // The caller is gone, its hash is not: permit and place stay taken.
        let permit_held = hasher.permits.available_permits() == 0;
        let place_held = hasher.places.available_permits() == 1;
        // A second hash waits for the orphan instead of running beside it.
        let second = slot(&hasher);
        let queue_full = hasher.reserve().is_err();
        let waited = tokio::time::timeout(
            Duration::from_millis(200),
            hasher.hash(second, &password("a long unusual passphrase")),
        )
        .await
        .is_err();
        release.send(()).expect("released");
        assert!(permit_held, "the permit was released while the orphaned hash still ran");
        assert!(
            place_held,
            "the queue place was released while the orphaned hash still ran"
        );
        assert!(queue_full, "one running and one waiting fill a queue of 1 + 1");
        assert!(waited, "a second hash ran beside the orphaned one");

        // Once the orphan really ends, both come back.
        let deadline = Instant::now() + Duration::from_secs(5);
        while hasher.permits.available_permits() < 1 || hasher.places.available_permits() < 2 {
            assert!(Instant::now() < deadline, "the orphan's permit never came back");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        hasher
            .hash(slot(&hasher), &password("a long unusual passphrase"))
            .await
            .expect("hashed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_goes_away_while_queued_gives_its_place_back() {
        let hasher = Argon2Hasher::new(1, 1).expect("hasher");
        let release = orphan(&hasher).await;
        let queued = {
            let hasher = hasher.clone();
            let slot = slot(&hasher);
            tokio::spawn(async move { hasher.hash(slot, &password("a long unusual passphrase")).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let full_while_queued = hasher.reserve().is_err();
        queued.abort();
        let _ = queued.await;
        let freed = hasher.reserve().is_ok();
        release.send(()).expect("released");
        assert!(full_while_queued, "one running and one queued fill a queue of 1 + 1");
        assert!(freed, "the queued caller's place came back when it went away");
    }
}
