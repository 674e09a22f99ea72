//! Domain records read from and written to the store.
//!
//! These are plain types: serialization for the API lives at the HTTP edge.

use crate::ids::{ApiKeyId, TenantId};

/// Whether a tenant may use the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantStatus {
    /// Normal operation.
    Active,
    /// Every runtime request is refused (403) and no call is admitted.
    Suspended,
}

impl TenantStatus {
    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(TenantStatus::Active),
            "suspended" => Some(TenantStatus::Suspended),
            _ => None,
        }
    }
}

/// Per-tenant defaults for the AI runtime: the model and voice of every agent version created
/// (or replaced) without its own. A version records what it was given, so changing these never
/// changes a version, approved or draft, already written.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RuntimeConfig {
    /// Realtime model name (e.g. `gpt-realtime`).
    pub model: Option<String>,
    /// Voice name (e.g. `marin`).
    pub voice: Option<String>,
}

/// A tenant's Twilio account: SID in clear (it routes webhooks), auth token sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct TwilioCredentials {
    /// `AC…` account SID.
    pub account_sid: String,
    /// The auth token sealed by [`crate::crypto::SecretBox`].
    pub auth_token_sealed: Vec<u8>,
    /// Last characters of the auth token, safe to show.
    pub auth_token_hint: String,
}

/// A secret sealed by [`crate::crypto::SecretBox`], with a hint safe to show.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedSecret {
    /// The ciphertext.
    pub sealed: Vec<u8>,
    /// Last characters of the secret.
    pub hint: String,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    /// Identifier.
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// Active or suspended.
    pub status: TenantStatus,
    /// Limit of simultaneously live calls.
    pub max_concurrent_calls: i64,
    /// A URL recorded with the tenant (informational; event deliveries go to
    /// [`Tenant::event_webhook`]).
    pub webhook_url: Option<String>,
    /// AI runtime defaults.
    pub runtime_config: RuntimeConfig,
    /// Twilio account, when configured.
    pub twilio: Option<TwilioCredentials>,
    /// The tenant's own realtime-model API key (sealed), overriding the global one.
    pub openai_key: Option<SealedSecret>,
    /// The secret signing our requests to the tenant (event webhooks, webhook tools), sealed.
    pub signing_secret: Option<SealedSecret>,
    /// Where tenant events are delivered, and which ones.
    pub event_webhook: Option<EventWebhook>,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// A tenant's event webhook: the endpoint and the events it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventWebhook {
    /// The endpoint (checked with [`crate::egress::check_url`] when configured).
    pub url: String,
    /// Event names delivered (`None`: every event).
    pub events: Option<Vec<String>>,
}

impl EventWebhook {
    /// Whether `event` is delivered to this endpoint.
    pub fn accepts(&self, event: &str) -> bool {
        self.events
            .as_ref()
            .is_none_or(|events| events.iter().any(|e| e == event))
    }
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Place and control calls.
    Runtime,
    /// Read call logs, sessions and other records.
    Read,
    /// Operate queues, callback tasks and live calls.
    Operator,
}

impl Scope {
    /// Every scope, in canonical order.
    pub const ALL: [Scope; 3] = [Scope::Runtime, Scope::Read, Scope::Operator];

    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Runtime => "runtime",
            Scope::Read => "read",
            Scope::Operator => "operator",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    /// Joins scopes for storage (`runtime,read`).
    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Splits the stored form.
    pub fn split(stored: &str) -> Option<Vec<Scope>> {
        stored
            .split(',')
            .filter(|s| !s.is_empty())
            .map(Scope::parse)
            .collect()
    }
}

/// An API key record (the secret itself is never stored).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// Identifier.
    pub id: ApiKeyId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Human label.
    pub name: String,
    /// Visible prefix of the secret.
    pub prefix: String,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// Last successful authentication (Unix ms).
    pub last_used_at: Option<i64>,
    /// Revocation time (Unix ms); a revoked key never authenticates again.
    pub revoked_at: Option<i64>,
}

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Sequence number (assigned by the store).
    pub id: i64,
    /// When (Unix ms).
    pub at: i64,
    /// Who: `admin` for the admin key, or `tenant:{id}/key:{id}`.
    pub actor: String,
    /// What, e.g. `tenant.create`, `api_key.revoke`.
    pub action: String,
    /// Tenant concerned, if any.
    pub tenant_id: Option<TenantId>,
    /// Kind of object changed (`tenant`, `api_key`, …).
    pub target_type: String,
    /// Its id.
    pub target_id: String,
    /// JSON of the object before the change (never containing secrets).
    pub before: Option<serde_json::Value>,
    /// JSON of the object after the change (never containing secrets).
    pub after: Option<serde_json::Value>,
    /// Request id of the change.
    pub request_id: Option<String>,
}

