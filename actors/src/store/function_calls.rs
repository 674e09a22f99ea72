//! Function calls (every tool invocation of a model, with arguments, result or error, status
//! and latency), handoffs to human queues with their context, and the per-call identity and
//! escalation state on `calls`.
//!
//! A function call is keyed by (call, model call id): the insert that starts it is the
//! idempotency check, so one invocation of the model runs its tool at most once even when
//! the model (or a replayed session) repeats it. Its id is chosen by the caller (generated in
//! memory), so the call runtime never waits for the database to know it.

use serde::Serialize;

use super::{Store, StoreError, on_pool};
use crate::ids::{CallId, HandoffId, SessionId, TenantId};
use crate::time::now_ms;

/// How a function call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionCallStatus {
    /// Started, no result yet.
    Running,
    /// The tool answered.
    Succeeded,
    /// The tool failed (error status, bad response, carrier error …).
    Failed,
    /// Refused by the runtime (unknown tool, identity not verified …).
    Refused,
    /// The arguments did not match the schema; the tool was not called.
    Invalid,
    /// No answer within the tool's timeout.
    TimedOut,
    /// Cancelled (the caller interrupted, or the call ended).
    Cancelled,
}

impl FunctionCallStatus {
    /// As stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            FunctionCallStatus::Running => "running",
            FunctionCallStatus::Succeeded => "succeeded",
            FunctionCallStatus::Failed => "failed",
            FunctionCallStatus::Refused => "refused",
            FunctionCallStatus::Invalid => "invalid",
            FunctionCallStatus::TimedOut => "timed_out",
            FunctionCallStatus::Cancelled => "cancelled",
        }
    }

    /// Whether it counts as a tool failure for escalation rules.
    pub const fn is_failure(self) -> bool {
        matches!(
            self,
            FunctionCallStatus::Failed
                | FunctionCallStatus::Refused
                | FunctionCallStatus::Invalid
                | FunctionCallStatus::TimedOut
        )
    }
}

/// A recorded function call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionCall {
    /// Identifier (`fc_…`).
    pub id: String,
    /// The call.
    pub call_id: String,
    /// The voice session.
    pub session_id: String,
    /// The model's `call_id`.
    pub model_call_id: String,
    /// Tool name.
    pub name: String,
    /// `webhook`, `builtin` or `unknown`.
    pub kind: String,
    /// Arguments as the model sent them (JSON text).
    pub arguments: String,
    /// Status.
    pub status: String,
    /// Result given to the model.
    pub result: Option<String>,
    /// Error given to the model.
    pub error: Option<String>,
    /// Milliseconds from start to result.
    pub latency_ms: Option<i64>,
    /// Start (Unix ms).
    pub started_at: i64,
    /// End (Unix ms).
    pub finished_at: Option<i64>,
    /// The revision of its call at its last change (its start, or its result).
    pub rev: i64,
}

#[derive(sqlx::FromRow)]
struct FunctionCallRow {
    id: String,
    call_id: String,
    session_id: String,
    model_call_id: String,
    name: String,
    kind: String,
    arguments: String,
    status: String,
    result: Option<String>,
    error: Option<String>,
    latency_ms: Option<i64>,
    started_at: i64,
    finished_at: Option<i64>,
    rev: i64,
}

impl From<FunctionCallRow> for FunctionCall {
    fn from(r: FunctionCallRow) -> Self {
        FunctionCall {
            id: r.id,
            call_id: r.call_id,
            session_id: r.session_id,
            model_call_id: r.model_call_id,
            name: r.name,
            kind: r.kind,
            arguments: r.arguments,
            status: r.status,
            result: r.result,
            error: r.error,
            latency_ms: r.latency_ms,
            started_at: r.started_at,
            finished_at: r.finished_at,
            rev: r.rev,
        }
    }
}

const FC_COLUMNS: &str = "id, call_id, session_id, model_call_id, name, kind, arguments, status, result, error, \
     latency_ms, started_at, finished_at, rev";

/// Takes the next function-call revision of call `$call` (a `&str`) on an open transaction
/// (`$exec` is `&mut *tx`): the call row stays locked until the commit, so revisions of one
/// call become visible in their order. Database errors return from the enclosing function.
macro_rules! next_rev {
    ($exec:expr, $call:expr) => {{
        let rev: i64 = sqlx::query_scalar(
            "UPDATE calls SET function_call_rev = function_call_rev + 1 WHERE id = $1 RETURNING function_call_rev",
        )
        .bind($call)
        .fetch_one($exec)
        .await?;
        rev
    }};
}

