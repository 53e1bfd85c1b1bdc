//! A proxy in front of PostgreSQL that counts round trips: how many times a
//! client, with no request of its own left unanswered, sends again. Pipelined
//! statements (sent before the answers to earlier ones) count once, so the
//! figure is what a request pays in network latency, whatever the number of
//! statements. It also counts the statements themselves (the requests each
//! `Sync` or `Query` ends): each costs the server a bind, an execution and a
//! flush of its answer, and the client a response to read.
//!
//! It reads the frontend/backend protocol only as far as message framing: a
//! request ends with `Sync` or a simple `Query` (or the startup message), and
//! is answered when the server sends `ReadyForQuery`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Counts the round trips of every connection made through it.
#[derive(Debug)]
pub struct RoundTripCounter {
    addr: SocketAddr,
    state: Arc<Mutex<Counts>>,
    acceptor: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Counts {
    trips: u64,
    statements: u64,
}

/// One connection's framing state.
#[derive(Debug, Default)]
struct Conversation {
    /// Requests sent and not yet answered by `ReadyForQuery`.
    outstanding: u64,
    /// Messages of a request have been sent, its end not yet.
    open: bool,
    /// The client's first message (startup, or a TLS request) has no type byte.
    started: bool,
    /// After a TLS/GSS request the server answers one untyped byte.
    untyped_answer: bool,
}

impl RoundTripCounter {
    /// Starts a counter on a free loopback port in front of `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(Counts::default()));
        let upstream = upstream.to_owned();
        let counts = Arc::clone(&state);
        let acceptor = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let conversation = Arc::new(Mutex::new(Conversation::default()));
                let (client_read, client_write) = inbound.into_split();
                let (server_read, server_write) = outbound.into_split();
                tokio::spawn(pump(
                    client_read,
                    server_write,
                    Side::Client,
                    Arc::clone(&conversation),
                    Arc::clone(&counts),
                ));
                tokio::spawn(pump(
                    server_read,
                    client_write,
                    Side::Server,
                    conversation,
                    Arc::clone(&counts),
                ));
            }
        });
        Ok(Self { addr, state, acceptor })
    }

    /// `127.0.0.1:<port>` of the proxy.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Round trips so far, over every connection.
    pub fn trips(&self) -> u64 {
        lock(&self.state).trips
    }

    /// Requests so far (statements, and the startup), over every connection.
    pub fn statements(&self) -> u64 {
        lock(&self.state).statements
    }
}

impl Drop for RoundTripCounter {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// Copies `from` to `to`, framing the messages and updating the counts
/// before forwarding each chunk, so an answer is accounted for before the
/// client can react to it.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    side: Side,
    conversation: Arc<Mutex<Conversation>>,
    counts: Arc<Mutex<Counts>>,
) {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        {
            let mut talk = lock(&conversation);
            let mut counts = lock(&counts);
            let consumed = frame(&pending, side, &mut talk, &mut counts);
            pending.drain(..consumed);
        }
        if to.write_all(&chunk[..n]).await.is_err() {
            return;
        }
    }
}

/// Accounts for every whole message at the start of `bytes`; returns how
/// many bytes they span.
fn frame(bytes: &[u8], side: Side, talk: &mut Conversation, counts: &mut Counts) -> usize {
    let mut at = 0;
    loop {
        let rest = &bytes[at..];
        match side {
            Side::Server if talk.untyped_answer => {
                if rest.is_empty() {
                    return at;
                }
                talk.untyped_answer = false;
                talk.outstanding = talk.outstanding.saturating_sub(1);
                at += 1;
            }
            Side::Client if !talk.started => {
                let Some(len) = length(rest, 0) else { return at };
                if rest.len() < len {
                    return at;
                }
                let code = length(rest, 4).unwrap_or_default();
                // 80877103: SSLRequest, 80877104: GSSENCRequest.
                let tls = len == 8 && (code == 80_877_103 || code == 80_877_104);
                talk.started = !tls;
                talk.untyped_answer = tls;
                message(talk, counts, true);
                at += len;
            }
            _ => {
                let Some(len) = length(rest, 1) else { return at };
                if rest.len() < len + 1 {
                    return at;
                }
                match side {
                    Side::Client => message(talk, counts, matches!(rest[0], b'S' | b'Q')),
                    Side::Server if rest[0] == b'Z' => talk.outstanding = talk.outstanding.saturating_sub(1),
                    Side::Server => {}
                }
                at += len + 1;
            }
        }
    }
}

/// A client message: the first of a request starts a round trip when no
/// earlier request is still unanswered; `ends` (a `Sync`, a `Query`, the
/// startup) closes the request, which is then awaited.
fn message(talk: &mut Conversation, counts: &mut Counts, ends: bool) {
    if !talk.open {
        if talk.outstanding == 0 {
            counts.trips += 1;
        }
        talk.open = true;
    }
    if ends {
        talk.open = false;
        talk.outstanding += 1;
        counts.statements += 1;
    }
}

/// The big-endian `i32` at `at` of `bytes`, as a length.
fn length(bytes: &[u8], at: usize) -> Option<usize> {
    let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    usize::try_from(i32::from_be_bytes(raw)).ok()
}
