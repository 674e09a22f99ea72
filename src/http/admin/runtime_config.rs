//! Admin API of a tenant's AI runtime defaults:
//! `PUT /api/v1/admin/tenants/{tenant_id}/runtime-config` (replaces the whole
//! configuration; audited). The model and voice are the defaults of the tenant's agent
//! versions written without their own (see `agents::spec`).

use actors::ids::TenantId;
use actors::store::RuntimeConfig;
use actors::tenant::{AuditMeta, RuntimeConfigUpdate, TenantMsg};
use ractor::call_t;
use serde::Deserialize;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;

use super::tenants::TenantView;
use super::{check_url, json};
use crate::http::filters::parse_json;
use crate::http::mount::Request;
use crate::http::{ApiError, ErrorResponse};

/// Body of `PUT /api/v1/admin/tenants/{tenant_id}/runtime-config` (replaces the whole config).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfigRequest {
    /// Realtime model of the tenant's agent versions written without one (else `gpt-realtime`).
    #[schema(pattern = "^[A-Za-z0-9._:/-]{1,200}$")]
    pub model: Option<String>,
    /// Voice of the tenant's agent versions written without one (else `marin`).
    #[schema(pattern = "^[A-Za-z0-9._:/-]{1,200}$")]
    pub voice: Option<String>,
    /// A URL recorded with the tenant (informational; events are delivered to the event webhook, `PUT /api/v1/admin/tenants/{tenant_id}/event-webhook`).
    #[schema(max_length = 2048, format = "http-url")]
    pub webhook_url: Option<String>,
}

fn check_token(field: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        None => Ok(None),
        Some(v) => {
            let ok = !v.is_empty()
                && v.len() <= 200
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-/".contains(&b));
            if ok {
                Ok(Some(v))
            } else {
                Err(ApiError::invalid(
                    field,
                    "must be 1 to 200 of letters, digits and . _ : - /",
                ))
            }
        }
    }
}

/// Replaces a tenant's runtime configuration.
#[utoipa::path(put, path = "/api/v1/admin/tenants/{tenant_id}/runtime-config", tag = "admin",
    request_body = RuntimeConfigRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantView), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn put_runtime_config(
    req: Request<AuditMeta, (TenantId,)>,
) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        body,
        ..
    } = req;
    let req: RuntimeConfigRequest = parse_json(&body)?;
    let update = RuntimeConfigUpdate {
        config: RuntimeConfig {
            model: check_token("model", req.model)?,
            voice: check_token("voice", req.voice)?,
        },
        webhook_url: req
            .webhook_url
            .as_deref()
            .map(|u| check_url("webhook_url", u))
            .transpose()?,
    };
    let tenant = call_t!(
        state.tenant_actor()?,
        TenantMsg::SetRuntimeConfig,
        state.actor_timeout_ms(),
        id,
        update,
        meta
    )??;
    Ok(json(StatusCode::OK, &TenantView::from(tenant)))
}
