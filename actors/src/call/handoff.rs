//! Escalation and human handoff of a live call (DESIGN §4): which queue takes the caller,
//! the handoff context stored and sent with `voice.call.escalated`, the line the agent says
//! first, then the carrier's `<Dial>` (whose `action` comes back to `/api/v1/dial-result`).
//! When no queue can take the caller, a callback task is created instead.

use ractor::ActorRef;
use serde_json::{Value, json};

use super::tools::{DialPlan, Escalation, LineAction, ToolOutcome};
use super::{CallMsg, CallState};
use crate::ids::HandoffId;
use crate::router::{ControlAction, RouterMsg};
use crate::store::{FunctionCallStatus, Handoff};
use crate::time::now_ms;

/// What the agent says before a transfer when the version sets no line.
const DEFAULT_HANDOFF_LINE: &str =
    "I'm transferring you to a colleague now. Please stay on the line.";
/// What the agent says when a callback task was created instead.
const CALLBACK_LINE: &str = "Nobody is available to take your call right now, so I've arranged for a colleague to call you back as soon as possible.";
/// What the agent says when the queue is closed and the caller stays with the agent.
const STAY_LINE: &str = "I'm sorry, my colleagues are not available right now, but I'll keep helping you as best I can.";

/// Where an escalation goes.
enum Target {
    Dial(crate::operator::OperatorQueue),
    Callback(Option<crate::operator::OperatorQueue>),
    Voicemail(crate::operator::OperatorQueue),
    StayWithAgent(crate::operator::OperatorQueue),
}

