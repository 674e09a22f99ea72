//! The router's operator surface: a tenant's operator queues (each change audited) and its
//! callback tasks (created, read, claimed, completed, cancelled).
//!
//! Every request is scoped to one tenant: a queue or task of another tenant is "not found".
//! Reads and task changes run in tasks the router spawns (the database decides between
//! concurrent claims); queue changes run in the mailbox, like phone-route changes, so the
//! audit row's "before" is the row that was replaced.

use ractor::RpcReplyPort;
use serde_json::json;

use super::{Ctx, Reply, RouterError, RouterMsg, RouterState, reply, spawn_reply};
use crate::ids::{CallbackTaskId, QueueId, TenantId};
use crate::operator::{
    CallbackFilter, CallbackTask, NewCallbackTask, OperatorQueue, QueueSpec, TaskTransition,
};
use crate::store::{NewAudit, Page, StoreError};
use crate::tenant::AuditMeta;
use crate::time::now_ms;

/// Messages of the operator surface, carried by [`RouterMsg::Operator`].
pub enum OperatorMsg {
    /// Lists a tenant's queues (limit, offset).
    ListQueues(TenantId, u32, u32, Reply<Page<OperatorQueue>>),
    /// Creates a queue (404 `tenant` when the tenant does not exist).
    CreateQueue(TenantId, QueueSpec, AuditMeta, Reply<OperatorQueue>),
    /// Reads a queue of a tenant.
    GetQueue(TenantId, QueueId, Reply<OperatorQueue>),
    /// Replaces every field of a queue of a tenant.
    ReplaceQueue(
        TenantId,
        QueueId,
        QueueSpec,
        AuditMeta,
        Reply<OperatorQueue>,
    ),
    /// Deletes a queue of a tenant (its tasks stay, without a queue).
    DeleteQueue(TenantId, QueueId, AuditMeta, Reply<OperatorQueue>),
    /// Creates an open callback task.
    CreateTask(NewCallbackTask, Reply<CallbackTask>),
    /// Reads a callback task of a tenant.
    GetTask(TenantId, CallbackTaskId, Reply<CallbackTask>),
    /// Lists a tenant's callback tasks.
    ListTasks(CallbackFilter, Reply<Page<CallbackTask>>),
    /// Claims an open task for an assignee.
    ClaimTask(TenantId, CallbackTaskId, String, Reply<CallbackTask>),
    /// Completes a claimed task (outcome, notes).
    CompleteTask(
        TenantId,
        CallbackTaskId,
        Option<String>,
        Option<String>,
        Reply<CallbackTask>,
    ),
    /// Cancels an open or claimed task (reason).
    CancelTask(
        TenantId,
        CallbackTaskId,
        Option<String>,
        Reply<CallbackTask>,
    ),
}

impl OperatorMsg {
    /// Message name for metrics.
    pub const fn name(&self) -> &'static str {
        match self {
            OperatorMsg::ListQueues(..) => "list_queues",
            OperatorMsg::CreateQueue(..) => "create_queue",
            OperatorMsg::GetQueue(..) => "get_queue",
            OperatorMsg::ReplaceQueue(..) => "replace_queue",
            OperatorMsg::DeleteQueue(..) => "delete_queue",
            OperatorMsg::CreateTask(..) => "create_callback_task",
            OperatorMsg::GetTask(..) => "get_callback_task",
            OperatorMsg::ListTasks(..) => "list_callback_tasks",
            OperatorMsg::ClaimTask(..) => "claim_callback_task",
            OperatorMsg::CompleteTask(..) => "complete_callback_task",
            OperatorMsg::CancelTask(..) => "cancel_callback_task",
        }
    }
}