/// A function call as it starts.
#[derive(Debug, Clone)]
pub struct NewFunctionCall<'a> {
    /// Identifier (`fc_…`), chosen by the caller.
    pub id: &'a str,
    /// Start (Unix ms).
    pub started_at: i64,
    /// Owning tenant.
    pub tenant_id: &'a TenantId,
    /// The call.
    pub call_id: &'a CallId,
    /// The session.
    pub session_id: &'a SessionId,
    /// The model's `call_id`.
    pub model_call_id: &'a str,
    /// Tool name.
    pub name: &'a str,
    /// `webhook`, `builtin`, `unknown`.
    pub kind: &'a str,
    /// Arguments (JSON text).
    pub arguments: &'a str,
}

/// How a function call ended, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledCall {
    /// Its final status.
    pub status: FunctionCallStatus,
    /// The result given to the model (a success).
    pub result: Option<String>,
    /// The error given to the model (anything else).
    pub error: Option<String>,
    /// Milliseconds from start to result.
    pub latency_ms: i64,
}

/// An invocation recorded by an earlier stream of the same call, and what the model was
/// given for it (its result, or its error as `{"error": …}`; `None` while it never finished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorInvocation {
    /// The model's `call_id`.
    pub model_call_id: String,
    /// The output given to the model.
    pub output: Option<String>,
}

/// A handoff to a human queue, with the context given to the operator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Handoff {
    /// Identifier (`ho_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The call.
    pub call_id: String,
    /// Queue id, when one was found.
    pub queue_id: Option<String>,
    /// Queue name.
    pub queue_name: Option<String>,
    /// Why (the model's reason or the rule's description).
    pub reason: String,
    /// What fired it: `tool:transfer_to_human` or the escalation rule kind.
    pub rule: String,
    /// The handoff context (JSON): reason, rule, summary, identity, caller.
    pub context: serde_json::Value,
    /// `dialing`, `answered`, `unanswered`, `closed`, `failed`.
    pub status: String,
    /// Twilio's `DialCallStatus`.
    pub dial_status: Option<String>,
    /// Who answered (number), when answered.
    pub target: Option<String>,
    /// What happened next: `bridged`, `callback_task`, `voicemail`, `agent`.
    pub outcome: Option<String>,
    /// The callback task created for it.
    pub callback_task_id: Option<String>,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Updated (Unix ms).
    pub updated_at: i64,
    /// The warm transfer, when the queue took the caller warm (`None`: a cold `<Dial>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm: Option<WarmTransfer>,
}

/// A warm transfer's state on its handoff: the caller waits in `conference_name` while the
/// operator leg hears the whisper and decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WarmTransfer {
    /// `ringing` (the operator leg is being called or hears the whisper), then once:
    /// `accepted`, `declined`, `unanswered`, `abandoned` (the caller left) or `failed`.
    pub state: String,
    /// The conference's friendly name (`handoff-<id>`).
    pub conference_name: Option<String>,
    /// `CF…`, once the carrier reported it.
    pub conference_sid: Option<String>,
    /// The operator leg's `CallSid`.
    pub operator_call_sid: Option<String>,
    /// The number called.
    pub operator_number: Option<String>,
    /// When the operator leg fetched the whisper (Unix ms).
    pub whispered_at: Option<i64>,
    /// When the state left `ringing` (Unix ms).
    pub decided_at: Option<i64>,
    /// The key the operator pressed.
    pub digits: Option<String>,
}

#[derive(sqlx::FromRow)]
struct HandoffRow {
    id: String,
    tenant_id: String,
    call_id: String,
    queue_id: Option<String>,
    queue_name: Option<String>,
    reason: String,
    rule: String,
    context: String,
    status: String,
    dial_status: Option<String>,
    target: Option<String>,
    outcome: Option<String>,
    callback_task_id: Option<String>,
    created_at: i64,
    updated_at: i64,
    transfer_mode: String,
    warm_state: Option<String>,
    conference_name: Option<String>,
    conference_sid: Option<String>,
    operator_call_sid: Option<String>,
    operator_number: Option<String>,
    whispered_at: Option<i64>,
    decided_at: Option<i64>,
    operator_digits: Option<String>,
}

