//! Answering-machine actions of outbound calls against the carrier and realtime simulators:
//! a machine with `voicemail` gets the version's message after its beep and the call ends
//! (`voicemail_left`, not scored); `hangup` ends the call before the greeting is over; a
//! human gets the conversation; bad input is refused naming the field.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CallSnapshot, CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle,
};
use stateset_voice::sim::realtime::{RealtimeScript, RealtimeSimConfig, ScriptTurn};

use crate::helpers::{
    Backend, REALTIME_KEY, Tele, TestApp, backend_tests, expect_error, spawn_app_with_realtime,
};

backend_tests!(
    a_machine_gets_the_voicemail_after_the_beep,
    hangup_ends_a_machine_call_at_once,
    a_human_gets_the_conversation,
    machine_detection_is_validated,
    an_amd_result_signed_by_another_account_changes_nothing,
);

const WAIT: Duration = Duration::from_secs(30);
const NUMBER: &str = "+14155550180";
const MACHINE: &str = "+15557650001";
const HUMAN: &str = "+15557650002";
const MESSAGE: &str = "Hi, this is Acme about your order. Please call us back.";
const ASK: &str = "Is the shop open today?";
const GREETING: Duration = Duration::from_millis(1500);

async fn setup(backend: Backend) -> (TestApp, CarrierSimHandle, Tele) {
    let sim = CarrierSim::start(CarrierConfig {
        amd_duration: Duration::from_millis(50),
        machine_greeting: GREETING,
        ..CarrierConfig::default()
    })
    .await
    .expect("carrier sim");
    let base = sim.base_url();
    let realtime = RealtimeSimConfig {
        ms_per_char: 20,
        ..RealtimeSimConfig::with_api_key(REALTIME_KEY).with_script(RealtimeScript::new(vec![
            ScriptTurn::say(ASK, "Yes, we are open until five."),
        ]))
    };
    let app = spawn_app_with_realtime(backend, realtime, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base);
        raw.set("JUDGE_SUMMARIES", "false");
    })
    .await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    // A machine plays its greeting, then listens; it never hangs up by itself.
    sim.set_answered_by(MACHINE, "machine_end_beep");
    sim.set_callee_script(
        MACHINE,
        CallerScript::default()
            .speak(
                GREETING,
                "You have reached Sam, leave a message after the beep.",
            )
            .silence(Duration::from_secs(20)),
    );
    (app, sim, t)
}

/// An approved version with a voicemail message and a rubric that needs a conversation.
async fn voicemail_version(app: &TestApp, t: &Tele) -> String {
    app.approve_version(
        t,
        json!({
            "voicemail_message": MESSAGE,
            "rubric": {"pass_score": 0.7, "criteria": [
                {"key": "greeting", "kind": "required_phrase", "pattern": "thanks for calling", "critical": true},
                {"key": "short", "kind": "max_duration_s", "max_seconds": 120}
            ]},
        }),
    )
    .await
}

async fn make_call(app: &TestApp, t: &Tele, body: Value) -> reqwest::Response {
    app.tenant(Method::POST, "/api/v1/make-call", &t.key)
        .json(&body)
        .send()
        .await
        .expect("make-call")
}

/// Places a call and returns its SID once the carrier accepted it.
async fn placed(app: &TestApp, t: &Tele, body: Value) -> String {
    let resp = make_call(app, t, body).await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.expect("json");
    body["call_sid"].as_str().expect("sid").to_owned()
}

async fn ended(sim: &CarrierSimHandle, sid: &str) -> CallSnapshot {
    tokio::time::timeout(WAIT, sim.wait_ended(sid))
        .await
        .expect("the call ends")
}

