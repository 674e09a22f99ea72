//! Callback tasks, tenant API: `GET|POST /api/v1/callback-tasks`,
//! `GET /api/v1/callback-tasks/{id}` and the status changes `POST …/{id}/claim`,
//! `…/complete`, `…/cancel`. Reading needs the `read` or `operator` scope, changing needs
//! `operator`, creating accepts `operator` or `runtime`. A change the task's status does
//! not allow answers 409 `invalid_transition` and changes nothing.

use actors::callbacks;
use actors::ids::{CallId, CallbackTaskId, QueueId};
use actors::operator::{
    CallbackFilter, CallbackPriority, CallbackSource, CallbackStatus, CallbackTask, NewCallbackTask,
};
use actors::tenant::AuthContext;
use actors::time::{parse_rfc3339, rfc3339};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::http::StatusCode;
use warp::reply::Response;

use super::ApiError;
use super::admin::json;
use super::fields;
use super::filters::{Paging, parse_json, parse_optional_json, parse_query};
use super::mount::Request;
use super::page::Page;
use crate::http::ErrorResponse;

// === DTOs ===

macro_rules! wire_enum {
    ($(#[$doc:meta])* $dto:ident <=> $domain:ident { $($(#[$vdoc:meta])* $v:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
        #[serde(rename_all = "lowercase")]
        pub enum $dto {
            $($(#[$vdoc])* $v),*
        }
        impl From<$dto> for $domain {
            fn from(v: $dto) -> Self {
                match v { $($dto::$v => $domain::$v),* }
            }
        }
        impl From<$domain> for $dto {
            fn from(v: $domain) -> Self {
                match v { $($domain::$v => $dto::$v),* }
            }
        }
    };
}

wire_enum!(
    /// How urgent a callback is; lists put the most urgent first.
    CallbackPriorityDto <=> CallbackPriority {
        /// Whenever convenient.
        Low,
        /// The default.
        Normal,
        /// Soon.
        High,
        /// Before anything else.
        Urgent,
    }
);
wire_enum!(
    /// Where a task is: `open → claimed → completed`, or `open | claimed → cancelled`.
    CallbackStatusDto <=> CallbackStatus {
        /// Waiting for an operator.
        Open,
        /// An operator took it.
        Claimed,
        /// Done (final).
        Completed,
        /// Withdrawn (final).
        Cancelled,
    }
);
wire_enum!(
    /// Who created a task.
    CallbackSourceDto <=> CallbackSource {
        /// This API.
        Api,
        /// The agent's `create_callback_task` tool.
        Tool,
        /// A handoff nobody answered, or a closed queue.
        Handoff,
    }
);

/// A callback task.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackTaskView {
    /// Identifier (`cbt_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Number to call back (E.164).
    pub phone: String,
    /// Why.
    pub reason: String,
    /// The call it came from.
    pub source_call_id: Option<String>,
    /// The operator queue it belongs to (`null` once that queue is deleted).
    pub queue_id: Option<String>,
    /// Urgency.
    pub priority: CallbackPriorityDto,
    /// RFC 3339: when it should be done by.
    pub due_at: Option<String>,
    /// Who claimed it.
    pub assignee: Option<String>,
    /// Status.
    pub status: CallbackStatusDto,
    /// Who created it.
    pub created_by: CallbackSourceDto,
    /// Result, given on completion.
    pub outcome: Option<String>,
    /// Operator notes, given on completion.
    pub notes: Option<String>,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub claimed_at: Option<String>,
    /// RFC 3339.
    pub completed_at: Option<String>,
    /// RFC 3339.
    pub cancelled_at: Option<String>,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<CallbackTask> for CallbackTaskView {
    fn from(t: CallbackTask) -> Self {
        CallbackTaskView {
            id: t.id.into_string(),
            tenant_id: t.tenant_id.into_string(),
            phone: t.phone,
            reason: t.reason,
            source_call_id: t.source_call_id.map(CallId::into_string),
            queue_id: t.queue_id.map(QueueId::into_string),
            priority: t.priority.into(),
            due_at: t.due_at.map(rfc3339),
            assignee: t.assignee,
            status: t.status.into(),
            created_by: t.created_by.into(),
            outcome: t.outcome,
            notes: t.notes,
            cancel_reason: t.cancel_reason,
            created_at: rfc3339(t.created_at),
            claimed_at: t.claimed_at.map(rfc3339),
            completed_at: t.completed_at.map(rfc3339),
            cancelled_at: t.cancelled_at.map(rfc3339),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

/// Body of `POST /api/v1/callback-tasks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCallbackTaskRequest {
    /// Number to call back (E.164).
    #[schema(format = "e164")]
    pub phone: String,
    /// Why (1–500 characters).
    #[schema(min_length = 1, max_length = 500, format = "label")]
    pub reason: String,
    /// The call it came from: one of the tenant's calls (`call_…`).
    #[schema(pattern = r"^call_[A-Za-z0-9_-]{1,64}$")]
    pub source_call_id: Option<String>,
    /// The operator queue it belongs to: one of the tenant's queues (`oq_…`).
    #[schema(pattern = r"^oq_[A-Za-z0-9_-]{1,64}$")]
    pub queue_id: Option<String>,
    /// Default `normal`.
    pub priority: Option<CallbackPriorityDto>,
    /// When it should be done by (RFC 3339).
    #[schema(format = "rfc3339")]
    pub due_at: Option<String>,
}

/// Body of `POST /api/v1/callback-tasks/{id}/claim`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimCallbackTaskRequest {
    /// Who takes the task (1–100 characters, e.g. an operator's email).
    #[schema(min_length = 1, max_length = 100, format = "label")]
    pub assignee: String,
}

/// Body of `POST /api/v1/callback-tasks/{id}/complete` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteCallbackTaskRequest {
    /// Result (1–500 characters), e.g. `refund issued`.
    #[schema(min_length = 1, max_length = 500, format = "label")]
    pub outcome: Option<String>,
    /// Operator notes (1–2000 characters).
    #[schema(min_length = 1, max_length = 2000, format = "label")]
    pub notes: Option<String>,
}

/// Body of `POST /api/v1/callback-tasks/{id}/cancel` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelCallbackTaskRequest {
    /// Why (1–500 characters).
    #[schema(min_length = 1, max_length = 500, format = "label")]
    pub reason: Option<String>,
}

/// Filters of the callback-task listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CallbackTaskParams {
    /// Only this status.
    pub status: Option<CallbackStatusDto>,
    /// Only this queue (`oq_…`).
    #[param(pattern = r"^oq_[A-Za-z0-9_-]{1,64}$")]
    pub queue_id: Option<String>,
    /// Only tasks claimed by this assignee.
    pub assignee: Option<String>,
    /// Only tasks from this call (`call_…`).
    #[param(pattern = r"^call_[A-Za-z0-9_-]{1,64}$")]
    pub source_call_id: Option<String>,
    /// Only this priority.
    pub priority: Option<CallbackPriorityDto>,
    /// Only tasks due before this time (RFC 3339); tasks without a due time are left out.
    #[param(format = "rfc3339")]
    pub due_before: Option<String>,
    /// Page size (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Rows to skip (default 0).
    pub offset: Option<u32>,
}

// === helpers ===

fn task_id(raw: &str) -> Result<CallbackTaskId, ApiError> {
    CallbackTaskId::parse(raw).ok_or_else(|| ApiError::NotFound("callback task".into()))
}

fn optional_text(field: &str, v: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    Ok(fields::optional_label(field, v.as_deref(), max)?.map(Into::into))
}

fn bad_query(field: &str, message: &str) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_query",
        message: format!("{field} {message}"),
        field: Some(field.to_owned()),
    }
}

