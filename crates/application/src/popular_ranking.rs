//! The popular-menu ranking, exact at the window's edges, at a cost per
//! request bounded by menus and buckets, never by orders.
//!
//! The window and its arithmetic are the domain's
//! ([`coffee_domain::popular`]): with `lo = now - 7 days` and `first_full` the
//! first whole UTC hour after it, the ranking adds up:
//!
//! - whole hours from `first_full` on whose buckets are final, from memory
//!   ([`SettledHours`]: per-menu prefix sums, one subtraction per menu);
//! - the other whole hours, the live buckets of the last hour or two, read
//!   by each request in the one round trip that also reads `now` and the
//!   menus ([`SalesStatistics::live_sales`]);
//! - the partial hour `(lo, first_full)` at the old edge, from memory
//!   ([`EdgeHour`]: per-second sums, so the lower edge is one binary search).
//!
//! `now` is the store's clock, the same clock that stamps orders, so the
//! instances' own clocks, skewed or not, decide nothing.
//!
//! Only data that can no longer change is kept in memory, so every instance
//! stays exact with orders placed through the others. Every order is stamped
//! at about the present, and no order transaction outlives [`SETTLE`] (the
//! server refuses a configuration that would allow it), so buckets that ended
//! more than `SETTLE` ago, and the order items of the hours at the window's
//! old edge (a week old), are final. A background task prepares them every
//! [`PREPARE_EVERY`], the next edge hour well before the window reaches it,
//! so no request waits for them; it is started by the first
//! [`PopularRanking::top`] or by [`PopularRanking::start_preparing`]. A request
//! that finds its edge hour missing all the same (before the first
//! preparation, or while preparing fails) loads it, once for every request
//! waiting for it. Buckets after `now` are counted too: an order stamped after
//! the request's `now` and committed before its read was acknowledged, and
//! must never be missed. History written into the past (seeding) must be
//! there before an instance first ranks, which is why the task starts with
//! the first ranking rather than with the instance.
//!
//! Concurrent requests share their read ([`Coalesced`]): one that arrives
//! while a ranking read runs waits for the next one, which begins after it
//! arrived and answers every request that arrived in between. So each answer
//! still reads the store after the request came in (nothing committed before
//! it is missed), and under load the store runs one ranking read per round of
//! requests instead of one per request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use coffee_domain::PopularMenu;
use coffee_domain::popular::{EdgeHour, HOUR, SettledHours, Totals, WINDOW, add, hour_of, rank, window_bounds};
use coffee_ports::{InfraError, LiveWindow, SalesStatistics};
use time::OffsetDateTime;

use crate::coalesce::Coalesced;

/// How long after its end a bucket can still receive an order: the longest an
/// order transaction can take (lock waits and statement timeouts included)
/// plus clock skew between instances, with a wide margin.
pub const SETTLE: Duration = Duration::from_secs(5 * 60);

/// How often the background task prepares what the ranking keeps in memory.
/// A bucket that becomes final is read live by requests until then.
pub const PREPARE_EVERY: Duration = Duration::from_secs(30);

/// The ranking behind `GET /menus/popular` ([`crate::GetPopularMenus`]). Clones share what is kept in memory.
#[derive(Debug, Clone)]
pub struct PopularRanking {
    shared: Arc<Shared>,
}

/// What the instance keeps in memory, and how it is filled.
#[derive(Debug)]
struct Shared {
    statistics: Arc<dyn SalesStatistics>,
    settled: RwLock<Option<Arc<SettledHours>>>,
    edges: RwLock<BTreeMap<OffsetDateTime, Arc<EdgeHour>>>,
    /// Held while filling memory, so each hour is loaded once. No one holds
    /// a connection while waiting for it (each read takes its own), so those
    /// waiting cannot starve its holder of one.
    loading: tokio::sync::Mutex<()>,
    /// The runtime the background task runs on: the one that built this
    /// ranking (the server's main one), else the caller's.
    runtime: Option<tokio::runtime::Handle>,
    started: AtomicBool,
    loaded_by_requests: AtomicU64,
    /// The rankings requests share: one read answers every request that
    /// arrived before it began (see [`Coalesced`]).
    ranking: Coalesced<Vec<PopularMenu>>,
}

