//! `RouterActor`: phone routes, call admission, the call log's control path, and the
//! tenants' operator queues and callback tasks (`router/operator.rs`).
//!
//! It resolves a `To` number to its route (cached, invalidated on every change it makes),
//! admits calls against the tenant's and the route's concurrency limits (counted from live
//! calls in the database, so the limit is cluster-wide), records them, mints and verifies
//! stream tokens (single use through the store), applies Twilio status callbacks, decides
//! what the caller hears when the AI leg ends, and places and controls calls through the
//! [`Carrier`]. Carrier requests and reads run in tasks it spawns, replying through the
//! request's port, so a slow carrier never blocks the mailbox.
//!
//! Messages: [`RouterMsg`]. Supervised by: [`crate::supervisor::RootSupervisor`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, call_t};
use serde_json::json;

use crate::carrier::{
    CallChange, Carrier, CarrierAuth, CarrierError, MachineDetection, PlaceCall, StreamInstructions,
};
use crate::ids::{AgentVersionId, CallId, RouteId, SessionId, TenantId};
use crate::meter::{HandleTimer, kind};
use crate::rollout::{RolloutError, RolloutMsg};
use crate::singleton::SingletonRef;
use crate::store::{
    Admission, CallDirection, CallEvent, CallFilter, CallRecord, NewAudit, OverLimit, Page,
    PhoneRoute, RouteDirection, RouteStatus, SessionFilter, StatusEvent, StatusUpdate, Store,
    StoreError, TenantStatus, TranscriptTurn, VoiceSession, is_terminal_status,
};
use crate::stream_token::{StreamClaims, StreamTokenKeys, TokenError, new_nonce};
use crate::tenant::{AuditMeta, TenantError, TenantMsg, TwilioAccount};
use crate::time::now_ms;

mod operator;

pub use operator::OperatorMsg;

/// Said when a number has no route (a safe message: no detail leaks).
pub const UNROUTED_MESSAGE: &str = "We're sorry, this number is not in service. Goodbye.";
/// Said before the fallback when a route has no message of its own.
pub const DEFAULT_FALLBACK_MESSAGE: &str = "Please hold while we connect you.";
/// Said when there is no fallback number.
pub const DEFAULT_UNAVAILABLE_MESSAGE: &str =
    "We're sorry, we can't take your call right now. Please try again later. Goodbye.";

/// Public URLs of this service as Twilio reaches it.
#[derive(Debug, Clone)]
pub struct PublicUrls {
    /// `https://voice.example.com` (no trailing slash).
    pub http_base: String,
    /// `wss://voice.example.com` (no trailing slash).
    pub ws_base: String,
}

impl PublicUrls {
    fn with_call(&self, path: &str, call: &CallId) -> String {
        format!("{}{path}?call_id={call}", self.http_base)
    }

    /// Stream instructions for a call carrying `token`.
    pub fn stream(&self, call: &CallId, token: String) -> StreamInstructions {
        StreamInstructions {
            stream_url: format!("{}/media-stream", self.ws_base),
            action_url: self.with_call("/api/v1/stream-ended", call),
            status_callback_url: self.with_call("/api/v1/stream-status", call),
            parameters: vec![(String::from("token"), token)],
        }
    }

    /// Status-callback URL of a call.
    pub fn call_status(&self, call: &CallId) -> String {
        self.with_call("/api/v1/call-status", call)
    }

    /// `<Dial action>` URL of a handoff.
    pub fn dial_result(&self, call: &CallId, handoff: &crate::ids::HandoffId) -> String {
        format!(
            "{}&handoff_id={handoff}",
            self.with_call("/api/v1/dial-result", call)
        )
    }

    /// Async AMD callback URL of a call.
    pub fn amd_status(&self, call: &CallId) -> String {
        self.with_call("/api/v1/amd-status", call)
    }
}

/// What the caller hears when the AI cannot take or keep the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// Said first.
    pub message: String,
    /// Dialled next; without one the call hangs up after the message.
    pub number: Option<String>,
}

impl Fallback {
    /// The fallback of `route` (or the generic one without a route).
    pub fn of(route: Option<&PhoneRoute>) -> Self {
        let number = route.and_then(|r| r.fallback_number.clone());
        let message = route
            .and_then(|r| r.fallback_message.clone())
            .unwrap_or_else(|| {
                if number.is_some() {
                    DEFAULT_FALLBACK_MESSAGE.to_owned()
                } else {
                    DEFAULT_UNAVAILABLE_MESSAGE.to_owned()
                }
            });
        Self { message, number }
    }
}

/// An inbound call to route (after its signature was verified).
#[derive(Debug, Clone)]
pub struct InboundRequest {
    /// The account the webhook was signed by.
    pub account: TwilioAccount,
    /// `CallSid`.
    pub call_sid: String,
    /// `From`.
    pub from: String,
    /// `To`.
    pub to: String,
    /// The node is shutting down: give the fallback.
    pub draining: bool,
}

/// What an inbound caller gets.
#[derive(Debug, Clone)]
pub enum InboundDecision {
    /// Connect to the agent; the fallback follows if the stream cannot start.
    Connect {
        /// The recorded call.
        call: Box<CallRecord>,
        /// The stream to open.
        stream: StreamInstructions,
        /// The route's fallback.
        fallback: Fallback,
    },
    /// No route for the number (for this account): a safe message and hang up.
    Unrouted,
    /// Refused; the route's fallback.
    Fallback {
        /// What to play.
        fallback: Fallback,
        /// Why (recorded).
        reason: &'static str,
    },
    /// Refused with `<Reject reason="busy"/>`.
    Busy {
        /// Why (recorded).
        reason: &'static str,
    },
}

/// An outbound call to place.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// The tenant placing it.
    pub tenant_id: TenantId,
    /// Callee.
    pub to: String,
    /// Caller id (defaults to the tenant's outbound route).
    pub from: Option<String>,
    /// Agent key (defaults to the route's).
    pub agent_key: Option<String>,
    /// Pinned agent version.
    pub agent_version_id: Option<String>,
    /// First thing the agent says.
    pub greeting: Option<String>,
    /// Tenant organisation reference.
    pub org_id: Option<String>,
    /// Caller metadata.
    pub metadata: Option<serde_json::Value>,
    /// `Enable` or `DetectMessageEnd`.
    pub machine_detection: Option<String>,
    /// The node is shutting down: refuse.
    pub draining: bool,
}

/// A media stream that sent `start`.
#[derive(Debug, Clone)]
pub struct StreamStart {
    /// Tenant of the account in `start.accountSid`.
    pub tenant_id: TenantId,
    /// `start.callSid`.
    pub call_sid: String,
    /// `start.streamSid`.
    pub stream_sid: String,
    /// `start.customParameters.token`.
    pub token: String,
}

/// Which call a carrier callback is about, as far as the callback says.
#[derive(Debug, Clone)]
pub struct CallbackTarget {
    /// Tenant of the signing account.
    pub tenant_id: TenantId,
    /// `call_id` from our callback URL, if present.
    pub call_id: Option<CallId>,
    /// `CallSid`.
    pub call_sid: String,
}

/// A `<Stream statusCallback>` event.
#[derive(Debug, Clone)]
pub struct StreamCallback {
    /// The call.
    pub target: CallbackTarget,
    /// `StreamSid`.
    pub stream_sid: Option<String>,
    /// `stream-started`, `stream-stopped`, `stream-error`.
    pub event: String,
    /// `StreamError`.
    pub error: Option<String>,
}

