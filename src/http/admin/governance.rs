//! Admin API of a tenant's governance settings and dial policies:
//! `GET|PUT /api/v1/admin/tenants/{tenant_id}/governance` (two-person approval of agent
//! versions), `GET|PUT /api/v1/admin/tenants/{tenant_id}/dial-policy` and
//! `GET|PUT /api/v1/admin/phone-routes/{route_id}/dial-policy` (calling hours and the daily
//! attempt limit of the pre-dial policy; a route's fields override the tenant's). Every change
//! is audited under the identity that made it.

use actors::governance::predial::{self, DialPolicy, DialPolicySpec, PolicyScope};
use actors::governance::settings::{self, TenantGovernance};
use actors::ids::{RouteId, TenantId};
use actors::router;
use actors::tenant::AuditMeta;
use actors::time::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;

use super::json;
use crate::http::filters::parse_json;
use crate::http::mount::Request;
use crate::http::queues::BusinessHoursDto;
use crate::http::{ApiError, ErrorResponse};

/// A tenant's governance settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct GovernanceView {
    /// The tenant.
    pub tenant_id: String,
    /// Agent versions must be approved by an identity other than their author.
    pub two_person_approval: bool,
    /// RFC 3339 of the last change (null: never set, the defaults).
    pub updated_at: Option<String>,
}

/// Body of `PUT /api/v1/admin/tenants/{tenant_id}/governance`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutGovernanceRequest {
    /// Require an approver other than the version's author.
    pub two_person_approval: bool,
}

fn governance_view(tenant: &TenantId, g: TenantGovernance) -> GovernanceView {
    GovernanceView {
        tenant_id: tenant.to_string(),
        two_person_approval: g.two_person_approval,
        updated_at: g.updated_at.map(rfc3339),
    }
}

/// A dial policy, as a request body.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DialPolicyBody {
    /// Calling hours in the callee's zone (this zone unless the call names one); null: no
    /// window.
    #[serde(default)]
    pub calling_hours: Option<BusinessHoursDto>,
    /// Attempts per callee number and local day (1–100); null: no limit.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub daily_attempt_limit: Option<i64>,
}

/// A stored dial policy (its own schema: the request body allows no other field).
#[derive(Debug, Serialize, ToSchema)]
pub struct DialPolicyView {
    /// The tenant.
    pub tenant_id: String,
    /// The route, for a route's policy.
    pub route_id: Option<String>,
    /// Calling hours in the callee's zone (this zone unless the call names one); null: no
    /// window.
    pub calling_hours: Option<BusinessHoursDto>,
    /// Attempts per callee number and local day; null: no limit.
    pub daily_attempt_limit: Option<i64>,
    /// RFC 3339 of the last change (null: never set).
    pub updated_at: Option<String>,
}

fn policy_view(tenant: &TenantId, route: Option<&RouteId>, p: &DialPolicy) -> DialPolicyView {
    let spec = p.to_spec();
    DialPolicyView {
        tenant_id: tenant.to_string(),
        route_id: route.map(RouteId::to_string),
        calling_hours: spec.calling_hours.map(BusinessHoursDto::from),
        daily_attempt_limit: spec.daily_attempt_limit,
        updated_at: p.updated_at.map(rfc3339),
    }
}

fn parse_policy(body: &[u8]) -> Result<DialPolicy, ApiError> {
    let r: DialPolicyBody = parse_json(body)?;
    let spec = DialPolicySpec {
        calling_hours: r.calling_hours.map(Into::into),
        daily_attempt_limit: r.daily_attempt_limit,
    };
    Ok(DialPolicy::parse(&spec)?)
}

async fn route_tenant(
    state: &crate::http::AppState,
    id: &str,
) -> Result<(RouteId, TenantId), ApiError> {
    let id = RouteId::parse(id).ok_or_else(|| ApiError::NotFound("phone route".into()))?;
    let route = router::get_route(&state.store, &id).await?;
    Ok((id, route.tenant_id))
}

