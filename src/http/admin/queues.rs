//! Admin API for a tenant's operator queues
//! (`/api/v1/admin/tenants/{tenant_id}/operator-queues[/{queue_id}]`, `x-admin-key`): the
//! same operations and validation as the tenant API (`http/queues.rs`), each change audited
//! as `admin`.

use actors::tenant::AuditMeta;
use warp::reply::Response;

use super::tenant_id;
use crate::http::ApiError;
use crate::http::ErrorResponse;
use crate::http::mount::Request;
use crate::http::page::Page;
use crate::http::queues::{self, OperatorQueueRequest, OperatorQueueView, QueueListParams};

/// Lists a tenant's operator queues, by name.
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant_id}/operator-queues", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id"), QueueListParams),
    responses((status = 200, body = Page<OperatorQueueView>), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse)))]
pub async fn list_queues(req: Request<AuditMeta, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        path: (tenant,),
        raw_query: query,
        ..
    } = req;
    queues::list(&state, tenant_id(&tenant)?, &query).await
}

/// Creates an operator queue for a tenant (audited).
#[utoipa::path(post, path = "/api/v1/admin/tenants/{tenant_id}/operator-queues", tag = "admin",
    request_body = OperatorQueueRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 201, body = OperatorQueueView), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 404, body = ErrorResponse, description = "no such tenant"),
              (status = 409, body = ErrorResponse, description = "the tenant already has a queue of that name"),
              (status = 422, body = ErrorResponse)))]
pub async fn create_queue(req: Request<AuditMeta, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (tenant,),
        body,
        ..
    } = req;
    queues::create(&state, tenant_id(&tenant)?, meta, &body).await
}

/// Reads one of a tenant's operator queues.
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant_id}/operator-queues/{queue_id}", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id"), ("queue_id" = String, Path, description = "Queue id (`oq_…`)")),
    responses((status = 200, body = OperatorQueueView), (status = 401, body = ErrorResponse),
              (status = 404, body = ErrorResponse)))]
pub async fn get_queue(req: Request<AuditMeta, (String, String)>) -> Result<Response, ApiError> {
    let Request {
        state,
        path: (tenant, id),
        ..
    } = req;
    queues::get(&state, tenant_id(&tenant)?, &id).await
}

/// Replaces every field of one of a tenant's operator queues (audited).
#[utoipa::path(put, path = "/api/v1/admin/tenants/{tenant_id}/operator-queues/{queue_id}", tag = "admin",
    request_body = OperatorQueueRequest,
    params(("tenant_id" = String, Path, description = "Tenant id"), ("queue_id" = String, Path, description = "Queue id (`oq_…`)")),
    responses((status = 200, body = OperatorQueueView), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn put_queue(req: Request<AuditMeta, (String, String)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (tenant, id),
        body,
        ..
    } = req;
    queues::replace(&state, tenant_id(&tenant)?, &id, meta, &body).await
}

/// Deletes one of a tenant's operator queues (audited); its callback tasks stay, without a
/// queue.
#[utoipa::path(delete, path = "/api/v1/admin/tenants/{tenant_id}/operator-queues/{queue_id}", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id"), ("queue_id" = String, Path, description = "Queue id (`oq_…`)")),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorResponse),
              (status = 404, body = ErrorResponse)))]
pub async fn delete_queue(req: Request<AuditMeta, (String, String)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (tenant, id),
        ..
    } = req;
    queues::delete(&state, tenant_id(&tenant)?, &id, meta).await
}
