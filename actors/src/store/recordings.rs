//! Call recordings (issue 16, part 1): the metadata of the recordings the carrier made (the
//! audio stays at the carrier), their status callbacks (idempotent; a row changes only for
//! its own tenant and call; `voice.recording.completed` written in the same transaction the
//! first time a recording completes), deletions (who, why, when, recorded on the row), the
//! per-tenant retention, and the retention sweeper's claims (a lease per row, so two nodes
//! never delete the same recording).

use super::webhooks::insert_event;
use super::{NewEvent, Store, StoreError, on_pool};
use crate::ids::{CallId, RecordingId, TenantId};

/// A recording row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRecord {
    /// Our id.
    pub id: RecordingId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The call recorded.
    pub call_id: CallId,
    /// The carrier's `RE…`.
    pub recording_sid: String,
    /// The carrier account it is stored under.
    pub account_sid: String,
    /// 2 for dual-channel.
    pub channels: i64,
    /// `in-progress`, `completed`, `absent`, `failed`.
    pub status: String,
    /// Length, once completed.
    pub duration_seconds: Option<i64>,
    /// When recording started (Unix ms).
    pub started_at: Option<i64>,
    /// When the carrier reported it completed (Unix ms).
    pub completed_at: Option<i64>,
    /// Created here (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
    /// Deleted (at the carrier and here), Unix ms.
    pub deleted_at: Option<i64>,
    /// Who deleted it: `retention`, or the API key / identity.
    pub deleted_by: Option<String>,
    /// Why.
    pub deleted_reason: Option<String>,
}

#[derive(sqlx::FromRow)]
struct RecordingRow {
    id: String,
    tenant_id: String,
    call_id: String,
    recording_sid: String,
    account_sid: String,
    channels: i64,
    status: String,
    duration_seconds: Option<i64>,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    deleted_by: Option<String>,
    deleted_reason: Option<String>,
}

const COLUMNS: &str = "id, tenant_id, call_id, recording_sid, account_sid, channels, status, \
     duration_seconds, started_at, completed_at, created_at, updated_at, deleted_at, deleted_by, deleted_reason";

impl From<RecordingRow> for RecordingRecord {
    fn from(r: RecordingRow) -> Self {
        RecordingRecord {
            id: RecordingId::from_stored(r.id),
            tenant_id: TenantId::from_stored(r.tenant_id),
            call_id: CallId::from_stored(r.call_id),
            recording_sid: r.recording_sid,
            account_sid: r.account_sid,
            channels: r.channels,
            status: r.status,
            duration_seconds: r.duration_seconds,
            started_at: r.started_at,
            completed_at: r.completed_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            deleted_at: r.deleted_at,
            deleted_by: r.deleted_by,
            deleted_reason: r.deleted_reason,
        }
    }
}

/// A recording the carrier accepted to start.
#[derive(Debug, Clone)]
pub struct NewRecording {
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The call.
    pub call_id: CallId,
    /// `RE…`.
    pub recording_sid: String,
    /// Its account.
    pub account_sid: String,
    /// Channels.
    pub channels: i64,
    /// Status the carrier answered.
    pub status: String,
    /// Started (Unix ms).
    pub started_at: Option<i64>,
    /// Now.
    pub now: i64,
}

/// A recording status callback, verified and scoped to its tenant and call.
#[derive(Debug, Clone)]
pub struct RecordingCallback {
    /// Tenant of the signing account.
    pub tenant_id: TenantId,
    /// The call (of that tenant) it is about.
    pub call_id: CallId,
    /// `AccountSid`.
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
    /// Now.
    pub now: i64,
}

/// What a status callback changed.
#[derive(Debug, Clone)]
pub enum RecordingUpsert {
    /// The row as it is now; `completed_now` when this callback completed it (its event was
    /// written with it).
    Applied {
        /// The row.
        recording: Box<RecordingRecord>,
        /// This callback completed it.
        completed_now: bool,
    },
    /// The SID belongs to another tenant's or call's recording: nothing changed.
    Foreign,
}

/// A recording past its tenant's retention, claimed for deletion.
#[derive(Debug, Clone)]
pub struct SweepCandidate {
    /// The row.
    pub recording: RecordingRecord,
    /// The claim's token (the deletion is recorded only under it).
    pub token: String,
}

/// Statuses after which a callback no longer changes the status.
const FINAL_SQL: &str = "('completed', 'absent', 'failed')";

