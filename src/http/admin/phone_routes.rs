//! Admin API for phone routes (`/api/v1/admin/phone-routes`), routing diagnostics and the
//! auth-transport alerts.

use actors::governance::readiness::GateStatus;
use actors::ids::{RouteId, TenantId};
use actors::router::{self, LiveOverride, MAX_DIAGNOSTICS, NewRoute, RoutePatch, RouterMsg};
use actors::store::{OverLimit, PhoneRoute, RouteDirection, RouteStatus};
use actors::tenant::AuditMeta;
use actors::time::rfc3339;
use ractor::call_t;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::http::StatusCode;
use warp::reply::Response;

use super::readiness;
use super::{check_name, double_option, json};
use crate::http::ApiError;
use crate::http::ErrorResponse;
use crate::http::fields;
use crate::http::filters::{Paging, parse_json, parse_query};
use crate::http::mount::Request;
use crate::http::page::Page;

/// Route direction.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RouteDirectionDto {
    /// Calls to the number.
    Inbound,
    /// Calls from the number.
    Outbound,
    /// Both.
    Both,
}

/// Route status.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RouteStatusDto {
    /// Only test callers reach the agent.
    Staged,
    /// Everyone reaches the agent.
    Live,
}

/// Behaviour at the concurrency limit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OverLimitDto {
    /// The route's fallback (message, then the fallback number).
    Fallback,
    /// `<Reject reason="busy"/>`.
    Busy,
}

macro_rules! map_enum {
    ($dto:ident <=> $domain:ident { $($v:ident),* }) => {
        impl From<$dto> for $domain {
            fn from(v: $dto) -> Self {
                match v { $($dto::$v => $domain::$v),* }
            }
        }
        impl From<$domain> for $dto {
            fn from(v: $domain) -> Self {
                match v { $($domain::$v => $dto::$v),* }
            }
        }
    };
}
map_enum!(RouteDirectionDto <=> RouteDirection { Inbound, Outbound, Both });
map_enum!(RouteStatusDto <=> RouteStatus { Staged, Live });
map_enum!(OverLimitDto <=> OverLimit { Fallback, Busy });

