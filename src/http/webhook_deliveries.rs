//! Event webhook deliveries (tenant key): `GET /api/v1/webhook-deliveries`,
//! `GET /api/v1/webhook-deliveries/{id}` (with its attempts and the envelope sent) and
//! `POST /api/v1/webhook-deliveries/{id}/redeliver`. Reads need the `read` or `operator`
//! scope, redelivery `runtime` or `operator`. Every query is scoped to the key's tenant:
//! another tenant's delivery is not found.

use actors::ids::{DeliveryId, EventId, TenantId};
use actors::notifier::{DeliveryDetail, NotifierMsg};
use actors::store::{DeliveryFilter, DeliveryStatus, Scope, WebhookAttempt, WebhookDelivery};
use actors::time::rfc3339;
use ractor::{ActorRef, call_t};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::admin::json;
use super::filters::{Caller, Paging, at, caller, parse_query, raw_query, with_state};
use super::routes::{WEBHOOK_DELIVERIES_LIST, WEBHOOK_DELIVERY_GET, WEBHOOK_DELIVERY_REDELIVER};
use super::{ApiError, AppState};
use crate::openapi::ErrorResponse;

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

/// A page of deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDeliveryList {
    /// Deliveries, newest first.
    pub data: Vec<WebhookDeliveryView>,
    /// Page size.
    pub limit: u32,
    /// Rows skipped.
    pub offset: u32,
    /// Total matching.
    pub total: i64,
}

/// Filters of the delivery listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WebhookDeliveryParams {
    /// `pending`, `delivering`, `delivered`, `failed`.
    pub status: Option<String>,
    /// Event name, e.g. `voice.call.completed`.
    pub event: Option<String>,
    /// Deliveries of this event (`evt_…`).
    pub event_id: Option<String>,
    /// Page size (1–200, default 50).
    pub limit: Option<u32>,
    /// Rows to skip.
    pub offset: Option<u32>,
}

impl AppState {
    /// The notifier actor, or 503 while it is down.
    pub fn notifier_actor(&self) -> Result<ActorRef<NotifierMsg>, ApiError> {
        self.actors.notifier.actor().ok_or_else(|| {
            ApiError::Unavailable("webhook service is restarting; retry shortly".into())
        })
    }
}

/// Authenticates a tenant key holding any of `scopes`.
async fn authorize(
    state: &AppState,
    caller: &Caller,
    scopes: [Scope; 2],
) -> Result<TenantId, ApiError> {
    let auth = state.tenant(caller, None).await?;
    if scopes.iter().any(|s| auth.has(*s)) {
        Ok(auth.tenant_id)
    } else {
        Err(ApiError::Forbidden {
            code: "insufficient_scope",
            message: format!(
                "this api key needs the `{}` or `{}` scope",
                scopes[0].as_str(),
                scopes[1].as_str()
            ),
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

fn delivery_id(raw: &str) -> Result<DeliveryId, ApiError> {
    DeliveryId::parse(raw).ok_or_else(|| ApiError::NotFound("webhook delivery".into()))
}

/// Lists the tenant's event webhook deliveries, newest first.
#[utoipa::path(get, path = "/api/v1/webhook-deliveries", tag = "runtime", params(WebhookDeliveryParams),
    security(("bearer" = [])),
    responses((status = 200, body = WebhookDeliveryList), (status = 400, body = ErrorResponse),
              (status = 403, body = ErrorResponse)))]
pub async fn list_deliveries(
    state: AppState,
    caller: Caller,
    query: String,
) -> Result<Response, ApiError> {
    let tenant_id = authorize(&state, &caller, [Scope::Read, Scope::Operator]).await?;
    let p: WebhookDeliveryParams = parse_query(&query)?;
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
        &WebhookDeliveryList {
            data: page
                .items
                .into_iter()
                .map(WebhookDeliveryView::from)
                .collect(),
            limit: paging.limit,
            offset: paging.offset,
            total: page.total,
        },
    ))
}

/// One delivery with its attempts (in order) and the envelope sent.
#[utoipa::path(get, path = "/api/v1/webhook-deliveries/{id}", tag = "runtime",
    params(("id" = String, Path, description = "Delivery id (`whd_…`)")), security(("bearer" = [])),
    responses((status = 200, body = WebhookDeliveryDetail), (status = 404, body = ErrorResponse)))]
pub async fn get_delivery(
    id: String,
    state: AppState,
    caller: Caller,
) -> Result<Response, ApiError> {
    let tenant_id = authorize(&state, &caller, [Scope::Read, Scope::Operator]).await?;
    let id = delivery_id(&id)?;
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
    params(("id" = String, Path, description = "Delivery id (`whd_…`)")), security(("bearer" = [])),
    responses((status = 202, body = WebhookDeliveryView), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "an attempt is in flight")))]
pub async fn redeliver(id: String, state: AppState, caller: Caller) -> Result<Response, ApiError> {
    let tenant_id = authorize(&state, &caller, [Scope::Runtime, Scope::Operator]).await?;
    let id = delivery_id(&id)?;
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

/// The delivery routes.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let s = move || with_state(state.clone());
    let respond = |r: Result<Response, ApiError>| r.into_response();
    let list = warp::path!("api" / "v1" / "webhook-deliveries")
        .and(warp::get())
        .and(at(&WEBHOOK_DELIVERIES_LIST))
        .and(s())
        .and(caller())
        .and(raw_query())
        .then(list_deliveries)
        .map(respond);
    let get = warp::path!("api" / "v1" / "webhook-deliveries" / String)
        .and(warp::get())
        .and(at(&WEBHOOK_DELIVERY_GET))
        .and(s())
        .and(caller())
        .then(get_delivery)
        .map(respond);
    let redeliver = warp::path!("api" / "v1" / "webhook-deliveries" / String / "redeliver")
        .and(warp::post())
        .and(at(&WEBHOOK_DELIVERY_REDELIVER))
        .and(s())
        .and(caller())
        .then(redeliver)
        .map(respond);
    list.or(get).unify().or(redeliver).unify().boxed()
}