impl Store {
    /// Records a recording the carrier started (a callback may have recorded it first: then
    /// nothing changes).
    pub async fn insert_recording(&self, r: &NewRecording) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO recordings (id, tenant_id, call_id, recording_sid, account_sid, channels, status, \
                 started_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
                 ON CONFLICT (recording_sid) DO NOTHING",
            )
            .bind(RecordingId::generate().as_str())
            .bind(r.tenant_id.as_str())
            .bind(r.call_id.as_str())
            .bind(&r.recording_sid)
            .bind(&r.account_sid)
            .bind(r.channels)
            .bind(&r.status)
            .bind(r.started_at)
            .bind(r.now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Applies a status callback: the row is created if missing, its status advanced unless
    /// final, duration and times filled; a row of another tenant or call is never touched.
    /// The first `completed` writes `event(row)` in the same transaction.
    pub async fn apply_recording_callback(
        &self,
        cb: &RecordingCallback,
        event: impl FnOnce(&RecordingRecord) -> NewEvent + Send,
    ) -> Result<RecordingUpsert, StoreError> {
        let outcome = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // A write first (a no-op touch returning the row as it was): SQLite takes its
            // write lock at the transaction's first statement, never upgrades a read lock
            // (which fails at once under a concurrent writer).
            let before: Option<RecordingRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE recordings SET updated_at = updated_at WHERE recording_sid = $1 RETURNING {COLUMNS}"
            )))
            .bind(&cb.recording_sid)
            .fetch_optional(&mut *tx)
            .await?;
            match before.map(RecordingRecord::from) {
                Some(row) if row.tenant_id != cb.tenant_id || row.call_id != cb.call_id => {
                    RecordingUpsert::Foreign
                }
                before => {
                    let completed_at = (cb.status == "completed").then_some(cb.now);
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO recordings (id, tenant_id, call_id, recording_sid, account_sid, channels, status, \
                         duration_seconds, started_at, completed_at, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
                         ON CONFLICT (recording_sid) DO UPDATE SET \
                         status = CASE WHEN recordings.status IN {FINAL_SQL} THEN recordings.status ELSE excluded.status END, \
                         duration_seconds = COALESCE(excluded.duration_seconds, recordings.duration_seconds), \
                         started_at = COALESCE(recordings.started_at, excluded.started_at), \
                         completed_at = COALESCE(recordings.completed_at, excluded.completed_at), \
                         channels = excluded.channels, updated_at = excluded.updated_at \
                         WHERE recordings.tenant_id = excluded.tenant_id AND recordings.call_id = excluded.call_id"
                    )))
                    .bind(RecordingId::generate().as_str())
                    .bind(cb.tenant_id.as_str())
                    .bind(cb.call_id.as_str())
                    .bind(&cb.recording_sid)
                    .bind(&cb.account_sid)
                    .bind(cb.channels.or(before.as_ref().map(|r| r.channels)).unwrap_or(1))
                    .bind(&cb.status)
                    .bind(cb.duration_seconds)
                    .bind(cb.started_at)
                    .bind(completed_at)
                    .bind(cb.now)
                    .execute(&mut *tx)
                    .await?;
                    let row: RecordingRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT {COLUMNS} FROM recordings WHERE recording_sid = $1"
                    )))
                    .bind(&cb.recording_sid)
                    .fetch_one(&mut *tx)
                    .await?;
                    let recording = RecordingRecord::from(row);
                    if recording.tenant_id != cb.tenant_id || recording.call_id != cb.call_id {
                        // Another tenant's (or call's) row, inserted concurrently: untouched.
                        tx.rollback().await?;
                        RecordingUpsert::Foreign
                    } else {
                        // The event is written once: by the one transaction whose conditional
                        // update marks it (a concurrent duplicate callback waits for the row,
                        // then finds it marked).
                        let completed_now = sqlx::query(
                            "UPDATE recordings SET completed_event_at = $2 WHERE recording_sid = $1 \
                             AND status = 'completed' AND completed_event_at IS NULL",
                        )
                        .bind(&cb.recording_sid)
                        .bind(cb.now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                            == 1;
                        if completed_now {
                            let new_event = event(&recording);
                            let _queued = insert_event!(&mut *tx, &new_event);
                        }
                        tx.commit().await?;
                        RecordingUpsert::Applied { recording: Box::new(recording), completed_now }
                    }
                }
            }
        });
        Ok(outcome)
    }

    /// The recordings of a call of `tenant`, oldest first.
    pub async fn list_recordings(
        &self,
        tenant: &TenantId,
        call: &CallId,
    ) -> Result<Vec<RecordingRecord>, StoreError> {
        let rows: Vec<RecordingRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM recordings WHERE tenant_id = $1 AND call_id = $2 ORDER BY created_at, id"
            )))
            .bind(tenant.as_str())
            .bind(call.as_str())
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// One recording of a call of `tenant`.
    pub async fn get_recording(
        &self,
        tenant: &TenantId,
        call: &CallId,
        id: &RecordingId,
    ) -> Result<Option<RecordingRecord>, StoreError> {
        let row: Option<RecordingRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM recordings WHERE tenant_id = $1 AND call_id = $2 AND id = $3"
            )))
            .bind(tenant.as_str())
            .bind(call.as_str())
            .bind(id.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(Into::into))
    }

    /// Whether any recording of `call` was recorded (a resumed stream starts none again).
    pub async fn call_has_recording(&self, call: &CallId) -> Result<bool, StoreError> {
        let found: Option<String> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM recordings WHERE call_id = $1 LIMIT 1")
                .bind(call.as_str())
                .fetch_optional(pool)
                .await?
        });
        Ok(found.is_some())
    }

    /// Marks a recording deleted (once: a row already deleted is left as it is), with who
    /// and why, and its timeline entry, in one transaction. `token`: the sweeper's claim,
    /// which must still be held. Returns the row when this call deleted it.
    pub async fn mark_recording_deleted(
        &self,
        id: &RecordingId,
        by: &str,
        reason: &str,
        token: Option<&str>,
        now: i64,
    ) -> Result<Option<RecordingRecord>, StoreError> {
        let row: Option<RecordingRow> = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let row: Option<RecordingRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE recordings SET deleted_at = $2, deleted_by = $3, deleted_reason = $4, updated_at = $2, \
                 sweep_lease_until = NULL, sweep_token = NULL \
                 WHERE id = $1 AND deleted_at IS NULL AND ($5 IS NULL OR sweep_token = $5) RETURNING {COLUMNS}"
            )))
            .bind(id.as_str())
            .bind(now)
            .bind(by)
            .bind(reason)
            .bind(token)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(r) = &row {
                let detail = serde_json::json!({
                    "event": "deleted",
                    "recording_id": r.id,
                    "recording_sid": r.recording_sid,
                    "deleted_by": by,
                    "reason": reason,
                });
                sqlx::query(
                    "INSERT INTO call_events (call_id, at, kind, detail) VALUES ($1, $2, 'recording', $3)",
                )
                .bind(&r.call_id)
                .bind(now)
                .bind(detail.to_string())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            row
        });
        Ok(row.map(Into::into))
    }

    /// Claims up to `limit` recordings past their tenant's retention at `now` (not deleted,
    /// not claimed by a live lease) with one conditional `UPDATE`: each gets `token` until
    /// `lease_until`. A row is claimed by one sweeper only.
    pub async fn claim_expired_recordings(
        &self,
        now: i64,
        lease_until: i64,
        token: &str,
        limit: u32,
    ) -> Result<Vec<SweepCandidate>, StoreError> {
        const DUE: &str = "(deleted_at IS NULL AND (sweep_lease_until IS NULL OR sweep_lease_until < $1) \
             AND EXISTS (SELECT 1 FROM tenant_recording_settings s WHERE s.tenant_id = recordings.tenant_id \
             AND s.retention_days IS NOT NULL AND recordings.created_at < $1 - s.retention_days * 86400000))";
        let rows: Vec<RecordingRow> = match self {
            Store::Sqlite(pool) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE recordings SET sweep_lease_until = $2, sweep_token = $3 \
                 WHERE id IN (SELECT id FROM recordings WHERE {DUE} ORDER BY created_at, id LIMIT $4) AND {DUE} \
                 RETURNING {COLUMNS}"
            )))
            .bind(now)
            .bind(lease_until)
            .bind(token)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?,
            Store::Postgres(pool) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE recordings SET sweep_lease_until = $2, sweep_token = $3 \
                 WHERE id IN (SELECT id FROM recordings WHERE {DUE} ORDER BY created_at, id LIMIT $4 \
                 FOR UPDATE SKIP LOCKED) AND {DUE} \
                 RETURNING {COLUMNS}"
            )))
            .bind(now)
            .bind(lease_until)
            .bind(token)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?,
        };
        Ok(rows
            .into_iter()
            .map(|r| SweepCandidate {
                recording: r.into(),
                token: token.to_owned(),
            })
            .collect())
    }

    /// A tenant's recording retention in days (`None`: kept until deleted).
    pub async fn recording_retention(&self, tenant: &TenantId) -> Result<Option<i64>, StoreError> {
        let days: Option<Option<i64>> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT retention_days FROM tenant_recording_settings WHERE tenant_id = $1",
            )
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(days.flatten())
    }

    /// Sets a tenant's recording retention with its audit row, in one transaction.
    pub async fn put_recording_retention(
        &self,
        tenant: &TenantId,
        days: Option<i64>,
        now: i64,
        audit: &super::NewAudit,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO tenant_recording_settings (tenant_id, retention_days, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id) DO UPDATE SET retention_days = excluded.retention_days, updated_at = excluded.updated_at",
            )
            .bind(tenant.as_str())
            .bind(days)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            super::audit::insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
        });
        Ok(())
    }
}
