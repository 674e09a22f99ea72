//! Admin API (`x-admin-key`): tenants, runtime configuration, Twilio credentials, API keys,
//! the audit log and actor diagnostics. Every admin path answers 404 when no admin key is
//! configured. Every mutation is audited by the tenant actor in the same transaction.

use actors::ids::{ApiKeyId, TenantId};
use actors::store::{ApiKey, AuditEntry, AuditFilter, RuntimeConfig, Scope, Tenant, TenantStatus};
use actors::supervisor::RootMsg;
use actors::tenant::{
    CreatedApiKey, NewApiKey, NewTenant, RuntimeConfigUpdate, TenantMsg, TenantPatch,
    TwilioCredentialsInput,
};
use actors::time::rfc3339;
use bytes::Bytes;
use ractor::call_t;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::filters::{
    Caller, Paging, at, caller, json_body, parse_json, parse_query, raw_query, with_state,
};
use super::routes::*;
use super::{ApiError, AppState};
use crate::openapi::ErrorResponse;

pub mod agents;
pub mod contract;
pub mod event_webhooks;
pub mod phone_routes;
pub mod queues;

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

/// AI runtime defaults of a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuntimeConfigView {
    /// Realtime model.
    pub model: Option<String>,
    /// Voice.
    pub voice: Option<String>,
    /// System prompt key.
    pub system_prompt_key: Option<String>,
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
                system_prompt_key: t.runtime_config.system_prompt_key,
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

/// A page of tenants.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    /// Tenants.
    pub data: Vec<TenantView>,
    /// Page size.
    pub limit: u32,
    /// Rows skipped.
    pub offset: u32,
    /// Total tenants.
    pub total: i64,
}

/// Body of `POST /api/v1/admin/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// Display name (1–200 characters).
    pub name: String,
    /// Simultaneous live calls allowed (1–10000, default 10).
    pub max_concurrent_calls: Option<i64>,
    /// A URL recorded with the tenant, http or https (informational; events are delivered to the event webhook, `PUT /api/v1/admin/tenants/{tenant_id}/event-webhook`).
    pub webhook_url: Option<String>,
}

pub(crate) fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Body of `PATCH /api/v1/admin/tenants/{tenant_id}`: only present fields change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTenantRequest {
    /// New name.
    pub name: Option<String>,
    /// New status.
    pub status: Option<TenantStatusDto>,
    /// New concurrency limit.
    pub max_concurrent_calls: Option<i64>,
    /// New webhook URL; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub webhook_url: Option<Option<String>>,
}

/// Body of `PUT /api/v1/admin/tenants/{tenant_id}/runtime-config` (replaces the whole config).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfigRequest {
    /// Realtime model name.
    pub model: Option<String>,
    /// Voice name.
    pub voice: Option<String>,
    /// System prompt key.
    pub system_prompt_key: Option<String>,
    /// A URL recorded with the tenant (informational; events are delivered to the event webhook, `PUT /api/v1/admin/tenants/{tenant_id}/event-webhook`).
    pub webhook_url: Option<String>,
}

/// Body of `PUT /api/v1/admin/tenants/{tenant_id}/twilio-credentials`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TwilioCredentialsRequest {
    /// `AC` followed by 32 hex digits.
    pub account_sid: String,
    /// The account's auth token (stored encrypted, never returned).
    pub auth_token: String,
}

/// Body of `PUT /api/v1/admin/tenants/{tenant_id}/openai-key`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAiKeyRequest {
    /// The tenant's realtime-model API key (stored encrypted, never returned).
    pub api_key: String,
}

/// Body of `POST /api/v1/admin/tenants/{tenant_id}/api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// Label (1–100 characters).
    pub name: String,
    /// Scopes granted (at least one).
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

/// A tenant's API keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    /// Keys, newest first.
    pub data: Vec<ApiKeyView>,
}

/// One audit-log row.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    /// Sequence number.
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Tenant concerned.
    pub tenant_id: Option<String>,
    /// Kind of object.
    pub target_type: String,
    /// Its id.
    pub target_id: String,
    /// Before the change (no secrets).
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// After the change (no secrets).
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    /// Request id of the change.
    pub request_id: Option<String>,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(e: AuditEntry) -> Self {
        AuditEntryView {
            id: e.id,
            at: rfc3339(e.at),
            actor: e.actor,
            action: e.action,
            tenant_id: e.tenant_id.map(TenantId::into_string),
            target_type: e.target_type,
            target_id: e.target_id,
            before: e.before,
            after: e.after,
            request_id: e.request_id,
        }
    }
}

