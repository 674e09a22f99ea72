//! A tenant's governance settings: today the two-person rule for agent-version approval.
//! No stored row means the defaults; a change is audited in the same transaction.

use serde_json::json;

use super::GovernanceError;
use crate::ids::TenantId;
use crate::store::{NewAudit, Store};
use crate::tenant::AuditMeta;
use crate::time::now_ms;

/// Governance settings of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TenantGovernance {
    /// An agent version must be approved by an identity other than its author.
    pub two_person_approval: bool,
    /// Unix ms of the last change (`None`: never set, the defaults).
    pub updated_at: Option<i64>,
}

/// The settings of `tenant` (404 when the tenant does not exist).
pub async fn get(store: &Store, tenant: &TenantId) -> Result<TenantGovernance, GovernanceError> {
    if store.get_tenant(tenant).await?.is_none() {
        return Err(GovernanceError::NotFound("tenant"));
    }
    Ok(store.tenant_governance(tenant).await?.unwrap_or_default())
}

/// Replaces the settings of `tenant`, audited.
pub async fn put(
    store: &Store,
    tenant: &TenantId,
    two_person_approval: bool,
    meta: &AuditMeta,
) -> Result<TenantGovernance, GovernanceError> {
    let before = get(store, tenant).await?;
    let after = TenantGovernance {
        two_person_approval,
        updated_at: Some(now_ms()),
    };
    let row = NewAudit {
        actor: meta.actor.clone(),
        action: "tenant_governance.update",
        tenant_id: Some(tenant.clone()),
        target_type: "tenant",
        target_id: tenant.to_string(),
        before: Some(json!({"two_person_approval": before.two_person_approval})),
        after: Some(json!({"two_person_approval": after.two_person_approval})),
        request_id: meta.request_id.clone(),
    };
    store.put_tenant_governance(tenant, &after, &row).await?;
    Ok(after)
}
