//! Draining: the first phase of a graceful shutdown.
//!
//! On SIGTERM the instance keeps serving but says it is going away, so a load
//! balancer stops sending it requests before it stops accepting them:
//! `GET /health/ready` turns `503` at once, and every response carries
//! `Connection: close`, so keep-alive clients reconnect (to another instance)
//! instead of sending their next request down a connection that will close.
//! `bootstrap` starts the drain and, `SHUTDOWN_DRAIN_SECS` later, stops the
//! server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this instance is draining; shared by every worker.
#[derive(Debug, Clone, Default)]
pub struct Drain(Arc<AtomicBool>);

impl Drain {
    /// Starts draining; there is no way back (the process is stopping).
    pub fn start(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
