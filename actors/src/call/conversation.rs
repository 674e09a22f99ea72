//! The call as a state machine, with no I/O: the conversation of one media stream.
//!
//! [`Conversation::handle`] takes one [`Input`] — a control event of the AI session (never
//! audio), of the Twilio stream (key press, `stop`, the socket gone, playback drained), a
//! tool result, the result of an escalation or a carrier change, a timer — with the time it
//! happened (milliseconds since the stream started), and returns the [`Effect`]s the call
//! actor executes: client events to the model, records for the per-call recorder, tools to
//! run, timers to set, carrier changes, and the end of the leg. No task, lock, clock or
//! socket is touched here, so every race can be replayed as a table with explicit times
//! (`conversation/tests.rs`).
//!
//! The parts: the response gate and the one pump that decides when a response is asked for
//! (`arbiter.rs`, [`Conversation::pump`]); function calls and their outputs (`tools.rs`);
//! lines played before an action, escalations and the idle timeout (`lines.rs`).
//!
//! **Invariants:** a `response.create` is sent only when no response is active or requested;
//! every function-call item gets exactly one `function_call_output`; a model call id runs its
//! tool at most once per call; the leg ends once, with one [`EndReason`] and one
//! [`Continuation`] (or none).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use crate::active::CallPhase;
use crate::ending::{Continuation, EndReason};
use crate::realtime::ClientEvent;
use crate::store::{SessionStatus, TranscriptTurn, Usage};

use super::control::CarrierAction;
use super::recorder::Record;

mod arbiter;
mod lines;
#[cfg(test)]
mod tests;
mod tools;
mod vocabulary;

pub use super::recorder::Invocation;
pub use arbiter::{Purpose, REQUEST_TAG};
pub use lines::LINE_DEADLINE;
pub use tools::{ToolJob, ToolOutcome, ToolWork};
pub use vocabulary::{
    AiEvent, ControlReport, ControlRequest, DialPlan, Effect, Ending, EscalationRequest,
    FunctionCallRequest, Input, Interruption, Resolution, Setup, Speaker, Timer,
};

use arbiter::ResponseGate;
use lines::{Escalation, Line, Opening};
use tools::Tools;

/// Milliseconds since the stream started.
pub type Millis = u64;

/// How long a request may wait for `response.created` or its refusal before the gate stops
/// waiting for it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The state of the AI link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Connecting (again, after a drop).
    Connecting { reconnect: bool },
    /// Connected.
    Up,
}

/// Whether the leg goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leg {
    /// Talking.
    Live,
    /// The agent ended the conversation (hang-up, dial, voicemail asked of the carrier): the
    /// stream ends for this reason, and the carrier is told this.
    Closing {
        reason: EndReason,
        continuation: Continuation,
    },
    /// The node drains: the carrier is asked to take the caller to `continuation` (a fresh
    /// stream or the fallback); the stream ends when it does.
    Handing { continuation: Continuation },
    /// Over: nothing more happens.
    Ended,
}

/// The line of a stream resumed after a handoff nobody answered.
pub const RESUME_AFTER_HANDOFF: &str =
    "I'm sorry, nobody was able to take your call. I'm back with you. How else can I help?";
/// The line of a stream resumed after the previous one was cut off (a lost socket, a drain).
pub const RESUME_AFTER_CUT: &str = "Sorry, we were cut off for a moment. I'm back with you.";

/// The greeting of an outbound call with an answering-machine action, while the AMD result
/// is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GreetingHold {
    /// Not held (no action, a person answered, or the hold ran out).
    Off,
    /// Held until the AMD result or [`Timer::GreetingHold`].
    Waiting,
    /// A machine answered: never said.
    Machine,
}

