//! Runtime call API (tenant key): `make-call` (with `Idempotency-Key`), call logs, and live
//! call control (hangup, transfer), which goes through the carrier so it works from any node.
//!
//! `make-call` hands the placement to a task that owns its outcome
//! ([`actors::telephony::outbound`]): the task records the result in the call and in the
//! idempotency record whether or not this handler still waits. The handler waits
//! `MAKE_CALL_WAIT_MS` at most, then answers 202 with the call id and a pending status.

use std::sync::Arc;
use std::time::Duration;

use actors::domain::E164;
use actors::ids::QueueId;
use actors::ids::TenantId;
use actors::store::{CallDirection, CallFilter, CallRecord, IdempotencyBegin};
use actors::telephony::amd::{AmdAction, AmdMode, AmdRequest};
use actors::telephony::control::{self, ControlAction, Initiator};
use actors::telephony::outbound::{
    self, IdempotencySlot, OutboundRequest, PlacementResult, StoredReply, Waited,
};
use actors::telephony::queue_transfer::{QueueTransfer, transfer_to_queue};
use actors::telephony::reads::{self, CallDetail};
use actors::tenant::AuthContext;
use actors::time::{parse_rfc3339, rfc3339};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::Response;

use super::fields;
use super::filters::{Paging, parse_json, parse_query};
use super::mount::Request;
use super::page::Page;
use super::{ApiError, AppState};
use crate::http::ErrorResponse;

/// How long an idempotency key is kept.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

// === DTOs ===

/// Answering-machine detection of `make-call`: an object with the action to take when a
/// machine answers, or (legacy) a bare mode string, which records the result and lets the
/// conversation go on (`continue`).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum MachineDetectionDto {
    /// What to do on a machine.
    Action(MachineDetectionAction),
    /// Legacy: the carrier's mode only (`continue`).
    Mode(MachineDetectionMode),
}

/// The legacy mode string.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MachineDetectionMode {
    /// Result as soon as the callee type is known.
    Enable,
    /// Wait for the end of a voicemail greeting.
    DetectMessageEnd,
}

/// What to do when a machine answers.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MachineDetectionAction {
    /// `voicemail`: wait for the beep (`DetectMessageEnd`), leave the agent version's
    /// `voicemail_message`, hang up (the version must have one); `hangup`: hang up as soon as
    /// a machine is detected; `continue`: record the result, the conversation goes on. A
    /// human (or `unknown`) always gets the conversation.
    pub action: AmdActionDto,
    /// Seconds the carrier may take to decide (3–60, default 30; then `unknown`).
    #[schema(minimum = 3, maximum = 60)]
    pub timeout_seconds: Option<u32>,
}

/// An answering-machine action.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AmdActionDto {
    /// Leave the voicemail message after the beep, hang up.
    Voicemail,
    /// Hang up at once.
    Hangup,
    /// Let the conversation go on.
    Continue,
}

/// Parses `machine_detection` (kept as raw JSON so an error names the nested field).
fn machine_detection(v: Option<serde_json::Value>) -> Result<Option<AmdRequest>, ApiError> {
    const FIELD: &str = "machine_detection";
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    if v.is_string() {
        let mode: MachineDetectionMode = serde_json::from_value(v).map_err(|_| {
            ApiError::invalid(
                FIELD,
                "must be an object {\"action\": \"voicemail\" | \"hangup\" | \"continue\"} (or the legacy enable / detect_message_end)",
            )
        })?;
        return Ok(Some(AmdRequest {
            action: AmdAction::Continue,
            mode: match mode {
                MachineDetectionMode::Enable => AmdMode::Enable,
                MachineDetectionMode::DetectMessageEnd => AmdMode::DetectMessageEnd,
            },
            timeout_secs: None,
        }));
    }
    let Some(object) = v.as_object() else {
        return Err(ApiError::invalid(FIELD, "must be an object"));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !["action", "timeout_seconds"].contains(&k.as_str()))
    {
        return Err(ApiError::invalid(
            format!("{FIELD}.{unknown}"),
            "is not a known field",
        ));
    }
    let action = match object.get("action").and_then(serde_json::Value::as_str) {
        Some("voicemail") => AmdAction::Voicemail,
        Some("hangup") => AmdAction::Hangup,
        Some("continue") => AmdAction::Continue,
        _ => {
            return Err(ApiError::invalid(
                format!("{FIELD}.action"),
                "must be voicemail, hangup or continue",
            ));
        }
    };
    let timeout_secs = match object.get("timeout_seconds") {
        None | Some(serde_json::Value::Null) => None,
        Some(t) => Some(
            t.as_u64()
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| AmdRequest::TIMEOUT_RANGE.contains(t))
                .ok_or_else(|| {
                    ApiError::invalid(
                        format!("{FIELD}.timeout_seconds"),
                        "must be a whole number of seconds between 3 and 60",
                    )
                })?,
        ),
    };
    Ok(Some(AmdRequest::new(action, timeout_secs)))
}

