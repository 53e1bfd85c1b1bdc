//! Does a login storm slow down other routes on the same instance?
//!
//! Against a running `coffee serve` at `BASE_URL`: signs up `STORM_SIZE`
//! users, measures `GET /menus` latency with `MENU_CLIENTS` sequential
//! clients while nothing else runs (baseline), then again while `ROUNDS`
//! storms of `STORM_SIZE` concurrent correct-password logins run back to
//! back.
//!
//! Then issue 12's two floods, while `GET /menus` is read as before and the
//! resident memory of the server (`COFFEE_PID`) is sampled every 20 ms:
//!
//! - `FLOOD_ROUNDS` bursts of `FLOOD_SIZE` concurrent logins of as many
//!   distinct users, far past the hashing queue;
//! - for `HANGUP_SECS`, `HANGUP_CLIENTS` clients that each send a login of an
//!   unknown email and hang up 2 to 12 ms later, once its hash has started,
//!   over and over: the clients that leave hashes running without a caller.
//!
//! Prints one JSON object with the figures.

// The figures go to stdout: that is this program's output channel.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coffee_bench::Latencies;
use serde_json::json;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn menus_while(client: reqwest::Client, url: String, running: Arc<AtomicBool>) -> anyhow::Result<Latencies> {
    let mut latencies = Latencies::default();
    while running.load(Ordering::Relaxed) {
        let started = Instant::now();
        let response = client.get(&url).send().await?;
        anyhow::ensure!(
            response.status().is_success(),
            "GET /menus answered {}",
            response.status()
        );
        response.bytes().await?;
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}

/// Runs `clients` menu readers until `work` completes; returns their latencies.
async fn measure_menus<F: std::future::Future<Output = anyhow::Result<Latencies>>>(
    client: &reqwest::Client,
    base: &str,
    clients: usize,
    work: F,
) -> anyhow::Result<(Latencies, Latencies)> {
    let running = Arc::new(AtomicBool::new(true));
    let readers: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(menus_while(client.clone(), format!("{base}/menus"), running.clone())))
        .collect();
    let work_latencies = work.await?;
    running.store(false, Ordering::Relaxed);
    let mut menus = Latencies::default();
    for reader in readers {
        menus.extend(reader.await??);
    }
    Ok((menus, work_latencies))
}

