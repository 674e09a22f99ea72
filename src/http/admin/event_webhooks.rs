//! Admin API of a tenant's event webhook and signing secret:
//! `PUT|GET|DELETE /api/v1/admin/tenants/{tenant_id}/event-webhook` and
//! `POST /api/v1/admin/tenants/{tenant_id}/signing-secret` (rotation). The URL is checked
//! against the outbound policy (SSRF protection) before it is stored; the secret is shown
//! once, when created, and only its hint afterwards. Every change is audited by the tenant
//! actor, without secrets.

use actors::egress::{EgressPolicy, check_url};
use actors::ids::TenantId;
use actors::notifier::EventKind;
use actors::store::{EventWebhook, Tenant};
use actors::tenant::{AuditMeta, EventWebhookUpdate, RotatedSecret, TenantMsg};
use ractor::call_t;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::Response;

use super::json;
use crate::http::ApiError;
use crate::http::ErrorResponse;
use crate::http::filters::parse_json;
use crate::http::mount::Request;

/// `events`: known event names, at least one; `null` or absent for every event.
fn event_names() -> utoipa::openapi::Array {
    let names: Vec<&str> = EventKind::ALL.iter().map(|e| e.as_str()).collect();
    crate::http::fields::string_list(
        "Event names delivered (omit or `null` for every event; duplicates are merged).",
        Some(&names),
        None,
        (1, 0),
        false,
        true,
    )
}

/// Body of `PUT /api/v1/admin/tenants/{tenant_id}/event-webhook`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventWebhookRequest {
    /// The endpoint: `https://` and a public address (plain `http://` and private addresses
    /// only when `OUTBOUND_ALLOW_PRIVATE` is on).
    #[schema(max_length = 2048, format = "http-url")]
    pub url: String,
    /// Event names delivered (omit for every event): `voice.call.started`,
    /// `voice.call.completed`, `voice.call.escalated`, `voice.callback.created`,
    /// `voice.session.evaluated`, `voice.webhook.delivery_failed`, `voice.rollout.rolled_back`,
    /// `voice.rollout.promoted`, `voice.recording.completed`.
    #[schema(schema_with = event_names)]
    pub events: Option<Vec<String>>,
}

/// A tenant's event webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventWebhookView {
    /// The endpoint.
    pub url: String,
    /// Event names delivered (`null`: every event).
    pub events: Option<Vec<String>>,
    /// Hint of the signing secret (its last characters).
    pub signing_secret_hint: Option<String>,
    /// The signing secret, present only in the response that created it: store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

/// A new signing secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct SigningSecretView {
    /// The secret (`whsec_…`): the HMAC-SHA256 key of `StateSet-Signature` is its UTF-8 bytes.
    pub secret: String,
    /// Its hint, the only form shown afterwards.
    pub hint: String,
}

impl EventWebhookView {
    fn of(tenant: &Tenant, created_secret: Option<String>) -> Option<Self> {
        tenant.event_webhook.as_ref().map(|w| EventWebhookView {
            url: w.url.clone(),
            events: w.events.clone(),
            signing_secret_hint: tenant.signing_secret.as_ref().map(|s| s.hint.clone()),
            signing_secret: created_secret,
        })
    }
}

fn bad(field: &str, code: &'static str, message: String) -> ApiError {
    ApiError::BadRequest {
        code,
        message,
        field: Some(field.to_owned()),
    }
}

/// Checks the event names: known, at least one; sorted and deduplicated.
fn check_events(events: Option<Vec<String>>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(events) = events else {
        return Ok(None);
    };
    let mut known = Vec::with_capacity(events.len());
    for name in events {
        match EventKind::parse(&name) {
            Some(kind) => known.push(kind.as_str().to_owned()),
            None => {
                return Err(bad(
                    "events",
                    "invalid_events",
                    format!("unknown event `{name}`"),
                ));
            }
        }
    }
    known.sort();
    known.dedup();
    if known.is_empty() {
        return Err(bad(
            "events",
            "invalid_events",
            "name at least one event, or omit `events` for every event".into(),
        ));
    }
    Ok(Some(known))
}

