//! The pre-dial policy (issue 11, item 6) over real HTTP against the carrier simulator:
//! the tenant's do-not-call list (validated, imported in bulk, isolated per tenant), and
//! `make-call` refused with 422 naming the rule — a listed number, a moment outside the
//! calling hours, the daily attempt limit — with nothing dialed (the simulator received no
//! `Calls.json` create) and the decision on the call log. The `opt_out` built-in lists a
//! caller during a simulated call. (Windows across a daylight-saving change are checked
//! against a set clock in `actors/src/governance/predial/tests.rs` and the actor tests.)

use std::time::Duration;

use chrono::{Datelike as _, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CalleeBehaviour, CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle, InboundCall,
};
use stateset_voice::sim::realtime::{RealtimeScript, RealtimeSimConfig, ScriptTurn};

use crate::helpers::{
    Backend, REALTIME_KEY, Tele, TestApp, backend_tests, expect_error, spawn_app,
    spawn_app_with_realtime,
};

backend_tests!(
    the_dnc_list_is_validated_imported_and_tenant_scoped,
    a_listed_number_is_refused_and_nothing_is_dialed,
    calling_hours_refuse_and_a_route_policy_overrides_the_tenant,
    the_daily_attempt_limit_refuses_the_next_attempt,
    opt_out_lists_the_caller_with_the_call_as_evidence,
);

const WAIT: Duration = Duration::from_secs(45);
const NUMBER: &str = "+14155550180";
const CALLEE: &str = "+15557654321";

async fn setup(
    backend: Backend,
    realtime: Option<RealtimeScript>,
) -> (TestApp, CarrierSimHandle, Tele) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let mut config = RealtimeSimConfig::with_api_key(REALTIME_KEY);
    if let Some(script) = realtime {
        config = RealtimeSimConfig {
            ms_per_char: 20,
            ..config.with_script(script)
        };
    }
    let app = spawn_app_with_realtime(backend, config, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base)
    })
    .await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    (app, sim, t)
}

async fn make_call(app: &TestApp, t: &Tele, body: Value) -> reqwest::Response {
    app.tenant(Method::POST, "/api/v1/make-call", &t.key)
        .json(&body)
        .send()
        .await
        .expect("make-call")
}

/// `Calls.json` creates the carrier simulator received.
fn dialed(sim: &CarrierSimHandle) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/Calls.json"))
        .count()
}

/// The call id a refusal names, and its call log.
async fn refused_log(app: &TestApp, t: &Tele, err: &Value) -> Value {
    let message = err["message"].as_str().expect("message");
    let id = message
        .split("(call ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the refusal names the call");
    app.call_log(&t.key, id).await
}

async fn post_dnc(app: &TestApp, key: &str, path: &str, body: Value) -> reqwest::Response {
    app.tenant(Method::POST, path, key)
        .json(&body)
        .send()
        .await
        .expect("dnc")
}