/// Body of `POST /api/v1/make-call`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MakeCallRequest {
    /// Callee, E.164.
    #[schema(format = "e164")]
    pub to: String,
    /// Caller id, E.164: one of the tenant's outbound numbers (default: its outbound route).
    #[schema(format = "e164")]
    pub from: Option<String>,
    /// Agent key (default: the route's).
    #[schema(min_length = 1, max_length = 100, format = "text")]
    pub agent_key: Option<String>,
    /// Pin an agent version.
    #[schema(min_length = 1, max_length = 100, format = "text")]
    pub agent_version_id: Option<String>,
    /// First sentence the agent says.
    #[schema(min_length = 1, max_length = 1000, format = "text")]
    pub greeting: Option<String>,
    /// Your organisation reference.
    #[schema(min_length = 1, max_length = 200, format = "text")]
    pub org_id: Option<String>,
    /// Free-form metadata (a JSON object, at most 8 KiB).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Answering-machine detection and what to do when a machine answers.
    #[schema(value_type = Option<MachineDetectionDto>)]
    pub machine_detection: Option<serde_json::Value>,
    /// The callee's IANA time zone (e.g. `America/New_York`) for the calling window and
    /// the daily attempt count; default: the zone of the dial policy's calling hours.
    #[schema(format = "time-zone")]
    pub time_zone: Option<String>,
}

/// Reply of `POST /api/v1/make-call`: 201 once the carrier accepted the call, or 202 while
/// the carrier has not answered yet (`call_sid` null, `status` `pending`; the call id is
/// final: follow it in the call log, or retry with the same `Idempotency-Key` for the
/// outcome).
#[derive(Debug, Serialize, ToSchema)]
pub struct MakeCallResponse {
    /// Always true on 201 and 202.
    pub ok: bool,
    /// Our call id.
    pub call_id: String,
    /// Twilio `CallSid` (null while pending).
    pub call_sid: Option<String>,
    /// Carrier status (`queued`, …), or `pending` while the carrier has not answered.
    pub status: String,
    /// Callee.
    pub to: String,
    /// Caller id used.
    pub from: String,
}