/// A page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditLogList {
    /// Rows, newest first.
    pub data: Vec<AuditEntryView>,
    /// Page size.
    pub limit: u32,
    /// Rows skipped.
    pub offset: u32,
    /// Total rows matching.
    pub total: i64,
}

/// Paging of a list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size (1–200, default 50).
    pub limit: Option<u32>,
    /// Rows to skip (default 0).
    pub offset: Option<u32>,
}

/// Filters of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only rows about this tenant.
    pub tenant_id: Option<String>,
    /// Only this action (e.g. `api_key.revoke`).
    pub action: Option<String>,
    /// Page size (1–200, default 50).
    pub limit: Option<u32>,
    /// Rows to skip (default 0).
    pub offset: Option<u32>,
}

/// Supervision counters of one singleton actor.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorChildView {
    /// Actor kind.
    pub kind: String,
    /// Whether it is running.
    pub alive: bool,
    /// Restarts so far.
    pub restarts: u32,
    /// Failures so far.
    pub failures: u32,
    /// Unexpected terminations so far.
    pub terminations: u32,
    /// Last failure or termination.
    pub last_failure: Option<String>,
}

/// The actor tree's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorDiagnostics {
    /// False after a meltdown.
    pub healthy: bool,
    /// Why the root melted down.
    pub meltdown: Option<String>,
    /// Database backend (`sqlite` or `postgres`).
    pub database: String,
    /// Singletons.
    pub children: Vec<ActorChildView>,
}

// === validation ===

pub(crate) fn check_name(field: &str, v: &str, max: usize) -> Result<String, ApiError> {
    let v = v.trim();
    if v.is_empty() || v.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(v.to_owned())
}

fn check_limit(field: &str, v: i64) -> Result<i64, ApiError> {
    if !(1..=10_000).contains(&v) {
        return Err(ApiError::invalid(field, "must be between 1 and 10000"));
    }
    Ok(v)
}

/// Validates an http(s) URL a tenant gives us.
pub fn check_url(field: &str, v: &str) -> Result<String, ApiError> {
    let url =
        url::Url::parse(v).map_err(|_| ApiError::invalid(field, "must be an absolute URL"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(ApiError::invalid(
            field,
            "must be an http:// or https:// URL",
        ));
    }
    if v.len() > 2048 {
        return Err(ApiError::invalid(field, "must be at most 2048 characters"));
    }
    Ok(url.to_string())
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

fn tenant_id(raw: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(raw).ok_or_else(|| ApiError::NotFound("tenant".into()))
}

pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

// === handlers ===

/// Lists tenants.
#[utoipa::path(get, path = "/api/v1/admin/tenants", tag = "admin", params(ListParams),
    security(("admin_key" = [])),
    responses((status = 200, body = TenantList), (status = 401, body = ErrorResponse)))]
pub async fn list_tenants(
    state: AppState,
    caller: Caller,
    query: String,
) -> Result<Response, ApiError> {
    state.admin(&caller)?;
    let params: ListParams = parse_query(&query)?;
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
        &TenantList {
            data: page.items.into_iter().map(TenantView::from).collect(),
            limit: paging.limit,
            offset: paging.offset,
            total: page.total,
        },
    ))
}

/// Creates a tenant.
#[utoipa::path(post, path = "/api/v1/admin/tenants", tag = "admin", request_body = CreateTenantRequest,
    security(("admin_key" = [])),
    responses((status = 201, body = TenantView), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn create_tenant(
    state: AppState,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let meta = state.admin(&caller)?;
    let req: CreateTenantRequest = parse_json(&body)?;
    let input = NewTenant {
        name: check_name("name", &req.name, 200)?,
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
    security(("admin_key" = [])),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorResponse)))]
