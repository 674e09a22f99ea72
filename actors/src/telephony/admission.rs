//! Inbound admission: the `To` number's route (from the router's cache) → the agent version
//! (rollout) → the database's atomic count-and-insert against the tenant's and the route's
//! live calls → the call recorded → a stream token. A refusal is recorded as a finished call
//! (`refused` or `busy`) and completed at once (outcome `refused`, one
//! `voice.call.completed`); an unrouted number only lands in the routing diagnostics.

use serde_json::json;

use super::{Fallback, TelephonyCtx, TelephonyError};
use crate::carrier::StreamInstructions;
use crate::ending::{EndReason, Outcome};
use crate::ids::CallId;
use crate::router::RoutingDiagnostic;
use crate::store::{Admission, CallDirection, CallRecord, OverLimit, RouteStatus, TenantStatus};
use crate::tenant::TwilioAccount;
use crate::time::now_ms;

/// An inbound call to route (after its signature was verified).
#[derive(Debug, Clone)]
pub struct InboundRequest {
    /// The account the webhook was signed by.
    pub account: TwilioAccount,
    /// `CallSid`.
    pub call_sid: String,
    /// `From`.
    pub from: String,
    /// `To`.
    pub to: String,
    /// The node is shutting down: give the fallback.
    pub draining: bool,
}

/// What an inbound caller gets.
#[derive(Debug, Clone)]
pub enum InboundDecision {
    /// Connect to the agent; the fallback follows if the stream cannot start.
    Connect {
        /// The recorded call.
        call: Box<CallRecord>,
        /// The stream to open.
        stream: StreamInstructions,
        /// The route's fallback.
        fallback: Fallback,
    },
    /// No route for the number (for this account): a safe message and hang up.
    Unrouted,
    /// Refused; the route's fallback.
    Fallback {
        /// What to play.
        fallback: Fallback,
        /// Why (recorded).
        reason: EndReason,
    },
    /// Refused with `<Reject reason="busy"/>`.
    Busy {
        /// Why (recorded).
        reason: EndReason,
    },
}

/// A call record of `direction` not yet stored.
pub(super) fn new_call(
    tenant: &crate::ids::TenantId,
    direction: CallDirection,
    from: &str,
    to: &str,
    node: &crate::nodes::NodeInstance,
) -> CallRecord {
    let now = now_ms();
    CallRecord {
        id: CallId::generate(),
        tenant_id: tenant.clone(),
        call_sid: None,
        account_sid: None,
        route_id: None,
        direction,
        from_number: from.to_owned(),
        to_number: to.to_owned(),
        status: String::from("queued"),
        status_sequence: None,
        agent_key: None,
        agent_version_id: None,
        end_reason: None,
        answered_by: None,
        duration_seconds: None,
        metadata: None,
        stream_sid: None,
        stream_status: None,
        after_stream: None,
        greeting: None,
        org_id: None,
        machine_detection: None,
        amd_action: None,
        amd_timeout_seconds: None,
        machine_outcome: None,
        error_code: None,
        error_message: None,
        identity_state: None,
        recording_policy: crate::recording::RecordingPolicy::Off,
        escalated_to: None,
        end_detail: None,
        outcome: None,
        completed_at: None,
        placement: None,
        node_id: Some(node.id.as_str().to_owned()),
        node_started_at: Some(node.started_at),
        created_at: now,
        updated_at: now,
        started_at: None,
        ended_at: None,
    }
}

fn diagnose(ctx: &TelephonyCtx, req: &InboundRequest, reason: &'static str) {
    metrics::counter!("inbound_refused_total", "reason" => reason).increment(1);
    tracing::warn!(call_sid = %req.call_sid, to = %req.to, reason, "inbound call not connected to an agent");
    ctx.views().routing(RoutingDiagnostic {
        at: now_ms(),
        account_sid: req.account.auth.account_sid.clone(),
        call_sid: req.call_sid.clone(),
        from: req.from.clone(),
        to: req.to.clone(),
        reason,
    });
}

