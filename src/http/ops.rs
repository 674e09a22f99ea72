//! Ops endpoints: liveness, readiness and Prometheus metrics.

use std::collections::BTreeMap;
use std::time::Duration;

use actors::supervisor::RootMsg;
use ractor::call_t;
use serde::Serialize;
use utoipa::ToSchema;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::Response;

use super::ApiError;
use super::mount::Request;

/// A health report.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReport {
    /// `ok` or `unavailable`.
    pub status: String,
    /// Each check and its result (`ok` or why not).
    pub checks: BTreeMap<String, String>,
}

fn report(checks: BTreeMap<String, String>) -> Response {
    let ok = checks.values().all(|v| v == "ok");
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = HealthReport {
        status: if ok { "ok" } else { "unavailable" }.to_owned(),
        checks,
    };
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// Liveness: the process serves requests and the supervision tree has not melted down.
#[utoipa::path(get, path = "/health/live", tag = "ops",
    responses((status = 200, body = HealthReport), (status = 503, body = HealthReport)))]
pub async fn live(req: Request) -> Result<Response, ApiError> {
    let state = req.state;
    let mut checks = BTreeMap::new();
    let healthy = *state.actors.health.borrow();
    checks.insert(
        "supervisor".to_owned(),
        if healthy { "ok" } else { "meltdown" }.to_owned(),
    );
    Ok(report(checks))
}

/// Readiness: database reachable, supervisor healthy, not draining.
#[utoipa::path(get, path = "/health/ready", tag = "ops",
    responses((status = 200, body = HealthReport), (status = 503, body = HealthReport)))]
pub async fn ready(req: Request) -> Result<Response, ApiError> {
    let state = req.state;
    let mut checks = BTreeMap::new();
    checks.insert(
        "draining".to_owned(),
        if state.is_draining() {
            "shutting down"
        } else {
            "ok"
        }
        .to_owned(),
    );
    let db = match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => format!("unreachable: {e}"),
        Err(_) => "timed out".to_owned(),
    };
    checks.insert("database".to_owned(), db);
    let supervisor = match call_t!(state.actors.root, RootMsg::Status, state.actor_timeout_ms()) {
        Ok(s) if s.healthy => "ok".to_owned(),
        Ok(s) => format!("meltdown: {}", s.meltdown.unwrap_or_default()),
        Err(_) => "not answering".to_owned(),
    };
    checks.insert("supervisor".to_owned(), supervisor);
    Ok(report(checks))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(req: Request) -> Result<Response, ApiError> {
    let body = req.state.metrics.render();
    req.state.signals.scraped();
    Ok(warp::reply::with_header(body, "content-type", "text/plain; version=0.0.4").into_response())
}
