//! Function calls of the conversation (PROTOCOLS §4.7, §5.3): which tool a call runs (or why
//! it is refused), the one `function_call_output` every function-call item gets, repeats of
//! a model call id answered with the first result (never run twice, also across streams of
//! the call), the outputs' `response.create` held until every call of the response that held
//! them has its output, fillers of slow tools, cancellation on interruption, and the
//! tool-failures escalation rule.
//!
//! Tools that do I/O run in tasks ([`Effect::RunTool`]); the task records the invocation
//! before it runs (the (call, model call id) key is the idempotency check) and its result
//! after. Calls the conversation answers itself (refusals, invalid arguments, `end_call`,
//! `report_intent`, transfers) are recorded whole through the recorder.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::lines::{EscalationCause, LineAction};
use super::{Conversation, Effect, FunctionCallRequest, Millis, Timer};
use crate::active::CallPhase;
use crate::call::recorder::{IdentityState, Invocation, Record, SettledRecord};
use crate::contract::{Builtin, EscalationTrigger, ToolSpec, ToolType, Toolbox};
use crate::realtime::ClientEvent;
use crate::store::{FunctionCallStatus, PriorInvocation, SettledCall};

/// Longest output given to the model (characters).
const MAX_OUTPUT_CHARS: usize = 16 * 1024;
/// The output of an invocation an earlier stream ran without finishing.
const ALREADY_RAN: &str = "this invocation already ran; its result was given before";

/// What a finished tool gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutcome {
    /// Status recorded.
    pub status: FunctionCallStatus,
    /// Output given to the model.
    pub output: String,
    /// Whether a `response.create` follows (false when the caller interrupted: the new
    /// caller turn drives the next response).
    pub respond: bool,
    /// `verify_identity` answered (verified or not).
    pub identity: Option<bool>,
}

impl ToolOutcome {
    /// A success with a JSON result.
    pub fn ok(result: Value) -> Self {
        Self {
            status: FunctionCallStatus::Succeeded,
            output: result.to_string(),
            respond: true,
            identity: None,
        }
    }

    /// A failure of `status` with an error message.
    pub fn error(status: FunctionCallStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            output: json!({"error": message.into()}).to_string(),
            respond: true,
            identity: None,
        }
    }

    /// The error message of a failure (`None` for a success).
    pub fn error_text(&self) -> Option<String> {
        if self.status == FunctionCallStatus::Succeeded {
            return None;
        }
        serde_json::from_str::<Value>(&self.output)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .or_else(|| Some(self.output.clone()))
    }

    /// As recorded, `latency_ms` after it started.
    pub fn settled(&self, latency_ms: i64) -> SettledCall {
        let output = truncate_output(self.output.clone());
        let (result, error) = match self.status {
            FunctionCallStatus::Succeeded => (Some(output), None),
            _ => (None, self.error_text()),
        };
        SettledCall {
            status: self.status,
            result,
            error,
            latency_ms,
        }
    }
}

/// What a tool task does.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolWork {
    /// A signed request to the tenant's tool endpoint.
    Webhook {
        /// Endpoint.
        url: String,
        /// The validated arguments.
        arguments: Value,
        /// Whole-request timeout.
        timeout: Duration,
        /// Whether the caller's identity is verified (sent with the request).
        identity_verified: bool,
    },
    /// A signed request to the tenant's identity endpoint with the caller's facts.
    Identity {
        /// Endpoint.
        url: String,
        /// The facts.
        facts: Value,
        /// Whole-request timeout.
        timeout: Duration,
    },
    /// A callback task for a human to call back.
    Callback {
        /// The number to call.
        phone: String,
        /// Why.
        reason: String,
        /// When (Unix ms).
        due_at: Option<i64>,
    },
    /// A text message to the caller.
    Sms {
        /// The text.
        body: String,
    },
    /// The caller's number onto the tenant's do-not-call list, the call as evidence.
    OptOut {
        /// What the caller said.
        reason: Option<String>,
    },
}

/// A tool to run in a task.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolJob {
    /// The invocation (recorded by the task before it runs).
    pub invocation: Invocation,
    /// What to do.
    pub work: ToolWork,
}

