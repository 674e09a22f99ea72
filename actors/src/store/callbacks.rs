//! Callback tasks: create (references checked against the tenant in the insert itself),
//! read, list with filters, and the status changes.
//!
//! Every status change is one conditional `UPDATE … WHERE id AND tenant_id AND status …
//! RETURNING`: the database decides which of several concurrent requests wins, and there is
//! no read-then-write (on SQLite a read transaction that later writes can fail to upgrade
//! its snapshot under contention). Only when the update matched nothing is the task read,
//! to tell "no such task" from "not in a status that allows this".

use super::{Page, Store, StoreError, as_i64, on_pool};
use crate::ids::{CallId, CallbackTaskId, QueueId, TenantId};
use crate::operator::{
    CallbackFilter, CallbackPriority, CallbackSource, CallbackStatus, CallbackTask,
    NewCallbackTask, TaskTransition,
};
use crate::time::now_ms;

#[derive(sqlx::FromRow)]
struct TaskRow {
    id: String,
    tenant_id: String,
    phone: String,
    reason: String,
    source_call_id: Option<String>,
    queue_id: Option<String>,
    priority: String,
    due_at: Option<i64>,
    assignee: Option<String>,
    status: String,
    created_by: String,
    outcome: Option<String>,
    notes: Option<String>,
    cancel_reason: Option<String>,
    created_at: i64,
    claimed_at: Option<i64>,
    completed_at: Option<i64>,
    cancelled_at: Option<i64>,
    updated_at: i64,
}

const TASK_COLUMNS: &str = "id, tenant_id, phone, reason, source_call_id, queue_id, priority, due_at, assignee, \
     status, created_by, outcome, notes, cancel_reason, created_at, claimed_at, completed_at, cancelled_at, updated_at";

/// Most urgent first, then by due time (none last), then oldest first.
const TASK_ORDER: &str = "CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END, \
     CASE WHEN due_at IS NULL THEN 1 ELSE 0 END, due_at, created_at, id";

const TASK_FILTER: &str = "tenant_id = $1 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR queue_id = $3) \
     AND ($4 IS NULL OR assignee = $4) AND ($5 IS NULL OR source_call_id = $5) AND ($6 IS NULL OR priority = $6) \
     AND ($7 IS NULL OR (due_at IS NOT NULL AND due_at < $7))";

impl TryFrom<TaskRow> for CallbackTask {
    type Error = StoreError;

    fn try_from(r: TaskRow) -> Result<Self, StoreError> {
        Ok(CallbackTask {
            id: CallbackTaskId::from_stored(r.id),
            tenant_id: TenantId::from_stored(r.tenant_id),
            phone: r.phone,
            reason: r.reason,
            source_call_id: r.source_call_id.map(CallId::from_stored),
            queue_id: r.queue_id.map(QueueId::from_stored),
            priority: CallbackPriority::parse(&r.priority)
                .ok_or(StoreError::Corrupt("callback_tasks.priority"))?,
            due_at: r.due_at,
            assignee: r.assignee,
            status: CallbackStatus::parse(&r.status)
                .ok_or(StoreError::Corrupt("callback_tasks.status"))?,
            created_by: CallbackSource::parse(&r.created_by)
                .ok_or(StoreError::Corrupt("callback_tasks.created_by"))?,
            outcome: r.outcome,
            notes: r.notes,
            cancel_reason: r.cancel_reason,
            created_at: r.created_at,
            claimed_at: r.claimed_at,
            completed_at: r.completed_at,
            cancelled_at: r.cancelled_at,
            updated_at: r.updated_at,
        })
    }
}

fn not_owned(field: &str, what: &str) -> StoreError {
    StoreError::Invalid {
        field: field.to_owned(),
        message: format!("is not {what} of this tenant"),
    }
}

