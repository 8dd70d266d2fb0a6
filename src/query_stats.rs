//! Lock-free query statistics: a count and a latency histogram kept in atomic
//! counters, updated by every search and read by [`Database::stats`](crate::Database::stats).
//!
//! The histogram is log-linear, like HdrHistogram at two significant bits:
//! each power of two of nanoseconds is split into four equal buckets, so a
//! reported quantile is the upper edge of its bucket, at most 25 % above the
//! true value. Recording is two relaxed `fetch_add`s; there is no lock and no
//! allocation, so readers on many threads never wait on each other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two.
const SUB: usize = 4;
/// Powers of two covered: up to 2^40 ns (about 18 minutes).
const OCTAVES: usize = 40;
const BUCKETS: usize = OCTAVES * SUB;

/// Query count and latency histogram shared by every snapshot of a database.
///
/// Public only for `benches/search.rs`, which measures what recording costs.
#[doc(hidden)]
#[derive(Debug)]
pub struct QueryStats {
    count: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for QueryStats {
    fn default() -> Self {
        QueryStats {
            count: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The bucket of a latency of `ns` nanoseconds.
fn bucket(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let octave = 63 - ns.leading_zeros() as usize; // ns in [2^octave, 2^(octave+1))
    let sub = ((ns >> (octave - 2)) & (SUB as u64 - 1)) as usize;
    ((octave - 1) * SUB + sub).min(BUCKETS - 1)
}

/// The largest latency, in nanoseconds, that falls in bucket `b`.
fn upper_edge(b: usize) -> u64 {
    if b < SUB {
        return b as u64;
    }
    let octave = b / SUB + 1;
    let sub = (b % SUB) as u64;
    ((SUB as u64 + sub + 1) << (octave - 2)) - 1
}

impl QueryStats {
    /// Counts one query that took `took`.
    #[inline]
    pub fn record(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.buckets[bucket(ns)].fetch_add(1, Ordering::Relaxed);
    }

    /// Queries counted so far.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The latency below which a share `q` (0..=1) of queries fell, or `None`
    /// before the first query.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(upper_edge(b)));
            }
        }
        Some(Duration::from_nanos(upper_edge(BUCKETS - 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_latency_falls_in_a_bucket_whose_upper_edge_is_within_a_quarter_above_it() {
        let mut ns = 1u64;
        while ns < 1 << 39 {
            let b = bucket(ns);
            let edge = upper_edge(b);
            assert!(edge >= ns, "{ns} ns: bucket {b} ends at {edge}");
            assert!(
                edge as f64 <= ns as f64 * 1.25 + 1.0,
                "{ns} ns: edge {edge}"
            );
            if b > 0 {
                assert!(upper_edge(b - 1) < ns, "{ns} ns fits an earlier bucket");
            }
            ns = ns * 9 / 8 + 1;
        }
    }

    #[test]
    fn buckets_are_monotonic_and_latencies_past_the_range_land_in_the_last() {
        let mut last = 0;
        for ns in 0..100_000 {
            let b = bucket(ns);
            assert!(b >= last);
            last = b;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_come_from_the_recorded_latencies() {
        let stats = QueryStats::default();
        assert_eq!(stats.quantile(0.5), None);
        for us in 1..=100 {
            stats.record(Duration::from_micros(us));
        }
        assert_eq!(stats.count(), 100);
        let p50 = stats.quantile(0.5).unwrap();
        let p99 = stats.quantile(0.99).unwrap();
        assert!(
            p50 >= Duration::from_micros(50) && p50 <= Duration::from_micros(63),
            "{p50:?}"
        );
        assert!(
            p99 >= Duration::from_micros(99) && p99 <= Duration::from_micros(124),
            "{p99:?}"
        );
    }
}
