//! The call runtime's [`CallControl`] over this edge's plain functions: a call actor changes
//! its own call (hang up, dial a queue, say a message) and texts its caller through
//! [`super::control`], directly, with no mailbox in between and the [`Initiator`] passed on
//! (the agent's own actions record nothing here; the runtime records their reasons itself).

use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::control::{self, ControlAction};
use super::{TelephonyCtx, TelephonyError};
use crate::call::control::{CallControl, CarrierAction, ControlError, Initiator};
use crate::store::CallRecord;

/// Carrier control of live calls through the telephony edge.
#[derive(Clone)]
pub struct TelephonyControl {
    ctx: TelephonyCtx,
}

impl TelephonyControl {
    /// Control through `ctx`.
    pub fn new(ctx: TelephonyCtx) -> Self {
        Self { ctx }
    }
}

fn action_of(action: CarrierAction) -> ControlAction {
    match action {
        CarrierAction::Hangup => ControlAction::Hangup,
        CarrierAction::Say { message } => ControlAction::Say { message },
        CarrierAction::Resume => ControlAction::Resume,
        CarrierAction::Fallback => ControlAction::Fallback,
        CarrierAction::Handoff {
            numbers,
            announcement,
            caller_id,
            timeout_secs,
            handoff,
        } => ControlAction::Handoff {
            numbers,
            announcement,
            caller_id,
            timeout_secs,
            handoff,
        },
    }
}

fn control_error(e: TelephonyError) -> ControlError {
    match e {
        TelephonyError::Conflict(why) => ControlError::Conflict(why),
        TelephonyError::NotFound(what) => ControlError::Conflict(format!("{what} not found")),
        other => ControlError::Carrier(other.to_string()),
    }
}

impl CallControl for TelephonyControl {
    fn control<'a>(
        &'a self,
        call: &'a CallRecord,
        action: CarrierAction,
        initiator: Initiator,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        async move {
            control::control(
                &self.ctx,
                &call.tenant_id,
                call.id.as_str(),
                action_of(action),
                initiator,
            )
            .await
            .map(|_| ())
            .map_err(control_error)
        }
        .boxed()
    }

    fn send_sms<'a>(
        &'a self,
        call: &'a CallRecord,
        body: String,
    ) -> BoxFuture<'a, Result<String, ControlError>> {
        async move {
            control::send_sms(&self.ctx, &call.tenant_id, &call.id, &body)
                .await
                .map_err(control_error)
        }
        .boxed()
    }
}
