//! Lines the agent says before an action, and what asks for them: the pump that decides which
//! response is asked for next (the one place a `response.create` is decided), escalations to
//! a human (once per call), the handoff line before the carrier's `<Dial>`, `end_call`'s and
//! the idle timeout's goodbye before the hang-up, and the carrier changes that follow.
//!
//! A line is played to the end — its response done, then its audio drained (mark echoes) —
//! before its action runs, or at its deadline ([`LINE_DEADLINE`]) at the latest. Lines carry
//! an epoch and so does their deadline: an earlier line's deadline never acts on a later one.

use std::time::Duration;

use serde_json::{Value, json};

use super::arbiter::{Purpose, Request};
use super::{
    ControlReport, ControlRequest, Conversation, DialPlan, Effect, Ending, EscalationRequest, Leg,
    Link, REQUEST_TIMEOUT, Resolution, Speaker, Timer,
};
use crate::active::CallPhase;
use crate::call::control::CarrierAction;
use crate::call::recorder::Record;
use crate::ending::{Continuation, EndReason};
use crate::store::{FunctionCallStatus, SessionStatus};

use super::tools::ToolOutcome;

/// How long a line (handoff, goodbye) may take before its action runs anyway.
pub const LINE_DEADLINE: Duration = Duration::from_secs(20);
/// Turns included in a handoff summary.
const SUMMARY_TURNS: usize = 8;
/// What the agent says before a transfer when the version sets no line.
pub const DEFAULT_HANDOFF_LINE: &str =
    "I'm transferring you to a colleague now. Please stay on the line.";
/// What the agent says when a callback task was created instead.
pub const CALLBACK_LINE: &str = "Nobody is available to take your call right now, so I've arranged for a colleague to call you back as soon as possible.";
/// What the agent says when nobody can take the call and the caller stays with the agent.
pub const STAY_LINE: &str = "I'm sorry, my colleagues are not available right now, but I'll keep helping you as best I can.";
/// What the agent says before a closed queue's message line.
pub const VOICEMAIL_LINE: &str = "Our team is closed right now. I'll pass you to our message line.";
/// The idle timeout's goodbye.
pub const IDLE_GOODBYE: &str =
    "I haven't heard anything for a while, so I'll end the call now. Goodbye!";

/// The opening line of the stream (greeting, or the resumed call's notice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Opening {
    /// The session is not configured yet.
    NotYet,
    /// To be asked for.
    Waiting(Purpose, String),
    /// Asked for (asked again if refused).
    Sent(Purpose, String),
    /// Said, or nothing to say.
    Done,
}

/// Where a line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LineStage {
    /// Not asked for yet.
    Waiting,
    /// Asked for by this request.
    Requested(String),
    /// Its response is done; its audio is playing out.
    Draining,
}

/// What happens once a line has played.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LineAction {
    /// Dial the queue.
    Dial(DialPlan),
    /// Hang up (the agent's reason: `agent_ended_call`, `idle_timeout`).
    Hangup(EndReason),
    /// Let the carrier say a message, then hang up.
    Say(String),
    /// Nothing: the line is all.
    Nothing,
}

/// A line the agent says before an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Line {
    /// Which line (its deadline names it).
    pub epoch: u64,
    /// What follows it.
    pub action: LineAction,
    /// Exact words; `None`: the model's own reply to the tool output that planned it.
    pub say: Option<String>,
    /// Where it is.
    pub stage: LineStage,
}

/// Escalation of the call (one per call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Escalation {
    /// None yet (or the last one left the caller with the agent).
    Open,
    /// The escalation task is finding the target; the tool call that asked, if any, waits.
    Resolving { tool_call: Option<String> },
    /// Done.
    Taken,
}

/// What starts an escalation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EscalationCause {
    /// `tool:transfer_to_human`, `caller_asks_for_human`, `tool_failures`, `call_duration`,
    /// `intent:{name}`.
    pub rule: String,
    /// Why.
    pub reason: String,
    /// Queue name (else the default queue).
    pub queue: Option<String>,
    /// The tool call that asked (answered once the target is known).
    pub tool_call: Option<String>,
}

fn bounded_rule(kind: &str) -> &'static str {
    match kind {
        "tool" => "tool",
        "caller_asks_for_human" => "caller_asks_for_human",
        "tool_failures" => "tool_failures",
        "call_duration" => "call_duration",
        "intent" => "intent",
        _ => "other",
    }
}