fn task_reply(status: StatusCode, task: CallbackTask) -> Response {
    json(status, &CallbackTaskView::from(task))
}

// === handlers ===

/// Lists the tenant's callback tasks: most urgent first, then by due time (tasks without
/// one last), then oldest first.
#[utoipa::path(get, path = "/api/v1/callback-tasks", tag = "operator", params(CallbackTaskParams),
    responses((status = 200, body = Page<CallbackTaskView>), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse, description = "the key has neither `read` nor `operator`")))]
pub async fn list_tasks(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        raw_query: query,
        ..
    } = req;
    let p: CallbackTaskParams = parse_query(&query)?;
    let paging = Paging::new(p.limit, p.offset)?;
    let filter = CallbackFilter {
        tenant_id: auth.tenant_id,
        status: p.status.map(Into::into),
        queue_id: p
            .queue_id
            .map(|q| QueueId::parse(&q).ok_or_else(|| bad_query("queue_id", "is not a queue id")))
            .transpose()?,
        assignee: p.assignee,
        source_call_id: p
            .source_call_id
            .map(|c| {
                CallId::parse(&c).ok_or_else(|| bad_query("source_call_id", "is not a call id"))
            })
            .transpose()?,
        priority: p.priority.map(Into::into),
        due_before: p
            .due_before
            .map(|t| {
                parse_rfc3339(&t).ok_or_else(|| bad_query("due_before", "must be an RFC 3339 time"))
            })
            .transpose()?,
        limit: paging.limit,
        offset: paging.offset,
    };
    let page = callbacks::list(&state.store, &filter).await?;
    Ok(json(
        StatusCode::OK,
        &Page::new(
            page.items.into_iter().map(CallbackTaskView::from),
            paging,
            page.total,
        ),
    ))
}

/// Creates an open callback task. A `queue_id` or `source_call_id` that is not the tenant's
/// is refused (422, the field named).
#[utoipa::path(post, path = "/api/v1/callback-tasks", tag = "operator", request_body = CreateCallbackTaskRequest,
    responses((status = 201, body = CallbackTaskView), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse),
              (status = 403, body = ErrorResponse, description = "the key has neither `operator` nor `runtime`"),
              (status = 422, body = ErrorResponse, description = "a field is invalid (named in `field`)")))]
