//! Creates `USERS` users on the `coffee serve` at `BASE_URL`, each signed up,
//! logged in and charged `FUND` points, and prints one `id token email` line
//! per user: the input of `bench/wrk/load.lua`.

// The users go to stdout: that is this program's output channel.
#![allow(clippy::print_stdout)]

use coffee_bench::env_or;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

async fn user(client: &reqwest::Client, base: &str, run: &str, i: usize, fund: i64) -> anyhow::Result<String> {
    let email = format!("wrk-{run}-{i}@example.com");
    let created = client
        .post(format!("{base}/auth/signup"))
        .json(&json!({"email": email, "password": PASSWORD, "name": "Load"}))
        .send()
        .await?;
    anyhow::ensure!(created.status() == 201, "signup answered {}", created.status());
    let created: Value = created.json().await?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let pair: Value = client
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let token = pair["accessToken"].as_str().unwrap_or_default().to_owned();
    let mut left = fund;
    let mut n = 0;
    while left > 0 {
        let amount = left.min(1_000_000);
        let response = client
            .post(format!("{base}/users/{id}/points/charge"))
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("fund-{n}"))
            .json(&json!({ "amount": amount }))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 200, "charge answered {}", response.status());
        left -= amount;
        n += 1;
    }
    Ok(format!("{id} {token} {email}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base: String = env_or("BASE_URL", "http://127.0.0.1:8080".to_owned());
    let users: usize = env_or("USERS", 256);
    let fund: i64 = env_or("FUND", 2_000_000);
    let client = reqwest::Client::new();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let lines: Vec<anyhow::Result<String>> = futures_util::stream::iter(0..users)
        .map(|i| user(&client, &base, &run, i, fund))
        .buffered(8)
        .collect()
        .await;
    for line in lines {
        println!("{}", line?);
    }
    Ok(())
}
