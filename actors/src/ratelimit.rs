//! Per-tenant request budgets that hold for the cluster ([`ClusterRateLimiter`]), and the
//! number of live nodes they are divided by ([`ClusterSize`]).
//!
//! A budget is `N` requests a minute per tenant for the whole cluster. Each node enforces
//! its share, `ceil(N / nodes)`, where `nodes` is the number of live nodes (recorded, not
//! draining, heartbeat fresh; this node always counts), re-read by [`crate::nodes::Nodes`]
//! on every heartbeat tick. Across the cluster a tenant gets at most `nodes × ceil(N / nodes)`
//! (N rounded up to a multiple of the node count) a minute, whatever node the load balancer
//! picks, and no request waits on the database. Between a node joining and the others'
//! next tick the sum of the shares can exceed `N` by one node's share, for one heartbeat.
//!
//! Each share is a GCRA over a one-minute window: a request costs `60 s / share`, and the
//! tenant's theoretical arrival time may run at most one window ahead of now. Re-dividing
//! keeps that time, so the fraction of the window a tenant used is kept too: a tenant that
//! used all of a small share is not handed a fresh full share when a node leaves; the larger
//! share refills faster. Keys are tenants (bounded by the tenant base).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::watch;

use crate::ids::TenantId;

/// The window a budget is counted over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How many live nodes share the cluster's budgets (at least 1; cheap to clone).
#[derive(Debug, Clone)]
pub struct ClusterSize(Arc<watch::Sender<u32>>);

impl Default for ClusterSize {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(1)))
    }
}

impl ClusterSize {
    /// Records the number of live nodes (0 is taken as 1: this node is always live).
    pub fn set(&self, nodes: u32) {
        let nodes = nodes.max(1);
        self.0.send_if_modified(|n| {
            let changed = *n != nodes;
            *n = nodes;
            changed
        });
    }

    /// The number of live nodes.
    pub fn get(&self) -> u32 {
        *self.0.borrow()
    }

    /// Changes of the number (tests await a re-division).
    pub fn subscribe(&self) -> watch::Receiver<u32> {
        self.0.subscribe()
    }
}

/// A per-tenant budget of the cluster, enforced as this node's share.
#[derive(Debug)]
pub struct ClusterRateLimiter {
    budget: NonZeroU32,
    cluster: ClusterSize,
    origin: Instant,
    /// Tenant → theoretical arrival time, nanoseconds after `origin`.
    tats: DashMap<TenantId, u64>,
}

impl ClusterRateLimiter {
    /// A limiter of `per_minute` requests a minute per tenant for the cluster.
    pub fn new(per_minute: NonZeroU32, cluster: ClusterSize) -> Self {
        Self {
            budget: per_minute,
            cluster,
            origin: Instant::now(),
            tats: DashMap::new(),
        }
    }

    /// The cluster's budget a minute.
    pub fn budget(&self) -> u32 {
        self.budget.get()
    }

    /// This node's share of the budget: `ceil(budget / live nodes)`.
    pub fn share(&self) -> u32 {
        self.budget.get().div_ceil(self.cluster.get().max(1))
    }

    /// Counts one request of `tenant`; `Err(wait)` when this node's share is spent.
    pub fn check(&self, tenant: &TenantId) -> Result<(), Duration> {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.check_at(tenant, now)
    }

    /// [`Self::check`] at `now` nanoseconds after the limiter was built.
    fn check_at(&self, tenant: &TenantId, now: u64) -> Result<(), Duration> {
        let window = u64::try_from(WINDOW.as_nanos()).unwrap_or(u64::MAX);
        let cost = window / u64::from(self.share().max(1));
        let mut tat = self.tats.entry(tenant.clone()).or_insert(0);
        let start = (*tat).max(now);
        let next = start.saturating_add(cost);
        let limit = now.saturating_add(window);
        if next > limit {
            return Err(Duration::from_nanos(next - limit));
        }
        *tat = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn limiter(per_minute: u32, nodes: u32) -> ClusterRateLimiter {
        let cluster = ClusterSize::default();
        cluster.set(nodes);
        ClusterRateLimiter::new(NonZeroU32::new(per_minute).expect("non-zero"), cluster)
    }

    fn admitted(l: &ClusterRateLimiter, t: &TenantId, at: u64, tries: u32) -> u32 {
        (0..tries).filter(|_| l.check_at(t, at).is_ok()).count() as u32
    }

    #[test]
    fn the_share_is_the_budget_divided_by_the_live_nodes_rounded_up() {
        assert_eq!(limiter(10, 1).share(), 10);
        assert_eq!(limiter(10, 2).share(), 5);
        assert_eq!(limiter(10, 3).share(), 4);
        assert_eq!(limiter(2, 5).share(), 1);
        // No node recorded yet: this one.
        assert_eq!(limiter(10, 0).share(), 10);
    }

    #[test]
    fn a_share_admits_its_burst_then_refills_at_its_rate() {
        let l = limiter(10, 2);
        let t = TenantId::generate();
        assert_eq!(admitted(&l, &t, 0, 20), 5);
        let wait = l.check_at(&t, 0).expect_err("spent");
        assert_eq!(wait, Duration::from_secs(12));
        // One request's worth (60 s / 5) later, one more.
        assert_eq!(admitted(&l, &t, 12 * SECOND, 3), 1);
        // Another tenant has its own share.
        assert_eq!(admitted(&l, &TenantId::generate(), 12 * SECOND, 20), 5);
    }

    #[test]
    fn re_division_keeps_the_fraction_used_and_gives_new_tenants_the_new_share() {
        let cluster = ClusterSize::default();
        cluster.set(2);
        let l = ClusterRateLimiter::new(NonZeroU32::new(10).expect("non-zero"), cluster.clone());
        let busy = TenantId::generate();
        assert_eq!(admitted(&l, &busy, 0, 20), 5);
        cluster.set(1);
        assert_eq!(l.share(), 10);
        // The spent share stays spent, and refills at the new rate (6 s a request).
        assert!(l.check_at(&busy, 0).is_err());
        assert_eq!(admitted(&l, &busy, 6 * SECOND, 3), 1);
        assert_eq!(admitted(&l, &TenantId::generate(), 0, 20), 10);
        // A node joining halves the share: a tenant that used half the window has half of
        // the smaller share left.
        let half = TenantId::generate();
        assert_eq!(admitted(&l, &half, 0, 5), 5);
        cluster.set(2);
        assert_eq!(admitted(&l, &half, 0, 5), 2);
    }
}
