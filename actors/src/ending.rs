//! The vocabulary of how a call ends, as types: why its conversation (or the whole call)
//! ended ([`EndReason`]), what became of the call ([`Outcome`]), and what the carrier is told
//! when the AI leg ends ([`Continuation`]). Stored as their wire strings (`as_str`/`parse`)
//! and converted only at the store boundary; nothing else matches on the strings.
//!
//! This module is a leaf: it knows no store, actor or HTTP type. Who records these values is
//! [`crate::outcome`].

/// Why a call's conversation, or the call itself, ended (`calls.end_reason`,
/// `voice_sessions.end_reason`). The free-text detail (an AI error code, a panic message) is
/// kept apart (`end_detail`), so the reason stays a bounded set usable in filters and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// Twilio sent `stop` (the caller hung up, or the carrier ended the stream).
    CallerHangup,
    /// The Twilio socket closed without `stop`.
    SocketClosed,
    /// The Twilio socket failed (a reset, a protocol error).
    SocketError,
    /// A write to the Twilio socket failed.
    TwilioWriteFailed,
    /// The Twilio socket stopped taking writes within the stall deadline.
    TwilioStalled,
    /// The agent version's maximum call duration.
    MaxDuration,
    /// Nobody spoke for the agent version's idle timeout; the agent said goodbye.
    IdleTimeout,
    /// The agent ended the call (`end_call`).
    AgentEndedCall,
    /// Handed to an operator queue (the dial started; `escalated_to` says who answered).
    Escalated,
    /// The operator queue was closed: the caller heard its voicemail message.
    QueueVoicemail,
    /// Nobody in the queue answered: the caller heard its voicemail message.
    EscalationVoicemail,
    /// Nobody could take the call: a callback task was created.
    CallbackScheduled,
    /// A tenant hung the call up through the API.
    HangupRequested,
    /// A tenant transferred the call through the API.
    TransferRequested,
    /// The AI leg failed for good (connect, reconnect, fatal error): the route's fallback.
    AiFailed,
    /// The call actor failed (panic, error) or was killed: the route's fallback.
    ActorFailed,
    /// The media stream never started, or failed before the actor took it: the fallback.
    StreamFailed,
    /// The carrier refused to place the call.
    CarrierError,
    /// The carrier never confirmed the call and a lookup found none.
    CarrierNotFound,
    /// Refused at admission: the tenant is at its concurrency limit.
    TenantAtLimit,
    /// Refused at admission: the route is at its concurrency limit.
    RouteAtLimit,
    /// Refused at admission: the route is staged and the caller is not a test caller.
    RouteStaged,
    /// Refused at admission: the tenant is suspended.
    TenantSuspended,
    /// Refused at admission: the node is shutting down.
    Draining,
    /// Refused at admission: the agent has no version to run.
    NoAgentVersion,
    /// Outbound: refused by the pre-dial policy (do-not-call, calling window, attempt
    /// limit); nothing was dialed.
    PredialRefused,
    /// Outbound: the callee's line was busy.
    Busy,
    /// Outbound: nobody answered.
    NoAnswer,
    /// The carrier reported the call failed.
    Failed,
    /// The call was cancelled before it was answered.
    Canceled,
    /// The carrier ended the call without telling us why (a final status callback with no
    /// conversation recorded).
    Completed,
    /// The node that held the call died; the call was reconciled by another.
    NodeLost,
    /// The node drained: the call was handed to the fallback or another node.
    Drained,
    /// Outbound: an answering machine answered and its AMD action ended the call (a hang-up,
    /// or the voicemail message then a hang-up; `machine_outcome` says which).
    AnsweringMachine,
}

