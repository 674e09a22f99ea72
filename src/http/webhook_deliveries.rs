//! Event webhook deliveries (tenant key): `GET /api/v1/webhook-deliveries`,
//! `GET /api/v1/webhook-deliveries/{id}` (with its attempts and the envelope sent) and
//! `POST /api/v1/webhook-deliveries/{id}/redeliver`. Reads need the `read` or `operator`
//! scope, redelivery `runtime` or `operator`. Every query is scoped to the key's tenant:
//! another tenant's delivery is not found.

use actors::ids::{DeliveryId, EventId};
use actors::notifier::{DeliveryDetail, NotifierMsg};
use actors::store::{DeliveryFilter, DeliveryStatus, WebhookAttempt, WebhookDelivery};
use actors::tenant::AuthContext;
use actors::time::rfc3339;
use ractor::call_t;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::http::StatusCode;
use warp::reply::Response;

use super::admin::json;
use super::filters::Paging;
use super::mount::Request;
use super::page::Page;
use super::{ApiError, AppState};
use crate::http::ErrorResponse;

/// The delivery of one event to the tenant's endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDeliveryView {
    /// Identifier (`whd_…`).
    pub id: String,
    /// The event (`evt_…`; also the `Idempotency-Key` of every attempt).
    pub event_id: String,
    /// Event name.
    pub event: String,
    /// The endpoint.
    pub url: String,
    /// `pending`, `delivering`, `delivered`, `failed`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// RFC 3339, when the next attempt is due (pending only).
    pub next_attempt_at: Option<String>,
    /// HTTP status of the last answer.
    pub last_status_code: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// RFC 3339, when a 2xx was received.
    pub delivered_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<WebhookDelivery> for WebhookDeliveryView {
    fn from(d: WebhookDelivery) -> Self {
        WebhookDeliveryView {
            id: d.id.into_string(),
            event_id: d.event_id.into_string(),
            event: d.event,
            url: d.url,
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            next_attempt_at: (d.status == DeliveryStatus::Pending)
                .then(|| rfc3339(d.next_attempt_at)),
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            delivered_at: d.delivered_at.map(rfc3339),
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
        }
    }
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAttemptView {
    /// 1 for the first attempt.
    pub attempt: i64,
    /// RFC 3339.
    pub started_at: String,
    /// HTTP status of the answer, if one came.
    pub status_code: Option<i64>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Duration in milliseconds.
    pub latency_ms: i64,
}

impl From<WebhookAttempt> for WebhookAttemptView {
    fn from(a: WebhookAttempt) -> Self {
        WebhookAttemptView {
            attempt: a.attempt,
            started_at: rfc3339(a.started_at),
            status_code: a.status_code,
            error: a.error,
            latency_ms: a.latency_ms,
        }
    }
}

/// A delivery with its attempts and the envelope sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDeliveryDetail {
    /// The delivery.
    #[serde(flatten)]
    pub delivery: WebhookDeliveryView,
    /// Attempts, in order.
    pub attempt_log: Vec<WebhookAttemptView>,
    /// The envelope `{id, event, created_at, tenant_id, api_version, data}` as signed and sent.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
}

impl From<DeliveryDetail> for WebhookDeliveryDetail {
    fn from(d: DeliveryDetail) -> Self {
        WebhookDeliveryDetail {
            delivery: d.delivery.into(),
            attempt_log: d
                .attempts
                .into_iter()
                .map(WebhookAttemptView::from)
                .collect(),
            payload: d.payload.and_then(|p| serde_json::from_str(&p).ok()),
        }
    }
}

/// Filters of the delivery listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WebhookDeliveryParams {
    /// `pending`, `delivering`, `delivered`, `failed`.
    #[param(pattern = "^(pending|delivering|delivered|failed)$")]
    pub status: Option<String>,
    /// Event name, e.g. `voice.call.completed`.
    pub event: Option<String>,
    /// Deliveries of this event (`evt_…`).
    #[param(pattern = r"^evt_[A-Za-z0-9_-]{1,64}$")]
    pub event_id: Option<String>,
    /// Page size (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Rows to skip.
    pub offset: Option<u32>,
}