/// The conversation of one media stream.
#[derive(Debug)]
pub struct Conversation {
    /// What the stream started from (version limits, greeting, contract, prior streams).
    setup: Setup,
    /// The AI connection.
    link: Link,
    /// When the AI connection was last reconnected (at most once per
    /// `Setup::ai_reconnect`).
    last_reconnect: Option<Millis>,
    /// Whether the leg goes on, is closing for the agent's reason, or is over.
    leg: Leg,
    /// The model's responses: active, requested, whose.
    gate: ResponseGate,
    /// The opening line (greeting, or the resumed call's notice).
    opening: Opening,
    /// Function calls.
    tools: Tools,
    /// The line planned before an action (one at a time).
    line: Option<Line>,
    /// Lines planned so far (the next line's epoch).
    lines: u64,
    /// Escalation to a human (once per call).
    escalation: Escalation,
    /// `verify_identity` succeeded in this stream (gated tools may run).
    identity_verified: bool,
    /// Bumped on caller and agent activity; an idle timer of an older epoch is stale.
    idle_epoch: u64,
    /// A key press waits for the model's answer.
    dtmf_unanswered: bool,
    /// Key presses made while the model was not connected, given to it once it is.
    keys_waiting: Vec<String>,
    /// Assistant items the caller interrupted: item → (heard ms, sent ms).
    interrupted: HashMap<String, (u64, u64)>,
    /// The conversation so far (replayed after a reconnect, summarised for a human).
    history: Vec<(Speaker, String)>,
    /// The greeting waits for the AMD result ([`Setup::hold_greeting`]).
    hold: GreetingHold,
    /// The time of the input being handled.
    now: Millis,
    /// Effects of the input being handled.
    out: Vec<Effect>,
}

/// The part of `transcript` the caller heard, proportional to the audio played.
pub fn heard_prefix(transcript: &str, heard_ms: u64, sent_ms: u64) -> String {
    if sent_ms == 0 {
        return String::new();
    }
    let chars: Vec<char> = transcript.chars().collect();
    let keep = usize::try_from((chars.len() as u64).saturating_mul(heard_ms) / sent_ms)
        .unwrap_or(chars.len());
    chars[..keep.min(chars.len())]
        .iter()
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// Error codes that end the AI session.
fn is_fatal(code: &str) -> bool {
    matches!(
        code,
        "beta_api_shape_disabled" | "invalid_api_key" | "session_expired" | "insufficient_quota"
    )
}

/// Keeps the metric label bounded: known codes as is, anything else `other`.
fn bounded_code(code: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "beta_api_shape_disabled",
        "conversation_already_has_active_response",
        "response_cancel_not_active",
        "invalid_value",
        "invalid_api_key",
        "session_expired",
        "insufficient_quota",
        "rate_limit_exceeded",
        "none",
    ];
    KNOWN
        .iter()
        .find(|k| **k == code)
        .copied()
        .unwrap_or("other")
}

impl Conversation {
    /// The conversation of a stream that starts from `setup`.
    pub fn new(setup: Setup) -> Self {
        let tools = Tools::new(setup.toolbox.clone(), &setup.prior_invocations);
        let history = setup.prior.clone();
        Self {
            setup,
            link: Link::Connecting { reconnect: false },
            last_reconnect: None,
            leg: Leg::Live,
            gate: ResponseGate::default(),
            opening: Opening::NotYet,
            tools,
            line: None,
            lines: 0,
            escalation: Escalation::Open,
            identity_verified: false,
            idle_epoch: 0,
            dtmf_unanswered: false,
            keys_waiting: Vec::new(),
            interrupted: HashMap::new(),
            history,
            hold: GreetingHold::Off,
            now: 0,
            out: Vec::new(),
        }
    }

    /// Whether this stream resumes a call that already talked.
    pub fn resumed(&self) -> bool {
        !self.setup.prior.is_empty()
    }

    /// The first effects: the call's timers and the connection to the model.
    pub fn start(&mut self) -> Vec<Effect> {
        if let Some(max) = self.setup.max_duration {
            self.emit(Effect::Timer(Timer::MaxDuration, max));
        }
        if let Some(seconds) = self.duration_rule() {
            self.emit(Effect::Timer(
                Timer::DurationRule,
                Duration::from_secs(seconds),
            ));
        }
        if let Some(hold) = self.setup.hold_greeting
            && !self.resumed()
        {
            self.hold = GreetingHold::Waiting;
            self.emit(Effect::Timer(Timer::GreetingHold, hold));
            self.emit(Effect::WatchAnsweredBy(hold));
        }
        self.touch();
        let replay = if self.resumed() {
            self.history.clone()
        } else {
            Vec::new()
        };
        self.emit(Effect::Connect { replay });
        std::mem::take(&mut self.out)
    }