/// A phone route.
#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneRouteView {
    /// Identifier (`rte_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// E.164 number.
    pub number: String,
    /// Agent answering.
    pub agent_key: String,
    /// Direction.
    pub direction: RouteDirectionDto,
    /// Status.
    pub status: RouteStatusDto,
    /// Human fallback number.
    pub fallback_number: Option<String>,
    /// Said before the fallback.
    pub fallback_message: Option<String>,
    /// At the concurrency limit.
    pub over_limit: OverLimitDto,
    /// Simultaneous live calls on this route.
    pub max_concurrent_calls: i64,
    /// Callers connected while staged.
    pub test_callers: Vec<String>,
    /// Whether calls on this route are recorded (`null`: not set; an agent version's policy
    /// wins, else `off`).
    pub recording_policy: Option<crate::http::recordings::RecordingPolicyDto>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<PhoneRoute> for PhoneRouteView {
    fn from(r: PhoneRoute) -> Self {
        PhoneRouteView {
            id: r.id.into_string(),
            tenant_id: r.tenant_id.into_string(),
            number: r.number,
            agent_key: r.agent_key,
            direction: r.direction.into(),
            status: r.status.into(),
            fallback_number: r.fallback_number,
            fallback_message: r.fallback_message,
            over_limit: r.over_limit.into(),
            max_concurrent_calls: r.max_concurrent_calls,
            test_callers: r.test_callers,
            recording_policy: r.recording_policy.map(Into::into),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

/// Body of `POST /api/v1/admin/phone-routes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePhoneRouteRequest {
    /// Owning tenant.
    #[schema(pattern = r"^ten_[A-Za-z0-9_-]{1,64}$")]
    pub tenant_id: String,
    /// E.164 number (one route per number).
    #[schema(format = "e164")]
    pub number: String,
    /// Agent answering on it.
    #[schema(min_length = 1, max_length = 100, format = "label")]
    pub agent_key: String,
    /// Default `inbound`.
    pub direction: Option<RouteDirectionDto>,
    /// Default `staged`.
    pub status: Option<RouteStatusDto>,
    /// Human fallback number (E.164).
    #[schema(format = "e164")]
    pub fallback_number: Option<String>,
    /// Said before the fallback dial (or before hanging up).
    #[schema(min_length = 1, max_length = 500, format = "label")]
    pub fallback_message: Option<String>,
    /// Default `fallback`.
    pub over_limit: Option<OverLimitDto>,
    /// Default 10 (1–10000).
    #[schema(minimum = 1, maximum = 10000)]
    pub max_concurrent_calls: Option<i64>,
    /// Callers (E.164) connected to the agent while staged.
    #[schema(value_type = Option<Vec<crate::http::fields::PhoneNumber>>, max_items = 100)]
    pub test_callers: Option<Vec<String>>,
    /// Whether calls on this route are recorded (omit: not set; an agent version's policy
    /// wins, else `off`).
    pub recording_policy: Option<crate::http::recordings::RecordingPolicyDto>,
    /// With `status: live`: an `admin`'s reason to make the route live although the
    /// readiness review fails (1–2000 characters; audited with the failing gates).
    #[schema(min_length = 1, max_length = 2000, format = "label")]
    pub live_override_reason: Option<String>,
}

/// Body of `PATCH /api/v1/admin/phone-routes/{route_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchPhoneRouteRequest {
    /// New number.
    #[schema(format = "e164")]
    pub number: Option<String>,
    /// New agent.
    #[schema(min_length = 1, max_length = 100, format = "label")]
    pub agent_key: Option<String>,
    /// New direction.
    pub direction: Option<RouteDirectionDto>,
    /// New status.
    pub status: Option<RouteStatusDto>,
    /// New fallback number; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    #[schema(format = "e164")]
    pub fallback_number: Option<Option<String>>,
    /// New fallback message; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    #[schema(min_length = 1, max_length = 500, format = "label")]
    pub fallback_message: Option<Option<String>>,
    /// New over-limit behaviour.
    pub over_limit: Option<OverLimitDto>,
    /// New limit.
    #[schema(minimum = 1, maximum = 10000)]
    pub max_concurrent_calls: Option<i64>,
    /// New test callers.
    #[schema(value_type = Option<Vec<crate::http::fields::PhoneNumber>>, max_items = 100)]
    pub test_callers: Option<Vec<String>>,
    /// New recording policy; `null` unsets it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<crate::http::recordings::RecordingPolicyDto>)]
    pub recording_policy: Option<Option<crate::http::recordings::RecordingPolicyDto>>,
    /// With `status: live` on a staged route: an `admin`'s reason to make it live although
    /// the readiness review fails (1–2000 characters; audited with the failing gates).
    #[schema(min_length = 1, max_length = 2000, format = "label")]
    pub live_override_reason: Option<String>,
}

/// Filters of the route listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PhoneRouteParams {
    /// Only this tenant's routes (`ten_…`).
    #[param(pattern = r"^ten_[A-Za-z0-9_-]{1,64}$")]
    pub tenant_id: Option<String>,
    /// Page size (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Rows to skip.
    pub offset: Option<u32>,
}

fn check_limit(v: i64) -> Result<i64, ApiError> {
    if (1..=10_000).contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::invalid(
            "max_concurrent_calls",
            "must be between 1 and 10000",
        ))
    }
}

fn check_message(v: &str) -> Result<String, ApiError> {
    check_name("fallback_message", v, 500)
}

fn check_callers(v: Vec<String>) -> Result<Vec<String>, ApiError> {
    if v.len() > 100 {
        return Err(ApiError::invalid("test_callers", "at most 100 numbers"));
    }
    v.iter()
        .enumerate()
        .map(|(i, n)| fields::e164(&format!("test_callers[{i}]"), n).map(String::from))
        .collect()
}

fn route_id(raw: &str) -> Result<RouteId, ApiError> {
    RouteId::parse(raw).ok_or_else(|| ApiError::NotFound("phone route".into()))
}

/// Lists phone routes.
#[utoipa::path(get, path = "/api/v1/admin/phone-routes", tag = "admin", params(PhoneRouteParams),
    responses((status = 200, body = Page<PhoneRouteView>), (status = 400, body = ErrorResponse)))]
