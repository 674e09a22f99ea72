//! Outbound placement: the task that asks the carrier owns the outcome.
//!
//! [`start`] spawns one task per request. It resolves the route and the agent version,
//! admits and records the call (`placement = pending`), attaches it to the request's
//! idempotency key (from then on the key is never released), and asks the carrier. Whatever
//! happens, the task records the result in the call and in the idempotency record, whether
//! or not anyone still waits for it; the caller gets a [`PlacementHandle`] to wait on for a
//! bounded time ([`PlacementHandle::wait`]).
//!
//! - The carrier answers: the `CallSid` is recorded (`placed`).
//! - The carrier refuses: the call is recorded `failed` (`refused`, with the carrier's code)
//!   and completes (`failed`, `carrier_error`).
//! - The carrier does not answer in time: the outcome is **unknown**, never "failed" — the
//!   carrier may have created the call. The placement is marked `unknown` and reconciled:
//!   status callbacks (their URL carries our call id) or the media stream's start record the
//!   SID and wake the task, which also looks the call up at the carrier (`Calls.json` by
//!   `To`, `From` and creation time). Only when neither finds it within the grace period is
//!   the call recorded `failed` and completed (`carrier_not_found`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{oneshot, watch};
use tracing::Instrument as _;

use super::admission::new_call;
use super::amd::{AmdAction, AmdRequest};
use super::{TelephonyCtx, TelephonyError};
use crate::carrier::{CallQuery, CarrierError, MachineDetection, PlaceCall};
use crate::ending::{EndReason, Outcome};
use crate::governance::predial::{self, Dial};
use crate::ids::{AgentVersionId, CallId, TenantId};
use crate::store::{
    Admission, CallDirection, CallRecord, Placement, RouteStatus, TenantStatus, is_terminal_status,
};
use crate::tenant::TwilioAccount;
use crate::time::now_ms;

/// How far before the request a looked-up call may have been created (the carrier reports
/// whole seconds, and clocks differ a little).
const LOOKUP_SKEW_MS: i64 = 2_000;

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
    /// Answering-machine detection and what to do on a machine (`None`: no detection).
    /// The action decides the carrier's mode (`voicemail` waits for the beep); see
    /// [`super::amd`].
    pub machine_detection: Option<AmdRequest>,
    /// The callee's IANA time zone for the calling window (default: the policy's).
    pub time_zone: Option<String>,
    /// The node is shutting down: refuse.
    pub draining: bool,
}

/// The result of a placement.
pub type PlacementResult = Result<CallRecord, TelephonyError>;

/// A response stored for an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReply {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: String,
}

/// Renders a placement's result as the response an idempotent retry replays (the HTTP
/// layer's business: this crate knows no response shapes).
pub type RenderReply = Arc<dyn Fn(&PlacementResult) -> StoredReply + Send + Sync>;

/// The idempotency key a placement answers for.
#[derive(Clone)]
pub struct IdempotencySlot {
    /// The tenant owning the key.
    pub tenant: TenantId,
    /// The key (claimed `in_progress` by the caller).
    pub key: String,
    /// How the result is stored.
    pub render: RenderReply,
}

/// How far a placement got.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Route, version and admission.
    Preparing,
    /// The call is recorded; the carrier is being asked.
    Recorded(Box<CallRecord>),
    /// The carrier did not answer in time; the outcome is being reconciled.
    Unknown(Box<CallRecord>),
}

/// What waiting on a placement gave.
#[derive(Debug)]
pub enum Waited {
    /// The placement finished.
    Done(Box<PlacementResult>),
    /// Still running (or its outcome unknown): the call as recorded so far.
    Pending(Box<CallRecord>),
}

/// A running placement.
pub struct PlacementHandle {
    progress: watch::Receiver<Progress>,
    done: oneshot::Receiver<PlacementResult>,
}

