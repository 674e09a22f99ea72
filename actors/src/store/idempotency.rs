//! Idempotency keys with Stripe semantics, per tenant: the first request with a key runs and
//! its response is stored; the same key with the same body replays it; with another body it
//! is refused; while the first is still running a duplicate is refused as a conflict. Keys
//! expire after their TTL; a request that never completed is abandoned after a minute —
//! unless its work may have reached an outside party (a key attached to the call it created,
//! [`Store::idempotency_attach`]): such a key is never released, only completed with the
//! real outcome by whoever owns it.

use super::{IdempotencyBegin, Store, StoreError, on_pool};
use crate::ids::TenantId;
use crate::time::now_ms;

/// An in-progress key older than this is treated as abandoned (its request died).
const ABANDONED_AFTER_MS: i64 = 60_000;

impl Store {
    /// Claims `key` for a request whose body hashes to `request_hash`.
    pub async fn idempotency_begin(
        &self,
        tenant: &TenantId,
        key: &str,
        request_hash: &str,
        ttl_ms: i64,
    ) -> Result<IdempotencyBegin, StoreError> {
        let now = now_ms();
        on_pool!(self, pool => {
            // Expired keys and abandoned claims free the key; a claim attached to a call
            // stays until its owner completes it.
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND \
                 (state = 'completed' OR call_id IS NULL) AND \
                 (expires_at < $3 OR (state = 'in_progress' AND created_at < $4))",
            )
            .bind(tenant.as_str())
            .bind(key)
            .bind(now)
            .bind(now - ABANDONED_AFTER_MS)
            .execute(pool)
            .await?;
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (tenant_id, key, request_hash, state, created_at, expires_at) \
                 VALUES ($1, $2, $3, 'in_progress', $4, $5) ON CONFLICT (tenant_id, key) DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(key)
            .bind(request_hash)
            .bind(now)
            .bind(now + ttl_ms)
            .execute(pool)
            .await?
            .rows_affected()
                == 1;
            if inserted {
                return Ok(IdempotencyBegin::Started);
            }
            let row: Option<(String, String, Option<i64>, Option<String>)> = sqlx::query_as(
                "SELECT request_hash, state, response_status, response_body FROM idempotency_keys \
                 WHERE tenant_id = $1 AND key = $2",
            )
            .bind(tenant.as_str())
            .bind(key)
            .fetch_optional(pool)
            .await?;
            Ok(match row {
                // Deleted between our insert and select: treat as running; the client retries.
                None => IdempotencyBegin::InProgress,
                Some((hash, _, _, _)) if hash != request_hash => IdempotencyBegin::Mismatch,
                Some((_, state, Some(status), Some(body))) if state == "completed" => IdempotencyBegin::Replay {
                    status: u16::try_from(status).unwrap_or(500),
                    body,
                },
                Some(_) => IdempotencyBegin::InProgress,
            })
        })
    }

    /// Stores the response of the request that holds `key`.
    pub async fn idempotency_complete(
        &self,
        tenant: &TenantId,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE idempotency_keys SET state = 'completed', response_status = $3, response_body = $4 \
                 WHERE tenant_id = $1 AND key = $2",
            )
            .bind(tenant.as_str())
            .bind(key)
            .bind(i64::from(status))
            .bind(body)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Attaches the call a key's request created: from here on the outcome may reach the
    /// carrier, and the key is never released or abandoned, only completed.
    pub async fn idempotency_attach(
        &self,
        tenant: &TenantId,
        key: &str,
        call: &crate::ids::CallId,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE idempotency_keys SET call_id = $3 WHERE tenant_id = $1 AND key = $2 AND state = 'in_progress'",
            )
            .bind(tenant.as_str())
            .bind(key)
            .bind(call.as_str())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The key whose request created `call` and is still waiting for its outcome (its
    /// placement's owner died: a reconciler completes it with the real outcome).
    pub async fn idempotency_key_of_call(
        &self,
        call: &crate::ids::CallId,
    ) -> Result<Option<(TenantId, String)>, StoreError> {
        let row: Option<(String, String)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT tenant_id, key FROM idempotency_keys WHERE call_id = $1 AND state = 'in_progress'",
            )
            .bind(call.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(tenant, key)| (TenantId::from_stored(tenant), key)))
    }

    /// Releases `key` without a stored response (the request did not start its work), so a
    /// retry runs again. Only the request's owner may release it, knowing its work never
    /// reached anyone (a key attached to a call is otherwise never released).
    pub async fn idempotency_release(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND state = 'in_progress'")
                .bind(tenant.as_str())
                .bind(key)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CallId;

    async fn store_with_tenant() -> (Store, TenantId) {
        let store = crate::store::fixtures::store().await;
        let tenant = crate::store::fixtures::tenant(&store).await;
        (store, tenant)
    }

    /// Ages every claim past the abandonment limit.
    async fn age_claims(store: &Store) {
        on_pool!(store, pool => {
            sqlx::query("UPDATE idempotency_keys SET created_at = 0")
                .execute(pool)
                .await
                .expect("age");
        });
    }

    #[tokio::test]
    async fn a_claim_attached_to_a_call_is_never_abandoned_or_released() {
        let (store, tenant) = store_with_tenant().await;
        let ttl = 86_400_000;
        // A claim whose request never reached anyone is abandoned after a minute.
        assert_eq!(
            store
                .idempotency_begin(&tenant, "a", "h", ttl)
                .await
                .expect("begin"),
            IdempotencyBegin::Started
        );
        age_claims(&store).await;
        assert_eq!(
            store
                .idempotency_begin(&tenant, "a", "h", ttl)
                .await
                .expect("begin"),
            IdempotencyBegin::Started
        );
        // One attached to the call it created stays in progress, however old…
        assert_eq!(
            store
                .idempotency_begin(&tenant, "b", "h", ttl)
                .await
                .expect("begin"),
            IdempotencyBegin::Started
        );
        store
            .idempotency_attach(&tenant, "b", &CallId::generate())
            .await
            .expect("attach");
        age_claims(&store).await;
        assert_eq!(
            store
                .idempotency_begin(&tenant, "b", "h", ttl)
                .await
                .expect("begin"),
            IdempotencyBegin::InProgress
        );
        // …until its owner completes it with the outcome.
        store
            .idempotency_complete(&tenant, "b", 201, "{}")
            .await
            .expect("complete");
        assert_eq!(
            store
                .idempotency_begin(&tenant, "b", "h", ttl)
                .await
                .expect("begin"),
            IdempotencyBegin::Replay {
                status: 201,
                body: "{}".into()
            }
        );
    }
}