/// What a [`PopularRanking`] holds in memory: for tests and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The settled whole hours held, `[from, to)`.
    pub settled: Option<(OffsetDateTime, OffsetDateTime)>,
    /// The start of each edge hour held, ascending.
    pub edge_hours: Vec<OffsetDateTime>,
    /// How many edge hours requests had to load themselves.
    pub loaded_by_requests: u64,
}

impl PopularRanking {
    /// A ranking with nothing in memory yet; call within the runtime that
    /// should run its background task (see [`Self::start_preparing`]).
    pub fn new(statistics: Arc<dyn SalesStatistics>) -> Self {
        Self {
            shared: Arc::new(Shared {
                statistics,
                settled: RwLock::default(),
                edges: RwLock::default(),
                loading: tokio::sync::Mutex::new(()),
                runtime: tokio::runtime::Handle::try_current().ok(),
                started: AtomicBool::new(false),
                loaded_by_requests: AtomicU64::new(0),
                ranking: Coalesced::new(),
            }),
        }
    }

    /// Starts the background task that prepares the sums every
    /// [`PREPARE_EVERY`], if it is not running yet; it stops once every
    /// clone of this ranking is dropped. [`PopularRanking::top`] starts it too;
    /// calling this at startup prepares the sums before the first request.
    pub fn start_preparing(&self) {
        if self.shared.started.load(Ordering::Acquire) {
            return;
        }
        let Some(runtime) = self
            .shared
            .runtime
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
        else {
            return;
        };
        if !self.shared.started.swap(true, Ordering::AcqRel) {
            runtime.spawn(prepare_forever(Arc::downgrade(&self.shared)));
        }
    }

    /// One preparation now, as the background task does.
    pub async fn prepare(&self) -> Result<(), InfraError> {
        self.shared.prepare(None).await
    }

    /// [`Self::prepare`] as of `now` instead of the store's clock (still
    /// holding only what is final by the store's clock): only for tests.
    pub async fn prepare_as_of(&self, now: OffsetDateTime) -> Result<(), InfraError> {
        self.shared.prepare(Some(now)).await
    }

    /// What is held in memory.
    pub fn prepared(&self) -> Prepared {
        Prepared {
            settled: self.shared.settled().map(|s| (s.from(), s.to())),
            edge_hours: read(&self.shared.edges).keys().copied().collect(),
            loaded_by_requests: self.shared.loaded_by_requests.load(Ordering::Relaxed),
        }
    }

    /// The ranking as of `now` instead of the store's clock: only for tests
    /// that sweep the window over a seeded history.
    pub async fn top_as_of(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<PopularMenu>, InfraError> {
        Ok(first(&self.shared.rank(Some(now)).await?, limit))
    }

    /// How many rounds (ranking reads) requests have opened: for tests.
    pub fn ranking_rounds(&self) -> u64 {
        self.shared.ranking.rounds()
    }
}

/// Prepares every [`PREPARE_EVERY`] until the ranking is dropped.
async fn prepare_forever(shared: Weak<Shared>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        if let Err(e) = strong.prepare(None).await {
            tracing::warn!(
                error = e.describe(),
                "preparing the popular-menu sums failed; requests load what they miss"
            );
        }
        drop(strong);
        tokio::time::sleep(PREPARE_EVERY).await;
    }
}

