//! Shared pieces of the load generators: latency statistics and a client.

use std::time::Duration;

/// Latency samples and their percentiles.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples: Vec<Duration>,
}

impl Latencies {
    pub fn push(&mut self, sample: Duration) {
        self.samples.push(sample);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The `p`-th percentile (nearest rank), in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
        sorted[rank.min(sorted.len()) - 1].as_secs_f64() * 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.samples.iter().max().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        for ms in 1..=100 {
            l.push(Duration::from_millis(ms));
        }
        assert_eq!(l.percentile_ms(50.0), 50.0);
        assert_eq!(l.percentile_ms(99.0), 99.0);
        assert_eq!(l.percentile_ms(100.0), 100.0);
        assert_eq!(l.max_ms(), 100.0);
    }
}

/// What a fixed-duration load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub latencies: Latencies,
    pub errors: u64,
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.latencies.len(),
            "errors": self.errors,
            "seconds": self.elapsed.as_secs_f64(),
            "perSecond": self.throughput(),
            "p50Ms": self.latencies.percentile_ms(50.0),
            "p99Ms": self.latencies.percentile_ms(99.0),
            "p999Ms": self.latencies.percentile_ms(99.9),
            "maxMs": self.latencies.max_ms(),
        })
    }
}

/// Runs `concurrency` closed-loop clients for `duration`; client `c` sends
/// its `n`-th request with `request(c, n)`. Successful requests are timed;
/// failed ones counted.
pub async fn run_load<F, Fut>(concurrency: usize, duration: Duration, request: F) -> LoadResult
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let request = std::sync::Arc::new(request);
    let started = std::time::Instant::now();
    let deadline = started + duration;
    let clients: Vec<_> = (0..concurrency)
        .map(|c| {
            let request = std::sync::Arc::clone(&request);
            tokio::spawn(async move {
                let mut latencies = Latencies::default();
                let mut errors = 0u64;
                let mut n = 0u64;
                while std::time::Instant::now() < deadline {
                    let sent = std::time::Instant::now();
                    match request(c, n).await {
                        Ok(()) => latencies.push(sent.elapsed()),
                        Err(_) => errors += 1,
                    }
                    n += 1;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut result = LoadResult {
        latencies: Latencies::default(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for client in clients {
        if let Ok((latencies, errors)) = client.await {
            result.latencies.extend(latencies);
            result.errors += errors;
        }
    }
    result.elapsed = started.elapsed();
    result
}

/// Reads `name` from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The password of every user the load generators create.
pub const PASSWORD: &str = "correct horse battery staple";

/// Signs `email` up on the service at `base`, logs in and charges `fund`
/// points (1,000,000 per request, the most one charge may add); returns the
/// user's id and access token.
pub async fn funded_user(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    fund: i64,
) -> anyhow::Result<(String, String)> {
    let created = client
        .post(format!("{base}/auth/signup"))
        .json(&serde_json::json!({"email": email, "password": PASSWORD, "name": "Load"}))
        .send()
        .await?;
    anyhow::ensure!(created.status() == 201, "signup answered {}", created.status());
    let created: serde_json::Value = created.json().await?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let pair: serde_json::Value = client
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
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
            .json(&serde_json::json!({ "amount": amount }))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 200, "charge answered {}", response.status());
        left -= amount;
        n += 1;
    }
    Ok((id, token))
}
