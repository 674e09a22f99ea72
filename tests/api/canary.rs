//! Canaries end to end through the simulators: inbound calls placed by the carrier
//! simulator (signed webhooks, media streams) talk with the realtime simulator, end, are
//! evaluated against their version's rubric, and the evaluations drive the rollout actor.
//! A canary whose rubric requires a phrase the simulated model never says is rolled back by
//! its pass-rate guardrail once both arms reach the minimum sample (the decision with its
//! values, thresholds and samples, an audit row, `voice.rollout.rolled_back` delivered),
//! while a canary call live at that moment finishes normally and the next call from a
//! canary number runs the stable version; a healthy canary advances and is promoted.

use std::time::Duration;

use actors::rollout::assign::on_canary;
use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sandbox::receivers::{self, Receivers};
use stateset_voice::sim::carrier::{
    CallEvent, CallStatus, CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle, InboundCall,
};
use stateset_voice::sim::realtime::{RealtimeScript, RealtimeSimConfig, ScriptTurn};

use crate::helpers::{
    Backend, REALTIME_KEY, Tele, TestApp, backend_tests, spawn_app_with_realtime,
};

backend_tests!(
    a_canary_failing_its_rubric_is_rolled_back_while_its_live_call_finishes,
    a_healthy_canary_advances_and_is_promoted,
);

const WAIT: Duration = Duration::from_secs(60);
const NUMBER: &str = "+14155550170";
const ASK: &str = "Is the shop open today?";

/// The simulated model answers the caller's one question; it never says "recorded".
fn script() -> RealtimeScript {
    RealtimeScript::new(vec![ScriptTurn::say(ASK, "Yes, we are open until five.")])
}

struct World {
    app: TestApp,
    sim: CarrierSimHandle,
    t: Tele,
    agent: String,
    receivers: Receivers,
}

async fn world(backend: Backend) -> World {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let realtime = RealtimeSimConfig {
        ms_per_char: 20,
        ..RealtimeSimConfig::with_api_key(REALTIME_KEY).with_script(script())
    };
    let app = spawn_app_with_realtime(backend, realtime, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base);
        raw.set("JUDGE_SUMMARIES", "false");
    })
    .await;
    let t = app
        .telephony_tenant("Acme", NUMBER, json!({"max_concurrent_calls": 20}))
        .await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    // The tenant's events go to a receiver that verifies their signatures.
    let receivers = receivers::start().await.expect("receivers");
    let resp = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{}/event-webhook", t.tenant_id),
        )
        .json(&json!({"url": format!("{}/events", receivers.base)}))
        .send()
        .await
        .expect("event webhook");
    assert_eq!(resp.status(), 200);
    let secret = resp.json::<Value>().await.expect("json")["signing_secret"]
        .as_str()
        .expect("secret")
        .as_bytes()
        .to_vec();
    if let Ok(mut slot) = receivers.secret.write() {
        *slot = Some(secret);
    }
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
    World {
        app,
        sim,
        t,
        agent,
        receivers,
    }
}

/// An approved version whose rubric requires `phrase` (critical) of the agent.
async fn version_requiring(w: &World, phrase: &str) -> String {
    let resp = w
        .app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/agents/{}/versions", w.agent),
        )
        .json(&json!({
            "instructions": "You are the receptionist of Acme.",
            "greeting": "Hello, thanks for calling Acme.",
            // A caller silent through a rollback is not an idle call.
            "idle_timeout_seconds": 600,
            "rubric": {"pass_score": 0.5, "criteria": [
                {"key": "required", "kind": "required_phrase", "pattern": phrase, "critical": true}
            ]},
        }))
        .send()
        .await
        .expect("version");
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let resp = w
        .app
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

/// Puts the policy and starts the canary; returns the assignment salt.
async fn start_canary(w: &World, policy: Value) -> String {
    let resp = w
        .app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/agents/{}/rollout-policy", w.agent),
        )
        .json(&policy)
        .send()
        .await
        .expect("policy");
    assert_eq!(resp.status(), 200);
    let salt = resp.json::<Value>().await.expect("json")["assignment_salt"]
        .as_str()
        .expect("salt")
        .to_owned();
    let resp = w
        .app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/agents/{}/rollout/start", w.agent),
        )
        .json(&json!({"reason": "trial"}))
        .send()
        .await
        .expect("start");
    assert_eq!(resp.status(), 200);
    salt
}

