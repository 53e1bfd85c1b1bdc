//! The graceful stop as each connection waits for it.
//!
//! actix-http polls a connection's stop signal (`graceful_shutdown_signal`)
//! every time it polls the connection, about once per request, so that an
//! idle keep-alive connection closes as soon as a graceful stop begins.
//! actix-server's own signal (`GracefulShutdownSignal::notified`, a
//! `tokio::sync::watch`) has each connection wait in one list the whole
//! process shares, and every poll of a waiting `watch` future takes that
//! list's lock to compare its waker: a lock per request that both HTTP
//! workers take, its cache line moving between their cores.
//!
//! [`WorkerStop`] is the same signal kept per worker: one task of each
//! worker waits for actix-server's signal ([`WorkerStop::follow`]); a
//! connection's [`Started`] reads a flag of its worker's own and registers
//! its waker with its worker once (and again only if the waker changes).
//! Nothing in it is shared between threads.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// One worker's copy of the server's graceful stop (`Rc`: a worker's
/// connections all run on its thread).
#[derive(Debug, Clone, Default)]
pub struct WorkerStop(Rc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    /// Set once the stop has begun; never cleared.
    started: Cell<bool>,
    /// The wakers of this worker's connections waiting for the stop.
    waiting: RefCell<Slab<Waker>>,
}

impl WorkerStop {
    /// A stop that begins when `signal` (actix-server's, for the whole
    /// server) is notified: a task on this worker waits for it. Called on
    /// the worker's thread, where the worker's runtime runs.
    pub fn follow(signal: actix_server::GracefulShutdownSignal) -> Self {
        let stop = Self::default();
        let started = stop.clone();
        actix_web::rt::spawn(async move {
            signal.notified().await;
            started.start();
        });
        stop
    }

    /// Begins the stop: every connection's [`Started`] is ready from now on,
    /// and those waiting are woken.
    pub fn start(&self) {
        self.0.started.set(true);
        // Taken out before waking: a waker may run code that drops a
        // `Started`, which borrows the list.
        let waiting: Vec<Waker> = self.0.waiting.borrow_mut().drain().collect();
        for waker in waiting {
            waker.wake();
        }
    }

    /// A connection's wait for the stop.
    pub fn started(&self) -> Started {
        Started {
            stop: Rc::clone(&self.0),
            key: None,
        }
    }
}

/// Ready once the worker's stop has begun ([`WorkerStop::started`]).
#[derive(Debug)]
pub struct Started {
    stop: Rc<Shared>,
    /// Where this connection's waker is registered, once it was polled.
    key: Option<usize>,
}

impl Future for Started {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.stop.started.get() {
            return Poll::Ready(());
        }
        let mut waiting = this.stop.waiting.borrow_mut();
        match this.key.and_then(|key| waiting.get_mut(key)) {
            Some(waker) => waker.clone_from(cx.waker()),
            None => this.key = Some(waiting.insert(cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            // Gone already when the stop woke it.
            self.stop.waiting.borrow_mut().try_remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::wakes::Wakes;

    fn poll(started: &mut Started, wakes: &Arc<Wakes>) -> Poll<()> {
        let waker = Waker::from(Arc::clone(wakes));
        Pin::new(started).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_waiting_connection_is_woken_once_by_the_stop_and_is_then_ready() {
        let stop = WorkerStop::default();
        let (mut first, mut second) = (stop.started(), stop.started());
        let (wakes_first, wakes_second) = (Arc::new(Wakes::default()), Arc::new(Wakes::default()));
        for _ in 0..3 {
            assert!(poll(&mut first, &wakes_first).is_pending());
        }
        assert!(poll(&mut second, &wakes_second).is_pending());
        assert_eq!(stop.0.waiting.borrow().len(), 2, "one registration per connection");

        stop.start();
        assert_eq!(wakes_first.count(), 1);
        assert_eq!(wakes_second.count(), 1);
        assert!(poll(&mut first, &wakes_first).is_ready());
        assert!(poll(&mut second, &wakes_second).is_ready());
        assert!(
            poll(&mut stop.started(), &Arc::new(Wakes::default())).is_ready(),
            "a connection polled after the stop began"
        );
    }

    #[test]
    fn the_latest_waker_is_the_one_woken() {
        let stop = WorkerStop::default();
        let mut started = stop.started();
        let (old, new) = (Arc::new(Wakes::default()), Arc::new(Wakes::default()));
        assert!(poll(&mut started, &old).is_pending());
        assert!(poll(&mut started, &new).is_pending());
        stop.start();
        assert_eq!(old.count(), 0);
        assert_eq!(new.count(), 1);
    }

    #[test]
    fn a_closed_connection_leaves_the_list() {
        let stop = WorkerStop::default();
        let mut started = stop.started();
        assert!(poll(&mut started, &Arc::new(Wakes::default())).is_pending());
        drop(started);
        assert!(stop.0.waiting.borrow().is_empty());
        // One dropped after the stop woke it finds its entry gone, and
        // must not panic over it (`Slab::remove` would).
        let mut woken = stop.started();
        assert!(poll(&mut woken, &Arc::new(Wakes::default())).is_pending());
        stop.start();
        assert!(stop.0.waiting.borrow().is_empty());
        drop(woken);
    }
}
