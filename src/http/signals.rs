//! What only the edge sees and the readiness review reads: when each tenant's signed carrier
//! webhook last verified, and when `/metrics` was last scraped. Kept per process (a scrape
//! or a webhook reaches one node); the review reads the node it is asked on.

use std::sync::atomic::{AtomicI64, Ordering};

use actors::ids::TenantId;
use actors::time::now_ms;
use dashmap::DashMap;

/// The edge's readiness signals.
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

    /// When a signed webhook of `tenant` last verified (Unix ms).
    pub fn last_signed_webhook(&self, tenant: &TenantId) -> Option<i64> {
        self.signed_webhooks.get(tenant).map(|at| *at)
    }

    /// `/metrics` was scraped now.
    pub fn scraped(&self) {
        self.last_scrape.store(now_ms(), Ordering::Relaxed);
    }

    /// When `/metrics` was last scraped (Unix ms).
    pub fn last_scrape(&self) -> Option<i64> {
        Some(self.last_scrape.load(Ordering::Relaxed)).filter(|at| *at > 0)
    }
}
