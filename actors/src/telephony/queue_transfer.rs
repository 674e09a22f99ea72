//! An operator's transfer of a live call to an operator queue (`POST
//! /api/v1/calls/{call}/transfer` with `queue_id`), through the carrier so it works from any
//! node: the same handoff an agent's escalation makes — the queue's numbers rung together
//! with its caller id, ring timeout and announcement, a handoff record with the context a
//! human gets (the last turns of the conversation), `voice.call.escalated`, and the
//! `<Dial action>` to `dial-result`, which settles it (answered, or the queue's
//! `when_unanswered`: a callback task, its voicemail message, or back to the agent).
//!
//! What `stream-ended` and the call's ending follow is recorded before the carrier is asked;
//! when the carrier refuses, the records are undone (the caller stays with the agent) and the
//! handoff is recorded as failed.

use serde_json::json;

use super::control::{ControlAction, Initiator, control};
use super::{TelephonyCtx, TelephonyError};
use crate::ending::{Continuation, EndReason};
use crate::ids::{HandoffId, QueueId, TenantId};
use crate::store::{CallRecord, Handoff, is_terminal_status};
use crate::time::now_ms;

/// The last turns of the conversation the human gets in the handoff context.
const CONTEXT_TURNS: usize = 6;

/// Who asked and why, as the handoff records it.
#[derive(Debug, Clone)]
pub struct QueueTransfer {
    /// The tenant's queue.
    pub queue_id: QueueId,
    /// Who asked (an operator's name, else the key id).
    pub requested_by: String,
}

/// Hands the live call of `tenant` with our id or `CallSid` `id` to an operator queue;
/// returns the call as recorded afterwards. The queue must be the tenant's (else
/// `Invalid("queue_id")`), open now and have numbers (else a conflict).
pub async fn transfer_to_queue(
    ctx: &TelephonyCtx,
    tenant: &TenantId,
    id: &str,
    req: QueueTransfer,
) -> Result<CallRecord, TelephonyError> {
    let store = ctx.store();
    let call = ctx.lookup(tenant, id).await?;
    if is_terminal_status(&call.status) || call.ended_at.is_some() {
        return Err(TelephonyError::Conflict("the call has ended".into()));
    }
    let queue = store
        .get_queue(tenant, &req.queue_id)
        .await?
        .ok_or_else(|| {
            TelephonyError::Invalid("queue_id", "is not an operator queue of this tenant".into())
        })?;
    let now = now_ms();
    if !queue.is_open(now) {
        return Err(TelephonyError::Conflict(format!(
            "the {} queue is closed now",
            queue.name
        )));
    }
    if queue.numbers.is_empty() {
        return Err(TelephonyError::Conflict(format!(
            "the {} queue has no numbers to ring",
            queue.name
        )));
    }
    let turns = store.call_conversation(&call.id).await?;
    let recent = &turns[turns.len().saturating_sub(CONTEXT_TURNS)..];
    let summary = recent
        .iter()
        .map(|(role, text)| {
            let who = if role == "assistant" {
                "Agent"
            } else {
                "Caller"
            };
            format!("{who}: {text}")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let reason = format!("transferred by {}", req.requested_by);
    let handoff_id = HandoffId::generate();
    let record = Handoff {
        id: handoff_id.as_str().to_owned(),
        tenant_id: tenant.as_str().to_owned(),
        call_id: call.id.as_str().to_owned(),
        queue_id: Some(queue.id.as_str().to_owned()),
        queue_name: Some(queue.name.clone()),
        reason: reason.clone(),
        rule: String::from("operator"),
        context: json!({
            "reason": reason,
            "rule": "operator",
            "queue": queue.name,
            "requested_by": req.requested_by,
            "summary": summary,
            "last_turns": recent.iter().map(|(role, text)| json!({"role": role, "text": text})).collect::<Vec<_>>(),
            "caller": caller_of(&call),
            "call_id": call.id.as_str(),
            "call_sid": call.call_sid,
            "agent_key": call.agent_key,
            "outcome": null,
        }),
        status: String::from("dialing"),
        dial_status: None,
        target: None,
        outcome: None,
        callback_task_id: None,
        created_at: now,
        updated_at: now,
        warm: None,
    };
    store.insert_handoff(&record).await?;
    match dial(ctx, tenant, id, &call, &queue, &handoff_id).await {
        Ok(changed) => {
            crate::call::handoff::announce(
                store,
                &ctx.config().notifier,
                &call,
                &record,
                json!({"requested_by": req.requested_by}),
            )
            .await;
            Ok(changed)
        }
        Err(error) => {
            // The caller stays with the agent: nothing planned after the stream, no end
            // reason, no escalation; the handoff failed. Nothing is left half-written.
            if let Err(e) = store.resume_after_handoff(&call.id).await {
                tracing::warn!(error = %e, "could not undo the refused transfer's records");
            }
            if let Err(e) = store
                .finish_handoff(&handoff_id, "failed", "carrier_error", None, "agent", None)
                .await
            {
                tracing::warn!(error = %e, "could not record the failed handoff");
            }
            Err(error)
        }
    }
}

/// Records what the transfer's end follows (before the carrier can act), then asks the
/// carrier to dial the queue with `dial-result` as the `<Dial action>`.
async fn dial(
    ctx: &TelephonyCtx,
    tenant: &TenantId,
    id: &str,
    call: &CallRecord,
    queue: &crate::operator::OperatorQueue,
    handoff_id: &HandoffId,
) -> Result<CallRecord, TelephonyError> {
    let store = ctx.store();
    store
        .set_continuation(&call.id, Some(Continuation::Handoff))
        .await?;
    ctx.outcomes()
        .record_reason(&call.id, EndReason::TransferRequested, None)
        .await?;
    store
        .set_escalated(&call.id, &format!("queue:{}", queue.name))
        .await?;
    let action = ControlAction::Handoff {
        numbers: queue.numbers.clone(),
        announcement: queue.announcement.clone(),
        caller_id: queue.caller_id.clone(),
        timeout_secs: u32::try_from(queue.ring_timeout_seconds).unwrap_or(25),
        handoff: handoff_id.clone(),
    };
    control(ctx, tenant, id, action, Initiator::Api).await
}

/// The caller's number: the remote party of the call.
fn caller_of(call: &CallRecord) -> &str {
    match call.direction {
        crate::store::CallDirection::Inbound => &call.from_number,
        crate::store::CallDirection::Outbound => &call.to_number,
    }
}