async fn the_dnc_list_is_validated_imported_and_tenant_scoped(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.tenant_with_key("Acme").await;
    let (_, other) = app.tenant_with_key("Globex").await;

    let resp = post_dnc(
        &app,
        &key,
        "/api/v1/dnc",
        json!({"number": CALLEE, "reason": "asked by letter"}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let entry: Value = resp.json().await.expect("json");
    assert_eq!(entry["number"], CALLEE);
    assert_eq!(entry["source"], "api");
    // Listed already: 200, the first entry kept.
    let resp = post_dnc(&app, &key, "/api/v1/dnc", json!({"number": CALLEE})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.expect("json")["reason"],
        "asked by letter"
    );

    let resp = post_dnc(&app, &key, "/api/v1/dnc", json!({"number": "555-0100"})).await;
    assert_eq!(
        expect_error(resp, 422, "validation_failed").await["field"],
        "number"
    );
    // One bad number in an import: the field named, nothing listed.
    let resp = post_dnc(
        &app,
        &key,
        "/api/v1/dnc/import",
        json!({"numbers": ["+15550000001", "+0123", "+15550000002"]}),
    )
    .await;
    assert_eq!(
        expect_error(resp, 422, "validation_failed").await["field"],
        "numbers[1]"
    );
    let resp = post_dnc(&app, &key, "/api/v1/dnc/import", json!({"numbers": []})).await;
    assert_eq!(
        expect_error(resp, 422, "validation_failed").await["field"],
        "numbers"
    );
    let resp = post_dnc(
        &app,
        &key,
        "/api/v1/dnc/import",
        json!({"numbers": ["+15550000001", "+15550000002", "+15550000001", CALLEE], "reason": "CRM export"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let done: Value = resp.json().await.expect("json");
    assert_eq!(done, json!({"added": 2, "already_listed": 1}));

    let list: Value = app
        .tenant(Method::GET, "/api/v1/dnc?limit=2", &key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["total"], 3, "{list}");
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2));

    // Another tenant sees none of it and cannot remove it.
    let theirs: Value = app
        .tenant(Method::GET, "/api/v1/dnc", &other)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(theirs["total"], 0, "{theirs}");
    let resp = app
        .tenant(Method::DELETE, &format!("/api/v1/dnc/{CALLEE}"), &other)
        .send()
        .await
        .expect("delete");
    expect_error(resp, 404, "not_found").await;

    // Removed by its owner, `+` as is or encoded.
    let resp = app
        .tenant(Method::DELETE, &format!("/api/v1/dnc/{CALLEE}"), &key)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 200);
    let resp = app
        .tenant(Method::DELETE, "/api/v1/dnc/%2B15550000001", &key)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 200);
    let resp = app
        .tenant(Method::DELETE, &format!("/api/v1/dnc/{CALLEE}"), &key)
        .send()
        .await
        .expect("delete again");
    expect_error(resp, 404, "not_found").await;
    let resp = app
        .tenant(Method::DELETE, "/api/v1/dnc/not-a-number", &key)
        .send()
        .await
        .expect("delete");
    assert_eq!(
        expect_error(resp, 422, "validation_failed").await["field"],
        "number"
    );

    // Every change is audited under the key.
    let audit: Value = app
        .admin(Method::GET, "/api/v1/admin/audit-log")
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| r["action"].as_str().expect("action"))
        .filter(|a| a.starts_with("dnc."))
        .collect();
    assert_eq!(
        actions,
        ["dnc.remove", "dnc.remove", "dnc.import", "dnc.add"]
    );
}

async fn a_listed_number_is_refused_and_nothing_is_dialed(backend: Backend) {
    let (app, sim, t) = setup(backend, None).await;
    sim.set_callee(CALLEE, CalleeBehaviour::Busy);
    sim.set_callee("+15557654322", CalleeBehaviour::Busy);
    let resp = post_dnc(&app, &t.key, "/api/v1/dnc", json!({"number": CALLEE})).await;
    assert_eq!(resp.status(), 201);

    let err = expect_error(
        make_call(&app, &t, json!({"to": CALLEE})).await,
        422,
        "do_not_call",
    )
    .await;
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("`do_not_call`")),
        "{err}"
    );
    assert_eq!(dialed(&sim), 0, "nothing was dialed");
    let log = refused_log(&app, &t, &err).await;
    assert_eq!(log["status"], "refused", "{log}");
    assert_eq!(log["outcome"], "refused", "{log}");
    assert_eq!(log["end_reason"], "predial_refused", "{log}");
    assert!(log["call_sid"].is_null());
    assert_eq!(log["predial"]["allowed"], false, "{log}");
    assert_eq!(log["predial"]["rule"], "do_not_call");
    assert_eq!(log["predial"]["checks"][0]["detail"]["source"], "api");
    assert_eq!(
        app.completed_events(log["id"].as_str().expect("id"))
            .await
            .len(),
        1
    );

    // Another number is dialed, its decision on its log.
    let resp = make_call(&app, &t, json!({"to": "+15557654322"})).await;
    assert_eq!(resp.status(), 201);
    let placed: Value = resp.json().await.expect("json");
    assert_eq!(dialed(&sim), 1);
    let log = app
        .call_log(&t.key, placed["call_id"].as_str().expect("id"))
        .await;
    assert_eq!(log["predial"]["allowed"], true, "{log}");
    let rules: Vec<&str> = log["predial"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["rule"].as_str().expect("rule"))
        .collect();
    assert_eq!(rules, ["do_not_call", "calling_window", "attempt_limit"]);
    assert!(
        log["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "predial" && e["detail"]["allowed"] == true),
        "{log}"
    );
    app.stop().await;
}

