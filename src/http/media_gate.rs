//! The bound on media websockets that have not proved themselves yet: an upgrade is
//! unauthenticated until its `start` message carries a valid stream token, so the number of
//! such pending upgrades is limited per client address and in total. A refused upgrade
//! answers 429 before anything is allocated for it; a pending one holds a [`PendingStream`]
//! until its `start` arrives or its deadline (`MEDIA_START_TIMEOUT_MS`) passes.

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why an upgrade was refused (a bounded metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client address has its share pending.
    PerIp,
    /// The node has its total pending.
    Total,
}

impl Refusal {
    /// Metric label.
    pub const fn label(self) -> &'static str {
        match self {
            Refusal::PerIp => "per_ip",
            Refusal::Total => "total",
        }
    }
}

/// Counts pending media upgrades (cheap to clone).
#[derive(Clone)]
pub struct MediaGate {
    total: Arc<Semaphore>,
    per_ip: Arc<DashMap<IpAddr, usize>>,
    per_ip_max: usize,
}

/// One pending upgrade; dropping it frees its place.
pub struct PendingStream {
    _total: OwnedSemaphorePermit,
    ip: Option<IpAddr>,
    per_ip: Arc<DashMap<IpAddr, usize>>,
}

impl Drop for PendingStream {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            self.per_ip.remove_if_mut(&ip, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
        metrics::gauge!("media_upgrades_pending").decrement(1.0);
    }
}

impl MediaGate {
    /// At most `total` pending upgrades, `per_ip` of them from one address.
    pub fn new(total: usize, per_ip: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total)),
            per_ip: Arc::new(DashMap::new()),
            per_ip_max: per_ip,
        }
    }

    /// A place for an upgrade from `ip` (unknown addresses count only in the total).
    pub fn admit(&self, ip: Option<IpAddr>) -> Result<PendingStream, Refusal> {
        let permit = Arc::clone(&self.total)
            .try_acquire_owned()
            .map_err(|_| Refusal::Total)?;
        if let Some(ip) = ip {
            let mut count = self.per_ip.entry(ip).or_insert(0);
            if *count >= self.per_ip_max {
                drop(count);
                self.per_ip.remove_if(&ip, |_, n| *n == 0);
                return Err(Refusal::PerIp);
            }
            *count += 1;
        }
        metrics::gauge!("media_upgrades_pending").increment(1.0);
        Ok(PendingStream {
            _total: permit,
            ip,
            per_ip: Arc::clone(&self.per_ip),
        })
    }

    /// Upgrades pending from `ip`.
    pub fn pending_from(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).map_or(0, |n| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_per_address_and_in_total_and_freed_on_drop() {
        let gate = MediaGate::new(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = gate.admit(Some(a)).expect("a1");
        let a2 = gate.admit(Some(a)).expect("a2");
        assert_eq!(gate.admit(Some(a)).err(), Some(Refusal::PerIp));
        let b1 = gate.admit(Some(b)).expect("b1");
        assert_eq!(gate.admit(Some(b)).err(), Some(Refusal::Total));
        assert_eq!(gate.admit(None).err(), Some(Refusal::Total));
        drop(a1);
        assert_eq!(gate.pending_from(a), 1);
        let a3 = gate.admit(Some(a)).expect("a3");
        drop((a2, a3, b1));
        assert_eq!(gate.pending_from(a), 0);
        assert_eq!(gate.pending_from(b), 0);
        assert!(gate.per_ip.is_empty());
        let _n = gate.admit(None).expect("unknown address");
    }
}
