//! Concurrent reads that share one query without ever answering from a
//! snapshot older than the request.
//!
//! A [`Coalesced`] runs its read in *rounds*. A caller joins the round that
//! has not started yet, or opens one; a round starts once the one before it
//! has finished (one round runs at a time), and it is closed to newcomers
//! *before* its read begins. So every caller's answer comes from a read that
//! began after the caller arrived: whatever was committed before a request
//! arrived is in its answer (read-your-writes, across instances too), exactly
//! as if the request had run the read itself. Under load, one read answers
//! every request that arrived while the previous one ran, so the database does
//! one query per round instead of one per request; when idle, a request runs
//! its read at once.
//!
//! Not about any technology: the ranking ([`crate::PopularRanking`]) and the
//! menu cache ([`crate::CachedMenus`]) share their reads through it.
//!
//! Built on [`futures_util::future::Shared`]: whichever member polls drives
//! the round, so a member that goes away (a client that disconnects) strands
//! no one.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use coffee_ports::InfraError;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::Semaphore;

type Outcome<T> = Result<Arc<T>, Arc<InfraError>>;

/// A read shared by the requests that wait for the same round.
pub struct Coalesced<T> {
    open: Arc<Mutex<Option<Round<T>>>>,
    /// One permit: the round running.
    running: Arc<Semaphore>,
    rounds: AtomicU64,
}

struct Round<T> {
    id: u64,
    outcome: Shared<BoxFuture<'static, Outcome<T>>>,
}

impl<T> std::fmt::Debug for Coalesced<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalesced")
            .field("rounds", &self.rounds.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Default for Coalesced<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send + Sync + 'static> Coalesced<T> {
    pub fn new() -> Self {
        Self {
            open: Arc::default(),
            running: Arc::new(Semaphore::new(1)),
            rounds: AtomicU64::new(0),
        }
    }

    /// How many rounds have been opened: for tests and diagnostics.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// The outcome of `read` run by the round this call joins or opens: one
    /// that starts after this call. `read` runs only when this call opens
    /// the round.
    pub async fn get<F, Fut>(&self, read: F) -> Result<Arc<T>, InfraError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, InfraError>> + Send + 'static,
    {
        let outcome = {
            let mut open = lock(&self.open);
            match open.as_ref() {
                Some(round) => round.outcome.clone(),
                None => {
                    let id = self.rounds.fetch_add(1, Ordering::Relaxed);
                    let outcome = run(id, Arc::downgrade(&self.open), Arc::clone(&self.running), read)
                        .boxed()
                        .shared();
                    *open = Some(Round {
                        id,
                        outcome: outcome.clone(),
                    });
                    outcome
                }
            }
        };
        outcome.await.map_err(|e| copy(&e))
    }
}

