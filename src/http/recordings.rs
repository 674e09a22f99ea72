//! Call recordings (issue 16, part 1): the tenant's API over a call's recordings — list,
//! metadata, the proxied WAV (`Range` forwarded: 206 with `Content-Range`, 416 on an
//! unsatisfiable range) and deletion — and the carrier's signed recording status callback.
//! The work is in [`actors::recording`]; the tenant's carrier credentials are used there and
//! never leave the server.
//!
//! A deleted recording's media answers **410 Gone** (`recording_deleted`); its metadata stays
//! readable with `deleted_at`, `deleted_by` and `deleted_reason`.

use actors::ids::{CallId, RecordingId};
use actors::recording::{self, RecordingError, RecordingPolicy, StatusReport};
use actors::store::RecordingRecord;
use actors::tenant::AuthContext;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::Reply;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::guard::Signed;
use super::mount::Request;
use super::page::List;
use super::{ApiError, ErrorResponse};

/// The largest recording proxied (a dual-channel μ-law hour is about 58 MB).
const MAX_MEDIA_BYTES: usize = 128 * 1024 * 1024;

/// Whether calls are recorded: `off`, `on`, or `on_with_disclosure` (the agent says the
/// disclosure line before anything else).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RecordingPolicyDto {
    /// Not recorded.
    Off,
    /// Recorded (dual-channel, at the carrier).
    On,
    /// Recorded, the disclosure said first.
    OnWithDisclosure,
}

impl From<RecordingPolicyDto> for RecordingPolicy {
    fn from(v: RecordingPolicyDto) -> Self {
        match v {
            RecordingPolicyDto::Off => RecordingPolicy::Off,
            RecordingPolicyDto::On => RecordingPolicy::On,
            RecordingPolicyDto::OnWithDisclosure => RecordingPolicy::OnWithDisclosure,
        }
    }
}

impl From<RecordingPolicy> for RecordingPolicyDto {
    fn from(v: RecordingPolicy) -> Self {
        match v {
            RecordingPolicy::Off => RecordingPolicyDto::Off,
            RecordingPolicy::On => RecordingPolicyDto::On,
            RecordingPolicy::OnWithDisclosure => RecordingPolicyDto::OnWithDisclosure,
        }
    }
}

/// A call recording (metadata; the audio is at `…/media`).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingView {
    /// Our id (`rec_…`).
    pub id: String,
    /// The call.
    pub call_id: String,
    /// The carrier's recording SID (`RE…`).
    pub recording_sid: String,
    /// 2 for dual-channel (caller and agent on separate channels).
    pub channels: i64,
    /// `in-progress`, `completed`, `absent`, `failed`.
    pub status: String,
    /// Length in seconds, once completed.
    pub duration_seconds: Option<i64>,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// RFC 3339.
    pub completed_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: deleted at the carrier and here.
    pub deleted_at: Option<String>,
    /// Who deleted it: `retention`, or `tenant:{id}/key:{id}`.
    pub deleted_by: Option<String>,
    /// Why.
    pub deleted_reason: Option<String>,
}

impl From<RecordingRecord> for RecordingView {
    fn from(r: RecordingRecord) -> Self {
        use actors::time::rfc3339;
        RecordingView {
            id: r.id.into_string(),
            call_id: r.call_id.into_string(),
            recording_sid: r.recording_sid,
            channels: r.channels,
            status: r.status,
            duration_seconds: r.duration_seconds,
            started_at: r.started_at.map(rfc3339),
            completed_at: r.completed_at.map(rfc3339),
            created_at: rfc3339(r.created_at),
            deleted_at: r.deleted_at.map(rfc3339),
            deleted_by: r.deleted_by,
            deleted_reason: r.deleted_reason,
        }
    }
}

