//! Warm transfer (issue 16): a handoff to a queue whose `transfer_mode` is `warm`.
//!
//! - [`start`] (from [`super::control`], for an agent's escalation and an operator's
//!   transfer alike): the caller's call is moved into the conference `handoff-<id>`
//!   (`startConferenceOnEnter=false`, so they hear the queue's hold audio;
//!   `endConferenceOnExit=true`), then the queue's first number is called as a new leg whose
//!   TwiML is the whisper.
//! - [`whisper`]: the operator leg's TwiML: the handoff context (reason, caller and identity,
//!   the last turns) said inside a one-digit `<Gather>` — 1 accepts, 2 declines.
//! - [`decision`]: the `<Gather action>`: 1 → the transfer `accepted` and the operator joins
//!   the conference (`startConferenceOnEnter=true`), bridging the caller; anything else →
//!   `declined`.
//! - [`operator_status`]: the operator leg's status callback: a leg that ends while the
//!   transfer is still `ringing` (no answer, busy, failed, no key pressed) → `unanswered`.
//! - [`conference_status`]: conference events on the call's timeline; the caller leaving
//!   while the operator is still being asked → `abandoned` and the operator leg hung up.
//!
//! Every decision is one conditional update from `ringing` (so a repeated or late callback
//! changes nothing), and a transfer not taken is settled like an unanswered cold dial
//! ([`super::dial::unanswered`]: the queue's `when_unanswered`), the caller taken out of the
//! conference by a REST update of their call. Every webhook is scoped to the tenant whose
//! account signed it: another tenant's handoff is not found.

use serde_json::json;

use super::{AfterStream, TelephonyCtx, TelephonyError};
use crate::carrier::{CallChange, ConferenceJoin, PlaceLeg};
use crate::ending::EndReason;
use crate::ids::{CallId, HandoffId, QueueId, TenantId};
use crate::notifier::EventKind;
use crate::operator::{OperatorQueue, TransferMode};
use crate::store::{CallRecord, Handoff, is_terminal_status};

/// How long the operator has to press a key after the whisper.
pub const DECISION_TIMEOUT_SECS: u32 = 8;
/// The longest whisper said (characters).
const MAX_WHISPER_CHARS: usize = 1500;

/// Which handoff a warm-transfer webhook is about, as its URL and signature say.
#[derive(Debug, Clone)]
pub struct WarmTarget {
    /// Tenant of the signing account.
    pub tenant_id: TenantId,
    /// Our call id from the URL.
    pub call_id: Option<CallId>,
    /// The handoff from the URL.
    pub handoff_id: HandoffId,
}

/// The operator leg's TwiML, as the HTTP layer renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whisper {
    /// Say `text` inside a one-digit gather posting to `decision_url`; without a key the
    /// leg hangs up (its status callback settles the transfer).
    Ask {
        /// The whispered summary and the question.
        text: String,
        /// The `<Gather action>`.
        decision_url: String,
        /// Seconds to wait for the key.
        timeout_secs: u32,
    },
    /// The transfer is no longer waiting for this operator: say so and hang up.
    Gone(String),
}

/// What the operator's key press leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Accepted: join the conference, which starts (bridges the caller) on entry.
    Join(ConferenceJoin),
    /// Declined, or too late: say this and hang up.
    Hangup(String),
}

/// Said to an operator whose transfer is no longer waiting.
pub const GONE_MESSAGE: &str = "This transfer is no longer waiting. Goodbye.";
/// Said to an operator who declined.
pub const DECLINED_MESSAGE: &str = "Declined. The caller will be taken care of. Goodbye.";

/// The conference of a handoff.
pub fn conference_name(handoff: &HandoffId) -> String {
    format!("handoff-{handoff}")
}

