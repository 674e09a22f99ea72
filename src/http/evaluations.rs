//! Evaluations (DESIGN §5): `GET /api/v1/evaluations`, `GET /api/v1/evaluations/{id}`,
//! `POST /api/v1/evaluations/{id}/review`, `POST /api/v1/voice-sessions/{id}/evaluate`, and
//! the admin `GET /api/v1/admin/agent-versions/{version_id}/evaluation-summary`. The
//! evaluation of a session is also inside `GET /api/v1/voice-sessions/{id}`
//! ([`EvaluationDetailView`]). Every tenant route reads and writes the caller's tenant's
//! records only (another tenant's ids are 404); the handlers call the
//! [`actors::evaluation::Evaluations`] handle, which works on the caller's task.

use actors::evaluation::{
    CriterionResult, EvaluationDetail, EvaluationError, Evidence, Rescore, VersionSummary,
};
use actors::ids::{AgentVersionId, EvaluationId, SessionId};
use actors::store::{Evaluation, EvaluationFilter, Review, StoreError};
use actors::tenant::{AuditMeta, AuthContext};
use actors::time::{parse_rfc3339, rfc3339};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::http::StatusCode;
use warp::reply::Response;

use super::ApiError;
use super::admin::json;
use super::fields;
use super::filters::{Paging, parse_json};
use super::mount::Request;
use super::page::Page;
use crate::http::ErrorResponse;

/// Longest review note (characters).
const MAX_NOTE_CHARS: usize = 2_000;

impl From<EvaluationError> for ApiError {
    fn from(e: EvaluationError) -> Self {
        match e {
            EvaluationError::NotFound(what) => ApiError::NotFound(what.to_owned()),
            EvaluationError::SessionActive => ApiError::Conflict(
                "the voice session is still active: it is evaluated when it ends".into(),
            ),
            EvaluationError::NoRubric => ApiError::Status {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "no_rubric",
                message: "the session's agent version has no rubric".into(),
            },
            EvaluationError::Store(e) => store_error(&e),
        }
    }
}

fn store_error(e: &StoreError) -> ApiError {
    ApiError::Internal(format!("store: {e:?}"))
}

/// The judge call of an evaluation.
#[derive(Debug, Serialize, ToSchema)]
pub struct JudgeView {
    /// The model that answered.
    pub model: String,
    /// Latency (ms).
    pub latency_ms: i64,
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
}

/// A scored call.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvaluationView {
    /// Identifier (`evl_…`).
    pub id: String,
    /// The voice session scored.
    pub session_id: String,
    /// Its call.
    pub call_id: String,
    /// Agent key.
    pub agent_key: Option<String>,
    /// Agent version.
    pub agent_version_id: Option<String>,
    /// The rubric scored against (hex SHA-256 of its canonical JSON).
    pub rubric_hash: String,
    /// Whether the call passed (score ≥ pass score and no critical criterion failed).
    pub passed: bool,
    /// Weighted score (0–1).
    pub score: f64,
    /// The rubric's pass score.
    pub pass_score: f64,
    /// Keys of the failed criteria.
    pub failed_criteria: Vec<String>,
    /// The judge's summary of the conversation.
    pub summary: Option<String>,
    /// The judge's tags.
    pub tags: Vec<String>,
    /// The judge call, when the judge answered.
    pub judge: Option<JudgeView>,
    /// Why the judge gave no answer (its criteria are then `error`).
    pub judge_error: Option<String>,
    /// The conversation was handed to a human.
    pub transferred: bool,
    /// The session failed (AI or actor failure).
    pub errored: bool,
    /// First audio of the session (ms).
    pub first_audio_ms: Option<i64>,
    /// Why the session ended.
    pub end_reason: Option<String>,
    /// RFC 3339: when the session started.
    pub session_started_at: String,
    /// RFC 3339: when it was evaluated.
    pub created_at: String,
}