/// A call-log entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallLogView {
    /// Our id.
    pub id: String,
    /// Twilio `CallSid`.
    pub call_sid: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Caller.
    pub from: String,
    /// Callee.
    pub to: String,
    /// Carrier status (`queued`, `ringing`, `in-progress`, `completed`, `busy`, `failed`, `no-answer`,
    /// `canceled`), or `refused` when admission refused an inbound call.
    pub status: String,
    /// Route id.
    pub route_id: Option<String>,
    /// Agent key.
    pub agent_key: Option<String>,
    /// Agent version.
    pub agent_version_id: Option<String>,
    /// Why the call (or its AI leg) ended.
    pub end_reason: Option<String>,
    /// Free-text detail of the end reason (a carrier error, an AI error code).
    pub end_detail: Option<String>,
    /// What became of the call once it is complete: `completed`, `escalated`, `fallback`,
    /// `refused`, `not_answered`, `failed`.
    pub outcome: Option<String>,
    /// RFC 3339, when the call was completed (its `voice.call.completed` sent).
    pub completed_at: Option<String>,
    /// Outbound: where asking the carrier stands (`pending`, `placed`, `refused`, `unknown`
    /// while a timed-out request is reconciled, `not_found`).
    pub placement: Option<String>,
    /// AMD result (`human`, `machine_start`, `machine_end_beep`, `machine_end_silence`,
    /// `machine_end_other`, `fax`, `unknown`).
    pub answered_by: Option<String>,
    /// The answering-machine action asked (`voicemail`, `hangup`, `continue`).
    pub amd_action: Option<String>,
    /// What the AMD result made of the call: `conversation`, `voicemail_left`,
    /// `hung_up_on_machine`, or `no_result` (completed without a result); null without an
    /// action.
    pub machine_outcome: Option<String>,
    /// Duration in seconds (final status callback).
    pub duration_seconds: Option<i64>,
    /// Media stream state.
    pub stream_status: Option<String>,
    /// Carrier error code.
    pub error_code: Option<String>,
    /// Carrier error message.
    pub error_message: Option<String>,
    /// The caller's identity in this call: `verified` or `failed`.
    pub identity_state: Option<String>,
    /// Where the call was escalated (`queue:{name}`, then `queue:{name}/{DialCallSid}` once a
    /// human answered).
    pub escalated_to: Option<String>,
    /// Greeting requested.
    pub greeting: Option<String>,
    /// Organisation reference.
    pub org_id: Option<String>,
    /// Metadata.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, answered.
    pub started_at: Option<String>,
    /// RFC 3339, ended.
    pub ended_at: Option<String>,
}

impl From<CallRecord> for CallLogView {
    fn from(c: CallRecord) -> Self {
        let machine_outcome =
            actors::telephony::amd::machine_outcome(&c).map(|o| o.as_str().to_owned());
        CallLogView {
            id: c.id.into_string(),
            call_sid: c.call_sid,
            direction: c.direction.as_str().to_owned(),
            from: c.from_number,
            to: c.to_number,
            status: c.status,
            route_id: c.route_id.map(|r| r.into_string()),
            agent_key: c.agent_key,
            agent_version_id: c.agent_version_id,
            end_reason: c.end_reason,
            end_detail: c.end_detail,
            outcome: c.outcome.map(|o| o.as_str().to_owned()),
            completed_at: c.completed_at.map(rfc3339),
            placement: c.placement.map(|p| p.as_str().to_owned()),
            machine_outcome,
            amd_action: c.amd_action,
            answered_by: c.answered_by,
            duration_seconds: c.duration_seconds,
            stream_status: c.stream_status,
            error_code: c.error_code,
            error_message: c.error_message,
            identity_state: c.identity_state,
            escalated_to: c.escalated_to,
            greeting: c.greeting,
            org_id: c.org_id,
            metadata: c.metadata,
            created_at: rfc3339(c.created_at),
            started_at: c.started_at.map(rfc3339),
            ended_at: c.ended_at.map(rfc3339),
        }
    }
}

/// A status callback as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusEventView {
    /// `SequenceNumber`.
    pub sequence_number: i64,
    /// `CallStatus`.
    pub status: String,
    /// RFC 3339.
    pub at: String,
    /// All parameters of the callback.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
}

/// A timeline entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallEventView {
    /// RFC 3339.
    pub at: String,
    /// `admission`, `rollout` (the arm that chose the version), `carrier`, `stream`,
    /// `control`, `amd`, `chaos` (a fault injected by an admin), …
    pub kind: String,
    /// Details.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// A call with its status history and timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallLogDetail {
    /// The call.
    #[serde(flatten)]
    pub call: CallLogView,
    /// Status callbacks, by sequence number.
    pub status_events: Vec<StatusEventView>,
    /// Everything else that happened, in order.
    pub events: Vec<CallEventView>,
    /// The pre-dial policy's decision (outbound calls; null for inbound ones).
    pub predial: Option<PredialView>,
}