/// What happens after the AI leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterStream {
    /// Hang up.
    Hangup,
    /// The route's fallback.
    Fallback(Fallback),
    /// A fresh stream to the agent.
    Resume(StreamInstructions),
}

/// A control action on a live call.
#[derive(Debug, Clone)]
pub enum ControlAction {
    /// End the call (idempotent).
    Hangup,
    /// Transfer to numbers.
    Transfer {
        /// Numbers rung simultaneously.
        numbers: Vec<String>,
        /// Said first.
        announcement: Option<String>,
    },
    /// Hand the caller to an operator queue; the `<Dial action>` reports to
    /// `/api/v1/dial-result` with the handoff id.
    Handoff {
        /// Numbers rung simultaneously.
        numbers: Vec<String>,
        /// Said first.
        announcement: Option<String>,
        /// Caller id of the dialed leg (default: our number of the call).
        caller_id: Option<String>,
        /// Ring timeout.
        timeout_secs: u32,
        /// The handoff record.
        handoff: crate::ids::HandoffId,
    },
    /// Say a message, then hang up.
    Say {
        /// The words.
        message: String,
    },
}

/// A call with its history.
#[derive(Debug, Clone)]
pub struct CallDetail {
    /// The call.
    pub call: CallRecord,
    /// Status callbacks, by sequence number.
    pub status_events: Vec<StatusEvent>,
    /// Timeline.
    pub events: Vec<CallEvent>,
}

/// A phone route to create.
#[derive(Debug, Clone)]
pub struct NewRoute {
    /// Owner.
    pub tenant_id: TenantId,
    /// E.164.
    pub number: String,
    /// Agent.
    pub agent_key: String,
    /// Direction.
    pub direction: RouteDirection,
    /// Status.
    pub status: RouteStatus,
    /// Fallback number.
    pub fallback_number: Option<String>,
    /// Fallback message.
    pub fallback_message: Option<String>,
    /// At the limit.
    pub over_limit: OverLimit,
    /// Concurrency limit.
    pub max_concurrent_calls: i64,
    /// Staged-route test callers.
    pub test_callers: Vec<String>,
}

/// Changes to a route (`None` keeps; `Some(None)` clears a nullable field).
#[derive(Debug, Clone, Default)]
pub struct RoutePatch {
    /// New number.
    pub number: Option<String>,
    /// New agent.
    pub agent_key: Option<String>,
    /// New direction.
    pub direction: Option<RouteDirection>,
    /// New status.
    pub status: Option<RouteStatus>,
    /// New fallback number.
    pub fallback_number: Option<Option<String>>,
    /// New fallback message.
    pub fallback_message: Option<Option<String>>,
    /// New over-limit behaviour.
    pub over_limit: Option<OverLimit>,
    /// New limit.
    pub max_concurrent_calls: Option<i64>,
    /// New test callers.
    pub test_callers: Option<Vec<String>>,
}

/// A recent inbound call that could not be routed or was refused (diagnostics).
#[derive(Debug, Clone)]
pub struct RoutingDiagnostic {
    /// When (Unix ms).
    pub at: i64,
    /// Signing account.
    pub account_sid: String,
    /// `CallSid`.
    pub call_sid: String,
    /// `From`.
    pub from: String,
    /// `To`.
    pub to: String,
    /// Why.
    pub reason: &'static str,
}

/// Errors of the router.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// Not found (what).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Uniqueness or state conflict.
    #[error("{0}")]
    Conflict(String),
    /// Invalid input (field, message).
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    /// Invalid input in a nested field (path such as `business_hours.windows[0].open`,
    /// message).
    #[error("{0}: {1}")]
    InvalidField(String, String),
    /// A state change the object's current state does not allow (the message names it).
    #[error("{0}")]
    InvalidTransition(String),
    /// Concurrency limit reached (`tenant` or `route`).
    #[error("the {0} is at its concurrency limit")]
    AtLimit(&'static str),
    /// Calls are refused: code (`route_staged`, `tenant_suspended`, `draining`) and message.
    #[error("{1}")]
    Refused(&'static str, String),
    /// The tenant has no Twilio credentials.
    #[error("the tenant has no Twilio credentials")]
    NoCredentials,
    /// The carrier failed; the call (if any) is recorded as failed.
    #[error("carrier: {error}")]
    Carrier {
        /// The carrier error.
        error: CarrierError,
        /// The call recorded for the attempt.
        call_id: Option<CallId>,
    },
    /// The stream token was refused.
    #[error("stream token: {0}")]
    Token(#[from] TokenError),
    /// The store failed.
    #[error("store")]
    Store(#[from] StoreError),
    /// The tenant actor failed or did not answer.
    #[error("tenant service: {0}")]
    Tenant(String),
}

impl From<TenantError> for RouterError {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::NotFound(what) => RouterError::NotFound(what),
            other => RouterError::Tenant(other.to_string()),
        }
    }
}

type Reply<T> = RpcReplyPort<Result<T, RouterError>>;

/// Messages of the router. RPC variants end with their reply port.
pub enum RouterMsg {
    /// Creates a route.
    CreateRoute(NewRoute, AuditMeta, Reply<PhoneRoute>),
    /// Changes a route (optionally only if it belongs to the tenant).
    UpdateRoute(RouteId, RoutePatch, AuditMeta, Reply<PhoneRoute>),
    /// Deletes a route.
    DeleteRoute(RouteId, AuditMeta, Reply<PhoneRoute>),
    /// Reads a route.
    GetRoute(RouteId, Reply<PhoneRoute>),
    /// Lists routes (tenant filter, limit, offset).
    ListRoutes(Option<TenantId>, u32, u32, Reply<Page<PhoneRoute>>),
    /// Routes and admits an inbound call.
    Inbound(InboundRequest, Reply<InboundDecision>),
    /// Places an outbound call.
    Outbound(OutboundRequest, Reply<CallRecord>),
    /// Verifies a stream token (consuming it) and records the stream as started.
    StreamStarted(StreamStart, Reply<CallRecord>),
    /// A call status callback.
    CallStatus(CallbackTarget, StatusUpdate, Reply<bool>),
    /// A stream status callback.
    StreamStatus(StreamCallback, Reply<()>),
    /// An async AMD result (target, `AnsweredBy`).
    AmdStatus(CallbackTarget, String, Reply<()>),
    /// The `<Connect action>`: what next.
    StreamEnded(CallbackTarget, Reply<AfterStream>),
    /// Hang up or transfer a call of a tenant (id or SID).
    Control(TenantId, String, ControlAction, Reply<CallRecord>),
    /// A call of a tenant (id or SID) with its history.
    GetCall(TenantId, String, Reply<CallDetail>),
    /// A tenant's calls.
    ListCalls(CallFilter, Reply<Page<CallRecord>>),
    /// Recent unrouted and refused inbound calls.
    RecentRouting(RpcReplyPort<Vec<RoutingDiagnostic>>),
    /// A tenant's voice sessions.
    ListSessions(SessionFilter, Reply<Page<VoiceSession>>),
    /// A tenant's voice session with its transcript.
    GetSession(TenantId, SessionId, Reply<SessionDetail>),
    /// Operator queues and callback tasks (built with [`RouterMsg::create_queue`] and
    /// its siblings).
    Operator(OperatorMsg),
    /// Texts the caller of a live call (body); replies the message id.
    SendSms(TenantId, CallId, String, Reply<String>),
    /// The `<Dial action>` of a handoff reported (`/api/v1/dial-result`).
    DialResult(
        CallbackTarget,
        crate::ids::HandoffId,
        DialReport,
        Reply<AfterStream>,
    ),
}

/// What Twilio reports when a handoff's `<Dial>` ends.
#[derive(Debug, Clone)]
pub struct DialReport {
    /// `DialCallStatus`: `completed`, `answered`, `busy`, `no-answer`, `failed`, `canceled`.
    pub status: String,
    /// `DialCallSid`.
    pub dial_call_sid: Option<String>,
    /// `DialCallDuration` (seconds).
    pub duration_secs: Option<i64>,
}

/// A voice session with its transcript.
#[derive(Debug, Clone)]
pub struct SessionDetail {
    /// The session.
    pub session: VoiceSession,
    /// Its transcript, in order.
    pub turns: Vec<TranscriptTurn>,
    /// Its tool invocations, in order.
    pub function_calls: Vec<crate::store::FunctionCall>,
    /// Handoffs of its call, oldest first.
    pub handoffs: Vec<crate::store::Handoff>,
}

impl RouterMsg {
    /// Message name for metrics.
    pub const fn name(&self) -> &'static str {
        match self {
            RouterMsg::CreateRoute(..) => "create_route",
            RouterMsg::UpdateRoute(..) => "update_route",
            RouterMsg::DeleteRoute(..) => "delete_route",
            RouterMsg::GetRoute(..) => "get_route",
            RouterMsg::ListRoutes(..) => "list_routes",
            RouterMsg::Inbound(..) => "inbound",
            RouterMsg::Outbound(..) => "outbound",
            RouterMsg::StreamStarted(..) => "stream_started",
            RouterMsg::CallStatus(..) => "call_status",
            RouterMsg::StreamStatus(..) => "stream_status",
            RouterMsg::AmdStatus(..) => "amd_status",
            RouterMsg::StreamEnded(..) => "stream_ended",
            RouterMsg::Control(..) => "control",
            RouterMsg::GetCall(..) => "get_call",
            RouterMsg::ListCalls(..) => "list_calls",
            RouterMsg::RecentRouting(..) => "recent_routing",
            RouterMsg::ListSessions(..) => "list_sessions",
            RouterMsg::GetSession(..) => "get_session",
            RouterMsg::Operator(msg) => msg.name(),
            RouterMsg::SendSms(..) => "send_sms",
            RouterMsg::DialResult(..) => "dial_result",
        }
    }
}

