//! Tenant event webhooks: emission ([`Notifier`]) and delivery ([`NotifierActor`]).
//!
//! **Emission.** [`Notifier::emit`] writes the event (its full envelope, exactly the bytes
//! that will be sent) and, when the tenant's event webhook accepts it, its delivery row in
//! one transaction (the outbox), then wakes the dispatcher. Nothing is sent from the
//! caller's task; an event recorded is an event delivered at least once, across crashes and
//! restarts.
//!
//! **Delivery.** `NotifierActor` (a singleton under [`crate::supervisor::RootSupervisor`],
//! restarted from its child spec) owns a ractor factory of [`worker::DeliveryWorker`]s. On
//! start, on every tick and whenever woken, it claims due deliveries with a lease (one
//! conditional `UPDATE`, see [`Store::claim_deliveries`]; an expired lease is claimed again,
//! so a crash mid-delivery loses nothing) up to the number of workers, and dispatches them.
//! A worker signs the envelope with the tenant's secret ([`crate::egress::SIGNATURE_HEADER`]
//! plus `StateSet-Event-Id`, `StateSet-Event` and `Idempotency-Key: <event id>`), posts it
//! through [`Egress`] (SSRF-safe), and records the attempt: a 2xx is `delivered`; otherwise the
//! next attempt is scheduled with exponential backoff and full jitter; after the last attempt
//! the delivery is `failed` and `voice.webhook.delivery_failed` is emitted (never about a
//! failure notice itself).
//!
//! Messages: [`NotifierMsg`] (the deliveries API goes through it too). On a graceful stop the
//! workers are killed (no waiting on a slow endpoint) and their claims handed back.
//!
//! Metrics: `webhook_deliveries_total{outcome}` (`delivered`, `retry`, `failed`),
//! `webhook_delivery_seconds`, `webhook_outbox_pending`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ractor::factory::queues::DefaultQueue;
use ractor::factory::routing::QueuerRouting;
use ractor::factory::{Factory, FactoryArguments, FactoryRef, worker_builder};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;

use crate::crypto::SecretBox;
use crate::egress::Egress;
use crate::ids::{DeliveryId, EventId, TenantId};
use crate::meter::{HandleTimer, kind};
use crate::singleton::SingletonRef;
use crate::store::{
    DeliveryFilter, NewEvent, Page, Redelivery, Store, StoreError, WebhookAttempt, WebhookDelivery,
};
use crate::time::{now_ms, rfc3339};

pub mod worker;

use worker::{DeliveryContext, DeliveryJob, DeliveryWorker};

/// The `api_version` of every envelope.
pub const API_VERSION: &str = "2026-11-01";

/// The events a tenant can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `voice.call.started`: a call was connected to the agent.
    CallStarted,
    /// `voice.call.completed`: a call ended, with its record.
    CallCompleted,
    /// `voice.call.escalated`: a call was handed to a human (with the handoff context).
    CallEscalated,
    /// `voice.callback.created`: a callback task was created.
    CallbackCreated,
    /// `voice.session.evaluated`: a finished session was scored.
    SessionEvaluated,
    /// `voice.webhook.delivery_failed`: a delivery ran out of attempts.
    DeliveryFailed,
    /// `voice.rollout.rolled_back`: a canary was halted (by an admin or its guardrails).
    RolloutRolledBack,
    /// `voice.rollout.promoted`: a canary advanced a stage or became the stable version.
    RolloutPromoted,
    /// `voice.recording.completed`: a call's recording is complete at the carrier.
    RecordingCompleted,
    /// `voice.handoff.accepted`: an operator accepted a warm transfer after its whisper.
    HandoffAccepted,
    /// `voice.campaign.completed`: every contact of an outbound campaign is finished.
    CampaignCompleted,
}

