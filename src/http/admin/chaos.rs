//! Admin API of fault injection: `POST /api/v1/admin/chaos/calls` kills, panics or resets
//! the sockets of this node's live calls (issue 12 §4), only when `CHAOS_HOOKS` is on (403
//! `chaos_disabled` otherwise, nothing touched). The choice, the audit rows and the faults
//! are `actors::call::chaos`'s; this handler parses and maps.

use actors::call::chaos::{ChaosError, ChaosMode, Injection, Selection};
use actors::ids::TenantId;
use actors::tenant::AuditMeta;
use actors::time::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;

use super::json;
use crate::http::filters::parse_json;
use crate::http::mount::Request;
use crate::http::{ApiError, ErrorResponse};

/// A fault.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChaosModeDto {
    /// Kill the call actor (the call supervisor records it; the caller goes to the fallback).
    Kill,
    /// Make the call actor panic (recorded the same way).
    Panic,
    /// Drop the call's model websocket without a close frame.
    AiReset,
    /// Drop the call's Twilio media websocket without `stop` or a close frame.
    TwilioReset,
}

/// Body of `POST /api/v1/admin/chaos/calls`: a mode and exactly one of `percent` and
/// `call_ids`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChaosRequest {
    /// What is done to each chosen call.
    #[schema(value_type = ChaosModeDto)]
    pub mode: String,
    /// This share of the node's live calls, at random (rounded up: at least one when any is live).
    #[schema(exclusive_minimum = 0, maximum = 100)]
    pub percent: Option<f64>,
    /// These calls (call log ids, `call_…`), each live on this node.
    #[schema(min_items = 1, value_type = Option<Vec<CallIdSchema>>)]
    pub call_ids: Option<Vec<String>>,
    /// Only this tenant's calls.
    #[schema(pattern = r"^ten_[A-Za-z0-9_-]{1,64}$")]
    pub tenant_id: Option<String>,
}

/// The schema of a call log id (`call_…`), as `call_ids[i]` is checked.
pub struct CallIdSchema;

impl utoipa::PartialSchema for CallIdSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .pattern(Some(r"^call_[A-Za-z0-9_-]{1,64}$"))
            .description(Some("A call log id (`call_…`)."))
            .into()
    }
}

impl ToSchema for CallIdSchema {}

/// One call a fault was injected into.
#[derive(Debug, Serialize, ToSchema)]
pub struct InjectionView {
    /// Call log id.
    pub call_id: String,
    /// Twilio `CallSid`.
    pub call_sid: Option<String>,
    /// Twilio `StreamSid` of the stream that was live.
    pub stream_sid: Option<String>,
    /// Tenant.
    pub tenant_id: String,
    /// When the fault was injected (RFC 3339, milliseconds).
    pub injected_at: String,
}

impl From<Injection> for InjectionView {
    fn from(i: Injection) -> Self {
        InjectionView {
            call_id: i.call_id.into_string(),
            call_sid: i.call_sid,
            stream_sid: i.stream_sid,
            tenant_id: i.tenant_id.into_string(),
            injected_at: rfc3339(i.injected_at),
        }
    }
}

/// What was injected.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChaosView {
    /// The mode.
    #[schema(value_type = ChaosModeDto)]
    pub mode: &'static str,
    /// How many calls were touched.
    pub selected: usize,
    /// Each of them.
    pub calls: Vec<InjectionView>,
}

impl From<ChaosError> for ApiError {
    fn from(err: ChaosError) -> Self {
        match err {
            ChaosError::Disabled => ApiError::Forbidden {
                code: "chaos_disabled",
                message: err.to_string(),
            },
            ChaosError::Invalid { field, message } => ApiError::Validation { field, message },
            ChaosError::NotLive(_) => ApiError::Status {
                status: StatusCode::NOT_FOUND,
                code: "call_not_live",
                message: err.to_string(),
            },
            ChaosError::Store(e) => ApiError::Internal(format!("store: {e:?}")),
        }
    }
}

/// The request as the chaos module takes it (422 naming the field at fault).
fn parse(r: ChaosRequest) -> Result<(ChaosMode, Selection), ApiError> {
    let mode = ChaosMode::parse(&r.mode).ok_or_else(|| {
        ApiError::invalid("mode", "must be one of kill, panic, ai_reset, twilio_reset")
    })?;
    let tenant = r
        .tenant_id
        .as_deref()
        .map(|t| {
            TenantId::parse(t)
                .ok_or_else(|| ApiError::invalid("tenant_id", "must be a tenant id (`ten_…`)"))
        })
        .transpose()?;
    let selection = match (r.percent, r.call_ids) {
        (Some(percent), None) => Selection::percent(percent, tenant)?,
        (None, Some(ids)) => Selection::calls(&ids, tenant)?,
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "call_ids",
                "give either percent or call_ids, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "percent",
                "one of percent or call_ids is required",
            ));
        }
    };
    Ok((mode, selection))
}

/// Injects a fault into live calls of this node (chaos testing; `CHAOS_HOOKS` must be on).
/// Named calls are all checked before any is touched; each touched call gets an audit row
/// (`chaos.inject`) and a timeline entry (`chaos`).
#[utoipa::path(post, path = "/api/v1/admin/chaos/calls", tag = "admin",
    request_body = ChaosRequest,
    responses((status = 200, body = ChaosView, description = "the calls the fault was injected into (none when no call is live)"),
              (status = 403, body = ErrorResponse, description = "chaos hooks are off on this node (`chaos_disabled`; nothing was touched), or the admin identity lacks the role (`insufficient_role`)"),
              (status = 404, body = ErrorResponse, description = "a named call is not live on this node (`call_not_live`; nothing was touched)"),
              (status = 422, body = ErrorResponse, description = "a bad mode, percent out of range, both or neither of percent and call_ids, an empty or malformed call_ids (`field` names it)")))]
pub async fn inject_chaos(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        body,
        ..
    } = req;
    let chaos = &state.actors.chaos;
    chaos.check_enabled()?;
    let (mode, selection) = parse(parse_json(&body)?)?;
    let injected = chaos.inject(mode, &selection, &meta).await?;
    Ok(json(
        StatusCode::OK,
        &ChaosView {
            mode: mode.as_str(),
            selected: injected.len(),
            calls: injected.into_iter().map(InjectionView::from).collect(),
        },
    ))
}
