//! Admin API for a tenant's operator queues
//! (`/api/v1/admin/tenants/{tenant_id}/operator-queues[/{queue_id}]`, `x-admin-key`): the
//! same operations and validation as the tenant API (`http/queues.rs`), each change audited
//! as `admin`.

use bytes::Bytes;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::tenant_id;
use crate::http::filters::{Caller, any_of, endpoint, json_body, raw_query};
use crate::http::queues::{
    self, OperatorQueueList, OperatorQueueRequest, OperatorQueueView, QueueListParams,
};
use crate::http::routes::{
    ADMIN_OPERATOR_QUEUE_DELETE, ADMIN_OPERATOR_QUEUE_GET, ADMIN_OPERATOR_QUEUE_PUT,
    ADMIN_OPERATOR_QUEUES_CREATE, ADMIN_OPERATOR_QUEUES_LIST,
};
use crate::http::{ApiError, AppState};
use crate::openapi::ErrorResponse;

/// Lists a tenant's operator queues, by name.
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant_id}/operator-queues", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id"), QueueListParams),
    security(("admin_key" = [])),
    responses((status = 200, body = OperatorQueueList), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse)))]
pub async fn list_queues(
    tenant: String,
    state: AppState,
    caller: Caller,
    query: String,
) -> Result<Response, ApiError> {
    state.admin(&caller)?;
    queues::list(&state, tenant_id(&tenant)?, &query).await
}

/// Creates an operator queue for a tenant (audited).
#[utoipa::path(post, path = "/api/v1/admin/tenants/{tenant_id}/operator-queues", tag = "admin",
    request_body = OperatorQueueRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    security(("admin_key" = [])),
    responses((status = 201, body = OperatorQueueView), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 404, body = ErrorResponse, description = "no such tenant"),
              (status = 409, body = ErrorResponse, description = "the tenant already has a queue of that name"),
              (status = 422, body = ErrorResponse)))]
pub async fn create_queue(
    tenant: String,
    state: AppState,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let meta = state.admin(&caller)?;
    queues::create(&state, tenant_id(&tenant)?, meta, &body).await
}

/// Reads one of a tenant's operator queues.
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant_id}/operator-queues/{queue_id}", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id"), ("queue_id" = String, Path, description = "Queue id (`oq_…`)")),
    security(("admin_key" = [])),
    responses((status = 200, body = OperatorQueueView), (status = 401, body = ErrorResponse),
              (status = 404, body = ErrorResponse)))]
pub async fn get_queue(
    tenant: String,
    id: String,
    state: AppState,
    caller: Caller,
) -> Result<Response, ApiError> {
    state.admin(&caller)?;
    queues::get(&state, tenant_id(&tenant)?, &id).await
}

/// Replaces every field of one of a tenant's operator queues (audited).
#[utoipa::path(put, path = "/api/v1/admin/tenants/{tenant_id}/operator-queues/{queue_id}", tag = "admin",
    request_body = OperatorQueueRequest,
    params(("tenant_id" = String, Path, description = "Tenant id"), ("queue_id" = String, Path, description = "Queue id (`oq_…`)")),
    security(("admin_key" = [])),
    responses((status = 200, body = OperatorQueueView), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn put_queue(
    tenant: String,
    id: String,
    state: AppState,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let meta = state.admin(&caller)?;
    queues::replace(&state, tenant_id(&tenant)?, &id, meta, &body).await
}

/// Deletes one of a tenant's operator queues (audited); its callback tasks stay, without a
/// queue.
#[utoipa::path(delete, path = "/api/v1/admin/tenants/{tenant_id}/operator-queues/{queue_id}", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id"), ("queue_id" = String, Path, description = "Queue id (`oq_…`)")),
    security(("admin_key" = [])),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorResponse),
              (status = 404, body = ErrorResponse)))]
pub async fn delete_queue(
    tenant: String,
    id: String,
    state: AppState,
    caller: Caller,
) -> Result<Response, ApiError> {
    let meta = state.admin(&caller)?;
    queues::delete(&state, tenant_id(&tenant)?, &id, meta).await
}

/// The admin queue routes.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let limit = state.config.max_body_bytes;
    let queues = || warp::path!("api" / "v1" / "admin" / "tenants" / String / "operator-queues");
    let queue =
        || warp::path!("api" / "v1" / "admin" / "tenants" / String / "operator-queues" / String);
    any_of!(
        endpoint!(
            state,
            queues(),
            get,
            ADMIN_OPERATOR_QUEUES_LIST,
            list_queues,
            raw_query()
        ),
        endpoint!(
            state,
            queues(),
            post,
            ADMIN_OPERATOR_QUEUES_CREATE,
            create_queue,
            json_body(limit)
        ),
        endpoint!(state, queue(), get, ADMIN_OPERATOR_QUEUE_GET, get_queue),
        endpoint!(
            state,
            queue(),
            put,
            ADMIN_OPERATOR_QUEUE_PUT,
            put_queue,
            json_body(limit)
        ),
        endpoint!(
            state,
            queue(),
            delete,
            ADMIN_OPERATOR_QUEUE_DELETE,
            delete_queue
        ),
    )
}
