//! The dialer: one task per node that places the calls of running campaigns.
//!
//! On every round (each tick, when woken by the API, and when the next pacing slot is due)
//! it
//! 1. settles placed attempts whose call has completed ([`AttemptOutcome::of_call`], the
//!    retry policy's [`next_step`]), each in one transaction conditional on the attempt
//!    still being `placed` (of several nodes one settles it);
//! 2. completes running campaigns whose contacts are all finished, with their
//!    `voice.campaign.completed` event in the same transaction (once);
//! 3. claims again attempts whose lease expired before their call was recorded;
//! 4. claims the due pacing slots of running campaigns inside their calling windows, each
//!    with one due contact ([`Store::claim_campaign_attempt`]: a conditional `UPDATE`, so
//!    each slot and each contact attempt goes to one node).
//!
//! Each claimed attempt runs in a task: it claims the attempt's idempotency key (derived
//! from campaign, contact and attempt number) and, when the key is new, places the call
//! through [`outbound::start`] (the pre-dial policy, admission against the tenant's limit,
//! the carrier) with that key; then, whoever placed it, the call recorded under the key is
//! the attempt's call. An attempt claimed again after a crash thus finds the earlier
//! placement instead of dialing again; one whose placement created no call (a limit, a node
//! draining) is given back to be tried later, not counted as an attempt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::{
    AttemptOutcome, Campaign, CampaignStatus, ContactState, NextStep, Progress, next_step,
};
use crate::ids::CampaignId;
use crate::notifier::{EventKind, envelope};
use crate::store::{
    ClaimedAttempt, CompletedAttempt, IdempotencyBegin, Settlement, Store, StoreError,
};
use crate::telephony::outbound::{
    self, IdempotencySlot, OutboundRequest, PlacementResult, StoredReply, Waited,
};
use crate::telephony::{TelephonyCtx, TelephonyError};
use crate::time::{now_ms, rfc3339};

/// How long an attempt's idempotency key is kept.
const KEY_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// A placement still without a recorded call this long after its key was created died
/// preparing (preparing takes a few database round trips): it never reached the carrier.
const STALE_PREPARE: Duration = Duration::from_secs(120);
/// How soon a campaign outside its calling window is looked at again.
const WINDOW_RECHECK: Duration = Duration::from_secs(30);

/// Settings of the dialer.
#[derive(Debug, Clone, Copy)]
pub struct DialerSettings {
    /// Longest wait between two rounds.
    pub tick: Duration,
    /// How long a claimed attempt is held before another node may claim it again.
    pub lease: Duration,
    /// When an attempt refused by a concurrency limit is tried again.
    pub limit_retry: Duration,
    /// When an attempt that could not be placed for another reason is tried again.
    pub error_retry: Duration,
    /// How long a stopping dialer waits for its attempts to record their placement.
    pub stop_patience: Duration,
}

impl Default for DialerSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(250),
            lease: Duration::from_secs(30),
            limit_retry: Duration::from_secs(2),
            error_retry: Duration::from_secs(30),
            stop_patience: Duration::from_secs(5),
        }
    }
}

/// The node's dialer (cheap to clone): wake it, stop it.
#[derive(Clone)]
pub struct Dialer {
    inner: Arc<Inner>,
}