/// The pre-dial decision of an outbound call.
#[derive(Debug, Serialize, ToSchema)]
pub struct PredialView {
    /// Whether the call was dialed.
    pub allowed: bool,
    /// The refusing rule: `do_not_call`, `calling_window` or `attempt_limit`.
    pub rule: Option<String>,
    /// Every rule checked, in order, with what it looked at.
    pub checks: Vec<PredialCheckView>,
    /// RFC 3339.
    pub decided_at: String,
}

/// One rule's check.
#[derive(Debug, Serialize, ToSchema)]
pub struct PredialCheckView {
    /// The rule.
    pub rule: String,
    /// Whether it let the call through.
    pub passed: bool,
    /// What it looked at (the listed entry; the zone, local time and windows; the attempt
    /// and the limit), and `reason` when it refused.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<actors::governance::predial::Decision> for PredialView {
    fn from(d: actors::governance::predial::Decision) -> Self {
        PredialView {
            allowed: d.allowed,
            rule: d.rule.map(|r| r.as_str().to_owned()),
            checks: d
                .checks
                .into_iter()
                .map(|c| PredialCheckView {
                    rule: c.rule.as_str().to_owned(),
                    passed: c.passed,
                    detail: c.detail,
                })
                .collect(),
            decided_at: rfc3339(d.decided_at),
        }
    }
}

impl From<CallDetail> for CallLogDetail {
    fn from(d: CallDetail) -> Self {
        CallLogDetail {
            call: d.call.into(),
            status_events: d
                .status_events
                .into_iter()
                .map(|e| StatusEventView {
                    sequence_number: e.sequence_number,
                    status: e.status,
                    at: rfc3339(e.at),
                    params: e.params,
                })
                .collect(),
            events: d
                .events
                .into_iter()
                .map(|e| CallEventView {
                    at: rfc3339(e.at),
                    kind: e.kind,
                    detail: e.detail,
                })
                .collect(),
            predial: d.predial.map(PredialView::from),
        }
    }
}

/// Filters of the call-log listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CallLogParams {
    /// Only this status.
    pub status: Option<String>,
    /// `inbound` or `outbound`.
    #[param(pattern = "^(inbound|outbound)$")]
    pub direction: Option<String>,
    /// Created at or after (RFC 3339).
    #[param(format = "rfc3339")]
    pub from: Option<String>,
    /// Created before (RFC 3339).
    #[param(format = "rfc3339")]
    pub to: Option<String>,
    /// Page size (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Rows to skip.
    pub offset: Option<u32>,
}

/// Body of `POST /api/v1/calls/{call_sid}/transfer`: exactly one of `to` (a cold transfer
/// to a number) and `queue_id` (a handoff to one of the tenant's operator queues, as the
/// agent's escalation makes one).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// Number to transfer to (E.164).
    #[schema(format = "e164")]
    pub to: Option<String>,
    /// Said to the caller before dialling (with `to`; a queue says its own announcement).
    #[schema(min_length = 1, max_length = 500, format = "text")]
    pub announcement: Option<String>,
    /// An operator queue of the tenant (`oq_…`): its numbers are rung together with its
    /// caller id and ring timeout, a handoff is recorded with the conversation so far, and
    /// an unanswered dial follows the queue's `when_unanswered`. The queue must be open.
    pub queue_id: Option<String>,
    /// Who asks (1–100 characters, e.g. the operator's name; default the key's id):
    /// recorded on the handoff (with `queue_id`).
    #[schema(min_length = 1, max_length = 100, format = "label")]
    pub requested_by: Option<String>,
}

// === idempotency ===

/// JSON with object keys sorted, so equal bodies hash equal whatever their key order.
fn canonical(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        serde_json::Value::String(k.clone()),
                        canonical(&map[k])
                    )
                })
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        serde_json::Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// How an `Idempotency-Key` claim went.
enum Claim {
    /// No key: the request just runs.
    NoKey,
    /// The key is ours (`in_progress`): the work stores its result under it.
    Started(String),
    /// Answered already: a replay, a refusal, or an error.
    Answered(Response),
}