impl EventKind {
    /// Every event.
    pub const ALL: [EventKind; 11] = [
        EventKind::CallStarted,
        EventKind::CallCompleted,
        EventKind::CallEscalated,
        EventKind::CallbackCreated,
        EventKind::SessionEvaluated,
        EventKind::DeliveryFailed,
        EventKind::RolloutRolledBack,
        EventKind::RolloutPromoted,
        EventKind::RecordingCompleted,
        EventKind::HandoffAccepted,
        EventKind::CampaignCompleted,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::CallStarted => "voice.call.started",
            EventKind::CallCompleted => "voice.call.completed",
            EventKind::CallEscalated => "voice.call.escalated",
            EventKind::CallbackCreated => "voice.callback.created",
            EventKind::SessionEvaluated => "voice.session.evaluated",
            EventKind::DeliveryFailed => "voice.webhook.delivery_failed",
            EventKind::RolloutRolledBack => "voice.rollout.rolled_back",
            EventKind::RolloutPromoted => "voice.rollout.promoted",
            EventKind::RecordingCompleted => "voice.recording.completed",
            EventKind::HandoffAccepted => "voice.handoff.accepted",
            EventKind::CampaignCompleted => "voice.campaign.completed",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        EventKind::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// Builds an event and its envelope
/// `{id, event, created_at (RFC 3339), tenant_id, api_version, data}`.
pub fn envelope(
    tenant: &TenantId,
    event: EventKind,
    data: serde_json::Value,
    now: i64,
) -> NewEvent {
    let id = EventId::generate();
    let payload = json!({
        "id": id.as_str(),
        "event": event.as_str(),
        "created_at": rfc3339(now),
        "tenant_id": tenant.as_str(),
        "api_version": API_VERSION,
        "data": data,
    })
    .to_string();
    NewEvent {
        id,
        tenant_id: tenant.clone(),
        event: event.as_str().to_owned(),
        payload,
        created_at: now,
    }
}

/// Settings of event delivery.
#[derive(Debug, Clone)]
pub struct NotifierSettings {
    /// Attempts before a delivery is `failed` (`EVENT_WEBHOOK_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// Backoff base: the delay before attempt n+1 is up to `base·2^(n-1)`, capped at
    /// [`MAX_BACKOFF`] (`EVENT_WEBHOOK_BACKOFF_MS`).
    pub backoff_base: Duration,
    /// Deadline of one attempt (`EVENT_WEBHOOK_TIMEOUT_MS`).
    pub timeout: Duration,
    /// How often due deliveries are looked for (besides wake-ups).
    pub tick: Duration,
    /// Deliveries in flight at once on this node (factory workers).
    pub workers: usize,
    /// Largest answer read from an endpoint.
    pub max_response: usize,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            backoff_base: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            tick: Duration::from_secs(1),
            workers: 4,
            max_response: 64 * 1024,
        }
    }
}

/// Longest delay between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Margin of a lease beyond the attempt's deadline.
const LEASE_MARGIN: Duration = Duration::from_secs(60);

/// Upper bound of the delay after `failed_attempts` failed attempts (1-based):
/// `base·2^(failed_attempts-1)`, capped at [`MAX_BACKOFF`].
pub fn backoff_ceiling(base: Duration, failed_attempts: i64) -> Duration {
    let exponent = u32::try_from((failed_attempts - 1).clamp(0, 30)).unwrap_or(30);
    base.saturating_mul(2u32.saturating_pow(exponent))
        .min(MAX_BACKOFF)
}

/// The delay before the next attempt: uniformly random up to [`backoff_ceiling`] (full
/// jitter, so endpoints coming back are not hit by every retry at once).
pub fn backoff_delay(base: Duration, failed_attempts: i64) -> Duration {
    let ceiling =
        u64::try_from(backoff_ceiling(base, failed_attempts).as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::random_range(0..=ceiling))
}

// === Notifier ===

/// The emission handle (cheap to clone): records events and wakes the dispatcher.
#[derive(Clone)]
pub struct Notifier {
    store: Store,
    actor: SingletonRef<NotifierMsg>,
    /// Set while a `Wake` is queued, so a burst of events sends one.
    wake_pending: Arc<AtomicBool>,
}

impl Notifier {
    pub(crate) fn new(store: Store, actor: SingletonRef<NotifierMsg>) -> Self {
        Self {
            store,
            actor,
            wake_pending: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Records `event` for `tenant` with `data` and, when the tenant's event webhook accepts
    /// it, its delivery (one transaction), then wakes the dispatcher. Returns the event id,
    /// or `None` when the tenant does not exist (nothing recorded).
    pub async fn emit(
        &self,
        tenant: &TenantId,
        event: EventKind,
        data: serde_json::Value,
    ) -> Result<Option<EventId>, StoreError> {
        let new = envelope(tenant, event, data, now_ms());
        let Some(queued) = self.store.enqueue_event(&new).await? else {
            return Ok(None);
        };
        if queued.delivery_id.is_some() {
            self.wake();
        }
        Ok(Some(queued.event_id))
    }

    /// Asks the dispatcher to look for due deliveries now.
    pub fn wake(&self) {
        if self.wake_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        match self.actor.get() {
            Some(actor) if actor.cast(NotifierMsg::Wake).is_ok() => {}
            // Down or restarting: its start picks everything up.
            _ => self.wake_pending.store(false, Ordering::Release),
        }
    }

    /// The dispatcher (current incarnation), for the deliveries API; `None` while it is down.
    pub fn actor(&self) -> Option<crate::singleton::Mailbox<NotifierMsg>> {
        self.actor.get()
    }

    /// A receiver that changes on every (re)start of the dispatcher.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<ActorRef<NotifierMsg>>> {
        self.actor.subscribe()
    }

    pub(crate) fn wake_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.wake_pending)
    }
}

