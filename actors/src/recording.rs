//! Call recording (issue 16, part 1), as plain functions over the telephony context:
//!
//! - the policy ([`RecordingPolicy`]: `off | on | on_with_disclosure`) of a route and of an
//!   agent version, the effective policy of a call ([`RecordingPolicy::effective`], stored on
//!   the call at admission) and the disclosure line the agent says before anything else
//!   ([`opening`]);
//! - [`spawn_start`]: when the call's media stream starts, a task asks the carrier for a
//!   dual-channel recording with a signed status callback and records its own result (the
//!   recording row, or the failure on the call's timeline; a failure never fails the call);
//! - [`status_callback`]: the carrier's recording status callbacks, idempotent, only for the
//!   tenant whose account signed them (`voice.recording.completed` once);
//! - reads, the proxied media ([`media`]) and [`delete`] (at the carrier, then here, who and
//!   why recorded);
//! - retention: [`sweep`] deletes the recordings past their tenant's retention, claimed with
//!   a lease so two nodes never delete one twice; [`spawn_sweeper`] runs it periodically.

use std::time::Duration;

use serde_json::json;

use crate::carrier::{CarrierAuth, CarrierError, RecordingMedia, StartRecording};
use crate::ids::{CallId, RecordingId, TenantId};
use crate::notifier::{EventKind, envelope};
use crate::store::{
    CallRecord, RecordingCallback, RecordingRecord, RecordingUpsert, StoreError, SweepCandidate,
};
use crate::telephony::{CallbackTarget, TelephonyCtx};
use crate::time::now_ms;

/// What the agent says first on a call recorded with disclosure when its version sets no line.
pub const DEFAULT_DISCLOSURE: &str = "This call is recorded for quality and training.";

/// `RecordingStatusCallbackEvent`s asked for.
pub const CALLBACK_EVENTS: [&str; 3] = ["in-progress", "completed", "absent"];

/// Who deleted a recording the retention sweeper removed.
pub const RETENTION_ACTOR: &str = "retention";

/// Whether calls are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordingPolicy {
    /// Not recorded.
    #[default]
    Off,
    /// Recorded.
    On,
    /// Recorded, and the agent says the disclosure line before anything else.
    OnWithDisclosure,
}

impl RecordingPolicy {
    /// Every policy.
    pub const ALL: [RecordingPolicy; 3] = [
        RecordingPolicy::Off,
        RecordingPolicy::On,
        RecordingPolicy::OnWithDisclosure,
    ];

    /// Stored and wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            RecordingPolicy::Off => "off",
            RecordingPolicy::On => "on",
            RecordingPolicy::OnWithDisclosure => "on_with_disclosure",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether the call is recorded.
    pub const fn records(self) -> bool {
        !matches!(self, RecordingPolicy::Off)
    }

    /// The policy of a call: the version's when set, else the route's, else `off`.
    pub fn effective(version: Option<Self>, route: Option<Self>) -> Self {
        version.or(route).unwrap_or_default()
    }
}

/// The opening line of a call: under `on_with_disclosure` the disclosure (the version's, or
/// [`DEFAULT_DISCLOSURE`]) comes first, before the greeting.
pub fn opening(
    policy: RecordingPolicy,
    disclosure: Option<&str>,
    greeting: Option<String>,
) -> Option<String> {
    if policy != RecordingPolicy::OnWithDisclosure {
        return greeting;
    }
    let line = disclosure
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or(DEFAULT_DISCLOSURE);
    Some(match greeting {
        Some(g) if !g.trim().is_empty() => format!("{line} {}", g.trim()),
        _ => line.to_owned(),
    })
}

