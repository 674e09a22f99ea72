//! Operator queues: create, read (by id or by name, always within one tenant), list, replace
//! and delete, each change with its audit row in the same transaction.

use super::audit::insert_audit;
use super::{NewAudit, Page, Store, StoreError, as_i64, on_pool};
use crate::ids::{QueueId, TenantId};
use crate::operator::{
    BusinessHours, BusinessHoursSpec, OperatorQueue, QueueFallback, TransferMode,
};

#[derive(sqlx::FromRow)]
struct QueueRow {
    id: String,
    tenant_id: String,
    name: String,
    numbers: String,
    caller_id: Option<String>,
    ring_timeout_seconds: i64,
    business_hours: Option<String>,
    when_closed: String,
    when_unanswered: String,
    voicemail_message: Option<String>,
    announcement: Option<String>,
    transfer_mode: String,
    hold_music_url: Option<String>,
    created_at: i64,
    updated_at: i64,
}

const QUEUE_COLUMNS: &str = "id, tenant_id, name, numbers, caller_id, ring_timeout_seconds, business_hours, \
     when_closed, when_unanswered, voicemail_message, announcement, created_at, updated_at, \
     transfer_mode, hold_music_url";

impl TryFrom<QueueRow> for OperatorQueue {
    type Error = StoreError;

