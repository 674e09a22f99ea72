//! Admin API for canary rollouts (DESIGN §6): an agent's rollout policy
//! (`PUT /api/v1/admin/agents/{id}/rollout-policy`), the actions on it
//! (`POST …/rollout/{start|advance|pause|rollback|promote}`, each with a reason), and the
//! governance view (`GET /api/v1/admin/rollout-governance?tenant_id=`). The rollout actor
//! validates against the store and writes every change with its audit row; these handlers
//! only read the request and render.

use actors::ids::{AgentId, AgentVersionId, TenantId};
use actors::rollout::guardrails::{Check, CheckStatus, Guardrails};
use actors::rollout::{Action, AgentGovernance, PolicySpec, RolloutMsg};
use actors::store::{RolloutDecision, RolloutPolicy, Stage};
use actors::tenant::AuditMeta;
use actors::time::rfc3339;
use ractor::call_t;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::http::StatusCode;
use warp::reply::Response;

use super::json;
use crate::http::ErrorResponse;
use crate::http::filters::parse_json;
use crate::http::mount::Request;
use crate::http::page::List;
use crate::http::{ApiError, AppState};

/// Longest reason kept.
const MAX_REASON: usize = 1000;

/// One stage of a canary.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageDto {
    /// Share of callers on the canary (1–100, rising from stage to stage).
    #[schema(minimum = 1, maximum = 100)]
    pub percent: u8,
    /// Evaluated canary calls in this stage before it advances (default 0).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000)]
    pub min_evaluated_calls: i64,
    /// Seconds in this stage before it advances (default 0).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 31536000)]
    pub min_seconds: i64,
}

/// Guardrail thresholds (every field optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuardrailsDto {
    /// Checked at all (default true).
    pub enabled: Option<bool>,
    /// Evaluated calls per arm before a guardrail decides (default 20).
    pub min_sample: Option<i64>,
    /// Canary pass rate may be worse than stable's by at most this (one-sided 95 % test;
    /// default 0.05).
    pub pass_rate_delta: Option<f64>,
    /// Canary transfer rate ≤ stable's + this (default 0.05).
    pub transfer_rate_delta: Option<f64>,
    /// Highest AI/actor error rate (default 0.05).
    pub max_error_rate: Option<f64>,
    /// Highest first-audio p95 in ms (default 1500).
    pub max_first_audio_p95_ms: Option<i64>,
}

impl GuardrailsDto {
    fn into_guardrails(self) -> Guardrails {
        let d = Guardrails::default();
        Guardrails {
            enabled: self.enabled.unwrap_or(d.enabled),
            min_sample: self.min_sample.unwrap_or(d.min_sample),
            pass_rate_delta: self.pass_rate_delta.unwrap_or(d.pass_rate_delta),
            transfer_rate_delta: self.transfer_rate_delta.unwrap_or(d.transfer_rate_delta),
            max_error_rate: self.max_error_rate.unwrap_or(d.max_error_rate),
            max_first_audio_p95_ms: self
                .max_first_audio_p95_ms
                .unwrap_or(d.max_first_audio_p95_ms),
        }
    }
}

/// An agent's rollout policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    /// The version most callers get (approved, of this agent).
    #[schema(pattern = r"^agv_[A-Za-z0-9_-]{1,64}$")]
    pub stable_version_id: String,
    /// The version under trial (approved, of this agent, not the stable one).
    #[schema(pattern = r"^agv_[A-Za-z0-9_-]{1,64}$")]
    pub canary_version_id: Option<String>,
    /// The stage schedule (required with a canary).
    #[serde(default)]
    pub stages: Vec<StageDto>,
    /// Promote after the last stage without an admin (default false).
    #[serde(default)]
    pub auto_promote: bool,
    /// Guardrail thresholds (defaults per field).
    #[serde(default)]
    pub guardrails: GuardrailsDto,
    /// Why (required; audited).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 1000, format = "label")]
    pub reason: Option<String>,
}

/// A rollout action's reason.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// Why (required; audited and kept with the decision).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 1000, format = "label")]
    pub reason: Option<String>,
}

/// Guardrail thresholds in effect.
#[derive(Debug, Serialize, ToSchema)]
pub struct GuardrailsView {
    /// Checked at all.
    pub enabled: bool,
    /// Evaluated calls per arm before a guardrail decides.
    pub min_sample: i64,
    /// Δ of the pass-rate test.
    pub pass_rate_delta: f64,
    /// Δ of the transfer rate.
    pub transfer_rate_delta: f64,
    /// Highest error rate.
    pub max_error_rate: f64,
    /// Highest first-audio p95 (ms).
    pub max_first_audio_p95_ms: i64,
}

