//! `TenantActor`: tenants, their API keys and runtime authentication.
//!
//! It owns the API-key cache (hash of the secret → tenant, scopes) and the per-tenant
//! request limiter, and it performs every tenant mutation (each with its audit row), so that
//! a revocation or a suspension takes effect in the cache the moment it is committed.
//! Cached entries also expire after a short TTL, which bounds how long a change made by
//! another node can go unseen.
//!
//! Messages: [`TenantMsg`]. Supervised by: [`crate::supervisor::RootSupervisor`] (restarted
//! from its child spec; the cache starts empty again, the limiter is shared).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;

use crate::carrier::CarrierAuth;
use crate::crypto::{self, SecretBox};
use crate::ids::{ApiKeyId, TenantId};
use crate::meter::{HandleTimer, kind};
use crate::store::{
    ApiKey, AuditEntry, AuditFilter, EventWebhook, NewAudit, Page, RuntimeConfig, Scope,
    SealedSecret, Store, StoreError, Tenant, TenantStatus, TwilioCredentials,
};
use crate::time::now_ms;

/// The per-tenant request limiter (GCRA, keyed by tenant).
pub type TenantRateLimiter = DefaultKeyedRateLimiter<TenantId>;

/// Builds the per-tenant limiter: `per_minute` requests a minute, bursting up to that many.
pub fn tenant_rate_limiter(per_minute: NonZeroU32) -> TenantRateLimiter {
    RateLimiter::keyed(Quota::per_minute(per_minute))
}

/// How often `last_used_at` is written for a key that is used continuously.
const TOUCH_INTERVAL_MS: i64 = 60_000;

/// Who made a change and under which request (for the audit log).
#[derive(Debug, Clone)]
pub struct AuditMeta {
    /// `admin`, or `tenant:{id}/key:{id}`.
    pub actor: String,
    /// Request id of the change.
    pub request_id: Option<String>,
}

/// A successfully authenticated tenant key.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthContext {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Its display name.
    pub tenant_name: String,
    /// The key used.
    pub key_id: ApiKeyId,
    /// What the key may do.
    pub scopes: Vec<Scope>,
}

impl AuthContext {
    /// Whether the key holds `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Why a key was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown, malformed or revoked key.
    #[error("invalid api key")]
    InvalidKey,
    /// The tenant is suspended.
    #[error("tenant is suspended")]
    Suspended,
    /// The tenant exceeded its request rate.
    #[error("tenant rate limit exceeded")]
    RateLimited {
        /// When the next request will be accepted.
        retry_after: Duration,
    },
    /// The store failed.
    #[error("store unavailable")]
    Store(#[from] StoreError),
}

/// Errors of tenant administration.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// No such tenant (or key, for this tenant).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule was violated (what is named).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The store failed.
    #[error("store error")]
    Store(#[from] StoreError),
    /// A secret could not be sealed or opened.
    #[error("secret storage")]
    Crypto(#[from] crypto::CryptoError),
}

/// A tenant to create.
#[derive(Debug, Clone)]
pub struct NewTenant {
    /// Display name.
    pub name: String,
    /// Concurrency limit.
    pub max_concurrent_calls: i64,
    /// A URL recorded with the tenant (informational; see [`TenantMsg::SetEventWebhook`]).
    pub webhook_url: Option<String>,
}

/// Changes to a tenant; `None` leaves a field as it is, `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct TenantPatch {
    /// New name.
    pub name: Option<String>,
    /// New status.
    pub status: Option<TenantStatus>,
    /// New concurrency limit.
    pub max_concurrent_calls: Option<i64>,
    /// New webhook URL (or cleared).
    pub webhook_url: Option<Option<String>>,
}

/// New runtime configuration (replaces the previous one as a whole).
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfigUpdate {
    /// Model, voice and prompt key.
    pub config: RuntimeConfig,
    /// The informational URL (or cleared).
    pub webhook_url: Option<String>,
}

/// Twilio credentials to store (the token is sealed before it is written).
pub struct TwilioCredentialsInput {
    /// `AC…`.
    pub account_sid: String,
    /// The auth token in clear (never logged).
    pub auth_token: String,
}

impl std::fmt::Debug for TwilioCredentialsInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioCredentialsInput")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .finish()
    }
}

