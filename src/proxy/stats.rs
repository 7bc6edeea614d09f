//! What the proxy measures about itself for `/metrics` (issue 16), kept to a few atomic
//! adds per request: keygate's added time per request, as a histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The histogram's bucket bounds, in microseconds (`le`).
pub const BUCKETS_US: [u64; 12] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];

/// A histogram of durations with fixed buckets (cumulative when read).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// A histogram as read: cumulative counts per bucket bound, count, sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// `(le in microseconds, observations at or below it)`, cumulative.
    pub buckets: Vec<(u64, u64)>,
    /// Every observation.
    pub count: u64,
    /// Their sum, in microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BUCKETS_US.iter().position(|&le| us <= le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The histogram now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let buckets = BUCKETS_US
            .iter()
            .zip(&self.buckets)
            .map(|(&le, n)| {
                total += n.load(Ordering::Relaxed);
                (le, total)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: self.count.load(Ordering::Relaxed),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// The proxy's own measurements.
#[derive(Debug, Default)]
pub struct Stats {
    /// From an intercepted request's head in to its head out to the upstream (with any
    /// body keygate had to read first: a SigV4 hash, a body swap that keeps the length).
    pub request_head: Histogram,
    /// From the upstream's response head in to the head out to the client.
    pub response_head: Histogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_sum_is_kept() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_secs(5));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.sum_us, 5_000_310);
        assert_eq!(s.buckets[0], (25, 1));
        assert_eq!(s.buckets[4], (500, 2));
        assert_eq!(
            s.buckets.last(),
            Some(&(1_000_000, 2)),
            "5 s is only in +Inf"
        );
    }
}