impl Store {
    /// Creates an open callback task. The values are checked
    /// ([`NewCallbackTask::validate`]) and the queue and source call, when given, must
    /// belong to the task's tenant; otherwise nothing is written and the error is
    /// [`StoreError::Invalid`] naming the field (`phone`, `reason`, `queue_id`,
    /// `source_call_id`).
    pub async fn create_callback_task(
        &self,
        new: &NewCallbackTask,
    ) -> Result<CallbackTask, StoreError> {
        new.validate().map_err(|e| StoreError::Invalid {
            field: e.field,
            message: e.message,
        })?;
        let id = CallbackTaskId::generate();
        let now = now_ms();
        let queue_id = new.queue_id.as_ref().map(|q| q.as_str().to_owned());
        let call_id = new.source_call_id.as_ref().map(|c| c.as_str().to_owned());
        // One statement: the references are checked against the tenant in the insert itself.
        let inserted: Result<Option<TaskRow>, StoreError> = on_pool!(self, pool => async {
            Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "INSERT INTO callback_tasks (id, tenant_id, phone, reason, source_call_id, queue_id, priority, due_at, \
                 status, created_by, created_at, updated_at) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11 \
                 WHERE ($6 IS NULL OR EXISTS (SELECT 1 FROM operator_queues WHERE id = $6 AND tenant_id = $2)) \
                 AND ($5 IS NULL OR EXISTS (SELECT 1 FROM calls WHERE id = $5 AND tenant_id = $2)) \
                 RETURNING {TASK_COLUMNS}"
            )))
            .bind(id.as_str())
            .bind(new.tenant_id.as_str())
            .bind(&new.phone)
            .bind(&new.reason)
            .bind(&call_id)
            .bind(&queue_id)
            .bind(new.priority.as_str())
            .bind(new.due_at)
            .bind(CallbackStatus::Open.as_str())
            .bind(new.created_by.as_str())
            .bind(now)
            .fetch_optional(pool)
            .await?)
        }.await);
        let row = match inserted {
            Ok(Some(row)) => row,
            Ok(None) => return Err(self.explain_refused_task(new).await),
            // The queue was deleted between the check and the insert (PostgreSQL).
            Err(StoreError::Db(sqlx::Error::Database(e))) if e.is_foreign_key_violation() => {
                return Err(self.explain_refused_task(new).await);
            }
            Err(e) => return Err(e),
        };
        CallbackTask::try_from(row)
    }

    /// Why an insert guarded by the tenant checks wrote nothing.
    async fn explain_refused_task(&self, new: &NewCallbackTask) -> StoreError {
        if let Some(q) = &new.queue_id {
            match self.get_queue(&new.tenant_id, q).await {
                Ok(Some(_)) => {}
                Ok(None) => return not_owned("queue_id", "an operator queue"),
                Err(e) => return e,
            }
        }
        if let Some(c) = &new.source_call_id {
            match self.get_call(&new.tenant_id, c).await {
                Ok(Some(_)) => {}
                Ok(None) => return not_owned("source_call_id", "a call"),
                Err(e) => return e,
            }
        }
        // Both existed when asked again: the queue came and went in between.
        not_owned("queue_id", "an operator queue")
    }

    /// Reads a callback task of a tenant.
    pub async fn get_callback_task(
        &self,
        tenant: &TenantId,
        id: &CallbackTaskId,
    ) -> Result<Option<CallbackTask>, StoreError> {
        let row: Option<TaskRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {TASK_COLUMNS} FROM callback_tasks WHERE tenant_id = $1 AND id = $2"
            )))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(CallbackTask::try_from).transpose()
    }

    /// Lists a tenant's callback tasks: most urgent first, then by due time (none last),
    /// then oldest first.
    pub async fn list_callback_tasks(
        &self,
        filter: &CallbackFilter,
    ) -> Result<Page<CallbackTask>, StoreError> {
        let status = filter.status.map(CallbackStatus::as_str);
        let queue = filter.queue_id.as_ref().map(|q| q.as_str().to_owned());
        let call = filter
            .source_call_id
            .as_ref()
            .map(|c| c.as_str().to_owned());
        let priority = filter.priority.map(CallbackPriority::as_str);
        let (rows, total): (Vec<TaskRow>, i64) = on_pool!(self, pool => {
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {TASK_COLUMNS} FROM callback_tasks WHERE {TASK_FILTER} ORDER BY {TASK_ORDER} LIMIT $8 OFFSET $9"
            )))
            .bind(filter.tenant_id.as_str())
            .bind(status)
            .bind(&queue)
            .bind(&filter.assignee)
            .bind(&call)
            .bind(priority)
            .bind(filter.due_before)
            .bind(as_i64(filter.limit))
            .bind(as_i64(filter.offset))
            .fetch_all(pool)
            .await?;
            let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM callback_tasks WHERE {TASK_FILTER}"
            )))
            .bind(filter.tenant_id.as_str())
            .bind(status)
            .bind(&queue)
            .bind(&filter.assignee)
            .bind(&call)
            .bind(priority)
            .bind(filter.due_before)
            .fetch_one(pool)
            .await?;
            (rows, total)
        });
        Ok(Page {
            items: rows
                .into_iter()
                .map(CallbackTask::try_from)
                .collect::<Result<_, _>>()?,
            total,
        })
    }

    /// Claims an open task for `assignee`. Exactly one of any number of concurrent claims
    /// of one task succeeds; the others are refused with the task as the winner left it.
    pub async fn claim_callback_task(
        &self,
        tenant: &TenantId,
        id: &CallbackTaskId,
        assignee: &str,
    ) -> Result<TaskTransition, StoreError> {
        let now = now_ms();
        let row: Option<TaskRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE callback_tasks SET status = 'claimed', assignee = $3, claimed_at = $4, updated_at = $4 \
                 WHERE id = $1 AND tenant_id = $2 AND status = 'open' RETURNING {TASK_COLUMNS}"
            )))
            .bind(id.as_str())
            .bind(tenant.as_str())
            .bind(assignee)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        self.transition_result(tenant, id, row).await
    }

    /// Completes a claimed task, recording the outcome and notes.
    pub async fn complete_callback_task(
        &self,
        tenant: &TenantId,
        id: &CallbackTaskId,
        outcome: Option<&str>,
        notes: Option<&str>,
    ) -> Result<TaskTransition, StoreError> {
        let now = now_ms();
        let row: Option<TaskRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE callback_tasks SET status = 'completed', outcome = $3, notes = $4, completed_at = $5, \
                 updated_at = $5 WHERE id = $1 AND tenant_id = $2 AND status = 'claimed' RETURNING {TASK_COLUMNS}"
            )))
            .bind(id.as_str())
            .bind(tenant.as_str())
            .bind(outcome)
            .bind(notes)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        self.transition_result(tenant, id, row).await
    }

    /// Cancels an open or claimed task, recording the reason.
    pub async fn cancel_callback_task(
        &self,
        tenant: &TenantId,
        id: &CallbackTaskId,
        reason: Option<&str>,
    ) -> Result<TaskTransition, StoreError> {
        let now = now_ms();
        let row: Option<TaskRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE callback_tasks SET status = 'cancelled', cancel_reason = $3, cancelled_at = $4, updated_at = $4 \
                 WHERE id = $1 AND tenant_id = $2 AND status IN ('open', 'claimed') RETURNING {TASK_COLUMNS}"
            )))
            .bind(id.as_str())
            .bind(tenant.as_str())
            .bind(reason)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        self.transition_result(tenant, id, row).await
    }

    /// The outcome of a conditional update: the changed row, or why nothing changed.
    async fn transition_result(
        &self,
        tenant: &TenantId,
        id: &CallbackTaskId,
        changed: Option<TaskRow>,
    ) -> Result<TaskTransition, StoreError> {
        if let Some(row) = changed {
            return Ok(TaskTransition::Done(CallbackTask::try_from(row)?));
        }
        Ok(match self.get_callback_task(tenant, id).await? {
            Some(task) => TaskTransition::Refused(task),
            None => TaskTransition::NotFound,
        })
    }
}
