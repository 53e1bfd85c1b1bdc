//! Does a login storm slow down other routes on the same instance?
//!
//! Against a running `coffee serve` at `BASE_URL`: signs up `STORM_SIZE`
//! users, measures `GET /menus` latency with `MENU_CLIENTS` sequential
//! clients while nothing else runs (baseline), then again while `ROUNDS`
//! storms of `STORM_SIZE` concurrent correct-password logins run back to
//! back. Prints one JSON object with the figures.

// The figures go to stdout: that is this program's output channel.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base: String = env("BASE_URL", "http://127.0.0.1:8080".to_owned());
    let storm_size: usize = env("STORM_SIZE", 20);
    let rounds: usize = env("ROUNDS", 10);
    let menu_clients: usize = env("MENU_CLIENTS", 2);
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

    let figures = json!({
        "stormSize": storm_size,
        "rounds": rounds,
        "menuClients": menu_clients,
        "baselineMenus": {"requests": baseline.len(), "p50Ms": baseline.percentile_ms(50.0), "p99Ms": baseline.percentile_ms(99.0), "maxMs": baseline.max_ms()},
        "menusDuringStorm": {"requests": during.len(), "p50Ms": during.percentile_ms(50.0), "p99Ms": during.percentile_ms(99.0), "maxMs": during.max_ms()},
        "logins": {"requests": logins.len(), "perSecond": logins.len() as f64 / storm_secs, "p50Ms": logins.percentile_ms(50.0), "p99Ms": logins.percentile_ms(99.0)},
    });
    println!("{figures}");
    Ok(())
}