/// Errors of the recording API.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// No such call or recording for this tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The recording was deleted.
    #[error("the recording was deleted")]
    Gone,
    /// The tenant has no carrier credentials.
    #[error("the tenant has no Twilio credentials")]
    NoCredentials,
    /// The carrier failed.
    #[error("carrier: {0}")]
    Carrier(CarrierError),
    /// The store failed.
    #[error("store")]
    Store(#[from] StoreError),
    /// The tenant directory failed.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

async fn auth_of(ctx: &TelephonyCtx, tenant: &TenantId) -> Result<CarrierAuth, RecordingError> {
    match ctx.config().tenants.account_of_tenant(tenant).await {
        Ok(Some(account)) => Ok(account.auth),
        Ok(None) => Err(RecordingError::NoCredentials),
        Err(e) => Err(RecordingError::Unavailable(e.to_string())),
    }
}

/// The recording status callback URL of a call.
pub fn callback_url(ctx: &TelephonyCtx, call: &CallId) -> String {
    format!(
        "{}/api/v1/recording-status?call_id={call}",
        ctx.urls().http_base
    )
}

/// Starts the call's recording in a task when its policy records and the carrier knows the
/// call; the task records its own result. Never fails the call.
pub fn spawn_start(ctx: &TelephonyCtx, call: &CallRecord) {
    if !call.recording_policy.records() {
        return;
    }
    let Some(call_sid) = call.call_sid.clone() else {
        return;
    };
    let (ctx, tenant, call_id) = (ctx.clone(), call.tenant_id.clone(), call.id.clone());
    tokio::spawn(async move {
        if let Err(error) = start(&ctx, &tenant, &call_id, &call_sid).await {
            tracing::warn!(call_id = %call_id, error = %error, "recording not started");
            let detail = json!({"event": "start_failed", "error": error.to_string()});
            if let Err(error) = ctx
                .store()
                .add_call_event(&call_id, "recording", &detail)
                .await
            {
                tracing::warn!(call_id = %call_id, error = %error, "could not record the recording failure");
            }
        }
    });
}

async fn start(
    ctx: &TelephonyCtx,
    tenant: &TenantId,
    call: &CallId,
    call_sid: &str,
) -> Result<(), RecordingError> {
    if ctx.store().call_has_recording(call).await? {
        // A resumed stream: the call's recording runs already.
        return Ok(());
    }
    let auth = auth_of(ctx, tenant).await?;
    let request = StartRecording {
        channels: String::from("dual"),
        status_callback_url: callback_url(ctx, call),
        status_callback_events: CALLBACK_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
    };
    let started = ctx
        .config()
        .carrier
        .start_recording(&auth, call_sid, &request)
        .await
        .map_err(RecordingError::Carrier)?;
    ctx.store()
        .insert_recording(&crate::store::NewRecording {
            tenant_id: tenant.clone(),
            call_id: call.clone(),
            recording_sid: started.sid.clone(),
            account_sid: auth.account_sid.clone(),
            channels: started.channels,
            status: started.status.clone(),
            started_at: started.started_at,
            now: now_ms(),
        })
        .await?;
    let detail =
        json!({"event": "started", "recording_sid": started.sid, "channels": started.channels});
    ctx.store()
        .add_call_event(call, "recording", &detail)
        .await?;
    Ok(())
}

/// A recording status callback as received (signature verified).
#[derive(Debug, Clone)]
pub struct StatusReport {
    /// Which call, as far as the callback says.
    pub target: CallbackTarget,
    /// `AccountSid` (the signing account).
    pub account_sid: String,
    /// `RecordingSid`.
    pub recording_sid: String,
    /// `RecordingStatus`.
    pub status: String,
    /// `RecordingDuration`.
    pub duration_seconds: Option<i64>,
    /// `RecordingChannels`.
    pub channels: Option<i64>,
    /// `RecordingStartTime` (Unix ms).
    pub started_at: Option<i64>,
}

/// Applies a status callback: only a call of the signing tenant is changed (another's, or
/// a SID of another call, changes nothing). Emits `voice.recording.completed` once.
pub async fn status_callback(ctx: &TelephonyCtx, report: StatusReport) -> Result<(), StoreError> {
    let Some(call) = find_call(ctx, &report.target).await? else {
        tracing::debug!(call_sid = %report.target.call_sid, "recording callback for no call of the tenant: ignored");
        return Ok(());
    };
    let cb = RecordingCallback {
        tenant_id: call.tenant_id.clone(),
        call_id: call.id.clone(),
        account_sid: report.account_sid,
        recording_sid: report.recording_sid,
        status: report.status,
        duration_seconds: report.duration_seconds,
        channels: report.channels,
        started_at: report.started_at,
        now: now_ms(),
    };
    let outcome = ctx
        .store()
        .apply_recording_callback(&cb, |r| {
            envelope(
                &r.tenant_id,
                EventKind::RecordingCompleted,
                view(r),
                now_ms(),
            )
        })
        .await?;
    match outcome {
        RecordingUpsert::Applied { completed_now, .. } => {
            if completed_now {
                ctx.config().notifier.wake();
            }
        }
        RecordingUpsert::Foreign => {
            tracing::warn!(call_id = %call.id, "recording callback names another call's recording: ignored");
        }
    }
    Ok(())
}

async fn find_call(
    ctx: &TelephonyCtx,
    target: &CallbackTarget,
) -> Result<Option<CallRecord>, StoreError> {
    let call = match &target.call_id {
        Some(id) => ctx.store().get_call(&target.tenant_id, id).await?,
        None => ctx.store().call_by_sid(&target.call_sid).await?,
    };
    Ok(call.filter(|c| {
        c.tenant_id == target.tenant_id && c.call_sid.as_deref() == Some(target.call_sid.as_str())
    }))
}

/// The JSON of a recording (the API's view and the event's data).
pub fn view(r: &RecordingRecord) -> serde_json::Value {
    let at = |ms: Option<i64>| ms.map(crate::time::rfc3339);
    json!({
        "id": r.id.as_str(),
        "call_id": r.call_id.as_str(),
        "recording_sid": r.recording_sid,
        "channels": r.channels,
        "status": r.status,
        "duration_seconds": r.duration_seconds,
        "started_at": at(r.started_at),
        "completed_at": at(r.completed_at),
        "created_at": crate::time::rfc3339(r.created_at),
        "deleted_at": at(r.deleted_at),
        "deleted_by": r.deleted_by,
        "deleted_reason": r.deleted_reason,
    })
}

/// The recordings of a call of `tenant` (404 when the call is not the tenant's).
pub async fn list(
    ctx: &TelephonyCtx,
    tenant: &TenantId,
    call: &CallId,
) -> Result<Vec<RecordingRecord>, RecordingError> {
    if ctx.store().get_call(tenant, call).await?.is_none() {
        return Err(RecordingError::NotFound("call"));
    }
    Ok(ctx.store().list_recordings(tenant, call).await?)
}

/// One recording of a call of `tenant`.
pub async fn get(
    ctx: &TelephonyCtx,
    tenant: &TenantId,
    call: &CallId,
    id: &RecordingId,
) -> Result<RecordingRecord, RecordingError> {
    ctx.store()
        .get_recording(tenant, call, id)
        .await?
        .ok_or(RecordingError::NotFound("recording"))
}

/// The recording's WAV from the carrier, with the tenant's own credentials, `range`
/// forwarded. A deleted recording is [`RecordingError::Gone`].
pub async fn media(
    ctx: &TelephonyCtx,
    tenant: &TenantId,
    call: &CallId,
    id: &RecordingId,
    range: Option<String>,
) -> Result<RecordingMedia, RecordingError> {
    let recording = get(ctx, tenant, call, id).await?;
    if recording.deleted_at.is_some() {
        return Err(RecordingError::Gone);
    }
    let auth = auth_of(ctx, tenant).await?;
    ctx.config()
        .carrier
        .fetch_recording_media(&auth, &recording.recording_sid, range)
        .await
        .map_err(RecordingError::Carrier)?
        .ok_or(RecordingError::NotFound("recording"))
}

/// Deletes a recording at the carrier, then here (who and why recorded, with a timeline
/// entry). Deleting a deleted recording changes nothing.
pub async fn delete(
    ctx: &TelephonyCtx,
    tenant: &TenantId,
    call: &CallId,
    id: &RecordingId,
    by: &str,
    reason: &str,
) -> Result<RecordingRecord, RecordingError> {
    let recording = get(ctx, tenant, call, id).await?;
    if recording.deleted_at.is_some() {
        return Ok(recording);
    }
    let auth = auth_of(ctx, tenant).await?;
    ctx.config()
        .carrier
        .delete_recording(&auth, &recording.recording_sid)
        .await
        .map_err(RecordingError::Carrier)?;
    let deleted = ctx
        .store()
        .mark_recording_deleted(&recording.id, by, reason, None, now_ms())
        .await?;
    match deleted {
        Some(r) => Ok(r),
        None => get(ctx, tenant, call, id).await,
    }
}

/// A tenant's recording retention in days (`None`: kept until deleted); `Ok(None)` outer
/// when the tenant does not exist.
pub async fn retention(
    store: &crate::store::Store,
    tenant: &TenantId,
) -> Result<Option<Option<i64>>, StoreError> {
    if store.get_tenant(tenant).await?.is_none() {
        return Ok(None);
    }
    Ok(Some(store.recording_retention(tenant).await?))
}

/// Sets a tenant's recording retention, audited in the same transaction; `Ok(false)` when
/// the tenant does not exist (nothing written).
pub async fn set_retention(
    store: &crate::store::Store,
    tenant: &TenantId,
    days: Option<i64>,
    meta: &crate::tenant::AuditMeta,
) -> Result<bool, StoreError> {
    let Some(before) = retention(store, tenant).await? else {
        return Ok(false);
    };
    let audit = crate::store::NewAudit {
        actor: meta.actor.clone(),
        action: "tenant_recording_settings.update",
        tenant_id: Some(tenant.clone()),
        target_type: "tenant",
        target_id: tenant.to_string(),
        before: Some(json!({"recording_retention_days": before})),
        after: Some(json!({"recording_retention_days": days})),
        request_id: meta.request_id.clone(),
    };
    store
        .put_recording_retention(tenant, days, now_ms(), &audit)
        .await?;
    Ok(true)
}

/// How long a sweeper holds its claim on a recording.
const SWEEP_LEASE: Duration = Duration::from_secs(120);
/// Recordings claimed per sweep.
const SWEEP_BATCH: u32 = 50;

/// Deletes, at the carrier and here, the recordings past their tenant's retention at `now`
/// (Unix ms): each claimed with a lease first, so two sweepers never delete one twice; a
/// carrier failure leaves the row to a later sweep (its lease expires). Returns how many
/// were deleted.
pub async fn sweep(ctx: &TelephonyCtx, now: i64) -> Result<usize, StoreError> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let lease = i64::try_from(SWEEP_LEASE.as_millis()).unwrap_or(120_000);
    let claimed = ctx
        .store()
        .claim_expired_recordings(now, now + lease, &token, SWEEP_BATCH)
        .await?;
    let mut deleted = 0;
    for SweepCandidate { recording, token } in claimed {
        let auth = match auth_of(ctx, &recording.tenant_id).await {
            Ok(auth) => auth,
            Err(error) => {
                tracing::warn!(recording = %recording.id, error = %error, "retention: no credentials");
                continue;
            }
        };
        if let Err(error) = ctx
            .config()
            .carrier
            .delete_recording(&auth, &recording.recording_sid)
            .await
        {
            tracing::warn!(recording = %recording.id, error = %error, "retention: carrier refused the deletion");
            continue;
        }
        let days = ctx
            .store()
            .recording_retention(&recording.tenant_id)
            .await?
            .unwrap_or_default();
        let reason = format!("older than the tenant's retention of {days} days");
        if ctx
            .store()
            .mark_recording_deleted(&recording.id, RETENTION_ACTOR, &reason, Some(&token), now)
            .await?
            .is_some()
        {
            metrics::counter!("recordings_deleted_total", "by" => RETENTION_ACTOR).increment(1);
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Runs [`sweep`] every `interval` against the telephony clock until aborted.
pub fn spawn_sweeper(ctx: TelephonyCtx, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = ctx.config().clock.now_ms();
            match sweep(&ctx, now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "retention: recordings deleted"),
                Err(error) => tracing::warn!(error = %error, "retention sweep failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_policy_prefers_the_version_then_the_route() {
        use RecordingPolicy::*;
        assert_eq!(RecordingPolicy::effective(None, None), Off);
        assert_eq!(RecordingPolicy::effective(None, Some(On)), On);
        assert_eq!(
            RecordingPolicy::effective(Some(Off), Some(OnWithDisclosure)),
            Off
        );
        assert_eq!(
            RecordingPolicy::effective(Some(OnWithDisclosure), None),
            OnWithDisclosure
        );
        for p in RecordingPolicy::ALL {
            assert_eq!(RecordingPolicy::parse(p.as_str()), Some(p));
        }
    }

    #[test]
    fn the_disclosure_comes_before_the_greeting() {
        use RecordingPolicy::*;
        let hello = Some(String::from("Hello!"));
        assert_eq!(opening(On, None, hello.clone()), hello);
        assert_eq!(
            opening(OnWithDisclosure, None, hello.clone()).as_deref(),
            Some("This call is recorded for quality and training. Hello!")
        );
        assert_eq!(
            opening(OnWithDisclosure, Some("We record."), None).as_deref(),
            Some("We record.")
        );
    }
}