impl From<&Guardrails> for GuardrailsView {
    fn from(g: &Guardrails) -> Self {
        Self {
            enabled: g.enabled,
            min_sample: g.min_sample,
            pass_rate_delta: g.pass_rate_delta,
            transfer_rate_delta: g.transfer_rate_delta,
            max_error_rate: g.max_error_rate,
            max_first_audio_p95_ms: g.max_first_audio_p95_ms,
        }
    }
}

/// A rollout policy and where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    /// The agent.
    pub agent_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The stable version.
    pub stable_version_id: String,
    /// The canary, if any.
    pub canary_version_id: Option<String>,
    /// The stage schedule.
    pub stages: Vec<StageDto>,
    /// Promotes by itself after the last stage.
    pub auto_promote: bool,
    /// The salt of the sticky assignment: a caller is on the canary when
    /// `SHA-256(salt ‖ 0x00 ‖ E.164)`'s first 8 bytes (big-endian) mod 10,000 is below
    /// `canary_percent × 100`.
    pub assignment_salt: String,
    /// Thresholds.
    pub guardrails: GuardrailsView,
    /// `stable_only`, `canarying`, `halted` or `promoted`.
    pub state: String,
    /// The current stage (0-based).
    pub stage: usize,
    /// Share of callers on the canary now.
    pub canary_percent: u8,
    /// RFC 3339, when the current stage started.
    pub stage_started_at: Option<String>,
    /// RFC 3339, when the canary started (the guardrails' window).
    pub canary_started_at: Option<String>,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<&RolloutPolicy> for PolicyView {
    fn from(p: &RolloutPolicy) -> Self {
        Self {
            agent_id: p.agent_id.to_string(),
            tenant_id: p.tenant_id.to_string(),
            stable_version_id: p.stable_version_id.to_string(),
            canary_version_id: p.canary_version_id.as_ref().map(ToString::to_string),
            stages: p
                .stages
                .iter()
                .map(|s| StageDto {
                    percent: s.percent,
                    min_evaluated_calls: s.min_evaluated_calls,
                    min_seconds: s.min_seconds,
                })
                .collect(),
            auto_promote: p.auto_promote,
            assignment_salt: p.salt.clone(),
            guardrails: GuardrailsView::from(&p.guardrails),
            state: p.state.as_str().to_owned(),
            stage: p.stage_index,
            canary_percent: p.canary_percent(),
            stage_started_at: p.stage_started_at.map(rfc3339),
            canary_started_at: p.canary_started_at.map(rfc3339),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

/// One guardrail's value against its threshold.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckView {
    /// `pass_rate`, `transfer_rate`, `error_rate` or `first_audio_p95_ms`.
    pub guardrail: String,
    /// The canary's value.
    pub value: Option<f64>,
    /// Stable's value, where compared.
    pub baseline: Option<f64>,
    /// The threshold.
    pub threshold: f64,
    /// For `pass_rate`: the upper one-sided 95 % bound of `p_canary − p_stable` (breach
    /// below −Δ).
    pub bound: Option<f64>,
    /// The canary's sample.
    pub canary_sample: i64,
    /// Stable's sample, where compared.
    pub stable_sample: Option<i64>,
    /// The minimum sample.
    pub min_sample: i64,
    /// `pass`, `breach` or `insufficient`.
    pub status: String,
}

impl From<&Check> for CheckView {
    fn from(c: &Check) -> Self {
        Self {
            guardrail: c.guardrail.to_owned(),
            value: c.value,
            baseline: c.baseline,
            threshold: c.threshold,
            bound: c.bound,
            canary_sample: c.canary_sample,
            stable_sample: c.stable_sample,
            min_sample: c.min_sample,
            status: match c.status {
                CheckStatus::Pass => "pass",
                CheckStatus::Breach => "breach",
                CheckStatus::Insufficient => "insufficient",
            }
            .to_owned(),
        }
    }
}

/// A decision on a rollout.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionView {
    /// Identifier (`rod_…`).
    pub id: String,
    /// `start`, `advance`, `pause`, `rollback`, `promote`, `auto_rollback`, `auto_advance`,
    /// `auto_promote`.
    pub action: String,
    /// The admin identity, or `system`.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// State before.
    pub from_state: String,
    /// State after.
    pub to_state: String,
    /// Stable version after.
    pub stable_version_id: String,
    /// Canary after.
    pub canary_version_id: Option<String>,
    /// Canary share after.
    pub canary_percent: i64,
    /// The guardrails it was taken on (values, thresholds, samples); null when none had
    /// started.
    #[schema(value_type = Object)]
    pub guardrails: serde_json::Value,
    /// RFC 3339.
    pub created_at: String,
}

impl From<&RolloutDecision> for DecisionView {
    fn from(d: &RolloutDecision) -> Self {
        Self {
            id: d.id.to_string(),
            action: d.action.clone(),
            actor: d.actor.clone(),
            reason: d.reason.clone(),
            from_state: d.from_state.as_str().to_owned(),
            to_state: d.to_state.as_str().to_owned(),
            stable_version_id: d.stable_version_id.clone(),
            canary_version_id: d.canary_version_id.clone(),
            canary_percent: d.canary_percent,
            guardrails: d.evidence.clone(),
            created_at: rfc3339(d.created_at),
        }
    }
}

/// Share of new calls per arm.
#[derive(Debug, Serialize, ToSchema)]
pub struct SplitView {
    /// Percent on stable.
    pub stable: u8,
    /// Percent on the canary.
    pub canary: u8,
}

/// Live calls of one version.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveCallsView {
    /// The version.
    pub agent_version_id: String,
    /// Calls in progress.
    pub calls: i64,
}

