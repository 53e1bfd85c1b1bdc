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
    /// The connection's timer, made once and moved for each head.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Whether a head is being timed.
    armed: bool,
    /// Whether the timer is set for the head being timed.
    timer_set: bool,
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
            armed: false,
            timer_set: false,
        }
    }

    /// Follows the framing through bytes just read: a few vector searches
    /// per read, not a step per byte (this runs under every request).
    fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.framing {
                Framing::Between => {
                    // Empty lines before a request line are allowed.
                    let Some(start) = bytes.iter().position(|b| *b != b'\r' && *b != b'\n') else {
                        return;
                    };
                    bytes = &bytes[start..];
                    self.framing = Framing::Head;
                    self.head.clear();
                    self.tail = [0; 4];
                    self.arm();
                }
                Framing::Head => {
                    if self.head.is_empty()
                        && let Some((end, framing)) = whole_head(bytes)
                    {
                        // The whole head in this read, as nearly every head
                        // is: its headers are read where they are, not kept.
                        self.armed = false;
                        self.framing = framing;
                        bytes = &bytes[end..];
                        continue;
                    }
                    bytes = self.head_in_parts(bytes);
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
                Framing::Opaque => return,
            }
        }
    }

    /// Takes `bytes` as more of a head that did not arrive in one read
    /// (rare: this is off the path nearly every request takes); returns
    /// what follows the head's end in them.
    #[cold]
    #[inline(never)]
    fn head_in_parts<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        let end = head_end(&self.tail, bytes);
        let (head, rest) = bytes.split_at(end.unwrap_or(bytes.len()));
        let room = MAX_HEAD.saturating_sub(self.head.len());
        self.head.extend_from_slice(&head[..head.len().min(room)]);
        self.tail = last_four(self.tail, head);
        if end.is_some() {
            self.armed = false;
            self.framing = framing_after(&self.head);
        }
        rest
    }

    /// Starts timing a head. The timer itself is only set when a read ends
    /// inside the head ([`TimedIo::start_timer`]): a head that arrives in
    /// one read, as nearly all do, never touches it.
    fn arm(&mut self) {
        self.armed = true;
        self.timer_set = false;
    }

    /// Sets the connection's one timer (made once, moved for each head
    /// after) to the timeout from now, and registers for its wake-up.
    /// Whether it has already run out.
    #[cold]
    #[inline(never)]
    fn start_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let at = tokio::time::Instant::now() + self.timeout;
        let deadline = match self.deadline.as_mut() {
            Some(deadline) => {
                deadline.as_mut().reset(at);
                deadline
            }
            None => self.deadline.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        self.timer_set = true;
        deadline.as_mut().poll(cx).is_ready()
    }
}

/// A head that starts at `bytes[0]` and ends in them: where it ends (just
/// past its blank line) and what follows it, read off its lines in one pass
/// (the same answer as [`head_end`] then [`framing_after`]). `None` when it
/// does not end in `bytes`.
fn whole_head(bytes: &[u8]) -> Option<(usize, Framing)> {
    let mut lines = memchr::memchr_iter(b'\n', bytes);
    // Header lines, after the request line.
    let mut start = lines.next()? + 1;
    let mut body = Body::Length(0);
    for end in lines {
        let line = &bytes[start..end];
        // The blank line, when the line before it ended with CR LF as well.
        if line == b"\r" && start >= 2 && bytes[start - 2] == b'\r' {
            let end = end + 1;
            if end > MAX_HEAD {
                return Some((end, framing_after(&bytes[..MAX_HEAD])));
            }
            return Some((end, body.framing()));
        }
        start = end + 1;
        if let Body::Length(_) = body {
            body = body.after(line);
        }
    }
    None
}

/// What follows a complete head (`head`, or its first [`MAX_HEAD`]
/// bytes): its body, by its headers.
fn framing_after(head: &[u8]) -> Framing {
    let mut body = Body::Length(0);
    // Header lines, after the request line.
    let mut start = match memchr::memchr(b'\n', head) {
        Some(end) => end + 1,
        None => return Framing::Between,
    };
    while start < head.len() {
        let end = memchr::memchr(b'\n', &head[start..]).map_or(head.len(), |at| start + at);
        body = body.after(&head[start..end]);
        if body == Body::Opaque {
            break;
        }
        start = end + 1;
    }
    body.framing()
}

/// A head's body as its header lines so far tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Of this many bytes (the last `Content-Length`, 0 without one).
    Length(u64),
    /// Chunked, or of a length that does not parse (actix-http refuses
    /// such a request): nothing to time.
    Opaque,
}

impl Body {
    /// After one more header `line` (its line break excluded). Only two
    /// names matter, so a line is looked into only when its first letter
    /// could start one.
    fn after(self, line: &[u8]) -> Self {
        if !matches!(line.first(), Some(b'c' | b'C' | b't' | b'T')) {
            return self;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return self;
        };
        let (name, value) = (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Self::Opaque;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            return match std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                Some(n) => Self::Length(n),
                None => Self::Opaque,
            };
        }
        self
    }

    fn framing(self) -> Framing {
        match self {
            Self::Length(0) => Framing::Between,
            Self::Length(n) => Framing::Body(n),
            Self::Opaque => Framing::Opaque,
        }
    }
}