/// An audit row to write with a mutation.
#[derive(Debug, Clone)]
pub struct NewAudit {
    /// Who.
    pub actor: String,
    /// What.
    pub action: &'static str,
    /// Tenant concerned.
    pub tenant_id: Option<TenantId>,
    /// Kind of object.
    pub target_type: &'static str,
    /// Its id.
    pub target_id: String,
    /// Before (no secrets).
    pub before: Option<serde_json::Value>,
    /// After (no secrets).
    pub after: Option<serde_json::Value>,
    /// Request id.
    pub request_id: Option<String>,
}

/// Filter of the audit-log listing.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only rows about this tenant.
    pub tenant_id: Option<TenantId>,
    /// Only this action.
    pub action: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
}

/// Which calls a phone route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteDirection {
    /// Calls to the number.
    Inbound,
    /// Calls placed from the number.
    Outbound,
    /// Both.
    Both,
}

impl RouteDirection {
    /// Stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteDirection::Inbound => "inbound",
            RouteDirection::Outbound => "outbound",
            RouteDirection::Both => "both",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inbound" => Some(RouteDirection::Inbound),
            "outbound" => Some(RouteDirection::Outbound),
            "both" => Some(RouteDirection::Both),
            _ => None,
        }
    }

    /// Whether the route takes calls of `direction`.
    pub fn allows(self, direction: CallDirection) -> bool {
        matches!(
            (self, direction),
            (RouteDirection::Both, _)
                | (RouteDirection::Inbound, CallDirection::Inbound)
                | (RouteDirection::Outbound, CallDirection::Outbound)
        )
    }
}

/// Whether a route takes customer traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteStatus {
    /// Only callers on the test list are connected to the agent.
    Staged,
    /// Everyone.
    Live,
}

impl RouteStatus {
    /// Stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteStatus::Staged => "staged",
            RouteStatus::Live => "live",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "staged" => Some(RouteStatus::Staged),
            "live" => Some(RouteStatus::Live),
            _ => None,
        }
    }
}

/// What an inbound caller gets when the tenant or route is at its concurrency limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    /// The route's fallback (message, then the fallback number if any).
    Fallback,
    /// `<Reject reason="busy"/>`.
    Busy,
}

impl OverLimit {
    /// Stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            OverLimit::Fallback => "fallback",
            OverLimit::Busy => "busy",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fallback" => Some(OverLimit::Fallback),
            "busy" => Some(OverLimit::Busy),
            _ => None,
        }
    }
}

/// A phone route: one E.164 number of one tenant, its agent and its human fallback.
#[derive(Debug, Clone, PartialEq)]
pub struct PhoneRoute {
    /// Identifier.
    pub id: crate::ids::RouteId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// E.164 number (unique across all routes).
    pub number: String,
    /// Agent answering on this number.
    pub agent_key: String,
    /// Inbound, outbound or both.
    pub direction: RouteDirection,
    /// Staged or live.
    pub status: RouteStatus,
    /// Number the caller is transferred to when the AI cannot take or keep the call.
    pub fallback_number: Option<String>,
    /// Said before the fallback dial (or before hanging up when there is no number).
    pub fallback_message: Option<String>,
    /// Behaviour at the concurrency limit.
    pub over_limit: OverLimit,
    /// Simultaneous live calls on this route.
    pub max_concurrent_calls: i64,
    /// Callers connected to the agent while the route is staged.
    pub test_callers: Vec<String>,
    /// Whether calls on this route are recorded (`None`: not set; the version's wins).
    pub recording_policy: Option<crate::recording::RecordingPolicy>,
    /// Creation (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// Direction of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallDirection {
    /// A caller dialled one of the tenant's numbers.
    Inbound,
    /// The tenant placed the call.
    Outbound,
}