/// Claims (tenant, `Idempotency-Key`), Stripe style: the stored response is replayed for the
/// same body (`Idempotent-Replayed: true`), a different body is refused (422), a request
/// still running is refused (409 `idempotency_in_progress`).
async fn claim_key(
    state: &AppState,
    tenant: &TenantId,
    key: Option<String>,
    body: &serde_json::Value,
) -> Claim {
    let Some(key) = key else {
        return Claim::NoKey;
    };
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Claim::Answered(
            ApiError::BadRequest {
                code: "invalid_header",
                message: "Idempotency-Key must be 1 to 255 printable characters".into(),
                field: Some("Idempotency-Key".into()),
            }
            .into_response(),
        );
    }
    let hash = actors::crypto::sha256_hex(canonical(body).as_bytes());
    let ttl_ms = i64::try_from(IDEMPOTENCY_TTL.as_millis()).unwrap_or(i64::MAX);
    let answered = match state
        .store
        .idempotency_begin(tenant, &key, &hash, ttl_ms)
        .await
    {
        Err(e) => ApiError::Internal(format!("idempotency: {e:?}")).into_response(),
        Ok(IdempotencyBegin::Started) => return Claim::Started(key),
        Ok(IdempotencyBegin::InProgress) => ApiError::Status {
            status: StatusCode::CONFLICT,
            code: "idempotency_in_progress",
            message: "a request with this Idempotency-Key is still in progress".into(),
        }
        .into_response(),
        Ok(IdempotencyBegin::Mismatch) => ApiError::Status {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "idempotency_key_reused",
            message: "this Idempotency-Key was used with a different request body".into(),
        }
        .into_response(),
        Ok(IdempotencyBegin::Replay { status, body }) => {
            let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let mut resp = json_response(
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                &body,
            );
            resp.headers_mut().insert(
                "idempotent-replayed",
                warp::http::HeaderValue::from_static("true"),
            );
            resp
        }
    };
    Claim::Answered(answered)
}

/// The reply of a placement's result: 201 with the call, or the error (its body carrying
/// `request_id`, also when rendered later by the placement's task).
fn placement_reply(
    result: &PlacementResult,
    request_id: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    match result {
        Ok(call) => (StatusCode::CREATED, make_call_body(call, None)),
        Err(e) => {
            let e = ApiError::from(e);
            let mut body = e.body();
            if let (Some(id), Some(err)) = (request_id, body.get_mut("error")) {
                err["request_id"] = serde_json::Value::String(id.to_owned());
            }
            (e.status(), body)
        }
    }
}

/// How the result of a placement taken over after its node was lost is stored for its
/// idempotency key (the same reply the request would have stored, without a request id).
pub fn reconciled_placement_reply() -> outbound::RenderReply {
    Arc::new(|result: &PlacementResult| {
        let (status, body) = placement_reply(result, None);
        StoredReply {
            status: status.as_u16(),
            body: body.to_string(),
        }
    })
}

fn make_call_body(call: &CallRecord, status: Option<&str>) -> serde_json::Value {
    serde_json::to_value(MakeCallResponse {
        ok: true,
        call_id: call.id.as_str().to_owned(),
        call_sid: call.call_sid.clone(),
        status: status.unwrap_or(&call.status).to_owned(),
        to: call.to_number.clone(),
        from: call.from_number.clone(),
    })
    .unwrap_or_default()
}

// === handlers ===

fn text_field(
    field: &'static str,
    v: Option<String>,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match v {
        Some(s) if s.chars().count() > max => Err(ApiError::invalid(
            field,
            format!("must be at most {max} characters"),
        )),
        Some(s) if s.trim().is_empty() => Err(ApiError::invalid(field, "must not be empty")),
        Some(s) if s.chars().any(char::is_control) => Err(ApiError::invalid(
            field,
            "must not contain control characters",
        )),
        other => Ok(other),
    }
}

