//! What tests observe (per-session snapshots on a watch channel, handshake records, frame
//! tag send times) and the state the simulator's tasks share (settings changed through the
//! handle, queued faults, the task list shutdown aborts).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use super::config::{DropAfter, RealtimeScript, RealtimeSimConfig};
use super::judge::SimVerdict;

/// Client event types kept per session (later ones are only counted).
pub(crate) const MAX_EVENT_LOG: usize = 20_000;
/// Frame-tag send times kept (oldest evicted first).
const MAX_TAGS: usize = 200_000;
/// Handshakes kept.
const MAX_HANDSHAKES: usize = 10_000;
/// Judge requests kept (later ones are only counted).
const MAX_JUDGE_REQUESTS: usize = 2_000;

/// Locks `m`, ignoring poisoning (plain records; nothing is left half-updated that matters).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client closed (close frame or end of stream).
    ClientClosed,
    /// The simulator closed with this code (4000: beta shape refused).
    ServerClosed(u16),
    /// Cut without a close frame (fault injection).
    Dropped,
    /// The socket failed.
    Failed(String),
    /// The simulator shut down.
    Shutdown,
}

/// One `response` of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRecord {
    /// `resp_…`.
    pub id: String,
    /// The output item (`item_…`).
    pub item_id: String,
    /// `message` or `function_call`.
    pub kind: String,
    /// The whole planned text (speech) or the function name (tool call).
    pub text: String,
    /// The transcript actually sent so far.
    pub said: String,
    /// `in_progress`, `completed` or `cancelled`.
    pub status: String,
    /// `turn_detected` / `client_cancelled` for cancelled responses.
    pub reason: Option<String>,
    /// Audio deltas sent.
    pub deltas_sent: u32,
    /// Audio sent, ms.
    pub audio_ms_sent: u64,
    /// Audio planned, ms.
    pub audio_ms_total: u64,
}

/// A `conversation.item.truncate` received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncateRecord {
    /// The item.
    pub item_id: String,
    /// Requested end, ms.
    pub audio_end_ms: u64,
    /// Audio the item had produced when the truncate arrived (`None`: unknown item).
    pub item_audio_ms: Option<u64>,
    /// Whether `conversation.item.truncated` was sent (else an `error`).
    pub accepted: bool,
}

/// An `error` event sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRecord {
    /// `error.type`.
    pub kind: String,
    /// `error.code`.
    pub code: Option<String>,
    /// `error.param`.
    pub param: Option<String>,
    /// `error.message`.
    pub message: String,
    /// The client `event_id` echoed.
    pub event_id: Option<String>,
}

/// A tool call the simulated assistant made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallRecord {
    /// `call_…`.
    pub call_id: String,
    /// Function name.
    pub name: String,
    /// JSON arguments.
    pub arguments: String,
    /// The `function_call_output` the client sent, once it did.
    pub output: Option<String>,
}

/// Everything observable about one session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSnapshot {
    /// `sess_…`.
    pub id: String,
    /// Connection order (0-based).
    pub index: usize,
    /// The `?model=` of the connection.
    pub model: String,
    /// The effective session object (as in the last `session.created`/`session.updated`).
    pub config: Value,
    /// `session.update`s accepted.
    pub updates: u32,
    /// Client event types in arrival order (the first [`MAX_EVENT_LOG`]). Appends are
    /// batched: they show up with the session's next other change, or every 50 appends.
    pub client_events: Vec<String>,
    /// Client frames received (all of them; appends batched as above).
    pub client_event_count: u64,
    /// Decoded bytes of `input_audio_buffer.append` (batched as above).
    pub audio_bytes_received: u64,
    /// `input_audio_buffer.speech_started` sent.
    pub speech_started: u32,
    /// Transcripts of user turns (committed audio, or user text items), in order.
    pub user_turns: Vec<String>,
    /// Responses started.
    pub responses_started: u32,
    /// Responses completed.
    pub responses_completed: u32,
    /// Responses cancelled.
    pub responses_cancelled: u32,
    /// Every response.
    pub responses: Vec<ResponseRecord>,
    /// Every truncate.
    pub truncations: Vec<TruncateRecord>,
    /// Every error sent.
    pub errors: Vec<ErrorRecord>,
    /// Transcripts of completed spoken responses, in order.
    pub said: Vec<String>,
    /// Tool calls made.
    pub tool_calls: Vec<ToolCallRecord>,
    /// Server events sent.
    pub server_event_count: u64,
    /// JSON of every server event sent (with `record_events`).
    pub server_events: Vec<Value>,
    /// JSON of every client event received (with `record_events`).
    pub client_events_raw: Vec<Value>,
    /// Set when the session has ended.
    pub ended: Option<SessionEnd>,
}