/// Routes and admits an inbound call.
pub async fn inbound(
    ctx: &TelephonyCtx,
    req: InboundRequest,
) -> Result<InboundDecision, TelephonyError> {
    let route = ctx
        .routes()
        .route_for(ctx.store(), &req.to)
        .await?
        .filter(|r| {
            r.tenant_id == req.account.tenant_id && r.direction.allows(CallDirection::Inbound)
        });
    let Some(route) = route else {
        diagnose(ctx, &req, "unrouted");
        return Ok(InboundDecision::Unrouted);
    };
    // A retried webhook for a call we already took: same call, fresh token.
    if let Some(existing) = ctx.store().call_by_sid(&req.call_sid).await?
        && existing.tenant_id == route.tenant_id
    {
        let stream = ctx.stream_for(&existing);
        return Ok(InboundDecision::Connect {
            call: Box::new(existing),
            stream,
            fallback: Fallback::of(Some(&route)),
        });
    }
    let mut call = new_call(
        &route.tenant_id,
        CallDirection::Inbound,
        &req.from,
        &req.to,
        ctx.node(),
    );
    call.call_sid = Some(req.call_sid.clone());
    call.account_sid = Some(req.account.auth.account_sid.clone());
    call.route_id = Some(route.id.clone());
    call.agent_key = Some(route.agent_key.clone());
    call.status = String::from("ringing");
    let version = ctx
        .resolve(&route.tenant_id, &route.agent_key, None, &req.from)
        .await?;
    if let Ok(v) = &version {
        call.agent_version_id = Some(v.version.id.to_string());
    }
    call.recording_policy = crate::recording::RecordingPolicy::effective(
        version
            .as_ref()
            .ok()
            .and_then(|v| v.version.recording_policy),
        route.recording_policy,
    );
    let refusal = if req.draining {
        Some(EndReason::Draining)
    } else if req.account.tenant_status != TenantStatus::Active {
        Some(EndReason::TenantSuspended)
    } else if route.status == RouteStatus::Staged && !route.test_callers.contains(&req.from) {
        Some(EndReason::RouteStaged)
    } else if version.is_err() {
        Some(EndReason::NoAgentVersion)
    } else {
        None
    };
    let refusal = match refusal {
        Some(reason) => Some(reason),
        None => match ctx
            .store()
            .admit_call(
                &call,
                req.account.max_concurrent_calls,
                Some(route.max_concurrent_calls),
                ctx.live_since(),
            )
            .await?
        {
            Admission::Admitted => None,
            Admission::TenantAtLimit => Some(EndReason::TenantAtLimit),
            Admission::RouteAtLimit => Some(EndReason::RouteAtLimit),
        },
    };
    let fallback = Fallback::of(Some(&route));
    if let Some(reason) = refusal {
        diagnose(ctx, &req, reason.as_str());
        let busy = matches!(reason, EndReason::TenantAtLimit | EndReason::RouteAtLimit)
            && route.over_limit == OverLimit::Busy;
        call.status = String::from(if busy { "busy" } else { "refused" });
        // Recorded outside the limits, as a finished call, so the log shows the refusal.
        ctx.store().admit_call(&call, i64::MAX, None, 0).await?;
        ctx.store()
            .attach_status_events(&call.id, &req.call_sid, &req.account.auth.account_sid)
            .await?;
        ctx.event(
            &call.id,
            "admission",
            json!({"admitted": false, "reason": reason.as_str(), "busy": busy}),
        )
        .await;
        ctx.complete_or_log(&call.id, reason, Some(Outcome::Refused))
            .await;
        return Ok(if busy {
            InboundDecision::Busy { reason }
        } else {
            InboundDecision::Fallback { fallback, reason }
        });
    }
    ctx.store()
        .attach_status_events(&call.id, &req.call_sid, &req.account.auth.account_sid)
        .await?;
    ctx.event(
        &call.id,
        "admission",
        json!({"admitted": true, "route": route.id.as_str()}),
    )
    .await;
    if let Ok(resolved) = &version {
        ctx.record_arm(&call.id, resolved).await;
    }
    let stream = ctx.stream_for(&call);
    Ok(InboundDecision::Connect {
        call: Box::new(call),
        stream,
        fallback,
    })
}