/// Sets the tenant's event webhook. When the tenant has no signing secret yet, one is
/// created and returned in this response only.
#[utoipa::path(put, path = "/api/v1/admin/tenants/{tenant_id}/event-webhook", tag = "admin",
    request_body = EventWebhookRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = EventWebhookView),
              (status = 400, body = ErrorResponse, description = "the url is refused (scheme, credentials, non-public address) or an event is unknown"),
              (status = 404, body = ErrorResponse)))]
pub async fn put_event_webhook(req: Request<AuditMeta, (TenantId,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        body,
        ..
    } = req;
    let req: EventWebhookRequest = parse_json(&body)?;
    let policy = EgressPolicy {
        allow_private: state.config.outbound_allow_private,
    };
    if !crate::http::fields::is_web_url(&req.url) {
        return Err(bad(
            "url",
            "invalid_url",
            crate::http::admin::WEB_URL_RULE.into(),
        ));
    }
    let url = check_url(&req.url, &policy).map_err(|e| bad("url", "invalid_url", e.to_string()))?;
    let webhook = EventWebhook {
        url: url.to_string(),
        events: check_events(req.events)?,
    };
    let EventWebhookUpdate {
        tenant,
        created_secret,
    } = call_t!(
        state.tenant_actor()?,
        TenantMsg::SetEventWebhook,
        state.actor_timeout_ms(),
        id,
        Some(webhook),
        meta
    )??;
    let view = EventWebhookView::of(&tenant, created_secret)
        .ok_or_else(|| ApiError::Internal("event webhook missing after update".into()))?;
    Ok(json(StatusCode::OK, &view))
}

/// The tenant's event webhook (404 when none is configured).
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant_id}/event-webhook", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = EventWebhookView), (status = 404, body = ErrorResponse)))]
pub async fn get_event_webhook(req: Request<AuditMeta, (TenantId,)>) -> Result<Response, ApiError> {
    let Request {
        state, path: (id,), ..
    } = req;
    let tenant = call_t!(
        state.tenant_actor()?,
        TenantMsg::Get,
        state.actor_timeout_ms(),
        id
    )??;
    let view = EventWebhookView::of(&tenant, None)
        .ok_or_else(|| ApiError::NotFound("event webhook".into()))?;
    Ok(json(StatusCode::OK, &view))
}

/// Removes the tenant's event webhook: no new deliveries are created (the signing secret
/// is kept; deliveries already queued still go to the URL they were created for).
#[utoipa::path(delete, path = "/api/v1/admin/tenants/{tenant_id}/event-webhook", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 204, description = "removed (or there was none)"), (status = 404, body = ErrorResponse)))]
pub async fn delete_event_webhook(
    req: Request<AuditMeta, (TenantId,)>,
) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        ..
    } = req;
    call_t!(
        state.tenant_actor()?,
        TenantMsg::SetEventWebhook,
        state.actor_timeout_ms(),
        id,
        None,
        meta
    )??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Rotates the tenant's signing secret and returns the new one (this once). Requests are
/// signed with the new secret from now on.
#[utoipa::path(post, path = "/api/v1/admin/tenants/{tenant_id}/signing-secret", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = SigningSecretView), (status = 404, body = ErrorResponse)))]
pub async fn rotate_signing_secret(
    req: Request<AuditMeta, (TenantId,)>,
) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        ..
    } = req;
    let RotatedSecret { tenant, secret } = call_t!(
        state.tenant_actor()?,
        TenantMsg::RotateSigningSecret,
        state.actor_timeout_ms(),
        id,
        meta
    )??;
    let hint = tenant
        .signing_secret
        .map(|s| s.hint)
        .unwrap_or_else(|| actors::crypto::secret_hint(&secret));
    Ok(json(StatusCode::OK, &SigningSecretView { secret, hint }))
}