impl SessionSnapshot {
    pub(crate) fn new(id: String, index: usize, model: String, config: Value) -> Self {
        Self {
            id,
            index,
            model,
            config,
            updates: 0,
            client_events: Vec::new(),
            client_event_count: 0,
            audio_bytes_received: 0,
            speech_started: 0,
            user_turns: Vec::new(),
            responses_started: 0,
            responses_completed: 0,
            responses_cancelled: 0,
            responses: Vec::new(),
            truncations: Vec::new(),
            errors: Vec::new(),
            said: Vec::new(),
            tool_calls: Vec::new(),
            server_event_count: 0,
            server_events: Vec::new(),
            client_events_raw: Vec::new(),
            ended: None,
        }
    }

    /// True when an error with this code was sent.
    pub fn has_error(&self, code: &str) -> bool {
        self.errors.iter().any(|e| e.code.as_deref() == Some(code))
    }

    /// The response with this id.
    pub fn response(&self, id: &str) -> Option<&ResponseRecord> {
        self.responses.iter().find(|r| r.id == id)
    }

    /// Types of the recorded server events, in order (with `record_events`).
    pub fn server_event_types(&self) -> Vec<&str> {
        self.server_events
            .iter()
            .filter_map(|e| e.get("type").and_then(Value::as_str))
            .collect()
    }
}

/// One websocket upgrade attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRecord {
    /// The status answered (101 when accepted).
    pub status: u16,
    /// Request path.
    pub path: String,
    /// `?model=`.
    pub model: Option<String>,
    /// Whether the bearer key was accepted.
    pub authorized: bool,
    /// The request carried an `OpenAI-Beta` header (the runtime must never send one).
    pub beta_header: bool,
}

/// A fault of the simulated judge (`POST /v1/chat/completions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgeFault {
    /// Answer normally, after this long (longer than the client's deadline: a timeout).
    Delay(Duration),
    /// Answer this HTTP status with an OpenAI-style error body.
    Status(u16),
    /// Answer 200 with content that is not the JSON asked for.
    InvalidJson,
    /// Never answer; the connection stays open until the client gives up.
    Hang,
}

/// One request to the simulated judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeRequestRecord {
    /// Whether the bearer key was accepted.
    pub authorized: bool,
    /// The `model` asked for.
    pub model: String,
    /// The criterion keys asked about.
    pub criteria: Vec<String>,
    /// The status answered (0: no answer).
    pub status: u16,
    /// The request body, as received.
    pub body: String,
}

/// Interrupts for a session task.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Control {
    /// Cut the socket without a close frame.
    Drop,
}

/// Settings the handle changes at run time.
#[derive(Debug)]
pub(crate) struct Settings {
    pub response_latency: Duration,
    pub script: RealtimeScript,
    pub reject_next: VecDeque<u16>,
    pub drop_next: VecDeque<DropAfter>,
    /// Judge verdicts by criterion key.
    pub judge_verdicts: HashMap<String, SimVerdict>,
    /// The judge's fault for every request, until cleared.
    pub judge_fault: Option<JudgeFault>,
    /// One-shot judge faults, used before `judge_fault`.
    pub judge_fault_next: VecDeque<JudgeFault>,
}

#[derive(Default)]
struct Tags {
    order: VecDeque<u32>,
    sent_at: HashMap<u32, Instant>,
}

/// Shared simulator state.
pub(crate) struct Shared {
    /// Start-up configuration.
    pub config: RealtimeSimConfig,
    /// Run-time settings.
    pub settings: Mutex<Settings>,
    sessions: watch::Sender<Vec<SessionSnapshot>>,
    controls: Mutex<HashMap<String, mpsc::UnboundedSender<Control>>>,
    handshakes: Mutex<Vec<HandshakeRecord>>,
    judge_requests: Mutex<Vec<JudgeRequestRecord>>,
    judge_count: watch::Sender<usize>,
    tags: Mutex<Tags>,
    next_tag: AtomicU32,
    next_event: AtomicU64,
    tasks: Mutex<Vec<AbortHandle>>,
    runtime: tokio::runtime::Handle,
    closed: AtomicBool,
}

impl Shared {
    /// New state; must be called inside a tokio runtime.
    pub fn new(config: RealtimeSimConfig) -> Self {
        let settings = Settings {
            response_latency: config.first_audio_latency,
            script: config.script.clone(),
            reject_next: VecDeque::new(),
            drop_next: VecDeque::new(),
            judge_verdicts: config.judge_verdicts.clone(),
            judge_fault: config.judge_fault,
            judge_fault_next: VecDeque::new(),
        };
        Self {
            config,
            settings: Mutex::new(settings),
            sessions: watch::Sender::new(Vec::new()),
            controls: Mutex::new(HashMap::new()),
            handshakes: Mutex::new(Vec::new()),
            judge_requests: Mutex::new(Vec::new()),
            judge_count: watch::Sender::new(0),
            tags: Mutex::new(Tags::default()),
            next_tag: AtomicU32::new(0),
            next_event: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
            runtime: tokio::runtime::Handle::current(),
            closed: AtomicBool::new(false),
        }
    }