/// The router behaviour.
pub struct RouterActor;

/// Arguments (child spec) of the router.
#[derive(Clone)]
pub struct RouterArgs {
    /// Database.
    pub store: Store,
    /// Telephone network.
    pub carrier: Arc<dyn Carrier>,
    /// Stream-token secrets.
    pub keys: StreamTokenKeys,
    /// This service's public URLs.
    pub urls: PublicUrls,
    /// The tenant actor (for Twilio credentials).
    pub tenant: SingletonRef<TenantMsg>,
    /// The rollout actor (for the agent version of a call).
    pub rollout: SingletonRef<RolloutMsg>,
    /// Stream-token lifetime.
    pub token_ttl: Duration,
    /// Calls older than this no longer count as live (a lost final callback cannot hold a
    /// concurrency slot forever).
    pub live_window: Duration,
    /// How long the router waits for the tenant actor.
    pub tenant_timeout: Duration,
    /// Tenant events (callback tasks created by handoff fallbacks).
    pub notifier: Option<crate::notifier::Notifier>,
}

/// Said when nobody in the queue answered and a callback task was created.
const CALLBACK_MESSAGE: &str = "Sorry, nobody is available right now. A colleague will call you back as soon as possible. Goodbye.";

/// Shared context of the router and the tasks it spawns.
#[derive(Clone)]
struct Ctx {
    args: RouterArgs,
}

/// State of the router.
pub struct RouterState {
    ctx: Ctx,
    /// Number → route (or none), with load time.
    routes: HashMap<String, (Option<PhoneRoute>, Instant)>,
    /// Recent unrouted and refused inbound calls, newest last.
    diagnostics: VecDeque<RoutingDiagnostic>,
}

/// Route cache entry lifetime (bounds staleness of changes made on other nodes).
const ROUTE_CACHE_TTL: Duration = Duration::from_secs(30);
/// Diagnostics kept.
const MAX_DIAGNOSTICS: usize = 200;

fn reply<T>(port: RpcReplyPort<T>, value: T) {
    if !port.is_closed() {
        let _ = port.send(value);
    }
}

fn route_audit_json(r: &PhoneRoute) -> serde_json::Value {
    json!({
        "id": r.id.as_str(),
        "tenant_id": r.tenant_id.as_str(),
        "number": r.number,
        "agent_key": r.agent_key,
        "direction": r.direction.as_str(),
        "status": r.status.as_str(),
        "fallback_number": r.fallback_number,
        "fallback_message": r.fallback_message,
        "over_limit": r.over_limit.as_str(),
        "max_concurrent_calls": r.max_concurrent_calls,
        "test_callers": r.test_callers,
    })
}

impl Ctx {
    fn store(&self) -> &Store {
        &self.args.store
    }

    fn live_since(&self) -> i64 {
        now_ms() - i64::try_from(self.args.live_window.as_millis()).unwrap_or(i64::MAX)
    }

    fn mint(&self, call: &CallRecord) -> String {
        let exp = now_ms() / 1000 + i64::try_from(self.args.token_ttl.as_secs()).unwrap_or(300);
        self.args.keys.mint(&StreamClaims {
            v: 1,
            call: call.id.to_string(),
            sid: call.call_sid.clone(),
            tenant: call.tenant_id.to_string(),
            route: call.route_id.as_ref().map(ToString::to_string),
            agent_version: call.agent_version_id.clone(),
            exp,
            nonce: new_nonce(),
        })
    }

    async fn twilio(&self, tenant: &TenantId) -> Result<TwilioAccount, RouterError> {
        let actor = self
            .args
            .tenant
            .get()
            .ok_or_else(|| RouterError::Tenant("restarting".into()))?;
        let ms = u64::try_from(self.args.tenant_timeout.as_millis()).unwrap_or(5000);
        let acct = call_t!(actor, TenantMsg::TwilioByTenant, ms, tenant.clone())
            .map_err(|e| RouterError::Tenant(e.to_string()))??;
        acct.ok_or(RouterError::NoCredentials)
    }

    /// The agent version a call runs (`Ok(None)` when the agent has none to run).
    async fn resolve(
        &self,
        tenant: &TenantId,
        key: &str,
        pinned: Option<AgentVersionId>,
    ) -> Result<Result<crate::store::AgentVersion, String>, RouterError> {
        let actor = self
            .args
            .rollout
            .get()
            .ok_or_else(|| RouterError::Tenant("rollout restarting".into()))?;
        let ms = u64::try_from(self.args.tenant_timeout.as_millis()).unwrap_or(5000);
        match call_t!(
            actor,
            RolloutMsg::Resolve,
            ms,
            tenant.clone(),
            key.to_owned(),
            pinned
        ) {
            Ok(Ok(v)) => Ok(Ok(v)),
            Ok(Err(RolloutError::NoVersion(why))) => Ok(Err(why)),
            Ok(Err(e)) => Err(RouterError::Tenant(e.to_string())),
            Err(e) => Err(RouterError::Tenant(e.to_string())),
        }
    }

    /// Completes a call whose handoff's dial settled it (bridge: the call runtime no longer
    /// completes a call that continues with a dial; the telephony rewrite owns this).
    async fn complete_after_dial(&self, call: &CallId, reason: crate::ending::EndReason) {
        let Some(notifier) = self.args.notifier.clone() else {
            return;
        };
        let outcomes = crate::outcome::Outcomes::new(self.store().clone(), notifier);
        if let Err(error) = outcomes.complete(call, reason, None, None).await {
            tracing::warn!(call_id = %call, error = %error, "could not complete the call");
        }
    }

