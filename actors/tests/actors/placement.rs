//! Outbound placement owns its outcome (issue 9, bug 1), against a scripted carrier: a
//! timed-out request is "outcome unknown" and is reconciled — a status callback or a carrier
//! lookup finds the real call, or, after the grace period, the call completes failed
//! (`carrier_not_found`) — and the idempotency record always ends up holding the result.

use std::sync::Arc;
use std::time::Duration;

use actors::carrier::CarrierCall;
use actors::ending::{EndReason, Outcome};
use actors::ids::{CallId, TenantId};
use actors::store::{IdempotencyBegin, Placement, StatusUpdate};
use actors::telephony::outbound::{
    self, IdempotencySlot, OutboundRequest, PlacementResult, StoredReply, Waited,
};
use actors::telephony::{CallbackTarget, PlacementSettings, status};
use actors::time::now_ms;
use sqlx::Connection as _;

use crate::support::{NUMBER, Tree, start, telephony_tenant};

const CALLEE: &str = "+15557654321";
const WAIT: Duration = Duration::from_secs(10);

fn request(tenant: &TenantId) -> OutboundRequest {
    OutboundRequest {
        tenant_id: tenant.clone(),
        to: CALLEE.into(),
        from: None,
        agent_key: None,
        agent_version_id: None,
        greeting: None,
        org_id: None,
        metadata: None,
        machine_detection: None,
        time_zone: None,
        draining: false,
    }
}

/// Claims `key` and returns its slot (rendering 201 with the SID, or 502 with the error).
async fn slot(tree: &Tree, tenant: &TenantId, key: &str) -> IdempotencySlot {
    let begun = tree
        .store
        .idempotency_begin(tenant, key, "hash", 60_000)
        .await
        .expect("claim");
    assert_eq!(begun, IdempotencyBegin::Started);
    IdempotencySlot {
        tenant: tenant.clone(),
        key: key.into(),
        render: Arc::new(|r: &PlacementResult| match r {
            Ok(call) => StoredReply {
                status: 201,
                body: call.call_sid.clone().unwrap_or_default(),
            },
            Err(e) => StoredReply {
                status: 502,
                body: e.to_string(),
            },
        }),
    }
}

async fn replay(tree: &Tree, tenant: &TenantId, key: &str) -> IdempotencyBegin {
    tree.store
        .idempotency_begin(tenant, key, "hash", 60_000)
        .await
        .expect("replay")
}

async fn settled(rx: &mut tokio::sync::broadcast::Receiver<CallId>, call: &CallId) {
    tokio::time::timeout(WAIT, async {
        while rx.recv().await.expect("placement feed") != *call {}
    })
    .await
    .expect("the placement settles");
}

/// Waits on a placement whose outcome the carrier leaves unknown: the handle answers with
/// the recorded call, and the placement goes on.
async fn pending_call(placement: outbound::PlacementHandle) -> CallId {
    match placement.wait(Duration::from_secs(5)).await {
        Waited::Pending(call) => {
            assert_eq!(call.placement, Some(Placement::Pending));
            call.id.clone()
        }
        Waited::Done(r) => panic!("the placement should wait for its outcome: {r:?}"),
    }
}

