//! What the server does with connections themselves: a request whose body
//! stalls is answered `408` and its connection closed; an idle keep-alive
//! connection lives `HTTP_KEEP_ALIVE_SECS` (longer than a balancer's idle
//! timeout) but never holds a shutdown.

use std::time::{Duration, Instant};

use coffee_e2e::{coffee_env, free_port, override_env, start_coffee};
use coffee_test_support::{TestDatabase, unique_key_prefix};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one response (headers and a `Content-Length` body) from `stream`;
/// `None` when the connection closes first or nothing comes within `wait`.
async fn read_response(stream: &mut TcpStream, wait: Duration) -> Option<(u16, String, String)> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let status = head.split(' ').nth(1)?.parse().ok()?;
                return Some((status, head.to_owned(), text[end + 4..end + 4 + length].to_owned()));
            }
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Whether the server has closed `stream` (EOF or reset) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn instance(db: &TestDatabase, overrides: &[(&'static str, &str)]) -> coffee_e2e::Process {
    let port = free_port();
    let mut env = coffee_env(port, db.url(), &unique_key_prefix(), "http://127.0.0.1:1");
    override_env(&mut env, overrides.iter().map(|(k, v)| (*k, (*v).to_owned())));
    start_coffee(port, &env).await.expect("coffee serve starts")
}

fn port_of(server: &coffee_e2e::Process) -> u16 {
    server
        .base_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// 50 logins whose bodies stall halfway: each is answered `408` with a
/// problem body once `HTTP_REQUEST_TIMEOUT_MS` has passed, and its
/// connection closed; none stays open. (Before, all stayed open.)
#[tokio::test]
async fn stalled_bodies_are_answered_408_and_closed() {
    let db = TestDatabase::create().await;
    let server = instance(&db, &[("HTTP_REQUEST_TIMEOUT_MS", "1000")]).await;
    let port = port_of(&server);
    let mut sockets = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        stream
            .write_all(
                b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n{\"email\":",
            )
            .await
            .expect("partial request");
        sockets.push(stream);
    }
    let started = Instant::now();
    for stream in &mut sockets {
        let (status, head, body) = read_response(stream, Duration::from_secs(5)).await.expect("an answer");
        assert_eq!(status, 408, "{head}");
        assert!(head.to_ascii_lowercase().contains("application/problem+json"), "{head}");
        let problem: serde_json::Value = serde_json::from_str(&body).expect("problem body");
        assert_eq!(problem["code"], "REQUEST_TIMEOUT");
        assert!(
            closed_within(stream, Duration::from_secs(2)).await,
            "the connection stays open"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

/// An idle keep-alive connection outlives a balancer's idle timeout: after
/// 20 s of silence it still serves the next request. (actix's default, 5 s,
/// closed it under the balancer.)
#[tokio::test]
async fn an_idle_connection_is_kept_longer_than_a_balancer_keeps_it() {
    let db = TestDatabase::create().await;
    let server = instance(&db, &[]).await;
    let mut stream = TcpStream::connect(("127.0.0.1", port_of(&server)))
        .await
        .expect("connect");
    let request = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(request).await.expect("first request");
    assert_eq!(
        read_response(&mut stream, Duration::from_secs(5)).await.map(|r| r.0),
        Some(200)
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    stream.write_all(request).await.expect("second request");
    assert_eq!(
        read_response(&mut stream, Duration::from_secs(5)).await.map(|r| r.0),
        Some(200),
        "the idle connection was closed"
    );
}

/// Idle keep-alive connections do not hold a shutdown: a stop takes the
/// drain and the in-flight requests, not the keep-alive time.
#[tokio::test]
async fn idle_connections_do_not_hold_a_shutdown() {
    let db = TestDatabase::create().await;
    let mut server = instance(&db, &[("SHUTDOWN_DRAIN_SECS", "1"), ("SHUTDOWN_TIMEOUT_SECS", "30")]).await;
    let mut idle = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(("127.0.0.1", port_of(&server)))
            .await
            .expect("connect");
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
        assert_eq!(
            read_response(&mut stream, Duration::from_secs(5)).await.map(|r| r.0),
            Some(200)
        );
        idle.push(stream);
    }
    let signalled = Instant::now();
    server.signal("TERM").expect("SIGTERM");
    let status = server.wait_exit(Duration::from_secs(40)).await.expect("exits");
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "the stop waited for idle connections: {:?}",
        signalled.elapsed()
    );
}

/// Every request's headers are timed, not only a connection's first: a
/// client that trickles a later request's headers on a keep-alive
/// connection is cut off after `HTTP_REQUEST_TIMEOUT_MS`, as is one that
/// trickles a first request's (actix answers that one `408` itself).
#[tokio::test]
async fn stalled_headers_are_cut_off_on_every_request() {
    let db = TestDatabase::create().await;
    let server = instance(&db, &[("HTTP_REQUEST_TIMEOUT_MS", "1000")]).await;
    let port = port_of(&server);

    let mut later = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    later
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("first request");
    assert_eq!(
        read_response(&mut later, Duration::from_secs(5)).await.map(|r| r.0),
        Some(200)
    );
    let mut first = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    first
        .write_all(b"GET /health/live HTTP/1.1\r\nHo")
        .await
        .expect("partial");
    later
        .write_all(b"GET /health/live HTTP/1.1\r\nHo")
        .await
        .expect("partial");
    let started = Instant::now();

    assert!(
        closed_within(&mut later, Duration::from_secs(5)).await,
        "the later request's trickle stays open"
    );
    let answer = read_response(&mut first, Duration::from_secs(5)).await;
    assert_eq!(
        answer.map(|r| r.0),
        Some(408),
        "actix's own answer to slow first headers"
    );
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}
