//! Per-version aggregates over a time window (DESIGN §5 and §6): what the rollout
//! guardrails and the admin evaluation summary read. The store gathers the raw figures
//! ([`crate::store::VersionFigures`]); this module turns them into rates and intervals with
//! [`super::stats`].

use super::score::Verdict;
use super::stats::{Agreement, Interval, Z_95, agreement, percentile, rate, wilson};
use crate::store::{Store, StoreError, VersionFigures};

/// How one criterion fared across the window.
#[derive(Debug, Clone, PartialEq)]
pub struct CriterionRate {
    /// The criterion's key.
    pub key: String,
    /// Evaluations where it passed.
    pub passed: i64,
    /// … failed.
    pub failed: i64,
    /// … did not apply.
    pub not_applicable: i64,
    /// … could not be decided.
    pub error: i64,
    /// `passed / (passed + failed)`; `None` when it never applied.
    pub pass_rate: Option<f64>,
}

/// The aggregates of one agent version over a window of session start times.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionSummary {
    /// The version.
    pub agent_version_id: String,
    /// Window start (Unix ms, inclusive), if bounded.
    pub from_ms: Option<i64>,
    /// Window end (Unix ms, exclusive), if bounded.
    pub to_ms: Option<i64>,
    /// Evaluated sessions (the latest evaluation of each).
    pub evaluated: i64,
    /// Of which passed.
    pub passed: i64,
    /// `passed / evaluated`.
    pub pass_rate: Option<f64>,
    /// The 95 % Wilson score interval of the pass rate.
    pub pass_rate_ci95: Option<Interval>,
    /// Mean score.
    pub mean_score: Option<f64>,
    /// Per criterion, by key.
    pub criteria: Vec<CriterionRate>,
    /// Sessions handed to a human.
    pub transferred: i64,
    /// `transferred / evaluated`.
    pub transfer_rate: Option<f64>,
    /// Sessions that failed (AI or actor failure).
    pub errored: i64,
    /// `errored / evaluated`.
    pub error_rate: Option<f64>,
    /// Median first audio (ms).
    pub first_audio_p50_ms: Option<i64>,
    /// 95th percentile of first audio (ms).
    pub first_audio_p95_ms: Option<i64>,
    /// Agreement of the automatic verdict with the latest human review, where reviews exist.
    pub judge_agreement: Option<Agreement>,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Turns the raw figures into the summary.
pub fn summarize(
    version: &str,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    f: &VersionFigures,
) -> VersionSummary {
    let mut criteria: Vec<CriterionRate> = Vec::new();
    for (key, verdict, n) in &f.criteria {
        let entry = match criteria.iter_mut().find(|c| &c.key == key) {
            Some(entry) => entry,
            None => {
                criteria.push(CriterionRate {
                    key: key.clone(),
                    passed: 0,
                    failed: 0,
                    not_applicable: 0,
                    error: 0,
                    pass_rate: None,
                });
                let last = criteria.len() - 1;
                &mut criteria[last]
            }
        };
        match verdict {
            Verdict::Passed => entry.passed += n,
            Verdict::Failed => entry.failed += n,
            Verdict::NotApplicable => entry.not_applicable += n,
            Verdict::Error => entry.error += n,
        }
    }
    for c in &mut criteria {
        c.pass_rate = rate(count(c.passed), count(c.passed + c.failed));
    }
    VersionSummary {
        agent_version_id: version.to_owned(),
        from_ms,
        to_ms,
        evaluated: f.evaluated,
        passed: f.passed,
        pass_rate: rate(count(f.passed), count(f.evaluated)),
        pass_rate_ci95: wilson(count(f.passed), count(f.evaluated), Z_95),
        mean_score: f.mean_score,
        criteria,
        transferred: f.transferred,
        transfer_rate: rate(count(f.transferred), count(f.evaluated)),
        errored: f.errored,
        error_rate: rate(count(f.errored), count(f.evaluated)),
        first_audio_p50_ms: percentile(&f.first_audio_ms, 50.0),
        first_audio_p95_ms: percentile(&f.first_audio_ms, 95.0),
        judge_agreement: agreement(&f.reviews),
    }
}

/// The aggregates of `version` over sessions started in `[from_ms, to_ms)`: the function
/// the rollout guardrails and the admin summary call.
pub async fn version_summary(
    store: &Store,
    version: &str,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> Result<VersionSummary, StoreError> {
    let figures = store.version_figures(version, from_ms, to_ms).await?;
    Ok(summarize(version, from_ms, to_ms, &figures))
}