pub async fn list_routes(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let Request {
        state,
        raw_query: query,
        ..
    } = req;
    let p: PhoneRouteParams = parse_query(&query)?;
    let paging = Paging::new(p.limit, p.offset)?;
    let tenant = p
        .tenant_id
        .map(|t| {
            TenantId::parse(&t).ok_or_else(|| ApiError::BadRequest {
                code: "invalid_query",
                message: "tenant_id is not a tenant id".into(),
                field: Some("tenant_id".into()),
            })
        })
        .transpose()?;
    let page =
        router::list_routes(&state.store, tenant.as_ref(), paging.limit, paging.offset).await?;
    Ok(json(
        StatusCode::OK,
        &Page::new(
            page.items.into_iter().map(PhoneRouteView::from),
            paging,
            page.total,
        ),
    ))
}

fn override_without_live() -> ApiError {
    ApiError::invalid(
        "live_override_reason",
        "is only accepted with `status: live` on a route that is not live yet",
    )
}

/// The gate on `staged → live`: the tenant's readiness review as the change would leave it
/// must have no failing gate (409 `readiness_failed` listing each with its reason), unless
/// an admin gives a reason to override it, which the route's audit row keeps with the
/// gates that failed. Only `admin` reaches a route change (its guard), so the override
/// needs that role.
async fn gate_live(
    state: &crate::http::AppState,
    prospect: &PhoneRoute,
    override_reason: Option<&str>,
) -> Result<Option<LiveOverride>, ApiError> {
    let reason = override_reason
        .map(|r| {
            let too_long = r.chars().count() > 2000;
            let r = r.trim();
            if r.is_empty() || too_long || r.chars().any(char::is_control) {
                Err(ApiError::invalid(
                    "live_override_reason",
                    "must be 1 to 2000 characters without control characters",
                ))
            } else {
                Ok(r.to_owned())
            }
        })
        .transpose()?;
    // With an override the review is recorded, not waited on: the carrier is not asked.
    let review =
        readiness::review(state, &prospect.tenant_id, Some(prospect), reason.is_none()).await?;
    let failing: Vec<_> = review
        .gates
        .iter()
        .filter(|g| g.status == GateStatus::Fail)
        .collect();
    if failing.is_empty() {
        return Ok(None);
    }
    match reason {
        Some(reason) => {
            tracing::warn!(
                tenant_id = %prospect.tenant_id,
                number = %prospect.number,
                failing = failing.len(),
                "phone route made live over a failing readiness review"
            );
            Ok(Some(LiveOverride {
                reason,
                failing_gates: failing.iter().map(|g| g.key.to_owned()).collect(),
            }))
        }
        None => Err(ApiError::Status {
            status: StatusCode::CONFLICT,
            code: "readiness_failed",
            message: format!(
                "the readiness review fails, so the route cannot go live: {}",
                failing
                    .iter()
                    .map(|g| format!("{} ({}: {})", g.key, g.owner.as_str(), g.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }),
    }
}

/// Creates a phone route (409 when the number already has one).
#[utoipa::path(post, path = "/api/v1/admin/phone-routes", tag = "admin", request_body = CreatePhoneRouteRequest,
    responses((status = 201, body = PhoneRouteView), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "the number is already routed, or the route would go live while the readiness review fails (`readiness_failed`, naming each failing gate)"),
              (status = 422, body = ErrorResponse), (status = 503, body = ErrorResponse)))]
