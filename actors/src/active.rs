//! The registry of live calls on this node: call actors insert, update and remove their
//! entry; node-local code (the stream-end wait, the drain, chaos selection) reads it
//! concurrently and subscribes to its changes. Lock-free for readers (dashmap); change
//! events fan out on a broadcast channel.
//!
//! The cluster's view is in the database: [`publisher`] mirrors this registry into
//! `live_calls` and `live_call_events` (coalesced per call over a short window, see
//! [`coalesce`]), and [`feed`] reads the events of every node in order and fans them out
//! to this node's readers; [`LiveRegistry`] owns both tasks.

use dashmap::DashMap;
use tokio::sync::broadcast;

use crate::ids::{CallId, TenantId};

pub mod coalesce;
pub mod feed;
pub mod live;
pub mod publisher;

pub use live::{LiveCall, LiveChange, LiveEvent, LiveRegistry, LiveSettings, LiveSnapshot};

/// What a live call is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPhase {
    /// The agent is saying its greeting.
    Greeting,
    /// Waiting for or hearing the caller.
    Listening,
    /// The agent is talking.
    Speaking,
    /// A tool is running.
    Tool,
    /// Being handed to a human.
    Handoff,
}

impl CallPhase {
    /// Wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            CallPhase::Greeting => "greeting",
            CallPhase::Listening => "listening",
            CallPhase::Speaking => "speaking",
            CallPhase::Tool => "tool",
            CallPhase::Handoff => "handoff",
        }
    }

    /// Parses the wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "greeting" => CallPhase::Greeting,
            "listening" => CallPhase::Listening,
            "speaking" => CallPhase::Speaking,
            "tool" => CallPhase::Tool,
            "handoff" => CallPhase::Handoff,
            _ => return None,
        })
    }
}

/// A live call as operators see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveCall {
    /// Our call id.
    pub call_id: CallId,
    /// Twilio `CallSid`.
    pub call_sid: String,
    /// Twilio `StreamSid` of the live media stream (`MZ…`).
    pub stream_sid: Option<String>,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// Caller.
    pub from: String,
    /// Callee.
    pub to: String,
    /// Agent key.
    pub agent_key: Option<String>,
    /// Agent version.
    pub agent_version_id: Option<String>,
    /// When the stream started (Unix ms).
    pub started_at: i64,
    /// Current phase.
    pub phase: CallPhase,
    /// Last transcript line: (role, text).
    pub last_line: Option<(String, String)>,
    /// AI first-audio latency of the session (ms).
    pub first_audio_ms: Option<i64>,
    /// Latency of the last response: caller stopped speaking → first audio (ms).
    pub last_response_ms: Option<i64>,
}

/// A change of the registry.
#[derive(Debug, Clone, PartialEq)]
pub enum ActiveEvent {
    /// A call went live.
    Started(ActiveCall),
    /// A call changed.
    Updated(ActiveCall),
    /// A call ended.
    Ended {
        /// The call.
        call_id: CallId,
        /// Its tenant.
        tenant_id: TenantId,
        /// Why.
        reason: String,
    },
}

impl ActiveEvent {
    /// The tenant the event belongs to.
    pub fn tenant_id(&self) -> &TenantId {
        match self {
            ActiveEvent::Started(c) | ActiveEvent::Updated(c) => &c.tenant_id,
            ActiveEvent::Ended { tenant_id, .. } => tenant_id,
        }
    }
}

/// The registry (cheap to share behind an `Arc`).
#[derive(Debug)]
pub struct ActiveRegistry {
    calls: DashMap<CallId, ActiveCall>,
    events: broadcast::Sender<ActiveEvent>,
}

impl Default for ActiveRegistry {
    fn default() -> Self {
        Self {
            calls: DashMap::new(),
            events: broadcast::channel(1024).0,
        }
    }
}

impl ActiveRegistry {
    /// Adds a live call.
    pub fn insert(&self, call: ActiveCall) {
        metrics::gauge!("calls_active", "direction" => call.direction).increment(1.0);
        self.calls.insert(call.call_id.clone(), call.clone());
        let _ = self.events.send(ActiveEvent::Started(call));
    }