    async fn event(&self, call: &CallId, kind: &str, detail: serde_json::Value) {
        if let Err(error) = self.store().add_call_event(call, kind, &detail).await {
            tracing::warn!(call_id = %call, error = %error, "could not record call event");
        }
    }

    /// Finds the call a callback or control request is about, scoped to `tenant`.
    async fn find_call(
        &self,
        tenant: &TenantId,
        id: Option<&CallId>,
        sid: Option<&str>,
    ) -> Result<Option<CallRecord>, RouterError> {
        let call = match (id, sid) {
            (Some(id), _) => self.store().get_call(tenant, id).await?,
            (None, Some(sid)) => self.store().call_by_sid(sid).await?,
            (None, None) => None,
        };
        Ok(call.filter(|c| &c.tenant_id == tenant))
    }

    fn new_call(
        &self,
        tenant: &TenantId,
        direction: CallDirection,
        from: &str,
        to: &str,
    ) -> CallRecord {
        let now = now_ms();
        CallRecord {
            id: CallId::generate(),
            tenant_id: tenant.clone(),
            call_sid: None,
            account_sid: None,
            route_id: None,
            direction,
            from_number: from.to_owned(),
            to_number: to.to_owned(),
            status: String::from("queued"),
            status_sequence: None,
            agent_key: None,
            agent_version_id: None,
            end_reason: None,
            answered_by: None,
            duration_seconds: None,
            metadata: None,
            stream_sid: None,
            stream_status: None,
            after_stream: None,
            greeting: None,
            org_id: None,
            machine_detection: None,
            error_code: None,
            error_message: None,
            identity_state: None,
            escalated_to: None,
            end_detail: None,
            outcome: None,
            completed_at: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            ended_at: None,
        }
    }

    async fn outbound(&self, req: OutboundRequest) -> Result<CallRecord, RouterError> {
        if req.draining {
            return Err(RouterError::Refused(
                "draining",
                "the service is shutting down; retry on another node".into(),
            ));
        }
        let account = self.twilio(&req.tenant_id).await?;
        if account.tenant_status != TenantStatus::Active {
            return Err(RouterError::Refused(
                "tenant_suspended",
                "the tenant is suspended".into(),
            ));
        }
        let route = match &req.from {
            Some(from) => self
                .store()
                .route_by_number(from)
                .await?
                .filter(|r| {
                    r.tenant_id == req.tenant_id && r.direction.allows(CallDirection::Outbound)
                })
                .ok_or_else(|| {
                    RouterError::Invalid(
                        "from",
                        "is not one of this tenant's outbound numbers".into(),
                    )
                })?,
            None => self
                .store()
                .outbound_route(&req.tenant_id)
                .await?
                .ok_or_else(|| {
                    RouterError::Invalid(
                        "from",
                        "the tenant has no outbound phone route; create one or pass from".into(),
                    )
                })?,
        };
        if route.status == RouteStatus::Staged && !route.test_callers.contains(&req.to) {
            return Err(RouterError::Refused(
                "route_staged",
                format!(
                    "route {} is staged: only its test callers can be called",
                    route.number
                ),
            ));
        }
        let agent_key = req
            .agent_key
            .clone()
            .unwrap_or_else(|| route.agent_key.clone());
        let pinned = match &req.agent_version_id {
            Some(v) => Some(AgentVersionId::parse(v).ok_or_else(|| {
                RouterError::Invalid("agent_version_id", "is not an agent version id".into())
            })?),
            None => None,
        };
        let field = if pinned.is_some() {
            "agent_version_id"
        } else {
            "agent_key"
        };
        let version = self
            .resolve(&req.tenant_id, &agent_key, pinned)
            .await?
            .map_err(|why| RouterError::Invalid(field, why))?;
        let mut call = self.new_call(
            &req.tenant_id,
            CallDirection::Outbound,
            &route.number,
            &req.to,
        );
        call.account_sid = Some(account.auth.account_sid.clone());
        call.route_id = Some(route.id.clone());
        call.agent_key = Some(agent_key);
        call.agent_version_id = Some(version.id.to_string());
        call.greeting = req.greeting.clone();
        call.org_id = req.org_id.clone();
        call.metadata = req.metadata.clone();
        call.machine_detection = req.machine_detection.clone();
        match self
            .store()
            .admit_call(
                &call,
                account.max_concurrent_calls,
                Some(route.max_concurrent_calls),
                self.live_since(),
            )
            .await?
        {
            Admission::Admitted => {}
            Admission::TenantAtLimit => return Err(RouterError::AtLimit("tenant")),
            Admission::RouteAtLimit => return Err(RouterError::AtLimit("route")),
        }
        let token = self.mint(&call);
        let place = PlaceCall {
            to: call.to_number.clone(),
            from: call.from_number.clone(),
            stream: self.args.urls.stream(&call.id, token),
            status_callback_url: self.args.urls.call_status(&call.id),
            machine_detection: call
                .machine_detection
                .as_ref()
                .map(|mode| MachineDetection {
                    mode: mode.clone(),
                    callback_url: self.args.urls.amd_status(&call.id),
                }),
        };
        match self.args.carrier.place_call(&account.auth, &place).await {
            Ok(placed) => {
                self.store()
                    .set_call_sid(&call.id, &placed.call_sid, &placed.status)
                    .await?;
                self.event(&call.id, "carrier", json!({"action": "create", "call_sid": placed.call_sid, "status": placed.status}))
                    .await;
                Ok(self.store().get_call_by_id(&call.id).await?.unwrap_or(call))
            }
            Err(error) => {
                let code = error
                    .code
                    .map_or_else(|| String::from("none"), |c| c.to_string());
                let reason = if error.timeout {
                    "carrier_timeout"
                } else {
                    "carrier_error"
                };
                self.store()
                    .fail_call(&call.id, &code, &error.message, reason)
                    .await?;
                self.event(&call.id, "carrier", json!({"action": "create", "error_code": error.code, "error": error.message, "timeout": error.timeout}))
                    .await;
                Err(RouterError::Carrier {
                    error,
                    call_id: Some(call.id),
                })
            }
        }
    }

