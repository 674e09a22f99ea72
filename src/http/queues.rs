//! Operator queues, tenant API (`operator` scope): `GET|POST /api/v1/operator-queues`,
//! `GET|PUT|DELETE /api/v1/operator-queues/{id}`. Also the queue DTOs and validation the
//! admin equivalents (`http/admin/queues.rs`) share. Every change is audited, naming the
//! key that made it.

use actors::ids::{QueueId, TenantId};
use actors::operator::queues;
use actors::operator::{
    BusinessHours, BusinessHoursSpec, DEFAULT_RING_TIMEOUT_SECONDS, HoursWindowSpec, OperatorQueue,
    QueueFallback, QueueSpec, TransferMode,
};
use actors::tenant::{AuditMeta, AuthContext};
use actors::time::{now_ms, rfc3339};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::Response;

use super::admin::json;
use super::filters::{Paging, parse_json, parse_query};
use super::mount::Request;
use super::page::Page;
use super::{ApiError, AppState, context};
use crate::http::ErrorResponse;

// === DTOs ===

/// What a queue does with a call when it is closed, or when nobody answers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum QueueFallbackDto {
    /// Record a callback task for the caller.
    CallbackTask,
    /// Say `voicemail_message`, then record (or hang up).
    Voicemail,
    /// Hand the caller back to the agent.
    Agent,
}

impl From<QueueFallbackDto> for QueueFallback {
    fn from(v: QueueFallbackDto) -> Self {
        match v {
            QueueFallbackDto::CallbackTask => QueueFallback::CallbackTask,
            QueueFallbackDto::Voicemail => QueueFallback::Voicemail,
            QueueFallbackDto::Agent => QueueFallback::Agent,
        }
    }
}

impl From<QueueFallback> for QueueFallbackDto {
    fn from(v: QueueFallback) -> Self {
        match v {
            QueueFallback::CallbackTask => QueueFallbackDto::CallbackTask,
            QueueFallback::Voicemail => QueueFallbackDto::Voicemail,
            QueueFallback::Agent => QueueFallbackDto::Agent,
        }
    }
}

/// How a queue takes a handed-over caller.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TransferModeDto {
    /// `<Dial>` the queue's numbers; whoever answers is bridged at once.
    Cold,
    /// The caller waits in a conference with hold audio; the queue's first number is called,
    /// hears a whispered summary of the handoff and presses 1 to accept or 2 to decline.
    Warm,
}

impl From<TransferModeDto> for TransferMode {
    fn from(v: TransferModeDto) -> Self {
        match v {
            TransferModeDto::Cold => TransferMode::Cold,
            TransferModeDto::Warm => TransferMode::Warm,
        }
    }
}

impl From<TransferMode> for TransferModeDto {
    fn from(v: TransferMode) -> Self {
        match v {
            TransferMode::Cold => TransferModeDto::Cold,
            TransferMode::Warm => TransferModeDto::Warm,
        }
    }
}

/// `days` of a window: 1 to 7 distinct day names.
fn day_names() -> utoipa::openapi::Array {
    super::fields::string_list(
        "Days it opens on, each once: `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun`.",
        Some(&["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
        None,
        (1, 7),
        true,
        false,
    )
}

/// `numbers` of a queue: 1 to 10 distinct E.164 numbers.
fn queue_numbers() -> utoipa::openapi::Array {
    super::fields::string_list(
        "1–10 distinct E.164 numbers, rung simultaneously.",
        None,
        Some("e164"),
        (1, actors::operator::MAX_QUEUE_NUMBERS),
        true,
        false,
    )
}

/// Opening hours in one IANA time zone; times are local wall-clock times, so a window opens
/// at the same local time on both sides of a daylight-saving change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BusinessHoursDto {
    /// IANA time zone, e.g. `America/New_York`.
    #[schema(format = "time-zone")]
    pub timezone: String,
    /// Opening windows (1–50); the queue is open when any window covers the moment.
    #[schema(min_items = 1, max_items = 50)]
    pub windows: Vec<HoursWindowDto>,
}

/// One opening window.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HoursWindowDto {
    /// Days it opens on: `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun`.
    #[schema(schema_with = day_names)]
    pub days: Vec<String>,
    /// Opening time, `HH:MM` (24-hour, local).
    #[schema(format = "hh-mm")]
    pub open: String,
    /// Closing time, `HH:MM` (`24:00` allowed); earlier than `open` means the window closes
    /// the next day (e.g. `22:00`–`06:00`).
    #[schema(format = "hh-mm-end")]
    pub close: String,
}

