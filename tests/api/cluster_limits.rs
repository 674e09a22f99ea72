//! Concurrency limits under concurrent admission on several nodes (issue 14 §3): three nodes
//! on one database, thirty simultaneous attempts spread over them, a limit of ten live calls
//! admits exactly ten — for a tenant's limit and a route's, inbound and `make-call` — and the
//! twenty others are refused (recorded as refused inbound; `429 concurrency_limit` outbound).

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{CalleeBehaviour, CarrierConfig, CarrierSim};

use crate::helpers::{Backend, Tele, TestApp, backend_tests, sid, spawn_app_with};

backend_tests!(
    a_tenant_limit_holds_across_three_nodes_for_inbound_calls,
    a_route_limit_holds_across_three_nodes_for_inbound_calls,
    a_tenant_limit_holds_across_three_nodes_for_make_call,
);

const NUMBER: &str = "+14155550100";
const ATTEMPTS: usize = 30;
const LIMIT: usize = 10;

/// Three nodes on one database; `adjust` applies to each.
async fn three_nodes(
    backend: Backend,
    adjust: impl Fn(&mut stateset_voice::config::RawSettings),
) -> Vec<TestApp> {
    let first = spawn_app_with(backend, &adjust).await;
    let second = first.another_node(&adjust).await;
    let third = first.another_node(&adjust).await;
    vec![first, second, third]
}

/// Sends `ATTEMPTS` signed inbound calls at once, round robin over `nodes`; returns how many
/// were connected to the agent.
async fn inbound_burst(nodes: &[TestApp], t: &Tele) -> usize {
    let attempts = (0..ATTEMPTS).map(|i| {
        let node = &nodes[i % nodes.len()];
        let from = format!("+1555123{i:04}");
        async move {
            let call_sid = sid("CA");
            let resp = node
                .twilio_post(
                    "/api/v1/incoming-call",
                    &[
                        ("AccountSid", &t.account_sid),
                        ("CallSid", &call_sid),
                        ("From", &from),
                        ("To", NUMBER),
                        ("CallStatus", "ringing"),
                        ("Direction", "inbound"),
                        ("ApiVersion", "2010-04-01"),
                    ],
                    &t.auth_token,
                )
                .await;
            assert_eq!(resp.status(), 200, "incoming-call");
            resp.text().await.expect("twiml").contains("<Stream")
        }
    });
    futures::future::join_all(attempts)
        .await
        .into_iter()
        .filter(|connected| *connected)
        .count()
}

/// The tenant's call log by (outcome, end reason), read on `node`.
async fn outcomes(node: &TestApp, t: &Tele) -> HashMap<(String, String), usize> {
    let page: Value = node
        .tenant(Method::GET, "/api/v1/call-logs?limit=100", &t.key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(page["total"], ATTEMPTS, "{page}");
    let mut by = HashMap::new();
    for call in page["data"].as_array().expect("data") {
        let key = (
            call["outcome"].as_str().unwrap_or("live").to_owned(),
            call["end_reason"].as_str().unwrap_or("").to_owned(),
        );
        *by.entry(key).or_default() += 1;
    }
    by
}

async fn stop_all(nodes: Vec<TestApp>) {
    for node in nodes {
        node.stop().await;
    }
}

async fn a_tenant_limit_holds_across_three_nodes_for_inbound_calls(backend: Backend) {
    let nodes = three_nodes(backend, |_| {}).await;
    let t = nodes[0]
        .telephony_tenant("Acme", NUMBER, json!({"max_concurrent_calls": 100}))
        .await;
    nodes[0]
        .admin(
            Method::PATCH,
            &format!("/api/v1/admin/tenants/{}", t.tenant_id),
        )
        .json(&json!({"max_concurrent_calls": LIMIT}))
        .send()
        .await
        .expect("patch tenant")
        .error_for_status()
        .expect("tenant limit set");
    assert_eq!(inbound_burst(&nodes, &t).await, LIMIT);
    let by = outcomes(&nodes[1], &t).await;
    assert_eq!(
        by.get(&("live".into(), String::new())),
        Some(&LIMIT),
        "{by:?}"
    );
    assert_eq!(
        by.get(&("refused".into(), "tenant_at_limit".into())),
        Some(&(ATTEMPTS - LIMIT)),
        "{by:?}"
    );
    stop_all(nodes).await;
}

async fn a_route_limit_holds_across_three_nodes_for_inbound_calls(backend: Backend) {
    let nodes = three_nodes(backend, |_| {}).await;
    let t = nodes[0]
        .telephony_tenant("Acme", NUMBER, json!({"max_concurrent_calls": LIMIT}))
        .await;
    nodes[0]
        .admin(
            Method::PATCH,
            &format!("/api/v1/admin/tenants/{}", t.tenant_id),
        )
        .json(&json!({"max_concurrent_calls": 100}))
        .send()
        .await
        .expect("patch tenant")
        .error_for_status()
        .expect("tenant limit set");
    assert_eq!(inbound_burst(&nodes, &t).await, LIMIT);
    let by = outcomes(&nodes[2], &t).await;
    assert_eq!(
        by.get(&("live".into(), String::new())),
        Some(&LIMIT),
        "{by:?}"
    );
    assert_eq!(
        by.get(&("refused".into(), "route_at_limit".into())),
        Some(&(ATTEMPTS - LIMIT)),
        "{by:?}"
    );
    stop_all(nodes).await;
}

async fn a_tenant_limit_holds_across_three_nodes_for_make_call(backend: Backend) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let nodes = three_nodes(backend, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base.clone())
    })
    .await;
    let t = nodes[0]
        .telephony_tenant("Acme", NUMBER, json!({"max_concurrent_calls": 100}))
        .await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    nodes[0]
        .admin(
            Method::PATCH,
            &format!("/api/v1/admin/tenants/{}", t.tenant_id),
        )
        .json(&json!({"max_concurrent_calls": LIMIT}))
        .send()
        .await
        .expect("patch tenant")
        .error_for_status()
        .expect("tenant limit set");
    // Every callee rings on: an admitted call stays live for the whole burst.
    let callees: Vec<String> = (0..ATTEMPTS).map(|i| format!("+1555765{i:04}")).collect();
    for callee in &callees {
        sim.set_callee(callee.clone(), CalleeBehaviour::NoAnswer);
    }
    let attempts = callees.iter().enumerate().map(|(i, to)| {
        let node = &nodes[i % nodes.len()];
        let key = &t.key;
        async move {
            node.tenant(Method::POST, "/api/v1/make-call", key)
                .json(&json!({"to": to}))
                .send()
                .await
                .expect("make-call")
        }
    });
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for resp in futures::future::join_all(attempts).await {
        let status = resp.status().as_u16();
        if status == 429 {
            let body: Value = resp.json().await.expect("json");
            assert_eq!(body["error"]["code"], "concurrency_limit", "{body}");
        }
        *statuses.entry(status).or_default() += 1;
    }
    assert_eq!(statuses.get(&201), Some(&LIMIT), "{statuses:?}");
    assert_eq!(
        statuses.get(&429),
        Some(&(ATTEMPTS - LIMIT)),
        "{statuses:?}"
    );
    let placed = sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/Calls.json"))
        .count();
    assert_eq!(
        placed, LIMIT,
        "the carrier was asked for the admitted calls only"
    );
    stop_all(nodes).await;
}