pub async fn create_route(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        body,
        ..
    } = req;
    let r: CreatePhoneRouteRequest = parse_json(&body)?;
    let new = NewRoute {
        tenant_id: TenantId::parse(&r.tenant_id)
            .ok_or_else(|| ApiError::invalid("tenant_id", "is not a tenant id"))?,
        number: fields::e164("number", &r.number)?.into_string(),
        agent_key: check_name("agent_key", &r.agent_key, 100)?,
        direction: r.direction.unwrap_or(RouteDirectionDto::Inbound).into(),
        status: r.status.unwrap_or(RouteStatusDto::Staged).into(),
        fallback_number: r
            .fallback_number
            .as_deref()
            .map(|n| fields::e164("fallback_number", n).map(String::from))
            .transpose()?,
        fallback_message: r
            .fallback_message
            .as_deref()
            .map(check_message)
            .transpose()?,
        over_limit: r.over_limit.unwrap_or(OverLimitDto::Fallback).into(),
        max_concurrent_calls: check_limit(r.max_concurrent_calls.unwrap_or(10))?,
        test_callers: check_callers(r.test_callers.unwrap_or_default())?,
        recording_policy: r.recording_policy.map(Into::into),
        live_override: None,
    };
    let mut new = new;
    if new.status == RouteStatus::Live {
        let prospect = PhoneRoute {
            id: RouteId::generate(),
            tenant_id: new.tenant_id.clone(),
            number: new.number.clone(),
            agent_key: new.agent_key.clone(),
            direction: new.direction,
            status: new.status,
            fallback_number: new.fallback_number.clone(),
            fallback_message: new.fallback_message.clone(),
            over_limit: new.over_limit,
            max_concurrent_calls: new.max_concurrent_calls,
            test_callers: new.test_callers.clone(),
            recording_policy: new.recording_policy,
            created_at: 0,
            updated_at: 0,
        };
        new.live_override = gate_live(&state, &prospect, r.live_override_reason.as_deref()).await?;
    } else if r.live_override_reason.is_some() {
        return Err(override_without_live());
    }
    let route = call_t!(
        state.router_actor()?,
        RouterMsg::CreateRoute,
        state.actor_timeout_ms(),
        new,
        meta
    )??;
    Ok(json(StatusCode::CREATED, &PhoneRouteView::from(route)))
}

/// Reads a phone route.
#[utoipa::path(get, path = "/api/v1/admin/phone-routes/{route_id}", tag = "admin",
    params(("route_id" = String, Path, description = "Route id")),
    responses((status = 200, body = PhoneRouteView), (status = 404, body = ErrorResponse)))]
pub async fn get_route(req: Request<AuditMeta, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state, path: (id,), ..
    } = req;
    let id = route_id(&id)?;
    let route = router::get_route(&state.store, &id).await?;
    Ok(json(StatusCode::OK, &PhoneRouteView::from(route)))
}

/// Changes a phone route (a number change that collides answers 409).
#[utoipa::path(patch, path = "/api/v1/admin/phone-routes/{route_id}", tag = "admin", request_body = PatchPhoneRouteRequest,
    params(("route_id" = String, Path, description = "Route id")),
    responses((status = 200, body = PhoneRouteView), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "the number is already routed, or the route would go live while the readiness review fails (`readiness_failed`, naming each failing gate)"),
              (status = 422, body = ErrorResponse), (status = 503, body = ErrorResponse)))]
pub async fn patch_route(req: Request<AuditMeta, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        body,
        ..
    } = req;
    let id = route_id(&id)?;
    let r: PatchPhoneRouteRequest = parse_json(&body)?;
    let patch = RoutePatch {
        number: r
            .number
            .as_deref()
            .map(|n| fields::e164("number", n).map(String::from))
            .transpose()?,
        agent_key: r
            .agent_key
            .as_deref()
            .map(|a| check_name("agent_key", a, 100))
            .transpose()?,
        direction: r.direction.map(Into::into),
        status: r.status.map(Into::into),
        fallback_number: match r.fallback_number {
            None => None,
            Some(None) => Some(None),
            Some(Some(n)) => Some(Some(fields::e164("fallback_number", &n)?.into_string())),
        },
        fallback_message: match r.fallback_message {
            None => None,
            Some(None) => Some(None),
            Some(Some(m)) => Some(Some(check_message(&m)?)),
        },
        over_limit: r.over_limit.map(Into::into),
        max_concurrent_calls: r.max_concurrent_calls.map(check_limit).transpose()?,
        test_callers: r.test_callers.map(check_callers).transpose()?,
        recording_policy: r.recording_policy.map(|p| p.map(Into::into)),
        live_override: None,
    };
    let mut patch = patch;
    let before = router::get_route(&state.store, &id).await?;
    if patch.status == Some(RouteStatus::Live) && before.status != RouteStatus::Live {
        let mut prospect = before;
        prospect.status = RouteStatus::Live;
        if let Some(v) = &patch.number {
            prospect.number.clone_from(v);
        }
        if let Some(v) = &patch.agent_key {
            prospect.agent_key.clone_from(v);
        }
        if let Some(v) = &patch.fallback_number {
            prospect.fallback_number.clone_from(v);
        }
        patch.live_override =
            gate_live(&state, &prospect, r.live_override_reason.as_deref()).await?;
    } else if r.live_override_reason.is_some() {
        return Err(override_without_live());
    }
    let route = call_t!(
        state.router_actor()?,
        RouterMsg::UpdateRoute,
        state.actor_timeout_ms(),
        id,
        patch,
        meta
    )??;
    Ok(json(StatusCode::OK, &PhoneRouteView::from(route)))
}

