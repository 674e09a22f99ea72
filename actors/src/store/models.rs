//! Domain records read from and written to the store.
//!
//! These are plain types: serialization for the API lives at the HTTP edge.

use crate::ids::{ApiKeyId, TenantId};

/// Whether a tenant may use the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantStatus {
    /// Normal operation.
    Active,
    /// Every runtime request is refused (403) and no call is admitted.
    Suspended,
}

impl TenantStatus {
    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(TenantStatus::Active),
            "suspended" => Some(TenantStatus::Suspended),
            _ => None,
        }
    }
}

/// Per-tenant defaults for the AI runtime.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RuntimeConfig {
    /// Realtime model name (e.g. `gpt-realtime`).
    pub model: Option<String>,
    /// Voice name (e.g. `marin`).
    pub voice: Option<String>,
    /// Key of the system prompt the tenant's agents start from.
    pub system_prompt_key: Option<String>,
}

/// A tenant's Twilio account: SID in clear (it routes webhooks), auth token sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct TwilioCredentials {
    /// `AC…` account SID.
    pub account_sid: String,
    /// The auth token sealed by [`crate::crypto::SecretBox`].
    pub auth_token_sealed: Vec<u8>,
    /// Last characters of the auth token, safe to show.
    pub auth_token_hint: String,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    /// Identifier.
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// Active or suspended.
    pub status: TenantStatus,
    /// Limit of simultaneously live calls.
    pub max_concurrent_calls: i64,
    /// Where tenant event webhooks are delivered.
    pub webhook_url: Option<String>,
    /// AI runtime defaults.
    pub runtime_config: RuntimeConfig,
    /// Twilio account, when configured.
    pub twilio: Option<TwilioCredentials>,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Place and control calls.
    Runtime,
    /// Read call logs, sessions and other records.
    Read,
    /// Operate queues, callback tasks and live calls.
    Operator,
}

impl Scope {
    /// Every scope, in canonical order.
    pub const ALL: [Scope; 3] = [Scope::Runtime, Scope::Read, Scope::Operator];

    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Runtime => "runtime",
            Scope::Read => "read",
            Scope::Operator => "operator",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    /// Joins scopes for storage (`runtime,read`).
    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Splits the stored form.
    pub fn split(stored: &str) -> Option<Vec<Scope>> {
        stored
            .split(',')
            .filter(|s| !s.is_empty())
            .map(Scope::parse)
            .collect()
    }
}

/// An API key record (the secret itself is never stored).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// Identifier.
    pub id: ApiKeyId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Human label.
    pub name: String,
    /// Visible prefix of the secret.
    pub prefix: String,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// Last successful authentication (Unix ms).
    pub last_used_at: Option<i64>,
    /// Revocation time (Unix ms); a revoked key never authenticates again.
    pub revoked_at: Option<i64>,
}

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Sequence number (assigned by the store).
    pub id: i64,
    /// When (Unix ms).
    pub at: i64,
    /// Who: `admin` for the admin key, or `tenant:{id}/key:{id}`.
    pub actor: String,
    /// What, e.g. `tenant.create`, `api_key.revoke`.
    pub action: String,
    /// Tenant concerned, if any.
    pub tenant_id: Option<TenantId>,
    /// Kind of object changed (`tenant`, `api_key`, …).
    pub target_type: String,
    /// Its id.
    pub target_id: String,
    /// JSON of the object before the change (never containing secrets).
    pub before: Option<serde_json::Value>,
    /// JSON of the object after the change (never containing secrets).
    pub after: Option<serde_json::Value>,
    /// Request id of the change.
    pub request_id: Option<String>,
}

/// An audit row to write with a mutation.
#[derive(Debug, Clone)]
pub struct NewAudit {
    /// Who.
    pub actor: String,
    /// What.
    pub action: &'static str,
    /// Tenant concerned.
    pub tenant_id: Option<TenantId>,
    /// Kind of object.
    pub target_type: &'static str,
    /// Its id.
    pub target_id: String,
    /// Before (no secrets).
    pub before: Option<serde_json::Value>,
    /// After (no secrets).
    pub after: Option<serde_json::Value>,
    /// Request id.
    pub request_id: Option<String>,
}

/// Filter of the audit-log listing.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only rows about this tenant.
    pub tenant_id: Option<TenantId>,
    /// Only this action.
    pub action: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
}
