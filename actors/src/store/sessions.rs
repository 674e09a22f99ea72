//! Voice sessions and transcript turns, written incrementally while a call runs so that a
//! crash mid-call leaves the record up to that point; the end of a session (its status, its
//! [`EndReason`] and free-text detail), and the [`Continuation`] a leg leaves for the carrier
//! (`calls.after_stream`), both written by the call runtime as typed values. Closing a
//! session writes its evaluation job in the same transaction.

use super::evaluations::enqueue_session_evaluation;
use super::{
    Page, SessionFilter, Store, StoreError, TranscriptTurn, VoiceSession, as_i64, on_pool,
};
use crate::ending::{Continuation, EndReason};
use crate::ids::{CallId, SessionId, TenantId};
use crate::time::now_ms;

/// Where a voice session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// The conversation is live.
    Active,
    /// It ended normally (whoever hung up, or a handoff).
    Completed,
    /// It ended by a failure (the AI leg, the call actor).
    Failed,
}

/// What the end of a call's leg writes ([`Store::end_leg`]).
#[derive(Debug, Clone, Copy)]
pub struct LegEnd<'a> {
    /// The call.
    pub call: &'a CallId,
    /// Its session on this leg.
    pub session: &'a SessionId,
    /// How the session ended (`Completed` also records the stream `stopped`).
    pub status: SessionStatus,
    /// Why.
    pub reason: EndReason,
    /// Free-text detail (an AI error, a panic message).
    pub detail: Option<&'a str>,
    /// What the carrier is told when it asks `stream-ended` (`None`: leave it as it is).
    pub continuation: Option<Continuation>,
}

impl SessionStatus {
    /// Stored form.
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "active",
            SessionStatus::Completed => "completed",
            SessionStatus::Failed => "failed",
        }
    }
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    tenant_id: String,
    call_id: String,
    agent_key: Option<String>,
    agent_version_id: Option<String>,
    model: String,
    voice: String,
    stream_sid: Option<String>,
    status: String,
    end_reason: Option<String>,
    end_detail: Option<String>,
    first_audio_ms: Option<i64>,
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    reconnects: i64,
    summary: Option<String>,
    tags: String,
    started_at: i64,
    ended_at: Option<i64>,
}

const SESSION_COLUMNS: &str = "id, tenant_id, call_id, agent_key, agent_version_id, model, voice, stream_sid, status, \
     end_reason, first_audio_ms, input_tokens, output_tokens, total_tokens, reconnects, summary, tags, started_at, ended_at, \
     end_detail";

impl From<SessionRow> for VoiceSession {
    fn from(r: SessionRow) -> Self {
        VoiceSession {
            id: SessionId::from_stored(r.id),
            tenant_id: TenantId::from_stored(r.tenant_id),
            call_id: CallId::from_stored(r.call_id),
            agent_key: r.agent_key,
            agent_version_id: r.agent_version_id,
            model: r.model,
            voice: r.voice,
            stream_sid: r.stream_sid,
            status: r.status,
            end_reason: r.end_reason,
            end_detail: r.end_detail,
            first_audio_ms: r.first_audio_ms,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            total_tokens: r.total_tokens,
            reconnects: r.reconnects,
            summary: r.summary,
            tags: serde_json::from_str(&r.tags).unwrap_or_default(),
            started_at: r.started_at,
            ended_at: r.ended_at,
        }
    }
}

impl VoiceSession {
    /// A session of `call` starting now (`started_at`, Unix ms) on `model` with `voice`.
    pub fn live(
        id: SessionId,
        call: &super::CallRecord,
        model: String,
        voice: String,
        stream_sid: Option<String>,
        started_at: i64,
    ) -> Self {
        Self {
            id,
            tenant_id: call.tenant_id.clone(),
            call_id: call.id.clone(),
            agent_key: call.agent_key.clone(),
            agent_version_id: call.agent_version_id.clone(),
            model,
            voice,
            stream_sid,
            status: SessionStatus::Active.as_str().to_owned(),
            end_reason: None,
            end_detail: None,
            first_audio_ms: None,
            input_tokens: 0,
            output_tokens: 0,
            total_tokens: 0,
            reconnects: 0,
            summary: None,
            tags: Vec::new(),
            started_at,
            ended_at: None,
        }
    }
}

/// The voice sessions a failure closed ([`Store::fail_live_sessions`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndedSessions {
    /// The sessions closed.
    pub sessions: Vec<SessionId>,
    /// Evaluation jobs written with them (sessions whose version has a rubric).
    pub evaluation_jobs: u64,
}

/// Token usage of one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens.
    pub input: i64,
    /// Output tokens.
    pub output: i64,
    /// Total tokens.
    pub total: i64,
}

