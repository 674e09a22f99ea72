//! Admin API of the service's health: `GET /api/v1/admin/diagnostics/actors` (restarts,
//! failures and meltdown state of every singleton) and `GET /api/v1/admin/diagnostics/database`
//! (a timed round trip and the pool's use).

use actors::supervisor::RootMsg;
use actors::tenant::AuditMeta;
use ractor::call_t;
use serde::Serialize;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;

use super::json;
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

/// The supervision tree: restarts, failures and meltdown state of every singleton.
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
