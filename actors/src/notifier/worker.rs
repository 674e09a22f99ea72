//! `DeliveryWorker`: one factory worker of the notifier, making one attempt of one claimed
//! delivery at a time: load the envelope, open (or create) the tenant's signing secret, post
//! through [`crate::egress::Egress`], and record the attempt with what happens next.
//!
//! A worker never fails its job: every problem is an unsuccessful attempt, recorded and
//! retried. Secrets and URLs are never logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorProcessingErr;
use ractor::factory::{FactoryMessage, Job, Worker, WorkerId};
use serde_json::json;

use super::{EventKind, NotifierMsg, NotifierSettings, backoff_delay, envelope};
use crate::crypto::SecretBox;
use crate::egress::{Egress, EgressResponse};
use crate::ids::DeliveryId;
use crate::store::{AttemptResult, FinishedAttempt, Store, WebhookDelivery};
use crate::time::now_ms;

/// Header naming the event's id.
pub const EVENT_ID_HEADER: &str = "StateSet-Event-Id";
/// Header naming the event.
pub const EVENT_HEADER: &str = "StateSet-Event";
/// Header carrying the event id as an idempotency key (the same on every attempt).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// What every worker shares.
pub struct DeliveryContext {
    /// The database.
    pub store: Store,
    /// Opens tenants' signing secrets.
    pub secret_box: SecretBox,
    /// Outbound HTTP.
    pub egress: Egress,
    /// Attempts, backoff, deadline.
    pub settings: NotifierSettings,
    /// Told when an attempt is over.
    pub notifier: ractor::ActorRef<NotifierMsg>,
}

/// One claimed delivery to attempt.
pub struct DeliveryJob {
    /// The delivery as claimed (its `attempts` already counts this attempt).
    pub delivery: WebhookDelivery,
    /// The lease it was claimed with.
    pub lease_token: String,
}

/// The worker behaviour.
pub struct DeliveryWorker;

impl Worker for DeliveryWorker {
    type Key = DeliveryId;
    type Message = DeliveryJob;
    type Arguments = Arc<DeliveryContext>;
    type State = Arc<DeliveryContext>;

    async fn pre_start(
        &self,
        _wid: WorkerId,
        _factory: &ractor::ActorRef<FactoryMessage<DeliveryId, DeliveryJob>>,
        context: Arc<DeliveryContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(context)
    }

    async fn handle(
        &self,
        _wid: WorkerId,
        _factory: &ractor::ActorRef<FactoryMessage<DeliveryId, DeliveryJob>>,
        job: Job<DeliveryId, DeliveryJob>,
        context: &mut Self::State,
    ) -> Result<DeliveryId, ActorProcessingErr> {
        let retry_in = deliver(context, job.msg).await;
        let _ = context
            .notifier
            .cast(NotifierMsg::Finished(job.key.clone(), retry_in));
        Ok(job.key)
    }
}

/// Makes one attempt and records it; returns the delay before the next one, if any.
async fn deliver(context: &DeliveryContext, job: DeliveryJob) -> Option<Duration> {
    let DeliveryJob {
        delivery,
        lease_token,
    } = job;
    let started_at = now_ms();
    let started = Instant::now();
    let answer = attempt(context, &delivery).await;
    let latency = started.elapsed();
    let (status_code, error) = match &answer {
        Ok(response) if response.is_success() => (Some(i64::from(response.status)), None),
        Ok(response) => (
            Some(i64::from(response.status)),
            Some(format!("the endpoint answered {}", response.status)),
        ),
        Err(error) => (None, Some(error.clone())),
    };
    let used = delivery.attempts - delivery.attempts_base;
    let now = now_ms();
    let (result, retry_in, outcome) = if error.is_none() {
        (AttemptResult::Delivered, None, "delivered")
    } else if used >= i64::from(context.settings.max_attempts) {
        let notice = (delivery.event != EventKind::DeliveryFailed.as_str()).then(|| {
            envelope(
                &delivery.tenant_id,
                EventKind::DeliveryFailed,
                json!({
                    "delivery_id": delivery.id.as_str(),
                    "event_id": delivery.event_id.as_str(),
                    "event": delivery.event,
                    "url": delivery.url,
                    "attempts": delivery.attempts,
                    "last_status_code": status_code,
                    "last_error": error,
                }),
                now,
            )
        });
        (AttemptResult::Failed { event: notice }, None, "failed")
    } else {
        let delay = backoff_delay(context.settings.backoff_base, used);
        let at = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
        (AttemptResult::Retry { at }, Some(delay), "retry")
    };
    let done = FinishedAttempt {
        delivery_id: delivery.id.clone(),
        lease_token,
        attempt: delivery.attempts,
        started_at,
        status_code,
        error: error.clone(),
        latency_ms: i64::try_from(latency.as_millis()).unwrap_or(i64::MAX),
        result,
        now,
    };
    match context.store.finish_attempt(&done).await {
        Ok(true) => {
            metrics::counter!("webhook_deliveries_total", "outcome" => outcome).increment(1);
            metrics::histogram!("webhook_delivery_seconds").record(latency.as_secs_f64());
            tracing::info!(
                delivery_id = %delivery.id,
                event_id = %delivery.event_id,
                tenant_id = %delivery.tenant_id,
                event = %delivery.event,
                attempt = delivery.attempts,
                status_code,
                error = error.as_deref().unwrap_or(""),
                outcome,
                "webhook delivery attempt"
            );
            retry_in
        }
        Ok(false) => {
            tracing::warn!(delivery_id = %delivery.id, "webhook delivery lease lost; attempt not recorded");
            None
        }
        Err(store_error) => {
            // The lease expires and the delivery is attempted again.
            tracing::warn!(delivery_id = %delivery.id, error = %store_error, "cannot record a webhook delivery attempt");
            None
        }
    }
}

/// Loads the envelope and the secret, and posts. Errors are messages safe to show the tenant.
async fn attempt(
    context: &DeliveryContext,
    delivery: &WebhookDelivery,
) -> Result<EgressResponse, String> {
    let payload = context
        .store
        .event_payload(&delivery.event_id)
        .await
        .map_err(|_| String::from("internal error reading the event"))?
        .ok_or_else(|| String::from("the event no longer exists"))?;
    let secret =
        crate::tenant::signing_secret(&context.store, &context.secret_box, &delivery.tenant_id)
            .await
            .map_err(|_| String::from("internal error reading the signing secret"))?;
    let headers = [
        (EVENT_ID_HEADER, delivery.event_id.to_string()),
        (EVENT_HEADER, delivery.event.clone()),
        (IDEMPOTENCY_HEADER, delivery.event_id.to_string()),
    ];
    context
        .egress
        .post_signed(
            &delivery.url,
            &secret,
            payload.into_bytes(),
            &headers,
            context.settings.timeout,
            context.settings.max_response,
        )
        .await
        .map_err(|e| e.to_string())
}
