//! The realtime simulator: an OpenAI Realtime API (GA) stand-in over a real websocket
//! (PROTOCOLS §4, DESIGN.md §6).
//!
//! [`RealtimeSim::start`] listens on loopback and returns a [`RealtimeSimHandle`] whose
//! [`url`](RealtimeSimHandle::url) replaces `wss://api.openai.com/v1/realtime`. Each
//! connection (`Authorization: Bearer <key>`, `?model=`) is one session:
//!
//! - `session.created` + `conversation.created` on connect; `session.update` → the merged
//!   effective config in `session.updated`; a beta-shaped update (or an `OpenAI-Beta`
//!   header) → `error` `beta_api_shape_disabled` and close code 4000;
//! - `input_audio_buffer.append` decoded as μ-law and run through an energy VAD with the
//!   session's server-VAD settings → `speech_started` / `speech_stopped` / `committed` /
//!   user item / input transcription (the script's text) / automatic response;
//! - responses in the GA order with speech-like μ-law audio and transcript deltas, tool
//!   calls, interruption (`turn_detected`), `response.cancel`, truncation checks, and the
//!   errors a client can provoke (`conversation_already_has_active_response`,
//!   `response_cancel_not_active`, `invalid_value`, `unknown_event`, `invalid_json`, …).
//!
//! What the assistant says comes from a [`RealtimeScript`]; a `response.create` whose
//! instructions contain `Say exactly: <text>` speaks `<text>` (deterministic greetings).
//! Faults: [`drop_next_session_after`](RealtimeSimHandle::drop_next_session_after),
//! [`reject_next_connect`](RealtimeSimHandle::reject_next_connect),
//! [`set_response_latency`](RealtimeSimHandle::set_response_latency).
//! Tests observe sessions through [`SessionSnapshot`]s without sleeping
//! ([`wait_for`](RealtimeSimHandle::wait_for)).
//!
//! The same port also serves plain HTTP: `POST /v1/chat/completions` answers evaluation
//! requests as a deterministic LLM judge ([`judge`]; [`judge_base_url`](RealtimeSimHandle::judge_base_url)
//! replaces `https://api.openai.com/v1`), with verdicts per criterion key and faults (a
//! delay, an HTTP error, invalid JSON, no answer) set through the config or the handle.
//!
//! Deviation from the real service: the default session formats are `audio/pcmu` (the
//! real default is `audio/pcm` at 24 kHz), since the simulator only speaks μ-law.

mod config;
mod effective;
mod http;
pub mod judge;
mod response;
mod server;
mod session;
mod standalone;
mod state;
mod vad;

#[cfg(test)]
mod judge_tests;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;

pub use config::{
    DropAfter, RealtimeScript, RealtimeSimConfig, ScriptReply, ScriptTurn, ScriptVariant,
    TagObserver,
};
pub use judge::SimVerdict;
pub use standalone::{run_standalone, summary};
pub use state::{
    ErrorRecord, HandshakeRecord, JudgeFault, JudgeRequestRecord, ResponseRecord, SessionEnd,
    SessionSnapshot, ToolCallRecord, TruncateRecord,
};

use state::{Control, Shared, lock};

/// Output frame-tag ids start here (the high bit set), so they never collide with the
/// carrier simulator's caller-frame tags (chunk numbers from 1).
pub const OUTPUT_TAG_BASE: u32 = 0x8000_0000;

/// What can go wrong starting the simulator.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeSimError {
    /// The listener could not be bound.
    #[error("cannot bind the realtime simulator to {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Starts realtime simulators.
#[derive(Debug)]
pub struct RealtimeSim;

impl RealtimeSim {
    /// Binds the listener and starts serving. Must be called inside a tokio runtime.
    pub async fn start(config: RealtimeSimConfig) -> Result<RealtimeSimHandle, RealtimeSimError> {
        let addr = config.bind;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RealtimeSimError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| RealtimeSimError::Bind { addr, source })?;
        let shared = Arc::new(Shared::new(config));
        let server = tokio::spawn(server::serve(shared.clone(), listener)).abort_handle();
        tracing::info!(%addr, "realtime simulator listening");
        Ok(RealtimeSimHandle {
            shared,
            addr,
            server,
        })
    }
}