async fn completed_events(tree: &Tree, call: &CallId) -> usize {
    let mut conn = sqlx::SqliteConnection::connect(&tree.database_url)
        .await
        .expect("connection");
    let payloads: Vec<String> = sqlx::query_scalar(
        "SELECT payload FROM webhook_events WHERE event = 'voice.call.completed'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("events");
    payloads
        .iter()
        .filter(|p| p.contains(call.as_str()))
        .count()
}

#[tokio::test]
async fn a_placement_the_carrier_never_confirms_completes_failed_once() {
    let tree = start(PlacementSettings {
        lookup_interval: Duration::from_millis(20),
        lookup_grace: Duration::from_millis(300),
    })
    .await;
    let (tenant, _) = telephony_tenant(&tree).await;
    let telephony = &tree.actors.telephony;
    let mut feed = telephony.subscribe_placements();
    let slot = slot(&tree, &tenant, "k-1").await;
    // The carrier times out and never shows the call.
    let placement = outbound::start(telephony, request(&tenant), Some(slot));
    let call = pending_call(placement).await;
    // Outcome unknown: not failed, the key still in progress (never released).
    let open = tree
        .store
        .get_call_by_id(&call)
        .await
        .expect("read")
        .expect("call");
    assert_ne!(open.status, "failed");
    assert_eq!(
        replay(&tree, &tenant, "k-1").await,
        IdempotencyBegin::InProgress
    );
    settled(&mut feed, &call).await;
    assert_eq!(tree.carrier.placed(), 1);
    assert!(
        tree.carrier.looked_up() >= 2,
        "looked up until the grace ran out"
    );
    let failed = tree
        .store
        .get_call_by_id(&call)
        .await
        .expect("read")
        .expect("call");
    assert_eq!(failed.placement, Some(Placement::NotFound));
    assert_eq!(failed.status, "failed");
    assert_eq!(failed.outcome, Some(Outcome::Failed));
    assert_eq!(
        failed.end_reason.as_deref(),
        Some(EndReason::CarrierNotFound.as_str())
    );
    assert!(failed.call_sid.is_none());
    assert_eq!(completed_events(&tree, &call).await, 1);
    match replay(&tree, &tenant, "k-1").await {
        IdempotencyBegin::Replay { status, body } => {
            assert_eq!(status, 502);
            assert!(body.contains("no record"), "{body}");
        }
        other => panic!("the key holds the outcome: {other:?}"),
    }
}

#[tokio::test]
async fn a_placement_that_timed_out_takes_the_call_a_lookup_finds() {
    let tree = start(PlacementSettings {
        lookup_interval: Duration::from_millis(20),
        lookup_grace: Duration::from_secs(30),
    })
    .await;
    let (tenant, _) = telephony_tenant(&tree).await;
    let telephony = &tree.actors.telephony;
    // Another call of ours already has the SID `CAtaken`: a lookup must not give it twice.
    let (other, _) = {
        let mut feed = telephony.subscribe_placements();
        tree.carrier.on_place(Ok(actors::carrier::PlacedCall {
            call_sid: "CAtaken".into(),
            status: "queued".into(),
        }));
        let placed = outbound::start(telephony, request(&tenant), None)
            .outcome()
            .await
            .expect("placed");
        settled(&mut feed, &placed.id).await;
        (placed.id, ())
    };
    let mut feed = telephony.subscribe_placements();
    let found = |sid: &str, created_at: i64| CarrierCall {
        call_sid: sid.into(),
        status: "ringing".into(),
        to: CALLEE.into(),
        from: NUMBER.into(),
        created_at: Some(created_at),
        duration_secs: None,
    };
    let now = now_ms();
    tree.carrier.on_place(Err(crate::support::timeout()));
    tree.carrier.on_lookup(Vec::new());
    tree.carrier.on_lookup(vec![
        found("CAold", now - 60_000),
        found("CAtaken", now),
        found("CAreal", now + 1_000),
    ]);
    let slot = slot(&tree, &tenant, "k-2").await;
    let placement = outbound::start(telephony, request(&tenant), Some(slot));
    let call = pending_call(placement).await;
    settled(&mut feed, &call).await;
    let placed = tree
        .store
        .get_call_by_id(&call)
        .await
        .expect("read")
        .expect("call");
    assert_eq!(placed.call_sid.as_deref(), Some("CAreal"));
    assert_eq!(placed.placement, Some(Placement::Placed));
    assert_eq!(placed.status, "ringing");
    assert!(placed.end_reason.is_none());
    assert!(placed.completed_at.is_none(), "the call goes on");
    let other = tree
        .store
        .get_call_by_id(&other)
        .await
        .expect("read")
        .expect("call");
    assert_eq!(other.call_sid.as_deref(), Some("CAtaken"));
    assert_eq!(
        replay(&tree, &tenant, "k-2").await,
        IdempotencyBegin::Replay {
            status: 201,
            body: "CAreal".into()
        }
    );
}

#[tokio::test]
async fn a_status_callback_settles_a_placement_at_once() {
    // Lookups find nothing and come rarely: only the callback can settle the placement.
    let tree = start(PlacementSettings {
        lookup_interval: Duration::from_secs(60),
        lookup_grace: Duration::from_secs(120),
    })
    .await;
    let (tenant, _) = telephony_tenant(&tree).await;
    let telephony = &tree.actors.telephony;
    let mut feed = telephony.subscribe_placements();
    let placement = outbound::start(telephony, request(&tenant), None);
    let call = pending_call(placement).await;
    assert_eq!(telephony.placements_waiting(), 1);
    // The carrier's callback names our call id (its URL carries it).
    let fresh = status::call_status(
        telephony,
        CallbackTarget {
            tenant_id: tenant.clone(),
            call_id: Some(call.clone()),
            call_sid: "CAcallback".into(),
        },
        StatusUpdate {
            call_id: None,
            account_sid: crate::support::ACCOUNT_SID.into(),
            call_sid: "CAcallback".into(),
            sequence_number: 0,
            status: "initiated".into(),
            at: now_ms(),
            duration_seconds: None,
            answered_by: None,
            params: serde_json::json!({}),
        },
    )
    .await
    .expect("callback");
    assert!(fresh);
    settled(&mut feed, &call).await;
    let placed = tree
        .store
        .get_call_by_id(&call)
        .await
        .expect("read")
        .expect("call");
    assert_eq!(placed.call_sid.as_deref(), Some("CAcallback"));
    assert_eq!(placed.placement, Some(Placement::Placed));
    assert_eq!(telephony.placements_waiting(), 0);
}
