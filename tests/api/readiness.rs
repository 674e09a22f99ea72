//! The readiness review and gated routes (issue 11, items 3 and 5): a tenant's review lists
//! every failing gate with its reason and owner, then passes once each is fixed (evaluated
//! calls driven through the carrier and realtime simulators by a test caller on the staged
//! route); the route goes `staged → live` only then; an override needs the `admin` role and
//! a reason and is audited with the gates that failed; an auditor cannot override; another
//! tenant's review sees none of this tenant's evidence.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle, InboundCall,
};
use stateset_voice::sim::realtime::{RealtimeScript, RealtimeSimConfig, ScriptTurn};
use tokio::net::TcpListener;
use warp::Filter;

use crate::helpers::{
    Backend, REALTIME_KEY, Tele, TestApp, backend_tests, expect_error, spawn_app_with_realtime,
};

backend_tests!(
    readiness_lists_failing_gates_then_passes_and_only_then_the_route_goes_live,
    an_override_needs_an_admin_and_a_reason_and_is_audited,
    every_node_reviews_the_signals_any_node_saw,
);

const WAIT: Duration = Duration::from_secs(60);
const NUMBER: &str = "+14155550180";
const CALLER: &str = "+15557650080";
const ASK: &str = "Is the shop open today?";
const GATES: [(&str, &str); 9] = [
    ("carrier_credentials", "engineering"),
    ("signed_webhook", "engineering"),
    ("route_fallbacks", "operations"),
    ("agent_versions", "business"),
    ("evaluations", "business"),
    ("event_webhook", "engineering"),
    ("telemetry", "operations"),
    ("launch_record", "business"),
    ("launch_approvals", "business"),
];

async fn setup(backend: Backend) -> (TestApp, CarrierSimHandle, Tele) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let realtime = RealtimeSimConfig {
        ms_per_char: 20,
        ..RealtimeSimConfig::with_api_key(REALTIME_KEY).with_script(RealtimeScript::new(vec![
            ScriptTurn::say(ASK, "Yes, we are open until six."),
        ]))
    };
    let app = spawn_app_with_realtime(backend, realtime, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base);
        raw.set("READINESS_MIN_EVALUATED_CALLS", "2");
        raw.set("READINESS_MIN_PASS_PERCENT", "100");
    })
    .await;
    // Staged, with a test caller and no fallback number.
    let t = app
        .telephony_tenant(
            "Acme",
            NUMBER,
            json!({"status": "staged", "test_callers": [CALLER], "fallback_number": null}),
        )
        .await;
    (app, sim, t)
}

async fn readiness(app: &TestApp, tenant: &str) -> Value {
    let resp = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/tenants/{tenant}/readiness"),
        )
        .send()
        .await
        .expect("readiness");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

fn gate<'a>(review: &'a Value, key: &str) -> &'a Value {
    review["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("gate {key}: {review}"))
}

/// Polls the review until `key` has `status`.
async fn wait_gate(app: &TestApp, tenant: &str, key: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let review = readiness(app, tenant).await;
        if gate(&review, key)["status"] == status {
            return review;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gate {key} never became {status}: {review}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn patch_route(app: &TestApp, route: &str, body: Value) -> reqwest::Response {
    app.admin(
        Method::PATCH,
        &format!("/api/v1/admin/phone-routes/{route}"),
    )
    .json(&body)
    .send()
    .await
    .expect("patch")
}

/// An event-webhook endpoint on loopback that accepts everything.
async fn receiver() -> String {
    let route =
        warp::post().map(|| warp::reply::with_status("", warp::http::StatusCode::NO_CONTENT));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(route).incoming(listener).run());
    format!("http://{addr}/events")
}

/// Gives the `support` agent an approved version with a rubric its calls pass.
async fn rubric_version(app: &TestApp, tenant: &str) -> String {
    let agents: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/agents?tenant_id={tenant}"),
        )
        .send()
        .await
        .expect("agents")
        .json()
        .await
        .expect("json");
    let agent = agents["data"][0]["id"].as_str().expect("agent");
    let resp = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/agents/{agent}/versions"),
        )
        .json(&json!({
            "instructions": "You are a helpful phone agent.",
            "greeting": "Hello, thanks for calling.",
            "rubric": {
                "pass_score": 0.7,
                "criteria": [
                    {"key": "greeting", "kind": "required_phrase", "pattern": "thanks for calling", "within_seconds": 10},
                    {"key": "short", "kind": "max_duration_s", "max_seconds": 120}
                ]
            },
        }))
        .send()
        .await
        .expect("version");
    assert_eq!(resp.status(), 201);
    let version: Value = resp.json().await.expect("json");
    let id = version["id"].as_str().expect("id").to_owned();
    let resp = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/agent-versions/{id}/approve"),
        )
        .send()
        .await
        .expect("approve");
    assert_eq!(resp.status(), 200);
    id
}