fn day_name(offset: u32) -> &'static str {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let today = Utc::now().weekday().num_days_from_monday();
    DAYS[((today + offset) % 7) as usize]
}

async fn calling_hours_refuse_and_a_route_policy_overrides_the_tenant(backend: Backend) {
    let (app, sim, t) = setup(backend, None).await;
    sim.set_callee(CALLEE, CalleeBehaviour::Busy);
    // The tenant calls only on the day three days from today (UTC), so never now.
    let resp = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{}/dial-policy", t.tenant_id),
        )
        .json(&json!({"calling_hours": {"timezone": "UTC", "windows": [
            {"days": [day_name(3)], "open": "00:00", "close": "24:00"}
        ]}}))
        .send()
        .await
        .expect("policy");
    assert_eq!(resp.status(), 200);
    let policy: Value = resp.json().await.expect("json");
    assert_eq!(policy["calling_hours"]["timezone"], "UTC", "{policy}");

    let err = expect_error(
        make_call(&app, &t, json!({"to": CALLEE})).await,
        422,
        "calling_window",
    )
    .await;
    assert_eq!(dialed(&sim), 0, "nothing was dialed");
    let log = refused_log(&app, &t, &err).await;
    let window = &log["predial"]["checks"][1];
    assert_eq!(window["rule"], "calling_window", "{log}");
    assert_eq!(window["passed"], false);
    assert_eq!(window["detail"]["time_zone"], "UTC");

    // A zone that is not IANA is refused naming the field.
    let resp = make_call(&app, &t, json!({"to": CALLEE, "time_zone": "Mars/Olympus"})).await;
    assert_eq!(
        expect_error(resp, 422, "validation_failed").await["field"],
        "time_zone"
    );
    // A bad policy names its field and changes nothing.
    let resp = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/phone-routes/{}/dial-policy", t.route_id),
        )
        .json(&json!({"calling_hours": {"timezone": "UTC", "windows": [
            {"days": ["someday"], "open": "00:00", "close": "24:00"}
        ]}}))
        .send()
        .await
        .expect("policy");
    assert_eq!(
        expect_error(resp, 422, "validation_failed").await["field"],
        "calling_hours.windows[0].days[0]"
    );

    // The route's own hours (every day) override the tenant's.
    let every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let resp = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/phone-routes/{}/dial-policy", t.route_id),
        )
        .json(&json!({"calling_hours": {"timezone": "UTC", "windows": [
            {"days": every_day, "open": "00:00", "close": "24:00"}
        ]}}))
        .send()
        .await
        .expect("policy");
    assert_eq!(resp.status(), 200);
    let resp = make_call(&app, &t, json!({"to": CALLEE})).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(dialed(&sim), 1);
    let got: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/phone-routes/{}/dial-policy", t.route_id),
        )
        .send()
        .await
        .expect("policy")
        .json()
        .await
        .expect("json");
    assert_eq!(got["route_id"], t.route_id.as_str(), "{got}");
    assert_eq!(got["calling_hours"]["windows"][0]["days"], json!(every_day));
    app.stop().await;
}