impl From<Evaluation> for EvaluationView {
    fn from(e: Evaluation) -> Self {
        EvaluationView {
            id: e.id.into_string(),
            session_id: e.session_id.into_string(),
            call_id: e.call_id.into_string(),
            agent_key: e.agent_key,
            agent_version_id: e.agent_version_id,
            rubric_hash: e.rubric_hash,
            passed: e.passed,
            score: e.score,
            pass_score: e.pass_score,
            failed_criteria: e.failed_criteria,
            summary: e.summary,
            tags: e.tags,
            judge: e.judge.map(|j| JudgeView {
                model: j.model,
                latency_ms: j.latency_ms,
                input_tokens: j.input_tokens,
                output_tokens: j.output_tokens,
            }),
            judge_error: e.judge_error,
            transferred: e.transferred,
            errored: e.errored,
            first_audio_ms: e.first_audio_ms,
            end_reason: e.end_reason,
            session_started_at: rfc3339(e.session_started_at),
            created_at: rfc3339(e.created_at),
        }
    }
}

/// A quoted transcript turn.
#[derive(Debug, Serialize, ToSchema)]
pub struct TurnQuoteView {
    /// The turn's number (its index in the session's transcript).
    pub turn: usize,
    /// `caller`, `agent`, `system`.
    pub speaker: String,
    /// The relevant part of what was said.
    pub quote: String,
}

/// Why a criterion got its verdict.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvidenceView {
    /// Turns that show it.
    pub turns: Vec<TurnQuoteView>,
    /// The measured value.
    pub measured: Option<f64>,
    /// The threshold it was compared with.
    pub threshold: Option<f64>,
    /// Unit of `measured` and `threshold` (`ms`, `s`, `score`).
    pub unit: Option<String>,
    /// What was found (or the judge's rationale, or the error).
    pub note: Option<String>,
}

impl From<Evidence> for EvidenceView {
    fn from(e: Evidence) -> Self {
        EvidenceView {
            turns: e
                .turns
                .into_iter()
                .map(|t| TurnQuoteView {
                    turn: t.turn,
                    speaker: t.speaker,
                    quote: t.quote,
                })
                .collect(),
            measured: e.measured,
            threshold: e.threshold,
            unit: e.unit,
            note: e.note,
        }
    }
}

/// The result of one criterion.
#[derive(Debug, Serialize, ToSchema)]
pub struct CriterionResultView {
    /// The criterion's key.
    pub key: String,
    /// Its kind (`required_phrase`, …, `llm_judge`).
    pub kind: String,
    /// Its weight.
    pub weight: f64,
    /// Whether it is critical.
    pub critical: bool,
    /// `passed`, `failed`, `not_applicable`, `error`.
    pub verdict: String,
    /// Score 0–1.
    pub score: f64,
    /// Why.
    pub evidence: EvidenceView,
}

impl From<CriterionResult> for CriterionResultView {
    fn from(c: CriterionResult) -> Self {
        CriterionResultView {
            key: c.key,
            kind: c.kind,
            weight: c.weight,
            critical: c.critical,
            verdict: c.verdict.as_str().to_owned(),
            score: c.score,
            evidence: c.evidence.into(),
        }
    }
}

/// An operator's review of an evaluation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewView {
    /// Identifier (`evr_…`).
    pub id: String,
    /// The evaluation reviewed.
    pub evaluation_id: String,
    /// `passed` or `failed`.
    pub verdict: String,
    /// The operator's note.
    pub note: Option<String>,
    /// Who reviewed (the API key's id).
    pub reviewer: String,
    /// RFC 3339.
    pub created_at: String,
}

fn verdict(passed: bool) -> &'static str {
    if passed { "passed" } else { "failed" }
}

impl From<Review> for ReviewView {
    fn from(r: Review) -> Self {
        ReviewView {
            id: r.id.into_string(),
            evaluation_id: r.evaluation_id.into_string(),
            verdict: verdict(r.passed).to_owned(),
            note: r.note,
            reviewer: r.reviewer,
            created_at: rfc3339(r.created_at),
        }
    }
}

