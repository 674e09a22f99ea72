//! Live calls end to end: the carrier simulator's caller, the media stream, the call actor,
//! and the realtime simulator as the model. Transcripts, records, barge-in accounting, and
//! a call actor crashing while others go on.

use std::time::Duration;

use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CallEvent, CallSnapshot, CallStatus, CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle,
    InboundCall,
};
use stateset_voice::sim::realtime::{RealtimeScript, ScriptTurn};

use crate::helpers::{Backend, Tele, TestApp, backend_tests, spawn_app_with};

backend_tests!(
    full_inbound_conversation_is_recorded,
    a_crashed_call_actor_leaves_other_calls_untouched,
    a_killed_call_actor_is_recorded_by_its_supervisor,
    a_tenant_realtime_key_overrides_the_global_one,
);

const WAIT: Duration = Duration::from_secs(30);

async fn setup(backend: Backend) -> (TestApp, CarrierSimHandle, Tele) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let app = spawn_app_with(backend, move |raw| raw.set("TWILIO_API_BASE_URL", base)).await;
    let t = app
        .telephony_tenant("Acme", "+14155550100", json!({"max_concurrent_calls": 50}))
        .await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    (app, sim, t)
}

fn call(
    app: &TestApp,
    sim: &CarrierSimHandle,
    t: &Tele,
    from: &str,
    script: CallerScript,
) -> String {
    sim.place_inbound_call(InboundCall {
        account_sid: t.account_sid.clone(),
        from: from.into(),
        to: "+14155550100".into(),
        voice_url: app.url("/api/v1/incoming-call"),
        status_callback: Some(app.url("/api/v1/call-status")),
        status_callback_events: vec![],
        script,
    })
    .expect("place call")
}

async fn session_of(app: &TestApp, t: &Tele, call_sid: &str) -> Value {
    let log = app.call_log(&t.key, call_sid).await;
    let call_id = log["id"].as_str().expect("id").to_owned();
    let list: Value = app
        .tenant(reqwest::Method::GET, "/api/v1/voice-sessions", &t.key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let id = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|s| s["call_id"] == call_id.as_str())
        .and_then(|s| s["id"].as_str())
        .expect("a voice session for the call")
        .to_owned();
    app.tenant(
        reqwest::Method::GET,
        &format!("/api/v1/voice-sessions/{id}"),
        &t.key,
    )
    .send()
    .await
    .expect("get")
    .json()
    .await
    .expect("json")
}

/// Waits until the call with this SID has a live call actor.
async fn went_live(
    live: &mut tokio::sync::broadcast::Receiver<actors::active::ActiveEvent>,
    call_sid: &str,
) {
    tokio::time::timeout(WAIT, async {
        loop {
            match live.recv().await {
                Ok(actors::active::ActiveEvent::Started(c)) if c.call_sid == call_sid => break,
                Ok(_) => continue,
                Err(e) => panic!("active feed: {e}"),
            }
        }
    })
    .await
    .expect("the call goes live");
}

/// Waits until the carrier dialed the route's fallback for the call; returns it.
async fn fallback_dialed(sim: &CarrierSimHandle, call_sid: &str) -> CallSnapshot {
    tokio::time::timeout(
        WAIT,
        sim.wait_for(call_sid, |c| {
            c.events
                .iter()
                .any(|e| matches!(e, CallEvent::Dialed { .. }))
        }),
    )
    .await
    .expect("fallback dialed")
}

