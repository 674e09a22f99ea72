//! Carrier callbacks about a call: `call-status` (stored once per sequence number, the status
//! only ever advanced by a higher one; a terminal status completes the call unless a live
//! session's owner will), `stream-status` and `amd-status` (the AMD result, and the
//! outbound call's answering-machine action: see [`super::amd`]).

use serde_json::json;

use super::amd::{self, AmdAction, AnsweredBy, Decision, MachineOutcome};
use super::control::{self, ControlAction, Initiator};
use super::{CallbackTarget, TelephonyCtx, TelephonyError};
use crate::ending::{Continuation, EndReason, Outcome};
use crate::ids::AgentVersionId;
use crate::store::{CallRecord, StatusUpdate, is_terminal_status};

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

/// Applies a call status callback; false for a duplicate (or one about a call of another
/// tenant). A terminal status completes the call with the carrier's reason — a no-op when it
/// is complete already or a voice session of it is still live (its owner completes it).
pub async fn call_status(
    ctx: &TelephonyCtx,
    target: CallbackTarget,
    update: StatusUpdate,
) -> Result<bool, TelephonyError> {
    let Some(call) = ctx.find_call(&target).await? else {
        // Not recorded yet: keep it unattached, unless it names a call of ours that belongs
        // to someone else.
        if target.call_id.is_some() || ctx.store().call_by_sid(&target.call_sid).await?.is_some() {
            metrics::counter!("call_status_unmatched_total").increment(1);
            return Ok(false);
        }
        let orphan = StatusUpdate {
            call_id: None,
            ..update
        };
        return Ok(ctx.store().record_status(&orphan).await?);
    };
    let terminal = is_terminal_status(&update.status);
    let status = update.status.clone();
    let update = StatusUpdate {
        call_id: Some(call.id.clone()),
        ..update
    };
    let fresh = ctx.store().record_status(&update).await?;
    // An outbound placement waiting for its outcome now knows the SID.
    ctx.wake_placement(&call.id);
    if terminal && let Some(reason) = EndReason::of_carrier_status(&status) {
        // A call handed to a queue is escalated whatever the carrier reports at the end.
        let dialing = call.after_stream == Some(Continuation::Handoff)
            || ctx
                .store()
                .call_handoffs(&call.id)
                .await?
                .iter()
                .any(|h| h.status == "dialing");
        let outcome = dialing.then_some(Outcome::Escalated);
        ctx.complete_or_log(&call.id, reason, outcome).await;
    }
    Ok(fresh)
}

/// Applies a stream status callback (a started/stopped report never overwrites an error
/// seen on the socket).
pub async fn stream_status(ctx: &TelephonyCtx, cb: StreamCallback) -> Result<(), TelephonyError> {
    let Some(call) = ctx.find_call(&cb.target).await? else {
        return Ok(());
    };
    let state = match cb.event.as_str() {
        "stream-started" => Some("started"),
        "stream-stopped" => Some("stopped"),
        "stream-error" => Some("error"),
        _ => None,
    };
    if let Some(state) = state
        && !(state != "error" && call.stream_status.as_deref() == Some("error"))
    {
        ctx.store()
            .set_stream_state(&call.id, cb.stream_sid.as_deref(), state)
            .await?;
    }
    ctx.event(
        &call.id,
        "stream",
        json!({"event": cb.event, "stream_sid": cb.stream_sid, "error": cb.error}),
    )
    .await;
    Ok(())
}