// === NotifierActor ===

/// A delivery with its attempts and the envelope sent.
#[derive(Debug, Clone)]
pub struct DeliveryDetail {
    /// The delivery.
    pub delivery: WebhookDelivery,
    /// Its attempts, in order.
    pub attempts: Vec<WebhookAttempt>,
    /// The envelope (JSON text), as signed and sent.
    pub payload: Option<String>,
}

/// Errors of the deliveries API.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    /// No such delivery for this tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// An attempt is in flight.
    #[error("an attempt of this delivery is in flight; retry when it is over")]
    InFlight,
    /// The store failed.
    #[error("store error")]
    Store(#[from] StoreError),
}

type Reply<T> = RpcReplyPort<Result<T, NotifierError>>;

/// Messages of the notifier actor. RPC variants end with their reply port.
pub enum NotifierMsg {
    /// Periodic: refresh the outbox gauge and look for due deliveries.
    Tick,
    /// Look for due deliveries now (an event was emitted, a retry is due).
    Wake,
    /// A worker finished a delivery's attempt; the next one is due after the duration, if any.
    Finished(DeliveryId, Option<Duration>),
    /// Lists a tenant's deliveries.
    List(DeliveryFilter, Reply<Page<WebhookDelivery>>),
    /// One of a tenant's deliveries with its attempts.
    Get(TenantId, DeliveryId, Reply<DeliveryDetail>),
    /// Resets one of a tenant's deliveries to pending (attempts kept).
    Redeliver(TenantId, DeliveryId, Reply<WebhookDelivery>),
    /// Chaos hook: panics when chaos hooks are enabled (`CHAOS_HOOKS`), so that the
    /// supervision of singletons (a failure counted, the actor rebuilt, meltdown) can be
    /// exercised from outside; ignored otherwise.
    Crash,
}

impl NotifierMsg {
    /// Message name for metrics.
    pub const fn name(&self) -> &'static str {
        match self {
            NotifierMsg::Tick => "tick",
            NotifierMsg::Wake => "wake",
            NotifierMsg::Finished(..) => "finished",
            NotifierMsg::List(..) => "list",
            NotifierMsg::Get(..) => "get",
            NotifierMsg::Redeliver(..) => "redeliver",
            NotifierMsg::Crash => "crash",
        }
    }
}

/// The notifier actor behaviour.
pub struct NotifierActor;

/// Arguments (the child spec) of the notifier actor.
pub struct NotifierArgs {
    /// The database.
    pub store: Store,
    /// Opens tenants' signing secrets.
    pub secret_box: SecretBox,
    /// Outbound HTTP.
    pub egress: Egress,
    /// Delivery settings.
    pub settings: NotifierSettings,
    /// The emission handle's wake flag (cleared when a wake is handled).
    pub wake: Arc<AtomicBool>,
    /// Whether the chaos hook ([`NotifierMsg::Crash`]) is armed.
    pub chaos: bool,
}

/// A claimed delivery being attempted by a worker.
struct InFlight {
    lease_token: String,
    lease_until: i64,
}

type DeliveryFactory = Factory<
    DeliveryId,
    DeliveryJob,
    Arc<DeliveryContext>,
    DeliveryWorker,
    QueuerRouting<DeliveryId, DeliveryJob>,
    DefaultQueue<DeliveryId, DeliveryJob>,
>;

/// State of the notifier actor.
pub struct NotifierState {
    store: Store,
    settings: NotifierSettings,
    /// The worker pool (a linked child: it dies with this actor).
    factory: FactoryRef<DeliveryId, DeliveryJob>,
    /// Deliveries claimed by this incarnation and not finished, with their lease. Entries
    /// past their lease are dropped on the tick (a worker that died never reports).
    in_flight: HashMap<DeliveryId, InFlight>,
    wake: Arc<AtomicBool>,
    /// Whether [`NotifierMsg::Crash`] panics.
    chaos: bool,
    /// The periodic tick; aborted when the state is dropped (also on a kill).
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for NotifierState {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
    }
}

