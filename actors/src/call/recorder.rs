//! The per-call recorder: one task per call that writes the call's records in the order they
//! happened (transcript turns, usage, first audio, timeline events, settled function calls,
//! the identity state, tenant events), so the call actor never awaits the database while the
//! call is live and a slow database never holds up barge-in or the actor's mailbox.
//!
//! The queue is bounded ([`QUEUE`]); when it is full the actor keeps what does not fit in a
//! small overflow (counted by `call_records_backlog_total`), and beyond [`OVERFLOW`] records
//! are dropped and counted (`call_records_dropped_total`). The leg's final records are never
//! queued: the actor [`flush`](Recorder::flush)es the recorder, which waits until everything
//! queued before is written, and then writes them itself.

use std::collections::VecDeque;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use crate::ids::{CallId, SessionId, TenantId};
use crate::notifier::{EventKind, Notifier};
use crate::store::{NewFunctionCall, SettledCall, Store, TranscriptTurn, Usage};

/// Records queued to the task.
const QUEUE: usize = 256;
/// Records kept beyond a full queue before new ones are dropped.
const OVERFLOW: usize = 4096;

/// A function call that ended without running a task (refused, invalid, answered by the
/// runtime): recorded whole.
#[derive(Debug, Clone, PartialEq)]
pub struct SettledRecord {
    /// Identifier (`fc_…`).
    pub id: String,
    /// The model's `call_id`.
    pub model_call_id: String,
    /// Tool name.
    pub name: String,
    /// `webhook`, `builtin`, `unknown`.
    pub kind: &'static str,
    /// Arguments as the model sent them.
    pub arguments: String,
    /// Start (Unix ms).
    pub started_at: i64,
    /// How it ended.
    pub settled: SettledCall,
}

/// The caller's identity as this call knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityState {
    /// `verify_identity` succeeded.
    Verified,
    /// `verify_identity` answered that the facts do not match.
    Failed,
}

impl IdentityState {
    /// Stored form.
    pub const fn as_str(self) -> &'static str {
        match self {
            IdentityState::Verified => "verified",
            IdentityState::Failed => "failed",
        }
    }
}

/// One write of a live call.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A transcript turn of the session.
    Turn(TranscriptTurn),
    /// A response's token usage.
    Usage(Usage),
    /// The session's first-audio latency (ms).
    FirstAudio(i64),
    /// The AI socket was reconnected.
    Reconnect,
    /// An entry of the call's timeline.
    CallEvent {
        /// Kind (`ai`, `handoff`, `idle_timeout`, …).
        kind: &'static str,
        /// Detail.
        detail: Value,
    },
    /// A function call that ended without a task.
    FunctionCall(Box<SettledRecord>),
    /// The caller's identity state.
    Identity(IdentityState),
    /// A tenant event (`voice.call.started`, …).
    Event(EventKind, Value),
}

impl Record {
    fn name(&self) -> &'static str {
        match self {
            Record::Turn(_) => "turn",
            Record::Usage(_) => "usage",
            Record::FirstAudio(_) => "first_audio",
            Record::Reconnect => "reconnect",
            Record::CallEvent { .. } => "call_event",
            Record::FunctionCall(_) => "function_call",
            Record::Identity(_) => "identity",
            Record::Event(..) => "event",
        }
    }
}

enum Op {
    Write(Box<Record>),
    Flush(oneshot::Sender<()>),
}

/// Whose records the task writes.
#[derive(Debug, Clone)]
pub struct Owner {
    /// The call.
    pub call: CallId,
    /// Its tenant.
    pub tenant: TenantId,
    /// The voice session of this stream.
    pub session: SessionId,
}

/// The actor's handle on its recorder task. Dropping it lets the task write what is queued
/// and end (also when the actor is killed).
pub struct Recorder {
    tx: mpsc::Sender<Op>,
    overflow: VecDeque<Op>,
}

impl Recorder {
    /// Spawns the recorder task of `owner`.
    pub fn spawn(store: Store, notifier: Notifier, owner: Owner, span: tracing::Span) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, notifier, owner, rx).instrument(span));
        Self {
            tx,
            overflow: VecDeque::new(),
        }
    }

    /// Queues a record; never waits.
    pub fn record(&mut self, record: Record) {
        self.drain_overflow();
        let op = Op::Write(Box::new(record));
        if !self.overflow.is_empty() {
            self.keep(op);
            return;
        }
        match self.tx.try_send(op) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(op)) => self.keep(op),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics::counter!("call_records_dropped_total").increment(1);
            }
        }
    }

    fn keep(&mut self, op: Op) {
        if self.overflow.len() >= OVERFLOW {
            metrics::counter!("call_records_dropped_total").increment(1);
            return;
        }
        metrics::counter!("call_records_backlog_total").increment(1);
        self.overflow.push_back(op);
    }

    fn drain_overflow(&mut self) {
        while let Some(op) = self.overflow.pop_front() {
            match self.tx.try_send(op) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(op)) => {
                    self.overflow.push_front(op);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.overflow.clear();
                    return;
                }
            }
        }
    }

    /// Waits until every record queued so far is written.
    pub async fn flush(&mut self) {
        while let Some(op) = self.overflow.pop_front() {
            if self.tx.send(op).await.is_err() {
                self.overflow.clear();
                return;
            }
        }
        let (done, written) = oneshot::channel();
        if self.tx.send(Op::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

async fn run(store: Store, notifier: Notifier, owner: Owner, mut rx: mpsc::Receiver<Op>) {
    while let Some(op) = rx.recv().await {
        match op {
            Op::Flush(done) => {
                let _ = done.send(());
            }
            Op::Write(record) => {
                let name = record.name();
                if let Err(error) = write(&store, &notifier, &owner, *record).await {
                    metrics::counter!("call_record_errors_total").increment(1);
                    tracing::warn!(record = name, error = %error, "could not write a call record");
                }
            }
        }
    }
}

async fn write(
    store: &Store,
    notifier: &Notifier,
    owner: &Owner,
    record: Record,
) -> Result<(), crate::store::StoreError> {
    match record {
        Record::Turn(turn) => store.add_turn(&owner.session, &turn).await,
        Record::Usage(usage) => store.add_session_usage(&owner.session, usage).await,
        Record::FirstAudio(ms) => store.set_session_first_audio(&owner.session, ms).await,
        Record::Reconnect => store.count_session_reconnect(&owner.session).await,
        Record::CallEvent { kind, detail } => {
            store.add_call_event(&owner.call, kind, &detail).await
        }
        Record::FunctionCall(r) => {
            let new = NewFunctionCall {
                id: &r.id,
                started_at: r.started_at,
                tenant_id: &owner.tenant,
                call_id: &owner.call,
                session_id: &owner.session,
                model_call_id: &r.model_call_id,
                name: &r.name,
                kind: r.kind,
                arguments: &r.arguments,
            };
            store
                .record_function_call(&new, &r.settled)
                .await
                .map(|_| ())
        }
        Record::Identity(state) => store.set_identity_state(&owner.call, state.as_str()).await,
        Record::Event(kind, data) => notifier.emit(&owner.tenant, kind, data).await.map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_states_have_their_stored_form() {
        assert_eq!(IdentityState::Verified.as_str(), "verified");
        assert_eq!(IdentityState::Failed.as_str(), "failed");
    }
}
