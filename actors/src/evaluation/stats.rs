//! The statistics of evaluations, as pure functions: the Wilson score interval of a pass
//! rate, nearest-rank percentiles, and the agreement between the automatic verdict and
//! human reviews (raw agreement and Cohen's kappa).

/// The two-sided 95 % normal quantile.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// A confidence interval of a proportion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Lower bound (0–1).
    pub low: f64,
    /// Upper bound (0–1).
    pub high: f64,
}

/// The Wilson score interval of `successes` out of `n` at normal quantile `z`; `None`
/// when `n` is 0 (or `successes` exceeds `n`).
pub fn wilson(successes: u64, n: u64, z: f64) -> Option<Interval> {
    if n == 0 || successes > n {
        return None;
    }
    // Counts stay far below 2^53: exact as floats.
    #[allow(clippy::cast_precision_loss)]
    let (k, n) = (successes as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    Some(Interval {
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    })
}

/// The `p`-th percentile (0–100) of ascending `sorted` values by the nearest-rank method
/// (the smallest value with at least `p` % of the values at or below it); `None` when
/// empty.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((p.clamp(0.0, 100.0) / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Agreement between the automatic verdict and the human one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// Pairs compared (reviewed evaluations).
    pub pairs: u64,
    /// Pairs where both said the same.
    pub agreed: u64,
    /// `agreed / pairs`.
    pub rate: f64,
    /// Cohen's kappa (agreement beyond chance); `None` when chance agreement is total (both
    /// raters always gave one same verdict).
    pub kappa: Option<f64>,
}

/// Agreement over `(automatic, human)` verdict pairs; `None` without pairs.
pub fn agreement(pairs: &[(bool, bool)]) -> Option<Agreement> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as u64;
    let agreed = pairs.iter().filter(|(a, h)| a == h).count() as u64;
    let auto_yes = pairs.iter().filter(|(a, _)| *a).count() as u64;
    let human_yes = pairs.iter().filter(|(_, h)| *h).count() as u64;
    #[allow(clippy::cast_precision_loss)]
    let (observed, pa, ph) = (
        agreed as f64 / n as f64,
        auto_yes as f64 / n as f64,
        human_yes as f64 / n as f64,
    );
    let expected = pa * ph + (1.0 - pa) * (1.0 - ph);
    let kappa = (expected < 1.0).then(|| (observed - expected) / (1.0 - expected));
    Some(Agreement {
        pairs: n,
        agreed,
        rate: observed,
        kappa,
    })
}

/// `part / whole`, `None` when `whole` is 0.
pub fn rate(part: u64, whole: u64) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    (whole > 0).then(|| part as f64 / whole as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn wilson_matches_hand_computed_values() {
        // 8 of 10: p = 0.8, z² = 3.8415; centre = (0.8 + 0.19207) / 1.38415 = 0.71674;
        // half = 1.96 · sqrt(0.016 + 0.0096037) / 1.38415 = 0.22657 → [0.4902, 0.9433].
        let i = wilson(8, 10, Z_95).expect("interval");
        assert!(close(i.low, 0.4902) && close(i.high, 0.9433), "{i:?}");
        // 0 of 20 → [0, 0.1611]; 20 of 20 → [0.8389, 1].
        let none = wilson(0, 20, Z_95).expect("interval");
        assert!(close(none.low, 0.0) && close(none.high, 0.1611), "{none:?}");
        let all = wilson(20, 20, Z_95).expect("interval");
        assert!(close(all.low, 0.8389) && close(all.high, 1.0), "{all:?}");
        // 50 of 100 → [0.4038, 0.5962].
        let half = wilson(50, 100, Z_95).expect("interval");
        assert!(
            close(half.low, 0.4038) && close(half.high, 0.5962),
            "{half:?}"
        );
        assert_eq!(wilson(0, 0, Z_95), None);
        assert_eq!(wilson(3, 2, Z_95), None);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v = [15, 20, 35, 40, 50];
        assert_eq!(percentile(&v, 5.0), Some(15));
        assert_eq!(percentile(&v, 30.0), Some(20));
        assert_eq!(percentile(&v, 40.0), Some(20));
        assert_eq!(percentile(&v, 50.0), Some(35));
        assert_eq!(percentile(&v, 95.0), Some(50));
        assert_eq!(percentile(&v, 100.0), Some(50));
        assert_eq!(percentile(&v, 0.0), Some(15));
        let hundred: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 95.0), Some(95));
        assert_eq!(percentile(&hundred, 50.0), Some(50));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn agreement_and_kappa_match_hand_computed_values() {
        // 10 pairs: 4 (yes, yes), 1 (yes, no), 2 (no, yes), 3 (no, no): observed 0.7;
        // auto yes 0.5, human yes 0.6 → expected 0.3 + 0.2 = 0.5; kappa = 0.2 / 0.5 = 0.4.
        let mut pairs = vec![(true, true); 4];
        pairs.push((true, false));
        pairs.extend([(false, true); 2]);
        pairs.extend([(false, false); 3]);
        let a = agreement(&pairs).expect("agreement");
        assert_eq!((a.pairs, a.agreed), (10, 7));
        assert!(close(a.rate, 0.7));
        assert!(close(a.kappa.expect("kappa"), 0.4));
        let same = agreement(&[(true, true), (true, true)]).expect("agreement");
        assert!(close(same.rate, 1.0));
        assert_eq!(same.kappa, None, "chance agreement is total");
        assert_eq!(agreement(&[]), None);
        assert_eq!(rate(1, 4), Some(0.25));
        assert_eq!(rate(0, 0), None);
    }
}