    async fn control(
        &self,
        tenant: TenantId,
        id: String,
        action: ControlAction,
    ) -> Result<CallRecord, RouterError> {
        let call = self.lookup(&tenant, &id).await?;
        let ended = is_terminal_status(&call.status) || call.ended_at.is_some();
        let (change, label) = match &action {
            ControlAction::Hangup if ended => return Ok(call),
            ControlAction::Hangup => (CallChange::Hangup, "hangup"),
            ControlAction::Transfer { .. }
            | ControlAction::Handoff { .. }
            | ControlAction::Say { .. }
                if ended =>
            {
                return Err(RouterError::Conflict("the call has ended".into()));
            }
            ControlAction::Handoff {
                numbers,
                announcement,
                caller_id,
                timeout_secs,
                handoff,
            } => (
                CallChange::Dial {
                    announcement: announcement.clone(),
                    numbers: numbers.clone(),
                    caller_id: Some(caller_id.clone().unwrap_or_else(|| {
                        if call.direction == CallDirection::Inbound {
                            call.to_number.clone()
                        } else {
                            call.from_number.clone()
                        }
                    })),
                    timeout_secs: Some(*timeout_secs),
                    action_url: Some(self.args.urls.dial_result(&call.id, handoff)),
                },
                "handoff",
            ),
            ControlAction::Say { message } => (
                CallChange::Fallback {
                    message: message.clone(),
                    number: None,
                },
                "say",
            ),
            ControlAction::Transfer {
                numbers,
                announcement,
            } => (
                CallChange::Dial {
                    announcement: announcement.clone(),
                    numbers: numbers.clone(),
                    caller_id: Some(if call.direction == CallDirection::Inbound {
                        call.to_number.clone()
                    } else {
                        call.from_number.clone()
                    }),
                    timeout_secs: None,
                    action_url: None,
                },
                "transfer",
            ),
        };
        let Some(call_sid) = call.call_sid.clone() else {
            return Err(RouterError::Conflict(
                "the carrier has not accepted this call yet".into(),
            ));
        };
        let account = self.twilio(&tenant).await?;
        let auth: &CarrierAuth = &account.auth;
        match self
            .args
            .carrier
            .update_call(auth, &call_sid, &change)
            .await
        {
            Ok(()) => {}
            Err(e) if e.already_ended && matches!(action, ControlAction::Hangup) => {}
            Err(e) if e.already_ended => {
                return Err(RouterError::Conflict("the call has ended".into()));
            }
            Err(error) => {
                self.event(
                    &call.id,
                    "control",
                    json!({"action": label, "error_code": error.code, "error": error.message}),
                )
                .await;
                return Err(RouterError::Carrier {
                    error,
                    call_id: Some(call.id),
                });
            }
        }
        let detail = match &action {
            ControlAction::Hangup => json!({"action": "hangup"}),
            ControlAction::Transfer { numbers, .. } => json!({"action": "transfer", "to": numbers}),
            ControlAction::Handoff {
                numbers, handoff, ..
            } => json!({"action": "handoff", "to": numbers, "handoff_id": handoff.as_str()}),
            ControlAction::Say { .. } => json!({"action": "say"}),
        };
        self.event(&call.id, "control", detail).await;
        if matches!(action, ControlAction::Hangup) {
            self.store()
                .set_end_reason(&call.id, "hangup_requested")
                .await?;
        }
        Ok(self.store().get_call_by_id(&call.id).await?.unwrap_or(call))
    }

    /// Texts the caller of a live call from the call's own number.
    async fn send_sms(
        &self,
        tenant: TenantId,
        call: CallId,
        body: String,
    ) -> Result<String, RouterError> {
        let call = self
            .store()
            .get_call(&tenant, &call)
            .await?
            .ok_or(RouterError::NotFound("call"))?;
        let (to, from) = match call.direction {
            CallDirection::Inbound => (call.from_number.clone(), call.to_number.clone()),
            CallDirection::Outbound => (call.to_number.clone(), call.from_number.clone()),
        };
        let account = self.twilio(&tenant).await?;
        match self
            .args
            .carrier
            .send_sms(&account.auth, &to, &from, &body)
            .await
        {
            Ok(sid) => {
                self.event(&call.id, "sms", json!({"to": to, "message_sid": sid}))
                    .await;
                Ok(sid)
            }
            Err(error) => {
                self.event(
                    &call.id,
                    "sms",
                    json!({"to": to, "error_code": error.code, "error": error.message}),
                )
                .await;
                Err(RouterError::Carrier {
                    error,
                    call_id: Some(call.id),
                })
            }
        }
    }

    /// A handoff's `<Dial>` ended: answered → the call is escalated and ends with the bridged
    /// leg; otherwise the queue's fallback (a callback task, its voicemail message, or back to
    /// the agent on a fresh stream that resumes the conversation).
    async fn dial_result(
        &self,
        target: CallbackTarget,
        handoff_id: crate::ids::HandoffId,
        report: DialReport,
    ) -> Result<AfterStream, RouterError> {
        let Some(call) = self
            .find_call(
                &target.tenant_id,
                target.call_id.as_ref(),
                Some(&target.call_sid),
            )
            .await?
        else {
            return Ok(AfterStream::Hangup);
        };
        let Some(handoff) = self
            .store()
            .get_handoff(&target.tenant_id, &handoff_id)
            .await?
            .filter(|h| h.call_id == call.id.as_str())
        else {
            return Err(RouterError::NotFound("handoff"));
        };
        if handoff.status != "dialing" {
            // A repeated callback: the decision was made already.
            return Ok(AfterStream::Hangup);
        }
        let store = self.store();
        let answered = matches!(report.status.as_str(), "completed" | "answered");
        let queue = match handoff
            .queue_id
            .as_deref()
            .and_then(crate::ids::QueueId::parse)
        {
            Some(id) => store.get_queue(&target.tenant_id, &id).await?,
            None => None,
        };
        if answered {
            let claimed = store
                .finish_handoff(
                    &handoff_id,
                    "answered",
                    &report.status,
                    report.dial_call_sid.as_deref(),
                    "bridged",
                    None,
                )
                .await?;
            if !claimed {
                return Ok(AfterStream::Hangup);
            }
            let who = report
                .dial_call_sid
                .clone()
                .unwrap_or_else(|| String::from("operator"));
            let queue_name = handoff.queue_name.clone().unwrap_or_default();
            store
                .set_escalated(&call.id, &format!("queue:{queue_name}/{who}"))
                .await?;
            store.set_end_reason(&call.id, "escalated").await?;
            self.event(
                &call.id,
                "handoff",
                json!({"handoff_id": handoff.id, "dial_status": report.status, "outcome": "bridged", "dial_call_sid": report.dial_call_sid, "duration_seconds": report.duration_secs}),
            )
            .await;
            metrics::counter!("handoffs_total", "outcome" => "answered").increment(1);
            self.complete_after_dial(&call.id, crate::ending::EndReason::Escalated)
                .await;
            return Ok(AfterStream::Hangup);
        }
        metrics::counter!("handoffs_total", "outcome" => "unanswered").increment(1);
        let fallback = queue
            .as_ref()
            .map_or(crate::operator::QueueFallback::CallbackTask, |q| {
                q.when_unanswered
            });
        // Claim the handoff first (one conditional update): a callback Twilio repeats, even
        // concurrently, finds it settled and creates nothing.
        let outcome = match fallback {
            crate::operator::QueueFallback::Agent => "agent",
            crate::operator::QueueFallback::Voicemail => "voicemail",
            crate::operator::QueueFallback::CallbackTask => "callback_task",
        };
        if !store
            .finish_handoff(
                &handoff_id,
                "unanswered",
                &report.status,
                None,
                outcome,
                None,
            )
            .await?
        {
            return Ok(AfterStream::Hangup);
        }
        let (task, decision) = match fallback {
            crate::operator::QueueFallback::Agent => {
                store.resume_after_handoff(&call.id).await?;
                let token = self.mint(&call);
                (
                    None,
                    AfterStream::Resume(self.args.urls.stream(&call.id, token)),
                )
            }
            crate::operator::QueueFallback::Voicemail => {
                let message = queue
                    .as_ref()
                    .and_then(|q| q.voicemail_message.clone())
                    .unwrap_or_else(|| CALLBACK_MESSAGE.to_owned());
                store
                    .end_unanswered_handoff(&call.id, "escalation_voicemail")
                    .await?;
                (
                    None,
                    AfterStream::Fallback(Fallback {
                        message,
                        number: None,
                    }),
                )
            }
            crate::operator::QueueFallback::CallbackTask => {
                let caller = match call.direction {
                    CallDirection::Inbound => call.from_number.clone(),
                    CallDirection::Outbound => call.to_number.clone(),
                };
                let reason = format!(
                    "{} (nobody answered in queue {}: {})",
                    handoff.reason,
                    handoff.queue_name.clone().unwrap_or_default(),
                    report.status
                );
                let task = crate::callbacks::create(
                    store,
                    self.args.notifier.as_ref(),
                    crate::operator::NewCallbackTask {
                        tenant_id: call.tenant_id.clone(),
                        phone: caller,
                        reason,
                        source_call_id: Some(call.id.clone()),
                        queue_id: queue.as_ref().map(|q| q.id.clone()),
                        priority: crate::operator::CallbackPriority::High,
                        due_at: None,
                        created_by: crate::operator::CallbackSource::Handoff,
                    },
                )
                .await
                .map_err(|e| RouterError::Conflict(format!("callback task not created: {e}")))?;
                store
                    .end_unanswered_handoff(&call.id, "callback_scheduled")
                    .await?;
                store.set_handoff_callback_task(&handoff_id, &task).await?;
                (
                    Some(task),
                    AfterStream::Fallback(Fallback {
                        message: CALLBACK_MESSAGE.to_owned(),
                        number: None,
                    }),
                )
            }
        };
        self.event(
            &call.id,
            "handoff",
            json!({"handoff_id": handoff.id, "dial_status": report.status, "outcome": outcome, "callback_task_id": task}),
        )
        .await;
        match fallback {
            crate::operator::QueueFallback::Agent => {}
            crate::operator::QueueFallback::Voicemail => {
                self.complete_after_dial(&call.id, crate::ending::EndReason::EscalationVoicemail)
                    .await;
            }
            crate::operator::QueueFallback::CallbackTask => {
                self.complete_after_dial(&call.id, crate::ending::EndReason::CallbackScheduled)
                    .await;
            }
        }
        Ok(decision)
    }

