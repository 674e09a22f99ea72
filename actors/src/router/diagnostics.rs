//! [`RoutingDiagnostic`]: an inbound call that could not be routed or was refused, as
//! admission records it into the cluster views ([`crate::views`]); the diagnostics API
//! lists the newest of every node.

/// Entries kept (and listed).
pub const MAX_DIAGNOSTICS: usize = 200;

/// A recent inbound call that could not be routed or was refused.
#[derive(Debug, Clone)]
pub struct RoutingDiagnostic {
    /// When (Unix ms).
    pub at: i64,
    /// Signing account.
    pub account_sid: String,
    /// `CallSid`.
    pub call_sid: String,
    /// `From`.
    pub from: String,
    /// `To`.
    pub to: String,
    /// Why (`unrouted`, or the refusal's end reason).
    pub reason: &'static str,
}