/// A running realtime simulator. Dropping it stops the server and every session.
pub struct RealtimeSimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: AbortHandle,
}

impl std::fmt::Debug for RealtimeSimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeSimHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RealtimeSimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/v1/realtime`, in place of `wss://api.openai.com/v1/realtime`.
    pub fn url(&self) -> String {
        format!("ws://{}{}", self.addr, server::PATH)
    }

    /// `http://127.0.0.1:PORT/v1`, the judge's base URL (in place of
    /// `https://api.openai.com/v1`).
    pub fn judge_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The judge answers `verdict` for the criterion `key` from now on.
    pub fn set_judge_verdict(&self, key: impl Into<String>, verdict: SimVerdict) {
        lock(&self.shared.settings)
            .judge_verdicts
            .insert(key.into(), verdict);
    }

    /// Every judge request from now on has this fault (`None`: answer normally).
    pub fn set_judge_fault(&self, fault: Option<JudgeFault>) {
        lock(&self.shared.settings).judge_fault = fault;
    }

    /// The next judge request (only) has this fault.
    pub fn judge_fault_next(&self, fault: JudgeFault) {
        lock(&self.shared.settings)
            .judge_fault_next
            .push_back(fault);
    }

    /// Every judge request received (the first 2,000), in order.
    pub fn judge_requests(&self) -> Vec<JudgeRequestRecord> {
        self.shared.judge_requests()
    }

    /// Waits until at least `n` judge requests arrived. Never resolves otherwise, so wrap
    /// it in `tokio::time::timeout`.
    pub async fn wait_for_judge_requests(&self, n: usize) {
        let mut rx = self.shared.judge_count();
        if rx.wait_for(|seen| *seen >= n).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Every session, in connection order.
    pub fn sessions(&self) -> Vec<SessionSnapshot> {
        self.shared.sessions()
    }

    /// One session by id.
    pub fn session(&self, id: &str) -> Option<SessionSnapshot> {
        self.shared.sessions().into_iter().find(|s| s.id == id)
    }

    /// Waits until `pred` holds for the sessions and returns them. Never resolves
    /// otherwise, so wrap it in `tokio::time::timeout`.
    pub async fn wait_for(
        &self,
        mut pred: impl FnMut(&[SessionSnapshot]) -> bool,
    ) -> Vec<SessionSnapshot> {
        let mut rx = self.shared.subscribe();
        match rx.wait_for(|s| pred(s)).await {
            Ok(sessions) => sessions.clone(),
            Err(_) => std::future::pending().await,
        }
    }

    /// Every websocket upgrade attempt, in order.
    pub fn handshakes(&self) -> Vec<HandshakeRecord> {
        self.shared.handshakes()
    }

    /// The next session to connect is cut without a close frame after this many server
    /// events (`u64`) or this long after connecting (`Duration`): an AI failure mid-call.
    pub fn drop_next_session_after(&self, after: impl Into<DropAfter>) {
        lock(&self.shared.settings)
            .drop_next
            .push_back(after.into());
    }

    /// Cuts a live session now, without a close frame. False if it is not live.
    pub fn drop_session(&self, session_id: &str) -> bool {
        self.shared.control(session_id, Control::Drop)
    }

    /// The next websocket upgrade is answered with this HTTP status (e.g. 429, 500, 503).
    pub fn reject_next_connect(&self, status: u16) {
        lock(&self.shared.settings).reject_next.push_back(status);
    }

    /// Time from `response.created` to the first delta of later responses.
    pub fn set_response_latency(&self, latency: Duration) {
        lock(&self.shared.settings).response_latency = latency;
    }

    /// The script of sessions connecting from now on.
    pub fn set_script(&self, script: RealtimeScript) {
        lock(&self.shared.settings).script = script;
    }

    /// When the output frame carrying tag `id` was sent (with `tag_audio`).
    pub fn tag_sent_at(&self, id: u32) -> Option<Instant> {
        self.shared.tag_sent_at(id)
    }

    /// Stops the server and every session (also done on drop).
    pub fn shutdown(&self) {
        self.server.abort();
        self.shared.abort_all();
    }

    /// True once shut down.
    pub fn is_shut_down(&self) -> bool {
        self.shared.is_closed()
    }
}

impl Drop for RealtimeSimHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
