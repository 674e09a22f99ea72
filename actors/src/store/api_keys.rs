//! API keys: insert (with audit), list, revoke (with audit), lookup by hash, usage stamp.

use super::audit::insert_audit;
use super::tenants::{TENANT_COLUMNS, TenantRow};
use super::{ApiKey, NewAudit, Scope, Store, StoreError, Tenant, on_pool};
use crate::ids::{ApiKeyId, TenantId};

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    id: String,
    tenant_id: String,
    name: String,
    prefix: String,
    scopes: String,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

const KEY_COLUMNS: &str =
    "id, tenant_id, name, prefix, scopes, created_at, last_used_at, revoked_at";

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(row: ApiKeyRow) -> Result<Self, StoreError> {
        Ok(ApiKey {
            id: ApiKeyId::from_stored(row.id),
            tenant_id: TenantId::from_stored(row.tenant_id),
            name: row.name,
            prefix: row.prefix,
            scopes: Scope::split(&row.scopes).ok_or(StoreError::Corrupt("api_keys.scopes"))?,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        })
    }
}

/// A key found by its hash, with its tenant.
#[derive(Debug, Clone)]
pub struct KeyLookup {
    /// The key record.
    pub key: ApiKey,
    /// Stored hash (compared again in constant time by the caller).
    pub key_hash: String,
    /// The owning tenant.
    pub tenant: Tenant,
}

impl Store {
    /// Inserts an API key (hash only) and its audit row.
    pub async fn insert_api_key(
        &self,
        key: &ApiKey,
        key_hash: &str,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, scopes, created_at, last_used_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)",
            )
            .bind(key.id.as_str())
            .bind(key.tenant_id.as_str())
            .bind(&key.name)
            .bind(&key.prefix)
            .bind(key_hash)
            .bind(Scope::join(&key.scopes))
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
            insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Lists a tenant's keys, newest first (revoked ones included, marked).
    pub async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>, StoreError> {
        let rows: Vec<ApiKeyRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id"
            )))
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(ApiKey::try_from).collect()
    }

    /// Reads one key of a tenant.
    pub async fn get_api_key(
        &self,
        tenant: &TenantId,
        id: &ApiKeyId,
    ) -> Result<Option<ApiKey>, StoreError> {
        let row: Option<ApiKeyRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2"
            )))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(ApiKey::try_from).transpose()
    }

    /// Marks a tenant's key revoked at `at` and writes the audit row.
    /// Returns false when the key does not exist for this tenant or was already revoked.
    pub async fn revoke_api_key(
        &self,
        tenant: &TenantId,
        id: &ApiKeyId,
        at: i64,
        audit: &NewAudit,
    ) -> Result<bool, StoreError> {
        let changed = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let res = sqlx::query(
                "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
            )
            .bind(tenant.as_str())
            .bind(id.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await?;
            let changed = res.rows_affected() == 1;
            if changed {
                insert_audit!(&mut *tx, audit)?;
            }
            tx.commit().await?;
            changed
        });
        Ok(changed)
    }

    /// Finds a key by the hash of its secret, with its tenant.
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<KeyLookup>, StoreError> {
        let found: Option<(ApiKeyRow, String)> = on_pool!(self, pool => {
            let key: Option<ApiKeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"
            )))
            .bind(key_hash)
            .fetch_optional(pool)
            .await?;
            key.map(|k| (k, key_hash.to_owned()))
        });
        let Some((row, key_hash)) = found else {
            return Ok(None);
        };
        let key = ApiKey::try_from(row)?;
        let tenant_row: Option<TenantRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1")))
                .bind(key.tenant_id.as_str())
                .fetch_optional(pool)
                .await?
        });
        let tenant = tenant_row
            .map(Tenant::try_from)
            .transpose()?
            .ok_or(StoreError::Corrupt("api_keys.tenant_id"))?;
        Ok(Some(KeyLookup {
            key,
            key_hash,
            tenant,
        }))
    }

    /// Records a successful authentication.
    pub async fn touch_api_key(&self, id: &ApiKeyId, at: i64) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
                .bind(id.as_str())
                .bind(at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