pub async fn get_tenant(id: String, state: AppState, caller: Caller) -> Result<Response, ApiError> {
    state.admin(&caller)?;
    let id = tenant_id(&id)?;
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
    security(("admin_key" = [])),
    responses((status = 200, body = TenantView), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn patch_tenant(
    id: String,
    state: AppState,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let meta = state.admin(&caller)?;
    let id = tenant_id(&id)?;
    let req: PatchTenantRequest = parse_json(&body)?;
    let patch = TenantPatch {
        name: req
            .name
            .as_deref()
            .map(|n| check_name("name", n, 200))
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

/// Replaces a tenant's runtime configuration.
#[utoipa::path(put, path = "/api/v1/admin/tenants/{tenant_id}/runtime-config", tag = "admin",
    request_body = RuntimeConfigRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    security(("admin_key" = [])),
    responses((status = 200, body = TenantView), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn put_runtime_config(
    id: String,
    state: AppState,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let meta = state.admin(&caller)?;
    let id = tenant_id(&id)?;
    let req: RuntimeConfigRequest = parse_json(&body)?;
    let update = RuntimeConfigUpdate {
        config: RuntimeConfig {
            model: check_token("model", req.model)?,
            voice: check_token("voice", req.voice)?,
            system_prompt_key: check_token("system_prompt_key", req.system_prompt_key)?,
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

/// Stores a tenant's Twilio account SID and auth token (encrypted; only a hint is returned).
#[utoipa::path(put, path = "/api/v1/admin/tenants/{tenant_id}/twilio-credentials", tag = "admin",
    request_body = TwilioCredentialsRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    security(("admin_key" = [])),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "account SID used by another tenant"),
              (status = 422, body = ErrorResponse)))]
pub async fn put_twilio_credentials(
    id: String,
    state: AppState,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let meta = state.admin(&caller)?;
    let id = tenant_id(&id)?;
    let req: TwilioCredentialsRequest = parse_json(&body)?;
    let sid_ok = req.account_sid.len() == 34
        && req.account_sid.starts_with("AC")
        && req.account_sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if !sid_ok {
        return Err(ApiError::invalid(
            "account_sid",
            "must be AC followed by 32 hex digits",
        ));
    }
    let token_ok = (16..=128).contains(&req.auth_token.len())
        && req.auth_token.bytes().all(|b| b.is_ascii_graphic());
    if !token_ok {
        return Err(ApiError::invalid(
            "auth_token",
            "must be 16 to 128 printable characters",
        ));
    }
    let input = TwilioCredentialsInput {
        account_sid: req.account_sid,
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
    security(("admin_key" = [])),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn put_openai_key(
    id: String,
    state: AppState,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let meta = state.admin(&caller)?;
    let id = tenant_id(&id)?;
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
    security(("admin_key" = [])),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorResponse)))]
pub async fn delete_openai_key(
    id: String,
    state: AppState,
    caller: Caller,
) -> Result<Response, ApiError> {
    let meta = state.admin(&caller)?;
    let id = tenant_id(&id)?;
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

/// Lists a tenant's API keys (revoked ones included).
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant_id}/api-keys", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    security(("admin_key" = [])),
    responses((status = 200, body = ApiKeyList), (status = 404, body = ErrorResponse)))]
pub async fn list_api_keys(
    id: String,
    state: AppState,
    caller: Caller,
) -> Result<Response, ApiError> {
    state.admin(&caller)?;
    let id = tenant_id(&id)?;
    let keys = call_t!(
        state.tenant_actor()?,
        TenantMsg::ListApiKeys,
        state.actor_timeout_ms(),
        id
    )??;
    Ok(json(
        StatusCode::OK,
        &ApiKeyList {
            data: keys.into_iter().map(ApiKeyView::from).collect(),
        },
    ))
}

/// Creates an API key; the secret is in this response only.
#[utoipa::path(post, path = "/api/v1/admin/tenants/{tenant_id}/api-keys", tag = "admin",
    request_body = CreateApiKeyRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    security(("admin_key" = [])),
    responses((status = 201, body = CreatedApiKeyView), (status = 404, body = ErrorResponse),
              (status = 422, body = ErrorResponse)))]
pub async fn create_api_key(
    id: String,
    state: AppState,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let meta = state.admin(&caller)?;
    let id = tenant_id(&id)?;
    let req: CreateApiKeyRequest = parse_json(&body)?;
    let name = check_name("name", &req.name, 100)?;
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
    security(("admin_key" = [])),
    responses((status = 200, body = ApiKeyView), (status = 404, body = ErrorResponse)))]
pub async fn revoke_api_key(
    id: String,
    key: String,
    state: AppState,
    caller: Caller,
) -> Result<Response, ApiError> {
    let meta = state.admin(&caller)?;
    let id = tenant_id(&id)?;
    let key = ApiKeyId::parse(&key).ok_or_else(|| ApiError::NotFound("api key".into()))?;
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

/// Reads the audit log, newest first.
#[utoipa::path(get, path = "/api/v1/admin/audit-log", tag = "admin", params(AuditParams),
    security(("admin_key" = [])),
    responses((status = 200, body = AuditLogList), (status = 400, body = ErrorResponse)))]
