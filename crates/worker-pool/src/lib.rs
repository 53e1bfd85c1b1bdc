//! Connection pools of each HTTP worker's own.
//!
//! A connection's I/O task runs on the runtime that opened it. When one
//! pool serves every HTTP worker, its connections run on a runtime of their
//! own (the I/O runtime), and every answer from PostgreSQL or Redis is read
//! on that runtime's thread and handed over to the worker's: a wake-up of
//! another thread per round trip, which cost a charge about a tenth of its
//! CPU (`docs/DECISIONS.md`, "Per-request cost"). A worker that adopts an
//! adapter's [`Pools`] ([`Pools::adopt`]) gets a pool of its own, whose connections are opened, and
//! read, on its own thread: nothing is handed over. A connection is then
//! only ever used by the worker that opened it, so one worker stopping
//! (actix stops idle workers first) never takes a connection another
//! worker's request holds.
//!
//! Threads that did not adopt (the main runtime's tasks, other runtimes)
//! use the shared pool. A worker's pool is dropped, and its connections closed, when its
//! thread ends.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::thread::ThreadId;

use deadpool::managed::{Manager, Object, Pool, PoolError, Status};

/// The connections of a [`Pools::per_worker`] that serve what runs outside
/// the HTTP workers (the ranking's hourly reads, start-up checks).
pub const OUTSIDE_WORKERS: usize = 2;

/// An adapter's pool: a shared one, and for each worker that adopted them
/// ([`Pools::adopt`]), one of its own. Cloning shares them.
pub struct Pools<M: Manager> {
    shared: Pool<M>,
    workers: Option<Arc<WorkerPools<M>>>,
}

impl<M: Manager + 'static> std::fmt::Debug for Pools<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (in_use, size) = self.usage();
        f.debug_struct("Pools")
            .field("in_use", &in_use)
            .field("size", &size)
            .field("per_worker", &self.workers.is_some())
            .finish()
    }
}

impl<M: Manager> Clone for Pools<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            workers: self.workers.clone(),
        }
    }
}

impl<M: Manager + 'static> Pools<M> {
    /// One pool for every thread.
    pub fn shared_only(shared: Pool<M>) -> Self {
        Self { shared, workers: None }
    }

    /// `shared` for threads that did not adopt, and a pool `make` builds
    /// for each worker that does. A worker whose pool cannot be built (the
    /// error is logged, naming `what`) uses `shared`.
    pub fn per_worker<E: std::fmt::Display>(
        shared: Pool<M>,
        what: &'static str,
        make: impl Fn() -> Result<Pool<M>, E> + Send + Sync + 'static,
    ) -> Self {
        let make = move || {
            make()
                .inspect_err(|e| tracing::error!(error = %e, pool = what, "building a worker's pool"))
                .ok()
        };
        Self {
            shared,
            workers: Some(WorkerPools::new(make)),
        }
    }

    /// The pool of threads that did not adopt.
    pub fn shared(&self) -> &Pool<M> {
        &self.shared
    }

    /// Gives the calling worker its own pool ([`Pools::per_worker`];
    /// nothing otherwise). Called on the worker's thread, in its runtime.
    pub fn adopt(&self) {
        if let Some(workers) = &self.workers {
            workers.adopt();
        }
    }

    /// An object of the calling thread's own pool, or of the shared one.
    pub async fn get(&self) -> Result<Object<M>, PoolError<M::Error>> {
        match self.workers.as_ref().and_then(|workers| workers.current()) {
            Some(own) => own.get().await,
            None => self.shared.get().await,
        }
    }

    /// Objects in use, and the pools' sizes, summed over the shared pool
    /// and the workers'.
    pub fn usage(&self) -> (usize, usize) {
        let (in_use, size) = self.workers.as_ref().map_or((0, 0), |workers| workers.usage());
        let (shared_in_use, shared_size) = usage_of(self.shared.status());
        (in_use + shared_in_use, size + shared_size)
    }
}

/// Objects in use and the size of one pool.
fn usage_of(status: Status) -> (usize, usize) {
    (status.size.saturating_sub(status.available), status.max_size)
}

/// The pools of the threads that adopted them, each made by the same
/// function (same settings, a share of the instance's connections).
struct WorkerPools<M: Manager> {
    make: Box<dyn Fn() -> Option<Pool<M>> + Send + Sync>,
    pools: RwLock<HashMap<ThreadId, Pool<M>>>,
}

thread_local! {
    /// What this thread adopted: dropped when it ends, which removes its
    /// pools from their `WorkerPools`.
    static ADOPTED: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A thread's pool, kept where the thread finds it without a lock
/// ([`WorkerPools::current`]); removes it from its `WorkerPools` when the
/// thread ends.
struct Adopted<M: Manager> {
    pools: Weak<WorkerPools<M>>,
    thread: ThreadId,
    pool: Pool<M>,
}

impl<M: Manager> Drop for Adopted<M> {
    fn drop(&mut self) {
        if let Some(pools) = self.pools.upgrade() {
            pools
                .pools
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&self.thread);
        }
    }
}

