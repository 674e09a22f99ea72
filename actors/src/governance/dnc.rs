//! The per-tenant do-not-call list: numbers added through the API (one, or a bulk import)
//! or by the `opt_out` built-in when a caller asks not to be called again (the call kept as
//! evidence), removed through the API. Every change is written with its audit row in one
//! transaction. The pre-dial policy ([`super::predial`]) refuses any listed number.

use serde_json::json;

use super::GovernanceError;
use crate::domain::E164;
use crate::ids::{CallId, TenantId};
use crate::store::{NewAudit, Page, Store};
use crate::tenant::AuditMeta;
use crate::time::now_ms;

/// Most numbers one import may hold.
pub const MAX_IMPORT: usize = 1_000;
/// Longest reason kept with a number (characters).
pub const MAX_REASON_CHARS: usize = 500;

/// How a number came on the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DncSource {
    /// Added one at a time through the API.
    Api,
    /// Added by a bulk import.
    Import,
    /// The caller asked during a call (`opt_out`).
    OptOut,
}

impl DncSource {
    /// Every source.
    pub const ALL: [DncSource; 3] = [DncSource::Api, DncSource::Import, DncSource::OptOut];

    /// The stored and wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            DncSource::Api => "api",
            DncSource::Import => "import",
            DncSource::OptOut => "opt_out",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A listed number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DncEntry {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The number (E.164).
    pub number: String,
    /// How it was added.
    pub source: DncSource,
    /// Why (free text).
    pub reason: Option<String>,
    /// The call in which the caller opted out.
    pub call_id: Option<CallId>,
    /// Unix ms.
    pub created_at: i64,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Numbers newly listed.
    pub added: usize,
    /// Numbers that were listed already (unchanged).
    pub already_listed: usize,
}

fn check_reason(reason: Option<String>) -> Result<Option<String>, GovernanceError> {
    match reason {
        Some(r) if r.chars().count() > MAX_REASON_CHARS => Err(GovernanceError::invalid(
            "reason",
            format!("must be at most {MAX_REASON_CHARS} characters"),
        )),
        Some(r) if r.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn entry(
    tenant: &TenantId,
    number: &E164,
    source: DncSource,
    reason: Option<String>,
    call_id: Option<CallId>,
) -> DncEntry {
    DncEntry {
        tenant_id: tenant.clone(),
        number: number.as_str().to_owned(),
        source,
        reason,
        call_id,
        created_at: now_ms(),
    }
}

fn audit(meta: &AuditMeta, action: &'static str, tenant: &TenantId, target: &str) -> NewAudit {
    NewAudit {
        actor: meta.actor.clone(),
        action,
        tenant_id: Some(tenant.clone()),
        target_type: "dnc",
        target_id: target.to_owned(),
        before: None,
        after: None,
        request_id: meta.request_id.clone(),
    }
}

/// Adds one number; answers the entry and whether it is new (an already listed number keeps
/// its first entry).
pub async fn add(
    store: &Store,
    tenant: &TenantId,
    number: &E164,
    reason: Option<String>,
    meta: &AuditMeta,
) -> Result<(DncEntry, bool), GovernanceError> {
    let reason = check_reason(reason)?;
    let new = entry(tenant, number, DncSource::Api, reason, None);
    let mut row = audit(meta, "dnc.add", tenant, number.as_str());
    row.after = Some(json!({"number": new.number, "source": "api", "reason": new.reason}));
    let added = store.insert_dnc(std::slice::from_ref(&new), &row).await?;
    let current = store
        .get_dnc(tenant, number.as_str())
        .await?
        .ok_or(GovernanceError::NotFound("do-not-call entry"))?;
    Ok((current, added == 1))
}

/// Adds many numbers at once (already validated, at most [`MAX_IMPORT`]).
pub async fn import(
    store: &Store,
    tenant: &TenantId,
    numbers: &[E164],
    reason: Option<String>,
    meta: &AuditMeta,
) -> Result<Imported, GovernanceError> {
    if numbers.is_empty() || numbers.len() > MAX_IMPORT {
        return Err(GovernanceError::invalid(
            "numbers",
            format!("must hold 1 to {MAX_IMPORT} numbers"),
        ));
    }
    let reason = check_reason(reason)?;
    let mut unique: Vec<&E164> = numbers.iter().collect();
    unique.sort();
    unique.dedup();
    let entries: Vec<DncEntry> = unique
        .iter()
        .map(|n| entry(tenant, n, DncSource::Import, reason.clone(), None))
        .collect();
    let mut row = audit(meta, "dnc.import", tenant, "import");
    row.after = Some(json!({
        "numbers": entries.iter().map(|e| e.number.as_str()).collect::<Vec<_>>(),
        "reason": reason,
    }));
    let added = store.insert_dnc(&entries, &row).await?;
    Ok(Imported {
        added,
        already_listed: entries.len() - added,
    })
}

/// Removes a number (404 when it is not listed).
pub async fn remove(
    store: &Store,
    tenant: &TenantId,
    number: &E164,
    meta: &AuditMeta,
) -> Result<DncEntry, GovernanceError> {
    let before = store
        .get_dnc(tenant, number.as_str())
        .await?
        .ok_or(GovernanceError::NotFound("do-not-call entry"))?;
    let mut row = audit(meta, "dnc.remove", tenant, number.as_str());
    row.before = Some(json!({
        "number": before.number,
        "source": before.source.as_str(),
        "reason": before.reason,
        "call_id": before.call_id.as_ref().map(CallId::as_str),
    }));
    if !store.delete_dnc(tenant, number.as_str(), &row).await? {
        return Err(GovernanceError::NotFound("do-not-call entry"));
    }
    Ok(before)
}

/// A tenant's list, newest first.
pub async fn list(
    store: &Store,
    tenant: &TenantId,
    limit: u32,
    offset: u32,
) -> Result<Page<DncEntry>, GovernanceError> {
    Ok(store.list_dnc(tenant, limit, offset).await?)
}

/// The caller of `call` asked not to be called again: `number` is listed with the call as
/// evidence (audited as the call). Answers whether it was newly listed.
pub async fn opt_out(
    store: &Store,
    tenant: &TenantId,
    number: &E164,
    call: &CallId,
    reason: Option<String>,
) -> Result<bool, GovernanceError> {
    let reason = check_reason(reason)?;
    let new = entry(
        tenant,
        number,
        DncSource::OptOut,
        reason,
        Some(call.clone()),
    );
    let meta = AuditMeta {
        actor: format!("call:{call}"),
        request_id: None,
    };
    let mut row = audit(&meta, "dnc.opt_out", tenant, number.as_str());
    row.after = Some(json!({
        "number": new.number,
        "source": "opt_out",
        "call_id": call.as_str(),
        "reason": new.reason,
    }));
    Ok(store.insert_dnc(std::slice::from_ref(&new), &row).await? == 1)
}