    /// Handles one input at `now`; returns what to do.
    pub fn handle(&mut self, now: Millis, input: Input) -> Vec<Effect> {
        if self.leg == Leg::Ended {
            return Vec::new();
        }
        self.now = now;
        match input {
            Input::AiConnected => self.on_connected(),
            Input::AiConnectFailed(why) => self.on_connect_failed(&why),
            Input::AiClosed(why) => self.on_ai_closed(&why),
            Input::Ai(event) => self.on_ai(event),
            Input::BargeIn(cut) => self.on_barge_in(cut),
            Input::Dtmf(digit) => self.on_dtmf(&digit),
            Input::TwilioStopped => self.end_leg(EndReason::CallerHangup, None),
            Input::TwilioGone(reason, detail) => self.twilio_lost(reason, detail),
            Input::PlaybackDrained => self.on_drained(),
            Input::Timer(timer) => self.on_timer(timer),
            Input::ToolDone(id, outcome) => self.tool_done(&id, outcome),
            Input::Escalated(resolution) => self.on_escalated(resolution),
            Input::ControlDone(report) => self.on_control_done(report),
            Input::Drain { resume } => self.drain(resume),
            Input::AnsweredBy { machine } => self.on_answered_by(machine),
        }
        std::mem::take(&mut self.out)
    }

    fn emit(&mut self, effect: Effect) {
        self.out.push(effect);
    }

    fn record(&mut self, record: Record) {
        self.emit(Effect::Record(record));
    }

    fn phase(&mut self, phase: CallPhase) {
        self.emit(Effect::Phase(phase));
    }

    fn send_ai(&mut self, event: ClientEvent) {
        self.emit(Effect::Ai(event));
    }

    fn duration_rule(&self) -> Option<u64> {
        self.setup.toolbox.as_ref().and_then(|t| {
            t.contract
                .escalation
                .rules
                .iter()
                .find_map(|r| match r.trigger {
                    crate::contract::EscalationTrigger::CallDuration { seconds } => Some(seconds),
                    _ => None,
                })
        })
    }

    /// Unix ms of `now`.
    fn wall_clock(&self) -> i64 {
        self.setup
            .started_at_ms
            .saturating_add(i64::try_from(self.now).unwrap_or(i64::MAX))
    }

    /// Caller or agent activity: restarts the idle timer.
    fn touch(&mut self) {
        self.idle_epoch += 1;
        if let Some(idle) = self.setup.idle_timeout {
            self.emit(Effect::Timer(Timer::Idle(self.idle_epoch), idle));
        }
    }

    // === AI link ===

    fn on_connected(&mut self) {
        self.link = Link::Up;
        if let Some(request) = self.gate.reset() {
            self.requeue(request.purpose);
        }
        for text in std::mem::take(&mut self.keys_waiting) {
            self.send_ai(ClientEvent::user_text(text));
        }
    }

    fn on_connect_failed(&mut self, why: &str) {
        metrics::counter!("ai_session_errors_total", "code" => "connect").increment(1);
        let detail = match self.link {
            Link::Connecting { reconnect: true } => format!("reconnect failed: {why}"),
            _ => format!("connect failed: {why}"),
        };
        self.fail_over(detail);
    }

    /// The model's socket went away: reconnected with the conversation replayed, unless it
    /// was reconnected less than `Setup::ai_reconnect` ago (or never may be): then the
    /// caller gets the fallback.
    fn on_ai_closed(&mut self, why: &str) {
        metrics::counter!("ai_session_errors_total", "code" => "closed").increment(1);
        let now = self.now;
        let may_reconnect = self.setup.ai_reconnect.is_some_and(|interval| {
            self.last_reconnect
                .is_none_or(|at| u128::from(now.saturating_sub(at)) >= interval.as_millis())
        });
        if !may_reconnect {
            let detail = if self.last_reconnect.is_some() {
                format!("closed again: {why}")
            } else {
                format!("closed: {why}")
            };
            self.fail_over(detail);
            return;
        }
        self.last_reconnect = Some(now);
        self.link = Link::Connecting { reconnect: true };
        metrics::counter!("ai_ws_reconnects_total").increment(1);
        self.record(Record::Reconnect);
        self.record(Record::CallEvent {
            kind: "ai",
            detail: json!({"event": "reconnect", "reason": why}),
        });
        self.emit(Effect::Connect {
            replay: self.history.clone(),
        });
    }