pub async fn create_task(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let Request {
        state, auth, body, ..
    } = req;
    let r: CreateCallbackTaskRequest = parse_json(&body)?;
    let new = NewCallbackTask {
        tenant_id: auth.tenant_id,
        phone: fields::e164("phone", &r.phone)?.into_string(),
        reason: fields::label("reason", &r.reason, actors::operator::MAX_REASON_CHARS)?
            .into_string(),
        source_call_id: r
            .source_call_id
            .map(|c| {
                CallId::parse(&c).ok_or_else(|| {
                    ApiError::invalid("source_call_id", "is not a call of this tenant")
                })
            })
            .transpose()?,
        queue_id: r
            .queue_id
            .map(|q| {
                QueueId::parse(&q).ok_or_else(|| {
                    ApiError::invalid("queue_id", "is not an operator queue of this tenant")
                })
            })
            .transpose()?,
        priority: r.priority.unwrap_or(CallbackPriorityDto::Normal).into(),
        due_at: r
            .due_at
            .map(|t| {
                parse_rfc3339(&t)
                    .ok_or_else(|| ApiError::invalid("due_at", "must be an RFC 3339 time"))
            })
            .transpose()?,
        created_by: CallbackSource::Api,
    };
    let task = callbacks::create_for_api(&state.store, Some(&state.actors.notifier), &new).await?;
    Ok(task_reply(StatusCode::CREATED, task))
}

/// Reads one of the tenant's callback tasks.
#[utoipa::path(get, path = "/api/v1/callback-tasks/{id}", tag = "operator",
    params(("id" = String, Path, description = "Task id (`cbt_…`)")),
    responses((status = 200, body = CallbackTaskView), (status = 401, body = ErrorResponse),
              (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn get_task(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        ..
    } = req;
    let id = task_id(&id)?;
    let task = callbacks::get(&state.store, &auth.tenant_id, &id).await?;
    Ok(task_reply(StatusCode::OK, task))
}

/// Claims an open task for an assignee. Of concurrent claims exactly one wins; the others
/// get 409 `invalid_transition`.
#[utoipa::path(post, path = "/api/v1/callback-tasks/{id}/claim", tag = "operator", request_body = ClaimCallbackTaskRequest,
    params(("id" = String, Path, description = "Task id (`cbt_…`)")),
    responses((status = 200, body = CallbackTaskView), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
              (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "`invalid_transition`: the task is not open"),
              (status = 422, body = ErrorResponse)))]
pub async fn claim_task(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        body,
        ..
    } = req;
    let id = task_id(&id)?;
    let r: ClaimCallbackTaskRequest = parse_json(&body)?;
    let assignee = fields::label("assignee", &r.assignee, 100)?.into_string();
    let task = callbacks::claim(&state.store, &auth.tenant_id, &id, &assignee).await?;
    Ok(task_reply(StatusCode::OK, task))
}

/// Completes a claimed task, with an optional outcome and notes.
#[utoipa::path(post, path = "/api/v1/callback-tasks/{id}/complete", tag = "operator", request_body = Option<CompleteCallbackTaskRequest>,
    params(("id" = String, Path, description = "Task id (`cbt_…`)")),
    responses((status = 200, body = CallbackTaskView), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
              (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "`invalid_transition`: the task is not claimed"),
              (status = 422, body = ErrorResponse)))]
pub async fn complete_task(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        body,
        ..
    } = req;
    let id = task_id(&id)?;
    let r: CompleteCallbackTaskRequest = parse_optional_json(&body)?;
    let outcome = optional_text("outcome", r.outcome, 500)?;
    let notes = optional_text("notes", r.notes, 2000)?;
    let task = callbacks::complete(
        &state.store,
        &auth.tenant_id,
        &id,
        outcome.as_deref(),
        notes.as_deref(),
    )
    .await?;
    Ok(task_reply(StatusCode::OK, task))
}

/// Cancels an open or claimed task, with an optional reason.
#[utoipa::path(post, path = "/api/v1/callback-tasks/{id}/cancel", tag = "operator", request_body = Option<CancelCallbackTaskRequest>,
    params(("id" = String, Path, description = "Task id (`cbt_…`)")),
    responses((status = 200, body = CallbackTaskView), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
              (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "`invalid_transition`: the task is completed or cancelled"),
              (status = 422, body = ErrorResponse)))]
pub async fn cancel_task(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        body,
        ..
    } = req;
    let id = task_id(&id)?;
    let r: CancelCallbackTaskRequest = parse_optional_json(&body)?;
    let reason = optional_text("reason", r.reason, 500)?;
    let task = callbacks::cancel(&state.store, &auth.tenant_id, &id, reason.as_deref()).await?;
    Ok(task_reply(StatusCode::OK, task))
}
