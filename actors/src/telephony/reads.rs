//! Reads of calls and voice sessions, always scoped to one tenant: a call with its status
//! history and timeline, the call log, and voice sessions with their transcript, tool
//! invocations and the call's handoffs.

use super::{TelephonyCtx, TelephonyError};
use crate::ids::{SessionId, TenantId};
use crate::store::{
    CallEvent, CallFilter, CallRecord, FunctionCall, Handoff, Page, SessionFilter, StatusEvent,
    TranscriptTurn, VoiceSession,
};

/// A call with its history.
#[derive(Debug, Clone)]
pub struct CallDetail {
    /// The call.
    pub call: CallRecord,
    /// Status callbacks, by sequence number.
    pub status_events: Vec<StatusEvent>,
    /// Timeline.
    pub events: Vec<CallEvent>,
    /// The pre-dial decision (outbound calls).
    pub predial: Option<crate::governance::predial::Decision>,
}

/// A voice session with its transcript.
#[derive(Debug, Clone)]
pub struct SessionDetail {
    /// The session.
    pub session: VoiceSession,
    /// Its transcript, in order.
    pub turns: Vec<TranscriptTurn>,
    /// Its tool invocations, in order.
    pub function_calls: Vec<FunctionCall>,
    /// Handoffs of its call, oldest first.
    pub handoffs: Vec<Handoff>,
}

/// A call of `tenant` (our id or `CallSid`) with its status history and timeline.
pub async fn call_detail(
    ctx: &TelephonyCtx,
    tenant: &TenantId,
    id: &str,
) -> Result<CallDetail, TelephonyError> {
    let call = ctx.lookup(tenant, id).await?;
    let status_events = ctx.store().status_events(&call.id).await?;
    let events = ctx.store().call_events(&call.id).await?;
    let predial = ctx.store().predial_decision(tenant, &call.id).await?;
    Ok(CallDetail {
        call,
        status_events,
        events,
        predial,
    })
}

/// A tenant's calls, newest first.
pub async fn list_calls(
    ctx: &TelephonyCtx,
    filter: &CallFilter,
) -> Result<Page<CallRecord>, TelephonyError> {
    Ok(ctx.store().list_calls(filter).await?)
}

/// A tenant's voice sessions.
pub async fn list_sessions(
    ctx: &TelephonyCtx,
    filter: &SessionFilter,
) -> Result<Page<VoiceSession>, TelephonyError> {
    Ok(ctx.store().list_sessions(filter).await?)
}

/// A tenant's voice session with its transcript, tool invocations and handoffs.
pub async fn session_detail(
    ctx: &TelephonyCtx,
    tenant: &TenantId,
    id: &SessionId,
) -> Result<SessionDetail, TelephonyError> {
    let store = ctx.store();
    let session = store
        .get_session(tenant, id)
        .await?
        .ok_or(TelephonyError::NotFound("voice session"))?;
    let turns = store.turns(&session.id).await?;
    let function_calls = store.session_function_calls(&session.id).await?;
    let handoffs = store.call_handoffs(&session.call_id).await?;
    Ok(SessionDetail {
        session,
        turns,
        function_calls,
        handoffs,
    })
}