    /// The AI leg failed for good: the caller gets the route's fallback.
    fn fail_over(&mut self, detail: String) {
        tracing::warn!(detail = %detail, "ai leg failed: handing the caller to the fallback");
        self.record(Record::CallEvent {
            kind: "ai",
            detail: json!({"event": "failed", "reason": detail}),
        });
        self.finish(Ending {
            reason: EndReason::AiFailed,
            detail: Some(detail),
            continuation: Some(Continuation::Fallback),
            redirected: false,
            status: SessionStatus::Failed,
        });
    }

    // === AI events ===

    fn on_ai(&mut self, event: AiEvent) {
        match event {
            AiEvent::SessionUpdated => self.on_session_updated(),
            AiEvent::SpeechStarted => {
                self.touch();
                self.cancel_interruptible_tools();
            }
            AiEvent::SpeechStopped => {}
            AiEvent::CallerTranscript { item_id, text } => self.on_caller_turn(item_id, text),
            AiEvent::ResponseCreated {
                response_id,
                request,
            } => {
                self.gate.created(&response_id, request.as_deref());
            }
            AiEvent::AgentTranscript { item_id, text } => {
                let (interrupted, heard) = match self.interrupted.get(&item_id) {
                    Some((heard_ms, sent_ms)) => {
                        (true, Some(heard_prefix(&text, *heard_ms, *sent_ms)))
                    }
                    None => (false, None),
                };
                self.turn(Speaker::Agent, Some(item_id), text, interrupted, heard);
            }
            AiEvent::ResponseDone { response_id, usage } => {
                self.on_response_done(&response_id, usage)
            }
            AiEvent::Error {
                code,
                message,
                event_id,
            } => self.on_error(code, &message, event_id),
            AiEvent::FunctionCall(f) => self.on_function_call(f),
        }
    }

    fn on_session_updated(&mut self) {
        if self.opening != Opening::NotYet {
            self.pump();
            return;
        }
        if self.resumed() {
            self.phase(CallPhase::Greeting);
            let line = if self.setup.cut_off {
                RESUME_AFTER_CUT
            } else {
                RESUME_AFTER_HANDOFF
            };
            self.opening = Opening::Waiting(Purpose::Resume, String::from(line));
        } else if let Some(text) = self.setup.greeting.clone() {
            self.phase(CallPhase::Greeting);
            self.opening = Opening::Waiting(Purpose::Greeting, text);
        } else {
            self.phase(CallPhase::Listening);
            self.opening = Opening::Done;
        }
        self.pump();
    }

    /// The AMD result: a person releases a held greeting; a machine keeps it held for good
    /// (the answering-machine action ends the call through the carrier).
    fn on_answered_by(&mut self, machine: bool) {
        self.hold = match (self.hold, machine) {
            (GreetingHold::Off, _) => GreetingHold::Off,
            (_, true) => GreetingHold::Machine,
            (_, false) => GreetingHold::Off,
        };
        self.pump();
    }

    /// Whether the greeting is held for the AMD result.
    fn greeting_held(&self) -> bool {
        self.hold != GreetingHold::Off
    }

    fn on_caller_turn(&mut self, item_id: String, text: String) {
        let rule = self
            .setup
            .toolbox
            .as_ref()
            .and_then(|tb| tb.caller_asks_for_human(&text).cloned());
        self.turn(Speaker::Caller, Some(item_id), text.clone(), false, None);
        if let Some(rule) = rule {
            self.escalate(lines::EscalationCause {
                rule: String::from("caller_asks_for_human"),
                reason: format!("the caller asked for a human: \"{text}\""),
                queue: rule.queue,
                tool_call: None,
            });
        }
    }

    fn on_response_done(&mut self, response_id: &str, usage: Option<Usage>) {
        let ours = self.gate.done(response_id);
        if let Some(usage) = usage {
            self.record(Record::Usage(usage));
        }
        if !self.tools.busy() {
            self.phase(CallPhase::Listening);
        }
        self.touch();
        self.line_response_done(ours.as_ref());
        self.pump();
    }