impl CallDirection {
    /// Stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            CallDirection::Inbound => "inbound",
            CallDirection::Outbound => "outbound",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inbound" => Some(CallDirection::Inbound),
            "outbound" => Some(CallDirection::Outbound),
            _ => None,
        }
    }
}

/// Carrier call statuses that mean the call is (or may still become) live.
pub const LIVE_STATUSES: [&str; 4] = ["queued", "initiated", "ringing", "in-progress"];

/// Carrier call statuses that end a call.
pub const TERMINAL_STATUSES: [&str; 5] = ["completed", "busy", "failed", "no-answer", "canceled"];

/// Whether a carrier status ends the call.
pub fn is_terminal_status(status: &str) -> bool {
    TERMINAL_STATUSES.contains(&status)
}

/// A call-log row.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    /// Our id.
    pub id: crate::ids::CallId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Twilio's `CallSid`, once known.
    pub call_sid: Option<String>,
    /// Twilio account the call runs on.
    pub account_sid: Option<String>,
    /// Route used.
    pub route_id: Option<crate::ids::RouteId>,
    /// Inbound or outbound.
    pub direction: CallDirection,
    /// Caller.
    pub from_number: String,
    /// Callee.
    pub to_number: String,
    /// Carrier status (`queued`, `ringing`, `in-progress`, `completed`, …).
    pub status: String,
    /// Sequence number of the status callback that set `status`.
    pub status_sequence: Option<i64>,
    /// Agent key.
    pub agent_key: Option<String>,
    /// Agent version, when pinned or chosen.
    pub agent_version_id: Option<String>,
    /// Why the call (or its AI leg) ended.
    pub end_reason: Option<String>,
    /// Answering-machine detection result.
    pub answered_by: Option<String>,
    /// Duration from the final status callback.
    pub duration_seconds: Option<i64>,
    /// Caller-supplied metadata (JSON).
    pub metadata: Option<serde_json::Value>,
    /// Media stream `MZ…`.
    pub stream_sid: Option<String>,
    /// `started`, `stopped`, `error`.
    pub stream_status: Option<String>,
    /// What the carrier is told when the AI leg ends (the answer of `stream-ended`), as
    /// planned by whoever ended the leg.
    pub after_stream: Option<crate::ending::Continuation>,
    /// Greeting requested for this call.
    pub greeting: Option<String>,
    /// Tenant's organisation reference.
    pub org_id: Option<String>,
    /// AMD mode requested (`Enable`, `DetectMessageEnd`).
    pub machine_detection: Option<String>,
    /// What to do when a machine answers (`voicemail`, `hangup`, `continue`;
    /// [`crate::telephony::amd::AmdAction`]).
    pub amd_action: Option<String>,
    /// The detection timeout asked of the carrier (seconds).
    pub amd_timeout_seconds: Option<i64>,
    /// What the AMD result made of the call (`conversation`, `voicemail_left`,
    /// `hung_up_on_machine`; [`crate::telephony::amd::MachineOutcome`]).
    pub machine_outcome: Option<String>,
    /// Carrier error code, when the carrier refused or failed.
    pub error_code: Option<String>,
    /// Carrier error message.
    pub error_message: Option<String>,
    /// The caller's identity in this call: `verified` or `failed` (`verify_identity`).
    pub identity_state: Option<String>,
    /// The call's effective recording policy (the version's, else the route's, else off).
    pub recording_policy: crate::recording::RecordingPolicy,
    /// Where the call was escalated: `queue:{name}` while dialing, `queue:{name}/{DialCallSid}`
    /// once a human answered.
    pub escalated_to: Option<String>,
    /// Free-text detail of the end reason (an AI error code, a panic message).
    pub end_detail: Option<String>,
    /// What became of the call, once it is complete.
    pub outcome: Option<crate::ending::Outcome>,
    /// When the call was completed (its `voice.call.completed` written), Unix ms.
    pub completed_at: Option<i64>,
    /// Outbound: where asking the carrier stands (`None` for inbound calls).
    pub placement: Option<Placement>,
    /// The node holding the call's work: the node that admitted or placed it, then the node
    /// its media stream runs on (`crate::nodes`); a node's lost calls are reconciled.
    pub node_id: Option<String>,
    /// The incarnation (process start, Unix ms) of that node.
    pub node_started_at: Option<i64>,
    /// Creation (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
    /// Answered (Unix ms).
    pub started_at: Option<i64>,
    /// Ended (Unix ms).
    pub ended_at: Option<i64>,
}