impl PlacementHandle {
    /// Waits for the result up to `patience`, or until the outcome is known to be unknown;
    /// then answers with the recorded call if the placement is still running. The placement
    /// goes on either way and records its own result.
    pub async fn wait(self, patience: Duration) -> Waited {
        let PlacementHandle {
            mut progress,
            mut done,
        } = self;
        let deadline = tokio::time::sleep(patience);
        tokio::pin!(deadline);
        tokio::select! {
            biased;
            r = &mut done => return Waited::Done(Box::new(r.unwrap_or(Err(TelephonyError::Abandoned)))),
            _ = progress.wait_for(|p| matches!(p, Progress::Unknown(_))) => {}
            () = &mut deadline => {}
        }
        let recorded = tokio::select! {
            biased;
            r = &mut done => return Waited::Done(Box::new(r.unwrap_or(Err(TelephonyError::Abandoned)))),
            p = progress.wait_for(|p| !matches!(p, Progress::Preparing)) => match p.as_deref() {
                Ok(Progress::Recorded(call) | Progress::Unknown(call)) => Some(call.clone()),
                _ => None,
            },
        };
        match recorded {
            Some(call) => Waited::Pending(call),
            None => Waited::Done(Box::new(
                done.await.unwrap_or(Err(TelephonyError::Abandoned)),
            )),
        }
    }

    /// Waits for the result, however long it takes.
    pub async fn outcome(self) -> PlacementResult {
        self.done.await.unwrap_or(Err(TelephonyError::Abandoned))
    }
}

/// Starts placing `req` in a task that owns the outcome (see the module documentation).
pub fn start(
    ctx: &TelephonyCtx,
    req: OutboundRequest,
    slot: Option<IdempotencySlot>,
) -> PlacementHandle {
    let (progress_tx, progress) = watch::channel(Progress::Preparing);
    let (done_tx, done) = oneshot::channel();
    let ctx = ctx.clone();
    let call_id = CallId::generate();
    let span = tracing::info_span!("placement", call_id = %call_id, tenant = %req.tenant_id);
    let task = async move {
        let result = run(&ctx, &req, call_id.clone(), slot.as_ref(), &progress_tx).await;
        if let Some(slot) = &slot {
            settle(&ctx, slot, &result).await;
        }
        let _ = done_tx.send(result);
        drop(progress_tx);
        ctx.placement_settled(call_id);
    };
    tokio::spawn(task.instrument(span));
    PlacementHandle { progress, done }
}

/// Stores the result for the idempotency key: the response, or (nothing attempted) the key
/// released so a retry runs again.
async fn settle(ctx: &TelephonyCtx, slot: &IdempotencySlot, result: &PlacementResult) {
    let store = ctx.store();
    let stored = match result {
        Err(e) if e.nothing_attempted() => store.idempotency_release(&slot.tenant, &slot.key).await,
        _ => {
            let reply = (slot.render)(result);
            store
                .idempotency_complete(&slot.tenant, &slot.key, reply.status, &reply.body)
                .await
        }
    };
    if let Err(error) = stored {
        tracing::error!(tenant_id = %slot.tenant, error = %error, "could not store the placement's idempotent response");
    }
}

async fn run(
    ctx: &TelephonyCtx,
    req: &OutboundRequest,
    call_id: CallId,
    slot: Option<&IdempotencySlot>,
    progress: &watch::Sender<Progress>,
) -> PlacementResult {
    if let Some(slot) = slot {
        // First: a key whose request may reach the carrier must never be released.
        ctx.store()
            .idempotency_attach(&slot.tenant, &slot.key, &call_id)
            .await
            .map_err(|e| TelephonyError::Unavailable(format!("idempotency: {e}")))?;
    }
    let (call, account) = prepare(ctx, req, call_id).await?;
    progress.send_replace(Progress::Recorded(Box::new(call.clone())));
    place(ctx, call, &account, progress).await
}

