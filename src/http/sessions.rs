//! Voice sessions (records) and active sessions (live calls): `GET /api/v1/voice-sessions`,
//! `GET /api/v1/voice-sessions/{id}`, `GET /api/v1/active-sessions`, one live call
//! `GET /api/v1/active-sessions/calls/{call_id}`, the Server-Sent Events stream
//! `GET /api/v1/active-sessions/stream` (`live_stream.rs`), and the admin view across
//! tenants. Live calls are the cluster's (`actors::active::LiveRegistry`): every node's.

use actors::active::LiveCall;
use actors::ids::{CallId, SessionId, TenantId};
use actors::store::{SessionFilter, TranscriptTurn, VoiceSession};
use actors::telephony::reads::{self, SessionDetail};
use actors::tenant::{AuditMeta, AuthContext};
use actors::time::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::Reply;
use warp::reply::Response;

use super::evaluations::EvaluationDetailView;
use super::filters::{Paging, parse_query};
use super::mount::Request;
use super::page::{List, Page};
use super::{ApiError, AppState};
use crate::http::ErrorResponse;

/// A voice session.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoiceSessionView {
    /// Identifier (`vs_…`).
    pub id: String,
    /// The call.
    pub call_id: String,
    /// Agent key.
    pub agent_key: Option<String>,
    /// Agent version.
    pub agent_version_id: Option<String>,
    /// Model.
    pub model: String,
    /// Voice.
    pub voice: String,
    /// Media stream.
    pub stream_id: Option<String>,
    /// `active`, `completed`, `failed`.
    pub status: String,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// First audio from the model (ms after the session started).
    pub first_audio_ms: Option<i64>,
    /// Token usage.
    pub usage: UsageView,
    /// AI reconnects.
    pub reconnects: i64,
    /// Summary.
    pub summary: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub ended_at: Option<String>,
}

/// Token usage of a session.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    /// Input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Total tokens.
    pub total_tokens: i64,
}

impl From<VoiceSession> for VoiceSessionView {
    fn from(s: VoiceSession) -> Self {
        VoiceSessionView {
            id: s.id.into_string(),
            call_id: s.call_id.into_string(),
            agent_key: s.agent_key,
            agent_version_id: s.agent_version_id,
            model: s.model,
            voice: s.voice,
            stream_id: s.stream_sid,
            status: s.status,
            end_reason: s.end_reason,
            first_audio_ms: s.first_audio_ms,
            usage: UsageView {
                input_tokens: s.input_tokens,
                output_tokens: s.output_tokens,
                total_tokens: s.total_tokens,
            },
            reconnects: s.reconnects,
            summary: s.summary,
            tags: s.tags,
            started_at: rfc3339(s.started_at),
            ended_at: s.ended_at.map(rfc3339),
        }
    }
}

/// One transcript turn.
#[derive(Debug, Serialize, ToSchema)]
pub struct TurnView {
    /// `user`, `assistant`, `system`.
    pub role: String,
    /// What was said.
    pub text: String,
    /// Offset from the session start (ms).
    pub start_ms: Option<i64>,
    /// Offset from the session start (ms).
    pub end_ms: Option<i64>,
    /// The caller barged in on this turn.
    pub interrupted: bool,
    /// The part the caller heard before barging in.
    pub heard_text: Option<String>,
}

impl From<TranscriptTurn> for TurnView {
    fn from(t: TranscriptTurn) -> Self {
        TurnView {
            role: t.role,
            text: t.text,
            start_ms: t.start_ms,
            end_ms: t.end_ms,
            interrupted: t.interrupted,
            heard_text: t.heard_text,
        }
    }
}

/// A voice session with its transcript.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoiceSessionDetail {
    /// The session.
    #[serde(flatten)]
    pub session: VoiceSessionView,
    /// Transcript, in order.
    pub transcript: Vec<TurnView>,
    /// Tool invocations, in order.
    pub function_calls: Vec<FunctionCallView>,
    /// Handoffs of the call to human queues, with their context.
    pub handoffs: Vec<HandoffView>,
    /// The session's latest evaluation (every criterion with its evidence, the reviews);
    /// null until it is evaluated or when its version has no rubric.
    pub evaluation: Option<EvaluationDetailView>,
}