/// A tenant's Twilio account, with its auth token opened (for signature checks and REST).
#[derive(Debug, Clone)]
pub struct TwilioAccount {
    /// The tenant owning the account.
    pub tenant_id: TenantId,
    /// Its status.
    pub tenant_status: TenantStatus,
    /// Its concurrency limit.
    pub max_concurrent_calls: i64,
    /// SID and auth token (redacted in `Debug`).
    pub auth: CarrierAuth,
}

/// A key to create.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// Label.
    pub name: String,
    /// Scopes (non-empty, validated at the edge).
    pub scopes: Vec<Scope>,
}

/// A created key: the record and the secret, which is never available again.
pub struct CreatedApiKey {
    /// The record.
    pub key: ApiKey,
    /// The secret.
    pub secret: String,
}

/// A changed event webhook, with the tenant's new signing secret when this change created
/// it (shown this once).
pub struct EventWebhookUpdate {
    /// The tenant after the change.
    pub tenant: Tenant,
    /// The signing secret created for the webhook, if the tenant had none.
    pub created_secret: Option<String>,
}

/// A rotated signing secret (shown this once).
pub struct RotatedSecret {
    /// The tenant after the rotation (only the new secret's hint).
    pub tenant: Tenant,
    /// The new secret.
    pub secret: String,
}

type Reply<T> = RpcReplyPort<Result<T, TenantError>>;

/// Messages of the tenant actor. RPC variants end with their reply port.
pub enum TenantMsg {
    /// Resolves a bearer secret to its tenant and scopes, and applies the tenant rate limit.
    Authenticate(String, RpcReplyPort<Result<AuthContext, AuthError>>),
    /// Creates a tenant.
    Create(NewTenant, AuditMeta, Reply<Tenant>),
    /// Reads a tenant.
    Get(TenantId, Reply<Tenant>),
    /// Lists tenants (limit, offset).
    List(u32, u32, Reply<Page<Tenant>>),
    /// Changes a tenant.
    Update(TenantId, TenantPatch, AuditMeta, Reply<Tenant>),
    /// Replaces a tenant's runtime configuration.
    SetRuntimeConfig(TenantId, RuntimeConfigUpdate, AuditMeta, Reply<Tenant>),
    /// Stores a tenant's Twilio credentials (sealed).
    SetTwilioCredentials(TenantId, TwilioCredentialsInput, AuditMeta, Reply<Tenant>),
    /// Creates an API key.
    CreateApiKey(TenantId, NewApiKey, AuditMeta, Reply<CreatedApiKey>),
    /// Lists a tenant's API keys.
    ListApiKeys(TenantId, Reply<Vec<ApiKey>>),
    /// Revokes a key; effective on the next request.
    RevokeApiKey(TenantId, ApiKeyId, AuditMeta, Reply<ApiKey>),
    /// Lists the audit log.
    ListAudit(AuditFilter, Reply<Page<AuditEntry>>),
    /// Sets (or, with `None`, clears) the tenant's realtime-model API key (sealed).
    SetOpenAiKey(TenantId, Option<String>, AuditMeta, Reply<Tenant>),
    /// The tenant's own realtime-model API key, opened, if it has one.
    OpenAiKey(TenantId, Reply<Option<String>>),
    /// The Twilio account with this `AccountSid`, if a tenant owns it.
    TwilioByAccount(String, Reply<Option<TwilioAccount>>),
    /// The Twilio account of a tenant, if configured.
    TwilioByTenant(TenantId, Reply<Option<TwilioAccount>>),
    /// Sets (or, with `None`, removes) the tenant's event webhook; creates the signing
    /// secret when the tenant has none.
    SetEventWebhook(
        TenantId,
        Option<EventWebhook>,
        AuditMeta,
        Reply<EventWebhookUpdate>,
    ),
    /// Replaces the tenant's signing secret and returns the new one.
    RotateSigningSecret(TenantId, AuditMeta, Reply<RotatedSecret>),
    /// The tenant's signing secret (HMAC key bytes), created and stored if it has none.
    SigningSecret(TenantId, Reply<Vec<u8>>),
}

