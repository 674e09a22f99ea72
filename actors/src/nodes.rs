//! This process as a node of the cluster, and the reconciliation of lost nodes' calls
//! (DESIGN §1 "Failure model", "Scale-out").
//!
//! A node has a stable id ([`NodeId`], `NODE_ID`; see the README for the default) and an
//! incarnation, the moment its process started ([`NodeInstance`]). It records itself in
//! `nodes` and refreshes its heartbeat on its own task ([`Nodes::start`]). Every call names
//! the node holding its work (admission, placement, then the node its media stream runs on).
//!
//! The reconciler task:
//! - at start-up, and on every tick after, reconciles the open calls of this node's earlier
//!   incarnations (a restart after `kill -9`): nobody else would, since the node's heartbeat
//!   is fresh again;
//! - on every tick, when it holds the `reconciler` lease (one reconciler at a time in the
//!   cluster), reconciles the calls of every node whose heartbeat is older than
//!   `stale_after`, then forgets that node once it holds no open call.
//!
//! The heartbeat task also counts the live nodes (recorded, not draining, heartbeat fresh;
//! this node always counts) into [`ClusterSize`], which divides the per-tenant request
//! budgets among the nodes ([`crate::ratelimit`]).
//!
//! Each call is claimed by one conditional `UPDATE` (its row in the cluster's live-call
//! registry ending `node_lost` in the same transaction) and reconciled by
//! [`crate::telephony::reconcile`]; a call whose reconciliation failed (the carrier did not
//! answer) is retried on the next tick. The lease holder also ends any live-call row still
//! held by a lost node or incarnation.

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ids::CallId;
use crate::ratelimit::ClusterSize;
use crate::store::StoreError;
use crate::telephony::TelephonyCtx;
use crate::telephony::outbound::RenderReply;
use crate::telephony::reconcile::{self, Reconciled};
use crate::time::now_ms;

/// Name of the cluster-wide reconciler lease.
pub const RECONCILER_LEASE: &str = "reconciler";

/// Orphans read per query.
const BATCH: u32 = 100;

/// A node's id: 1 to 128 characters of letters, digits and `.`, `_`, `-`, `:`, `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeId(String);

impl NodeId {
    /// Parses an id; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 128 {
            return Err("must be 1 to 128 characters".into());
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'))
        {
            return Err("may contain only letters, digits and . _ - : /".into());
        }
        Ok(Self(s.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One life of a node: its id and when its process started (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInstance {
    /// The node.
    pub id: NodeId,
    /// This incarnation's start.
    pub started_at: i64,
}

impl NodeInstance {
    /// A new incarnation of `id`, starting now.
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            started_at: now_ms(),
        }
    }
}

/// How the node records itself and watches the others.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Between two heartbeats (and reconciler ticks).
    pub heartbeat: Duration,
    /// A node whose heartbeat is older than this is lost.
    pub stale_after: Duration,
    /// Where the node serves (recorded for operators).
    pub address: String,
    /// The service version (recorded for operators).
    pub version: String,
}

/// What the reconciler did so far (tests and diagnostics await it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// The orphans of this node's earlier incarnations found at start-up were handled.
    pub own_done: bool,
    /// Ticks run after start-up.
    pub ticks: u64,
    /// Calls completed by reconciliation.
    pub completed: u64,
    /// Lost placements handed to a lookup task.
    pub placements: u64,
    /// Calls still live at the carrier let go of.
    pub let_go: u64,
    /// Attempts that failed (retried on the next tick).
    pub errors: u64,
}

