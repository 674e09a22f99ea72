//! Chaos from outside (issue 12 §4): `POST /api/v1/admin/chaos/calls` injects a fault into
//! live calls of the node, driven here through the carrier and realtime simulators.
//! Refused with the hooks off (nothing touched) and for anything but an admin key; every
//! bad request named; each mode gives the outcome the runtime records for such a fault:
//! `kill` and `panic` the supervisor's `actor_failed` record and the route's fallback,
//! `twilio_reset` a fresh stream resuming the conversation, `ai_reset` a model session
//! reconnected with the conversation replayed; a percentage touches exactly its share.

use std::time::Duration;

use actors::active::ActiveEvent;
use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CallEvent, CallStatus, CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle, InboundCall,
    StreamCloser,
};
use stateset_voice::sim::realtime::{RealtimeScript, ScriptTurn, SessionEnd};
use tokio::sync::broadcast;

use crate::helpers::{Backend, Tele, TestApp, backend_tests, expect_error, spawn_app_with};

backend_tests!(
    chaos_is_refused_with_the_hooks_off_and_the_call_goes_on,
    bad_chaos_requests_are_refused_naming_the_field_and_touch_nothing,
    killed_and_panicked_calls_are_recorded_by_the_supervisor_and_go_to_the_fallback,
    a_twilio_reset_resumes_the_conversation_on_a_fresh_stream,
    an_ai_reset_reconnects_the_model_with_the_conversation,
    half_of_four_live_calls_touches_exactly_two,
);

const WAIT: Duration = Duration::from_secs(30);
const NUMBER: &str = "+14155550100";
const PATH: &str = "/api/v1/admin/chaos/calls";

async fn setup(backend: Backend, hooks: bool) -> (TestApp, CarrierSimHandle, Tele) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let app = spawn_app_with(backend, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base);
        raw.set("TWILIO_LEG_RESUME_SECONDS", "30");
        raw.set("CHAOS_HOOKS", if hooks { "true" } else { "false" });
    })
    .await;
    let t = app
        .telephony_tenant("Acme", NUMBER, json!({"max_concurrent_calls": 20}))
        .await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    (app, sim, t)
}

/// Places an inbound call from `from` and waits until its actor is live; returns
/// (CallSid, call id).
async fn live_call(
    app: &TestApp,
    sim: &CarrierSimHandle,
    t: &Tele,
    live: &mut broadcast::Receiver<ActiveEvent>,
    from: &str,
    script: CallerScript,
) -> (String, String) {
    let sid = sim
        .place_inbound_call(InboundCall {
            account_sid: t.account_sid.clone(),
            from: from.into(),
            to: NUMBER.into(),
            voice_url: app.url("/api/v1/incoming-call"),
            status_callback: Some(app.url("/api/v1/call-status")),
            status_callback_events: vec![],
            script,
        })
        .expect("place call");
    let id = started(live, &sid).await;
    (sid, id)
}

/// The next start of `call_sid`'s actor on the live-call feed; returns its call id.
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