impl Store {
    /// Records a session as it starts.
    pub async fn insert_session(&self, s: &VoiceSession) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO voice_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
            )))
            .bind(s.id.as_str())
            .bind(s.tenant_id.as_str())
            .bind(s.call_id.as_str())
            .bind(&s.agent_key)
            .bind(&s.agent_version_id)
            .bind(&s.model)
            .bind(&s.voice)
            .bind(&s.stream_sid)
            .bind(&s.status)
            .bind(&s.end_reason)
            .bind(s.first_audio_ms)
            .bind(s.input_tokens)
            .bind(s.output_tokens)
            .bind(s.total_tokens)
            .bind(s.reconnects)
            .bind(&s.summary)
            .bind(serde_json::to_string(&s.tags).unwrap_or_else(|_| "[]".into()))
            .bind(s.started_at)
            .bind(s.ended_at)
            .bind(&s.end_detail)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Adds a response's usage to the session's totals.
    pub async fn add_session_usage(&self, id: &SessionId, u: Usage) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE voice_sessions SET input_tokens = input_tokens + $2, output_tokens = output_tokens + $3, \
                 total_tokens = total_tokens + $4 WHERE id = $1",
            )
            .bind(id.as_str())
            .bind(u.input)
            .bind(u.output)
            .bind(u.total)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Records the first-audio latency (once).
    pub async fn set_session_first_audio(&self, id: &SessionId, ms: i64) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE voice_sessions SET first_audio_ms = COALESCE(first_audio_ms, $2) WHERE id = $1")
                .bind(id.as_str())
                .bind(ms)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Counts an AI reconnect.
    pub async fn count_session_reconnect(&self, id: &SessionId) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE voice_sessions SET reconnects = reconnects + 1 WHERE id = $1")
                .bind(id.as_str())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Closes a live session with its status, [`EndReason`] and free-text detail (an AI error,
    /// a panic message), and writes its evaluation job (from its version's rubric, if any)
    /// in the same transaction, so a crash between the two loses no evaluation. A session
    /// already closed keeps its first end. True when a job was written: the caller then
    /// wakes the evaluation actor ([`crate::evaluation::Evaluations::wake`]).
    pub async fn finish_session(
        &self,
        id: &SessionId,
        status: SessionStatus,
        reason: EndReason,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let job = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let closed = sqlx::query(
                "UPDATE voice_sessions SET status = $2, end_reason = $3, end_detail = $4, ended_at = $5 \
                 WHERE id = $1 AND status = 'active'",
            )
            .bind(id.as_str())
            .bind(status.as_str())
            .bind(reason.as_str())
            .bind(detail)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            let job = closed && enqueue_session_evaluation!(&mut *tx, id, now);
            tx.commit().await?;
            job
        });
        Ok(job)
    }

    /// The end of a call's leg, in one transaction, so that `stream-ended` — on whichever
    /// node the carrier asks — reads all of it or none of it: the session closed (with its
    /// evaluation job, as [`Store::finish_session`]), the stream recorded `stopped` when the
    /// leg ended normally, the [`Continuation`] the leg leaves for the carrier, and the
    /// `call.completed` timeline entry of a normal end. True when an evaluation job was
    /// written.
    pub async fn end_leg(&self, leg: &LegEnd<'_>) -> Result<bool, StoreError> {
        let now = now_ms();
        let completed = leg.status == SessionStatus::Completed;
        let job = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let closed = sqlx::query(
                "UPDATE voice_sessions SET status = $2, end_reason = $3, end_detail = $4, ended_at = $5 \
                 WHERE id = $1 AND status = 'active'",
            )
            .bind(leg.session.as_str())
            .bind(leg.status.as_str())
            .bind(leg.reason.as_str())
            .bind(leg.detail)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            let job = closed && enqueue_session_evaluation!(&mut *tx, leg.session, now);
            if completed {
                sqlx::query("UPDATE calls SET stream_status = 'stopped', updated_at = $2 WHERE id = $1")
                    .bind(leg.call.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(continuation) = leg.continuation {
                sqlx::query("UPDATE calls SET after_stream = $2, updated_at = $3 WHERE id = $1")
                    .bind(leg.call.as_str())
                    .bind(continuation.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            if completed {
                let detail = serde_json::json!({
                    "reason": leg.reason.as_str(),
                    "session_id": leg.session.as_str(),
                });
                sqlx::query("INSERT INTO call_events (call_id, at, kind, detail) VALUES ($1, $2, 'call.completed', $3)")
                    .bind(leg.call.as_str())
                    .bind(now)
                    .bind(detail.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            job
        });
        Ok(job)
    }

    /// Fails every session of `call` that is still live (its call actor died), writing their
    /// evaluation jobs in the same transaction: returns what was closed.
    pub async fn fail_live_sessions(
        &self,
        call: &CallId,
        reason: EndReason,
        detail: Option<&str>,
    ) -> Result<EndedSessions, StoreError> {
        let now = now_ms();
        let ended = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let closed: Vec<String> = sqlx::query_scalar(
                "UPDATE voice_sessions SET status = 'failed', end_reason = $2, end_detail = $3, ended_at = $4 \
                 WHERE call_id = $1 AND status = 'active' RETURNING id",
            )
            .bind(call.as_str())
            .bind(reason.as_str())
            .bind(detail)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            let mut ended = EndedSessions::default();
            for id in closed {
                let id = SessionId::from_stored(id);
                if enqueue_session_evaluation!(&mut *tx, &id, now) {
                    ended.evaluation_jobs += 1;
                }
                ended.sessions.push(id);
            }
            tx.commit().await?;
            ended
        });
        Ok(ended)
    }

    /// Appends a transcript turn.
    pub async fn add_turn(
        &self,
        session: &SessionId,
        t: &TranscriptTurn,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO transcript_turns (session_id, role, item_id, text, start_ms, end_ms, interrupted, heard_text, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(session.as_str())
            .bind(&t.role)
            .bind(&t.item_id)
            .bind(&t.text)
            .bind(t.start_ms)
            .bind(t.end_ms)
            .bind(t.interrupted)
            .bind(&t.heard_text)
            .bind(t.created_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Records the response gap of the session's turn of item `item_id` (ms); false when
    /// no such turn is written yet.
    pub async fn set_turn_response_gap(
        &self,
        session: &SessionId,
        item_id: &str,
        ms: i64,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE transcript_turns SET response_gap_ms = $3 WHERE session_id = $1 AND item_id = $2 \
                 AND response_gap_ms IS NULL",
            )
            .bind(session.as_str())
            .bind(item_id)
            .bind(ms)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// A session's transcript, in order.
    pub async fn turns(&self, session: &SessionId) -> Result<Vec<TranscriptTurn>, StoreError> {
        let rows: Vec<TurnRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, role, item_id, text, start_ms, end_ms, interrupted, heard_text, created_at FROM transcript_turns \
                 WHERE session_id = $1 ORDER BY id",
            )
            .bind(session.as_str())
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(turn_of).collect())
    }

    /// The transcript turns of `tenant`'s call (every session of it) after turn `after`, in
    /// order, at most `limit`. Turn ids grow in the order turns are written (one recorder
    /// writes a session's turns one after another; a call's sessions follow each other).
    pub async fn call_turns_after(
        &self,
        tenant: &TenantId,
        call: &CallId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<TranscriptTurn>, StoreError> {
        let rows: Vec<TurnRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT t.id, t.role, t.item_id, t.text, t.start_ms, t.end_ms, t.interrupted, t.heard_text, t.created_at \
                 FROM transcript_turns t JOIN voice_sessions s ON s.id = t.session_id \
                 WHERE s.tenant_id = $1 AND s.call_id = $2 AND t.id > $3 ORDER BY t.id LIMIT $4",
            )
            .bind(tenant.as_str())
            .bind(call.as_str())
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(turn_of).collect())
    }

    /// Reads a tenant's session.
    pub async fn get_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
    ) -> Result<Option<VoiceSession>, StoreError> {
        let row: Option<SessionRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {SESSION_COLUMNS} FROM voice_sessions WHERE tenant_id = $1 AND id = $2")))
                .bind(tenant.as_str())
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(VoiceSession::from))
    }

    /// The sessions of a call, oldest first.
    pub async fn sessions_of_call(&self, call: &CallId) -> Result<Vec<VoiceSession>, StoreError> {
        let rows: Vec<SessionRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {SESSION_COLUMNS} FROM voice_sessions WHERE call_id = $1 ORDER BY started_at, id")))
                .bind(call.as_str())
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(VoiceSession::from).collect())
    }

    /// Lists a tenant's sessions, newest first.
    pub async fn list_sessions(&self, f: &SessionFilter) -> Result<Page<VoiceSession>, StoreError> {
        let where_sql = "tenant_id = $1 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR agent_key = $3) AND ($4 IS NULL OR stream_sid = $4) AND ($5 IS NULL OR call_id = $5)";
        let (rows, total): (Vec<SessionRow>, i64) = on_pool!(self, pool => {
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {SESSION_COLUMNS} FROM voice_sessions WHERE {where_sql} ORDER BY started_at DESC, id DESC LIMIT $6 OFFSET $7"
            )))
            .bind(f.tenant_id.as_str())
            .bind(&f.status)
            .bind(&f.agent_key)
            .bind(&f.stream_id)
            .bind(&f.call_id)
            .bind(as_i64(f.limit))
            .bind(as_i64(f.offset))
            .fetch_all(pool)
            .await?;
            let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM voice_sessions WHERE {where_sql}")))
                .bind(f.tenant_id.as_str())
                .bind(&f.status)
                .bind(&f.agent_key)
                .bind(&f.stream_id)
                .bind(&f.call_id)
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        Ok(Page {
            items: rows.into_iter().map(VoiceSession::from).collect(),
            total,
        })
    }
}

/// A `transcript_turns` row as read.
type TurnRow = (
    i64,
    String,
    Option<String>,
    String,
    Option<i64>,
    Option<i64>,
    bool,
    Option<String>,
    i64,
);

fn turn_of(
    (id, role, item_id, text, start_ms, end_ms, interrupted, heard_text, created_at): TurnRow,
) -> TranscriptTurn {
    TranscriptTurn {
        id,
        role,
        item_id,
        text,
        start_ms,
        end_ms,
        interrupted,
        heard_text,
        created_at,
    }
}