    async fn lookup(&self, tenant: &TenantId, id: &str) -> Result<CallRecord, RouterError> {
        let found = match CallId::parse(id) {
            Some(call_id) => self.store().get_call(tenant, &call_id).await?,
            None => self
                .store()
                .call_by_sid(id)
                .await?
                .filter(|c| &c.tenant_id == tenant),
        };
        found.ok_or(RouterError::NotFound("call"))
    }

    async fn detail(&self, tenant: TenantId, id: String) -> Result<CallDetail, RouterError> {
        let call = self.lookup(&tenant, &id).await?;
        let status_events = self.store().status_events(&call.id).await?;
        let events = self.store().call_events(&call.id).await?;
        Ok(CallDetail {
            call,
            status_events,
            events,
        })
    }
}

impl RouterState {
    async fn route_for(&mut self, number: &str) -> Result<Option<PhoneRoute>, StoreError> {
        if let Some((route, at)) = self.routes.get(number)
            && at.elapsed() < ROUTE_CACHE_TTL
        {
            return Ok(route.clone());
        }
        let route = self.ctx.store().route_by_number(number).await?;
        if self.routes.len() > 10_000 {
            self.routes.clear();
        }
        self.routes
            .insert(number.to_owned(), (route.clone(), Instant::now()));
        Ok(route)
    }

    fn forget(&mut self, route: &PhoneRoute) {
        self.routes.remove(&route.number);
    }

    fn diagnose(&mut self, req: &InboundRequest, reason: &'static str) {
        metrics::counter!("inbound_refused_total", "reason" => reason).increment(1);
        tracing::warn!(call_sid = %req.call_sid, to = %req.to, reason, "inbound call not connected to an agent");
        if self.diagnostics.len() >= MAX_DIAGNOSTICS {
            self.diagnostics.pop_front();
        }
        self.diagnostics.push_back(RoutingDiagnostic {
            at: now_ms(),
            account_sid: req.account.auth.account_sid.clone(),
            call_sid: req.call_sid.clone(),
            from: req.from.clone(),
            to: req.to.clone(),
            reason,
        });
    }

    async fn inbound(&mut self, req: InboundRequest) -> Result<InboundDecision, RouterError> {
        let route = self.route_for(&req.to).await?.filter(|r| {
            r.tenant_id == req.account.tenant_id && r.direction.allows(CallDirection::Inbound)
        });
        let Some(route) = route else {
            self.diagnose(&req, "unrouted");
            return Ok(InboundDecision::Unrouted);
        };
        // A retried webhook for a call we already took: same call, fresh token.
        if let Some(existing) = self.ctx.store().call_by_sid(&req.call_sid).await?
            && existing.tenant_id == route.tenant_id
        {
            let token = self.ctx.mint(&existing);
            let stream = self.ctx.args.urls.stream(&existing.id, token);
            return Ok(InboundDecision::Connect {
                call: Box::new(existing),
                stream,
                fallback: Fallback::of(Some(&route)),
            });
        }
        let mut call =
            self.ctx
                .new_call(&route.tenant_id, CallDirection::Inbound, &req.from, &req.to);
        call.call_sid = Some(req.call_sid.clone());
        call.account_sid = Some(req.account.auth.account_sid.clone());
        call.route_id = Some(route.id.clone());
        call.agent_key = Some(route.agent_key.clone());
        call.status = String::from("ringing");
        let version = self
            .ctx
            .resolve(&route.tenant_id, &route.agent_key, None)
            .await?;
        if let Ok(v) = &version {
            call.agent_version_id = Some(v.id.to_string());
        }
        let refusal = if req.draining {
            Some("draining")
        } else if req.account.tenant_status != TenantStatus::Active {
            Some("tenant_suspended")
        } else if route.status == RouteStatus::Staged && !route.test_callers.contains(&req.from) {
            Some("route_staged")
        } else if version.is_err() {
            Some("no_agent_version")
        } else {
            None
        };
        let refusal = match refusal {
            Some(reason) => Some(reason),
            None => match self
                .ctx
                .store()
                .admit_call(
                    &call,
                    req.account.max_concurrent_calls,
                    Some(route.max_concurrent_calls),
                    self.ctx.live_since(),
                )
                .await?
            {
                Admission::Admitted => None,
                Admission::TenantAtLimit => Some("tenant_at_limit"),
                Admission::RouteAtLimit => Some("route_at_limit"),
            },
        };
        let fallback = Fallback::of(Some(&route));
        if let Some(reason) = refusal {
            self.diagnose(&req, reason);
            let busy = matches!(reason, "tenant_at_limit" | "route_at_limit")
                && route.over_limit == OverLimit::Busy;
            call.status = String::from(if busy { "busy" } else { "refused" });
            call.end_reason = Some(reason.to_owned());
            // Recorded outside the limits, as a finished call, so the log shows the refusal.
            self.ctx
                .store()
                .admit_call(&call, i64::MAX, None, 0)
                .await?;
            self.ctx.store().set_end_reason(&call.id, reason).await?;
            self.ctx
                .store()
                .attach_status_events(&call.id, &req.call_sid, &req.account.auth.account_sid)
                .await?;
            self.ctx
                .event(
                    &call.id,
                    "admission",
                    json!({"admitted": false, "reason": reason, "busy": busy}),
                )
                .await;
            return Ok(if busy {
                InboundDecision::Busy { reason }
            } else {
                InboundDecision::Fallback { fallback, reason }
            });
        }
        self.ctx
            .store()
            .attach_status_events(&call.id, &req.call_sid, &req.account.auth.account_sid)
            .await?;
        self.ctx
            .event(
                &call.id,
                "admission",
                json!({"admitted": true, "route": route.id.as_str()}),
            )
            .await;
        let token = self.ctx.mint(&call);
        let stream = self.ctx.args.urls.stream(&call.id, token);
        Ok(InboundDecision::Connect {
            call: Box::new(call),
            stream,
            fallback,
        })
    }

