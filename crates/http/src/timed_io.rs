//! A connection that times every request's headers, not only the first's.
//!
//! actix-http times the headers of a connection's first request
//! (`client_request_timeout`) and then, between requests, the keep-alive; once
//! the first byte of a later request has arrived it clears the keep-alive
//! timer and times nothing, so a client that trickles a later request's
//! headers holds the connection forever. [`TimedIo`] sits under actix-http,
//! follows the request framing in the bytes it reads (headers, then a
//! `Content-Length` body), and fails the read once a request's headers have
//! taken longer than the timeout since their first byte: actix-http then
//! closes the connection. Bodies are timed by the application (see
//! [`crate::extract`]), which can answer `408` with a problem.
//!
//! It only watches the bytes; it never changes them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The most header bytes kept to find `Content-Length` and
/// `Transfer-Encoding` (actix-http refuses larger heads itself).
const MAX_HEAD: usize = 32 * 1024;

/// Where the reader is in the request stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Between requests (the keep-alive, timed by actix-http).
    Between,
    /// Inside a request's headers, timed here.
    Head,
    /// Inside a body of this many more bytes.
    Body(u64),
    /// A body whose end is not counted here (chunked): until the response
    /// starts, nothing is timed.
    Opaque,
}

/// `io` with every request's headers timed (see the module docs).
#[derive(Debug)]
pub struct TimedIo<T> {
    io: T,
    timeout: Duration,
    framing: Framing,
    /// The head so far (its first [`MAX_HEAD`] bytes).
    head: Vec<u8>,
    /// Its last four bytes, to see where it ends.
    tail: [u8; 4],
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> TimedIo<T> {
    pub fn new(io: T, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            framing: Framing::Between,
            head: Vec::new(),
            tail: [0; 4],
            deadline: None,
        }
    }

    /// Follows the framing through bytes just read.
    fn observe(&mut self, mut bytes: &[u8]) {
        while let Some((&first, rest)) = bytes.split_first() {
            match self.framing {
                Framing::Between => {
                    bytes = rest;
                    // Empty lines before a request line are allowed.
                    if first != b'\r' && first != b'\n' {
                        self.framing = Framing::Head;
                        self.head.clear();
                        self.head.push(first);
                        self.tail = [0, 0, 0, first];
                        self.deadline = Some(Box::pin(tokio::time::sleep(self.timeout)));
                    }
                }
                Framing::Head => {
                    bytes = rest;
                    if self.head.len() < MAX_HEAD {
                        self.head.push(first);
                    }
                    self.tail = [self.tail[1], self.tail[2], self.tail[3], first];
                    if &self.tail == b"\r\n\r\n" {
                        self.deadline = None;
                        self.framing = self.after_head();
                    }
                }
                Framing::Body(remaining) => {
                    let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[take..];
                    let left = remaining - take as u64;
                    self.framing = if left == 0 {
                        Framing::Between
                    } else {
                        Framing::Body(left)
                    };
                }
                Framing::Opaque => bytes = &[],
            }
        }
    }

    /// What follows a complete head: its body, by its headers.
    fn after_head(&self) -> Framing {
        let text = String::from_utf8_lossy(&self.head);
        let mut length = 0u64;
        for line in text.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            if name.eq_ignore_ascii_case("transfer-encoding") {
                return Framing::Opaque;
            }
            if name.eq_ignore_ascii_case("content-length") {
                match value.trim().parse() {
                    Ok(n) => length = n,
                    // actix-http refuses such a request; nothing to time.
                    Err(_) => return Framing::Opaque,
                }
            }
        }
        if length == 0 {
            Framing::Between
        } else {
            Framing::Body(length)
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request headers did not arrive within HTTP_REQUEST_TIMEOUT_MS",
            )));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            this.observe(&buf.filled()[before..]);
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        // A response has started: whatever body it answered is done with.
        if self.framing == Framing::Opaque {
            self.framing = Framing::Between;
        }
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.framing == Framing::Opaque {
            self.framing = Framing::Between;
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TIMEOUT: Duration = Duration::from_millis(200);

    /// A client end and the timed server end of one connection.
    fn connection() -> (tokio::io::DuplexStream, TimedIo<tokio::io::DuplexStream>) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        (client, TimedIo::new(server, TIMEOUT))
    }

    async fn read_some(server: &mut TimedIo<tokio::io::DuplexStream>) -> io::Result<usize> {
        let mut buf = [0u8; 4096];
        server.read(&mut buf).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_request_whose_headers_stall_fails_the_read() {
        let (mut client, mut server) = connection();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("first");
        read_some(&mut server).await.expect("first request");
        // Idle between requests: nothing is timed here.
        tokio::time::sleep(TIMEOUT * 10).await;
        client.write_all(b"GET /next HTTP/1.1\r\nHo").await.expect("partial");
        read_some(&mut server).await.expect("the first bytes");
        let stalled = read_some(&mut server).await.expect_err("timed out");
        assert_eq!(stalled.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_and_pipelined_requests_are_framed() {
        let (mut client, mut server) = connection();
        client
            .write_all(b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n")
            .await
            .expect("two requests");
        read_some(&mut server).await.expect("both");
        assert_eq!(server.framing, Framing::Between);
        assert!(server.deadline.is_none());
        // A body that trickles in is not timed here (the application does).
        client
            .write_all(b"POST /c HTTP/1.1\r\ncontent-length: 4\r\n\r\nab")
            .await
            .expect("head and half a body");
        read_some(&mut server).await.expect("read");
        assert_eq!(server.framing, Framing::Body(2));
        tokio::time::sleep(TIMEOUT * 10).await;
        client.write_all(b"cd").await.expect("rest");
        read_some(&mut server).await.expect("no timeout inside a body");
        assert_eq!(server.framing, Framing::Between);
    }

    #[tokio::test(start_paused = true)]
    async fn a_chunked_body_is_not_timed_until_the_response_starts() {
        let (mut client, mut server) = connection();
        client
            .write_all(b"\r\nPOST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe")
            .await
            .expect("chunked");
        read_some(&mut server).await.expect("read");
        assert_eq!(server.framing, Framing::Opaque);
        tokio::time::sleep(TIMEOUT * 10).await;
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.expect("response");
        assert_eq!(server.framing, Framing::Between);
    }
}