/// One agent's rollout.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentRolloutView {
    /// The agent.
    pub agent_id: String,
    /// Its key.
    pub agent_key: String,
    /// The policy (null: every call runs the newest approved version).
    pub policy: Option<PolicyView>,
    /// `stable_only`, `canarying`, `halted`, `promoted` (`stable_only` without a policy).
    pub state: String,
    /// The current stage (0-based).
    pub stage: usize,
    /// The split of new calls.
    pub split: SplitView,
    /// Live calls per version.
    pub live_calls: Vec<LiveCallsView>,
    /// Every guardrail's value against its threshold (empty until a canary starts).
    pub guardrails: Vec<CheckView>,
    /// The latest decisions, newest first.
    pub decisions: Vec<DecisionView>,
}

impl From<AgentGovernance> for AgentRolloutView {
    fn from(g: AgentGovernance) -> Self {
        let percent = g.policy.as_ref().map_or(0, RolloutPolicy::canary_percent);
        Self {
            agent_id: g.agent.id.to_string(),
            agent_key: g.agent.key.clone(),
            state: g
                .policy
                .as_ref()
                .map_or("stable_only", |p| p.state.as_str())
                .to_owned(),
            stage: g.policy.as_ref().map_or(0, |p| p.stage_index),
            policy: g.policy.as_ref().map(PolicyView::from),
            split: SplitView {
                stable: 100 - percent,
                canary: percent,
            },
            live_calls: g
                .live_calls
                .into_iter()
                .map(|(agent_version_id, calls)| LiveCallsView {
                    agent_version_id,
                    calls,
                })
                .collect(),
            guardrails: g.guardrails.iter().map(CheckView::from).collect(),
            decisions: g.decisions.iter().map(DecisionView::from).collect(),
        }
    }
}

/// Query of the governance view.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GovernanceParams {
    /// The tenant (`ten_…`).
    #[param(pattern = r"^ten_[A-Za-z0-9_-]{1,64}$")]
    pub tenant_id: String,
}

/// The reason of an action: required, trimmed, at most 1000 characters (422 naming
/// `reason`).
fn reason(r: Option<String>) -> Result<String, ApiError> {
    let r = r.unwrap_or_default();
    // The length as sent, as the documents bound it; the reason kept is trimmed.
    let too_long = r.chars().count() > MAX_REASON;
    let r = r.trim().to_owned();
    if r.is_empty() {
        return Err(ApiError::invalid("reason", "is required"));
    }
    if too_long || r.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "reason",
            "must be at most 1000 characters without control characters",
        ));
    }
    Ok(r)
}

fn version_id(field: &str, v: &str) -> Result<AgentVersionId, ApiError> {
    AgentVersionId::parse(v).ok_or_else(|| ApiError::invalid(field, "is not an agent version id"))
}