impl TenantMsg {
    /// Message name for metrics.
    pub const fn name(&self) -> &'static str {
        match self {
            TenantMsg::Authenticate(..) => "authenticate",
            TenantMsg::Create(..) => "create",
            TenantMsg::Get(..) => "get",
            TenantMsg::List(..) => "list",
            TenantMsg::Update(..) => "update",
            TenantMsg::SetRuntimeConfig(..) => "set_runtime_config",
            TenantMsg::SetTwilioCredentials(..) => "set_twilio_credentials",
            TenantMsg::CreateApiKey(..) => "create_api_key",
            TenantMsg::ListApiKeys(..) => "list_api_keys",
            TenantMsg::RevokeApiKey(..) => "revoke_api_key",
            TenantMsg::ListAudit(..) => "list_audit",
            TenantMsg::SetOpenAiKey(..) => "set_openai_key",
            TenantMsg::OpenAiKey(..) => "openai_key",
            TenantMsg::TwilioByAccount(..) => "twilio_by_account",
            TenantMsg::TwilioByTenant(..) => "twilio_by_tenant",
            TenantMsg::SetEventWebhook(..) => "set_event_webhook",
            TenantMsg::RotateSigningSecret(..) => "rotate_signing_secret",
            TenantMsg::SigningSecret(..) => "signing_secret",
        }
    }
}

/// The tenant actor behaviour.
pub struct TenantActor;

/// Arguments (the child spec) of the tenant actor.
pub struct TenantArgs {
    /// The database.
    pub store: Store,
    /// Sealing of secrets.
    pub secret_box: SecretBox,
    /// Shared per-tenant limiter.
    pub rate_limiter: std::sync::Arc<TenantRateLimiter>,
    /// Cache entry lifetime.
    pub key_cache_ttl: Duration,
}

/// A cached authentication result.
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

/// State of the tenant actor.
pub struct TenantState {
    store: Store,
    secret_box: SecretBox,
    rate_limiter: std::sync::Arc<TenantRateLimiter>,
    ttl: Duration,
    /// Hash of a presented secret → what it authenticates as. Only live keys are cached.
    cache: HashMap<String, CachedKey>,
    /// Account SID → opened account (or `None`: no tenant owns it), with load time.
    accounts: HashMap<String, (Option<TwilioAccount>, Instant)>,
}

/// Most unknown account SIDs remembered (a bound on memory under a flood of forgeries).
const MAX_CACHED_ACCOUNTS: usize = 10_000;

fn reply<T>(port: RpcReplyPort<T>, value: T) {
    if !port.is_closed() {
        let _ = port.send(value);
    }
}

/// Audit JSON of a tenant: everything but secrets (the token appears only as its hint).
pub fn tenant_audit_json(t: &Tenant) -> serde_json::Value {
    json!({
        "id": t.id.as_str(),
        "name": t.name,
        "status": t.status.as_str(),
        "max_concurrent_calls": t.max_concurrent_calls,
        "webhook_url": t.webhook_url,
        "runtime_config": {
            "model": t.runtime_config.model,
            "voice": t.runtime_config.voice,
            "system_prompt_key": t.runtime_config.system_prompt_key,
        },
        "twilio": t.twilio.as_ref().map(|tw| json!({
            "account_sid": tw.account_sid,
            "auth_token_hint": tw.auth_token_hint,
        })),
        "openai_key_hint": t.openai_key.as_ref().map(|k| k.hint.clone()),
        "signing_secret_hint": t.signing_secret.as_ref().map(|k| k.hint.clone()),
        "event_webhook": t.event_webhook.as_ref().map(|w| json!({
            "url": w.url,
            "events": w.events,
        })),
    })
}

