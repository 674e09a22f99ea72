//! `GET /media-stream`: Twilio's bidirectional media websocket.
//!
//! The upgrade is accepted, then the socket must send `start` within a deadline. The stream
//! token in `start.customParameters.token` is the gate (verified and consumed by the
//! router: missing, expired, forged or reused tokens close the socket); the upgrade's
//! `X-Twilio-Signature`, when present, is verified too once `start` names the account. A
//! valid stream is handed to the `CallSupervisor`, which spawns the call's actor; from then
//! on the socket belongs to that actor.

use actors::call::supervisor::CallSupervisorMsg;
use actors::call::{CallStart, TwilioFrame, TwilioIncoming, TwilioOut, TwilioOutgoing};
use actors::media::{StartMeta, TwilioInbound};
use actors::telephony::TelephonyError;
use actors::telephony::stream::{self, StreamStart};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use ractor::call_t;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use warp::Reply;
use warp::reply::Response;

use super::AppState;
use super::error::ApiError;
use super::media_gate::PendingStream;
use super::mount::WsUpgrade;
use super::upgrade::{self, MediaSocket};
use crate::twilio::signature;

/// Largest accepted frame (a 20 ms frame is ~350 bytes; Twilio never sends large ones).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Twilio media websocket (bidirectional `<Connect><Stream>`).
#[utoipa::path(get, path = "/media-stream", tag = "webhooks",
    params(("x-twilio-signature" = Option<String>, Header, description = "Signature over the wss:// URL")),
    responses((status = 101, description = "Switching protocols; Twilio Media Streams messages follow"),
              (status = 400, body = crate::http::error::ErrorResponse, description = "not a websocket upgrade"),
              (status = 429, body = crate::http::error::ErrorResponse, description = "too many media streams of this address (or of this node) are waiting for their `start`"),
              (status = 503, body = crate::http::error::ErrorResponse, description = "this node is draining and another node is up: the load balancer retries the upgrade there")))]
pub fn media_stream(state: AppState, route: &'static str, upgrade: WsUpgrade) -> Response {
    let WsUpgrade {
        ip,
        signature,
        path,
        ws,
    } = upgrade;
    if state.refuses_new_calls() {
        metrics::counter!("media_upgrades_refused_total", "reason" => "draining").increment(1);
        return ApiError::Unavailable(super::DRAINING_REFUSAL.into()).into_response();
    }
    // Unauthenticated until `start` carries its token: bounded before anything is allocated.
    let pending = match state.media_gate.admit(ip) {
        Ok(pending) => pending,
        Err(refusal) => {
            metrics::counter!("media_upgrades_refused_total", "reason" => refusal.label())
                .increment(1);
            tracing::warn!(
                reason = refusal.label(),
                "media upgrade refused: too many pending"
            );
            return ApiError::ConcurrencyLimit(
                "too many media streams are waiting for their start; retry shortly".into(),
            )
            .into_response();
        }
    };
    ws.on_upgrade(upgrade::config(MAX_FRAME_BYTES), move |socket| {
        run(socket, state, route, signature, path, pending)
    })
}

/// A close frame with `code` and `reason`.
fn close(code: u16, reason: impl Into<String>) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into().into(),
    }))
}

async fn reject(mut socket: SplitSink<MediaSocket, Message>, reason: &'static str) {
    tracing::warn!(reason, "media stream refused");
    let _ = socket.send(close(1008, reason)).await;
    let _ = socket.close().await;
}

/// Reads until `start` (returns its stream SID and metadata) or the end of the socket.
async fn wait_start(rx: &mut SplitStream<MediaSocket>) -> Option<(String, StartMeta)> {
    while let Some(Ok(msg)) = rx.next().await {
        let text = match msg {
            Message::Text(text) => text,
            Message::Close(_) => return None,
            _ => continue,
        };
        match TwilioInbound::parse(text.as_str()) {
            Ok(TwilioInbound::Start {
                stream_sid, start, ..
            }) => return Some((stream_sid, start)),
            Ok(TwilioInbound::Stop { .. }) => return None,
            Ok(other) => {
                metrics::counter!("media_events_before_start_total", "event" => other.name())
                    .increment(1)
            }
            Err(_) => metrics::counter!("media_bad_frames_total", "leg" => "twilio").increment(1),
        }
    }
    None
}