pub async fn audit_log(
    state: AppState,
    caller: Caller,
    query: String,
) -> Result<Response, ApiError> {
    state.admin(&caller)?;
    let params: AuditParams = parse_query(&query)?;
    let paging = Paging::new(params.limit, params.offset)?;
    let tenant_id = match params.tenant_id {
        None => None,
        Some(t) => Some(TenantId::parse(&t).ok_or_else(|| ApiError::BadRequest {
            code: "invalid_query",
            message: "tenant_id is not a tenant id".into(),
            field: Some("tenant_id".into()),
        })?),
    };
    let filter = AuditFilter {
        tenant_id,
        action: params.action,
        limit: paging.limit,
        offset: paging.offset,
    };
    let page = call_t!(
        state.tenant_actor()?,
        TenantMsg::ListAudit,
        state.actor_timeout_ms(),
        filter
    )??;
    Ok(json(
        StatusCode::OK,
        &AuditLogList {
            data: page.items.into_iter().map(AuditEntryView::from).collect(),
            limit: paging.limit,
            offset: paging.offset,
            total: page.total,
        },
    ))
}

/// The supervision tree: restarts, failures and meltdown state of every singleton.
#[utoipa::path(get, path = "/api/v1/admin/diagnostics/actors", tag = "admin",
    security(("admin_key" = [])),
    responses((status = 200, body = ActorDiagnostics), (status = 503, body = ErrorResponse)))]
pub async fn actor_diagnostics(state: AppState, caller: Caller) -> Result<Response, ApiError> {
    state.admin(&caller)?;
    let status = call_t!(state.actors.root, RootMsg::Status, state.actor_timeout_ms())?;
    Ok(json(
        StatusCode::OK,
        &ActorDiagnostics {
            healthy: status.healthy,
            meltdown: status.meltdown,
            database: state.store.backend().to_owned(),
            children: status
                .children
                .into_iter()
                .map(|c| ActorChildView {
                    kind: c.kind.to_owned(),
                    alive: c.alive,
                    restarts: c.restarts,
                    failures: c.failures,
                    terminations: c.terminations,
                    last_failure: c.last_failure,
                })
                .collect(),
        },
    ))
}

// === routes ===

fn respond(r: Result<Response, ApiError>) -> Response {
    r.into_response()
}

