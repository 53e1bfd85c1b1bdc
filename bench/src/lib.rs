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
