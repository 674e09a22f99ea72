//! Nodes and reconciliation, in process (issue 12, item 1): a node whose heartbeat went
//! stale has its live calls reconciled by another node on the same database — the lost
//! sessions failed `node_lost`, the callers still on the line handed to the route's fallback
//! through the carrier, one `voice.call.completed` each, and the tenant's concurrency count
//! back to zero. (`crash.rs` does the same with the real binary and `kill -9`.)

use std::time::Duration;

use actors::active::ActiveEvent;
use serde_json::json;
use stateset_voice::sim::carrier::{
    CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle, InboundCall, StreamCloser,
};
use tokio::sync::broadcast;

use crate::helpers::{Backend, Tele, TestApp, backend_tests, spawn_app_with};

backend_tests!(
    a_stale_nodes_live_calls_are_reconciled_by_another_node,
    one_reconciler_holds_the_lease_and_a_clean_stop_forgets_the_node,
);

const WAIT: Duration = Duration::from_secs(30);
const NUMBER: &str = "+14155550100";

fn call_in(app: &TestApp, sim: &CarrierSimHandle, t: &Tele, from: &str) -> String {
    sim.place_inbound_call(InboundCall {
        account_sid: t.account_sid.clone(),
        from: from.into(),
        to: NUMBER.into(),
        voice_url: app.url("/api/v1/incoming-call"),
        status_callback: Some(app.url("/api/v1/call-status")),
        status_callback_events: vec![],
        script: CallerScript::default(),
    })
    .expect("place call")
}

async fn started(live: &mut broadcast::Receiver<ActiveEvent>, call_sid: &str) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            match live.recv().await {
                Ok(ActiveEvent::Started(c)) if c.call_sid == call_sid => {
                    return c.call_id.as_str().to_owned();
                }
                Ok(_) => continue,
                Err(e) => panic!("live-call feed: {e}"),
            }
        }
    })
    .await
    .expect("the call goes live")
}

async fn a_stale_nodes_live_calls_are_reconciled_by_another_node(backend: Backend) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    // Node A beats once, at start: to anyone else it goes stale and stays so.
    let a = spawn_app_with(backend, {
        let base = base.clone();
        move |raw| {
            raw.set("TWILIO_API_BASE_URL", base);
            raw.set("NODE_ID", "node-a");
            raw.set("NODE_HEARTBEAT_MS", "3600000");
            raw.set("NODE_STALE_AFTER_MS", "7200000");
        }
    })
    .await;
    let t = a.telephony_tenant("Acme", NUMBER, json!({})).await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    let mut live = a.state.actors.active.subscribe();
    let mut calls = Vec::new();
    for from in ["+15550000001", "+15550000002"] {
        let sid = call_in(&a, &sim, &t, from);
        let id = started(&mut live, &sid).await;
        calls.push((sid, id));
    }
    let tenant = actors::ids::TenantId::parse(&t.tenant_id).expect("tenant id");
    assert_eq!(
        a.state
            .store
            .count_live_calls(&tenant, None, 0)
            .await
            .expect("count"),
        2
    );

    // Node B sees A's heartbeat stale and, holding the lease, reconciles A's calls.
    let b = a
        .another_node(move |raw| {
            raw.set("TWILIO_API_BASE_URL", base);
            raw.set("NODE_ID", "node-b");
            raw.set("NODE_HEARTBEAT_MS", "50");
            raw.set("NODE_STALE_AFTER_MS", "200");
        })
        .await;
    let mut reports = b.state.nodes.reports();
    tokio::time::timeout(WAIT, reports.wait_for(|r| r.completed >= 2))
        .await
        .expect("reconciled in time")
        .expect("reconciler running");

    for (sid, id) in &calls {
        // The caller, still on the line, was sent to the route's fallback through the
        // carrier; the call then ended and its final status reached a live node.
        let ended = tokio::time::timeout(WAIT, sim.wait_ended(sid))
            .await
            .expect("the call ends");
        assert_eq!(ended.stream_closed_by(), Some(StreamCloser::Redirect));
        assert!(
            ended.said.iter().any(|s| s.contains("Connecting you")),
            "{:?}",
            ended.said
        );
        let events = a.completed_events(id).await;
        assert_eq!(events.len(), 1, "one voice.call.completed: {events:?}");
        assert_eq!(events[0]["outcome"], "fallback", "{}", events[0]);
        assert_eq!(events[0]["end_reason"], "node_lost", "{}", events[0]);
        let log = a.call_log(&t.key, id).await;
        assert_eq!(log["outcome"], "fallback", "{log}");
        assert_eq!(log["end_reason"], "node_lost", "{log}");
        assert!(
            log["events"]
                .as_array()
                .expect("events")
                .iter()
                .any(|e| e["kind"] == "node" && e["detail"]["lost_node"] == "node-a"),
            "{log}"
        );
        let session = a.voice_session_of(&t.key, sid).await;
        assert_eq!(session["status"], "failed", "{session}");
        assert_eq!(session["end_reason"], "node_lost", "{session}");
    }
    // Nothing counts against the tenant's limit any more, and the lost node is forgotten.
    assert_eq!(
        b.state
            .store
            .count_live_calls(&tenant, None, 0)
            .await
            .expect("count"),
        0
    );
    let stale = b
        .state
        .store
        .stale_nodes("node-b", i64::MAX)
        .await
        .expect("nodes");
    assert!(stale.iter().all(|n| n.id != "node-a"), "{stale:?}");
    b.stop().await;
    a.stop().await;
}

async fn one_reconciler_holds_the_lease_and_a_clean_stop_forgets_the_node(backend: Backend) {
    let a = spawn_app_with(backend, |raw| {
        raw.set("NODE_ID", "node-a");
        raw.set("NODE_HEARTBEAT_MS", "50");
        raw.set("NODE_STALE_AFTER_MS", "5000");
    })
    .await;
    let mut reports = a.state.nodes.reports();
    tokio::time::timeout(WAIT, reports.wait_for(|r| r.own_done && r.ticks >= 2))
        .await
        .expect("ticks")
        .expect("reconciler running");
    let b = a
        .another_node(|raw| {
            raw.set("NODE_ID", "node-b");
            raw.set("NODE_HEARTBEAT_MS", "50");
            raw.set("NODE_STALE_AFTER_MS", "5000");
        })
        .await;
    let mut b_reports = b.state.nodes.reports();
    tokio::time::timeout(WAIT, b_reports.wait_for(|r| r.ticks >= 2))
        .await
        .expect("ticks")
        .expect("reconciler running");
    // A holds the lease (it renews it every tick): B cannot take it.
    let store = b.state.store.clone();
    let now = actors::time::now_ms();
    assert!(
        !store
            .try_lease(actors::nodes::RECONCILER_LEASE, "node-b", now, 5000)
            .await
            .expect("lease")
    );
    // Both are recorded; a clean stop with no open call forgets the node and hands the
    // lease back.
    assert!(
        store
            .stale_nodes("nobody", i64::MAX)
            .await
            .expect("nodes")
            .iter()
            .any(|n| n.id == "node-a")
    );
    a.stop().await;
    assert!(
        store
            .stale_nodes("nobody", i64::MAX)
            .await
            .expect("nodes")
            .iter()
            .all(|n| n.id != "node-a")
    );
    assert!(
        store
            .try_lease(
                actors::nodes::RECONCILER_LEASE,
                "node-b",
                actors::time::now_ms(),
                5000
            )
            .await
            .expect("lease")
    );
    b.stop().await;
}
