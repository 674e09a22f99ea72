//! The media stream's start and end.
//!
//! [`start`]: a media socket sent `start`; its stream token is verified (signature, expiry,
//! tenant, `CallSid`), its nonce consumed in the database (single use, cluster-wide), and the
//! stream recorded as started. It runs in a task that owns its outcome: when the media
//! handler stops waiting (its socket is refused, so Twilio asks `stream-ended`), a start
//! that had not consumed the token changes nothing, and one that went through is turned
//! into the route's fallback — the caller never reached the agent.
//!
//! [`stream_ended`]: the `<Connect action>`. It follows the continuation the leg's owner
//! planned (`calls.after_stream`); without one, a call whose voice session is still active
//! (its actor died or is dying) or whose stream never started or failed gets the fallback,
//! anything else a hang-up. It completes the call for a hang-up or a fallback (a no-op when
//! someone completed it already or a live session's owner will), never for a resume or a
//! handoff, which go on.

use serde_json::json;
use tokio::sync::oneshot;
use tracing::Instrument as _;

use super::{AfterStream, CallbackTarget, Fallback, TelephonyCtx, TelephonyError};
use crate::ending::{Continuation, EndReason, Outcome};
use crate::ids::{CallId, TenantId};
use crate::store::CallRecord;
use crate::stream_token::TokenError;
use crate::time::now_ms;

/// A media stream that sent `start`.
#[derive(Debug, Clone)]
pub struct StreamStart {
    /// Tenant of the account in `start.accountSid`.
    pub tenant_id: TenantId,
    /// `start.callSid`.
    pub call_sid: String,
    /// `start.streamSid`.
    pub stream_sid: String,
    /// `start.customParameters.token`.
    pub token: String,
}

/// How long `stream-ended` waits for a leg still live (on this node or another) to record
/// its end: its tool tasks are given 2 s to record their cancellation, then its recorder is
/// flushed and the end written in one transaction. Well inside the carrier's 15 s timeout.
const LEG_END_PATIENCE: std::time::Duration = std::time::Duration::from_secs(8);

/// How often `stream-ended` reads whether a leg live on another node has ended.
const LEG_END_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Detail recorded when a stream started after its media handler gave up.
const ABANDONED_DETAIL: &str = "the media handler gave up before the stream started";

/// Verifies and consumes the stream token and records the stream as started, in a task that
/// owns the outcome; the answer arrives on the returned receiver. Dropping the receiver
/// (the handler stopped waiting) hands the caller to the fallback if the start went through.
pub fn start(
    ctx: &TelephonyCtx,
    s: StreamStart,
) -> oneshot::Receiver<Result<CallRecord, TelephonyError>> {
    let (tx, rx) = oneshot::channel();
    let ctx = ctx.clone();
    let span = tracing::info_span!("stream_start", call_sid = %s.call_sid, tenant = %s.tenant_id);
    let task = async move {
        let result = start_once(&ctx, s, &tx).await;
        match result {
            Ok(None) => {}
            Ok(Some(call)) => {
                if let Err(Ok(call)) = tx.send(Ok(call)) {
                    abandoned(&ctx, &call.id).await;
                }
            }
            Err(e) => {
                if let TelephonyError::Token(t) = &e {
                    metrics::counter!("stream_token_rejections_total", "reason" => t.label())
                        .increment(1);
                }
                let _ = tx.send(Err(e));
            }
        }
    };
    tokio::spawn(task.instrument(span));
    rx
}

