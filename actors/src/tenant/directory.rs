//! [`TenantDirectory`]: what every request reads about tenants — API keys (hash of the
//! secret → tenant, scopes) and Twilio accounts (account SID → tenant, opened auth token) —
//! in shared caches (`dashmap`) that readers fill themselves on a miss, plus the per-tenant
//! rate limiter. Authentication and account resolution never wait in the tenant actor's
//! mailbox.
//!
//! The tenant actor, the only writer of tenants and keys, keeps the caches current: after
//! it commits a revocation or a tenant change it updates or evicts the entries concerned
//! ([`TenantDirectory::forget_key`], [`TenantDirectory::tenant_changed`]), so the change
//! holds from the very next request. A reader that read the store before such a change must
//! not put the stale row back afterwards: every writer bumps an epoch before it evicts, and
//! a reader fills an entry only if the epoch it started from is still current, checked
//! under the entry's lock (which the eviction also takes). Entries expire after a TTL,
//! which bounds how long a change made on another node can go unseen.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use super::{
    AuthContext, AuthError, TenantError, TenantRateLimiter, TwilioAccount, twilio_token_aad,
};
use crate::carrier::CarrierAuth;
use crate::crypto::{self, SecretBox};
use crate::ids::{ApiKeyId, TenantId};
use crate::store::{Scope, Store, Tenant, TenantStatus};
use crate::time::now_ms;

/// How often `last_used_at` is written for a key that is used continuously.
const TOUCH_INTERVAL_MS: i64 = 60_000;
/// How long a request waits for its `last_used_at` write.
const TOUCH_WAIT: Duration = Duration::from_millis(100);
/// Entries of one cache at most (past it the cache starts over: a bound on memory under a
/// flood of forged keys or account SIDs).
const MAX_ENTRIES: usize = 10_000;

/// A cached authentication result (live keys only).
#[derive(Debug, Clone)]
struct CachedKey {
    /// Stored hash, compared in constant time with the presented one.
    key_hash: String,
    key_id: ApiKeyId,
    tenant_id: TenantId,
    tenant_name: String,
    tenant_status: TenantStatus,
    scopes: Vec<Scope>,
    /// When the entry was loaded; it expires after the TTL.
    loaded: Instant,
    /// Last `last_used_at` written for this key (Unix ms).
    last_touch_ms: Option<i64>,
}

/// A cached account lookup (`None`: nobody owns it / the tenant has none).
#[derive(Debug, Clone)]
struct CachedAccount {
    account: Option<TwilioAccount>,
    loaded: Instant,
}

struct Inner {
    store: Store,
    secret_box: SecretBox,
    rate_limiter: Arc<TenantRateLimiter>,
    ttl: Duration,
    /// Hash of a presented secret → what it authenticates as.
    keys: DashMap<String, CachedKey>,
    /// Account SID → its account.
    by_sid: DashMap<String, CachedAccount>,
    /// Tenant → its account.
    by_tenant: DashMap<TenantId, CachedAccount>,
    /// Bumped by every eviction; a fill that started before is dropped.
    epoch: AtomicU64,
}

/// The shared tenant caches (cheap to clone).
#[derive(Clone)]
pub struct TenantDirectory {
    inner: Arc<Inner>,
}

/// Inserts `value` at `key` only if `epoch` is still current (checked under the entry lock).
fn fill<K, V>(map: &DashMap<K, V>, epoch: &AtomicU64, started: u64, key: K, value: V)
where
    K: std::hash::Hash + Eq,
{
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    match map.entry(key) {
        Entry::Occupied(mut o) => {
            if epoch.load(Ordering::Acquire) == started {
                o.insert(value);
            }
        }
        Entry::Vacant(v) => {
            if epoch.load(Ordering::Acquire) == started {
                v.insert(value);
            }
        }
    }
}

