//! Carrier callbacks about a call: `call-status` (stored once per sequence number, the status
//! only ever advanced by a higher one; a terminal status completes the call unless a live
//! session's owner will), `stream-status` and `amd-status`.

use serde_json::json;

use super::{CallbackTarget, TelephonyCtx, TelephonyError};
use crate::ending::{Continuation, EndReason, Outcome};
use crate::store::{StatusUpdate, is_terminal_status};

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

/// Records an asynchronous answering-machine detection result (`AnsweredBy`).
pub async fn amd_status(
    ctx: &TelephonyCtx,
    target: CallbackTarget,
    answered_by: String,
) -> Result<(), TelephonyError> {
    if let Some(call) = ctx.find_call(&target).await? {
        ctx.store().set_answered_by(&call.id, &answered_by).await?;
        ctx.event(&call.id, "amd", json!({"answered_by": answered_by}))
            .await;
    }
    Ok(())
}
