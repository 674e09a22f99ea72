//! The Server-Sent Events stream of one call as it happens, on any node:
//! `GET /api/v1/active-sessions/calls/{call_id}/stream` (the operator console's live
//! transcript).
//!
//! Events: `state` (the call's [`ActiveSessionView`]: first while the call is live, then
//! whenever it changes), `turn` (each transcript turn once, in order), `tool_call` (a
//! function call when it is recorded and again when its result is; same `id`, the client
//! replaces it) and `ended` (then the stream closes). Every event carries
//! `id: <turn>.<rev>`: the last transcript turn id and the last function-call revision of
//! the call sent so far; `Last-Event-ID` resumes exactly after them (a malformed one is a
//! 400 naming the header).
//!
//! Transcript turns and function calls are written to the database while the call runs
//! (by its node's recorder and tool tasks); every node's feed brings the call's live
//! changes. So the stream subscribes to the feed first, then reads what exists, then reads
//! what is new after its cursor on every feed event of the call and at least every feed
//! poll interval (a turn written after the live change it caused is read at the next one).
//! A call that is not live (not started yet, or between two legs) is waited for; a call that
//! completed sends what its cursor has not covered, then `ended`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actors::active::{LiveCall, LiveChange, LiveEvent};
use actors::ids::{CallId, TenantId};
use actors::store::{FunctionCall, TranscriptTurn};
use actors::tenant::AuthContext;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;
use warp::Reply;
use warp::reply::Response;

use super::mount::Request;
use super::sessions::{ActiveSessionView, json_or_text};
use super::{ApiError, AppState};
use crate::http::ErrorResponse;

/// Turns or function calls read from the database per query.
const PAGE: u32 = 200;

/// A transcript turn as the stream sends it (`event: turn`).
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamTurn {
    /// The turn's id (increasing in the call's order).
    pub id: i64,
    /// `user` or `assistant`.
    pub role: String,
    /// What was said (an interrupted assistant turn: what the model said in full).
    pub text: String,
    /// The part the caller heard before barging in (interrupted turns), else null.
    pub heard_text: Option<String>,
    /// The caller barged in on this turn.
    pub interrupted: bool,
    /// Offset from the session start (ms).
    pub start_ms: Option<i64>,
    /// Offset from the session start (ms).
    pub end_ms: Option<i64>,
}

/// A function call as the stream sends it (`event: tool_call`), once when it is recorded
/// and again when its result is.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamToolCall {
    /// Identifier (`fc_…`): a later event with the same id replaces it.
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments as the model sent them.
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
    /// `running`, `succeeded`, `failed`, `refused`, `invalid`, `timed_out`, `cancelled`.
    pub status: String,
    /// Result given to the model (JSON when it is JSON).
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Error given to the model.
    pub error: Option<String>,
    /// Milliseconds from start to result.
    pub latency_ms: Option<i64>,
}

/// The end of the call (`event: ended`); the stream closes after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamEnded {
    /// Why: its last voice session's end reason (`caller_hangup`, `agent_hangup`,
    /// `handoff`, `ai_failed`, …); for a call that never had one, the call's end reason
    /// (`completed` when it has none) or the live view's (`node_lost`, …).
    pub reason: String,
    /// The call.
    pub call_id: String,
}

/// Server-Sent Events of one call of the tenant: `state`, `turn`, `tool_call`, `ended`,
/// each with `id: <last turn id>.<last function-call revision>`.
#[utoipa::path(get, path = "/api/v1/active-sessions/calls/{call_id}/stream", tag = "runtime",
    params(("call_id" = String, Path, description = "Call id (`call_…`), live or ended"),
           ("Last-Event-ID" = Option<String>, Header, pattern = "^[0-9]{1,18}\\.[0-9]{1,18}$",
            description = "The `id` of the last event received: resume after it")),
    responses((status = 200, description = "text/event-stream of state / turn / tool_call / ended events", content_type = "text/event-stream"),
              (status = 400, body = ErrorResponse, description = "`Last-Event-ID` is not an event id of this stream"),
              (status = 401, body = ErrorResponse),
              (status = 404, body = ErrorResponse, description = "The tenant has no call with this id")))]
