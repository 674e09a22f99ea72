//! Nodes, their heartbeats, the reconciler's lease, and the calls a node holds (DESIGN §1
//! "Failure model", "Scale-out"): each process records itself (`nodes`) and refreshes its
//! heartbeat; a call names the node (and the node's incarnation, its process start) that
//! holds its work; the calls of a lost incarnation are found and claimed here, one
//! conditional `UPDATE` each, so two reconcilers never both take one call.

use super::{Store, StoreError, as_i64, on_pool};
use crate::ids::CallId;
use crate::nodes::NodeInstance;

/// A call whose node was lost, as found (the claim must still match when it is taken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanCall {
    /// The call.
    pub call: CallId,
    /// The node that held it.
    pub node_id: String,
    /// That node's incarnation.
    pub node_started_at: Option<i64>,
}

/// A recorded node, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Its id.
    pub id: String,
    /// Where it serves.
    pub address: String,
    /// Its service version.
    pub version: String,
    /// Its incarnation's start (Unix ms).
    pub started_at: i64,
    /// Its last heartbeat (Unix ms).
    pub heartbeat_at: i64,
    /// Whether it is shutting down.
    pub draining: bool,
    /// Live calls its current incarnation holds.
    pub live_calls: i64,
}

/// A node whose heartbeat went stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleNode {
    /// Its id.
    pub id: String,
    /// Its last heartbeat (Unix ms).
    pub heartbeat_at: i64,
}

