//! Escalation and carrier changes of a live call (DESIGN §4), the I/O the conversation asks
//! for, each run in a task that records its own outcome before reporting it:
//!
//! - [`resolve`]: which queue takes the caller (open → dial; closed → its voicemail message,
//!   a callback task, or back to the agent; no queue → a callback task), the handoff record
//!   with the context a human gets, its timeline entry and `voice.call.escalated`.
//! - [`control`]: a carrier change (hang up, dial the queue, say the voicemail message), with
//!   what must be recorded before the carrier is asked — the continuation `stream-ended`
//!   follows, the agent's own end reason, the escalation target — and, when the carrier
//!   refuses a dial, the callback task created instead.

use serde_json::json;

use super::CallDeps;
use super::control::{CarrierAction, Initiator};
use super::conversation::{ControlReport, ControlRequest, DialPlan, EscalationRequest, Resolution};
use super::tools::caller;
use crate::ending::{Continuation, EndReason};
use crate::ids::HandoffId;
use crate::notifier::EventKind;
use crate::operator::{CallbackPriority, CallbackSource, NewCallbackTask, QueueFallback};
use crate::store::{CallRecord, Handoff};
use crate::time::now_ms;

/// Where an escalation goes.
enum Target {
    Dial(crate::operator::OperatorQueue),
    Callback(Option<crate::operator::OperatorQueue>),
    Voicemail(crate::operator::OperatorQueue),
    StayWithAgent(crate::operator::OperatorQueue),
}

/// A callback message when a queue has none of its own.
const DEFAULT_VOICEMAIL: &str = "Nobody is available to take your call right now, so I've arranged for a colleague to call you back as soon as possible.";

/// A callback task for the caller of `call`, from a handoff.
fn callback_for(
    call: &CallRecord,
    reason: String,
    queue_id: Option<crate::ids::QueueId>,
) -> NewCallbackTask {
    NewCallbackTask {
        tenant_id: call.tenant_id.clone(),
        phone: caller(call).to_owned(),
        reason,
        source_call_id: Some(call.id.clone()),
        queue_id,
        priority: CallbackPriority::Normal,
        due_at: None,
        created_by: CallbackSource::Handoff,
    }
}

/// Finds where an escalation of `call` goes, records the handoff and announces it.
pub(super) async fn resolve(
    deps: &CallDeps,
    call: &CallRecord,
    req: EscalationRequest,
) -> Resolution {
    let store = &deps.store;
    let queue = match &req.queue {
        Some(name) => match store.get_queue_by_name(&call.tenant_id, name).await {
            Ok(q) => q,
            Err(error) => {
                tracing::warn!(error = %error, "could not read the queue");
                None
            }
        },
        None => None,
    };
    let now = now_ms();
    let target = match queue {
        Some(q) if q.is_open(now) => Target::Dial(q),
        Some(q) => match q.when_closed {
            QueueFallback::CallbackTask => Target::Callback(Some(q)),
            QueueFallback::Voicemail => Target::Voicemail(q),
            QueueFallback::Agent => Target::StayWithAgent(q),
        },
        None => Target::Callback(None),
    };
    let handoff_id = HandoffId::generate();
    let mut record = Handoff {
        id: handoff_id.as_str().to_owned(),
        tenant_id: call.tenant_id.as_str().to_owned(),
        call_id: call.id.as_str().to_owned(),
        queue_id: None,
        queue_name: req.queue.clone(),
        reason: req.reason.clone(),
        rule: req.rule.clone(),
        context: serde_json::Value::Null,
        status: String::from("dialing"),
        dial_status: None,
        target: None,
        outcome: None,
        callback_task_id: None,
        created_at: now,
        updated_at: now,
        warm: None,
    };
    let resolution = match target {
        Target::Dial(q) => {
            record.queue_id = Some(q.id.as_str().to_owned());
            Resolution::Dial(DialPlan {
                handoff_id: handoff_id.clone(),
                numbers: q.numbers.clone(),
                caller_id: q.caller_id.clone(),
                timeout_secs: u32::try_from(q.ring_timeout_seconds).unwrap_or(25),
                announcement: q.announcement.clone(),
                queue: q.name.clone(),
            })
        }
        Target::Voicemail(q) => {
            record.queue_id = Some(q.id.as_str().to_owned());
            record.status = String::from("closed");
            record.outcome = Some(String::from("voicemail"));
            Resolution::Voicemail {
                message: q
                    .voicemail_message
                    .clone()
                    .unwrap_or_else(|| DEFAULT_VOICEMAIL.to_owned()),
                queue: q.name,
            }
        }
        Target::StayWithAgent(q) => {
            record.queue_id = Some(q.id.as_str().to_owned());
            record.status = String::from("closed");
            record.outcome = Some(String::from("agent"));
            Resolution::StayWithAgent { queue: q.name }
        }
        Target::Callback(q) => {
            record.queue_id = q.as_ref().map(|q| q.id.as_str().to_owned());
            record.status = String::from("closed");
            record.outcome = Some(String::from("callback_task"));
            let queue_id = q.as_ref().map(|q| q.id.clone());
            let created = crate::callbacks::create(
                store,
                Some(&deps.notifier),
                callback_for(call, req.reason.clone(), queue_id),
            )
            .await;
            match &created {
                Ok(task) => record.callback_task_id = Some(task.clone()),
                Err(_) => {
                    record.status = String::from("failed");
                    record.outcome = None;
                }
            }
            Resolution::Callback(created)
        }
    };
    let mut context = req.context;
    context["outcome"] = json!(record.outcome);
    context["call_id"] = json!(call.id.as_str());
    context["call_sid"] = json!(call.call_sid);
    context["agent_key"] = json!(call.agent_key);
    record.context = context;
    if let Err(error) = store.insert_handoff(&record).await {
        tracing::warn!(error = %error, "could not record the handoff");
    }
    tracing::info!(rule = %record.rule, queue = ?record.queue_name, status = %record.status, "escalation");
    announce(store, &deps.notifier, call, &record, json!({})).await;
    resolution
}

