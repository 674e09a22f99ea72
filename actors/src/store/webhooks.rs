//! The event-webhook outbox: tenant events, their deliveries and every delivery attempt.
//!
//! An event and its delivery are written in one transaction ([`Store::enqueue_event`]), so
//! an event is never lost between "it happened" and "it will be sent". Deliveries are
//! claimed with a lease by one conditional `UPDATE` ([`Store::claim_deliveries`]): two nodes
//! never send the same attempt concurrently, and a lease that expires (its node crashed) is
//! claimed again. The outcome of an attempt, its log row and, after the last attempt, the
//! `voice.webhook.delivery_failed` event are written in one transaction fenced by the lease
//! token ([`Store::finish_attempt`]). Every read of tenant-owned rows is scoped by tenant.

use super::{Page, Store, StoreError, as_i64, on_pool};
use crate::ids::{DeliveryId, EventId, TenantId};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (`next_attempt_at`).
    Pending,
    /// An attempt is in flight on some node (leased).
    Delivering,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt failed.
    Failed,
}

impl DeliveryStatus {
    /// Every status.
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivering,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
    ];

    /// Stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivering => "delivering",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        DeliveryStatus::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// An event to record (and to deliver when the tenant's webhook accepts it).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Identifier (also the envelope's `id` and the deliveries' idempotency key).
    pub id: EventId,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Event name, e.g. `voice.call.started`.
    pub event: String,
    /// The full envelope, exactly the bytes that are sent.
    pub payload: String,
    /// When it happened (Unix ms).
    pub created_at: i64,
}

/// What [`Store::enqueue_event`] recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEvent {
    /// The event.
    pub event_id: EventId,
    /// Its delivery, when the tenant's webhook accepts the event.
    pub delivery_id: Option<DeliveryId>,
}

/// The delivery of one event to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// Identifier.
    pub id: DeliveryId,
    /// The event delivered.
    pub event_id: EventId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The endpoint (the tenant's webhook URL when the event happened).
    pub url: String,
    /// Event name.
    pub event: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made (or in flight).
    pub attempts: i64,
    /// Attempts made before the last manual redelivery; the retry budget counts from here.
    pub attempts_base: i64,
    /// When the next attempt is due (Unix ms).
    pub next_attempt_at: i64,
    /// HTTP status of the last answer.
    pub last_status_code: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When a 2xx was received (Unix ms).
    pub delivered_at: Option<i64>,
    /// Creation (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// One logged delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAttempt {
    /// 1 for the first attempt.
    pub attempt: i64,
    /// When it started (Unix ms).
    pub started_at: i64,
    /// HTTP status of the answer, if one came.
    pub status_code: Option<i64>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Duration (ms).
    pub latency_ms: i64,
}

/// Filter of the delivery listing (always one tenant's).
#[derive(Debug, Clone)]
pub struct DeliveryFilter {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Only this status.
    pub status: Option<DeliveryStatus>,
    /// Only this event name.
    pub event: Option<String>,
    /// Only deliveries of this event.
    pub event_id: Option<EventId>,
    /// Page size.
    pub limit: u32,
    /// Rows skipped.
    pub offset: u32,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// A 2xx: done.
    Delivered,
    /// Try again at this time (Unix ms).
    Retry {
        /// Due time of the next attempt.
        at: i64,
    },
    /// Out of attempts: failed, and this event (`voice.webhook.delivery_failed`) is
    /// recorded in the same transaction.
    Failed {
        /// The failure notice, unless the failed delivery was itself one.
        event: Option<NewEvent>,
    },
}

/// The outcome of one attempt, as recorded by [`Store::finish_attempt`].
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedAttempt {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The lease it was claimed with (fences a holder whose lease expired).
    pub lease_token: String,
    /// Attempt number.
    pub attempt: i64,
    /// When it started (Unix ms).
    pub started_at: i64,
    /// HTTP status of the answer.
    pub status_code: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Duration (ms).
    pub latency_ms: i64,
    /// What happens next.
    pub result: AttemptResult,
    /// Now (Unix ms).
    pub now: i64,
}

