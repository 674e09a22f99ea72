//! Test fixtures of the store: a migrated in-memory database, a tenant, a call and its
//! voice session, shared by the store's tests and the call runtime's.

use super::{
    CallDirection, CallRecord, NewAudit, RuntimeConfig, Store, Tenant, TenantStatus, VoiceSession,
};
use crate::ids::{CallId, SessionId, TenantId};

/// A migrated in-memory SQLite store.
pub(crate) async fn store() -> Store {
    let store = Store::connect("sqlite::memory:", 1).await.expect("store");
    store.migrate().await.expect("migrate");
    store
}

/// An active tenant that may run 10 calls at once.
pub(crate) async fn tenant(store: &Store) -> TenantId {
    tenant_with_limit(store, 10).await
}

/// An active tenant that may run `max_concurrent_calls` at once.
pub(crate) async fn tenant_with_limit(store: &Store, max_concurrent_calls: i64) -> TenantId {
    let tenant = Tenant {
        id: TenantId::generate(),
        name: "Acme".into(),
        status: TenantStatus::Active,
        max_concurrent_calls,
        webhook_url: None,
        runtime_config: RuntimeConfig::default(),
        twilio: None,
        openai_key: None,
        signing_secret: None,
        event_webhook: None,
        created_at: 0,
        updated_at: 0,
    };
    let audit = NewAudit {
        actor: "test".into(),
        action: "tenant.create",
        tenant_id: Some(tenant.id.clone()),
        target_type: "tenant",
        target_id: tenant.id.to_string(),
        before: None,
        after: None,
        request_id: None,
    };
    store.insert_tenant(&tenant, &audit).await.expect("tenant");
    tenant.id
}

/// An inbound call of `tenant` (not stored).
pub(crate) fn call(tenant: &TenantId) -> CallRecord {
    CallRecord {
        id: CallId::generate(),
        tenant_id: tenant.clone(),
        call_sid: Some("CA1".into()),
        account_sid: None,
        route_id: None,
        direction: CallDirection::Inbound,
        from_number: "+15550001111".into(),
        to_number: "+15550002222".into(),
        status: "in-progress".into(),
        status_sequence: None,
        agent_key: None,
        agent_version_id: None,
        end_reason: None,
        answered_by: None,
        duration_seconds: None,
        metadata: None,
        stream_sid: None,
        stream_status: None,
        after_stream: None,
        greeting: None,
        org_id: None,
        machine_detection: None,
        amd_action: None,
        amd_timeout_seconds: None,
        machine_outcome: None,
        error_code: None,
        error_message: None,
        identity_state: None,
        recording_policy: crate::recording::RecordingPolicy::Off,
        escalated_to: None,
        end_detail: None,
        outcome: None,
        completed_at: None,
        placement: None,
        node_id: None,
        node_started_at: None,
        created_at: 1,
        updated_at: 1,
        started_at: None,
        ended_at: None,
    }
}

/// A live voice session of `call` (not stored).
pub(crate) fn session(call: &CallRecord) -> VoiceSession {
    VoiceSession::live(
        SessionId::generate(),
        call,
        "m".into(),
        "v".into(),
        None,
        10,
    )
}

/// A stored tenant, its admitted call and that call's live voice session.
pub(crate) async fn live_call() -> (Store, TenantId, CallRecord, VoiceSession) {
    let store = store().await;
    let t = tenant(&store).await;
    let c = call(&t);
    store.admit_call(&c, 10, None, 0).await.expect("admit");
    let s = session(&c);
    store.insert_session(&s).await.expect("session");
    (store, t, c, s)
}