/// Whether the hour starting at `hour` can no longer change at `db_now`.
fn is_final(hour: OffsetDateTime, db_now: OffsetDateTime) -> bool {
    hour + HOUR + SETTLE <= db_now
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn settled(&self) -> Option<Arc<SettledHours>> {
        read(&self.settled).clone()
    }

    fn edge(&self, hour: OffsetDateTime) -> Option<Arc<EdgeHour>> {
        read(&self.edges).get(&hour).cloned()
    }

    async fn load_edge(&self, hour: OffsetDateTime) -> Result<Arc<EdgeHour>, InfraError> {
        Ok(Arc::new(EdgeHour::new(&self.statistics.second_sums(hour).await?)))
    }

    /// Brings memory up to date for `now` (the store's clock by default):
    /// the edge hour and the next one, and the settled hours from the hour
    /// before `first_full` (for requests that read the clock a moment
    /// earlier) to the last final one.
    async fn prepare(&self, as_of: Option<OffsetDateTime>) -> Result<(), InfraError> {
        let db_now = self.statistics.clock().await?;
        let now = as_of.unwrap_or(db_now);
        let _loading = self.loading.lock().await;
        let (lo, first_full) = window_bounds(now);
        let edge = hour_of(lo);
        for hour in [edge, edge + HOUR] {
            if self.edge(hour).is_none() && is_final(hour, db_now) {
                let loaded = self.load_edge(hour).await?;
                write(&self.edges).insert(hour, loaded);
            }
        }
        write(&self.edges).retain(|hour, _| *hour >= edge - HOUR && *hour <= edge + HOUR);

        let (from, to) = (first_full - HOUR, hour_of(now.min(db_now) - SETTLE));
        if to <= from {
            return Ok(());
        }
        let statistics = &self.statistics;
        let settled = match self.settled().filter(|s| s.from() <= from && from <= s.to()) {
            Some(held) if held.to() >= to => held.trimmed(from),
            Some(held) => held
                .extended(to, &statistics.hour_sums(held.to(), to).await?)
                .trimmed(from),
            None => SettledHours::starting(from).extended(to, &statistics.hour_sums(from, to).await?),
        };
        *write(&self.settled) = Some(Arc::new(settled));
        Ok(())
    }

    /// The edge hour starting at `hour`, from memory, else loaded (and kept
    /// when final by `db_now`; only tests ask for one that is not).
    async fn edge_hour(&self, hour: OffsetDateTime, db_now: OffsetDateTime) -> Result<Arc<EdgeHour>, InfraError> {
        if let Some(held) = self.edge(hour) {
            return Ok(held);
        }
        if !is_final(hour, db_now) {
            return self.load_edge(hour).await;
        }
        let _loading = self.loading.lock().await;
        if let Some(held) = self.edge(hour) {
            return Ok(held);
        }
        tracing::info!(%hour, "a request loads the edge hour of the popular-menu window: it was not prepared");
        self.loaded_by_requests.fetch_add(1, Ordering::Relaxed);
        let loaded = self.load_edge(hour).await?;
        let mut edges = write(&self.edges);
        edges.insert(hour, Arc::clone(&loaded));
        edges.retain(|held, _| *held >= hour - HOUR * 2 && *held <= hour + HOUR * 2);
        Ok(loaded)
    }

    /// Every menu sold in the window, ranked: the live sums read now, the
    /// settled hours and the edge hour from memory.
    async fn rank(&self, as_of: Option<OffsetDateTime>) -> Result<Vec<PopularMenu>, InfraError> {
        let settled = self.settled();
        let live = self
            .statistics
            .live_sales(LiveWindow {
                as_of,
                length: WINDOW,
                held: settled.as_ref().map(|s| (s.from(), s.to())),
            })
            .await?;
        let (lo, first_full) = window_bounds(live.now);

        let mut totals = Totals::new();
        if live.live_from != first_full {
            let covered = settled
                .as_ref()
                .is_some_and(|s| s.to() == live.live_from && s.add_since(first_full, &mut totals));
            if !covered {
                return Err(InfraError::Unexpected(anyhow::anyhow!(
                    "the live buckets start at {}, which the settled hours held do not reach from {first_full}",
                    live.live_from
                )));
            }
        }
        self.edge_hour(hour_of(lo), live.db_now)
            .await?
            .add_after(lo, &mut totals);
        for sale in &live.sales {
            add(&mut totals, sale.menu, sale.quantity, sale.order_count);
        }
        Ok(rank(live.menus, &totals))
    }
}

/// The first `limit` entries of a ranking.
fn first(ranked: &[PopularMenu], limit: u32) -> Vec<PopularMenu> {
    ranked
        .iter()
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .cloned()
        .collect()
}

impl PopularRanking {
    /// The top `limit` menus by cups ordered in `(now - 7 days, now]`, ties
    /// broken by order count (descending) then name (ascending); exact, and
    /// read from the primary so an acknowledged order is always counted.
    /// `now` is the store's own clock, the one that stamps orders.
    #[tracing::instrument(name = "popular.top", skip(self))]
    pub async fn top(&self, limit: u32) -> Result<Vec<PopularMenu>, InfraError> {
        self.start_preparing();
        let shared = Arc::downgrade(&self.shared);
        let ranked = self
            .shared
            .ranking
            .get(move || async move {
                let shared = shared
                    .upgrade()
                    .ok_or_else(|| InfraError::Unexpected(anyhow::anyhow!("the popular-menu ranking is gone")))?;
                shared.rank(None).await
            })
            .await?;
        Ok(first(&ranked, limit))
    }
}

#[cfg(test)]
pub(crate) mod tests;