impl Conversation {
    /// Asks for the next response, if one is wanted and none is active or requested. The only
    /// place a `response.create` is decided, in this order: the opening line, an exact line,
    /// the model's words about finished tool outputs (also the line a tool planned), an answer
    /// to key presses, a slow tool's filler.
    pub(super) fn pump(&mut self) {
        if self.leg != Leg::Live
            || self.link != Link::Up
            || !self.gate.is_free()
            || self.opening == Opening::NotYet
        {
            // Nothing is asked of a model that is not configured yet.
            return;
        }
        if let Opening::Waiting(purpose, text) = self.opening.clone() {
            if purpose == Purpose::Greeting && self.greeting_held() {
                // The AMD result comes first; nothing else is asked before the greeting.
                return;
            }
            let instructions = match purpose {
                Purpose::Greeting => format!("Greet the caller. Say exactly: {text}"),
                _ => format!("Say exactly: {text}"),
            };
            self.request(purpose.clone(), Some(instructions));
            self.opening = Opening::Sent(purpose, text);
            return;
        }
        if matches!(self.escalation, Escalation::Resolving { .. }) {
            // The escalation's line (or the tool call's result) comes first.
            return;
        }
        if let Some(line) = &self.line
            && line.stage == LineStage::Waiting
            && let Some(say) = line.say.clone()
        {
            // An exact line replaces the model's reply to outputs it was given.
            self.tools.clear_ready();
            let epoch = line.epoch;
            let request = self.request(Purpose::Line(epoch), Some(format!("Say exactly: {say}")));
            if let Some(line) = self.line.as_mut() {
                line.stage = LineStage::Requested(request.event_id);
            }
            return;
        }
        if self.tools.take_ready() {
            let request = self.request(Purpose::Outputs, None);
            if let Some(line) = self.line.as_mut()
                && line.say.is_none()
                && line.stage == LineStage::Waiting
            {
                line.stage = LineStage::Requested(request.event_id);
            }
            return;
        }
        if self.dtmf_unanswered && self.line.is_none() {
            self.dtmf_unanswered = false;
            self.request(Purpose::Dtmf, None);
            return;
        }
        if let Some((id, filler)) = self.tools.take_due_filler() {
            metrics::counter!("tool_fillers_total").increment(1);
            self.request(Purpose::Filler(id), Some(format!("Say exactly: {filler}")));
        }
    }

    fn request(&mut self, purpose: Purpose, instructions: Option<String>) -> Request {
        let (event, request) = self.gate.send(purpose, instructions);
        self.send_ai(event);
        self.emit(Effect::Timer(Timer::Request(request.seq), REQUEST_TIMEOUT));
        request
    }

    /// Plans a line and what follows it, with its deadline.
    pub(super) fn plan_line(&mut self, action: LineAction, say: Option<String>) {
        self.lines += 1;
        let epoch = self.lines;
        self.line = Some(Line {
            epoch,
            action,
            say,
            stage: LineStage::Waiting,
        });
        self.emit(Effect::Timer(Timer::Line(epoch), LINE_DEADLINE));
    }

    /// A response is done (ours: `request`): the line it said now plays out.
    pub(super) fn line_response_done(&mut self, request: Option<&Request>) {
        if let Some(Purpose::Greeting | Purpose::Resume) = request.map(|r| &r.purpose)
            && matches!(self.opening, Opening::Sent(..))
        {
            self.opening = Opening::Done;
        }
        let Some(line) = self.line.as_mut() else {
            return;
        };
        let said = matches!(
            (&line.stage, request),
            (LineStage::Requested(id), Some(r)) if *id == r.event_id
        );
        if said {
            line.stage = LineStage::Draining;
        }
        if line.stage == LineStage::Draining {
            self.emit(Effect::WatchDrain);
        }
    }

    /// The audio sent so far has played: a line that was playing out is over.
    pub(super) fn on_drained(&mut self) {
        if self
            .line
            .as_ref()
            .is_some_and(|l| l.stage == LineStage::Draining)
        {
            self.run_line_action();
        }
    }

    /// The deadline of line `epoch` passed: if that line is still pending, act now.
    pub(super) fn line_deadline(&mut self, epoch: u64) {
        if self.line.as_ref().is_some_and(|l| l.epoch == epoch) {
            tracing::info!("line did not finish playing in time; acting now");
            self.run_line_action();
        }
    }