impl AppState {
    /// The notifier actor, or 503 while it is down.
    pub fn notifier_actor(&self) -> Result<actors::singleton::Mailbox<NotifierMsg>, ApiError> {
        self.actors.notifier.actor().ok_or_else(|| {
            ApiError::Unavailable("webhook service is restarting; retry shortly".into())
        })
    }
}

fn query_error(field: &str, message: &str) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_query",
        message: message.to_owned(),
        field: Some(field.to_owned()),
    }
}

/// Lists the tenant's event webhook deliveries, newest first.
#[utoipa::path(get, path = "/api/v1/webhook-deliveries", tag = "runtime", params(WebhookDeliveryParams),
    responses((status = 200, body = Page<WebhookDeliveryView>), (status = 400, body = ErrorResponse),
              (status = 403, body = ErrorResponse)))]
pub async fn list_deliveries(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let tenant_id = req.auth.tenant_id.clone();
    let p: WebhookDeliveryParams = req.query()?;
    let state = req.state;
    let paging = Paging::new(p.limit, p.offset)?;
    let status = p
        .status
        .map(|s| {
            DeliveryStatus::parse(&s).ok_or_else(|| {
                query_error("status", "must be pending, delivering, delivered or failed")
            })
        })
        .transpose()?;
    let event_id = p
        .event_id
        .map(|e| EventId::parse(&e).ok_or_else(|| query_error("event_id", "is not an event id")))
        .transpose()?;
    let filter = DeliveryFilter {
        tenant_id,
        status,
        event: p.event,
        event_id,
        limit: paging.limit,
        offset: paging.offset,
    };
    let page = call_t!(
        state.notifier_actor()?,
        NotifierMsg::List,
        state.actor_timeout_ms(),
        filter
    )??;
    Ok(json(
        StatusCode::OK,
        &Page::new(
            page.items.into_iter().map(WebhookDeliveryView::from),
            paging,
            page.total,
        ),
    ))
}

/// One delivery with its attempts (in order) and the envelope sent.
#[utoipa::path(get, path = "/api/v1/webhook-deliveries/{id}", tag = "runtime",
    params(("id" = String, Path, description = "Delivery id (`whd_…`)")),
    responses((status = 200, body = WebhookDeliveryDetail), (status = 404, body = ErrorResponse)))]
pub async fn get_delivery(req: Request<AuthContext, (DeliveryId,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        ..
    } = req;
    let tenant_id = auth.tenant_id;
    let detail = call_t!(
        state.notifier_actor()?,
        NotifierMsg::Get,
        state.actor_timeout_ms(),
        tenant_id,
        id
    )??;
    Ok(json(StatusCode::OK, &WebhookDeliveryDetail::from(detail)))
}

/// Sends a delivery again: it becomes pending and due now, its attempts kept (and the retry
/// budget renewed). Refused with 409 while an attempt is in flight.
#[utoipa::path(post, path = "/api/v1/webhook-deliveries/{id}/redeliver", tag = "runtime",
    params(("id" = String, Path, description = "Delivery id (`whd_…`)")),
    responses((status = 202, body = WebhookDeliveryView), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "an attempt is in flight")))]
pub async fn redeliver(req: Request<AuthContext, (DeliveryId,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        ..
    } = req;
    let tenant_id = auth.tenant_id;
    let delivery = call_t!(
        state.notifier_actor()?,
        NotifierMsg::Redeliver,
        state.actor_timeout_ms(),
        tenant_id,
        id
    )??;
    Ok(json(
        StatusCode::ACCEPTED,
        &WebhookDeliveryView::from(delivery),
    ))
}