async fn full_inbound_conversation_is_recorded(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    let mut live = app.state.actors.active.subscribe();
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::say(
            "I need help with my order",
            "Sure, what is your order number?",
        )]));
    let script = CallerScript::default()
        .silence(Duration::from_millis(1500))
        .speak(Duration::from_millis(800), "I need help with my order")
        .silence(Duration::from_millis(2500))
        .hang_up();
    let sid = call(&app, &sim, &t, "+15551230000", script);
    let ended = tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("call ends");
    assert_eq!(ended.status, CallStatus::Completed);
    assert!(
        ended.media.media_received > 0,
        "the caller heard the agent: {:?}",
        ended.media
    );
    assert!(ended.media.marks_echoed > 0);
    let session = session_of(&app, &t, &sid).await;
    assert_eq!(session["status"], "completed");
    assert_eq!(session["end_reason"], "caller_hangup");
    assert!(session["first_audio_ms"].as_i64().is_some());
    assert!(session["usage"]["total_tokens"].as_i64().expect("tokens") > 0);
    let turns: Vec<(String, String)> = session["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .map(|t| {
            (
                t["role"].as_str().expect("role").to_owned(),
                t["text"].as_str().expect("text").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        turns,
        vec![
            (
                "assistant".to_owned(),
                "Hello, thanks for calling.".to_owned()
            ),
            ("user".to_owned(), "I need help with my order".to_owned()),
            (
                "assistant".to_owned(),
                "Sure, what is your order number?".to_owned()
            ),
        ],
        "{session}"
    );
    let log = app.call_log(&t.key, &sid).await;
    assert_eq!(log["end_reason"], "caller_hangup");
    assert_eq!(log["stream_status"], "stopped");
    // One voice.call.completed, written after the last record of the conversation.
    let done = crate::live::completed_once(&app, &mut live, log["id"].as_str().expect("id")).await;
    assert_eq!(done["outcome"], "completed", "{done}");
    assert_eq!(done["end_reason"], "caller_hangup");
    assert_eq!(done["transcript_turns"], 3);
    assert_eq!(done["function_calls"], 0);
    assert_eq!(done["session_ids"].as_array().map(Vec::len), Some(1));
    app.stop().await;
}

async fn a_crashed_call_actor_leaves_other_calls_untouched(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    let mut live = app.state.actors.active.subscribe();
    let victim = call(
        &app,
        &sim,
        &t,
        "+15551230001",
        CallerScript::default().silence(Duration::from_secs(20)),
    );
    let survivor = call(
        &app,
        &sim,
        &t,
        "+15551230002",
        CallerScript::default()
            .silence(Duration::from_secs(3))
            .hang_up(),
    );
    // Wait until the victim's call actor is live (it registers as call:{CallSid}).
    went_live(&mut live, &victim).await;
    let actor =
        ractor::registry::where_is(format!("call:{victim}")).expect("registered call actor");
    ractor::ActorRef::<actors::call::CallMsg>::from(actor)
        .cast(actors::call::CallMsg::Crash)
        .expect("cast");
    // The crashed call goes to the route's fallback (the human number), through the carrier.
    let victim_call = fallback_dialed(&sim, &victim).await;
    let dialed = victim_call.events.iter().find_map(|e| match e {
        CallEvent::Dialed { numbers, .. } => Some(numbers.clone()),
        _ => None,
    });
    assert_eq!(dialed, Some(vec!["+15550009999".to_owned()]));
    assert!(
        victim_call
            .said
            .contains(&"Connecting you to our team.".to_owned())
    );
    let survivor_call = tokio::time::timeout(WAIT, sim.wait_ended(&survivor))
        .await
        .expect("survivor ends");
    assert_eq!(survivor_call.status, CallStatus::Completed);
    let log = app.call_log(&t.key, &victim).await;
    assert_eq!(log["end_reason"], "actor_failed", "{log}");
    assert!(
        log["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["detail"]["event"] == "call_actor_failed"),
        "{log}"
    );
    let session = session_of(&app, &t, &victim).await;
    assert_eq!(session["status"], "failed");
    assert_eq!(session["end_reason"], "actor_failed");
    // One recorder, one completion: the supervisor's, with the panic as its detail.
    let completed = crate::live::completed_events(&app, log["id"].as_str().expect("id")).await;
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0]["outcome"], "fallback");
    assert_eq!(completed[0]["end_reason"], "actor_failed");
    assert!(
        completed[0]["end_detail"]
            .as_str()
            .is_some_and(|d| d.contains("chaos hook")),
        "{completed:?}"
    );
    let ok = session_of(&app, &t, &survivor).await;
    assert_eq!(ok["status"], "completed");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("actor_failures_total{actor=\"call\"}"));
    app.stop().await;
}