    fn on_error(&mut self, code: Option<String>, message: &str, event_id: Option<String>) {
        let code = code.unwrap_or_else(|| String::from("none"));
        metrics::counter!("ai_session_errors_total", "code" => bounded_code(&code)).increment(1);
        tracing::warn!(code = %code, message = %message, "ai session error");
        if code == "conversation_already_has_active_response" {
            if let Some(request) = self.gate.refused(event_id.as_deref()) {
                tracing::info!(request = %request.event_id, "response request refused during an active response; asking again after it");
                self.requeue(request.purpose);
            }
        } else if let Some(request) = self.gate.failed(event_id.as_deref()) {
            tracing::warn!(request = %request.event_id, "response request failed");
            self.pump();
        }
        if is_fatal(&code) {
            self.fail_over(format!("ai error: {code}"));
        }
    }

    /// A request of `purpose` was refused or lost: it is asked for again when the gate is
    /// free (a filler, whose moment has passed, is not).
    fn requeue(&mut self, purpose: Purpose) {
        match purpose {
            Purpose::Greeting | Purpose::Resume => {
                if let Opening::Sent(p, text) = std::mem::replace(&mut self.opening, Opening::Done)
                {
                    self.opening = Opening::Waiting(p, text);
                }
            }
            Purpose::Line(epoch) => {
                if let Some(line) = self.line.as_mut()
                    && line.epoch == epoch
                {
                    line.stage = lines::LineStage::Waiting;
                }
            }
            Purpose::Outputs => {
                self.tools.retry_outputs = true;
                if let Some(line) = self.line.as_mut()
                    && line.say.is_none()
                    && matches!(line.stage, lines::LineStage::Requested(_))
                {
                    line.stage = lines::LineStage::Waiting;
                }
            }
            Purpose::Dtmf => self.dtmf_unanswered = true,
            Purpose::Filler(_) => {}
        }
    }

    fn on_barge_in(&mut self, cut: Interruption) {
        metrics::counter!("bargeins_total").increment(1);
        self.send_ai(ClientEvent::truncate(cut.item_id.clone(), cut.heard_ms));
        self.interrupted
            .insert(cut.item_id, (cut.heard_ms, cut.sent_ms));
        self.phase(CallPhase::Listening);
    }

