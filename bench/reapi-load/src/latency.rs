//! [`Latencies`]: a set of measured durations and their percentiles.
//!
//! Key decision: the percentile is the nearest-rank one on the sorted
//! samples, `round(p/100 * (n-1))`, exactly as `reapi_bench.py`'s `pct`, so
//! the two clients' p50/p99 mean the same thing.

use std::time::Duration;

/// Measured durations.
#[derive(Debug, Default)]
pub struct Latencies {
    samples: Vec<Duration>,
}

impl Latencies {
    /// Adds one sample.
    pub fn push(&mut self, sample: Duration) {
        self.samples.push(sample);
    }

    /// The samples, in the order they were added.
    pub fn into_samples(self) -> Vec<Duration> {
        self.samples
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// The p-th percentile (0..=100) in milliseconds; `None` with no samples.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let last = sorted.len() - 1;
        let rank = ((p / 100.0) * last as f64).round().clamp(0.0, last as f64) as usize;
        Some(sorted[rank].as_secs_f64() * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut l = Latencies::default();
        for ms in [5u64, 1, 4, 2, 3] {
            l.push(Duration::from_millis(ms));
        }
        assert_eq!(l.len(), 5);
        assert_eq!(l.percentile_ms(50.0), Some(3.0));
        assert_eq!(l.percentile_ms(0.0), Some(1.0));
        assert_eq!(l.percentile_ms(99.0), Some(5.0));
        assert_eq!(l.percentile_ms(100.0), Some(5.0));
    }

    #[test]
    fn no_samples_no_percentile() {
        assert_eq!(Latencies::default().percentile_ms(50.0), None);
    }
}
