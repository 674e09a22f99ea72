//! The cluster-wide live-call registry as this node serves it: the types read from
//! `live_calls` and `live_call_events`, and [`LiveRegistry`], which owns this node's
//! publisher (its calls into the database), its feed (every node's changes, in order, to
//! this node's readers), the PostgreSQL listener that wakes the feed, and the pruning of
//! old events.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;

use super::{ActiveCall, ActiveRegistry, feed, publisher};
use crate::ids::{CallId, TenantId};
use crate::nodes::NodeInstance;
use crate::store::{Store, StoreError};

/// A live call as the cluster sees it: the node-local entry, the node holding it, and its
/// last change.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveCall {
    /// The call.
    pub call: ActiveCall,
    /// The node holding its media stream.
    pub node_id: String,
    /// When it last changed (Unix ms).
    pub last_activity_at: i64,
}

/// What an event says about its call.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveChange {
    /// The call went live (on the node named in it).
    Started(LiveCall),
    /// Its new state.
    Updated(LiveCall),
    /// It ended: `ended`, `failed`, `node_lost`, …
    Ended {
        /// Why.
        reason: String,
    },
}

impl LiveChange {
    /// `started`, `updated` or `ended`.
    pub fn kind(&self) -> &'static str {
        match self {
            LiveChange::Started(_) => "started",
            LiveChange::Updated(_) => "updated",
            LiveChange::Ended { .. } => "ended",
        }
    }
}

/// One change of the cluster's live calls.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    /// Its place in the cluster's order of changes.
    pub seq: i64,
    /// The call's tenant.
    pub tenant_id: TenantId,
    /// The call.
    pub call_id: CallId,
    /// When it was written (Unix ms).
    pub at: i64,
    /// What changed.
    pub change: LiveChange,
}

/// Live calls and the last event they include, read together.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSnapshot {
    /// Every event up to this one is reflected in `calls`, no later one is.
    pub seq: i64,
    /// The calls, oldest first.
    pub calls: Vec<LiveCall>,
}

/// How the node publishes and follows live calls.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// Changes are coalesced per call over this window, one transaction per window.
    pub window: Duration,
    /// Events are kept this long (a client resuming from an older one gets a snapshot).
    pub retention: Duration,
    /// Between two prunes of old events.
    pub prune_every: Duration,
    /// The feed reads new events at least this often (besides being woken by the
    /// publisher and, on PostgreSQL, by `NOTIFY`).
    pub poll: Duration,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(100),
            retention: Duration::from_secs(15 * 60),
            prune_every: Duration::from_secs(60),
            poll: Duration::from_secs(1),
        }
    }
}

/// Capacity of the local fan-out of the feed (a reader that falls behind reads the
/// database instead).
const FANOUT: usize = 4096;

/// This node's part of the cluster-wide registry.
pub struct LiveRegistry {
    store: Store,
    fanout: broadcast::Sender<Arc<LiveEvent>>,
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl LiveRegistry {
    /// Starts publishing `registry` as `node` and following the cluster's changes from the
    /// newest event now (read before any reader can subscribe).
    pub async fn start(
        store: Store,
        registry: Arc<ActiveRegistry>,
        node: NodeInstance,
        settings: LiveSettings,
    ) -> Result<Self, StoreError> {
        let (_, newest) = store.live_event_bounds().await?;
        let (stop, stop_rx) = watch::channel(false);
        let (fanout, _) = broadcast::channel(FANOUT);
        let wake = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        let changes = registry.subscribe();
        tasks.push(tokio::spawn(
            publisher::Publisher::new(
                publisher::DbSink {
                    store: store.clone(),
                    node,
                    wake: Arc::clone(&wake),
                },
                registry,
                settings.window,
            )
            .run(changes, stop_rx.clone()),
        ));
        tasks.push(tokio::spawn(
            feed::Feed {
                store: store.clone(),
                fanout: fanout.clone(),
                wake: Arc::clone(&wake),
                poll: settings.poll,
            }
            .run(newest.unwrap_or(0), stop_rx.clone()),
        ));
        if let Store::Postgres(pool) = &store {
            tasks.push(tokio::spawn(feed::listen(
                pool.clone(),
                Arc::clone(&wake),
                stop_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(feed::prune(
            store.clone(),
            settings.retention,
            settings.prune_every,
            stop_rx,
        )));
        Ok(Self {
            store,
            fanout,
            stop,
            tasks: std::sync::Mutex::new(tasks),
        })
    }

    /// The cluster's changes as this node's feed reads them, in order (subscribe before
    /// reading a snapshot: an event after the snapshot's `seq` then always arrives here).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.fanout.subscribe()
    }

    /// The live calls of `tenant` (of every tenant with `None`) and the last event they
    /// reflect, in one read.
    pub async fn snapshot(&self, tenant: Option<&TenantId>) -> Result<LiveSnapshot, StoreError> {
        self.store.live_snapshot(tenant).await
    }

    /// One live call of `tenant`.
    pub async fn call(
        &self,
        tenant: &TenantId,
        call: &CallId,
    ) -> Result<Option<LiveCall>, StoreError> {
        self.store.live_call(tenant, call).await
    }

    /// Events of `tenant` after `seq`, in order, at most `limit`.
    pub async fn events_after(
        &self,
        tenant: &TenantId,
        seq: i64,
        limit: u32,
    ) -> Result<Vec<LiveEvent>, StoreError> {
        self.store.live_events_after(Some(tenant), seq, limit).await
    }

    /// Whether every event after `seq` is still kept (none pruned, `seq` not in the future).
    pub async fn can_resume_after(&self, seq: i64) -> Result<bool, StoreError> {
        let (oldest, newest) = self.store.live_event_bounds().await?;
        Ok(match (oldest, newest) {
            (Some(oldest), Some(newest)) => seq >= oldest - 1 && seq <= newest,
            _ => seq == 0,
        })
    }

    /// Publishes what is still pending and stops the tasks (after the call actors stopped,
    /// so their ends are written).
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }
}
