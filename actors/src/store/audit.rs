//! The audit log: rows written with admin mutations, and the listing.

use super::{AuditEntry, AuditFilter, Page, Store, StoreError, as_i64, on_pool};
use crate::ids::TenantId;

/// Inserts an audit row on an open transaction or connection (`$exec` is `&mut *tx`).
macro_rules! insert_audit {
    ($exec:expr, $audit:expr) => {{
        let audit: &$crate::store::NewAudit = $audit;
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, tenant_id, target_type, target_id, before, after, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind($crate::time::now_ms())
        .bind(&audit.actor)
        .bind(audit.action)
        .bind(audit.tenant_id.as_ref().map(|t| t.as_str().to_owned()))
        .bind(audit.target_type)
        .bind(&audit.target_id)
        .bind(audit.before.as_ref().map(|v| v.to_string()))
        .bind(audit.after.as_ref().map(|v| v.to_string()))
        .bind(&audit.request_id)
        .execute($exec)
        .await
        .map(|_| ())
    }};
}
pub(crate) use insert_audit;

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    tenant_id: Option<String>,
    target_type: String,
    target_id: String,
    before: Option<String>,
    after: Option<String>,
    request_id: Option<String>,
}

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> Self {
        let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
        AuditEntry {
            id: row.id,
            at: row.at,
            actor: row.actor,
            action: row.action,
            tenant_id: row.tenant_id.map(TenantId::from_stored),
            target_type: row.target_type,
            target_id: row.target_id,
            before: parse(row.before),
            after: parse(row.after),
            request_id: row.request_id,
        }
    }
}

impl Store {
    /// Lists audit rows, newest first.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Page<AuditEntry>, StoreError> {
        let tenant = filter.tenant_id.as_ref().map(|t| t.as_str().to_owned());
        let (rows, total): (Vec<AuditRow>, i64) = on_pool!(self, pool => {
            let rows = sqlx::query_as(
                "SELECT id, at, actor, action, tenant_id, target_type, target_id, before, after, request_id \
                 FROM audit_log WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR action = $2) \
                 ORDER BY id DESC LIMIT $3 OFFSET $4",
            )
            .bind(&tenant)
            .bind(&filter.action)
            .bind(as_i64(filter.limit))
            .bind(as_i64(filter.offset))
            .fetch_all(pool)
            .await?;
            let total: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM audit_log WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR action = $2)",
            )
            .bind(&tenant)
            .bind(&filter.action)
            .fetch_one(pool)
            .await?;
            (rows, total)
        });
        Ok(Page {
            items: rows.into_iter().map(AuditEntry::from).collect(),
            total,
        })
    }
}

impl Store {
    /// Writes the audit row and the call-timeline entry of every injected fault in one
    /// transaction (`entries`: the call, its audit row, the timeline entry's detail).
    pub async fn record_chaos(
        &self,
        entries: &[(crate::ids::CallId, super::NewAudit, serde_json::Value)],
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for (call, audit, detail) in entries {
                insert_audit!(&mut *tx, audit)?;
                sqlx::query("INSERT INTO call_events (call_id, at, kind, detail) VALUES ($1, $2, $3, $4)")
                    .bind(call.as_str())
                    .bind(crate::time::now_ms())
                    .bind("chaos")
                    .bind(detail.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