impl From<HandoffRow> for Handoff {
    fn from(r: HandoffRow) -> Self {
        Handoff {
            id: r.id,
            tenant_id: r.tenant_id,
            call_id: r.call_id,
            queue_id: r.queue_id,
            queue_name: r.queue_name,
            reason: r.reason,
            rule: r.rule,
            context: serde_json::from_str(&r.context).unwrap_or_default(),
            status: r.status,
            dial_status: r.dial_status,
            target: r.target,
            outcome: r.outcome,
            callback_task_id: r.callback_task_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
            warm: (r.transfer_mode == "warm").then(|| WarmTransfer {
                state: r.warm_state.unwrap_or_else(|| String::from("ringing")),
                conference_name: r.conference_name,
                conference_sid: r.conference_sid,
                operator_call_sid: r.operator_call_sid,
                operator_number: r.operator_number,
                whispered_at: r.whispered_at,
                decided_at: r.decided_at,
                digits: r.operator_digits,
            }),
        }
    }
}

/// What a read of a handoff selects: its columns and the warm transfer's.
const HANDOFF_READ_COLUMNS: &str = "id, tenant_id, call_id, queue_id, queue_name, reason, rule, context, status, \
     dial_status, target, outcome, callback_task_id, created_at, updated_at, transfer_mode, warm_state, \
     conference_name, conference_sid, operator_call_sid, operator_number, whispered_at, decided_at, operator_digits";

const HANDOFF_COLUMNS: &str = "id, tenant_id, call_id, queue_id, queue_name, reason, rule, context, status, \
     dial_status, target, outcome, callback_task_id, created_at, updated_at";

impl Store {
    /// Records a function call as it starts (status `running`). `Ok(false)` when this
    /// (call, model call id) was already recorded: the invocation must not run again.
    pub async fn start_function_call(&self, new: &NewFunctionCall<'_>) -> Result<bool, StoreError> {
        self.insert_function_call(new, None).await
    }

    /// Records a function call that ended without running anything (refused, invalid, or
    /// answered by the runtime itself). `Ok(false)` when it was already recorded.
    pub async fn record_function_call(
        &self,
        new: &NewFunctionCall<'_>,
        settled: &SettledCall,
    ) -> Result<bool, StoreError> {
        self.insert_function_call(new, Some(settled)).await
    }

    async fn insert_function_call(
        &self,
        new: &NewFunctionCall<'_>,
        settled: Option<&SettledCall>,
    ) -> Result<bool, StoreError> {
        let status = settled.map_or(FunctionCallStatus::Running, |s| s.status);
        let finished_at = settled.map(|s| new.started_at + s.latency_ms.max(0));
        let r: Result<(), StoreError> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            let rev = next_rev!(&mut *tx, new.call_id.as_str());
            sqlx::query(
                "INSERT INTO function_calls (id, tenant_id, call_id, session_id, model_call_id, name, kind, arguments, \
                 status, result, error, latency_ms, started_at, finished_at, rev) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(new.id)
            .bind(new.tenant_id.as_str())
            .bind(new.call_id.as_str())
            .bind(new.session_id.as_str())
            .bind(new.model_call_id)
            .bind(new.name)
            .bind(new.kind)
            .bind(new.arguments)
            .bind(status.as_str())
            .bind(settled.and_then(|s| s.result.as_deref()))
            .bind(settled.and_then(|s| s.error.as_deref()))
            .bind(settled.map(|s| s.latency_ms))
            .bind(new.started_at)
            .bind(finished_at)
            .bind(rev)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        }.await);
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records how a running function call ended (a finished one is never rewritten), with
    /// the next revision of its call.
    pub async fn finish_function_call(
        &self,
        id: &str,
        settled: &SettledCall,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // The transaction's first statement writes (the next revision of the running
            // call's call), so SQLite takes its write lock here, waiting its busy timeout,
            // rather than upgrading a read snapshot another writer may have made stale
            // (which fails at once and would leave the call `running`).
            let rev: Option<i64> = sqlx::query_scalar(
                "UPDATE calls SET function_call_rev = function_call_rev + 1 \
                 WHERE id = (SELECT call_id FROM function_calls WHERE id = $1 AND status = 'running') \
                 RETURNING function_call_rev",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(rev) = rev {
                sqlx::query(
                    "UPDATE function_calls SET status = $2, result = $3, error = $4, latency_ms = $5, finished_at = $6, rev = $7 \
                     WHERE id = $1 AND status = 'running'",
                )
                .bind(id)
                .bind(settled.status.as_str())
                .bind(settled.result.as_deref())
                .bind(settled.error.as_deref())
                .bind(settled.latency_ms)
                .bind(now_ms())
                .bind(rev)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The function calls of `tenant`'s call changed after revision `after` (started,
    /// or finished since), in the order of their changes, at most `limit`; each with its
    /// revision ([`FunctionCall::rev`]). With `after = 0`, every function call of the call.
    pub async fn call_function_calls_after(
        &self,
        tenant: &TenantId,
        call: &CallId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<FunctionCall>, StoreError> {
        let rows: Vec<FunctionCallRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {FC_COLUMNS} FROM function_calls WHERE tenant_id = $1 AND call_id = $2 AND rev > $3 \
                 ORDER BY rev LIMIT $4"
            )))
            .bind(tenant.as_str())
            .bind(call.as_str())
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(FunctionCall::from).collect())
    }

