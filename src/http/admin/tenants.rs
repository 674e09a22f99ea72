//! Admin API of tenants: `GET|POST /api/v1/admin/tenants`,
//! `GET|PATCH /api/v1/admin/tenants/{tenant_id}`. Every change is audited by the tenant
//! actor in the same transaction.

use actors::ids::TenantId;
use actors::store::{Tenant, TenantStatus};
use actors::tenant::{AuditMeta, NewTenant, TenantMsg, TenantPatch};
use actors::time::rfc3339;
use ractor::call_t;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::http::StatusCode;
use warp::reply::Response;

use super::{check_url, double_option, json};
use crate::http::fields;
use crate::http::filters::{Paging, parse_json};
use crate::http::mount::Request;
use crate::http::page::Page;
use crate::http::{ApiError, ErrorResponse};

// === DTOs ===

/// Tenant status.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatusDto {
    /// Normal operation.
    Active,
    /// All runtime access refused.
    Suspended,
}

impl From<TenantStatus> for TenantStatusDto {
    fn from(s: TenantStatus) -> Self {
        match s {
            TenantStatus::Active => TenantStatusDto::Active,
            TenantStatus::Suspended => TenantStatusDto::Suspended,
        }
    }
}

impl From<TenantStatusDto> for TenantStatus {
    fn from(s: TenantStatusDto) -> Self {
        match s {
            TenantStatusDto::Active => TenantStatus::Active,
            TenantStatusDto::Suspended => TenantStatus::Suspended,
        }
    }
}

/// AI runtime defaults of a tenant: the model and voice of its agent versions written without
/// their own.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuntimeConfigView {
    /// Default realtime model.
    pub model: Option<String>,
    /// Default voice.
    pub voice: Option<String>,
}

/// Twilio account of a tenant (the auth token is never returned, only a hint).
#[derive(Debug, Serialize, ToSchema)]
pub struct TwilioView {
    /// `AC…`.
    pub account_sid: String,
    /// Last characters of the auth token.
    pub auth_token_hint: String,
}

/// A tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    /// Identifier (`ten_…`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Status.
    pub status: TenantStatusDto,
    /// Simultaneous live calls allowed.
    pub max_concurrent_calls: i64,
    /// A URL recorded with the tenant (informational; events are delivered to the event webhook, `PUT /api/v1/admin/tenants/{tenant_id}/event-webhook`).
    pub webhook_url: Option<String>,
    /// AI runtime defaults.
    pub runtime_config: RuntimeConfigView,
    /// Twilio account, when configured.
    pub twilio: Option<TwilioView>,
    /// Hint of the tenant's own realtime-model API key, when set (the key is never returned).
    pub openai_key_hint: Option<String>,
    /// Hint of the secret signing requests to the tenant (never returned after creation).
    pub signing_secret_hint: Option<String>,
    /// Where tenant events are delivered, when configured.
    pub event_webhook: Option<EventWebhookSummary>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        TenantView {
            id: t.id.into_string(),
            name: t.name,
            status: t.status.into(),
            max_concurrent_calls: t.max_concurrent_calls,
            webhook_url: t.webhook_url,
            runtime_config: RuntimeConfigView {
                model: t.runtime_config.model,
                voice: t.runtime_config.voice,
            },
            twilio: t.twilio.map(|tw| TwilioView {
                account_sid: tw.account_sid,
                auth_token_hint: tw.auth_token_hint,
            }),
            openai_key_hint: t.openai_key.map(|k| k.hint),
            signing_secret_hint: t.signing_secret.map(|k| k.hint),
            event_webhook: t.event_webhook.map(|w| EventWebhookSummary {
                url: w.url,
                events: w.events,
            }),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

/// A tenant's event webhook, as shown in the tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventWebhookSummary {
    /// The endpoint.
    pub url: String,
    /// Event names delivered (`null`: every event).
    pub events: Option<Vec<String>>,
}

/// Body of `POST /api/v1/admin/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// Display name (1–200 characters).
    #[schema(min_length = 1, max_length = 200, format = "label")]
    pub name: String,
    /// Simultaneous live calls allowed (1–10000, default 10).
    #[schema(minimum = 1, maximum = 10000)]
    pub max_concurrent_calls: Option<i64>,
    /// A URL recorded with the tenant, http or https (informational; events are delivered to the event webhook, `PUT /api/v1/admin/tenants/{tenant_id}/event-webhook`).
    #[schema(max_length = 2048, format = "http-url")]
    pub webhook_url: Option<String>,
}

