//! What a finished voice session is scored on ([`EvaluationInput`]): numbered transcript
//! turns, tool invocations, handoffs, the identity verification, reported intents and the
//! measurements of the conversation, every time in milliseconds from the session's start.
//!
//! [`EvaluationInput::from_material`] builds it from the stored records
//! ([`crate::store::EvaluationMaterial`]); scoring and the judge read only this struct, so
//! tests build one by hand.

use serde_json::Value;

use crate::ending::EndReason;
use crate::store::{EvaluationMaterial, FunctionCallStatus};

/// Who spoke a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// The caller.
    Caller,
    /// The agent (the model).
    Agent,
    /// A system note.
    System,
}

impl Speaker {
    /// The name the judge and the evidence use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Speaker::Caller => "caller",
            Speaker::Agent => "agent",
            Speaker::System => "system",
        }
    }

    fn from_role(role: &str) -> Self {
        match role {
            "user" => Speaker::Caller,
            "assistant" => Speaker::Agent,
            _ => Speaker::System,
        }
    }
}

/// One transcript turn; its number is its index in [`EvaluationInput::turns`].
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// Who spoke.
    pub speaker: Speaker,
    /// What was said (for an interrupted agent turn: what the model generated).
    pub text: String,
    /// The part the caller heard, when interrupted.
    pub heard_text: Option<String>,
    /// The caller barged in.
    pub interrupted: bool,
    /// Start (ms from the session start), when known.
    pub start_ms: Option<i64>,
    /// End (ms from the session start), when known.
    pub end_ms: Option<i64>,
    /// For an agent turn: from the end of the caller's turn before it to the agent's first
    /// audio (ms), when measured.
    pub response_gap_ms: Option<i64>,
}

impl Turn {
    /// What the other party heard: the heard part of an interrupted turn, else the text.
    pub fn said(&self) -> &str {
        match (&self.heard_text, self.interrupted) {
            (Some(heard), true) => heard,
            _ => &self.text,
        }
    }

    /// When the turn happened: its start, else its end.
    pub fn at_ms(&self) -> Option<i64> {
        self.start_ms.or(self.end_ms)
    }
}

/// One tool invocation of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolInvocation {
    /// Tool name.
    pub name: String,
    /// Arguments (JSON; `Null` when they were not JSON).
    pub arguments: Value,
    /// How it ended.
    pub status: FunctionCallStatus,
    /// The result given to the model (JSON when it parses, else a string).
    pub result: Option<Value>,
    /// The error given to the model.
    pub error: Option<String>,
    /// Start (ms from the session start).
    pub started_ms: i64,
    /// End (ms from the session start).
    pub finished_ms: Option<i64>,
}

impl ToolInvocation {
    /// Whether the runtime executed it (a refused or invalid call did not run).
    pub fn ran(&self) -> bool {
        !matches!(
            self.status,
            FunctionCallStatus::Refused | FunctionCallStatus::Invalid
        )
    }
}

/// A handoff to a human queue during the session.
#[derive(Debug, Clone, PartialEq)]
pub struct HandoffEvent {
    /// What fired it (`tool:transfer_to_human`, a rule kind, `intent:…`).
    pub rule: String,
    /// Queue name.
    pub queue: Option<String>,
    /// Why.
    pub reason: String,
    /// `dialing`, `answered`, `unanswered`, `closed`, `failed`.
    pub status: String,
    /// When it was created (ms from the session start).
    pub at_ms: i64,
}

/// An intent the model reported through `report_intent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedIntent {
    /// The intent.
    pub intent: String,
    /// When (ms from the session start).
    pub at_ms: i64,
}

/// Everything a voice session is scored on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EvaluationInput {
    /// Transcript turns, numbered by index.
    pub turns: Vec<Turn>,
    /// Tool invocations, in order.
    pub tool_calls: Vec<ToolInvocation>,
    /// Handoffs created during the session.
    pub handoffs: Vec<HandoffEvent>,
    /// When the caller's identity was verified (ms; 0 when verified before the session).
    pub identity_verified_ms: Option<i64>,
    /// Intents reported, in order.
    pub intents: Vec<ReportedIntent>,
    /// The model's first audio (ms from the session start).
    pub first_audio_ms: Option<i64>,
    /// Length of the session (ms).
    pub duration_ms: Option<i64>,
    /// Why the session ended (`caller_hangup`, …).
    pub end_reason: Option<String>,
    /// The call's outcome, when the call was complete at evaluation time.
    pub outcome: Option<String>,
    /// The session failed (AI or actor failure).
    pub errored: bool,
    /// The carrier's AMD result when a machine (or a fax) answered the call: every
    /// criterion is then `not_applicable`.
    pub answered_by_machine: Option<String>,
}

