//! What goes in and out of the conversation: its [`Input`]s (the AI session's control
//! events, Twilio's, tool and task results, timers) and the [`Effect`]s the call actor
//! executes, with their payloads, and the [`Setup`] a stream starts from. Plain data.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::REQUEST_TAG;
use super::tools::{ToolJob, ToolOutcome};
use crate::active::CallPhase;
use crate::call::control::CarrierAction;
use crate::call::recorder::Record;
use crate::contract::Toolbox;
use crate::ending::{Continuation, EndReason};
use crate::ids::HandoffId;
use crate::realtime::{ClientEvent, ServerEvent};
use crate::store::{PriorInvocation, SessionStatus, Usage};

/// Who said a line of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// The caller.
    Caller,
    /// The agent.
    Agent,
}

impl Speaker {
    /// Stored form (`user`, `assistant`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Speaker::Caller => "user",
            Speaker::Agent => "assistant",
        }
    }

    /// From the stored form (anything but `assistant` is the caller).
    pub fn parse(role: &str) -> Self {
        match role {
            "assistant" => Speaker::Agent,
            _ => Speaker::Caller,
        }
    }
}

/// A barge-in as the AI reader saw it (the `clear` already left).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    /// The assistant item cut.
    pub item_id: String,
    /// What the caller heard of it (ms, never beyond what was sent).
    pub heard_ms: u64,
    /// What was sent of it (ms).
    pub sent_ms: u64,
}

/// A function call of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCallRequest {
    /// The model's `call_id` (a repeat keeps it).
    pub call_id: String,
    /// The `function_call` item.
    pub item_id: String,
    /// The response that holds it.
    pub response_id: String,
    /// Tool name.
    pub name: String,
    /// Arguments (JSON text).
    pub arguments: String,
}

/// The control events of the AI session the conversation needs.
#[derive(Debug, Clone, PartialEq)]
pub enum AiEvent {
    /// `session.updated`.
    SessionUpdated,
    /// `input_audio_buffer.speech_started`.
    SpeechStarted,
    /// `input_audio_buffer.speech_stopped`.
    SpeechStopped,
    /// The caller's turn transcribed.
    CallerTranscript {
        /// Its item.
        item_id: String,
        /// The words.
        text: String,
    },
    /// `response.created` (with the request tag of its metadata).
    ResponseCreated {
        /// The response.
        response_id: String,
        /// The `request` tag of its metadata.
        request: Option<String>,
    },
    /// What the agent said in one item.
    AgentTranscript {
        /// Its item.
        item_id: String,
        /// The words.
        text: String,
    },
    /// `response.done`.
    ResponseDone {
        /// The response.
        response_id: String,
        /// Its token usage.
        usage: Option<Usage>,
    },
    /// `error`.
    Error {
        /// The error code.
        code: Option<String>,
        /// Its message.
        message: String,
        /// The client event it is about.
        event_id: Option<String>,
    },
    /// `response.function_call_arguments.done`.
    FunctionCall(FunctionCallRequest),
}

impl AiEvent {
    /// The control event of a server event (`None`: nothing the conversation needs, e.g.
    /// audio and transcript deltas).
    pub fn from_server(event: ServerEvent) -> Option<Self> {
        Some(match event {
            ServerEvent::SessionUpdated(_) => AiEvent::SessionUpdated,
            ServerEvent::SpeechStarted(_) => AiEvent::SpeechStarted,
            ServerEvent::SpeechStopped(_) => AiEvent::SpeechStopped,
            ServerEvent::InputTranscriptionCompleted(t) => AiEvent::CallerTranscript {
                item_id: t.item_id,
                text: t.transcript,
            },
            ServerEvent::ResponseCreated(r) => AiEvent::ResponseCreated {
                request: r
                    .response
                    .metadata
                    .as_ref()
                    .and_then(|m| m.get(REQUEST_TAG))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                response_id: r.response.id,
            },
            ServerEvent::AudioTranscriptDone(t) => AiEvent::AgentTranscript {
                item_id: t.item_id,
                text: t.transcript,
            },
            ServerEvent::ResponseDone(r) => AiEvent::ResponseDone {
                usage: r.response.usage.map(|u| Usage {
                    input: i64::try_from(u.input_tokens).unwrap_or(0),
                    output: i64::try_from(u.output_tokens).unwrap_or(0),
                    total: i64::try_from(u.total_tokens).unwrap_or(0),
                }),
                response_id: r.response.id,
            },
            ServerEvent::Error(e) => AiEvent::Error {
                code: e.error.code,
                message: e.error.message,
                event_id: e.error.event_id,
            },
            ServerEvent::FunctionCallArgumentsDone(f) => {
                AiEvent::FunctionCall(FunctionCallRequest {
                    call_id: f.call_id,
                    item_id: f.item_id,
                    response_id: f.response_id,
                    name: f.name,
                    arguments: f.arguments,
                })
            }
            _ => return None,
        })
    }
}

