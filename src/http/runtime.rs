//! Runtime API (tenant bearer key).

use actors::tenant::AuthContext;
use serde::Serialize;
use utoipa::ToSchema;
use warp::Reply;
use warp::reply::Response;

use super::ApiError;
use super::admin::ScopeDto;
use super::mount::Request;

/// Who the presented key belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    /// Tenant id.
    pub tenant_id: String,
    /// Tenant name.
    pub tenant_name: String,
    /// Key id.
    pub key_id: String,
    /// Key scopes.
    pub scopes: Vec<ScopeDto>,
}

/// Identifies the caller's tenant and key.
#[utoipa::path(get, path = "/api/v1/me", tag = "runtime",
    responses((status = 200, body = MeView)))]
pub async fn me(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let auth = req.auth;
    Ok(warp::reply::json(&MeView {
        tenant_id: auth.tenant_id.into_string(),
        tenant_name: auth.tenant_name,
        key_id: auth.key_id.into_string(),
        scopes: auth.scopes.into_iter().map(ScopeDto::from).collect(),
    })
    .into_response())
}
