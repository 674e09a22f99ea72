//! Admin API (`x-admin-key`), one module per resource: tenants, API keys, provider
//! credentials, runtime configuration, event webhooks and signing secrets, phone routes,
//! agents and versions, rollouts (policies, actions, governance), operator queues, the audit
//! log, diagnostics, the cluster's nodes, admin identities and governance settings (two-person approval, dial
//! policies), launches and the readiness review, and fault injection into live calls (chaos
//! testing, `CHAOS_HOOKS`). Every admin path answers 404 when no admin
//! key is configured (the guard of its mount); every mutation is audited by the owning actor
//! in the same transaction. This module holds only the helpers the resources share.

use actors::ids::TenantId;
use serde::{Deserialize, Deserializer, Serialize};
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::Response;

use super::ApiError;
use super::fields;

pub mod agents;
pub mod api_keys;
pub mod audit;
pub mod chaos;
pub mod contract;
pub mod credentials;
pub mod diagnostics;
pub mod event_webhooks;
pub mod governance;
pub mod identities;
pub mod launch;
pub mod nodes;
pub mod phone_routes;
pub mod queues;
pub mod readiness;
pub mod recording_settings;
pub mod rollouts;
pub mod rubric;
pub mod runtime_config;
pub mod tenants;

pub use api_keys::ScopeDto;

/// `name` trimmed, 1 to `max` characters, no control characters (422 naming `field`).
pub(crate) fn check_name(field: &str, v: &str, max: usize) -> Result<String, ApiError> {
    fields::label(field, v, max).map(String::from)
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`) or a value.
pub(crate) fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// What [`fields::is_web_url`] asks of a URL, as an error message.
pub(crate) const WEB_URL_RULE: &str = "must be an http:// or https:// URL of a lowercase host name or IPv4 address, an optional port and a plain path (letters, digits, . _ ~ - /)";

/// Validates an http(s) URL a tenant gives us (the documents' `HTTP_URL` shape first).
pub fn check_url(field: &str, v: &str) -> Result<String, ApiError> {
    if !fields::is_web_url(v) {
        return Err(ApiError::invalid(field, WEB_URL_RULE));
    }
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

/// A tenant id from a path segment (404 when malformed).
pub(crate) fn tenant_id(raw: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(raw).ok_or_else(|| ApiError::NotFound("tenant".into()))
}

/// `body` as JSON with `status`.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}