    fn run_line_action(&mut self) {
        let Some(line) = self.line.take() else {
            return;
        };
        match line.action {
            LineAction::Hangup(reason) => {
                self.leg = Leg::Closing {
                    reason,
                    continuation: Continuation::Hangup,
                };
                self.emit(Effect::Control(Box::new(ControlRequest {
                    action: CarrierAction::Hangup,
                    continuation: Continuation::Hangup,
                    reason: Some(reason),
                    queue: None,
                })));
            }
            LineAction::Dial(plan) => {
                self.leg = Leg::Closing {
                    reason: EndReason::Escalated,
                    continuation: Continuation::Handoff,
                };
                let queue = plan.queue.clone();
                self.emit(Effect::Control(Box::new(ControlRequest {
                    action: CarrierAction::Handoff {
                        numbers: plan.numbers,
                        announcement: plan.announcement,
                        caller_id: plan.caller_id,
                        timeout_secs: plan.timeout_secs,
                        handoff: plan.handoff_id,
                    },
                    continuation: Continuation::Handoff,
                    reason: None,
                    queue: Some(queue),
                })));
            }
            LineAction::Say(message) => {
                self.leg = Leg::Closing {
                    reason: EndReason::QueueVoicemail,
                    continuation: Continuation::Hangup,
                };
                self.emit(Effect::Control(Box::new(ControlRequest {
                    action: CarrierAction::Say { message },
                    continuation: Continuation::Hangup,
                    reason: Some(EndReason::QueueVoicemail),
                    queue: None,
                })));
            }
            LineAction::Nothing => self.pump(),
        }
    }

    /// A carrier change the conversation asked for finished.
    pub(super) fn on_control_done(&mut self, report: ControlReport) {
        match report {
            ControlReport::Hangup(Ok(())) | ControlReport::Say(Ok(())) => {}
            ControlReport::Redirect(Ok(())) => {}
            ControlReport::Redirect(Err(why)) => {
                tracing::warn!(error = %why, "the carrier refused the drain's redirect; closing the stream");
                self.redirect_failed(why);
            }
            ControlReport::Dial(Ok(())) => {
                metrics::counter!("handoffs_total", "outcome" => "dialing").increment(1);
            }
            ControlReport::Hangup(Err(why)) => {
                tracing::warn!(error = %why, "hangup through the carrier failed; closing the stream");
                if let Leg::Closing { reason, .. } = self.leg {
                    self.finish(Ending {
                        reason,
                        detail: None,
                        continuation: Some(Continuation::Hangup),
                        redirected: false,
                        status: SessionStatus::Completed,
                    });
                }
            }
            ControlReport::Dial(Err(callback_created)) => {
                tracing::warn!(
                    callback_created,
                    "the carrier refused the transfer; the caller stays with the agent"
                );
                metrics::counter!("handoffs_total", "outcome" => "carrier_error").increment(1);
                if matches!(self.leg, Leg::Closing { .. }) {
                    self.leg = Leg::Live;
                }
                let line = if callback_created {
                    CALLBACK_LINE
                } else {
                    STAY_LINE
                };
                self.plan_line(LineAction::Nothing, Some(line.to_owned()));
                self.pump();
            }
            ControlReport::Say(Err(why)) => {
                tracing::warn!(error = %why, "the carrier refused the message; the caller stays with the agent");
                if matches!(self.leg, Leg::Closing { .. }) {
                    self.leg = Leg::Live;
                }
                self.pump();
            }
        }
    }

    /// Starts an escalation (one per call).
    pub(super) fn escalate(&mut self, cause: EscalationCause) {
        if self.escalation != Escalation::Open || self.leg != Leg::Live {
            if let Some(id) = cause.tool_call {
                let outcome = ToolOutcome::error(
                    FunctionCallStatus::Refused,
                    "a transfer is already in progress for this call",
                );
                self.tool_done(&id, outcome);
            }
            return;
        }
        let kind = cause.rule.split(':').next().unwrap_or("other");
        metrics::counter!("escalations_total", "rule" => bounded_rule(kind)).increment(1);
        let default_queue = self
            .setup
            .toolbox
            .as_ref()
            .and_then(|t| t.contract.escalation.default_queue.clone());
        let queue = cause.queue.clone().or(default_queue);
        let context = self.handoff_context(&cause, queue.as_deref());
        self.escalation = Escalation::Resolving {
            tool_call: cause.tool_call,
        };
        self.emit(Effect::Escalate(Box::new(EscalationRequest {
            rule: cause.rule,
            reason: cause.reason,
            queue,
            context,
        })));
    }

