//! Tool calls of a live call (PROTOCOLS §4.7, §5.3): the call actor's side of the agent
//! contract.
//!
//! - Every function call the model emits gets exactly one `function_call_output` (an error
//!   string on refusal, invalid arguments, failure, timeout or cancellation), and
//!   `response.create` is sent only once the response that held the call is done and every
//!   call of that response has its output. A call id the model emits again (a retry) is
//!   never run again: the repeat gets the first invocation's output.
//! - Each invocation is recorded before it runs; the record's (call, model call id) key is
//!   the idempotency check, and webhook requests carry it as `Idempotency-Key`.
//! - Webhook tools and built-ins that do I/O run in tasks: audio keeps flowing and the actor
//!   keeps handling control events; results come back as [`CallMsg::ToolDone`].
//! - Escalation rules (caller asks for a human, tool failures, call duration, intents) and
//!   `transfer_to_human` start a handoff; the handoff line (and `end_call`'s goodbye) is
//!   played to the end, known from mark echoes, before the carrier is told to dial (or hang
//!   up).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorRef;
use serde_json::{Value, json};
use tokio::task::AbortHandle;

use super::{CallMsg, CallState};
use crate::contract::{Builtin, EscalationTrigger, ToolSpec, ToolType, Toolbox};
use crate::realtime::{ClientEvent, FunctionCallArgumentsDone};
use crate::store::{FunctionCallStatus, NewFunctionCall};

/// Largest tool response body accepted.
pub const MAX_TOOL_RESPONSE: usize = 64 * 1024;
/// Longest output given to the model (characters).
const MAX_OUTPUT_CHARS: usize = 16 * 1024;
/// How long a handoff line or goodbye may take before the carrier is asked anyway.
pub const LINE_DEADLINE: Duration = Duration::from_secs(20);
/// Turns included in a handoff summary.
pub(super) const SUMMARY_TURNS: usize = 8;

/// What a finished tool gives back.
#[derive(Debug, Clone)]
pub struct ToolOutcome {
    /// Status recorded.
    pub status: FunctionCallStatus,
    /// Output given to the model.
    pub output: String,
    /// Whether a `response.create` follows (false when the caller interrupted: the new
    /// caller turn drives the next response).
    pub respond: bool,
    /// Side effect for the actor.
    pub effect: Option<ToolEffect>,
}

/// A side effect of a built-in that the actor applies.
#[derive(Debug, Clone)]
pub enum ToolEffect {
    /// `verify_identity` answered.
    Identity(bool),
}

impl ToolOutcome {
    /// A success with a JSON result.
    pub fn ok(result: Value) -> Self {
        Self {
            status: FunctionCallStatus::Succeeded,
            output: result.to_string(),
            respond: true,
            effect: None,
        }
    }

    /// A failure of `status` with an error message.
    pub fn error(status: FunctionCallStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            output: json!({"error": message.into()}).to_string(),
            respond: true,
            effect: None,
        }
    }

    fn error_text(&self) -> Option<String> {
        if self.status == FunctionCallStatus::Succeeded {
            return None;
        }
        serde_json::from_str::<Value>(&self.output)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .or_else(|| Some(self.output.clone()))
    }
}

/// A tool call waiting for its result.
#[derive(Debug)]
struct Pending {
    record_id: Option<String>,
    name: String,
    response_id: String,
    started: Instant,
    task: Option<AbortHandle>,
    cancel_on_interrupt: bool,
    filler: Option<String>,
    filler_due: bool,
}

/// A model call id seen in this call.
#[derive(Debug, Default)]
struct Invocation {
    /// The `function_call` items that carried it (the model may emit it again, e.g. when
    /// it retries; each item needs an output).
    items: HashSet<String>,
    /// The output given, once the invocation finished.
    output: Option<String>,
    /// Responses holding a repeat of it, answered when it finishes.
    waiting: Vec<String>,
}

/// What happens once the agent's line has played.
#[derive(Debug, Clone)]
pub enum LineAction {
    /// Dial the queue.
    Dial(Box<DialPlan>),
    /// Hang up.
    Hangup,
    /// Let the carrier say a message, then hang up (a closed queue's voicemail line).
    Say(String),
    /// Nothing: the line is all (a callback task was created, or the caller stays).
    Nothing,
}

