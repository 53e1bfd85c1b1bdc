//! Creates `USERS` users on the `coffee serve` at `BASE_URL`, each signed up,
//! logged in and charged `FUND` points, and prints one `id token email` line
//! per user: the input of `bench/wrk/load.lua`.

// The users go to stdout: that is this program's output channel.
#![allow(clippy::print_stdout)]

use coffee_bench::{env_or, funded_user};
use futures_util::StreamExt as _;

async fn user(client: &reqwest::Client, base: &str, run: &str, i: usize, fund: i64) -> anyhow::Result<String> {
    let email = format!("wrk-{run}-{i}@example.com");
    let (id, token) = funded_user(client, base, &email, fund).await?;
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