impl CallState {
    /// Starts an escalation (one per call). The rule that fired is recorded with the handoff.
    pub(super) async fn escalate(&mut self, myself: &ActorRef<CallMsg>, e: Escalation) {
        if self.tools.escalated || self.tools.ending.is_some() {
            if let Some(id) = e.tool_call {
                let outcome = ToolOutcome::error(
                    FunctionCallStatus::Refused,
                    "a transfer is already in progress for this call",
                );
                self.tool_done(myself, id, outcome).await;
            }
            return;
        }
        self.tools.escalated = true;
        let rule_kind = e.rule.split(':').next().unwrap_or("other").to_owned();
        metrics::counter!("escalations_total", "rule" => bounded_rule(&rule_kind)).increment(1);
        let default_queue = self
            .tools
            .toolbox
            .as_ref()
            .and_then(|t| t.contract.escalation.default_queue.clone());
        let queue_name = e.queue.clone().or(default_queue);
        let queue = match &queue_name {
            Some(name) => match self
                .deps
                .store
                .get_queue_by_name(&self.call.tenant_id, name)
                .await
            {
                Ok(q) => q,
                Err(error) => {
                    tracing::warn!(call_id = %self.call.id, error = %error, "could not read the queue");
                    None
                }
            },
            None => None,
        };
        let now = now_ms();
        let target = match queue {
            Some(q) if q.is_open(now) => Target::Dial(q),
            Some(q) => match q.when_closed {
                crate::operator::QueueFallback::CallbackTask => Target::Callback(Some(q)),
                crate::operator::QueueFallback::Voicemail => Target::Voicemail(q),
                crate::operator::QueueFallback::Agent => Target::StayWithAgent(q),
            },
            None => Target::Callback(None),
        };
        let handoff_id = HandoffId::generate();
        let mut context = self.handoff_context(&e, queue_name.as_deref());
        let mut record = Handoff {
            id: handoff_id.as_str().to_owned(),
            tenant_id: self.call.tenant_id.as_str().to_owned(),
            call_id: self.call.id.as_str().to_owned(),
            queue_id: None,
            queue_name: queue_name.clone(),
            reason: e.reason.clone(),
            rule: e.rule.clone(),
            context: Value::Null,
            status: String::from("dialing"),
            dial_status: None,
            target: None,
            outcome: None,
            callback_task_id: None,
            created_at: now,
            updated_at: now,
        };
        let (line, action, tool_result) = match target {
            Target::Dial(q) => {
                record.queue_id = Some(q.id.as_str().to_owned());
                let line = self
                    .tools
                    .toolbox
                    .as_ref()
                    .and_then(|t| t.contract.escalation.handoff_line.clone())
                    .unwrap_or_else(|| DEFAULT_HANDOFF_LINE.to_owned());
                let plan = DialPlan {
                    handoff_id: handoff_id.clone(),
                    numbers: q.numbers.clone(),
                    caller_id: q.caller_id.clone(),
                    timeout_secs: u32::try_from(q.ring_timeout_seconds).unwrap_or(25),
                    announcement: q.announcement.clone(),
                    queue: q.name.clone(),
                };
                self.phase(crate::active::CallPhase::Handoff);
                (
                    line,
                    Some(LineAction::Dial(Box::new(plan))),
                    json!({
                        "status": "transferring",
                        "queue": q.name,
                        "instructions": "Tell the caller in one short sentence that you are transferring them to a colleague now."
                    }),
                )
            }
            Target::Voicemail(q) => {
                record.queue_id = Some(q.id.as_str().to_owned());
                record.status = String::from("closed");
                record.outcome = Some(String::from("voicemail"));
                let message = q
                    .voicemail_message
                    .clone()
                    .unwrap_or_else(|| CALLBACK_LINE.to_owned());
                (
                    String::from(
                        "Our team is closed right now. I'll pass you to our message line.",
                    ),
                    Some(LineAction::Say(message)),
                    json!({
                        "status": "closed",
                        "queue": q.name,
                        "instructions": "Tell the caller briefly that the team is closed and you are passing them to the message line."
                    }),
                )
            }
            Target::StayWithAgent(q) => {
                record.queue_id = Some(q.id.as_str().to_owned());
                record.status = String::from("closed");
                record.outcome = Some(String::from("agent"));
                self.tools.escalated = false;
                (
                    STAY_LINE.to_owned(),
                    None,
                    json!({
                        "status": "unavailable",
                        "queue": q.name,
                        "instructions": "No human is available now: tell the caller and keep helping them yourself."
                    }),
                )
            }
            Target::Callback(q) => {
                record.queue_id = q.as_ref().map(|q| q.id.as_str().to_owned());
                record.status = String::from("closed");
                record.outcome = Some(String::from("callback_task"));
                let queue_id = q.as_ref().map(|q| q.id.clone());
                match self
                    .create_callback(
                        self.caller().to_owned(),
                        e.reason.clone(),
                        queue_id,
                        None,
                        crate::operator::CallbackSource::Handoff,
                    )
                    .await
                {
                    Ok(task) => {
                        record.callback_task_id = Some(task.clone());
                        (
                            CALLBACK_LINE.to_owned(),
                            None,
                            json!({
                                "status": "callback_scheduled",
                                "task_id": task,
                                "instructions": "Tell the caller nobody is available right now and a colleague will call them back."
                            }),
                        )
                    }
                    Err(why) => {
                        record.status = String::from("failed");
                        record.outcome = None;
                        (
                            STAY_LINE.to_owned(),
                            None,
                            json!({"status": "unavailable", "error": why}),
                        )
                    }
                }
            }
        };
        context["outcome"] = json!(record.outcome);
        record.context = context;
        if let Err(error) = self.deps.store.insert_handoff(&record).await {
            tracing::warn!(call_id = %self.call.id, error = %error, "could not record the handoff");
        }
        let _ = self
            .deps
            .store
            .add_call_event(
                &self.call.id,
                "handoff",
                &json!({"handoff_id": record.id, "rule": record.rule, "queue": record.queue_name, "status": record.status, "outcome": record.outcome}),
            )
            .await;
        tracing::info!(call_id = %self.call.id, rule = %record.rule, queue = ?record.queue_name, status = %record.status, "escalation");
        self.emit(
            crate::notifier::EventKind::CallEscalated,
            json!({
                "call_id": self.call.id.as_str(),
                "call_sid": self.call.call_sid,
                "handoff_id": record.id,
                "queue": record.queue_name,
                "status": record.status,
                "outcome": record.outcome,
                "callback_task_id": record.callback_task_id,
                "context": record.context,
            }),
        )
        .await;
        self.plan_line(
            myself,
            action.unwrap_or(LineAction::Nothing),
            e.tool_call.is_none().then_some(line),
        );
        match e.tool_call {
            Some(id) => {
                self.tool_done(myself, id, ToolOutcome::ok(tool_result))
                    .await
            }
            None => self.maybe_respond().await,
        }
    }