impl Store {
    /// Records this process as `node` (a restart of the same node id replaces its earlier
    /// incarnation: new start, fresh heartbeat, not draining).
    pub async fn register_node(
        &self,
        node: &NodeInstance,
        address: &str,
        version: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO nodes (id, address, version, started_at, heartbeat_at, draining) \
                 VALUES ($1, $2, $3, $4, $4, FALSE) ON CONFLICT (id) DO UPDATE SET \
                 address = excluded.address, version = excluded.version, started_at = excluded.started_at, \
                 heartbeat_at = excluded.heartbeat_at, draining = FALSE",
            )
            .bind(node.id.as_str())
            .bind(address)
            .bind(version)
            .bind(node.started_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Refreshes the heartbeat of `node` (re-recording it if a reconciler removed it as
    /// stale). False when another incarnation holds the node id (two processes configured
    /// with one `NODE_ID`).
    pub async fn node_heartbeat(
        &self,
        node: &NodeInstance,
        address: &str,
        version: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO nodes (id, address, version, started_at, heartbeat_at, draining) \
                 VALUES ($1, $2, $3, $4, $5, FALSE) ON CONFLICT (id) DO UPDATE SET \
                 heartbeat_at = excluded.heartbeat_at WHERE nodes.started_at = excluded.started_at",
            )
            .bind(node.id.as_str())
            .bind(address)
            .bind(version)
            .bind(node.started_at)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Marks `node` draining (it is shutting down).
    pub async fn set_node_draining(&self, node: &NodeInstance) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE nodes SET draining = TRUE WHERE id = $1 AND started_at = $2")
                .bind(node.id.as_str())
                .bind(node.started_at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Whether `node` is recorded draining (`None` when not recorded).
    pub async fn node_draining(&self, node: &NodeInstance) -> Result<Option<bool>, StoreError> {
        let row: Option<bool> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT draining FROM nodes WHERE id = $1")
                .bind(node.id.as_str())
                .fetch_optional(pool)
                .await?
        });
        Ok(row)
    }

    /// How many nodes other than `me` are up to take calls: not draining, their last
    /// heartbeat at or after `fresh_after`.
    pub async fn live_peers(&self, me: &str, fresh_after: i64) -> Result<i64, StoreError> {
        let n: i64 = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM nodes WHERE id <> $1 AND draining = FALSE AND heartbeat_at >= $2",
            )
            .bind(me)
            .bind(fresh_after)
            .fetch_one(pool)
            .await?
        });
        Ok(n)
    }

    /// Nodes other than `me` whose last heartbeat is older than `before`.
    pub async fn stale_nodes(&self, me: &str, before: i64) -> Result<Vec<StaleNode>, StoreError> {
        let rows: Vec<(String, i64)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT id, heartbeat_at FROM nodes WHERE id <> $1 AND heartbeat_at < $2 ORDER BY heartbeat_at")
                .bind(me)
                .bind(before)
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, heartbeat_at)| StaleNode { id, heartbeat_at })
            .collect())
    }

    /// Forgets a node that is still stale and holds no open call; false otherwise.
    pub async fn remove_stale_node(&self, id: &str, before: i64) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM nodes WHERE id = $1 AND heartbeat_at < $2 AND NOT EXISTS \
                 (SELECT 1 FROM calls WHERE node_id = $1 AND completed_at IS NULL)",
            )
            .bind(id)
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Forgets `node` at a clean stop when it holds no open call; false otherwise (its
    /// calls are then reconciled at its next start or by another node).
    pub async fn remove_node(&self, node: &NodeInstance) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM nodes WHERE id = $1 AND started_at = $2 AND NOT EXISTS \
                 (SELECT 1 FROM calls WHERE node_id = $1 AND completed_at IS NULL)",
            )
            .bind(node.id.as_str())
            .bind(node.started_at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Calls of `node` the runtime completed at or after `since` (the conversation is over,
    /// the caller hung up or was hung up on) whose final carrier status has not arrived yet:
    /// a node shutting down waits, bounded, for their status callbacks before it stops
    /// listening. Calls handed on (fallback, operators) stay live at the carrier and are not
    /// counted.
    pub async fn calls_awaiting_final_status(
        &self,
        node: &str,
        since: i64,
    ) -> Result<i64, StoreError> {
        let n: i64 = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM calls WHERE node_id = $1 AND completed_at >= $2 \
                 AND outcome IN ('completed', 'refused') \
                 AND status NOT IN ('completed', 'busy', 'failed', 'no-answer', 'canceled')",
            )
            .bind(node)
            .bind(since)
            .fetch_one(pool)
            .await?
        });
        Ok(n)
    }

    /// Takes (or renews) the lease `name` for `holder` until `now + ttl_ms`: true when
    /// `holder` has it, false while another holder's lease runs.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
            )
            .bind(name)
            .bind(holder)
            .bind(now.saturating_add(ttl_ms))
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Gives the lease `name` up if `holder` has it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Open calls held by `node_id`, oldest first; with `before`, only those of its
    /// incarnations started before it (a node's own earlier lives).
    pub async fn orphan_calls(
        &self,
        node_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<OrphanCall>, StoreError> {
        let rows: Vec<(String, String, Option<i64>)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, node_id, node_started_at FROM calls WHERE node_id = $1 AND completed_at IS NULL \
                 AND ($2 IS NULL OR node_started_at IS NULL OR node_started_at < $2) \
                 ORDER BY created_at, id LIMIT $3",
            )
            .bind(node_id)
            .bind(before)
            .bind(as_i64(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, node_id, node_started_at)| OrphanCall {
                call: CallId::from_stored(id),
                node_id,
                node_started_at,
            })
            .collect())
    }

    /// Takes an orphan over for `me` if it is still held as found (nobody claimed it since,
    /// no stream started on a live node, not completed). True when `me` has it now; its row
    /// in the live-call registry (held by the lost node) then ends with a `node_lost` event
    /// in the same transaction.
    pub async fn claim_orphan(
        &self,
        orphan: &OrphanCall,
        me: &NodeInstance,
    ) -> Result<bool, StoreError> {
        let now = crate::time::now_ms();
        let claimed = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if matches!(self, Store::Postgres(_)) {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(super::live_calls::LOCK)
                    .execute(&mut *tx)
                    .await?;
            }
            let n = sqlx::query(
                "UPDATE calls SET node_id = $2, node_started_at = $3, updated_at = $6 \
                 WHERE id = $1 AND completed_at IS NULL AND node_id = $4 \
                 AND ((node_started_at IS NULL AND $5 IS NULL) OR node_started_at = $5)",
            )
            .bind(orphan.call.as_str())
            .bind(me.id.as_str())
            .bind(me.started_at)
            .bind(&orphan.node_id)
            .bind(orphan.node_started_at)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                let lost: Option<String> = sqlx::query_scalar(
                    "DELETE FROM live_calls WHERE call_id = $1 AND node_id = $2 \
                     AND ($3 IS NULL OR node_started_at = $3) RETURNING tenant_id",
                )
                .bind(orphan.call.as_str())
                .bind(&orphan.node_id)
                .bind(orphan.node_started_at)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(tenant) = lost {
                    let seq: i64 = sqlx::query_scalar(
                        "INSERT INTO live_call_events (tenant_id, call_id, kind, payload, at) \
                         VALUES ($1, $2, 'ended', $3, $4) RETURNING seq",
                    )
                    .bind(&tenant)
                    .bind(orphan.call.as_str())
                    .bind(r#"{"reason":"node_lost"}"#)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    if matches!(self, Store::Postgres(_)) {
                        sqlx::query("SELECT pg_notify($1, $2)")
                            .bind(crate::active::feed::CHANNEL)
                            .bind(seq.to_string())
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            tx.commit().await?;
            n == 1
        });
        Ok(claimed)
    }

    /// Every recorded node with the number of live calls its current incarnation holds,
    /// by id.
    pub async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let rows: Vec<(String, String, String, i64, i64, bool, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT n.id, n.address, n.version, n.started_at, n.heartbeat_at, n.draining, \
                 (SELECT COUNT(*) FROM live_calls l WHERE l.node_id = n.id AND l.node_started_at = n.started_at) \
                 FROM nodes n ORDER BY n.id",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, address, version, started_at, heartbeat_at, draining, live_calls)| {
                    NodeRecord {
                        id,
                        address,
                        version,
                        started_at,
                        heartbeat_at,
                        draining,
                        live_calls,
                    }
                },
            )
            .collect())
    }

    /// `node` holds `call` from now on (its media stream started there).
    pub async fn hold_call(&self, call: &CallId, node: &NodeInstance) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE calls SET node_id = $2, node_started_at = $3 WHERE id = $1")
                .bind(call.as_str())
                .bind(node.id.as_str())
                .bind(node.started_at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Where a voice session of `call` is still live on a node other than `me` that is
    /// still registered (its leg has not recorded its end yet): that node's address, which
    /// `stream-ended`, asked on this node, checks before waiting for it to record the end.
    pub async fn leg_live_elsewhere(
        &self,
        call: &CallId,
        me: &NodeInstance,
    ) -> Result<Option<String>, StoreError> {
        let holder: Option<String> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT n.address FROM voice_sessions s \
                   JOIN calls c ON c.id = s.call_id \
                   JOIN nodes n ON n.id = c.node_id AND n.started_at = c.node_started_at \
                 WHERE s.call_id = $1 AND s.status = 'active' \
                   AND NOT (c.node_id = $2 AND c.node_started_at = $3) LIMIT 1",
            )
            .bind(call.as_str())
            .bind(me.id.as_str())
            .bind(me.started_at)
            .fetch_optional(pool)
            .await?
        });
        Ok(holder)
    }

    /// `node` lets go of `call`: nothing of it runs on a node any more (it rings, or a
    /// human has it); the carrier's callbacks finish it on whichever node they reach.
    pub async fn let_go_of_call(
        &self,
        call: &CallId,
        node: &NodeInstance,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE calls SET node_id = NULL, node_started_at = NULL \
                 WHERE id = $1 AND node_id = $2 AND node_started_at = $3",
            )
            .bind(call.as_str())
            .bind(node.id.as_str())
            .bind(node.started_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Records the end of a call as the carrier reports it when asked (its final status
    /// callback was lost): the terminal `status`, the duration, and `ended_at` (kept if
    /// set). A status set by a callback with a sequence number is kept.
    pub async fn record_carrier_end(
        &self,
        call: &CallId,
        status: &str,
        duration_seconds: Option<i64>,
        at: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE calls SET status = CASE WHEN status IN ('completed', 'busy', 'failed', 'no-answer', 'canceled') \
                 THEN status ELSE $2 END, duration_seconds = COALESCE(duration_seconds, $3), \
                 ended_at = COALESCE(ended_at, $4), updated_at = $4 WHERE id = $1",
            )
            .bind(call.as_str())
            .bind(status)
            .bind(duration_seconds)
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::NodeId;
    use crate::store::fixtures::{call, store, tenant};

    fn node(id: &str, started_at: i64) -> NodeInstance {
        NodeInstance {
            id: NodeId::parse(id).expect("node id"),
            started_at,
        }
    }

    #[tokio::test]
    async fn one_lease_holder_at_a_time_until_it_expires() {
        let store = store().await;
        assert!(store.try_lease("r", "a", 1_000, 500).await.expect("lease"));
        // Another holder is refused while it runs; the holder renews it.
        assert!(!store.try_lease("r", "b", 1_200, 500).await.expect("lease"));
        assert!(store.try_lease("r", "a", 1_400, 500).await.expect("renew"));
        assert!(!store.try_lease("r", "b", 1_800, 500).await.expect("lease"));
        // Expired: the next one takes it.
        assert!(store.try_lease("r", "b", 1_901, 500).await.expect("lease"));
        assert!(!store.try_lease("r", "a", 1_950, 500).await.expect("lease"));
        store.release_lease("r", "b").await.expect("release");
        assert!(store.try_lease("r", "a", 1_960, 500).await.expect("lease"));
    }

    #[tokio::test]
    async fn heartbeats_stale_nodes_and_another_incarnation() {
        let store = store().await;
        let a = node("node-a", 100);
        let b = node("node-b", 100);
        store.register_node(&a, "a:1", "1").await.expect("a");
        store.register_node(&b, "b:1", "1").await.expect("b");
        assert!(
            store
                .node_heartbeat(&b, "b:1", "1", 5_000)
                .await
                .expect("beat")
        );
        let stale = store.stale_nodes("node-b", 1_000).await.expect("stale");
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].id, "node-a");
        assert!(
            store
                .stale_nodes("node-a", 1_000)
                .await
                .expect("stale")
                .is_empty()
        );
        // A second process with the same id replaces the row; the first one's heartbeat
        // then says so instead of overwriting it.
        let a2 = node("node-a", 200);
        store.register_node(&a2, "a:1", "1").await.expect("a2");
        assert!(
            !store
                .node_heartbeat(&a, "a:1", "1", 6_000)
                .await
                .expect("beat")
        );
        assert!(
            store
                .node_heartbeat(&a2, "a:1", "1", 6_000)
                .await
                .expect("beat")
        );
        store.set_node_draining(&a2).await.expect("drain");
        assert_eq!(store.node_draining(&a2).await.expect("read"), Some(true));
        // A stale node is forgotten only once it holds no open call.
        assert!(store.remove_stale_node("node-b", 10_000).await.expect("rm"));
        assert!(store.remove_node(&a2).await.expect("rm"));
        assert_eq!(store.node_draining(&a2).await.expect("read"), None);
    }

    #[tokio::test]
    async fn orphans_of_earlier_incarnations_are_claimed_once() {
        let store = store().await;
        let t = tenant(&store).await;
        let old = node("node-a", 100);
        let mut c = call(&t);
        c.node_id = Some("node-a".into());
        c.node_started_at = Some(100);
        store.admit_call(&c, 10, None, 0).await.expect("admit");
        let mut fresh = call(&t);
        fresh.call_sid = Some("CAfresh".into());
        fresh.node_id = Some("node-a".into());
        fresh.node_started_at = Some(200);
        store.admit_call(&fresh, 10, None, 0).await.expect("admit");

        // The restarted node (incarnation 200) finds only the earlier life's call.
        let me = node("node-a", 200);
        let orphans = store
            .orphan_calls("node-a", Some(200), 10)
            .await
            .expect("orphans");
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].call, c.id);
        assert_eq!(orphans[0].node_started_at, Some(old.started_at));
        // Any node reconciling a stale node sees all its calls.
        assert_eq!(
            store
                .orphan_calls("node-a", None, 10)
                .await
                .expect("all")
                .len(),
            2
        );
        assert!(store.claim_orphan(&orphans[0], &me).await.expect("claim"));
        // Claimed: a second reconciler working from the same finding gets nothing.
        let other = node("node-b", 300);
        assert!(
            !store
                .claim_orphan(&orphans[0], &other)
                .await
                .expect("claim")
        );
        assert!(
            store
                .orphan_calls("node-a", Some(200), 10)
                .await
                .expect("orphans")
                .is_empty()
        );
        let held = store
            .get_call_by_id(&c.id)
            .await
            .expect("get")
            .expect("call");
        assert_eq!(held.node_started_at, Some(200));
        store.let_go_of_call(&c.id, &me).await.expect("let go");
        let held = store
            .get_call_by_id(&c.id)
            .await
            .expect("get")
            .expect("call");
        assert_eq!(held.node_id, None);
        // A stream starting on another node holds the call there.
        store.hold_call(&c.id, &other).await.expect("hold");
        let held = store
            .get_call_by_id(&c.id)
            .await
            .expect("get")
            .expect("call");
        assert_eq!(held.node_id.as_deref(), Some("node-b"));
    }

    #[tokio::test]
    async fn a_carrier_end_frees_the_concurrency_slot() {
        let store = store().await;
        let t = tenant(&store).await;
        let mut c = call(&t);
        c.status = "in-progress".into();
        store.admit_call(&c, 10, None, 0).await.expect("admit");
        assert_eq!(store.count_live_calls(&t, None, 0).await.expect("n"), 1);
        store
            .record_carrier_end(&c.id, "completed", Some(12), 5_000)
            .await
            .expect("end");
        assert_eq!(store.count_live_calls(&t, None, 0).await.expect("n"), 0);
        let ended = store
            .get_call_by_id(&c.id)
            .await
            .expect("get")
            .expect("call");
        assert_eq!(ended.status, "completed");
        assert_eq!(ended.duration_seconds, Some(12));
        assert_eq!(ended.ended_at, Some(5_000));
    }
}
