//! A TCP proxy a test can cut and restore, to simulate a dependency outage
//! without stopping the shared server other tests use.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards every connection to `upstream` until [`TcpProxy::cut`].
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    acceptor: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct ProxyState {
    cut: AtomicBool,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

impl ProxyState {
    fn connections(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TcpProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ProxyState::default());
        let upstream = upstream.to_owned();
        let acceptor_state = Arc::clone(&state);
        let acceptor = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if acceptor_state.cut.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut connections = acceptor_state.connections();
                connections.retain(|c| !c.is_finished());
                connections.push(task);
            }
        });
        Ok(Self { addr, state, acceptor })
    }

    /// `127.0.0.1:<port>` of the proxy.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every open connection and refuses new ones, like a dead server.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for connection in self.state.connections().drain(..) {
            connection.abort();
        }
    }

    /// Accepts and forwards connections again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.acceptor.abort();
    }
}