/// How a task-run call behaves while it runs.
#[derive(Debug, Default)]
struct TaskOptions {
    /// The caller talking cancels it.
    cancel_on_interrupt: bool,
    /// A line said when it runs longer than this.
    filler: Option<(String, Duration)>,
}

/// Who records a pending call's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runner {
    /// A task (it recorded the start and records the end).
    Task,
    /// The conversation (it records the whole call when it answers it).
    Local,
}

/// A function call waiting for its result.
#[derive(Debug)]
struct Pending {
    invocation: Invocation,
    response_id: String,
    started: Millis,
    runner: Runner,
    cancel_on_interrupt: bool,
    filler: Option<String>,
    filler_due: bool,
}

/// A model call id seen in this call.
#[derive(Debug, Default)]
struct Seen {
    /// The `function_call` items that carried it (each needs an output).
    items: HashSet<String>,
    /// The output given, once it finished.
    output: Option<String>,
    /// Responses holding a repeat of it, answered when it finishes.
    waiting: Vec<String>,
}

/// Function calls of one conversation.
#[derive(Debug, Default)]
pub(super) struct Tools {
    toolbox: Option<Arc<Toolbox>>,
    /// Running calls by model call id (ordered, so cancellations are deterministic).
    pending: BTreeMap<String, Pending>,
    /// Every model call id seen in this call, earlier streams included.
    seen: HashMap<String, Seen>,
    /// Responses whose calls all have outputs and that still need a `response.create`.
    respond_for: HashSet<String>,
    /// Failed calls so far (the tool-failures rule).
    failures: u32,
    /// A refused request to speak about tool outputs is asked for again.
    pub(super) retry_outputs: bool,
}

fn truncate_output(mut output: String) -> String {
    if output.chars().count() > MAX_OUTPUT_CHARS {
        output = output.chars().take(MAX_OUTPUT_CHARS).collect();
    }
    output
}

