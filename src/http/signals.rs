//! What only the edge sees and the readiness review reads: when each tenant's signed carrier
//! webhook last verified, and when `/metrics` was last scraped. A webhook or a scrape reaches
//! one node: each node notes it in memory on the request (no database write on the request
//! path) and a flusher task writes what changed to `edge_signals` once a second; the review
//! reads every node's rows (and this node's memory, which may be a second ahead), so it says
//! the same on every node of a cluster.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use actors::governance::readiness::SIGNED_WEBHOOK_MAX_AGE_MS;
use actors::ids::TenantId;
use actors::store::{EdgeSignal, NodeScrape, SignalKind, Store, StoreError};
use actors::time::now_ms;
use dashmap::DashMap;

/// Between two flushes.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Signals older than this pass no gate and are pruned (checked once a minute).
const KEEP_MS: i64 = SIGNED_WEBHOOK_MAX_AGE_MS + 60 * 60 * 1000;

/// The edge's readiness signals on this node.
#[derive(Debug, Default)]
pub struct ReadinessSignals {
    signed_webhooks: DashMap<TenantId, i64>,
    /// Unix ms of the last scrape; 0 before the first.
    last_scrape: AtomicI64,
}

impl ReadinessSignals {
    /// A signed webhook of `tenant` verified now.
    pub fn signed_webhook(&self, tenant: &TenantId) {
        self.signed_webhooks.insert(tenant.clone(), now_ms());
    }

    /// `/metrics` was scraped now.
    pub fn scraped(&self) {
        self.last_scrape.store(now_ms(), Ordering::Relaxed);
    }

    fn local_signed_webhook(&self, tenant: &TenantId) -> Option<i64> {
        self.signed_webhooks.get(tenant).map(|at| *at)
    }

    fn local_scrape(&self) -> Option<i64> {
        Some(self.last_scrape.load(Ordering::Relaxed)).filter(|at| *at > 0)
    }

    /// When a signed webhook of `tenant` last verified on any node (Unix ms).
    pub async fn last_signed_webhook(
        &self,
        store: &Store,
        tenant: &TenantId,
    ) -> Result<Option<i64>, StoreError> {
        let cluster = store.last_signed_webhook(tenant).await?;
        Ok(cluster.max(self.local_signed_webhook(tenant)))
    }

    /// Every node serving now with its last scrape (this node's from memory, so a scrape
    /// just served counts before its flush); `me` is always listed.
    pub async fn node_scrapes(
        &self,
        store: &Store,
        me: &str,
        fresh_after: i64,
    ) -> Result<Vec<NodeScrape>, StoreError> {
        let mut nodes = store.node_scrapes(fresh_after).await?;
        let local = self.local_scrape();
        match nodes.iter_mut().find(|n| n.node_id == me) {
            Some(n) => n.last_scrape = n.last_scrape.max(local),
            None => nodes.push(NodeScrape {
                node_id: me.to_owned(),
                last_scrape: local,
            }),
        }
        Ok(nodes)
    }

    /// What changed since `written` (and notes it as written).
    fn changes(&self, written: &mut HashMap<(SignalKind, String), i64>) -> Vec<EdgeSignal> {
        let mut out = Vec::new();
        let mut note = |kind: SignalKind, subject: String, at: i64| {
            let seen = written.entry((kind, subject.clone())).or_insert(0);
            if at > *seen {
                *seen = at;
                out.push(EdgeSignal { kind, subject, at });
            }
        };
        for entry in &self.signed_webhooks {
            note(
                SignalKind::SignedWebhook,
                entry.key().as_str().to_owned(),
                *entry.value(),
            );
        }
        if let Some(at) = self.local_scrape() {
            note(SignalKind::MetricsScrape, String::new(), at);
        }
        out
    }

    /// Writes what changed once a second (and prunes old signals once a minute) until
    /// `stop` resolves, then writes what is left.
    pub fn spawn_flusher(
        self: Arc<Self>,
        store: Store,
        node: String,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut written = HashMap::new();
            let mut ticks = tokio::time::interval(FLUSH_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut pruned_at = 0_i64;
            tokio::pin!(stop);
            loop {
                let stopping = tokio::select! {
                    _ = ticks.tick() => false,
                    () = &mut stop => true,
                };
                let changes = self.changes(&mut written);
                if let Err(error) = store.record_edge_signals(&node, &changes).await {
                    tracing::warn!(error = %error, "could not record the edge's readiness signals");
                    // Written again on the next tick.
                    for c in changes {
                        written.insert((c.kind, c.subject), 0);
                    }
                }
                let now = now_ms();
                if now - pruned_at >= 60_000 {
                    pruned_at = now;
                    if let Err(error) = store.prune_edge_signals(now - KEEP_MS).await {
                        tracing::warn!(error = %error, "could not prune old readiness signals");
                    }
                }
                if stopping {
                    return;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_each_signal_once_until_it_moves() {
        let signals = ReadinessSignals::default();
        let tenant = TenantId::generate();
        let mut written = HashMap::new();
        assert!(signals.changes(&mut written).is_empty());
        signals.signed_webhook(&tenant);
        signals.scraped();
        let first = signals.changes(&mut written);
        assert_eq!(first.len(), 2);
        assert!(signals.changes(&mut written).is_empty());
        signals
            .signed_webhooks
            .insert(tenant.clone(), first[0].at.max(first[1].at) + 5);
        let again = signals.changes(&mut written);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].kind, SignalKind::SignedWebhook);
        assert_eq!(again[0].subject, tenant.as_str());
    }
}