    /// The context a human gets: reason, rule, summary of the last turns, identity, caller.
    fn handoff_context(&self, e: &Escalation, queue: Option<&str>) -> Value {
        let start = self
            .history
            .len()
            .saturating_sub(super::tools::SUMMARY_TURNS);
        let turns: Vec<Value> = self.history[start..]
            .iter()
            .map(|(role, text)| json!({"role": role, "text": text}))
            .collect();
        let summary = self.history[start..]
            .iter()
            .map(|(role, text)| {
                let who = if role == "assistant" {
                    "Agent"
                } else {
                    "Caller"
                };
                format!("{who}: {text}")
            })
            .collect::<Vec<_>>()
            .join("\n");
        json!({
            "reason": e.reason,
            "rule": e.rule,
            "queue": queue,
            "summary": summary,
            "last_turns": turns,
            "identity": {"verified": self.tools.identity_verified},
            "caller": self.caller(),
            "call_id": self.call.id.as_str(),
            "call_sid": self.call.call_sid,
            "agent_key": self.call.agent_key,
        })
    }

    /// The line played: tell the carrier to dial the queue.
    pub(super) async fn dial(&mut self, myself: &ActorRef<CallMsg>, plan: DialPlan) {
        let action = ControlAction::Handoff {
            numbers: plan.numbers.clone(),
            announcement: plan.announcement.clone(),
            caller_id: plan.caller_id.clone(),
            timeout_secs: plan.timeout_secs,
            handoff: plan.handoff_id.clone(),
        };
        self.tools.ending = Some("escalated");
        let _ = self
            .deps
            .store
            .set_after_stream(&self.call.id, Some("handoff"))
            .await;
        // Recorded before the carrier is asked: the dial's result (`/api/v1/dial-result`, which
        // the router settles) can only come after it, never be overwritten by it.
        let _ = self
            .deps
            .store
            .set_escalated(&self.call.id, &format!("queue:{}", plan.queue))
            .await;
        match self.control(action).await {
            Ok(()) => {
                metrics::counter!("handoffs_total", "outcome" => "dialing").increment(1);
            }
            Err(why) => {
                tracing::warn!(call_id = %self.call.id, error = %why, "the carrier refused the transfer; creating a callback task");
                metrics::counter!("handoffs_total", "outcome" => "carrier_error").increment(1);
                self.tools.ending = None;
                // Not escalated, nothing planned after the stream: the caller stays.
                let _ = self.deps.store.resume_after_handoff(&self.call.id).await;
                let task = self
                    .create_callback(
                        self.caller().to_owned(),
                        format!("transfer to {} failed: {why}", plan.queue),
                        None,
                        None,
                        crate::operator::CallbackSource::Handoff,
                    )
                    .await
                    .ok();
                let _ = self
                    .deps
                    .store
                    .finish_handoff(
                        &plan.handoff_id,
                        "failed",
                        "carrier_error",
                        None,
                        if task.is_some() {
                            "callback_task"
                        } else {
                            "agent"
                        },
                        task.as_deref(),
                    )
                    .await;
                self.plan_line(myself, LineAction::Nothing, Some(CALLBACK_LINE.to_owned()));
                self.maybe_respond().await;
            }
        }
    }

    /// Asks the router (which holds the tenant's carrier credentials) to change this call.
    pub(super) async fn control(&self, action: ControlAction) -> Result<(), String> {
        let Some(router) = self.deps.router.as_ref().and_then(|r| r.get()) else {
            return Err(String::from("the router is restarting"));
        };
        let Some(sid) = self.call.call_sid.clone() else {
            return Err(String::from("the call has no carrier id"));
        };
        match ractor::call_t!(
            router,
            RouterMsg::Control,
            10_000,
            self.call.tenant_id.clone(),
            sid,
            action
        ) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Creates a callback task for this call and announces it; returns the task id.
    pub(super) async fn create_callback(
        &self,
        phone: String,
        reason: String,
        queue_id: Option<crate::ids::QueueId>,
        due_at: Option<i64>,
        created_by: crate::operator::CallbackSource,
    ) -> Result<String, String> {
        crate::callbacks::create(
            &self.deps.store,
            self.deps.notifier.as_ref(),
            crate::operator::NewCallbackTask {
                tenant_id: self.call.tenant_id.clone(),
                phone,
                reason,
                source_call_id: Some(self.call.id.clone()),
                queue_id,
                priority: crate::operator::CallbackPriority::Normal,
                due_at,
                created_by,
            },
        )
        .await
    }

    /// Emits a tenant event (persisted in the outbox before this returns).
    pub(super) async fn emit(&self, kind: crate::notifier::EventKind, data: Value) {
        if let Some(notifier) = &self.deps.notifier
            && let Err(error) = notifier.emit(&self.call.tenant_id, kind, data).await
        {
            tracing::warn!(call_id = %self.call.id, error = %error, "could not record a tenant event");
        }
    }
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