/// Records an asynchronous answering-machine detection result (`AnsweredBy`) and, for an
/// outbound call with an AMD action, acts on it ([`super::amd::decide`]): the first result
/// that decides claims the call's machine outcome (a repeated or concurrent callback does
/// nothing more), and a machine is hung up on, or left the agent version's voicemail
/// message, through the carrier's REST API (so from any node). The action runs in a task
/// that records its own result, whether or not the carrier's request still waits.
pub async fn amd_status(
    ctx: &TelephonyCtx,
    target: CallbackTarget,
    answered_by: String,
) -> Result<(), TelephonyError> {
    let Some(call) = ctx.find_call(&target).await? else {
        return Ok(());
    };
    ctx.store().set_answered_by(&call.id, &answered_by).await?;
    let Some(action) = call.amd_action.as_deref().and_then(AmdAction::parse) else {
        ctx.event(&call.id, "amd", json!({"answered_by": answered_by}))
            .await;
        return Ok(());
    };
    let decision = amd::decide(action, AnsweredBy::parse(&answered_by));
    ctx.event(
        &call.id,
        "amd",
        json!({
            "answered_by": answered_by,
            "action": action.as_str(),
            "decision": decision_label(decision),
        }),
    )
    .await;
    let Some(outcome) = MachineOutcome::of(decision) else {
        return Ok(());
    };
    if !ctx
        .store()
        .claim_machine_outcome(&call.id, outcome.as_str())
        .await?
    {
        return Ok(());
    }
    let task = tokio::spawn(act_on_machine(ctx.clone(), call, decision, outcome));
    task.await
        .map_err(|e| TelephonyError::Unavailable(format!("amd action: {e}")))?
}

/// Carries out a claimed decision: hang up, or the voicemail message then a hang-up. The
/// end reason is recorded before the carrier is asked, so the end of the stream that
/// follows records nothing else; a carrier failure gives the claim back.
async fn act_on_machine(
    ctx: TelephonyCtx,
    call: CallRecord,
    decision: Decision,
    outcome: MachineOutcome,
) -> Result<(), TelephonyError> {
    let action = match decision {
        Decision::HangUp => ControlAction::Hangup,
        Decision::LeaveVoicemail => match voicemail_message(&ctx, &call).await? {
            Some(message) => ControlAction::Say { message },
            // The version lost its message (validated at placement): hang up instead.
            None => ControlAction::Hangup,
        },
        Decision::Converse | Decision::Ignore | Decision::AwaitMessageEnd => return Ok(()),
    };
    ctx.outcomes()
        .record_reason(
            &call.id,
            EndReason::AnsweringMachine,
            Some(outcome.as_str()),
        )
        .await?;
    let done = control::control(
        &ctx,
        &call.tenant_id,
        call.id.as_str(),
        action,
        Initiator::Agent,
    )
    .await;
    match done {
        Ok(_) => {
            metrics::counter!("amd_actions_total", "outcome" => outcome.as_str()).increment(1);
            Ok(())
        }
        Err(error) => {
            tracing::warn!(call_id = %call.id, error = %error, "the AMD action failed at the carrier");
            ctx.store()
                .release_machine_outcome(&call.id, outcome.as_str())
                .await?;
            if let Err(e) = ctx
                .outcomes()
                .withdraw_reason(&call.id, EndReason::AnsweringMachine)
                .await
            {
                tracing::warn!(call_id = %call.id, error = %e, "could not withdraw the AMD end reason");
            }
            Err(error)
        }
    }
}

/// The voicemail message of the call's agent version (of the call's tenant).
async fn voicemail_message(
    ctx: &TelephonyCtx,
    call: &CallRecord,
) -> Result<Option<String>, TelephonyError> {
    let Some(id) = call
        .agent_version_id
        .as_deref()
        .and_then(AgentVersionId::parse)
    else {
        return Ok(None);
    };
    let version = ctx.store().get_version(&id).await?;
    Ok(version
        .filter(|v| v.tenant_id == call.tenant_id)
        .and_then(|v| v.voicemail_message))
}

fn decision_label(d: Decision) -> &'static str {
    match d {
        Decision::Converse => "converse",
        Decision::Ignore => "continue",
        Decision::HangUp => "hang_up",
        Decision::LeaveVoicemail => "leave_voicemail",
        Decision::AwaitMessageEnd => "await_message_end",
    }
}