/// Route, version, admission; records the call (`pending`).
async fn prepare(
    ctx: &TelephonyCtx,
    req: &OutboundRequest,
    call_id: CallId,
) -> Result<(CallRecord, TwilioAccount), TelephonyError> {
    if req.draining {
        return Err(TelephonyError::Refused(
            "draining",
            "the service is shutting down; retry on another node".into(),
        ));
    }
    let account = ctx.account(&req.tenant_id).await?;
    if account.tenant_status != TenantStatus::Active {
        return Err(TelephonyError::Refused(
            "tenant_suspended",
            "the tenant is suspended".into(),
        ));
    }
    let store = ctx.store();
    let route = match &req.from {
        Some(from) => store
            .route_by_number(from)
            .await?
            .filter(|r| r.tenant_id == req.tenant_id && r.direction.allows(CallDirection::Outbound))
            .ok_or_else(|| {
                TelephonyError::Invalid(
                    "from",
                    "is not one of this tenant's outbound numbers".into(),
                )
            })?,
        None => store.outbound_route(&req.tenant_id).await?.ok_or_else(|| {
            TelephonyError::Invalid(
                "from",
                "the tenant has no outbound phone route; create one or pass from".into(),
            )
        })?,
    };
    if route.status == RouteStatus::Staged && !route.test_callers.contains(&req.to) {
        return Err(TelephonyError::Refused(
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
            TelephonyError::Invalid("agent_version_id", "is not an agent version id".into())
        })?),
        None => None,
    };
    let field = if pinned.is_some() {
        "agent_version_id"
    } else {
        "agent_key"
    };
    let resolved = ctx
        .resolve(&req.tenant_id, &agent_key, pinned, &req.to)
        .await?
        .map_err(|why| TelephonyError::Invalid(field, why))?;
    let time_zone = match &req.time_zone {
        Some(z) => Some(z.parse::<chrono_tz::Tz>().map_err(|_| {
            TelephonyError::Invalid(
                "time_zone",
                "must be an IANA time zone such as America/New_York".into(),
            )
        })?),
        None => None,
    };
    let version = &resolved.version;
    let mut call = new_call(
        &req.tenant_id,
        CallDirection::Outbound,
        &route.number,
        &req.to,
        ctx.node(),
    );
    call.id = call_id;
    call.account_sid = Some(account.auth.account_sid.clone());
    call.route_id = Some(route.id.clone());
    call.agent_key = Some(agent_key);
    call.agent_version_id = Some(version.id.to_string());
    // Outbound calls are recorded as their version says (the route's policy is for inbound).
    call.recording_policy =
        crate::recording::RecordingPolicy::effective(version.recording_policy, None);
    call.greeting = req.greeting.clone();
    call.org_id = req.org_id.clone();
    call.metadata = req.metadata.clone();
    if let Some(amd) = &req.machine_detection {
        if amd.action == AmdAction::Voicemail && version.voicemail_message.is_none() {
            return Err(TelephonyError::InvalidField(
                "machine_detection.action".into(),
                "voicemail needs the agent version's voicemail_message".into(),
            ));
        }
        call.machine_detection = Some(amd.mode.as_str().to_owned());
        call.amd_action = Some(amd.action.as_str().to_owned());
        call.amd_timeout_seconds = amd.timeout_secs.map(i64::from);
    }
    // The pre-dial policy, before anything is dialed.
    let decision = predial::decide(
        store,
        &Dial {
            call_id: call.id.clone(),
            tenant_id: req.tenant_id.clone(),
            route_id: route.id.clone(),
            to: req.to.clone(),
            time_zone,
            at_ms: ctx.config().clock.now_ms(),
        },
    )
    .await?;
    if !decision.allowed {
        return Err(policy_refused(ctx, call, &decision).await);
    }
    call.placement = Some(Placement::Pending);
    let admitted = store
        .admit_call(
            &call,
            account.max_concurrent_calls,
            Some(route.max_concurrent_calls),
            ctx.live_since(),
        )
        .await;
    let refusal = match admitted {
        Ok(Admission::Admitted) => None,
        Ok(Admission::TenantAtLimit) => Some(TelephonyError::AtLimit("tenant")),
        Ok(Admission::RouteAtLimit) => Some(TelephonyError::AtLimit("route")),
        Err(e) => Some(TelephonyError::Store(e)),
    };
    if let Some(refusal) = refusal {
        // Nothing dialed: the attempt the policy counted is given back.
        if let Err(e) = predial::release_attempt(store, &decision).await {
            tracing::warn!(call_id = %call.id, error = %e, "could not give back a dial attempt");
        }
        return Err(refusal);
    }
    // The call is admitted: a failure to store its decision must not strand it unplaced.
    if let Err(e) = predial::record(store, &decision).await {
        metrics::counter!("predial_record_failures_total").increment(1);
        tracing::error!(call_id = %call.id, error = %e, "could not record the pre-dial decision");
    }
    ctx.event(&call.id, "predial", decision_event(&decision))
        .await;
    ctx.record_arm(&call.id, &resolved).await;
    Ok((call, account))
}

