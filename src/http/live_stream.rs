//! The Server-Sent Events stream of a tenant's live calls on every node:
//! `GET /api/v1/active-sessions/stream`. Each event is `started`, `updated` or `ended` and
//! carries `id: <seq>`, its place in the cluster's order of changes.
//!
//! A new client gets a snapshot (one `started` per live call, the last one with the
//! snapshot's `seq` as its id, so a client cut off within the snapshot gets it whole
//! again), then every change after it. A client reconnecting with `Last-Event-ID` gets every
//! event of its tenant after that id instead, while those events are still kept (15
//! minutes); otherwise a fresh snapshot. The node's feed is subscribed to before the
//! snapshot or backlog is read, and an event is sent only when its `seq` is above the last
//! one sent: nothing is missed or sent twice. A client that falls behind the feed reads the
//! events it missed from the database.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use actors::active::{LiveChange, LiveEvent};
use actors::ids::TenantId;
use actors::tenant::AuthContext;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use warp::Reply;
use warp::reply::Response;

use super::mount::Request;
use super::sessions::ActiveSessionView;
use super::{ApiError, AppState};
use crate::http::ErrorResponse;

/// Events read from the database per query.
const PAGE: u32 = 200;

/// Server-Sent Events of the tenant's live calls on every node: `started`, `updated`,
/// `ended`, each with `id: <seq>`. With `Last-Event-ID`, the events after it (while kept,
/// 15 minutes); else, or without it, a snapshot of `started` events first.
#[utoipa::path(get, path = "/api/v1/active-sessions/stream", tag = "runtime",
    params(("Last-Event-ID" = Option<String>, Header, pattern = "^[0-9]{1,18}$",
            description = "The `id` of the last event received: resume after it")),
    responses((status = 200, description = "text/event-stream of started / updated / ended events", content_type = "text/event-stream"),
              (status = 400, body = ErrorResponse, description = "`Last-Event-ID` is not an event id"),
              (status = 401, body = ErrorResponse)))]
pub async fn active_stream(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let resume = last_event_id(&req)?;
    let Request { state, auth, .. } = req;
    let tenant = auth.tenant_id;
    let internal = |e| ApiError::Internal(format!("store: {e:?}"));
    // Subscribe first: every event after what is read next then arrives on `rx`.
    let rx = state.live.subscribe();
    let resumable = match resume {
        Some(seq) => state.live.can_resume_after(seq).await.map_err(internal)?,
        None => false,
    };
    let mut out = VecDeque::new();
    let (last, catch_up) = match resume {
        Some(seq) if resumable => (seq, true),
        _ => {
            let snapshot = state.live.snapshot(Some(&tenant)).await.map_err(internal)?;
            let n = snapshot.calls.len();
            for (i, call) in snapshot.calls.into_iter().enumerate() {
                let last = (i + 1 == n).then_some(snapshot.seq);
                out.push_back(started(last, call));
            }
            (snapshot.seq, false)
        }
    };
    let follow = Follow {
        state: state.clone(),
        tenant,
        rx,
        last,
        out,
        catch_up,
    };
    // The client's position is followed on its own task (its database reads are not
    // `Sync`, which the response body must be); it ends with the client.
    let (tx, events) = tokio::sync::mpsc::channel(64);
    tokio::spawn(follow.run(tx));
    // The stream ends when shutdown starts, so an open dashboard never holds the shutdown.
    let events = tokio_stream::wrappers::ReceiverStream::new(events)
        .map(Ok::<_, Infallible>)
        .take_until(state.drained());
    Ok(warp::sse::reply(warp::sse::keep_alive().stream(events)).into_response())
}

/// `Last-Event-ID` as a `seq`; 400 naming the header when it is not one.
fn last_event_id(req: &Request<AuthContext>) -> Result<Option<i64>, ApiError> {
    let Some(text) = req.text_header("Last-Event-ID")? else {
        return Ok(None);
    };
    let bad = || ApiError::BadRequest {
        code: "invalid_header",
        message: "Last-Event-ID must be the id of an event of this stream (digits)".into(),
        field: Some("Last-Event-ID".into()),
    };
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    text.parse::<i64>().map(Some).map_err(|_| bad())
}

/// One client's position in the cluster's events.
struct Follow {
    state: AppState,
    tenant: TenantId,
    rx: broadcast::Receiver<Arc<LiveEvent>>,
    /// The last `seq` sent (or covered by the snapshot).
    last: i64,
    /// Ready to send.
    out: VecDeque<warp::sse::Event>,
    /// Read the tenant's events after `last` from the database before following the feed.
    catch_up: bool,
}

impl Follow {
    /// Sends the client's events into `tx` until the client is gone or the stream ends.
    async fn run(mut self, tx: tokio::sync::mpsc::Sender<warp::sse::Event>) {
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                next = self.next() => next,
            };
            match next {
                Some(event) => {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                None => return,
            }
        }
    }

    /// The next event to send; `None` ends the stream (the feed stopped, or a read failed:
    /// the client reconnects with `Last-Event-ID`).
    async fn next(&mut self) -> Option<warp::sse::Event> {
        loop {
            if let Some(event) = self.out.pop_front() {
                return Some(event);
            }
            if self.catch_up {
                let page = match self
                    .state
                    .live
                    .events_after(&self.tenant, self.last, PAGE)
                    .await
                {
                    Ok(page) => page,
                    Err(error) => {
                        tracing::warn!(error = %error, "live stream could not catch up: closed");
                        return None;
                    }
                };
                self.catch_up = page.len() == PAGE as usize;
                for event in page {
                    self.last = self.last.max(event.seq);
                    self.out.push_back(sse_event(&event));
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(event) => {
                    if event.seq <= self.last {
                        continue;
                    }
                    self.last = event.seq;
                    if event.tenant_id == self.tenant {
                        return Some(sse_event(&event));
                    }
                }
                Err(RecvError::Lagged(_)) => self.catch_up = true,
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// A snapshot's `started` event; only the snapshot's last one carries its `seq`, so a
/// client cut off in the middle of a snapshot does not resume after it.
fn started(seq: Option<i64>, call: actors::active::LiveCall) -> warp::sse::Event {
    let data = serde_json::to_string(&ActiveSessionView::from(call)).unwrap_or_default();
    let event = warp::sse::Event::default().event("started").data(data);
    match seq {
        Some(seq) => event.id(seq.to_string()),
        None => event,
    }
}

fn sse_event(event: &LiveEvent) -> warp::sse::Event {
    let data = match &event.change {
        LiveChange::Started(call) | LiveChange::Updated(call) => {
            serde_json::to_string(&ActiveSessionView::from(call.clone()))
        }
        LiveChange::Ended { reason } => serde_json::to_string(
            &serde_json::json!({"call_id": event.call_id.as_str(), "reason": reason}),
        ),
    };
    warp::sse::Event::default()
        .id(event.seq.to_string())
        .event(event.change.kind())
        .data(data.unwrap_or_default())
}