/// A test caller's call on the staged route, to its end.
async fn test_call(app: &TestApp, sim: &CarrierSimHandle, t: &Tele) {
    let sid = sim
        .place_inbound_call(InboundCall {
            account_sid: t.account_sid.clone(),
            from: CALLER.into(),
            to: NUMBER.into(),
            voice_url: app.url("/api/v1/incoming-call"),
            status_callback: Some(app.url("/api/v1/call-status")),
            status_callback_events: vec![],
            script: CallerScript::default()
                .silence(Duration::from_millis(1500))
                .speak(Duration::from_millis(800), ASK)
                .silence(Duration::from_millis(2500))
                .hang_up(),
        })
        .expect("place call");
    tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("the call ends");
}

async fn readiness_lists_failing_gates_then_passes_and_only_then_the_route_goes_live(
    backend: Backend,
) {
    let (app, sim, t) = setup(backend).await;
    let tenant = t.tenant_id.as_str();

    // Nothing is ready: every gate fails, each with a reason, its owner and a time.
    let review = readiness(&app, tenant).await;
    assert_eq!(review["tenant_id"], tenant);
    assert_eq!(review["ready"], false, "{review}");
    let keys: Vec<&str> = review["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .map(|g| g["key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys, GATES.map(|(k, _)| k), "{review}");
    for (key, owner) in GATES {
        let g = gate(&review, key);
        assert_eq!(g["status"], "fail", "{key}: {g}");
        assert_eq!(g["owner"], owner, "{key}: {g}");
        assert!(!g["reason"].as_str().expect("reason").is_empty(), "{g}");
        assert!(g["checked_at"].is_string(), "{g}");
    }
    assert_eq!(review["failing"], json!(GATES.map(|(k, _)| k)));
    // The carrier does not know the account: checked there, not by format.
    let credentials = gate(&review, "carrier_credentials");
    assert!(
        credentials["reason"]
            .as_str()
            .expect("reason")
            .contains("refused"),
        "{credentials}"
    );
    assert_eq!(credentials["evidence"]["account_sid"], t.account_sid);
    assert!(
        gate(&review, "route_fallbacks")["reason"]
            .as_str()
            .expect("reason")
            .contains(NUMBER)
    );
    assert!(
        gate(&review, "agent_versions")["reason"]
            .as_str()
            .expect("reason")
            .contains("has no rubric")
    );

    // Going live is refused, naming each failing gate with its owner.
    let refused = expect_error(
        patch_route(&app, &t.route_id, json!({"status": "live"})).await,
        409,
        "readiness_failed",
    )
    .await;
    let message = refused["message"].as_str().expect("message");
    for (key, owner) in GATES {
        assert!(message.contains(&format!("{key} ({owner}:")), "{message}");
    }
    // So is creating a route live.
    let resp = app
        .admin(Method::POST, "/api/v1/admin/phone-routes")
        .json(
            &json!({"tenant_id": tenant, "number": "+14155550181", "agent_key": "support",
                      "status": "live", "fallback_number": "+15550009999"}),
        )
        .send()
        .await
        .expect("create");
    expect_error(resp, 409, "readiness_failed").await;

    // Fix each gate. The carrier knows the account; the route gets a fallback; the agent an
    // approved version with a rubric; the tenant an event webhook.
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    let resp = patch_route(
        &app,
        &t.route_id,
        json!({"fallback_number": "+15550009999"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let version = rubric_version(&app, tenant).await;
    let resp = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{tenant}/event-webhook"),
        )
        .json(&json!({"url": receiver().await}))
        .send()
        .await
        .expect("event webhook");
    assert_eq!(resp.status(), 200);
    let review = readiness(&app, tenant).await;
    for key in ["carrier_credentials", "route_fallbacks", "agent_versions"] {
        assert_eq!(gate(&review, key)["status"], "pass", "{key}: {review}");
    }
    let evaluations = gate(&review, "evaluations");
    assert_eq!(evaluations["status"], "fail");
    assert!(
        evaluations["reason"]
            .as_str()
            .expect("reason")
            .contains("0 evaluated calls of the 2 needed"),
        "{evaluations}"
    );

    // Two evaluated calls by the test caller on the staged route (its signed webhooks
    // verify; their events are delivered).
    test_call(&app, &sim, &t).await;
    test_call(&app, &sim, &t).await;
    let review = wait_gate(&app, tenant, "evaluations", "pass").await;
    assert_eq!(gate(&review, "signed_webhook")["status"], "pass");
    let evidence = &gate(&review, "evaluations")["evidence"]["versions"][0];
    assert_eq!(evidence["agent_version_id"], version.as_str());
    assert_eq!(evidence["evaluated"], 2);
    wait_gate(&app, tenant, "event_webhook", "pass").await;

    // Telemetry: a scrape of /metrics.
    let resp = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), 200);
    // The launch: its record, then the required approval.
    let resp = app
        .admin(Method::PUT, &format!("/api/v1/admin/tenants/{tenant}/launch"))
        .json(&json!({"owner": "Support ops", "rollback_path": "Set the route back to staged.", "required_roles": ["approver"]}))
        .send()
        .await
        .expect("launch");
    assert_eq!(resp.status(), 200);
    let review = readiness(&app, tenant).await;
    assert_eq!(gate(&review, "telemetry")["status"], "pass", "{review}");
    assert_eq!(gate(&review, "launch_record")["status"], "pass");
    let approvals = gate(&review, "launch_approvals");
    assert_eq!(approvals["status"], "fail");
    assert_eq!(approvals["evidence"]["missing_roles"], json!(["approver"]));
    assert_eq!(review["failing"], json!(["launch_approvals"]));
    let resp = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/tenants/{tenant}/launch/approvals"),
        )
        .json(&json!({"role": "approver", "comment": "quality and rollback checked"}))
        .send()
        .await
        .expect("approve");
    assert_eq!(resp.status(), 201);

    // Every gate passes; only now does the route go live, with no override.
    let review = readiness(&app, tenant).await;
    assert_eq!(review["ready"], true, "{review}");
    assert_eq!(review["failing"], json!([]));
    for (key, _) in GATES {
        assert_eq!(gate(&review, key)["status"], "pass", "{key}: {review}");
    }
    let resp = patch_route(&app, &t.route_id, json!({"status": "live"})).await;
    assert_eq!(resp.status(), 200);
    let route: Value = resp.json().await.expect("json");
    assert_eq!(route["status"], "live");
    let audit: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/audit-log?tenant_id={tenant}&action=phone_route.update"),
        )
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let last = &audit["data"][0];
    assert_eq!(last["after"]["status"], "live", "{audit}");
    assert!(last["after"]["live_override"].is_null(), "{last}");

    // Another tenant's review sees none of this evidence; an unknown tenant is 404.
    let (other, _) = app.tenant_with_key("Globex").await;
    let theirs = readiness(&app, &other).await;
    assert_eq!(theirs["ready"], false);
    for key in [
        "carrier_credentials",
        "signed_webhook",
        "route_fallbacks",
        "evaluations",
        "event_webhook",
        "launch_record",
        "launch_approvals",
    ] {
        assert_eq!(gate(&theirs, key)["status"], "fail", "{key}: {theirs}");
    }
    let resp = app
        .admin(Method::GET, "/api/v1/admin/tenants/ten_nobody/readiness")
        .send()
        .await
        .expect("readiness");
    expect_error(resp, 404, "not_found").await;
}

