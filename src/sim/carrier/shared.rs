//! The state every part of the simulator shares: settings, the call registry (one watch
//! channel per call), REST records, queued faults, the webhook client and the task list
//! that shutdown aborts.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle};

use super::call::Control;
use super::config::{CarrierConfig, Fault, Settings};
use super::state::{CallSnapshot, MessageRecord, RequestRecord};

/// Locks `m`, ignoring poisoning (the data are plain records; a panicked writer leaves
/// nothing half-updated that matters to a simulator).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One call: its observable state and the channel REST updates reach its task through.
pub(crate) struct CallEntry {
    /// Current snapshot.
    pub state: Arc<watch::Sender<CallSnapshot>>,
    /// Interrupts for the call's task.
    pub control: mpsc::UnboundedSender<Control>,
}

#[derive(Default)]
struct Registry {
    order: Vec<Arc<CallEntry>>,
    by_sid: HashMap<String, Arc<CallEntry>>,
}

/// Shared simulator state.
pub(crate) struct Shared {
    /// Start-up configuration (timings and defaults).
    pub config: CarrierConfig,
    /// Settings changed through the handle.
    pub settings: Mutex<Settings>,
    /// SMS sent.
    pub messages: Mutex<Vec<MessageRecord>>,
    /// REST requests received.
    pub requests: Mutex<Vec<RequestRecord>>,
    /// Faults for the next REST requests.
    pub faults: Mutex<VecDeque<Fault>>,
    /// Webhook client.
    pub http: reqwest::Client,
    /// Call recordings (`Calls/{Sid}/Recordings.json`), deleted ones kept as tombstones.
    pub recordings: Mutex<Vec<super::recording::SimRecording>>,
    /// Recordings in progress (the media path skips the lock when none).
    pub recordings_live: AtomicUsize,
    /// Conferences.
    pub rooms: super::conference::Rooms,
    calls: Mutex<Registry>,
    calls_version: watch::Sender<u64>,
    new_calls: broadcast::Sender<String>,
    tasks: Mutex<Vec<AbortHandle>>,
    runtime: tokio::runtime::Handle,
    closed: AtomicBool,
}

impl Shared {
    /// New state; must be called inside a tokio runtime.
    pub fn new(config: CarrierConfig, http: reqwest::Client) -> Self {
        let mut settings = Settings {
            create_response_delay: config.create_response_delay,
            lookup_response_delay: config.lookup_response_delay,
            ..Settings::default()
        };
        for (sid, token) in &config.accounts {
            settings.accounts.insert(sid.clone(), token.clone());
        }
        Self {
            config,
            settings: Mutex::new(settings),
            messages: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(VecDeque::new()),
            http,
            recordings: Mutex::new(Vec::new()),
            recordings_live: AtomicUsize::new(0),
            rooms: super::conference::Rooms::default(),
            calls: Mutex::new(Registry::default()),
            calls_version: watch::Sender::new(0),
            new_calls: broadcast::Sender::new(256),
            tasks: Mutex::new(Vec::new()),
            runtime: tokio::runtime::Handle::current(),
            closed: AtomicBool::new(false),
        }
    }

    /// The auth token of an account.
    pub fn token(&self, account_sid: &str) -> Option<String> {
        lock(&self.settings).accounts.get(account_sid).cloned()
    }

    /// Adds a call; returns its entry and the receiving end of its control channel.
    pub fn register_call(
        &self,
        snapshot: CallSnapshot,
    ) -> (Arc<CallEntry>, mpsc::UnboundedReceiver<Control>) {
        let sid = snapshot.sid.clone();
        let (control, rx) = mpsc::unbounded_channel();
        let entry = Arc::new(CallEntry {
            state: Arc::new(watch::Sender::new(snapshot)),
            control,
        });
        {
            let mut calls = lock(&self.calls);
            calls.order.push(entry.clone());
            calls.by_sid.insert(sid.clone(), entry.clone());
        }
        self.calls_version.send_modify(|v| *v += 1);
        let _ = self.new_calls.send(sid);
        (entry, rx)
    }

    /// A call by SID.
    pub fn call(&self, sid: &str) -> Option<Arc<CallEntry>> {
        lock(&self.calls).by_sid.get(sid).cloned()
    }

    /// Every call, in creation order.
    pub fn all_calls(&self) -> Vec<Arc<CallEntry>> {
        lock(&self.calls).order.clone()
    }

    /// Notified whenever a call is added.
    pub fn calls_changed(&self) -> watch::Receiver<u64> {
        self.calls_version.subscribe()
    }

    /// SIDs of new calls as they are created.
    pub fn subscribe_new_calls(&self) -> broadcast::Receiver<String> {
        self.new_calls.subscribe()
    }

    /// Spawns a task that shutdown aborts (`None` once shut down).
    pub fn spawn<F>(&self, fut: F) -> Option<JoinHandle<()>>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        let handle = self.runtime.spawn(fut);
        let mut tasks = lock(&self.tasks);
        if tasks.len() >= 64 {
            tasks.retain(|t| !t.is_finished());
        }
        tasks.push(handle.abort_handle());
        Some(handle)
    }

    /// Aborts every task; later spawns are refused.
    pub fn abort_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}
