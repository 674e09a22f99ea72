//! The end of a handoff's `<Dial>` (`/api/v1/dial-result`): the handoff is claimed first
//! (one conditional update, so a repeated or concurrent callback finds it settled and does
//! nothing twice), then:
//!
//! - answered → the call is escalated to whoever answered and completes (`escalated`);
//! - nobody answered → the queue's `when_unanswered`: a callback task (`callback_scheduled`)
//!   or its voicemail message (`escalation_voicemail`), and the call completes; or back to
//!   the agent on a fresh stream that resumes the conversation (nothing completes: the new
//!   stream's owner will).
//!
//! The reason is recorded before the completion is attempted, so if a voice session of the
//! call is still closing, the final status callback completes it with that reason.

use serde_json::json;

use super::{AfterStream, CallbackTarget, Fallback, TelephonyCtx, TelephonyError};
use crate::ending::EndReason;
use crate::ids::{HandoffId, QueueId};
use crate::operator::{
    CallbackPriority, CallbackSource, NewCallbackTask, OperatorQueue, QueueFallback,
};
use crate::store::{CallDirection, CallRecord, Handoff};

/// Said when nobody in the queue answered and a callback task was created.
pub const CALLBACK_MESSAGE: &str = "Sorry, nobody is available right now. A colleague will call you back as soon as possible. Goodbye.";

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

/// Settles a handoff's dial and says what the caller hears next.
pub async fn dial_result(
    ctx: &TelephonyCtx,
    target: CallbackTarget,
    handoff_id: HandoffId,
    report: DialReport,
) -> Result<AfterStream, TelephonyError> {
    let Some(call) = ctx.find_call(&target).await? else {
        return Ok(AfterStream::Hangup);
    };
    let store = ctx.store();
    let Some(handoff) = store
        .get_handoff(&target.tenant_id, &handoff_id)
        .await?
        .filter(|h| h.call_id == call.id.as_str())
    else {
        return Err(TelephonyError::NotFound("handoff"));
    };
    if handoff.status != "dialing" {
        // A repeated callback: the decision was made already.
        return Ok(AfterStream::Hangup);
    }
    let answered = matches!(report.status.as_str(), "completed" | "answered");
    let queue = match handoff.queue_id.as_deref().and_then(QueueId::parse) {
        Some(id) => store.get_queue(&target.tenant_id, &id).await?,
        None => None,
    };
    if answered {
        if !store
            .finish_handoff(
                &handoff_id,
                "answered",
                &report.status,
                report.dial_call_sid.as_deref(),
                "bridged",
                None,
            )
            .await?
        {
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
        ctx.event(
            &call.id,
            "handoff",
            json!({"handoff_id": handoff.id, "dial_status": report.status, "outcome": "bridged", "dial_call_sid": report.dial_call_sid, "duration_seconds": report.duration_secs}),
        )
        .await;
        metrics::counter!("handoffs_total", "outcome" => "answered").increment(1);
        ctx.outcomes()
            .record_reason(&call.id, EndReason::Escalated, None)
            .await?;
        ctx.complete_or_log(&call.id, EndReason::Escalated, None)
            .await;
        return Ok(AfterStream::Hangup);
    }
    Ok(
        unanswered(ctx, &call, &handoff, queue.as_ref(), &report.status)
            .await?
            .unwrap_or(AfterStream::Hangup),
    )
}

/// Settles a handoff nobody took (`dial_status`: the dial's status, or how a warm transfer
/// ended): claims it from `dialing` (a settled one changes nothing: `None`), applies the
/// queue's `when_unanswered` — a callback task, its voicemail message, or back to the agent
/// — records the timeline entry and the end reason, and says what the caller hears next.
/// Shared by the cold dial's result and a warm transfer that was declined or not answered.
pub(crate) async fn unanswered(
    ctx: &TelephonyCtx,
    call: &CallRecord,
    handoff: &Handoff,
    queue: Option<&OperatorQueue>,
    dial_status: &str,
) -> Result<Option<AfterStream>, TelephonyError> {
    let store = ctx.store();
    let handoff_id = HandoffId::from_stored(handoff.id.clone());
    let fallback = queue.map_or(QueueFallback::CallbackTask, |q| q.when_unanswered);
    let outcome = match fallback {
        QueueFallback::Agent => "agent",
        QueueFallback::Voicemail => "voicemail",
        QueueFallback::CallbackTask => "callback_task",
    };
    if !store
        .finish_handoff(&handoff_id, "unanswered", dial_status, None, outcome, None)
        .await?
    {
        return Ok(None);
    }
    metrics::counter!("handoffs_total", "outcome" => "unanswered").increment(1);
    // Not escalated after all: the leg's provisional reason gives way to what follows.
    store.clear_escalation(&call.id).await?;
    ctx.outcomes()
        .withdraw_reason(&call.id, EndReason::Escalated)
        .await?;
    let (task, decision, reason) = match fallback {
        QueueFallback::Agent => (None, AfterStream::Resume(ctx.stream_for(call)), None),
        QueueFallback::Voicemail => {
            let message = queue
                .and_then(|q| q.voicemail_message.clone())
                .unwrap_or_else(|| CALLBACK_MESSAGE.to_owned());
            (
                None,
                AfterStream::Fallback(Fallback::message(message)),
                Some(EndReason::EscalationVoicemail),
            )
        }
        QueueFallback::CallbackTask => {
            let caller = match call.direction {
                CallDirection::Inbound => call.from_number.clone(),
                CallDirection::Outbound => call.to_number.clone(),
            };
            let reason = format!(
                "{} (nobody answered in queue {}: {})",
                handoff.reason,
                handoff.queue_name.clone().unwrap_or_default(),
                dial_status
            );
            let task = crate::callbacks::create(
                store,
                Some(&ctx.config().notifier),
                NewCallbackTask {
                    tenant_id: call.tenant_id.clone(),
                    phone: caller,
                    reason,
                    source_call_id: Some(call.id.clone()),
                    queue_id: queue.map(|q| q.id.clone()),
                    priority: CallbackPriority::High,
                    due_at: None,
                    created_by: CallbackSource::Handoff,
                },
            )
            .await
            .map_err(|e| TelephonyError::Conflict(format!("callback task not created: {e}")))?;
            store.set_handoff_callback_task(&handoff_id, &task).await?;
            (
                Some(task),
                AfterStream::Fallback(Fallback::message(CALLBACK_MESSAGE)),
                Some(EndReason::CallbackScheduled),
            )
        }
    };
    ctx.event(
        &call.id,
        "handoff",
        json!({"handoff_id": handoff.id, "dial_status": dial_status, "outcome": outcome, "callback_task_id": task}),
    )
    .await;
    if let Some(reason) = reason {
        ctx.outcomes().record_reason(&call.id, reason, None).await?;
        ctx.complete_or_log(&call.id, reason, None).await;
    }
    Ok(Some(decision))
}
