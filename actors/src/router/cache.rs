//! [`RouteCache`]: number → phone route (or none), shared by every reader without a mailbox.
//!
//! Readers look up a number and, on a miss or a stale entry, read the store themselves and
//! fill the cache. The router actor, the only writer of routes, puts every route it changes
//! in the cache once the change is committed. An epoch counter keeps a reader that read the
//! store before a change from filling the cache after it: the writer bumps the epoch before
//! it puts, and a reader fills only if the epoch it started with is still current (checked
//! under the entry's lock, which the writer's put also takes). Entries expire after a TTL,
//! which bounds how long a change made on another node can go unseen.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::store::{PhoneRoute, Store, StoreError};

/// Entry lifetime (bounds staleness of changes made on other nodes).
pub const ROUTE_CACHE_TTL: Duration = Duration::from_secs(30);
/// Numbers cached at most (past it the cache starts over: a bound under a flood of
/// unknown numbers).
const MAX_ENTRIES: usize = 10_000;

/// A cached lookup.
#[derive(Debug, Clone)]
struct Cached {
    route: Option<PhoneRoute>,
    loaded: Instant,
}

/// The shared phone-route cache (cheap to clone).
#[derive(Debug, Clone)]
pub struct RouteCache {
    map: Arc<DashMap<String, Cached>>,
    /// Bumped by every write; a reader's fill with an older epoch is dropped.
    epoch: Arc<AtomicU64>,
    ttl: Duration,
}

impl Default for RouteCache {
    fn default() -> Self {
        Self::new(ROUTE_CACHE_TTL)
    }
}

impl RouteCache {
    /// An empty cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            map: Arc::new(DashMap::new()),
            epoch: Arc::new(AtomicU64::new(0)),
            ttl,
        }
    }

    /// The route of `number` (or none), from the cache or, on a miss, the store.
    pub async fn route_for(
        &self,
        store: &Store,
        number: &str,
    ) -> Result<Option<PhoneRoute>, StoreError> {
        if let Some(hit) = self.map.get(number)
            && hit.loaded.elapsed() < self.ttl
        {
            return Ok(hit.route.clone());
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let route = store.route_by_number(number).await?;
        self.fill(number, route.clone(), epoch);
        Ok(route)
    }

    fn fill(&self, number: &str, route: Option<PhoneRoute>, epoch: u64) {
        if self.map.len() >= MAX_ENTRIES {
            self.map.clear();
        }
        let fresh = Cached {
            route,
            loaded: Instant::now(),
        };
        // The epoch is compared while the entry is locked: a writer's put of this number
        // cannot slip in between the check and the insert.
        match self.map.entry(number.to_owned()) {
            Entry::Occupied(mut o) => {
                if self.epoch.load(Ordering::Acquire) == epoch {
                    o.insert(fresh);
                }
            }
            Entry::Vacant(v) => {
                if self.epoch.load(Ordering::Acquire) == epoch {
                    v.insert(fresh);
                }
            }
        }
    }

    /// A committed change: `number` now routes to `route` (or nowhere).
    pub fn put(&self, number: &str, route: Option<PhoneRoute>) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.map.insert(
            number.to_owned(),
            Cached {
                route,
                loaded: Instant::now(),
            },
        );
    }

    /// Numbers cached now (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The cached entry of `number`, if fresh (`Some(None)`: cached as unrouted).
    pub fn cached(&self, number: &str) -> Option<Option<PhoneRoute>> {
        self.map
            .get(number)
            .filter(|c| c.loaded.elapsed() < self.ttl)
            .map(|c| c.route.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{RouteId, TenantId};
    use crate::store::{OverLimit, RouteDirection, RouteStatus};

    fn route(number: &str) -> PhoneRoute {
        PhoneRoute {
            id: RouteId::generate(),
            tenant_id: TenantId::generate(),
            number: number.into(),
            agent_key: "support".into(),
            direction: RouteDirection::Both,
            status: RouteStatus::Live,
            fallback_number: None,
            fallback_message: None,
            over_limit: OverLimit::Fallback,
            max_concurrent_calls: 1,
            test_callers: Vec::new(),
            recording_policy: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_reader_that_read_before_a_change_cannot_put_the_old_route_back() {
        let cache = RouteCache::default();
        // A reader starts (reads the store: the route is still there)…
        let started = cache.epoch.load(Ordering::Acquire);
        // …the router deletes the route and puts the change…
        cache.put("+15550001111", None);
        // …then the reader fills: dropped.
        cache.fill("+15550001111", Some(route("+15550001111")), started);
        assert_eq!(cache.cached("+15550001111"), Some(None));
        // A reader that starts after the change fills as usual.
        let started = cache.epoch.load(Ordering::Acquire);
        cache.fill("+15550002222", Some(route("+15550002222")), started);
        assert!(cache.cached("+15550002222").is_some_and(|r| r.is_some()));
    }

    #[test]
    fn entries_expire() {
        let cache = RouteCache::new(Duration::ZERO);
        cache.put("+15550001111", Some(route("+15550001111")));
        assert_eq!(cache.cached("+15550001111"), None);
        assert_eq!(cache.len(), 1);
    }
}