/// Resident memory of `pid` in KiB (`VmRSS`), 0 when it cannot be read.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Samples the resident memory of `pid` every 20 ms while `running`;
/// returns the largest sample.
async fn peak_rss_while(pid: u32, running: Arc<AtomicBool>) -> u64 {
    let mut peak = 0;
    while running.load(Ordering::Relaxed) {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    peak
}

/// Signs up `count` users with `password`, `parallel` at a time (a `503` of
/// the hashing queue is retried).
async fn sign_up(
    client: &reqwest::Client,
    base: &str,
    password: &str,
    count: usize,
    parallel: usize,
) -> anyhow::Result<Vec<String>> {
    let emails: Vec<String> = (0..count)
        .map(|_| format!("storm-{}@example.com", uuid::Uuid::new_v4().simple()))
        .collect();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..parallel)
        .map(|_| {
            let (client, emails, next) = (client.clone(), emails.clone(), next.clone());
            let (url, password) = (format!("{base}/auth/signup"), password.to_owned());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(email) = emails.get(i) else {
                        return anyhow::Ok(());
                    };
                    loop {
                        let response = client
                            .post(&url)
                            .json(&json!({"email": email, "password": password, "name": "Storm"}))
                            .send()
                            .await?;
                        match response.status().as_u16() {
                            201 => break,
                            503 => tokio::time::sleep(Duration::from_millis(100)).await,
                            other => anyhow::bail!("signup answered {other}"),
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(emails)
}

/// What one flood's logins got.
#[derive(Debug, Default)]
struct FloodOutcome {
    ok: Latencies,
    shed: Latencies,
    other: u64,
}

/// One burst: every email logs in at once.
async fn flood(
    client: &reqwest::Client,
    base: &str,
    emails: &[String],
    password: &str,
) -> anyhow::Result<FloodOutcome> {
    let logins: Vec<_> = emails
        .iter()
        .map(|email| {
            let request = client
                .post(format!("{base}/auth/login"))
                .json(&json!({"email": email, "password": password}));
            tokio::spawn(async move {
                let started = Instant::now();
                let response = request.send().await?;
                let status = response.status().as_u16();
                response.bytes().await?;
                anyhow::Ok((status, started.elapsed()))
            })
        })
        .collect();
    let mut outcome = FloodOutcome::default();
    for login in logins {
        match login.await?? {
            (200, took) => outcome.ok.push(took),
            (503, took) => outcome.shed.push(took),
            _ => outcome.other += 1,
        }
    }
    Ok(outcome)
}

/// `clients` loops, for `duration`, of: a login of a new unknown email (a
/// full-cost dummy verification, never throttled), abandoned 2 to 12 ms
/// later, when its hash has usually started. Returns how many were sent.
async fn hang_ups(client: &reqwest::Client, base: &str, clients: usize, duration: Duration) -> anyhow::Result<u64> {
    let sent = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url, sent) = (client.clone(), format!("{base}/auth/login"), sent.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let email = format!("gone-{}@example.com", uuid::Uuid::new_v4().simple());
                    let after = Duration::from_millis(2 + (uuid::Uuid::new_v4().as_u128() % 11) as u64);
                    let request = client
                        .post(&url)
                        .json(&json!({"email": email, "password": "whatever it is"}));
                    // Dropping the unfinished request closes its connection.
                    let _ = tokio::time::timeout(after, request.send()).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    Ok(sent.load(Ordering::Relaxed))
}

/// Runs `work` while `GET /menus` is read and the server's memory sampled;
/// returns the menu latencies, the peak and `work`'s output.
async fn with_menus_and_memory<T, F: std::future::Future<Output = anyhow::Result<T>>>(
    client: &reqwest::Client,
    base: &str,
    menu_clients: usize,
    pid: u32,
    work: F,
) -> anyhow::Result<(Latencies, u64, T)> {
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn(peak_rss_while(pid, sampling.clone()));
    let mut output = None;
    let (menus, _) = measure_menus(client, base, menu_clients, async {
        output = Some(work.await?);
        Ok(Latencies::default())
    })
    .await?;
    sampling.store(false, Ordering::Relaxed);
    let peak = sampler.await?;
    let output = output.ok_or_else(|| anyhow::anyhow!("the work did not finish"))?;
    Ok((menus, peak, output))
}

fn summary(latencies: &Latencies) -> serde_json::Value {
    json!({"count": latencies.len(), "p50Ms": latencies.percentile_ms(50.0), "p99Ms": latencies.percentile_ms(99.0), "maxMs": latencies.max_ms()})
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base: String = env("BASE_URL", "http://127.0.0.1:8080".to_owned());
    let storm_size: usize = env("STORM_SIZE", 20);
    let rounds: usize = env("ROUNDS", 10);
    let menu_clients: usize = env("MENU_CLIENTS", 2);
    let flood_size: usize = env("FLOOD_SIZE", 500);
    let flood_rounds: usize = env("FLOOD_ROUNDS", 3);
    let hangup_clients: usize = env("HANGUP_CLIENTS", 16);
    let hangup_secs: u64 = env("HANGUP_SECS", 5);
    let pid: u32 = env("COFFEE_PID", 0);
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let password = "correct horse battery staple";

    let mut emails = Vec::new();
    for _ in 0..storm_size {
        let email = format!("storm-{}@example.com", uuid::Uuid::new_v4().simple());
        let response = client
            .post(format!("{base}/auth/signup"))
            .json(&json!({"email": email, "password": password, "name": "Storm"}))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 201, "signup answered {}", response.status());
        emails.push(email);
    }

    // Warm-up, then the baseline: menus alone for as long as the storm will take.
    let (_, _) = measure_menus(&client, &base, menu_clients, async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(Latencies::default())
    })
    .await?;
    let (baseline, _) = measure_menus(&client, &base, menu_clients, async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(Latencies::default())
    })
    .await?;

    let storm_started = Instant::now();
    let (during, logins) = measure_menus(&client, &base, menu_clients, async {
        let mut logins = Latencies::default();
        for _ in 0..rounds {
            let storm: Vec<_> = emails
                .iter()
                .map(|email| {
                    let client = client.clone();
                    let url = format!("{base}/auth/login");
                    let body = json!({"email": email, "password": password});
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let response = client.post(url).json(&body).send().await?;
                        anyhow::ensure!(response.status() == 200, "login answered {}", response.status());
                        response.bytes().await?;
                        Ok(started.elapsed())
                    })
                })
                .collect();
            for login in storm {
                logins.push(login.await??);
            }
        }
        Ok(logins)
    })
    .await?;
    let storm_secs = storm_started.elapsed().as_secs_f64();

    // The flood: many distinct accounts, so the throttle (5 attempts per
    // account) plays no part; what turns logins away is the hashing queue.
    let flood_emails = sign_up(&client, &base, password, flood_size, 8).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(pid);
    let mut rss_after_rounds = Vec::new();
    let (flood_menus, rss_peak, outcome) = with_menus_and_memory(&client, &base, menu_clients, pid, async {
        let mut outcome = FloodOutcome::default();
        for _ in 0..flood_rounds {
            let round = flood(&client, &base, &flood_emails, password).await?;
            outcome.ok.extend(round.ok);
            outcome.shed.extend(round.shed);
            outcome.other += round.other;
            tokio::time::sleep(Duration::from_secs(2)).await;
            rss_after_rounds.push(rss_kib(pid));
        }
        Ok(outcome)
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(pid);

    let hangup_before = rss_kib(pid);
    let hangup_started = Instant::now();
    let (hangup_menus, hangup_peak, hangup_sent) = with_menus_and_memory(&client, &base, menu_clients, pid, async {
        hang_ups(&client, &base, hangup_clients, Duration::from_secs(hangup_secs)).await
    })
    .await?;
    let hangup_took = hangup_started.elapsed().as_secs_f64();
    // The hashes of requests whose client has gone finish on their own; the
    // allocator keeps the last 19 MiB block for a few seconds more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hangup_after = rss_kib(pid);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let hangup_settled = rss_kib(pid);

    let figures = json!({
        "stormSize": storm_size,
        "rounds": rounds,
        "menuClients": menu_clients,
        "baselineMenus": {"requests": baseline.len(), "p50Ms": baseline.percentile_ms(50.0), "p99Ms": baseline.percentile_ms(99.0), "maxMs": baseline.max_ms()},
        "menusDuringStorm": {"requests": during.len(), "p50Ms": during.percentile_ms(50.0), "p99Ms": during.percentile_ms(99.0), "maxMs": during.max_ms()},
        "logins": {"requests": logins.len(), "perSecond": logins.len() as f64 / storm_secs, "p50Ms": logins.percentile_ms(50.0), "p99Ms": logins.percentile_ms(99.0)},
        "flood": {
            "size": flood_size,
            "rounds": flood_rounds,
            "menus": summary(&flood_menus),
            "ok": summary(&outcome.ok),
            "shed": summary(&outcome.shed),
            "other": outcome.other,
            "rssKib": {"before": rss_before, "peak": rss_peak, "after": rss_after, "afterEachRound": rss_after_rounds},
        },
        "hangUps": {
            "clients": hangup_clients,
            "seconds": hangup_took,
            "sent": hangup_sent,
            "menus": summary(&hangup_menus),
            "rssKib": {"before": hangup_before, "peak": hangup_peak, "after": hangup_after, "settled": hangup_settled},
        },
    });
    println!("{figures}");
    Ok(())
}
