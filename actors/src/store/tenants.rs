//! Tenants: create, read, list, update (with audit rows in the same transaction).

use super::audit::insert_audit;
use super::{
    EventWebhook, NewAudit, Page, RuntimeConfig, SealedSecret, Store, StoreError, Tenant,
    TenantStatus, TwilioCredentials, as_i64, on_pool,
};
use crate::ids::TenantId;

#[derive(sqlx::FromRow)]
pub(super) struct TenantRow {
    id: String,
    name: String,
    status: String,
    max_concurrent_calls: i64,
    webhook_url: Option<String>,
    runtime_config: Option<String>,
    twilio_account_sid: Option<String>,
    twilio_auth_token_enc: Option<Vec<u8>>,
    twilio_auth_token_hint: Option<String>,
    openai_key_enc: Option<Vec<u8>>,
    openai_key_hint: Option<String>,
    signing_secret_enc: Option<Vec<u8>>,
    signing_secret_hint: Option<String>,
    events_url: Option<String>,
    events_filter: Option<String>,
    created_at: i64,
    updated_at: i64,
}

pub(super) const TENANT_COLUMNS: &str = "id, name, status, max_concurrent_calls, webhook_url, runtime_config, \
     twilio_account_sid, twilio_auth_token_enc, twilio_auth_token_hint, openai_key_enc, openai_key_hint, \
     signing_secret_enc, signing_secret_hint, events_url, events_filter, created_at, updated_at";

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;

    fn try_from(row: TenantRow) -> Result<Self, StoreError> {
        let status =
            TenantStatus::parse(&row.status).ok_or(StoreError::Corrupt("tenants.status"))?;
        let runtime_config = match row.runtime_config {
            Some(json) => serde_json::from_str::<RuntimeConfig>(&json)
                .map_err(|_| StoreError::Corrupt("tenants.runtime_config"))?,
            None => RuntimeConfig::default(),
        };
        let twilio = match (row.twilio_account_sid, row.twilio_auth_token_enc) {
            (Some(account_sid), Some(auth_token_sealed)) => Some(TwilioCredentials {
                account_sid,
                auth_token_sealed,
                auth_token_hint: row.twilio_auth_token_hint.unwrap_or_default(),
            }),
            _ => None,
        };
        Ok(Tenant {
            id: TenantId::from_stored(row.id),
            name: row.name,
            status,
            max_concurrent_calls: row.max_concurrent_calls,
            webhook_url: row.webhook_url,
            runtime_config,
            twilio,
            openai_key: match (row.openai_key_enc, row.openai_key_hint) {
                (Some(sealed), hint) => Some(crate::store::SealedSecret {
                    sealed,
                    hint: hint.unwrap_or_default(),
                }),
                _ => None,
            },
            signing_secret: row.signing_secret_enc.map(|sealed| SealedSecret {
                sealed,
                hint: row.signing_secret_hint.unwrap_or_default(),
            }),
            event_webhook: match row.events_url {
                Some(url) => Some(EventWebhook {
                    url,
                    events: row
                        .events_filter
                        .map(|json| serde_json::from_str::<Vec<String>>(&json))
                        .transpose()
                        .map_err(|_| StoreError::Corrupt("tenants.events_filter"))?,
                }),
                None => None,
            },
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn runtime_config_json(cfg: &RuntimeConfig) -> Option<String> {
    (cfg != &RuntimeConfig::default()).then(|| serde_json::to_string(cfg).unwrap_or_default())
}

impl Store {
    /// Inserts a tenant and its audit row.
    pub async fn insert_tenant(&self, tenant: &Tenant, audit: &NewAudit) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO tenants (id, name, status, max_concurrent_calls, webhook_url, runtime_config, \
                 twilio_account_sid, twilio_auth_token_enc, twilio_auth_token_hint, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(tenant.id.as_str())
            .bind(&tenant.name)
            .bind(tenant.status.as_str())
            .bind(tenant.max_concurrent_calls)
            .bind(&tenant.webhook_url)
            .bind(runtime_config_json(&tenant.runtime_config))
            .bind(tenant.twilio.as_ref().map(|t| t.account_sid.clone()))
            .bind(tenant.twilio.as_ref().map(|t| t.auth_token_sealed.clone()))
            .bind(tenant.twilio.as_ref().map(|t| t.auth_token_hint.clone()))
            .bind(tenant.created_at)
            .bind(tenant.updated_at)
            .execute(&mut *tx)
            .await?;
            insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Writes every field of `tenant` (matched by id) and its audit row, except the signing
    /// secret and the event webhook, which have their own writes below (a stale copy of the
    /// tenant must never erase a secret created meanwhile).
    /// Returns `Conflict` when the Twilio account SID belongs to another tenant.
    pub async fn update_tenant(&self, tenant: &Tenant, audit: &NewAudit) -> Result<(), StoreError> {
        let result: Result<(), StoreError> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE tenants SET name = $2, status = $3, max_concurrent_calls = $4, webhook_url = $5, \
                 runtime_config = $6, twilio_account_sid = $7, twilio_auth_token_enc = $8, \
                 twilio_auth_token_hint = $9, updated_at = $10, openai_key_enc = $11, openai_key_hint = $12 WHERE id = $1",
            )
            .bind(tenant.id.as_str())
            .bind(&tenant.name)
            .bind(tenant.status.as_str())
            .bind(tenant.max_concurrent_calls)
            .bind(&tenant.webhook_url)
            .bind(runtime_config_json(&tenant.runtime_config))
            .bind(tenant.twilio.as_ref().map(|t| t.account_sid.clone()))
            .bind(tenant.twilio.as_ref().map(|t| t.auth_token_sealed.clone()))
            .bind(tenant.twilio.as_ref().map(|t| t.auth_token_hint.clone()))
            .bind(tenant.updated_at)
            .bind(tenant.openai_key.as_ref().map(|k| k.sealed.clone()))
            .bind(tenant.openai_key.as_ref().map(|k| k.hint.clone()))
            .execute(&mut *tx)
            .await?;
            insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(())
        }.await);
        match result {
            Err(e) if e.is_unique_violation() => Err(StoreError::Conflict("twilio_account_sid")),
            other => other,
        }
    }

    /// Reads one tenant.
    pub async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let row: Option<TenantRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1")))
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?
        });
        row.map(Tenant::try_from).transpose()
    }

    /// Finds the tenant owning a Twilio account.
    pub async fn tenant_by_twilio_account(
        &self,
        account_sid: &str,
    ) -> Result<Option<Tenant>, StoreError> {
        let row: Option<TenantRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {TENANT_COLUMNS} FROM tenants WHERE twilio_account_sid = $1"
            )))
            .bind(account_sid)
            .fetch_optional(pool)
            .await?
        });
        row.map(Tenant::try_from).transpose()
    }

    /// Lists tenants, oldest first.
    pub async fn list_tenants(&self, limit: u32, offset: u32) -> Result<Page<Tenant>, StoreError> {
        let (rows, total): (Vec<TenantRow>, i64) = on_pool!(self, pool => {
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {TENANT_COLUMNS} FROM tenants ORDER BY created_at, id LIMIT $1 OFFSET $2"
            )))
            .bind(as_i64(limit))
            .bind(as_i64(offset))
            .fetch_all(pool)
            .await?;
            let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants").fetch_one(pool).await?;
            (rows, total)
        });
        Ok(Page {
            items: rows
                .into_iter()
                .map(Tenant::try_from)
                .collect::<Result<_, _>>()?,
            total,
        })
    }

    /// Sets (or, with `None`, removes) the tenant's event webhook, with its audit row. When
    /// `init_secret` is given it becomes the tenant's signing secret if the tenant has none
    /// yet (conditionally, so a secret created concurrently is kept). `audit` builds the
    /// audit row from whether that secret was stored. Returns `None` when the tenant does
    /// not exist (nothing written), otherwise whether `init_secret` was stored.
    pub async fn set_event_webhook(
        &self,
        tenant: &TenantId,
        webhook: Option<&EventWebhook>,
        init_secret: Option<&SealedSecret>,
        updated_at: i64,
        audit: impl FnOnce(bool) -> NewAudit,
    ) -> Result<Option<bool>, StoreError> {
        let url = webhook.map(|w| w.url.clone());
        let filter = webhook
            .and_then(|w| w.events.as_ref())
            .map(|events| serde_json::to_string(events).unwrap_or_else(|_| "[]".into()));
        let created = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(
                "UPDATE tenants SET events_url = $2, events_filter = $3, updated_at = $4 WHERE id = $1",
            )
            .bind(tenant.as_str())
            .bind(&url)
            .bind(&filter)
            .bind(updated_at)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                return Ok(None);
            }
            let mut created = false;
            if let Some(secret) = init_secret {
                let res = sqlx::query(
                    "UPDATE tenants SET signing_secret_enc = $2, signing_secret_hint = $3 \
                     WHERE id = $1 AND signing_secret_enc IS NULL",
                )
                .bind(tenant.as_str())
                .bind(&secret.sealed)
                .bind(&secret.hint)
                .execute(&mut *tx)
                .await?;
                created = res.rows_affected() == 1;
            }
            insert_audit!(&mut *tx, &audit(created))?;
            tx.commit().await?;
            created
        });
        Ok(Some(created))
    }

    /// Replaces the tenant's signing secret (rotation), with its audit row. Returns false
    /// when the tenant does not exist (nothing written).
    pub async fn rotate_signing_secret(
        &self,
        tenant: &TenantId,
        secret: &SealedSecret,
        updated_at: i64,
        audit: &NewAudit,
    ) -> Result<bool, StoreError> {
        let found = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let res = sqlx::query(
                "UPDATE tenants SET signing_secret_enc = $2, signing_secret_hint = $3, updated_at = $4 WHERE id = $1",
            )
            .bind(tenant.as_str())
            .bind(&secret.sealed)
            .bind(&secret.hint)
            .bind(updated_at)
            .execute(&mut *tx)
            .await?;
            let found = res.rows_affected() == 1;
            if found {
                insert_audit!(&mut *tx, audit)?;
            }
            tx.commit().await?;
            found
        });
        Ok(found)
    }

    /// Stores `secret` as the tenant's signing secret only if it has none (race-safe: the
    /// first writer wins). Returns whether this one was stored.
    pub async fn init_signing_secret(
        &self,
        tenant: &TenantId,
        secret: &SealedSecret,
    ) -> Result<bool, StoreError> {
        let stored = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE tenants SET signing_secret_enc = $2, signing_secret_hint = $3 \
                 WHERE id = $1 AND signing_secret_enc IS NULL",
            )
            .bind(tenant.as_str())
            .bind(&secret.sealed)
            .bind(&secret.hint)
            .execute(pool)
            .await?
            .rows_affected() == 1
        });
        Ok(stored)
    }

    /// The tenant's sealed signing secret: `None` when the tenant does not exist,
    /// `Some(None)` when it has no secret yet.
    pub async fn signing_secret_sealed(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        let row: Option<(Option<Vec<u8>>,)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT signing_secret_enc FROM tenants WHERE id = $1")
                .bind(tenant.as_str())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(sealed,)| sealed))
    }
}
