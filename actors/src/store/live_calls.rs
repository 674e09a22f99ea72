//! The cluster-wide live-call registry (DESIGN §1 "Scale-out"): `live_calls`, one row per
//! call live on some node, and `live_call_events`, every change of those rows in `seq`
//! order. Every write of them appends its events in the same transaction; on PostgreSQL it
//! first takes [`LOCK`] (so transactions commit in `seq` order and a reader that saw `seq`
//! never later finds a smaller one) and ends with `pg_notify('live_calls', <last seq>)`.
//! SQLite serialises writers anyway; each of these transactions starts with a write.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, as_i64, on_pool};
use crate::active::coalesce::{Change, Op};
use crate::active::{ActiveCall, CallPhase, LiveCall, LiveChange, LiveEvent, LiveSnapshot};
use crate::ids::{CallId, TenantId};
use crate::nodes::NodeInstance;

/// The PostgreSQL advisory lock every writer of `live_call_events` holds until it commits.
pub const LOCK: i64 = 0x6c69_7665_6361_6c6c;

/// Takes [`LOCK`] in `$tx` on PostgreSQL (a no-op on SQLite).
macro_rules! lock {
    ($store:expr, $tx:expr) => {
        if matches!($store, Store::Postgres(_)) {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(LOCK)
                .execute(&mut *$tx)
                .await?;
        }
    };
}

/// Events appended per statement (five parameters each, within both backends' limits).
const EVENTS_PER_INSERT: usize = 1000;

/// An event to append at the end of a transaction.
struct NewLiveEvent {
    tenant: String,
    call: String,
    kind: &'static str,
    payload: String,
    at: i64,
}

impl NewLiveEvent {
    fn new(tenant: &str, call: &str, kind: &'static str, payload: String, at: i64) -> Self {
        Self {
            tenant: tenant.to_owned(),
            call: call.to_owned(),
            kind,
            payload,
            at,
        }
    }
}

/// Appends `$events` (a slice of [`NewLiveEvent`], in order) in `$tx`, a multi-row insert
/// per [`EVENTS_PER_INSERT`]; evaluates to the last `seq` (none when there were none).
macro_rules! append {
    ($tx:expr, $events:expr) => {{
        let mut last: Option<i64> = None;
        for chunk in $events.chunks(EVENTS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO live_call_events (tenant_id, call_id, kind, payload, at) ",
            );
            insert.push_values(chunk, |mut row, e: &NewLiveEvent| {
                row.push_bind(e.tenant.clone())
                    .push_bind(e.call.clone())
                    .push_bind(e.kind)
                    .push_bind(e.payload.clone())
                    .push_bind(e.at);
            });
            insert.push(" RETURNING seq");
            let seqs: Vec<i64> = insert.build_query_scalar().fetch_all(&mut *$tx).await?;
            last = last.max(seqs.into_iter().max());
        }
        last
    }};
}

/// `NOTIFY live_calls` with `$seq` in `$tx` on PostgreSQL.
macro_rules! notify {
    ($store:expr, $tx:expr, $seq:expr) => {
        if let (Store::Postgres(_), Some(seq)) = ($store, $seq) {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::active::feed::CHANNEL)
                .bind(seq.to_string())
                .execute(&mut *$tx)
                .await?;
        }
    };
}

