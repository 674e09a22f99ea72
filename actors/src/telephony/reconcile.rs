//! Reconciling a call whose node was lost (DESIGN §1 "Failure model"): the node died
//! (`kill -9`, power loss) while the call was live on it, or while it asked the carrier to
//! place it. [`reconcile_call`] takes the call over with a conditional claim (so two
//! reconcilers never both act on it), then:
//!
//! 1. fails the voice sessions that were live on the lost node (`node_lost`), through
//!    [`Store::fail_live_sessions`](crate::store::Store::fail_live_sessions), the one place
//!    live sessions of a dead owner are closed;
//! 2. an outbound call whose carrier request was in flight (no `CallSid`, placement
//!    `pending` or `unknown`) is looked up at the carrier by the request's parameters in a
//!    task that owns the outcome, like the placement it replaces
//!    ([`super::outbound::resume_lost`]): the call and its `Idempotency-Key` record get the
//!    real result, so a retry replays it and never dials twice;
//! 3. otherwise the carrier is asked for the call (`GET Calls/{sid}`): an ended call gets the
//!    carrier's final status, duration and end time (its final status callback was lost),
//!    and completes (`node_lost`, or the carrier's reason when nobody answered); a call
//!    still live whose stream ran on the lost node completes as `fallback` and is then
//!    redirected to the route's fallback through the carrier (a failed redirect is logged
//!    and counted; the record stays final); a call still live with nothing of it on a node
//!    (ringing, with a human) is let go of, and the carrier's callbacks finish it wherever
//!    they arrive.
//!
//! Every completion goes through [`Outcomes`](crate::outcome::Outcomes): one
//! `voice.call.completed` per call, whoever else tries.

use serde_json::json;

use super::outbound::{self, RenderReply};
use super::{Fallback, TelephonyCtx, TelephonyError};
use crate::carrier::CallChange;
use crate::ending::{EndReason, Outcome};
use crate::ids::CallId;
use crate::store::{OrphanCall, Placement, is_terminal_status};
use crate::time::now_ms;

/// Detail recorded with `node_lost`.
pub const NODE_LOST_DETAIL: &str = "the node holding the call was lost";

/// What reconciling a call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    /// Someone else had claimed or completed it.
    Skipped,
    /// Completed with this outcome (by this reconciler).
    Completed(Outcome),
    /// Already complete (another party completed it first): nothing left to do.
    AlreadyFinal,
    /// Its placement is being looked up at the carrier (a task owns the outcome).
    Placement,
    /// Still live at the carrier with nothing of it on a node: let go of.
    LetGo,
}

impl Reconciled {
    /// Metric label.
    pub const fn label(self) -> &'static str {
        match self {
            Reconciled::Skipped => "skipped",
            Reconciled::Completed(_) => "completed",
            Reconciled::AlreadyFinal => "already_final",
            Reconciled::Placement => "placement",
            Reconciled::LetGo => "let_go",
        }
    }
}

/// Claims `orphan` for this node and reconciles it (see the module documentation).
/// `render` stores the outcome of a lost placement for its idempotency key.
pub async fn reconcile_call(
    ctx: &TelephonyCtx,
    orphan: &OrphanCall,
    render: Option<&RenderReply>,
) -> Result<Reconciled, TelephonyError> {
    match ctx.store().claim_orphan(orphan, ctx.node()).await {
        Ok(true) => {}
        Ok(false) => return Ok(Reconciled::Skipped),
        Err(error) => {
            // Not claimed: the next pass finds it again.
            tracing::warn!(call_id = %orphan.call, error = %error, "could not claim a lost call");
            return Ok(Reconciled::Skipped);
        }
    }
    ctx.event(
        &orphan.call,
        "node",
        json!({"event": "reconciling", "lost_node": orphan.node_id, "by": ctx.node().id.as_str()}),
    )
    .await;
    finish(ctx, &orphan.call, render).await
}

/// Reconciles a call this node has claimed (again, after a failed attempt). An outbound
/// call's `Idempotency-Key` still waiting for its outcome gets it.
pub async fn finish(
    ctx: &TelephonyCtx,
    id: &CallId,
    render: Option<&RenderReply>,
) -> Result<Reconciled, TelephonyError> {
    let done = settle(ctx, id, render).await?;
    if let Some(render) = render
        && matches!(
            done,
            Reconciled::Completed(_) | Reconciled::AlreadyFinal | Reconciled::LetGo
        )
    {
        outbound::settle_lost_key(ctx, id, render).await;
    }
    Ok(done)
}