    /// Changes a live call (no-op when it is not registered); a change that changes nothing
    /// is not announced.
    pub fn update(&self, id: &CallId, change: impl FnOnce(&mut ActiveCall)) {
        let updated = self.calls.get_mut(id).and_then(|mut entry| {
            let before = entry.clone();
            change(&mut entry);
            (*entry != before).then(|| entry.clone())
        });
        if let Some(call) = updated {
            let _ = self.events.send(ActiveEvent::Updated(call));
        }
    }

    /// Removes a live call.
    pub fn remove(&self, id: &CallId, reason: &str) {
        if let Some((_, call)) = self.calls.remove(id) {
            metrics::gauge!("calls_active", "direction" => call.direction).decrement(1.0);
            let _ = self.events.send(ActiveEvent::Ended {
                call_id: call.call_id,
                tenant_id: call.tenant_id,
                reason: reason.to_owned(),
            });
        }
    }

    /// Live calls, of one tenant or all, oldest first.
    pub fn list(&self, tenant: Option<&TenantId>) -> Vec<ActiveCall> {
        let mut calls: Vec<ActiveCall> = self
            .calls
            .iter()
            .filter(|c| tenant.is_none_or(|t| &c.tenant_id == t))
            .map(|c| c.clone())
            .collect();
        calls.sort_by_key(|c| c.started_at);
        calls
    }

    /// Whether `id` is live on this node.
    pub fn contains(&self, id: &CallId) -> bool {
        self.calls.contains_key(id)
    }

    /// Waits until `id` is no longer live on this node, at most `patience`; true when it
    /// ended (or was not live).
    pub async fn ended(&self, id: &CallId, patience: std::time::Duration) -> bool {
        let mut events = self.subscribe();
        if !self.contains(id) {
            return true;
        }
        tokio::time::timeout(patience, async {
            loop {
                match events.recv().await {
                    Ok(ActiveEvent::Ended { call_id, .. }) if &call_id == id => return,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if !self.contains(id) {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
        .await
        .is_ok()
    }

    /// Number of live calls.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call is live.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Subscribes to changes.
    pub fn subscribe(&self) -> broadcast::Receiver<ActiveEvent> {
        self.events.subscribe()
    }
}

#[cfg(test)]
impl ActiveCall {
    /// A live call of `tenant` for tests: inbound, greeting, a stream, nothing said yet.
    pub(crate) fn sample(tenant: &TenantId) -> Self {
        ActiveCall {
            call_id: CallId::generate(),
            call_sid: "CA1".into(),
            stream_sid: Some("MZ1".into()),
            tenant_id: tenant.clone(),
            direction: "inbound",
            from: "+1".into(),
            to: "+2".into(),
            agent_key: None,
            agent_version_id: None,
            started_at: 1,
            phase: CallPhase::Greeting,
            last_line: None,
            first_audio_ms: None,
            last_response_ms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(tenant: &TenantId) -> ActiveCall {
        ActiveCall::sample(tenant)
    }

    #[tokio::test]
    async fn registry_lists_per_tenant_and_announces_changes() {
        let reg = ActiveRegistry::default();
        let mut rx = reg.subscribe();
        let a = TenantId::generate();
        let b = TenantId::generate();
        let ca = call(&a);
        reg.insert(ca.clone());
        reg.insert(call(&b));
        assert_eq!(reg.list(Some(&a)).len(), 1);
        assert_eq!(reg.list(None).len(), 2);
        reg.update(&ca.call_id, |c| c.phase = CallPhase::Speaking);
        // The same phase again: nothing to announce.
        reg.update(&ca.call_id, |c| c.phase = CallPhase::Speaking);
        reg.remove(&ca.call_id, "stop");
        assert!(matches!(rx.recv().await, Ok(ActiveEvent::Started(_))));
        assert!(matches!(rx.recv().await, Ok(ActiveEvent::Started(_))));
        assert!(
            matches!(rx.recv().await, Ok(ActiveEvent::Updated(c)) if c.phase == CallPhase::Speaking)
        );
        assert!(
            matches!(rx.recv().await, Ok(ActiveEvent::Ended { reason, .. }) if reason == "stop")
        );
        assert_eq!(reg.len(), 1);
    }
}