/// Places an outbound call through the carrier; the agent talks once the callee answers.
#[utoipa::path(post, path = "/api/v1/make-call", tag = "runtime", request_body = MakeCallRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Replays the stored response for 24 h (1 to 255 visible ASCII characters)")),
    responses((status = 201, body = MakeCallResponse, description = "the carrier accepted the call"),
              (status = 202, body = MakeCallResponse, description = "the carrier has not answered yet (`status` `pending`, `call_sid` null): the placement goes on and records its outcome; retry with the same Idempotency-Key for it"),
              (status = 409, body = ErrorResponse, description = "idempotent request in progress, or no credentials"),
              (status = 422, body = ErrorResponse, description = "invalid input (the field named), or refused by the pre-dial policy: the code names the rule (`do_not_call`, `calling_window`, `attempt_limit`), the call is recorded as refused and nothing is dialed"), (status = 429, body = ErrorResponse, description = "rate or concurrency limit"),
              (status = 502, body = ErrorResponse, description = "carrier error, or the carrier never confirmed the call (call recorded as failed)")))]
pub async fn make_call(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let key = req.text_header("idempotency-key")?;
    let Request {
        state, auth, body, ..
    } = req;
    let req: MakeCallRequest = parse_json(&body)?;
    let raw: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let to = fields::e164("to", &req.to)?.into_string();
    let from = req
        .from
        .as_deref()
        .map(|f| fields::e164("from", f).map(E164::into_string))
        .transpose()?;
    if let Some(m) = &req.metadata
        && (!m.is_object() || m.to_string().len() > 8192)
    {
        return Err(ApiError::invalid(
            "metadata",
            "must be a JSON object of at most 8 KiB",
        ));
    }
    let outbound = OutboundRequest {
        tenant_id: auth.tenant_id.clone(),
        to,
        from,
        agent_key: text_field("agent_key", req.agent_key, 100)?,
        agent_version_id: text_field("agent_version_id", req.agent_version_id, 100)?,
        greeting: text_field("greeting", req.greeting, 1000)?,
        org_id: text_field("org_id", req.org_id, 200)?,
        metadata: req.metadata,
        machine_detection: machine_detection(req.machine_detection)?,
        time_zone: text_field("time_zone", req.time_zone, 64)?,
        draining: state.is_draining(),
    };
    let key = match claim_key(&state, &auth.tenant_id, key, &raw).await {
        Claim::Answered(resp) => return Ok(resp),
        Claim::Started(key) => Some(key),
        Claim::NoKey => None,
    };
    let request_id = super::context::request_id();
    let slot = key.map(|key| IdempotencySlot {
        tenant: auth.tenant_id.clone(),
        key,
        render: Arc::new(move |result: &PlacementResult| {
            let (status, body) = placement_reply(result, request_id.as_deref());
            StoredReply {
                status: status.as_u16(),
                body: body.to_string(),
            }
        }),
    });
    let placement = outbound::start(&state.actors.telephony, outbound, slot);
    Ok(match placement.wait(state.config.make_call_wait).await {
        Waited::Done(result) => match *result {
            Ok(call) => json_response(StatusCode::CREATED, &make_call_body(&call, None)),
            Err(e) => ApiError::from(e).into_response(),
        },
        // The carrier has not answered yet: the placement goes on and records its outcome.
        Waited::Pending(call) => json_response(
            StatusCode::ACCEPTED,
            &make_call_body(&call, Some("pending")),
        ),
    })
}

/// Lists the tenant's calls, newest first.
#[utoipa::path(get, path = "/api/v1/call-logs", tag = "runtime", params(CallLogParams),
    responses((status = 200, body = Page<CallLogView>), (status = 400, body = ErrorResponse), (status = 401, body = ErrorResponse)))]
