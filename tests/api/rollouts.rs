//! Canary rollouts over the admin API: the policy (validation naming the field), the
//! actions (a reason required), inbound calls landing on the arm their caller's number
//! hashes to (recorded on the call's timeline), the governance view, events and audit rows,
//! and tenant isolation of every route.

use actors::rollout::assign::on_canary;
use reqwest::Method;
use serde_json::{Value, json};

use stateset_voice::sim::carrier::{CalleeBehaviour, CarrierConfig, CarrierSim};

use crate::helpers::{
    Backend, TestApp, backend_tests, expect_error, metric, spawn_app, spawn_app_with,
};

backend_tests!(
    a_canary_is_started_split_paused_rolled_back_and_promoted_by_hand,
    rollout_routes_validate_and_isolate_tenants,
    outbound_calls_land_on_the_arm_their_callee_hashes_to,
);

/// A second approved version of `agent_id`.
async fn approved_version(app: &TestApp, agent_id: &str) -> String {
    let v: Value = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/agents/{agent_id}/versions"),
        )
        .json(&json!({"instructions": "Be brief.", "greeting": "Thanks for calling!"}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let id = v["id"].as_str().expect("id").to_owned();
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

async fn agent_of(app: &TestApp, tenant: &str) -> (String, String) {
    let agents: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/agents?tenant_id={tenant}"),
        )
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let agent = &agents["data"][0];
    let id = agent["id"].as_str().expect("id").to_owned();
    let versions: Value = app
        .admin(Method::GET, &format!("/api/v1/admin/agents/{id}/versions"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let v1 = versions["data"][0]["id"].as_str().expect("id").to_owned();
    (id, v1)
}

async fn act(app: &TestApp, agent: &str, action: &str, body: Value) -> reqwest::Response {
    app.admin(
        Method::POST,
        &format!("/api/v1/admin/agents/{agent}/rollout/{action}"),
    )
    .json(&body)
    .send()
    .await
    .expect("post")
}

async fn governance(app: &TestApp, tenant: &str) -> Value {
    let resp = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/rollout-governance?tenant_id={tenant}"),
        )
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

/// Payloads of the `event` events of `tenant` in the outbox.
async fn events(app: &TestApp, tenant: &str, event: &str) -> Vec<Value> {
    use sqlx::Connection;
    const SQL: &str = "SELECT payload FROM webhook_events WHERE tenant_id = $1 AND event = $2 ORDER BY created_at";
    let payloads: Vec<String> = if app.database_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
            .await
            .expect("sqlite");
        sqlx::query_scalar(SQL)
            .bind(tenant)
            .bind(event)
            .fetch_all(&mut conn)
            .await
            .expect("events")
    } else {
        let mut conn = sqlx::PgConnection::connect(&app.database_url)
            .await
            .expect("postgres");
        sqlx::query_scalar(SQL)
            .bind(tenant)
            .bind(event)
            .fetch_all(&mut conn)
            .await
            .expect("events")
    };
    payloads
        .iter()
        .map(|p| serde_json::from_str(p).expect("json"))
        .collect()
}

async fn audit_actions(app: &TestApp, tenant: &str) -> Vec<String> {
    let page: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/audit-log?tenant_id={tenant}&limit=200"),
        )
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    page["data"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|a| a["action"].as_str())
        .filter(|a| a.starts_with("rollout."))
        .map(str::to_owned)
        .collect()
}

async fn a_canary_is_started_split_paused_rolled_back_and_promoted_by_hand(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app
        .telephony_tenant("Acme", "+14155550100", json!({"max_concurrent_calls": 100}))
        .await;
    let resp = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/admin/tenants/{}", t.tenant_id),
        )
        .json(&json!({"max_concurrent_calls": 100}))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    let (agent, v1) = agent_of(&app, &t.tenant_id).await;
    let v2 = approved_version(&app, &agent).await;

    // Without a policy, governance shows the agent on stable only.
    let g = governance(&app, &t.tenant_id).await;
    assert_eq!(g["data"][0]["state"], "stable_only");
    assert_eq!(g["data"][0]["policy"], Value::Null);

    let policy = json!({
        "stable_version_id": v1,
        "canary_version_id": v2,
        "stages": [{"percent": 50, "min_evaluated_calls": 100, "min_seconds": 3600}, {"percent": 100, "min_evaluated_calls": 100}],
        "guardrails": {"min_sample": 30, "max_first_audio_p95_ms": 1200},
        "reason": "trial of the shorter greeting",
    });
    let resp = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/agents/{agent}/rollout-policy"),
        )
        .json(&policy)
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 200);
    let p: Value = resp.json().await.expect("json");
    assert_eq!(p["state"], "stable_only");
    assert_eq!(p["canary_percent"], 0);
    assert_eq!(p["guardrails"]["min_sample"], 30);
    assert_eq!(p["guardrails"]["pass_rate_delta"], 0.05);
    let salt = p["assignment_salt"].as_str().expect("salt").to_owned();

    // An action needs a reason.
    let resp = act(&app, &agent, "start", json!({})).await;
    let e = expect_error(resp, 422, "validation_failed").await;
    assert_eq!(e["field"], "reason", "{e}");
    let resp = act(&app, &agent, "start", json!({"reason": "go"})).await;
    assert_eq!(resp.status(), 200);
    let p: Value = resp.json().await.expect("json");
    assert_eq!(
        (p["state"].clone(), p["canary_percent"].clone()),
        (json!("canarying"), json!(50))
    );
    // The policy cannot change under a running canary.
    let resp = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/agents/{agent}/rollout-policy"),
        )
        .json(&policy)
        .send()
        .await
        .expect("put");
    expect_error(resp, 409, "conflict").await;

    // Inbound calls land on the arm their caller's number hashes to.
    let mut arms = Vec::new();
    for i in 0..8 {
        let from = format!("+1555123{i:04}");
        let (call_sid, _xml) = app.inbound(&t, &from, "+14155550100").await;
        let log = app.call_log(&t.key, &call_sid).await;
        let rollout = log["events"]
            .as_array()
            .expect("events")
            .iter()
            .find(|e| e["kind"] == "rollout")
            .unwrap_or_else(|| panic!("a rollout timeline entry in {log}"))
            .clone();
        let canary = on_canary(&salt, &from, 50);
        let (arm, version) = if canary {
            ("canary", &v2)
        } else {
            ("stable", &v1)
        };
        assert_eq!(rollout["detail"]["arm"], arm, "{from}");
        assert_eq!(rollout["detail"]["agent_version_id"], version.as_str());
        assert_eq!(log["agent_version_id"], version.as_str());
        arms.push(canary);
        // Sticky: the same caller again, the same arm.
        let (again, _) = app.inbound(&t, &from, "+14155550100").await;
        assert_eq!(
            app.call_log(&t.key, &again).await["agent_version_id"],
            version.as_str()
        );
    }
    // Counted by arm (the recorder is shared by every test of the process: at least ours).
    let text = app.metrics().await;
    let counted = metric(&text, "rollout_calls_total", &[("arm", "stable")])
        + metric(&text, "rollout_calls_total", &[("arm", "canary")]);
    assert!(counted >= 16.0, "{counted}");
    let g = governance(&app, &t.tenant_id).await;
    let a = &g["data"][0];
    assert_eq!(a["state"], "canarying");
    assert_eq!(a["split"], json!({"stable": 50, "canary": 50}));
    assert_eq!(a["decisions"][0]["action"], "start");
    assert_eq!(a["decisions"][0]["reason"], "go");
    assert_eq!(a["decisions"][0]["actor"], "root");
    let names: Vec<&str> = a["guardrails"]
        .as_array()
        .expect("guardrails")
        .iter()
        .map(|c| c["guardrail"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "pass_rate",
            "transfer_rate",
            "error_rate",
            "first_audio_p95_ms"
        ]
    );
    assert!(
        a["guardrails"]
            .as_array()
            .expect("g")
            .iter()
            .all(|c| c["status"] == "insufficient" && c["min_sample"] == 30)
    );
    assert_eq!(a["guardrails"][3]["threshold"], 1200.0);
    let live: i64 = a["live_calls"]
        .as_array()
        .expect("live")
        .iter()
        .map(|l| l["calls"].as_i64().expect("n"))
        .sum();
    assert_eq!(live, 16, "{a}");

    // Pause: new calls on stable; advance needs a running canary.
    let resp = act(
        &app,
        &agent,
        "pause",
        json!({"reason": "a customer complaint"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = act(&app, &agent, "advance", json!({"reason": "go on"})).await;
    expect_error(resp, 409, "conflict").await;
    if let Some(i) = arms.iter().position(|c| *c) {
        let from = format!("+1555123{i:04}");
        let (sid, _) = app.inbound(&t, &from, "+14155550100").await;
        let log = app.call_log(&t.key, &sid).await;
        assert_eq!(log["agent_version_id"], v1.as_str(), "paused: stable");
    }
    let resp = act(
        &app,
        &agent,
        "rollback",
        json!({"reason": "the complaint was confirmed"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let rolled = events(&app, &t.tenant_id, "voice.rollout.rolled_back").await;
    assert_eq!(rolled.len(), 1);
    assert_eq!(rolled[0]["data"]["reason"], "the complaint was confirmed");
    assert_eq!(rolled[0]["data"]["action"], "rollback");

    // Start again, advance to the last stage, promote.
    assert_eq!(
        act(&app, &agent, "start", json!({"reason": "fixed"}))
            .await
            .status(),
        200
    );
    let resp = act(&app, &agent, "advance", json!({"reason": "looks good"})).await;
    let p: Value = resp.json().await.expect("json");
    assert_eq!(p["canary_percent"], 100);
    let resp = act(&app, &agent, "promote", json!({"reason": "done"})).await;
    assert_eq!(resp.status(), 200);
    let p: Value = resp.json().await.expect("json");
    assert_eq!(p["state"], "promoted");
    assert_eq!(p["stable_version_id"], v2.as_str());
    assert_eq!(p["canary_version_id"], Value::Null);
    let promoted = events(&app, &t.tenant_id, "voice.rollout.promoted").await;
    assert_eq!(promoted.len(), 2, "advance and promote");
    let g = governance(&app, &t.tenant_id).await;
    let actions: Vec<&str> = g["data"][0]["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .map(|d| d["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        ["promote", "advance", "start", "rollback", "pause", "start"]
    );
    let audit = audit_actions(&app, &t.tenant_id).await;
    for a in [
        "rollout.policy",
        "rollout.start",
        "rollout.pause",
        "rollout.rollback",
        "rollout.advance",
        "rollout.promote",
    ] {
        assert!(audit.iter().any(|x| x == a), "{a} in {audit:?}");
    }
    // Every caller now runs the promoted version.
    let (sid, _) = app.inbound(&t, "+15559990000", "+14155550100").await;
    assert_eq!(
        app.call_log(&t.key, &sid).await["agent_version_id"],
        v2.as_str()
    );
}

async fn rollout_routes_validate_and_isolate_tenants(backend: Backend) {
    let app = spawn_app(backend).await;
    let (acme, _) = app.tenant_with_key("Acme").await;
    let (globex, _) = app.tenant_with_key("Globex").await;
    let (agent, v1) = app.approved_agent(&acme, "support").await;
    let v2 = approved_version(&app, &agent).await;
    let (g_agent, g_v1) = app.approved_agent(&globex, "sales").await;
    let put = |agent: String, body: Value| {
        let req = app
            .admin(
                Method::PUT,
                &format!("/api/v1/admin/agents/{agent}/rollout-policy"),
            )
            .json(&body);
        async move { req.send().await.expect("put") }
    };
    let base = json!({"stable_version_id": v1, "canary_version_id": v2, "stages": [{"percent": 10}], "reason": "r"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    // Validation names the field.
    for (body, field) in [
        (with("reason", json!("  ")), "reason"),
        (
            with("stages", json!([{"percent": 50}, {"percent": 20}])),
            "stages[1].percent",
        ),
        (with("stages", json!([{"percent": 0}])), "stages[0].percent"),
        (with("stages", json!([])), "stages"),
        (with("canary_version_id", json!(v1)), "canary_version_id"),
        (with("canary_version_id", json!(g_v1)), "canary_version_id"),
        (with("stable_version_id", json!(g_v1)), "stable_version_id"),
        (
            with("stable_version_id", json!("nope")),
            "stable_version_id",
        ),
        (
            with("guardrails", json!({"max_error_rate": 1.5})),
            "guardrails.max_error_rate",
        ),
    ] {
        let e = expect_error(
            put(agent.clone(), body.clone()).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(e["field"], field, "{body} → {e}");
    }
    let mut no_reason = base.clone();
    no_reason.as_object_mut().expect("obj").remove("reason");
    let e = expect_error(
        put(agent.clone(), no_reason).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(e["field"], "reason");
    // A draft canary is refused.
    let draft: Value = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/agents/{agent}/versions"),
        )
        .json(&json!({"instructions": "Draft."}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let e = expect_error(
        put(
            agent.clone(),
            with("canary_version_id", draft["id"].clone()),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert!(
        e["message"].as_str().expect("m").contains("not approved"),
        "{e}"
    );
    // Nothing was written.
    assert_eq!(
        governance(&app, &acme).await["data"][0]["policy"],
        Value::Null
    );

    assert_eq!(put(agent.clone(), base.clone()).await.status(), 200);
    assert_eq!(
        put(
            g_agent.clone(),
            json!({"stable_version_id": g_v1, "reason": "baseline"})
        )
        .await
        .status(),
        200
    );
    // Each tenant's governance shows its own agents only.
    let a = governance(&app, &acme).await;
    let g = governance(&app, &globex).await;
    assert_eq!(a["data"].as_array().expect("a").len(), 1);
    assert_eq!(a["data"][0]["agent_id"], agent.as_str());
    assert_eq!(g["data"].as_array().expect("g").len(), 1);
    assert_eq!(g["data"][0]["agent_id"], g_agent.as_str());
    assert_eq!(g["data"][0]["policy"]["canary_version_id"], Value::Null);
    // Globex's policy has no canary to start.
    expect_error(
        act(&app, &g_agent, "start", json!({"reason": "x"})).await,
        409,
        "conflict",
    )
    .await;
    // Unknown agents and tenants; the tenant is required.
    let ghost = "agt_00000000000000000000000000000000";
    expect_error(put(ghost.into(), base.clone()).await, 404, "not_found").await;
    expect_error(
        act(&app, ghost, "start", json!({"reason": "x"})).await,
        404,
        "not_found",
    )
    .await;
    let resp = app
        .admin(Method::GET, "/api/v1/admin/rollout-governance")
        .send()
        .await
        .expect("get");
    let e = expect_error(resp, 400, "invalid_query").await;
    assert_eq!(e["field"], "tenant_id");
    let resp = app
        .admin(
            Method::GET,
            "/api/v1/admin/rollout-governance?tenant_id=ten_00000000000000000000000000000000",
        )
        .send()
        .await
        .expect("get");
    expect_error(resp, 404, "not_found").await;
    // Tenant keys cannot reach the admin routes.
    let (_, key) = app.tenant_with_key("Initech").await;
    let resp = app
        .tenant(
            Method::GET,
            &format!("/api/v1/admin/rollout-governance?tenant_id={acme}"),
            &key,
        )
        .send()
        .await
        .expect("get");
    assert!(
        resp.status() == 401 || resp.status() == 403 || resp.status() == 404,
        "{}",
        resp.status()
    );
    let resp = app
        .tenant(
            Method::POST,
            &format!("/api/v1/admin/agents/{agent}/rollout/start"),
            &key,
        )
        .json(&json!({"reason": "x"}))
        .send()
        .await
        .expect("post");
    assert!(
        resp.status() == 401 || resp.status() == 403 || resp.status() == 404,
        "{}",
        resp.status()
    );
}

async fn outbound_calls_land_on_the_arm_their_callee_hashes_to(backend: Backend) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let app = spawn_app_with(backend, move |raw| raw.set("TWILIO_API_BASE_URL", base)).await;
    let t = app
        .telephony_tenant("Acme", "+14155550100", json!({"max_concurrent_calls": 100}))
        .await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    let (agent, v1) = agent_of(&app, &t.tenant_id).await;
    let v2 = approved_version(&app, &agent).await;
    let resp = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/agents/{agent}/rollout-policy"),
        )
        .json(&json!({"stable_version_id": v1, "canary_version_id": v2,
            "stages": [{"percent": 40}], "reason": "trial"}))
        .send()
        .await
        .expect("put");
    let salt = resp.json::<Value>().await.expect("json")["assignment_salt"]
        .as_str()
        .expect("salt")
        .to_owned();
    assert_eq!(
        act(&app, &agent, "start", json!({"reason": "go"}))
            .await
            .status(),
        200
    );
    let arm_of = |log: &Value| {
        log["events"]
            .as_array()
            .expect("events")
            .iter()
            .find(|e| e["kind"] == "rollout")
            .map(|e| e["detail"].clone())
            .unwrap_or_else(|| panic!("a rollout timeline entry in {log}"))
    };
    for i in 0..6 {
        let to = format!("+1555765{i:04}");
        sim.set_callee(&to, CalleeBehaviour::Busy);
        let resp = app
            .tenant(Method::POST, "/api/v1/make-call", &t.key)
            .json(&json!({"to": to}))
            .send()
            .await
            .expect("make-call");
        assert!(resp.status().is_success(), "{}", resp.status());
        let placed: Value = resp.json().await.expect("json");
        let log = app
            .call_log(&t.key, placed["call_id"].as_str().expect("call id"))
            .await;
        let (arm, version) = if on_canary(&salt, &to, 40) {
            ("canary", &v2)
        } else {
            ("stable", &v1)
        };
        let detail = arm_of(&log);
        assert_eq!(detail["arm"], arm, "{to}");
        assert_eq!(detail["agent_version_id"], version.as_str());
        assert_eq!(detail["canary_percent"], 40);
    }
    // A call that pins a version bypasses the policy.
    let to = "+15557650099";
    sim.set_callee(to, CalleeBehaviour::Busy);
    let resp = app
        .tenant(Method::POST, "/api/v1/make-call", &t.key)
        .json(&json!({"to": to, "agent_version_id": v1}))
        .send()
        .await
        .expect("make-call");
    let placed: Value = resp.json().await.expect("json");
    let log = app
        .call_log(&t.key, placed["call_id"].as_str().expect("call id"))
        .await;
    assert_eq!(arm_of(&log)["arm"], "pinned");
    assert_eq!(log["agent_version_id"], v1.as_str());
}