/// Upserts the row of `$call` held by `$node` in `$tx`.
macro_rules! upsert {
    ($tx:expr, $node:expr, $call:expr, $at:expr) => {{
        let (role, text) = match &$call.last_line {
            Some((role, text)) => (Some(role.as_str()), Some(text.as_str())),
            None => (None, None),
        };
        sqlx::query(
            "INSERT INTO live_calls (call_id, tenant_id, node_id, node_started_at, call_sid, stream_sid, \
             direction, from_number, to_number, agent_key, agent_version_id, started_at, phase, \
             last_line_role, last_line_text, first_audio_ms, last_response_ms, last_activity_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
             ON CONFLICT (call_id) DO UPDATE SET tenant_id = excluded.tenant_id, node_id = excluded.node_id, \
             node_started_at = excluded.node_started_at, call_sid = excluded.call_sid, \
             stream_sid = excluded.stream_sid, direction = excluded.direction, \
             from_number = excluded.from_number, to_number = excluded.to_number, \
             agent_key = excluded.agent_key, agent_version_id = excluded.agent_version_id, \
             started_at = excluded.started_at, phase = excluded.phase, \
             last_line_role = excluded.last_line_role, last_line_text = excluded.last_line_text, \
             first_audio_ms = excluded.first_audio_ms, last_response_ms = excluded.last_response_ms, \
             last_activity_at = excluded.last_activity_at",
        )
        .bind($call.call_id.as_str())
        .bind($call.tenant_id.as_str())
        .bind($node.id.as_str())
        .bind($node.started_at)
        .bind(&$call.call_sid)
        .bind($call.stream_sid.as_deref())
        .bind($call.direction)
        .bind(&$call.from)
        .bind(&$call.to)
        .bind($call.agent_key.as_deref())
        .bind($call.agent_version_id.as_deref())
        .bind($call.started_at)
        .bind($call.phase.as_str())
        .bind(role)
        .bind(text)
        .bind($call.first_audio_ms)
        .bind($call.last_response_ms)
        .bind($at)
        .execute(&mut *$tx)
        .await?;
    }};
}

/// Updates the row of `$call` if `$node` still holds it in `$tx`; evaluates to whether it did.
macro_rules! update {
    ($tx:expr, $node:expr, $call:expr, $at:expr) => {{
        let (role, text) = match &$call.last_line {
            Some((role, text)) => (Some(role.as_str()), Some(text.as_str())),
            None => (None, None),
        };
        sqlx::query(
            "UPDATE live_calls SET stream_sid = $4, phase = $5, last_line_role = $6, last_line_text = $7, \
             first_audio_ms = $8, last_response_ms = $9, last_activity_at = $10, \
             agent_key = $11, agent_version_id = $12 \
             WHERE call_id = $1 AND node_id = $2 AND node_started_at = $3",
        )
        .bind($call.call_id.as_str())
        .bind($node.id.as_str())
        .bind($node.started_at)
        .bind($call.stream_sid.as_deref())
        .bind($call.phase.as_str())
        .bind(role)
        .bind(text)
        .bind($call.first_audio_ms)
        .bind($call.last_response_ms)
        .bind($at)
        .bind($call.agent_key.as_deref())
        .bind($call.agent_version_id.as_deref())
        .execute(&mut *$tx)
        .await?
        .rows_affected()
            == 1
    }};
}

/// The payload of a `started` or `updated` event: the row as it is after the change.
#[derive(Debug, Serialize, Deserialize)]
struct CallPayload {
    call_sid: String,
    stream_sid: Option<String>,
    direction: String,
    from: String,
    to: String,
    agent_key: Option<String>,
    agent_version_id: Option<String>,
    started_at: i64,
    phase: String,
    last_line: Option<(String, String)>,
    first_audio_ms: Option<i64>,
    last_response_ms: Option<i64>,
    node_id: String,
    last_activity_at: i64,
}

/// The payload of an `ended` event.
#[derive(Debug, Serialize, Deserialize)]
struct EndPayload {
    reason: String,
}

fn call_payload(call: &ActiveCall, node: &str, at: i64) -> String {
    let payload = CallPayload {
        call_sid: call.call_sid.clone(),
        stream_sid: call.stream_sid.clone(),
        direction: call.direction.to_owned(),
        from: call.from.clone(),
        to: call.to.clone(),
        agent_key: call.agent_key.clone(),
        agent_version_id: call.agent_version_id.clone(),
        started_at: call.started_at,
        phase: call.phase.as_str().to_owned(),
        last_line: call.last_line.clone(),
        first_audio_ms: call.first_audio_ms,
        last_response_ms: call.last_response_ms,
        node_id: node.to_owned(),
        last_activity_at: at,
    };
    serde_json::to_string(&payload).unwrap_or_default()
}