/// Records a handoff's `handoff` event on the call's timeline (with `extra` fields) and emits
/// `voice.call.escalated`; a failure is logged (the handoff itself is recorded and under
/// way). Shared by the agent's escalations and an operator's transfer to a queue.
pub(crate) async fn announce(
    store: &crate::store::Store,
    notifier: &crate::notifier::Notifier,
    call: &CallRecord,
    record: &Handoff,
    extra: serde_json::Value,
) {
    let mut detail = json!({"handoff_id": record.id, "rule": record.rule, "queue": record.queue_name,
        "status": record.status, "outcome": record.outcome});
    if let (Some(detail), Some(extra)) = (detail.as_object_mut(), extra.as_object()) {
        detail.extend(extra.clone());
    }
    if let Err(error) = store.add_call_event(&call.id, "handoff", &detail).await {
        tracing::warn!(error = %error, "could not record the handoff event");
    }
    let event = json!({
        "call_id": call.id.as_str(),
        "call_sid": call.call_sid,
        "handoff_id": record.id,
        "queue": record.queue_name,
        "status": record.status,
        "outcome": record.outcome,
        "callback_task_id": record.callback_task_id,
        "context": record.context,
    });
    if let Err(error) = notifier
        .emit(&call.tenant_id, EventKind::CallEscalated, event)
        .await
    {
        tracing::warn!(error = %error, "could not record voice.call.escalated");
    }
}

/// Changes `call` through the carrier, recording first what must precede the change.
pub(super) async fn control(
    deps: &CallDeps,
    call: &CallRecord,
    req: ControlRequest,
) -> ControlReport {
    let store = &deps.store;
    // What `stream-ended` follows once the carrier ends the stream, and (for the agent's own
    // hang-up) why the call ended: recorded before the carrier can act, so nobody records
    // another reason first.
    // A drain's redirect to a fresh stream records nothing: the carrier runs the new stream
    // without asking `stream-ended`, and a stale `resume` would answer a later one.
    if !matches!(req.action, CarrierAction::Resume)
        && let Err(error) = store
            .set_continuation(&call.id, Some(req.continuation))
            .await
    {
        tracing::warn!(error = %error, "could not record the continuation");
    }
    if let (CarrierAction::Hangup | CarrierAction::Fallback, Some(reason)) =
        (&req.action, req.reason)
        && let Err(error) = deps.outcomes.record_reason(&call.id, reason, None).await
    {
        tracing::warn!(error = %error, "could not record the end reason");
    }
    if let Some(queue) = &req.queue
        && let Err(error) = store
            .set_escalated(&call.id, &format!("queue:{queue}"))
            .await
    {
        tracing::warn!(error = %error, "could not record the escalation target");
    }
    let result = deps
        .control
        .control(call, req.action.clone(), Initiator::Agent)
        .await
        .map_err(|e| e.to_string());
    match req.action {
        CarrierAction::Hangup => ControlReport::Hangup(result),
        CarrierAction::Say { .. } => {
            match &result {
                Ok(()) => record_reason(deps, call, req.reason).await,
                Err(_) => clear_continuation(deps, call).await,
            }
            ControlReport::Say(result)
        }
        CarrierAction::Resume | CarrierAction::Fallback => ControlReport::Redirect(result),
        CarrierAction::Handoff { handoff, .. } => match result {
            Ok(()) => ControlReport::Dial(Ok(())),
            Err(why) => {
                let queue = req.queue.unwrap_or_default();
                ControlReport::Dial(Err(dial_refused(deps, call, &handoff, &queue, &why).await))
            }
        },
    }
}

async fn record_reason(deps: &CallDeps, call: &CallRecord, reason: Option<EndReason>) {
    if let Some(reason) = reason
        && let Err(error) = deps.outcomes.record_reason(&call.id, reason, None).await
    {
        tracing::warn!(error = %error, "could not record the end reason");
    }
}

async fn clear_continuation(deps: &CallDeps, call: &CallRecord) {
    if let Err(error) = deps
        .store
        .set_continuation(&call.id, None::<Continuation>)
        .await
    {
        tracing::warn!(error = %error, "could not clear the continuation");
    }
}

/// The carrier refused the dial: the caller stays with the agent, and a callback task is
/// created for them. Returns whether it was.
async fn dial_refused(
    deps: &CallDeps,
    call: &CallRecord,
    handoff: &HandoffId,
    queue: &str,
    why: &str,
) -> bool {
    let store = &deps.store;
    if let Err(error) = store.handoff_refused(&call.id).await {
        tracing::warn!(error = %error, "could not undo the escalation");
    }
    let task = crate::callbacks::create(
        store,
        Some(&deps.notifier),
        callback_for(call, format!("transfer to {queue} failed: {why}"), None),
    )
    .await
    .ok();
    let outcome = if task.is_some() {
        "callback_task"
    } else {
        "agent"
    };
    if let Err(error) = store
        .finish_handoff(
            handoff,
            "failed",
            "carrier_error",
            None,
            outcome,
            task.as_deref(),
        )
        .await
    {
        tracing::warn!(error = %error, "could not record the refused handoff");
    }
    task.is_some()
}