/// The timeline entry of a pre-dial decision.
fn decision_event(decision: &predial::Decision) -> serde_json::Value {
    json!({
        "allowed": decision.allowed,
        "rule": decision.rule.map(predial::Rule::as_str),
        "checks": decision.checks_json(),
    })
}

/// The policy refused the call: it is recorded as a finished, refused call with the decision
/// (so the call log shows why), completed at once, and nothing is dialed.
async fn policy_refused(
    ctx: &TelephonyCtx,
    mut call: CallRecord,
    decision: &predial::Decision,
) -> TelephonyError {
    let rule = decision.rule.unwrap_or(predial::Rule::DoNotCall);
    metrics::counter!("predial_refusals_total", "rule" => rule.as_str()).increment(1);
    let reason = decision.reason();
    call.status = String::from("refused");
    let recorded = async {
        // Recorded outside the limits, as a finished call.
        ctx.store().admit_call(&call, i64::MAX, None, 0).await?;
        predial::record(ctx.store(), decision).await?;
        Ok::<_, TelephonyError>(())
    }
    .await;
    if let Err(e) = recorded {
        return e;
    }
    ctx.event(&call.id, "predial", decision_event(decision))
        .await;
    if let Err(e) = ctx
        .outcomes()
        .complete(
            &call.id,
            EndReason::PredialRefused,
            Some(format!("{}: {reason}", rule.as_str())),
            Some(Outcome::Refused),
        )
        .await
    {
        metrics::counter!("call_completion_failures_total").increment(1);
        tracing::error!(call_id = %call.id, error = %e, "could not complete the refused call");
    }
    TelephonyError::PolicyRefused {
        rule,
        message: reason,
        call_id: call.id,
    }
}

/// Asks the carrier, then records what it said (or reconciles its silence).
async fn place(
    ctx: &TelephonyCtx,
    call: CallRecord,
    account: &TwilioAccount,
    progress: &watch::Sender<Progress>,
) -> PlacementResult {
    let urls = ctx.urls();
    let request = PlaceCall {
        to: call.to_number.clone(),
        from: call.from_number.clone(),
        stream: ctx.stream_for(&call),
        status_callback_url: urls.call_status(&call.id),
        machine_detection: call
            .machine_detection
            .as_ref()
            .map(|mode| MachineDetection {
                mode: mode.clone(),
                callback_url: urls.amd_status(&call.id),
                timeout_secs: call.amd_timeout_seconds.and_then(|s| u32::try_from(s).ok()),
            }),
    };
    let sent_at = now_ms();
    match ctx
        .config()
        .carrier
        .place_call(&account.auth, &request)
        .await
    {
        Ok(placed) => {
            metrics::counter!("outbound_placements_total", "outcome" => "placed").increment(1);
            if !ctx
                .store()
                .record_placed(&call.id, &placed.call_sid, &placed.status)
                .await?
            {
                tracing::error!(call_id = %call.id, "the carrier's call sid is recorded on another call");
            }
            ctx.event(
                &call.id,
                "carrier",
                json!({"action": "create", "call_sid": placed.call_sid, "status": placed.status}),
            )
            .await;
            reloaded(ctx, call).await
        }
        Err(error) if error.timeout => {
            metrics::counter!("outbound_placements_total", "outcome" => "unknown").increment(1);
            tracing::warn!(call_id = %call.id, "the carrier did not answer in time: outcome unknown, reconciling");
            ctx.store()
                .set_placement(&call.id, Placement::Unknown)
                .await?;
            ctx.event(
                &call.id,
                "carrier",
                json!({"action": "create", "timeout": true, "outcome": "unknown"}),
            )
            .await;
            progress.send_replace(Progress::Unknown(Box::new(call.clone())));
            let wake = ctx.watch_placement(&call.id);
            let deadline = tokio::time::Instant::now() + ctx.config().placement.lookup_grace;
            let result = reconcile(ctx, &call, account, sent_at, deadline, &wake).await;
            ctx.unwatch_placement(&call.id);
            result
        }
        Err(error) => {
            metrics::counter!("outbound_placements_total", "outcome" => "refused").increment(1);
            refused(ctx, &call, error).await
        }
    }
}