/// One tool invocation of the model.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionCallView {
    /// Identifier (`fc_…`).
    pub id: String,
    /// The model's `call_id`.
    pub model_call_id: String,
    /// Tool name.
    pub name: String,
    /// `webhook`, `builtin` or `unknown`.
    pub kind: String,
    /// Arguments as the model sent them.
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
    /// `running`, `succeeded`, `failed`, `refused`, `invalid`, `timed_out`, `cancelled`.
    pub status: String,
    /// Result given to the model (JSON when it is JSON).
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Error given to the model.
    pub error: Option<String>,
    /// Milliseconds from start to result.
    pub latency_ms: Option<i64>,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: Option<String>,
}

/// A stored text as JSON when it is JSON, else as a JSON string.
pub(crate) fn json_or_text(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

impl From<actors::store::FunctionCall> for FunctionCallView {
    fn from(f: actors::store::FunctionCall) -> Self {
        FunctionCallView {
            arguments: json_or_text(&f.arguments),
            result: f.result.as_deref().map(json_or_text),
            id: f.id,
            model_call_id: f.model_call_id,
            name: f.name,
            kind: f.kind,
            status: f.status,
            error: f.error,
            latency_ms: f.latency_ms,
            started_at: rfc3339(f.started_at),
            finished_at: f.finished_at.map(rfc3339),
        }
    }
}

/// A handoff of the call to a human queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct HandoffView {
    /// Identifier (`ho_…`).
    pub id: String,
    /// Queue name.
    pub queue: Option<String>,
    /// Why.
    pub reason: String,
    /// What fired it: `tool:transfer_to_human`, `caller_asks_for_human`, `tool_failures`,
    /// `call_duration`, `intent:{name}`.
    pub rule: String,
    /// `dialing`, `answered`, `unanswered`, `closed`, `failed`.
    pub status: String,
    /// Twilio's `DialCallStatus`.
    pub dial_status: Option<String>,
    /// `bridged`, `callback_task`, `voicemail`, `agent`.
    pub outcome: Option<String>,
    /// The callback task created for it.
    pub callback_task_id: Option<String>,
    /// The context given to the human: reason, rule, summary, last turns, identity, caller.
    #[schema(value_type = Object)]
    pub context: serde_json::Value,
    /// RFC 3339.
    pub created_at: String,
    /// `cold` (a `<Dial>` of the queue) or `warm` (conference, whisper, accept or decline).
    pub transfer_mode: String,
    /// The warm transfer's state; `null` for a cold one.
    pub warm: Option<WarmTransferView>,
}

/// A warm transfer: the caller waited in `conference_name` while the operator heard the
/// whisper and decided.
#[derive(Debug, Serialize, ToSchema)]
pub struct WarmTransferView {
    /// `ringing`, then `accepted`, `declined`, `unanswered`, `abandoned` or `failed`.
    pub state: String,
    /// The conference's friendly name.
    pub conference_name: Option<String>,
    /// `CF…`, once the carrier reported it.
    pub conference_sid: Option<String>,
    /// The operator leg's `CallSid`.
    pub operator_call_sid: Option<String>,
    /// The number called.
    pub operator_number: Option<String>,
    /// When the operator heard the whisper (RFC 3339).
    pub whispered_at: Option<String>,
    /// When the operator (or the carrier) decided (RFC 3339).
    pub decided_at: Option<String>,
    /// The key the operator pressed.
    pub digits: Option<String>,
}

impl From<actors::store::WarmTransfer> for WarmTransferView {
    fn from(w: actors::store::WarmTransfer) -> Self {
        WarmTransferView {
            state: w.state,
            conference_name: w.conference_name,
            conference_sid: w.conference_sid,
            operator_call_sid: w.operator_call_sid,
            operator_number: w.operator_number,
            whispered_at: w.whispered_at.map(rfc3339),
            decided_at: w.decided_at.map(rfc3339),
            digits: w.digits,
        }
    }
}