async fn an_override_needs_an_admin_and_a_reason_and_is_audited(backend: Backend) {
    let (app, _sim, t) = setup(backend).await;
    let tenant = t.tenant_id.as_str();
    let identity = |name: &'static str, role: &'static str| {
        let app = &app;
        async move {
            let resp = app
                .admin(Method::POST, "/api/v1/admin/identities")
                .json(&json!({"name": name, "roles": [role]}))
                .send()
                .await
                .expect("identity");
            assert_eq!(resp.status(), 201);
            let body: Value = resp.json().await.expect("json");
            body["key"].as_str().expect("key").to_owned()
        }
    };
    let audrey = identity("audrey", "auditor").await;
    let abe = identity("abe", "approver").await;
    let ann = identity("ann", "admin").await;
    let path = app.url(&format!("/api/v1/admin/phone-routes/{}", t.route_id));
    let patch = |key: String, body: Value| {
        let app = &app;
        let path = path.clone();
        async move {
            app.client
                .patch(path)
                .header("x-admin-key", key)
                .json(&body)
                .send()
                .await
                .expect("patch")
        }
    };
    let overriding =
        json!({"status": "live", "live_override_reason": "pilot with the support team"});

    // Neither an auditor nor an approver may override.
    let resp = patch(audrey, overriding.clone()).await;
    let body = expect_error(resp, 403, "insufficient_role").await;
    assert!(
        body["message"].as_str().expect("message").contains("admin"),
        "{body}"
    );
    expect_error(
        patch(abe, overriding.clone()).await,
        403,
        "insufficient_role",
    )
    .await;
    // A reason is required and checked; one on a change that is not a go-live is refused.
    expect_error(
        patch(ann.clone(), json!({"status": "live"})).await,
        409,
        "readiness_failed",
    )
    .await;
    for body in [
        json!({"status": "live", "live_override_reason": "  "}),
        json!({"status": "staged", "live_override_reason": "why not"}),
        json!({"max_concurrent_calls": 5, "live_override_reason": "why not"}),
    ] {
        let err = expect_error(patch(ann.clone(), body).await, 422, "validation_failed").await;
        assert_eq!(err["field"], "live_override_reason", "{err}");
    }
    let unchanged: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/phone-routes/{}", t.route_id),
        )
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(unchanged["status"], "staged");
    assert_eq!(unchanged["max_concurrent_calls"], 10);

    // An admin with a reason: live, and the audit row names who, why and what failed.
    let resp = patch(ann, overriding).await;
    assert_eq!(resp.status(), 200);
    let route: Value = resp.json().await.expect("json");
    assert_eq!(route["status"], "live");
    let audit: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/audit-log?tenant_id={tenant}&action=phone_route.update"),
        )
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let row = &audit["data"][0];
    assert_eq!(row["actor"], "ann", "{row}");
    let o = &row["after"]["live_override"];
    assert_eq!(o["reason"], "pilot with the support team", "{row}");
    let failing: Vec<&str> = o["failing_gates"]
        .as_array()
        .expect("failing gates")
        .iter()
        .map(|g| g.as_str().expect("gate"))
        .collect();
    // (The carrier is not asked on an override: its gate is a warning, not a failure.)
    assert!(!failing.contains(&"carrier_credentials"), "{o}");
    assert!(failing.contains(&"signed_webhook"), "{o}");
    assert!(failing.contains(&"route_fallbacks"), "{o}");
    assert!(failing.contains(&"evaluations"), "{o}");
}