/// Body of `PATCH /api/v1/admin/tenants/{tenant_id}`: only present fields change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTenantRequest {
    /// New name.
    #[schema(min_length = 1, max_length = 200, format = "label")]
    pub name: Option<String>,
    /// New status.
    pub status: Option<TenantStatusDto>,
    /// New concurrency limit.
    #[schema(minimum = 1, maximum = 10000)]
    pub max_concurrent_calls: Option<i64>,
    /// New webhook URL; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    #[schema(max_length = 2048, format = "http-url")]
    pub webhook_url: Option<Option<String>>,
}

/// Paging of a list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Rows to skip (default 0).
    pub offset: Option<u32>,
}

// === validation ===

fn check_limit(field: &str, v: i64) -> Result<i64, ApiError> {
    if !(1..=10_000).contains(&v) {
        return Err(ApiError::invalid(field, "must be between 1 and 10000"));
    }
    Ok(v)
}

// === handlers ===

/// Lists tenants.
#[utoipa::path(get, path = "/api/v1/admin/tenants", tag = "admin", params(ListParams),
    responses((status = 200, body = Page<TenantView>), (status = 401, body = ErrorResponse)))]
pub async fn list_tenants(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let params: ListParams = req.query()?;
    let state = req.state;
    let paging = Paging::new(params.limit, params.offset)?;
    let page = call_t!(
        state.tenant_actor()?,
        TenantMsg::List,
        state.actor_timeout_ms(),
        paging.limit,
        paging.offset
    )??;
    Ok(json(
        StatusCode::OK,
        &Page::new(
            page.items.into_iter().map(TenantView::from),
            paging,
            page.total,
        ),
    ))
}

/// Creates a tenant.
#[utoipa::path(post, path = "/api/v1/admin/tenants", tag = "admin", request_body = CreateTenantRequest,
    responses((status = 201, body = TenantView), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn create_tenant(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        body,
        ..
    } = req;
    let req: CreateTenantRequest = parse_json(&body)?;
    let input = NewTenant {
        name: fields::label("name", &req.name, 200)?.into_string(),
        max_concurrent_calls: check_limit(
            "max_concurrent_calls",
            req.max_concurrent_calls.unwrap_or(10),
        )?,
        webhook_url: req
            .webhook_url
            .as_deref()
            .map(|u| check_url("webhook_url", u))
            .transpose()?,
    };
    let tenant = call_t!(
        state.tenant_actor()?,
        TenantMsg::Create,
        state.actor_timeout_ms(),
        input,
        meta
    )??;
    Ok(json(StatusCode::CREATED, &TenantView::from(tenant)))
}

/// Reads a tenant.
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant_id}", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorResponse)))]
pub async fn get_tenant(req: Request<AuditMeta, (TenantId,)>) -> Result<Response, ApiError> {
    let Request {
        state, path: (id,), ..
    } = req;
    let tenant = call_t!(
        state.tenant_actor()?,
        TenantMsg::Get,
        state.actor_timeout_ms(),
        id
    )??;
    Ok(json(StatusCode::OK, &TenantView::from(tenant)))
}

/// Changes a tenant's name, status, concurrency limit or webhook URL.
#[utoipa::path(patch, path = "/api/v1/admin/tenants/{tenant_id}", tag = "admin", request_body = PatchTenantRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = TenantView), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn patch_tenant(req: Request<AuditMeta, (TenantId,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        body,
        ..
    } = req;
    let req: PatchTenantRequest = parse_json(&body)?;
    let patch = TenantPatch {
        name: req
            .name
            .as_deref()
            .map(|n| fields::label("name", n, 200).map(String::from))
            .transpose()?,
        status: req.status.map(TenantStatus::from),
        max_concurrent_calls: req
            .max_concurrent_calls
            .map(|v| check_limit("max_concurrent_calls", v))
            .transpose()?,
        webhook_url: match req.webhook_url {
            None => None,
            Some(None) => Some(None),
            Some(Some(u)) => Some(Some(check_url("webhook_url", &u)?)),
        },
    };
    let tenant = call_t!(
        state.tenant_actor()?,
        TenantMsg::Update,
        state.actor_timeout_ms(),
        id,
        patch,
        meta
    )??;
    Ok(json(StatusCode::OK, &TenantView::from(tenant)))
}