impl NotifierState {
    fn lease(&self) -> Duration {
        self.settings.timeout + LEASE_MARGIN
    }

    /// Claims due deliveries up to the free worker capacity and dispatches them.
    async fn fill(&mut self) {
        let free = self.settings.workers.saturating_sub(self.in_flight.len());
        if free == 0 {
            return;
        }
        let now = now_ms();
        let lease_until = now + i64::try_from(self.lease().as_millis()).unwrap_or(i64::MAX / 2);
        let lease_token = uuid::Uuid::new_v4().simple().to_string();
        let claimed = match self
            .store
            .claim_deliveries(
                now,
                lease_until,
                &lease_token,
                u32::try_from(free).unwrap_or(u32::MAX),
            )
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(error = %error, "cannot claim webhook deliveries");
                return;
            }
        };
        for delivery in claimed {
            let id = delivery.id.clone();
            self.in_flight.insert(
                id.clone(),
                InFlight {
                    lease_token: lease_token.clone(),
                    lease_until,
                },
            );
            let job = DeliveryJob {
                delivery,
                lease_token: lease_token.clone(),
            };
            if let Err(error) = self.factory.dispatch(id.clone(), job) {
                // The lease expires and the delivery is claimed again.
                tracing::warn!(delivery_id = %id, error = %error, "cannot dispatch a webhook delivery");
                self.in_flight.remove(&id);
            }
        }
    }

    async fn refresh_gauge(&self) {
        match self.store.outbox_pending().await {
            Ok(n) => metrics::gauge!("webhook_outbox_pending").set(n as f64),
            Err(error) => tracing::warn!(error = %error, "cannot count the webhook outbox"),
        }
    }

    async fn get(
        &self,
        tenant: &TenantId,
        id: &DeliveryId,
    ) -> Result<DeliveryDetail, NotifierError> {
        let delivery = self
            .store
            .get_delivery(tenant, id)
            .await?
            .ok_or(NotifierError::NotFound("webhook delivery"))?;
        let attempts = self.store.list_attempts(tenant, id).await?;
        let payload = self.store.event_payload(&delivery.event_id).await?;
        Ok(DeliveryDetail {
            delivery,
            attempts,
            payload,
        })
    }
}

fn reply<T>(port: RpcReplyPort<T>, value: T) {
    if !port.is_closed() {
        let _ = port.send(value);
    }
}

