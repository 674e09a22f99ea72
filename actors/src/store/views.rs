//! The cluster views' rows (`routing_diagnostics`, `auth_transport_failures`): written by
//! each node's writer task ([`crate::views`]), read by any node, pruned by age and count.

use super::{Store, StoreError, on_pool};
use crate::router::RoutingDiagnostic;

/// A routing diagnostic as stored, with the node that recorded it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredRoutingDiagnostic {
    /// The node that saw the call.
    pub node_id: String,
    /// When (Unix ms).
    pub at: i64,
    /// Signing account.
    pub account_sid: String,
    /// `CallSid`.
    pub call_sid: String,
    /// `From`.
    pub from_number: String,
    /// `To`.
    pub to_number: String,
    /// Why (`unrouted`, or the refusal's end reason).
    pub reason: String,
}

/// An authentication failure on the Twilio transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// A webhook whose signature did not verify.
    Signature {
        /// Route template.
        route: String,
        /// The claimed (unverified) account, when it looks like one.
        account_sid: Option<String>,
    },
    /// A refused media stream.
    StreamToken {
        /// `missing`, `forged`, `expired`, `reused`.
        reason: String,
    },
}

/// An authentication failure as stored, with the node that saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuthFailure {
    /// The node that saw it.
    pub node_id: String,
    /// When (Unix ms).
    pub at: i64,
    /// What failed.
    pub failure: AuthFailure,
}

#[derive(sqlx::FromRow)]
struct AuthFailureRow {
    node_id: String,
    at: i64,
    kind: String,
    route: Option<String>,
    account_sid: Option<String>,
    reason: Option<String>,
}

impl AuthFailureRow {
    fn into_stored(self) -> StoredAuthFailure {
        let failure = match self.kind.as_str() {
            "signature" => AuthFailure::Signature {
                route: self.route.unwrap_or_default(),
                account_sid: self.account_sid,
            },
            _ => AuthFailure::StreamToken {
                reason: self.reason.unwrap_or_default(),
            },
        };
        StoredAuthFailure {
            node_id: self.node_id,
            at: self.at,
            failure,
        }
    }
}

/// How much of each view is kept (older rows, and rows past the count, are pruned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewRetention {
    /// Routing diagnostics younger than this (ms)…
    pub routing_max_age_ms: i64,
    /// …and at most this many, the newest.
    pub routing_keep: i64,
    /// Auth-transport failures younger than this (ms)…
    pub auth_max_age_ms: i64,
    /// …and at most this many, the newest.
    pub auth_keep: i64,
}