/// Where the placement of an outbound call stands (`calls.placement`). The task that asks
/// the carrier owns it: `Pending` → `Placed` | `Refused` | `Unknown` (a timeout: the carrier
/// may have created the call) → `Placed` | `NotFound` once status callbacks or a carrier
/// lookup tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// The carrier is being asked.
    Pending,
    /// The carrier created the call (its SID is recorded).
    Placed,
    /// The carrier refused the call.
    Refused,
    /// The carrier did not answer in time: the call may exist; being reconciled.
    Unknown,
    /// The carrier had no such call after the grace period.
    NotFound,
}

impl Placement {
    /// Every placement state.
    pub const ALL: [Placement; 5] = [
        Placement::Pending,
        Placement::Placed,
        Placement::Refused,
        Placement::Unknown,
        Placement::NotFound,
    ];

    /// Stored and wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Placement::Pending => "pending",
            Placement::Placed => "placed",
            Placement::Refused => "refused",
            Placement::Unknown => "unknown",
            Placement::NotFound => "not_found",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Placement::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether the outcome is still open (the carrier may yet report the call).
    pub const fn is_open(self) -> bool {
        matches!(self, Placement::Pending | Placement::Unknown)
    }
}

/// A stored status callback.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusEvent {
    /// `SequenceNumber`.
    pub sequence_number: i64,
    /// `CallStatus`.
    pub status: String,
    /// When received (Unix ms).
    pub at: i64,
    /// The callback's parameters (JSON object).
    pub params: serde_json::Value,
}

/// One entry of a call's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct CallEvent {
    /// Sequence.
    pub id: i64,
    /// When (Unix ms).
    pub at: i64,
    /// Kind (`admission`, `carrier`, `stream`, `control`, `amd`, …).
    pub kind: String,
    /// Details (JSON).
    pub detail: serde_json::Value,
}

/// Filter of the call-log listing (always scoped to one tenant).
#[derive(Debug, Clone)]
pub struct CallFilter {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Only this status.
    pub status: Option<String>,
    /// Only this direction.
    pub direction: Option<CallDirection>,
    /// Created at or after (Unix ms).
    pub from_ms: Option<i64>,
    /// Created before (Unix ms).
    pub to_ms: Option<i64>,
    /// Page size.
    pub limit: u32,
    /// Rows skipped.
    pub offset: u32,
}

/// Result of an admission attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The call was recorded.
    Admitted,
    /// The tenant is at its concurrency limit (nothing written).
    TenantAtLimit,
    /// The route is at its concurrency limit (nothing written).
    RouteAtLimit,
}

/// Result of starting an idempotent request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First use of the key: go ahead, then complete it.
    Started,
    /// Same key, same body, finished: replay this response.
    Replay {
        /// HTTP status.
        status: u16,
        /// Body.
        body: String,
    },
    /// Same key, still running.
    InProgress,
    /// Same key, different body.
    Mismatch,
}

/// An agent: a tenant's phone persona, addressed by key.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// Identifier.
    pub id: crate::ids::AgentId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Key used by routes and `make-call` (unique per tenant).
    pub key: String,
    /// Display name.
    pub name: String,
    /// Creation (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// Lifecycle of an agent version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionStatus {
    /// Editable.
    Draft,
    /// Immutable; eligible for calls.
    Approved,
    /// No longer used.
    Retired,
}

impl VersionStatus {
    /// Stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionStatus::Draft => "draft",
            VersionStatus::Approved => "approved",
            VersionStatus::Retired => "retired",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "draft" => Some(VersionStatus::Draft),
            "approved" => Some(VersionStatus::Approved),
            "retired" => Some(VersionStatus::Retired),
            _ => None,
        }
    }
}

/// How the model detects the end of the caller's turn.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TurnDetection {
    /// Energy-based voice activity detection.
    ServerVad {
        /// Activation threshold (0–1).
        threshold: f64,
        /// Audio kept before speech starts.
        prefix_padding_ms: u32,
        /// Silence that ends a turn.
        silence_duration_ms: u32,
    },
    /// Model-based end-of-turn detection.
    SemanticVad {
        /// `low`, `medium`, `high` or `auto`.
        eagerness: String,
    },
}

