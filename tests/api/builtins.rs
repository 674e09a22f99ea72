//! Built-in tools and queue outcomes in live calls, over real sockets: the follow-up SMS and
//! callback-task built-ins, an intent the model reports escalating to a queue whose operator
//! answers, and a queue whose unanswered callers get its voicemail message. (Tools, identity,
//! the other rules and the other queue outcomes are in `tools.rs`.)
//!
//! Tests await simulator snapshots (`wait_ended`) under a timeout; nothing sleeps.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle, InboundCall, OperatorBehaviour,
};
use stateset_voice::sim::realtime::{RealtimeScript, RealtimeSimConfig, ScriptTurn};

use crate::helpers::{
    Backend, REALTIME_KEY, Tele, TestApp, backend_tests, spawn_app_with_realtime,
};

backend_tests!(
    followup_sms_and_callback_task_builtins_act_for_the_caller,
    a_reported_intent_escalates_to_its_queue_and_an_answer_bridges_the_call,
    an_unanswered_queue_with_voicemail_plays_its_message,
);

const WAIT: Duration = Duration::from_secs(45);
const NUMBER: &str = "+14155550170";
const CALLER: &str = "+15557650001";

async fn setup(backend: Backend, script: RealtimeScript) -> (TestApp, CarrierSimHandle, Tele) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let realtime = RealtimeSimConfig {
        ms_per_char: 20,
        ..RealtimeSimConfig::with_api_key(REALTIME_KEY).with_script(script)
    };
    let app = spawn_app_with_realtime(backend, realtime, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base)
    })
    .await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    (app, sim, t)
}

fn call_in(app: &TestApp, sim: &CarrierSimHandle, t: &Tele, script: CallerScript) -> String {
    sim.place_inbound_call(InboundCall {
        account_sid: t.account_sid.clone(),
        from: CALLER.into(),
        to: NUMBER.into(),
        voice_url: app.url("/api/v1/incoming-call"),
        status_callback: Some(app.url("/api/v1/call-status")),
        status_callback_events: vec![],
        script,
    })
    .expect("place call")
}

fn builtin(name: &str) -> Value {
    json!({"name": name, "type": "builtin"})
}

async fn get(app: &TestApp, t: &Tele, path: &str) -> Value {
    let resp = app
        .tenant(Method::GET, path, &t.key)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.expect("json")
}

async fn followup_sms_and_callback_task_builtins_act_for_the_caller(backend: Backend) {
    let (app, sim, t) = setup(
        backend,
        RealtimeScript::new(vec![
            ScriptTurn::call_tool(
                "Can you text me the address?",
                "send_followup_sms",
                json!({"body": "Acme, 1 Main St. See you Tuesday!"}),
                "I've texted you the address.",
            ),
            ScriptTurn::call_tool(
                "Please have someone call me about a quote.",
                "create_callback_task",
                json!({"reason": "wants a quote for a crown", "due_at": "2030-01-02T15:00:00Z"}),
                "A colleague will call you back.",
            ),
        ]),
    )
    .await;
    app.approve_version(
        &t,
        json!({"tools": [builtin("send_followup_sms"), builtin("create_callback_task")]}),
    )
    .await;
    let sid = call_in(
        &app,
        &sim,
        &t,
        CallerScript::default()
            .silence(Duration::from_millis(1500))
            .speak(Duration::from_millis(800), "Can you text me the address?")
            .silence(Duration::from_millis(2500))
            .speak(
                Duration::from_millis(800),
                "Please have someone call me about a quote.",
            )
            .silence(Duration::from_millis(2500))
            .hang_up(),
    );
    tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("the call ends");

    // The SMS went to the caller, from the number they called.
    let messages = sim.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].to, CALLER);
    assert_eq!(messages[0].from, NUMBER);
    assert_eq!(messages[0].body, "Acme, 1 Main St. See you Tuesday!");

    // The callback task belongs to the call, for the caller's number, due when asked.
    let log = app.call_log(&t.key, &sid).await;
    let call_id = log["id"].as_str().expect("id").to_owned();
    let tasks = get(&app, &t, "/api/v1/callback-tasks").await;
    assert_eq!(tasks["total"], 1, "{tasks}");
    let task = &tasks["data"][0];
    assert_eq!(task["created_by"], "tool");
    assert_eq!(task["phone"], CALLER);
    assert_eq!(task["source_call_id"], call_id.as_str());
    assert_eq!(task["reason"], "wants a quote for a crown");
    assert!(
        task["due_at"]
            .as_str()
            .is_some_and(|d| d.starts_with("2030-01-02T15:00:00")),
        "{task}"
    );

    // Both invocations are recorded with their results, and the SMS event is in the log.
    let session = app.voice_session_of(&t.key, &sid).await;
    let calls = session["function_calls"]
        .as_array()
        .expect("function calls");
    let summary: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name"),
                c["status"].as_str().expect("status"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("send_followup_sms", "succeeded"),
            ("create_callback_task", "succeeded")
        ],
        "{session}"
    );
    assert_eq!(calls[0]["result"]["message_sid"], messages[0].sid.as_str());
    assert_eq!(calls[1]["result"]["task_id"], task["id"]);
    assert!(
        log["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "sms" && e["detail"]["to"] == CALLER),
        "{log}"
    );
}