/// Timers of the conversation (each names what it is for, so a stale one is ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// The idle timeout of activity epoch `n`.
    Idle(u64),
    /// The deadline of line `n`.
    Line(u64),
    /// The filler threshold of a slow tool (model call id).
    Filler(String),
    /// The version's maximum call duration.
    MaxDuration,
    /// The call-duration escalation rule.
    DurationRule,
    /// A request got no answer (its sequence number).
    Request(u64),
    /// The greeting held for the AMD result waited long enough.
    GreetingHold,
}

/// A planned transfer to an operator queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialPlan {
    /// The handoff record.
    pub handoff_id: HandoffId,
    /// Numbers rung simultaneously.
    pub numbers: Vec<String>,
    /// Caller id for the dialed leg.
    pub caller_id: Option<String>,
    /// Ring timeout.
    pub timeout_secs: u32,
    /// Said by the carrier before dialing.
    pub announcement: Option<String>,
    /// Queue name.
    pub queue: String,
}

/// Where an escalation goes, as the escalation task found it (the handoff is recorded and
/// `voice.call.escalated` emitted by then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The queue is open: dial it after the handoff line.
    Dial(DialPlan),
    /// The queue is closed with a voicemail message: say it, then hang up.
    Voicemail {
        /// Queue name.
        queue: String,
        /// The carrier says this.
        message: String,
    },
    /// The queue is closed and sends callers back to the agent.
    StayWithAgent {
        /// Queue name.
        queue: String,
    },
    /// Nobody can take the call: a callback task (its id), or why none was created.
    Callback(Result<String, String>),
}

/// What came of a carrier change the conversation asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlReport {
    /// The hang-up (an error: why the carrier refused).
    Hangup(Result<(), String>),
    /// The dial of a handoff; when refused, whether a callback task was created instead.
    Dial(Result<(), bool>),
    /// The voicemail message.
    Say(Result<(), String>),
    /// The drain's redirect of the call (to a fresh stream or the fallback).
    Redirect(Result<(), String>),
}

/// An input of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A connection to the model is up (configured, the conversation so far replayed).
    AiConnected,
    /// The connection could not be made (why).
    AiConnectFailed(String),
    /// The AI socket of the current connection ended (why).
    AiClosed(String),
    /// A control event of the AI session.
    Ai(AiEvent),
    /// The caller talked over the agent.
    BargeIn(Interruption),
    /// A key press.
    Dtmf(String),
    /// Twilio sent `stop`.
    TwilioStopped,
    /// The Twilio socket closed, failed or stalled.
    TwilioGone(EndReason, Option<String>),
    /// The audio the conversation waited for has played.
    PlaybackDrained,
    /// A timer fired.
    Timer(Timer),
    /// A tool task finished (model call id, outcome).
    ToolDone(String, ToolOutcome),
    /// The escalation task found where the caller goes.
    Escalated(Resolution),
    /// A carrier change finished.
    ControlDone(ControlReport),
    /// The node drains: the carrier is to take the caller to a fresh stream that resumes
    /// the conversation (`resume`: another node is there to take it) or to the fallback.
    Drain {
        /// Whether another node can take the call.
        resume: bool,
    },
    /// The carrier's AMD result arrived: a machine (or a fax), or not.
    AnsweredBy {
        /// A machine answered.
        machine: bool,
    },
}

