//! The one recorder of how calls end (DESIGN §1 "Failure model"): every party that learns
//! how a call ended — the call actor at the end of its conversation, the call supervisor
//! when an actor failed or was killed, `stream-ended`, `dial-result` and status callbacks,
//! admission refusals, outbound placement, reconciliation — goes through [`Outcomes`], which
//! keeps the first end reason and completes each call exactly once, writing
//! `voice.call.completed` in the same transaction (see [`crate::store::Store::complete_call`]).
//!
//! **Invariant:** nothing else writes `calls.end_reason`, `calls.outcome` or
//! `calls.completed_at`, and nothing else emits `voice.call.completed`.

use serde_json::{Value, json};

use crate::ending::{EndReason, Outcome};
use crate::ids::CallId;
use crate::notifier::{EventKind, Notifier, envelope};
use crate::store::{CompletedCall, Completion, Store, StoreError};
use crate::time::{now_ms, rfc3339};

/// Records end reasons and completes calls (cheap to clone).
#[derive(Clone)]
pub struct Outcomes {
    store: Store,
    notifier: Notifier,
}

impl Outcomes {
    /// The recorder over `store`, announcing through `notifier`.
    pub fn new(store: Store, notifier: Notifier) -> Self {
        Self { store, notifier }
    }

    /// Records why `call` ended, unless a reason was recorded before (the first is kept).
    /// For a party that knows the reason before the call completes (a hang-up requested
    /// through the API, an actor that failed while its caller is still on the line).
    pub async fn record_reason(
        &self,
        call: &CallId,
        reason: EndReason,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        self.store.record_end_reason(call, reason, detail).await
    }

    /// Withdraws a provisional reason (recorded before anyone knew how the call ends): a
    /// handoff's leg ends `escalated`, and when nobody in the queue answered, the dial result
    /// records what followed instead. A no-op once the call is complete.
    pub async fn withdraw_reason(
        &self,
        call: &CallId,
        provisional: EndReason,
    ) -> Result<(), StoreError> {
        self.store.withdraw_end_reason(call, provisional).await
    }

    /// Completes `call` for `reason` (kept unless one was recorded before) with `outcome`
    /// (else the reason's default): once per call, and only when none of its voice sessions is
    /// still active. Returns what was completed, or `None` when someone else completed it or
    /// a live session will.
    pub async fn complete(
        &self,
        call: &CallId,
        reason: EndReason,
        detail: Option<String>,
        outcome: Option<Outcome>,
    ) -> Result<Option<CompletedCall>, StoreError> {
        let completion = Completion {
            reason,
            detail,
            outcome,
            at: now_ms(),
        };
        let done = self
            .store
            .complete_call(call, &completion, |c| {
                envelope(
                    &c.call.tenant_id,
                    EventKind::CallCompleted,
                    completed_event(c),
                    completion.at,
                )
            })
            .await?;
        if let Some(c) = &done {
            metrics::counter!(
                "calls_total",
                "direction" => c.call.direction.as_str(),
                "outcome" => c.outcome.as_str()
            )
            .increment(1);
            tracing::info!(
                call_id = %c.call.id,
                outcome = c.outcome.as_str(),
                end_reason = c.reason.as_str(),
                "call completed"
            );
            self.notifier.wake();
        }
        Ok(done)
    }
}

/// The `data` of `voice.call.completed`.
pub fn completed_event(c: &CompletedCall) -> Value {
    let call = &c.call;
    json!({
        "call_id": call.id.as_str(),
        "call_sid": call.call_sid,
        "direction": call.direction.as_str(),
        "from": call.from_number,
        "to": call.to_number,
        "route_id": call.route_id.as_ref().map(|r| r.as_str()),
        "agent_key": call.agent_key,
        "agent_version_id": call.agent_version_id,
        "outcome": c.outcome.as_str(),
        "end_reason": c.reason.as_str(),
        "end_detail": call.end_detail,
        "status": call.status,
        "answered_by": call.answered_by,
        "amd_action": call.amd_action,
        "machine_outcome": crate::telephony::amd::machine_outcome(call).map(|o| o.as_str()),
        "escalated_to": call.escalated_to,
        "session_ids": c.sessions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        "transcript_turns": c.transcript_turns,
        "function_calls": c.function_calls,
        "handoffs": c.handoffs,
        "conversation_ms": c.conversation_ms(),
        "duration_seconds": call.duration_seconds,
        "created_at": rfc3339(call.created_at),
        "started_at": call.started_at.map(rfc3339),
        "ended_at": call.ended_at.map(rfc3339),
        "completed_at": call.completed_at.map(rfc3339),
    })
}
