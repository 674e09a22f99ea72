//! The per-call recorder: one task per call that writes the call's records in the order they
//! happened (transcript turns, usage, first audio, response gaps, timeline events, settled
//! function calls, the identity state, tenant events), so the call actor never awaits the database while the
//! call is live and a slow database never holds up barge-in or the actor's mailbox.
//!
//! The queue is bounded ([`QUEUE`]); when it is full the actor keeps what does not fit in a
//! small overflow (counted by `call_records_backlog_total`), and beyond [`OVERFLOW`] records
//! are dropped and counted (`call_records_dropped_total`). The leg's final records are never
//! queued: the actor [`flush`](Recorder::flush)es the recorder, which waits until everything
//! queued before is written, and then writes them itself.
//!
//! A response gap is measured when the agent's audio starts, usually before the turn's
//! transcript is recorded: the task keeps it (bounded, [`PENDING_GAPS`]) until the turn of
//! that item is written, and stores it on the turn.

use std::collections::{HashMap, VecDeque};

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
/// Response gaps kept until their turn is written.
const PENDING_GAPS: usize = 64;

/// A function call of the model as recorded when it starts (its id chosen in memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Record id (`fc_…`).
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
}

impl Invocation {
    /// The row that records it for `owner`.
    pub fn row<'a>(&'a self, owner: &'a Owner) -> NewFunctionCall<'a> {
        NewFunctionCall {
            id: &self.id,
            started_at: self.started_at,
            tenant_id: &owner.tenant,
            call_id: &owner.call,
            session_id: &owner.session,
            model_call_id: &self.model_call_id,
            name: &self.name,
            kind: self.kind,
            arguments: &self.arguments,
        }
    }
}