/// `n` caller numbers on the canary (`true`) or on stable at `percent`.
fn numbers(salt: &str, percent: u8, canary: bool, n: usize) -> Vec<String> {
    (0..10_000)
        .map(|i| format!("+1555300{i:04}"))
        .filter(|from| on_canary(salt, from, percent) == canary)
        .take(n)
        .collect()
}

/// Places an inbound call from `from`: the caller asks one question, then stays on the line
/// for `linger` and hangs up.
fn call_in(w: &World, from: &str, linger: Duration) -> String {
    w.sim
        .place_inbound_call(InboundCall {
            account_sid: w.t.account_sid.clone(),
            from: from.to_owned(),
            to: NUMBER.into(),
            voice_url: w.app.url("/api/v1/incoming-call"),
            status_callback: Some(w.app.url("/api/v1/call-status")),
            status_callback_events: vec![],
            script: CallerScript::default()
                .silence(Duration::from_millis(1500))
                .speak(Duration::from_millis(800), ASK)
                .silence(linger)
                .hang_up()
                .with_max_duration(linger + Duration::from_secs(30)),
        })
        .expect("place call")
}

/// Waits for the call to end, then for its session's evaluation; returns the session.
async fn evaluated(w: &World, sid: &str) -> Value {
    tokio::time::timeout(WAIT, w.sim.wait_ended(sid))
        .await
        .expect("the call ends");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let session = w.app.voice_session_of(&w.t.key, sid).await;
        if !session["evaluation"].is_null() {
            return session;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sid} was never evaluated: {session}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn evaluated_all(w: &World, sids: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for sid in sids {
        out.push(evaluated(w, sid).await);
    }
    out
}

async fn governance(w: &World) -> Value {
    let resp = w
        .app
        .admin(
            Method::GET,
            &format!(
                "/api/v1/admin/rollout-governance?tenant_id={}",
                w.t.tenant_id
            ),
        )
        .send()
        .await
        .expect("governance");
    assert_eq!(resp.status(), 200);
    let g: Value = resp.json().await.expect("json");
    g["data"][0].clone()
}

/// Waits until the receiver has verified an `event` event; returns it.
async fn received(w: &World, event: &str) -> Value {
    let mut events = w.receivers.events.subscribe();
    let found = tokio::time::timeout(
        WAIT,
        events.wait_for(|list| list.iter().any(|e| e["event"] == event)),
    )
    .await;
    assert!(
        matches!(found, Ok(Ok(_))),
        "{event} never arrived: {:?}",
        w.receivers.events.borrow()
    );
    let list = w.receivers.events.borrow();
    list.iter()
        .find(|e| e["event"] == event)
        .cloned()
        .expect("event")
}

async fn a_canary_failing_its_rubric_is_rolled_back_while_its_live_call_finishes(backend: Backend) {
    let w = world(backend).await;
    let stable = version_requiring(&w, "thanks for calling").await;
    // The simulated model never says this: every canary call fails its rubric.
    let canary = version_requiring(&w, "this call may be recorded").await;
    let salt = start_canary(
        &w,
        json!({
            "stable_version_id": stable, "canary_version_id": canary,
            "stages": [{"percent": 50, "min_evaluated_calls": 100, "min_seconds": 3600}],
            "guardrails": {"min_sample": 3, "max_first_audio_p95_ms": 600000},
            "reason": "a disclosure in the greeting",
        }),
    )
    .await;
    let on_stable = numbers(&salt, 50, false, 3);
    let on_canary_arm = numbers(&salt, 50, true, 4);

    // Three stable calls pass.
    let sids: Vec<String> = on_stable
        .iter()
        .map(|from| call_in(&w, from, Duration::from_millis(2000)))
        .collect();
    for session in evaluated_all(&w, &sids).await {
        assert_eq!(session["agent_version_id"], stable.as_str(), "{session}");
        assert_eq!(session["evaluation"]["passed"], true, "{session}");
    }

    // A canary call that stays on the line through the rollback.
    let live = call_in(&w, &on_canary_arm[3], Duration::from_secs(120));
    tokio::time::timeout(
        WAIT,
        w.sim.wait_for(&live, |s| {
            s.events
                .iter()
                .any(|e| matches!(e, CallEvent::StreamOpened { .. }))
        }),
    )
    .await
    .expect("the live canary call is streaming");

    // Two failing canary calls: below the minimum sample nothing is decided.
    let first: Vec<String> = on_canary_arm[..2]
        .iter()
        .map(|from| call_in(&w, from, Duration::from_millis(2000)))
        .collect();
    for session in evaluated_all(&w, &first).await {
        assert_eq!(session["agent_version_id"], canary.as_str(), "{session}");
        assert_eq!(session["evaluation"]["passed"], false, "{session}");
    }
    let g = governance(&w).await;
    assert_eq!(g["state"], "canarying", "{g}");
    let pass = &g["guardrails"][0];
    assert_eq!(
        (&pass["guardrail"], &pass["status"], &pass["canary_sample"]),
        (&json!("pass_rate"), &json!("insufficient"), &json!(2)),
        "{g}"
    );

    // The third reaches the minimum: rolled back at once.
    let third = call_in(&w, &on_canary_arm[2], Duration::from_millis(2000));
    let session = evaluated(&w, &third).await;
    assert_eq!(session["evaluation"]["passed"], false, "{session}");
    let event = received(&w, "voice.rollout.rolled_back").await;
    assert_eq!(event["data"]["action"], "auto_rollback", "{event}");
    assert_eq!(event["data"]["actor"], "system");
    assert_eq!(event["data"]["canary_version_id"], canary.as_str());
    assert_eq!(event["data"]["stable_version_id"], stable.as_str());

    let g = governance(&w).await;
    assert_eq!(g["state"], "halted", "{g}");
    assert_eq!(g["split"], json!({"stable": 100, "canary": 0}), "{g}");
    let d = &g["decisions"][0];
    assert_eq!(
        (&d["action"], &d["actor"]),
        (&json!("auto_rollback"), &json!("system"))
    );
    let reason = d["reason"].as_str().expect("reason");
    assert!(reason.contains("pass_rate"), "{reason}");
    let pass = d["guardrails"]
        .as_array()
        .expect("evidence")
        .iter()
        .find(|c| c["guardrail"] == "pass_rate")
        .expect("pass_rate evidence")
        .clone();
    assert_eq!(pass["status"], "breach", "{pass}");
    assert_eq!(pass["value"], 0.0);
    assert_eq!(pass["baseline"], 1.0);
    assert_eq!(pass["canary_sample"], 3);
    assert_eq!(pass["stable_sample"], 3);
    assert_eq!(pass["min_sample"], 3);
    assert!(
        pass["threshold"].is_number() && pass["bound"].is_number(),
        "{pass}"
    );

    // The audit row, and the event as a delivered webhook delivery.
    let audit: Value = w
        .app
        .admin(
            Method::GET,
            &format!(
                "/api/v1/admin/audit-log?tenant_id={}&limit=200",
                w.t.tenant_id
            ),
        )
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    assert!(
        audit["data"]
            .as_array()
            .expect("audit rows")
            .iter()
            .any(|a| a["action"] == "rollout.auto_rollback" && a["actor"] == "system"),
        "{audit}"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let resp = w
            .app
            .tenant(
                Method::GET,
                "/api/v1/webhook-deliveries?event=voice.rollout.rolled_back",
                &w.t.key,
            )
            .send()
            .await
            .expect("deliveries");
        let list: Value = resp.json().await.expect("json");
        assert_eq!(list["total"], 1, "{list}");
        if list["data"][0]["status"] == "delivered" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // The canary call live at the rollback is still on its version, then finishes normally.
    assert!(
        !w.sim.call(&live).expect("live call").finished,
        "the live canary call outlived the rollback"
    );
    let active: Value = w
        .app
        .tenant(Method::GET, "/api/v1/active-sessions", &w.t.key)
        .send()
        .await
        .expect("active")
        .json()
        .await
        .expect("json");
    let entry = active["data"]
        .as_array()
        .expect("active sessions")
        .iter()
        .find(|s| s["call_sid"] == live.as_str())
        .unwrap_or_else(|| panic!("{live} live: {active}"))
        .clone();
    assert_eq!(entry["agent_version_id"], canary.as_str());
    // The caller hangs up.
    w.sim.hangup(&live).expect("hang up");
    let session = evaluated(&w, &live).await;
    assert_eq!(session["status"], "completed", "{session}");
    assert_eq!(session["agent_version_id"], canary.as_str());
    assert_eq!(session["evaluation"]["passed"], false);
    let snapshot = w.sim.call(&live).expect("call");
    assert_eq!(snapshot.status, CallStatus::Completed);
    let log = w.app.call_log(&w.t.key, &live).await;
    assert_eq!(log["outcome"], "completed", "{log}");
    // One rollback, however many results arrive after it.
    let g = governance(&w).await;
    let rollbacks = g["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter(|d| d["action"] == "auto_rollback")
        .count();
    assert_eq!(rollbacks, 1, "{g}");

    // The next call from a canary number runs the stable version.
    let next = call_in(&w, &on_canary_arm[0], Duration::from_millis(1000));
    let session = evaluated(&w, &next).await;
    assert_eq!(session["agent_version_id"], stable.as_str(), "{session}");
    assert_eq!(session["evaluation"]["passed"], true, "{session}");
    let log = w.app.call_log(&w.t.key, &next).await;
    let rollout = log["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["kind"] == "rollout")
        .unwrap_or_else(|| panic!("a rollout timeline entry in {log}"))
        .clone();
    assert_eq!(rollout["detail"]["arm"], "stable", "{rollout}");
}

async fn a_healthy_canary_advances_and_is_promoted(backend: Backend) {
    let w = world(backend).await;
    let stable = version_requiring(&w, "thanks for calling").await;
    let canary = version_requiring(&w, "open until five").await;
    let salt = start_canary(
        &w,
        json!({
            "stable_version_id": stable, "canary_version_id": canary,
            "stages": [{"percent": 50, "min_evaluated_calls": 2, "min_seconds": 0},
                       {"percent": 100, "min_evaluated_calls": 2, "min_seconds": 0}],
            "auto_promote": true,
            "guardrails": {"min_sample": 2, "max_first_audio_p95_ms": 600000},
            "reason": "a friendlier answer",
        }),
    )
    .await;
    let on_stable = numbers(&salt, 50, false, 2);
    let on_canary_arm = numbers(&salt, 50, true, 2);
    let sids: Vec<String> = on_stable
        .iter()
        .chain(&on_canary_arm)
        .map(|from| call_in(&w, from, Duration::from_millis(2000)))
        .collect();
    for session in evaluated_all(&w, &sids).await {
        assert_eq!(session["evaluation"]["passed"], true, "{session}");
    }
    let event = received(&w, "voice.rollout.promoted").await;
    assert_eq!(event["data"]["action"], "auto_advance", "{event}");
    let g = governance(&w).await;
    assert_eq!(g["state"], "canarying", "{g}");
    assert_eq!(g["split"], json!({"stable": 0, "canary": 100}), "{g}");
    assert_eq!(g["decisions"][0]["action"], "auto_advance", "{g}");
    assert_eq!(g["decisions"][0]["actor"], "system");

    // At 100 % every caller is on the canary; two more passing calls complete the last
    // stage and promote it.
    let sids: Vec<String> = on_stable
        .iter()
        .map(|from| call_in(&w, from, Duration::from_millis(2000)))
        .collect();
    for session in evaluated_all(&w, &sids).await {
        assert_eq!(session["agent_version_id"], canary.as_str(), "{session}");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let g = loop {
        let g = governance(&w).await;
        if g["state"] == "promoted" {
            break g;
        }
        assert!(tokio::time::Instant::now() < deadline, "{g}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(g["decisions"][0]["action"], "auto_promote", "{g}");
    assert_eq!(g["policy"]["stable_version_id"], canary.as_str(), "{g}");
    assert!(
        !g["decisions"]
            .as_array()
            .expect("decisions")
            .iter()
            .any(|d| d["action"] == "auto_rollback"),
        "{g}"
    );
}
