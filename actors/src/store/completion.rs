//! The end of a call, recorded once: its end reason (the first recorded is kept), and its
//! completion — the outcome, the moment, and the `voice.call.completed` event, written in one
//! transaction by one conditional `UPDATE`, so however many parties try, exactly one
//! completes the call and exactly one event is written. A call completes only once no voice
//! session of it is still active: whoever finishes the last session (or reconciles it) sees
//! the final transcript and function-call counts.

use super::webhooks::insert_event;
use super::{CallRecord, NewEvent, Store, StoreError, on_pool};
use crate::ending::{EndReason, Outcome};
use crate::ids::{CallId, SessionId};

/// How a call ends, as one party saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Why (kept only if no reason was recorded before).
    pub reason: EndReason,
    /// Free-text detail of the reason (likewise kept only if none was recorded).
    pub detail: Option<String>,
    /// The outcome; `None` derives it from the reason finally recorded.
    pub outcome: Option<Outcome>,
    /// When (Unix ms).
    pub at: i64,
}

/// A voice session of a completed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedSession {
    /// The session.
    pub id: SessionId,
    /// Its status (`completed`, `failed`).
    pub status: String,
    /// Start (Unix ms).
    pub started_at: i64,
    /// End (Unix ms).
    pub ended_at: Option<i64>,
}

/// What the completion recorded, with the counts its event reports.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedCall {
    /// The call, as completed.
    pub call: CallRecord,
    /// The reason finally recorded.
    pub reason: EndReason,
    /// The outcome recorded.
    pub outcome: Outcome,
    /// Its voice sessions, oldest first.
    pub sessions: Vec<CompletedSession>,
    /// Transcript turns across the sessions.
    pub transcript_turns: i64,
    /// Function calls of the model.
    pub function_calls: i64,
    /// Handoffs to operator queues.
    pub handoffs: i64,
}

impl CompletedCall {
    /// Milliseconds the caller spent with the agent (sum over the sessions).
    pub fn conversation_ms(&self) -> i64 {
        self.sessions
            .iter()
            .map(|s| s.ended_at.unwrap_or(s.started_at) - s.started_at)
            .sum()
    }
}