fn str_arg(args: &Value, name: &str) -> Option<String> {
    args.get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn new_record_id() -> String {
    format!("fc_{}", uuid::Uuid::new_v4().simple())
}

impl Tools {
    pub(super) fn new(toolbox: Option<Arc<Toolbox>>, prior: &[PriorInvocation]) -> Self {
        let seen = prior
            .iter()
            .map(|p| {
                (
                    p.model_call_id.clone(),
                    Seen {
                        items: HashSet::new(),
                        output: Some(
                            p.output
                                .clone()
                                .unwrap_or_else(|| json!({"error": ALREADY_RAN}).to_string()),
                        ),
                        waiting: Vec::new(),
                    },
                )
            })
            .collect();
        Self {
            toolbox,
            seen,
            ..Self::default()
        }
    }

    /// Whether any call is still running.
    pub(super) fn busy(&self) -> bool {
        !self.pending.is_empty()
    }

    /// A response whose calls all have outputs, if any; taken (it gets one request).
    pub(super) fn take_ready(&mut self) -> bool {
        let ready: Vec<String> = self
            .respond_for
            .iter()
            .filter(|r| !self.pending.values().any(|p| &p.response_id == *r))
            .cloned()
            .collect();
        for r in &ready {
            self.respond_for.remove(r);
        }
        let retry = std::mem::take(&mut self.retry_outputs);
        retry || !ready.is_empty()
    }

    /// Forgets outputs waiting for a response (an exact line replaces the model's reply).
    pub(super) fn clear_ready(&mut self) {
        self.respond_for.clear();
        self.retry_outputs = false;
    }

    /// A slow tool whose filler is due: (model call id, filler), taken (said once at most).
    pub(super) fn take_due_filler(&mut self) -> Option<(String, String)> {
        let (id, p) = self
            .pending
            .iter_mut()
            .find(|(_, p)| p.filler_due && p.filler.is_some())?;
        p.filler_due = false;
        let filler = p.filler.take()?;
        Some((id.clone(), filler))
    }
}

impl Conversation {
    /// The model called a function.
    pub(super) fn on_function_call(&mut self, f: FunctionCallRequest) {
        if let Some(seen) = self.tools.seen.get_mut(&f.call_id) {
            if !seen.items.insert(f.item_id.clone()) {
                // The same item reported twice: it has (or will get) its output.
                return;
            }
            // A repeat of an invocation (a retry, or one an earlier stream ran): it never
            // runs twice. This item gets the first one's output (once there is one).
            tracing::info!(tool = %f.name, model_call_id = %f.call_id, "repeated tool invocation answered with its first result");
            metrics::counter!("tool_calls_repeated_total").increment(1);
            match seen.output.clone() {
                Some(output) => {
                    self.send_ai(ClientEvent::function_output(f.call_id, output));
                    self.tools.respond_for.insert(f.response_id);
                    self.pump();
                }
                None => seen.waiting.push(f.response_id),
            }
            return;
        }
        self.tools.seen.insert(
            f.call_id.clone(),
            Seen {
                items: HashSet::from([f.item_id.clone()]),
                ..Seen::default()
            },
        );
        let spec: Option<ToolSpec> = self
            .tools
            .toolbox
            .as_ref()
            .and_then(|t| t.tool(&f.name).cloned());
        let kind = match spec.as_ref().map(|s| s.kind) {
            Some(ToolType::Webhook) => "webhook",
            Some(ToolType::Builtin) => "builtin",
            None => "unknown",
        };
        metrics::counter!("tool_calls_total", "kind" => kind).increment(1);
        let invocation = Invocation {
            id: new_record_id(),
            model_call_id: f.call_id.clone(),
            name: f.name.clone(),
            kind,
            arguments: f.arguments.clone(),
            started_at: self.wall_clock(),
        };
        self.tools.pending.insert(
            f.call_id.clone(),
            Pending {
                invocation,
                response_id: f.response_id.clone(),
                started: self.now,
                runner: Runner::Local,
                cancel_on_interrupt: false,
                filler: None,
                filler_due: false,
            },
        );
        self.phase(CallPhase::Tool);
        let call_id = f.call_id;
        let Some(spec) = spec else {
            let outcome = ToolOutcome::error(
                FunctionCallStatus::Refused,
                format!("tool {} is not available", f.name),
            );
            return self.tool_done(&call_id, outcome);
        };
        let args: Value = match serde_json::from_str(&f.arguments) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                let outcome = ToolOutcome::error(
                    FunctionCallStatus::Invalid,
                    "the arguments are not a JSON object",
                );
                return self.tool_done(&call_id, outcome);
            }
        };
        if spec.requires_identity && !self.identity_verified {
            let outcome = ToolOutcome::error(
                FunctionCallStatus::Refused,
                format!(
                    "{} needs a verified caller: ask the caller for the facts and call verify_identity first",
                    spec.name
                ),
            );
            return self.tool_done(&call_id, outcome);
        }
        let checked = self
            .tools
            .toolbox
            .as_ref()
            .map_or(Ok(()), |t| t.check_arguments(&spec.name, &args));
        if let Err(why) = checked {
            let outcome = ToolOutcome::error(
                FunctionCallStatus::Invalid,
                format!("invalid arguments: {why}"),
            );
            return self.tool_done(&call_id, outcome);
        }
        match spec.builtin() {
            None => {
                let work = ToolWork::Webhook {
                    url: spec.url.clone().unwrap_or_default(),
                    arguments: args,
                    timeout: Duration::from_millis(spec.timeout_ms),
                    identity_verified: self.identity_verified,
                };
                let options = TaskOptions {
                    cancel_on_interrupt: spec.cancel_on_interrupt,
                    filler: spec
                        .filler
                        .clone()
                        .map(|f| (f, Duration::from_millis(spec.filler_after_ms))),
                };
                self.run_tool(&call_id, work, options);
            }
            Some(builtin) => self.run_builtin(call_id, builtin, args),
        }
    }

    /// Hands a pending call to a task.
    fn run_tool(&mut self, call_id: &str, work: ToolWork, options: TaskOptions) {
        let Some(p) = self.tools.pending.get_mut(call_id) else {
            return;
        };
        p.runner = Runner::Task;
        p.cancel_on_interrupt = options.cancel_on_interrupt;
        let job = ToolJob {
            invocation: p.invocation.clone(),
            work,
        };
        if let Some((filler, after)) = options.filler {
            p.filler = Some(filler);
            self.emit(Effect::RunTool(Box::new(job)));
            self.emit(Effect::Timer(Timer::Filler(call_id.to_owned()), after));
        } else {
            self.emit(Effect::RunTool(Box::new(job)));
        }
    }

    fn run_builtin(&mut self, call_id: String, builtin: Builtin, args: Value) {
        match builtin {
            Builtin::TransferToHuman => {
                let reason = str_arg(&args, "reason").unwrap_or_else(|| "caller asked".into());
                self.escalate(EscalationCause {
                    rule: String::from("tool:transfer_to_human"),
                    reason,
                    queue: str_arg(&args, "queue"),
                    tool_call: Some(call_id),
                });
            }
            Builtin::ReportIntent => {
                let intent = str_arg(&args, "intent").unwrap_or_default();
                let rule = self.tools.toolbox.as_ref().and_then(|t| {
                    t.rule(|r| matches!(r, EscalationTrigger::Intent { intents } if intents.contains(&intent)))
                        .cloned()
                });
                match rule {
                    Some(rule) => self.escalate(EscalationCause {
                        rule: format!("intent:{intent}"),
                        reason: format!("the caller's intent is {intent}"),
                        queue: rule.queue,
                        tool_call: Some(call_id),
                    }),
                    None => self.tool_done(
                        &call_id,
                        ToolOutcome::ok(json!({"status": "noted", "intent": intent})),
                    ),
                }
            }
            Builtin::EndCall => {
                if self.line.is_some() {
                    let outcome = ToolOutcome::error(
                        FunctionCallStatus::Refused,
                        "the call is already being transferred or ended",
                    );
                    return self.tool_done(&call_id, outcome);
                }
                self.plan_line(
                    LineAction::Hangup(crate::ending::EndReason::AgentEndedCall),
                    None,
                );
                let outcome = ToolOutcome::ok(json!({
                    "status": "ending",
                    "instructions": "Say a brief goodbye now; the call ends when you finish speaking."
                }));
                self.tool_done(&call_id, outcome);
            }
            Builtin::CreateCallbackTask => {
                let phone = str_arg(&args, "phone").unwrap_or_else(|| self.setup.caller.clone());
                let reason = str_arg(&args, "reason").unwrap_or_default();
                let due_at = match str_arg(&args, "due_at") {
                    None => None,
                    Some(text) => match chrono::DateTime::parse_from_rfc3339(&text) {
                        Ok(t) => Some(t.timestamp_millis()),
                        Err(_) => {
                            let outcome = ToolOutcome::error(
                                FunctionCallStatus::Invalid,
                                "due_at must be an RFC 3339 time, e.g. 2026-12-01T15:00:00Z",
                            );
                            return self.tool_done(&call_id, outcome);
                        }
                    },
                };
                let work = ToolWork::Callback {
                    phone,
                    reason,
                    due_at,
                };
                self.run_tool(&call_id, work, TaskOptions::default());
            }
            Builtin::OptOut => {
                let work = ToolWork::OptOut {
                    reason: str_arg(&args, "reason"),
                };
                self.run_tool(&call_id, work, TaskOptions::default());
            }
            Builtin::SendFollowupSms => {
                let body = str_arg(&args, "body").unwrap_or_default();
                self.run_tool(&call_id, ToolWork::Sms { body }, TaskOptions::default());
            }
            Builtin::VerifyIdentity => {
                let Some(check) = self
                    .tools
                    .toolbox
                    .as_ref()
                    .and_then(|t| t.contract.identity.clone())
                else {
                    let outcome = ToolOutcome::error(
                        FunctionCallStatus::Refused,
                        "identity checks are not configured for this agent",
                    );
                    return self.tool_done(&call_id, outcome);
                };
                let work = ToolWork::Identity {
                    url: check.url,
                    facts: args,
                    timeout: Duration::from_millis(check.timeout_ms),
                };
                self.run_tool(&call_id, work, TaskOptions::default());
            }
        }
    }

    /// A function call finished: record it (when the conversation answered it), answer the
    /// model, count failures.
    pub(super) fn tool_done(&mut self, call_id: &str, outcome: ToolOutcome) {
        let Some(pending) = self.tools.pending.remove(call_id) else {
            return;
        };
        let latency = self.now.saturating_sub(pending.started);
        metrics::histogram!("tool_call_seconds", "outcome" => outcome.status.as_str())
            .record(Duration::from_millis(latency).as_secs_f64());
        let latency_ms = i64::try_from(latency).unwrap_or(i64::MAX);
        if pending.runner == Runner::Local {
            self.record_settled(pending.invocation.clone(), &outcome, latency_ms);
        }
        if let Some(verified) = outcome.identity {
            self.identity_verified = verified;
            let state = if verified {
                IdentityState::Verified
            } else {
                IdentityState::Failed
            };
            self.record(Record::Identity(state));
        }
        tracing::info!(tool = %pending.invocation.name, status = outcome.status.as_str(), latency_ms, "tool call finished");
        let output = truncate_output(outcome.output.clone());
        let waiting = match self.tools.seen.get_mut(call_id) {
            Some(seen) => {
                seen.output = Some(output.clone());
                std::mem::take(&mut seen.waiting)
            }
            None => Vec::new(),
        };
        // One output per function-call item: the invocation's, then its repeats'.
        for _ in 0..=waiting.len() {
            self.send_ai(ClientEvent::function_output(call_id, output.clone()));
        }
        if outcome.respond {
            self.tools.respond_for.insert(pending.response_id);
            self.tools.respond_for.extend(waiting);
        }
        if !self.tools.busy() {
            self.phase(CallPhase::Listening);
        }
        if outcome.status.is_failure() {
            self.tools.failures += 1;
            let failures = self.tools.failures;
            let rule = self.tools.toolbox.as_ref().and_then(|t| {
                t.rule(|r| matches!(r, EscalationTrigger::ToolFailures { count } if failures >= *count))
                    .cloned()
            });
            if let Some(rule) = rule {
                self.escalate(EscalationCause {
                    rule: String::from("tool_failures"),
                    reason: format!("{failures} tool calls failed in this call"),
                    queue: rule.queue,
                    tool_call: None,
                });
            }
        }
        self.pump();
    }

    /// A slow tool: its filler is due.
    pub(super) fn tool_slow(&mut self, call_id: &str) {
        let Some(p) = self.tools.pending.get_mut(call_id) else {
            return;
        };
        if p.filler.is_none() {
            return;
        }
        p.filler_due = true;
        self.pump();
    }

    /// The caller started speaking: calls an interruption cancels are cancelled, without a
    /// response (the caller's new turn drives the next one).
    pub(super) fn cancel_interruptible_tools(&mut self) {
        let cancel: Vec<String> = self
            .tools
            .pending
            .iter()
            .filter(|(_, p)| p.cancel_on_interrupt)
            .map(|(id, _)| id.clone())
            .collect();
        for id in cancel {
            let reason = "cancelled: the caller interrupted before the tool finished";
            self.emit(Effect::CancelTool {
                model_call_id: id.clone(),
                reason: reason.to_owned(),
            });
            let outcome = ToolOutcome {
                respond: false,
                ..ToolOutcome::error(FunctionCallStatus::Cancelled, reason)
            };
            self.tool_done(&id, outcome);
        }
    }

    /// The leg ends: running tasks are cancelled (they record it), and calls the
    /// conversation was still answering are recorded as cancelled.
    pub(super) fn cancel_tools_at_end(&mut self) {
        let reason = "the call ended before the tool finished";
        let pending = std::mem::take(&mut self.tools.pending);
        for (id, p) in pending {
            match p.runner {
                Runner::Task => self.emit(Effect::CancelTool {
                    model_call_id: id,
                    reason: reason.to_owned(),
                }),
                Runner::Local => {
                    let latency = i64::try_from(self.now.saturating_sub(p.started)).unwrap_or(0);
                    let outcome = ToolOutcome::error(FunctionCallStatus::Cancelled, reason);
                    self.record_settled(p.invocation, &outcome, latency);
                }
            }
        }
    }

    /// Records a call the conversation answered itself, whole.
    fn record_settled(&mut self, invocation: Invocation, outcome: &ToolOutcome, latency_ms: i64) {
        self.record(Record::FunctionCall(Box::new(SettledRecord {
            invocation,
            settled: outcome.settled(latency_ms),
        })));
    }
}
