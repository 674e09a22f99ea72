//! `TenantActor`: tenants and their API keys — every mutation, each with its audit row.
//!
//! Reads every request makes — authenticating an API key, resolving a Twilio account, the
//! per-tenant rate limit — go to the shared [`TenantDirectory`] without this mailbox; the
//! actor keeps the directory current after each change it commits, so a revocation or a
//! suspension takes effect from the very next request, and a slow admin request never
//! delays authentication.
//!
//! Messages: [`TenantMsg`]. Supervised by: [`crate::supervisor::RootSupervisor`] (restarted
//! from its child spec; the directory and the limiter are shared across restarts).

use std::num::NonZeroU32;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;

use crate::carrier::CarrierAuth;
use crate::crypto::{self, SecretBox};
use crate::ids::{ApiKeyId, TenantId};
use crate::meter::{HandleTimer, kind};
use crate::ratelimit::{ClusterRateLimiter, ClusterSize};
use crate::store::{
    ApiKey, AuditEntry, AuditFilter, EventWebhook, NewAudit, Page, RuntimeConfig, Scope,
    SealedSecret, Store, StoreError, Tenant, TenantStatus, TwilioCredentials,
};
use crate::time::now_ms;

mod directory;

pub use directory::TenantDirectory;

/// The per-tenant request limiter: a cluster-wide budget, this node's share enforced.
pub type TenantRateLimiter = ClusterRateLimiter;

/// Builds the per-tenant limiter: `per_minute` requests a minute for the cluster, divided
/// among the live nodes counted in `cluster`.
pub fn tenant_rate_limiter(per_minute: NonZeroU32, cluster: ClusterSize) -> TenantRateLimiter {
    ClusterRateLimiter::new(per_minute, cluster)
}

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
    /// The shared caches this actor keeps current.
    pub directory: TenantDirectory,
}

/// State of the tenant actor.
pub struct TenantState {
    store: Store,
    secret_box: SecretBox,
    directory: TenantDirectory,
}

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
        self.directory.tenant_changed(&after);
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
        if before.revoked_at.is_some() {
            self.directory.forget_key(&key_id);
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
        // Committed: from the next request on the key cannot authenticate (see
        // `TenantDirectory` for why a concurrent reader cannot put it back).
        self.directory.forget_key(&key_id);
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
        self.directory.tenant_changed(&tenant);
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
            directory: args.directory,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        crate::singleton::handled(myself.get_id());
        let _timer = HandleTimer::start(kind::TENANT, message.name());
        match message {
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
