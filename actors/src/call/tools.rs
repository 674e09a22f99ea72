//! Tool tasks: a tool call the conversation decided to run ([`ToolJob`]) runs off the call
//! actor and owns its record. The task records the invocation before anything runs — the
//! (call, model call id) key is the idempotency check, so an invocation recorded before
//! (another stream of the call) never runs again — then does the work (a signed webhook, the
//! identity check, a callback task, an SMS through the carrier), records the result, and
//! reports it to the actor as [`CallMsg::ToolDone`].
//!
//! A task is cancelled by its [`RunningTool`] (explicitly, with a reason, or by being
//! dropped when the call ends or its actor dies): it then records the invocation as
//! `cancelled` and reports nothing, so no tool outcome is left unrecorded.

use std::sync::Arc;
use std::time::Instant;

use ractor::ActorRef;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::conversation::{ToolJob, ToolOutcome, ToolWork};
use super::recorder::Owner;
use super::webhook::{self, Request};
use super::{CallDeps, CallMsg};
use crate::store::{CallRecord, FunctionCallStatus};

/// Why a tool cancelled by dropping its handle ended.
const CALL_ENDED: &str = "the call ended before the tool finished";
/// The output of an invocation another stream of the call recorded first.
const ALREADY_RAN: &str = "this invocation already ran; its result was given before";

/// What every tool task of a call needs.
#[derive(Clone)]
pub(super) struct ToolContext {
    /// Dependencies (store, egress, tenant, carrier control).
    pub deps: CallDeps,
    /// The call.
    pub call: Arc<CallRecord>,
    /// Whose records (call, tenant, voice session of this stream).
    pub owner: Owner,
    /// The call actor, told the result.
    pub actor: ActorRef<CallMsg>,
}

/// A running tool task.
pub(super) struct RunningTool {
    cancel: oneshot::Sender<String>,
    join: JoinHandle<()>,
}

impl RunningTool {
    /// Cancels the tool (its task records why); returns the task, to await its record.
    pub(super) fn cancel(self, reason: String) -> JoinHandle<()> {
        let _ = self.cancel.send(reason);
        self.join
    }
}

/// Spawns the task of `job`.
pub(super) fn spawn(ctx: ToolContext, job: ToolJob, span: tracing::Span) -> RunningTool {
    let (cancel, cancelled) = oneshot::channel();
    // Boxed: the finished future is freed while its join handle waits to be read.
    let join = tokio::spawn(Box::pin(run(ctx, job, cancelled).instrument(span)));
    RunningTool { cancel, join }
}

async fn run(ctx: ToolContext, job: ToolJob, mut cancelled: oneshot::Receiver<String>) {
    let started = Instant::now();
    let inv = &job.invocation;
    let recorded = match ctx
        .deps
        .store
        .start_function_call(&inv.row(&ctx.owner))
        .await
    {
        Ok(true) => true,
        Ok(false) => {
            // Recorded before, by another stream of this call: never run it twice, but
            // answer it so the model goes on.
            tracing::info!(tool = %inv.name, model_call_id = %inv.model_call_id, "repeated tool invocation not run again");
            let outcome = ToolOutcome::error(FunctionCallStatus::Refused, ALREADY_RAN);
            report(&ctx, &inv.model_call_id, outcome);
            return;
        }
        Err(error) => {
            tracing::warn!(tool = %inv.name, error = %error, "could not record a function call; running it anyway");
            false
        }
    };
    let key = format!("{}:{}", ctx.call.id, inv.model_call_id);
    let outcome = tokio::select! {
        biased;
        reason = &mut cancelled => {
            let reason = reason.unwrap_or_else(|_| CALL_ENDED.to_owned());
            let outcome = ToolOutcome::error(FunctionCallStatus::Cancelled, reason);
            if recorded {
                finish(&ctx, &inv.id, &outcome, started).await;
            }
            return;
        }
        outcome = work(&ctx, &inv.name, &key, job.work.clone()) => outcome,
    };
    if recorded {
        finish(&ctx, &inv.id, &outcome, started).await;
    }
    report(&ctx, &inv.model_call_id, outcome);
}

async fn finish(ctx: &ToolContext, id: &str, outcome: &ToolOutcome, started: Instant) {
    let latency = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    if let Err(error) = ctx
        .deps
        .store
        .finish_function_call(id, &outcome.settled(latency))
        .await
    {
        tracing::warn!(error = %error, "could not record a function call result");
    }
}

fn report(ctx: &ToolContext, model_call_id: &str, outcome: ToolOutcome) {
    let _ = ctx.actor.cast(CallMsg::ToolDone(
        model_call_id.to_owned(),
        Box::new(outcome),
    ));
}

