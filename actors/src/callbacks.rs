//! Creating a callback task from anywhere — the API, the `create_callback_task` built-in, a
//! handoff nobody answered — always the same way: the task is stored (its tenant checks in
//! the insert itself), then `voice.callback.created` is put in the tenant's event outbox.

use serde_json::json;

use crate::notifier::{EventKind, Notifier};
use crate::operator::{CallbackTask, NewCallbackTask};
use crate::store::{Store, StoreError};

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