/// Round `id`: waits for the previous round to finish, closes itself to
/// newcomers, then reads.
async fn run<T, F, Fut>(id: u64, open: Weak<Mutex<Option<Round<T>>>>, running: Arc<Semaphore>, read: F) -> Outcome<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, InfraError>>,
{
    // Never closed, so acquiring only waits.
    let _running = running.acquire_owned().await;
    if let Some(open) = open.upgrade() {
        let mut open = lock(&open);
        if open.as_ref().is_some_and(|round| round.id == id) {
            *open = None;
        }
    }
    read().await.map(Arc::new).map_err(Arc::new)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An error for each member of a round that failed: the same kind (so a
/// database outage still answers 503) and the same description.
fn copy(error: &InfraError) -> InfraError {
    let cause = anyhow::anyhow!("{}", error.describe());
    match error {
        InfraError::Unavailable { dependency, .. } => InfraError::Unavailable {
            dependency,
            source: cause,
        },
        InfraError::Unexpected(_) => InfraError::Unexpected(cause),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    use super::*;

    type Member = JoinHandle<Result<Arc<usize>, InfraError>>;

    /// A [`Coalesced`] whose reads report their start (numbered from 1) and
    /// wait to be released.
    struct Harness {
        coalesced: Arc<Coalesced<usize>>,
        started: Arc<AtomicUsize>,
    }

    impl Harness {
        /// A harness whose first round is running (read 1 has started).
        async fn running() -> (Self, Member, oneshot::Sender<()>) {
            let harness = Self {
                coalesced: Arc::new(Coalesced::new()),
                started: Arc::new(AtomicUsize::new(0)),
            };
            let (first, release) = harness.call();
            harness.until(1).await;
            (harness, first, release)
        }

        /// A caller whose read, if its round runs it, waits for the sender.
        fn call(&self) -> (Member, oneshot::Sender<()>) {
            let (release, released) = oneshot::channel::<()>();
            let started = Arc::clone(&self.started);
            let read = move || async move {
                let n = started.fetch_add(1, Ordering::SeqCst) + 1;
                released
                    .await
                    .map_err(|_| InfraError::Unexpected(anyhow::anyhow!("dropped")))?;
                Ok(n)
            };
            let coalesced = Arc::clone(&self.coalesced);
            (tokio::spawn(async move { coalesced.get(read).await }), release)
        }

        /// Waits until `n` reads have started.
        async fn until(&self, n: usize) {
            for _ in 0..5_000 {
                if self.started.load(Ordering::SeqCst) >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            panic!("{n} reads never started");
        }
    }

    async fn outcome(member: Member) -> usize {
        *member.await.expect("joined").expect("read")
    }

    /// Lets the callers spawned so far reach their round.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn callers_that_arrive_before_a_round_starts_share_it() {
        let (harness, first, release_first) = Harness::running().await;
        // These arrive while round 1 runs, so they wait for round 2, opened
        // by the first of them, and share it.
        let (waiting, releases): (Vec<_>, Vec<_>) = (0..5).map(|_| harness.call()).unzip();
        settle().await;
        assert_eq!(harness.started.load(Ordering::SeqCst), 1, "one round at a time");
        assert_eq!(harness.coalesced.rounds(), 2);

        release_first.send(()).expect("round 1 waits");
        assert_eq!(outcome(first).await, 1);
        harness.until(2).await;
        for release in releases {
            let _ = release.send(());
        }
        for member in waiting {
            assert_eq!(outcome(member).await, 2);
        }
        assert_eq!(harness.started.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_caller_never_joins_a_round_that_already_started() {
        let (harness, first, release_first) = Harness::running().await;
        let (late, release_late) = harness.call();
        settle().await;
        release_first.send(()).expect("round 1 waits");
        harness.until(2).await;
        release_late.send(()).expect("round 2 waits");

        assert_eq!(outcome(first).await, 1);
        assert_eq!(outcome(late).await, 2, "read after it arrived");
    }

    #[tokio::test]
    async fn a_member_that_goes_away_strands_no_one() {
        let (harness, first, release_first) = Harness::running().await;
        // Round 2 is opened by a caller that leaves; another joins it.
        let (leaving, release_second) = harness.call();
        settle().await;
        let (staying, _) = harness.call();
        settle().await;
        leaving.abort();
        release_first.send(()).expect("round 1 waits");
        assert_eq!(outcome(first).await, 1);
        harness.until(2).await;
        release_second.send(()).expect("round 2 waits");
        assert_eq!(outcome(staying).await, 2);
    }

    #[tokio::test]
    async fn every_member_gets_the_error_of_its_round() {
        let (harness, first, release_first) = Harness::running().await;
        let failing: Vec<_> = (0..3)
            .map(|_| {
                let coalesced = Arc::clone(&harness.coalesced);
                tokio::spawn(async move {
                    coalesced
                        .get(|| async { Err(InfraError::unavailable("database", anyhow::anyhow!("down"))) })
                        .await
                })
            })
            .collect();
        settle().await;
        release_first.send(()).expect("round 1 waits");
        assert_eq!(outcome(first).await, 1);
        for member in failing {
            let error = member.await.expect("joined").expect_err("failed");
            assert!(error.is_unavailable());
            assert!(error.describe().contains("down"), "{}", error.describe());
        }
        assert_eq!(harness.coalesced.rounds(), 2);
    }
}