/// A tenant's governance settings.
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant_id}/governance", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = GovernanceView), (status = 404, body = ErrorResponse)))]
pub async fn get_governance(req: Request<AuditMeta, (TenantId,)>) -> Result<Response, ApiError> {
    let Request {
        state, path: (id,), ..
    } = req;
    let g = settings::get(&state.store, &id).await?;
    Ok(json(StatusCode::OK, &governance_view(&id, g)))
}

/// Replaces a tenant's governance settings.
#[utoipa::path(put, path = "/api/v1/admin/tenants/{tenant_id}/governance", tag = "admin",
    request_body = PutGovernanceRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = GovernanceView), (status = 404, body = ErrorResponse)))]
pub async fn put_governance(req: Request<AuditMeta, (TenantId,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        body,
        ..
    } = req;
    let r: PutGovernanceRequest = parse_json(&body)?;
    let g = settings::put(&state.store, &id, r.two_person_approval, &meta).await?;
    Ok(json(StatusCode::OK, &governance_view(&id, g)))
}

/// A tenant's dial policy (its default for every route).
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant_id}/dial-policy", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = DialPolicyView), (status = 404, body = ErrorResponse)))]
pub async fn get_tenant_dial_policy(
    req: Request<AuditMeta, (TenantId,)>,
) -> Result<Response, ApiError> {
    let Request {
        state, path: (id,), ..
    } = req;
    settings::get(&state.store, &id).await?;
    let p = predial::get_policy(&state.store, &id, &PolicyScope::Tenant).await?;
    Ok(json(StatusCode::OK, &policy_view(&id, None, &p)))
}

/// Replaces a tenant's dial policy.
#[utoipa::path(put, path = "/api/v1/admin/tenants/{tenant_id}/dial-policy", tag = "admin",
    request_body = DialPolicyBody,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = DialPolicyView), (status = 404, body = ErrorResponse),
              (status = 422, body = ErrorResponse)))]
pub async fn put_tenant_dial_policy(
    req: Request<AuditMeta, (TenantId,)>,
) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        body,
        ..
    } = req;
    let policy = parse_policy(&body)?;
    settings::get(&state.store, &id).await?;
    let p = predial::put_policy(&state.store, &id, &PolicyScope::Tenant, policy, &meta).await?;
    Ok(json(StatusCode::OK, &policy_view(&id, None, &p)))
}

/// A route's dial policy (fields it sets override the tenant's).
#[utoipa::path(get, path = "/api/v1/admin/phone-routes/{route_id}/dial-policy", tag = "admin",
    params(("route_id" = String, Path, description = "Route id")),
    responses((status = 200, body = DialPolicyView), (status = 404, body = ErrorResponse)))]
pub async fn get_route_dial_policy(
    req: Request<AuditMeta, (String,)>,
) -> Result<Response, ApiError> {
    let Request {
        state, path: (id,), ..
    } = req;
    let (route, tenant) = route_tenant(&state, &id).await?;
    let scope = PolicyScope::Route(route.clone());
    let p = predial::get_policy(&state.store, &tenant, &scope).await?;
    Ok(json(
        StatusCode::OK,
        &policy_view(&tenant, Some(&route), &p),
    ))
}

/// Replaces a route's dial policy.
#[utoipa::path(put, path = "/api/v1/admin/phone-routes/{route_id}/dial-policy", tag = "admin",
    request_body = DialPolicyBody,
    params(("route_id" = String, Path, description = "Route id")),
    responses((status = 200, body = DialPolicyView), (status = 404, body = ErrorResponse),
              (status = 422, body = ErrorResponse)))]
pub async fn put_route_dial_policy(
    req: Request<AuditMeta, (String,)>,
) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        body,
        ..
    } = req;
    let policy = parse_policy(&body)?;
    let (route, tenant) = route_tenant(&state, &id).await?;
    let scope = PolicyScope::Route(route.clone());
    let p = predial::put_policy(&state.store, &tenant, &scope, policy, &meta).await?;
    Ok(json(
        StatusCode::OK,
        &policy_view(&tenant, Some(&route), &p),
    ))
}
