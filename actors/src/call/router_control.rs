//! [`CallControl`] over the router actor's `RouterMsg::Control` and `RouterMsg::SendSms`: a
//! thin adapter until the telephony modules offer carrier control as plain functions (the
//! lead swaps the implementation at merge; nothing else in the call runtime changes).
//!
//! The router records `hangup_requested` for every hang-up it is asked for (first reason
//! kept), so the runtime records the agent's own reason before it asks ([`Initiator`] is not
//! forwarded: the router message has no room for it).

use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::control::{CallControl, CarrierAction, ControlError, Initiator};
use crate::router::{ControlAction, RouterError, RouterMsg};
use crate::singleton::SingletonRef;
use crate::store::CallRecord;

/// How long a carrier change may take (the router talks to the carrier's REST API).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an SMS may take.
const SMS_TIMEOUT: Duration = Duration::from_secs(15);

/// Carrier control through the router actor.
#[derive(Clone)]
pub struct RouterControl {
    router: SingletonRef<RouterMsg>,
}

impl RouterControl {
    /// Control through the router's current incarnation.
    pub fn new(router: SingletonRef<RouterMsg>) -> Self {
        Self { router }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn router_error(e: RouterError) -> ControlError {
    match e {
        RouterError::Conflict(why) => ControlError::Conflict(why),
        other => ControlError::Carrier(other.to_string()),
    }
}

impl CallControl for RouterControl {
    fn control<'a>(
        &'a self,
        call: &'a CallRecord,
        action: CarrierAction,
        _initiator: Initiator,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        async move {
            let Some(router) = self.router.get() else {
                return Err(ControlError::Unavailable(String::from(
                    "the router is restarting",
                )));
            };
            let Some(sid) = call.call_sid.clone() else {
                return Err(ControlError::Conflict(String::from(
                    "the call has no carrier id",
                )));
            };
            let action = match action {
                CarrierAction::Hangup => ControlAction::Hangup,
                CarrierAction::Say { message } => ControlAction::Say { message },
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
            };
            match ractor::call_t!(
                router,
                RouterMsg::Control,
                millis(CONTROL_TIMEOUT),
                call.tenant_id.clone(),
                sid,
                action
            ) {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(router_error(e)),
                Err(e) => Err(ControlError::Unavailable(e.to_string())),
            }
        }
        .boxed()
    }

    fn send_sms<'a>(
        &'a self,
        call: &'a CallRecord,
        body: String,
    ) -> BoxFuture<'a, Result<String, ControlError>> {
        async move {
            let Some(router) = self.router.get() else {
                return Err(ControlError::Unavailable(String::from(
                    "the router is restarting",
                )));
            };
            match ractor::call_t!(
                router,
                RouterMsg::SendSms,
                millis(SMS_TIMEOUT),
                call.tenant_id.clone(),
                call.id.clone(),
                body
            ) {
                Ok(Ok(sid)) => Ok(sid),
                Ok(Err(e)) => Err(router_error(e)),
                Err(e) => Err(ControlError::Unavailable(e.to_string())),
            }
        }
        .boxed()
    }
}