pub async fn call_stream(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let cursor = last_event_id(&req)?;
    let Request {
        state,
        auth,
        path: (id,),
        ..
    } = req;
    let not_found = || ApiError::NotFound("call".into());
    let call = CallId::parse(&id).ok_or_else(not_found)?;
    let tenant = auth.tenant_id;
    // Subscribe first: every change after what is read next then arrives on `rx`.
    let rx = state.live.subscribe();
    state
        .store
        .get_call(&tenant, &call)
        .await
        .map_err(|e| ApiError::Internal(format!("store: {e:?}")))?
        .ok_or_else(not_found)?;
    let poll = state.config.live_feed_poll;
    let follow = Follow {
        state: state.clone(),
        tenant,
        call,
        rx,
        cursor: cursor.unwrap_or_default(),
        last_state: None,
        last_state_at: i64::MIN,
        out: VecDeque::new(),
        done: false,
    };
    // Followed on its own task (its database reads are not `Sync`, which the response body
    // must be); it ends with the client, at the call's end or at shutdown.
    let (tx, events) = tokio::sync::mpsc::channel(64);
    tokio::spawn(follow.run(tx, poll));
    let events = tokio_stream::wrappers::ReceiverStream::new(events)
        .map(Ok::<_, Infallible>)
        .take_until(state.drained());
    Ok(warp::sse::reply(warp::sse::keep_alive().stream(events)).into_response())
}

/// Where a client is in the call's records: the last transcript turn id and the last
/// function-call revision it was sent. Its text form is the events' `id`: `<turn>.<rev>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The last transcript turn id sent (0: none).
    pub turn: i64,
    /// The last function-call revision sent (0: none).
    pub rev: i64,
}

