//! A lock-free, log-linear latency histogram in microseconds (the HDR histogram idea with a
//! fixed precision): values below 256 µs are counted exactly; above, every power of two is
//! split into 128 equal buckets, so a reported percentile is at most 1/128 (0.8 %) above
//! the true value. The maximum is tracked exactly. Recording is a few atomic adds, so the
//! simulators' hot paths can record from any task without a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Values below `2^EXACT_BITS` µs get a bucket each.
const EXACT_BITS: u32 = 8;
/// Buckets per power of two above that (`2^(EXACT_BITS - 1)`).
const SUB_BUCKETS: u64 = 1 << (EXACT_BITS - 1);
/// Largest value recorded (larger ones are clamped): 2^36 µs, about 19 hours.
const MAX_VALUE: u64 = (1 << 36) - 1;
/// Number of buckets needed up to [`MAX_VALUE`].
const BUCKETS: usize = (1 << EXACT_BITS) + (36 - EXACT_BITS as usize) * SUB_BUCKETS as usize;

/// Bucket of a value (µs).
fn bucket_of(value: u64) -> usize {
    let v = value.min(MAX_VALUE);
    if v < (1 << EXACT_BITS) {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb + 1 - EXACT_BITS;
    let sub = (v >> shift) - SUB_BUCKETS;
    (1 << EXACT_BITS) + (shift as usize - 1) * SUB_BUCKETS as usize + sub as usize
}

/// Highest value (µs) that falls into bucket `index`.
fn bucket_high(index: usize) -> u64 {
    let exact = 1_usize << EXACT_BITS;
    if index < exact {
        return index as u64;
    }
    let rest = index - exact;
    let shift = (rest / SUB_BUCKETS as usize) as u32 + 1;
    let sub = (rest % SUB_BUCKETS as usize) as u64 + SUB_BUCKETS;
    ((sub + 1) << shift) - 1
}

/// Concurrent latency histogram (µs).
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count.load(Ordering::Relaxed))
            .field("max_us", &self.max.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    /// Records one value in microseconds.
    pub fn record_us(&self, us: u64) {
        let us = us.min(MAX_VALUE);
        if let Some(bucket) = self.buckets.get(bucket_of(us)) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(us, Ordering::Relaxed);
        self.max.fetch_max(us, Ordering::Relaxed);
    }

    /// Records one duration.
    pub fn record(&self, d: Duration) {
        self.record_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records one value in milliseconds.
    pub fn record_ms(&self, ms: u64) {
        self.record_us(ms.saturating_mul(1000));
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The value (µs) at quantile `q` (0–1): the smallest recorded bucket holding at least
    /// `ceil(q × count)` values, reported as the bucket's highest value but never above the
    /// exact maximum. `None` when empty.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).clamp(1, count);
        let max = self.max.load(Ordering::Relaxed);
        let mut seen = 0_u64;
        for (index, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(bucket_high(index).min(max));
            }
        }
        Some(max)
    }

    /// p50, p99, max and mean in milliseconds.
    pub fn summary(&self) -> LatencySummary {
        let count = self.count();
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count,
            p50_ms: self.quantile_us(0.50).map(ms),
            p99_ms: self.quantile_us(0.99).map(ms),
            max_ms: (count > 0).then(|| ms(self.max.load(Ordering::Relaxed))),
            mean_ms: (count > 0).then(|| ms(self.sum.load(Ordering::Relaxed)) / count as f64),
        }
    }
}

/// Percentiles of a latency distribution, in milliseconds (`None` when nothing was
/// measured).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Maximum (exact).
    pub max_ms: Option<f64>,
    /// Mean (exact).
    pub mean_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bounded() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(255), 255);
        assert_eq!(bucket_of(256), 256);
        assert_eq!(bucket_high(256), 257);
        assert_eq!(bucket_of(257), 256);
        assert_eq!(bucket_of(258), 257);
        assert_eq!(bucket_of(MAX_VALUE), BUCKETS - 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_high(BUCKETS - 1), MAX_VALUE);
        // Every bucket's high value maps back to it, and the next value to the next bucket.
        for index in 0..BUCKETS - 1 {
            let high = bucket_high(index);
            assert_eq!(bucket_of(high), index, "{index}");
            assert_eq!(bucket_of(high + 1), index + 1, "{index}");
        }
    }

    #[test]
    fn small_values_are_exact() {
        let h = Histogram::new();
        assert_eq!(h.quantile_us(0.5), None);
        assert_eq!(h.summary().p50_ms, None);
        for v in 1..=100 {
            h.record_us(v);
        }
        assert_eq!(h.quantile_us(0.5), Some(50));
        assert_eq!(h.quantile_us(0.99), Some(99));
        assert_eq!(h.quantile_us(1.0), Some(100));
        assert_eq!(h.quantile_us(0.0), Some(1));
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_ms, Some(0.05));
        assert_eq!(s.max_ms, Some(0.1));
        let mean = s.mean_ms.expect("mean");
        assert!((mean - 0.0505).abs() < 1e-12, "{mean}");
    }

    #[test]
    fn large_values_are_within_the_precision_and_never_above_the_max() {
        let h = Histogram::new();
        // 1 ms to 1 s in 1 ms steps.
        for ms in 1..=1000 {
            h.record(Duration::from_millis(ms));
        }
        for (q, exact) in [(0.5, 500_000_u64), (0.99, 990_000), (0.999, 999_000)] {
            let got = h.quantile_us(q).expect("value");
            assert!(got >= exact, "{q}: {got} < {exact}");
            assert!(
                got <= exact + exact / 128,
                "{q}: {got} too far above {exact}"
            );
        }
        assert_eq!(h.quantile_us(1.0), Some(1_000_000));
        let h = Histogram::new();
        h.record_us(1_000_001);
        assert_eq!(h.quantile_us(0.5), Some(1_000_001));
        h.record_ms(u64::MAX);
        assert_eq!(h.summary().max_ms, Some(MAX_VALUE as f64 / 1000.0));
    }

    #[test]
    fn concurrent_recording_counts_everything() {
        let h = std::sync::Arc::new(Histogram::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for v in 0..10_000_u64 {
                        h.record_us(v * 4 + t);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(h.count(), 40_000);
        assert_eq!(h.summary().max_ms, Some(39.999));
    }
}