/// The queue of `handoff` when it takes callers warm.
pub(super) async fn warm_queue(
    ctx: &TelephonyCtx,
    tenant: &TenantId,
    handoff: &HandoffId,
) -> Result<Option<OperatorQueue>, TelephonyError> {
    let store = ctx.store();
    let Some(queue_id) = store
        .get_handoff(tenant, handoff)
        .await?
        .and_then(|h| h.queue_id)
        .and_then(|q| QueueId::parse(&q))
    else {
        return Ok(None);
    };
    Ok(store
        .get_queue(tenant, &queue_id)
        .await?
        .filter(|q| q.transfer_mode == TransferMode::Warm && !q.numbers.is_empty()))
}

/// What [`start`] needs besides the call.
#[derive(Debug, Clone)]
pub(super) struct WarmStart {
    pub handoff: HandoffId,
    pub queue: OperatorQueue,
    pub announcement: Option<String>,
    pub caller_id: String,
    pub timeout_secs: u32,
}

/// Moves the caller into the handoff's conference, then calls the operator (in a task that
/// records its own result even if the requester stops waiting). An error means the caller
/// was not moved: the requester undoes its records as for a refused dial.
pub(super) async fn start(
    ctx: &TelephonyCtx,
    call: &CallRecord,
    call_sid: &str,
    w: WarmStart,
) -> Result<(), TelephonyError> {
    let store = ctx.store();
    let account = ctx.account(&call.tenant_id).await?;
    let name = conference_name(&w.handoff);
    if !store.warm_begin(&w.handoff, &name).await? {
        return Err(TelephonyError::Conflict(
            "the handoff was settled already".into(),
        ));
    }
    let join = ConferenceJoin {
        name: name.clone(),
        announcement: w.announcement.clone(),
        wait_url: w.queue.hold_music_url.clone(),
        start_on_enter: false,
        end_on_exit: true,
        status_callback_url: ctx
            .urls()
            .warm_transfer("conference-status", &call.id, &w.handoff),
    };
    let carrier = ctx.config().carrier.clone();
    if let Err(error) = carrier
        .update_call(&account.auth, call_sid, &CallChange::Conference(join))
        .await
    {
        if let Err(e) = store.warm_decline(&w.handoff, "failed", None).await {
            tracing::warn!(error = %e, "could not record the failed warm transfer");
        }
        if error.already_ended {
            return Err(TelephonyError::Conflict("the call has ended".into()));
        }
        ctx.event(
            &call.id,
            "control",
            json!({"action": "handoff", "mode": "warm", "error_code": error.code, "error": error.message}),
        )
        .await;
        return Err(TelephonyError::Carrier {
            error,
            call_id: Some(call.id.clone()),
        });
    }
    let number = w.queue.numbers.first().cloned().unwrap_or_default();
    ctx.event(
        &call.id,
        "control",
        json!({"action": "handoff", "mode": "warm", "to": [number], "handoff_id": w.handoff.as_str(),
               "conference": name}),
    )
    .await;
    let leg = operator_leg(ctx, call, &w.handoff, number, w.caller_id, w.timeout_secs);
    // The operator is called once the caller is in the conference (their `participant-join`,
    // [`conference_status`]), so an operator never joins before the caller and leaves them
    // waiting in a conference of their own; should that event be lost, after `JOIN_WAIT`.
    let (task_ctx, task_call, handoff) = (ctx.clone(), call.clone(), w.handoff.clone());
    tokio::spawn(async move {
        tokio::time::sleep(JOIN_WAIT).await;
        call_operator(&task_ctx, &task_call, &handoff, leg).await;
    });
    Ok(())
}

/// How long the operator's call waits for the caller's `participant-join` before it is
/// placed anyway.
const JOIN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The operator leg of a warm transfer: the number called, its whisper and status URLs.
fn operator_leg(
    ctx: &TelephonyCtx,
    call: &CallRecord,
    handoff: &HandoffId,
    to: String,
    from: String,
    timeout_secs: u32,
) -> PlaceLeg {
    PlaceLeg {
        to,
        from,
        twiml_url: ctx.urls().warm_transfer("whisper", &call.id, handoff),
        status_callback_url: ctx
            .urls()
            .warm_transfer("operator-status", &call.id, handoff),
        timeout_secs,
    }
}

