//! [`ClusterViews`]: the node's writer of the cluster views (routing diagnostics and
//! auth-transport failures, `store/views.rs`), so any node's admin API lists every node's
//! entries.
//!
//! Recording never waits: an entry goes into a bounded queue (a full queue drops it and
//! counts `cluster_view_dropped_total`), so a flood of forged signatures costs a counter and
//! a queue slot, never a database write on the request's task. One task per node drains the
//! queue into the database (with the node's id) and, every [`PRUNE_EVERY`], prunes both
//! views by age and count ([`RETENTION`]). The task ends when the last handle is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::router::{MAX_DIAGNOSTICS, RoutingDiagnostic};
use crate::store::{AuthFailure, Store, ViewRetention};
use crate::time::now_ms;

/// Entries waiting for the writer at most.
pub const QUEUE: usize = 1_024;
/// Between two prunes.
pub const PRUNE_EVERY: Duration = Duration::from_secs(30);
/// How far back auth-transport alerts look.
pub const ALERT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// What the views keep: routing diagnostics for a day, at most [`MAX_DIAGNOSTICS`];
/// auth-transport failures for the alert window, at most 10,000.
pub const RETENTION: ViewRetention = ViewRetention {
    routing_max_age_ms: 24 * 60 * 60 * 1_000,
    routing_keep: MAX_DIAGNOSTICS as i64,
    auth_max_age_ms: ALERT_WINDOW.as_millis() as i64,
    auth_keep: 10_000,
};

enum Write {
    Routing(RoutingDiagnostic),
    Auth {
        at: i64,
        failure: AuthFailure,
    },
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
    /// Answered once the views are pruned.
    Prune(oneshot::Sender<()>),
}

/// The handle that records into the cluster views (cheap to clone).
#[derive(Debug, Clone)]
pub struct ClusterViews {
    tx: mpsc::Sender<Write>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Write::Routing(_) => "Routing",
            Write::Auth { .. } => "Auth",
            Write::Flush(_) => "Flush",
            Write::Prune(_) => "Prune",
        })
    }
}

impl ClusterViews {
    /// Starts the writer of node `node_id` over `store`.
    pub fn start(store: Store, node_id: String) -> Self {
        let (views, rx) = Self::queue(QUEUE);
        tokio::spawn(writer(store, node_id, rx));
        views
    }

    fn queue(capacity: usize) -> (Self, mpsc::Receiver<Write>) {
        let (tx, rx) = mpsc::channel(capacity);
        let views = Self {
            tx,
            dropped: Arc::default(),
        };
        (views, rx)
    }

    /// Entries dropped so far because the queue was full (or the writer gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records an inbound call that was not routed or was refused.
    pub fn routing(&self, d: RoutingDiagnostic) {
        self.offer(Write::Routing(d), "routing");
    }

    /// Records an authentication failure on the Twilio transport.
    pub fn auth_failure(&self, failure: AuthFailure) {
        self.offer(
            Write::Auth {
                at: now_ms(),
                failure,
            },
            "auth_transport",
        );
    }

    fn offer(&self, w: Write, view: &'static str) {
        if self.tx.try_send(w).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("cluster_view_dropped_total", "view" => view).increment(1);
        }
    }

    /// Waits until everything recorded before is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Write::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Prunes the views now (after what was recorded before), as the timer does.
    pub async fn prune(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Write::Prune(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn writer(store: Store, node_id: String, mut rx: mpsc::Receiver<Write>) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            w = rx.recv() => match w {
                Some(w) => write(&store, &node_id, w).await,
                None => return,
            },
            _ = tick.tick() => prune(&store).await,
        }
    }
}

async fn write(store: &Store, node_id: &str, w: Write) {
    let (view, result) = match w {
        Write::Routing(d) => (
            "routing",
            store.insert_routing_diagnostic(node_id, &d).await,
        ),
        Write::Auth { at, failure } => (
            "auth_transport",
            store.insert_auth_failure(node_id, at, &failure).await,
        ),
        Write::Flush(done) => {
            let _ = done.send(());
            return;
        }
        Write::Prune(done) => {
            prune(store).await;
            let _ = done.send(());
            return;
        }
    };
    if let Err(error) = result {
        metrics::counter!("cluster_view_write_failures_total", "view" => view).increment(1);
        tracing::warn!(view, error = %error, "could not record a cluster-view entry");
    }
}

async fn prune(store: &Store) {
    match store.prune_cluster_views(now_ms(), &RETENTION).await {
        Ok(n) if n > 0 => tracing::debug!(deleted = n, "cluster views pruned"),
        Ok(_) => {}
        Err(error) => tracing::warn!(error = %error, "could not prune the cluster views"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures;

    fn diagnostic(i: i64) -> RoutingDiagnostic {
        RoutingDiagnostic {
            at: now_ms() + i,
            account_sid: "AC1".into(),
            call_sid: format!("CA{i}"),
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            reason: "unrouted",
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let (views, mut rx) = ClusterViews::queue(2);
        for i in 0..5 {
            views.routing(diagnostic(i));
        }
        assert_eq!(views.dropped(), 3);
        // The writer takes one: there is room for one more.
        assert!(matches!(rx.recv().await, Some(Write::Routing(_))));
        views.auth_failure(AuthFailure::StreamToken {
            reason: "forged".into(),
        });
        assert_eq!(views.dropped(), 3);
        views.routing(diagnostic(9));
        assert_eq!(views.dropped(), 4);
    }

    #[tokio::test]
    async fn entries_are_written_with_the_node_and_pruned_to_the_retention() {
        let store = fixtures::store().await;
        let views = ClusterViews::start(store.clone(), "node-a".into());
        for i in 0..(MAX_DIAGNOSTICS as i64 + 5) {
            views.routing(diagnostic(i));
            // The queue is larger than the burst; wait for it now and then so none drop.
            if i % 100 == 99 {
                views.flush().await;
            }
        }
        views.auth_failure(AuthFailure::StreamToken {
            reason: "forged".into(),
        });
        views.flush().await;
        let all = store.recent_routing_diagnostics(1_000).await.expect("list");
        assert_eq!(all.len(), MAX_DIAGNOSTICS + 5);
        assert!(all.iter().all(|d| d.node_id == "node-a"));
        views.prune().await;
        let kept = store.recent_routing_diagnostics(1_000).await.expect("list");
        assert_eq!(kept.len(), MAX_DIAGNOSTICS);
        assert_eq!(kept[0].call_sid, format!("CA{}", MAX_DIAGNOSTICS + 4));
        let failures = store.auth_failures_since(0, 10).await.expect("list");
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].node_id, "node-a");
    }
}
