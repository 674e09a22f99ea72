//! The sandbox's own tenant endpoints, on loopback: the demo agent's webhook tool
//! (`order_status`) and the demo tenant's event receiver. Both verify the `StateSet-Signature`
//! header with the tenant's signing secret exactly as a tenant would, so a newcomer sees
//! signed tool requests and signed events arrive (and the log says so).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde_json::{Value, json};
use warp::Filter;
use warp::http::StatusCode;

/// How old a signature may be.
const TOLERANCE_SECS: i64 = 300;

/// The running receivers.
pub struct Receivers {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The tenant's signing secret (set once the tenant exists).
    pub secret: Arc<RwLock<Option<Vec<u8>>>>,
    /// Events received, newest last (watch it to wait for one).
    pub events: Arc<tokio::sync::watch::Sender<Vec<Value>>>,
}

fn verified(secret: &RwLock<Option<Vec<u8>>>, header: Option<&str>, body: &[u8]) -> bool {
    let Ok(guard) = secret.read() else {
        return false;
    };
    let (Some(secret), Some(header)) = (guard.as_ref(), header) else {
        return false;
    };
    actors::egress::verify(
        secret,
        header,
        body,
        chrono::Utc::now().timestamp(),
        TOLERANCE_SECS,
    )
    .is_ok()
}

fn reply(status: StatusCode, body: &Value) -> warp::reply::Response {
    warp::http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string().into())
        .unwrap_or_default()
}

/// Starts the receivers on `127.0.0.1:0`.
pub async fn start() -> anyhow::Result<Receivers> {
    let secret: Arc<RwLock<Option<Vec<u8>>>> = Arc::default();
    let events = Arc::new(tokio::sync::watch::Sender::new(Vec::new()));
    let tool = {
        let secret = Arc::clone(&secret);
        warp::path!("tools" / "order-status")
            .and(warp::post())
            .and(warp::header::optional::<String>(actors::egress::SIGNATURE_HEADER))
            .and(warp::body::bytes())
            .map(move |sig: Option<String>, body: Bytes| {
                if !verified(&secret, sig.as_deref(), &body) {
                    tracing::warn!("sandbox tool: request with a bad signature refused");
                    return reply(StatusCode::UNAUTHORIZED, &json!({"error": "bad signature"}));
                }
                let request: Value = serde_json::from_slice(&body).unwrap_or_default();
                let order = request["arguments"]["order_id"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_owned();
                tracing::info!(order = %order, "sandbox tool: signed order_status request verified");
                reply(
                    StatusCode::OK,
                    &json!({"order_id": order, "status": "shipped", "carrier": "UPS", "eta": "Tuesday"}),
                )
            })
    };
    let inbox = {
        let secret = Arc::clone(&secret);
        let events = Arc::clone(&events);
        warp::path!("events")
            .and(warp::post())
            .and(warp::header::optional::<String>(
                actors::egress::SIGNATURE_HEADER,
            ))
            .and(warp::body::bytes())
            .map(move |sig: Option<String>, body: Bytes| {
                if !verified(&secret, sig.as_deref(), &body) {
                    tracing::warn!("sandbox events: delivery with a bad signature refused");
                    return reply(StatusCode::UNAUTHORIZED, &json!({"error": "bad signature"}));
                }
                let event: Value = serde_json::from_slice(&body).unwrap_or_default();
                tracing::info!(
                    event = %event["event"].as_str().unwrap_or_default(),
                    id = %event["id"].as_str().unwrap_or_default(),
                    "sandbox events: signed event received and verified"
                );
                events.send_modify(|all| all.push(event));
                reply(StatusCode::OK, &json!({"received": true}))
            })
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let routes = tool.or(inbox).unify();
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    Ok(Receivers {
        base: format!("http://{addr}"),
        secret,
        events,
    })
}