impl From<BusinessHoursSpec> for BusinessHoursDto {
    fn from(s: BusinessHoursSpec) -> Self {
        BusinessHoursDto {
            timezone: s.timezone,
            windows: s
                .windows
                .into_iter()
                .map(|w| HoursWindowDto {
                    days: w.days,
                    open: w.open,
                    close: w.close,
                })
                .collect(),
        }
    }
}

impl From<BusinessHoursDto> for BusinessHoursSpec {
    fn from(d: BusinessHoursDto) -> Self {
        BusinessHoursSpec {
            timezone: d.timezone,
            windows: d
                .windows
                .into_iter()
                .map(|w| HoursWindowSpec {
                    days: w.days,
                    open: w.open,
                    close: w.close,
                })
                .collect(),
        }
    }
}

/// An operator queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorQueueView {
    /// Identifier (`oq_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Name, unique per tenant; agent versions refer to the queue by it.
    pub name: String,
    /// E.164 numbers rung simultaneously.
    pub numbers: Vec<String>,
    /// Caller id shown to the operators (E.164).
    pub caller_id: Option<String>,
    /// How long the numbers ring, in seconds.
    pub ring_timeout_seconds: i64,
    /// Opening hours; `null` means always open.
    pub business_hours: Option<BusinessHoursDto>,
    /// What happens to a call while the queue is closed.
    pub when_closed: QueueFallbackDto,
    /// What happens when nobody answers.
    pub when_unanswered: QueueFallbackDto,
    /// Said before recording or hanging up when a fallback is `voicemail`.
    pub voicemail_message: Option<String>,
    /// Said to the caller before dialing.
    pub announcement: Option<String>,
    /// `cold` or `warm`.
    pub transfer_mode: TransferModeDto,
    /// What a warm transfer's caller hears while waiting (the conference's `waitUrl`);
    /// `null`: the carrier's default hold music.
    pub hold_music_url: Option<String>,
    /// Whether the queue is open at the time of this response.
    pub open_now: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl OperatorQueueView {
    /// The view of `q` as of `now_ms`.
    pub fn at(q: OperatorQueue, now_ms: i64) -> Self {
        OperatorQueueView {
            open_now: q.is_open(now_ms),
            id: q.id.into_string(),
            tenant_id: q.tenant_id.into_string(),
            name: q.name,
            numbers: q.numbers,
            caller_id: q.caller_id,
            ring_timeout_seconds: q.ring_timeout_seconds,
            business_hours: q.business_hours.map(|h| h.to_spec().into()),
            when_closed: q.when_closed.into(),
            when_unanswered: q.when_unanswered.into(),
            voicemail_message: q.voicemail_message,
            announcement: q.announcement,
            transfer_mode: q.transfer_mode.into(),
            hold_music_url: q.hold_music_url,
            created_at: rfc3339(q.created_at),
            updated_at: rfc3339(q.updated_at),
        }
    }
}