pub async fn list_call_logs(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        raw_query: query,
        ..
    } = req;
    let p: CallLogParams = parse_query(&query)?;
    let paging = Paging::new(p.limit, p.offset)?;
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
    let direction = match p.direction.as_deref() {
        None => None,
        Some(d) => Some(CallDirection::parse(d).ok_or_else(|| ApiError::BadRequest {
            code: "invalid_query",
            message: "direction must be inbound or outbound".into(),
            field: Some("direction".into()),
        })?),
    };
    let filter = CallFilter {
        tenant_id: auth.tenant_id,
        status: p.status,
        direction,
        from_ms: time("from", p.from)?,
        to_ms: time("to", p.to)?,
        limit: paging.limit,
        offset: paging.offset,
    };
    let page = reads::list_calls(&state.actors.telephony, &filter).await?;
    Ok(warp::reply::json(&Page::new(
        page.items.into_iter().map(CallLogView::from),
        paging,
        page.total,
    ))
    .into_response())
}

/// One call (by call id or `CallSid`) with its status-event history and timeline.
#[utoipa::path(get, path = "/api/v1/call-logs/{id}", tag = "runtime",
    params(("id" = String, Path, description = "Call id (`call_…`) or Twilio CallSid")),
    responses((status = 200, body = CallLogDetail), (status = 404, body = ErrorResponse)))]
pub async fn get_call_log(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        ..
    } = req;
    let detail = reads::call_detail(&state.actors.telephony, &auth.tenant_id, &id).await?;
    Ok(warp::reply::json(&CallLogDetail::from(detail)).into_response())
}

/// Hangs up a live call (idempotent: an ended call is a success).
#[utoipa::path(post, path = "/api/v1/calls/{call_sid}/hangup", tag = "runtime",
    params(("call_sid" = String, Path, description = "Twilio CallSid (or our call id)")),
    responses((status = 200, body = CallLogView), (status = 404, body = ErrorResponse), (status = 502, body = ErrorResponse)))]
pub async fn hangup(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (sid,),
        ..
    } = req;
    let tenant = auth.tenant_id;
    let call = control::control(
        &state.actors.telephony,
        &tenant,
        &sid,
        ControlAction::Hangup,
        Initiator::Api,
    )
    .await?;
    Ok(warp::reply::json(&CallLogView::from(call)).into_response())
}

/// Transfers a live call to a number (`<Dial>` through a carrier call update).
#[utoipa::path(post, path = "/api/v1/calls/{call_sid}/transfer", tag = "runtime", request_body = TransferRequest,
    params(("call_sid" = String, Path, description = "Twilio CallSid (or our call id)")),
    responses((status = 200, body = CallLogView), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "the call has ended, or the queue is closed now or has no numbers"),
              (status = 422, body = ErrorResponse), (status = 502, body = ErrorResponse)))]
pub async fn transfer(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (sid,),
        body,
        ..
    } = req;
    let tenant = auth.tenant_id;
    let req: TransferRequest = parse_json(&body)?;
    let call = match (req.to, req.queue_id) {
        (Some(to), None) => {
            let action = ControlAction::Transfer {
                numbers: vec![fields::e164("to", &to)?.into_string()],
                announcement: text_field("announcement", req.announcement, 500)?,
            };
            control::control(
                &state.actors.telephony,
                &tenant,
                &sid,
                action,
                Initiator::Api,
            )
            .await?
        }
        (None, Some(queue)) => {
            if req.announcement.is_some() {
                return Err(ApiError::invalid(
                    "announcement",
                    "is the queue's own with `queue_id`",
                ));
            }
            let queue_id = QueueId::parse(&queue)
                .ok_or_else(|| ApiError::invalid("queue_id", "is not a queue id"))?;
            let requested_by = match req.requested_by {
                Some(who) => fields::label("requested_by", &who, 100)?.into_string(),
                None => auth.key_id.as_str().to_owned(),
            };
            let transfer = QueueTransfer {
                queue_id,
                requested_by,
            };
            transfer_to_queue(&state.actors.telephony, &tenant, &sid, transfer).await?
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("to", "give `to` or `queue_id`, not both"));
        }
        (None, None) => return Err(ApiError::invalid("to", "give `to` or `queue_id`")),
    };
    Ok(warp::reply::json(&CallLogView::from(call)).into_response())
}
