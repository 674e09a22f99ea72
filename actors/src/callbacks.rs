//! Callback tasks. Creating one from anywhere — the API, the `create_callback_task`
//! built-in, a handoff nobody answered — always goes the same way: the task is stored (its
//! tenant checks in the insert itself), then `voice.callback.created` is put in the tenant's
//! event outbox. Reads and status changes are plain functions too: every change is one
//! conditional update in the store, so the database decides between concurrent claims.

use serde_json::json;

use crate::ids::{CallbackTaskId, TenantId};
use crate::notifier::{EventKind, Notifier};
use crate::operator::{
    CallbackFilter, CallbackTask, NewCallbackTask, OperatorError, TaskTransition,
};
use crate::store::{Page, Store, StoreError};

/// Stores a callback task and emits `voice.callback.created`; returns the task.
pub async fn create_task(
    store: &Store,
    notifier: Option<&Notifier>,
    new: &NewCallbackTask,
) -> Result<CallbackTask, StoreError> {
    let task = store.create_callback_task(new).await?;
    metrics::counter!("callback_tasks_created_total", "source" => task.created_by.as_str())
        .increment(1);
    if let Some(notifier) = notifier
        && let Err(error) = notifier
            .emit(
                &task.tenant_id,
                EventKind::CallbackCreated,
                event_data(&task),
            )
            .await
    {
        tracing::warn!(task_id = %task.id, error = %error, "could not record voice.callback.created");
    }
    Ok(task)
}

/// Like [`create_task`], for callers that only need the id or a message.
pub async fn create(
    store: &Store,
    notifier: Option<&Notifier>,
    new: NewCallbackTask,
) -> Result<String, String> {
    create_task(store, notifier, &new)
        .await
        .map(|t| t.id.as_str().to_owned())
        .map_err(|e| e.to_string())
}

/// Creates an open task (the API's way: input errors name their field).
pub async fn create_for_api(
    store: &Store,
    notifier: Option<&Notifier>,
    new: &NewCallbackTask,
) -> Result<CallbackTask, OperatorError> {
    create_task(store, notifier, new)
        .await
        .map_err(|e| match e {
            StoreError::Invalid { field, message } => OperatorError::InvalidField(field, message),
            other => OperatorError::Store(other),
        })
}

/// A task of a tenant.
pub async fn get(
    store: &Store,
    tenant: &TenantId,
    id: &CallbackTaskId,
) -> Result<CallbackTask, OperatorError> {
    store
        .get_callback_task(tenant, id)
        .await?
        .ok_or(OperatorError::NotFound("callback task"))
}

/// A tenant's tasks.
pub async fn list(
    store: &Store,
    filter: &CallbackFilter,
) -> Result<Page<CallbackTask>, OperatorError> {
    Ok(store.list_callback_tasks(filter).await?)
}

/// Maps a refused or missing transition to the operator errors.
fn transition(
    t: TaskTransition,
    action: &str,
    allowed: &str,
) -> Result<CallbackTask, OperatorError> {
    match t {
        TaskTransition::Done(task) => Ok(task),
        TaskTransition::NotFound => Err(OperatorError::NotFound("callback task")),
        TaskTransition::Refused(task) => Err(OperatorError::InvalidTransition(format!(
            "the callback task is {}: only {allowed} can be {action}",
            task.status.as_str()
        ))),
    }
}

/// Claims an open task for `assignee` (exclusive however many try at once).
pub async fn claim(
    store: &Store,
    tenant: &TenantId,
    id: &CallbackTaskId,
    assignee: &str,
) -> Result<CallbackTask, OperatorError> {
    let t = store.claim_callback_task(tenant, id, assignee).await?;
    transition(t, "claimed", "an open task")
}

/// Completes a claimed task.
pub async fn complete(
    store: &Store,
    tenant: &TenantId,
    id: &CallbackTaskId,
    outcome: Option<&str>,
    notes: Option<&str>,
) -> Result<CallbackTask, OperatorError> {
    let t = store
        .complete_callback_task(tenant, id, outcome, notes)
        .await?;
    transition(t, "completed", "a claimed task")
}

/// Cancels an open or claimed task.
pub async fn cancel(
    store: &Store,
    tenant: &TenantId,
    id: &CallbackTaskId,
    reason: Option<&str>,
) -> Result<CallbackTask, OperatorError> {
    let t = store.cancel_callback_task(tenant, id, reason).await?;
    transition(t, "cancelled", "an open or claimed task")
}

/// The `data` of `voice.callback.created`.
fn event_data(task: &CallbackTask) -> serde_json::Value {
    json!({
        "task_id": task.id.as_str(),
        "phone": task.phone,
        "reason": task.reason,
        "source_call_id": task.source_call_id.as_ref().map(|c| c.as_str()),
        "queue_id": task.queue_id.as_ref().map(|q| q.as_str()),
        "priority": task.priority.as_str(),
        "due_at": task.due_at.map(crate::time::rfc3339),
        "created_by": task.created_by.as_str(),
        "status": task.status.as_str(),
    })
}
