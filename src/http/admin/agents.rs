//! Admin API for agents and agent versions (`/api/v1/admin/agents…`,
//! `/api/v1/admin/agent-versions/…`): drafts are editable, approval freezes a version,
//! retirement takes it out of use. A version written without a model or voice takes its
//! tenant's runtime-config defaults, then the service's (`gpt-realtime`, `marin`).

use actors::ids::{AgentId, AgentVersionId, TenantId};
use actors::rollout::{NewAgent, RolloutError, RolloutMsg, VersionSpec};
use actors::store::{Agent, AgentVersion, RuntimeConfig, StoreError, TurnDetection, VersionStatus};
use actors::tenant::AuditMeta;
use actors::time::rfc3339;
use ractor::call_t;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::http::StatusCode;
use warp::reply::Response;

use super::contract::{
    EscalationDto, IdentityDto, ToolDto, contract_from, escalation_view, identity_view, tools_view,
};
use super::rubric::{RubricDto, rubric_from, rubric_view};
use super::{check_name, json};
use crate::http::ErrorResponse;
use crate::http::fields;
use crate::http::filters::parse_json;
use crate::http::mount::Request;
use crate::http::page::List;
use crate::http::{ApiError, AppState};

impl From<RolloutError> for ApiError {
    fn from(e: RolloutError) -> Self {
        match e {
            RolloutError::NotFound(what) => ApiError::NotFound(what.to_owned()),
            RolloutError::Conflict(m) => ApiError::Conflict(m),
            RolloutError::NoVersion(m) => ApiError::invalid("agent_version_id", m),
            RolloutError::Forbidden(code, message) => ApiError::Forbidden { code, message },
            RolloutError::Invalid(field, m) => ApiError::invalid(field, m),
            RolloutError::Store(e) => store_error(e),
        }
    }
}

impl AppState {
    /// The rollout actor, or 503 while it is down.
    pub fn rollout_actor(&self) -> Result<actors::singleton::Mailbox<RolloutMsg>, ApiError> {
        self.actors.rollout.get().ok_or_else(|| {
            ApiError::Unavailable("agent service is restarting; retry shortly".into())
        })
    }
}

/// An agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    /// Identifier (`agt_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Key used by routes and `make-call`.
    pub key: String,
    /// Display name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
}

impl From<Agent> for AgentView {
    fn from(a: Agent) -> Self {
        AgentView {
            id: a.id.into_string(),
            tenant_id: a.tenant_id.into_string(),
            key: a.key,
            name: a.name,
            created_at: rfc3339(a.created_at),
        }
    }
}

/// Body of `POST /api/v1/admin/agents`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentRequest {
    /// Owning tenant.
    #[schema(pattern = r"^ten_[A-Za-z0-9_-]{1,64}$")]
    pub tenant_id: String,
    /// Key (letters, digits, `-`, `_`; unique per tenant).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,100}$")]
    pub key: String,
    /// Display name.
    #[schema(min_length = 1, max_length = 200, format = "label")]
    pub name: String,
}

/// Filter of the agent listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgentParams {
    /// Only this tenant's agents (`ten_…`).
    #[param(pattern = r"^ten_[A-Za-z0-9_-]{1,64}$")]
    pub tenant_id: Option<String>,
}

/// Input transcription settings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TranscriptionDto {
    /// e.g. `gpt-4o-mini-transcribe`.
    pub model: String,
    /// ISO-639-1, e.g. `en`.
    pub language: Option<String>,
}

/// Turn detection settings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TurnDetectionDto {
    /// Energy-based VAD.
    ServerVad {
        /// 0–1 (default 0.5).
        threshold: Option<f64>,
        /// Default 300.
        prefix_padding_ms: Option<u32>,
        /// Default 500.
        silence_duration_ms: Option<u32>,
    },
    /// Model-based end of turn.
    SemanticVad {
        /// `low`, `medium`, `high`, `auto` (default `auto`).
        eagerness: Option<String>,
    },
}

