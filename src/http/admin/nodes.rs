//! Admin view of the cluster's nodes: `GET /api/v1/admin/nodes` (id, address, version,
//! start, heartbeat, draining, the live calls each holds), read from `nodes` and
//! `live_calls`.

use actors::store::NodeRecord;
use actors::tenant::AuditMeta;
use actors::time::rfc3339;
use serde::Serialize;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;

use super::json;
use crate::http::mount::Request;
use crate::http::page::List;
use crate::http::{ApiError, ErrorResponse};

/// A node of the cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    /// Its id (`NODE_ID`).
    pub id: String,
    /// Where it serves.
    pub address: String,
    /// Its service version.
    pub version: String,
    /// RFC 3339: its process started (its incarnation).
    pub started_at: String,
    /// RFC 3339: its last heartbeat.
    pub heartbeat_at: String,
    /// Shutting down: it takes no new calls.
    pub draining: bool,
    /// Live calls it holds.
    pub live_calls: i64,
}

impl From<NodeRecord> for NodeView {
    fn from(n: NodeRecord) -> Self {
        NodeView {
            id: n.id,
            address: n.address,
            version: n.version,
            started_at: rfc3339(n.started_at),
            heartbeat_at: rfc3339(n.heartbeat_at),
            draining: n.draining,
            live_calls: n.live_calls,
        }
    }
}

/// The recorded nodes, by id, with the live calls each holds.
#[utoipa::path(get, path = "/api/v1/admin/nodes", tag = "admin",
    responses((status = 200, body = List<NodeView>), (status = 401, body = ErrorResponse)))]
pub async fn list_nodes(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let nodes = req
        .state
        .store
        .list_nodes()
        .await
        .map_err(|e| ApiError::Internal(format!("store: {e:?}")))?;
    Ok(json(
        StatusCode::OK,
        &List::new(nodes.into_iter().map(NodeView::from)),
    ))
}
