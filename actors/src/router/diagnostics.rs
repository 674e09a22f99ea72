//! [`RoutingLog`]: the most recent inbound calls that could not be routed or were refused,
//! a bounded ring shared by admission (which records) and the diagnostics API (which reads).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

/// Entries kept.
pub const MAX_DIAGNOSTICS: usize = 200;

/// A recent inbound call that could not be routed or was refused.
#[derive(Debug, Clone)]
pub struct RoutingDiagnostic {
    /// When (Unix ms).
    pub at: i64,
    /// Signing account.
    pub account_sid: String,
    /// `CallSid`.
    pub call_sid: String,
    /// `From`.
    pub from: String,
    /// `To`.
    pub to: String,
    /// Why (`unrouted`, or the refusal's end reason).
    pub reason: &'static str,
}

/// The shared ring (cheap to clone). The lock is a std mutex held for a push or a copy,
/// never across an `.await`.
#[derive(Debug, Clone, Default)]
pub struct RoutingLog {
    ring: Arc<Mutex<VecDeque<RoutingDiagnostic>>>,
}

impl RoutingLog {
    /// Records one entry, dropping the oldest past [`MAX_DIAGNOSTICS`].
    pub fn record(&self, d: RoutingDiagnostic) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.len() >= MAX_DIAGNOSTICS {
            ring.pop_front();
        }
        ring.push_back(d);
    }

    /// The entries, newest first.
    pub fn recent(&self) -> Vec<RoutingDiagnostic> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: i64) -> RoutingDiagnostic {
        RoutingDiagnostic {
            at: i,
            account_sid: "AC1".into(),
            call_sid: format!("CA{i}"),
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            reason: "unrouted",
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_entries_newest_first() {
        let log = RoutingLog::default();
        for i in 0..(MAX_DIAGNOSTICS as i64 + 5) {
            log.record(entry(i));
        }
        let recent = log.recent();
        assert_eq!(recent.len(), MAX_DIAGNOSTICS);
        assert_eq!(recent[0].at, MAX_DIAGNOSTICS as i64 + 4);
        assert_eq!(recent[MAX_DIAGNOSTICS - 1].at, 5);
    }
}