impl Store {
    /// Records why `call` ended unless a reason was recorded already (the first is kept).
    pub async fn record_end_reason(
        &self,
        call: &CallId,
        reason: EndReason,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE calls SET end_detail = CASE WHEN end_reason IS NULL THEN $3 ELSE end_detail END, \
                 end_reason = COALESCE(end_reason, $2), updated_at = $4 WHERE id = $1",
            )
            .bind(call.as_str())
            .bind(reason.as_str())
            .bind(detail)
            .bind(crate::time::now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Withdraws a provisional reason: clears `end_reason` (and its detail) when it is
    /// `provisional` and the call is not complete. A handoff's leg ends `escalated` before
    /// anyone knows whether a human answers; when nobody did, the dial result decides.
    pub async fn withdraw_end_reason(
        &self,
        call: &CallId,
        provisional: EndReason,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE calls SET end_reason = NULL, end_detail = NULL, updated_at = $3 \
                 WHERE id = $1 AND end_reason = $2 AND completed_at IS NULL",
            )
            .bind(call.as_str())
            .bind(provisional.as_str())
            .bind(crate::time::now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Completes `call` unless it is complete already or one of its voice sessions is still
    /// active; `event` builds its `voice.call.completed` from what was recorded, and it is
    /// written in the same transaction. `None` when nothing was completed (someone else did,
    /// or a session is still live and its owner completes the call when it ends).
    pub async fn complete_call(
        &self,
        call: &CallId,
        completion: &Completion,
        event: impl FnOnce(&CompletedCall) -> NewEvent,
    ) -> Result<Option<CompletedCall>, StoreError> {
        let done = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // The claim comes first (it takes SQLite's write lock before anything is read).
            let claimed: Option<(String,)> = sqlx::query_as(
                "UPDATE calls SET completed_at = $2, \
                 end_detail = CASE WHEN end_reason IS NULL THEN $4 ELSE end_detail END, \
                 end_reason = COALESCE(end_reason, $3), updated_at = $2 \
                 WHERE id = $1 AND completed_at IS NULL AND NOT EXISTS \
                 (SELECT 1 FROM voice_sessions WHERE call_id = $1 AND status = 'active') \
                 RETURNING end_reason",
            )
            .bind(call.as_str())
            .bind(completion.at)
            .bind(completion.reason.as_str())
            .bind(&completion.detail)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((stored,)) = claimed else {
                return Ok(None);
            };
            let reason = EndReason::parse(&stored).ok_or(StoreError::Corrupt("calls.end_reason"))?;
            let outcome = completion.outcome.unwrap_or(reason.default_outcome());
            sqlx::query("UPDATE calls SET outcome = $2 WHERE id = $1")
                .bind(call.as_str())
                .bind(outcome.as_str())
                .execute(&mut *tx)
                .await?;
            let row: super::calls::CallRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM calls WHERE id = $1",
                super::calls::CALL_COLUMNS
            )))
            .bind(call.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let sessions: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
                "SELECT id, status, started_at, ended_at FROM voice_sessions WHERE call_id = $1 ORDER BY started_at, id",
            )
            .bind(call.as_str())
            .fetch_all(&mut *tx)
            .await?;
            let transcript_turns: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM transcript_turns t JOIN voice_sessions s ON s.id = t.session_id WHERE s.call_id = $1",
            )
            .bind(call.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let function_calls: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM function_calls WHERE call_id = $1")
                    .bind(call.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
            let handoffs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM handoffs WHERE call_id = $1")
                .bind(call.as_str())
                .fetch_one(&mut *tx)
                .await?;
            let completed = CompletedCall {
                call: CallRecord::try_from(row)?,
                reason,
                outcome,
                sessions: sessions
                    .into_iter()
                    .map(|(id, status, started_at, ended_at)| CompletedSession {
                        id: SessionId::from_stored(id),
                        status,
                        started_at,
                        ended_at,
                    })
                    .collect(),
                transcript_turns,
                function_calls,
                handoffs,
            };
            let new_event = event(&completed);
            let _queued = insert_event!(&mut *tx, &new_event);
            tx.commit().await?;
            completed
        });
        Ok(Some(done))
    }

    /// Calls whose records are not final: not completed, created at or after `since`,
    /// oldest first (for reconciliation).
    pub async fn open_calls(&self, since: i64, limit: u32) -> Result<Vec<CallId>, StoreError> {
        let ids: Vec<String> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT id FROM calls WHERE completed_at IS NULL AND created_at >= $1 ORDER BY created_at LIMIT $2",
            )
            .bind(since)
            .bind(super::as_i64(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(ids.into_iter().map(CallId::from_stored).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::EventId;
    use crate::store::fixtures::{call, session, store, tenant};

    fn completion(reason: EndReason) -> Completion {
        Completion {
            reason,
            detail: None,
            outcome: None,
            at: 50,
        }
    }

    fn event(c: &CompletedCall) -> NewEvent {
        NewEvent {
            id: EventId::generate(),
            tenant_id: c.call.tenant_id.clone(),
            event: "voice.call.completed".into(),
            payload: format!("{{\"outcome\":\"{}\"}}", c.outcome),
            created_at: 50,
        }
    }

    async fn completed_events(store: &Store) -> i64 {
        on_pool!(store, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM webhook_events WHERE event = 'voice.call.completed'")
                .fetch_one(pool)
                .await
                .expect("count")
        })
    }

    #[tokio::test]
    async fn a_call_completes_once_and_only_after_its_live_session_ended() {
        let store = store().await;
        let t = tenant(&store).await;
        let c = call(&t);
        store.admit_call(&c, 10, None, 0).await.expect("admit");
        let s = session(&c);
        store.insert_session(&s).await.expect("session");
        // A live session: whoever else tries (a status callback) completes nothing.
        assert_eq!(
            store
                .complete_call(&c.id, &completion(EndReason::Completed), event)
                .await
                .expect("complete"),
            None
        );
        // The first reason recorded is kept.
        store
            .record_end_reason(&c.id, EndReason::HangupRequested, Some("api"))
            .await
            .expect("reason");
        store
            .record_end_reason(&c.id, EndReason::CallerHangup, None)
            .await
            .expect("reason");
        store
            .finish_session(
                &s.id,
                crate::store::SessionStatus::Completed,
                EndReason::CallerHangup,
                None,
            )
            .await
            .expect("finish");
        let done = store
            .complete_call(&c.id, &completion(EndReason::CallerHangup), event)
            .await
            .expect("complete")
            .expect("completed");
        assert_eq!(done.reason, EndReason::HangupRequested);
        assert_eq!(done.outcome, Outcome::Completed);
        assert_eq!(done.call.end_detail.as_deref(), Some("api"));
        assert_eq!(done.call.completed_at, Some(50));
        assert_eq!(done.sessions.len(), 1);
        assert_eq!(completed_events(&store).await, 1);
        // Anyone after that completes nothing and writes no second event.
        let again = Completion {
            outcome: Some(Outcome::Failed),
            ..completion(EndReason::NodeLost)
        };
        assert_eq!(
            store
                .complete_call(&c.id, &again, event)
                .await
                .expect("again"),
            None
        );
        assert_eq!(completed_events(&store).await, 1);
        assert!(store.open_calls(0, 10).await.expect("open").is_empty());
    }

    #[tokio::test]
    async fn concurrent_completions_write_one_event() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = Store::connect(&url, 4).await.expect("store");
        store.migrate().await.expect("migrate");
        let t = tenant(&store).await;
        let c = call(&t);
        store.admit_call(&c, 10, None, 0).await.expect("admit");
        assert_eq!(
            store.open_calls(0, 10).await.expect("open"),
            vec![c.id.clone()]
        );
        let attempts = (0..8).map(|i| {
            let store = store.clone();
            let id = c.id.clone();
            let reason = if i % 2 == 0 {
                EndReason::NoAnswer
            } else {
                EndReason::Busy
            };
            tokio::spawn(async move {
                store
                    .complete_call(&id, &completion(reason), event)
                    .await
                    .expect("complete")
            })
        });
        let mut winners = 0;
        for a in attempts {
            if a.await.expect("join").is_some() {
                winners += 1;
            }
        }
        assert_eq!(winners, 1);
        assert_eq!(completed_events(&store).await, 1);
    }
}