async fn run(
    socket: MediaSocket,
    state: AppState,
    route: &'static str,
    upgrade_signature: Option<String>,
    path: String,
    pending: PendingStream,
) {
    let (tx, mut rx) = socket.split();
    let deadline = state.config.media_start_timeout;
    let started = tokio::time::timeout(deadline, wait_start(&mut rx)).await;
    // Whatever came, the socket is no longer waiting for its start.
    drop(pending);
    let (stream_sid, start) = match started {
        Ok(Some(s)) => s,
        Ok(None) => return reject(tx, "no_start").await,
        Err(_) => return reject(tx, "start_timeout").await,
    };
    // Boxed: a socket waiting for its `start` holds only the wait, not the larger state of
    // what follows it (an idle unauthenticated socket stays small).
    Box::pin(started_stream(
        tx,
        rx,
        state,
        route,
        upgrade_signature,
        path,
        (stream_sid, start),
    ))
    .await;
}

/// What follows a `start`: the account, the signature, the token, then the call actor.
async fn started_stream(
    tx: SplitSink<MediaSocket, Message>,
    rx: SplitStream<MediaSocket>,
    state: AppState,
    route: &'static str,
    upgrade_signature: Option<String>,
    path: String,
    (stream_sid, start): (String, StartMeta),
) {
    let account = match state.twilio_account(&start.account_sid).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            state
                .auth_log
                .signature_failure(route, Some(&start.account_sid));
            return reject(tx, "unknown_account").await;
        }
        Err(_) => return reject(tx, "unavailable").await,
    };
    if let Some(sig) = upgrade_signature {
        let url = signature::build_ws_url(&state.config.public_base_url, &path);
        if signature::verify_get(&account.auth.auth_token, &url, Some(&sig)).is_err() {
            state
                .auth_log
                .signature_failure(route, Some(&start.account_sid));
            return reject(tx, "invalid_signature").await;
        }
    }
    let Some(token) = start.custom_parameters.get("token").cloned() else {
        state.auth_log.token_rejection("missing");
        return reject(tx, "token_missing").await;
    };
    let request = StreamStart {
        tenant_id: account.tenant_id.clone(),
        call_sid: start.call_sid.clone(),
        stream_sid: stream_sid.clone(),
        token,
    };
    // The start runs in a task that owns its outcome: if it takes longer than we wait, the
    // socket is refused and the task turns a start that went through into the fallback.
    let started = stream::start(&state.actors.telephony, request);
    let call = match tokio::time::timeout(state.config.actor_call_timeout, started).await {
        Ok(Ok(Ok(call))) => call,
        Ok(Ok(Err(TelephonyError::Token(e)))) => {
            state.auth_log.token_rejection(e.label());
            return reject(tx, e.label()).await;
        }
        Ok(Ok(Err(_)) | Err(_)) | Err(_) => return reject(tx, "unavailable").await,
    };
    tracing::info!(call_id = %call.id, stream_sid = %stream_sid, "media stream started");
    let call_id = call.id.clone();
    let start = CallStart {
        call,
        stream_sid,
        incoming: incoming(rx),
        outgoing: outgoing(tx),
    };
    let started = match state.actors.calls.get() {
        Some(supervisor) => call_t!(
            supervisor,
            CallSupervisorMsg::Start,
            state.actor_timeout_ms(),
            Box::new(start)
        ),
        None => {
            tracing::error!(call_id = %call_id, "call supervisor is down: the socket closes and the caller gets the fallback");
            return;
        }
    };
    match started {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::error!(call_id = %call_id, error = %error, "call actor did not start")
        }
        Err(error) => {
            tracing::error!(call_id = %call_id, error = %error, "call supervisor did not answer")
        }
    }
}

/// Twilio's frames as the call actor reads them (pings and binary frames skipped; text
/// handed on as read, not copied).
fn incoming(rx: SplitStream<MediaSocket>) -> TwilioIncoming {
    rx.filter_map(|frame| async move {
        match frame {
            Ok(Message::Close(_)) => Some(TwilioFrame::Closed(String::from("socket_closed"))),
            Ok(Message::Text(text)) => Some(TwilioFrame::Text(text)),
            Ok(_) => None,
            Err(_) => Some(TwilioFrame::Closed(String::from("socket_error"))),
        }
    })
    .boxed()
}

/// The call actor's writes as websocket messages.
fn outgoing(tx: SplitSink<MediaSocket, Message>) -> TwilioOutgoing {
    Box::pin(
        tx.with(|out: TwilioOut| async move {
            Ok::<_, tokio_tungstenite::tungstenite::Error>(match out {
                TwilioOut::Text(text) | TwilioOut::Media(text, _) => Message::text(text),
                TwilioOut::Close { code, reason } => close(code, reason),
            })
        })
        .sink_map_err(|e| e.to_string()),
    )
}
