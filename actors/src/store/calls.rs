//! The call log: admission (an atomic count-and-insert against the tenant's and the route's
//! concurrency limits), carrier updates, status callbacks (stored once per sequence number;
//! the status only ever advanced by a higher one), stream state, the call timeline, and the
//! single-use stream-token nonces.

use super::{
    Admission, CallDirection, CallEvent, CallFilter, CallRecord, Page, Placement, StatusEvent,
    Store, StoreError, as_i64, is_terminal_status, on_pool,
};
use crate::ending::Continuation;
use crate::ids::{CallId, RouteId, TenantId};
use crate::time::now_ms;

#[derive(sqlx::FromRow)]
pub(super) struct CallRow {
    id: String,
    tenant_id: String,
    call_sid: Option<String>,
    account_sid: Option<String>,
    route_id: Option<String>,
    direction: String,
    from_number: String,
    to_number: String,
    status: String,
    status_sequence: Option<i64>,
    agent_key: Option<String>,
    agent_version_id: Option<String>,
    end_reason: Option<String>,
    answered_by: Option<String>,
    duration_seconds: Option<i64>,
    metadata: Option<String>,
    stream_sid: Option<String>,
    stream_status: Option<String>,
    after_stream: Option<String>,
    greeting: Option<String>,
    org_id: Option<String>,
    machine_detection: Option<String>,
    amd_action: Option<String>,
    amd_timeout_seconds: Option<i64>,
    machine_outcome: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    identity_state: Option<String>,
    recording_policy: String,
    escalated_to: Option<String>,
    end_detail: Option<String>,
    outcome: Option<String>,
    completed_at: Option<i64>,
    placement: Option<String>,
    node_id: Option<String>,
    node_started_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    started_at: Option<i64>,
    ended_at: Option<i64>,
}

pub(super) const CALL_COLUMNS: &str = "id, tenant_id, call_sid, account_sid, route_id, direction, from_number, to_number, \
     status, status_sequence, agent_key, agent_version_id, end_reason, answered_by, duration_seconds, metadata, \
     stream_sid, stream_status, after_stream, greeting, org_id, machine_detection, amd_action, amd_timeout_seconds, machine_outcome, \
     error_code, error_message, identity_state, recording_policy, escalated_to, end_detail, outcome, completed_at, placement, node_id, node_started_at, created_at, updated_at, started_at, ended_at";

/// SQL list of live statuses, for `IN (…)`.
const LIVE_SQL: &str = "('queued', 'initiated', 'ringing', 'in-progress')";

impl TryFrom<CallRow> for CallRecord {
    type Error = StoreError;

    fn try_from(r: CallRow) -> Result<Self, StoreError> {
        Ok(CallRecord {
            id: CallId::from_stored(r.id),
            tenant_id: TenantId::from_stored(r.tenant_id),
            call_sid: r.call_sid,
            account_sid: r.account_sid,
            route_id: r.route_id.map(RouteId::from_stored),
            direction: CallDirection::parse(&r.direction)
                .ok_or(StoreError::Corrupt("calls.direction"))?,
            from_number: r.from_number,
            to_number: r.to_number,
            status: r.status,
            status_sequence: r.status_sequence,
            agent_key: r.agent_key,
            agent_version_id: r.agent_version_id,
            end_reason: r.end_reason,
            answered_by: r.answered_by,
            duration_seconds: r.duration_seconds,
            metadata: r.metadata.and_then(|m| serde_json::from_str(&m).ok()),
            stream_sid: r.stream_sid,
            stream_status: r.stream_status,
            after_stream: match r.after_stream {
                Some(a) => {
                    Some(Continuation::parse(&a).ok_or(StoreError::Corrupt("calls.after_stream"))?)
                }
                None => None,
            },
            greeting: r.greeting,
            org_id: r.org_id,
            machine_detection: r.machine_detection,
            amd_action: r.amd_action,
            amd_timeout_seconds: r.amd_timeout_seconds,
            machine_outcome: r.machine_outcome,
            error_code: r.error_code,
            error_message: r.error_message,
            identity_state: r.identity_state,
            recording_policy: crate::recording::RecordingPolicy::parse(&r.recording_policy)
                .ok_or(StoreError::Corrupt("calls.recording_policy"))?,
            escalated_to: r.escalated_to,
            end_detail: r.end_detail,
            outcome: match r.outcome {
                Some(o) => Some(
                    crate::ending::Outcome::parse(&o)
                        .ok_or(StoreError::Corrupt("calls.outcome"))?,
                ),
                None => None,
            },
            completed_at: r.completed_at,
            placement: match r.placement {
                Some(p) => {
                    Some(Placement::parse(&p).ok_or(StoreError::Corrupt("calls.placement"))?)
                }
                None => None,
            },
            node_id: r.node_id,
            node_started_at: r.node_started_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            started_at: r.started_at,
            ended_at: r.ended_at,
        })
    }
}