impl Store {
    /// Records a routing diagnostic seen by `node_id`.
    pub async fn insert_routing_diagnostic(
        &self,
        node_id: &str,
        d: &RoutingDiagnostic,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO routing_diagnostics (id, node_id, at, account_sid, call_sid, from_number, to_number, reason) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(uuid::Uuid::new_v4().simple().to_string())
            .bind(node_id)
            .bind(d.at)
            .bind(&d.account_sid)
            .bind(&d.call_sid)
            .bind(&d.from)
            .bind(&d.to)
            .bind(d.reason)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The newest routing diagnostics of every node, newest first, at most `limit`.
    pub async fn recent_routing_diagnostics(
        &self,
        limit: i64,
    ) -> Result<Vec<StoredRoutingDiagnostic>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, StoredRoutingDiagnostic>(
                "SELECT node_id, at, account_sid, call_sid, from_number, to_number, reason \
                 FROM routing_diagnostics ORDER BY at DESC, id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Records an authentication failure seen by `node_id` at `at`.
    pub async fn insert_auth_failure(
        &self,
        node_id: &str,
        at: i64,
        failure: &AuthFailure,
    ) -> Result<(), StoreError> {
        let (kind, route, account_sid, reason) = match failure {
            AuthFailure::Signature { route, account_sid } => (
                "signature",
                Some(route.as_str()),
                account_sid.as_deref(),
                None,
            ),
            AuthFailure::StreamToken { reason } => {
                ("stream_token", None, None, Some(reason.as_str()))
            }
        };
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO auth_transport_failures (id, node_id, at, kind, route, account_sid, reason) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(uuid::Uuid::new_v4().simple().to_string())
            .bind(node_id)
            .bind(at)
            .bind(kind)
            .bind(route)
            .bind(account_sid)
            .bind(reason)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The authentication failures of every node since `since` (Unix ms), at most `limit`,
    /// newest first.
    pub async fn auth_failures_since(
        &self,
        since: i64,
        limit: i64,
    ) -> Result<Vec<StoredAuthFailure>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, AuthFailureRow>(
                "SELECT node_id, at, kind, route, account_sid, reason FROM auth_transport_failures \
                 WHERE at >= $1 ORDER BY at DESC, id DESC LIMIT $2",
            )
            .bind(since)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(AuthFailureRow::into_stored).collect())
    }

    /// Deletes what `keep` no longer covers at `now` (Unix ms); returns the rows deleted.
    pub async fn prune_cluster_views(
        &self,
        now: i64,
        keep: &ViewRetention,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for (table, max_age, count) in [
            (
                "routing_diagnostics",
                keep.routing_max_age_ms,
                keep.routing_keep,
            ),
            (
                "auth_transport_failures",
                keep.auth_max_age_ms,
                keep.auth_keep,
            ),
        ] {
            let sql = format!(
                "DELETE FROM {table} WHERE at < $1 OR id NOT IN \
                 (SELECT id FROM {table} ORDER BY at DESC, id DESC LIMIT $2)"
            );
            deleted += on_pool!(self, pool => {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now.saturating_sub(max_age))
                    .bind(count)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures;

    fn diagnostic(at: i64) -> RoutingDiagnostic {
        RoutingDiagnostic {
            at,
            account_sid: "AC1".into(),
            call_sid: format!("CA{at}"),
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            reason: "unrouted",
        }
    }

    const KEEP: ViewRetention = ViewRetention {
        routing_max_age_ms: 1_000,
        routing_keep: 3,
        auth_max_age_ms: 500,
        auth_keep: 2,
    };

    #[tokio::test]
    async fn views_are_listed_newest_first_and_pruned_by_age_and_count() {
        let store = fixtures::store().await;
        for at in [100, 400, 300, 200, 500] {
            store
                .insert_routing_diagnostic(if at % 200 == 0 { "b" } else { "a" }, &diagnostic(at))
                .await
                .expect("insert");
        }
        let listed = store.recent_routing_diagnostics(10).await.expect("list");
        let ats: Vec<i64> = listed.iter().map(|d| d.at).collect();
        assert_eq!(ats, [500, 400, 300, 200, 100]);
        assert_eq!(listed[1].node_id, "b");
        assert_eq!(listed[1].to_number, "+15550002222");
        for (at, failure) in [
            (
                100,
                AuthFailure::StreamToken {
                    reason: "forged".into(),
                },
            ),
            (
                700,
                AuthFailure::Signature {
                    route: "/api/v1/incoming-call".into(),
                    account_sid: None,
                },
            ),
            (
                800,
                AuthFailure::StreamToken {
                    reason: "reused".into(),
                },
            ),
            (
                900,
                AuthFailure::StreamToken {
                    reason: "expired".into(),
                },
            ),
        ] {
            store
                .insert_auth_failure("a", at, &failure)
                .await
                .expect("insert");
        }
        let since = store.auth_failures_since(700, 10).await.expect("list");
        assert_eq!(since.len(), 3);
        assert_eq!(
            since[2].failure,
            AuthFailure::Signature {
                route: "/api/v1/incoming-call".into(),
                account_sid: None
            }
        );
        // At 1,250: routing keeps the 3 newest (and drops 100 for age anyway); auth keeps
        // what is younger than 500 ms (800, 900), which is within its count of 2.
        let deleted = store
            .prune_cluster_views(1_250, &KEEP)
            .await
            .expect("prune");
        assert_eq!(deleted, 2 + 2);
        let ats: Vec<i64> = store
            .recent_routing_diagnostics(10)
            .await
            .expect("list")
            .iter()
            .map(|d| d.at)
            .collect();
        assert_eq!(ats, [500, 400, 300]);
        let ats: Vec<i64> = store
            .auth_failures_since(0, 10)
            .await
            .expect("list")
            .iter()
            .map(|f| f.at)
            .collect();
        assert_eq!(ats, [900, 800]);
    }
}