/// This node: its heartbeat and reconciler tasks.
pub struct Nodes {
    ctx: TelephonyCtx,
    /// A node whose heartbeat is older than this is lost (not a peer to hand calls to).
    stale_after: Duration,
    stop: watch::Sender<bool>,
    report: watch::Receiver<ReconcileReport>,
    cluster: ClusterSize,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Nodes {
    /// Records this node (`ctx.node()`) and starts its heartbeat and reconciler. `render`
    /// turns the outcome of a lost placement into the response its idempotency key replays;
    /// `cluster` is kept at the number of live nodes on every heartbeat.
    pub async fn start(
        ctx: TelephonyCtx,
        settings: NodeSettings,
        render: Option<RenderReply>,
        cluster: ClusterSize,
    ) -> Result<Self, StoreError> {
        ctx.store()
            .register_node(ctx.node(), &settings.address, &settings.version)
            .await?;
        tracing::info!(node_id = %ctx.node().id, started_at = ctx.node().started_at, "node registered");
        let stale_after = settings.stale_after;
        let (stop, stop_rx) = watch::channel(false);
        let (report_tx, report) = watch::channel(ReconcileReport::default());
        let beats = tokio::spawn(heartbeat(
            ctx.clone(),
            settings.clone(),
            cluster.clone(),
            stop_rx.clone(),
        ));
        let reconciler = tokio::spawn(
            Reconciler {
                ctx: ctx.clone(),
                settings,
                render,
                retry: Vec::new(),
                report: report_tx,
            }
            .run(stop_rx),
        );
        Ok(Self {
            ctx,
            stale_after,
            stop,
            report,
            cluster,
            tasks: std::sync::Mutex::new(vec![beats, reconciler]),
        })
    }

    /// This node.
    pub fn instance(&self) -> &crate::nodes::NodeInstance {
        self.ctx.node()
    }

    /// The number of live nodes, as of the last heartbeat.
    pub fn cluster_size(&self) -> &ClusterSize {
        &self.cluster
    }

    /// The reconciler's progress.
    pub fn reports(&self) -> watch::Receiver<ReconcileReport> {
        self.report.clone()
    }

    /// Records the node as draining (it is shutting down).
    pub async fn draining(&self) {
        if let Err(error) = self.ctx.store().set_node_draining(self.ctx.node()).await {
            tracing::warn!(error = %error, "could not record the node as draining");
        }
    }

    /// Whether another node is up to take calls this one hands on when it drains: recorded,
    /// not draining, its heartbeat fresh. A failed read answers false (the caller then goes
    /// to the fallback, which needs no other node).
    pub async fn peer_available(&self) -> bool {
        let fresh_after =
            now_ms() - i64::try_from(self.stale_after.as_millis()).unwrap_or(i64::MAX);
        match self
            .ctx
            .store()
            .live_peers(self.ctx.node().id.as_str(), fresh_after)
            .await
        {
            Ok(n) => n > 0,
            Err(error) => {
                tracing::warn!(error = %error, "could not read the other nodes");
                false
            }
        }
    }

    /// Waits, at most `patience`, until every call this node completed since it started has
    /// its final carrier status: the carrier's last status callback follows the end of the
    /// media stream, and a node that stopped listening at once would leave those records
    /// `in-progress` until it or another node reconciles them. Returns how many still wait.
    pub async fn await_final_statuses(&self, patience: Duration) -> i64 {
        const POLL: Duration = Duration::from_millis(100);
        let me = self.ctx.node();
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let waiting = match self
                .ctx
                .store()
                .calls_awaiting_final_status(me.id.as_str(), me.started_at)
                .await
            {
                Ok(n) => n,
                Err(error) => {
                    tracing::warn!(error = %error, "could not read the calls awaiting their final status");
                    return -1;
                }
            };
            if waiting == 0 {
                return 0;
            }
            if tokio::time::Instant::now() + POLL > deadline {
                tracing::warn!(
                    calls = waiting,
                    "stopping before the carrier's final status of every call arrived: reconciled at the next start or by another node"
                );
                return waiting;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the heartbeat and the reconciler; forgets the node when it holds no open call
    /// (otherwise its calls are reconciled at its next start, or by another node).
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        let store = self.ctx.store();
        let me = self.ctx.node();
        if let Err(error) = store.release_lease(RECONCILER_LEASE, me.id.as_str()).await {
            tracing::warn!(error = %error, "could not release the reconciler lease");
        }
        match store.remove_node(me).await {
            Ok(true) => tracing::info!(node_id = %me.id, "node removed"),
            Ok(false) => {
                tracing::warn!(node_id = %me.id, "node stops with open calls: reconciled at its next start or by another node");
            }
            Err(error) => tracing::warn!(error = %error, "could not remove the node"),
        }
    }
}

async fn heartbeat(
    ctx: TelephonyCtx,
    settings: NodeSettings,
    cluster: ClusterSize,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(settings.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        match ctx
            .store()
            .node_heartbeat(ctx.node(), &settings.address, &settings.version, now_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                metrics::counter!("node_heartbeat_failures_total").increment(1);
                tracing::error!(node_id = %ctx.node().id, "another process holds this NODE_ID: every process needs its own");
            }
            Err(error) => {
                metrics::counter!("node_heartbeat_failures_total").increment(1);
                tracing::warn!(error = %error, "node heartbeat failed");
            }
        }
        let fresh_after =
            now_ms() - i64::try_from(settings.stale_after.as_millis()).unwrap_or(i64::MAX);
        match ctx
            .store()
            .live_peers(ctx.node().id.as_str(), fresh_after)
            .await
        {
            Ok(peers) => {
                let nodes = u32::try_from(peers.saturating_add(1)).unwrap_or(u32::MAX);
                metrics::gauge!("cluster_live_nodes").set(f64::from(nodes));
                cluster.set(nodes);
            }
            // The last count stands until the next tick.
            Err(error) => tracing::warn!(error = %error, "could not count the live nodes"),
        }
    }
}

struct Reconciler {
    ctx: TelephonyCtx,
    settings: NodeSettings,
    render: Option<RenderReply>,
    /// Calls claimed by this node whose reconciliation failed.
    retry: Vec<CallId>,
    report: watch::Sender<ReconcileReport>,
}

impl Reconciler {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let me = self.ctx.node().clone();
        self.node_orphans(me.id.as_str(), Some(me.started_at)).await;
        self.report.send_modify(|r| r.own_done = true);
        let mut tick = tokio::time::interval(self.settings.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tick.tick() => {}
            }
            self.tick(&me).await;
            self.report.send_modify(|r| r.ticks += 1);
        }
    }

    async fn tick(&mut self, me: &NodeInstance) {
        for call in std::mem::take(&mut self.retry) {
            let result = reconcile::finish(&self.ctx, &call, self.render.as_ref()).await;
            self.count(&call, result);
        }
        self.node_orphans(me.id.as_str(), Some(me.started_at)).await;
        let now = now_ms();
        let stale_ms = i64::try_from(self.settings.stale_after.as_millis()).unwrap_or(i64::MAX);
        let store = self.ctx.store().clone();
        match store
            .try_lease(RECONCILER_LEASE, me.id.as_str(), now, stale_ms)
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(error = %error, "could not take the reconciler lease");
                return;
            }
        }
        let before = now.saturating_sub(stale_ms);
        let stale = match store.stale_nodes(me.id.as_str(), before).await {
            Ok(stale) => stale,
            Err(error) => {
                tracing::warn!(error = %error, "could not read stale nodes");
                return;
            }
        };
        for node in stale {
            tracing::warn!(node_id = %node.id, heartbeat_at = node.heartbeat_at, "node lost: reconciling its calls");
            self.node_orphans(&node.id, None).await;
            match store.remove_stale_node(&node.id, before).await {
                Ok(true) => tracing::info!(node_id = %node.id, "lost node forgotten"),
                Ok(false) => {}
                Err(error) => tracing::warn!(error = %error, "could not forget a lost node"),
            }
        }
        // Rows of the live-call registry a lost node left without an open call behind
        // them (it died between a call's end and its publishing window).
        match store.end_lost_live_calls(before, now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(calls = n, "live calls of lost nodes ended"),
            Err(error) => tracing::warn!(error = %error, "could not end lost nodes' live calls"),
        }
    }

    /// Reconciles the open calls of `node` (of its incarnations before `before`).
    async fn node_orphans(&mut self, node: &str, before: Option<i64>) {
        let mut seen = HashSet::new();
        loop {
            let batch = match self.ctx.store().orphan_calls(node, before, BATCH).await {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(node_id = node, error = %error, "could not read a lost node's calls");
                    return;
                }
            };
            let fresh: Vec<_> = batch
                .into_iter()
                .filter(|o| seen.insert(o.call.clone()))
                .collect();
            if fresh.is_empty() {
                return;
            }
            for orphan in fresh {
                let result =
                    reconcile::reconcile_call(&self.ctx, &orphan, self.render.as_ref()).await;
                self.count(&orphan.call, result);
            }
        }
    }

    fn count(
        &mut self,
        call: &CallId,
        result: Result<Reconciled, crate::telephony::TelephonyError>,
    ) {
        match result {
            Ok(done) => {
                metrics::counter!("calls_reconciled_total", "result" => done.label()).increment(1);
                tracing::info!(call_id = %call, result = done.label(), "call reconciled");
                self.report.send_modify(|r| match done {
                    Reconciled::Completed(_) => r.completed += 1,
                    Reconciled::Placement => r.placements += 1,
                    Reconciled::LetGo => r.let_go += 1,
                    Reconciled::Skipped | Reconciled::AlreadyFinal => {}
                });
            }
            Err(error) => {
                metrics::counter!("calls_reconciled_total", "result" => "error").increment(1);
                tracing::warn!(call_id = %call, error = %error, "reconciliation failed: retried on the next tick");
                self.report.send_modify(|r| r.errors += 1);
                if !self.retry.contains(call) {
                    self.retry.push(call.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_checked() {
        assert!(NodeId::parse("voice-1").is_ok());
        assert!(NodeId::parse("host.example/127.0.0.1:5050").is_ok());
        assert!(NodeId::parse("").is_err());
        assert!(NodeId::parse("a b").is_err());
        assert!(NodeId::parse(&"x".repeat(129)).is_err());
    }
}