impl Cursor {
    /// Parses `<turn>.<rev>` (each 1–18 digits).
    pub fn parse(text: &str) -> Option<Self> {
        let (turn, rev) = text.split_once('.')?;
        let number = |s: &str| {
            (!s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<i64>().ok())
                .flatten()
        };
        Some(Self {
            turn: number(turn)?,
            rev: number(rev)?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.turn, self.rev)
    }
}

/// `Last-Event-ID` as a [`Cursor`]; 400 naming the header when it is not one.
fn last_event_id(req: &Request<AuthContext, (String,)>) -> Result<Option<Cursor>, ApiError> {
    let Some(text) = req.text_header("Last-Event-ID")? else {
        return Ok(None);
    };
    Cursor::parse(&text).map(Some).ok_or(ApiError::BadRequest {
        code: "invalid_header",
        message:
            "Last-Event-ID must be the id of an event of this stream (<turn>.<revision>, digits)"
                .into(),
        field: Some("Last-Event-ID".into()),
    })
}

/// One client's position in one call.
struct Follow {
    state: AppState,
    tenant: TenantId,
    call: CallId,
    rx: broadcast::Receiver<Arc<LiveEvent>>,
    cursor: Cursor,
    /// The last `state` data sent (a change is sent once).
    last_state: Option<String>,
    /// Its `last_activity_at` (Unix ms).
    last_state_at: i64,
    /// Ready to send.
    out: VecDeque<warp::sse::Event>,
    /// `ended` is queued: close once `out` is sent.
    done: bool,
}

/// What woke the follower.
enum Wake {
    /// A live change of this call.
    Change(Arc<LiveEvent>),
    /// The feed fell behind or the poll interval passed: look again.
    Look,
    /// The client left or the feed stopped.
    Stop,
}

impl Follow {
    /// Sends the client's events into `tx` until the client is gone or the stream ends.
    async fn run(mut self, tx: tokio::sync::mpsc::Sender<warp::sse::Event>, poll: Duration) {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        if let Err(error) = self.look(None).await {
            tracing::warn!(error = %error, "call stream could not read the call: closed");
            return;
        }
        loop {
            while let Some(event) = self.out.pop_front() {
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            if self.done {
                return;
            }
            let wake = tokio::select! {
                _ = tx.closed() => Wake::Stop,
                _ = tick.tick() => Wake::Look,
                wake = self.next_change() => wake,
            };
            let event = match wake {
                Wake::Stop => return,
                Wake::Look => None,
                Wake::Change(event) => Some(event),
            };
            if let Err(error) = self.look(event.as_ref().map(|e| &e.change)).await {
                tracing::warn!(error = %error, "call stream could not read the call: closed");
                return;
            }
        }
    }

    /// The next live change of this call (others are skipped).
    async fn next_change(&mut self) -> Wake {
        loop {
            match self.rx.recv().await {
                Ok(event) if event.call_id == self.call && event.tenant_id == self.tenant => {
                    return Wake::Change(event);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return Wake::Look,
                Err(RecvError::Closed) => return Wake::Stop,
            }
        }
    }

    /// Queues what is new: the state (from `change`, else read), the turns and function
    /// calls after the cursor, and `ended` when the call is over.
    async fn look(&mut self, change: Option<&LiveChange>) -> Result<(), actors::store::StoreError> {
        let ended = match change {
            Some(LiveChange::Started(live) | LiveChange::Updated(live)) => {
                self.queue_state(live);
                None
            }
            Some(LiveChange::Ended { reason }) => Some(self.end_reason(reason.clone()).await?),
            None => match self.state.live.call(&self.tenant, &self.call).await? {
                Some(live) => {
                    self.queue_state(&live);
                    None
                }
                None => self.completed().await?,
            },
        };
        self.read_records().await?;
        if let Some(reason) = ended {
            let data = StreamEnded {
                reason,
                call_id: self.call.as_str().to_owned(),
            };
            self.queue("ended", &data);
            self.done = true;
        }
        Ok(())
    }

    /// The end reason of a call that is not live, when it completed.
    async fn completed(&self) -> Result<Option<String>, actors::store::StoreError> {
        let call = self.state.store.get_call(&self.tenant, &self.call).await?;
        match call {
            Some(c) if c.completed_at.is_some() => {
                let fallback = c.end_reason.unwrap_or_else(|| "completed".to_owned());
                self.end_reason(fallback).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Why the call ended, the same however the stream learnt it: its last voice session's
    /// end reason (`caller_hangup`, `agent_hangup`, `handoff`, `ai_failed`, …), else
    /// `fallback` (the live view's reason, or the call's own for a call that never had a
    /// session).
    async fn end_reason(&self, fallback: String) -> Result<String, actors::store::StoreError> {
        // The call was checked to be the tenant's when the stream opened.
        let sessions = self.state.store.sessions_of_call(&self.call).await?;
        Ok(sessions
            .into_iter()
            .rev()
            .find_map(|s| s.end_reason)
            .unwrap_or(fallback))
    }

    /// Queues the call's state unless it is the one sent last or older than it (a poll's
    /// read may be ahead of feed events still queued).
    fn queue_state(&mut self, live: &LiveCall) {
        if live.last_activity_at < self.last_state_at {
            return;
        }
        self.last_state_at = live.last_activity_at;
        let data =
            serde_json::to_string(&ActiveSessionView::from(live.clone())).unwrap_or_default();
        if self.last_state.as_deref() != Some(data.as_str()) {
            self.out.push_back(
                warp::sse::Event::default()
                    .id(self.cursor.to_string())
                    .event("state")
                    .data(data.clone()),
            );
            self.last_state = Some(data);
        }
    }

    fn queue(&mut self, kind: &str, data: &impl Serialize) {
        self.out.push_back(
            warp::sse::Event::default()
                .id(self.cursor.to_string())
                .event(kind)
                .data(serde_json::to_string(data).unwrap_or_default()),
        );
    }

    /// Queues the turns and function-call changes after the cursor, in the order they
    /// happened (each kind in its own order), advancing the cursor with each.
    async fn read_records(&mut self) -> Result<(), actors::store::StoreError> {
        loop {
            let store = &self.state.store;
            let turns = store
                .call_turns_after(&self.tenant, &self.call, self.cursor.turn, PAGE)
                .await?;
            let calls = store
                .call_function_calls_after(&self.tenant, &self.call, self.cursor.rev, PAGE)
                .await?;
            let more = turns.len() == PAGE as usize || calls.len() == PAGE as usize;
            let mut turns = turns.into_iter().peekable();
            let mut calls = calls.into_iter().peekable();
            loop {
                let take_turn = match (turns.peek(), calls.peek()) {
                    (Some(t), Some(c)) => t.created_at <= changed_at(c),
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                if take_turn {
                    if let Some(turn) = turns.next() {
                        self.cursor.turn = turn.id;
                        self.queue("turn", &stream_turn(turn));
                    }
                } else if let Some(call) = calls.next() {
                    self.cursor.rev = call.rev;
                    self.queue("tool_call", &stream_tool_call(call));
                }
            }
            if !more {
                return Ok(());
            }
        }
    }
}

/// When a function call's last change happened (its result, else its start).
fn changed_at(call: &FunctionCall) -> i64 {
    call.finished_at.unwrap_or(call.started_at)
}

fn stream_turn(t: TranscriptTurn) -> StreamTurn {
    StreamTurn {
        id: t.id,
        role: t.role,
        text: t.text,
        heard_text: t.heard_text,
        interrupted: t.interrupted,
        start_ms: t.start_ms,
        end_ms: t.end_ms,
    }
}

fn stream_tool_call(f: FunctionCall) -> StreamToolCall {
    StreamToolCall {
        arguments: json_or_text(&f.arguments),
        result: f.result.as_deref().map(json_or_text),
        id: f.id,
        name: f.name,
        status: f.status,
        error: f.error,
        latency_ms: f.latency_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn a_cursor_reads_back_from_its_text() {
        let cursor = Cursor { turn: 42, rev: 7 };
        assert_eq!(cursor.to_string(), "42.7");
        assert_eq!(Cursor::parse("42.7"), Some(cursor));
        assert_eq!(Cursor::parse("0.0"), Some(Cursor::default()));
    }

    #[test]
    fn a_malformed_cursor_is_refused() {
        for bad in [
            "",
            "42",
            "42.",
            ".7",
            "a.1",
            "1.b",
            "-1.2",
            "1.2.3",
            "1234567890123456789.1",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }
}