impl EvaluationInput {
    /// Builds the input from the stored records of one session.
    pub fn from_material(m: &EvaluationMaterial) -> Self {
        let start = m.session.started_at;
        let turns = m
            .turns
            .iter()
            .map(|t| Turn {
                speaker: Speaker::from_role(&t.turn.role),
                text: t.turn.text.clone(),
                heard_text: t.turn.heard_text.clone(),
                interrupted: t.turn.interrupted,
                start_ms: t.turn.start_ms,
                end_ms: t.turn.end_ms.or(Some(t.turn.created_at - start)),
                response_gap_ms: t.response_gap_ms,
            })
            .collect();
        let tool_calls: Vec<ToolInvocation> = m
            .function_calls
            .iter()
            .map(|f| ToolInvocation {
                name: f.name.clone(),
                arguments: serde_json::from_str(&f.arguments).unwrap_or(Value::Null),
                status: parse_status(&f.status),
                result: f.result.as_deref().map(|r| {
                    serde_json::from_str(r).unwrap_or_else(|_| Value::String(r.to_owned()))
                }),
                error: f.error.clone(),
                started_ms: f.started_at - start,
                finished_ms: f.finished_at.map(|t| t - start),
            })
            .collect();
        let identity_verified_ms = tool_calls
            .iter()
            .filter(|c| {
                c.name == "verify_identity"
                    && c.status == FunctionCallStatus::Succeeded
                    && c.result
                        .as_ref()
                        .and_then(|r| r.get("verified"))
                        .and_then(Value::as_bool)
                        == Some(true)
            })
            .map(|c| c.finished_ms.unwrap_or(c.started_ms))
            .min()
            .or_else(|| {
                // Verified in an earlier session of the call (a resumed conversation).
                let earlier = m
                    .call
                    .as_ref()
                    .is_some_and(|c| c.identity_state.as_deref() == Some("verified"));
                earlier.then_some(0)
            });
        let intents = tool_calls
            .iter()
            .filter(|c| c.name == "report_intent" && c.ran())
            .filter_map(|c| {
                c.arguments
                    .get("intent")
                    .and_then(Value::as_str)
                    .map(|i| ReportedIntent {
                        intent: i.to_owned(),
                        at_ms: c.started_ms,
                    })
            })
            .collect();
        let ended = m.session.ended_at;
        let handoffs = m
            .handoffs
            .iter()
            .filter(|h| {
                h.created_at >= start && ended.is_none_or(|e| h.created_at <= e + HANDOFF_SLACK_MS)
            })
            .map(|h| HandoffEvent {
                rule: h.rule.clone(),
                queue: h.queue_name.clone(),
                reason: h.reason.clone(),
                status: h.status.clone(),
                at_ms: h.created_at - start,
            })
            .collect();
        let end_reason = m.session.end_reason.clone();
        let errored = m.session.status == "failed"
            || end_reason
                .as_deref()
                .and_then(EndReason::parse)
                .is_some_and(|r| matches!(r, EndReason::AiFailed | EndReason::ActorFailed));
        Self {
            turns,
            tool_calls,
            handoffs,
            identity_verified_ms,
            intents,
            first_audio_ms: m.session.first_audio_ms,
            duration_ms: ended.map(|e| (e - start).max(0)),
            end_reason,
            outcome: m
                .call
                .as_ref()
                .and_then(|c| c.outcome)
                .map(|o| o.as_str().to_owned()),
            errored,
            answered_by_machine: m
                .call
                .as_ref()
                .and_then(|c| c.answered_by.clone())
                .filter(|a| crate::telephony::amd::AnsweredBy::parse(a).is_machine()),
        }
    }

    /// Whether the conversation was handed to a human (a handoff, or a transfer through
    /// the API).
    pub fn transferred(&self) -> bool {
        !self.handoffs.is_empty()
            || self
                .end_reason
                .as_deref()
                .and_then(EndReason::parse)
                .is_some_and(|r| matches!(r, EndReason::Escalated | EndReason::TransferRequested))
    }
}

/// A handoff written this long after the session ended still belongs to it (the session
/// row is closed as the stream stops for the dial).
const HANDOFF_SLACK_MS: i64 = 5_000;

fn parse_status(s: &str) -> FunctionCallStatus {
    match s {
        "running" => FunctionCallStatus::Running,
        "succeeded" => FunctionCallStatus::Succeeded,
        "refused" => FunctionCallStatus::Refused,
        "invalid" => FunctionCallStatus::Invalid,
        "timed_out" => FunctionCallStatus::TimedOut,
        "cancelled" => FunctionCallStatus::Cancelled,
        _ => FunctionCallStatus::Failed,
    }
}
