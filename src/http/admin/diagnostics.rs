//! Admin API of the service's health: `GET /api/v1/admin/diagnostics/actors` (restarts,
//! failures, mailbox depth and meltdown state of every singleton), `GET /api/v1/admin/diagnostics/database`
//! (a timed round trip and the pool's use) and `GET /api/v1/admin/diagnostics/providers`
//! (a tenant's carrier credential checked at the carrier, the realtime model endpoint's
//! handshake, each within a short deadline).

use std::time::Duration;

use actors::ids::TenantId;
use actors::providers::{self, ProviderCheck};
use actors::supervisor::RootMsg;
use actors::tenant::{AuditMeta, TenantMsg};
use ractor::call_t;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::http::StatusCode;
use warp::reply::Response;

use super::json;
use crate::http::filters::parse_query;
use crate::http::mount::Request;
use crate::http::{ApiError, ErrorResponse};

/// Supervision counters of one singleton actor.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorChildView {
    /// Actor kind.
    pub kind: String,
    /// Whether it is running.
    pub alive: bool,
    /// Restarts so far.
    pub restarts: u32,
    /// Failures so far.
    pub failures: u32,
    /// Unexpected terminations so far.
    pub terminations: u32,
    /// Last failure or termination.
    pub last_failure: Option<String>,
    /// Messages waiting in its mailbox (sent, not yet handled); null while it is down.
    pub mailbox_depth: Option<u64>,
}

/// The actor tree's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorDiagnostics {
    /// False after a meltdown.
    pub healthy: bool,
    /// Why the root melted down.
    pub meltdown: Option<String>,
    /// Database backend (`sqlite` or `postgres`).
    pub database: String,
    /// Singletons.
    pub children: Vec<ActorChildView>,
}

/// The supervision tree: restarts, failures, mailbox depth and meltdown state of every
/// singleton.
#[utoipa::path(get, path = "/api/v1/admin/diagnostics/actors", tag = "admin",
    responses((status = 200, body = ActorDiagnostics), (status = 503, body = ErrorResponse)))]
pub async fn actor_diagnostics(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let state = req.state;
    let status = call_t!(state.actors.root, RootMsg::Status, state.actor_timeout_ms())?;
    Ok(json(
        StatusCode::OK,
        &ActorDiagnostics {
            healthy: status.healthy,
            meltdown: status.meltdown,
            database: state.store.backend().to_owned(),
            children: status
                .children
                .into_iter()
                .map(|c| ActorChildView {
                    kind: c.kind.to_owned(),
                    alive: c.alive,
                    restarts: c.restarts,
                    failures: c.failures,
                    terminations: c.terminations,
                    last_failure: c.last_failure,
                    mailbox_depth: c.mailbox_depth,
                })
                .collect(),
        },
    ))
}

/// What a database probe measured.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseDiagnostics {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// One `SELECT 1` round trip (acquiring a connection included), in milliseconds.
    pub round_trip_ms: f64,
    /// Connections open in the pool.
    pub connections: u32,
    /// Of which idle.
    pub idle: u32,
    /// The pool's limit (`DATABASE_MAX_CONNECTIONS`).
    pub max_connections: u32,
}

/// Probes the database: a timed round trip and the pool's use (503 when it does not answer).
#[utoipa::path(get, path = "/api/v1/admin/diagnostics/database", tag = "admin",
    responses((status = 200, body = DatabaseDiagnostics), (status = 503, body = ErrorResponse)))]
pub async fn database_diagnostics(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let probe = req
        .state
        .store
        .probe()
        .await
        .map_err(|e| ApiError::Unavailable(format!("the database does not answer: {e}")))?;
    Ok(json(
        StatusCode::OK,
        &DatabaseDiagnostics {
            backend: probe.backend.to_owned(),
            round_trip_ms: probe.round_trip.as_secs_f64() * 1000.0,
            connections: probe.connections,
            idle: probe.idle,
            max_connections: probe.max_connections,
        },
    ))
}

/// How long each provider check may take.
const PROVIDER_CHECK_DEADLINE: Duration = Duration::from_secs(3);

/// Which tenant's providers to check.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProvidersParams {
    /// The tenant (`ten_…`).
    #[param(pattern = r"^ten_[A-Za-z0-9_-]{1,64}$")]
    pub tenant_id: String,
}

/// One provider check.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderCheckView {
    /// `ok`, `failed` or `not_configured`.
    pub status: String,
    /// What was found: the account and its status, the first event, or the error.
    pub detail: String,
    /// How long the check took, in milliseconds.
    pub latency_ms: u64,
}

impl From<ProviderCheck> for ProviderCheckView {
    fn from(c: ProviderCheck) -> Self {
        ProviderCheckView {
            status: c.status.as_str().to_owned(),
            detail: c.detail,
            latency_ms: u64::try_from(c.latency.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// The providers a tenant's calls depend on.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProvidersDiagnostics {
    /// The tenant.
    pub tenant_id: String,
    /// Its Twilio credentials, checked at the carrier (`GET Accounts/{sid}.json`).
    pub carrier: ProviderCheckView,
    /// The realtime model endpoint, with the key its calls use (the tenant's, else the
    /// global one): a handshake up to `session.created`.
    pub model: ProviderCheckView,
}

/// Checks a tenant's providers: its carrier credential at the carrier and the realtime model
/// endpoint's handshake, each within 3 s.
#[utoipa::path(get, path = "/api/v1/admin/diagnostics/providers", tag = "admin", params(ProvidersParams),
    responses((status = 200, body = ProvidersDiagnostics), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse)))]
pub async fn providers_diagnostics(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let p: ProvidersParams = parse_query(&req.raw_query)?;
    let state = req.state;
    let tenant =
        TenantId::parse(&p.tenant_id).ok_or_else(|| ApiError::NotFound("tenant".into()))?;
    let account = state
        .actors
        .tenants
        .account_of_tenant(&tenant)
        .await
        .map_err(|e| match e {
            actors::tenant::TenantError::NotFound(what) => ApiError::NotFound(what.to_owned()),
            other => ApiError::Unavailable(format!("tenant directory: {other}")),
        })?;
    let own_key = call_t!(
        state.tenant_actor()?,
        TenantMsg::OpenAiKey,
        state.actor_timeout_ms(),
        tenant.clone()
    )?
    .map_err(|e| ApiError::Unavailable(format!("tenant key: {e}")))?;
    let key = own_key.or_else(|| {
        state
            .config
            .openai_api_key
            .as_ref()
            .map(|k| k.expose().to_owned())
    });
    let carrier = &state.actors.telephony.config().carrier;
    let url = state
        .config
        .openai_realtime_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    let (carrier, model) = tokio::join!(
        providers::check_carrier(
            carrier.as_ref(),
            account.as_ref().map(|a| &a.auth),
            PROVIDER_CHECK_DEADLINE
        ),
        providers::check_model(
            &url,
            key,
            actors::realtime::DEFAULT_MODEL,
            PROVIDER_CHECK_DEADLINE
        ),
    );
    Ok(json(
        StatusCode::OK,
        &ProvidersDiagnostics {
            tenant_id: tenant.to_string(),
            carrier: carrier.into(),
            model: model.into(),
        },
    ))
}
