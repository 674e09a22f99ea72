//! Carrier control of a live call, as the call runtime asks for it: what it may ask
//! ([`CarrierAction`]: hang up, dial an operator queue, say a message and hang up), who asks
//! ([`Initiator`]), and the object-safe [`CallControl`] trait the runtime holds as
//! `Arc<dyn CallControl>`. The runtime knows no router, no REST client and no TwiML: whoever
//! builds the call dependencies provides the implementation (the telephony edge's, in
//! `crate::telephony::call_control`).

use futures::future::BoxFuture;

use crate::ids::HandoffId;
use crate::store::CallRecord;

/// A change of a live call through the carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarrierAction {
    /// End the call.
    Hangup,
    /// Hand the caller to an operator queue: `<Dial>` its numbers, with the dial's `action`
    /// reporting to `/api/v1/dial-result` for this handoff.
    Handoff {
        /// Numbers rung simultaneously.
        numbers: Vec<String>,
        /// Said by the carrier first.
        announcement: Option<String>,
        /// Caller id of the dialed leg (default: our number of the call).
        caller_id: Option<String>,
        /// Ring timeout.
        timeout_secs: u32,
        /// The handoff record.
        handoff: HandoffId,
    },
    /// Say a message, then hang up (a closed queue's voicemail line).
    Say {
        /// The words.
        message: String,
    },
    /// The node drains: a fresh media stream that resumes the conversation (on whichever
    /// node the carrier reaches at the public address).
    Resume,
    /// The node drains and no other node can take the call: the route's fallback.
    Fallback,
}

impl CarrierAction {
    /// Short name for logs and metrics.
    pub const fn name(&self) -> &'static str {
        match self {
            CarrierAction::Hangup => "hangup",
            CarrierAction::Handoff { .. } => "handoff",
            CarrierAction::Say { .. } => "say",
            CarrierAction::Resume => "resume",
            CarrierAction::Fallback => "fallback",
        }
    }
}

/// Who asked for a change of the call. Only an API request records its own end reason
/// (`hangup_requested`, `transfer_requested`); the agent's own actions (`end_call`, the idle
/// goodbye, a handoff) are recorded by the call runtime with their own reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// The call runtime, on the agent's behalf.
    Agent,
    /// A tenant through the API.
    Api,
}

/// Why the carrier did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Whoever talks to the carrier is not available (restarting, shutting down).
    #[error("carrier control unavailable: {0}")]
    Unavailable(String),
    /// The call has no carrier id yet, or has ended.
    #[error("the call cannot be changed: {0}")]
    Conflict(String),
    /// The carrier refused or failed.
    #[error("the carrier refused: {0}")]
    Carrier(String),
}

/// Changes live calls and texts callers through the carrier. Object safe: the runtime holds
/// an `Arc<dyn CallControl>`.
pub trait CallControl: Send + Sync {
    /// Changes `call` (which must have its carrier id).
    fn control<'a>(
        &'a self,
        call: &'a CallRecord,
        action: CarrierAction,
        initiator: Initiator,
    ) -> BoxFuture<'a, Result<(), ControlError>>;

    /// Texts the caller of `call` from the call's own number; returns the message id.
    fn send_sms<'a>(
        &'a self,
        call: &'a CallRecord,
        body: String,
    ) -> BoxFuture<'a, Result<String, ControlError>>;
}
