//! The simulator's socket side: the accept loop, the websocket upgrade (path, bearer key,
//! `?model=`, injected rejections) and one task per connection that moves frames between
//! the socket and its [`Session`], paces responses and applies injected faults. A request
//! that is not a websocket upgrade goes to the plain-HTTP side ([`super::http`]).

use std::time::{Duration, Instant};

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{self, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use super::config::DropAfter;
use super::http::{self as plain, Replay};
use super::session::Session;
use super::state::{Control, HandshakeRecord, SessionEnd, SharedRef, lock};

/// The only path served.
pub(crate) const PATH: &str = "/v1/realtime";
/// Limit for the upgrade request to arrive.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the client's close reply after a server close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

type Ws = WebSocketStream<Replay>;

/// Accepts connections until the task is aborted.
pub(crate) async fn serve(shared: SharedRef, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((tcp, _peer)) => {
                let _ = tcp.set_nodelay(true);
                if !shared.spawn(connection(shared.clone(), tcp)) {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "realtime simulator: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[derive(Debug, Default)]
struct Upgrade {
    model: Option<String>,
    beta_header: bool,
    record: Option<HandshakeRecord>,
}

fn refuse(status: u16, code: &str, message: &str, param: Option<&str>) -> ErrorResponse {
    let body = serde_json::json!({"error": {
        "message": message, "type": "invalid_request_error", "code": code, "param": param,
    }});
    let mut response = ErrorResponse::new(Some(body.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    if let Ok(v) = http::HeaderValue::from_str("application/json") {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    response
}

/// Decides the upgrade: injected rejection, then path, key and model.
// The result type is the one tungstenite's handshake `Callback` requires.
#[allow(clippy::result_large_err)]
fn decide(
    shared: &SharedRef,
    request: &Request,
    response: Response,
    upgrade: &mut Upgrade,
) -> Result<Response, ErrorResponse> {
    let path = request.uri().path().to_owned();
    let model = request.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "model")
            .map(|(_, v)| v.into_owned())
    });
    let authorized = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|key| shared.config.api_keys.iter().any(|k| k == key));
    let beta_header = request.headers().contains_key("openai-beta");
    let injected = lock(&shared.settings).reject_next.pop_front();
    let decision = if let Some(status) = injected {
        Err(refuse(
            status,
            "simulated_failure",
            "Simulated failure.",
            None,
        ))
    } else if path != PATH {
        Err(refuse(404, "not_found", "Not found.", None))
    } else if !authorized {
        Err(refuse(
            401,
            "invalid_api_key",
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            None,
        ))
    } else if model.as_deref().is_none_or(str::is_empty) {
        Err(refuse(
            400,
            "missing_required_parameter",
            "Missing required parameter: 'model'.",
            Some("model"),
        ))
    } else {
        Ok(response)
    };
    let status = match &decision {
        Ok(_) => 101,
        Err(e) => e.status().as_u16(),
    };
    upgrade.record = Some(HandshakeRecord {
        status,
        path,
        model: model.clone(),
        authorized,
        beta_header,
    });
    upgrade.model = model;
    upgrade.beta_header = beta_header;
    decision
}

// The handshake closure returns tungstenite's `Callback` result type.
#[allow(clippy::result_large_err)]
async fn connection(shared: SharedRef, mut tcp: TcpStream) {
    let Ok(Some((head, read))) =
        tokio::time::timeout(plain::HEAD_TIMEOUT, plain::read_head(&mut tcp)).await
    else {
        return;
    };
    if !head.is_upgrade() {
        return plain::serve(shared, tcp, head, read).await;
    }
    let tcp = Replay::new(read, tcp);
    let mut upgrade = Upgrade::default();
    // An 8 KiB read buffer: tungstenite zero-fills its whole read buffer (128 KiB by
    // default) before every socket read, and client events are small.
    let config = WebSocketConfig::default()
        .max_message_size(Some(20 << 20))
        .max_frame_size(Some(20 << 20))
        .read_buffer_size(8 * 1024);
    let accepting = tokio_tungstenite::accept_hdr_async_with_config(
        tcp,
        |req: &Request, resp: Response| decide(&shared, req, resp, &mut upgrade),
        Some(config),
    );
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, accepting).await;
    if let Some(record) = upgrade.record.take() {
        shared.handshake(record);
    }
    let ws = match accepted {
        Ok(Ok(ws)) => ws,
        Ok(Err(error)) => {
            tracing::debug!(error = %error, "realtime simulator: upgrade refused or failed");
            return;
        }
        Err(_) => return,
    };
    let model = upgrade.model.unwrap_or_default();
    run(shared, ws, model, upgrade.beta_header).await;
}

enum Flushed {
    Ok,
    Dropped,
    Failed(String),
}

async fn flush(
    sink: &mut SplitSink<Ws, Message>,
    session: &mut Session,
    sent: &mut u64,
    drop_after_events: Option<u64>,
) -> Flushed {
    if session.out.is_empty() {
        return Flushed::Ok;
    }
    let events = std::mem::take(&mut session.out);
    let mut n = 0_u64;
    let mut result = Flushed::Ok;
    for event in events {
        if drop_after_events.is_some_and(|limit| *sent >= limit) {
            result = Flushed::Dropped;
            break;
        }
        let text = event.to_string();
        if let Err(error) = sink.feed(Message::text(text)).await {
            result = Flushed::Failed(error.to_string());
            break;
        }
        *sent += 1;
        n += 1;
    }
    if matches!(result, Flushed::Ok)
        && let Err(error) = sink.flush().await
    {
        result = Flushed::Failed(error.to_string());
    }
    if matches!(result, Flushed::Dropped) {
        // What was fed must reach the client before the cut.
        let _ = sink.flush().await;
    }
    session.snap(|s| s.server_event_count += n);
    if matches!(result, Flushed::Ok) && drop_after_events.is_some_and(|limit| *sent >= limit) {
        return Flushed::Dropped;
    }
    result
}

async fn close_with(
    sink: &mut SplitSink<Ws, Message>,
    stream: &mut SplitStream<Ws>,
    code: u16,
    reason: String,
) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
    let drain = async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
}

async fn run(shared: SharedRef, ws: Ws, model: String, beta_header: bool) {
    let (mut sink, mut stream) = ws.split();
    let (mut session, mut control) = Session::start(shared.clone(), model, beta_header);
    let drop_after = lock(&shared.settings).drop_next.pop_front();
    let drop_after_events = match drop_after {
        Some(DropAfter::Events(n)) => Some(n),
        _ => None,
    };
    let drop_at = match drop_after {
        Some(DropAfter::Duration(d)) => Some(tokio::time::Instant::now() + d),
        _ => None,
    };
    let mut sent = 0_u64;
    let mut control_open = true;
    // Client text frames in transit (`client_event_delay`): handled in order once due.
    let delay = shared.config.client_event_delay;
    let mut in_transit: std::collections::VecDeque<(tokio::time::Instant, String)> =
        std::collections::VecDeque::new();
    let end = loop {
        match flush(&mut sink, &mut session, &mut sent, drop_after_events).await {
            Flushed::Ok => {}
            Flushed::Dropped => break SessionEnd::Dropped,
            Flushed::Failed(error) => break SessionEnd::Failed(error),
        }
        if let Some((code, reason)) = session.close.take() {
            close_with(&mut sink, &mut stream, code, reason).await;
            break SessionEnd::ServerClosed(code);
        }
        let now = tokio::time::Instant::now();
        let tick_at = session.next_deadline().map(tokio::time::Instant::from_std);
        let due_at = in_transit.front().map(|(at, _)| *at);
        tokio::select! {
            _ = tokio::time::sleep_until(due_at.unwrap_or(now)), if due_at.is_some() => {
                if let Some((_, text)) = in_transit.pop_front() {
                    session.on_text(&text, Instant::now());
                }
            }
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) if !delay.is_zero() => {
                    in_transit.push_back((tokio::time::Instant::now() + delay, text.as_str().to_owned()));
                }
                Some(Ok(Message::Text(text))) => session.on_text(text.as_str(), Instant::now()),
                Some(Ok(Message::Binary(_))) => session.error(
                    "invalid_event",
                    "Binary frames are not supported; send JSON text frames.",
                    None,
                    None,
                ),
                Some(Ok(Message::Close(_))) | None => break SessionEnd::ClientClosed,
                Some(Ok(_)) => {}
                Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                )) => break SessionEnd::ClientClosed,
                Some(Err(error)) => break SessionEnd::Failed(error.to_string()),
            },
            _ = tokio::time::sleep_until(tick_at.unwrap_or(now)), if tick_at.is_some() => {
                session.on_tick(Instant::now());
            }
            _ = tokio::time::sleep_until(drop_at.unwrap_or(now)), if drop_at.is_some() => {
                break SessionEnd::Dropped;
            }
            control_message = control.recv(), if control_open => match control_message {
                Some(Control::Drop) => break SessionEnd::Dropped,
                None => control_open = false,
            },
        }
    };
    if end == SessionEnd::ClientClosed {
        // Flush tungstenite's queued reply to the client's close frame.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
    }
    shared.unregister(&session.id);
    if let Some(observer) = &shared.config.tag_observer {
        observer.session_ended(session.index, Instant::now());
    }
    tracing::debug!(session = %session.id, end = ?end, "realtime simulator: session ended");
    session.snap(|s| s.ended = Some(end));
    // Dropping both halves closes the TCP connection; after a fault no close frame is sent.
    drop(sink);
    drop(stream);
}