/// Writes an agent's rollout policy.
#[utoipa::path(put, path = "/api/v1/admin/agents/{agent_id}/rollout-policy", tag = "admin",
    request_body = PolicyRequest,
    params(("agent_id" = String, Path, description = "Agent id")),
    responses((status = 200, body = PolicyView), (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn put_rollout_policy(req: Request<AuditMeta, (AgentId,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        body,
        ..
    } = req;
    let r: PolicyRequest = parse_json(&body)?;
    let spec = PolicySpec {
        stable_version_id: version_id("stable_version_id", &r.stable_version_id)?,
        canary_version_id: r
            .canary_version_id
            .as_deref()
            .map(|v| version_id("canary_version_id", v))
            .transpose()?,
        stages: r
            .stages
            .into_iter()
            .map(|s| Stage {
                percent: s.percent,
                min_evaluated_calls: s.min_evaluated_calls,
                min_seconds: s.min_seconds,
            })
            .collect(),
        auto_promote: r.auto_promote,
        guardrails: r.guardrails.into_guardrails(),
        reason: reason(r.reason)?,
    };
    let policy = call_t!(
        state.rollout_actor()?,
        RolloutMsg::PutPolicy,
        state.actor_timeout_ms(),
        id,
        spec,
        meta
    )??;
    Ok(json(StatusCode::OK, &PolicyView::from(&policy)))
}

async fn act(req: Request<AuditMeta, (AgentId,)>, action: Action) -> Result<Response, ApiError> {
    let r: ActionRequest = req.optional_json()?;
    let Request {
        state,
        auth: meta,
        path: (id,),
        ..
    } = req;
    let why = reason(r.reason)?;
    let policy = call_t!(
        state.rollout_actor()?,
        RolloutMsg::Act,
        state.actor_timeout_ms(),
        id,
        action,
        why,
        meta
    )??;
    Ok(json(StatusCode::OK, &PolicyView::from(&policy)))
}

/// Starts (or resumes) the canary at its current stage.
#[utoipa::path(post, path = "/api/v1/admin/agents/{agent_id}/rollout/start", tag = "admin",
    request_body = ActionRequest, params(("agent_id" = String, Path, description = "Agent id")),
    responses((status = 200, body = PolicyView), (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn rollout_start(req: Request<AuditMeta, (AgentId,)>) -> Result<Response, ApiError> {
    act(req, Action::Start).await
}

/// Moves the canary to its next stage (after the last: promotes it).
#[utoipa::path(post, path = "/api/v1/admin/agents/{agent_id}/rollout/advance", tag = "admin",
    request_body = ActionRequest, params(("agent_id" = String, Path, description = "Agent id")),
    responses((status = 200, body = PolicyView), (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn rollout_advance(req: Request<AuditMeta, (AgentId,)>) -> Result<Response, ApiError> {
    act(req, Action::Advance).await
}

/// Halts the canary, keeping its stage: new calls go to stable, live calls finish.
#[utoipa::path(post, path = "/api/v1/admin/agents/{agent_id}/rollout/pause", tag = "admin",
    request_body = ActionRequest, params(("agent_id" = String, Path, description = "Agent id")),
    responses((status = 200, body = PolicyView), (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn rollout_pause(req: Request<AuditMeta, (AgentId,)>) -> Result<Response, ApiError> {
    act(req, Action::Pause).await
}

/// Rolls the canary back: halted, its schedule reset; emits `voice.rollout.rolled_back`.
#[utoipa::path(post, path = "/api/v1/admin/agents/{agent_id}/rollout/rollback", tag = "admin",
    request_body = ActionRequest, params(("agent_id" = String, Path, description = "Agent id")),
    responses((status = 200, body = PolicyView), (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn rollout_rollback(req: Request<AuditMeta, (AgentId,)>) -> Result<Response, ApiError> {
    act(req, Action::Rollback).await
}

/// Makes the canary the stable version; emits `voice.rollout.promoted`.
#[utoipa::path(post, path = "/api/v1/admin/agents/{agent_id}/rollout/promote", tag = "admin",
    request_body = ActionRequest, params(("agent_id" = String, Path, description = "Agent id")),
    responses((status = 200, body = PolicyView), (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn rollout_promote(req: Request<AuditMeta, (AgentId,)>) -> Result<Response, ApiError> {
    act(req, Action::Promote).await
}

/// Per agent of a tenant: its rollout policy, state, stage, split, live calls per
/// version, every guardrail against its threshold with sample sizes, and the latest
/// decisions with their reasons.
#[utoipa::path(get, path = "/api/v1/admin/rollout-governance", tag = "admin",
    params(GovernanceParams),
    responses((status = 200, body = List<AgentRolloutView>), (status = 400, body = ErrorResponse),
        (status = 404, body = ErrorResponse)))]
pub async fn rollout_governance(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let p: GovernanceParams = req.query()?;
    let state: AppState = req.state;
    let bad = |message: &str| ApiError::BadRequest {
        code: "invalid_query",
        message: message.into(),
        field: Some("tenant_id".into()),
    };
    let tenant =
        TenantId::parse(&p.tenant_id).ok_or_else(|| bad("tenant_id is not a tenant id"))?;
    if state
        .store
        .get_tenant(&tenant)
        .await
        .map_err(|e| ApiError::from(actors::rollout::RolloutError::Store(e)))?
        .is_none()
    {
        return Err(ApiError::NotFound("tenant".into()));
    }
    let agents = call_t!(
        state.rollout_actor()?,
        RolloutMsg::Governance,
        state.actor_timeout_ms(),
        tenant
    )??;
    Ok(json(
        StatusCode::OK,
        &List::new(agents.into_iter().map(AgentRolloutView::from)),
    ))
}
