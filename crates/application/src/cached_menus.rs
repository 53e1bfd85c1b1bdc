//! The menu list kept in memory for a short while, in front of any
//! [`MenuRepository`].
//!
//! `GET /menus` is the hottest read and the menu changes only when an
//! operator edits it, so a list up to `ttl` old is fine. Orders never use
//! this list: they price from the store in their own transaction.
//!
//! When the list expires, the requests of that instant share one read
//! ([`Coalesced`]): the first opens a round and reads; those that arrive
//! while it reads join the next round, which answers from the list the first
//! one just stored instead of reading again (it is fresh, and a list up to
//! `ttl` old is what this cache promises).
//!
//! Each thread keeps a copy of its own of the stored list ([`LOCAL`]), taken
//! once per read: a request served from it writes no memory another thread
//! uses. With one list for all, every request took the lock's reader count
//! and the list's reference count, each a write to a cache line the other
//! HTTP workers' requests write too, which costs a transfer between cores
//! each time.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coffee_domain::Menu;
use coffee_ports::{InfraError, MenuRepository};

use crate::coalesce::Coalesced;

/// A [`MenuRepository`] that reads its inner one at most once per `ttl`
/// (every time when `ttl` is zero).
#[derive(Debug, Clone)]
pub struct CachedMenus {
    inner: Arc<dyn MenuRepository>,
    ttl: Duration,
    cached: Arc<RwLock<Option<CachedList>>>,
    refresh: Arc<Coalesced<CachedList>>,
    /// Which cache a thread's copy ([`LOCAL`]) belongs to: clones share it.
    id: usize,
}

/// The list and when its read began.
type CachedList = (Instant, Arc<[Menu]>);

thread_local! {
    /// This thread's copy of the last list it took from a cache: the
    /// cache's id, when the list's read began, and a list of its own (not
    /// a clone of the shared `Arc`, whose count every thread would write).
    static LOCAL: RefCell<Option<(usize, CachedList)>> = const { RefCell::new(None) };
}

/// Ids of caches, one per [`CachedMenus::new`].
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

impl CachedMenus {
    pub fn new(inner: Arc<dyn MenuRepository>, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            cached: Arc::default(),
            refresh: Arc::new(Coalesced::new()),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// This thread's copy, if it is of this cache and younger than `ttl`.
    fn local(&self) -> Option<Arc<[Menu]>> {
        LOCAL.with_borrow(|local| match local {
            Some((id, (read_at, menus))) if *id == self.id && read_at.elapsed() < self.ttl => Some(Arc::clone(menus)),
            _ => None,
        })
    }

    /// Keeps a copy of `list` (read at `read_at`) as this thread's, and
    /// returns it.
    fn keep_local(&self, (read_at, shared): CachedList) -> Arc<[Menu]> {
        let menus: Arc<[Menu]> = shared.iter().cloned().collect();
        LOCAL.set(Some((self.id, (read_at, Arc::clone(&menus)))));
        menus
    }
}

/// The cached list and its read's instant, if it is younger than `ttl`.
fn fresh(cached: &RwLock<Option<CachedList>>, ttl: Duration) -> Option<CachedList> {
    let cached = cached.read().unwrap_or_else(PoisonError::into_inner);
    cached
        .as_ref()
        .filter(|(read_at, _)| read_at.elapsed() < ttl)
        .map(|(read_at, menus)| (*read_at, Arc::clone(menus)))
}

#[async_trait]
impl MenuRepository for CachedMenus {
    /// This thread's fresh copy. Without a ttl nothing is kept ([`list`]
    /// reads every time), so there is none.
    ///
    /// [`list`]: MenuRepository::list
    fn in_memory(&self) -> Option<Arc<[Menu]>> {
        self.local()
    }

