//! A tenant's operator queues: list, create, read, replace, delete. Every change writes its
//! audit row in the same transaction; a replace applies only to the version it read (a
//! concurrent change makes it read again), so the audit's "before" is always the row that
//! was replaced. Every request is scoped to one tenant: another tenant's queue is "not
//! found".

use serde_json::json;

use super::{OperatorError, OperatorQueue, QueueSpec};
use crate::ids::{QueueId, TenantId};
use crate::store::{NewAudit, Page, Store, StoreError};
use crate::tenant::AuditMeta;
use crate::time::now_ms;

/// Attempts of a replace that keeps meeting concurrent changes.
const REPLACE_ATTEMPTS: usize = 5;

/// Audit JSON of a queue (its whole content; there are no secrets in it).
fn audit_json(q: &OperatorQueue) -> serde_json::Value {
    json!({
        "id": q.id.as_str(),
        "tenant_id": q.tenant_id.as_str(),
        "name": q.name,
        "numbers": q.numbers,
        "caller_id": q.caller_id,
        "ring_timeout_seconds": q.ring_timeout_seconds,
        "business_hours": q.business_hours.as_ref().map(|h| h.to_spec()),
        "when_closed": q.when_closed.as_str(),
        "when_unanswered": q.when_unanswered.as_str(),
        "voicemail_message": q.voicemail_message,
        "announcement": q.announcement,
        "transfer_mode": q.transfer_mode.as_str(),
        "hold_music_url": q.hold_music_url,
    })
}

fn name_conflict(name: &str) -> impl FnOnce(StoreError) -> OperatorError + '_ {
    move |e| match e {
        StoreError::Conflict(_) => {
            OperatorError::Conflict(format!("an operator queue named `{name}` already exists"))
        }
        other => OperatorError::Store(other),
    }
}

fn apply(queue: &mut OperatorQueue, spec: QueueSpec) {
    queue.name = spec.name;
    queue.numbers = spec.numbers;
    queue.caller_id = spec.caller_id;
    queue.ring_timeout_seconds = spec.ring_timeout_seconds;
    queue.business_hours = spec.business_hours;
    queue.when_closed = spec.when_closed;
    queue.when_unanswered = spec.when_unanswered;
    queue.voicemail_message = spec.voicemail_message;
    queue.announcement = spec.announcement;
    queue.transfer_mode = spec.transfer_mode;
    queue.hold_music_url = spec.hold_music_url;
}

fn checked(spec: &QueueSpec) -> Result<(), OperatorError> {
    spec.validate()
        .map_err(|e| OperatorError::InvalidField(e.field, e.message))
}

/// A tenant's queues.
pub async fn list(
    store: &Store,
    tenant: &TenantId,
    limit: u32,
    offset: u32,
) -> Result<Page<OperatorQueue>, OperatorError> {
    Ok(store.list_queues(tenant, limit, offset).await?)
}

/// A queue of a tenant.
pub async fn get(
    store: &Store,
    tenant: &TenantId,
    id: &QueueId,
) -> Result<OperatorQueue, OperatorError> {
    store
        .get_queue(tenant, id)
        .await?
        .ok_or(OperatorError::NotFound("operator queue"))
}

/// Creates a queue (not found `tenant` when the tenant does not exist).
pub async fn create(
    store: &Store,
    tenant: &TenantId,
    spec: QueueSpec,
    meta: AuditMeta,
) -> Result<OperatorQueue, OperatorError> {
    checked(&spec)?;
    if store.get_tenant(tenant).await?.is_none() {
        return Err(OperatorError::NotFound("tenant"));
    }
    let now = now_ms();
    let mut queue = OperatorQueue {
        id: QueueId::generate(),
        tenant_id: tenant.clone(),
        name: String::new(),
        numbers: Vec::new(),
        caller_id: None,
        ring_timeout_seconds: 0,
        business_hours: None,
        when_closed: spec.when_closed,
        when_unanswered: spec.when_unanswered,
        voicemail_message: None,
        announcement: None,
        transfer_mode: spec.transfer_mode,
        hold_music_url: None,
        created_at: now,
        updated_at: now,
    };
    apply(&mut queue, spec);
    let audit = NewAudit {
        actor: meta.actor,
        action: "operator_queue.create",
        tenant_id: Some(queue.tenant_id.clone()),
        target_type: "operator_queue",
        target_id: queue.id.to_string(),
        before: None,
        after: Some(audit_json(&queue)),
        request_id: meta.request_id,
    };
    store
        .insert_queue(&queue, &audit)
        .await
        .map_err(name_conflict(&queue.name))?;
    Ok(queue)
}

/// Replaces every field of a queue of a tenant.
pub async fn replace(
    store: &Store,
    tenant: &TenantId,
    id: &QueueId,
    spec: QueueSpec,
    meta: AuditMeta,
) -> Result<OperatorQueue, OperatorError> {
    checked(&spec)?;
    for _ in 0..REPLACE_ATTEMPTS {
        let before = get(store, tenant, id).await?;
        let mut after = before.clone();
        apply(&mut after, spec.clone());
        // Strictly later, so a concurrent replace of the same version cannot match again.
        after.updated_at = now_ms().max(before.updated_at + 1);
        let audit = NewAudit {
            actor: meta.actor.clone(),
            action: "operator_queue.update",
            tenant_id: Some(after.tenant_id.clone()),
            target_type: "operator_queue",
            target_id: after.id.to_string(),
            before: Some(audit_json(&before)),
            after: Some(audit_json(&after)),
            request_id: meta.request_id.clone(),
        };
        if store
            .update_queue(&after, before.updated_at, &audit)
            .await
            .map_err(name_conflict(&after.name))?
        {
            return Ok(after);
        }
        // Deleted, or changed since it was read: read it again.
    }
    Err(OperatorError::Conflict(
        "the operator queue is being changed concurrently; retry".into(),
    ))
}

/// Deletes a queue of a tenant (its tasks stay, without a queue).
pub async fn delete(
    store: &Store,
    tenant: &TenantId,
    id: &QueueId,
    meta: AuditMeta,
) -> Result<OperatorQueue, OperatorError> {
    let queue = get(store, tenant, id).await?;
    let audit = NewAudit {
        actor: meta.actor,
        action: "operator_queue.delete",
        tenant_id: Some(queue.tenant_id.clone()),
        target_type: "operator_queue",
        target_id: queue.id.to_string(),
        before: Some(audit_json(&queue)),
        after: None,
        request_id: meta.request_id,
    };
    if !store.delete_queue(tenant, id, &audit).await? {
        return Err(OperatorError::NotFound("operator queue"));
    }
    Ok(queue)
}