/// Where the head ends in `bytes` (just past its blank line), when it does:
/// the blank line may begin in the bytes read before (`tail`, the head's
/// last four bytes so far).
fn head_end(tail: &[u8; 4], bytes: &[u8]) -> Option<usize> {
    const END: &[u8; 4] = b"\r\n\r\n";
    // Built once: `memmem::find` builds its searcher at every call.
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(END));
    if tail[1..] != [0; 3] {
        let mut joined = [0u8; 7];
        joined[..3].copy_from_slice(&tail[1..]);
        let first = bytes.len().min(4);
        joined[3..3 + first].copy_from_slice(&bytes[..first]);
        if let Some(at) = joined[..3 + first].windows(4).position(|w| w == END) {
            return Some(at + 4 - 3);
        }
    }
    FINDER.find(bytes).map(|at| at + 4)
}

/// The last four bytes of `tail` followed by `bytes`.
fn last_four(tail: [u8; 4], bytes: &[u8]) -> [u8; 4] {
    let mut out = tail;
    let take = bytes.len().min(4);
    out.rotate_left(take);
    out[4 - take..].copy_from_slice(&bytes[bytes.len() - take..]);
    out
}

/// The error that fails the read of a head that took too long.
#[cold]
#[inline(never)]
fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the request headers did not arrive within HTTP_REQUEST_TIMEOUT_MS",
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.armed
            && this.timer_set
            && let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(timed_out()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            this.observe(&buf.filled()[before..]);
            // The read ended inside a head: from now on it is timed.
            if this.armed && !this.timer_set && this.start_timer(cx) {
                return Poll::Ready(Err(timed_out()));
            }
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
        assert!(!server.armed);
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

    /// The framing after a stream read in pieces, cut anywhere (the end of a
    /// head straddling two reads above all), is the framing after it whole.
    #[tokio::test(start_paused = true)]
    async fn the_framing_does_not_depend_on_where_reads_cut_the_stream() {
        let stream: &[u8] = b"\r\nPOST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
            GET /b HTTP/1.1\r\nHost: y\r\n\r\nPOST /c HTTP/1.1\r\ncontent-length: 3\r\n\r\nab";
        let observed = |cuts: &[usize]| {
            let mut io = TimedIo::new(tokio::io::empty(), TIMEOUT);
            let mut from = 0;
            for &to in cuts.iter().chain([&stream.len()]) {
                io.observe(&stream[from..to]);
                from = to;
            }
            (io.framing, io.armed)
        };
        let whole = observed(&[]);
        assert_eq!(whole, (Framing::Body(1), false));
        for a in 0..stream.len() {
            assert_eq!(observed(&[a]), whole, "cut at {a}");
            for b in a..stream.len().min(a + 6) {
                assert_eq!(observed(&[a, b]), whole, "cuts at {a} and {b}");
            }
        }
        let bytewise: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(observed(&bytewise), whole);
        // Stopped inside a head: it is being timed.
        let mut io = TimedIo::new(tokio::io::empty(), TIMEOUT);
        io.observe(b"GET /d HTTP/1.1\r\nHost: z\r\n\r");
        assert_eq!((io.framing, io.armed), (Framing::Head, true));
        io.observe(b"\n");
        assert_eq!((io.framing, io.armed), (Framing::Between, false));
    }

    /// The one-pass reading of a head that arrives whole gives what
    /// finding its end and then reading its lines gives, for every prefix of
    /// heads with odd line breaks, repeated or broken lengths, and chunking.
    #[test]
    fn a_head_read_in_one_pass_is_framed_as_one_read_line_by_line() {
        let heads: [&[u8]; 9] = [
            b"GET /menus HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
            b"POST /a HTTP/1.1\r\nContent-Length: 5\r\ncontent-length:  7 \r\n\r\nhello",
            b"POST /a HTTP/1.1\r\nContent-Length: x\r\nContent-Length: 5\r\n\r\n",
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            b"GET / HTTP/1.1\n\r\nHost: x\n\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nCookie: a\r\nT\r\ncontent-length\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n",
            b"PUT / HTTP/1.1\r\ncontent-LENGTH: 18446744073709551615\r\n\r\n",
        ];
        for head in heads {
            for len in 1..=head.len() {
                let bytes = &head[..len];
                let by_lines = head_end(&[0; 4], bytes).map(|end| (end, framing_after(&bytes[..end.min(MAX_HEAD)])));
                assert_eq!(whole_head(bytes), by_lines, "{:?}", String::from_utf8_lossy(bytes));
            }
        }
        let mut long = b"GET / HTTP/1.1\r\n".to_vec();
        while long.len() < MAX_HEAD + 100 {
            long.extend_from_slice(b"X-Filler: 0123456789\r\n");
        }
        long.extend_from_slice(b"Content-Length: 3\r\n\r\n");
        assert_eq!(
            whole_head(&long),
            Some((long.len(), Framing::Between)),
            "headers past MAX_HEAD are not read"
        );
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
