//! Admin API of a tenant's readiness review: `GET /api/v1/admin/tenants/{tenant_id}/readiness`
//! (every launch gate with its status, reason, owner, evidence and time, computed when asked
//! through [`actors::governance::readiness`]), and [`review`], what the phone-route handlers
//! gate `staged → live` on.

use actors::governance::readiness::{self, Gate, Readiness, ReviewInputs};
use actors::ids::TenantId;
use actors::store::PhoneRoute;
use actors::tenant::AuditMeta;
use actors::time::rfc3339;
use serde::Serialize;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;

use super::json;
use crate::http::mount::Request;
use crate::http::{ApiError, AppState, ErrorResponse};

/// One launch gate.
#[derive(Debug, Serialize, ToSchema)]
pub struct GateView {
    /// `carrier_credentials`, `signed_webhook`, `route_fallbacks`, `agent_versions`,
    /// `evaluations`, `event_webhook`, `telemetry`, `launch_record` or `launch_approvals`.
    pub key: String,
    /// `pass`, `fail` or `warn`.
    pub status: String,
    /// Why, in a sentence.
    pub reason: String,
    /// Who fixes it: `engineering`, `operations` or `business`.
    pub owner: String,
    /// What it was decided on.
    pub evidence: serde_json::Value,
    /// RFC 3339.
    pub checked_at: String,
}

/// A tenant's readiness review.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessView {
    /// The tenant.
    pub tenant_id: String,
    /// No gate fails: its routes may go live.
    pub ready: bool,
    /// Keys of the failing gates.
    pub failing: Vec<String>,
    /// Every gate.
    pub gates: Vec<GateView>,
    /// RFC 3339.
    pub checked_at: String,
}

fn gate_view(g: Gate) -> GateView {
    GateView {
        key: g.key.to_owned(),
        status: g.status.as_str().to_owned(),
        reason: g.reason,
        owner: g.owner.as_str().to_owned(),
        evidence: g.evidence,
        checked_at: rfc3339(g.checked_at),
    }
}

fn readiness_view(r: Readiness) -> ReadinessView {
    ReadinessView {
        tenant_id: r.tenant_id.to_string(),
        ready: r.ready,
        failing: r.failing().into_iter().map(str::to_owned).collect(),
        gates: r.gates.into_iter().map(gate_view).collect(),
        checked_at: rfc3339(r.checked_at),
    }
}

/// Reviews every launch gate of `tenant` now; `prospect` is a route as a change would leave
/// it; `ask_carrier: false` leaves the credentials unchecked (`warn`).
pub async fn review(
    state: &AppState,
    tenant: &TenantId,
    prospect: Option<&PhoneRoute>,
    ask_carrier: bool,
) -> Result<Readiness, ApiError> {
    let account = state
        .actors
        .tenants
        .account_of_tenant(tenant)
        .await
        .map_err(|e| match e {
            actors::tenant::TenantError::NotFound(what) => ApiError::NotFound(what.to_owned()),
            other => ApiError::Unavailable(format!("tenant directory: {other}")),
        })?;
    let carrier = &state.actors.telephony.config().carrier;
    let stale_ms = i64::try_from(state.config.node_stale_after.as_millis()).unwrap_or(i64::MAX);
    let me = state.nodes.instance().id.as_str();
    let metrics_scrapes = state
        .signals
        .node_scrapes(&state.store, me, actors::time::now_ms() - stale_ms)
        .await
        .map_err(|e| ApiError::Unavailable(format!("database: {e}")))?;
    let last_signed_webhook_ms = state
        .signals
        .last_signed_webhook(&state.store, tenant)
        .await
        .map_err(|e| ApiError::Unavailable(format!("database: {e}")))?;
    let inputs = ReviewInputs {
        carrier: carrier.as_ref(),
        carrier_auth: account.as_ref().map(|a| &a.auth),
        ask_carrier,
        last_signed_webhook_ms,
        metrics_scrapes,
        min_evaluated_calls: state.config.readiness_min_evaluated_calls,
        min_pass_rate: f64::from(state.config.readiness_min_pass_percent) / 100.0,
        prospect,
    };
    Ok(readiness::review(&state.store, tenant, inputs).await?)
}

/// A tenant's readiness review: every launch gate (credentials verified at the carrier, a
/// recent signed webhook, route fallbacks, approved versions with rubrics, evaluated calls,
/// the event webhook delivering, telemetry, the launch record and its approvals) with its
/// status, reason, owner and evidence. A route goes live only when no gate fails.
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant_id}/readiness", tag = "admin",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = ReadinessView), (status = 404, body = ErrorResponse),
              (status = 503, body = ErrorResponse)))]
pub async fn get_readiness(req: Request<AuditMeta, (TenantId,)>) -> Result<Response, ApiError> {
    let Request {
        state, path: (id,), ..
    } = req;
    let r = review(&state, &id, None, true).await?;
    Ok(json(StatusCode::OK, &readiness_view(r)))
}