    /// The context a human gets: reason, rule, summary of the last turns, identity, caller.
    fn handoff_context(&self, cause: &EscalationCause, queue: Option<&str>) -> Value {
        let start = self.history.len().saturating_sub(SUMMARY_TURNS);
        let recent = &self.history[start..];
        let turns: Vec<Value> = recent
            .iter()
            .map(|(who, text)| json!({"role": who.as_str(), "text": text}))
            .collect();
        let summary = recent
            .iter()
            .map(|(who, text)| {
                let who = match who {
                    Speaker::Agent => "Agent",
                    Speaker::Caller => "Caller",
                };
                format!("{who}: {text}")
            })
            .collect::<Vec<_>>()
            .join("\n");
        json!({
            "reason": cause.reason,
            "rule": cause.rule,
            "queue": queue,
            "summary": summary,
            "last_turns": turns,
            "identity": {"verified": self.identity_verified},
            "caller": self.setup.caller,
        })
    }

    /// The escalation task found where the caller goes.
    pub(super) fn on_escalated(&mut self, resolution: Resolution) {
        let Escalation::Resolving { tool_call } = self.escalation.clone() else {
            return;
        };
        self.escalation = Escalation::Taken;
        let (line, action, result) = match resolution {
            Resolution::Dial(plan) => {
                let line = self
                    .setup
                    .toolbox
                    .as_ref()
                    .and_then(|t| t.contract.escalation.handoff_line.clone())
                    .unwrap_or_else(|| DEFAULT_HANDOFF_LINE.to_owned());
                self.phase(CallPhase::Handoff);
                let result = json!({
                    "status": "transferring",
                    "queue": plan.queue,
                    "instructions": "Tell the caller in one short sentence that you are transferring them to a colleague now."
                });
                (line, LineAction::Dial(plan), result)
            }
            Resolution::Voicemail { queue, message } => (
                VOICEMAIL_LINE.to_owned(),
                LineAction::Say(message),
                json!({
                    "status": "closed",
                    "queue": queue,
                    "instructions": "Tell the caller briefly that the team is closed and you are passing them to the message line."
                }),
            ),
            Resolution::StayWithAgent { queue } => {
                self.escalation = Escalation::Open;
                (
                    STAY_LINE.to_owned(),
                    LineAction::Nothing,
                    json!({
                        "status": "unavailable",
                        "queue": queue,
                        "instructions": "No human is available now: tell the caller and keep helping them yourself."
                    }),
                )
            }
            Resolution::Callback(Ok(task)) => (
                CALLBACK_LINE.to_owned(),
                LineAction::Nothing,
                json!({
                    "status": "callback_scheduled",
                    "task_id": task,
                    "instructions": "Tell the caller nobody is available right now and a colleague will call them back."
                }),
            ),
            Resolution::Callback(Err(why)) => (
                STAY_LINE.to_owned(),
                LineAction::Nothing,
                json!({"status": "unavailable", "error": why}),
            ),
        };
        if self.leg != Leg::Live {
            return;
        }
        self.plan_line(action, tool_call.is_none().then_some(line));
        match tool_call {
            Some(id) => self.tool_done(&id, ToolOutcome::ok(result)),
            None => self.pump(),
        }
    }

    /// The idle timer of `epoch` fired: when nothing happened since and nothing is in flight,
    /// the agent says goodbye and the call ends once it played.
    pub(super) fn idle_check(&mut self, epoch: u64) {
        if epoch != self.idle_epoch
            || self.gate.is_busy()
            || self.tools.busy()
            || self.leg != Leg::Live
            || self.line.is_some()
            || matches!(self.escalation, Escalation::Resolving { .. })
            || matches!(self.opening, Opening::Waiting(..) | Opening::Sent(..))
        {
            return;
        }
        tracing::info!("caller idle: ending the call");
        self.record(Record::CallEvent {
            kind: "idle_timeout",
            detail: json!({"epoch": epoch}),
        });
        self.plan_line(
            LineAction::Hangup(EndReason::IdleTimeout),
            Some(IDLE_GOODBYE.to_owned()),
        );
        self.pump();
    }
}