/// Polls the call log until the call is complete.
async fn completed_log(app: &TestApp, t: &Tele, sid: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = app.call_log(&t.key, sid).await;
        if !log["completed_at"].is_null() {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never completed: {log}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The one `voice.call.completed` of a call.
async fn completed_event(app: &TestApp, call_id: &str) -> Value {
    let events = app.completed_events(call_id).await;
    assert_eq!(events.len(), 1, "one voice.call.completed: {events:?}");
    events.into_iter().next().expect("event")
}

fn create_params(sim: &CarrierSimHandle, to: &str) -> Vec<(String, String)> {
    sim.requests()
        .into_iter()
        .find(|r| {
            r.path.ends_with("/Calls.json")
                && r.method == "POST"
                && r.params.contains(&("To".into(), to.into()))
        })
        .expect("create")
        .params
}

fn amd_event(log: &Value) -> Value {
    log["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["kind"] == "amd")
        .cloned()
        .unwrap_or_else(|| panic!("an amd event: {log}"))
}

/// Polls the call's voice session until it shows an evaluation.
async fn evaluation_of(app: &TestApp, t: &Tele, sid: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let session = app.voice_session_of(&t.key, sid).await;
        if !session["evaluation"].is_null() {
            return session["evaluation"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never evaluated: {session}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn a_machine_gets_the_voicemail_after_the_beep(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    let version = voicemail_version(&app, &t).await;
    let sid = placed(
        &app,
        &t,
        json!({"to": MACHINE, "agent_version_id": version,
               "machine_detection": {"action": "voicemail", "timeout_seconds": 20}}),
    )
    .await;
    let params = create_params(&sim, MACHINE);
    assert!(params.contains(&("MachineDetection".into(), "DetectMessageEnd".into())));
    assert!(params.contains(&("MachineDetectionTimeout".into(), "20".into())));
    assert!(params.contains(&("AsyncAmd".into(), "true".into())));

    let call = ended(&sim, &sid).await;
    assert_eq!(call.answered_by.as_deref(), Some("machine_end_beep"));
    let machine = call.machine.as_ref().expect("a machine answered");
    // The message was played once, after the beep, and nothing else was recorded as said.
    assert_eq!(machine.recorded.len(), 1, "{machine:?}");
    assert_eq!(machine.recorded[0].0, MESSAGE);
    assert!(machine.before_beep.is_empty(), "{machine:?}");
    assert_eq!(call.said, vec![MESSAGE.to_owned()]);
    assert!(call.ended_at.expect("ended") >= machine.beep_at);

    let log = completed_log(&app, &t, &sid).await;
    assert_eq!(log["answered_by"], "machine_end_beep");
    assert_eq!(log["amd_action"], "voicemail");
    assert_eq!(log["machine_outcome"], "voicemail_left");
    assert_eq!(log["end_reason"], "answering_machine");
    let amd = amd_event(&log);
    assert_eq!(amd["detail"]["decision"], "leave_voicemail", "{amd}");
    let call_id = log["id"].as_str().expect("id");
    let done = completed_event(&app, call_id).await;
    assert_eq!(done["machine_outcome"], "voicemail_left");
    assert_eq!(done["answered_by"], "machine_end_beep");
    assert_eq!(done["end_reason"], "answering_machine");

    // The agent's greeting waited for the AMD result and was never said to the machine.
    let session = app.voice_session_of(&t.key, &sid).await;
    assert!(
        !session["transcript"]
            .as_array()
            .expect("transcript")
            .iter()
            .any(|turn| turn["text"]
                .as_str()
                .is_some_and(|s| s.contains("thanks for calling"))),
        "{session}"
    );

    // Nobody to talk to: nothing of the rubric applies.
    let evaluation = evaluation_of(&app, &t, &sid).await;
    let criteria = evaluation["criteria"].as_array().expect("criteria");
    assert_eq!(criteria.len(), 2, "{evaluation}");
    assert!(
        criteria.iter().all(|c| c["verdict"] == "not_applicable"),
        "{evaluation}"
    );
    app.stop().await;
}

async fn hangup_ends_a_machine_call_at_once(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    let sid = placed(
        &app,
        &t,
        json!({"to": MACHINE, "machine_detection": {"action": "hangup"}}),
    )
    .await;
    let params = create_params(&sim, MACHINE);
    assert!(params.contains(&("MachineDetection".into(), "Enable".into())));
    assert!(!params.iter().any(|(k, _)| k == "MachineDetectionTimeout"));

    let call = ended(&sim, &sid).await;
    assert_eq!(call.answered_by.as_deref(), Some("machine_start"));
    let machine = call.machine.as_ref().expect("a machine answered");
    // Hung up while the greeting still played: nothing said, nothing recorded.
    assert!(
        call.ended_at.expect("ended") < machine.beep_at,
        "{machine:?}"
    );
    assert!(machine.recorded.is_empty() && call.said.is_empty());

    let log = completed_log(&app, &t, &sid).await;
    assert_eq!(log["machine_outcome"], "hung_up_on_machine");
    assert_eq!(log["end_reason"], "answering_machine");
    assert_eq!(amd_event(&log)["detail"]["decision"], "hang_up");
    let done = completed_event(&app, log["id"].as_str().expect("id")).await;
    assert_eq!(done["machine_outcome"], "hung_up_on_machine");
    app.stop().await;
}

async fn a_human_gets_the_conversation(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    let version = voicemail_version(&app, &t).await;
    sim.set_callee_script(
        HUMAN,
        CallerScript::default()
            .silence(Duration::from_millis(1500))
            .speak(Duration::from_millis(800), ASK)
            .silence(Duration::from_millis(2500))
            .hang_up(),
    );
    let sid = placed(
        &app,
        &t,
        json!({"to": HUMAN, "agent_version_id": version,
               "machine_detection": {"action": "voicemail"}}),
    )
    .await;
    let call = ended(&sim, &sid).await;
    assert_eq!(call.answered_by.as_deref(), Some("human"));
    assert!(call.machine.is_none());
    assert!(call.said.is_empty(), "no voicemail for a human");

    let log = completed_log(&app, &t, &sid).await;
    assert_eq!(log["machine_outcome"], "conversation");
    assert_eq!(log["answered_by"], "human");
    assert_ne!(log["end_reason"], "answering_machine");
    assert_eq!(amd_event(&log)["detail"]["decision"], "converse");
    // The greeting, released by the AMD result, then the conversation.
    let session = app.voice_session_of(&t.key, &sid).await;
    let transcript = session["transcript"].as_array().expect("transcript");
    let says = |text: &str| {
        transcript
            .iter()
            .any(|turn| turn["text"].as_str().is_some_and(|s| s.contains(text)))
    };
    assert!(says("thanks for calling"), "greeted: {session}");
    assert!(
        says("open until five"),
        "the conversation went on: {session}"
    );
    let done = completed_event(&app, log["id"].as_str().expect("id")).await;
    assert_eq!(done["machine_outcome"], "conversation");
    app.stop().await;
}

async fn machine_detection_is_validated(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    for (body, field) in [
        (json!({"action": "shout"}), "machine_detection.action"),
        (json!({}), "machine_detection.action"),
        (
            json!({"action": "hangup", "timeout_seconds": 2}),
            "machine_detection.timeout_seconds",
        ),
        (
            json!({"action": "hangup", "timeout_seconds": 61}),
            "machine_detection.timeout_seconds",
        ),
        (
            json!({"action": "hangup", "timeout_seconds": "ten"}),
            "machine_detection.timeout_seconds",
        ),
        (
            json!({"action": "hangup", "beep": true}),
            "machine_detection.beep",
        ),
        (json!("maybe"), "machine_detection"),
        (json!(3), "machine_detection"),
        // The tenant's current version has no voicemail message.
        (json!({"action": "voicemail"}), "machine_detection.action"),
    ] {
        let resp = make_call(&app, &t, json!({"to": HUMAN, "machine_detection": body})).await;
        let error = expect_error(resp, 422, "validation_failed").await;
        assert_eq!(error["field"], field, "{body}: {error}");
    }
    // A version's voicemail message is checked like any text.
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
    let agent = agents["data"][0]["id"].as_str().expect("agent");
    let resp = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/agents/{agent}/versions"),
        )
        .json(&json!({"instructions": "Help.", "voicemail_message": "  "}))
        .send()
        .await
        .expect("version");
    assert_eq!(
        expect_error(resp, 422, "validation_failed").await["field"],
        "voicemail_message"
    );
    assert!(
        !sim.requests()
            .iter()
            .any(|r| r.path.ends_with("/Calls.json")),
        "nothing was dialed"
    );
    // The legacy mode strings still work (the result recorded, the conversation goes on).
    let sid = placed(
        &app,
        &t,
        json!({"to": HUMAN, "machine_detection": "detect_message_end"}),
    )
    .await;
    let params = create_params(&sim, HUMAN);
    assert!(params.contains(&("MachineDetection".into(), "DetectMessageEnd".into())));
    let resp = app
        .tenant(Method::POST, &format!("/api/v1/calls/{sid}/hangup"), &t.key)
        .send()
        .await
        .expect("hangup");
    assert!(resp.status().is_success());
    let log = completed_log(&app, &t, &sid).await;
    assert_eq!(log["amd_action"], "continue");
    app.stop().await;
}

async fn an_amd_result_signed_by_another_account_changes_nothing(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    let other = app
        .telephony_tenant("Other", "+14155550181", json!({}))
        .await;
    sim.set_callee_script(
        HUMAN,
        CallerScript::default()
            .silence(Duration::from_secs(3))
            .hang_up(),
    );
    let sid = placed(
        &app,
        &t,
        json!({"to": HUMAN, "machine_detection": {"action": "hangup"}}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let log = loop {
        let log = app.call_log(&t.key, &sid).await;
        if log["machine_outcome"] == "conversation" {
            break log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no AMD result: {log}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let call_id = log["id"].as_str().expect("id").to_owned();
    // Another tenant's account signs a machine result about this call: nothing changes.
    let resp = app
        .twilio_post(
            &format!("/api/v1/amd-status?call_id={call_id}"),
            &[
                ("AccountSid", other.account_sid.as_str()),
                ("CallSid", sid.as_str()),
                ("AnsweredBy", "machine_start"),
            ],
            &other.auth_token,
        )
        .await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let call = ended(&sim, &sid).await;
    assert_eq!(call.answered_by.as_deref(), Some("human"));
    let log = completed_log(&app, &t, &sid).await;
    assert_eq!(log["answered_by"], "human");
    assert_eq!(log["machine_outcome"], "conversation");
    assert_ne!(log["end_reason"], "answering_machine");
    app.stop().await;
}