/// The schema of `turn_detection` as the server reads it: one of the two kinds, no other
/// field (utoipa leaves a tagged variant open), each bound as `spec` checks it.
fn turn_detection_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{
        AdditionalProperties, ObjectBuilder, OneOfBuilder, SchemaType, Type,
    };
    let kind = |name: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some([name]))
    };
    let nullable = |t: Type| SchemaType::from_iter([t, Type::Null]);
    let server_vad = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("Energy-based VAD."))
        .property("type", kind("server_vad"))
        .required("type")
        .property(
            "threshold",
            ObjectBuilder::new()
                .schema_type(nullable(Type::Number))
                .minimum(Some(0.0))
                .maximum(Some(1.0))
                .description(Some("0–1 (default 0.5).")),
        )
        .property(
            "prefix_padding_ms",
            ObjectBuilder::new()
                .schema_type(nullable(Type::Integer))
                .minimum(Some(0))
                .maximum(Some(u32::MAX))
                .description(Some("Default 300 (at most 2000 is used).")),
        )
        .property(
            "silence_duration_ms",
            ObjectBuilder::new()
                .schema_type(nullable(Type::Integer))
                .minimum(Some(100))
                .maximum(Some(5000))
                .description(Some("100–5000 (default 500).")),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    let semantic_vad = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("Model-based end of turn."))
        .property("type", kind("semantic_vad"))
        .required("type")
        .property(
            "eagerness",
            ObjectBuilder::new()
                .schema_type(nullable(Type::String))
                .enum_values(Some([
                    Some("low"),
                    Some("medium"),
                    Some("high"),
                    Some("auto"),
                    None,
                ]))
                .description(Some("`low`, `medium`, `high`, `auto` (default `auto`).")),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    let oneof = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(server_vad)
        .item(semantic_vad)
        .description(Some(
            "Turn detection (default server VAD); `null` for the default.",
        ))
        .build();
    utoipa::openapi::schema::Schema::OneOf(oneof)
}

/// Content of an agent version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionRequest {
    /// Realtime model (default: the tenant's runtime-config model, else `gpt-realtime`).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,100}$")]
    pub model: Option<String>,
    /// Voice (default: the tenant's runtime-config voice, else `marin`).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,100}$")]
    pub voice: Option<String>,
    /// System instructions (1–20000 characters).
    #[schema(min_length = 1, max_length = 20000, format = "not-blank")]
    pub instructions: String,
    /// First sentence the agent says.
    pub greeting: Option<String>,
    /// What an outbound call with `machine_detection.action` `voicemail` leaves on an
    /// answering machine after the beep (1–1000 characters); such a call needs it.
    #[schema(min_length = 1, max_length = 1000, format = "text")]
    pub voicemail_message: Option<String>,
    /// Input transcription (default `gpt-4o-mini-transcribe`).
    pub transcription: Option<TranscriptionDto>,
    /// Turn detection (default server VAD).
    #[schema(schema_with = turn_detection_schema)]
    pub turn_detection: Option<TurnDetectionDto>,
    /// Longest call in seconds (30–14400, default 1800).
    #[schema(minimum = 30, maximum = 14400)]
    pub max_call_seconds: Option<i64>,
    /// Caller silence before the agent ends the call, in seconds (5–600, default 30).
    #[schema(minimum = 5, maximum = 600)]
    pub idle_timeout_seconds: Option<i64>,
    /// Tools the model may call (webhooks and built-ins).
    pub tools: Option<Vec<ToolDto>>,
    /// Escalation rules, enforced by the runtime.
    pub escalation: Option<EscalationDto>,
    /// The identity check behind `verify_identity`.
    pub identity: Option<IdentityDto>,
    /// What the version's calls are scored against (every finished call is evaluated).
    pub rubric: Option<RubricDto>,
    /// Whether the version's calls are recorded (omit: the phone route's policy applies,
    /// else `off`; outbound calls follow the version only).
    pub recording_policy: Option<crate::http::recordings::RecordingPolicyDto>,
    /// Under `on_with_disclosure`, the line the agent says before anything else (default:
    /// "This call is recorded for quality and training.").
    #[schema(min_length = 1, max_length = 500, format = "label")]
    pub recording_disclosure: Option<String>,
}

