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
    refresh: Arc<Coalesced<Arc<[Menu]>>>,
}

/// The list and when its read began.
type CachedList = (Instant, Arc<[Menu]>);

impl CachedMenus {
    pub fn new(inner: Arc<dyn MenuRepository>, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            cached: Arc::default(),
            refresh: Arc::new(Coalesced::new()),
        }
    }
}

/// The cached list if it is younger than `ttl`.
fn fresh(cached: &RwLock<Option<CachedList>>, ttl: Duration) -> Option<Arc<[Menu]>> {
    let cached = cached.read().unwrap_or_else(PoisonError::into_inner);
    cached
        .as_ref()
        .filter(|(read_at, _)| read_at.elapsed() < ttl)
        .map(|(_, menus)| Arc::clone(menus))
}

#[async_trait]
impl MenuRepository for CachedMenus {
    async fn list(&self) -> Result<Arc<[Menu]>, InfraError> {
        if self.ttl.is_zero() {
            return self.inner.list().await;
        }
        if let Some(menus) = fresh(&self.cached, self.ttl) {
            return Ok(menus);
        }
        let (inner, cached, ttl) = (Arc::clone(&self.inner), Arc::clone(&self.cached), self.ttl);
        let menus = self
            .refresh
            .get(move || async move {
                // A round that waited for the previous one finds its list.
                if let Some(menus) = fresh(&cached, ttl) {
                    return Ok(menus);
                }
                let read_at = Instant::now();
                let menus = inner.list().await?;
                *cached.write().unwrap_or_else(PoisonError::into_inner) = Some((read_at, Arc::clone(&menus)));
                Ok(menus)
            })
            .await?;
        Ok(Arc::clone(&*menus))
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