struct Inner {
    wake: Notify,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Dialer {
    /// Starts the dialer of this node over the telephony edge.
    pub fn start(ctx: TelephonyCtx, settings: DialerSettings) -> Self {
        let dialer = Dialer {
            inner: Arc::new(Inner {
                wake: Notify::new(),
                stop: watch::Sender::new(false),
                task: Mutex::new(None),
            }),
        };
        let run = Run {
            ctx,
            settings,
            token: uuid::Uuid::new_v4().simple().to_string(),
            dialer: dialer.clone(),
        };
        let handle = tokio::spawn(run.run());
        if let Ok(mut task) = dialer.inner.task.lock() {
            *task = Some(handle);
        }
        dialer
    }

    /// Asks for a round now (a campaign started or resumed).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Stops claiming, waits (bounded) for the attempts in flight to record their
    /// placement, and ends the task. Idempotent.
    pub async fn stop(&self) {
        self.inner.stop.send_replace(true);
        let handle = self.inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}

struct Run {
    ctx: TelephonyCtx,
    settings: DialerSettings,
    token: String,
    dialer: Dialer,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Run {
    async fn run(self) {
        let mut stop = self.dialer.inner.stop.subscribe();
        let mut attempts = JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            let next = match self.round(&mut attempts).await {
                Ok(next) => next,
                Err(error) => {
                    metrics::counter!("campaign_dialer_errors_total").increment(1);
                    tracing::warn!(error = %error, "campaign dialer round failed");
                    None
                }
            };
            while attempts.try_join_next().is_some() {}
            let tick = self.settings.tick;
            let nap = next.map_or(tick, |at| {
                Duration::from_millis(u64::try_from((at - now_ms()).max(1)).unwrap_or(1)).min(tick)
            });
            tokio::select! {
                () = self.dialer.inner.wake.notified() => {}
                () = tokio::time::sleep(nap) => {}
                _ = stop.changed() => {}
            }
        }
        // Attempts in flight record their placement (bounded); the rest are claimed again
        // when their lease expires.
        let patience = tokio::time::sleep(self.settings.stop_patience);
        tokio::pin!(patience);
        loop {
            tokio::select! {
                joined = attempts.join_next() => if joined.is_none() { break },
                () = &mut patience => {
                    attempts.abort_all();
                    break;
                }
            }
        }
    }

    /// One round; returns when the next pacing slot is due, if any.
    async fn round(&self, attempts: &mut JoinSet<()>) -> Result<Option<i64>, StoreError> {
        let store = self.ctx.store();
        // No campaign running and no attempt in flight on any node: nothing to claim, settle
        // or complete (a campaign started here wakes the dialer; one started on another
        // node is seen at the next round).
        if !store.campaign_work_pending().await? {
            return Ok(None);
        }
        self.settle(store).await?;
        let completed = store
            .complete_finished_campaigns(now_ms(), completed_event)
            .await?;
        if !completed.is_empty() {
            for c in &completed {
                tracing::info!(campaign_id = %c.id, "campaign completed");
            }
            self.ctx.config().notifier.wake();
        }
        let now = now_ms();
        for claimed in store
            .reclaim_campaign_attempts(now, now + ms(self.settings.lease), &self.token, 20)
            .await?
        {
            tracing::warn!(attempt = %claimed.id, "campaign attempt claimed again after its lease expired");
            self.spawn(attempts, claimed);
        }
        let (due, mut next) = store.due_campaigns(now_ms()).await?;
        for campaign in due {
            if campaign
                .calling_windows
                .as_ref()
                .is_some_and(|w| !w.is_open(self.ctx.config().clock.now_ms()))
            {
                let now = now_ms();
                store
                    .defer_campaign(&campaign.id, now, now + ms(WINDOW_RECHECK))
                    .await?;
                continue;
            }
            // At most a second's worth of slots per round and campaign.
            let mut claimed_any = false;
            for _ in 0..(campaign.calls_per_minute / 60 + 2) {
                let now = now_ms();
                match store
                    .claim_campaign_attempt(
                        &campaign,
                        now,
                        now + ms(self.settings.lease),
                        &self.token,
                    )
                    .await?
                {
                    Some(claimed) => {
                        claimed_any = true;
                        self.spawn(attempts, claimed);
                    }
                    None => break,
                }
            }
            // Its next slot is at least half an interval away; a campaign held back by its
            // concurrency or with nothing due is looked at again on the tick.
            let interval = 60_000 / campaign.calls_per_minute.max(1);
            if claimed_any {
                let soon = now_ms() + interval / 2;
                next = Some(next.map_or(soon, |n| n.min(soon)));
            } else {
                // Held back: its slot goes behind the others' (at most a second away).
                let now = now_ms();
                store
                    .defer_campaign(&campaign.id, now, now + interval.clamp(250, 1000))
                    .await?;
            }
        }
        Ok(next)
    }

    fn spawn(&self, attempts: &mut JoinSet<()>, claimed: ClaimedAttempt) {
        metrics::counter!("campaign_attempts_total").increment(1);
        let ctx = self.ctx.clone();
        let settings = self.settings;
        attempts.spawn(async move {
            if let Err(error) = attempt(&ctx, &claimed, settings).await {
                tracing::warn!(attempt = %claimed.id, error = %error, "campaign attempt could not record its placement; it is claimed again when its lease expires");
            }
        });
    }

    /// Settles placed attempts whose call completed.
    async fn settle(&self, store: &Store) -> Result<(), StoreError> {
        let done = store.completed_campaign_attempts(200).await?;
        let mut campaigns: HashMap<CampaignId, Option<Campaign>> = HashMap::new();
        for a in done {
            let campaign = match campaigns.get(&a.campaign_id) {
                Some(c) => c.clone(),
                None => {
                    let c = store.campaign_by_id(&a.campaign_id).await?;
                    campaigns.insert(a.campaign_id.clone(), c.clone());
                    c
                }
            };
            let Some(campaign) = campaign else {
                continue;
            };
            let Some(call) = store.get_call_by_id(&a.call_id).await? else {
                continue;
            };
            let outcome = AttemptOutcome::of_call(&call);
            let detail = if outcome == AttemptOutcome::Refused {
                call.end_detail.clone()
            } else {
                call.end_reason.clone()
            };
            let dialed = outcome != AttemptOutcome::Refused;
            let before = store.campaign_contact_dialed(&a.contact_id).await?;
            let now = now_ms();
            let step = next_step(
                &campaign.retry,
                outcome,
                detail.as_deref(),
                before + i64::from(dialed),
                now,
            );
            let settlement = settlement(outcome, detail, dialed, &step, now);
            if store.settle_campaign_attempt(&a, &settlement).await? {
                metrics::counter!("campaign_attempt_outcomes_total", "outcome" => outcome.as_str())
                    .increment(1);
                log_settled(&a, &settlement);
            }
        }
        Ok(())
    }
}

fn settlement(
    outcome: AttemptOutcome,
    detail: Option<String>,
    dialed: bool,
    step: &NextStep,
    now: i64,
) -> Settlement {
    let (contact_state, next_attempt_at) = match step {
        NextStep::Retry { at } => (ContactState::Pending, Some(*at)),
        NextStep::Finish(state) => (*state, None),
    };
    let skip_rule = (contact_state == ContactState::Skipped).then(|| {
        detail
            .as_deref()
            .and_then(|d| d.split(':').next())
            .unwrap_or("do_not_call")
            .to_owned()
    });
    Settlement {
        outcome,
        detail,
        contact_state,
        next_attempt_at,
        skip_rule,
        dialed,
        at: now,
    }
}

fn log_settled(a: &CompletedAttempt, s: &Settlement) {
    tracing::info!(
        attempt = %a.id,
        call_id = %a.call_id,
        outcome = s.outcome.as_str(),
        contact_state = s.contact_state.as_str(),
        "campaign attempt settled"
    );
}

/// The `voice.campaign.completed` event of a campaign with its counts.
fn completed_event(c: &Campaign, p: &Progress) -> crate::store::NewEvent {
    let now = now_ms();
    envelope(
        &c.tenant_id,
        EventKind::CampaignCompleted,
        json!({
            "campaign_id": c.id.as_str(),
            "name": c.name,
            "contacts": c.contacts_total,
            "completed": p.completed,
            "skipped": p.skipped,
            "exhausted": p.exhausted,
            "attempts": p.attempts,
            "outcomes": p.outcomes,
            "completed_at": rfc3339(c.completed_at.unwrap_or(now)),
        }),
        now,
    )
}

/// What an attempt's key stores: the call it created (the reply of the placement).
fn render() -> outbound::RenderReply {
    Arc::new(|result: &PlacementResult| match result {
        Ok(call) => StoredReply {
            status: 201,
            body: json!({"call_id": call.id.as_str()}).to_string(),
        },
        Err(e) => StoredReply {
            status: 500,
            body: json!({"error": e.to_string()}).to_string(),
        },
    })
}

/// Runs one claimed attempt: its key claimed, the call placed under it when the key is new,
/// then the call recorded under the key made the attempt's (or the attempt given back).
async fn attempt(
    ctx: &TelephonyCtx,
    claimed: &ClaimedAttempt,
    settings: DialerSettings,
) -> Result<(), StoreError> {
    let store = ctx.store();
    let campaign = &claimed.campaign;
    let tenant = &campaign.tenant_id;
    let hash = crate::crypto::sha256_hex(claimed.key.as_bytes());
    let begin = store
        .idempotency_begin(tenant, &claimed.key, &hash, KEY_TTL_MS)
        .await?;
    let mut retry_after = settings.error_retry;
    // An attempt claimed again after its campaign was paused or cancelled is not placed now
    // (unless an earlier placement under its key was recorded: then it is that call).
    let running = campaign.status == CampaignStatus::Running;
    if begin == IdempotencyBegin::Started && running {
        let contact = &claimed.contact;
        let request = OutboundRequest {
            tenant_id: tenant.clone(),
            to: contact.phone.clone(),
            from: campaign.from.clone(),
            agent_key: campaign.agent_key.clone(),
            agent_version_id: campaign.agent_version_id.clone(),
            greeting: None,
            org_id: None,
            metadata: Some(json!({
                "campaign_id": campaign.id.as_str(),
                "campaign_contact_id": contact.id.as_str(),
                "campaign_attempt": claimed.attempt,
                "external_id": contact.external_id,
                "variables": contact.variables,
            })),
            machine_detection: campaign
                .machine_detection
                .map(|action| crate::telephony::amd::AmdRequest::new(action, None)),
            time_zone: campaign
                .calling_windows
                .as_ref()
                .map(|w| w.timezone.name().to_owned()),
            draining: false,
        };
        let slot = IdempotencySlot {
            tenant: tenant.clone(),
            key: claimed.key.clone(),
            render: render(),
        };
        let handle = outbound::start(ctx, request, Some(slot));
        // Back as soon as the call is recorded (the placement goes on in its own task) or
        // the placement ended without one.
        if let Waited::Done(result) = handle.wait(Duration::ZERO).await
            && let Err(e) = *result
        {
            // The campaign's own configuration refused (its `from`, agent, version, or a
            // voicemail action without the version's message): every attempt would be, so
            // the campaign is paused with the reason instead of retrying for ever.
            let misconfigured = match &e {
                TelephonyError::Invalid(field, message) => Some(format!("{field}: {message}")),
                TelephonyError::InvalidField(field, message) => Some(format!("{field}: {message}")),
                _ => None,
            };
            if let Some(reason) = misconfigured {
                tracing::warn!(campaign = %campaign.id, reason = %reason, "campaign paused: its calls cannot be placed");
                store
                    .pause_campaign_for(&campaign.id, &reason, now_ms())
                    .await?;
            } else if matches!(e, TelephonyError::AtLimit(_)) {
                retry_after = settings.limit_retry;
            } else if !matches!(
                e,
                TelephonyError::PolicyRefused { .. }
                    | TelephonyError::Carrier { .. }
                    | TelephonyError::CarrierNotFound { .. }
            ) {
                tracing::warn!(attempt = %claimed.id, error = %e, "campaign attempt not placed; tried again later");
            }
        }
    }
    match store
        .idempotency_recorded_call(tenant, &claimed.key)
        .await?
    {
        Some(call) => {
            store
                .campaign_attempt_placed(&claimed.id, &claimed.lease_token, &call)
                .await?;
        }
        None if matches!(
            begin,
            IdempotencyBegin::Started | IdempotencyBegin::Replay { .. }
        ) =>
        {
            // Nothing was dialed: the attempt is given back, to be tried later, and then —
            // only while this dialer still holds its lease, so a dialer that lost it never
            // forgets the key of another's placement — its key goes.
            if store
                .campaign_attempt_not_placed(
                    &claimed.id,
                    &claimed.contact.id,
                    &claimed.lease_token,
                    now_ms() + ms(retry_after),
                )
                .await?
            {
                store
                    .idempotency_forget_unplaced(tenant, &claimed.key, i64::MAX)
                    .await?;
            }
        }
        // Another placement of this key is still preparing: held for another lease, then
        // looked at again. One that died preparing (its key older than `STALE_PREPARE`,
        // still without a recorded call) never reached the carrier: its key goes and the
        // attempt is given back.
        None => {
            let stale = now_ms() - ms(STALE_PREPARE);
            if store
                .idempotency_forget_unplaced(tenant, &claimed.key, stale)
                .await?
            {
                store
                    .campaign_attempt_not_placed(
                        &claimed.id,
                        &claimed.contact.id,
                        &claimed.lease_token,
                        now_ms() + ms(retry_after),
                    )
                    .await?;
            } else {
                store
                    .campaign_attempt_extend(
                        &claimed.id,
                        &claimed.lease_token,
                        now_ms() + ms(settings.lease),
                    )
                    .await?;
            }
        }
    }
    Ok(())
}
