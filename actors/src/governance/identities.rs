//! Named admin identities: admin keys with roles, created by an admin, stored as a hash with
//! a visible prefix (the secret is returned once, at creation), revocable (the next request
//! with a revoked key fails: authentication reads the store every time, nothing is cached).
//! Every change is written with its audit row in one transaction.

use serde_json::json;

use super::{AdminRole, GovernanceError, ROOT};
use crate::crypto;
use crate::ids::AdminIdentityId;
use crate::store::{NewAudit, Store, StoreError};
use crate::tenant::AuditMeta;
use crate::time::now_ms;

/// Prefix of every admin identity key.
pub const IDENTITY_KEY_PREFIX: &str = "sva_";
/// Leading characters of a key kept visible (and stored) as its prefix.
pub const IDENTITY_KEY_VISIBLE: usize = 12;
/// Longest identity name.
pub const MAX_NAME_CHARS: usize = 64;

/// A named admin identity (never its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminIdentity {
    /// Identifier (`adm_…`).
    pub id: AdminIdentityId,
    /// Name, unique forever (the audit log names identities by it).
    pub name: String,
    /// Roles held, canonical order, at least one.
    pub roles: Vec<AdminRole>,
    /// Visible prefix of the key.
    pub prefix: String,
    /// The identity that created it.
    pub created_by: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms, when revoked.
    pub revoked_at: Option<i64>,
}

/// An identity to create.
#[derive(Debug, Clone)]
pub struct NewIdentity {
    /// Name: 1–64 of `a-z`, `0-9`, `.`, `_`, `-`, starting with a letter or digit; not `root`.
    pub name: String,
    /// Roles (at least one).
    pub roles: Vec<AdminRole>,
}

/// A created identity and its key, shown this once.
pub struct CreatedIdentity {
    /// The record.
    pub identity: AdminIdentity,
    /// The key (`sva_…`): store it now, it cannot be retrieved again.
    pub secret: String,
}

impl std::fmt::Debug for CreatedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedIdentity")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Checks an identity name (the field named `name`).
pub fn check_name(name: &str) -> Result<(), GovernanceError> {
    let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
    let bytes = name.as_bytes();
    let valid = (1..=MAX_NAME_CHARS).contains(&bytes.len())
        && bytes.iter().all(|b| ok_char(*b))
        && bytes[0].is_ascii_alphanumeric();
    if !valid {
        return Err(GovernanceError::invalid(
            "name",
            "must be 1 to 64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
        ));
    }
    if name == ROOT {
        return Err(GovernanceError::invalid(
            "name",
            "`root` is the bootstrap identity of ADMIN_API_KEY",
        ));
    }
    Ok(())
}

fn audit_json(identity: &AdminIdentity) -> serde_json::Value {
    json!({
        "id": identity.id.as_str(),
        "name": identity.name,
        "roles": identity.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "prefix": identity.prefix,
        "revoked_at": identity.revoked_at,
    })
}

fn audit(
    meta: &AuditMeta,
    action: &'static str,
    identity: &AdminIdentity,
    before: Option<serde_json::Value>,
) -> NewAudit {
    NewAudit {
        actor: meta.actor.clone(),
        action,
        tenant_id: None,
        target_type: "admin_identity",
        target_id: identity.id.to_string(),
        before,
        after: Some(audit_json(identity)),
        request_id: meta.request_id.clone(),
    }
}

/// Creates an identity; its key is in the result only.
pub async fn create(
    store: &Store,
    new: NewIdentity,
    meta: &AuditMeta,
) -> Result<CreatedIdentity, GovernanceError> {
    check_name(&new.name)?;
    let mut roles = new.roles;
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        return Err(GovernanceError::invalid(
            "roles",
            "at least one of admin, approver, auditor is required",
        ));
    }
    let bytes: [u8; 32] = rand::random();
    let secret = format!("{IDENTITY_KEY_PREFIX}{}", crypto::hex(&bytes));
    let identity = AdminIdentity {
        id: AdminIdentityId::generate(),
        name: new.name,
        roles,
        prefix: secret[..IDENTITY_KEY_VISIBLE].to_owned(),
        created_by: meta.actor.clone(),
        created_at: now_ms(),
        revoked_at: None,
    };
    let row = audit(meta, "admin_identity.create", &identity, None);
    store
        .insert_admin_identity(&identity, &crypto::hash_api_key(&secret), &row)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => GovernanceError::Conflict(format!(
                "an admin identity named {} exists (names are never reused)",
                identity.name
            )),
            other => GovernanceError::Store(other),
        })?;
    Ok(CreatedIdentity { identity, secret })
}

/// Every identity, newest first (revoked ones included).
pub async fn list(store: &Store) -> Result<Vec<AdminIdentity>, GovernanceError> {
    Ok(store.list_admin_identities().await?)
}

/// Revokes an identity: the very next request with its key fails.
pub async fn revoke(
    store: &Store,
    id: &AdminIdentityId,
    meta: &AuditMeta,
) -> Result<AdminIdentity, GovernanceError> {
    let before = store
        .get_admin_identity(id)
        .await?
        .ok_or(GovernanceError::NotFound("admin identity"))?;
    if before.revoked_at.is_some() {
        return Err(GovernanceError::Conflict(format!(
            "admin identity {} is already revoked",
            before.name
        )));
    }
    let at = now_ms();
    let after = AdminIdentity {
        revoked_at: Some(at),
        ..before.clone()
    };
    let row = audit(
        meta,
        "admin_identity.revoke",
        &after,
        Some(audit_json(&before)),
    );
    if !store.revoke_admin_identity(id, at, &row).await? {
        return Err(GovernanceError::Conflict(format!(
            "admin identity {} is already revoked",
            before.name
        )));
    }
    Ok(after)
}

/// The live identity whose key is `presented`, if any (hash looked up, then compared in
/// constant time).
pub async fn authenticate(
    store: &Store,
    presented: &str,
) -> Result<Option<AdminIdentity>, GovernanceError> {
    if !presented.starts_with(IDENTITY_KEY_PREFIX) {
        return Ok(None);
    }
    let hash = crypto::hash_api_key(presented);
    let found = store.admin_identity_by_hash(&hash).await?;
    Ok(found.and_then(|(identity, stored)| {
        (crypto::ct_eq(stored.as_bytes(), hash.as_bytes()) && identity.revoked_at.is_none())
            .then_some(identity)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("alice").is_ok());
        assert!(check_name("ops.bot-2").is_ok());
        for bad in ["", "Alice", "-x", "a b", "root", &"a".repeat(65)] {
            let err = check_name(bad).expect_err(bad);
            assert!(
                matches!(&err, GovernanceError::Invalid { field, .. } if field == "name"),
                "{bad}: {err:?}"
            );
        }
    }
}
