//! Chaos from outside (issue 12 §4): faults injected into this node's live calls at an
//! admin's request (`POST /api/v1/admin/chaos/calls`), only when `CHAOS_HOOKS` is on.
//!
//! The calls are chosen from the node's live-call registry ([`ActiveRegistry`]): named ones
//! (all checked before anything is touched), or a share of them at random. Every chosen call
//! gets an audit row (`chaos.inject`) and a timeline entry (`chaos`), written together before
//! any fault, a WARN and `chaos_injections_total{mode}`, then its fault:
//!
//! - `kill`: ractor's kill of the call actor (no handler and no `post_stop` run); the
//!   [`super::supervisor::CallSupervisor`] records it (`actor_failed`, detail `killed`, the
//!   caller to the route's fallback);
//! - `panic`: [`CallMsg::Crash`]; the supervisor records the panic the same way;
//! - `ai_reset`: the call's model socket is dropped without a close frame
//!   ([`Fault::AiReset`]), and the conversation handles the loss as any other (it
//!   reconnects once with the conversation replayed; a second loss fails over);
//! - `twilio_reset`: the call's Twilio media socket is dropped without `stop` or a close
//!   frame ([`Fault::TwilioReset`]), so the leg ends as on a network reset and the carrier's
//!   `stream-ended` gets a fresh stream that resumes the conversation (the leg-loss resume).

use std::sync::Arc;

use ractor::{ActorCell, ActorRef};
use rand::seq::SliceRandom as _;
use serde_json::json;

use super::CallMsg;
use crate::active::{ActiveCall, ActiveRegistry};
use crate::ids::{CallId, TenantId};
use crate::store::{NewAudit, Store, StoreError};
use crate::tenant::AuditMeta;
use crate::time::now_ms;

/// Detail of a socket loss injected by a chaos hook (the end detail or reconnect reason).
pub const RESET_DETAIL: &str = "reset by chaos hook";

/// What is done to a chosen call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChaosMode {
    /// Kill the call actor.
    Kill,
    /// Make the call actor panic.
    Panic,
    /// Drop the model's socket.
    AiReset,
    /// Drop Twilio's media socket.
    TwilioReset,
}

impl ChaosMode {
    /// Every mode.
    pub const ALL: [ChaosMode; 4] = [
        ChaosMode::Kill,
        ChaosMode::Panic,
        ChaosMode::AiReset,
        ChaosMode::TwilioReset,
    ];

    /// Wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            ChaosMode::Kill => "kill",
            ChaosMode::Panic => "panic",
            ChaosMode::AiReset => "ai_reset",
            ChaosMode::TwilioReset => "twilio_reset",
        }
    }

    /// From the wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// A fault the call actor injects into itself (it owns the sockets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Drop the model's socket without a close frame.
    AiReset,
    /// Drop Twilio's media socket without `stop` or a close frame.
    TwilioReset,
}

/// Which live calls are touched.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// This share (0 < percent ≤ 100) of the node's live calls, of one tenant or all, at
    /// random: rounded up, so at least one when any call is live.
    Percent {
        /// The share.
        percent: f64,
        /// Only this tenant's calls.
        tenant: Option<TenantId>,
    },
    /// These calls (each must be live on this node, of `tenant` when given).
    Calls {
        /// The calls, without repeats.
        ids: Vec<CallId>,
        /// Only this tenant's calls.
        tenant: Option<TenantId>,
    },
}

impl Selection {
    /// A share of the live calls (`percent` checked).
    pub fn percent(percent: f64, tenant: Option<TenantId>) -> Result<Self, ChaosError> {
        if !(percent.is_finite() && percent > 0.0 && percent <= 100.0) {
            return Err(ChaosError::invalid(
                "percent",
                "must be a number above 0 and at most 100",
            ));
        }
        Ok(Selection::Percent { percent, tenant })
    }