/// An agent version.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    /// Identifier (`agv_…`).
    pub id: String,
    /// Agent.
    pub agent_id: String,
    /// Agent key.
    pub agent_key: String,
    /// Tenant.
    pub tenant_id: String,
    /// 1, 2, …
    pub version: i64,
    /// `draft`, `approved`, `retired`.
    pub status: String,
    /// Model.
    pub model: String,
    /// Voice.
    pub voice: String,
    /// Instructions.
    pub instructions: String,
    /// Greeting.
    pub greeting: Option<String>,
    /// Left on an answering machine (`machine_detection.action` `voicemail`).
    pub voicemail_message: Option<String>,
    /// Transcription.
    pub transcription: Option<TranscriptionDto>,
    /// Turn detection.
    #[schema(value_type = Object)]
    pub turn_detection: serde_json::Value,
    /// Longest call.
    pub max_call_seconds: i64,
    /// Caller silence limit.
    pub idle_timeout_seconds: i64,
    /// Tools.
    pub tools: Vec<ToolDto>,
    /// Escalation rules.
    pub escalation: EscalationDto,
    /// Identity check.
    pub identity: Option<IdentityDto>,
    /// The evaluation rubric.
    pub rubric: Option<RubricDto>,
    /// Hex SHA-256 of the rubric's canonical JSON (what evaluations name).
    pub rubric_hash: Option<String>,
    /// Whether the version's calls are recorded (`null`: the route's policy applies).
    pub recording_policy: Option<crate::http::recordings::RecordingPolicyDto>,
    /// The disclosure line (`null`: the default, under `on_with_disclosure`).
    pub recording_disclosure: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub approved_at: Option<String>,
    /// RFC 3339.
    pub retired_at: Option<String>,
}

impl From<AgentVersion> for VersionView {
    fn from(v: AgentVersion) -> Self {
        VersionView {
            id: v.id.into_string(),
            agent_id: v.agent_id.into_string(),
            agent_key: v.agent_key,
            tenant_id: v.tenant_id.into_string(),
            version: v.version,
            status: v.status.as_str().to_owned(),
            model: v.model,
            voice: v.voice,
            instructions: v.instructions,
            greeting: v.greeting,
            voicemail_message: v.voicemail_message,
            transcription: v.transcription_model.map(|model| TranscriptionDto {
                model,
                language: v.transcription_language,
            }),
            turn_detection: serde_json::to_value(&v.turn_detection).unwrap_or_default(),
            max_call_seconds: v.max_call_seconds,
            idle_timeout_seconds: v.idle_timeout_seconds,
            tools: tools_view(&v.contract),
            escalation: escalation_view(&v.contract),
            identity: identity_view(&v.contract),
            rubric: v.rubric.as_ref().and_then(rubric_view),
            rubric_hash: v.rubric.as_ref().map(actors::evaluation::Rubric::hash),
            recording_policy: v.recording_policy.map(Into::into),
            recording_disclosure: v.recording_disclosure,
            created_at: rfc3339(v.created_at),
            approved_at: v.approved_at.map(rfc3339),
            retired_at: v.retired_at.map(rfc3339),
        }
    }
}

fn token(field: &str, v: &str) -> Result<String, ApiError> {
    let ok = !v.is_empty()
        && v.len() <= 100
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(ApiError::invalid(
            field,
            "must be 1 to 100 of letters, digits and . _ -",
        ))
    }
}

fn store_error(e: StoreError) -> ApiError {
    ApiError::Internal(format!("store: {e:?}"))
}