impl From<actors::store::Handoff> for HandoffView {
    fn from(h: actors::store::Handoff) -> Self {
        HandoffView {
            id: h.id,
            queue: h.queue_name,
            reason: h.reason,
            rule: h.rule,
            status: h.status,
            dial_status: h.dial_status,
            outcome: h.outcome,
            callback_task_id: h.callback_task_id,
            context: h.context,
            created_at: rfc3339(h.created_at),
            transfer_mode: String::from(if h.warm.is_some() { "warm" } else { "cold" }),
            warm: h.warm.map(WarmTransferView::from),
        }
    }
}

impl From<SessionDetail> for VoiceSessionDetail {
    fn from(d: SessionDetail) -> Self {
        VoiceSessionDetail {
            session: d.session.into(),
            transcript: d.turns.into_iter().map(TurnView::from).collect(),
            function_calls: d
                .function_calls
                .into_iter()
                .map(FunctionCallView::from)
                .collect(),
            handoffs: d.handoffs.into_iter().map(HandoffView::from).collect(),
            evaluation: None,
        }
    }
}

/// Filters of the voice-session listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VoiceSessionParams {
    /// `active`, `completed`, `failed`.
    pub status: Option<String>,
    /// Agent key.
    pub agent_key: Option<String>,
    /// Media stream id (`MZ…`).
    pub stream_id: Option<String>,
    /// Only the sessions of this call (`call_…`): a call has one per media stream (a
    /// resumed or returned call has several).
    pub call_id: Option<String>,
    /// Page size (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Rows to skip.
    pub offset: Option<u32>,
}

/// A live call.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveSessionView {
    /// Our call id.
    pub call_id: String,
    /// Twilio `CallSid`.
    pub call_sid: String,
    /// Tenant.
    pub tenant_id: String,
    /// The node holding the call's media stream.
    pub node_id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Caller.
    pub from: String,
    /// Callee.
    pub to: String,
    /// Agent key.
    pub agent_key: Option<String>,
    /// Agent version.
    pub agent_version_id: Option<String>,
    /// RFC 3339.
    pub started_at: String,
    /// `greeting`, `listening`, `speaking`, `tool`, `handoff`.
    pub state: String,
    /// Last transcript line.
    pub last_transcript: Option<TranscriptLine>,
    /// Latency figures (ms).
    pub latency: LatencyView,
    /// RFC 3339: the call's last change.
    pub last_activity_at: String,
}

/// A transcript line.
#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptLine {
    /// `user` or `assistant`.
    pub role: String,
    /// Text.
    pub text: String,
}

/// Live latency figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct LatencyView {
    /// First audio of the session (ms).
    pub first_audio_ms: Option<i64>,
    /// Last response: end of the caller's speech → first audio (ms).
    pub last_response_ms: Option<i64>,
}

impl From<LiveCall> for ActiveSessionView {
    fn from(live: LiveCall) -> Self {
        let c = live.call;
        ActiveSessionView {
            call_id: c.call_id.into_string(),
            call_sid: c.call_sid,
            tenant_id: c.tenant_id.into_string(),
            node_id: live.node_id,
            direction: c.direction.to_owned(),
            from: c.from,
            to: c.to,
            agent_key: c.agent_key,
            agent_version_id: c.agent_version_id,
            started_at: rfc3339(c.started_at),
            state: c.phase.as_str().to_owned(),
            last_transcript: c
                .last_line
                .map(|(role, text)| TranscriptLine { role, text }),
            latency: LatencyView {
                first_audio_ms: c.first_audio_ms,
                last_response_ms: c.last_response_ms,
            },
            last_activity_at: rfc3339(live.last_activity_at),
        }
    }
}

/// Lists the tenant's voice sessions.
#[utoipa::path(get, path = "/api/v1/voice-sessions", tag = "runtime", params(VoiceSessionParams),
    responses((status = 200, body = Page<VoiceSessionView>), (status = 400, body = ErrorResponse)))]