async fn the_daily_attempt_limit_refuses_the_next_attempt(backend: Backend) {
    let (app, sim, t) = setup(backend, None).await;
    sim.set_callee(CALLEE, CalleeBehaviour::Busy);
    sim.set_callee("+15557654323", CalleeBehaviour::Busy);
    let resp = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{}/dial-policy", t.tenant_id),
        )
        .json(&json!({"daily_attempt_limit": 2}))
        .send()
        .await
        .expect("policy");
    assert_eq!(resp.status(), 200);
    for attempt in 1..=2 {
        let resp = make_call(&app, &t, json!({"to": CALLEE})).await;
        assert_eq!(resp.status(), 201, "attempt {attempt}");
        let placed: Value = resp.json().await.expect("json");
        let log = app
            .call_log(&t.key, placed["call_id"].as_str().expect("id"))
            .await;
        assert_eq!(
            log["predial"]["checks"][2]["detail"]["attempt"], attempt,
            "{log}"
        );
    }
    let err = expect_error(
        make_call(&app, &t, json!({"to": CALLEE})).await,
        422,
        "attempt_limit",
    )
    .await;
    assert_eq!(dialed(&sim), 2, "the third attempt was not dialed");
    let log = refused_log(&app, &t, &err).await;
    assert_eq!(log["predial"]["rule"], "attempt_limit", "{log}");
    assert_eq!(log["predial"]["checks"][2]["detail"]["limit"], 2);
    // The limit is per number.
    let resp = make_call(&app, &t, json!({"to": "+15557654323"})).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(dialed(&sim), 3);
    app.stop().await;
}

async fn opt_out_lists_the_caller_with_the_call_as_evidence(backend: Backend) {
    const CALLER: &str = "+15557650009";
    let (app, sim, t) = setup(
        backend,
        Some(RealtimeScript::new(vec![ScriptTurn::call_tool(
            "Please stop calling me.",
            "opt_out",
            json!({"reason": "asked to stop calling"}),
            "Understood, we will not call you again.",
        )])),
    )
    .await;
    // A version of `support` with the built-in.
    let agents: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/agents?tenant_id={}", t.tenant_id),
        )
        .send()
        .await
        .expect("agents")
        .json()
        .await
        .expect("json");
    let agent = agents["data"][0]["id"].as_str().expect("agent").to_owned();
    let resp = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/agents/{agent}/versions"),
        )
        .json(&json!({
            "instructions": "You are a helpful phone agent.",
            "greeting": "Hello, thanks for calling.",
            "tools": [{"name": "opt_out", "type": "builtin"}],
        }))
        .send()
        .await
        .expect("version");
    assert_eq!(resp.status(), 201);
    let version: Value = resp.json().await.expect("json");
    let resp = app
        .admin(
            Method::POST,
            &format!(
                "/api/v1/admin/agent-versions/{}/approve",
                version["id"].as_str().expect("id")
            ),
        )
        .send()
        .await
        .expect("approve");
    assert_eq!(resp.status(), 200);

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
                .speak(Duration::from_millis(800), "Please stop calling me.")
                .silence(Duration::from_millis(2500))
                .hang_up(),
        })
        .expect("place call");
    tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("the call ends");
    let log = app.call_log(&t.key, &sid).await;
    let call_id = log["id"].as_str().expect("id").to_owned();

    let session = app.voice_session_of(&t.key, &sid).await;
    let calls = session["function_calls"]
        .as_array()
        .expect("function calls");
    assert_eq!(calls.len(), 1, "{session}");
    assert_eq!(calls[0]["name"], "opt_out");
    assert_eq!(calls[0]["status"], "succeeded", "{session}");
    assert_eq!(calls[0]["result"]["status"], "opted_out");

    let list: Value = app
        .tenant(Method::GET, "/api/v1/dnc", &t.key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["total"], 1, "{list}");
    let entry = &list["data"][0];
    assert_eq!(entry["number"], CALLER);
    assert_eq!(entry["source"], "opt_out");
    assert_eq!(entry["call_id"], call_id.as_str());
    assert_eq!(entry["reason"], "asked to stop calling");

    // From then on the caller is never dialed.
    let before = dialed(&sim);
    let err = expect_error(
        make_call(&app, &t, json!({"to": CALLER})).await,
        422,
        "do_not_call",
    )
    .await;
    assert_eq!(dialed(&sim), before);
    let refused = refused_log(&app, &t, &err).await;
    assert_eq!(
        refused["predial"]["checks"][0]["detail"]["call_id"],
        call_id.as_str(),
        "the evidence is the opt-out call: {refused}"
    );
    app.stop().await;
}