/// A status callback to apply.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    /// The call, when it is already recorded (otherwise the event waits to be attached).
    pub call_id: Option<CallId>,
    /// The account that signed the callback.
    pub account_sid: String,
    /// `CallSid`.
    pub call_sid: String,
    /// `SequenceNumber`.
    pub sequence_number: i64,
    /// `CallStatus`.
    pub status: String,
    /// When the event fired (callback `Timestamp`, Unix ms).
    pub at: i64,
    /// `CallDuration`, on the final event.
    pub duration_seconds: Option<i64>,
    /// `AnsweredBy`, with AMD.
    pub answered_by: Option<String>,
    /// All parameters, stored with the event.
    pub params: serde_json::Value,
}

/// Applies one status event to its call inside a transaction (`$exec` is `&mut *tx`).
macro_rules! apply_status {
    ($exec:expr, $call_id:expr, $u:expr) => {{
        let u: &StatusUpdate = $u;
        let call_id: &CallId = $call_id;
        let now = now_ms();
        let terminal = is_terminal_status(&u.status);
        let answered = u.status == "in-progress";
        sqlx::query(
            "UPDATE calls SET status = $2, status_sequence = $3, updated_at = $4 \
             WHERE id = $1 AND (status_sequence IS NULL OR status_sequence < $3)",
        )
        .bind(call_id.as_str())
        .bind(&u.status)
        .bind(u.sequence_number)
        .bind(now)
        .execute($exec)
        .await?;
        sqlx::query(
            "UPDATE calls SET call_sid = COALESCE(call_sid, $2), \
             started_at = CASE WHEN $3 THEN COALESCE(started_at, $5) ELSE started_at END, \
             ended_at = CASE WHEN $4 THEN COALESCE(ended_at, $5) ELSE ended_at END, \
             duration_seconds = COALESCE($6, duration_seconds), answered_by = COALESCE($7, answered_by), \
             updated_at = $8 WHERE id = $1",
        )
        .bind(call_id.as_str())
        .bind(&u.call_sid)
        .bind(answered)
        .bind(terminal)
        .bind(u.at)
        .bind(u.duration_seconds)
        .bind(&u.answered_by)
        .bind(now)
        .execute($exec)
        .await?;
    }};
}

