//! Runtime API (tenant bearer key).

use serde::Serialize;
use utoipa::ToSchema;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::admin::ScopeDto;
use super::filters::{Caller, at, caller, with_state};
use super::routes::ME;
use super::{ApiError, AppState};
use crate::openapi::ErrorResponse;

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
    security(("bearer" = [])),
    responses((status = 200, body = MeView), (status = 401, body = ErrorResponse),
              (status = 403, body = ErrorResponse), (status = 429, body = ErrorResponse)))]
pub async fn me(state: AppState, caller: Caller) -> Result<Response, ApiError> {
    let auth = state.tenant(&caller, None).await?;
    Ok(warp::reply::json(&MeView {
        tenant_id: auth.tenant_id.into_string(),
        tenant_name: auth.tenant_name,
        key_id: auth.key_id.into_string(),
        scopes: auth.scopes.into_iter().map(ScopeDto::from).collect(),
    })
    .into_response())
}

/// The runtime routes.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v1" / "me")
        .and(warp::get())
        .and(at(&ME))
        .and(with_state(state))
        .and(caller())
        .then(me)
        .map(|r: Result<Response, ApiError>| r.into_response())
        .boxed()
}