/// A signed webhook and a scrape reach one node; the review on another node sees them, and
/// telemetry passes only once every node serving was scraped.
async fn every_node_reviews_the_signals_any_node_saw(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    let tenant = t.tenant_id.as_str();
    let base = sim.base_url();
    let other = app
        .another_node(move |raw| raw.set("TWILIO_API_BASE_URL", base))
        .await;
    let review = readiness(&app, tenant).await;
    assert_eq!(
        gate(&review, "signed_webhook")["status"],
        "fail",
        "{review}"
    );

    // The carrier's signed webhook and the scrape reach the other node only.
    other.inbound(&t, CALLER, NUMBER).await;
    let resp = other
        .client
        .get(other.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), 200);
    let review = wait_gate(&app, tenant, "signed_webhook", "pass").await;
    assert!(
        gate(&review, "signed_webhook")["evidence"]["last_verified_at"].is_string(),
        "{review}"
    );
    // Telemetry names the node nobody scraped: this one.
    let unscraped = tokio::time::timeout(WAIT, async {
        loop {
            let review = readiness(&app, tenant).await;
            let telemetry = gate(&review, "telemetry").clone();
            let nodes = telemetry["evidence"]["nodes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if nodes.len() == 2 && nodes.iter().any(|n| n["last_scraped_at"].is_string()) {
                return (telemetry, nodes);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("both nodes in the telemetry gate");
    let (telemetry, nodes) = unscraped;
    assert_eq!(telemetry["status"], "fail", "{telemetry}");
    let here = nodes
        .iter()
        .find(|n| n["last_scraped_at"].is_null())
        .expect("an unscraped node");
    let here = here["node_id"].as_str().expect("node id");
    assert!(
        telemetry["reason"]
            .as_str()
            .expect("reason")
            .starts_with(&format!("node {here}: no scrape")),
        "{telemetry}"
    );
    assert!(
        telemetry["evidence"]["last_scraped_at"].is_null(),
        "{telemetry}"
    );

    // Scraped here too: the gate passes on either node.
    let resp = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), 200);
    let review = readiness(&app, tenant).await;
    let telemetry = gate(&review, "telemetry");
    assert_eq!(telemetry["status"], "pass", "{telemetry}");
    assert!(
        telemetry["reason"]
            .as_str()
            .expect("reason")
            .starts_with("every one of 2 nodes scraped"),
        "{telemetry}"
    );
    wait_gate(&other, tenant, "telemetry", "pass").await;
    other.stop().await;
    app.stop().await;
}