/// An evaluation with its criteria (and their evidence) and its reviews.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvaluationDetailView {
    /// The evaluation.
    #[serde(flatten)]
    pub evaluation: EvaluationView,
    /// Per-criterion results, in rubric order.
    pub criteria: Vec<CriterionResultView>,
    /// Operators' reviews, oldest first.
    pub reviews: Vec<ReviewView>,
    /// The latest human verdict (`passed`, `failed`), kept beside the automatic one.
    pub human_verdict: Option<String>,
}

impl From<EvaluationDetail> for EvaluationDetailView {
    fn from(d: EvaluationDetail) -> Self {
        EvaluationDetailView {
            human_verdict: d.reviews.last().map(|r| verdict(r.passed).to_owned()),
            evaluation: d.evaluation.into(),
            criteria: d
                .criteria
                .into_iter()
                .map(CriterionResultView::from)
                .collect(),
            reviews: d.reviews.into_iter().map(ReviewView::from).collect(),
        }
    }
}

/// Filters of the evaluation listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EvaluationParams {
    /// Agent key.
    pub agent_key: Option<String>,
    /// Agent version (`agv_…`).
    pub agent_version_id: Option<String>,
    /// Only passed (`true`) or failed (`false`) calls.
    pub passed: Option<bool>,
    /// RFC 3339: sessions started at or after.
    #[param(format = "rfc3339")]
    pub from: Option<String>,
    /// RFC 3339: sessions started before.
    #[param(format = "rfc3339")]
    pub to: Option<String>,
    /// Page size (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Rows to skip.
    pub offset: Option<u32>,
}

/// A time window of query parameters `from` and `to` (RFC 3339).
pub(super) fn window(
    from: Option<String>,
    to: Option<String>,
) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let time = |field: &str, v: Option<String>| -> Result<Option<i64>, ApiError> {
        v.map(|t| {
            parse_rfc3339(&t).ok_or_else(|| ApiError::BadRequest {
                code: "invalid_query",
                message: format!("{field} must be an RFC 3339 time"),
                field: Some(field.to_owned()),
            })
        })
        .transpose()
    };
    Ok((time("from", from)?, time("to", to)?))
}

/// Lists the tenant's evaluations, newest first.
#[utoipa::path(get, path = "/api/v1/evaluations", tag = "runtime", params(EvaluationParams),
    responses((status = 200, body = Page<EvaluationView>), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse)))]
pub async fn list_evaluations(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let p: EvaluationParams = req.query()?;
    let Request { state, auth, .. } = req;
    let paging = Paging::new(p.limit, p.offset)?;
    let (from_ms, to_ms) = window(p.from, p.to)?;
    let filter = EvaluationFilter {
        tenant_id: auth.tenant_id,
        agent_key: p.agent_key,
        agent_version_id: p.agent_version_id,
        passed: p.passed,
        from_ms,
        to_ms,
        limit: paging.limit,
        offset: paging.offset,
    };
    let page = state
        .actors
        .evaluations
        .list(&filter)
        .await
        .map_err(|e| store_error(&e))?;
    Ok(json(
        StatusCode::OK,
        &Page::new(
            page.items.into_iter().map(EvaluationView::from),
            paging,
            page.total,
        ),
    ))
}

/// One of the tenant's evaluations with every criterion, its evidence and the reviews.
#[utoipa::path(get, path = "/api/v1/evaluations/{id}", tag = "runtime",
    params(("id" = String, Path, description = "Evaluation id (`evl_…`)")),
    responses((status = 200, body = EvaluationDetailView), (status = 404, body = ErrorResponse)))]
pub async fn get_evaluation(
    req: Request<AuthContext, (EvaluationId,)>,
) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        ..
    } = req;
    let detail = state
        .actors
        .evaluations
        .get(&auth.tenant_id, &id)
        .await
        .map_err(|e| store_error(&e))?
        .ok_or_else(|| ApiError::NotFound("evaluation".into()))?;
    Ok(json(StatusCode::OK, &EvaluationDetailView::from(detail)))
}

/// Body of `POST /api/v1/evaluations/{id}/review`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// The operator's verdict: `passed` or `failed`.
    #[schema(example = "failed")]
    #[schema(pattern = "^(passed|failed)$")]
    pub verdict: String,
    /// Why (at most 2000 characters).
    #[schema(min_length = 1, max_length = 2000, format = "label")]
    pub note: Option<String>,
}

