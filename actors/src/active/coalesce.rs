//! Coalescing of registry changes per call over one publishing window: a call's phase may
//! change several times a second, and only what a reader could still tell apart at the end
//! of the window is written (pure; the publisher owns the window and the clock).
//!
//! Per call, in order: consecutive updates keep only the latest state (an update after a
//! start keeps it a start); an end drops the update right before it; starts and ends are
//! all kept, so a call that starts and ends within one window is still announced.

use std::collections::HashMap;

use super::{ActiveCall, ActiveEvent};
use crate::ids::{CallId, TenantId};

/// One change to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The call went live on this node.
    Started(ActiveCall),
    /// Its latest state.
    Updated(ActiveCall),
    /// It ended here.
    Ended {
        /// Its tenant.
        tenant_id: TenantId,
        /// Why.
        reason: String,
    },
}

/// A change of one call, with when it happened (Unix ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The call.
    pub call_id: CallId,
    /// What to write.
    pub op: Op,
    /// When (the latest of the changes it stands for).
    pub at: i64,
}

/// The changes of one window, coalesced per call.
#[derive(Debug, Default)]
pub struct Pending {
    /// Calls in the order of their first change in the window.
    order: Vec<CallId>,
    ops: HashMap<CallId, Vec<(Op, i64)>>,
    received: usize,
}

impl Pending {
    /// Folds one registry change in.
    pub fn push(&mut self, event: ActiveEvent, at: i64) {
        self.received += 1;
        let (call_id, op) = match event {
            ActiveEvent::Started(call) => (call.call_id.clone(), Op::Started(call)),
            ActiveEvent::Updated(call) => (call.call_id.clone(), Op::Updated(call)),
            ActiveEvent::Ended {
                call_id,
                tenant_id,
                reason,
            } => (call_id, Op::Ended { tenant_id, reason }),
        };
        let ops = self.ops.entry(call_id.clone()).or_insert_with(|| {
            self.order.push(call_id);
            Vec::new()
        });
        match op {
            Op::Updated(call) => match ops.last_mut() {
                Some((Op::Started(last) | Op::Updated(last), when)) => {
                    *last = call;
                    *when = at;
                }
                _ => ops.push((Op::Updated(call), at)),
            },
            ended @ Op::Ended { .. } => {
                if matches!(ops.last(), Some((Op::Updated(_), _))) {
                    ops.pop();
                }
                ops.push((ended, at));
            }
            started @ Op::Started(_) => ops.push((started, at)),
        }
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Registry changes folded in since the last [`Pending::take`].
    pub fn received(&self) -> usize {
        self.received
    }

    /// Forgets everything (a resync rewrites the node's rows instead).
    pub fn clear(&mut self) {
        self.order.clear();
        self.ops.clear();
        self.received = 0;
    }

    /// The coalesced changes, call by call in the order they first changed.
    pub fn take(&mut self) -> Vec<Change> {
        let mut ops = std::mem::take(&mut self.ops);
        let changes = std::mem::take(&mut self.order)
            .into_iter()
            .flat_map(|call_id| {
                ops.remove(&call_id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |(op, at)| Change {
                        call_id: call_id.clone(),
                        op,
                        at,
                    })
            })
            .collect();
        self.received = 0;
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::active::CallPhase;

    fn call(tenant: &TenantId) -> ActiveCall {
        ActiveCall {
            stream_sid: None,
            ..ActiveCall::sample(tenant)
        }
    }

    fn with(c: &ActiveCall, phase: CallPhase) -> ActiveCall {
        ActiveCall { phase, ..c.clone() }
    }

    fn ended(c: &ActiveCall, reason: &str) -> ActiveEvent {
        ActiveEvent::Ended {
            call_id: c.call_id.clone(),
            tenant_id: c.tenant_id.clone(),
            reason: reason.into(),
        }
    }

    #[test]
    fn updates_fold_into_the_latest_state_and_a_start_stays_a_start() {
        let t = TenantId::generate();
        let a = call(&t);
        let b = call(&t);
        let mut p = Pending::default();
        p.push(ActiveEvent::Updated(with(&b, CallPhase::Listening)), 1);
        p.push(ActiveEvent::Started(a.clone()), 2);
        for (i, phase) in [CallPhase::Speaking, CallPhase::Listening, CallPhase::Tool]
            .into_iter()
            .enumerate()
        {
            p.push(ActiveEvent::Updated(with(&a, phase)), 3 + i as i64);
        }
        p.push(ActiveEvent::Updated(with(&b, CallPhase::Speaking)), 9);
        assert_eq!(p.received(), 6);
        let changes = p.take();
        assert_eq!(
            changes,
            vec![
                Change {
                    call_id: b.call_id.clone(),
                    op: Op::Updated(with(&b, CallPhase::Speaking)),
                    at: 9,
                },
                Change {
                    call_id: a.call_id.clone(),
                    op: Op::Started(with(&a, CallPhase::Tool)),
                    at: 5,
                },
            ]
        );
        assert!(p.is_empty());
        assert_eq!(p.received(), 0);
    }

    #[test]
    fn an_end_drops_the_update_before_it_and_a_short_call_is_still_announced() {
        let t = TenantId::generate();
        let a = call(&t);
        let b = call(&t);
        let mut p = Pending::default();
        p.push(ActiveEvent::Updated(with(&a, CallPhase::Speaking)), 1);
        p.push(ended(&a, "ended"), 2);
        p.push(ActiveEvent::Started(b.clone()), 3);
        p.push(ActiveEvent::Updated(with(&b, CallPhase::Listening)), 4);
        p.push(ended(&b, "failed"), 5);
        // A resumed leg of the same call on this node: ended, then started again.
        p.push(ActiveEvent::Started(b.clone()), 6);
        let kinds: Vec<(&CallId, &str)> = p
            .take()
            .iter()
            .map(|c| {
                let kind = match &c.op {
                    Op::Started(_) => "started",
                    Op::Updated(_) => "updated",
                    Op::Ended { .. } => "ended",
                };
                (
                    if c.call_id == a.call_id {
                        &a.call_id
                    } else {
                        &b.call_id
                    },
                    kind,
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (&a.call_id, "ended"),
                (&b.call_id, "started"),
                (&b.call_id, "ended"),
                (&b.call_id, "started"),
            ]
        );
    }
}