impl TenantDirectory {
    /// Empty caches over `store`; entries live `ttl`.
    pub fn new(
        store: Store,
        secret_box: SecretBox,
        rate_limiter: Arc<TenantRateLimiter>,
        ttl: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                secret_box,
                rate_limiter,
                ttl,
                keys: DashMap::new(),
                by_sid: DashMap::new(),
                by_tenant: DashMap::new(),
                epoch: AtomicU64::new(0),
            }),
        }
    }

    fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Resolves a bearer secret to its tenant and scopes, and applies the tenant's rate
    /// limit. A miss reads the store (and caches a live key).
    pub async fn authenticate(&self, secret: &str) -> Result<AuthContext, AuthError> {
        if !secret.starts_with(crypto::API_KEY_PREFIX) || secret.len() > 128 {
            return Err(AuthError::InvalidKey);
        }
        let hash = crypto::hash_api_key(secret);
        let cached = self
            .inner
            .keys
            .get(&hash)
            .filter(|c| c.loaded.elapsed() < self.inner.ttl)
            .map(|c| c.clone());
        let entry = match cached {
            Some(entry) => entry,
            None => {
                let started = self.epoch();
                let Some(found) = self.inner.store.api_key_by_hash(&hash).await? else {
                    return Err(AuthError::InvalidKey);
                };
                if found.key.revoked_at.is_some() {
                    return Err(AuthError::InvalidKey);
                }
                let entry = CachedKey {
                    key_hash: found.key_hash,
                    key_id: found.key.id,
                    tenant_id: found.tenant.id,
                    tenant_name: found.tenant.name,
                    tenant_status: found.tenant.status,
                    scopes: found.key.scopes,
                    loaded: Instant::now(),
                    last_touch_ms: found.key.last_used_at,
                };
                fill(
                    &self.inner.keys,
                    &self.inner.epoch,
                    started,
                    hash.clone(),
                    entry.clone(),
                );
                entry
            }
        };
        if !crypto::ct_eq(entry.key_hash.as_bytes(), hash.as_bytes()) {
            return Err(AuthError::InvalidKey);
        }
        if entry.tenant_status == TenantStatus::Suspended {
            return Err(AuthError::Suspended);
        }
        if let Err(retry_after) = self.inner.rate_limiter.check(&entry.tenant_id) {
            return Err(AuthError::RateLimited { retry_after });
        }
        self.touch(&hash, &entry.key_id).await;
        Ok(AuthContext {
            tenant_id: entry.tenant_id,
            tenant_name: entry.tenant_name,
            key_id: entry.key_id,
            scopes: entry.scopes,
        })
    }

    /// Writes `last_used_at` at most once a minute per key. The write runs in a task that
    /// logs its own failure; the request waits for it at most [`TOUCH_WAIT`] (normally it is
    /// done at once), so under write contention authentication goes on without it.
    async fn touch(&self, hash: &str, key_id: &ApiKeyId) {
        let now = now_ms();
        let due = match self.inner.keys.get_mut(hash) {
            Some(mut e) if e.last_touch_ms.is_none_or(|t| now - t >= TOUCH_INTERVAL_MS) => {
                e.last_touch_ms = Some(now);
                true
            }
            _ => false,
        };
        if !due {
            return;
        }
        let store = self.inner.store.clone();
        let key_id = key_id.clone();
        let write = tokio::spawn(async move {
            if let Err(error) = store.touch_api_key(&key_id, now).await {
                tracing::warn!(key_id = %key_id, error = %error, "could not record api key use");
            }
        });
        let _ = tokio::time::timeout(TOUCH_WAIT, write).await;
    }

    fn open(&self, tenant: &Tenant) -> Result<Option<TwilioAccount>, TenantError> {
        let Some(tw) = &tenant.twilio else {
            return Ok(None);
        };
        let token = self
            .inner
            .secret_box
            .open(&tw.auth_token_sealed, &twilio_token_aad(&tenant.id))?;
        Ok(Some(TwilioAccount {
            tenant_id: tenant.id.clone(),
            tenant_status: tenant.status,
            max_concurrent_calls: tenant.max_concurrent_calls,
            auth: CarrierAuth {
                account_sid: tw.account_sid.clone(),
                auth_token: token,
            },
        }))
    }

    /// The Twilio account with this `AccountSid`, if a tenant owns it.
    pub async fn account_by_sid(
        &self,
        account_sid: &str,
    ) -> Result<Option<TwilioAccount>, TenantError> {
        if let Some(hit) = self
            .inner
            .by_sid
            .get(account_sid)
            .filter(|c| c.loaded.elapsed() < self.inner.ttl)
        {
            return Ok(hit.account.clone());
        }
        let started = self.epoch();
        let account = match self
            .inner
            .store
            .tenant_by_twilio_account(account_sid)
            .await?
        {
            Some(tenant) => self.open(&tenant)?,
            None => None,
        };
        fill(
            &self.inner.by_sid,
            &self.inner.epoch,
            started,
            account_sid.to_owned(),
            CachedAccount {
                account: account.clone(),
                loaded: Instant::now(),
            },
        );
        Ok(account)
    }

    /// The Twilio account of a tenant, if configured (not found when the tenant is not).
    pub async fn account_of_tenant(
        &self,
        tenant_id: &TenantId,
    ) -> Result<Option<TwilioAccount>, TenantError> {
        if let Some(hit) = self
            .inner
            .by_tenant
            .get(tenant_id)
            .filter(|c| c.loaded.elapsed() < self.inner.ttl)
        {
            return Ok(hit.account.clone());
        }
        let started = self.epoch();
        let tenant = self
            .inner
            .store
            .get_tenant(tenant_id)
            .await?
            .ok_or(TenantError::NotFound("tenant"))?;
        let account = self.open(&tenant)?;
        fill(
            &self.inner.by_tenant,
            &self.inner.epoch,
            started,
            tenant_id.clone(),
            CachedAccount {
                account: account.clone(),
                loaded: Instant::now(),
            },
        );
        Ok(account)
    }

    /// A key was revoked (committed): it no longer authenticates, from the next request on.
    pub fn forget_key(&self, key_id: &ApiKeyId) {
        self.bump();
        self.inner.keys.retain(|_, c| &c.key_id != key_id);
    }

    /// A tenant changed (committed): cached keys carry its new name and status, and its
    /// Twilio account is read again.
    pub fn tenant_changed(&self, tenant: &Tenant) {
        self.bump();
        for mut entry in self.inner.keys.iter_mut() {
            if entry.tenant_id == tenant.id {
                entry.tenant_name.clone_from(&tenant.name);
                entry.tenant_status = tenant.status;
            }
        }
        self.inner
            .by_sid
            .retain(|_, c| c.account.as_ref().is_none_or(|a| a.tenant_id != tenant.id));
        if let Some(tw) = &tenant.twilio {
            self.inner.by_sid.remove(&tw.account_sid);
        }
        self.inner.by_tenant.remove(&tenant.id);
    }

    /// Keys cached now (tests, diagnostics).
    pub fn cached_keys(&self) -> usize {
        self.inner.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_that_started_before_an_eviction_is_dropped() {
        let map: DashMap<String, u32> = DashMap::new();
        let epoch = AtomicU64::new(0);
        let started = epoch.load(Ordering::Acquire);
        // The writer evicts (bumps first)…
        epoch.fetch_add(1, Ordering::AcqRel);
        map.remove("key");
        // …a reader that read the store before it cannot put the stale row back.
        fill(&map, &epoch, started, "key".to_owned(), 1);
        assert!(map.get("key").is_none());
        let started = epoch.load(Ordering::Acquire);
        fill(&map, &epoch, started, "key".to_owned(), 2);
        assert_eq!(map.get("key").map(|v| *v), Some(2));
    }
}
