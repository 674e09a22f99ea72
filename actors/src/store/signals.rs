//! The edge's readiness signals as every node's record (`edge_signals`): when a tenant's
//! signed carrier webhook last verified on each node, and when each node's `/metrics` was
//! last scraped. Each node writes its own rows (the edge flushes what changed); the
//! readiness review reads them all, so it says the same on every node.

use super::{Store, StoreError, on_pool};
use crate::ids::TenantId;

/// What a signal records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalKind {
    /// A signed carrier webhook of a tenant verified.
    SignedWebhook,
    /// `/metrics` was scraped.
    MetricsScrape,
}

impl SignalKind {
    /// Stored form.
    pub const fn as_str(self) -> &'static str {
        match self {
            SignalKind::SignedWebhook => "signed_webhook",
            SignalKind::MetricsScrape => "metrics_scrape",
        }
    }
}

/// One signal as a node saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSignal {
    /// What.
    pub kind: SignalKind,
    /// Whose: the tenant id of a signed webhook, empty for a scrape.
    pub subject: String,
    /// When (Unix ms).
    pub at: i64,
}

/// A live node and when its `/metrics` was last scraped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeScrape {
    /// The node.
    pub node_id: String,
    /// Its last scrape (Unix ms), if any.
    pub last_scrape: Option<i64>,
}

impl Store {
    /// Records what `node` saw, in one transaction; a signal never goes back in time.
    pub async fn record_edge_signals(
        &self,
        node: &str,
        signals: &[EdgeSignal],
    ) -> Result<(), StoreError> {
        if signals.is_empty() {
            return Ok(());
        }
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for s in signals {
                sqlx::query(
                    "INSERT INTO edge_signals (kind, subject, node_id, at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (kind, subject, node_id) DO UPDATE SET \
                     at = CASE WHEN excluded.at > edge_signals.at THEN excluded.at ELSE edge_signals.at END",
                )
                .bind(s.kind.as_str())
                .bind(&s.subject)
                .bind(node)
                .bind(s.at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// When a signed webhook of `tenant` last verified on any node (Unix ms).
    pub async fn last_signed_webhook(&self, tenant: &TenantId) -> Result<Option<i64>, StoreError> {
        let at: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT MAX(at) FROM edge_signals WHERE kind = 'signed_webhook' AND subject = $1",
            )
            .bind(tenant.as_str())
            .fetch_one(pool)
            .await?
        });
        Ok(at)
    }

    /// Every node serving now (heartbeat at or after `fresh_after`, not draining), by id,
    /// with its last scrape of `/metrics`.
    pub async fn node_scrapes(&self, fresh_after: i64) -> Result<Vec<NodeScrape>, StoreError> {
        let rows: Vec<(String, Option<i64>)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT n.id, s.at FROM nodes n LEFT JOIN edge_signals s \
                   ON s.kind = 'metrics_scrape' AND s.subject = '' AND s.node_id = n.id \
                 WHERE n.heartbeat_at >= $1 AND NOT n.draining ORDER BY n.id",
            )
            .bind(fresh_after)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(node_id, last_scrape)| NodeScrape {
                node_id,
                last_scrape,
            })
            .collect())
    }

    /// Forgets signals older than `before` (Unix ms): they no longer pass any gate.
    pub async fn prune_edge_signals(&self, before: i64) -> Result<u64, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM edge_signals WHERE at < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }
}