    async fn stream_started(&mut self, s: StreamStart) -> Result<CallRecord, RouterError> {
        let claims = self.ctx.args.keys.verify(&s.token, now_ms() / 1000)?;
        let call_id = CallId::parse(&claims.call).ok_or(TokenError::Forged)?;
        if claims.tenant != s.tenant_id.as_str() {
            return Err(TokenError::Forged.into());
        }
        if claims.sid.as_deref().is_some_and(|sid| sid != s.call_sid) {
            return Err(TokenError::Forged.into());
        }
        let call = self
            .ctx
            .store()
            .get_call(&s.tenant_id, &call_id)
            .await?
            .ok_or(TokenError::Forged)?;
        if call
            .call_sid
            .as_deref()
            .is_some_and(|sid| sid != s.call_sid)
        {
            return Err(TokenError::Forged.into());
        }
        if !self
            .ctx
            .store()
            .consume_nonce(&claims.nonce, &call.id, claims.exp * 1000)
            .await?
        {
            return Err(TokenError::Reused.into());
        }
        if call.call_sid.is_none() {
            self.ctx
                .store()
                .set_call_sid(&call.id, &s.call_sid, &call.status)
                .await?;
        }
        self.ctx
            .store()
            .set_stream_state(&call.id, Some(&s.stream_sid), "started")
            .await?;
        self.ctx
            .event(
                &call.id,
                "stream",
                json!({"event": "websocket-started", "stream_sid": s.stream_sid}),
            )
            .await;
        Ok(self
            .ctx
            .store()
            .get_call_by_id(&call.id)
            .await?
            .unwrap_or(call))
    }

    async fn stream_ended(&mut self, target: CallbackTarget) -> Result<AfterStream, RouterError> {
        let Some(call) = self
            .ctx
            .find_call(
                &target.tenant_id,
                target.call_id.as_ref(),
                Some(&target.call_sid),
            )
            .await?
        else {
            return Ok(AfterStream::Hangup);
        };
        let route = match &call.route_id {
            Some(id) => self.ctx.store().get_route(id).await?,
            None => None,
        };
        let decision = match call.after_stream.as_deref() {
            Some("resume") => {
                let token = self.ctx.mint(&call);
                AfterStream::Resume(self.ctx.args.urls.stream(&call.id, token))
            }
            Some("fallback") => AfterStream::Fallback(Fallback::of(route.as_ref())),
            Some(_) => AfterStream::Hangup,
            None => match call.stream_status.as_deref() {
                // The stream never started or failed: the caller still deserves a human.
                None | Some("error") => AfterStream::Fallback(Fallback::of(route.as_ref())),
                Some(_) => AfterStream::Hangup,
            },
        };
        let label = match &decision {
            AfterStream::Hangup => "hangup",
            AfterStream::Fallback(_) => "fallback",
            AfterStream::Resume(_) => "resume",
        };
        self.ctx.store().set_after_stream(&call.id, None).await?;
        if label == "fallback" {
            self.ctx
                .store()
                .set_end_reason(&call.id, "fallback")
                .await?;
        }
        self.ctx
            .event(
                &call.id,
                "stream",
                json!({"event": "connect-action", "decision": label}),
            )
            .await;
        Ok(decision)
    }

    async fn create_route(
        &mut self,
        new: NewRoute,
        meta: AuditMeta,
    ) -> Result<PhoneRoute, RouterError> {
        if self.ctx.store().get_tenant(&new.tenant_id).await?.is_none() {
            return Err(RouterError::NotFound("tenant"));
        }
        let now = now_ms();
        let route = PhoneRoute {
            id: RouteId::generate(),
            tenant_id: new.tenant_id,
            number: new.number,
            agent_key: new.agent_key,
            direction: new.direction,
            status: new.status,
            fallback_number: new.fallback_number,
            fallback_message: new.fallback_message,
            over_limit: new.over_limit,
            max_concurrent_calls: new.max_concurrent_calls,
            test_callers: new.test_callers,
            created_at: now,
            updated_at: now,
        };
        let audit = NewAudit {
            actor: meta.actor,
            action: "phone_route.create",
            tenant_id: Some(route.tenant_id.clone()),
            target_type: "phone_route",
            target_id: route.id.to_string(),
            before: None,
            after: Some(route_audit_json(&route)),
            request_id: meta.request_id,
        };
        self.ctx
            .store()
            .insert_route(&route, &audit)
            .await
            .map_err(conflict)?;
        self.forget(&route);
        Ok(route)
    }

    async fn update_route(
        &mut self,
        id: RouteId,
        p: RoutePatch,
        meta: AuditMeta,
    ) -> Result<PhoneRoute, RouterError> {
        let before = self
            .ctx
            .store()
            .get_route(&id)
            .await?
            .ok_or(RouterError::NotFound("phone route"))?;
        let mut after = before.clone();
        if let Some(v) = p.number {
            after.number = v;
        }
        if let Some(v) = p.agent_key {
            after.agent_key = v;
        }
        if let Some(v) = p.direction {
            after.direction = v;
        }
        if let Some(v) = p.status {
            after.status = v;
        }
        if let Some(v) = p.fallback_number {
            after.fallback_number = v;
        }
        if let Some(v) = p.fallback_message {
            after.fallback_message = v;
        }
        if let Some(v) = p.over_limit {
            after.over_limit = v;
        }
        if let Some(v) = p.max_concurrent_calls {
            after.max_concurrent_calls = v;
        }
        if let Some(v) = p.test_callers {
            after.test_callers = v;
        }
        after.updated_at = now_ms().max(before.updated_at);
        let audit = NewAudit {
            actor: meta.actor,
            action: "phone_route.update",
            tenant_id: Some(after.tenant_id.clone()),
            target_type: "phone_route",
            target_id: after.id.to_string(),
            before: Some(route_audit_json(&before)),
            after: Some(route_audit_json(&after)),
            request_id: meta.request_id,
        };
        self.ctx
            .store()
            .update_route(&after, &audit)
            .await
            .map_err(conflict)?;
        self.forget(&before);
        self.forget(&after);
        Ok(after)
    }

    async fn delete_route(
        &mut self,
        id: RouteId,
        meta: AuditMeta,
    ) -> Result<PhoneRoute, RouterError> {
        let route = self
            .ctx
            .store()
            .get_route(&id)
            .await?
            .ok_or(RouterError::NotFound("phone route"))?;
        let audit = NewAudit {
            actor: meta.actor,
            action: "phone_route.delete",
            tenant_id: Some(route.tenant_id.clone()),
            target_type: "phone_route",
            target_id: route.id.to_string(),
            before: Some(route_audit_json(&route)),
            after: None,
            request_id: meta.request_id,
        };
        if !self.ctx.store().delete_route(&id, &audit).await? {
            return Err(RouterError::NotFound("phone route"));
        }
        self.forget(&route);
        Ok(route)
    }
}

fn conflict(e: StoreError) -> RouterError {
    match e {
        StoreError::Conflict(what) => RouterError::Conflict(format!("{what} is already routed")),
        other => RouterError::Store(other),
    }
}

/// Runs `work` in a task and sends its result to `port`: carrier I/O and reads never block
/// the router's mailbox.
fn spawn_reply<T, F>(port: RpcReplyPort<T>, work: F)
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    tokio::spawn(async move {
        let value = work.await;
        reply(port, value);
    });
}