/// How the leg ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// Why.
    pub reason: EndReason,
    /// Free-text detail (an AI error).
    pub detail: Option<String>,
    /// What the carrier is told next (`None`: nothing planned, `stream-ended` decides).
    pub continuation: Option<Continuation>,
    /// The carrier was already redirected to what follows (a drain's redirect): nothing is
    /// recorded for `stream-ended`, which the carrier no longer asks.
    pub redirected: bool,
    /// The voice session's final status.
    pub status: SessionStatus,
}

/// A carrier change, with what is recorded before the carrier is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlRequest {
    /// The change.
    pub action: CarrierAction,
    /// What `stream-ended` answers once the carrier ends the stream.
    pub continuation: Continuation,
    /// The call's end reason (the agent's own hang-up), recorded first so the carrier's
    /// status callbacks or the router never record another.
    pub reason: Option<EndReason>,
    /// The queue a dial hands the caller to (`escalated_to` is recorded before the dial).
    pub queue: Option<String>,
}

/// An escalation to resolve (queue lookup, callback task, handoff record, event).
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationRequest {
    /// `tool:transfer_to_human`, `caller_asks_for_human`, `tool_failures`, `call_duration`,
    /// `intent:{name}`.
    pub rule: String,
    /// Why.
    pub reason: String,
    /// Queue name (else the version's default queue, else none).
    pub queue: Option<String>,
    /// The handoff context a human gets (reason, rule, summary, identity, caller).
    pub context: Value,
}

/// What the call actor does for the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a client event to the model.
    Ai(ClientEvent),
    /// Write a record (through the per-call recorder).
    Record(Record),
    /// The live-call phase.
    Phase(CallPhase),
    /// The last line of the live call.
    LastLine(Speaker, String),
    /// Fire `timer` after this long.
    Timer(Timer, Duration),
    /// Connect to the model (again), replaying these lines of the conversation.
    Connect {
        /// The conversation so far (empty: a fresh conversation).
        replay: Vec<(Speaker, String)>,
    },
    /// Run a tool in a task (it records the invocation first).
    RunTool(Box<ToolJob>),
    /// Cancel a running tool (its task records the cancellation with this reason).
    CancelTool {
        /// The model call id.
        model_call_id: String,
        /// Why.
        reason: String,
    },
    /// Resolve an escalation in a task.
    Escalate(Box<EscalationRequest>),
    /// Change the call through the carrier, in a task.
    Control(Box<ControlRequest>),
    /// Tell the conversation when the audio sent so far has played.
    WatchDrain,
    /// Tell the conversation the call's AMD result ([`Input::AnsweredBy`]) once it is
    /// recorded (on whichever node the carrier posted it), looking for this long at most.
    WatchAnsweredBy(Duration),
    /// The leg is over.
    End(Ending),
}

/// What the conversation of a stream starts from.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The caller's number.
    pub caller: String,
    /// The greeting (the call's own, else the version's).
    pub greeting: Option<String>,
    /// The version's compiled contract (none: no version).
    pub toolbox: Option<Arc<Toolbox>>,
    /// The version's idle timeout.
    pub idle_timeout: Option<Duration>,
    /// The version's maximum call duration.
    pub max_duration: Option<Duration>,
    /// When the stream started (Unix ms; records carry wall-clock times).
    pub started_at_ms: i64,
    /// The conversation of earlier streams of this call (a resumed call).
    pub prior: Vec<(Speaker, String)>,
    /// Tool invocations of earlier streams of this call.
    pub prior_invocations: Vec<PriorInvocation>,
    /// The previous stream of this resumed call was cut off (its socket lost, or its node
    /// drained), not a handoff nobody answered: the line it resumes with says so.
    pub cut_off: bool,
    /// A Twilio leg lost without `stop` (the socket closed or failed) is answered with a
    /// fresh stream that resumes the conversation, unless this stream itself resumed the
    /// call less than this long ago; `None` never resumes (the call ends).
    pub resume_lost_leg: Option<Duration>,
    /// A model socket lost is reconnected (the conversation replayed) at most once per this
    /// long; lost again sooner, or `None`, the caller gets the fallback.
    pub ai_reconnect: Option<Duration>,
    /// An outbound call whose answering-machine action ends machine calls (`voicemail`,
    /// `hangup`), with no AMD result yet: the greeting waits for [`Input::AnsweredBy`] a
    /// person, at most this long (a machine's greeting is not talked over).
    pub hold_greeting: Option<Duration>,
}