impl<M: Manager + 'static> WorkerPools<M> {
    /// `make` builds one worker's pool (`None`: it cannot, and the worker
    /// uses the shared pool).
    pub fn new(make: impl Fn() -> Option<Pool<M>> + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            make: Box::new(make),
            pools: RwLock::default(),
        })
    }

    /// Gives the calling thread a pool of its own, for as long as the
    /// thread lives. Call it on the thread, once it runs the runtime its
    /// connections are to use; calling it again changes nothing.
    pub fn adopt(self: &Arc<Self>) {
        let thread = std::thread::current().id();
        let pool = {
            let mut pools = self.pools.write().unwrap_or_else(PoisonError::into_inner);
            if pools.contains_key(&thread) {
                return;
            }
            let Some(pool) = (self.make)() else { return };
            pools.insert(thread, pool.clone());
            pool
        };
        let adopted = Adopted {
            pools: Arc::downgrade(self),
            thread,
            pool,
        };
        // On a thread that is already ending, the pool goes at once.
        let _ = ADOPTED.try_with(|adopted_here| adopted_here.borrow_mut().push(Box::new(adopted)));
    }

    /// The calling thread's own pool, if it adopted one. Found in the
    /// thread's own list, not in `pools`: every checkout asks, and taking
    /// that lock, even to read, writes its count from every worker's core.
    pub fn current(&self) -> Option<Pool<M>> {
        ADOPTED
            .try_with(|adopted| {
                adopted.borrow().iter().find_map(|entry| {
                    entry
                        .downcast_ref::<Adopted<M>>()
                        .filter(|own| std::ptr::eq(own.pools.as_ptr(), self))
                        .map(|own| own.pool.clone())
                })
            })
            .ok()
            .flatten()
    }

    /// Connections in use, and the pools' sizes, summed over the workers.
    pub fn usage(&self) -> (usize, usize) {
        let pools = self.pools.read().unwrap_or_else(PoisonError::into_inner);
        pools
            .values()
            .map(|pool| usage_of(pool.status()))
            .fold((0, 0), |(in_use, size), (more_in_use, more_size)| {
                (in_use + more_in_use, size + more_size)
            })
    }
}

/// Each of `workers` workers' share of `total` connections: at least one.
pub fn share(total: usize, workers: usize) -> usize {
    (total / workers.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Hands out numbers: each object is the n-th one its manager made.
    struct Numbers(AtomicUsize);

    impl Manager for Numbers {
        type Type = usize;
        type Error = std::convert::Infallible;

        async fn create(&self) -> Result<usize, Self::Error> {
            Ok(self.0.fetch_add(1, Ordering::SeqCst))
        }

        async fn recycle(
            &self,
            _: &mut usize,
            _: &deadpool::managed::Metrics,
        ) -> deadpool::managed::RecycleResult<Self::Error> {
            Ok(())
        }
    }

    fn numbers(size: usize) -> Arc<WorkerPools<Numbers>> {
        WorkerPools::new(move || Pool::builder(Numbers(AtomicUsize::new(0))).max_size(size).build().ok())
    }

    fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().expect("the thread panicked")
    }

    #[test]
    fn each_adopting_thread_has_a_pool_of_its_own_and_others_have_none() {
        let pools = numbers(2);
        assert!(
            pools.current().is_none(),
            "a thread that did not adopt uses the shared pool"
        );
        let (first, second) = {
            let pools = Arc::clone(&pools);
            on_thread(move || {
                pools.adopt();
                pools.adopt();
                let a = pools.current().expect("adopted");
                let b = pools.current().expect("adopted");
                // The same pool: its status is shared, one adoption only.
                let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
                rt.block_on(async {
                    let held = a.get().await.expect("an object");
                    (b.status().size, *held)
                })
            })
        };
        assert_eq!((first, second), (1, 0));
    }

    #[test]
    fn two_threads_never_share_a_pool_and_a_pool_goes_with_its_thread() {
        let pools = numbers(4);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let first = {
            let pools = Arc::clone(&pools);
            std::thread::spawn(move || {
                pools.adopt();
                let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
                let held = rt.block_on(pools.current().expect("adopted").get()).expect("an object");
                ready_tx.send(()).expect("main waits");
                rx.recv().expect("main says when");
                drop(held);
            })
        };
        ready_rx.recv().expect("the first thread holds one");
        assert_eq!(pools.usage(), (1, 4));
        let other = {
            let pools = Arc::clone(&pools);
            on_thread(move || {
                pools.adopt();
                let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
                // A pool of its own: its first object, not a share of the first thread's.
                let held = rt.block_on(pools.current().expect("adopted").get()).expect("an object");
                (*held, pools.usage())
            })
        };
        assert_eq!(other, (0, (2, 8)), "both threads' pools counted while both lived");
        tx.send(()).expect("the first thread waits");
        first.join().expect("the first thread panicked");
        assert_eq!(pools.usage(), (0, 0), "every adopting thread has ended");
    }

    #[test]
    fn a_worker_gets_its_share_of_the_connections() {
        assert_eq!(share(16, 2), 8);
        assert_eq!(share(16, 3), 5);
        assert_eq!(share(1, 4), 1);
        assert_eq!(share(16, 0), 16);
    }
}