/// The call's one `voice.call.completed` (asked up to 600 times, 50 ms apart; then checked
/// to stay one).
async fn completion(app: &TestApp, call_id: &str) -> Value {
    for _ in 0..600 {
        let events = app.completed_events(call_id).await;
        if !events.is_empty() {
            assert_eq!(events.len(), 1, "one voice.call.completed: {events:?}");
            return events[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("call {call_id} never completed");
}

async fn inject(app: &TestApp, body: Value) -> reqwest::Response {
    app.admin(Method::POST, PATH)
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// The audit rows of injections.
async fn chaos_audit(app: &TestApp) -> Vec<Value> {
    let body: Value = app
        .admin(Method::GET, "/api/v1/admin/audit-log?action=chaos.inject")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    body["data"].as_array().expect("data").clone()
}

/// A caller who stays silent for `secs`, then hangs up.
fn hangs_up_after(secs: u64) -> CallerScript {
    CallerScript::default()
        .silence(Duration::from_secs(secs))
        .hang_up()
}

async fn assert_finished_normally(app: &TestApp, sim: &CarrierSimHandle, sid: &str, id: &str) {
    let ended = tokio::time::timeout(WAIT, sim.wait_ended(sid))
        .await
        .expect("the caller hangs up");
    assert_eq!(ended.status, CallStatus::Completed);
    assert_eq!(ended.media.streams_opened, 1, "{:?}", ended.events);
    let done = completion(app, id).await;
    assert_eq!(done["outcome"], "completed", "{done}");
    assert_eq!(done["end_reason"], "caller_hangup", "{done}");
}

async fn chaos_is_refused_with_the_hooks_off_and_the_call_goes_on(backend: Backend) {
    let (app, sim, t) = setup(backend, false).await;
    let mut live = app.state.actors.active.subscribe();
    let (sid, id) = live_call(&app, &sim, &t, &mut live, "+15550000001", hangs_up_after(3)).await;
    let audit_before = app.audit_total().await;

    let refused = inject(&app, json!({"mode": "kill", "percent": 100})).await;
    expect_error(refused, 403, "chaos_disabled").await;
    let refused = inject(&app, json!({"mode": "panic", "call_ids": [id]})).await;
    expect_error(refused, 403, "chaos_disabled").await;
    // Only an admin key: a tenant key or a wrong admin key is refused before anything.
    let tenant = app
        .tenant(Method::POST, PATH, &t.key)
        .json(&json!({"mode": "kill", "percent": 100}))
        .send()
        .await
        .expect("request");
    expect_error(tenant, 401, "unauthorized").await;
    let wrong = app
        .client
        .post(app.url(PATH))
        .header("x-admin-key", "not-the-admin-key-0123456789")
        .json(&json!({"mode": "kill", "percent": 100}))
        .send()
        .await
        .expect("request");
    expect_error(wrong, 401, "unauthorized").await;

    // Nothing happened to the call: it finishes as its caller ends it, nothing was audited.
    assert!(
        app.state
            .actors
            .active
            .contains(&actors::ids::CallId::parse(&id).expect("call id"))
    );
    assert_finished_normally(&app, &sim, &sid, &id).await;
    assert_eq!(app.audit_total().await, audit_before);
    app.stop().await;
}

async fn bad_chaos_requests_are_refused_naming_the_field_and_touch_nothing(backend: Backend) {
    let (app, sim, t) = setup(backend, true).await;
    let mut live = app.state.actors.active.subscribe();
    let (sid, id) = live_call(&app, &sim, &t, &mut live, "+15550000001", hangs_up_after(3)).await;
    let unknown = actors::ids::CallId::generate().into_string();
    for (body, field) in [
        (json!({"mode": "explode", "percent": 10}), "mode"),
        (json!({"mode": "kill", "percent": 0}), "percent"),
        (json!({"mode": "kill", "percent": -5}), "percent"),
        (json!({"mode": "kill", "percent": 100.5}), "percent"),
        (json!({"mode": "kill"}), "percent"),
        (
            json!({"mode": "kill", "percent": 10, "call_ids": [id]}),
            "call_ids",
        ),
        (json!({"mode": "kill", "call_ids": []}), "call_ids"),
        (
            json!({"mode": "kill", "call_ids": [id, "CA123"]}),
            "call_ids[1]",
        ),
        (
            json!({"mode": "kill", "percent": 10, "tenant_id": "acme"}),
            "tenant_id",
        ),
    ] {
        let err = expect_error(inject(&app, body.clone()).await, 422, "validation_failed").await;
        assert_eq!(err["field"], field, "{body}: {err}");
    }
    // A named call that is not live here: 404, and the live one named with it is untouched.
    let err = expect_error(
        inject(&app, json!({"mode": "kill", "call_ids": [id, unknown]})).await,
        404,
        "call_not_live",
    )
    .await;
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains(&unknown)),
        "{err}"
    );
    // Another tenant's filter hides the call: not live for that tenant.
    let other = app.create_tenant("Other").await;
    expect_error(
        inject(
            &app,
            json!({"mode": "kill", "call_ids": [id], "tenant_id": other["id"]}),
        )
        .await,
        404,
        "call_not_live",
    )
    .await;
    // A share of no live calls of a tenant touches nothing.
    let none = inject(
        &app,
        json!({"mode": "kill", "percent": 100, "tenant_id": other["id"]}),
    )
    .await;
    assert_eq!(none.status(), 200);
    let none: Value = none.json().await.expect("json");
    assert_eq!(none, json!({"mode": "kill", "selected": 0, "calls": []}));

    assert!(chaos_audit(&app).await.is_empty());
    assert_finished_normally(&app, &sim, &sid, &id).await;
    app.stop().await;
}

async fn killed_and_panicked_calls_are_recorded_by_the_supervisor_and_go_to_the_fallback(
    backend: Backend,
) {
    let (app, sim, t) = setup(backend, true).await;
    let mut live = app.state.actors.active.subscribe();
    let quiet = || CallerScript::default().silence(Duration::from_secs(20));
    let (killed_sid, killed) = live_call(&app, &sim, &t, &mut live, "+15550000001", quiet()).await;
    let (panicked_sid, panicked) =
        live_call(&app, &sim, &t, &mut live, "+15550000002", quiet()).await;

    for (mode, id, sid) in [
        ("kill", &killed, &killed_sid),
        ("panic", &panicked, &panicked_sid),
    ] {
        let resp = inject(&app, json!({"mode": mode, "call_ids": [id]})).await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["mode"], mode);
        assert_eq!(body["selected"], 1);
        let call = &body["calls"][0];
        assert_eq!(call["call_id"], id.as_str(), "{body}");
        assert_eq!(call["call_sid"], sid.as_str(), "{body}");
        assert_eq!(call["tenant_id"], t.tenant_id.as_str(), "{body}");
        assert!(
            call["stream_sid"]
                .as_str()
                .is_some_and(|s| s.starts_with("MZ")),
            "{body}"
        );
        let at = call["injected_at"].as_str().expect("injected_at");
        assert!(
            actors::time::parse_rfc3339(at).is_some() && at.len() == 24,
            "RFC 3339 with milliseconds: {at}"
        );
    }

    // The supervisor records each failure; the carrier takes the caller to the fallback.
    for (id, sid, detail) in [
        (&killed, &killed_sid, "killed"),
        (&panicked, &panicked_sid, "chaos hook"),
    ] {
        let dialed = tokio::time::timeout(
            WAIT,
            sim.wait_for(sid, |c| {
                c.events
                    .iter()
                    .any(|e| matches!(e, CallEvent::Dialed { .. }))
            }),
        )
        .await
        .expect("the carrier dials the fallback");
        let numbers = dialed.events.iter().find_map(|e| match e {
            CallEvent::Dialed { numbers, .. } => Some(numbers.clone()),
            _ => None,
        });
        assert_eq!(numbers, Some(vec!["+15550009999".to_owned()]));
        let done = completion(&app, id).await;
        assert_eq!(done["outcome"], "fallback", "{done}");
        assert_eq!(done["end_reason"], "actor_failed", "{done}");
        assert!(
            done["end_detail"]
                .as_str()
                .is_some_and(|d| d.contains(detail)),
            "{done}"
        );
        let log = app.call_log(&t.key, id).await;
        assert!(!log["completed_at"].is_null(), "{log}");
        let kinds: Vec<&str> = log["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        assert!(kinds.contains(&"chaos"), "{kinds:?}");
        assert!(kinds.contains(&"supervisor"), "{kinds:?}");
    }
    let audit = chaos_audit(&app).await;
    assert_eq!(audit.len(), 2, "{audit:?}");
    for row in &audit {
        assert_eq!(row["actor"], "root");
        assert_eq!(row["target_type"], "call");
    }
    let metrics = app.metrics().await;
    for mode in ["kill", "panic"] {
        // The recorder is the process's: other tests' injections count too.
        assert!(
            crate::helpers::metric(&metrics, "chaos_injections_total", &[("mode", mode)]) >= 1.0,
            "{mode}"
        );
    }
    app.stop().await;
}

async fn a_twilio_reset_resumes_the_conversation_on_a_fresh_stream(backend: Backend) {
    let (app, sim, t) = setup(backend, true).await;
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::say(
            "I need help with my order",
            "Sure, what is your order number?",
        )]));
    let mut live = app.state.actors.active.subscribe();
    // The caller speaks after the reset, on the fresh stream, then hangs up.
    let script = CallerScript::default()
        .silence(Duration::from_secs(3))
        .speak(Duration::from_millis(800), "I need help with my order")
        .silence(Duration::from_millis(2500))
        .hang_up();
    let (sid, id) = live_call(&app, &sim, &t, &mut live, "+15550000001", script).await;
    tokio::time::timeout(
        WAIT,
        app.realtime
            .wait_for(|s| s.first().is_some_and(|s| s.responses_completed >= 1)),
    )
    .await
    .expect("the greeting is complete");

    let resp = inject(&app, json!({"mode": "twilio_reset", "call_ids": [id]})).await;
    assert_eq!(resp.status(), 200);
    // The socket went without `stop`; the carrier's stream-ended gets a fresh stream, whose
    // new actor resumes the conversation.
    assert_eq!(started(&mut live, &sid).await, id);
    let resumed = tokio::time::timeout(WAIT, sim.wait_for(&sid, |s| s.media.streams_opened == 2))
        .await
        .expect("a second stream");
    assert!(!resumed.status.is_final());
    assert!(
        resumed.events.iter().any(|e| matches!(
            e,
            CallEvent::StreamClosed {
                by: StreamCloser::Server,
                ..
            }
        )),
        "{:?}",
        resumed.events
    );
    // The transcript goes on in the second session, which was given the first one's turns.
    let ended = tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("the caller hangs up");
    assert_eq!(ended.status, CallStatus::Completed);
    let sessions = app.realtime.sessions();
    assert_eq!(sessions.len(), 2);
    assert!(
        sessions[1]
            .client_events
            .iter()
            .any(|e| e == "conversation.item.create")
    );
    assert_eq!(
        sessions[1].said,
        vec![
            actors::call::conversation::RESUME_AFTER_CUT.to_owned(),
            "Sure, what is your order number?".to_owned()
        ]
    );
    let done = completion(&app, &id).await;
    assert_eq!(done["outcome"], "completed", "{done}");
    assert_eq!(done["end_reason"], "caller_hangup", "{done}");
    assert_eq!(done["session_ids"].as_array().map(Vec::len), Some(2));
    let first = app
        .tenant(
            Method::GET,
            &format!(
                "/api/v1/voice-sessions/{}",
                done["session_ids"][0].as_str().expect("id")
            ),
            &t.key,
        )
        .send()
        .await
        .expect("session")
        .json::<Value>()
        .await
        .expect("json");
    let second = app
        .tenant(
            Method::GET,
            &format!(
                "/api/v1/voice-sessions/{}",
                done["session_ids"][1].as_str().expect("id")
            ),
            &t.key,
        )
        .send()
        .await
        .expect("session")
        .json::<Value>()
        .await
        .expect("json");
    let (first, second) = if first["end_reason"] == "socket_error" {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(first["end_reason"], "socket_error", "{first}");
    assert_eq!(second["end_reason"], "caller_hangup", "{second}");
    let said: Vec<&str> = second["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .filter_map(|t| t["text"].as_str())
        .collect();
    assert_eq!(
        said,
        vec![
            actors::call::conversation::RESUME_AFTER_CUT,
            "I need help with my order",
            "Sure, what is your order number?"
        ],
        "{second}"
    );
    app.stop().await;
}

async fn an_ai_reset_reconnects_the_model_with_the_conversation(backend: Backend) {
    let (app, sim, t) = setup(backend, true).await;
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::say(
            "I need help with my order",
            "Sure, what is your order number?",
        )]));
    let mut live = app.state.actors.active.subscribe();
    let script = CallerScript::default()
        .silence(Duration::from_secs(3))
        .speak(Duration::from_millis(800), "I need help with my order")
        .silence(Duration::from_millis(2500))
        .hang_up();
    let (sid, id) = live_call(&app, &sim, &t, &mut live, "+15550000001", script).await;
    tokio::time::timeout(
        WAIT,
        app.realtime
            .wait_for(|s| s.first().is_some_and(|s| s.responses_completed >= 1)),
    )
    .await
    .expect("the greeting is complete");

    let resp = inject(&app, json!({"mode": "ai_reset", "call_ids": [id]})).await;
    assert_eq!(resp.status(), 200);
    // The model's socket was cut without a close frame; a new session gets the conversation.
    let sessions = tokio::time::timeout(
        WAIT,
        app.realtime.wait_for(|s| {
            s.len() == 2
                && s[0].ended.is_some()
                && s[1]
                    .client_events
                    .iter()
                    .any(|e| e == "conversation.item.create")
        }),
    )
    .await
    .expect("a second model session replaying the conversation");
    assert!(
        matches!(sessions[0].ended, Some(SessionEnd::Failed(_))),
        "no close frame: {:?}",
        sessions[0].ended
    );
    // The caller never noticed: one stream, the conversation goes on, and ends normally.
    let ended = tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("the caller hangs up");
    assert_eq!(ended.status, CallStatus::Completed);
    assert_eq!(ended.media.streams_opened, 1);
    let done = completion(&app, &id).await;
    assert_eq!(done["outcome"], "completed", "{done}");
    assert_eq!(done["end_reason"], "caller_hangup", "{done}");
    assert_eq!(done["session_ids"].as_array().map(Vec::len), Some(1));
    let session = app
        .tenant(
            Method::GET,
            &format!(
                "/api/v1/voice-sessions/{}",
                done["session_ids"][0].as_str().expect("id")
            ),
            &t.key,
        )
        .send()
        .await
        .expect("session")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(session["reconnects"], 1, "{session}");
    let said: Vec<&str> = session["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .filter_map(|t| t["text"].as_str())
        .collect();
    assert_eq!(
        said.last().copied(),
        Some("Sure, what is your order number?"),
        "{session}"
    );
    let log = app.call_log(&t.key, &id).await;
    assert!(
        log["events"].as_array().expect("events").iter().any(|e| {
            e["kind"] == "ai"
                && e["detail"]["event"] == "reconnect"
                && e["detail"]["reason"] == "reset by chaos hook"
        }),
        "{log}"
    );
    app.stop().await;
}