/// A planned transfer to a queue.
#[derive(Debug, Clone)]
pub struct DialPlan {
    /// The handoff record.
    pub handoff_id: crate::ids::HandoffId,
    /// Numbers rung simultaneously.
    pub numbers: Vec<String>,
    /// Caller id for the dialed leg.
    pub caller_id: Option<String>,
    /// Ring timeout.
    pub timeout_secs: u32,
    /// Said by the carrier before dialing.
    pub announcement: Option<String>,
    /// Queue name (the escalation target until someone answers).
    pub queue: String,
}

/// A line the agent says before an action (handoff or hangup).
#[derive(Debug)]
struct AfterLine {
    action: LineAction,
    /// Exact words to say (rule-triggered handoffs), else the model's own reply to the tool
    /// output.
    say: Option<String>,
    /// The `response.create` for the line was sent.
    requested: bool,
    /// The `event_id` of that `response.create` (an exact line), to notice its refusal.
    request_id: Option<String>,
    /// The line's response is done; waiting for its audio to play out.
    draining: bool,
    /// Which line this is (its deadline names it, so an older line's deadline is ignored).
    epoch: u64,
}

/// Tool and escalation state of one call.
#[derive(Debug, Default)]
pub struct ToolState {
    /// The version's compiled contract.
    pub toolbox: Option<Arc<Toolbox>>,
    pending: HashMap<String, Pending>,
    /// Every model call id seen in this call (a repeated one never runs twice).
    invocations: HashMap<String, Invocation>,
    /// Responses whose calls all have outputs and that still need a `response.create`.
    respond_for: HashSet<String>,
    failures: u32,
    /// `verify_identity` succeeded in this call.
    pub identity_verified: bool,
    /// An escalation already started (one per call).
    pub escalated: bool,
    after_line: Option<AfterLine>,
    /// Lines planned so far (names their requests).
    lines: u64,
    /// Set once the carrier was told to dial or hang up: the end reason of the call.
    pub ending: Option<&'static str>,
    /// The end reason a planned hangup records (default `agent_ended_call`).
    pub ending_reason_hint: Option<&'static str>,
    /// Event id of the last `response.create` asking the model to speak about tool results.
    outputs_request: Option<String>,
    /// That request was refused (another response was active): it is sent again once that
    /// one is done.
    retry_response: bool,
}

impl ToolState {
    /// The state of a call running `toolbox` (none: the call has no agent version).
    pub fn new(toolbox: Option<Arc<Toolbox>>) -> Self {
        Self {
            toolbox,
            ..Self::default()
        }
    }