impl Actor for NotifierActor {
    type Msg = NotifierMsg;
    type State = NotifierState;
    type Arguments = NotifierArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: NotifierArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let context = Arc::new(DeliveryContext {
            store: args.store.clone(),
            secret_box: args.secret_box,
            egress: args.egress,
            settings: args.settings.clone(),
            notifier: myself.clone(),
        });
        let factory_args = FactoryArguments::builder()
            .worker_builder(Box::new(worker_builder(move |_wid| {
                (DeliveryWorker, Arc::clone(&context))
            })))
            .queue(DefaultQueue::default())
            .router(QueuerRouting::default())
            .num_initial_workers(args.settings.workers.max(1))
            .build();
        let (factory, _join) = Actor::spawn_linked(
            None,
            DeliveryFactory::default(),
            factory_args,
            myself.get_cell(),
        )
        .await?;
        args.wake.store(false, Ordering::Release);
        Ok(NotifierState {
            store: args.store,
            settings: args.settings,
            factory,
            in_flight: HashMap::new(),
            wake: args.wake,
            chaos: args.chaos,
            ticker: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let id = myself.get_id();
        state.ticker = Some(myself.send_interval(state.settings.tick, move || {
            crate::singleton::sent(id);
            NotifierMsg::Tick
        }));
        // Pick up everything left pending (or leased by a dead incarnation) at once.
        state.refresh_gauge().await;
        state.fill().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        crate::singleton::handled(myself.get_id());
        let _timer = HandleTimer::start(kind::NOTIFIER, message.name());
        match message {
            NotifierMsg::Tick => {
                let now = now_ms();
                state.in_flight.retain(|_, f| f.lease_until > now);
                state.wake.store(false, Ordering::Release);
                state.refresh_gauge().await;
                state.fill().await;
            }
            NotifierMsg::Wake => {
                state.wake.store(false, Ordering::Release);
                state.fill().await;
            }
            NotifierMsg::Finished(id, retry_in) => {
                state.in_flight.remove(&id);
                if let Some(delay) = retry_in
                    && delay < state.settings.tick
                {
                    // Due before the next tick: come back for it on time.
                    let id = myself.get_id();
                    myself.send_after(delay, move || {
                        crate::singleton::sent(id);
                        NotifierMsg::Wake
                    });
                }
                state.fill().await;
            }
            NotifierMsg::List(filter, port) => {
                let result = state
                    .store
                    .list_deliveries(&filter)
                    .await
                    .map_err(NotifierError::from);
                reply(port, result);
            }
            NotifierMsg::Get(tenant, id, port) => {
                let result = state.get(&tenant, &id).await;
                reply(port, result);
            }
            NotifierMsg::Crash => {
                if state.chaos {
                    panic!("chaos hook: notifier crash requested");
                }
            }
            NotifierMsg::Redeliver(tenant, id, port) => {
                let result = match state.store.redeliver(&tenant, &id, now_ms()).await {
                    Ok(Redelivery::Scheduled(delivery)) => Ok(*delivery),
                    Ok(Redelivery::NotFound) => Err(NotifierError::NotFound("webhook delivery")),
                    Ok(Redelivery::InFlight) => Err(NotifierError::InFlight),
                    Err(e) => Err(NotifierError::Store(e)),
                };
                let scheduled = result.is_ok();
                reply(port, result);
                if scheduled {
                    state.fill().await;
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(ticker) = state.ticker.take() {
            ticker.abort();
        }
        // Never wait on a slow endpoint: cancel the attempts in flight and hand their claims
        // back, so the next start (here or on another node) sends them at once.
        let _ = state
            .factory
            .kill_and_wait(Some(Duration::from_secs(2)))
            .await;
        let now = now_ms();
        for (id, in_flight) in state.in_flight.drain() {
            if let Err(error) = state
                .store
                .release_delivery(&id, &in_flight.lease_token, now)
                .await
            {
                tracing::warn!(delivery_id = %id, error = %error, "cannot release a webhook delivery");
            }
        }
        Ok(())
    }
}

/// Registers descriptions of the notifier metrics (call once at start-up).
pub fn describe() {
    metrics::describe_counter!(
        "webhook_deliveries_total",
        "Event webhook delivery attempts, by outcome (delivered, retry, failed)"
    );
    metrics::describe_histogram!(
        "webhook_delivery_seconds",
        metrics::Unit::Seconds,
        "Duration of an event webhook delivery attempt"
    );
    metrics::describe_gauge!(
        "webhook_outbox_pending",
        "Event webhook deliveries pending or in flight (all nodes)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip() {
        for e in EventKind::ALL {
            assert_eq!(EventKind::parse(e.as_str()), Some(e));
            assert!(e.as_str().starts_with("voice."));
        }
        assert_eq!(EventKind::parse("voice.unknown"), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let base = Duration::from_secs(1);
        assert_eq!(backoff_ceiling(base, 1), Duration::from_secs(1));
        assert_eq!(backoff_ceiling(base, 2), Duration::from_secs(2));
        assert_eq!(backoff_ceiling(base, 4), Duration::from_secs(8));
        assert_eq!(backoff_ceiling(base, 10), Duration::from_secs(512));
        assert_eq!(backoff_ceiling(base, 11), MAX_BACKOFF);
        assert_eq!(backoff_ceiling(base, 1000), MAX_BACKOFF);
        assert_eq!(backoff_ceiling(base, 0), base);
        for n in 1..40 {
            assert!(backoff_delay(base, n) <= backoff_ceiling(base, n));
        }
    }

    #[test]
    fn the_envelope_carries_every_field() {
        let tenant = TenantId::generate();
        let event = envelope(
            &tenant,
            EventKind::CallStarted,
            json!({"call_id": "call_1"}),
            1_790_000_000_123,
        );
        let v: serde_json::Value = serde_json::from_str(&event.payload).expect("json");
        assert_eq!(v["id"], event.id.as_str());
        assert!(event.id.as_str().starts_with("evt_"));
        assert_eq!(v["event"], "voice.call.started");
        assert_eq!(v["created_at"], "2026-09-21T14:13:20.123Z");
        assert_eq!(v["tenant_id"], tenant.as_str());
        assert_eq!(v["api_version"], API_VERSION);
        assert_eq!(v["data"]["call_id"], "call_1");
        assert_eq!(event.event, "voice.call.started");
    }
}