async fn reloaded(ctx: &TelephonyCtx, call: CallRecord) -> PlacementResult {
    Ok(ctx.store().get_call_by_id(&call.id).await?.unwrap_or(call))
}

/// The carrier refused: the call is recorded failed and completes.
async fn refused(ctx: &TelephonyCtx, call: &CallRecord, error: CarrierError) -> PlacementResult {
    let code = error.code.map(|c| c.to_string());
    ctx.store()
        .record_not_placed(
            &call.id,
            Placement::Refused,
            code.as_deref(),
            &error.message,
        )
        .await?;
    ctx.event(
        &call.id,
        "carrier",
        json!({"action": "create", "error_code": error.code, "error": error.message}),
    )
    .await;
    if let Err(e) = ctx
        .outcomes()
        .complete(
            &call.id,
            EndReason::CarrierError,
            Some(error.message.clone()),
            Some(Outcome::Failed),
        )
        .await
    {
        metrics::counter!("call_completion_failures_total").increment(1);
        tracing::error!(call_id = %call.id, error = %e, "could not complete the refused call");
    }
    Err(TelephonyError::Carrier {
        error,
        call_id: Some(call.id.clone()),
    })
}

/// Finds out what became of a placement the carrier did not answer: a SID recorded by a
/// status callback or the stream's start, or a matching call at the carrier; not found by
/// the end of the grace period → failed, `carrier_not_found`.
async fn reconcile(
    ctx: &TelephonyCtx,
    call: &CallRecord,
    account: &TwilioAccount,
    sent_at: i64,
    deadline: tokio::time::Instant,
    wake: &tokio::sync::Notify,
) -> PlacementResult {
    let settings = ctx.config().placement;
    let query = CallQuery {
        to: call.to_number.clone(),
        from: call.from_number.clone(),
        since: sent_at - LOOKUP_SKEW_MS,
    };
    loop {
        let current = ctx
            .store()
            .get_call_by_id(&call.id)
            .await?
            .ok_or(TelephonyError::NotFound("call"))?;
        if let Some(sid) = &current.call_sid {
            ctx.store()
                .set_placement(&call.id, Placement::Placed)
                .await?;
            ctx.event(
                &call.id,
                "carrier",
                json!({"action": "reconciled", "source": "callback", "call_sid": sid}),
            )
            .await;
            return reloaded(ctx, current).await;
        }
        match ctx.config().carrier.find_calls(&account.auth, &query).await {
            Ok(found) => {
                let mut candidates: Vec<_> = found
                    .into_iter()
                    .filter(|c| c.to == query.to && c.from == query.from)
                    .filter(|c| c.created_at.is_none_or(|t| t >= query.since))
                    .collect();
                candidates.sort_by_key(|c| c.created_at);
                for c in candidates {
                    if ctx
                        .store()
                        .record_placed(&call.id, &c.call_sid, &c.status)
                        .await?
                    {
                        ctx.event(
                            &call.id,
                            "carrier",
                            json!({"action": "reconciled", "source": "lookup", "call_sid": c.call_sid, "status": c.status}),
                        )
                        .await;
                        if is_terminal_status(&c.status)
                            && let Some(reason) = EndReason::of_carrier_status(&c.status)
                        {
                            ctx.complete_or_log(&call.id, reason, None).await;
                        }
                        return reloaded(ctx, current).await;
                    }
                }
            }
            Err(error) => {
                tracing::warn!(call_id = %call.id, error = %error, "carrier lookup failed");
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return not_found(ctx, call).await;
        }
        let nap = settings.lookup_interval.min(deadline - now);
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(nap) => {}
        }
    }
}