    /// Whether any tool call is still running.
    pub fn busy(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Plans a line (exact words, or the model's reply to a tool output) and what follows
    /// it; returns the line's epoch.
    fn set_line(&mut self, action: LineAction, say: Option<String>) -> u64 {
        self.lines += 1;
        self.after_line = Some(AfterLine {
            action,
            say,
            requested: false,
            request_id: None,
            draining: false,
            epoch: self.lines,
        });
        self.lines
    }

    /// Whether a line (handoff, goodbye) is planned.
    pub fn has_line(&self) -> bool {
        self.after_line.is_some()
    }

    /// Removes every running call: (record id, ms since it started).
    pub fn drain_pending(&mut self) -> Vec<(String, i64)> {
        self.pending
            .drain()
            .filter_map(|(_, p)| {
                let latency = i64::try_from(p.started.elapsed().as_millis()).unwrap_or(i64::MAX);
                p.record_id.map(|r| (r, latency))
            })
            .collect()
    }

    /// Aborts every running tool task (the call is ending).
    pub fn abort_all(&mut self) {
        for p in self.pending.values() {
            if let Some(task) = &p.task {
                task.abort();
            }
        }
    }
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

impl CallState {
    /// The model called a function.
    pub(super) async fn on_function_call(
        &mut self,
        myself: &ActorRef<CallMsg>,
        f: FunctionCallArgumentsDone,
    ) {
        if let Some(invocation) = self.tools.invocations.get_mut(&f.call_id) {
            if !invocation.items.insert(f.item_id.clone()) {
                // The same item reported twice: it has (or will get) its output.
                return;
            }
            // The model emitted an invocation it made before (a retry): it never runs twice.
            // This item gets the first one's output (once there is one), then a response.
            tracing::info!(call_id = %self.call.id, tool = %f.name, model_call_id = %f.call_id, "repeated tool invocation answered with its first result");
            metrics::counter!("tool_calls_repeated_total").increment(1);
            match invocation.output.clone() {
                Some(output) => {
                    self.send_ai(ClientEvent::function_output(f.call_id, output))
                        .await;
                    self.tools.respond_for.insert(f.response_id);
                    self.maybe_respond().await;
                }
                None => invocation.waiting.push(f.response_id),
            }
            return;
        }
        self.tools.invocations.insert(
            f.call_id.clone(),
            Invocation {
                items: HashSet::from([f.item_id.clone()]),
                ..Invocation::default()
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
        let started = self
            .deps
            .store
            .start_function_call(&NewFunctionCall {
                tenant_id: &self.call.tenant_id,
                call_id: &self.call.id,
                session_id: &self.session_id,
                model_call_id: &f.call_id,
                name: &f.name,
                kind,
                arguments: &f.arguments,
            })
            .await;
        let record_id = match started {
            Ok(Some(id)) => Some(id),
            Ok(None) => {
                // Recorded before, by an earlier stream of this call (the same invocation
                // again): never run it twice, but answer it and let the model go on.
                tracing::info!(call_id = %self.call.id, tool = %f.name, model_call_id = %f.call_id, "repeated tool invocation not run again");
                let output =
                    json!({"error": "this invocation already ran; its result was given before"})
                        .to_string();
                if let Some(invocation) = self.tools.invocations.get_mut(&f.call_id) {
                    invocation.output = Some(output.clone());
                }
                self.send_ai(ClientEvent::function_output(f.call_id, output))
                    .await;
                self.tools.respond_for.insert(f.response_id);
                self.maybe_respond().await;
                return;
            }
            Err(error) => {
                tracing::warn!(call_id = %self.call.id, error = %error, "could not record a function call");
                None
            }
        };
        self.tools.pending.insert(
            f.call_id.clone(),
            Pending {
                record_id,
                name: f.name.clone(),
                response_id: f.response_id.clone(),
                started: Instant::now(),
                task: None,
                cancel_on_interrupt: false,
                filler: None,
                filler_due: false,
            },
        );
        self.phase(crate::active::CallPhase::Tool);
        let call_id = f.call_id;
        let Some(spec) = spec else {
            let outcome = ToolOutcome::error(
                FunctionCallStatus::Refused,
                format!("tool {} is not available", f.name),
            );
            return self.tool_done(myself, call_id, outcome).await;
        };
        let args: Value = match serde_json::from_str(&f.arguments) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                let outcome = ToolOutcome::error(
                    FunctionCallStatus::Invalid,
                    "the arguments are not a JSON object",
                );
                return self.tool_done(myself, call_id, outcome).await;
            }
        };
        if spec.requires_identity && !self.tools.identity_verified {
            let outcome = ToolOutcome::error(
                FunctionCallStatus::Refused,
                format!(
                    "{} needs a verified caller: ask the caller for the facts and call verify_identity first",
                    spec.name
                ),
            );
            return self.tool_done(myself, call_id, outcome).await;
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
            return self.tool_done(myself, call_id, outcome).await;
        }
        match spec.builtin() {
            None => self.start_webhook(myself, &call_id, &spec, args),
            Some(builtin) => self.run_builtin(myself, call_id, builtin, args).await,
        }
    }

    fn invocation_key(&self, model_call_id: &str) -> String {
        format!("{}:{model_call_id}", self.call.id)
    }

    fn call_context(&self) -> Value {
        json!({
            "id": self.call.id.as_str(),
            "call_sid": self.call.call_sid,
            "direction": self.call.direction.as_str(),
            "from": self.call.from_number,
            "to": self.call.to_number,
            "agent_key": self.call.agent_key,
            "agent_version_id": self.call.agent_version_id,
        })
    }

    fn start_webhook(
        &mut self,
        myself: &ActorRef<CallMsg>,
        call_id: &str,
        spec: &ToolSpec,
        args: Value,
    ) {
        let body = json!({
            "invocation_id": self.invocation_key(call_id),
            "tool": spec.name,
            "arguments": args,
            "call": self.call_context(),
            "identity": {"verified": self.tools.identity_verified},
            "tenant_id": self.call.tenant_id.as_str(),
        });
        let request = super::webhook::Request {
            url: spec.url.clone().unwrap_or_default(),
            body,
            idempotency_key: self.invocation_key(call_id),
            timeout: Duration::from_millis(spec.timeout_ms),
            tool: spec.name.clone(),
        };
        let task = super::webhook::spawn(
            self.deps.clone(),
            self.call.tenant_id.clone(),
            request,
            myself.clone(),
            call_id.to_owned(),
            |response| match response {
                Ok(value) => ToolOutcome::ok(value),
                Err(failure) => failure.outcome(),
            },
        );
        if let Some(p) = self.tools.pending.get_mut(call_id) {
            p.task = Some(task.clone());
            p.cancel_on_interrupt = spec.cancel_on_interrupt;
            p.filler = spec.filler.clone();
        }
        self.guard.readers.push(task);
        if spec.filler.is_some() {
            let id = call_id.to_owned();
            myself.send_after(Duration::from_millis(spec.filler_after_ms), move || {
                CallMsg::ToolSlow(id)
            });
        }
    }

    async fn run_builtin(
        &mut self,
        myself: &ActorRef<CallMsg>,
        call_id: String,
        builtin: Builtin,
        args: Value,
    ) {
        match builtin {
            Builtin::TransferToHuman => {
                let reason = str_arg(&args, "reason").unwrap_or_else(|| "caller asked".into());
                let queue = str_arg(&args, "queue");
                self.escalate(
                    myself,
                    Escalation {
                        rule: String::from("tool:transfer_to_human"),
                        reason,
                        queue,
                        tool_call: Some(call_id),
                    },
                )
                .await;
            }
            Builtin::ReportIntent => {
                let intent = str_arg(&args, "intent").unwrap_or_default();
                let rule = self.tools.toolbox.as_ref().and_then(|t| {
                    t.rule(|r| matches!(r, EscalationTrigger::Intent { intents } if intents.contains(&intent)))
                        .cloned()
                });
                match rule {
                    Some(rule) => {
                        self.escalate(
                            myself,
                            Escalation {
                                rule: format!("intent:{intent}"),
                                reason: format!("the caller's intent is {intent}"),
                                queue: rule.queue,
                                tool_call: Some(call_id),
                            },
                        )
                        .await;
                    }
                    None => {
                        self.tool_done(
                            myself,
                            call_id,
                            ToolOutcome::ok(json!({"status": "noted", "intent": intent})),
                        )
                        .await;
                    }
                }
            }
            Builtin::EndCall => {
                if self.tools.after_line.is_some() {
                    let outcome = ToolOutcome::error(
                        FunctionCallStatus::Refused,
                        "the call is already being transferred or ended",
                    );
                    return self.tool_done(myself, call_id, outcome).await;
                }
                self.plan_line(myself, LineAction::Hangup, None);
                let outcome = ToolOutcome::ok(json!({
                    "status": "ending",
                    "instructions": "Say a brief goodbye now; the call ends when you finish speaking."
                }));
                self.tool_done(myself, call_id, outcome).await;
            }
            Builtin::CreateCallbackTask => {
                let phone = str_arg(&args, "phone").unwrap_or_else(|| self.caller().to_owned());
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
                            return self.tool_done(myself, call_id, outcome).await;
                        }
                    },
                };
                let outcome = match self
                    .create_callback(
                        phone,
                        reason,
                        None,
                        due_at,
                        crate::operator::CallbackSource::Tool,
                    )
                    .await
                {
                    Ok(task_id) => {
                        ToolOutcome::ok(json!({"status": "created", "task_id": task_id}))
                    }
                    Err(why) => ToolOutcome::error(FunctionCallStatus::Failed, why),
                };
                self.tool_done(myself, call_id, outcome).await;
            }
            Builtin::SendFollowupSms => {
                let body = str_arg(&args, "body").unwrap_or_default();
                let task = super::webhook::spawn_sms(
                    self.deps.clone(),
                    self.call.clone(),
                    body,
                    myself.clone(),
                    call_id.clone(),
                );
                if let Some(p) = self.tools.pending.get_mut(&call_id) {
                    p.task = Some(task.clone());
                }
                self.guard.readers.push(task);
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
                    return self.tool_done(myself, call_id, outcome).await;
                };
                let request = super::webhook::Request {
                    url: check.url,
                    body: json!({
                        "invocation_id": self.invocation_key(&call_id),
                        "call": self.call_context(),
                        "facts": args,
                        "tenant_id": self.call.tenant_id.as_str(),
                    }),
                    idempotency_key: self.invocation_key(&call_id),
                    timeout: Duration::from_millis(check.timeout_ms),
                    tool: String::from("verify_identity"),
                };
                let task = super::webhook::spawn(
                    self.deps.clone(),
                    self.call.tenant_id.clone(),
                    request,
                    myself.clone(),
                    call_id.clone(),
                    |response| match response {
                        Ok(value) => {
                            let verified = value.get("verified").and_then(Value::as_bool);
                            match verified {
                                Some(v) => ToolOutcome {
                                    effect: Some(ToolEffect::Identity(v)),
                                    ..ToolOutcome::ok(json!({"verified": v}))
                                },
                                None => ToolOutcome::error(
                                    FunctionCallStatus::Failed,
                                    "the identity service did not answer {\"verified\": true|false}",
                                ),
                            }
                        }
                        Err(failure) => failure.outcome(),
                    },
                );
                if let Some(p) = self.tools.pending.get_mut(&call_id) {
                    p.task = Some(task.clone());
                }
                self.guard.readers.push(task);
            }
        }
    }

    /// The caller's number.
    pub(super) fn caller(&self) -> &str {
        match self.call.direction {
            crate::store::CallDirection::Inbound => &self.call.from_number,
            crate::store::CallDirection::Outbound => &self.call.to_number,
        }
    }

    /// A tool call finished: record it, answer the model, count failures.
    pub(super) async fn tool_done(
        &mut self,
        myself: &ActorRef<CallMsg>,
        call_id: String,
        outcome: ToolOutcome,
    ) {
        let Some(pending) = self.tools.pending.remove(&call_id) else {
            return;
        };
        let latency = i64::try_from(pending.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        metrics::histogram!("tool_call_seconds", "outcome" => outcome.status.as_str())
            .record(pending.started.elapsed().as_secs_f64());
        let output = truncate_output(outcome.output.clone());
        if let Some(id) = &pending.record_id {
            let (result, error) = if outcome.status == FunctionCallStatus::Succeeded {
                (Some(output.as_str()), None)
            } else {
                (None, outcome.error_text())
            };
            if let Err(e) = self
                .deps
                .store
                .finish_function_call(id, outcome.status, result, error.as_deref(), latency)
                .await
            {
                tracing::warn!(call_id = %self.call.id, error = %e, "could not record a function call result");
            }
        }
        if let Some(ToolEffect::Identity(verified)) = outcome.effect {
            self.tools.identity_verified = verified;
            let state = if verified { "verified" } else { "failed" };
            if let Err(e) = self
                .deps
                .store
                .set_identity_state(&self.call.id, state)
                .await
            {
                tracing::warn!(call_id = %self.call.id, error = %e, "could not record the identity state");
            }
        }
        tracing::info!(call_id = %self.call.id, tool = %pending.name, status = outcome.status.as_str(), latency_ms = latency, "tool call finished");
        let waiting = match self.tools.invocations.get_mut(&call_id) {
            Some(invocation) => {
                invocation.output = Some(output.clone());
                std::mem::take(&mut invocation.waiting)
            }
            None => Vec::new(),
        };
        // One output per function-call item: the invocation's, then its repeats'.
        for _ in 0..=waiting.len() {
            self.send_ai(ClientEvent::function_output(
                call_id.clone(),
                output.clone(),
            ))
            .await;
        }
        if outcome.respond {
            self.tools.respond_for.insert(pending.response_id.clone());
            self.tools.respond_for.extend(waiting);
        }
        if !self.tools.busy() {
            self.phase(crate::active::CallPhase::Listening);
        }
        if outcome.status.is_failure() {
            self.tools.failures += 1;
            let threshold = self.tools.toolbox.as_ref().and_then(|t| {
                t.rule(|r| matches!(r, EscalationTrigger::ToolFailures { count } if self.tools.failures >= *count))
                    .cloned()
            });
            if let Some(rule) = threshold {
                // Boxed: an escalation answers tool calls itself (tool_done ↔ escalate).
                Box::pin(self.escalate(
                    myself,
                    Escalation {
                        rule: String::from("tool_failures"),
                        reason: format!("{} tool calls failed in this call", self.tools.failures),
                        queue: rule.queue,
                        tool_call: None,
                    },
                ))
                .await;
            }
        }
        self.maybe_respond().await;
    }

    /// Sends `response.create` when no response is active and some finished response has all
    /// its tool outputs; or the pending line of a handoff / goodbye.
    pub(super) async fn maybe_respond(&mut self) {
        if self.response_active {
            return;
        }
        if let Some(line) = self.tools.after_line.as_mut()
            && !line.requested
            && let Some(say) = line.say.clone()
        {
            let request_id = format!("line_{}", self.tools.lines);
            line.requested = true;
            line.request_id = Some(request_id.clone());
            self.tools.respond_for.clear();
            self.response_active = true;
            self.send_ai(
                ClientEvent::response_with_instructions(format!("Say exactly: {say}"))
                    .with_event_id(request_id),
            )
            .await;
            return;
        }
        if self.tools.retry_response {
            self.tools.retry_response = false;
            self.send_outputs_request().await;
            return;
        }
        let ready: Vec<String> = self
            .tools
            .respond_for
            .iter()
            .filter(|r| !self.tools.pending.values().any(|p| &p.response_id == *r))
            .cloned()
            .collect();
        if ready.is_empty() {
            // A slow tool whose filler is due speaks it now.
            let due = self
                .tools
                .pending
                .values_mut()
                .find(|p| p.filler_due && p.filler.is_some());
            if let Some(p) = due {
                p.filler_due = false;
                let filler = p.filler.take().unwrap_or_default();
                self.response_active = true;
                metrics::counter!("tool_fillers_total").increment(1);
                self.send_ai(ClientEvent::response_with_instructions(format!(
                    "Say exactly: {filler}"
                )))
                .await;
            }
            return;
        }
        for r in ready {
            self.tools.respond_for.remove(&r);
        }
        if let Some(line) = self.tools.after_line.as_mut() {
            line.requested = true;
        }
        self.send_outputs_request().await;
    }

    /// Asks the model to speak about the tool results it was given.
    async fn send_outputs_request(&mut self) {
        self.tools.lines += 1;
        let request_id = format!("outputs_{}", self.tools.lines);
        self.tools.outputs_request = Some(request_id.clone());
        self.response_active = true;
        self.send_ai(ClientEvent::response_create().with_event_id(request_id))
            .await;
    }

    /// The model refused a `response.create` because a response is active. When it was the
    /// request for an exact line (a rule-triggered handoff line, the idle goodbye), the line
    /// is asked for again once that response is done: the runtime decided to speak right
    /// after a caller turn, while server VAD was starting the model's own reply to it (the
    /// reply's `response.created` can come after the turn's transcript).
    /// A refused request to speak about tool results is likewise sent again; anything else
    /// refused (a filler, whose moment has passed) is not.
    pub(super) fn response_refused(&mut self, event_id: Option<&str>) {
        if event_id.is_some() && self.tools.outputs_request.as_deref() == event_id {
            self.tools.outputs_request = None;
            self.tools.retry_response = true;
        }
        self.response_active = true;
        if let Some(line) = self.tools.after_line.as_mut()
            && line.requested
            && !line.draining
            && event_id.is_some()
            && line.request_id.as_deref() == event_id
        {
            tracing::info!(call_id = %self.call.id, "line request refused during an active response; asking again after it");
            line.requested = false;
            line.request_id = None;
        }
    }

    /// A slow tool: its filler is due.
    pub(super) async fn tool_slow(&mut self, call_id: &str) {
        let Some(p) = self.tools.pending.get_mut(call_id) else {
            return;
        };
        if p.filler.is_none() {
            return;
        }
        p.filler_due = true;
        self.maybe_respond().await;
    }

    /// The caller started speaking: tools that an interruption cancels are cancelled.
    pub(super) async fn tools_interrupted(&mut self, myself: &ActorRef<CallMsg>) {
        let cancel: Vec<String> = self
            .tools
            .pending
            .iter()
            .filter(|(_, p)| p.cancel_on_interrupt)
            .map(|(id, _)| id.clone())
            .collect();
        for id in cancel {
            if let Some(task) = self.tools.pending.get(&id).and_then(|p| p.task.clone()) {
                task.abort();
            }
            let outcome = ToolOutcome {
                respond: false,
                ..ToolOutcome::error(
                    FunctionCallStatus::Cancelled,
                    "cancelled: the caller interrupted before the tool finished",
                )
            };
            self.tool_done(myself, id, outcome).await;
        }
    }

    /// A response finished: a pending line may now drain, and tool outputs may now get their
    /// `response.create`.
    pub(super) async fn tools_response_done(&mut self, myself: &ActorRef<CallMsg>) {
        if let Some(line) = self.tools.after_line.as_mut()
            && line.requested
            && !line.draining
        {
            line.draining = true;
        }
        self.maybe_respond().await;
        self.check_line_played(myself).await;
    }

    /// A mark echo arrived (or a response finished): when the line has played out, act.
    pub(super) async fn check_line_played(&mut self, myself: &ActorRef<CallMsg>) {
        let draining = self.tools.after_line.as_ref().is_some_and(|l| l.draining);
        let playing = self
            .playback
            .lock()
            .map(|p| p.is_playing())
            .unwrap_or(false);
        if draining && !playing {
            self.run_line_action(myself).await;
        }
    }

    /// The line's deadline passed: act now.
    /// Plans a line and what follows it, with its deadline ([`LINE_DEADLINE`]).
    pub(super) fn plan_line(
        &mut self,
        myself: &ActorRef<CallMsg>,
        action: LineAction,
        say: Option<String>,
    ) {
        let epoch = self.tools.set_line(action, say);
        myself.send_after(LINE_DEADLINE, move || CallMsg::LineDeadline(epoch));
    }

    /// The deadline of line `epoch` passed: if that line is still pending, act now.
    pub(super) async fn line_deadline(&mut self, myself: &ActorRef<CallMsg>, epoch: u64) {
        if self
            .tools
            .after_line
            .as_ref()
            .is_some_and(|l| l.epoch == epoch)
        {
            tracing::info!(call_id = %self.call.id, "line did not finish playing in time; acting now");
            self.run_line_action(myself).await;
        }
    }

    async fn run_line_action(&mut self, myself: &ActorRef<CallMsg>) {
        let Some(line) = self.tools.after_line.take() else {
            return;
        };
        match line.action {
            LineAction::Hangup => {
                let reason = self.tools.ending_reason_hint.unwrap_or("agent_ended_call");
                self.tools.ending = Some(reason);
                let _ = self
                    .deps
                    .store
                    .set_after_stream(&self.call.id, Some("hangup"))
                    .await;
                // Recorded before the carrier is asked: the router records a hang-up it is
                // asked for as `hangup_requested` (the first reason recorded is kept), which
                // is right for the API's hang-up, not for the agent's own.
                let _ = self.deps.store.set_end_reason(&self.call.id, reason).await;
                if let Err(why) = self.control(crate::router::ControlAction::Hangup).await {
                    tracing::warn!(call_id = %self.call.id, error = %why, "hangup through the carrier failed; closing the stream");
                    let reason = self.tools.ending.unwrap_or("agent_ended_call");
                    self.finish(reason).await;
                    myself.stop(Some(reason.to_owned()));
                }
            }
            LineAction::Dial(plan) => self.dial(myself, *plan).await,
            LineAction::Say(message) => {
                self.tools.ending = Some("escalated_voicemail");
                let _ = self
                    .deps
                    .store
                    .set_after_stream(&self.call.id, Some("hangup"))
                    .await;
                if let Err(why) = self
                    .control(crate::router::ControlAction::Say { message })
                    .await
                {
                    tracing::warn!(call_id = %self.call.id, error = %why, "the carrier refused the message; the caller stays with the agent");
                    self.tools.ending = None;
                    let _ = self.deps.store.set_after_stream(&self.call.id, None).await;
                }
            }
            LineAction::Nothing => {}
        }
    }
}

/// A request to move the caller to a human.
#[derive(Debug, Clone)]
pub struct Escalation {
    /// `tool:transfer_to_human`, `caller_asks_for_human`, `tool_failures`, `call_duration`,
    /// `intent:{name}`.
    pub rule: String,
    /// Why.
    pub reason: String,
    /// Queue name (else the default queue).
    pub queue: Option<String>,
    /// The tool call that asked (answered here).
    pub tool_call: Option<String>,
}