/// The start, step by step; `Ok(None)` when the handler gave up before anything changed.
async fn start_once(
    ctx: &TelephonyCtx,
    s: StreamStart,
    waiting: &oneshot::Sender<Result<CallRecord, TelephonyError>>,
) -> Result<Option<CallRecord>, TelephonyError> {
    let claims = ctx.config().keys.verify(&s.token, now_ms() / 1000)?;
    let call_id = CallId::parse(&claims.call).ok_or(TokenError::Forged)?;
    if claims.tenant != s.tenant_id.as_str() {
        return Err(TokenError::Forged.into());
    }
    if claims.sid.as_deref().is_some_and(|sid| sid != s.call_sid) {
        return Err(TokenError::Forged.into());
    }
    let call = ctx
        .store()
        .get_call(&s.tenant_id, &call_id)
        .await?
        .ok_or(TokenError::Forged)?;
    if call
        .call_sid
        .as_deref()
        .is_some_and(|sid| sid != s.call_sid)
    {
        return Err(TokenError::Forged.into());
    }
    if waiting.is_closed() {
        // Nobody waits any more: the socket is gone and the caller gets the fallback.
        metrics::counter!("stream_starts_abandoned_total").increment(1);
        tracing::warn!(call_id = %call.id, "stream start arrived after the media handler gave up: ignored");
        return Ok(None);
    }
    if !ctx
        .store()
        .consume_nonce(&claims.nonce, &call.id, claims.exp * 1000)
        .await?
    {
        return Err(TokenError::Reused.into());
    }
    if waiting.is_closed() {
        // The handler gave up while the token was consumed (the database was slow): the
        // stream is not marked started, so `stream-ended` gives the fallback.
        metrics::counter!("stream_starts_abandoned_total").increment(1);
        tracing::warn!(call_id = %call.id, "media handler gave up while the token was consumed: fallback");
        return Ok(None);
    }
    if call.call_sid.is_none() {
        // An outbound call whose carrier answer never arrived: the stream names it.
        ctx.store()
            .record_placed(&call.id, &s.call_sid, &call.status)
            .await?;
        ctx.wake_placement(&call.id);
    }
    ctx.store()
        .set_stream_state(&call.id, Some(&s.stream_sid), "started")
        .await?;
    // The stream runs here: if this node is lost, its calls are reconciled.
    ctx.store().hold_call(&call.id, ctx.node()).await?;
    ctx.event(
        &call.id,
        "stream",
        json!({"event": "websocket-started", "stream_sid": s.stream_sid}),
    )
    .await;
    let call = ctx.store().get_call_by_id(&call.id).await?.unwrap_or(call);
    // The call is in progress: its recording starts off this path, in a task of its own.
    crate::recording::spawn_start(ctx, &call);
    Ok(Some(call))
}

/// A stream started for a socket already refused: the caller never reached the agent, so
/// `stream-ended` gives the fallback.
async fn abandoned(ctx: &TelephonyCtx, call: &CallId) {
    metrics::counter!("stream_starts_abandoned_total").increment(1);
    tracing::warn!(call_id = %call, "media handler gave up while the stream started: fallback");
    if let Err(error) = ctx
        .outcomes()
        .record_reason(call, EndReason::StreamFailed, Some(ABANDONED_DETAIL))
        .await
    {
        tracing::warn!(call_id = %call, error = %error, "could not record the abandoned stream");
    }
    if let Err(error) = ctx
        .store()
        .set_continuation(call, Some(Continuation::Fallback))
        .await
    {
        tracing::warn!(call_id = %call, error = %error, "could not plan the fallback");
    }
}

/// How long a node that holds a leg gets to accept a connection.
const HOLDER_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Whether the node at `address` (`host:port`) accepts a connection: a killed process's
/// port refuses at once.
async fn node_reachable(address: &str) -> bool {
    matches!(
        tokio::time::timeout(
            HOLDER_PROBE_TIMEOUT,
            tokio::net::TcpStream::connect(address)
        )
        .await,
        Ok(Ok(_))
    )
}