async fn a_killed_call_actor_is_recorded_by_its_supervisor(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    let mut live = app.state.actors.active.subscribe();
    let before = app.metrics().await;
    let victim = call(
        &app,
        &sim,
        &t,
        "+15551230005",
        CallerScript::default().silence(Duration::from_secs(20)),
    );
    went_live(&mut live, &victim).await;
    // Killed, not panicked: the actor runs no more code (no `post_stop`, no handler).
    let actor =
        ractor::registry::where_is(format!("call:{victim}")).expect("registered call actor");
    actor.kill();
    // The supervisor records it like a failure: the caller goes to the route's fallback.
    let victim_call = fallback_dialed(&sim, &victim).await;
    assert!(
        victim_call
            .said
            .contains(&"Connecting you to our team.".to_owned())
    );
    let log = app.call_log(&t.key, &victim).await;
    assert_eq!(log["end_reason"], "actor_failed", "{log}");
    let session = session_of(&app, &t, &victim).await;
    assert_eq!(session["status"], "failed", "{session}");
    assert_eq!(session["end_reason"], "actor_failed");
    let completed = crate::live::completed_events(&app, log["id"].as_str().expect("id")).await;
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0]["outcome"], "fallback");
    assert_eq!(completed[0]["end_detail"], "killed");
    let after = app.metrics().await;
    let failures =
        |m: &str| crate::helpers::metric(m, "actor_failures_total", &[("actor", "call")]);
    // Counted (other tests of the binary may add theirs concurrently).
    assert!(failures(&after) - failures(&before) >= 1.0, "{after}");
    app.stop().await;
}

async fn a_tenant_realtime_key_overrides_the_global_one(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    // A tenant key the model service refuses: its calls cannot reach the model and go to the
    // route's human fallback, while the global key (accepted) is not used for them.
    let resp = app
        .admin(
            reqwest::Method::PUT,
            &format!("/api/v1/admin/tenants/{}/openai-key", t.tenant_id),
        )
        .json(&json!({"api_key": "sk-not-accepted-by-the-service"}))
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 200);
    let sid = call(
        &app,
        &sim,
        &t,
        "+15551230003",
        CallerScript::default().silence(Duration::from_secs(10)),
    );
    let refused = tokio::time::timeout(
        WAIT,
        sim.wait_for(&sid, |c| {
            c.events
                .iter()
                .any(|e| matches!(e, CallEvent::Dialed { .. }))
        }),
    )
    .await
    .expect("fallback dialed");
    assert!(
        refused
            .said
            .contains(&"Connecting you to our team.".to_owned())
    );
    assert!(
        app.realtime.sessions().is_empty(),
        "no session opened with the refused key"
    );
    let log = app.call_log(&t.key, &sid).await;
    assert_eq!(log["end_reason"], "ai_failed", "{log}");
    let record = app
        .state
        .store
        .get_call_by_id(&actors::ids::CallId::from_stored(
            log["id"].as_str().expect("id").to_owned(),
        ))
        .await
        .expect("read")
        .expect("call");
    assert!(
        record
            .end_detail
            .as_deref()
            .is_some_and(|d| d.contains("connect failed")),
        "{record:?}"
    );
    // Cleared, the tenant's calls use the global key again.
    app.admin(
        reqwest::Method::DELETE,
        &format!("/api/v1/admin/tenants/{}/openai-key", t.tenant_id),
    )
    .send()
    .await
    .expect("delete");
    let sid = call(
        &app,
        &sim,
        &t,
        "+15551230004",
        CallerScript::default()
            .silence(Duration::from_millis(1500))
            .hang_up(),
    );
    let ok = tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("ends");
    assert_eq!(ok.status, CallStatus::Completed);
    assert_eq!(app.realtime.sessions().len(), 1);
    app.stop().await;
}
