//! Where Twilio reaches this service ([`PublicUrls`]: the media websocket and the callback
//! URLs, each carrying our call id) and what a caller hears when the AI cannot take or keep
//! the call ([`Fallback`]).

use crate::carrier::StreamInstructions;
use crate::ids::{CallId, HandoffId};
use crate::store::PhoneRoute;

/// Said when a number has no route (a safe message: no detail leaks).
pub const UNROUTED_MESSAGE: &str = "We're sorry, this number is not in service. Goodbye.";
/// Said before the fallback when a route has no message of its own.
pub const DEFAULT_FALLBACK_MESSAGE: &str = "Please hold while we connect you.";
/// Said when there is no fallback number.
pub const DEFAULT_UNAVAILABLE_MESSAGE: &str =
    "We're sorry, we can't take your call right now. Please try again later. Goodbye.";

/// Public URLs of this service as Twilio reaches it.
#[derive(Debug, Clone)]
pub struct PublicUrls {
    /// `https://voice.example.com` (no trailing slash).
    pub http_base: String,
    /// `wss://voice.example.com` (no trailing slash).
    pub ws_base: String,
}

impl PublicUrls {
    fn with_call(&self, path: &str, call: &CallId) -> String {
        format!("{}{path}?call_id={call}", self.http_base)
    }

    /// Stream instructions for a call carrying `token`.
    pub fn stream(&self, call: &CallId, token: String) -> StreamInstructions {
        StreamInstructions {
            stream_url: format!("{}/media-stream", self.ws_base),
            action_url: self.with_call("/api/v1/stream-ended", call),
            status_callback_url: self.with_call("/api/v1/stream-status", call),
            parameters: vec![(String::from("token"), token)],
        }
    }

    /// Status-callback URL of a call.
    pub fn call_status(&self, call: &CallId) -> String {
        self.with_call("/api/v1/call-status", call)
    }

    /// `<Dial action>` URL of a handoff.
    pub fn dial_result(&self, call: &CallId, handoff: &HandoffId) -> String {
        format!(
            "{}&handoff_id={handoff}",
            self.with_call("/api/v1/dial-result", call)
        )
    }

    /// A warm transfer's webhook `step` (`whisper`, `decision`, `operator-status`,
    /// `conference-status`), naming the call and the handoff.
    pub fn warm_transfer(&self, step: &str, call: &CallId, handoff: &HandoffId) -> String {
        format!(
            "{}&handoff_id={handoff}",
            self.with_call(&format!("/api/v1/warm-transfer/{step}"), call)
        )
    }

    /// Async AMD callback URL of a call.
    pub fn amd_status(&self, call: &CallId) -> String {
        self.with_call("/api/v1/amd-status", call)
    }
}

/// What the caller hears when the AI cannot take or keep the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// Said first.
    pub message: String,
    /// Dialled next; without one the call hangs up after the message.
    pub number: Option<String>,
}

impl Fallback {
    /// The fallback of `route` (or the generic one without a route).
    pub fn of(route: Option<&PhoneRoute>) -> Self {
        let number = route.and_then(|r| r.fallback_number.clone());
        let message = route
            .and_then(|r| r.fallback_message.clone())
            .unwrap_or_else(|| {
                if number.is_some() {
                    DEFAULT_FALLBACK_MESSAGE.to_owned()
                } else {
                    DEFAULT_UNAVAILABLE_MESSAGE.to_owned()
                }
            });
        Self { message, number }
    }

    /// A message, then hang up.
    pub fn message(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            number: None,
        }
    }
}