/// A function call that ended without running a task (refused, invalid, answered by the
/// runtime): recorded whole.
#[derive(Debug, Clone, PartialEq)]
pub struct SettledRecord {
    /// The invocation.
    pub invocation: Invocation,
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
    /// The response gap of the agent's turn `item_id`: from the end of the caller's speech
    /// to the turn's first audio (ms).
    ResponseGap {
        /// The assistant item.
        item_id: String,
        /// The gap (ms).
        ms: i64,
    },
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
            Record::ResponseGap { .. } => "response_gap",
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
    let mut gaps = HashMap::new();
    while let Some(op) = rx.recv().await {
        match op {
            Op::Flush(done) => {
                let _ = done.send(());
            }
            Op::Write(record) => {
                let name = record.name();
                // Boxed: the task lives as long as the call; its state holds a pointer to the
                // write in progress instead of room for the largest write.
                let written = Box::pin(write(&store, &notifier, &owner, &mut gaps, *record));
                if let Err(error) = written.await {
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
    gaps: &mut HashMap<String, i64>,
    record: Record,
) -> Result<(), crate::store::StoreError> {
    match record {
        Record::Turn(turn) => {
            store.add_turn(&owner.session, &turn).await?;
            match turn.item_id.as_ref().and_then(|item| gaps.remove(item)) {
                Some(ms) => {
                    let item = turn.item_id.as_deref().unwrap_or_default();
                    store
                        .set_turn_response_gap(&owner.session, item, ms)
                        .await
                        .map(|_| ())
                }
                None => Ok(()),
            }
        }
        Record::ResponseGap { item_id, ms } => {
            // The turn is usually written later (its transcript ends after its audio began).
            if !store
                .set_turn_response_gap(&owner.session, &item_id, ms)
                .await?
                && gaps.len() < PENDING_GAPS
            {
                gaps.insert(item_id, ms);
            }
            Ok(())
        }
        Record::Usage(usage) => store.add_session_usage(&owner.session, usage).await,
        Record::FirstAudio(ms) => store.set_session_first_audio(&owner.session, ms).await,
        Record::Reconnect => store.count_session_reconnect(&owner.session).await,
        Record::CallEvent { kind, detail } => {
            store.add_call_event(&owner.call, kind, &detail).await
        }
        Record::FunctionCall(r) => store
            .record_function_call(&r.invocation.row(owner), &r.settled)
            .await
            .map(|_| ()),
        Record::Identity(state) => store.set_identity_state(&owner.call, state.as_str()).await,
        Record::Event(kind, data) => notifier.emit(&owner.tenant, kind, data).await.map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::live_call;
    use crate::store::{FunctionCallStatus, SessionStatus};

    #[test]
    fn identity_states_have_their_stored_form() {
        assert_eq!(IdentityState::Verified.as_str(), "verified");
        assert_eq!(IdentityState::Failed.as_str(), "failed");
    }

    fn turn(n: i64) -> TranscriptTurn {
        TranscriptTurn {
            id: 0,
            role: String::from("user"),
            item_id: None,
            text: format!("turn {n}"),
            start_ms: None,
            end_ms: Some(n),
            interrupted: false,
            heard_text: None,
            created_at: n,
        }
    }

    #[tokio::test]
    async fn a_response_gap_lands_on_its_turn_whichever_is_recorded_first() {
        let (store, t, c, s) = live_call().await;
        let notifier = Notifier::new(store.clone(), crate::singleton::SingletonRef::new());
        let mut recorder = Recorder::spawn(
            store.clone(),
            notifier,
            Owner {
                call: c.id.clone(),
                tenant: t.clone(),
                session: s.id.clone(),
            },
            tracing::Span::none(),
        );
        let agent = |item: &str, n: i64| TranscriptTurn {
            role: String::from("assistant"),
            item_id: Some(item.to_owned()),
            ..turn(n)
        };
        // Usual order: the audio starts before the transcript is done.
        recorder.record(Record::ResponseGap {
            item_id: String::from("item_a"),
            ms: 300,
        });
        recorder.record(Record::Turn(agent("item_a", 1)));
        // The other way round.
        recorder.record(Record::Turn(agent("item_b", 2)));
        recorder.record(Record::ResponseGap {
            item_id: String::from("item_b"),
            ms: 500,
        });
        recorder.record(Record::Turn(turn(3)));
        recorder.flush().await;
        let material = store
            .evaluation_material(&t, &s.id)
            .await
            .expect("material")
            .expect("session");
        let gaps: Vec<Option<i64>> = material.turns.iter().map(|t| t.response_gap_ms).collect();
        assert_eq!(gaps, vec![Some(300), Some(500), None]);
    }

    #[tokio::test]
    async fn records_are_written_in_order_and_a_flush_waits_for_them_all() {
        let (store, t, c, s) = live_call().await;
        let notifier = Notifier::new(store.clone(), crate::singleton::SingletonRef::new());
        let mut recorder = Recorder::spawn(
            store.clone(),
            notifier,
            Owner {
                call: c.id.clone(),
                tenant: t.clone(),
                session: s.id.clone(),
            },
            tracing::Span::none(),
        );
        // More than the queue holds at once: the rest waits in the overflow, in order.
        let n = i64::try_from(QUEUE * 2).expect("small");
        for i in 0..n {
            recorder.record(Record::Turn(turn(i)));
        }
        recorder.record(Record::Usage(Usage {
            input: 3,
            output: 4,
            total: 7,
        }));
        recorder.record(Record::FunctionCall(Box::new(SettledRecord {
            invocation: Invocation {
                id: String::from("fc_1"),
                model_call_id: String::from("call_1"),
                name: String::from("lookup"),
                kind: "webhook",
                arguments: String::from("{}"),
                started_at: 5,
            },
            settled: SettledCall {
                status: FunctionCallStatus::Invalid,
                result: None,
                error: Some(String::from("bad")),
                latency_ms: 2,
            },
        })));
        recorder.record(Record::Identity(IdentityState::Verified));
        recorder.flush().await;
        let turns = store.turns(&s.id).await.expect("turns");
        assert_eq!(turns.len(), QUEUE * 2);
        assert!(
            turns.windows(2).all(|w| w[0].end_ms < w[1].end_ms),
            "in the order recorded"
        );
        let sessions = store.sessions_of_call(&c.id).await.expect("sessions");
        assert_eq!(sessions[0].total_tokens, 7);
        let calls = store.session_function_calls(&s.id).await.expect("calls");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].status, "invalid");
        assert_eq!(calls[0].finished_at, Some(7));
        let stored = store
            .get_call_by_id(&c.id)
            .await
            .expect("call")
            .expect("call");
        assert_eq!(stored.identity_state.as_deref(), Some("verified"));
        // The session ends once (a second end changes nothing).
        store
            .finish_session(
                &s.id,
                SessionStatus::Failed,
                crate::ending::EndReason::AiFailed,
                Some("x"),
            )
            .await
            .expect("finish");
        store
            .finish_session(
                &s.id,
                SessionStatus::Completed,
                crate::ending::EndReason::CallerHangup,
                None,
            )
            .await
            .expect("finish again");
        let sessions = store.sessions_of_call(&c.id).await.expect("sessions");
        assert_eq!(sessions[0].status, "failed");
        assert_eq!(sessions[0].end_reason.as_deref(), Some("ai_failed"));
        assert_eq!(sessions[0].end_detail.as_deref(), Some("x"));
    }

    #[tokio::test]
    async fn an_invocation_is_recorded_once_and_read_back_for_a_resumed_stream() {
        let (store, t, c, s) = live_call().await;
        let owner = Owner {
            call: c.id.clone(),
            tenant: t.clone(),
            session: s.id.clone(),
        };
        let start = |id: &str, model_call_id: &str| {
            let invocation = Invocation {
                id: id.to_owned(),
                model_call_id: model_call_id.to_owned(),
                name: String::from("lookup"),
                kind: "webhook",
                arguments: String::from("{}"),
                started_at: 10,
            };
            let (store, owner) = (store.clone(), owner.clone());
            async move {
                store
                    .start_function_call(&invocation.row(&owner))
                    .await
                    .expect("start")
            }
        };
        assert!(start("fc_a", "m1").await);
        // The same model call id again (another stream of the call): refused.
        assert!(!start("fc_b", "m1").await);
        assert!(start("fc_c", "m2").await);
        store
            .finish_function_call(
                "fc_c",
                &SettledCall {
                    status: FunctionCallStatus::Failed,
                    result: None,
                    error: Some(String::from("down")),
                    latency_ms: 5,
                },
            )
            .await
            .expect("finish");
        let prior = store.call_invocations(&c.id).await.expect("prior");
        assert_eq!(prior.len(), 2);
        assert_eq!(prior[0].model_call_id, "m1");
        assert_eq!(prior[0].output, None, "still running");
        assert_eq!(prior[1].output.as_deref(), Some(r#"{"error":"down"}"#));
        // A dead actor's live sessions fail at once; the continuation is typed.
        assert_eq!(
            store
                .fail_live_sessions(&c.id, crate::ending::EndReason::ActorFailed, Some("killed"))
                .await
                .expect("fail")
                .sessions,
            vec![s.id.clone()]
        );
        store
            .set_continuation(&c.id, Some(crate::ending::Continuation::Fallback))
            .await
            .expect("continuation");
        let stored = store
            .get_call_by_id(&c.id)
            .await
            .expect("call")
            .expect("call");
        assert_eq!(
            stored.after_stream,
            Some(crate::ending::Continuation::Fallback)
        );
    }
}