/// Body of a queue create (`POST`) or full replace (`PUT`): absent optional fields take
/// their defaults, also on `PUT`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorQueueRequest {
    /// 1–64 of lowercase letters, digits, `_` and `-`; unique per tenant (409 otherwise).
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub name: String,
    /// 1–10 distinct E.164 numbers, rung simultaneously.
    #[schema(schema_with = queue_numbers)]
    pub numbers: Vec<String>,
    /// Caller id shown to the operators (E.164); default: the call's own number.
    #[schema(format = "e164")]
    pub caller_id: Option<String>,
    /// 5–120, default 25.
    #[schema(minimum = 5, maximum = 120)]
    pub ring_timeout_seconds: Option<i64>,
    /// Opening hours; absent or `null` means always open.
    pub business_hours: Option<BusinessHoursDto>,
    /// Default `callback_task`.
    pub when_closed: Option<QueueFallbackDto>,
    /// Default `callback_task`.
    pub when_unanswered: Option<QueueFallbackDto>,
    /// 1–500 characters; required when either fallback is `voicemail`.
    #[schema(min_length = 1, max_length = 500, format = "text")]
    pub voicemail_message: Option<String>,
    /// 1–500 characters said before dialing.
    #[schema(min_length = 1, max_length = 500, format = "text")]
    pub announcement: Option<String>,
    /// Default `cold`. `warm`: the caller waits in a conference while the first number hears
    /// a whispered summary and accepts (1) or declines (2); a decline or no answer applies
    /// `when_unanswered`.
    pub transfer_mode: Option<TransferModeDto>,
    /// Hold audio of a warm transfer (an MP3/WAV or TwiML URL, the conference's `waitUrl`);
    /// default: the carrier's hold music.
    #[schema(max_length = 2048, format = "http-url")]
    pub hold_music_url: Option<String>,
}

/// Paging of the queue listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QueueListParams {
    /// Page size (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Rows to skip (default 0).
    pub offset: Option<u32>,
}

// === shared steps (tenant and admin) ===

/// Validates a queue body into a spec; the error names the field
/// (`business_hours.windows[0].open`, `numbers[2]`, …).
pub(crate) fn queue_spec(body: &Bytes) -> Result<QueueSpec, ApiError> {
    let r: OperatorQueueRequest = parse_json(body)?;
    let business_hours = r
        .business_hours
        .map(|h| {
            BusinessHours::parse(&h.into())
                .map_err(|e| ApiError::invalid(format!("business_hours.{}", e.field), e.message))
        })
        .transpose()?;
    let spec = QueueSpec {
        name: r.name,
        numbers: r.numbers,
        caller_id: r.caller_id,
        ring_timeout_seconds: r
            .ring_timeout_seconds
            .unwrap_or(DEFAULT_RING_TIMEOUT_SECONDS),
        business_hours,
        when_closed: r
            .when_closed
            .unwrap_or(QueueFallbackDto::CallbackTask)
            .into(),
        when_unanswered: r
            .when_unanswered
            .unwrap_or(QueueFallbackDto::CallbackTask)
            .into(),
        voicemail_message: r.voicemail_message,
        announcement: r.announcement,
        transfer_mode: r.transfer_mode.unwrap_or(TransferModeDto::Cold).into(),
        hold_music_url: r.hold_music_url,
    };
    if let Some(u) = &spec.hold_music_url
        && (u.len() > 2048 || !super::fields::is_web_url(u))
    {
        return Err(ApiError::invalid(
            "hold_music_url",
            "must be an http or https URL of at most 2048 characters",
        ));
    }
    spec.validate()
        .map_err(|e| ApiError::invalid(e.field, e.message))?;
    Ok(spec)
}

/// A queue id from a path (a malformed one names no queue: 404).
pub(crate) fn queue_id(raw: &str) -> Result<QueueId, ApiError> {
    QueueId::parse(raw).ok_or_else(|| ApiError::NotFound("operator queue".into()))
}

pub(crate) async fn list(
    state: &AppState,
    tenant: TenantId,
    query: &str,
) -> Result<Response, ApiError> {
    let p: QueueListParams = parse_query(query)?;
    let paging = Paging::new(p.limit, p.offset)?;
    let page = queues::list(&state.store, &tenant, paging.limit, paging.offset).await?;
    let now = now_ms();
    Ok(json(
        StatusCode::OK,
        &Page::new(
            page.items
                .into_iter()
                .map(|q| OperatorQueueView::at(q, now)),
            paging,
            page.total,
        ),
    ))
}

