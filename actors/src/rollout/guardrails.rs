//! Guardrails of a canary (DESIGN §6), as pure functions over the per-version figures of
//! the canary and of the stable version in the same window (since the canary started):
//!
//! - `pass_rate`: the canary's pass rate is not worse than stable's by more than Δ. A
//!   one-sided test at 95 %: the upper 95 % confidence bound of `p_canary − p_stable`
//!   (Newcombe's hybrid score interval, from the Wilson intervals of each rate at the
//!   one-sided z = 1.645) must not fall below −Δ. Both samples must reach the minimum.
//! - `transfer_rate`: the canary's transfer rate ≤ stable's + Δ (both samples at the minimum).
//! - `error_rate`: the canary's AI/actor error rate ≤ x (canary sample at the minimum).
//! - `first_audio_p95_ms`: the canary's first-audio p95 ≤ y ms (at least the minimum of
//!   measured calls).
//!
//! Below the minimum sample a guardrail decides nothing (`insufficient`): a canary is never
//! rolled back on a handful of calls.

use serde::{Deserialize, Serialize};

use crate::evaluation::stats::{percentile, rate, wilson};
use crate::store::VersionFigures;

/// The one-sided 95 % normal quantile.
pub const Z_95_ONE_SIDED: f64 = 1.644_853_626_951_472_2;

fn yes() -> bool {
    true
}
fn default_min_sample() -> i64 {
    20
}
fn default_delta() -> f64 {
    0.05
}
fn default_max_error_rate() -> f64 {
    0.05
}
fn default_max_first_audio() -> i64 {
    1500
}

/// The thresholds of a policy's guardrails (every field optional on input; defaults as
/// documented).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guardrails {
    /// Guardrails are checked (default `true`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Evaluated calls each arm needs before a guardrail decides (default 20).
    #[serde(default = "default_min_sample")]
    pub min_sample: i64,
    /// Δ of the pass-rate test (default 0.05).
    #[serde(default = "default_delta")]
    pub pass_rate_delta: f64,
    /// Δ of the transfer rate over stable's (default 0.05).
    #[serde(default = "default_delta")]
    pub transfer_rate_delta: f64,
    /// Highest AI/actor error rate (default 0.05).
    #[serde(default = "default_max_error_rate")]
    pub max_error_rate: f64,
    /// Highest first-audio p95 in ms (default 1500).
    #[serde(default = "default_max_first_audio")]
    pub max_first_audio_p95_ms: i64,
}

impl Default for Guardrails {
    fn default() -> Self {
        Self {
            enabled: true,
            min_sample: default_min_sample(),
            pass_rate_delta: default_delta(),
            transfer_rate_delta: default_delta(),
            max_error_rate: default_max_error_rate(),
            max_first_audio_p95_ms: default_max_first_audio(),
        }
    }
}

impl Guardrails {
    /// The first field out of range, with why.
    pub fn invalid(&self) -> Option<(&'static str, &'static str)> {
        let unit = |x: f64| (0.0..=1.0).contains(&x);
        if self.min_sample < 1 || self.min_sample > 1_000_000 {
            Some(("guardrails.min_sample", "must be between 1 and 1000000"))
        } else if !unit(self.pass_rate_delta) {
            Some(("guardrails.pass_rate_delta", "must be between 0 and 1"))
        } else if !unit(self.transfer_rate_delta) {
            Some(("guardrails.transfer_rate_delta", "must be between 0 and 1"))
        } else if !unit(self.max_error_rate) {
            Some(("guardrails.max_error_rate", "must be between 0 and 1"))
        } else if self.max_first_audio_p95_ms < 1 || self.max_first_audio_p95_ms > 600_000 {
            Some((
                "guardrails.max_first_audio_p95_ms",
                "must be between 1 and 600000",
            ))
        } else {
            None
        }
    }
}

/// What one version did in the window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ArmFigures {
    /// Evaluated calls.
    pub evaluated: i64,
    /// Of which passed.
    pub passed: i64,
    /// Of which handed to a human.
    pub transferred: i64,
    /// Of which failed (AI or actor failure).
    pub errored: i64,
    /// Calls with a measured first audio.
    pub first_audio_samples: i64,
    /// Their 95th percentile (ms).
    pub first_audio_p95_ms: Option<i64>,
}