/// Takes over a placement whose node died while it asked the carrier (no `CallSid` was
/// recorded): in a task that owns the outcome, the call is looked up at the carrier by the
/// request's parameters (`To`, `From`, created since the call was recorded) until the grace
/// period, counted from the call's creation, is over; the result goes into the call and,
/// through `render`, into the idempotency key its request attached, so a retry replays the
/// real outcome and never places a second call.
pub(crate) fn resume_lost(ctx: &TelephonyCtx, call: CallRecord, render: Option<RenderReply>) {
    let ctx = ctx.clone();
    let span = tracing::info_span!("lost_placement", call_id = %call.id, tenant = %call.tenant_id);
    let task = async move {
        tracing::warn!(call_id = %call.id, "placement lost with its node: looking the call up at the carrier");
        let result = async {
            let account = ctx.account(&call.tenant_id).await?;
            ctx.store()
                .set_placement(&call.id, Placement::Unknown)
                .await?;
            let waited = now_ms().saturating_sub(call.created_at);
            let left = ctx
                .config()
                .placement
                .lookup_grace
                .saturating_sub(Duration::from_millis(u64::try_from(waited).unwrap_or(0)));
            let deadline = tokio::time::Instant::now() + left;
            let wake = ctx.watch_placement(&call.id);
            let result = reconcile(&ctx, &call, &account, call.created_at, deadline, &wake).await;
            ctx.unwatch_placement(&call.id);
            result
        }
        .await;
        let key = match ctx.store().idempotency_key_of_call(&call.id).await {
            Ok(key) => key,
            Err(error) => {
                tracing::error!(call_id = %call.id, error = %error, "could not read the placement's idempotency key");
                None
            }
        };
        match (render, key) {
            // The request may have reached the carrier: the key is never released.
            (Some(_), Some(_))
                if result
                    .as_ref()
                    .is_err_and(TelephonyError::nothing_attempted) =>
            {
                tracing::error!(call_id = %call.id, "the lost placement could not be looked up; its idempotency key stays in progress");
            }
            (Some(render), Some((tenant, key))) => {
                settle(
                    &ctx,
                    &IdempotencySlot {
                        tenant,
                        key,
                        render,
                    },
                    &result,
                )
                .await;
            }
            _ => {}
        }
        ctx.placement_settled(call.id);
    };
    tokio::spawn(task.instrument(span));
}

/// Completes the idempotency key still waiting on `call` (its request's node died) with the
/// call as recorded now: a retry replays the real outcome.
pub(crate) async fn settle_lost_key(ctx: &TelephonyCtx, call: &CallId, render: &RenderReply) {
    let found = async {
        let Some((tenant, key)) = ctx.store().idempotency_key_of_call(call).await? else {
            return Ok(None);
        };
        let record = ctx.store().get_call_by_id(call).await?;
        Ok::<_, crate::store::StoreError>(record.map(|r| (tenant, key, r)))
    }
    .await;
    match found {
        Ok(Some((tenant, key, record))) => {
            let slot = IdempotencySlot {
                tenant,
                key,
                render: Arc::clone(render),
            };
            settle(ctx, &slot, &Ok(record)).await;
        }
        Ok(None) => {}
        Err(error) => {
            tracing::error!(call_id = %call, error = %error, "could not settle the idempotency key of a reconciled call");
        }
    }
}

/// Nothing found within the grace period: the call never existed at the carrier.
async fn not_found(ctx: &TelephonyCtx, call: &CallRecord) -> PlacementResult {
    tracing::warn!(call_id = %call.id, "the carrier has no record of the call: failed");
    ctx.store()
        .record_not_placed(
            &call.id,
            Placement::NotFound,
            None,
            "the carrier has no record of the call",
        )
        .await?;
    ctx.event(
        &call.id,
        "carrier",
        json!({"action": "reconciled", "outcome": "not_found"}),
    )
    .await;
    ctx.complete_or_log(&call.id, EndReason::CarrierNotFound, Some(Outcome::Failed))
        .await;
    Err(TelephonyError::CarrierNotFound {
        call_id: call.id.clone(),
    })
}