/// The answer to a redelivery request.
#[derive(Debug, Clone, PartialEq)]
pub enum Redelivery {
    /// Reset to pending, due now.
    Scheduled(Box<WebhookDelivery>),
    /// No such delivery for this tenant.
    NotFound,
    /// An attempt is in flight; try again when it is over.
    InFlight,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: String,
    event_id: String,
    tenant_id: String,
    url: String,
    event: String,
    status: String,
    attempts: i64,
    attempts_base: i64,
    next_attempt_at: i64,
    last_status_code: Option<i64>,
    last_error: Option<String>,
    delivered_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

const DELIVERY_COLUMNS: &str = "id, event_id, tenant_id, url, event, status, attempts, attempts_base, \
     next_attempt_at, last_status_code, last_error, delivered_at, created_at, updated_at";

impl TryFrom<DeliveryRow> for WebhookDelivery {
    type Error = StoreError;

    fn try_from(r: DeliveryRow) -> Result<Self, StoreError> {
        Ok(WebhookDelivery {
            id: DeliveryId::from_stored(r.id),
            event_id: EventId::from_stored(r.event_id),
            tenant_id: TenantId::from_stored(r.tenant_id),
            url: r.url,
            event: r.event,
            status: DeliveryStatus::parse(&r.status)
                .ok_or(StoreError::Corrupt("webhook_deliveries.status"))?,
            attempts: r.attempts,
            attempts_base: r.attempts_base,
            next_attempt_at: r.next_attempt_at,
            last_status_code: r.last_status_code,
            last_error: r.last_error,
            delivered_at: r.delivered_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    attempt: i64,
    started_at: i64,
    status_code: Option<i64>,
    error: Option<String>,
    latency_ms: i64,
}

/// Records an event on an open transaction (`$exec` is `&mut *tx`) and, when the tenant's
/// webhook accepts it, its delivery. Evaluates to `Option<QueuedEvent>` (`None`: no such
/// tenant, nothing written); database errors return from the enclosing function. Store
/// methods that must record an event atomically with their own change use it (build the
/// event with [`crate::notifier::envelope`], and call [`crate::notifier::Notifier::wake`]
/// after the commit).
///
/// The event row is written first, so on SQLite the transaction holds the write lock before
/// it reads the tenant (no read-to-write upgrade that could fail under concurrency).
macro_rules! insert_event {
    ($exec:expr, $event:expr) => {{
        let event: &$crate::store::NewEvent = $event;
        let inserted = sqlx::query(
            "INSERT INTO webhook_events (id, tenant_id, event, payload, created_at) \
             SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $2)",
        )
        .bind(event.id.as_str())
        .bind(event.tenant_id.as_str())
        .bind(&event.event)
        .bind(&event.payload)
        .bind(event.created_at)
        .execute($exec)
        .await?;
        if inserted.rows_affected() == 0 {
            None
        } else {
            let hook: Option<(Option<String>, Option<String>)> =
                sqlx::query_as("SELECT events_url, events_filter FROM tenants WHERE id = $1")
                    .bind(event.tenant_id.as_str())
                    .fetch_optional($exec)
                    .await?;
            let webhook = match hook {
                Some((Some(url), filter)) => Some($crate::store::EventWebhook {
                    url,
                    events: filter.and_then(|f| serde_json::from_str::<Vec<String>>(&f).ok()),
                }),
                _ => None,
            };
            let delivery_id = match webhook {
                Some(webhook) if webhook.accepts(&event.event) => {
                    let id = $crate::ids::DeliveryId::generate();
                    sqlx::query(
                        "INSERT INTO webhook_deliveries (id, event_id, tenant_id, url, event, status, attempts, \
                         attempts_base, next_attempt_at, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, 'pending', 0, 0, $6, $6, $6)",
                    )
                    .bind(id.as_str())
                    .bind(event.id.as_str())
                    .bind(event.tenant_id.as_str())
                    .bind(&webhook.url)
                    .bind(&event.event)
                    .bind(event.created_at)
                    .execute($exec)
                    .await?;
                    Some(id)
                }
                _ => None,
            };
            Some($crate::store::QueuedEvent {
                event_id: event.id.clone(),
                delivery_id,
            })
        }
    }};
}
#[allow(
    unused_imports,
    reason = "for store methods that record an event together with their own change"
)]
pub(crate) use insert_event;

impl Store {
    /// Records `event` and, when the tenant's webhook accepts it, its delivery, in one
    /// transaction. `None` when the tenant does not exist (nothing written).
    pub async fn enqueue_event(&self, event: &NewEvent) -> Result<Option<QueuedEvent>, StoreError> {
        let queued = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let queued = insert_event!(&mut *tx, event);
            tx.commit().await?;
            queued
        });
        Ok(queued)
    }

