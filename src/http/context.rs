//! Per-request context: the request id and the matched route template, held in a tokio
//! task-local for the whole life of the request future, so error bodies produced anywhere
//! (handlers, rejections) carry the request id, and metrics are labelled by route template.

use std::cell::Cell;
use std::net::SocketAddr;

tokio::task_local! {
    static SCOPE: RequestScope;
}

/// What the server knows about the request being served.
pub struct RequestScope {
    /// The request id (taken from a well-formed `x-request-id` or generated).
    pub id: String,
    /// The matched route's template, set once the path and method matched.
    route: Cell<&'static str>,
}

impl RequestScope {
    /// A scope for one request.
    pub fn new(id: String) -> Self {
        Self {
            id,
            route: Cell::new(UNMATCHED),
        }
    }

    /// The route template label.
    pub fn route(&self) -> &'static str {
        self.route.get()
    }
}

/// Route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Runs `fut` inside a request scope; returns the output and the route label it set.
pub async fn scoped<F: Future>(scope: RequestScope, fut: F) -> (F::Output, &'static str) {
    SCOPE
        .scope(scope, async move {
            let out = fut.await;
            let route = SCOPE.try_with(|s| s.route()).unwrap_or(UNMATCHED);
            (out, route)
        })
        .await
}

/// The current request id (outside a request: `None`).
pub fn request_id() -> Option<String> {
    SCOPE.try_with(|s| s.id.clone()).ok()
}

/// Records the route template of the current request.
pub fn set_route(template: &'static str) {
    let _ = SCOPE.try_with(|s| s.route.set(template));
}

/// The TCP peer of the connection, inserted into request extensions by the server.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Accepts a client-supplied request id when it is short and plain; otherwise makes one.
pub fn request_id_from(header: Option<&str>) -> String {
    match header {
        Some(h)
            if !h.is_empty()
                && h.len() <= 64
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            h.to_owned()
        }
        _ => format!("req_{}", uuid::Uuid::new_v4().simple()),
    }
}