impl ArmFigures {
    /// From the store's raw figures of a version.
    pub fn of(f: &VersionFigures) -> Self {
        Self {
            evaluated: f.evaluated,
            passed: f.passed,
            transferred: f.transferred,
            errored: f.errored,
            first_audio_samples: i64::try_from(f.first_audio_ms.len()).unwrap_or(i64::MAX),
            first_audio_p95_ms: percentile(&f.first_audio_ms, 95.0),
        }
    }
}

/// Where a guardrail stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Within its threshold.
    Pass,
    /// Beyond it: the canary must be halted.
    Breach,
    /// Too few calls to decide.
    Insufficient,
}

/// One guardrail's value against its threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// `pass_rate`, `transfer_rate`, `error_rate` or `first_audio_p95_ms`.
    pub guardrail: &'static str,
    /// The canary's value.
    pub value: Option<f64>,
    /// Stable's value, where the guardrail compares with it.
    pub baseline: Option<f64>,
    /// The threshold the value (or, for `pass_rate`, the bound) is held to.
    pub threshold: f64,
    /// For `pass_rate`: the upper one-sided 95 % bound of `p_canary − p_stable`, held to
    /// `−Δ` (the `threshold` shows `p_stable − Δ` for reading).
    pub bound: Option<f64>,
    /// The canary's sample.
    pub canary_sample: i64,
    /// Stable's sample (where compared).
    pub stable_sample: Option<i64>,
    /// The minimum sample.
    pub min_sample: i64,
    /// The verdict.
    pub status: CheckStatus,
}

/// Every guardrail of a canary at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    /// One per guardrail, in a fixed order.
    pub checks: Vec<Check>,
}

impl Assessment {
    /// The breached guardrails.
    pub fn breaches(&self) -> Vec<&Check> {
        self.checks
            .iter()
            .filter(|c| c.status == CheckStatus::Breach)
            .collect()
    }