/// The admin routes.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let limit = state.config.max_body_bytes;
    let s = move || with_state(state.clone());
    let tenants = warp::path!("api" / "v1" / "admin" / "tenants");
    let tenant = warp::path!("api" / "v1" / "admin" / "tenants" / String);
    let keys = warp::path!("api" / "v1" / "admin" / "tenants" / String / "api-keys");

    let list = tenants
        .and(warp::get())
        .and(at(&ADMIN_TENANTS_LIST))
        .and(s())
        .and(caller())
        .and(raw_query())
        .then(list_tenants)
        .map(respond);
    let create = tenants
        .and(warp::post())
        .and(at(&ADMIN_TENANTS_CREATE))
        .and(s())
        .and(caller())
        .and(json_body(limit))
        .then(create_tenant)
        .map(respond);
    let get = tenant
        .and(warp::get())
        .and(at(&ADMIN_TENANT_GET))
        .and(s())
        .and(caller())
        .then(get_tenant)
        .map(respond);
    let patch = tenant
        .and(warp::patch())
        .and(at(&ADMIN_TENANT_PATCH))
        .and(s())
        .and(caller())
        .and(json_body(limit))
        .then(patch_tenant)
        .map(respond);
    let runtime_config =
        warp::path!("api" / "v1" / "admin" / "tenants" / String / "runtime-config")
            .and(warp::put())
            .and(at(&ADMIN_TENANT_RUNTIME_CONFIG))
            .and(s())
            .and(caller())
            .and(json_body(limit))
            .then(put_runtime_config)
            .map(respond);
    let twilio = warp::path!("api" / "v1" / "admin" / "tenants" / String / "twilio-credentials")
        .and(warp::put())
        .and(at(&ADMIN_TENANT_TWILIO))
        .and(s())
        .and(caller())
        .and(json_body(limit))
        .then(put_twilio_credentials)
        .map(respond);
    let list_keys = keys
        .and(warp::get())
        .and(at(&ADMIN_API_KEYS_LIST))
        .and(s())
        .and(caller())
        .then(list_api_keys)
        .map(respond);
    let create_key = keys
        .and(warp::post())
        .and(at(&ADMIN_API_KEYS_CREATE))
        .and(s())
        .and(caller())
        .and(json_body(limit))
        .then(create_api_key)
        .map(respond);
    let revoke_key = warp::path!("api" / "v1" / "admin" / "tenants" / String / "api-keys" / String)
        .and(warp::delete())
        .and(at(&ADMIN_API_KEY_REVOKE))
        .and(s())
        .and(caller())
        .then(revoke_api_key)
        .map(respond);
    let audit = warp::path!("api" / "v1" / "admin" / "audit-log")
        .and(warp::get())
        .and(at(&ADMIN_AUDIT_LOG))
        .and(s())
        .and(caller())
        .and(raw_query())
        .then(audit_log)
        .map(respond);
    let diagnostics = warp::path!("api" / "v1" / "admin" / "diagnostics" / "actors")
        .and(warp::get())
        .and(at(&ADMIN_DIAGNOSTICS_ACTORS))
        .and(s())
        .and(caller())
        .then(actor_diagnostics)
        .map(respond);

    let routes = warp::path!("api" / "v1" / "admin" / "phone-routes");
    let route = warp::path!("api" / "v1" / "admin" / "phone-routes" / String);
    let routes_list = routes
        .and(warp::get())
        .and(at(&ADMIN_PHONE_ROUTES_LIST))
        .and(s())
        .and(caller())
        .and(raw_query())
        .then(phone_routes::list_routes)
        .map(respond);
    let routes_create = routes
        .and(warp::post())
        .and(at(&ADMIN_PHONE_ROUTES_CREATE))
        .and(s())
        .and(caller())
        .and(json_body(limit))
        .then(phone_routes::create_route)
        .map(respond);
    let route_get = route
        .and(warp::get())
        .and(at(&ADMIN_PHONE_ROUTE_GET))
        .and(s())
        .and(caller())
        .then(phone_routes::get_route)
        .map(respond);
    let route_patch = route
        .and(warp::patch())
        .and(at(&ADMIN_PHONE_ROUTE_PATCH))
        .and(s())
        .and(caller())
        .and(json_body(limit))
        .then(phone_routes::patch_route)
        .map(respond);
    let route_delete = route
        .and(warp::delete())
        .and(at(&ADMIN_PHONE_ROUTE_DELETE))
        .and(s())
        .and(caller())
        .then(phone_routes::delete_route)
        .map(respond);
    let routing = warp::path!("api" / "v1" / "admin" / "diagnostics" / "routing")
        .and(warp::get())
        .and(at(&ADMIN_DIAGNOSTICS_ROUTING))
        .and(s())
        .and(caller())
        .then(phone_routes::routing_diagnostics)
        .map(respond);
    let alerts = warp::path!("api" / "v1" / "admin" / "alerts" / "auth-transport")
        .and(warp::get())
        .and(at(&ADMIN_ALERTS_AUTH_TRANSPORT))
        .and(s())
        .and(caller())
        .then(phone_routes::auth_transport)
        .map(respond);
    let openai_p = warp::path!("api" / "v1" / "admin" / "tenants" / String / "openai-key");
    let openai_put = openai_p
        .and(warp::put())
        .and(at(&ADMIN_TENANT_OPENAI_KEY_PUT))
        .and(s())
        .and(caller())
        .and(json_body(limit))
        .then(put_openai_key)
        .map(respond);
    let openai_delete = openai_p
        .and(warp::delete())
        .and(at(&ADMIN_TENANT_OPENAI_KEY_DELETE))
        .and(s())
        .and(caller())
        .then(delete_openai_key)
        .map(respond);
    let event_webhook_p =
        warp::path!("api" / "v1" / "admin" / "tenants" / String / "event-webhook");
    let event_webhook_put = event_webhook_p
        .and(warp::put())
        .and(at(&ADMIN_TENANT_EVENT_WEBHOOK_PUT))
        .and(s())
        .and(caller())
        .and(json_body(limit))
        .then(event_webhooks::put_event_webhook)
        .map(respond);
    let event_webhook_get = event_webhook_p
        .and(warp::get())
        .and(at(&ADMIN_TENANT_EVENT_WEBHOOK_GET))
        .and(s())
        .and(caller())
        .then(event_webhooks::get_event_webhook)
        .map(respond);
    let event_webhook_delete = event_webhook_p
        .and(warp::delete())
        .and(at(&ADMIN_TENANT_EVENT_WEBHOOK_DELETE))
        .and(s())
        .and(caller())
        .then(event_webhooks::delete_event_webhook)
        .map(respond);
    let signing_secret =
        warp::path!("api" / "v1" / "admin" / "tenants" / String / "signing-secret")
            .and(warp::post())
            .and(at(&ADMIN_TENANT_SIGNING_SECRET))
            .and(s())
            .and(caller())
            .then(event_webhooks::rotate_signing_secret)
            .map(respond);
    let event_routes = event_webhook_put
        .or(event_webhook_get)
        .unify()
        .or(event_webhook_delete)
        .unify()
        .or(signing_secret)
        .unify()
        .boxed();
    let agents_p = warp::path!("api" / "v1" / "admin" / "agents");
    let agent_p = warp::path!("api" / "v1" / "admin" / "agents" / String);
    let versions_p = warp::path!("api" / "v1" / "admin" / "agents" / String / "versions");
    let version_p = warp::path!("api" / "v1" / "admin" / "agent-versions" / String);
    let agents_list = agents_p
        .and(warp::get())
        .and(at(&ADMIN_AGENTS_LIST))
        .and(s())
        .and(caller())
        .and(raw_query())
        .then(agents::list_agents)
        .map(respond);
    let agents_create = agents_p
        .and(warp::post())
        .and(at(&ADMIN_AGENTS_CREATE))
        .and(s())
        .and(caller())
        .and(json_body(limit))
        .then(agents::create_agent)
        .map(respond);
    let agent_get = agent_p
        .and(warp::get())
        .and(at(&ADMIN_AGENT_GET))
        .and(s())
        .and(caller())
        .then(agents::get_agent)
        .map(respond);
    let versions_list = versions_p
        .and(warp::get())
        .and(at(&ADMIN_AGENT_VERSIONS_LIST))
        .and(s())
        .and(caller())
        .then(agents::list_versions)
        .map(respond);
    let versions_create = versions_p
        .and(warp::post())
        .and(at(&ADMIN_AGENT_VERSIONS_CREATE))
        .and(s())
        .and(caller())
        .and(json_body(limit))
        .then(agents::create_version)
        .map(respond);
    let version_get = version_p
        .and(warp::get())
        .and(at(&ADMIN_AGENT_VERSION_GET))
        .and(s())
        .and(caller())
        .then(agents::get_version)
        .map(respond);
    let version_put = version_p
        .and(warp::put())
        .and(at(&ADMIN_AGENT_VERSION_PUT))
        .and(s())
        .and(caller())
        .and(json_body(limit))
        .then(agents::put_version)
        .map(respond);
    let version_approve =
        warp::path!("api" / "v1" / "admin" / "agent-versions" / String / "approve")
            .and(warp::post())
            .and(at(&ADMIN_AGENT_VERSION_APPROVE))
            .and(s())
            .and(caller())
            .then(agents::approve_version)
            .map(respond);
    let version_retire = warp::path!("api" / "v1" / "admin" / "agent-versions" / String / "retire")
        .and(warp::post())
        .and(at(&ADMIN_AGENT_VERSION_RETIRE))
        .and(s())
        .and(caller())
        .then(agents::retire_version)
        .map(respond);
    let agent_routes = agents_list
        .or(agents_create)
        .unify()
        .or(agent_get)
        .unify()
        .or(versions_list)
        .unify()
        .or(versions_create)
        .unify()
        .or(version_get)
        .unify()
        .or(version_put)
        .unify()
        .or(version_approve)
        .unify()
        .or(version_retire)
        .unify()
        .or(openai_put)
        .unify()
        .or(openai_delete)
        .unify()
        .boxed();
    let telephony = routes_list
        .or(routes_create)
        .unify()
        .or(route_get)
        .unify()
        .or(route_patch)
        .unify()
        .or(route_delete)
        .unify()
        .or(routing)
        .unify()
        .or(alerts)
        .unify()
        .boxed();

    list.or(create)
        .unify()
        .or(get)
        .unify()
        .or(patch)
        .unify()
        .or(runtime_config)
        .unify()
        .or(twilio)
        .unify()
        .or(list_keys)
        .unify()
        .or(create_key)
        .unify()
        .or(revoke_key)
        .unify()
        .or(audit)
        .unify()
        .or(diagnostics)
        .unify()
        .or(telephony)
        .unify()
        .or(agent_routes)
        .unify()
        .or(event_routes)
        .unify()
        .boxed()
}
