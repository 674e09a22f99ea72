//! The evaluation pass rate of an agent per version over time (admin):
//! `GET /api/v1/admin/agents/{agent_id}/evaluation-series?bucket=hour|day&from=&to=` — every
//! version of the agent (newest first) with its totals over the window and its evaluated /
//! passed sessions per UTC-aligned bucket of session start times, from
//! [`actors::evaluation::series`]. One request gives the console's chart and its list of
//! versions with their pass rates; `…/agent-versions/{id}/evaluation-summary` has the rest
//! of one version's aggregates.

use actors::evaluation::series::{AgentSeries, Bucket, SeriesPoint, VersionSeries, agent_series};
use actors::ids::AgentId;
use actors::tenant::AuditMeta;
use actors::time::{now_ms, rfc3339};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::http::StatusCode;
use warp::reply::Response;

use super::ApiError;
use super::admin::json;
use super::evaluations::{IntervalView, window};
use super::mount::Request;
use crate::http::ErrorResponse;

/// Most buckets one request may span.
const MAX_BUCKETS: i64 = 2_000;

/// Buckets of the default window: 30 days, or 48 hours.
const fn default_buckets(bucket: Bucket) -> i64 {
    match bucket {
        Bucket::Hour => 48,
        Bucket::Day => 30,
    }
}

/// The window and width of the series.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SeriesParams {
    /// `hour` or `day` (default `day`); buckets are aligned to UTC.
    #[param(pattern = "^(hour|day)$")]
    pub bucket: Option<String>,
    /// RFC 3339: sessions started at or after (aligned down to its bucket; default: 30
    /// days, or 48 hours, before `to`).
    #[param(format = "rfc3339")]
    pub from: Option<String>,
    /// RFC 3339: sessions started before (default: now). At most 2,000 buckets.
    #[param(format = "rfc3339")]
    pub to: Option<String>,
}

/// One bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesPointView {
    /// RFC 3339: the bucket's start.
    pub bucket_start: String,
    /// Evaluated sessions started in the bucket (the latest evaluation of each).
    pub evaluated: i64,
    /// Of which passed.
    pub passed: i64,
    /// `passed / evaluated`.
    pub pass_rate: Option<f64>,
}

/// One version over the window.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionSeriesView {
    /// The version (`agv_…`).
    pub agent_version_id: String,
    /// Its number (1, 2, …).
    pub version: i64,
    /// `draft`, `approved` or `retired`.
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
    /// Evaluated sessions over the window.
    pub evaluated: i64,
    /// Of which passed.
    pub passed: i64,
    /// `passed / evaluated`.
    pub pass_rate: Option<f64>,
    /// The 95 % Wilson score interval of the pass rate.
    pub pass_rate_ci95: Option<IntervalView>,
    /// Buckets with evaluations, oldest first (a bucket without any is absent).
    pub points: Vec<SeriesPointView>,
}

/// An agent's evaluation pass rate per version over time.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvaluationSeriesView {
    /// The agent.
    pub agent_id: String,
    /// `hour` or `day`.
    pub bucket: String,
    /// RFC 3339, inclusive (the first bucket's start).
    pub from: String,
    /// RFC 3339, exclusive.
    pub to: String,
    /// Every version of the agent, newest first (those without evaluations too).
    pub versions: Vec<VersionSeriesView>,
}

impl From<SeriesPoint> for SeriesPointView {
    fn from(p: SeriesPoint) -> Self {
        SeriesPointView {
            bucket_start: rfc3339(p.bucket_start),
            evaluated: p.evaluated,
            passed: p.passed,
            pass_rate: p.pass_rate,
        }
    }
}

impl From<VersionSeries> for VersionSeriesView {
    fn from(v: VersionSeries) -> Self {
        VersionSeriesView {
            agent_version_id: v.agent_version_id,
            version: v.version,
            status: v.status.as_str().to_owned(),
            created_at: rfc3339(v.created_at),
            evaluated: v.evaluated,
            passed: v.passed,
            pass_rate: v.pass_rate,
            pass_rate_ci95: v.pass_rate_ci95.map(|i| IntervalView {
                low: i.low,
                high: i.high,
            }),
            points: v.points.into_iter().map(SeriesPointView::from).collect(),
        }
    }
}

impl From<AgentSeries> for EvaluationSeriesView {
    fn from(s: AgentSeries) -> Self {
        EvaluationSeriesView {
            agent_id: s.agent_id,
            bucket: s.bucket.as_str().to_owned(),
            from: rfc3339(s.from_ms),
            to: rfc3339(s.to_ms),
            versions: s
                .versions
                .into_iter()
                .map(VersionSeriesView::from)
                .collect(),
        }
    }
}

/// The evaluation pass rate of every version of an agent, per hour or day of session
/// start times.
#[utoipa::path(get, path = "/api/v1/admin/agents/{agent_id}/evaluation-series", tag = "admin",
    params(("agent_id" = String, Path, description = "Agent id"), SeriesParams),
    responses((status = 200, body = EvaluationSeriesView),
              (status = 400, body = ErrorResponse, description = "A bad `bucket`, `from` or `to` (named)"),
              (status = 401, body = ErrorResponse),
              (status = 404, body = ErrorResponse, description = "No such agent")))]
pub async fn evaluation_series(req: Request<AuditMeta, (AgentId,)>) -> Result<Response, ApiError> {
    let p: SeriesParams = req.query()?;
    let Request {
        state, path: (id,), ..
    } = req;
    let bad = |field: &str, message: &str| ApiError::BadRequest {
        code: "invalid_query",
        message: message.to_owned(),
        field: Some(field.to_owned()),
    };
    let bucket = match p.bucket.as_deref() {
        None => Bucket::Day,
        Some(b) => {
            Bucket::parse(b).ok_or_else(|| bad("bucket", "bucket must be `hour` or `day`"))?
        }
    };
    let (from, to) = window(p.from, p.to)?;
    let width = bucket.width_ms();
    let to = to.unwrap_or_else(now_ms);
    let from = from.unwrap_or(to - default_buckets(bucket) * width);
    if from >= to {
        return Err(bad("from", "from must be before to"));
    }
    if (to - from) / width >= MAX_BUCKETS {
        return Err(bad(
            "from",
            "the window spans more than 2000 buckets: narrow it or use day buckets",
        ));
    }
    let series = agent_series(&state.store, &id, bucket, from, to)
        .await
        .map_err(|e| ApiError::Internal(format!("store: {e:?}")))?
        .ok_or_else(|| ApiError::NotFound("agent".into()))?;
    Ok(json(StatusCode::OK, &EvaluationSeriesView::from(series)))
}