    /// A one-line reason naming every breach with its value and threshold.
    pub fn breach_reason(&self) -> String {
        let parts: Vec<String> = self
            .breaches()
            .iter()
            .map(|c| {
                format!(
                    "{} {} beyond threshold {} (canary n={}{})",
                    c.guardrail,
                    c.value
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.4}")),
                    format_args!("{:.4}", c.threshold),
                    c.canary_sample,
                    c.stable_sample
                        .map(|n| format!(", stable n={n}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        format!("guardrail breached: {}", parts.join("; "))
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The upper one-sided 95 % bound of `p_a − p_b` (Newcombe's hybrid score method); `None`
/// when either sample is empty.
pub fn difference_upper_bound(passed_a: i64, n_a: i64, passed_b: i64, n_b: i64) -> Option<f64> {
    let a = wilson(count(passed_a), count(n_a), Z_95_ONE_SIDED)?;
    let b = wilson(count(passed_b), count(n_b), Z_95_ONE_SIDED)?;
    let pa = rate(count(passed_a), count(n_a))?;
    let pb = rate(count(passed_b), count(n_b))?;
    Some(pa - pb + ((a.high - pa).powi(2) + (pb - b.low).powi(2)).sqrt())
}

fn ratio(part: i64, whole: i64) -> Option<f64> {
    rate(count(part), count(whole))
}

/// Checks every guardrail of `g` on the canary's and stable's figures.
pub fn assess(g: &Guardrails, canary: &ArmFigures, stable: &ArmFigures) -> Assessment {
    let both = canary.evaluated >= g.min_sample && stable.evaluated >= g.min_sample;
    let canary_enough = canary.evaluated >= g.min_sample;
    let stable_pass = ratio(stable.passed, stable.evaluated);
    let bound = difference_upper_bound(
        canary.passed,
        canary.evaluated,
        stable.passed,
        stable.evaluated,
    );
    let pass_rate = Check {
        guardrail: "pass_rate",
        value: ratio(canary.passed, canary.evaluated),
        baseline: stable_pass,
        threshold: stable_pass.map_or(-g.pass_rate_delta, |p| p - g.pass_rate_delta),
        bound,
        canary_sample: canary.evaluated,
        stable_sample: Some(stable.evaluated),
        min_sample: g.min_sample,
        status: match bound {
            Some(b) if both && b < -g.pass_rate_delta => CheckStatus::Breach,
            Some(_) if both => CheckStatus::Pass,
            _ => CheckStatus::Insufficient,
        },
    };
    let canary_transfer = ratio(canary.transferred, canary.evaluated);
    let stable_transfer = ratio(stable.transferred, stable.evaluated);
    let transfer_threshold = stable_transfer.unwrap_or(0.0) + g.transfer_rate_delta;
    let transfer_rate = Check {
        guardrail: "transfer_rate",
        value: canary_transfer,
        baseline: stable_transfer,
        threshold: transfer_threshold,
        bound: None,
        canary_sample: canary.evaluated,
        stable_sample: Some(stable.evaluated),
        min_sample: g.min_sample,
        status: match canary_transfer {
            Some(v) if both && v > transfer_threshold => CheckStatus::Breach,
            Some(_) if both => CheckStatus::Pass,
            _ => CheckStatus::Insufficient,
        },
    };
    let canary_errors = ratio(canary.errored, canary.evaluated);
    let error_rate = Check {
        guardrail: "error_rate",
        value: canary_errors,
        baseline: None,
        threshold: g.max_error_rate,
        bound: None,
        canary_sample: canary.evaluated,
        stable_sample: None,
        min_sample: g.min_sample,
        status: match canary_errors {
            Some(v) if canary_enough && v > g.max_error_rate => CheckStatus::Breach,
            Some(_) if canary_enough => CheckStatus::Pass,
            _ => CheckStatus::Insufficient,
        },
    };
    #[allow(clippy::cast_precision_loss)]
    let p95 = canary.first_audio_p95_ms.map(|v| v as f64);
    #[allow(clippy::cast_precision_loss)]
    let p95_threshold = g.max_first_audio_p95_ms as f64;
    let first_audio = Check {
        guardrail: "first_audio_p95_ms",
        value: p95,
        baseline: None,
        threshold: p95_threshold,
        bound: None,
        canary_sample: canary.first_audio_samples,
        stable_sample: None,
        min_sample: g.min_sample,
        status: match p95 {
            Some(v) if canary.first_audio_samples >= g.min_sample && v > p95_threshold => {
                CheckStatus::Breach
            }
            Some(_) if canary.first_audio_samples >= g.min_sample => CheckStatus::Pass,
            _ => CheckStatus::Insufficient,
        },
    };
    Assessment {
        checks: vec![pass_rate, transfer_rate, error_rate, first_audio],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4
    }

    fn arm(evaluated: i64, passed: i64) -> ArmFigures {
        ArmFigures {
            evaluated,
            passed,
            transferred: 0,
            errored: 0,
            first_audio_samples: evaluated,
            first_audio_p95_ms: Some(800),
        }
    }

    fn status(a: &Assessment, name: &str) -> CheckStatus {
        a.checks
            .iter()
            .find(|c| c.guardrail == name)
            .map(|c| c.status)
            .expect("guardrail")
    }

    #[test]
    fn the_difference_bound_matches_hand_computed_values() {
        // Canary 2/20, stable 19/20 at z = 1.6449: Wilson upper of 0.10 is 0.26166, Wilson
        // lower of 0.95 is 0.80399; d = −0.85; bound = −0.85 + sqrt(0.16166² + 0.14601²)
        // = −0.85 + 0.21784 = −0.63216.
        let b = difference_upper_bound(2, 20, 19, 20).expect("bound");
        assert!(close(b, -0.632_16), "{b}");
        // 17/20 vs 18/20: d = −0.05, bound = 0.13426 (no evidence of harm).
        let b = difference_upper_bound(17, 20, 18, 20).expect("bound");
        assert!(close(b, 0.134_26), "{b}");
        // 10/20 vs 18/20: bound = −0.16352.
        let b = difference_upper_bound(10, 20, 18, 20).expect("bound");
        assert!(close(b, -0.163_52), "{b}");
        // 15/20 vs 18/20: bound = 0.05291.
        let b = difference_upper_bound(15, 20, 18, 20).expect("bound");
        assert!(close(b, 0.052_91), "{b}");
        assert_eq!(difference_upper_bound(0, 0, 18, 20), None);
    }

    #[test]
    fn a_clearly_worse_canary_breaches_the_pass_rate_and_a_close_one_does_not() {
        let g = Guardrails::default();
        let a = assess(&g, &arm(20, 10), &arm(20, 18));
        assert_eq!(status(&a, "pass_rate"), CheckStatus::Breach);
        let check = &a.checks[0];
        assert!(close(check.threshold, 0.85), "{check:?}");
        assert!(close(check.value.expect("value"), 0.5));
        assert!(
            a.breach_reason().contains("pass_rate 0.5000"),
            "{}",
            a.breach_reason()
        );
        // 15/20 vs 18/20 looks worse but the bound (0.0529) is above −0.05: no breach.
        let a = assess(&g, &arm(20, 15), &arm(20, 18));
        assert_eq!(status(&a, "pass_rate"), CheckStatus::Pass);
        assert!(a.breaches().is_empty());
    }

    #[test]
    fn below_the_minimum_sample_nothing_is_decided() {
        let g = Guardrails::default();
        // 0 of 19 passing is terrible, but 19 < 20.
        let mut canary = arm(19, 0);
        canary.errored = 19;
        canary.transferred = 19;
        canary.first_audio_p95_ms = Some(9_000);
        let a = assess(&g, &canary, &arm(40, 40));
        assert!(
            a.checks
                .iter()
                .all(|c| c.status == CheckStatus::Insufficient),
            "{a:?}"
        );
        // Enough canary calls but too few stable ones: the comparisons wait, the absolute
        // guardrails decide.
        let mut canary = arm(20, 20);
        canary.errored = 2;
        let a = assess(&g, &canary, &arm(5, 5));
        assert_eq!(status(&a, "pass_rate"), CheckStatus::Insufficient);
        assert_eq!(status(&a, "transfer_rate"), CheckStatus::Insufficient);
        assert_eq!(status(&a, "error_rate"), CheckStatus::Breach);
        assert_eq!(status(&a, "first_audio_p95_ms"), CheckStatus::Pass);
    }

    #[test]
    fn transfer_error_and_latency_thresholds() {
        let g = Guardrails::default();
        // Transfers: stable 2/20 = 0.10, threshold 0.15; canary 3/20 = 0.15 passes, 4/20 breaches.
        let mut stable = arm(20, 20);
        stable.transferred = 2;
        let mut canary = arm(20, 20);
        canary.transferred = 3;
        assert_eq!(
            status(&assess(&g, &canary, &stable), "transfer_rate"),
            CheckStatus::Pass
        );
        canary.transferred = 4;
        assert_eq!(
            status(&assess(&g, &canary, &stable), "transfer_rate"),
            CheckStatus::Breach
        );
        // Errors: 1/20 = 0.05 is at the limit; 2/20 beyond.
        let mut canary = arm(20, 20);
        canary.errored = 1;
        assert_eq!(
            status(&assess(&g, &canary, &stable), "error_rate"),
            CheckStatus::Pass
        );
        canary.errored = 2;
        assert_eq!(
            status(&assess(&g, &canary, &stable), "error_rate"),
            CheckStatus::Breach
        );
        // First audio p95 1500 passes, 1501 breaches.
        let mut canary = arm(20, 20);
        canary.first_audio_p95_ms = Some(1500);
        assert_eq!(
            status(&assess(&g, &canary, &stable), "first_audio_p95_ms"),
            CheckStatus::Pass
        );
        canary.first_audio_p95_ms = Some(1501);
        assert_eq!(
            status(&assess(&g, &canary, &stable), "first_audio_p95_ms"),
            CheckStatus::Breach
        );
    }

    #[test]
    fn guardrail_settings_default_and_validate() {
        let g: Guardrails = serde_json::from_str("{}").expect("defaults");
        assert_eq!(g, Guardrails::default());
        let g: Guardrails = serde_json::from_str(r#"{"max_error_rate": 2}"#).expect("parse");
        assert_eq!(
            g.invalid().map(|(f, _)| f),
            Some("guardrails.max_error_rate")
        );
        assert!(serde_json::from_str::<Guardrails>(r#"{"nope": 1}"#).is_err());
    }
}