impl Store {
    /// Records `call` if the tenant (`tenant_limit`) and its route (`route_limit`) are under
    /// their limits of live calls created since `live_since`. Count and insert are atomic.
    pub async fn admit_call(
        &self,
        call: &CallRecord,
        tenant_limit: i64,
        route_limit: Option<i64>,
        live_since: i64,
    ) -> Result<Admission, StoreError> {
        let sql = format!(
            "INSERT INTO calls (id, tenant_id, call_sid, account_sid, route_id, direction, from_number, to_number, \
             status, agent_key, agent_version_id, metadata, greeting, org_id, machine_detection, created_at, updated_at, placement, \
             node_id, node_started_at, recording_policy, amd_action, amd_timeout_seconds) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $21, $22, $23, $24, $25, $26 WHERE \
             (SELECT COUNT(*) FROM calls WHERE tenant_id = $2 AND status IN {LIVE_SQL} AND ended_at IS NULL AND created_at >= $18) < $19 \
             AND ($5 IS NULL OR (SELECT COUNT(*) FROM calls WHERE route_id = $5 AND status IN {LIVE_SQL} AND ended_at IS NULL AND created_at >= $18) < $20)"
        );
        macro_rules! insert {
            ($exec:expr) => {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(call.id.as_str())
                    .bind(call.tenant_id.as_str())
                    .bind(&call.call_sid)
                    .bind(&call.account_sid)
                    .bind(call.route_id.as_ref().map(|r| r.as_str().to_owned()))
                    .bind(call.direction.as_str())
                    .bind(&call.from_number)
                    .bind(&call.to_number)
                    .bind(&call.status)
                    .bind(&call.agent_key)
                    .bind(&call.agent_version_id)
                    .bind(call.metadata.as_ref().map(|m| m.to_string()))
                    .bind(&call.greeting)
                    .bind(&call.org_id)
                    .bind(&call.machine_detection)
                    .bind(call.created_at)
                    .bind(call.updated_at)
                    .bind(live_since)
                    .bind(tenant_limit)
                    .bind(route_limit.unwrap_or(i64::MAX))
                    .bind(call.placement.map(Placement::as_str))
                    .bind(&call.node_id)
                    .bind(call.node_started_at)
                    .bind(call.recording_policy.as_str())
                    .bind(&call.amd_action)
                    .bind(call.amd_timeout_seconds)
                    .execute($exec)
                    .await?
                    .rows_affected()
            };
        }
        let inserted = match self {
            // One statement: SQLite takes its single write lock when the statement starts
            // (before the counts are read), so every node's admission sees the last one's.
            Store::Sqlite(pool) => insert!(pool),
            // PostgreSQL (READ COMMITTED: two transactions could both count 9 < 10): admissions
            // of one tenant are serialised, on every node, by a transaction-scoped advisory
            // lock taken before the statement, whose snapshot then sees the previous holder's
            // insert. A route belongs to one tenant, so its count is covered by the same lock.
            // Tested by `tests/api/cluster_limits.rs` (30 attempts over 3 nodes, limit 10).
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(call.tenant_id.as_str())
                    .execute(&mut *tx)
                    .await?;
                let n = insert!(&mut *tx);
                tx.commit().await?;
                n
            }
        };
        if inserted == 1 {
            return Ok(Admission::Admitted);
        }
        let tenant_live = self
            .count_live_calls(&call.tenant_id, None, live_since)
            .await?;
        Ok(if tenant_live >= tenant_limit {
            Admission::TenantAtLimit
        } else {
            Admission::RouteAtLimit
        })
    }

    /// Live calls of a tenant (or of one of its routes) created since `live_since`.
    pub async fn count_live_calls(
        &self,
        tenant: &TenantId,
        route: Option<&RouteId>,
        live_since: i64,
    ) -> Result<i64, StoreError> {
        let route = route.map(|r| r.as_str().to_owned());
        let sql = format!(
            "SELECT COUNT(*) FROM calls WHERE tenant_id = $1 AND ($2 IS NULL OR route_id = $2) \
             AND status IN {LIVE_SQL} AND ended_at IS NULL AND created_at >= $3"
        );
        let n: i64 = on_pool!(self, pool => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(tenant.as_str())
                .bind(&route)
                .bind(live_since)
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }

    /// Reads a call of a tenant.
    pub async fn get_call(
        &self,
        tenant: &TenantId,
        id: &CallId,
    ) -> Result<Option<CallRecord>, StoreError> {
        let row: Option<CallRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {CALL_COLUMNS} FROM calls WHERE tenant_id = $1 AND id = $2")))
                .bind(tenant.as_str())
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?
        });
        row.map(CallRecord::try_from).transpose()
    }

    /// Reads a call by id, whatever its tenant (for carrier callbacks, which are
    /// authenticated by the account's signature and then checked against the call's account).
    pub async fn get_call_by_id(&self, id: &CallId) -> Result<Option<CallRecord>, StoreError> {
        let row: Option<CallRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = $1")))
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?
        });
        row.map(CallRecord::try_from).transpose()
    }

    /// Finds a call by Twilio `CallSid`.
    pub async fn call_by_sid(&self, call_sid: &str) -> Result<Option<CallRecord>, StoreError> {
        let row: Option<CallRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {CALL_COLUMNS} FROM calls WHERE call_sid = $1")))
                .bind(call_sid)
                .fetch_optional(pool)
                .await?
        });
        row.map(CallRecord::try_from).transpose()
    }

    /// Lists a tenant's calls, newest first.
    pub async fn list_calls(&self, f: &CallFilter) -> Result<Page<CallRecord>, StoreError> {
        let where_sql = "tenant_id = $1 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR direction = $3) \
             AND ($4 IS NULL OR created_at >= $4) AND ($5 IS NULL OR created_at < $5)";
        let direction = f.direction.map(|d| d.as_str().to_owned());
        let (rows, total): (Vec<CallRow>, i64) = on_pool!(self, pool => {
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {CALL_COLUMNS} FROM calls WHERE {where_sql} ORDER BY created_at DESC, id DESC LIMIT $6 OFFSET $7"
            )))
            .bind(f.tenant_id.as_str())
            .bind(&f.status)
            .bind(&direction)
            .bind(f.from_ms)
            .bind(f.to_ms)
            .bind(as_i64(f.limit))
            .bind(as_i64(f.offset))
            .fetch_all(pool)
            .await?;
            let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM calls WHERE {where_sql}")))
                .bind(f.tenant_id.as_str())
                .bind(&f.status)
                .bind(&direction)
                .bind(f.from_ms)
                .bind(f.to_ms)
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        Ok(Page {
            items: rows
                .into_iter()
                .map(CallRecord::try_from)
                .collect::<Result<_, _>>()?,
            total,
        })
    }

    /// Stores the carrier's `CallSid` (and its reported status, unless a callback already
    /// set one).
    pub async fn set_call_sid(
        &self,
        id: &CallId,
        call_sid: &str,
        status: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE calls SET call_sid = $2, status = CASE WHEN status_sequence IS NULL THEN $3 ELSE status END, \
                 updated_at = $4 WHERE id = $1",
            )
            .bind(id.as_str())
            .bind(call_sid)
            .bind(status)
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Records the carrier's answer to a placement: the call has `call_sid` (and the reported
    /// status, unless a callback already set one), and its placement is `placed`. Returns
    /// false, changing nothing, when the call has another SID already or another call of
    /// ours has this one (a carrier lookup must never give two calls one SID).
    pub async fn record_placed(
        &self,
        id: &CallId,
        call_sid: &str,
        status: &str,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE calls SET call_sid = $2, status = CASE WHEN status_sequence IS NULL THEN $3 ELSE status END, \
                 placement = 'placed', updated_at = $4 \
                 WHERE id = $1 AND (call_sid IS NULL OR call_sid = $2) \
                 AND NOT EXISTS (SELECT 1 FROM calls other WHERE other.call_sid = $2 AND other.id <> $1)",
            )
            .bind(id.as_str())
            .bind(call_sid)
            .bind(status)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Sets where the placement of an outbound call stands (`pending`, `unknown`).
    pub async fn set_placement(&self, id: &CallId, placement: Placement) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE calls SET placement = $2, updated_at = $3 WHERE id = $1")
                .bind(id.as_str())
                .bind(placement.as_str())
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The carrier refused the call (`Refused`, with its error code and message) or never
    /// had it (`NotFound`): the call is `failed`, unless a status callback said otherwise,
    /// and ends now. A call a status callback already answered is left as the carrier
    /// reported it, so the record never says `failed` and then `completed`.
    pub async fn record_not_placed(
        &self,
        id: &CallId,
        placement: Placement,
        code: Option<&str>,
        message: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE calls SET placement = $2, error_code = COALESCE($3, error_code), error_message = $4, \
                 status = CASE WHEN status_sequence IS NULL THEN 'failed' ELSE status END, \
                 ended_at = CASE WHEN status_sequence IS NULL THEN COALESCE(ended_at, $5) ELSE ended_at END, \
                 updated_at = $5 WHERE id = $1",
            )
            .bind(id.as_str())
            .bind(placement.as_str())
            .bind(code)
            .bind(message)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Applies a status callback: stored once per (CallSid, SequenceNumber); the call's
    /// status moves only to a higher sequence number; timestamps, duration and AMD result
    /// are filled in whatever the order. A callback for a call not recorded yet is stored
    /// unattached (see [`Store::attach_status_events`]). Returns false for a duplicate.
    pub async fn record_status(&self, u: &StatusUpdate) -> Result<bool, StoreError> {
        let inserted = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let res = sqlx::query(
                "INSERT INTO call_status_events (call_sid, sequence_number, call_id, account_sid, status, at, params) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (call_sid, sequence_number) DO NOTHING",
            )
            .bind(&u.call_sid)
            .bind(u.sequence_number)
            .bind(u.call_id.as_ref().map(|c| c.as_str().to_owned()))
            .bind(&u.account_sid)
            .bind(&u.status)
            .bind(u.at)
            .bind(u.params.to_string())
            .execute(&mut *tx)
            .await?;
            let inserted = res.rows_affected() == 1;
            if inserted && let Some(call_id) = &u.call_id {
                apply_status!(&mut *tx, call_id, u);
            }
            tx.commit().await?;
            inserted
        });
        Ok(inserted)
    }

    /// Attaches status callbacks that arrived before their call was recorded (same
    /// `CallSid`, same account) and applies them.
    pub async fn attach_status_events(
        &self,
        call_id: &CallId,
        call_sid: &str,
        account_sid: &str,
    ) -> Result<usize, StoreError> {
        let orphans: Vec<(i64, String, i64, String)> = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // Write first: claiming the rows with `UPDATE … RETURNING` takes SQLite's write
            // lock before anything is read. A SELECT first (a read snapshot) followed by the
            // UPDATE failed with SQLITE_BUSY_SNAPSHOT ("database is locked", which the busy
            // timeout does not retry) whenever another connection wrote in between — and
            // this runs on every inbound call, next to live calls writing their records, so
            // the incoming-call webhook answered 500 and the caller got an application error.
            let mut rows: Vec<(i64, String, i64, String)> = sqlx::query_as(
                "UPDATE call_status_events SET call_id = $1 \
                 WHERE call_sid = $2 AND account_sid = $3 AND call_id IS NULL \
                 RETURNING sequence_number, status, at, params",
            )
            .bind(call_id.as_str())
            .bind(call_sid)
            .bind(account_sid)
            .fetch_all(&mut *tx)
            .await?;
            rows.sort_by_key(|(sequence_number, ..)| *sequence_number);
            for (sequence_number, status, at, params) in &rows {
                let params: serde_json::Value = serde_json::from_str(params).unwrap_or_default();
                let u = StatusUpdate {
                    call_id: Some(call_id.clone()),
                    account_sid: account_sid.to_owned(),
                    call_sid: call_sid.to_owned(),
                    sequence_number: *sequence_number,
                    status: status.clone(),
                    at: *at,
                    duration_seconds: params.get("CallDuration").and_then(|d| d.as_str()).and_then(|d| d.parse().ok()),
                    answered_by: params.get("AnsweredBy").and_then(|a| a.as_str()).map(str::to_owned),
                    params,
                };
                apply_status!(&mut *tx, call_id, &u);
            }
            tx.commit().await?;
            rows
        });
        Ok(orphans.len())
    }

    /// The status callbacks of a call, by sequence number.
    pub async fn status_events(&self, call: &CallId) -> Result<Vec<StatusEvent>, StoreError> {
        let rows: Vec<(i64, String, i64, String)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT sequence_number, status, at, params FROM call_status_events WHERE call_id = $1 ORDER BY sequence_number")
                .bind(call.as_str())
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(sequence_number, status, at, params)| StatusEvent {
                sequence_number,
                status,
                at,
                params: serde_json::from_str(&params).unwrap_or(serde_json::Value::Null),
            })
            .collect())
    }

    /// Records the media stream's state (`started`, `stopped`, `error`).
    pub async fn set_stream_state(
        &self,
        id: &CallId,
        stream_sid: Option<&str>,
        state: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE calls SET stream_sid = COALESCE($2, stream_sid), stream_status = $3, updated_at = $4 WHERE id = $1")
                .bind(id.as_str())
                .bind(stream_sid)
                .bind(state)
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records what the carrier is told when the AI leg ends (`None` clears it).
    pub async fn set_continuation(
        &self,
        id: &CallId,
        after: Option<Continuation>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE calls SET after_stream = $2, updated_at = $3 WHERE id = $1")
                .bind(id.as_str())
                .bind(after.map(Continuation::as_str))
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Consumes a planned continuation: clears `after_stream` only if it is still `expected`
    /// (a fresh stream's `Resume` is answered once). Returns whether it was cleared.
    pub async fn take_continuation(
        &self,
        id: &CallId,
        expected: Continuation,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query("UPDATE calls SET after_stream = NULL, updated_at = $3 WHERE id = $1 AND after_stream = $2")
                .bind(id.as_str())
                .bind(expected.as_str())
                .bind(now_ms())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// A handoff nobody answered: the call is no longer escalated and nothing is planned
    /// after its stream (the dial result decides what follows).
    pub async fn clear_escalation(&self, id: &CallId) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE calls SET escalated_to = NULL, after_stream = NULL, updated_at = $2 WHERE id = $1")
                .bind(id.as_str())
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records the answering-machine detection result.
    pub async fn set_answered_by(&self, id: &CallId, answered_by: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE calls SET answered_by = $2, updated_at = $3 WHERE id = $1")
                .bind(id.as_str())
                .bind(answered_by)
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Claims the call's machine outcome: true when none was recorded yet (the caller acts
    /// on the AMD result; a repeated or concurrent callback finds it taken and does nothing).
    pub async fn claim_machine_outcome(
        &self,
        id: &CallId,
        outcome: &str,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE calls SET machine_outcome = $2, updated_at = $3 WHERE id = $1 AND machine_outcome IS NULL",
            )
            .bind(id.as_str())
            .bind(outcome)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Gives a claimed machine outcome back (its action failed at the carrier).
    pub async fn release_machine_outcome(
        &self,
        id: &CallId,
        outcome: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE calls SET machine_outcome = NULL, updated_at = $3 WHERE id = $1 AND machine_outcome = $2",
            )
            .bind(id.as_str())
            .bind(outcome)
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Appends to a call's timeline.
    pub async fn add_call_event(
        &self,
        id: &CallId,
        kind: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("INSERT INTO call_events (call_id, at, kind, detail) VALUES ($1, $2, $3, $4)")
                .bind(id.as_str())
                .bind(now_ms())
                .bind(kind)
                .bind(detail.to_string())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// A call's timeline, oldest first.
    pub async fn call_events(&self, id: &CallId) -> Result<Vec<CallEvent>, StoreError> {
        let rows: Vec<(i64, i64, String, String)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT id, at, kind, detail FROM call_events WHERE call_id = $1 ORDER BY id")
                .bind(id.as_str())
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, at, kind, detail)| CallEvent {
                id,
                at,
                kind,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            })
            .collect())
    }

    /// Consumes a stream-token nonce; false when it was already used.
    pub async fn consume_nonce(
        &self,
        nonce: &str,
        call: &CallId,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let inserted = on_pool!(self, pool => {
            sqlx::query("DELETE FROM stream_token_nonces WHERE expires_at < $1")
                .bind(now)
                .execute(pool)
                .await?;
            sqlx::query("INSERT INTO stream_token_nonces (nonce, call_id, expires_at) VALUES ($1, $2, $3) ON CONFLICT (nonce) DO NOTHING")
                .bind(nonce)
                .bind(call.as_str())
                .bind(expires_at)
                .execute(pool)
                .await?
                .rows_affected()
                == 1
        });
        Ok(inserted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LIVE_STATUSES;

    #[test]
    fn live_sql_matches_the_live_status_list() {
        for s in LIVE_STATUSES {
            assert!(LIVE_SQL.contains(&format!("'{s}'")));
        }
        assert_eq!(LIVE_SQL.matches('\'').count(), LIVE_STATUSES.len() * 2);
    }
}