impl Default for TurnDetection {
    fn default() -> Self {
        TurnDetection::ServerVad {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
        }
    }
}

/// A version of an agent: everything a call needs to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentVersion {
    /// Identifier.
    pub id: crate::ids::AgentVersionId,
    /// The agent.
    pub agent_id: crate::ids::AgentId,
    /// Its key (joined from the agent).
    pub agent_key: String,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// 1, 2, … per agent.
    pub version: i64,
    /// Draft, approved or retired.
    pub status: VersionStatus,
    /// Realtime model.
    pub model: String,
    /// Voice.
    pub voice: String,
    /// System instructions.
    pub instructions: String,
    /// First sentence the agent says (a call may override it).
    pub greeting: Option<String>,
    /// What an outbound call with the `voicemail` AMD action leaves on a machine.
    pub voicemail_message: Option<String>,
    /// Input transcription model.
    pub transcription_model: Option<String>,
    /// Input language (ISO-639-1).
    pub transcription_language: Option<String>,
    /// Turn detection.
    pub turn_detection: TurnDetection,
    /// Longest call before the agent wraps up.
    pub max_call_seconds: i64,
    /// Caller silence before the agent ends the call.
    pub idle_timeout_seconds: i64,
    /// Tools, escalation rules and identity check.
    pub contract: crate::contract::Contract,
    /// The evaluation rubric (stored with its hash, immutable with the version).
    pub rubric: Option<crate::evaluation::Rubric>,
    /// Whether its calls are recorded (`None`: not set; the route's applies).
    pub recording_policy: Option<crate::recording::RecordingPolicy>,
    /// The disclosure line said first under `on_with_disclosure` (`None`: the default).
    pub recording_disclosure: Option<String>,
    /// Creation (Unix ms).
    pub created_at: i64,
    /// Approval (Unix ms).
    pub approved_at: Option<i64>,
    /// Retirement (Unix ms).
    pub retired_at: Option<i64>,
}

/// A voice session record.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceSession {
    /// Identifier.
    pub id: crate::ids::SessionId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The call.
    pub call_id: crate::ids::CallId,
    /// Agent key.
    pub agent_key: Option<String>,
    /// Agent version.
    pub agent_version_id: Option<String>,
    /// Model.
    pub model: String,
    /// Voice.
    pub voice: String,
    /// Media stream.
    pub stream_sid: Option<String>,
    /// `active`, `completed`, `failed`.
    pub status: String,
    /// Why it ended (an [`crate::ending::EndReason`] in its stored form).
    pub end_reason: Option<String>,
    /// Free-text detail of the end reason (an AI error, a panic message).
    pub end_detail: Option<String>,
    /// First audio from the model after the session started (ms).
    pub first_audio_ms: Option<i64>,
    /// Input tokens (sum of `response.done` usage).
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Total tokens.
    pub total_tokens: i64,
    /// AI socket reconnects.
    pub reconnects: i64,
    /// Summary of the conversation.
    pub summary: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Start (Unix ms).
    pub started_at: i64,
    /// End (Unix ms).
    pub ended_at: Option<i64>,
}

/// One turn of a transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptTurn {
    /// Order within the session.
    pub id: i64,
    /// `user`, `assistant` or `system`.
    pub role: String,
    /// Realtime item id.
    pub item_id: Option<String>,
    /// What was said (for an interrupted assistant turn: what the model generated).
    pub text: String,
    /// Offset from the session start (ms).
    pub start_ms: Option<i64>,
    /// Offset from the session start (ms).
    pub end_ms: Option<i64>,
    /// The caller barged in.
    pub interrupted: bool,
    /// The part the caller heard, when interrupted.
    pub heard_text: Option<String>,
    /// When written (Unix ms).
    pub created_at: i64,
}

/// Filter of the voice-session listing (always one tenant).
#[derive(Debug, Clone)]
pub struct SessionFilter {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Only this status.
    pub status: Option<String>,
    /// Only this agent.
    pub agent_key: Option<String>,
    /// Only this stream.
    pub stream_id: Option<String>,
    /// Only the sessions of this call.
    pub call_id: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Rows skipped.
    pub offset: u32,
}
