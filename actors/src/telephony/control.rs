//! Control of a live call through the carrier (so it works from any node): hang up,
//! transfer, a handoff's dial, a message then hang up, and an SMS to the caller.
//!
//! Who asks matters: a tenant's API request records why the call ends
//! ([`EndReason::HangupRequested`], [`EndReason::TransferRequested`]) before the carrier is
//! asked, so the `stop` that follows cannot record anything else; the agent's own hang-up
//! (`end_call`, an idle or duration limit) records nothing here — its call actor knows why.

use serde_json::json;

use super::{Fallback, TelephonyCtx, TelephonyError};
use crate::carrier::CallChange;
use crate::ending::EndReason;
use crate::ids::{CallId, HandoffId, TenantId};
use crate::store::{CallDirection, CallRecord, is_terminal_status};

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
        handoff: HandoffId,
    },
    /// Say a message, then hang up.
    Say {
        /// The words.
        message: String,
    },
    /// A fresh media stream that resumes the conversation (a draining node hands its call
    /// on; the stream URL is the public address, so another node takes it).
    Resume,
    /// The route's fallback (a draining node with no other node to take the call).
    Fallback,
}

impl ControlAction {
    fn label(&self) -> &'static str {
        match self {
            ControlAction::Hangup => "hangup",
            ControlAction::Transfer { .. } => "transfer",
            ControlAction::Handoff { .. } => "handoff",
            ControlAction::Say { .. } => "say",
            ControlAction::Resume => "resume",
            ControlAction::Fallback => "fallback",
        }
    }
}

/// Who asks for a control action (one type with the call runtime's).
pub use crate::call::control::Initiator;

/// Our number of `call` (the caller id of a dialed leg).
pub(super) fn our_number(call: &CallRecord) -> String {
    match call.direction {
        CallDirection::Inbound => call.to_number.clone(),
        CallDirection::Outbound => call.from_number.clone(),
    }
}