pub(crate) async fn create(
    state: &AppState,
    tenant: TenantId,
    meta: AuditMeta,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let spec = queue_spec(body)?;
    let queue = queues::create(&state.store, &tenant, spec, meta).await?;
    Ok(json(
        StatusCode::CREATED,
        &OperatorQueueView::at(queue, now_ms()),
    ))
}

pub(crate) async fn get(
    state: &AppState,
    tenant: TenantId,
    id: &str,
) -> Result<Response, ApiError> {
    let id = queue_id(id)?;
    let queue = queues::get(&state.store, &tenant, &id).await?;
    Ok(json(
        StatusCode::OK,
        &OperatorQueueView::at(queue, now_ms()),
    ))
}

pub(crate) async fn replace(
    state: &AppState,
    tenant: TenantId,
    id: &str,
    meta: AuditMeta,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let id = queue_id(id)?;
    let spec = queue_spec(body)?;
    let queue = queues::replace(&state.store, &tenant, &id, spec, meta).await?;
    Ok(json(
        StatusCode::OK,
        &OperatorQueueView::at(queue, now_ms()),
    ))
}

pub(crate) async fn delete(
    state: &AppState,
    tenant: TenantId,
    id: &str,
    meta: AuditMeta,
) -> Result<Response, ApiError> {
    let id = queue_id(id)?;
    queues::delete(&state.store, &tenant, &id, meta).await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// Who a tenant key's change is recorded as in the audit log.
pub(crate) fn key_audit(auth: &AuthContext) -> AuditMeta {
    AuditMeta {
        actor: format!("tenant:{}/key:{}", auth.tenant_id, auth.key_id),
        request_id: context::request_id(),
    }
}

// === handlers ===

/// Lists the tenant's operator queues, by name.
#[utoipa::path(get, path = "/api/v1/operator-queues", tag = "operator", params(QueueListParams),
    responses((status = 200, body = Page<OperatorQueueView>), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse, description = "the key lacks the `operator` scope")))]
pub async fn list_queues(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        raw_query: query,
        ..
    } = req;
    list(&state, auth.tenant_id, &query).await
}

/// Creates an operator queue (audited).
#[utoipa::path(post, path = "/api/v1/operator-queues", tag = "operator", request_body = OperatorQueueRequest,
    responses((status = 201, body = OperatorQueueView), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "the tenant already has a queue of that name"),
              (status = 422, body = ErrorResponse, description = "a field is invalid (named in `field`)")))]
pub async fn create_queue(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let Request {
        state, auth, body, ..
    } = req;
    let meta = key_audit(&auth);
    create(&state, auth.tenant_id, meta, &body).await
}

/// Reads one of the tenant's operator queues.
#[utoipa::path(get, path = "/api/v1/operator-queues/{id}", tag = "operator",
    params(("id" = String, Path, description = "Queue id (`oq_…`)")),
    responses((status = 200, body = OperatorQueueView), (status = 401, body = ErrorResponse),
              (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn get_queue(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        ..
    } = req;
    get(&state, auth.tenant_id, &id).await
}

/// Replaces every field of one of the tenant's operator queues (validated like a create;
/// audited).
#[utoipa::path(put, path = "/api/v1/operator-queues/{id}", tag = "operator", request_body = OperatorQueueRequest,
    params(("id" = String, Path, description = "Queue id (`oq_…`)")),
    responses((status = 200, body = OperatorQueueView), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
              (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "the new name is taken"),
              (status = 422, body = ErrorResponse)))]
pub async fn put_queue(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        body,
        ..
    } = req;
    let meta = key_audit(&auth);
    replace(&state, auth.tenant_id, &id, meta, &body).await
}

/// Deletes one of the tenant's operator queues (audited). Its callback tasks stay, without
/// a queue.
#[utoipa::path(delete, path = "/api/v1/operator-queues/{id}", tag = "operator",
    params(("id" = String, Path, description = "Queue id (`oq_…`)")),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorResponse),
              (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn delete_queue(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        ..
    } = req;
    let meta = key_audit(&auth);
    delete(&state, auth.tenant_id, &id, meta).await
}