fn key_audit_json(k: &ApiKey) -> serde_json::Value {
    json!({
        "id": k.id.as_str(),
        "tenant_id": k.tenant_id.as_str(),
        "name": k.name,
        "prefix": k.prefix,
        "scopes": k.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "revoked_at": k.revoked_at,
    })
}

impl TenantState {
    async fn authenticate(&mut self, secret: &str) -> Result<AuthContext, AuthError> {
        if !secret.starts_with(crypto::API_KEY_PREFIX) || secret.len() > 128 {
            return Err(AuthError::InvalidKey);
        }
        let hash = crypto::hash_api_key(secret);
        let fresh = self
            .cache
            .get(&hash)
            .is_some_and(|c| c.loaded.elapsed() < self.ttl);
        if !fresh {
            self.cache.remove(&hash);
            let Some(found) = self.store.api_key_by_hash(&hash).await? else {
                return Err(AuthError::InvalidKey);
            };
            if found.key.revoked_at.is_some() {
                return Err(AuthError::InvalidKey);
            }
            self.cache.insert(
                hash.clone(),
                CachedKey {
                    key_hash: found.key_hash,
                    key_id: found.key.id,
                    tenant_id: found.tenant.id,
                    tenant_name: found.tenant.name,
                    tenant_status: found.tenant.status,
                    scopes: found.key.scopes,
                    loaded: Instant::now(),
                    last_touch_ms: found.key.last_used_at,
                },
            );
        }
        let Some(entry) = self.cache.get_mut(&hash) else {
            return Err(AuthError::InvalidKey);
        };
        if !crypto::ct_eq(entry.key_hash.as_bytes(), hash.as_bytes()) {
            return Err(AuthError::InvalidKey);
        }
        if entry.tenant_status == TenantStatus::Suspended {
            return Err(AuthError::Suspended);
        }
        if let Err(not_until) = self.rate_limiter.check_key(&entry.tenant_id) {
            return Err(AuthError::RateLimited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            });
        }
        let now = now_ms();
        if entry
            .last_touch_ms
            .is_none_or(|t| now - t >= TOUCH_INTERVAL_MS)
        {
            entry.last_touch_ms = Some(now);
            let key_id = entry.key_id.clone();
            if let Err(error) = self.store.touch_api_key(&key_id, now).await {
                tracing::warn!(key_id = %key_id, error = %error, "could not record api key use");
            }
        }
        let entry = self.cache.get(&hash).ok_or(AuthError::InvalidKey)?;
        Ok(AuthContext {
            tenant_id: entry.tenant_id.clone(),
            tenant_name: entry.tenant_name.clone(),
            key_id: entry.key_id.clone(),
            scopes: entry.scopes.clone(),
        })
    }

    /// Refreshes cached copies of a tenant's name and status after a change, and forgets
    /// its cached Twilio account.
    fn refresh_cached_tenant(&mut self, tenant: &Tenant) {
        for entry in self.cache.values_mut() {
            if entry.tenant_id == tenant.id {
                entry.tenant_name.clone_from(&tenant.name);
                entry.tenant_status = tenant.status;
            }
        }
        self.accounts
            .retain(|_, (acct, _)| acct.as_ref().is_none_or(|a| a.tenant_id != tenant.id));
        if let Some(tw) = &tenant.twilio {
            self.accounts.remove(&tw.account_sid);
        }
    }

    fn open_account(&self, tenant: &Tenant) -> Result<Option<TwilioAccount>, TenantError> {
        let Some(tw) = &tenant.twilio else {
            return Ok(None);
        };
        let token = self
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

    async fn twilio_by_account(
        &mut self,
        account_sid: &str,
    ) -> Result<Option<TwilioAccount>, TenantError> {
        if let Some((acct, at)) = self.accounts.get(account_sid)
            && at.elapsed() < self.ttl
        {
            return Ok(acct.clone());
        }
        let acct = match self.store.tenant_by_twilio_account(account_sid).await? {
            Some(tenant) => self.open_account(&tenant)?,
            None => None,
        };
        if self.accounts.len() >= MAX_CACHED_ACCOUNTS {
            self.accounts.clear();
        }
        self.accounts
            .insert(account_sid.to_owned(), (acct.clone(), Instant::now()));
        Ok(acct)
    }

    async fn twilio_by_tenant(
        &mut self,
        tenant_id: &TenantId,
    ) -> Result<Option<TwilioAccount>, TenantError> {
        let cached = self.accounts.values().find_map(|(acct, at)| {
            acct.as_ref()
                .filter(|a| &a.tenant_id == tenant_id && at.elapsed() < self.ttl)
                .cloned()
        });
        if let Some(acct) = cached {
            return Ok(Some(acct));
        }
        let tenant = self.load(tenant_id).await?;
        let acct = self.open_account(&tenant)?;
        if let Some(a) = &acct {
            self.accounts
                .insert(a.auth.account_sid.clone(), (acct.clone(), Instant::now()));
        }
        Ok(acct)
    }

    async fn load(&self, id: &TenantId) -> Result<Tenant, TenantError> {
        self.store
            .get_tenant(id)
            .await?
            .ok_or(TenantError::NotFound("tenant"))
    }

    async fn create(&mut self, input: NewTenant, meta: AuditMeta) -> Result<Tenant, TenantError> {
        let now = now_ms();
        let tenant = Tenant {
            id: TenantId::generate(),
            name: input.name,
            status: TenantStatus::Active,
            max_concurrent_calls: input.max_concurrent_calls,
            webhook_url: input.webhook_url,
            runtime_config: RuntimeConfig::default(),
            twilio: None,
            openai_key: None,
            signing_secret: None,
            event_webhook: None,
            created_at: now,
            updated_at: now,
        };
        let audit = NewAudit {
            actor: meta.actor,
            action: "tenant.create",
            tenant_id: Some(tenant.id.clone()),
            target_type: "tenant",
            target_id: tenant.id.to_string(),
            before: None,
            after: Some(tenant_audit_json(&tenant)),
            request_id: meta.request_id,
        };
        self.store.insert_tenant(&tenant, &audit).await?;
        Ok(tenant)
    }

    /// Applies `change` to the stored tenant and writes it with an audit row.
    async fn modify(
        &mut self,
        id: &TenantId,
        action: &'static str,
        meta: AuditMeta,
        change: impl FnOnce(&mut Tenant) -> Result<(), TenantError>,
    ) -> Result<Tenant, TenantError> {
        let before = self.load(id).await?;
        let mut after = before.clone();
        change(&mut after)?;
        after.updated_at = now_ms().max(before.updated_at);
        let audit = NewAudit {
            actor: meta.actor,
            action,
            tenant_id: Some(id.clone()),
            target_type: "tenant",
            target_id: id.to_string(),
            before: Some(tenant_audit_json(&before)),
            after: Some(tenant_audit_json(&after)),
            request_id: meta.request_id,
        };
        self.store
            .update_tenant(&after, &audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(what) => TenantError::Conflict(what),
                other => TenantError::Store(other),
            })?;
        self.refresh_cached_tenant(&after);
        Ok(after)
    }

    async fn create_api_key(
        &mut self,
        tenant_id: TenantId,
        input: NewApiKey,
        meta: AuditMeta,
    ) -> Result<CreatedApiKey, TenantError> {
        self.load(&tenant_id).await?;
        let material = crypto::generate_api_key();
        let key = ApiKey {
            id: ApiKeyId::generate(),
            tenant_id: tenant_id.clone(),
            name: input.name,
            prefix: material.prefix.clone(),
            scopes: input.scopes,
            created_at: now_ms(),
            last_used_at: None,
            revoked_at: None,
        };
        let audit = NewAudit {
            actor: meta.actor,
            action: "api_key.create",
            tenant_id: Some(tenant_id),
            target_type: "api_key",
            target_id: key.id.to_string(),
            before: None,
            after: Some(key_audit_json(&key)),
            request_id: meta.request_id,
        };
        self.store
            .insert_api_key(&key, &material.hash, &audit)
            .await?;
        Ok(CreatedApiKey {
            key,
            secret: material.secret,
        })
    }

    async fn revoke_api_key(
        &mut self,
        tenant_id: TenantId,
        key_id: ApiKeyId,
        meta: AuditMeta,
    ) -> Result<ApiKey, TenantError> {
        let before = self
            .store
            .get_api_key(&tenant_id, &key_id)
            .await?
            .ok_or(TenantError::NotFound("api key"))?;
        // Evict first: from here on the key cannot authenticate through this node's cache.
        self.cache.retain(|_, c| c.key_id != key_id);
        if before.revoked_at.is_some() {
            return Ok(before);
        }
        let at = now_ms();
        let mut after = before.clone();
        after.revoked_at = Some(at);
        let audit = NewAudit {
            actor: meta.actor,
            action: "api_key.revoke",
            tenant_id: Some(tenant_id.clone()),
            target_type: "api_key",
            target_id: key_id.to_string(),
            before: Some(key_audit_json(&before)),
            after: Some(key_audit_json(&after)),
            request_id: meta.request_id,
        };
        self.store
            .revoke_api_key(&tenant_id, &key_id, at, &audit)
            .await?;
        Ok(after)
    }
}