    async fn list(&self) -> Result<Arc<[Menu]>, InfraError> {
        if self.ttl.is_zero() {
            return self.inner.list().await;
        }
        if let Some(menus) = self.local() {
            return Ok(menus);
        }
        if let Some(list) = fresh(&self.cached, self.ttl) {
            return Ok(self.keep_local(list));
        }
        let (inner, cached, ttl) = (Arc::clone(&self.inner), Arc::clone(&self.cached), self.ttl);
        let list = self
            .refresh
            .get(move || async move {
                // A round that waited for the previous one finds its list.
                if let Some(list) = fresh(&cached, ttl) {
                    return Ok(list);
                }
                let read_at = Instant::now();
                let menus = inner.list().await?;
                *cached.write().unwrap_or_else(PoisonError::into_inner) = Some((read_at, Arc::clone(&menus)));
                Ok((read_at, menus))
            })
            .await?;
        let (read_at, menus) = &*list;
        Ok(self.keep_local((*read_at, Arc::clone(menus))))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use coffee_domain::{MenuId, MenuName, Points};
    use coffee_ports::menu::MockMenuRepository;
    use uuid::Uuid;

    use super::*;

    fn menus(n: usize) -> Vec<Menu> {
        (0..n)
            .map(|i| Menu {
                id: MenuId::from_uuid(Uuid::from_u128(i as u128 + 1)),
                name: MenuName::parse(format!("Coffee {i}")).expect("name"),
                price: Points::new(1000).expect("price"),
            })
            .collect()
    }

    /// A repository whose `n`th read (from 1) lists `n` menus, each read
    /// taking `delay` (a blocking wait: mockall's answers are not async).
    fn growing(reads: &Arc<AtomicUsize>, delay: Duration) -> MockMenuRepository {
        let reads = Arc::clone(reads);
        let mut repo = MockMenuRepository::new();
        repo.expect_list().returning(move || {
            let n = reads.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::sleep(delay);
            Ok(menus(n).into())
        });
        repo
    }

    #[tokio::test]
    async fn the_list_is_reread_only_after_its_ttl() {
        let reads = Arc::new(AtomicUsize::new(0));
        let cache = CachedMenus::new(Arc::new(growing(&reads, Duration::ZERO)), Duration::from_millis(300));

        assert_eq!(cache.list().await.expect("listed").len(), 1);
        assert_eq!(cache.list().await.expect("listed").len(), 1, "served from memory");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(cache.list().await.expect("listed").len(), 2, "re-read after the ttl");
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    /// Held in memory: what this thread read, while it is fresh; nothing
    /// before a read, after the ttl, or without a ttl.
    #[tokio::test]
    async fn the_list_is_in_memory_from_a_read_until_its_ttl() {
        let reads = Arc::new(AtomicUsize::new(0));
        let cache = CachedMenus::new(Arc::new(growing(&reads, Duration::ZERO)), Duration::from_millis(300));
        assert!(cache.in_memory().is_none(), "nothing read yet");

        let read = cache.list().await.expect("listed");
        let held = cache.in_memory().expect("held after a read");
        assert!(Arc::ptr_eq(&read, &held));
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(cache.in_memory().is_none(), "stale after the ttl");
        assert_eq!(reads.load(Ordering::SeqCst), 1, "asking what is held reads nothing");

        let uncached = CachedMenus::new(Arc::new(growing(&reads, Duration::ZERO)), Duration::ZERO);
        uncached.list().await.expect("listed");
        assert!(uncached.in_memory().is_none(), "no ttl: nothing is held");
    }

    /// Each thread serves a copy of its own: the same list, but no memory
    /// that another thread's requests write (its reference count).
    #[test]
    fn each_thread_serves_a_copy_of_its_own() {
        let reads = Arc::new(AtomicUsize::new(0));
        let cache = CachedMenus::new(Arc::new(growing(&reads, Duration::ZERO)), Duration::from_secs(60));
        let on_a_thread = |cache: CachedMenus| {
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
                runtime.block_on(async {
                    let first = cache.list().await.expect("listed");
                    let again = cache.list().await.expect("listed");
                    assert!(Arc::ptr_eq(&first, &again), "a thread reuses its copy");
                    first
                })
            })
            .join()
            .expect("joined")
        };

        let one = on_a_thread(cache.clone());
        let other = on_a_thread(cache.clone());

        assert_eq!(one, other, "the same list");
        assert!(!Arc::ptr_eq(&one, &other), "each thread has a copy of its own");
        assert_eq!(reads.load(Ordering::SeqCst), 1, "read once for both");
    }

    #[tokio::test]
    async fn no_ttl_reads_every_time() {
        let reads = Arc::new(AtomicUsize::new(0));
        let cache = CachedMenus::new(Arc::new(growing(&reads, Duration::ZERO)), Duration::ZERO);
        for n in 1..=3 {
            assert_eq!(cache.list().await.expect("listed").len(), n);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_requests_of_the_instant_it_expires_share_one_read() {
        let reads = Arc::new(AtomicUsize::new(0));
        let cache = CachedMenus::new(
            Arc::new(growing(&reads, Duration::from_millis(50))),
            Duration::from_millis(200),
        );
        cache.list().await.expect("listed");
        tokio::time::sleep(Duration::from_millis(250)).await;

        let requests: Vec<_> = (0..16)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.list().await.expect("listed").len() })
            })
            .collect();
        for request in requests {
            assert_eq!(request.await.expect("joined"), 2);
        }
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "one read for the instant's 16 requests"
        );
    }

    #[tokio::test]
    async fn a_failed_read_is_reported_and_not_kept() {
        let mut repo = MockMenuRepository::new();
        let mut first = true;
        repo.expect_list().returning(move || {
            if std::mem::take(&mut first) {
                Err(InfraError::unavailable("database", anyhow::anyhow!("down")))
            } else {
                Ok(menus(1).into())
            }
        });
        let cache = CachedMenus::new(Arc::new(repo), Duration::from_secs(60));
        assert!(cache.list().await.expect_err("down").is_unavailable());
        assert_eq!(cache.list().await.expect("listed").len(), 1);
    }
}