/// Calls the operator, once per transfer (a conditional claim while it is `ringing`), in a
/// task that records its own result even if the requester stops waiting.
async fn call_operator(ctx: &TelephonyCtx, call: &CallRecord, handoff: &HandoffId, leg: PlaceLeg) {
    match ctx.store().warm_claim_operator(handoff, &leg.to).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not claim the operator call of a warm transfer");
            return;
        }
    }
    let account = match ctx.account(&call.tenant_id).await {
        Ok(account) => account,
        Err(e) => {
            tracing::warn!(error = %e, "no carrier account for the operator call");
            if let Err(e) = settle(ctx, call, handoff, "failed", "failed", None).await {
                tracing::warn!(error = %e, "could not settle the failed warm transfer");
            }
            return;
        }
    };
    let carrier = ctx.config().carrier.clone();
    let (task_ctx, task_call, task_handoff) = (ctx.clone(), call.clone(), handoff.clone());
    let placed = tokio::spawn(async move {
        let (ctx, handoff) = (task_ctx, task_handoff);
        match carrier.place_leg(&account.auth, &leg).await {
            Ok(placed) => {
                if let Err(e) = ctx
                    .store()
                    .warm_operator_leg(&handoff, &placed.call_sid, &leg.to)
                    .await
                {
                    tracing::warn!(error = %e, "could not record the operator leg");
                }
                ctx.event(
                    &task_call.id,
                    "warm_transfer",
                    json!({"handoff_id": handoff.as_str(), "step": "operator_called", "to": leg.to,
                           "operator_call_sid": placed.call_sid}),
                )
                .await;
            }
            Err(error) => {
                tracing::warn!(error = %error, "the operator leg was refused");
                ctx.event(
                    &task_call.id,
                    "warm_transfer",
                    json!({"handoff_id": handoff.as_str(), "step": "operator_refused", "to": leg.to,
                           "error_code": error.code, "error": error.message}),
                )
                .await;
                if let Err(e) = settle(&ctx, &task_call, &handoff, "failed", "failed", None).await {
                    tracing::warn!(error = %e, "could not settle the failed warm transfer");
                }
            }
        }
    });
    if let Err(e) = placed.await {
        // The task died before it recorded anything: the transfer is settled as failed, so
        // the caller does not wait on hold for an operator who is never called.
        tracing::warn!(error = %e, "the operator leg task failed");
        if let Err(e) = settle(ctx, call, handoff, "failed", "failed", None).await {
            tracing::warn!(error = %e, "could not settle the failed warm transfer");
        }
    }
}

/// The handoff and call a webhook is about, scoped to the signing tenant (another tenant's
/// handoff, or a call id that is not the handoff's, is not found).
async fn load(
    ctx: &TelephonyCtx,
    target: &WarmTarget,
) -> Result<(Handoff, CallRecord), TelephonyError> {
    let store = ctx.store();
    let handoff = store
        .get_handoff(&target.tenant_id, &target.handoff_id)
        .await?
        .filter(|h| {
            h.warm.is_some()
                && target
                    .call_id
                    .as_ref()
                    .is_none_or(|c| c.as_str() == h.call_id)
        })
        .ok_or(TelephonyError::NotFound("handoff"))?;
    let call_id = CallId::from_stored(handoff.call_id.clone());
    let call = store
        .get_call(&target.tenant_id, &call_id)
        .await?
        .ok_or(TelephonyError::NotFound("call"))?;
    Ok((handoff, call))
}

fn state(h: &Handoff) -> &str {
    h.warm.as_ref().map_or("", |w| w.state.as_str())
}