    /// A fresh `event_…` id.
    pub fn event_id(&self) -> String {
        let n = self.next_event.fetch_add(1, Ordering::Relaxed);
        format!("event_{n:012}")
    }

    /// Adds a session; returns its index and the receiving end of its control channel.
    pub fn register(
        &self,
        id: &str,
        model: String,
        config: Value,
    ) -> (usize, mpsc::UnboundedReceiver<Control>) {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.controls).insert(id.to_owned(), tx);
        let mut index = 0;
        self.sessions.send_modify(|sessions| {
            index = sessions.len();
            sessions.push(SessionSnapshot::new(id.to_owned(), index, model, config));
        });
        (index, rx)
    }

    /// Changes session `index` (watchers are woken).
    pub fn update(&self, index: usize, f: impl FnOnce(&mut SessionSnapshot)) {
        self.sessions.send_modify(|sessions| {
            if let Some(s) = sessions.get_mut(index) {
                f(s);
            }
        });
    }

    /// Forgets a session's control channel.
    pub fn unregister(&self, id: &str) {
        lock(&self.controls).remove(id);
    }

    /// Sends a control message to a live session.
    pub fn control(&self, id: &str, control: Control) -> bool {
        lock(&self.controls)
            .get(id)
            .is_some_and(|tx| tx.send(control).is_ok())
    }

    /// Every session.
    pub fn sessions(&self) -> Vec<SessionSnapshot> {
        self.sessions.borrow().clone()
    }

    /// Watches the sessions.
    pub fn subscribe(&self) -> watch::Receiver<Vec<SessionSnapshot>> {
        self.sessions.subscribe()
    }

    /// Records a handshake.
    pub fn handshake(&self, record: HandshakeRecord) {
        let mut handshakes = lock(&self.handshakes);
        if handshakes.len() < MAX_HANDSHAKES {
            handshakes.push(record);
        }
    }

    /// Every handshake.
    pub fn handshakes(&self) -> Vec<HandshakeRecord> {
        lock(&self.handshakes).clone()
    }

    /// The fault for the next judge request: a one-shot one first, else the standing one.
    pub fn next_judge_fault(&self) -> Option<JudgeFault> {
        let mut settings = lock(&self.settings);
        settings
            .judge_fault_next
            .pop_front()
            .or(settings.judge_fault)
    }

    /// Records a judge request.
    pub fn judge_request(&self, record: JudgeRequestRecord) {
        {
            let mut requests = lock(&self.judge_requests);
            if requests.len() < MAX_JUDGE_REQUESTS {
                requests.push(record);
            }
        }
        self.judge_count.send_modify(|n| *n += 1);
    }

    /// Every judge request kept.
    pub fn judge_requests(&self) -> Vec<JudgeRequestRecord> {
        lock(&self.judge_requests).clone()
    }

    /// Watches the number of judge requests received.
    pub fn judge_count(&self) -> watch::Receiver<usize> {
        self.judge_count.subscribe()
    }

    /// `count` consecutive fresh output frame-tag ids (offset by
    /// [`super::OUTPUT_TAG_BASE`]).
    pub fn next_tags(&self, count: u32) -> impl Iterator<Item = u32> {
        let first = self.next_tag.fetch_add(count, Ordering::Relaxed);
        (0..count).map(move |i| super::OUTPUT_TAG_BASE | (first.wrapping_add(i) & 0x7FFF_FFFF))
    }

    /// Records when tagged frames were sent.
    pub fn tags_sent(&self, ids: &[u32], at: Instant) {
        if ids.is_empty() {
            return;
        }
        let mut tags = lock(&self.tags);
        for &id in ids {
            if tags.sent_at.insert(id, at).is_none() {
                tags.order.push_back(id);
            }
        }
        while tags.order.len() > MAX_TAGS {
            if let Some(old) = tags.order.pop_front() {
                tags.sent_at.remove(&old);
            }
        }
    }

    /// When a tagged frame was sent.
    pub fn tag_sent_at(&self, id: u32) -> Option<Instant> {
        lock(&self.tags).sent_at.get(&id).copied()
    }

    /// Spawns a task that shutdown aborts (`false` once shut down).
    pub fn spawn<F>(&self, fut: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.closed.load(Ordering::SeqCst) {
            return false;
        }
        let handle = self.runtime.spawn(fut);
        let mut tasks = lock(&self.tasks);
        if tasks.len() >= 64 {
            tasks.retain(|t| !t.is_finished());
        }
        tasks.push(handle.abort_handle());
        true
    }

    /// True once shut down.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Aborts every task and marks live sessions ended; later spawns are refused.
    pub fn abort_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        lock(&self.controls).clear();
        self.sessions.send_modify(|sessions| {
            for s in sessions.iter_mut().filter(|s| s.ended.is_none()) {
                s.ended = Some(SessionEnd::Shutdown);
            }
        });
    }
}

/// Shared state behind an `Arc`.
pub(crate) type SharedRef = Arc<Shared>;