impl EndReason {
    /// Every reason.
    pub const ALL: [EndReason; 34] = [
        EndReason::CallerHangup,
        EndReason::SocketClosed,
        EndReason::SocketError,
        EndReason::TwilioWriteFailed,
        EndReason::TwilioStalled,
        EndReason::MaxDuration,
        EndReason::IdleTimeout,
        EndReason::AgentEndedCall,
        EndReason::Escalated,
        EndReason::QueueVoicemail,
        EndReason::EscalationVoicemail,
        EndReason::CallbackScheduled,
        EndReason::HangupRequested,
        EndReason::TransferRequested,
        EndReason::AiFailed,
        EndReason::ActorFailed,
        EndReason::StreamFailed,
        EndReason::CarrierError,
        EndReason::CarrierNotFound,
        EndReason::TenantAtLimit,
        EndReason::RouteAtLimit,
        EndReason::RouteStaged,
        EndReason::TenantSuspended,
        EndReason::Draining,
        EndReason::NoAgentVersion,
        EndReason::PredialRefused,
        EndReason::Busy,
        EndReason::NoAnswer,
        EndReason::Failed,
        EndReason::Canceled,
        EndReason::Completed,
        EndReason::NodeLost,
        EndReason::Drained,
        EndReason::AnsweringMachine,
    ];

    /// Stored and wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            EndReason::CallerHangup => "caller_hangup",
            EndReason::SocketClosed => "socket_closed",
            EndReason::SocketError => "socket_error",
            EndReason::TwilioWriteFailed => "twilio_write_failed",
            EndReason::TwilioStalled => "twilio_stalled",
            EndReason::MaxDuration => "max_duration",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::AgentEndedCall => "agent_ended_call",
            EndReason::Escalated => "escalated",
            EndReason::QueueVoicemail => "queue_voicemail",
            EndReason::EscalationVoicemail => "escalation_voicemail",
            EndReason::CallbackScheduled => "callback_scheduled",
            EndReason::HangupRequested => "hangup_requested",
            EndReason::TransferRequested => "transfer_requested",
            EndReason::AiFailed => "ai_failed",
            EndReason::ActorFailed => "actor_failed",
            EndReason::StreamFailed => "stream_failed",
            EndReason::CarrierError => "carrier_error",
            EndReason::CarrierNotFound => "carrier_not_found",
            EndReason::TenantAtLimit => "tenant_at_limit",
            EndReason::RouteAtLimit => "route_at_limit",
            EndReason::RouteStaged => "route_staged",
            EndReason::TenantSuspended => "tenant_suspended",
            EndReason::Draining => "draining",
            EndReason::NoAgentVersion => "no_agent_version",
            EndReason::PredialRefused => "predial_refused",
            EndReason::Busy => "busy",
            EndReason::NoAnswer => "no_answer",
            EndReason::Failed => "failed",
            EndReason::Canceled => "canceled",
            EndReason::Completed => "completed",
            EndReason::NodeLost => "node_lost",
            EndReason::Drained => "drained",
            EndReason::AnsweringMachine => "answering_machine",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        EndReason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The outcome a call ending for this reason has, when nothing more specific is known.
    pub const fn default_outcome(self) -> Outcome {
        match self {
            EndReason::CallerHangup
            | EndReason::SocketClosed
            | EndReason::SocketError
            | EndReason::TwilioWriteFailed
            | EndReason::TwilioStalled
            | EndReason::MaxDuration
            | EndReason::IdleTimeout
            | EndReason::AgentEndedCall
            | EndReason::HangupRequested
            | EndReason::AnsweringMachine
            | EndReason::Completed => Outcome::Completed,
            EndReason::Escalated
            | EndReason::QueueVoicemail
            | EndReason::EscalationVoicemail
            | EndReason::CallbackScheduled
            | EndReason::TransferRequested => Outcome::Escalated,
            EndReason::AiFailed
            | EndReason::ActorFailed
            | EndReason::StreamFailed
            | EndReason::Drained => Outcome::Fallback,
            EndReason::TenantAtLimit
            | EndReason::RouteAtLimit
            | EndReason::RouteStaged
            | EndReason::TenantSuspended
            | EndReason::Draining
            | EndReason::NoAgentVersion
            | EndReason::PredialRefused => Outcome::Refused,
            EndReason::Busy | EndReason::NoAnswer | EndReason::Canceled => Outcome::NotAnswered,
            EndReason::CarrierError
            | EndReason::CarrierNotFound
            | EndReason::Failed
            | EndReason::NodeLost => Outcome::Failed,
        }
    }