/// Waits, at most [`LEG_END_PATIENCE`], until no session of `call` is live on another
/// node; true when it ended in time. (Across processes there is no signal to await: the
/// database is read every [`LEG_END_POLL`].)
async fn leg_ended_elsewhere(ctx: &TelephonyCtx, call: &CallId) -> Result<bool, TelephonyError> {
    let deadline = tokio::time::Instant::now() + LEG_END_PATIENCE;
    let mut ticks = tokio::time::interval(LEG_END_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if ctx
            .store()
            .leg_live_elsewhere(call, ctx.node())
            .await?
            .is_none()
        {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
    }
}

/// The `<Connect action>`: what the caller hears once the AI leg ended.
pub async fn stream_ended(
    ctx: &TelephonyCtx,
    target: CallbackTarget,
) -> Result<AfterStream, TelephonyError> {
    let Some(mut call) = ctx.find_call(&target).await? else {
        return Ok(AfterStream::Hangup);
    };
    // The carrier may ask before the leg's owner on this node has recorded how its leg
    // ended (the socket dropped under it): let it finish, then read what it decided.
    if ctx.config().active.contains(&call.id) {
        if !ctx.config().active.ended(&call.id, LEG_END_PATIENCE).await {
            tracing::warn!(call_id = %call.id, "the leg did not end in time: answering without it");
        }
        call = ctx.find_call(&target).await?.unwrap_or(call);
    } else if let Some(holder) = ctx.store().leg_live_elsewhere(&call.id, ctx.node()).await? {
        // Behind a load balancer the carrier's request may reach another node than the
        // leg's: that node records the end in one transaction, read here once it is in —
        // unless the node is gone (killed: nobody will record it; the reconciler does).
        if node_reachable(&holder).await {
            tracing::info!(call_id = %call.id, holder = %holder, "stream-ended: waiting for the leg on another node to record its end");
            if !leg_ended_elsewhere(ctx, &call.id).await? {
                tracing::warn!(call_id = %call.id, "the leg on another node did not end in time: answering without it");
            }
            call = ctx.find_call(&target).await?.unwrap_or(call);
        } else {
            tracing::warn!(call_id = %call.id, holder = %holder, "stream-ended: the node of the leg is unreachable: answering without it");
        }
    }
    let route = match &call.route_id {
        Some(id) => ctx.store().get_route(id).await?,
        None => None,
    };
    let fallback = || AfterStream::Fallback(Fallback::of(route.as_ref()));
    let live_session = || async {
        Ok::<_, TelephonyError>(
            ctx.store()
                .sessions_of_call(&call.id)
                .await?
                .iter()
                .any(|s| s.status == "active"),
        )
    };
    // (answer, what to complete the call with when nobody recorded a reason).
    let (decision, completion) = match call.after_stream {
        Some(Continuation::Resume) => {
            ctx.store()
                .take_continuation(&call.id, Continuation::Resume)
                .await?;
            (AfterStream::Resume(ctx.stream_for(&call)), None)
        }
        // The carrier was told to dial a queue; `dial-result` decides and completes.
        Some(Continuation::Handoff) => (AfterStream::Hangup, None),
        Some(Continuation::Fallback) => (
            fallback(),
            Some((EndReason::StreamFailed, Some(Outcome::Fallback))),
        ),
        Some(Continuation::Hangup) => (AfterStream::Hangup, Some((EndReason::Completed, None))),
        None if live_session().await? => (
            // Its actor died or is dying: the call supervisor records why and completes.
            fallback(),
            Some((EndReason::ActorFailed, Some(Outcome::Fallback))),
        ),
        None => match call.stream_status.as_deref() {
            // The stream never started or failed: the caller still deserves a human.
            None | Some("error") => (
                fallback(),
                Some((EndReason::StreamFailed, Some(Outcome::Fallback))),
            ),
            Some(_) => (AfterStream::Hangup, Some((EndReason::Completed, None))),
        },
    };
    let label = match &decision {
        AfterStream::Hangup => "hangup",
        AfterStream::Fallback(_) => "fallback",
        AfterStream::Resume(_) => "resume",
    };
    ctx.event(
        &call.id,
        "stream",
        json!({"event": "connect-action", "decision": label}),
    )
    .await;
    if let Some((reason, outcome)) = completion {
        ctx.complete_or_log(&call.id, reason, outcome).await;
    }
    Ok(decision)
}
