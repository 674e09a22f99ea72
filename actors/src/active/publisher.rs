//! The publisher: one task per node that mirrors the node's [`ActiveRegistry`] into the
//! database. It waits for a change, gathers the changes of the next `window` (coalesced per
//! call, [`Pending`]) and writes them in one transaction ([`Sink::publish`]: rows upserted,
//! updated or deleted, one event each, `NOTIFY` on PostgreSQL). When it falls behind the
//! registry's broadcast (`Lagged`), or a write failed, it rewrites the node's rows from the
//! registry instead ([`Sink::resync`]), at start too. On stop it writes what is pending.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::coalesce::{Change, Pending};
use super::{ActiveCall, ActiveEvent, ActiveRegistry};
use crate::nodes::NodeInstance;
use crate::store::{Store, StoreError};
use crate::time::now_ms;

/// After a failed write, the rewrite is tried again this much later.
const RETRY: Duration = Duration::from_secs(1);

/// Where the publisher writes (the database, or a recorder in tests).
pub trait Sink: Send {
    /// Writes one window's changes in one transaction.
    fn publish(
        &mut self,
        changes: Vec<Change>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Rewrites the node's rows to be exactly `calls`.
    fn resync(
        &mut self,
        calls: Vec<ActiveCall>,
        at: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The database, as this node.
pub struct DbSink {
    /// The store.
    pub store: Store,
    /// This node.
    pub node: NodeInstance,
    /// Woken after each commit (this node's feed reads at once).
    pub wake: Arc<Notify>,
}

impl Sink for DbSink {
    async fn publish(&mut self, changes: Vec<Change>) -> Result<(), StoreError> {
        let n = changes.len();
        self.store.publish_live(&self.node, &changes).await?;
        metrics::counter!("live_registry_changes_published_total").increment(n as u64);
        self.wake.notify_one();
        Ok(())
    }

    async fn resync(&mut self, calls: Vec<ActiveCall>, at: i64) -> Result<(), StoreError> {
        self.store.resync_live(&self.node, &calls, at).await?;
        metrics::counter!("live_registry_resyncs_total").increment(1);
        self.wake.notify_one();
        Ok(())
    }
}

/// The publishing loop.
pub struct Publisher<S> {
    sink: S,
    registry: Arc<ActiveRegistry>,
    window: Duration,
    pending: Pending,
    /// The node's rows must be rewritten from the registry.
    resync: bool,
    /// When to try a failed write again.
    retry_at: Option<Instant>,
}

impl<S: Sink> Publisher<S> {
    /// A publisher of `registry` into `sink`, coalescing over `window`. It starts with a
    /// rewrite, so rows of this node left from before are set right.
    pub fn new(sink: S, registry: Arc<ActiveRegistry>, window: Duration) -> Self {
        Self {
            sink,
            registry,
            window,
            pending: Pending::default(),
            resync: true,
            retry_at: Some(Instant::now()),
        }
    }

    /// Runs until `stop` (then writes what is pending) or the registry is gone. `changes`
    /// must be subscribed before the registry's first change that should be published.
    pub async fn run(
        mut self,
        mut changes: Receiver<ActiveEvent>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            // Wait for a change (or the retry of a failed write).
            let retry = self.retry_at;
            let first = tokio::select! {
                _ = stop.wait_for(|s| *s) => None,
                _ = async { tokio::time::sleep_until(retry.unwrap_or_else(Instant::now)).await }, if retry.is_some() => Some(None),
                change = changes.recv() => Some(Some(change)),
            };
            match first {
                None => break,
                Some(None) => {}
                Some(Some(change)) => {
                    if !self.take(change) {
                        break;
                    }
                    // The window: every change until it closes joins this transaction.
                    let close = Instant::now() + self.window;
                    while let Ok(change) = tokio::time::timeout_at(close, changes.recv()).await {
                        if !self.take(change) {
                            break;
                        }
                    }
                }
            }
            self.flush().await;
        }
        while let Ok(change) = changes.try_recv() {
            self.take(Ok(change));
        }
        self.flush().await;
    }

    /// Folds a received change in; false when the registry is gone.
    fn take(&mut self, change: Result<ActiveEvent, RecvError>) -> bool {
        match change {
            Ok(event) => {
                self.pending.push(event, now_ms());
                true
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "live-call publisher fell behind: rewriting this node's rows"
                );
                self.resync = true;
                true
            }
            Err(RecvError::Closed) => false,
        }
    }

    async fn flush(&mut self) {
        if self.resync {
            self.pending.clear();
            let calls = self.registry.list(None);
            match self.sink.resync(calls, now_ms()).await {
                Ok(()) => {
                    self.resync = false;
                    self.retry_at = None;
                }
                Err(error) => self.failed(&error),
            }
            return;
        }
        if self.pending.is_empty() {
            return;
        }
        let changes = self.pending.take();
        if let Err(error) = self.sink.publish(changes).await {
            self.failed(&error);
            self.resync = true;
        }
    }

    fn failed(&mut self, error: &StoreError) {
        metrics::counter!("live_registry_write_failures_total").increment(1);
        tracing::warn!(error = %error, "could not publish this node's live calls: rewriting them shortly");
        self.retry_at = Some(Instant::now() + RETRY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::active::CallPhase;
    use crate::active::coalesce::Op;
    use crate::ids::{CallId, TenantId};

    /// Records what would be written: one entry per transaction.
    #[derive(Clone, Default)]
    struct Recorder {
        writes: Arc<std::sync::Mutex<Vec<Write>>>,
        fail_next: Arc<std::sync::atomic::AtomicBool>,
        written: Arc<Notify>,
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Write {
        Publish(Vec<Change>),
        Resync(Vec<CallId>),
    }

    impl Sink for Recorder {
        async fn publish(&mut self, changes: Vec<Change>) -> Result<(), StoreError> {
            if self
                .fail_next
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                self.written.notify_one();
                return Err(StoreError::Corrupt("test"));
            }
            self.writes
                .lock()
                .expect("lock")
                .push(Write::Publish(changes));
            self.written.notify_one();
            Ok(())
        }

        async fn resync(&mut self, calls: Vec<ActiveCall>, _at: i64) -> Result<(), StoreError> {
            let ids = calls.into_iter().map(|c| c.call_id).collect();
            self.writes.lock().expect("lock").push(Write::Resync(ids));
            self.written.notify_one();
            Ok(())
        }
    }

    impl Recorder {
        fn writes(&self) -> Vec<Write> {
            self.writes.lock().expect("lock").clone()
        }

        async fn wait_writes(&self, n: usize) {
            while self.writes.lock().expect("lock").len() < n {
                self.written.notified().await;
            }
        }
    }

    fn call(tenant: &TenantId) -> ActiveCall {
        ActiveCall {
            stream_sid: None,
            ..ActiveCall::sample(tenant)
        }
    }

    fn start(
        recorder: &Recorder,
        registry: &Arc<ActiveRegistry>,
    ) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let (stop, stop_rx) = watch::channel(false);
        let publisher = Publisher::new(
            recorder.clone(),
            Arc::clone(registry),
            Duration::from_millis(100),
        );
        let task = tokio::spawn(publisher.run(registry.subscribe(), stop_rx));
        (stop, task)
    }

    #[tokio::test(start_paused = true)]
    async fn changes_within_a_window_are_one_write_and_the_next_window_another() {
        let registry = Arc::new(ActiveRegistry::default());
        let recorder = Recorder::default();
        let (stop, task) = start(&recorder, &registry);
        // The start-up rewrite, with nothing live.
        recorder.wait_writes(1).await;
        assert_eq!(recorder.writes(), vec![Write::Resync(vec![])]);

        let t = TenantId::generate();
        let a = call(&t);
        let b = call(&t);
        registry.insert(a.clone());
        registry.insert(b.clone());
        // Ten phase changes of `a` within 50 ms.
        for i in 0..10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let phase = if i % 2 == 0 {
                CallPhase::Speaking
            } else {
                CallPhase::Listening
            };
            registry.update(&a.call_id, |c| c.phase = phase);
        }
        recorder.wait_writes(2).await;
        let Write::Publish(first) = &recorder.writes()[1] else {
            panic!("{:?}", recorder.writes());
        };
        assert_eq!(first.len(), 2, "{first:?}");
        assert!(
            matches!(&first[0].op, Op::Started(c) if c.call_id == a.call_id && c.phase == CallPhase::Listening),
            "{first:?}"
        );
        assert!(matches!(&first[1].op, Op::Started(c) if c.call_id == b.call_id));

        // The window closed: later changes go in the next write.
        registry.update(&b.call_id, |c| c.phase = CallPhase::Tool);
        registry.remove(&a.call_id, "ended");
        recorder.wait_writes(3).await;
        let Write::Publish(second) = &recorder.writes()[2] else {
            panic!("{:?}", recorder.writes());
        };
        assert_eq!(second.len(), 2, "{second:?}");
        assert!(matches!(&second[0].op, Op::Updated(c) if c.phase == CallPhase::Tool));
        assert!(matches!(&second[1].op, Op::Ended { reason, .. } if reason == "ended"));

        // Nothing changes: nothing is written.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(recorder.writes().len(), 3);

        // A change just before the stop is still written.
        registry.update(&b.call_id, |c| c.phase = CallPhase::Speaking);
        stop.send_replace(true);
        task.await.expect("publisher");
        assert_eq!(recorder.writes().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_write_or_a_lag_rewrites_the_nodes_rows_from_the_registry() {
        let registry = Arc::new(ActiveRegistry::default());
        let recorder = Recorder::default();
        let (stop, task) = start(&recorder, &registry);
        recorder.wait_writes(1).await;
        let t = TenantId::generate();
        let a = call(&t);
        recorder
            .fail_next
            .store(true, std::sync::atomic::Ordering::SeqCst);
        registry.insert(a.clone());
        // The write fails; a second later the node's rows are rewritten.
        recorder.wait_writes(2).await;
        assert_eq!(recorder.writes()[1], Write::Resync(vec![a.call_id.clone()]));

        // More changes than the registry's broadcast holds, faster than a window: the
        // publisher lags and rewrites instead of writing what it missed.
        let b = call(&t);
        registry.insert(b.clone());
        for i in 0..2000 {
            let phase = if i % 2 == 0 {
                CallPhase::Speaking
            } else {
                CallPhase::Listening
            };
            registry.update(&b.call_id, |c| c.phase = phase);
        }
        registry.remove(&a.call_id, "ended");
        recorder.wait_writes(3).await;
        assert_eq!(recorder.writes()[2], Write::Resync(vec![b.call_id.clone()]));
        stop.send_replace(true);
        task.await.expect("publisher");
    }
}