impl TenantState {
    async fn set_event_webhook(
        &mut self,
        id: TenantId,
        webhook: Option<EventWebhook>,
        meta: AuditMeta,
    ) -> Result<EventWebhookUpdate, TenantError> {
        let before = self.load(&id).await?;
        // A webhook is signed: give the tenant a secret now (shown once) if it has none.
        let fresh = match (&webhook, &before.signing_secret) {
            (Some(_), None) => {
                let secret = crypto::generate_signing_secret();
                let sealed = SealedSecret {
                    sealed: self.secret_box.seal(&secret, &signing_secret_aad(&id))?,
                    hint: crypto::secret_hint(&secret),
                };
                Some((secret, sealed))
            }
            _ => None,
        };
        let now = now_ms().max(before.updated_at);
        let mut after = before.clone();
        after.event_webhook = webhook.clone();
        after.updated_at = now;
        let after_without_secret = tenant_audit_json(&after);
        let after_with_secret = fresh.as_ref().map(|(_, sealed)| {
            let mut with = after.clone();
            with.signing_secret = Some(sealed.clone());
            tenant_audit_json(&with)
        });
        let action = if webhook.is_some() {
            "tenant.event_webhook.set"
        } else {
            "tenant.event_webhook.delete"
        };
        let before_json = tenant_audit_json(&before);
        let created = self
            .store
            .set_event_webhook(
                &id,
                webhook.as_ref(),
                fresh.as_ref().map(|(_, sealed)| sealed),
                now,
                |created| NewAudit {
                    actor: meta.actor,
                    action,
                    tenant_id: Some(id.clone()),
                    target_type: "tenant",
                    target_id: id.to_string(),
                    before: Some(before_json),
                    after: Some(match after_with_secret {
                        Some(with) if created => with,
                        _ => after_without_secret,
                    }),
                    request_id: meta.request_id,
                },
            )
            .await?
            .ok_or(TenantError::NotFound("tenant"))?;
        let tenant = self.load(&id).await?;
        self.refresh_cached_tenant(&tenant);
        Ok(EventWebhookUpdate {
            tenant,
            created_secret: fresh.filter(|_| created).map(|(secret, _)| secret),
        })
    }

