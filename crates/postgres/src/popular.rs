//! Popular menus from hourly statistics buckets, exact at the window's edges,
//! at a cost per request bounded by menus and buckets, never by orders.
//!
//! The window is `(now - 7 days, now]`. Let `lo = now - 7 days` and
//! `first_full` the first whole UTC hour after `lo`. The ranking adds up:
//!
//! - whole hours from `first_full` on whose buckets are final, from memory
//!   (`SettledHours`: per-menu prefix sums, one subtraction per menu);
//! - the other whole hours, the live buckets of the last hour or two (shards
//!   included), read from `menu_sales_hourly` by each request in the one
//!   query that also reads `now` and the menus;
//! - the partial hour `(lo, first_full)` at the old edge, from memory
//!   (`EdgeHour`: per-second sums of its order items with the sums of every
//!   later second, so the lower edge is one binary search).
//!
//! `now` is the database's clock, the same clock that stamps orders (read
//! after the user's row is locked, see `orders.rs`), so the instances' own
//! clocks, skewed or not, decide nothing. The old edge has one-second
//! resolution (docs/API.md, "Popular menus": "to the second"): in the partial hour an
//! order counts when it is younger than `lo` rounded up to a whole second.
//! That is exactly the window when `now` is a whole second; otherwise the
//! orders of the partial hour after `lo` up to the next whole second are left
//! out, and an order older than seven days never counts.
//!
//! Only data that can no longer change is kept in memory, so every instance
//! stays exact with orders placed through the others. Every order is stamped
//! at about the present, and no order transaction outlives [`SETTLE`] (the
//! server refuses a configuration that would allow it), so buckets that ended
//! more than `SETTLE` ago, and the order items of the hours at the window's
//! old edge (a week old), are final. A background task prepares them every
//! [`PREPARE_EVERY`], the next edge hour well before the window reaches it,
//! so no request waits for them; it is started by the first
//! [`PopularMenus::top`] or by [`PgPopularMenus::start_preparing`]. A request
//! that finds its edge hour missing all the same (before the first
//! preparation, or while preparing fails) loads it, once for every request
//! waiting for it. Buckets after `now` are counted too: an order stamped after
//! the request's `now` and committed before its snapshot was acknowledged, and
//! must never be missed. History written into the past (seeding with
//! `PgOrderStore::place_order_at` or `bench/seed_popular.sql`) must be there
//! before an instance first ranks, which is why the task starts with the
//! first ranking rather than with the adapter.
//!
//! Concurrent requests share their query ([`crate::coalesce`]): one that
//! arrives while a ranking query runs waits for the next one, which begins
//! after it arrived and answers every request that arrived in between. So
//! each answer still reads the database after the request came in (nothing
//! committed before it is missed), and under load the database runs one
//! ranking query per round of requests instead of one per request.

mod queries;
mod sums;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use coffee_domain::{Menu, PopularMenu};
use coffee_ports::{InfraError, PopularMenus};
use time::OffsetDateTime;

use crate::coalesce::Coalesced;
use crate::menus::MenuRow;
use crate::orders::hour_of;
use crate::pool::{PgConnection, PgPool};
use sums::{EdgeHour, HOUR, SettledHours, Totals, add};

/// The ranking's window.
pub const WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long after its end a bucket can still receive an order: the longest an
/// order transaction can take (lock waits and statement timeouts included)
/// plus clock skew between instances, with a wide margin.
pub const SETTLE: Duration = Duration::from_secs(5 * 60);

/// How often the background task prepares what the ranking keeps in memory.
/// A bucket that becomes final is read live by requests until then.
pub const PREPARE_EVERY: Duration = Duration::from_secs(30);

/// [`PopularMenus`] on PostgreSQL. Clones share what is kept in memory.
#[derive(Debug, Clone)]
pub struct PgPopularMenus {
    shared: Arc<Shared>,
}

/// What the instance keeps in memory, and how it is filled.
#[derive(Debug)]
struct Shared {
    pool: PgPool,
    settled: RwLock<Option<Arc<SettledHours>>>,
    edges: RwLock<BTreeMap<OffsetDateTime, Arc<EdgeHour>>>,
    /// Held while filling memory, so each hour is loaded once. Taken only
    /// with a connection already in hand, never the other way round, so
    /// those waiting for it cannot starve its holder of a connection.
    loading: tokio::sync::Mutex<()>,
    /// The runtime the background task runs on: the one that built this
    /// adapter (the server's main one), else the caller's.
    runtime: Option<tokio::runtime::Handle>,
    started: AtomicBool,
    loaded_by_requests: AtomicU64,
    /// The rankings requests share: one query answers every request that
    /// arrived before it began (see [`Coalesced`]).
    ranking: Coalesced<Vec<PopularMenu>>,
}