impl From<RecordingError> for ApiError {
    fn from(e: RecordingError) -> Self {
        match e {
            RecordingError::NotFound(what) => ApiError::NotFound(what.to_owned()),
            RecordingError::Gone => ApiError::Status {
                status: StatusCode::GONE,
                code: "recording_deleted",
                message: "the recording was deleted".into(),
            },
            RecordingError::NoCredentials => ApiError::Status {
                status: StatusCode::CONFLICT,
                code: "twilio_credentials_missing",
                message: "the tenant has no Twilio credentials".into(),
            },
            RecordingError::Carrier(error) => ApiError::Status {
                status: StatusCode::from_u16(error.suggested_status)
                    .unwrap_or(StatusCode::BAD_GATEWAY),
                code: if error.timeout {
                    "carrier_timeout"
                } else {
                    "carrier_error"
                },
                message: format!("the carrier refused the request: {}", error.message),
            },
            RecordingError::Store(e) => ApiError::Internal(format!("store: {e:?}")),
            RecordingError::Unavailable(m) => {
                ApiError::Unavailable(format!("service unavailable: {m}"))
            }
        }
    }
}

fn call_id(id: &str) -> Result<CallId, ApiError> {
    CallId::parse(id).ok_or_else(|| ApiError::NotFound("call".into()))
}

fn recording_id(id: &str) -> Result<RecordingId, ApiError> {
    RecordingId::parse(id).ok_or_else(|| ApiError::NotFound("recording".into()))
}

/// The recordings of a call.
#[utoipa::path(get, path = "/api/v1/call-logs/{id}/recordings", tag = "runtime",
    params(("id" = String, Path, description = "Call id (`call_…`)")),
    responses((status = 200, body = List<RecordingView>), (status = 404, body = ErrorResponse)))]
pub async fn list_recordings(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        ..
    } = req;
    let call = call_id(&id)?;
    let rows = recording::list(&state.actors.telephony, &auth.tenant_id, &call).await?;
    Ok(warp::reply::json(&List::new(rows.into_iter().map(RecordingView::from))).into_response())
}

/// One recording's metadata (a deleted one shows who deleted it, why and when).
#[utoipa::path(get, path = "/api/v1/call-logs/{id}/recordings/{recording_id}", tag = "runtime",
    params(("id" = String, Path, description = "Call id (`call_…`)"),
           ("recording_id" = String, Path, description = "Recording id (`rec_…`)")),
    responses((status = 200, body = RecordingView), (status = 404, body = ErrorResponse)))]
pub async fn get_recording(
    req: Request<AuthContext, (String, String)>,
) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id, rec),
        ..
    } = req;
    let (call, rec) = (call_id(&id)?, recording_id(&rec)?);
    let row = recording::get(&state.actors.telephony, &auth.tenant_id, &call, &rec).await?;
    Ok(warp::reply::json(&RecordingView::from(row)).into_response())
}

/// The recording's audio: a RIFF WAV fetched from the carrier with the tenant's own
/// credentials. `Range` is forwarded: 206 with `Content-Range`, 416 when unsatisfiable. A
/// deleted recording is 410.
#[utoipa::path(get, path = "/api/v1/call-logs/{id}/recordings/{recording_id}/media", tag = "runtime",
    params(("id" = String, Path, description = "Call id (`call_…`)"),
           ("recording_id" = String, Path, description = "Recording id (`rec_…`)"),
           ("Range" = Option<String>, Header, description = "A byte range (`bytes=0-99`)")),
    responses((status = 200, description = "The WAV", content_type = "audio/wav", body = Vec<u8>),
              (status = 206, description = "The requested byte range of the WAV", content_type = "audio/wav", body = Vec<u8>),
              (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "the tenant has no Twilio credentials"),
              (status = 410, body = ErrorResponse, description = "the recording was deleted"),
              (status = 416, description = "the range cannot be satisfied"),
              (status = 502, body = ErrorResponse, description = "the carrier failed")))]