/// Records an operator's verdict on an evaluation, kept beside the automatic one (the
/// latest review is the human verdict the judge–human agreement is computed on).
#[utoipa::path(post, path = "/api/v1/evaluations/{id}/review", tag = "operator", request_body = ReviewRequest,
    params(("id" = String, Path, description = "Evaluation id (`evl_…`)")),
    responses((status = 201, body = ReviewView), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
              (status = 404, body = ErrorResponse),
              (status = 422, body = ErrorResponse, description = "a field is invalid (named in `field`)")))]
pub async fn review_evaluation(
    req: Request<AuthContext, (EvaluationId,)>,
) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        body,
        ..
    } = req;
    let r: ReviewRequest = parse_json(&body)?;
    let passed = match r.verdict.as_str() {
        "passed" => true,
        "failed" => false,
        _ => return Err(ApiError::invalid("verdict", "must be passed or failed")),
    };
    let note = r
        .note
        .as_deref()
        .map(|n| fields::label("note", n, MAX_NOTE_CHARS).map(|n| n.into_string()))
        .transpose()?;
    let review = state
        .actors
        .evaluations
        .review(
            &auth.tenant_id,
            &id,
            passed,
            note.as_deref(),
            auth.key_id.as_str(),
        )
        .await
        .map_err(|e| store_error(&e))?
        .ok_or_else(|| ApiError::NotFound("evaluation".into()))?;
    Ok(json(StatusCode::CREATED, &ReviewView::from(review)))
}

/// Reply of `POST /api/v1/voice-sessions/{id}/evaluate`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvaluateReply {
    /// The evaluation job for (session, current rubric).
    pub job_id: String,
    /// `pending`, `running`, `done`, `failed`.
    pub status: String,
    /// Whether this request created the job (false: the rubric is unchanged since the last
    /// request, nothing is scored twice).
    pub created: bool,
    /// The evaluation, when the job is done.
    pub evaluation: Option<EvaluationDetailView>,
}

/// Scores a finished voice session again with its version's current rubric: 202 with the
/// job while it runs, 200 with the evaluation when the same rubric scored it already.
#[utoipa::path(post, path = "/api/v1/voice-sessions/{id}/evaluate", tag = "operator",
    params(("id" = String, Path, description = "Voice session id (`vs_…`)")),
    responses((status = 200, body = EvaluateReply, description = "already evaluated with this rubric"),
              (status = 202, body = EvaluateReply, description = "the evaluation is queued or running"),
              (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
              (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "the session is still live"),
              (status = 422, body = ErrorResponse, description = "`no_rubric`: its agent version has no rubric")))]
pub async fn evaluate_session(
    req: Request<AuthContext, (SessionId,)>,
) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        ..
    } = req;
    let evaluations = &state.actors.evaluations;
    let Rescore { job, evaluation } = evaluations.evaluate(&auth.tenant_id, &id).await?;
    let evaluation = match evaluation {
        Some(e) => evaluations
            .get(&auth.tenant_id, &e.id)
            .await
            .map_err(|e| store_error(&e))?
            .map(EvaluationDetailView::from),
        None => None,
    };
    let status = if evaluation.is_some() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(json(
        status,
        &EvaluateReply {
            job_id: job.id.into_string(),
            status: job.status.as_str().to_owned(),
            created: job.created,
            evaluation,
        },
    ))
}

/// Query of the evaluation summary.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    /// RFC 3339: sessions started at or after.
    #[param(format = "rfc3339")]
    pub from: Option<String>,
    /// RFC 3339: sessions started before.
    #[param(format = "rfc3339")]
    pub to: Option<String>,
}

/// A 95 % confidence interval.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntervalView {
    /// Lower bound (0–1).
    pub low: f64,
    /// Upper bound (0–1).
    pub high: f64,
}

/// The results of one criterion over the window.
#[derive(Debug, Serialize, ToSchema)]
pub struct CriterionRateView {
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
    /// `passed / (passed + failed)`.
    pub pass_rate: Option<f64>,
}

