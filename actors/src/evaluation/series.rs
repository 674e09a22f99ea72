//! An agent's evaluation pass rate per version over time (the operator console's chart):
//! every version of the agent, its totals over the window, and its evaluated and passed
//! sessions per UTC-aligned bucket of session start times (an hour or a day), from the
//! store's per-bucket counts ([`Store::agent_evaluation_buckets`]).

use super::stats::{Interval, Z_95, rate, wilson};
use crate::ids::AgentId;
use crate::store::{Store, StoreError, VersionStatus};

/// The width of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// One hour.
    Hour,
    /// One day (UTC).
    Day,
}

impl Bucket {
    /// Parses `hour` or `day`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            _ => None,
        }
    }

    /// `hour` or `day`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }

    /// Its width (ms).
    pub const fn width_ms(self) -> i64 {
        match self {
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }
}

/// One bucket of a version.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPoint {
    /// The bucket's start (Unix ms).
    pub bucket_start: i64,
    /// Evaluated sessions started in it.
    pub evaluated: i64,
    /// Of which passed.
    pub passed: i64,
    /// `passed / evaluated`.
    pub pass_rate: Option<f64>,
}

/// One version of the agent over the window.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionSeries {
    /// The version.
    pub agent_version_id: String,
    /// Its number (1, 2, …).
    pub version: i64,
    /// `draft`, `approved` or `retired`.
    pub status: VersionStatus,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Evaluated sessions over the window.
    pub evaluated: i64,
    /// Of which passed.
    pub passed: i64,
    /// `passed / evaluated`.
    pub pass_rate: Option<f64>,
    /// The 95 % Wilson score interval of the pass rate.
    pub pass_rate_ci95: Option<Interval>,
    /// The buckets with evaluations, oldest first.
    pub points: Vec<SeriesPoint>,
}

/// Every version of an agent over a window, newest version first.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSeries {
    /// The agent.
    pub agent_id: String,
    /// The bucket width.
    pub bucket: Bucket,
    /// Window start (Unix ms, inclusive; aligned down to a bucket start).
    pub from_ms: i64,
    /// Window end (Unix ms, exclusive).
    pub to_ms: i64,
    /// The versions, newest first (those without evaluations too).
    pub versions: Vec<VersionSeries>,
}

/// The series of `agent` over sessions started in `[from_ms, to_ms)` (`from_ms` aligned
/// down to its bucket); `None` when there is no such agent.
pub async fn agent_series(
    store: &Store,
    agent: &AgentId,
    bucket: Bucket,
    from_ms: i64,
    to_ms: i64,
) -> Result<Option<AgentSeries>, StoreError> {
    if store.get_agent(agent).await?.is_none() {
        return Ok(None);
    }
    let width = bucket.width_ms();
    let from_ms = from_ms.div_euclid(width) * width;
    let versions = store.list_versions(agent).await?;
    let buckets = store
        .agent_evaluation_buckets(agent, width, from_ms, to_ms)
        .await?;
    let versions = versions
        .into_iter()
        .map(|v| {
            let id = v.id.into_string();
            let points: Vec<SeriesPoint> = buckets
                .iter()
                .filter(|b| b.agent_version_id == id)
                .map(|b| SeriesPoint {
                    bucket_start: b.bucket_start,
                    evaluated: b.evaluated,
                    passed: b.passed,
                    pass_rate: rate(count(b.passed), count(b.evaluated)),
                })
                .collect();
            let evaluated: i64 = points.iter().map(|p| p.evaluated).sum();
            let passed: i64 = points.iter().map(|p| p.passed).sum();
            VersionSeries {
                agent_version_id: id,
                version: v.version,
                status: v.status,
                created_at: v.created_at,
                evaluated,
                passed,
                pass_rate: rate(count(passed), count(evaluated)),
                pass_rate_ci95: wilson(count(passed), count(evaluated), Z_95),
                points,
            }
        })
        .collect();
    Ok(Some(AgentSeries {
        agent_id: agent.as_str().to_owned(),
        bucket,
        from_ms,
        to_ms,
        versions,
    }))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::Bucket;

    #[test]
    fn buckets_parse_from_their_names() {
        for b in [Bucket::Hour, Bucket::Day] {
            assert_eq!(Bucket::parse(b.as_str()), Some(b));
        }
        assert_eq!(Bucket::parse("week"), None);
        assert_eq!(Bucket::Day.width_ms(), 24 * Bucket::Hour.width_ms());
    }
}