/// The call as a tenant endpoint sees it.
fn call_context(call: &CallRecord) -> Value {
    json!({
        "id": call.id.as_str(),
        "call_sid": call.call_sid,
        "direction": call.direction.as_str(),
        "from": call.from_number,
        "to": call.to_number,
        "agent_key": call.agent_key,
        "agent_version_id": call.agent_version_id,
    })
}

/// The caller's number.
pub(super) fn caller(call: &CallRecord) -> &str {
    match call.direction {
        crate::store::CallDirection::Inbound => &call.from_number,
        crate::store::CallDirection::Outbound => &call.to_number,
    }
}

async fn work(ctx: &ToolContext, tool: &str, key: &str, work: ToolWork) -> ToolOutcome {
    let call = &ctx.call;
    match work {
        ToolWork::Webhook {
            url,
            arguments,
            timeout,
            identity_verified,
        } => {
            let request = Request {
                url,
                body: json!({
                    "invocation_id": key,
                    "tool": tool,
                    "arguments": arguments,
                    "call": call_context(call),
                    "identity": {"verified": identity_verified},
                    "tenant_id": call.tenant_id.as_str(),
                }),
                idempotency_key: key.to_owned(),
                timeout,
                tool: tool.to_owned(),
            };
            match webhook::post(&ctx.deps, &call.tenant_id, &request).await {
                Ok(value) => ToolOutcome::ok(value),
                Err(failure) => {
                    tracing::info!(tool = %tool, failure = ?failure, "tenant endpoint gave no usable answer");
                    failure.outcome()
                }
            }
        }
        ToolWork::Identity {
            url,
            facts,
            timeout,
        } => {
            let request = Request {
                url,
                body: json!({
                    "invocation_id": key,
                    "call": call_context(call),
                    "facts": facts,
                    "tenant_id": call.tenant_id.as_str(),
                }),
                idempotency_key: key.to_owned(),
                timeout,
                tool: String::from("verify_identity"),
            };
            match webhook::post(&ctx.deps, &call.tenant_id, &request).await {
                Ok(value) => match value.get("verified").and_then(Value::as_bool) {
                    Some(verified) => ToolOutcome {
                        identity: Some(verified),
                        ..ToolOutcome::ok(json!({"verified": verified}))
                    },
                    None => ToolOutcome::error(
                        FunctionCallStatus::Failed,
                        "the identity service did not answer {\"verified\": true|false}",
                    ),
                },
                Err(failure) => {
                    tracing::info!(tool = %tool, failure = ?failure, "identity endpoint gave no usable answer");
                    failure.outcome()
                }
            }
        }
        ToolWork::Callback {
            phone,
            reason,
            due_at,
        } => {
            let created = crate::callbacks::create(
                &ctx.deps.store,
                Some(&ctx.deps.notifier),
                crate::operator::NewCallbackTask {
                    tenant_id: call.tenant_id.clone(),
                    phone,
                    reason,
                    source_call_id: Some(call.id.clone()),
                    queue_id: None,
                    priority: crate::operator::CallbackPriority::Normal,
                    due_at,
                    created_by: crate::operator::CallbackSource::Tool,
                },
            )
            .await;
            match created {
                Ok(task_id) => ToolOutcome::ok(json!({"status": "created", "task_id": task_id})),
                Err(why) => ToolOutcome::error(FunctionCallStatus::Failed, why),
            }
        }
        ToolWork::OptOut { reason } => {
            let number = match crate::domain::E164::parse(caller(call)) {
                Ok(n) => n,
                Err(e) => {
                    return ToolOutcome::error(
                        FunctionCallStatus::Failed,
                        format!("the caller's number cannot be listed: {e}"),
                    );
                }
            };
            match crate::governance::dnc::opt_out(
                &ctx.deps.store,
                &call.tenant_id,
                &number,
                &call.id,
                reason,
            )
            .await
            {
                Ok(added) => ToolOutcome::ok(json!({
                    "status": "opted_out",
                    "already_listed": !added,
                    "instructions": "Confirm to the caller that they will not be called again."
                })),
                Err(e) => ToolOutcome::error(
                    FunctionCallStatus::Failed,
                    format!("the opt-out was not recorded: {e}"),
                ),
            }
        }
        ToolWork::Sms { body } => match ctx.deps.control.send_sms(call, body).await {
            Ok(sid) => ToolOutcome::ok(json!({"status": "sent", "message_sid": sid})),
            Err(e) => ToolOutcome::error(
                FunctionCallStatus::Failed,
                format!("the message was not sent: {e}"),
            ),
        },
    }
}
