//! `GET /menus/popular` (or `ROUTE`) latency at `CLIENTS` concurrent clients for `SECONDS`
//! against a running `coffee serve` at `BASE_URL`. Prints one JSON object.

// The figures go to stdout: that is this program's output channel.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use coffee_bench::{env_or, run_load};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base: String = env_or("BASE_URL", "http://127.0.0.1:8080".to_owned());
    let clients: usize = env_or("CLIENTS", 32);
    let seconds: u64 = env_or("SECONDS", 20);
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let route: String = env_or("ROUTE", "/menus/popular".to_owned());
    let url = format!("{base}{route}");

    let sample: serde_json::Value = http.get(&url).send().await?.json().await?;
    let run = |duration| {
        let (http, url) = (http.clone(), url.clone());
        run_load(clients, duration, move |_, _| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let response = http.get(&url).send().await?;
                anyhow::ensure!(response.status() == 200, "popular answered {}", response.status());
                response.bytes().await?;
                Ok(())
            }
        })
    };
    run(Duration::from_secs(3)).await;
    let result = run(Duration::from_secs(seconds)).await;
    let mut figures = result.to_json();
    figures["clients"] = serde_json::json!(clients);
    figures["ranking"] = sample;
    println!("{figures}");
    Ok(())
}