    fn try_from(r: QueueRow) -> Result<Self, StoreError> {
        let business_hours = match r.business_hours {
            None => None,
            Some(json) => {
                let spec: BusinessHoursSpec = serde_json::from_str(&json)
                    .map_err(|_| StoreError::Corrupt("operator_queues.business_hours"))?;
                Some(
                    BusinessHours::parse(&spec)
                        .map_err(|_| StoreError::Corrupt("operator_queues.business_hours"))?,
                )
            }
        };
        Ok(OperatorQueue {
            id: QueueId::from_stored(r.id),
            tenant_id: TenantId::from_stored(r.tenant_id),
            name: r.name,
            numbers: serde_json::from_str(&r.numbers)
                .map_err(|_| StoreError::Corrupt("operator_queues.numbers"))?,
            caller_id: r.caller_id,
            ring_timeout_seconds: r.ring_timeout_seconds,
            business_hours,
            when_closed: QueueFallback::parse(&r.when_closed)
                .ok_or(StoreError::Corrupt("operator_queues.when_closed"))?,
            when_unanswered: QueueFallback::parse(&r.when_unanswered)
                .ok_or(StoreError::Corrupt("operator_queues.when_unanswered"))?,
            voicemail_message: r.voicemail_message,
            announcement: r.announcement,
            transfer_mode: TransferMode::parse(&r.transfer_mode)
                .ok_or(StoreError::Corrupt("operator_queues.transfer_mode"))?,
            hold_music_url: r.hold_music_url,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// The stored JSON of a queue's numbers and business hours.
fn json_columns(q: &OperatorQueue) -> Result<(String, Option<String>), StoreError> {
    let numbers = serde_json::to_string(&q.numbers)
        .map_err(|_| StoreError::Corrupt("operator_queues.numbers"))?;
    let hours = q
        .business_hours
        .as_ref()
        .map(|h| serde_json::to_string(&h.to_spec()))
        .transpose()
        .map_err(|_| StoreError::Corrupt("operator_queues.business_hours"))?;
    Ok((numbers, hours))
}

fn unique_name(e: StoreError) -> StoreError {
    if e.is_unique_violation() {
        StoreError::Conflict("name")
    } else {
        e
    }
}

impl Store {
    /// Inserts a queue and its audit row; `Conflict("name")` when the tenant already has a
    /// queue of that name.
    pub async fn insert_queue(
        &self,
        queue: &OperatorQueue,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        let (numbers, hours) = json_columns(queue)?;
        let result: Result<(), StoreError> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO operator_queues ({QUEUE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            )))
            .bind(queue.id.as_str())
            .bind(queue.tenant_id.as_str())
            .bind(&queue.name)
            .bind(&numbers)
            .bind(&queue.caller_id)
            .bind(queue.ring_timeout_seconds)
            .bind(&hours)
            .bind(queue.when_closed.as_str())
            .bind(queue.when_unanswered.as_str())
            .bind(&queue.voicemail_message)
            .bind(&queue.announcement)
            .bind(queue.created_at)
            .bind(queue.updated_at)
            .bind(queue.transfer_mode.as_str())
            .bind(&queue.hold_music_url)
            .execute(&mut *tx)
            .await?;
            insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(())
        }.await);
        result.map_err(unique_name)
    }

    /// Replaces every field of a queue of its tenant (matched by id and tenant, and only if
    /// it is still the version last changed at `expected_updated_at`, so the audit row's
    /// "before" is the row replaced) and writes the audit row. Returns false, writing
    /// nothing, when no such queue (version) exists; `Conflict("name")` when the new name is
    /// taken.
    pub async fn update_queue(
        &self,
        queue: &OperatorQueue,
        expected_updated_at: i64,
        audit: &NewAudit,
    ) -> Result<bool, StoreError> {
        let (numbers, hours) = json_columns(queue)?;
        let result: Result<bool, StoreError> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            let res = sqlx::query(
                "UPDATE operator_queues SET name = $3, numbers = $4, caller_id = $5, ring_timeout_seconds = $6, \
                 business_hours = $7, when_closed = $8, when_unanswered = $9, voicemail_message = $10, \
                 announcement = $11, updated_at = $12, transfer_mode = $14, hold_music_url = $15 \
                 WHERE id = $1 AND tenant_id = $2 AND updated_at = $13",
            )
            .bind(queue.id.as_str())
            .bind(queue.tenant_id.as_str())
            .bind(&queue.name)
            .bind(&numbers)
            .bind(&queue.caller_id)
            .bind(queue.ring_timeout_seconds)
            .bind(&hours)
            .bind(queue.when_closed.as_str())
            .bind(queue.when_unanswered.as_str())
            .bind(&queue.voicemail_message)
            .bind(&queue.announcement)
            .bind(queue.updated_at)
            .bind(expected_updated_at)
            .bind(queue.transfer_mode.as_str())
            .bind(&queue.hold_music_url)
            .execute(&mut *tx)
            .await?;
            if res.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(true)
        }.await);
        result.map_err(unique_name)
    }

    /// Deletes a queue of a tenant and writes its audit row; its callback tasks stay, without
    /// a queue. Returns false when no such queue exists.
    pub async fn delete_queue(
        &self,
        tenant: &TenantId,
        id: &QueueId,
        audit: &NewAudit,
    ) -> Result<bool, StoreError> {
        let deleted = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let res = sqlx::query("DELETE FROM operator_queues WHERE id = $1 AND tenant_id = $2")
                .bind(id.as_str())
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await?;
            let deleted = res.rows_affected() == 1;
            if deleted {
                insert_audit!(&mut *tx, audit)?;
            }
            tx.commit().await?;
            deleted
        });
        Ok(deleted)
    }

    /// Reads a queue of a tenant by id.
    pub async fn get_queue(
        &self,
        tenant: &TenantId,
        id: &QueueId,
    ) -> Result<Option<OperatorQueue>, StoreError> {
        let row: Option<QueueRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {QUEUE_COLUMNS} FROM operator_queues WHERE tenant_id = $1 AND id = $2"
            )))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(OperatorQueue::try_from).transpose()
    }

    /// Reads a queue of a tenant by name (the name agent versions refer to).
    pub async fn get_queue_by_name(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Option<OperatorQueue>, StoreError> {
        let row: Option<QueueRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {QUEUE_COLUMNS} FROM operator_queues WHERE tenant_id = $1 AND name = $2"
            )))
            .bind(tenant.as_str())
            .bind(name)
            .fetch_optional(pool)
            .await?
        });
        row.map(OperatorQueue::try_from).transpose()
    }

    /// Lists a tenant's queues by name.
    pub async fn list_queues(
        &self,
        tenant: &TenantId,
        limit: u32,
        offset: u32,
    ) -> Result<Page<OperatorQueue>, StoreError> {
        let (rows, total): (Vec<QueueRow>, i64) = on_pool!(self, pool => {
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {QUEUE_COLUMNS} FROM operator_queues WHERE tenant_id = $1 ORDER BY name, id LIMIT $2 OFFSET $3"
            )))
            .bind(tenant.as_str())
            .bind(as_i64(limit))
            .bind(as_i64(offset))
            .fetch_all(pool)
            .await?;
            let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM operator_queues WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        Ok(Page {
            items: rows
                .into_iter()
                .map(OperatorQueue::try_from)
                .collect::<Result<_, _>>()?,
            total,
        })
    }
}