    /// The reason for a terminal carrier status reported before any conversation.
    pub fn of_carrier_status(status: &str) -> Option<Self> {
        match status {
            "busy" => Some(EndReason::Busy),
            "no-answer" => Some(EndReason::NoAnswer),
            "failed" => Some(EndReason::Failed),
            "canceled" => Some(EndReason::Canceled),
            "completed" => Some(EndReason::Completed),
            _ => None,
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of a call, as `voice.call.completed` reports it (`calls.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The conversation with the agent ended (whoever hung up).
    Completed,
    /// The caller was handed to humans: an operator queue, its voicemail or a callback
    /// task, or a transfer requested through the API.
    Escalated,
    /// The route's human fallback took the caller after a failure.
    Fallback,
    /// Not admitted (limits, staged route, suspended tenant, draining, no version).
    Refused,
    /// Outbound: busy, no answer, or cancelled before answering.
    NotAnswered,
    /// The carrier failed or refused the call, or its node was lost.
    Failed,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 6] = [
        Outcome::Completed,
        Outcome::Escalated,
        Outcome::Fallback,
        Outcome::Refused,
        Outcome::NotAnswered,
        Outcome::Failed,
    ];

    /// Stored and wire form (also the `outcome` label of `calls_total`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Escalated => "escalated",
            Outcome::Fallback => "fallback",
            Outcome::Refused => "refused",
            Outcome::NotAnswered => "not_answered",
            Outcome::Failed => "failed",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the carrier is told when a call's AI leg ends (`calls.after_stream`): the answer of
/// `stream-ended` (the `<Connect action>`), decided by whoever ends the leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Continuation {
    /// Hang up.
    Hangup,
    /// The route's human fallback.
    Fallback,
    /// The call was handed to an operator queue through the carrier; `dial-result` decides
    /// what follows.
    Handoff,
    /// A fresh stream to the agent that resumes the conversation.
    Resume,
}

impl Continuation {
    /// Every continuation.
    pub const ALL: [Continuation; 4] = [
        Continuation::Hangup,
        Continuation::Fallback,
        Continuation::Handoff,
        Continuation::Resume,
    ];

    /// Stored form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Continuation::Hangup => "hangup",
            Continuation::Fallback => "fallback",
            Continuation::Handoff => "handoff",
            Continuation::Resume => "resume",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Continuation::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the call goes on with us after the leg (a handoff's dial result or a fresh
    /// stream may still come back): such a call is not complete when the leg ends.
    pub const fn continues(self) -> bool {
        matches!(self, Continuation::Handoff | Continuation::Resume)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in EndReason::ALL {
            assert_eq!(EndReason::parse(r.as_str()), Some(r));
            assert!(seen.insert(r.as_str()), "duplicate {r}");
        }
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        for c in Continuation::ALL {
            assert_eq!(Continuation::parse(c.as_str()), Some(c));
        }
        assert_eq!(EndReason::parse("nope"), None);
    }

    #[test]
    fn carrier_statuses_map_to_reasons_and_outcomes() {
        assert_eq!(
            EndReason::of_carrier_status("no-answer").map(EndReason::default_outcome),
            Some(Outcome::NotAnswered)
        );
        assert_eq!(
            EndReason::of_carrier_status("failed").map(EndReason::default_outcome),
            Some(Outcome::Failed)
        );
        assert_eq!(EndReason::of_carrier_status("in-progress"), None);
        assert!(Continuation::Resume.continues());
        assert!(!Continuation::Fallback.continues());
    }
}