/// The operator leg's TwiML: the whispered summary and the question.
pub async fn whisper(ctx: &TelephonyCtx, target: WarmTarget) -> Result<Whisper, TelephonyError> {
    let (handoff, call) = load(ctx, &target).await?;
    if state(&handoff) != "ringing" {
        return Ok(Whisper::Gone(GONE_MESSAGE.into()));
    }
    ctx.store()
        .warm_progress(&target.handoff_id, true, None)
        .await?;
    let text = whisper_text(&handoff, &call);
    ctx.event(
        &call.id,
        "warm_transfer",
        json!({"handoff_id": handoff.id, "step": "whisper", "text": text}),
    )
    .await;
    Ok(Whisper::Ask {
        text,
        decision_url: ctx
            .urls()
            .warm_transfer("decision", &call.id, &target.handoff_id),
        timeout_secs: DECISION_TIMEOUT_SECS,
    })
}

/// What the operator hears before deciding: the queue, the reason, the caller and whether
/// they verified their identity, the last turns; then the question.
pub fn whisper_text(handoff: &Handoff, call: &CallRecord) -> String {
    let c = &handoff.context;
    let text = |k: &str| c.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    let queue = handoff.queue_name.as_deref().unwrap_or("operator");
    let mut out = format!(
        "Transfer from the {queue} queue. Reason: {}.",
        handoff.reason
    );
    let caller = text("caller")
        .map(str::to_owned)
        .unwrap_or_else(|| match call.direction {
            crate::store::CallDirection::Inbound => call.from_number.clone(),
            crate::store::CallDirection::Outbound => call.to_number.clone(),
        });
    let verified = c
        .get("identity")
        .and_then(|i| i.get("verified"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(call.identity_state.as_deref() == Some("verified"));
    out.push_str(&format!(
        " The caller, {caller}, {}.",
        if verified {
            "has verified their identity"
        } else {
            "has not verified their identity"
        }
    ));
    if let Some(summary) = text("summary") {
        let summary = summary.replace('\n', ". ");
        out.push_str(&format!(" Summary: {summary}."));
    }
    if out.chars().count() > MAX_WHISPER_CHARS {
        out = out.chars().take(MAX_WHISPER_CHARS).collect();
        out.push('.');
    }
    out.push_str(" Press 1 to accept, 2 to decline.");
    out
}

/// The operator's key press (`Digits`; `None` when the gather posted none).
pub async fn decision(
    ctx: &TelephonyCtx,
    target: WarmTarget,
    digits: Option<String>,
) -> Result<Decision, TelephonyError> {
    let (handoff, call) = load(ctx, &target).await?;
    let store = ctx.store();
    if is_terminal_status(&call.status) || call.ended_at.is_some() {
        // The caller hung up before the operator decided: nobody to bridge.
        abandon(ctx, &call, &handoff).await?;
        return Ok(Decision::Hangup(GONE_MESSAGE.into()));
    }
    let digits = digits.unwrap_or_default();
    if digits != "1" {
        let declined = settle(
            ctx,
            &call,
            &target.handoff_id,
            "declined",
            "declined",
            Some(&digits),
        )
        .await?;
        return Ok(Decision::Hangup(if declined {
            DECLINED_MESSAGE.into()
        } else {
            GONE_MESSAGE.into()
        }));
    }
    let operator = handoff
        .warm
        .as_ref()
        .and_then(|w| w.operator_number.clone());
    let join = ConferenceJoin {
        name: conference_name(&target.handoff_id),
        announcement: None,
        wait_url: None,
        start_on_enter: true,
        end_on_exit: true,
        status_callback_url: ctx.urls().warm_transfer(
            "conference-status",
            &call.id,
            &target.handoff_id,
        ),
    };
    if !store
        .warm_accept(&target.handoff_id, &digits, operator.as_deref())
        .await?
    {
        // A carrier retry of the accepting request joins again; anything else is too late.
        return Ok(if state(&handoff) == "accepted" {
            Decision::Join(join)
        } else {
            Decision::Hangup(GONE_MESSAGE.into())
        });
    }
    let queue_name = handoff.queue_name.clone().unwrap_or_default();
    let who = operator.clone().unwrap_or_else(|| String::from("operator"));
    store
        .set_escalated(&call.id, &format!("queue:{queue_name}/{who}"))
        .await?;
    ctx.outcomes()
        .record_reason(&call.id, EndReason::Escalated, None)
        .await?;
    metrics::counter!("handoffs_total", "outcome" => "answered").increment(1);
    ctx.event(
        &call.id,
        "handoff",
        json!({"handoff_id": handoff.id, "mode": "warm", "warm_state": "accepted", "outcome": "bridged",
               "operator": operator}),
    )
    .await;
    let event = json!({"call_id": call.id.as_str(), "call_sid": call.call_sid, "handoff_id": handoff.id,
        "queue": handoff.queue_name, "operator_number": operator, "conference": join.name});
    if let Err(error) = ctx
        .config()
        .notifier
        .emit(&call.tenant_id, EventKind::HandoffAccepted, event)
        .await
    {
        tracing::warn!(error = %error, "could not record voice.handoff.accepted");
    }
    Ok(Decision::Join(join))
}

/// The operator leg's status callback: a leg that ends while the transfer still waits for
/// it (no answer, busy, failed, or no key pressed) leaves the transfer `unanswered`.
pub async fn operator_status(
    ctx: &TelephonyCtx,
    target: WarmTarget,
    call_sid: &str,
    status: &str,
) -> Result<(), TelephonyError> {
    let (handoff, call) = load(ctx, &target).await?;
    let leg = handoff
        .warm
        .as_ref()
        .and_then(|w| w.operator_call_sid.as_deref());
    if leg.is_some_and(|leg| leg != call_sid) {
        return Err(TelephonyError::NotFound("operator leg"));
    }
    ctx.event(
        &call.id,
        "warm_transfer",
        json!({"handoff_id": handoff.id, "step": "operator_status", "status": status, "operator_call_sid": call_sid}),
    )
    .await;
    if is_terminal_status(status) && state(&handoff) == "ringing" {
        let dial_status = if status == "completed" {
            "no-key"
        } else {
            status
        };
        settle(
            ctx,
            &call,
            &target.handoff_id,
            "unanswered",
            dial_status,
            None,
        )
        .await?;
    }
    Ok(())
}

/// A conference status callback (`StatusCallbackEvent`): recorded on the call's timeline;
/// the caller leaving while the operator is still being asked abandons the transfer.
pub async fn conference_status(
    ctx: &TelephonyCtx,
    target: WarmTarget,
    event: &str,
    conference_sid: Option<&str>,
    call_sid: Option<&str>,
) -> Result<(), TelephonyError> {
    let (handoff, call) = load(ctx, &target).await?;
    ctx.store()
        .warm_progress(&target.handoff_id, false, conference_sid)
        .await?;
    ctx.event(
        &call.id,
        "warm_transfer",
        json!({"handoff_id": handoff.id, "step": "conference", "event": event, "conference_sid": conference_sid,
               "call_sid": call_sid}),
    )
    .await;
    let caller_left =
        event == "participant-leave" && call_sid.is_some() && call_sid == call.call_sid.as_deref();
    if caller_left && state(&handoff) == "ringing" {
        abandon(ctx, &call, &handoff).await?;
    }
    let caller_joined =
        event == "participant-join" && call_sid.is_some() && call_sid == call.call_sid.as_deref();
    let not_called = handoff
        .warm
        .as_ref()
        .is_some_and(|w| w.operator_number.is_none());
    if caller_joined && state(&handoff) == "ringing" && not_called {
        let id = HandoffId::from_stored(handoff.id.clone());
        if let Some(queue) = warm_queue(ctx, &target.tenant_id, &id).await? {
            let to = queue.numbers.first().cloned().unwrap_or_default();
            let from = queue
                .caller_id
                .clone()
                .unwrap_or_else(|| super::control::our_number(&call));
            let timeout = u32::try_from(queue.ring_timeout_seconds).unwrap_or(30);
            let leg = operator_leg(ctx, &call, &id, to, from, timeout);
            call_operator(ctx, &call, &id, leg).await;
        }
    }
    Ok(())
}

/// The caller is gone while the operator is still being asked: the transfer is
/// `abandoned` (once) and the operator leg hung up. Returns whether this call settled it.
async fn abandon(
    ctx: &TelephonyCtx,
    call: &CallRecord,
    handoff: &Handoff,
) -> Result<bool, TelephonyError> {
    let store = ctx.store();
    let id = HandoffId::from_stored(handoff.id.clone());
    if !store.warm_decline(&id, "abandoned", None).await? {
        return Ok(false);
    }
    store
        .finish_handoff(&id, "unanswered", "caller_left", None, "abandoned", None)
        .await?;
    ctx.event(
        &call.id,
        "warm_transfer",
        json!({"handoff_id": handoff.id, "step": "abandoned"}),
    )
    .await;
    hang_up_operator(ctx, &call.tenant_id, handoff).await;
    Ok(true)
}

async fn hang_up_operator(ctx: &TelephonyCtx, tenant: &TenantId, handoff: &Handoff) {
    let Some(sid) = handoff
        .warm
        .as_ref()
        .and_then(|w| w.operator_call_sid.clone())
    else {
        return;
    };
    let Ok(account) = ctx.account(tenant).await else {
        return;
    };
    if let Err(error) = ctx
        .config()
        .carrier
        .update_call(&account.auth, &sid, &CallChange::Hangup)
        .await
        && !error.already_ended
    {
        tracing::warn!(error = %error, "could not hang up the operator leg");
    }
}

/// A warm transfer not taken: claimed once from `ringing` as `state`, then the queue's
/// `when_unanswered` applied as for an unanswered dial and the caller taken out of the
/// conference by a REST update of their call. Returns whether this call settled it.
async fn settle(
    ctx: &TelephonyCtx,
    call: &CallRecord,
    handoff_id: &HandoffId,
    state: &str,
    dial_status: &str,
    digits: Option<&str>,
) -> Result<bool, TelephonyError> {
    let store = ctx.store();
    if !store.warm_decline(handoff_id, state, digits).await? {
        return Ok(false);
    }
    let Some(handoff) = store.get_handoff(&call.tenant_id, handoff_id).await? else {
        return Ok(false);
    };
    let queue = match handoff.queue_id.as_deref().and_then(QueueId::parse) {
        Some(id) => store.get_queue(&call.tenant_id, &id).await?,
        None => None,
    };
    ctx.event(
        &call.id,
        "warm_transfer",
        json!({"handoff_id": handoff.id, "step": state, "digits": digits}),
    )
    .await;
    let Some(next) =
        super::dial::unanswered(ctx, call, &handoff, queue.as_ref(), dial_status).await?
    else {
        return Ok(true);
    };
    let change = match next {
        AfterStream::Hangup => CallChange::Hangup,
        AfterStream::Fallback(f) => CallChange::Fallback {
            message: f.message,
            number: f.number,
        },
        AfterStream::Resume(stream) => CallChange::Stream(stream),
    };
    let Some(call_sid) = call.call_sid.as_deref() else {
        return Ok(true);
    };
    let account = ctx.account(&call.tenant_id).await?;
    match ctx
        .config()
        .carrier
        .update_call(&account.auth, call_sid, &change)
        .await
    {
        Ok(()) => {}
        // The caller hung up meanwhile: their final status completes the call.
        Err(error) if error.already_ended => {}
        Err(error) => {
            tracing::warn!(error = %error, "could not take the caller out of the conference");
            ctx.event(
                &call.id,
                "warm_transfer",
                json!({"handoff_id": handoff.id, "step": "fallback_refused", "error_code": error.code,
                       "error": error.message}),
            )
            .await;
        }
    }
    Ok(true)
}
