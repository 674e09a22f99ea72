//! Admin API of a tenant's launch: `GET|PUT /api/v1/admin/tenants/{tenant_id}/launch` (the
//! record: owner, rollback path, required roles; with every approval and what is missing)
//! and `POST /api/v1/admin/tenants/{tenant_id}/launch/approvals` (an identity approves in a
//! role it holds, with a comment). An approval counts only while the launch is materially
//! what it approved (routes, routed agents' versions, the record); a change invalidates it
//! and the launch says why. Every change is audited.

use actors::governance::AdminRole;
use actors::governance::launch::{self, ApprovalState, LaunchStatus};
use actors::ids::TenantId;
use actors::tenant::AuditMeta;
use actors::time::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;

use super::identities::AdminRoleDto;
use super::json;
use crate::http::filters::parse_json;
use crate::http::mount::Request;
use crate::http::{ApiError, ErrorResponse};

/// `required_roles`: `admin` and `approver`, at least one (an auditor approves nothing).
fn launch_roles() -> utoipa::openapi::Array {
    crate::http::fields::string_list(
        "The roles whose approval the launch needs (`admin`, `approver`; at least one).",
        Some(&["admin", "approver"]),
        None,
        (1, 0),
        false,
        false,
    )
}

/// Body of `PUT /api/v1/admin/tenants/{tenant_id}/launch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutLaunchRequest {
    /// Who owns the launch (1–200 characters).
    #[schema(min_length = 1, max_length = 200, format = "label")]
    pub owner: String,
    /// How to roll back (1–2000 characters).
    #[schema(min_length = 1, max_length = 2000, format = "label")]
    pub rollback_path: String,
    /// The roles whose approval the launch needs (`admin`, `approver`; at least one).
    #[schema(schema_with = launch_roles)]
    pub required_roles: Vec<AdminRoleDto>,
}

/// Body of `POST /api/v1/admin/tenants/{tenant_id}/launch/approvals`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveLaunchRequest {
    /// The role approved in (the identity must hold it; the record must require it).
    pub role: AdminRoleDto,
    /// Why (1–2000 characters).
    #[schema(min_length = 1, max_length = 2000, format = "label")]
    pub comment: String,
}

/// The launch record.
#[derive(Debug, Serialize, ToSchema)]
pub struct LaunchRecordView {
    /// Owner.
    pub owner: String,
    /// Rollback path.
    pub rollback_path: String,
    /// Roles whose approval is needed.
    pub required_roles: Vec<AdminRoleDto>,
    /// The identity that last set it.
    pub updated_by: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// One approval.
#[derive(Debug, Serialize, ToSchema)]
pub struct LaunchApprovalView {
    /// Sequence number.
    pub id: i64,
    /// The approving identity.
    pub identity: String,
    /// The role approved in.
    pub role: AdminRoleDto,
    /// Its comment.
    pub comment: String,
    /// RFC 3339.
    pub approved_at: String,
    /// Whether it still counts.
    pub valid: bool,
    /// What changed since it was given (empty while valid).
    pub invalidated_by: Vec<String>,
}

/// A tenant's launch.
#[derive(Debug, Serialize, ToSchema)]
pub struct LaunchView {
    /// The tenant.
    pub tenant_id: String,
    /// The record (null until set).
    pub record: Option<LaunchRecordView>,
    /// Every approval, newest first.
    pub approvals: Vec<LaunchApprovalView>,
    /// Required roles without a valid approval.
    pub missing_roles: Vec<AdminRoleDto>,
    /// A record exists and every required role has a valid approval.
    pub approved: bool,
}

fn approval_view(a: ApprovalState) -> LaunchApprovalView {
    LaunchApprovalView {
        id: a.approval.id,
        identity: a.approval.identity,
        role: a.approval.role.into(),
        comment: a.approval.comment,
        approved_at: rfc3339(a.approval.approved_at),
        valid: a.valid,
        invalidated_by: a.invalidated_by,
    }
}

fn launch_view(tenant: &TenantId, s: LaunchStatus) -> LaunchView {
    LaunchView {
        tenant_id: tenant.to_string(),
        record: s.record.map(|r| LaunchRecordView {
            owner: r.owner,
            rollback_path: r.rollback_path,
            required_roles: r.required_roles.into_iter().map(Into::into).collect(),
            updated_by: r.updated_by,
            updated_at: rfc3339(r.updated_at),
        }),
        approvals: s.approvals.into_iter().map(approval_view).collect(),
        missing_roles: s.missing_roles.into_iter().map(Into::into).collect(),
        approved: s.approved,
    }
}

/// A tenant's launch: the record, every approval (valid or invalidated, and why) and the
/// roles still missing.
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant_id}/launch", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = LaunchView), (status = 404, body = ErrorResponse)))]
pub async fn get_launch(req: Request<AuditMeta, (TenantId,)>) -> Result<Response, ApiError> {
    let Request {
        state, path: (id,), ..
    } = req;
    let s = launch::status(&state.store, &id).await?;
    Ok(json(StatusCode::OK, &launch_view(&id, s)))
}

/// Sets a tenant's launch record; approvals given before it changed no longer count.
#[utoipa::path(put, path = "/api/v1/admin/tenants/{tenant_id}/launch", tag = "admin",
    request_body = PutLaunchRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = LaunchView), (status = 404, body = ErrorResponse),
              (status = 422, body = ErrorResponse)))]
pub async fn put_launch(req: Request<AuditMeta, (TenantId,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        body,
        ..
    } = req;
    let r: PutLaunchRequest = parse_json(&body)?;
    let roles: Vec<AdminRole> = r.required_roles.into_iter().map(Into::into).collect();
    launch::put_record(&state.store, &id, &r.owner, &r.rollback_path, roles, &meta).await?;
    let s = launch::status(&state.store, &id).await?;
    Ok(json(StatusCode::OK, &launch_view(&id, s)))
}

/// Approves a tenant's launch in a role the identity holds, with a comment.
#[utoipa::path(post, path = "/api/v1/admin/tenants/{tenant_id}/launch/approvals", tag = "admin",
    request_body = ApproveLaunchRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 201, body = LaunchApprovalView),
              (status = 403, body = ErrorResponse, description = "the identity does not hold the role (`insufficient_role`)"),
              (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "the tenant has no launch record"),
              (status = 422, body = ErrorResponse)))]
pub async fn approve_launch(req: Request<AuditMeta, (TenantId,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        body,
        ..
    } = req;
    let r: ApproveLaunchRequest = parse_json(&body)?;
    let a = launch::approve(&state.store, &id, r.role.into(), &r.comment, &meta).await?;
    Ok(json(StatusCode::CREATED, &approval_view(a)))
}