fn end_payload(reason: &str) -> String {
    serde_json::to_string(&EndPayload {
        reason: reason.to_owned(),
    })
    .unwrap_or_default()
}

fn direction(s: &str) -> Result<&'static str, StoreError> {
    match s {
        "inbound" => Ok("inbound"),
        "outbound" => Ok("outbound"),
        _ => Err(StoreError::Corrupt("live_calls.direction")),
    }
}

fn phase(s: &str) -> Result<CallPhase, StoreError> {
    CallPhase::parse(s).ok_or(StoreError::Corrupt("live_calls.phase"))
}

/// A `live_calls` row.
#[derive(sqlx::FromRow)]
struct LiveRow {
    call_id: String,
    tenant_id: String,
    node_id: String,
    call_sid: String,
    stream_sid: Option<String>,
    direction: String,
    from_number: String,
    to_number: String,
    agent_key: Option<String>,
    agent_version_id: Option<String>,
    started_at: i64,
    phase: String,
    last_line_role: Option<String>,
    last_line_text: Option<String>,
    first_audio_ms: Option<i64>,
    last_response_ms: Option<i64>,
    last_activity_at: i64,
}

const LIVE_COLUMNS: &str = "l.call_id, l.tenant_id, l.node_id, l.call_sid, l.stream_sid, l.direction, \
     l.from_number, l.to_number, l.agent_key, l.agent_version_id, l.started_at, l.phase, \
     l.last_line_role, l.last_line_text, l.first_audio_ms, l.last_response_ms, l.last_activity_at";

impl TryFrom<LiveRow> for LiveCall {
    type Error = StoreError;

    fn try_from(r: LiveRow) -> Result<Self, StoreError> {
        Ok(LiveCall {
            call: ActiveCall {
                call_id: CallId::from_stored(r.call_id),
                call_sid: r.call_sid,
                stream_sid: r.stream_sid,
                tenant_id: TenantId::from_stored(r.tenant_id),
                direction: direction(&r.direction)?,
                from: r.from_number,
                to: r.to_number,
                agent_key: r.agent_key,
                agent_version_id: r.agent_version_id,
                started_at: r.started_at,
                phase: phase(&r.phase)?,
                last_line: r.last_line_role.zip(r.last_line_text),
                first_audio_ms: r.first_audio_ms,
                last_response_ms: r.last_response_ms,
            },
            node_id: r.node_id,
            last_activity_at: r.last_activity_at,
        })
    }
}

/// A `live_call_events` row.
#[derive(sqlx::FromRow)]
struct EventRow {
    seq: i64,
    tenant_id: String,
    call_id: String,
    kind: String,
    payload: String,
    at: i64,
}

impl TryFrom<EventRow> for LiveEvent {
    type Error = StoreError;

    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        let corrupt = |_| StoreError::Corrupt("live_call_events.payload");
        let tenant_id = TenantId::from_stored(r.tenant_id);
        let call_id = CallId::from_stored(r.call_id);
        let change = match r.kind.as_str() {
            "started" | "updated" => {
                let p: CallPayload = serde_json::from_str(&r.payload).map_err(corrupt)?;
                let call = LiveCall {
                    call: ActiveCall {
                        call_id: call_id.clone(),
                        call_sid: p.call_sid,
                        stream_sid: p.stream_sid,
                        tenant_id: tenant_id.clone(),
                        direction: direction(&p.direction)?,
                        from: p.from,
                        to: p.to,
                        agent_key: p.agent_key,
                        agent_version_id: p.agent_version_id,
                        started_at: p.started_at,
                        phase: phase(&p.phase)?,
                        last_line: p.last_line,
                        first_audio_ms: p.first_audio_ms,
                        last_response_ms: p.last_response_ms,
                    },
                    node_id: p.node_id,
                    last_activity_at: p.last_activity_at,
                };
                if r.kind == "started" {
                    LiveChange::Started(call)
                } else {
                    LiveChange::Updated(call)
                }
            }
            "ended" => {
                let p: EndPayload = serde_json::from_str(&r.payload).map_err(corrupt)?;
                LiveChange::Ended { reason: p.reason }
            }
            _ => return Err(StoreError::Corrupt("live_call_events.kind")),
        };
        Ok(LiveEvent {
            seq: r.seq,
            tenant_id,
            call_id,
            at: r.at,
            change,
        })
    }
}