    fn on_dtmf(&mut self, digit: &str) {
        let text = format!("[The caller pressed the key {digit} on their keypad.]");
        match self.link {
            Link::Up => self.send_ai(ClientEvent::user_text(text)),
            // Given to the model once it is connected.
            Link::Connecting { .. } => self.keys_waiting.push(text),
        }
        self.touch();
        self.dtmf_unanswered = true;
        self.pump();
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::Idle(epoch) => self.idle_check(epoch),
            Timer::Line(epoch) => self.line_deadline(epoch),
            Timer::GreetingHold => {
                // No result in time: a person is not kept waiting (a machine stays held).
                if self.hold == GreetingHold::Waiting {
                    self.hold = GreetingHold::Off;
                    self.pump();
                }
            }
            Timer::Filler(id) => self.tool_slow(&id),
            Timer::MaxDuration => self.finish(Ending {
                reason: EndReason::MaxDuration,
                detail: None,
                continuation: Some(Continuation::Hangup),
                redirected: false,
                status: SessionStatus::Completed,
            }),
            Timer::DurationRule => {
                let queue = self.setup.toolbox.as_ref().and_then(|t| {
                    t.rule(|r| matches!(r, crate::contract::EscalationTrigger::CallDuration { .. }))
                        .and_then(|r| r.queue.clone())
                });
                self.escalate(lines::EscalationCause {
                    rule: String::from("call_duration"),
                    reason: String::from("the call reached the escalation time limit"),
                    queue,
                    tool_call: None,
                });
            }
            Timer::Request(seq) => {
                if let Some(request) = self.gate.expired(seq) {
                    tracing::warn!(request = %request.event_id, "response request never answered; no longer waiting for it");
                    if matches!(request.purpose, Purpose::Greeting | Purpose::Resume) {
                        self.opening = Opening::Done;
                    }
                    self.pump();
                }
            }
        }
    }

    // === records ===

    fn turn(
        &mut self,
        speaker: Speaker,
        item_id: Option<String>,
        text: String,
        interrupted: bool,
        heard: Option<String>,
    ) {
        if text.trim().is_empty() {
            return;
        }
        let end_ms = i64::try_from(self.now).unwrap_or(i64::MAX);
        self.record(Record::Turn(TranscriptTurn {
            id: 0,
            role: speaker.as_str().to_owned(),
            item_id,
            text: text.clone(),
            start_ms: None,
            end_ms: Some(end_ms),
            interrupted,
            heard_text: heard.clone(),
            created_at: self.wall_clock(),
        }));
        let said = heard.unwrap_or(text);
        self.history.push((speaker, said.clone()));
        self.emit(Effect::LastLine(speaker, said));
    }

    // === the end ===

    /// The stream ended (Twilio's `stop`, or the socket gone): for the reason the agent gave
    /// when it ended the conversation itself, else for `reason`.
    fn end_leg(&mut self, reason: EndReason, detail: Option<String>) {
        let ending = match self.leg {
            Leg::Closing {
                reason,
                continuation,
            } => Ending {
                reason,
                detail: None,
                continuation: Some(continuation),
                redirected: false,
                status: SessionStatus::Completed,
            },
            // The redirect the drain asked for ended the stream.
            Leg::Handing { continuation } => Ending {
                reason: EndReason::Drained,
                detail: None,
                continuation: Some(continuation),
                redirected: true,
                status: SessionStatus::Completed,
            },
            _ => Ending {
                reason,
                detail,
                continuation: None,
                redirected: false,
                status: SessionStatus::Completed,
            },
        };
        self.finish(ending);
    }

    /// The Twilio socket went away without `stop`: the caller may still be on the line, so
    /// a live leg asks for a fresh stream that resumes the conversation (`stream-ended`
    /// answers it) — at most once per `resume_lost_leg` of the call, counted from the start
    /// of a stream that was itself a resume, so a leg that keeps failing ends the call.
    fn twilio_lost(&mut self, reason: EndReason, detail: Option<String>) {
        let lost = matches!(reason, EndReason::SocketClosed | EndReason::SocketError);
        let may_resume = self.setup.resume_lost_leg.is_some_and(|interval| {
            !self.resumed() || u128::from(self.now) >= interval.as_millis()
        });
        if lost && may_resume && matches!(self.leg, Leg::Live) {
            self.finish(Ending {
                reason,
                detail,
                continuation: Some(Continuation::Resume),
                redirected: false,
                status: SessionStatus::Completed,
            });
        } else {
            self.end_leg(reason, detail);
        }
    }

    /// The node drains (its grace period is over): a live leg asks the carrier to take the
    /// caller on — to a fresh stream that resumes the conversation when another node can
    /// take it, else to the route's fallback — and ends when the carrier ends its stream. A
    /// leg already closing for the agent's own reason goes on closing.
    fn drain(&mut self, resume: bool) {
        if self.leg != Leg::Live {
            return;
        }
        let (continuation, action) = if resume {
            (Continuation::Resume, CarrierAction::Resume)
        } else {
            (Continuation::Fallback, CarrierAction::Fallback)
        };
        // A line planned before an action (a goodbye, a transfer) no longer runs.
        self.line = None;
        self.leg = Leg::Handing { continuation };
        self.emit(Effect::Control(Box::new(ControlRequest {
            action,
            continuation,
            reason: Some(EndReason::Drained),
            queue: None,
        })));
    }

    /// The drain's redirect failed: the stream is closed with the same continuation
    /// recorded, so the carrier asks `stream-ended`, which follows it.
    pub(super) fn redirect_failed(&mut self, why: String) {
        if let Leg::Handing { continuation } = self.leg {
            self.finish(Ending {
                reason: EndReason::Drained,
                detail: Some(why),
                continuation: Some(continuation),
                redirected: false,
                status: SessionStatus::Completed,
            });
        }
    }

    fn finish(&mut self, ending: Ending) {
        if self.leg == Leg::Ended {
            return;
        }
        self.leg = Leg::Ended;
        self.cancel_tools_at_end();
        self.emit(Effect::End(ending));
    }
}
