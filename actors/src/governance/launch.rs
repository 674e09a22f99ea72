//! Launch approvals: a tenant's launch record (owner, rollback path, the roles whose approval
//! the launch needs) and the approvals admin identities give, each with a comment and the
//! launch's **material state** it approved: the record itself, every phone route of the
//! tenant (number, agent, status, last change) and the newest version of every routed agent.
//! An approval counts only while that state is unchanged, so a material change (a new version
//! on a routed agent, a route change, a changed record) invalidates it, and the launch shows
//! why. Computed when read: no other part of the system has to remember to invalidate
//! anything. Every change is audited; every approval is kept.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{AdminRole, GovernanceError, ROOT};
use crate::ids::TenantId;
use crate::store::{NewAudit, Store};
use crate::tenant::AuditMeta;
use crate::time::now_ms;

/// Longest owner text.
pub const MAX_OWNER_CHARS: usize = 200;
/// Longest rollback path and approval comment.
pub const MAX_TEXT_CHARS: usize = 2_000;

/// A tenant's launch record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRecord {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Who owns the launch (a person or team).
    pub owner: String,
    /// How to roll back (a runbook, the steps).
    pub rollback_path: String,
    /// The roles whose approval the launch needs (`admin`, `approver`).
    pub required_roles: Vec<AdminRole>,
    /// The identity that last set it.
    pub updated_by: String,
    /// Unix ms.
    pub updated_at: i64,
}

/// An approval as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchApproval {
    /// Sequence number.
    pub id: i64,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The approving identity.
    pub identity: String,
    /// The role it approved in.
    pub role: AdminRole,
    /// Its comment.
    pub comment: String,
    /// The material state it approved.
    pub material: Value,
    /// Unix ms.
    pub approved_at: i64,
}

/// An approval and whether it still counts.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalState {
    /// The approval.
    pub approval: LaunchApproval,
    /// Whether the launch is materially what it approved.
    pub valid: bool,
    /// What changed since (empty when valid).
    pub invalidated_by: Vec<String>,
}

/// The launch of a tenant: its record, every approval, and what is still missing.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchStatus {
    /// The record, when set.
    pub record: Option<LaunchRecord>,
    /// Every approval, newest first.
    pub approvals: Vec<ApprovalState>,
    /// Required roles without a valid approval.
    pub missing_roles: Vec<AdminRole>,
    /// A record exists and every required role has a valid approval.
    pub approved: bool,
}

fn text(field: &str, v: &str, max: usize) -> Result<String, GovernanceError> {
    // The length as sent, as the API documents bound it; then the text kept is trimmed.
    let too_long = v.chars().count() > max;
    let v = v.trim();
    if v.is_empty() || too_long || v.chars().any(char::is_control) {
        return Err(GovernanceError::invalid(
            field,
            format!("must be 1 to {max} characters without control characters"),
        ));
    }
    Ok(v.to_owned())
}

/// The launch's material state now: the record, the routes, the routed agents' newest
/// versions.
async fn material(store: &Store, tenant: &TenantId) -> Result<Value, GovernanceError> {
    let record = store.launch_record(tenant).await?;
    let (routes, versions) = store.launch_material(tenant).await?;
    let routes: BTreeMap<String, Value> = routes
        .into_iter()
        .map(|r| {
            (
                r.number.clone(),
                json!({"agent_key": r.agent_key, "status": r.status.as_str(), "updated_at": r.updated_at}),
            )
        })
        .collect();
    let versions: BTreeMap<String, i64> = versions.into_iter().collect();
    Ok(json!({
        "record_updated_at": record.map(|r| r.updated_at),
        "routes": routes,
        "agent_versions": versions,
    }))
}

/// What differs between an approved material state and the current one.
fn changes(approved: &Value, now: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if approved["record_updated_at"] != now["record_updated_at"] {
        out.push(String::from("the launch record changed"));
    }
    let keys = |v: &Value, k: &str| -> BTreeMap<String, Value> {
        v[k].as_object()
            .map(|m| m.iter().map(|(a, b)| (a.clone(), b.clone())).collect())
            .unwrap_or_default()
    };
    let (was, is) = (keys(approved, "routes"), keys(now, "routes"));
    for (number, route) in &is {
        match was.get(number) {
            None => out.push(format!("route {number} was added")),
            Some(old) if old != route => out.push(format!("route {number} changed")),
            Some(_) => {}
        }
    }
    for number in was.keys().filter(|n| !is.contains_key(*n)) {
        out.push(format!("route {number} was removed"));
    }
    let (was, is) = (
        keys(approved, "agent_versions"),
        keys(now, "agent_versions"),
    );
    for (agent, version) in &is {
        if was.get(agent) != Some(version) {
            out.push(format!("agent {agent} has a new version {version}"));
        }
    }
    out
}

/// The roles `identity` holds (`root` holds every role; a revoked or unknown one, none).
async fn roles_of(store: &Store, identity: &str) -> Result<Vec<AdminRole>, GovernanceError> {
    if identity == ROOT {
        return Ok(AdminRole::ALL.to_vec());
    }
    Ok(store
        .list_admin_identities()
        .await?
        .into_iter()
        .find(|i| i.name == identity && i.revoked_at.is_none())
        .map(|i| i.roles)
        .unwrap_or_default())
}