    /// The invocations earlier streams of `call` recorded, with the output each gave the
    /// model (loaded once when a resumed stream starts, so a repeat never runs again).
    pub async fn call_invocations(
        &self,
        call: &CallId,
    ) -> Result<Vec<PriorInvocation>, StoreError> {
        let rows: Vec<(String, String, Option<String>, Option<String>)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT model_call_id, status, result, error FROM function_calls WHERE call_id = $1 ORDER BY started_at, id",
            )
            .bind(call.as_str())
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(model_call_id, status, result, error)| {
                let output = match (status.as_str(), result, error) {
                    ("running", _, _) => None,
                    (_, Some(result), _) => Some(result),
                    (_, None, Some(error)) => Some(serde_json::json!({"error": error}).to_string()),
                    (_, None, None) => None,
                };
                PriorInvocation {
                    model_call_id,
                    output,
                }
            })
            .collect())
    }

    /// The function calls of a session, in order.
    pub async fn session_function_calls(
        &self,
        session: &SessionId,
    ) -> Result<Vec<FunctionCall>, StoreError> {
        let rows: Vec<FunctionCallRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {FC_COLUMNS} FROM function_calls WHERE session_id = $1 ORDER BY started_at, id"
            )))
            .bind(session.as_str())
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(FunctionCall::from).collect())
    }

    /// Records the caller's identity state on the call (`verified` or `failed`).
    pub async fn set_identity_state(&self, call: &CallId, state: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE calls SET identity_state = $2, updated_at = $3 WHERE id = $1")
                .bind(call.as_str())
                .bind(state)
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records a handoff as dialing starts (or as closed, when no queue could take it).
    pub async fn insert_handoff(&self, h: &Handoff) -> Result<(), StoreError> {
        let context = h.context.to_string();
        on_pool!(self, pool => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO handoffs ({HANDOFF_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            )))
            .bind(&h.id)
            .bind(&h.tenant_id)
            .bind(&h.call_id)
            .bind(&h.queue_id)
            .bind(&h.queue_name)
            .bind(&h.reason)
            .bind(&h.rule)
            .bind(&context)
            .bind(&h.status)
            .bind(&h.dial_status)
            .bind(&h.target)
            .bind(&h.outcome)
            .bind(&h.callback_task_id)
            .bind(h.created_at)
            .bind(h.updated_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// A tenant's handoff.
    pub async fn get_handoff(
        &self,
        tenant: &TenantId,
        id: &HandoffId,
    ) -> Result<Option<Handoff>, StoreError> {
        let row: Option<HandoffRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {HANDOFF_READ_COLUMNS} FROM handoffs WHERE id = $1 AND tenant_id = $2"
            )))
            .bind(id.as_str())
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(Handoff::from))
    }

    /// The handoffs of a call, oldest first.
    pub async fn call_handoffs(&self, call: &CallId) -> Result<Vec<Handoff>, StoreError> {
        let rows: Vec<HandoffRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {HANDOFF_READ_COLUMNS} FROM handoffs WHERE call_id = $1 ORDER BY created_at, id"
            )))
            .bind(call.as_str())
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(Handoff::from).collect())
    }

    /// Records the dial result of a handoff still `dialing`; false when it already has one
    /// (a repeated callback changes nothing).
    pub async fn finish_handoff(
        &self,
        id: &HandoffId,
        status: &str,
        dial_status: &str,
        target: Option<&str>,
        outcome: &str,
        callback_task_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE handoffs SET status = $2, dial_status = $3, target = $4, outcome = $5, callback_task_id = $6, \
                 updated_at = $7 WHERE id = $1 AND status = 'dialing'",
            )
            .bind(id.as_str())
            .bind(status)
            .bind(dial_status)
            .bind(target)
            .bind(outcome)
            .bind(callback_task_id)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// A handoff still `dialing` becomes a warm transfer waiting in `conference`
    /// (`warm_state = ringing`); false when it was settled already.
    pub async fn warm_begin(&self, id: &HandoffId, conference: &str) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE handoffs SET transfer_mode = 'warm', warm_state = 'ringing', conference_name = $2, \
                 updated_at = $3 WHERE id = $1 AND status = 'dialing' AND warm_state IS NULL",
            )
            .bind(id.as_str())
            .bind(conference)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Claims the operator call of a warm transfer still `ringing` and not yet called (its
    /// number recorded); false when another request claimed it or the transfer is decided.
    pub async fn warm_claim_operator(
        &self,
        id: &HandoffId,
        number: &str,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE handoffs SET operator_number = $2, updated_at = $3 \
                 WHERE id = $1 AND warm_state = 'ringing' AND operator_number IS NULL",
            )
            .bind(id.as_str())
            .bind(number)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Records the operator leg of a warm transfer (its `CallSid` and number).
    pub async fn warm_operator_leg(
        &self,
        id: &HandoffId,
        call_sid: &str,
        number: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE handoffs SET operator_call_sid = $2, operator_number = $3, updated_at = $4 WHERE id = $1",
            )
            .bind(id.as_str())
            .bind(call_sid)
            .bind(number)
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Records when the operator first heard the whisper, and the conference's SID once
    /// known (first value kept).
    pub async fn warm_progress(
        &self,
        id: &HandoffId,
        whispered: bool,
        conference_sid: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE handoffs SET whispered_at = CASE WHEN $2 THEN COALESCE(whispered_at, $4) ELSE whispered_at END, \
                 conference_sid = COALESCE(conference_sid, $3), updated_at = $4 WHERE id = $1",
            )
            .bind(id.as_str())
            .bind(whispered)
            .bind(conference_sid)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The operator accepted: the warm transfer `accepted` and the handoff `answered`
    /// (`bridged`, the operator's number as target) in one conditional update; false when
    /// the transfer was already decided (a repeated or late callback changes nothing).
    pub async fn warm_accept(
        &self,
        id: &HandoffId,
        digits: &str,
        operator: Option<&str>,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE handoffs SET warm_state = 'accepted', operator_digits = $2, decided_at = $4, \
                 status = 'answered', dial_status = 'answered', target = $3, outcome = 'bridged', updated_at = $4 \
                 WHERE id = $1 AND status = 'dialing' AND warm_state = 'ringing'",
            )
            .bind(id.as_str())
            .bind(digits)
            .bind(operator)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// A warm transfer not taken (`declined`, `unanswered`, `abandoned`, `failed`): claimed
    /// once, from `ringing`; the handoff itself is then settled like an unanswered dial.
    pub async fn warm_decline(
        &self,
        id: &HandoffId,
        state: &str,
        digits: Option<&str>,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE handoffs SET warm_state = $2, operator_digits = COALESCE($3, operator_digits), \
                 decided_at = $4, updated_at = $4 WHERE id = $1 AND status = 'dialing' AND warm_state = 'ringing'",
            )
            .bind(id.as_str())
            .bind(state)
            .bind(digits)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Records the callback task a settled handoff led to.
    pub async fn set_handoff_callback_task(
        &self,
        id: &HandoffId,
        task: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE handoffs SET callback_task_id = $2, updated_at = $3 WHERE id = $1")
                .bind(id.as_str())
                .bind(task)
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Marks a call escalated to `target` (the queue or the number that answered).
    pub async fn set_escalated(&self, call: &CallId, target: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE calls SET escalated_to = $2, updated_at = $3 WHERE id = $1")
                .bind(call.as_str())
                .bind(target)
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The caller returns to the agent after an unanswered handoff: the call is live again
    /// (no escalation target, no end reason, nothing planned after the stream).
    pub async fn resume_after_handoff(&self, call: &CallId) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE calls SET escalated_to = NULL, end_reason = NULL, after_stream = NULL, updated_at = $2 WHERE id = $1",
            )
            .bind(call.as_str())
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The carrier refused a handoff's dial: the caller stays with the agent (no escalation
    /// target, nothing planned after the stream).
    pub async fn handoff_refused(&self, call: &CallId) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE calls SET escalated_to = NULL, after_stream = NULL, updated_at = $2 WHERE id = $1",
            )
            .bind(call.as_str())
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The conversation of a call so far, across its voice sessions: (role, what was said,
    /// the heard part for interrupted turns), oldest first.
    pub async fn call_conversation(
        &self,
        call: &CallId,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows: Vec<(String, String)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT t.role, COALESCE(t.heard_text, t.text) FROM transcript_turns t \
                 JOIN voice_sessions s ON s.id = t.session_id WHERE s.call_id = $1 ORDER BY s.started_at, t.id",
            )
            .bind(call.as_str())
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    //! The per-call stream's reads: turns after an id and function-call changes after a
    //! revision, in order, of one tenant's call only (both backends).

    use serde_json::json;

    use crate::evaluation::fixtures::{
        Backend, SessionSpec, TestDb, ToolSpec, backend_tests, finished_session, tenant, version,
    };
    use crate::store::FunctionCallStatus;

    backend_tests!(changes_are_read_after_a_cursor_in_order_for_the_tenant_only);

    async fn changes_are_read_after_a_cursor_in_order_for_the_tenant_only(backend: Backend) {
        let Some(db) = TestDb::new(backend).await else {
            return;
        };
        let store = db.store(4).await;
        let t = tenant(&store).await;
        let other = tenant(&store).await;
        let v = version(&store, &t, "support", None).await;
        let mut spec = SessionSpec::new(
            Some(v),
            &[
                ("assistant", "Hello."),
                ("user", "Where is A1?"),
                ("assistant", "Shipped."),
            ],
        );
        for (name, status) in [
            ("lookup", FunctionCallStatus::Succeeded),
            ("notify", FunctionCallStatus::Failed),
        ] {
            spec.tools.push(ToolSpec {
                name,
                arguments: json!({"order_id": "A1"}),
                status,
                result: Some(json!({"ok": true})),
            });
        }
        let (call, _) = finished_session(&store, &t, &spec).await;

        let turns = store
            .call_turns_after(&t, &call, 0, 10)
            .await
            .expect("turns");
        let texts: Vec<&str> = turns.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["Hello.", "Where is A1?", "Shipped."]);
        let rest = store
            .call_turns_after(&t, &call, turns[0].id, 10)
            .await
            .expect("turns");
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[0].id, turns[1].id);
        let page = store
            .call_turns_after(&t, &call, 0, 1)
            .await
            .expect("turns");
        assert_eq!(page.len(), 1);

        // Each function call started (one revision) then finished (the next): read after 0,
        // each appears once, as it ended, in the order of its last change.
        let calls = store
            .call_function_calls_after(&t, &call, 0, 10)
            .await
            .expect("calls");
        let seen: Vec<(&str, &str, i64)> = calls
            .iter()
            .map(|c| (c.name.as_str(), c.status.as_str(), c.rev))
            .collect();
        assert_eq!(seen, [("lookup", "succeeded", 2), ("notify", "failed", 4)]);
        let after = store
            .call_function_calls_after(&t, &call, 2, 10)
            .await
            .expect("calls");
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].name, "notify");
        assert!(
            store
                .call_function_calls_after(&t, &call, 4, 10)
                .await
                .expect("calls")
                .is_empty()
        );

        // Another tenant reads nothing of it.
        assert!(
            store
                .call_turns_after(&other, &call, 0, 10)
                .await
                .expect("turns")
                .is_empty()
        );
        assert!(
            store
                .call_function_calls_after(&other, &call, 0, 10)
                .await
                .expect("calls")
                .is_empty()
        );
    }
}