impl Store {
    /// Writes one publishing window of `node` in one transaction: a start upserts the row,
    /// an update changes it while `node` still holds it, an end deletes it; each change that
    /// changed a row appends its event (a row another node took over, or a reconciler
    /// removed, is left alone and announces nothing).
    pub async fn publish_live(
        &self,
        node: &NodeInstance,
        changes: &[Change],
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            lock!(self, tx);
            let mut events = Vec::with_capacity(changes.len());
            for change in changes {
                let call_id = change.call_id.as_str();
                match &change.op {
                    Op::Started(call) => {
                        upsert!(tx, node, call, change.at);
                        let payload = call_payload(call, node.id.as_str(), change.at);
                        events.push(NewLiveEvent::new(call.tenant_id.as_str(), call_id, "started", payload, change.at));
                    }
                    Op::Updated(call) => {
                        if update!(tx, node, call, change.at) {
                            let payload = call_payload(call, node.id.as_str(), change.at);
                            events.push(NewLiveEvent::new(call.tenant_id.as_str(), call_id, "updated", payload, change.at));
                        }
                    }
                    Op::Ended { tenant_id, reason } => {
                        let n = sqlx::query(
                            "DELETE FROM live_calls WHERE call_id = $1 AND node_id = $2 AND node_started_at = $3",
                        )
                        .bind(call_id)
                        .bind(node.id.as_str())
                        .bind(node.started_at)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if n == 1 {
                            events.push(NewLiveEvent::new(tenant_id.as_str(), call_id, "ended", end_payload(reason), change.at));
                        }
                    }
                }
            }
            let last = append!(tx, events);
            notify!(self, tx, last);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Rewrites the rows `node` holds to be exactly `calls` (the node's registry), in one
    /// transaction: a row no longer live ends (`ended`), a live call with a row is
    /// `updated`, one without is `started`.
    pub async fn resync_live(
        &self,
        node: &NodeInstance,
        calls: &[ActiveCall],
        at: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            lock!(self, tx);
            // A write first (SQLite: the transaction holds the write lock from here on).
            let held: Vec<(String, String)> = sqlx::query_as(
                "UPDATE live_calls SET last_activity_at = last_activity_at \
                 WHERE node_id = $1 AND node_started_at = $2 RETURNING call_id, tenant_id",
            )
            .bind(node.id.as_str())
            .bind(node.started_at)
            .fetch_all(&mut *tx)
            .await?;
            let mut events = Vec::with_capacity(held.len() + calls.len());
            for (call_id, tenant_id) in &held {
                if calls.iter().any(|c| c.call_id.as_str() == call_id) {
                    continue;
                }
                sqlx::query("DELETE FROM live_calls WHERE call_id = $1")
                    .bind(call_id)
                    .execute(&mut *tx)
                    .await?;
                events.push(NewLiveEvent::new(tenant_id, call_id, "ended", end_payload("ended"), at));
            }
            for call in calls {
                let kind = if held.iter().any(|(id, _)| id == call.call_id.as_str()) {
                    "updated"
                } else {
                    "started"
                };
                upsert!(tx, node, call, at);
                let payload = call_payload(call, node.id.as_str(), at);
                events.push(NewLiveEvent::new(call.tenant_id.as_str(), call.call_id.as_str(), kind, payload, at));
            }
            let last = append!(tx, events);
            notify!(self, tx, last);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Ends the rows of calls held by lost nodes: a node whose row is gone, whose
    /// incarnation is not the recorded one, or whose heartbeat is older than `fresh_after`.
    /// Each row goes with an `ended` event (`node_lost`). Returns how many.
    pub async fn end_lost_live_calls(
        &self,
        fresh_after: i64,
        at: i64,
    ) -> Result<usize, StoreError> {
        let n = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            lock!(self, tx);
            let lost: Vec<(String, String)> = sqlx::query_as(
                "DELETE FROM live_calls WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = live_calls.node_id \
                 AND n.started_at = live_calls.node_started_at AND n.heartbeat_at >= $1) \
                 RETURNING call_id, tenant_id",
            )
            .bind(fresh_after)
            .fetch_all(&mut *tx)
            .await?;
            let events: Vec<NewLiveEvent> = lost
                .iter()
                .map(|(call_id, tenant_id)| NewLiveEvent::new(tenant_id, call_id, "ended", end_payload("node_lost"), at))
                .collect();
            let last = append!(tx, events);
            notify!(self, tx, last);
            tx.commit().await?;
            lost.len()
        });
        Ok(n)
    }

    /// The live calls of `tenant` (every tenant with `None`) held by a node's current
    /// incarnation, oldest first, with the last event they reflect: both read in one
    /// snapshot of the database.
    pub async fn live_snapshot(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<LiveSnapshot, StoreError> {
        let sql = format!(
            "SELECT {LIVE_COLUMNS} FROM live_calls l JOIN nodes n ON n.id = l.node_id \
             AND n.started_at = l.node_started_at WHERE ($1 IS NULL OR l.tenant_id = $1) \
             ORDER BY l.started_at, l.call_id"
        );
        let (seq, rows) = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if matches!(self, Store::Postgres(_)) {
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *tx)
                    .await?;
            }
            let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM live_call_events")
                .fetch_one(&mut *tx)
                .await?;
            let rows: Vec<LiveRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(tenant.map(TenantId::as_str))
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            (seq, rows)
        });
        Ok(LiveSnapshot {
            seq,
            calls: rows
                .into_iter()
                .map(LiveCall::try_from)
                .collect::<Result<_, _>>()?,
        })
    }

    /// One live call of `tenant` (another tenant's is not found).
    pub async fn live_call(
        &self,
        tenant: &TenantId,
        call: &CallId,
    ) -> Result<Option<LiveCall>, StoreError> {
        let sql = format!(
            "SELECT {LIVE_COLUMNS} FROM live_calls l JOIN nodes n ON n.id = l.node_id \
             AND n.started_at = l.node_started_at WHERE l.call_id = $1 AND l.tenant_id = $2"
        );
        let row: Option<LiveRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(call.as_str())
                .bind(tenant.as_str())
                .fetch_optional(pool)
                .await?
        });
        row.map(LiveCall::try_from).transpose()
    }

    /// Events after `seq` (of `tenant`, or of all), in order, at most `limit`.
    pub async fn live_events_after(
        &self,
        tenant: Option<&TenantId>,
        seq: i64,
        limit: u32,
    ) -> Result<Vec<LiveEvent>, StoreError> {
        let rows: Vec<EventRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT seq, tenant_id, call_id, kind, payload, at FROM live_call_events \
                 WHERE seq > $1 AND ($2 IS NULL OR tenant_id = $2) ORDER BY seq LIMIT $3",
            )
            .bind(seq)
            .bind(tenant.map(TenantId::as_str))
            .bind(as_i64(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(LiveEvent::try_from).collect()
    }

    /// The oldest and newest `seq` kept (none when no event was ever written).
    pub async fn live_event_bounds(&self) -> Result<(Option<i64>, Option<i64>), StoreError> {
        let bounds: (Option<i64>, Option<i64>) = on_pool!(self, pool => {
            sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM live_call_events")
                .fetch_one(pool)
                .await?
        });
        Ok(bounds)
    }

    /// Deletes events written before `before`, except the newest one. Returns how many.
    pub async fn prune_live_events(&self, before: i64) -> Result<u64, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM live_call_events WHERE at < $1 \
                 AND seq < (SELECT MAX(seq) FROM live_call_events)",
            )
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::NodeId;
    use crate::store::fixtures::{call as call_record, store, tenant};
    use crate::store::nodes::OrphanCall;

    fn node(id: &str, started_at: i64) -> NodeInstance {
        NodeInstance {
            id: NodeId::parse(id).expect("node id"),
            started_at,
        }
    }

    fn live(id: &CallId, tenant: &TenantId) -> ActiveCall {
        ActiveCall {
            call_id: id.clone(),
            agent_key: Some("support".into()),
            started_at: 10,
            ..ActiveCall::sample(tenant)
        }
    }

    fn change(call: &ActiveCall, op: Op, at: i64) -> Change {
        Change {
            call_id: call.call_id.clone(),
            op,
            at,
        }
    }

    fn kinds(events: &[LiveEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.change.kind()).collect()
    }

    #[tokio::test]
    async fn windows_write_rows_and_events_read_back_per_tenant() {
        let store = store().await;
        let a = node("node-a", 100);
        store.register_node(&a, "a:1", "1").await.expect("node");
        let t = tenant(&store).await;
        let other = tenant(&store).await;
        let mine = live(&CallId::generate(), &t);
        let theirs = live(&CallId::generate(), &other);
        let mut speaking = mine.clone();
        speaking.phase = CallPhase::Speaking;
        speaking.last_line = Some(("user".into(), "hello".into()));
        store
            .publish_live(
                &a,
                &[
                    change(&mine, Op::Started(mine.clone()), 1_000),
                    change(&theirs, Op::Started(theirs.clone()), 1_000),
                ],
            )
            .await
            .expect("publish");
        store
            .publish_live(&a, &[change(&mine, Op::Updated(speaking.clone()), 1_100)])
            .await
            .expect("publish");

        let snap = store.live_snapshot(Some(&t)).await.expect("snapshot");
        assert_eq!(snap.seq, 3);
        assert_eq!(snap.calls.len(), 1);
        assert_eq!(snap.calls[0].call, speaking);
        assert_eq!(snap.calls[0].node_id, "node-a");
        assert_eq!(snap.calls[0].last_activity_at, 1_100);
        assert_eq!(store.live_snapshot(None).await.expect("all").calls.len(), 2);
        // Another tenant's call is not found through this tenant.
        assert!(
            store
                .live_call(&t, &theirs.call_id)
                .await
                .expect("read")
                .is_none()
        );
        assert!(
            store
                .live_call(&other, &theirs.call_id)
                .await
                .expect("read")
                .is_some()
        );
        let events = store
            .live_events_after(Some(&t), 0, 10)
            .await
            .expect("events");
        assert_eq!(kinds(&events), vec!["started", "updated"]);
        assert!(matches!(&events[1].change, LiveChange::Updated(c) if c.call == speaking));
        assert_eq!(
            store
                .live_events_after(None, 1, 10)
                .await
                .expect("events")
                .len(),
            2
        );

        // An update or end of a row this node does not hold changes nothing.
        let b = node("node-b", 200);
        store
            .publish_live(&b, &[change(&mine, Op::Updated(mine.clone()), 1_200)])
            .await
            .expect("publish");
        assert_eq!(
            store.live_event_bounds().await.expect("bounds"),
            (Some(1), Some(3))
        );
        store
            .publish_live(
                &a,
                &[change(
                    &mine,
                    Op::Ended {
                        tenant_id: t.clone(),
                        reason: "ended".into(),
                    },
                    1_300,
                )],
            )
            .await
            .expect("publish");
        assert!(
            store
                .live_snapshot(Some(&t))
                .await
                .expect("snap")
                .calls
                .is_empty()
        );
        let events = store
            .live_events_after(Some(&t), 3, 10)
            .await
            .expect("events");
        assert!(
            matches!(&events[..], [LiveEvent { seq: 4, change: LiveChange::Ended { reason }, .. }] if reason == "ended")
        );

        // Pruning keeps the newest event, so `seq` stays a high-water mark.
        assert_eq!(store.prune_live_events(i64::MAX).await.expect("prune"), 3);
        assert_eq!(
            store.live_event_bounds().await.expect("bounds"),
            (Some(4), Some(4))
        );
    }

    #[tokio::test]
    async fn a_resync_rewrites_the_nodes_rows_and_lost_nodes_rows_end() {
        let store = store().await;
        let a = node("node-a", 100);
        store.register_node(&a, "a:1", "1").await.expect("node");
        let t = tenant(&store).await;
        let gone = live(&CallId::generate(), &t);
        let kept = live(&CallId::generate(), &t);
        store
            .publish_live(
                &a,
                &[
                    change(&gone, Op::Started(gone.clone()), 1),
                    change(&kept, Op::Started(kept.clone()), 1),
                ],
            )
            .await
            .expect("publish");
        let fresh = live(&CallId::generate(), &t);
        store
            .resync_live(&a, &[kept.clone(), fresh.clone()], 5)
            .await
            .expect("resync");
        let events = store
            .live_events_after(Some(&t), 2, 10)
            .await
            .expect("events");
        assert_eq!(kinds(&events), vec!["ended", "updated", "started"]);
        assert_eq!(events[0].call_id, gone.call_id);
        assert_eq!(
            store
                .live_snapshot(Some(&t))
                .await
                .expect("snap")
                .calls
                .len(),
            2
        );

        // The node restarts: rows of its earlier incarnation are not listed, and the
        // reconciler's sweep ends them.
        let a2 = node("node-a", 300);
        store.register_node(&a2, "a:1", "1").await.expect("node");
        assert!(
            store
                .live_snapshot(Some(&t))
                .await
                .expect("snap")
                .calls
                .is_empty()
        );
        assert_eq!(store.end_lost_live_calls(0, 9).await.expect("sweep"), 2);
        let events = store
            .live_events_after(Some(&t), 5, 10)
            .await
            .expect("events");
        assert!(
            events.iter().all(
                |e| matches!(&e.change, LiveChange::Ended { reason } if reason == "node_lost")
            )
        );
        assert_eq!(events.len(), 2);
    }

    #[tokio::test]
    async fn claiming_a_lost_call_ends_its_live_row_in_the_same_transaction() {
        let store = store().await;
        let lost = node("node-a", 100);
        store.register_node(&lost, "a:1", "1").await.expect("node");
        let t = tenant(&store).await;
        let mut record = call_record(&t);
        record.node_id = Some("node-a".into());
        record.node_started_at = Some(100);
        store.admit_call(&record, 10, None, 0).await.expect("admit");
        let row = live(&record.id, &t);
        store
            .publish_live(&lost, &[change(&row, Op::Started(row.clone()), 1)])
            .await
            .expect("publish");
        let orphan = OrphanCall {
            call: record.id.clone(),
            node_id: "node-a".into(),
            node_started_at: Some(100),
        };
        assert!(
            store
                .claim_orphan(&orphan, &node("node-b", 200))
                .await
                .expect("claim")
        );
        assert!(
            store
                .live_call(&t, &record.id)
                .await
                .expect("read")
                .is_none()
        );
        let events = store
            .live_events_after(Some(&t), 1, 10)
            .await
            .expect("events");
        assert!(
            matches!(&events[..], [LiveEvent { change: LiveChange::Ended { reason }, .. }] if reason == "node_lost")
        );
        // Claimed once: a second claim writes nothing.
        assert!(
            !store
                .claim_orphan(&orphan, &node("node-c", 300))
                .await
                .expect("claim")
        );
        assert_eq!(
            store.live_event_bounds().await.expect("bounds"),
            (Some(1), Some(2))
        );
    }
}