/// Deletes a phone route (calls to the number are then unrouted).
#[utoipa::path(delete, path = "/api/v1/admin/phone-routes/{route_id}", tag = "admin",
    params(("route_id" = String, Path, description = "Route id")),
    responses((status = 200, body = PhoneRouteView), (status = 404, body = ErrorResponse)))]
pub async fn delete_route(req: Request<AuditMeta, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        ..
    } = req;
    let id = route_id(&id)?;
    let route = call_t!(
        state.router_actor()?,
        RouterMsg::DeleteRoute,
        state.actor_timeout_ms(),
        id,
        meta
    )??;
    Ok(json(StatusCode::OK, &PhoneRouteView::from(route)))
}

/// One recent inbound call that did not reach an agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoutingDiagnosticView {
    /// RFC 3339.
    pub at: String,
    /// Signing account.
    pub account_sid: String,
    /// `CallSid`.
    pub call_sid: String,
    /// Caller.
    pub from: String,
    /// Number called.
    pub to: String,
    /// `unrouted`, `route_staged`, `tenant_suspended`, `tenant_at_limit`, `route_at_limit`, `draining`.
    pub reason: String,
    /// The node that saw the call.
    pub node_id: String,
}

/// Recent inbound calls on every node that did not reach an agent (newest first).
#[derive(Debug, Serialize, ToSchema)]
pub struct RoutingDiagnostics {
    /// Entries.
    pub data: Vec<RoutingDiagnosticView>,
}

/// Why recent inbound calls did not reach an agent.
#[utoipa::path(get, path = "/api/v1/admin/diagnostics/routing", tag = "admin",
    responses((status = 200, body = RoutingDiagnostics)))]
pub async fn routing_diagnostics(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let state = req.state;
    let recent = state
        .store
        .recent_routing_diagnostics(MAX_DIAGNOSTICS as i64)
        .await
        .map_err(|e| ApiError::Internal(format!("store: {e:?}")))?;
    Ok(json(
        StatusCode::OK,
        &RoutingDiagnostics {
            data: recent
                .into_iter()
                .map(|d| RoutingDiagnosticView {
                    at: rfc3339(d.at),
                    account_sid: d.account_sid,
                    call_sid: d.call_sid,
                    from: d.from_number,
                    to: d.to_number,
                    reason: d.reason,
                    node_id: d.node_id,
                })
                .collect(),
        },
    ))
}

/// One alert.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthTransportAlert {
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// `signature_failures`, `stream_token_rejections`, `stream_token_secret`.
    pub kind: String,
    /// Route template (signature failures).
    pub route: Option<String>,
    /// Claimed account (signature failures).
    pub account_sid: Option<String>,
    /// Reason (token rejections).
    pub reason: Option<String>,
    /// Occurrences in the window.
    pub count: usize,
    /// The nodes that saw these occurrences (none for configuration alerts).
    pub node_ids: Vec<String>,
    /// What to do.
    pub suggested_action: String,
}

/// Stream-token secret configuration.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamTokenConfigView {
    /// `configured` or `derived_from_master_key`.
    pub secret_source: String,
    /// A previous secret is still accepted.
    pub rotation_in_progress: bool,
    /// Token lifetime.
    pub ttl_seconds: u64,
}

