//! Cluster views (issue 14 §3): the routing diagnostics and the auth-transport alerts are
//! read from the database, so a node lists what every node recorded, with the node's id;
//! both views are bounded by age and count.

use actors::router::{MAX_DIAGNOSTICS, RoutingDiagnostic};
use actors::store::AuthFailure;
use actors::time::now_ms;
use actors::views::RETENTION;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, backend_tests, expect_error, spawn_app};

backend_tests!(
    a_routing_diagnostic_recorded_on_one_node_is_listed_on_another,
    auth_transport_failures_on_one_node_alert_on_another,
    the_views_are_pruned_by_age_and_count,
);

async fn get(node: &TestApp, path: &str) -> Value {
    let resp = node.admin(Method::GET, path).send().await.expect("get");
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.expect("json")
}

async fn a_routing_diagnostic_recorded_on_one_node_is_listed_on_another(backend: Backend) {
    let a = spawn_app(backend).await;
    let b = a.another_node(|_| {}).await;
    assert_ne!(a.node_id(), b.node_id());
    let t = a.telephony_tenant("Acme", "+14155550100", json!({})).await;
    let (on_b, _) = b.inbound(&t, "+15551230000", "+14155550999").await;
    let (on_a, _) = a.inbound(&t, "+15551230001", "+14155550998").await;
    b.flush_views().await;
    a.flush_views().await;
    for node in [&a, &b] {
        let diag = get(node, "/api/v1/admin/diagnostics/routing").await;
        let data = diag["data"].as_array().expect("data");
        let of = |sid: &str| {
            data.iter()
                .find(|d| d["call_sid"] == sid)
                .unwrap_or_else(|| panic!("{sid} in {diag}"))
                .clone()
        };
        let seen_by_b = of(&on_b);
        assert_eq!(seen_by_b["node_id"], b.node_id().as_str());
        assert_eq!(seen_by_b["reason"], "unrouted");
        assert_eq!(seen_by_b["to"], "+14155550999");
        assert_eq!(seen_by_b["account_sid"], t.account_sid.as_str());
        assert_eq!(of(&on_a)["node_id"], a.node_id().as_str());
    }
    b.stop().await;
    a.stop().await;
}

async fn auth_transport_failures_on_one_node_alert_on_another(backend: Backend) {
    let a = spawn_app(backend).await;
    let b = a.another_node(|_| {}).await;
    let t = a.telephony_tenant("Acme", "+14155550100", json!({})).await;
    // Two forged webhooks on B, one on A, claiming the tenant's account.
    for (node, n) in [(&b, 2), (&a, 1)] {
        for _ in 0..n {
            let resp = node
                .twilio_post(
                    "/api/v1/incoming-call",
                    &[
                        ("AccountSid", &t.account_sid),
                        ("CallSid", "CA0000000000000000000000000000forged"),
                        ("From", "+15551230000"),
                        ("To", "+14155550100"),
                    ],
                    "not-the-auth-token",
                )
                .await;
            expect_error(resp, 403, "invalid_signature").await;
        }
    }
    b.flush_views().await;
    a.flush_views().await;
    let mut expected = vec![a.node_id(), b.node_id()];
    expected.sort();
    for node in [&a, &b] {
        let report = get(node, "/api/v1/admin/alerts/auth-transport").await;
        let alert = report["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .find(|x| {
                x["kind"] == "signature_failures"
                    && x["route"] == "/api/v1/incoming-call"
                    && x["account_sid"] == t.account_sid.as_str()
            })
            .unwrap_or_else(|| panic!("the forgeries in {report}"))
            .clone();
        assert_eq!(alert["count"], 3, "{alert}");
        assert_eq!(alert["node_ids"], json!(expected), "{alert}");
    }
    b.stop().await;
    a.stop().await;
}

async fn the_views_are_pruned_by_age_and_count(backend: Backend) {
    let a = spawn_app(backend).await;
    let b = a.another_node(|_| {}).await;
    let now = now_ms();
    let day = RETENTION.routing_max_age_ms;
    let diagnostic = |at: i64, i: usize| RoutingDiagnostic {
        at,
        account_sid: "AC00000000000000000000000000000001".into(),
        call_sid: format!("CA{i:032}"),
        from: "+15551230000".into(),
        to: "+14155550999".into(),
        reason: "unrouted",
    };
    // One entry older than the retention, then more than the count kept, over two nodes.
    b.state
        .actors
        .telephony
        .views()
        .routing(diagnostic(now - day - 1_000, 0));
    for i in 1..=(MAX_DIAGNOSTICS + 5) {
        let node = if i % 2 == 0 { &a } else { &b };
        node.state
            .actors
            .telephony
            .views()
            .routing(diagnostic(now + i as i64, i));
        if i % 100 == 0 {
            a.flush_views().await;
            b.flush_views().await;
        }
    }
    let stale = AuthFailure::StreamToken {
        reason: "forged".into(),
    };
    a.state
        .store
        .insert_auth_failure(
            &b.node_id(),
            now - RETENTION.auth_max_age_ms - 1_000,
            &stale,
        )
        .await
        .expect("insert");
    b.state.actors.telephony.views().auth_failure(stale.clone());
    a.flush_views().await;
    b.flush_views().await;
    let all = a
        .state
        .store
        .recent_routing_diagnostics(1_000)
        .await
        .expect("list");
    assert_eq!(all.len(), MAX_DIAGNOSTICS + 6);
    // Either node's pruner bounds the shared tables.
    a.state.actors.telephony.views().prune().await;
    let kept = a
        .state
        .store
        .recent_routing_diagnostics(1_000)
        .await
        .expect("list");
    assert_eq!(kept.len(), MAX_DIAGNOSTICS);
    assert_eq!(kept[0].call_sid, format!("CA{:032}", MAX_DIAGNOSTICS + 5));
    assert_eq!(kept[MAX_DIAGNOSTICS - 1].call_sid, format!("CA{:032}", 6));
    let failures = a
        .state
        .store
        .auth_failures_since(0, 100)
        .await
        .expect("list");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].node_id, b.node_id());
    // The endpoint lists what is kept, newest first.
    let diag = get(&b, "/api/v1/admin/diagnostics/routing").await;
    assert_eq!(
        diag["data"].as_array().expect("data").len(),
        MAX_DIAGNOSTICS
    );
    assert_eq!(diag["data"][0]["call_sid"], kept[0].call_sid.as_str());
    b.stop().await;
    a.stop().await;
}