async fn settle(
    ctx: &TelephonyCtx,
    id: &CallId,
    render: Option<&RenderReply>,
) -> Result<Reconciled, TelephonyError> {
    let store = ctx.store();
    let ended = store
        .fail_live_sessions(id, EndReason::NodeLost, Some(NODE_LOST_DETAIL))
        .await?;
    // Sessions that held a conversation are evaluated like any other ended session.
    ctx.evaluations().sessions_closed(&ended);
    let lost_sessions = ended.sessions.len();
    let call = store
        .get_call_by_id(id)
        .await?
        .ok_or(TelephonyError::NotFound("call"))?;
    if call.completed_at.is_some() {
        return Ok(Reconciled::AlreadyFinal);
    }
    let Some(sid) = call.call_sid.clone() else {
        if matches!(
            call.placement,
            Some(Placement::Pending | Placement::Unknown)
        ) {
            outbound::resume_lost(ctx, call, render.cloned());
            return Ok(Reconciled::Placement);
        }
        // Never reached the carrier and nobody is placing it: it ends here.
        store
            .record_carrier_end(id, "failed", None, now_ms())
            .await?;
        return complete(ctx, id, EndReason::NodeLost, None).await;
    };
    if matches!(
        call.placement,
        Some(Placement::Pending | Placement::Unknown)
    ) {
        // Its status callbacks named the call before the node died.
        store.set_placement(id, Placement::Placed).await?;
    }
    let account = ctx.account(&call.tenant_id).await?;
    let carrier = &ctx.config().carrier;
    let found = carrier
        .fetch_call(&account.auth, &sid)
        .await
        .map_err(|error| TelephonyError::Carrier {
            error,
            call_id: Some(id.clone()),
        })?;
    let Some(at_carrier) = found else {
        store
            .record_carrier_end(id, "failed", None, now_ms())
            .await?;
        ctx.event(
            id,
            "node",
            json!({"event": "reconciled", "carrier": "not_found"}),
        )
        .await;
        return complete(ctx, id, EndReason::NodeLost, None).await;
    };
    ctx.event(
        id,
        "node",
        json!({"event": "reconciled", "carrier_status": at_carrier.status, "lost_sessions": lost_sessions}),
    )
    .await;
    if is_terminal_status(&at_carrier.status) {
        store
            .record_carrier_end(id, &at_carrier.status, at_carrier.duration_secs, now_ms())
            .await?;
        // Nobody answered: the carrier's reason; answered and lost with the node: node_lost.
        let reason = match EndReason::of_carrier_status(&at_carrier.status) {
            Some(EndReason::Completed) | None => EndReason::NodeLost,
            Some(reason) => reason,
        };
        return complete(ctx, id, reason, None).await;
    }
    if lost_sessions == 0 && call.stream_status.as_deref() != Some("started") {
        // Ringing, or with a human (a handoff's dial): nothing of it ran on the lost node.
        store.let_go_of_call(id, ctx.node()).await?;
        return Ok(Reconciled::LetGo);
    }
    // The caller is with the fallback: sent there now (their stream died with the node), or
    // by `stream-ended` on a live node. The record is final first, so that a node that was
    // only cut off (not dead) and sees its stream end completes nothing else.
    let done = complete(ctx, id, EndReason::NodeLost, Some(Outcome::Fallback)).await?;
    if call.stream_status.as_deref() == Some("started") {
        let route = match &call.route_id {
            Some(route) => store.get_route(route).await?,
            None => None,
        };
        let fallback = Fallback::of(route.as_ref());
        let change = CallChange::Fallback {
            message: fallback.message,
            number: fallback.number,
        };
        match carrier.update_call(&account.auth, &sid, &change).await {
            Ok(()) => {
                ctx.event(
                    id,
                    "carrier",
                    json!({"action": "fallback", "initiator": "reconciler"}),
                )
                .await;
            }
            Err(error) if error.already_ended => {}
            Err(error) => {
                metrics::counter!("reconcile_fallback_failures_total").increment(1);
                tracing::warn!(call_id = %id, error = %error, "could not send the caller of a lost call to the fallback");
            }
        }
    }
    Ok(done)
}

async fn complete(
    ctx: &TelephonyCtx,
    id: &CallId,
    reason: EndReason,
    outcome: Option<Outcome>,
) -> Result<Reconciled, TelephonyError> {
    let detail = (reason == EndReason::NodeLost).then(|| NODE_LOST_DETAIL.to_owned());
    Ok(
        match ctx.outcomes().complete(id, reason, detail, outcome).await? {
            Some(done) => Reconciled::Completed(done.outcome),
            None => Reconciled::AlreadyFinal,
        },
    )
}