pub async fn recording_media(
    req: Request<AuthContext, (String, String)>,
) -> Result<Response, ApiError> {
    let range = req.text_header("Range")?;
    let Request {
        state,
        auth,
        path: (id, rec),
        ..
    } = req;
    let (call, rec) = (call_id(&id)?, recording_id(&rec)?);
    let media =
        recording::media(&state.actors.telephony, &auth.tenant_id, &call, &rec, range).await?;
    // warp offers no public streaming body for a plain response: the body is read here,
    // bounded, and sent whole.
    let mut body = Vec::with_capacity(
        media
            .content_length
            .and_then(|l| usize::try_from(l).ok())
            .unwrap_or(0)
            .min(MAX_MEDIA_BYTES),
    );
    let mut chunks = media.body;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(RecordingError::Carrier)?;
        if body.len() + chunk.len() > MAX_MEDIA_BYTES {
            return Err(ApiError::Status {
                status: StatusCode::BAD_GATEWAY,
                code: "recording_too_large",
                message: format!("the recording is over {MAX_MEDIA_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    let status = StatusCode::from_u16(media.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut reply = warp::reply::with_status(body, status).into_response();
    let headers = reply.headers_mut();
    let content_type = media.content_type.as_deref().unwrap_or("audio/wav");
    let pass = [
        (header::CONTENT_TYPE, Some(content_type)),
        (header::CONTENT_RANGE, media.content_range.as_deref()),
        (header::ACCEPT_RANGES, Some("bytes")),
    ];
    for (name, value) in pass {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, v);
        }
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(reply)
}

/// Deletes a recording at the carrier and here (who, why and when are kept on its
/// metadata). Deleting a deleted recording is a success.
#[utoipa::path(delete, path = "/api/v1/call-logs/{id}/recordings/{recording_id}", tag = "runtime",
    params(("id" = String, Path, description = "Call id (`call_…`)"),
           ("recording_id" = String, Path, description = "Recording id (`rec_…`)")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "the tenant has no Twilio credentials"),
              (status = 502, body = ErrorResponse, description = "the carrier failed")))]
pub async fn delete_recording(
    req: Request<AuthContext, (String, String)>,
) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id, rec),
        ..
    } = req;
    let (call, rec) = (call_id(&id)?, recording_id(&rec)?);
    let by = format!("tenant:{}/key:{}", auth.tenant_id, auth.key_id);
    recording::delete(
        &state.actors.telephony,
        &auth.tenant_id,
        &call,
        &rec,
        &by,
        "deleted through the API",
    )
    .await?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}

/// The carrier's recording status callback (`RecordingStatusCallback`): metadata stored for
/// the signing account's tenant only; idempotent.
#[utoipa::path(post, path = "/api/v1/recording-status", tag = "webhooks",
    request_body(content = super::webhooks::TwilioForm, content_type = "application/x-www-form-urlencoded"),
    params(("call_id" = Option<String>, Query, description = "Our call id")),
    responses((status = 204, description = "Recorded"), (status = 400, body = ErrorResponse),
              (status = 403, body = ErrorResponse)))]
pub async fn recording_status(req: Request<Signed>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: Signed {
            account,
            request: req,
        },
        ..
    } = req;
    let target = req.target(account.tenant_id.clone())?;
    let number = |name: &str| {
        req.param(name)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|v| *v >= 0)
    };
    let report = StatusReport {
        target,
        account_sid: account.auth.account_sid.clone(),
        recording_sid: req.required("RecordingSid")?.to_owned(),
        status: req.required("RecordingStatus")?.to_owned(),
        duration_seconds: number("RecordingDuration"),
        channels: number("RecordingChannels"),
        started_at: req
            .param("RecordingStartTime")
            .and_then(|t| chrono::DateTime::parse_from_rfc2822(t).ok())
            .map(|t| t.timestamp_millis()),
    };
    recording::status_callback(&state.actors.telephony, report)
        .await
        .map_err(|e| ApiError::Internal(format!("store: {e:?}")))?;
    Ok(warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response())
}