    /// The envelope of an event (what is sent).
    pub async fn event_payload(&self, id: &EventId) -> Result<Option<String>, StoreError> {
        let payload = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT payload FROM webhook_events WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?
        });
        Ok(payload)
    }

    /// Claims up to `limit` due deliveries (pending and due, or delivering with an expired
    /// lease) with one conditional `UPDATE`: each gets status `delivering`, one more
    /// attempt, `lease_until` and `lease_token`. A row is claimed by one caller only; on
    /// PostgreSQL rows locked by a concurrent claim are skipped.
    pub async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        lease_token: &str,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        // The due condition is repeated outside the subquery: on PostgreSQL a row updated
        // by a concurrent claim is re-checked against it after the lock is granted.
        const DUE: &str = "((status = 'pending' AND next_attempt_at <= $1) \
                           OR (status = 'delivering' AND lease_until < $1))";
        // Most ticks find nothing due: look first, so an idle outbox never takes the write
        // lock (SQLite has one writer for the whole database).
        let any_due: Option<String> = on_pool!(self, pool => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM webhook_deliveries WHERE {DUE} LIMIT 1"
            )))
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        if any_due.is_none() {
            return Ok(Vec::new());
        }
        let rows: Vec<DeliveryRow> =
            match self {
                Store::Sqlite(pool) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "UPDATE webhook_deliveries SET status = 'delivering', attempts = attempts + 1, \
                     lease_until = $2, lease_token = $3, updated_at = $1 \
                     WHERE id IN (SELECT id FROM webhook_deliveries WHERE {DUE} \
                     ORDER BY next_attempt_at, id LIMIT $4) AND {DUE} \
                     RETURNING {DELIVERY_COLUMNS}"
                )))
                .bind(now)
                .bind(lease_until)
                .bind(lease_token)
                .bind(as_i64(limit))
                .fetch_all(pool)
                .await?,
                Store::Postgres(pool) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "UPDATE webhook_deliveries SET status = 'delivering', attempts = attempts + 1, \
                     lease_until = $2, lease_token = $3, updated_at = $1 \
                     WHERE id IN (SELECT id FROM webhook_deliveries WHERE {DUE} \
                     ORDER BY next_attempt_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) AND {DUE} \
                     RETURNING {DELIVERY_COLUMNS}"
                )))
                .bind(now)
                .bind(lease_until)
                .bind(lease_token)
                .bind(as_i64(limit))
                .fetch_all(pool)
                .await?,
            };
        rows.into_iter().map(WebhookDelivery::try_from).collect()
    }

    /// Records an attempt's outcome, its log row and (after the last attempt) the failure
    /// event, in one transaction, provided the lease is still held. Returns false when it
    /// is not (the lease expired and the delivery was claimed again): nothing is written.
    pub async fn finish_attempt(&self, done: &FinishedAttempt) -> Result<bool, StoreError> {
        let (status, next_at, delivered_at, failure_event) = match &done.result {
            AttemptResult::Delivered => (DeliveryStatus::Delivered, None, Some(done.now), None),
            AttemptResult::Retry { at } => (DeliveryStatus::Pending, Some(*at), None, None),
            AttemptResult::Failed { event } => (DeliveryStatus::Failed, None, None, event.as_ref()),
        };
        let held = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let res = sqlx::query(
                "UPDATE webhook_deliveries SET status = $3, next_attempt_at = COALESCE($4, next_attempt_at), \
                 lease_until = NULL, lease_token = NULL, last_status_code = $5, last_error = $6, \
                 delivered_at = COALESCE($7, delivered_at), updated_at = $8 \
                 WHERE id = $1 AND lease_token = $2 AND status = 'delivering'",
            )
            .bind(done.delivery_id.as_str())
            .bind(&done.lease_token)
            .bind(status.as_str())
            .bind(next_at)
            .bind(done.status_code)
            .bind(&done.error)
            .bind(delivered_at)
            .bind(done.now)
            .execute(&mut *tx)
            .await?;
            let held = res.rows_affected() == 1;
            if held {
                sqlx::query(
                    "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, status_code, error, latency_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(done.delivery_id.as_str())
                .bind(done.attempt)
                .bind(done.started_at)
                .bind(done.status_code)
                .bind(&done.error)
                .bind(done.latency_ms)
                .execute(&mut *tx)
                .await?;
                if let Some(event) = failure_event {
                    let _ = insert_event!(&mut *tx, event);
                }
                tx.commit().await?;
            }
            held
        });
        Ok(held)
    }

    /// Gives back a claimed delivery whose attempt was abandoned (shutdown): pending again,
    /// due at once, the attempt not counted. A no-op when the lease is no longer held.
    pub async fn release_delivery(
        &self,
        id: &DeliveryId,
        lease_token: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE webhook_deliveries SET status = 'pending', attempts = attempts - 1, \
                 lease_until = NULL, lease_token = NULL, updated_at = $3 \
                 WHERE id = $1 AND lease_token = $2 AND status = 'delivering'",
            )
            .bind(id.as_str())
            .bind(lease_token)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Lists a tenant's deliveries, newest first.
    pub async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Page<WebhookDelivery>, StoreError> {
        const WHERE: &str = "tenant_id = $1 AND ($2 IS NULL OR status = $2) \
                             AND ($3 IS NULL OR event = $3) AND ($4 IS NULL OR event_id = $4)";
        let status = filter.status.map(|s| s.as_str().to_owned());
        let event_id = filter.event_id.as_ref().map(|e| e.as_str().to_owned());
        let (rows, total): (Vec<DeliveryRow>, i64) = on_pool!(self, pool => {
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {WHERE} \
                 ORDER BY created_at DESC, id DESC LIMIT $5 OFFSET $6"
            )))
            .bind(filter.tenant_id.as_str())
            .bind(&status)
            .bind(&filter.event)
            .bind(&event_id)
            .bind(as_i64(filter.limit))
            .bind(as_i64(filter.offset))
            .fetch_all(pool)
            .await?;
            let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM webhook_deliveries WHERE {WHERE}"
            )))
            .bind(filter.tenant_id.as_str())
            .bind(&status)
            .bind(&filter.event)
            .bind(&event_id)
            .fetch_one(pool)
            .await?;
            (rows, total)
        });
        Ok(Page {
            items: rows
                .into_iter()
                .map(WebhookDelivery::try_from)
                .collect::<Result<_, _>>()?,
            total,
        })
    }

    /// One of a tenant's deliveries.
    pub async fn get_delivery(
        &self,
        tenant: &TenantId,
        id: &DeliveryId,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        let row: Option<DeliveryRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1 AND tenant_id = $2"
            )))
            .bind(id.as_str())
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(WebhookDelivery::try_from).transpose()
    }

    /// The attempts of one of a tenant's deliveries, in order (empty for another tenant's).
    pub async fn list_attempts(
        &self,
        tenant: &TenantId,
        id: &DeliveryId,
    ) -> Result<Vec<WebhookAttempt>, StoreError> {
        let rows: Vec<AttemptRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT a.attempt, a.started_at, a.status_code, a.error, a.latency_ms \
                 FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id \
                 WHERE a.delivery_id = $1 AND d.tenant_id = $2 ORDER BY a.attempt",
            )
            .bind(id.as_str())
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| WebhookAttempt {
                attempt: r.attempt,
                started_at: r.started_at,
                status_code: r.status_code,
                error: r.error,
                latency_ms: r.latency_ms,
            })
            .collect())
    }

    /// Resets one of a tenant's deliveries to pending, due at `now`, keeping its attempts
    /// (the retry budget starts again). Refused while an attempt is in flight.
    pub async fn redeliver(
        &self,
        tenant: &TenantId,
        id: &DeliveryId,
        now: i64,
    ) -> Result<Redelivery, StoreError> {
        let updated = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $3, \
                 attempts_base = attempts, lease_until = NULL, lease_token = NULL, updated_at = $3 \
                 WHERE id = $1 AND tenant_id = $2 AND status <> 'delivering'",
            )
            .bind(id.as_str())
            .bind(tenant.as_str())
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected() == 1
        });
        Ok(match self.get_delivery(tenant, id).await? {
            None => Redelivery::NotFound,
            Some(d) if updated => Redelivery::Scheduled(Box::new(d)),
            Some(_) => Redelivery::InFlight,
        })
    }

    /// Deliveries waiting or in flight, across tenants (the outbox gauge).
    pub async fn outbox_pending(&self) -> Result<i64, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM webhook_deliveries WHERE status IN ('pending', 'delivering')",
            )
            .fetch_one(pool)
            .await?
        });
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EventWebhook, NewAudit, RuntimeConfig, Tenant, TenantStatus};

    fn audit(target: &TenantId) -> NewAudit {
        NewAudit {
            actor: "test".into(),
            action: "test",
            tenant_id: Some(target.clone()),
            target_type: "tenant",
            target_id: target.to_string(),
            before: None,
            after: None,
            request_id: None,
        }
    }

    async fn tenant(store: &Store, webhook: Option<EventWebhook>) -> TenantId {
        let tenant = Tenant {
            id: TenantId::generate(),
            name: "Acme".into(),
            status: TenantStatus::Active,
            max_concurrent_calls: 1,
            webhook_url: None,
            runtime_config: RuntimeConfig::default(),
            twilio: None,
            openai_key: None,
            signing_secret: None,
            event_webhook: None,
            created_at: 0,
            updated_at: 0,
        };
        store
            .insert_tenant(&tenant, &audit(&tenant.id))
            .await
            .expect("tenant");
        if let Some(webhook) = webhook {
            store
                .set_event_webhook(&tenant.id, Some(&webhook), None, 1, |_| audit(&tenant.id))
                .await
                .expect("webhook")
                .expect("tenant exists");
        }
        tenant.id
    }

    async fn store() -> Store {
        let store = Store::connect("sqlite::memory:", 1).await.expect("store");
        store.migrate().await.expect("migrate");
        store
    }

    fn event(tenant: &TenantId, name: &str, at: i64) -> NewEvent {
        NewEvent {
            id: EventId::generate(),
            tenant_id: tenant.clone(),
            event: name.to_owned(),
            payload: format!(r#"{{"event":"{name}"}}"#),
            created_at: at,
        }
    }

    fn hook(events: Option<&[&str]>) -> EventWebhook {
        EventWebhook {
            url: "https://hooks.example.com/e".into(),
            events: events.map(|e| e.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    #[tokio::test]
    async fn events_get_a_delivery_only_when_the_webhook_accepts_them() {
        let store = store().await;
        let quiet = tenant(&store, None).await;
        let picky = tenant(&store, Some(hook(Some(&["voice.call.started"])))).await;
        let queued = store
            .enqueue_event(&event(&quiet, "voice.call.started", 1))
            .await
            .expect("enqueue")
            .expect("tenant exists");
        assert_eq!(queued.delivery_id, None, "recorded, nowhere to send");
        assert_eq!(
            store
                .enqueue_event(&event(&TenantId::generate(), "voice.call.started", 1))
                .await
                .expect("enqueue"),
            None
        );
        let started = event(&picky, "voice.call.started", 1);
        let queued = store
            .enqueue_event(&started)
            .await
            .expect("enqueue")
            .expect("tenant exists");
        assert!(queued.delivery_id.is_some());
        assert_eq!(
            store.event_payload(&started.id).await.expect("payload"),
            Some(started.payload.clone())
        );
        let completed = store
            .enqueue_event(&event(&picky, "voice.call.completed", 1))
            .await
            .expect("enqueue")
            .expect("tenant exists");
        assert_eq!(completed.delivery_id, None, "filtered out");
        assert_eq!(store.outbox_pending().await.expect("count"), 1);
    }

    #[tokio::test]
    async fn a_claim_is_exclusive_until_its_lease_expires_and_fenced_after() {
        let store = store().await;
        let acme = tenant(&store, Some(hook(None))).await;
        let other = tenant(&store, None).await;
        let queued = store
            .enqueue_event(&event(&acme, "voice.call.started", 1_000))
            .await
            .expect("enqueue")
            .expect("tenant exists");
        let id = queued.delivery_id.expect("delivery");
        assert!(
            store
                .claim_deliveries(999, 5_000, "early", 10)
                .await
                .expect("claim")
                .is_empty()
        );

        let first = store
            .claim_deliveries(2_000, 5_000, "a", 10)
            .await
            .expect("claim");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].id, id);
        assert_eq!(first[0].status, DeliveryStatus::Delivering);
        assert_eq!(first[0].attempts, 1);
        assert!(
            store
                .claim_deliveries(3_000, 9_000, "b", 10)
                .await
                .expect("claim")
                .is_empty()
        );
        assert_eq!(
            store.redeliver(&acme, &id, 3_000).await.expect("redeliver"),
            Redelivery::InFlight
        );
        assert_eq!(
            store
                .redeliver(&other, &id, 3_000)
                .await
                .expect("redeliver"),
            Redelivery::NotFound
        );

        // The holder of "a" died: its lease expires and the delivery is claimed again.
        let again = store
            .claim_deliveries(6_000, 9_000, "b", 10)
            .await
            .expect("claim");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 2);
        let finished =
            |token: &str, result: AttemptResult, attempt: i64, now: i64| FinishedAttempt {
                delivery_id: id.clone(),
                lease_token: token.to_owned(),
                attempt,
                started_at: now,
                status_code: Some(500),
                error: Some("the endpoint answered 500".into()),
                latency_ms: 3,
                result,
                now,
            };
        assert!(
            !store
                .finish_attempt(&finished("a", AttemptResult::Retry { at: 7_000 }, 1, 6_100))
                .await
                .expect("finish"),
            "a stale holder writes nothing"
        );
        assert!(
            store
                .finish_attempt(&finished("b", AttemptResult::Retry { at: 7_000 }, 2, 6_200))
                .await
                .expect("finish")
        );
        let attempts = store.list_attempts(&acme, &id).await.expect("attempts");
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].attempt, 2);
        assert_eq!(attempts[0].status_code, Some(500));
        assert!(
            store
                .list_attempts(&other, &id)
                .await
                .expect("attempts")
                .is_empty()
        );
        assert!(
            store
                .claim_deliveries(6_500, 9_000, "c", 10)
                .await
                .expect("claim")
                .is_empty()
        );

        // An abandoned attempt (shutdown) is handed back uncounted and due at once.
        let third = store
            .claim_deliveries(7_000, 20_000, "c", 10)
            .await
            .expect("claim");
        assert_eq!(third[0].attempts, 3);
        store
            .release_delivery(&id, "c", 7_100)
            .await
            .expect("release");
        let released = store
            .get_delivery(&acme, &id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(released.status, DeliveryStatus::Pending);
        assert_eq!(released.attempts, 2);

        // The last attempt fails it and records the failure notice (delivered too).
        let fourth = store
            .claim_deliveries(7_200, 20_000, "d", 10)
            .await
            .expect("claim");
        assert_eq!(fourth[0].attempts, 3);
        let notice = event(&acme, "voice.webhook.delivery_failed", 7_300);
        assert!(
            store
                .finish_attempt(&finished(
                    "d",
                    AttemptResult::Failed {
                        event: Some(notice.clone())
                    },
                    3,
                    7_300
                ))
                .await
                .expect("finish")
        );
        let failed = store
            .get_delivery(&acme, &id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(failed.status, DeliveryStatus::Failed);
        assert_eq!(failed.last_status_code, Some(500));
        let page = store
            .list_deliveries(&DeliveryFilter {
                tenant_id: acme.clone(),
                status: None,
                event: Some("voice.webhook.delivery_failed".into()),
                event_id: None,
                limit: 10,
                offset: 0,
            })
            .await
            .expect("list");
        assert_eq!(page.total, 1);
        assert_eq!(page.items[0].event_id, notice.id);

        // A redelivery keeps the attempts and renews the budget.
        let Redelivery::Scheduled(again) =
            store.redeliver(&acme, &id, 8_000).await.expect("redeliver")
        else {
            panic!("scheduled");
        };
        assert_eq!(again.status, DeliveryStatus::Pending);
        assert_eq!(again.attempts, 3);
        assert_eq!(again.attempts_base, 3);
        assert_eq!(again.next_attempt_at, 8_000);
        let other_page = store
            .list_deliveries(&DeliveryFilter {
                tenant_id: other.clone(),
                status: None,
                event: None,
                event_id: None,
                limit: 10,
                offset: 0,
            })
            .await
            .expect("list");
        assert_eq!(other_page.total, 0);
    }
}
