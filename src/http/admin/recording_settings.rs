//! A tenant's recording settings (issue 16, part 1): the retention in days after which the
//! sweeper deletes its recordings at the carrier and here. Changes are audited.

use actors::ids::TenantId;
use actors::tenant::AuditMeta;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;

use super::json;
use crate::http::ErrorResponse;
use crate::http::filters::parse_json;
use crate::http::mount::Request;
use crate::http::{ApiError, AppState};

/// A tenant's recording settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingSettingsView {
    /// The tenant.
    pub tenant_id: String,
    /// Recordings older than this many days are deleted (at the carrier and here); `null`:
    /// kept until deleted.
    pub recording_retention_days: Option<i64>,
}

/// Body of `PUT /api/v1/admin/tenants/{tenant_id}/recording-settings`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutRecordingSettingsRequest {
    /// Days (1–3650); `null` keeps recordings until deleted.
    #[schema(minimum = 1, maximum = 3650)]
    pub recording_retention_days: Option<i64>,
}

async fn read(state: &AppState, id: &TenantId) -> Result<Option<i64>, ApiError> {
    actors::recording::retention(&state.store, id)
        .await
        .map_err(|e| ApiError::Internal(format!("store: {e:?}")))?
        .ok_or_else(|| ApiError::NotFound("tenant".into()))
}

/// A tenant's recording settings.
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant_id}/recording-settings", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = RecordingSettingsView), (status = 404, body = ErrorResponse)))]
pub async fn get_recording_settings(
    req: Request<AuditMeta, (TenantId,)>,
) -> Result<Response, ApiError> {
    let Request {
        state, path: (id,), ..
    } = req;
    let days = read(&state, &id).await?;
    Ok(json(
        StatusCode::OK,
        &RecordingSettingsView {
            tenant_id: id.into_string(),
            recording_retention_days: days,
        },
    ))
}

/// Replaces a tenant's recording settings (audited).
#[utoipa::path(put, path = "/api/v1/admin/tenants/{tenant_id}/recording-settings", tag = "admin",
    request_body = PutRecordingSettingsRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = RecordingSettingsView), (status = 404, body = ErrorResponse),
              (status = 422, body = ErrorResponse)))]
pub async fn put_recording_settings(
    req: Request<AuditMeta, (TenantId,)>,
) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        body,
        ..
    } = req;
    let r: PutRecordingSettingsRequest = parse_json(&body)?;
    if let Some(days) = r.recording_retention_days
        && !(1..=3650).contains(&days)
    {
        return Err(ApiError::invalid(
            "recording_retention_days",
            "must be between 1 and 3650",
        ));
    }
    let found =
        actors::recording::set_retention(&state.store, &id, r.recording_retention_days, &meta)
            .await
            .map_err(|e| ApiError::Internal(format!("store: {e:?}")))?;
    if !found {
        return Err(ApiError::NotFound("tenant".into()));
    }
    Ok(json(
        StatusCode::OK,
        &RecordingSettingsView {
            tenant_id: id.into_string(),
            recording_retention_days: r.recording_retention_days,
        },
    ))
}