// Builders with the reply port last, so handlers can use `call_t!` on the router.
macro_rules! builders {
    ($($(#[$doc:meta])* $fn:ident => $variant:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        impl RouterMsg {
            $(
                $(#[$doc])*
                pub fn $fn($($arg: $ty,)* port: RpcReplyPort<Result<$out, RouterError>>) -> Self {
                    RouterMsg::Operator(OperatorMsg::$variant($($arg,)* port))
                }
            )*
        }
    };
}

builders! {
    /// [`OperatorMsg::ListQueues`].
    list_queues => ListQueues(tenant: TenantId, limit: u32, offset: u32) -> Page<OperatorQueue>;
    /// [`OperatorMsg::CreateQueue`].
    create_queue => CreateQueue(tenant: TenantId, spec: QueueSpec, meta: AuditMeta) -> OperatorQueue;
    /// [`OperatorMsg::GetQueue`].
    get_queue => GetQueue(tenant: TenantId, id: QueueId) -> OperatorQueue;
    /// [`OperatorMsg::ReplaceQueue`].
    replace_queue => ReplaceQueue(tenant: TenantId, id: QueueId, spec: QueueSpec, meta: AuditMeta) -> OperatorQueue;
    /// [`OperatorMsg::DeleteQueue`].
    delete_queue => DeleteQueue(tenant: TenantId, id: QueueId, meta: AuditMeta) -> OperatorQueue;
    /// [`OperatorMsg::CreateTask`].
    create_callback_task => CreateTask(new: NewCallbackTask) -> CallbackTask;
    /// [`OperatorMsg::GetTask`].
    get_callback_task => GetTask(tenant: TenantId, id: CallbackTaskId) -> CallbackTask;
    /// [`OperatorMsg::ListTasks`].
    list_callback_tasks => ListTasks(filter: CallbackFilter) -> Page<CallbackTask>;
    /// [`OperatorMsg::ClaimTask`].
    claim_callback_task => ClaimTask(tenant: TenantId, id: CallbackTaskId, assignee: String) -> CallbackTask;
    /// [`OperatorMsg::CompleteTask`].
    complete_callback_task => CompleteTask(tenant: TenantId, id: CallbackTaskId, outcome: Option<String>, notes: Option<String>) -> CallbackTask;
    /// [`OperatorMsg::CancelTask`].
    cancel_callback_task => CancelTask(tenant: TenantId, id: CallbackTaskId, reason: Option<String>) -> CallbackTask;
}

/// Audit JSON of a queue (its whole content; there are no secrets in it).
fn queue_audit_json(q: &OperatorQueue) -> serde_json::Value {
    json!({
        "id": q.id.as_str(),
        "tenant_id": q.tenant_id.as_str(),
        "name": q.name,
        "numbers": q.numbers,
        "caller_id": q.caller_id,
        "ring_timeout_seconds": q.ring_timeout_seconds,
        "business_hours": q.business_hours.as_ref().map(|h| h.to_spec()),
        "when_closed": q.when_closed.as_str(),
        "when_unanswered": q.when_unanswered.as_str(),
        "voicemail_message": q.voicemail_message,
        "announcement": q.announcement,
    })
}

fn name_conflict(name: &str) -> impl FnOnce(StoreError) -> RouterError + '_ {
    move |e| match e {
        StoreError::Conflict(_) => {
            RouterError::Conflict(format!("an operator queue named `{name}` already exists"))
        }
        other => RouterError::Store(other),
    }
}

fn apply(queue: &mut OperatorQueue, spec: QueueSpec) {
    queue.name = spec.name;
    queue.numbers = spec.numbers;
    queue.caller_id = spec.caller_id;
    queue.ring_timeout_seconds = spec.ring_timeout_seconds;
    queue.business_hours = spec.business_hours;
    queue.when_closed = spec.when_closed;
    queue.when_unanswered = spec.when_unanswered;
    queue.voicemail_message = spec.voicemail_message;
    queue.announcement = spec.announcement;
}

fn checked(spec: &QueueSpec) -> Result<(), RouterError> {
    spec.validate()
        .map_err(|e| RouterError::InvalidField(e.field, e.message))
}

/// Maps a refused or missing transition to the router's errors.
fn transition(t: TaskTransition, action: &str, allowed: &str) -> Result<CallbackTask, RouterError> {
    match t {
        TaskTransition::Done(task) => Ok(task),
        TaskTransition::NotFound => Err(RouterError::NotFound("callback task")),
        TaskTransition::Refused(task) => Err(RouterError::InvalidTransition(format!(
            "the callback task is {}: only {allowed} can be {action}",
            task.status.as_str()
        ))),
    }
}

impl Ctx {
    async fn get_queue(
        &self,
        tenant: &TenantId,
        id: &QueueId,
    ) -> Result<OperatorQueue, RouterError> {
        self.store()
            .get_queue(tenant, id)
            .await?
            .ok_or(RouterError::NotFound("operator queue"))
    }

    async fn create_task(&self, new: NewCallbackTask) -> Result<CallbackTask, RouterError> {
        // Through `callbacks::create_task`, so `voice.callback.created` is emitted as for
        // tasks made by tools and handoffs.
        crate::callbacks::create_task(self.store(), self.args.notifier.as_ref(), &new)
            .await
            .map_err(|e| match e {
                StoreError::Invalid { field, message } => RouterError::InvalidField(field, message),
                other => RouterError::Store(other),
            })
    }

    async fn get_task(
        &self,
        tenant: &TenantId,
        id: &CallbackTaskId,
    ) -> Result<CallbackTask, RouterError> {
        self.store()
            .get_callback_task(tenant, id)
            .await?
            .ok_or(RouterError::NotFound("callback task"))
    }
}

impl RouterState {
    async fn create_queue(
        &mut self,
        tenant: TenantId,
        spec: QueueSpec,
        meta: AuditMeta,
    ) -> Result<OperatorQueue, RouterError> {
        checked(&spec)?;
        if self.ctx.store().get_tenant(&tenant).await?.is_none() {
            return Err(RouterError::NotFound("tenant"));
        }
        let now = now_ms();
        let mut queue = OperatorQueue {
            id: QueueId::generate(),
            tenant_id: tenant,
            name: String::new(),
            numbers: Vec::new(),
            caller_id: None,
            ring_timeout_seconds: 0,
            business_hours: None,
            when_closed: spec.when_closed,
            when_unanswered: spec.when_unanswered,
            voicemail_message: None,
            announcement: None,
            created_at: now,
            updated_at: now,
        };
        apply(&mut queue, spec);
        let audit = NewAudit {
            actor: meta.actor,
            action: "operator_queue.create",
            tenant_id: Some(queue.tenant_id.clone()),
            target_type: "operator_queue",
            target_id: queue.id.to_string(),
            before: None,
            after: Some(queue_audit_json(&queue)),
            request_id: meta.request_id,
        };
        self.ctx
            .store()
            .insert_queue(&queue, &audit)
            .await
            .map_err(name_conflict(&queue.name))?;
        Ok(queue)
    }

    async fn replace_queue(
        &mut self,
        tenant: TenantId,
        id: QueueId,
        spec: QueueSpec,
        meta: AuditMeta,
    ) -> Result<OperatorQueue, RouterError> {
        checked(&spec)?;
        let before = self.ctx.get_queue(&tenant, &id).await?;
        let mut after = before.clone();
        apply(&mut after, spec);
        after.updated_at = now_ms().max(before.updated_at);
        let audit = NewAudit {
            actor: meta.actor,
            action: "operator_queue.update",
            tenant_id: Some(after.tenant_id.clone()),
            target_type: "operator_queue",
            target_id: after.id.to_string(),
            before: Some(queue_audit_json(&before)),
            after: Some(queue_audit_json(&after)),
            request_id: meta.request_id,
        };
        if !self
            .ctx
            .store()
            .update_queue(&after, &audit)
            .await
            .map_err(name_conflict(&after.name))?
        {
            return Err(RouterError::NotFound("operator queue"));
        }
        Ok(after)
    }

    async fn delete_queue(
        &mut self,
        tenant: TenantId,
        id: QueueId,
        meta: AuditMeta,
    ) -> Result<OperatorQueue, RouterError> {
        let queue = self.ctx.get_queue(&tenant, &id).await?;
        let audit = NewAudit {
            actor: meta.actor,
            action: "operator_queue.delete",
            tenant_id: Some(queue.tenant_id.clone()),
            target_type: "operator_queue",
            target_id: queue.id.to_string(),
            before: Some(queue_audit_json(&queue)),
            after: None,
            request_id: meta.request_id,
        };
        if !self.ctx.store().delete_queue(&tenant, &id, &audit).await? {
            return Err(RouterError::NotFound("operator queue"));
        }
        Ok(queue)
    }

    /// Handles one operator message.
    pub(super) async fn operator(&mut self, msg: OperatorMsg) {
        match msg {
            OperatorMsg::ListQueues(tenant, limit, offset, port) => {
                let ctx = self.ctx.clone();
                spawn_reply(port, async move {
                    Ok(ctx.store().list_queues(&tenant, limit, offset).await?)
                });
            }
            OperatorMsg::CreateQueue(tenant, spec, meta, port) => {
                let r = self.create_queue(tenant, spec, meta).await;
                reply(port, r);
            }
            OperatorMsg::GetQueue(tenant, id, port) => {
                let ctx = self.ctx.clone();
                spawn_reply(port, async move { ctx.get_queue(&tenant, &id).await });
            }
            OperatorMsg::ReplaceQueue(tenant, id, spec, meta, port) => {
                let r = self.replace_queue(tenant, id, spec, meta).await;
                reply(port, r);
            }
            OperatorMsg::DeleteQueue(tenant, id, meta, port) => {
                let r = self.delete_queue(tenant, id, meta).await;
                reply(port, r);
            }
            OperatorMsg::CreateTask(new, port) => {
                let ctx = self.ctx.clone();
                spawn_reply(port, async move { ctx.create_task(new).await });
            }
            OperatorMsg::GetTask(tenant, id, port) => {
                let ctx = self.ctx.clone();
                spawn_reply(port, async move { ctx.get_task(&tenant, &id).await });
            }
            OperatorMsg::ListTasks(filter, port) => {
                let ctx = self.ctx.clone();
                spawn_reply(port, async move {
                    Ok(ctx.store().list_callback_tasks(&filter).await?)
                });
            }
            OperatorMsg::ClaimTask(tenant, id, assignee, port) => {
                let ctx = self.ctx.clone();
                spawn_reply(port, async move {
                    let t = ctx
                        .store()
                        .claim_callback_task(&tenant, &id, &assignee)
                        .await?;
                    transition(t, "claimed", "an open task")
                });
            }
            OperatorMsg::CompleteTask(tenant, id, outcome, notes, port) => {
                let ctx = self.ctx.clone();
                spawn_reply(port, async move {
                    let t = ctx
                        .store()
                        .complete_callback_task(&tenant, &id, outcome.as_deref(), notes.as_deref())
                        .await?;
                    transition(t, "completed", "a claimed task")
                });
            }
            OperatorMsg::CancelTask(tenant, id, reason, port) => {
                let ctx = self.ctx.clone();
                spawn_reply(port, async move {
                    let t = ctx
                        .store()
                        .cancel_callback_task(&tenant, &id, reason.as_deref())
                        .await?;
                    transition(t, "cancelled", "an open or claimed task")
                });
            }
        }
    }
}