    /// Named calls (at least one; each a call id).
    pub fn calls(ids: &[String], tenant: Option<TenantId>) -> Result<Self, ChaosError> {
        if ids.is_empty() {
            return Err(ChaosError::invalid(
                "call_ids",
                "must name at least one call",
            ));
        }
        let mut parsed: Vec<CallId> = Vec::with_capacity(ids.len());
        for (i, raw) in ids.iter().enumerate() {
            let id = CallId::parse(raw).ok_or_else(|| {
                ChaosError::invalid(format!("call_ids[{i}]"), "must be a call id (`call_…`)")
            })?;
            if !parsed.contains(&id) {
                parsed.push(id);
            }
        }
        Ok(Selection::Calls {
            ids: parsed,
            tenant,
        })
    }
}

/// A fault injected into one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    /// The call.
    pub call_id: CallId,
    /// Its `CallSid`.
    pub call_sid: Option<String>,
    /// Its live stream's `StreamSid`.
    pub stream_sid: Option<String>,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// When the fault was injected (Unix ms).
    pub injected_at: i64,
}

/// Errors of fault injection.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// `CHAOS_HOOKS` is off: nothing was touched.
    #[error("chaos hooks are disabled on this node (CHAOS_HOOKS)")]
    Disabled,
    /// A request field is invalid (named).
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A named call is not live on this node: nothing was touched.
    #[error("call {0} is not live on this node")]
    NotLive(CallId),
    /// The audit rows could not be written: nothing was touched.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ChaosError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ChaosError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Injects faults into this node's live calls (cheap to clone).
#[derive(Clone)]
pub struct Chaos {
    enabled: bool,
    active: Arc<ActiveRegistry>,
    store: Store,
}

impl std::fmt::Debug for Chaos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chaos")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// A live call and its actor.
struct Target {
    call: ActiveCall,
    actor: ActorCell,
}

/// The actor of a live call (`call:{call_sid}`), if it is still registered.
fn actor_of(call: &ActiveCall) -> Option<ActorCell> {
    ractor::registry::where_is(format!("call:{}", call.call_sid))
}

impl Chaos {
    /// Injection over `active`, armed when `enabled` (`CHAOS_HOOKS`).
    pub fn new(enabled: bool, active: Arc<ActiveRegistry>, store: Store) -> Self {
        Self {
            enabled,
            active,
            store,
        }
    }

    /// Whether injection is armed.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Refuses when injection is not armed (before anything else is looked at).
    pub fn check_enabled(&self) -> Result<(), ChaosError> {
        if self.enabled {
            Ok(())
        } else {
            Err(ChaosError::Disabled)
        }
    }

    /// Chooses the calls of `selection`, records every injection (audit rows and timeline
    /// entries, one transaction), then injects `mode` into each. Nothing is touched when a
    /// named call is not live or the records cannot be written.
    pub async fn inject(
        &self,
        mode: ChaosMode,
        selection: &Selection,
        meta: &AuditMeta,
    ) -> Result<Vec<Injection>, ChaosError> {
        self.check_enabled()?;
        let targets = self.choose(selection)?;
        let entries: Vec<(CallId, NewAudit, serde_json::Value)> = targets
            .iter()
            .map(|t| {
                let after = json!({
                    "mode": mode.as_str(),
                    "call_sid": t.call.call_sid,
                    "stream_sid": t.call.stream_sid,
                });
                let audit = NewAudit {
                    actor: meta.actor.clone(),
                    action: "chaos.inject",
                    tenant_id: Some(t.call.tenant_id.clone()),
                    target_type: "call",
                    target_id: t.call.call_id.as_str().to_owned(),
                    before: None,
                    after: Some(after),
                    request_id: meta.request_id.clone(),
                };
                let detail =
                    json!({"event": "chaos_injected", "mode": mode.as_str(), "by": meta.actor});
                (t.call.call_id.clone(), audit, detail)
            })
            .collect();
        if !entries.is_empty() {
            self.store.record_chaos(&entries).await?;
        }
        Ok(targets
            .into_iter()
            .map(|t| inject_one(mode, t, &meta.actor))
            .collect())
    }