/// Defaults of a version's model and voice: its agent's tenant's runtime config. An unknown
/// agent has none (the rollout actor answers 404 for it).
async fn tenant_defaults(state: &AppState, agent: &AgentId) -> Result<RuntimeConfig, ApiError> {
    let Some(agent) = state.store.get_agent(agent).await.map_err(store_error)? else {
        return Ok(RuntimeConfig::default());
    };
    Ok(state
        .store
        .get_tenant(&agent.tenant_id)
        .await
        .map_err(store_error)?
        .map(|t| t.runtime_config)
        .unwrap_or_default())
}

fn spec(
    state: &AppState,
    r: VersionRequest,
    defaults: &RuntimeConfig,
) -> Result<VersionSpec, ApiError> {
    let contract = contract_from(r.tools, r.escalation, r.identity, &|url| {
        state.check_tenant_url(url)
    })?;
    let rubric = r
        .rubric
        .map(|dto| rubric_from(dto, &contract))
        .transpose()?;
    // The length as sent, as the documents bound it; the instructions kept are trimmed.
    let too_long = r.instructions.chars().count() > 20_000;
    let instructions = r.instructions.trim().to_owned();
    if instructions.is_empty() || too_long {
        return Err(ApiError::invalid(
            "instructions",
            "must be 1 to 20000 characters",
        ));
    }
    let turn_detection = match r.turn_detection {
        None => TurnDetection::default(),
        Some(TurnDetectionDto::ServerVad {
            threshold,
            prefix_padding_ms,
            silence_duration_ms,
        }) => {
            let threshold = threshold.unwrap_or(0.5);
            if !(0.0..=1.0).contains(&threshold) {
                return Err(ApiError::invalid(
                    "turn_detection.threshold",
                    "must be between 0 and 1",
                ));
            }
            let silence = silence_duration_ms.unwrap_or(500);
            if !(100..=5000).contains(&silence) {
                return Err(ApiError::invalid(
                    "turn_detection.silence_duration_ms",
                    "must be between 100 and 5000",
                ));
            }
            TurnDetection::ServerVad {
                threshold,
                prefix_padding_ms: prefix_padding_ms.unwrap_or(300).min(2000),
                silence_duration_ms: silence,
            }
        }
        Some(TurnDetectionDto::SemanticVad { eagerness }) => {
            let eagerness = eagerness.unwrap_or_else(|| "auto".into());
            if !["low", "medium", "high", "auto"].contains(&eagerness.as_str()) {
                return Err(ApiError::invalid(
                    "turn_detection.eagerness",
                    "must be low, medium, high or auto",
                ));
            }
            TurnDetection::SemanticVad { eagerness }
        }
    };
    let max_call_seconds = r.max_call_seconds.unwrap_or(1800);
    if !(30..=14_400).contains(&max_call_seconds) {
        return Err(ApiError::invalid(
            "max_call_seconds",
            "must be between 30 and 14400",
        ));
    }
    let idle_timeout_seconds = r.idle_timeout_seconds.unwrap_or(30);
    if !(5..=600).contains(&idle_timeout_seconds) {
        return Err(ApiError::invalid(
            "idle_timeout_seconds",
            "must be between 5 and 600",
        ));
    }
    let transcription = r.transcription.unwrap_or(TranscriptionDto {
        model: "gpt-4o-mini-transcribe".into(),
        language: None,
    });
    Ok(VersionSpec {
        model: token(
            "model",
            r.model
                .as_deref()
                .or(defaults.model.as_deref())
                .unwrap_or("gpt-realtime"),
        )?,
        voice: token(
            "voice",
            r.voice
                .as_deref()
                .or(defaults.voice.as_deref())
                .unwrap_or("marin"),
        )?,
        instructions,
        greeting: r
            .greeting
            .as_deref()
            .map(|g| check_name("greeting", g, 1000))
            .transpose()?,
        voicemail_message: r
            .voicemail_message
            .as_deref()
            .map(|m| check_name("voicemail_message", m, 1000))
            .transpose()?,
        transcription_model: Some(token("transcription.model", &transcription.model)?),
        transcription_language: transcription
            .language
            .as_deref()
            .map(|l| token("transcription.language", l))
            .transpose()?,
        turn_detection,
        max_call_seconds,
        idle_timeout_seconds,
        contract,
        rubric,
        recording_policy: r.recording_policy.map(Into::into),
        recording_disclosure: r
            .recording_disclosure
            .as_deref()
            .map(|d| check_name("recording_disclosure", d, 500))
            .transpose()?,
    })
}