/// What a [`PgPopularMenus`] holds in memory: for tests and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The settled whole hours held, `[from, to)`.
    pub settled: Option<(OffsetDateTime, OffsetDateTime)>,
    /// The start of each edge hour held, ascending.
    pub edge_hours: Vec<OffsetDateTime>,
    /// How many edge hours requests had to load themselves.
    pub loaded_by_requests: u64,
}

impl PgPopularMenus {
    /// An adapter with nothing in memory yet; call within the runtime that
    /// should run its background task (see [`Self::start_preparing`]).
    pub fn new(pool: PgPool) -> Self {
        Self {
            shared: Arc::new(Shared {
                pool,
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
    /// clone of this adapter is dropped. [`PopularMenus::top`] starts it too;
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

    /// [`Self::prepare`] as of `now` instead of the database's clock (still
    /// holding only what is final by the database's clock): only for tests.
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

    /// The ranking as of `now` instead of the database's clock: only for
    /// tests that sweep the window over a seeded history.
    pub async fn top_as_of(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<PopularMenu>, InfraError> {
        Ok(first(&self.shared.rank(Some(now)).await?, limit))
    }

    /// How many rounds (ranking queries) requests have opened: for tests.
    pub fn ranking_rounds(&self) -> u64 {
        self.shared.ranking.rounds()
    }
}

/// Prepares every [`PREPARE_EVERY`] until the adapter is dropped.
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

/// The window's bounds for `now`: `(lo, first_full)`.
pub fn window_bounds(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let lo = now - WINDOW;
    (lo, hour_of(lo) + HOUR)
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

    /// Brings memory up to date for `now` (the database's clock by default):
    /// the edge hour and the next one, and the settled hours from the hour
    /// before `first_full` (for requests that read the clock a moment
    /// earlier) to the last final one.
    async fn prepare(&self, as_of: Option<OffsetDateTime>) -> Result<(), InfraError> {
        let mut conn = self.pool.get().await?;
        let clock = queries::clock(&mut conn, as_of).await?;
        let _loading = self.loading.lock().await;
        let (lo, first_full) = window_bounds(clock.now);
        let edge = hour_of(lo);
        for hour in [edge, edge + HOUR] {
            if self.edge(hour).is_none() && is_final(hour, clock.db_now) {
                let loaded = Arc::new(queries::edge_hour(&mut conn, hour).await?);
                write(&self.edges).insert(hour, loaded);
            }
        }
        write(&self.edges).retain(|hour, _| *hour >= edge - HOUR && *hour <= edge + HOUR);

        let (from, to) = (first_full - HOUR, hour_of(clock.now.min(clock.db_now) - SETTLE));
        if to <= from {
            return Ok(());
        }
        let settled = match self.settled().filter(|s| s.from() <= from && from <= s.to()) {
            Some(held) if held.to() >= to => held.trimmed(from),
            Some(held) => held
                .extended(to, &queries::settled_hours(&mut conn, held.to(), to).await?)
                .trimmed(from),
            None => SettledHours::starting(from).extended(to, &queries::settled_hours(&mut conn, from, to).await?),
        };
        *write(&self.settled) = Some(Arc::new(settled));
        Ok(())
    }

    /// The edge hour starting at `hour`, from memory, else loaded (and kept
    /// when final by `db_now`; only tests ask for one that is not).
    async fn edge_hour(
        &self,
        conn: &mut PgConnection,
        hour: OffsetDateTime,
        db_now: OffsetDateTime,
    ) -> Result<Arc<EdgeHour>, InfraError> {
        if let Some(held) = self.edge(hour) {
            return Ok(held);
        }
        if !is_final(hour, db_now) {
            return Ok(Arc::new(queries::edge_hour(conn, hour).await?));
        }
        let _loading = self.loading.lock().await;
        if let Some(held) = self.edge(hour) {
            return Ok(held);
        }
        tracing::info!(%hour, "a request loads the edge hour of the popular-menu window: it was not prepared");
        self.loaded_by_requests.fetch_add(1, Ordering::Relaxed);
        let loaded = Arc::new(queries::edge_hour(conn, hour).await?);
        let mut edges = write(&self.edges);
        edges.insert(hour, Arc::clone(&loaded));
        edges.retain(|held, _| *held >= hour - HOUR * 2 && *held <= hour + HOUR * 2);
        Ok(loaded)
    }

    /// Every menu sold in the window, ranked.
    async fn rank(&self, as_of: Option<OffsetDateTime>) -> Result<Vec<PopularMenu>, InfraError> {
        let settled = self.settled();
        let mut conn = self.pool.get().await?;
        let held = settled.as_ref().map(|s| (s.from(), s.to()));
        let rows = queries::rank(&mut conn, as_of, held, WINDOW).await?;
        let (now, db_now, live_from) = rows
            .iter()
            .find_map(|row| Some((row.now?, row.db_now?, row.live_from?)))
            .ok_or_else(|| InfraError::Unexpected(anyhow::anyhow!("the ranking query returned no clock")))?;
        let (lo, first_full) = window_bounds(now);

        let mut totals = Totals::new();
        if live_from != first_full {
            let covered = settled
                .as_ref()
                .is_some_and(|s| s.to() == live_from && s.add_since(first_full, &mut totals));
            if !covered {
                return Err(InfraError::Unexpected(anyhow::anyhow!(
                    "the live buckets start at {live_from}, which the settled hours held do not reach from {first_full}"
                )));
            }
        }
        self.edge_hour(&mut conn, hour_of(lo), db_now)
            .await?
            .add_after(lo, &mut totals);
        drop(conn);

        let mut menus = Vec::new();
        for row in rows {
            match (row.id, row.name, row.price, row.quantity, row.order_count) {
                (Some(id), Some(name), Some(price), _, _) => menus.push(MenuRow { id, name, price }),
                (Some(id), _, _, Some(quantity), Some(order_count)) => add(&mut totals, id, quantity, order_count),
                _ => {}
            }
        }
        let mut ranked = Vec::new();
        for menu in menus {
            let Some(&(quantity, order_count)) = totals.get(&menu.id).filter(|(q, _)| *q > 0) else {
                continue;
            };
            ranked.push((Menu::try_from(menu)?, quantity, order_count));
        }
        // Cups, then orders (both descending), then name (by bytes), then id.
        ranked.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then(b.2.cmp(&a.2))
                .then_with(|| a.0.name.as_str().cmp(b.0.name.as_str()))
                .then(a.0.id.cmp(&b.0.id))
        });
        Ok(ranked
            .into_iter()
            .zip(1..)
            .map(|((menu, quantity, order_count), rank)| PopularMenu {
                rank,
                menu,
                quantity,
                order_count,
            })
            .collect())
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

#[async_trait]
impl PopularMenus for PgPopularMenus {
    #[tracing::instrument(name = "pg.popular.top", skip(self))]
    async fn top(&self, limit: u32) -> Result<Vec<PopularMenu>, InfraError> {
        self.start_preparing();
        let shared = Arc::downgrade(&self.shared);
        let ranked = self
            .shared
            .ranking
            .get(move || async move {
                let shared = shared
                    .upgrade()
                    .ok_or_else(|| InfraError::Unexpected(anyhow::anyhow!("the popular-menu adapter is gone")))?;
                shared.rank(None).await
            })
            .await?;
        Ok(first(&ranked, limit))
    }

    async fn compact(&self, before: OffsetDateTime) -> Result<u64, InfraError> {
        let mut conn = self.shared.pool.get().await?;
        queries::compact(&mut conn, hour_of(before)).await
    }

    async fn purge(&self, before: OffsetDateTime) -> Result<u64, InfraError> {
        crate::sql::purge_in_batches(&self.shared.pool, || {
            diesel::sql_query(
                "WITH gone AS (DELETE FROM menu_sales_hourly WHERE ctid IN \
                 (SELECT ctid FROM menu_sales_hourly WHERE bucket_start < $1 LIMIT $2) RETURNING 1) \
                 SELECT count(*) AS n FROM gone",
            )
            .into_boxed()
            .bind::<diesel::sql_types::Timestamptz, _>(before)
        })
        .await
    }
}