/// Authentication health of the Twilio transport on every node.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthTransportReport {
    /// Look-back window.
    pub window_seconds: u64,
    /// Alerts, most severe first.
    pub alerts: Vec<AuthTransportAlert>,
    /// Stream-token secret configuration.
    pub stream_token: StreamTokenConfigView,
}

/// Recent signature failures and stream-token rejections, with severity and suggested action.
#[utoipa::path(get, path = "/api/v1/admin/alerts/auth-transport", tag = "admin",
    responses((status = 200, body = AuthTransportReport)))]
pub async fn auth_transport(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let state = req.state;
    let (sigs, tokens) = state
        .auth_log
        .counts(&state.store)
        .await
        .map_err(|e| ApiError::Internal(format!("store: {e:?}")))?;
    let mut alerts = Vec::new();
    for s in sigs {
        let severity = if s.count >= 10 { "critical" } else { "warning" };
        alerts.push(AuthTransportAlert {
            severity: severity.into(),
            kind: "signature_failures".into(),
            route: Some(s.route.clone()),
            account_sid: s.account_sid.clone(),
            reason: None,
            count: s.count,
            node_ids: s.node_ids,
            suggested_action: match &s.account_sid {
                Some(_) => "check that PUBLIC_BASE_URL matches the webhook URL configured in Twilio exactly \
                            (scheme, host, port, path) and that the tenant's stored auth token is current; \
                            repeated failures from unknown sources may be forgery attempts"
                    .into(),
                None => "requests without a known AccountSid: likely probes or forgeries; block the source \
                         at the edge if they persist"
                    .into(),
            },
        });
    }
    for t in tokens {
        let (severity, action) = match t.reason.as_str() {
            "reused" | "forged" => (
                "critical",
                "stream tokens are being replayed or forged: investigate the source; rotate STREAM_TOKEN_SECRET if a secret may have leaked",
            ),
            "expired" => (
                "warning",
                "streams start after their token expired: raise STREAM_TOKEN_TTL_SECONDS above the longest ring time",
            ),
            _ => (
                "warning",
                "media streams arrive without a token: check that the TwiML reaching Twilio carries the <Parameter name=\"token\">",
            ),
        };
        alerts.push(AuthTransportAlert {
            severity: severity.into(),
            kind: "stream_token_rejections".into(),
            route: Some("/media-stream".into()),
            account_sid: None,
            reason: Some(t.reason.clone()),
            count: t.count,
            node_ids: t.node_ids,
            suggested_action: action.into(),
        });
    }
    let configured = state.config.stream_token_secret.is_some();
    let rotating = state.config.stream_token_secret_previous.is_some();
    if !configured {
        alerts.push(AuthTransportAlert {
            severity: "info".into(),
            kind: "stream_token_secret".into(),
            route: None,
            account_sid: None,
            reason: Some("derived_from_master_key".into()),
            count: 0,
            node_ids: Vec::new(),
            suggested_action: "set STREAM_TOKEN_SECRET explicitly so it can be rotated without touching MASTER_KEY".into(),
        });
    }
    if rotating {
        alerts.push(AuthTransportAlert {
            severity: "info".into(),
            kind: "stream_token_secret".into(),
            route: None,
            account_sid: None,
            reason: Some("rotation_in_progress".into()),
            count: 0,
            node_ids: Vec::new(),
            suggested_action: "remove STREAM_TOKEN_SECRET_PREVIOUS once every node runs the new secret and one token lifetime has passed".into(),
        });
    }
    let rank = |s: &str| match s {
        "critical" => 0,
        "warning" => 1,
        _ => 2,
    };
    alerts.sort_by_key(|a| rank(&a.severity));
    Ok(json(
        StatusCode::OK,
        &AuthTransportReport {
            window_seconds: crate::http::alerts::ALERT_WINDOW.as_secs(),
            alerts,
            stream_token: StreamTokenConfigView {
                secret_source: if configured {
                    "configured"
                } else {
                    "derived_from_master_key"
                }
                .into(),
                rotation_in_progress: rotating,
                ttl_seconds: state.config.stream_token_ttl.as_secs(),
            },
        },
    ))
}