/// Lists agents.
#[utoipa::path(get, path = "/api/v1/admin/agents", tag = "admin", params(AgentParams),
    responses((status = 200, body = List<AgentView>), (status = 400, body = ErrorResponse)))]
pub async fn list_agents(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let p: AgentParams = req.query()?;
    let state = req.state;
    let tenant = p
        .tenant_id
        .map(|t| {
            TenantId::parse(&t).ok_or_else(|| ApiError::BadRequest {
                code: "invalid_query",
                message: "tenant_id is not a tenant id".into(),
                field: Some("tenant_id".into()),
            })
        })
        .transpose()?;
    let agents = call_t!(
        state.rollout_actor()?,
        RolloutMsg::ListAgents,
        state.actor_timeout_ms(),
        tenant
    )??;
    Ok(json(
        StatusCode::OK,
        &List::new(agents.into_iter().map(AgentView::from)),
    ))
}

/// Creates an agent.
#[utoipa::path(post, path = "/api/v1/admin/agents", tag = "admin", request_body = CreateAgentRequest,
    responses((status = 201, body = AgentView), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn create_agent(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        body,
        ..
    } = req;
    let r: CreateAgentRequest = parse_json(&body)?;
    let new = NewAgent {
        tenant_id: TenantId::parse(&r.tenant_id)
            .ok_or_else(|| ApiError::invalid("tenant_id", "is not a tenant id"))?,
        key: token("key", &r.key)?,
        name: fields::label("name", &r.name, 200)?.into_string(),
    };
    let agent = call_t!(
        state.rollout_actor()?,
        RolloutMsg::CreateAgent,
        state.actor_timeout_ms(),
        new,
        meta
    )??;
    Ok(json(StatusCode::CREATED, &AgentView::from(agent)))
}

/// Reads an agent.
#[utoipa::path(get, path = "/api/v1/admin/agents/{agent_id}", tag = "admin",
    params(("agent_id" = String, Path, description = "Agent id")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorResponse)))]
pub async fn get_agent(req: Request<AuditMeta, (AgentId,)>) -> Result<Response, ApiError> {
    let Request {
        state, path: (id,), ..
    } = req;
    let agent = call_t!(
        state.rollout_actor()?,
        RolloutMsg::GetAgent,
        state.actor_timeout_ms(),
        id
    )??;
    Ok(json(StatusCode::OK, &AgentView::from(agent)))
}

/// Lists an agent's versions.
#[utoipa::path(get, path = "/api/v1/admin/agents/{agent_id}/versions", tag = "admin",
    params(("agent_id" = String, Path, description = "Agent id")),
    responses((status = 200, body = List<VersionView>), (status = 404, body = ErrorResponse)))]
pub async fn list_versions(req: Request<AuditMeta, (AgentId,)>) -> Result<Response, ApiError> {
    let Request {
        state, path: (id,), ..
    } = req;
    let actor = state.rollout_actor()?;
    call_t!(
        actor,
        RolloutMsg::GetAgent,
        state.actor_timeout_ms(),
        id.clone()
    )??;
    let versions = call_t!(
        actor,
        RolloutMsg::ListVersions,
        state.actor_timeout_ms(),
        id
    )??;
    Ok(json(
        StatusCode::OK,
        &List::new(versions.into_iter().map(VersionView::from)),
    ))
}