async fn a_reported_intent_escalates_to_its_queue_and_an_answer_bridges_the_call(backend: Backend) {
    let operator = "+15550007001";
    let (app, sim, t) = setup(
        backend,
        RealtimeScript::new(vec![ScriptTurn::call_tool(
            "I want to cancel my membership.",
            "report_intent",
            json!({"intent": "cancel_account"}),
            "Let me connect you with our retention team.",
        )]),
    )
    .await;
    sim.set_operator(
        operator,
        OperatorBehaviour::Answer {
            answer_after: Duration::from_millis(100),
            talk: Duration::from_millis(300),
        },
    );
    let resp = app
        .tenant(Method::POST, "/api/v1/operator-queues", &t.key)
        .json(
            &json!({"name": "retention", "numbers": [operator], "ring_timeout_seconds": 10,
            "when_closed": "callback_task", "when_unanswered": "callback_task"}),
        )
        .send()
        .await
        .expect("queue");
    assert_eq!(resp.status(), 201);
    app.approve_version(&t,
        json!({
            "tools": [builtin("report_intent")],
            "escalation": {"rules": [{"kind": "intent", "intents": ["cancel_account"], "queue": "retention"}]}
        }),
    )
    .await;
    let sid = call_in(
        &app,
        &sim,
        &t,
        CallerScript::default()
            .silence(Duration::from_millis(1500))
            .speak(
                Duration::from_millis(800),
                "I want to cancel my membership.",
            )
            .silence(Duration::from_millis(15_000))
            .hang_up(),
    );
    let ended = tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("the call ends");
    // The carrier dialed the queue's number with the dial-result action.
    assert!(
        format!("{ended:?}").contains(operator),
        "the queue was dialed: {ended:?}"
    );
    let log = app.call_log(&t.key, &sid).await;
    assert_eq!(log["end_reason"], "escalated", "{log}");
    let target = log["escalated_to"].as_str().expect("escalated_to");
    assert!(target.starts_with("queue:retention/CA"), "{target}");
    let session = app.voice_session_of(&t.key, &sid).await;
    let handoff = &session["handoffs"][0];
    assert_eq!(handoff["rule"], "intent:cancel_account", "{session}");
    assert_eq!(handoff["status"], "answered");
    assert_eq!(handoff["outcome"], "bridged");
    assert_eq!(handoff["context"]["caller"], CALLER);
    assert!(
        handoff["context"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("cancel my membership")),
        "{handoff}"
    );
    // No callback task: a human took the call.
    let tasks = get(&app, &t, "/api/v1/callback-tasks").await;
    assert_eq!(tasks["total"], 0);
}

async fn an_unanswered_queue_with_voicemail_plays_its_message(backend: Backend) {
    let operator = "+15550007003";
    let message = "Our team is busy. Please call again after five.";
    let (app, sim, t) = setup(
        backend,
        RealtimeScript::new(vec![ScriptTurn::call_tool(
            "I need a person.",
            "transfer_to_human",
            json!({"reason": "asked for a person"}),
            "One moment, I'm transferring you.",
        )]),
    )
    .await;
    sim.set_operator(operator, OperatorBehaviour::Busy);
    let resp = app
        .tenant(Method::POST, "/api/v1/operator-queues", &t.key)
        .json(&json!({"name": "front", "numbers": [operator], "ring_timeout_seconds": 10,
            "when_closed": "voicemail", "when_unanswered": "voicemail", "voicemail_message": message}))
        .send()
        .await
        .expect("queue");
    assert_eq!(resp.status(), 201);
    app.approve_version(
        &t,
        json!({"tools": [builtin("transfer_to_human")], "escalation": {"default_queue": "front"}}),
    )
    .await;
    let mut live = app.state.actors.active.subscribe();
    let sid = call_in(
        &app,
        &sim,
        &t,
        CallerScript::default()
            .silence(Duration::from_millis(1500))
            .speak(Duration::from_millis(800), "I need a person.")
            .silence(Duration::from_millis(15_000))
            .hang_up(),
    );
    let ended = tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("the call ends");
    assert!(
        ended.said.iter().any(|s| s == message),
        "the queue's message was played: {:?}",
        ended.said
    );
    let session = app.voice_session_of(&t.key, &sid).await;
    let handoff = &session["handoffs"][0];
    assert_eq!(handoff["queue"], "front", "{session}");
    assert_eq!(handoff["status"], "unanswered");
    assert_eq!(handoff["outcome"], "voicemail");
    let tasks = get(&app, &t, "/api/v1/callback-tasks").await;
    assert_eq!(tasks["total"], 0, "voicemail, not a callback task");
    let call_id = session["call_id"].as_str().expect("call id");
    let done = crate::live::completed_once(&app, &mut live, call_id).await;
    assert_eq!(done["outcome"], "escalated", "{done}");
    assert_eq!(done["end_reason"], "escalation_voicemail");
}
