//! `GET /menus` over one connection per server, the servers taken in turn:
//! a closed loop (each request sent when the last answer has been read)
//! that sends `BLOCK` requests to one server, then `BLOCK` to the next, and
//! so on for `RUN_SECONDS`, the order rotated every cycle (A B C, B C A, ...).
//!
//! It measures what a one-connection `wrk` run measures (requests per second
//! over one keep-alive connection, one request at a time), but the servers
//! are interleaved every few milliseconds instead of every few seconds, so a
//! drift of the machine's speed weighs on all of them alike, and a 20 s run's
//! ratio of two servers repeats to about half a percent where ratios of 2 s
//! runs spread by a fifth (see docs/DECISIONS.md, "One connection to a
//! hundredth").
//!
//! `TARGETS` is `label=host:port,...`; every target must answer
//! `PATH_TO_GET` (`/menus`) with `200`, the first time with the same body as
//! the first target, and then with as many bytes. Prints one JSON object: per target its requests,
//! seconds spent waiting on it, requests per second and latency percentiles,
//! and for every target after the first its ratio to the first (requests per
//! second over the first's) for the whole run and for each of `SEGMENTS`
//! consecutive slices of it (the spread).

// The figures go to stdout: that is this program's output channel.
#![allow(clippy::print_stdout)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use coffee_bench::{Latencies, env_or};

/// One server and its kept connection.
struct Target {
    label: String,
    stream: TcpStream,
    request: Vec<u8>,
    /// The answer being read (head and body); bytes past its end are an
    /// error, as a closed loop never has any.
    buffer: Vec<u8>,
}

impl Target {
    fn connect(label: &str, addr: &str, path: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connect {label} at {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self {
            label: label.to_owned(),
            stream,
            request: format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes(),
            buffer: Vec::with_capacity(64 * 1024),
        })
    }

    /// Sends the request and reads the whole answer; returns its body.
    fn get(&mut self) -> anyhow::Result<&[u8]> {
        self.stream.write_all(&self.request)?;
        self.buffer.clear();
        let mut chunk = [0u8; 16 * 1024];
        let (head_end, body_len) = loop {
            if let Some(at) = head_end(&self.buffer) {
                let head = std::str::from_utf8(&self.buffer[..at])?;
                ensure!(
                    head.starts_with("HTTP/1.1 200 "),
                    "{}: {}",
                    self.label,
                    head.lines().next().unwrap_or_default()
                );
                let len = head
                    .lines()
                    .filter_map(|line| line.split_once(':'))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                    .context("no content-length")?
                    .1
                    .trim()
                    .parse::<usize>()?;
                break (at + 4, len);
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                bail!("{}: the connection closed", self.label);
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        };
        while self.buffer.len() < head_end + body_len {
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                bail!("{}: the connection closed inside a body", self.label);
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
        ensure!(
            self.buffer.len() == head_end + body_len,
            "{}: bytes after the answer",
            self.label
        );
        Ok(&self.buffer[head_end..])
    }
}

fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n")
}

/// What was measured of one target in one slice of the run.
#[derive(Default, Clone)]
struct Tally {
    requests: u64,
    waited: Duration,
}

fn main() -> anyhow::Result<()> {
    let targets: String = std::env::var("TARGETS").context("TARGETS=label=host:port,...")?;
    let path: String = env_or("PATH_TO_GET", "/menus".to_owned());
    let seconds: f64 = env_or("RUN_SECONDS", 30.0);
    let warmup: f64 = env_or("WARMUP_SECONDS", 2.0);
    let block: u64 = env_or("BLOCK", 50);
    let segments: usize = env_or("SEGMENTS", 10);
    let mut targets = targets
        .split(',')
        .map(|t| {
            let (label, addr) = t.split_once('=').context("label=host:port")?;
            Target::connect(label, addr, &path)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure!(targets.len() >= 2, "at least two targets");
    let expected = targets[0].get()?.to_vec();
    for target in &mut targets[1..] {
        ensure!(
            target.get()? == expected.as_slice(),
            "{}: a different body",
            target.label
        );
    }

    let run = |targets: &mut [Target], seconds: f64, tallies: &mut Vec<Vec<Tally>>, latencies: &mut [Latencies]| {
        let started = Instant::now();
        let length = Duration::from_secs_f64(seconds);
        let mut cycle = 0usize;
        while started.elapsed() < length {
            let segment = (started.elapsed().as_secs_f64() / seconds * segments as f64) as usize;
            let segment = segment.min(segments - 1);
            // Rotated each cycle (A B C, B C A, C A B, ...): every block
            // follows another server's, and each server takes each place
            // in turn (reversing instead, A B C C B A, would give the ends
            // two blocks in a row and the middle none).
            let n = targets.len();
            for i in (0..n).map(|k| (k + cycle) % n) {
                let target = &mut targets[i];
                let tally = &mut tallies[segment][i];
                for _ in 0..block {
                    let sent = Instant::now();
                    let body = target.get()?;
                    let took = sent.elapsed();
                    ensure!(
                        body.len() == expected.len(),
                        "{}: a body of another length",
                        target.label
                    );
                    tally.requests += 1;
                    tally.waited += took;
                    latencies[i].push(took);
                }
            }
            cycle += 1;
        }
        anyhow::Ok(())
    };
    let fresh = |n: usize| vec![vec![Tally::default(); n]; segments];
    let n = targets.len();
    run(&mut targets, warmup, &mut fresh(n), &mut vec![Latencies::default(); n])?;
    let mut tallies = fresh(n);
    let mut latencies = vec![Latencies::default(); n];
    run(&mut targets, seconds, &mut tallies, &mut latencies)?;

    let per_second = |t: &Tally| t.requests as f64 / t.waited.as_secs_f64();
    let mut totals = vec![Tally::default(); n];
    for segment in &tallies {
        for (total, t) in totals.iter_mut().zip(segment) {
            total.requests += t.requests;
            total.waited += t.waited;
        }
    }
    let mut out = serde_json::Map::new();
    out.insert("block".into(), block.into());
    out.insert("seconds".into(), seconds.into());
    for (i, target) in targets.iter().enumerate() {
        let mut entry = serde_json::json!({
            "requests": totals[i].requests,
            "waitedSecs": totals[i].waited.as_secs_f64(),
            "perSecond": per_second(&totals[i]),
            "p50Us": latencies[i].percentile_ms(50.0) * 1000.0,
            "p99Us": latencies[i].percentile_ms(99.0) * 1000.0,
        });
        if i > 0 {
            let ratio = per_second(&totals[i]) / per_second(&totals[0]);
            let slices: Vec<f64> = tallies
                .iter()
                .filter(|s| s[0].requests > 0 && s[i].requests > 0)
                .map(|s| per_second(&s[i]) / per_second(&s[0]))
                .collect();
            entry["ratio"] = ratio.into();
            entry["segmentRatios"] = slices.into();
        }
        out.insert(target.label.clone(), entry);
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
