//! `POST /orders` throughput: 64 clients all ordering one menu against 64
//! clients ordering 20 different menus (the hot-row check).
//!
//! Against a running `coffee serve` at `BASE_URL` with at least 20 menus:
//! creates `CLIENTS` funded users, then runs each phase for `SECONDS` with a
//! fresh idempotency key per request. Prints one JSON object.

// The figures go to stdout: that is this program's output channel.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use coffee_bench::{env_or, funded_user, run_load};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base: String = env_or("BASE_URL", "http://127.0.0.1:8080".to_owned());
    let clients: usize = env_or("CLIENTS", 64);
    let seconds: u64 = env_or("SECONDS", 15);
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;

    let menus: Vec<Value> = http.get(format!("{base}/menus")).send().await?.json().await?;
    let menu_ids: Vec<String> = menus
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect();
    anyhow::ensure!(menu_ids.len() >= 20, "need at least 20 menus, found {}", menu_ids.len());
    let mut tokens = Vec::new();
    for i in 0..clients {
        let email = format!("load-{i}-{}@example.com", uuid::Uuid::new_v4().simple());
        tokens.push(funded_user(&http, &base, &email, 20_000_000).await?.1);
    }
    let tokens = Arc::new(tokens);
    let menu_ids = Arc::new(menu_ids);

    let mut phases = serde_json::Map::new();
    for (name, spread) in [
        ("warmup", 20usize),
        ("oneMenu", 1),
        ("twentyMenus", 20),
        ("oneMenuAgain", 1),
    ] {
        let (http, base, tokens, menu_ids) = (http.clone(), base.clone(), tokens.clone(), menu_ids.clone());
        let run = uuid::Uuid::new_v4().simple().to_string();
        let duration = Duration::from_secs(if name == "warmup" { 3 } else { seconds });
        let result = run_load(clients, duration, move |c, n| {
            let (http, base, tokens, menu_ids, run) = (
                http.clone(),
                base.clone(),
                tokens.clone(),
                menu_ids.clone(),
                run.clone(),
            );
            async move {
                let menu = &menu_ids[c % spread];
                let response = http
                    .post(format!("{base}/orders"))
                    .bearer_auth(&tokens[c])
                    .header("Idempotency-Key", format!("{run}-{c}-{n}"))
                    .json(&json!({"items": [{"menuId": menu, "quantity": 1}]}))
                    .send()
                    .await?;
                anyhow::ensure!(response.status() == 201, "order answered {}", response.status());
                response.bytes().await?;
                Ok(())
            }
        })
        .await;
        phases.insert(name.to_owned(), result.to_json());
    }
    let one = phases["oneMenu"]["perSecond"].as_f64().unwrap_or(0.0)
        + phases["oneMenuAgain"]["perSecond"].as_f64().unwrap_or(0.0);
    let twenty = phases["twentyMenus"]["perSecond"].as_f64().unwrap_or(f64::NAN);
    phases.insert("clients".to_owned(), json!(clients));
    phases.insert("ratioOneToTwenty".to_owned(), json!(one / 2.0 / twenty));
    println!("{}", Value::Object(phases));
    Ok(())
}