pub async fn list_sessions(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        raw_query: query,
        ..
    } = req;
    let p: VoiceSessionParams = parse_query(&query)?;
    let paging = Paging::new(p.limit, p.offset)?;
    let filter = SessionFilter {
        tenant_id: auth.tenant_id,
        status: p.status,
        agent_key: p.agent_key,
        stream_id: p.stream_id,
        call_id: p.call_id,
        limit: paging.limit,
        offset: paging.offset,
    };
    let page = reads::list_sessions(&state.actors.telephony, &filter).await?;
    Ok(warp::reply::json(&Page::new(
        page.items.into_iter().map(VoiceSessionView::from),
        paging,
        page.total,
    ))
    .into_response())
}

/// A voice session with its transcript (in order), function calls, handoffs, summary and
/// tags, and its evaluation.
#[utoipa::path(get, path = "/api/v1/voice-sessions/{id}", tag = "runtime",
    params(("id" = String, Path, description = "Voice session id")),
    responses((status = 200, body = VoiceSessionDetail), (status = 404, body = ErrorResponse)))]
pub async fn get_session(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        ..
    } = req;
    let id = SessionId::parse(&id).ok_or_else(|| ApiError::NotFound("voice session".into()))?;
    // The evaluation is read first: it is written in one transaction with the session's
    // summary and tags, so a session read after it never lacks what its evaluation wrote.
    let evaluation = state
        .actors
        .evaluations
        .of_session(&auth.tenant_id, &id)
        .await
        .map_err(|e| ApiError::Internal(format!("store: {e:?}")))?;
    let detail = reads::session_detail(&state.actors.telephony, &auth.tenant_id, &id).await?;
    let mut view = VoiceSessionDetail::from(detail);
    view.evaluation = evaluation.map(EvaluationDetailView::from);
    Ok(warp::reply::json(&view).into_response())
}

async fn active_list(state: &AppState, tenant: Option<&TenantId>) -> Result<Response, ApiError> {
    let snapshot = state
        .live
        .snapshot(tenant)
        .await
        .map_err(|e| ApiError::Internal(format!("store: {e:?}")))?;
    let data = snapshot.calls.into_iter().map(ActiveSessionView::from);
    Ok(warp::reply::json(&List::new(data)).into_response())
}

/// The tenant's live calls on every node, oldest first.
#[utoipa::path(get, path = "/api/v1/active-sessions", tag = "runtime",
    responses((status = 200, body = List<ActiveSessionView>), (status = 401, body = ErrorResponse)))]
pub async fn active_sessions(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let Request { state, auth, .. } = req;
    active_list(&state, Some(&auth.tenant_id)).await
}

/// One live call of the tenant (on any node).
#[utoipa::path(get, path = "/api/v1/active-sessions/calls/{call_id}", tag = "runtime",
    params(("call_id" = String, Path, description = "Call id (`call_…`)")),
    responses((status = 200, body = ActiveSessionView), (status = 401, body = ErrorResponse),
              (status = 404, body = ErrorResponse, description = "No live call of the tenant has this id")))]
pub async fn active_session(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        ..
    } = req;
    let not_found = || ApiError::NotFound("active session".into());
    let id = CallId::parse(&id).ok_or_else(not_found)?;
    let live = state
        .live
        .call(&auth.tenant_id, &id)
        .await
        .map_err(|e| ApiError::Internal(format!("store: {e:?}")))?
        .ok_or_else(not_found)?;
    Ok(warp::reply::json(&ActiveSessionView::from(live)).into_response())
}

/// Live calls of every tenant on every node (admin).
#[utoipa::path(get, path = "/api/v1/admin/active-sessions", tag = "admin",
    responses((status = 200, body = List<ActiveSessionView>), (status = 401, body = ErrorResponse)))]
pub async fn admin_active_sessions(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let state = req.state;
    active_list(&state, None).await
}