/// Sets the launch record of `tenant` (audited). A changed record invalidates the approvals
/// given before.
pub async fn put_record(
    store: &Store,
    tenant: &TenantId,
    owner: &str,
    rollback_path: &str,
    required_roles: Vec<AdminRole>,
    meta: &AuditMeta,
) -> Result<LaunchRecord, GovernanceError> {
    if store.get_tenant(tenant).await?.is_none() {
        return Err(GovernanceError::NotFound("tenant"));
    }
    let owner = text("owner", owner, MAX_OWNER_CHARS)?;
    let rollback_path = text("rollback_path", rollback_path, MAX_TEXT_CHARS)?;
    let mut roles = required_roles;
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        return Err(GovernanceError::invalid(
            "required_roles",
            "must name at least one of admin, approver",
        ));
    }
    if roles.contains(&AdminRole::Auditor) {
        return Err(GovernanceError::invalid(
            "required_roles",
            "an auditor changes nothing, so it cannot approve a launch",
        ));
    }
    let before = store.launch_record(tenant).await?;
    let record = LaunchRecord {
        tenant_id: tenant.clone(),
        owner,
        rollback_path,
        required_roles: roles,
        updated_by: meta.actor.clone(),
        updated_at: now_ms(),
    };
    let as_json = |r: &LaunchRecord| {
        json!({
            "owner": r.owner,
            "rollback_path": r.rollback_path,
            "required_roles": r.required_roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        })
    };
    let row = NewAudit {
        actor: meta.actor.clone(),
        action: "launch.update",
        tenant_id: Some(tenant.clone()),
        target_type: "launch",
        target_id: tenant.to_string(),
        before: before.as_ref().map(as_json),
        after: Some(as_json(&record)),
        request_id: meta.request_id.clone(),
    };
    store.put_launch_record(&record, &row).await?;
    Ok(record)
}

/// Records `meta`'s identity approving the launch of `tenant` in `role`, with `comment`
/// (audited). The identity must hold the role, and the record must require it.
pub async fn approve(
    store: &Store,
    tenant: &TenantId,
    role: AdminRole,
    comment: &str,
    meta: &AuditMeta,
) -> Result<ApprovalState, GovernanceError> {
    if store.get_tenant(tenant).await?.is_none() {
        return Err(GovernanceError::NotFound("tenant"));
    }
    let comment = text("comment", comment, MAX_TEXT_CHARS)?;
    let record = store.launch_record(tenant).await?.ok_or_else(|| {
        GovernanceError::Conflict(
            "the tenant has no launch record: set its owner, rollback path and required roles first"
                .into(),
        )
    })?;
    if !record.required_roles.contains(&role) {
        return Err(GovernanceError::invalid(
            "role",
            format!(
                "the launch needs approvals from {}",
                AdminRole::describe(&record.required_roles)
            ),
        ));
    }
    if !roles_of(store, &meta.actor).await?.contains(&role) {
        return Err(GovernanceError::Forbidden {
            code: "insufficient_role",
            message: format!(
                "identity {} does not hold the `{}` role it would approve as",
                meta.actor,
                role.as_str()
            ),
        });
    }
    let material = material(store, tenant).await?;
    let mut approval = LaunchApproval {
        id: 0,
        tenant_id: tenant.clone(),
        identity: meta.actor.clone(),
        role,
        comment,
        material,
        approved_at: now_ms(),
    };
    let row = NewAudit {
        actor: meta.actor.clone(),
        action: "launch.approve",
        tenant_id: Some(tenant.clone()),
        target_type: "launch",
        target_id: tenant.to_string(),
        before: None,
        after: Some(json!({
            "role": role.as_str(),
            "comment": approval.comment,
            "material": approval.material,
        })),
        request_id: meta.request_id.clone(),
    };
    approval.id = store.insert_launch_approval(&approval, &row).await?;
    Ok(ApprovalState {
        approval,
        valid: true,
        invalidated_by: Vec::new(),
    })
}

/// The launch of `tenant` as it stands now.
pub async fn status(store: &Store, tenant: &TenantId) -> Result<LaunchStatus, GovernanceError> {
    if store.get_tenant(tenant).await?.is_none() {
        return Err(GovernanceError::NotFound("tenant"));
    }
    let record = store.launch_record(tenant).await?;
    let now = material(store, tenant).await?;
    let approvals: Vec<ApprovalState> = store
        .launch_approvals(tenant)
        .await?
        .into_iter()
        .map(|approval| {
            let invalidated_by = changes(&approval.material, &now);
            ApprovalState {
                valid: invalidated_by.is_empty(),
                invalidated_by,
                approval,
            }
        })
        .collect();
    let missing_roles: Vec<AdminRole> = record
        .as_ref()
        .map(|r| {
            r.required_roles
                .iter()
                .copied()
                .filter(|role| {
                    !approvals
                        .iter()
                        .any(|a| a.valid && a.approval.role == *role)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(LaunchStatus {
        approved: record.is_some() && missing_roles.is_empty(),
        record,
        approvals,
        missing_roles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_what_moved() {
        let approved = json!({
            "record_updated_at": 1,
            "routes": {"+1": {"status": "staged", "agent_key": "a", "updated_at": 1}, "+2": {"status": "live", "agent_key": "a", "updated_at": 1}},
            "agent_versions": {"a": 1},
        });
        assert!(changes(&approved, &approved).is_empty());
        let now = json!({
            "record_updated_at": 2,
            "routes": {"+1": {"status": "live", "agent_key": "a", "updated_at": 2}, "+3": {"status": "staged", "agent_key": "a", "updated_at": 2}},
            "agent_versions": {"a": 2},
        });
        assert_eq!(
            changes(&approved, &now),
            [
                "the launch record changed",
                "route +1 changed",
                "route +3 was added",
                "route +2 was removed",
                "agent a has a new version 2",
            ]
        );
    }
}