async fn half_of_four_live_calls_touches_exactly_two(backend: Backend) {
    let (app, sim, t) = setup(backend, true).await;
    let mut live = app.state.actors.active.subscribe();
    let mut calls = Vec::new();
    for from in [
        "+15550000001",
        "+15550000002",
        "+15550000003",
        "+15550000004",
    ] {
        calls.push(live_call(&app, &sim, &t, &mut live, from, hangs_up_after(6)).await);
    }
    let resp = inject(
        &app,
        json!({"mode": "kill", "percent": 50, "tenant_id": t.tenant_id}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["selected"], 2, "{body}");
    let touched: Vec<String> = body["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| c["call_id"].as_str().expect("call_id").to_owned())
        .collect();
    assert_eq!(touched.len(), 2);
    assert_ne!(touched[0], touched[1]);
    for (sid, id) in &calls {
        if touched.contains(id) {
            let done = completion(&app, id).await;
            assert_eq!(done["outcome"], "fallback", "{done}");
            assert_eq!(done["end_reason"], "actor_failed", "{done}");
            tokio::time::timeout(
                WAIT,
                sim.wait_for(sid, |c| {
                    c.events
                        .iter()
                        .any(|e| matches!(e, CallEvent::Dialed { .. }))
                }),
            )
            .await
            .expect("the carrier dials the fallback");
        } else {
            assert_finished_normally(&app, &sim, sid, id).await;
        }
    }
    assert_eq!(chaos_audit(&app).await.len(), 2);
    app.stop().await;
}