impl Actor for RouterActor {
    type Msg = RouterMsg;
    type State = RouterState;
    type Arguments = RouterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: RouterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(RouterState {
            ctx: Ctx { args },
            routes: HashMap::new(),
            diagnostics: VecDeque::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _timer = HandleTimer::start(kind::ROUTER, message.name());
        match message {
            RouterMsg::CreateRoute(new, meta, port) => {
                let r = state.create_route(new, meta).await;
                reply(port, r);
            }
            RouterMsg::UpdateRoute(id, patch, meta, port) => {
                let r = state.update_route(id, patch, meta).await;
                reply(port, r);
            }
            RouterMsg::DeleteRoute(id, meta, port) => {
                let r = state.delete_route(id, meta).await;
                reply(port, r);
            }
            RouterMsg::GetRoute(id, port) => {
                let ctx = state.ctx.clone();
                spawn_reply(port, async move {
                    ctx.store()
                        .get_route(&id)
                        .await?
                        .ok_or(RouterError::NotFound("phone route"))
                });
            }
            RouterMsg::ListRoutes(tenant, limit, offset, port) => {
                let ctx = state.ctx.clone();
                spawn_reply(port, async move {
                    Ok(ctx
                        .store()
                        .list_routes(tenant.as_ref(), limit, offset)
                        .await?)
                });
            }
            RouterMsg::Inbound(req, port) => {
                let r = state.inbound(req).await;
                reply(port, r);
            }
            RouterMsg::Outbound(req, port) => {
                let ctx = state.ctx.clone();
                spawn_reply(port, async move { ctx.outbound(req).await });
            }
            RouterMsg::StreamStarted(start, port) => {
                // The media handler waits `ACTOR_CALL_TIMEOUT_MS` for this answer, then refuses
                // the socket ("unavailable") and Twilio asks `stream-ended`. Starting the
                // stream after that — this mailbox can lag behind under load — consumed its
                // token and marked it started for a socket already closed, so `stream-ended`
                // hung up on a caller who never reached the agent. A start nobody waits for
                // changes nothing (the caller gets the route's fallback), and one whose
                // handler gave up while it ran is turned into the fallback.
                if port.is_closed() {
                    metrics::counter!("stream_starts_abandoned_total").increment(1);
                    tracing::warn!(call_sid = %start.call_sid, "stream start arrived after the media handler gave up: ignored");
                    return Ok(());
                }
                let r = state.stream_started(start).await;
                if let Err(RouterError::Token(e)) = &r {
                    metrics::counter!("stream_token_rejections_total", "reason" => e.label())
                        .increment(1);
                }
                if let Ok(call) = &r
                    && port.is_closed()
                {
                    metrics::counter!("stream_starts_abandoned_total").increment(1);
                    tracing::warn!(call_id = %call.id, "media handler gave up while the stream started: fallback");
                    let _ = state
                        .ctx
                        .store()
                        .set_after_stream(&call.id, Some("fallback"))
                        .await;
                }
                reply(port, r);
            }
            RouterMsg::CallStatus(target, update, port) => {
                let ctx = state.ctx.clone();
                spawn_reply(port, async move {
                    let found = ctx
                        .find_call(
                            &target.tenant_id,
                            target.call_id.as_ref(),
                            Some(&target.call_sid),
                        )
                        .await?;
                    let Some(call) = found else {
                        // Not recorded yet: keep it unattached, unless it names a call of ours
                        // that belongs to someone else.
                        if target.call_id.is_some()
                            || ctx.store().call_by_sid(&target.call_sid).await?.is_some()
                        {
                            metrics::counter!("call_status_unmatched_total").increment(1);
                            return Ok(false);
                        }
                        let orphan = StatusUpdate {
                            call_id: None,
                            ..update
                        };
                        return Ok(ctx.store().record_status(&orphan).await?);
                    };
                    let update = StatusUpdate {
                        call_id: Some(call.id),
                        ..update
                    };
                    Ok(ctx.store().record_status(&update).await?)
                });
            }
            RouterMsg::StreamStatus(cb, port) => {
                let ctx = state.ctx.clone();
                spawn_reply(port, async move {
                    if let Some(call) = ctx
                        .find_call(
                            &cb.target.tenant_id,
                            cb.target.call_id.as_ref(),
                            Some(&cb.target.call_sid),
                        )
                        .await?
                    {
                        let st = match cb.event.as_str() {
                            "stream-started" => Some("started"),
                            "stream-stopped" => Some("stopped"),
                            "stream-error" => Some("error"),
                            _ => None,
                        };
                        // A started/stopped report never overwrites an error seen on the socket.
                        if let Some(st) = st
                            && !(st != "error" && call.stream_status.as_deref() == Some("error"))
                        {
                            ctx.store()
                                .set_stream_state(&call.id, cb.stream_sid.as_deref(), st)
                                .await?;
                        }
                        ctx.event(&call.id, "stream", json!({"event": cb.event, "stream_sid": cb.stream_sid, "error": cb.error}))
                            .await;
                    }
                    Ok(())
                });
            }
            RouterMsg::AmdStatus(target, answered_by, port) => {
                let ctx = state.ctx.clone();
                spawn_reply(port, async move {
                    if let Some(call) = ctx
                        .find_call(
                            &target.tenant_id,
                            target.call_id.as_ref(),
                            Some(&target.call_sid),
                        )
                        .await?
                    {
                        ctx.store().set_answered_by(&call.id, &answered_by).await?;
                        ctx.event(&call.id, "amd", json!({"answered_by": answered_by}))
                            .await;
                    }
                    Ok(())
                });
            }
            RouterMsg::StreamEnded(target, port) => {
                let r = state.stream_ended(target).await;
                reply(port, r);
            }
            RouterMsg::Control(tenant, id, action, port) => {
                let ctx = state.ctx.clone();
                spawn_reply(port, async move { ctx.control(tenant, id, action).await });
            }
            RouterMsg::SendSms(tenant, call, body, port) => {
                let ctx = state.ctx.clone();
                spawn_reply(port, async move { ctx.send_sms(tenant, call, body).await });
            }
            RouterMsg::DialResult(target, handoff, report, port) => {
                let ctx = state.ctx.clone();
                spawn_reply(port, async move {
                    ctx.dial_result(target, handoff, report).await
                });
            }
            RouterMsg::GetCall(tenant, id, port) => {
                let ctx = state.ctx.clone();
                spawn_reply(port, async move { ctx.detail(tenant, id).await });
            }
            RouterMsg::ListCalls(filter, port) => {
                let ctx = state.ctx.clone();
                spawn_reply(
                    port,
                    async move { Ok(ctx.store().list_calls(&filter).await?) },
                );
            }
            RouterMsg::RecentRouting(port) => {
                reply(port, state.diagnostics.iter().rev().cloned().collect());
            }
            RouterMsg::ListSessions(filter, port) => {
                let ctx = state.ctx.clone();
                spawn_reply(port, async move {
                    Ok(ctx.store().list_sessions(&filter).await?)
                });
            }
            RouterMsg::GetSession(tenant, id, port) => {
                let ctx = state.ctx.clone();
                spawn_reply(port, async move {
                    let session = ctx
                        .store()
                        .get_session(&tenant, &id)
                        .await?
                        .ok_or(RouterError::NotFound("voice session"))?;
                    let turns = ctx.store().turns(&session.id).await?;
                    let function_calls = ctx.store().session_function_calls(&session.id).await?;
                    let handoffs = ctx.store().call_handoffs(&session.call_id).await?;
                    Ok(SessionDetail {
                        session,
                        turns,
                        function_calls,
                        handoffs,
                    })
                });
            }
            RouterMsg::Operator(msg) => state.operator(msg).await,
        }
        Ok(())
    }
}