    /// The live calls `selection` names (all of them live, or an error), or its share.
    fn choose(&self, selection: &Selection) -> Result<Vec<Target>, ChaosError> {
        match selection {
            Selection::Calls { ids, tenant } => {
                let live = self.active.list(tenant.as_ref());
                ids.iter()
                    .map(|id| {
                        live.iter()
                            .find(|c| &c.call_id == id)
                            .and_then(|c| {
                                actor_of(c).map(|actor| Target {
                                    call: c.clone(),
                                    actor,
                                })
                            })
                            .ok_or_else(|| ChaosError::NotLive(id.clone()))
                    })
                    .collect()
            }
            Selection::Percent { percent, tenant } => {
                let mut pool: Vec<Target> = self
                    .active
                    .list(tenant.as_ref())
                    .into_iter()
                    .filter_map(|call| actor_of(&call).map(|actor| Target { call, actor }))
                    .collect();
                let n = share(pool.len(), *percent);
                pool.shuffle(&mut rand::rng());
                pool.truncate(n);
                Ok(pool)
            }
        }
    }
}

/// How many of `live` calls `percent` is: rounded up, at least one when any is live.
pub fn share(live: usize, percent: f64) -> usize {
    if live == 0 {
        return 0;
    }
    let exact = (live as f64) * percent / 100.0;
    // Guard against 50% of 4 computing as 2.0000000001.
    let n = (exact - 1e-9).ceil();
    if n < 1.0 {
        1
    } else if n >= live as f64 {
        live
    } else {
        // In range: 1 ≤ n < live.
        n as usize
    }
}

/// Injects `mode` into one chosen call.
fn inject_one(mode: ChaosMode, target: Target, by: &str) -> Injection {
    let Target { call, actor } = target;
    metrics::counter!("chaos_injections_total", "mode" => mode.as_str()).increment(1);
    tracing::warn!(
        call_id = %call.call_id,
        call_sid = %call.call_sid,
        tenant = %call.tenant_id,
        mode = mode.as_str(),
        by,
        "chaos: injecting a fault into a live call"
    );
    let injected_at = now_ms();
    let sent = match mode {
        ChaosMode::Kill => {
            actor.kill();
            Ok(())
        }
        ChaosMode::Panic => ActorRef::<CallMsg>::from(actor).cast(CallMsg::Crash),
        ChaosMode::AiReset => ActorRef::<CallMsg>::from(actor).cast(CallMsg::Fault(Fault::AiReset)),
        ChaosMode::TwilioReset => {
            ActorRef::<CallMsg>::from(actor).cast(CallMsg::Fault(Fault::TwilioReset))
        }
    };
    if let Err(error) = sent {
        // The actor ended between the choice and the fault: its own end was recorded.
        tracing::warn!(call_id = %call.call_id, error = %error, "chaos: the call ended before its fault");
    }
    Injection {
        call_id: call.call_id,
        call_sid: Some(call.call_sid).filter(|s| !s.is_empty()),
        stream_sid: call.stream_sid,
        tenant_id: call.tenant_id,
        injected_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_rounds_up_and_touches_at_least_one_call() {
        assert_eq!(share(0, 50.0), 0);
        assert_eq!(share(4, 50.0), 2);
        assert_eq!(share(500, 10.0), 50);
        assert_eq!(share(3, 10.0), 1);
        assert_eq!(share(3, 0.001), 1);
        assert_eq!(share(7, 50.0), 4);
        assert_eq!(share(7, 100.0), 7);
    }

    #[test]
    fn modes_round_trip_and_selections_are_checked() {
        for mode in ChaosMode::ALL {
            assert_eq!(ChaosMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(ChaosMode::parse("explode"), None);
        for bad in [0.0, -1.0, 100.5, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(Selection::percent(bad, None), Err(ChaosError::Invalid { field, .. }) if field == "percent"),
                "{bad}"
            );
        }
        assert!(Selection::percent(100.0, None).is_ok());
        assert!(
            matches!(Selection::calls(&[], None), Err(ChaosError::Invalid { field, .. }) if field == "call_ids")
        );
        let ok = CallId::generate().into_string();
        assert!(
            matches!(Selection::calls(&[ok.clone(), "nope".into()], None), Err(ChaosError::Invalid { field, .. }) if field == "call_ids[1]")
        );
        let Ok(Selection::Calls { ids, .. }) = Selection::calls(&[ok.clone(), ok], None) else {
            panic!("valid call ids")
        };
        assert_eq!(ids.len(), 1);
    }
}
