//! Admin API of a tenant's API keys: `GET|POST /api/v1/admin/tenants/{tenant_id}/api-keys`
//! and `DELETE /api/v1/admin/tenants/{tenant_id}/api-keys/{key_id}` (revocation takes effect
//! on the very next request). The secret is shown once, at creation. Every change is
//! audited.

use actors::ids::{ApiKeyId, TenantId};
use actors::store::{ApiKey, Scope};
use actors::tenant::{AuditMeta, CreatedApiKey, NewApiKey, TenantMsg};
use actors::time::rfc3339;
use ractor::call_t;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;

use super::json;
use crate::http::fields;
use crate::http::filters::parse_json;
use crate::http::mount::Request;
use crate::http::page::List;
use crate::http::{ApiError, ErrorResponse};

/// API key scope.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ScopeDto {
    /// Place and control calls.
    Runtime,
    /// Read records.
    Read,
    /// Operate queues, callback tasks and live calls.
    Operator,
}

impl From<ScopeDto> for Scope {
    fn from(s: ScopeDto) -> Self {
        match s {
            ScopeDto::Runtime => Scope::Runtime,
            ScopeDto::Read => Scope::Read,
            ScopeDto::Operator => Scope::Operator,
        }
    }
}

impl From<Scope> for ScopeDto {
    fn from(s: Scope) -> Self {
        match s {
            Scope::Runtime => ScopeDto::Runtime,
            Scope::Read => ScopeDto::Read,
            Scope::Operator => ScopeDto::Operator,
        }
    }
}

/// Body of `POST /api/v1/admin/tenants/{tenant_id}/api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// Label (1–100 characters).
    #[schema(min_length = 1, max_length = 100, format = "label")]
    pub name: String,
    /// Scopes granted (at least one).
    #[schema(min_items = 1)]
    pub scopes: Vec<ScopeDto>,
}

/// An API key (the secret is never shown again after creation).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    /// Identifier (`key_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Label.
    pub name: String,
    /// Visible prefix of the secret.
    pub prefix: String,
    /// Scopes.
    pub scopes: Vec<ScopeDto>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, last successful use.
    pub last_used_at: Option<String>,
    /// RFC 3339, when revoked.
    pub revoked_at: Option<String>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        ApiKeyView {
            id: k.id.into_string(),
            tenant_id: k.tenant_id.into_string(),
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes.into_iter().map(ScopeDto::from).collect(),
            created_at: rfc3339(k.created_at),
            last_used_at: k.last_used_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
        }
    }
}

/// A newly created key, with its secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKeyView {
    /// The key record.
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The secret: store it now, it cannot be retrieved again.
    pub secret: String,
}

/// Lists a tenant's API keys (revoked ones included).
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant_id}/api-keys", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = List<ApiKeyView>), (status = 404, body = ErrorResponse)))]
pub async fn list_api_keys(req: Request<AuditMeta, (TenantId,)>) -> Result<Response, ApiError> {
    let Request {
        state, path: (id,), ..
    } = req;
    let keys = call_t!(
        state.tenant_actor()?,
        TenantMsg::ListApiKeys,
        state.actor_timeout_ms(),
        id
    )??;
    Ok(json(
        StatusCode::OK,
        &List::new(keys.into_iter().map(ApiKeyView::from)),
    ))
}

/// Creates an API key; the secret is in this response only.
#[utoipa::path(post, path = "/api/v1/admin/tenants/{tenant_id}/api-keys", tag = "admin",
    request_body = CreateApiKeyRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 201, body = CreatedApiKeyView), (status = 404, body = ErrorResponse),
              (status = 422, body = ErrorResponse)))]
pub async fn create_api_key(req: Request<AuditMeta, (TenantId,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        body,
        ..
    } = req;
    let req: CreateApiKeyRequest = parse_json(&body)?;
    let name = fields::label("name", &req.name, 100)?.into_string();
    let mut scopes: Vec<Scope> = req.scopes.into_iter().map(Scope::from).collect();
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(ApiError::invalid(
            "scopes",
            "at least one of runtime, read, operator is required",
        ));
    }
    let CreatedApiKey { key, secret } = call_t!(
        state.tenant_actor()?,
        TenantMsg::CreateApiKey,
        state.actor_timeout_ms(),
        id,
        NewApiKey { name, scopes },
        meta
    )??;
    Ok(json(
        StatusCode::CREATED,
        &CreatedApiKeyView {
            key: ApiKeyView::from(key),
            secret,
        },
    ))
}

/// Revokes an API key: the very next request with it fails.
#[utoipa::path(delete, path = "/api/v1/admin/tenants/{tenant_id}/api-keys/{key_id}", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id"), ("key_id" = String, Path, description = "Key id")),
    responses((status = 200, body = ApiKeyView), (status = 404, body = ErrorResponse)))]
pub async fn revoke_api_key(
    req: Request<AuditMeta, (TenantId, ApiKeyId)>,
) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id, key),
        ..
    } = req;
    let key = call_t!(
        state.tenant_actor()?,
        TenantMsg::RevokeApiKey,
        state.actor_timeout_ms(),
        id,
        key,
        meta
    )??;
    Ok(json(StatusCode::OK, &ApiKeyView::from(key)))
}