/// Agreement of the automatic verdict with the latest human review.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgreementView {
    /// Reviewed evaluations.
    pub pairs: u64,
    /// Of which the human agreed.
    pub agreed: u64,
    /// `agreed / pairs`.
    pub rate: f64,
    /// Cohen's kappa (null when both always gave one same verdict).
    pub kappa: Option<f64>,
}

/// The aggregates of an agent version over a window of session start times (the latest
/// evaluation of each session counts).
#[derive(Debug, Serialize, ToSchema)]
pub struct EvaluationSummaryView {
    /// The version.
    pub agent_version_id: String,
    /// RFC 3339, inclusive.
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    pub to: Option<String>,
    /// Evaluated calls.
    pub evaluated: i64,
    /// Of which passed.
    pub passed: i64,
    /// `passed / evaluated`.
    pub pass_rate: Option<f64>,
    /// The 95 % Wilson score interval of the pass rate.
    pub pass_rate_ci95: Option<IntervalView>,
    /// Mean score.
    pub mean_score: Option<f64>,
    /// Per criterion, by key.
    pub criteria: Vec<CriterionRateView>,
    /// Calls handed to a human.
    pub transferred: i64,
    /// `transferred / evaluated`.
    pub transfer_rate: Option<f64>,
    /// Calls whose session failed (AI or actor failure).
    pub errored: i64,
    /// `errored / evaluated`.
    pub error_rate: Option<f64>,
    /// Median first audio (ms).
    pub first_audio_p50_ms: Option<i64>,
    /// 95th percentile of first audio (ms).
    pub first_audio_p95_ms: Option<i64>,
    /// Judge–human agreement, where reviews exist.
    pub judge_agreement: Option<AgreementView>,
}

impl From<VersionSummary> for EvaluationSummaryView {
    fn from(s: VersionSummary) -> Self {
        EvaluationSummaryView {
            agent_version_id: s.agent_version_id,
            from: s.from_ms.map(rfc3339),
            to: s.to_ms.map(rfc3339),
            evaluated: s.evaluated,
            passed: s.passed,
            pass_rate: s.pass_rate,
            pass_rate_ci95: s.pass_rate_ci95.map(|i| IntervalView {
                low: i.low,
                high: i.high,
            }),
            mean_score: s.mean_score,
            criteria: s
                .criteria
                .into_iter()
                .map(|c| CriterionRateView {
                    key: c.key,
                    passed: c.passed,
                    failed: c.failed,
                    not_applicable: c.not_applicable,
                    error: c.error,
                    pass_rate: c.pass_rate,
                })
                .collect(),
            transferred: s.transferred,
            transfer_rate: s.transfer_rate,
            errored: s.errored,
            error_rate: s.error_rate,
            first_audio_p50_ms: s.first_audio_p50_ms,
            first_audio_p95_ms: s.first_audio_p95_ms,
            judge_agreement: s.judge_agreement.map(|a| AgreementView {
                pairs: a.pairs,
                agreed: a.agreed,
                rate: a.rate,
                kappa: a.kappa,
            }),
        }
    }
}

/// The evaluation aggregates of an agent version (what rollout guardrails read).
#[utoipa::path(get, path = "/api/v1/admin/agent-versions/{version_id}/evaluation-summary", tag = "admin",
    params(("version_id" = String, Path, description = "Version id"), SummaryParams),
    responses((status = 200, body = EvaluationSummaryView), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse)))]
pub async fn evaluation_summary(
    req: Request<AuditMeta, (AgentVersionId,)>,
) -> Result<Response, ApiError> {
    let p: SummaryParams = req.query()?;
    let Request {
        state, path: (id,), ..
    } = req;
    let (from_ms, to_ms) = window(p.from, p.to)?;
    let summary = state
        .actors
        .evaluations
        .summary_of(&id, from_ms, to_ms)
        .await
        .map_err(|e| store_error(&e))?
        .ok_or_else(|| ApiError::NotFound("agent version".into()))?;
    Ok(json(StatusCode::OK, &EvaluationSummaryView::from(summary)))
}