    async fn rotate_signing_secret(
        &mut self,
        id: TenantId,
        meta: AuditMeta,
    ) -> Result<RotatedSecret, TenantError> {
        let before = self.load(&id).await?;
        let secret = crypto::generate_signing_secret();
        let sealed = SealedSecret {
            sealed: self.secret_box.seal(&secret, &signing_secret_aad(&id))?,
            hint: crypto::secret_hint(&secret),
        };
        let mut after = before.clone();
        after.signing_secret = Some(sealed.clone());
        after.updated_at = now_ms().max(before.updated_at);
        let audit = NewAudit {
            actor: meta.actor,
            action: "tenant.signing_secret.rotate",
            tenant_id: Some(id.clone()),
            target_type: "tenant",
            target_id: id.to_string(),
            before: Some(tenant_audit_json(&before)),
            after: Some(tenant_audit_json(&after)),
            request_id: meta.request_id,
        };
        if !self
            .store
            .rotate_signing_secret(&id, &sealed, after.updated_at, &audit)
            .await?
        {
            return Err(TenantError::NotFound("tenant"));
        }
        Ok(RotatedSecret {
            tenant: after,
            secret,
        })
    }
}

impl Actor for TenantActor {
    type Msg = TenantMsg;
    type State = TenantState;
    type Arguments = TenantArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: TenantArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(TenantState {
            store: args.store,
            secret_box: args.secret_box,
            rate_limiter: args.rate_limiter,
            ttl: args.key_cache_ttl,
            cache: HashMap::new(),
            accounts: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _timer = HandleTimer::start(kind::TENANT, message.name());
        match message {
            TenantMsg::Authenticate(secret, port) => {
                let result = state.authenticate(&secret).await;
                reply(port, result);
            }
            TenantMsg::Create(input, meta, port) => {
                let result = state.create(input, meta).await;
                reply(port, result);
            }
            TenantMsg::Get(id, port) => {
                let result = state.load(&id).await;
                reply(port, result);
            }
            TenantMsg::List(limit, offset, port) => {
                let result = state
                    .store
                    .list_tenants(limit, offset)
                    .await
                    .map_err(TenantError::from);
                reply(port, result);
            }
            TenantMsg::Update(id, patch, meta, port) => {
                let result = state
                    .modify(&id, "tenant.update", meta, |t| {
                        if let Some(name) = patch.name {
                            t.name = name;
                        }
                        if let Some(status) = patch.status {
                            t.status = status;
                        }
                        if let Some(max) = patch.max_concurrent_calls {
                            t.max_concurrent_calls = max;
                        }
                        if let Some(url) = patch.webhook_url {
                            t.webhook_url = url;
                        }
                        Ok(())
                    })
                    .await;
                reply(port, result);
            }
            TenantMsg::SetRuntimeConfig(id, update, meta, port) => {
                let result = state
                    .modify(&id, "tenant.runtime_config", meta, |t| {
                        t.runtime_config = update.config;
                        t.webhook_url = update.webhook_url;
                        Ok(())
                    })
                    .await;
                reply(port, result);
            }
            TenantMsg::SetTwilioCredentials(id, input, meta, port) => {
                let sealed = state
                    .secret_box
                    .seal(&input.auth_token, &twilio_token_aad(&id));
                let result = match sealed {
                    Ok(sealed) => {
                        let hint = crypto::secret_hint(&input.auth_token);
                        state
                            .modify(&id, "tenant.twilio_credentials", meta, |t| {
                                t.twilio = Some(TwilioCredentials {
                                    account_sid: input.account_sid,
                                    auth_token_sealed: sealed,
                                    auth_token_hint: hint,
                                });
                                Ok(())
                            })
                            .await
                    }
                    Err(e) => Err(TenantError::Crypto(e)),
                };
                reply(port, result);
            }
            TenantMsg::CreateApiKey(tenant, input, meta, port) => {
                let result = state.create_api_key(tenant, input, meta).await;
                reply(port, result);
            }
            TenantMsg::ListApiKeys(tenant, port) => {
                let result = match state.load(&tenant).await {
                    Ok(_) => state
                        .store
                        .list_api_keys(&tenant)
                        .await
                        .map_err(TenantError::from),
                    Err(e) => Err(e),
                };
                reply(port, result);
            }
            TenantMsg::RevokeApiKey(tenant, key_id, meta, port) => {
                let result = state.revoke_api_key(tenant, key_id, meta).await;
                reply(port, result);
            }
            TenantMsg::SetOpenAiKey(id, key, meta, port) => {
                let sealed = match &key {
                    Some(k) => state
                        .secret_box
                        .seal(k, &openai_key_aad(&id))
                        .map(|sealed| {
                            Some(crate::store::SealedSecret {
                                sealed,
                                hint: crypto::secret_hint(k),
                            })
                        })
                        .map_err(TenantError::Crypto),
                    None => Ok(None),
                };
                let result = match sealed {
                    Ok(sealed) => {
                        state
                            .modify(&id, "tenant.openai_key", meta, |t| {
                                t.openai_key = sealed;
                                Ok(())
                            })
                            .await
                    }
                    Err(e) => Err(e),
                };
                reply(port, result);
            }
            TenantMsg::OpenAiKey(id, port) => {
                let result = match state.load(&id).await {
                    Ok(t) => match t.openai_key {
                        Some(k) => state
                            .secret_box
                            .open(&k.sealed, &openai_key_aad(&id))
                            .map(Some)
                            .map_err(TenantError::Crypto),
                        None => Ok(None),
                    },
                    Err(e) => Err(e),
                };
                reply(port, result);
            }
            TenantMsg::TwilioByAccount(sid, port) => {
                let result = state.twilio_by_account(&sid).await;
                reply(port, result);
            }
            TenantMsg::TwilioByTenant(tenant, port) => {
                let result = state.twilio_by_tenant(&tenant).await;
                reply(port, result);
            }
            TenantMsg::SetEventWebhook(id, webhook, meta, port) => {
                let result = state.set_event_webhook(id, webhook, meta).await;
                reply(port, result);
            }
            TenantMsg::RotateSigningSecret(id, meta, port) => {
                let result = state.rotate_signing_secret(id, meta).await;
                reply(port, result);
            }
            TenantMsg::SigningSecret(id, port) => {
                let result = signing_secret(&state.store, &state.secret_box, &id).await;
                reply(port, result);
            }
            TenantMsg::ListAudit(filter, port) => {
                let result = state
                    .store
                    .list_audit(&filter)
                    .await
                    .map_err(TenantError::from);
                reply(port, result);
            }
        }
        Ok(())
    }
}

/// Associated data binding a sealed realtime-model key to its tenant.
pub fn openai_key_aad(tenant: &TenantId) -> String {
    format!("tenant:{tenant}/openai-api-key")
}

/// Associated data binding a sealed Twilio auth token to its tenant.
pub fn twilio_token_aad(tenant: &TenantId) -> String {
    format!("tenant:{tenant}/twilio-auth-token")
}

/// Associated data binding a sealed signing secret to its tenant.
pub fn signing_secret_aad(tenant: &TenantId) -> String {
    format!("tenant:{tenant}/signing-secret")
}

/// The tenant's signing secret as HMAC key bytes (the secret string's UTF-8 bytes). A tenant
/// without one gets one: it is stored with a conditional write, so when two callers race
/// the first write wins and both use that secret.
pub async fn signing_secret(
    store: &Store,
    secret_box: &SecretBox,
    tenant: &TenantId,
) -> Result<Vec<u8>, TenantError> {
    let aad = signing_secret_aad(tenant);
    let sealed = match store.signing_secret_sealed(tenant).await? {
        None => return Err(TenantError::NotFound("tenant")),
        Some(Some(sealed)) => sealed,
        Some(None) => {
            let secret = crypto::generate_signing_secret();
            let fresh = SealedSecret {
                sealed: secret_box.seal(&secret, &aad)?,
                hint: crypto::secret_hint(&secret),
            };
            if store.init_signing_secret(tenant, &fresh).await? {
                tracing::info!(tenant_id = %tenant, "signing secret created");
                return Ok(secret.into_bytes());
            }
            store
                .signing_secret_sealed(tenant)
                .await?
                .flatten()
                .ok_or(TenantError::NotFound("signing secret"))?
        }
    };
    Ok(secret_box.open(&sealed, &aad)?.into_bytes())
}