/// Applies `action` to the call of `tenant` with our id or `CallSid` `id`; returns the call
/// as recorded afterwards. Hanging up an ended call succeeds and changes nothing; any other
/// action on it is a conflict.
pub async fn control(
    ctx: &TelephonyCtx,
    tenant: &TenantId,
    id: &str,
    action: ControlAction,
    initiator: Initiator,
) -> Result<CallRecord, TelephonyError> {
    let call = ctx.lookup(tenant, id).await?;
    let ended = is_terminal_status(&call.status) || call.ended_at.is_some();
    if let ControlAction::Handoff {
        handoff,
        announcement,
        caller_id,
        timeout_secs,
        ..
    } = &action
        && !ended
        && let Some(queue) = super::warm::warm_queue(ctx, tenant, handoff).await?
    {
        let Some(call_sid) = call.call_sid.clone() else {
            return Err(TelephonyError::Conflict(
                "the carrier has not accepted this call yet".into(),
            ));
        };
        let start = super::warm::WarmStart {
            handoff: handoff.clone(),
            queue,
            announcement: announcement.clone(),
            caller_id: caller_id.clone().unwrap_or_else(|| our_number(&call)),
            timeout_secs: *timeout_secs,
        };
        super::warm::start(ctx, &call, &call_sid, start).await?;
        return Ok(ctx.store().get_call_by_id(&call.id).await?.unwrap_or(call));
    }
    let change = match &action {
        ControlAction::Hangup if ended => return Ok(call),
        _ if ended => return Err(TelephonyError::Conflict("the call has ended".into())),
        ControlAction::Hangup => CallChange::Hangup,
        ControlAction::Handoff {
            numbers,
            announcement,
            caller_id,
            timeout_secs,
            handoff,
        } => CallChange::Dial {
            announcement: announcement.clone(),
            numbers: numbers.clone(),
            caller_id: Some(caller_id.clone().unwrap_or_else(|| our_number(&call))),
            timeout_secs: Some(*timeout_secs),
            action_url: Some(ctx.urls().dial_result(&call.id, handoff)),
        },
        ControlAction::Say { message } => CallChange::Fallback {
            message: message.clone(),
            number: None,
        },
        ControlAction::Resume => CallChange::Stream(ctx.stream_for(&call)),
        ControlAction::Fallback => {
            let route = match &call.route_id {
                Some(route) => ctx.store().get_route(route).await?,
                None => None,
            };
            let fallback = Fallback::of(route.as_ref());
            CallChange::Fallback {
                message: fallback.message,
                number: fallback.number,
            }
        }
        ControlAction::Transfer {
            numbers,
            announcement,
        } => CallChange::Dial {
            announcement: announcement.clone(),
            numbers: numbers.clone(),
            caller_id: Some(our_number(&call)),
            timeout_secs: None,
            action_url: None,
        },
    };
    let Some(call_sid) = call.call_sid.clone() else {
        return Err(TelephonyError::Conflict(
            "the carrier has not accepted this call yet".into(),
        ));
    };
    let account = ctx.account(tenant).await?;
    if initiator == Initiator::Api {
        let reason = match &action {
            ControlAction::Hangup => Some(EndReason::HangupRequested),
            ControlAction::Transfer { .. } => Some(EndReason::TransferRequested),
            ControlAction::Handoff { .. }
            | ControlAction::Say { .. }
            | ControlAction::Resume
            | ControlAction::Fallback => None,
        };
        if let Some(reason) = reason {
            ctx.outcomes().record_reason(&call.id, reason, None).await?;
        }
    }
    match ctx
        .config()
        .carrier
        .update_call(&account.auth, &call_sid, &change)
        .await
    {
        Ok(()) => {}
        Err(e) if e.already_ended && matches!(action, ControlAction::Hangup) => {}
        Err(e) if e.already_ended => {
            return Err(TelephonyError::Conflict("the call has ended".into()));
        }
        Err(error) => {
            ctx.event(
                &call.id,
                "control",
                json!({"action": action.label(), "error_code": error.code, "error": error.message}),
            )
            .await;
            return Err(TelephonyError::Carrier {
                error,
                call_id: Some(call.id),
            });
        }
    }
    let detail = match &action {
        ControlAction::Hangup => {
            json!({"action": "hangup", "initiator": initiator_label(initiator)})
        }
        ControlAction::Transfer { numbers, .. } => json!({"action": "transfer", "to": numbers}),
        ControlAction::Handoff {
            numbers, handoff, ..
        } => json!({"action": "handoff", "to": numbers, "handoff_id": handoff.as_str()}),
        ControlAction::Say { .. } => json!({"action": "say"}),
        ControlAction::Resume | ControlAction::Fallback => {
            json!({"action": action.label(), "initiator": "drain"})
        }
    };
    ctx.event(&call.id, "control", detail).await;
    Ok(ctx.store().get_call_by_id(&call.id).await?.unwrap_or(call))
}

fn initiator_label(i: Initiator) -> &'static str {
    match i {
        Initiator::Agent => "agent",
        Initiator::Api => "api",
    }
}

/// Texts the caller of a call from the call's own number; returns the message id.
pub async fn send_sms(
    ctx: &TelephonyCtx,
    tenant: &TenantId,
    call: &CallId,
    body: &str,
) -> Result<String, TelephonyError> {
    let call = ctx
        .store()
        .get_call(tenant, call)
        .await?
        .ok_or(TelephonyError::NotFound("call"))?;
    let (to, from) = match call.direction {
        CallDirection::Inbound => (call.from_number.clone(), call.to_number.clone()),
        CallDirection::Outbound => (call.to_number.clone(), call.from_number.clone()),
    };
    let account = ctx.account(tenant).await?;
    match ctx
        .config()
        .carrier
        .send_sms(&account.auth, &to, &from, body)
        .await
    {
        Ok(sid) => {
            ctx.event(&call.id, "sms", json!({"to": to, "message_sid": sid}))
                .await;
            Ok(sid)
        }
        Err(error) => {
            ctx.event(
                &call.id,
                "sms",
                json!({"to": to, "error_code": error.code, "error": error.message}),
            )
            .await;
            Err(TelephonyError::Carrier {
                error,
                call_id: Some(call.id),
            })
        }
    }
}
