//! Admin API of a tenant's provider credentials, stored sealed and never returned (only a
//! hint): `PUT /api/v1/admin/tenants/{tenant_id}/twilio-credentials` and
//! `PUT|DELETE /api/v1/admin/tenants/{tenant_id}/openai-key`. Every change is audited.

use actors::ids::TenantId;
use actors::tenant::{AuditMeta, TenantMsg, TwilioCredentialsInput};
use ractor::call_t;
use serde::Deserialize;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;

use super::json;
use super::tenants::TenantView;
use crate::http::fields;
use crate::http::filters::parse_json;
use crate::http::mount::Request;
use crate::http::{ApiError, ErrorResponse};

/// Body of `PUT /api/v1/admin/tenants/{tenant_id}/twilio-credentials`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TwilioCredentialsRequest {
    /// `AC` followed by 32 hex digits.
    #[schema(pattern = "^AC[0-9a-fA-F]{32}$")]
    pub account_sid: String,
    /// The account's auth token (stored encrypted, never returned).
    #[schema(pattern = "^[!-~]{16,128}$")]
    pub auth_token: String,
}

/// Body of `PUT /api/v1/admin/tenants/{tenant_id}/openai-key`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAiKeyRequest {
    /// The tenant's realtime-model API key (stored encrypted, never returned).
    #[schema(pattern = "^[!-~]{8,512}$")]
    pub api_key: String,
}

/// Stores a tenant's Twilio account SID and auth token (encrypted; only a hint is returned).
#[utoipa::path(put, path = "/api/v1/admin/tenants/{tenant_id}/twilio-credentials", tag = "admin",
    request_body = TwilioCredentialsRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "account SID used by another tenant"),
              (status = 422, body = ErrorResponse)))]
pub async fn put_twilio_credentials(
    req: Request<AuditMeta, (TenantId,)>,
) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        body,
        ..
    } = req;
    let req: TwilioCredentialsRequest = parse_json(&body)?;
    let account_sid = fields::account_sid("account_sid", &req.account_sid)?;
    let token_ok = (16..=128).contains(&req.auth_token.len())
        && req.auth_token.bytes().all(|b| b.is_ascii_graphic());
    if !token_ok {
        return Err(ApiError::invalid(
            "auth_token",
            "must be 16 to 128 printable characters",
        ));
    }
    let input = TwilioCredentialsInput {
        account_sid: account_sid.into_string(),
        auth_token: req.auth_token,
    };
    let tenant = call_t!(
        state.tenant_actor()?,
        TenantMsg::SetTwilioCredentials,
        state.actor_timeout_ms(),
        id,
        input,
        meta
    )??;
    Ok(json(StatusCode::OK, &TenantView::from(tenant)))
}

/// Sets the tenant's own realtime-model API key (overrides the global `OPENAI_API_KEY` for
/// its calls; encrypted at rest; only a hint is returned).
#[utoipa::path(put, path = "/api/v1/admin/tenants/{tenant_id}/openai-key", tag = "admin",
    request_body = OpenAiKeyRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn put_openai_key(req: Request<AuditMeta, (TenantId,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        body,
        ..
    } = req;
    let req: OpenAiKeyRequest = parse_json(&body)?;
    let key = req.api_key.trim().to_owned();
    if !(8..=512).contains(&key.len()) || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "api_key",
            "must be 8 to 512 printable characters",
        ));
    }
    let tenant = call_t!(
        state.tenant_actor()?,
        TenantMsg::SetOpenAiKey,
        state.actor_timeout_ms(),
        id,
        Some(key),
        meta
    )??;
    Ok(json(StatusCode::OK, &TenantView::from(tenant)))
}

/// Removes the tenant's own realtime-model API key (its calls use the global one again).
#[utoipa::path(delete, path = "/api/v1/admin/tenants/{tenant_id}/openai-key", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorResponse)))]
pub async fn delete_openai_key(req: Request<AuditMeta, (TenantId,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        ..
    } = req;
    let tenant = call_t!(
        state.tenant_actor()?,
        TenantMsg::SetOpenAiKey,
        state.actor_timeout_ms(),
        id,
        None,
        meta
    )??;
    Ok(json(StatusCode::OK, &TenantView::from(tenant)))
}