/// Creates a draft version of an agent.
#[utoipa::path(post, path = "/api/v1/admin/agents/{agent_id}/versions", tag = "admin", request_body = VersionRequest,
    params(("agent_id" = String, Path, description = "Agent id")),
    responses((status = 201, body = VersionView), (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn create_version(req: Request<AuditMeta, (AgentId,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        body,
        ..
    } = req;
    let r: VersionRequest = parse_json(&body)?;
    let defaults = tenant_defaults(&state, &id).await?;
    let spec = spec(&state, r, &defaults)?;
    let v = call_t!(
        state.rollout_actor()?,
        RolloutMsg::CreateVersion,
        state.actor_timeout_ms(),
        id,
        spec,
        meta
    )??;
    Ok(json(StatusCode::CREATED, &VersionView::from(v)))
}

/// Reads a version.
#[utoipa::path(get, path = "/api/v1/admin/agent-versions/{version_id}", tag = "admin",
    params(("version_id" = String, Path, description = "Version id")),
    responses((status = 200, body = VersionView), (status = 404, body = ErrorResponse)))]
pub async fn get_version(req: Request<AuditMeta, (AgentVersionId,)>) -> Result<Response, ApiError> {
    let Request {
        state, path: (id,), ..
    } = req;
    let v = call_t!(
        state.rollout_actor()?,
        RolloutMsg::GetVersion,
        state.actor_timeout_ms(),
        id
    )??;
    Ok(json(StatusCode::OK, &VersionView::from(v)))
}

/// Replaces a draft version's content (409 once approved: make a new version instead).
#[utoipa::path(put, path = "/api/v1/admin/agent-versions/{version_id}", tag = "admin", request_body = VersionRequest,
    params(("version_id" = String, Path, description = "Version id")),
    responses((status = 200, body = VersionView), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn put_version(req: Request<AuditMeta, (AgentVersionId,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        body,
        ..
    } = req;
    let r: VersionRequest = parse_json(&body)?;
    let defaults = match state.store.get_version(&id).await.map_err(store_error)? {
        Some(v) => tenant_defaults(&state, &v.agent_id).await?,
        None => RuntimeConfig::default(),
    };
    let spec = spec(&state, r, &defaults)?;
    let v = call_t!(
        state.rollout_actor()?,
        RolloutMsg::UpdateVersion,
        state.actor_timeout_ms(),
        id,
        spec,
        meta
    )??;
    Ok(json(StatusCode::OK, &VersionView::from(v)))
}

async fn transition(
    req: Request<AuditMeta, (AgentVersionId,)>,
    to: VersionStatus,
) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        ..
    } = req;
    let actor = state.rollout_actor()?;
    let v = match to {
        VersionStatus::Approved => call_t!(
            actor,
            RolloutMsg::Approve,
            state.actor_timeout_ms(),
            id,
            meta
        )??,
        _ => call_t!(
            actor,
            RolloutMsg::Retire,
            state.actor_timeout_ms(),
            id,
            meta
        )??,
    };
    Ok(json(StatusCode::OK, &VersionView::from(v)))
}

/// Approves a draft: it becomes immutable and the agent's current version. Needs the
/// `approver` role; when the tenant requires two-person approval, an identity other than the
/// version's author (403 `two_person_approval`).
#[utoipa::path(post, path = "/api/v1/admin/agent-versions/{version_id}/approve", tag = "admin",
    params(("version_id" = String, Path, description = "Version id")),
    responses((status = 200, body = VersionView), (status = 403, body = ErrorResponse, description = "the identity lacks the `approver` role (`insufficient_role`), or authored the version under the tenant's two-person rule (`two_person_approval`)"),
              (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn approve_version(
    req: Request<AuditMeta, (AgentVersionId,)>,
) -> Result<Response, ApiError> {
    transition(req, VersionStatus::Approved).await
}

/// Retires a version: no new call runs it.
#[utoipa::path(post, path = "/api/v1/admin/agent-versions/{version_id}/retire", tag = "admin",
    params(("version_id" = String, Path, description = "Version id")),
    responses((status = 200, body = VersionView), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn retire_version(
    req: Request<AuditMeta, (AgentVersionId,)>,
) -> Result<Response, ApiError> {
    transition(req, VersionStatus::Retired).await
}
