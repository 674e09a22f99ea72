//! Every way a call ends at the telephony edge produces exactly one `voice.call.completed`
//! (issue 9, bug 3): refused at admission, busy and no-answer outbound calls, a stream that
//! never started (the fallback), a handoff answered or not — and none while the call goes
//! on (back to the agent on a fresh stream). Repeated callbacks complete nothing twice.

use std::time::Duration;

use actors::ids::{CallId, HandoffId};
use actors::store::Handoff;
use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{CalleeBehaviour, CarrierConfig, CarrierSim};
use stateset_voice::twilio::twiml::{self, Verb};

use crate::helpers::{Backend, Tele, TestApp, backend_tests, spawn_app, spawn_app_with};

backend_tests!(
    refused_calls_complete_once_at_admission,
    busy_and_unanswered_outbound_calls_complete_once,
    a_stream_that_never_started_completes_once_with_the_fallback,
    handoff_results_complete_once_unless_the_caller_goes_back_to_the_agent,
);

const WAIT: Duration = Duration::from_secs(20);
const NUMBER: &str = "+14155550100";

async fn call_id_of(app: &TestApp, t: &Tele, sid: &str) -> String {
    app.call_log(&t.key, sid).await["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// The one `voice.call.completed` of a call.
async fn completed_once(app: &TestApp, call_id: &str) -> Value {
    let events = app.completed_events(call_id).await;
    assert_eq!(events.len(), 1, "one voice.call.completed: {events:?}");
    events.into_iter().next().expect("event")
}

async fn post(app: &TestApp, t: &Tele, path: &str, params: &[(&str, &str)]) -> reqwest::Response {
    let mut all = vec![("AccountSid", t.account_sid.as_str())];
    all.extend_from_slice(params);
    app.twilio_post(path, &all, &t.auth_token).await
}

async fn refused_calls_complete_once_at_admission(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app
        .telephony_tenant(
            "Acme",
            NUMBER,
            json!({"max_concurrent_calls": 1, "over_limit": "busy"}),
        )
        .await;
    let (first, _) = app.inbound(&t, "+15551230000", NUMBER).await;
    let (busy, xml) = app.inbound(&t, "+15551230001", NUMBER).await;
    assert!(xml.contains("<Reject"), "{xml}");
    let busy_id = call_id_of(&app, &t, &busy).await;
    let event = completed_once(&app, &busy_id).await;
    assert_eq!(event["outcome"], "refused");
    assert_eq!(event["end_reason"], "route_at_limit");
    assert_eq!(event["direction"], "inbound");
    let log = app.call_log(&t.key, &busy).await;
    assert_eq!(log["outcome"], "refused", "{log}");
    assert!(log["completed_at"].is_string(), "{log}");
    // The carrier's final callback for the rejected call completes nothing twice.
    let resp = post(
        &app,
        &t,
        &format!("/api/v1/call-status?call_id={busy_id}"),
        &[
            ("CallSid", &busy),
            ("CallStatus", "busy"),
            ("SequenceNumber", "1"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 204);
    completed_once(&app, &busy_id).await;
    // The admitted call is still going: nothing completed.
    let first_id = call_id_of(&app, &t, &first).await;
    assert!(app.completed_events(&first_id).await.is_empty());

    // A staged route refuses strangers: completed once, refused.
    app.admin(
        Method::PATCH,
        &format!("/api/v1/admin/phone-routes/{}", t.route_id),
    )
    .json(&json!({"status": "staged", "max_concurrent_calls": 10}))
    .send()
    .await
    .expect("patch");
    let (stranger, xml) = app.inbound(&t, "+15550100999", NUMBER).await;
    assert!(!xml.contains("<Connect"), "{xml}");
    let stranger_id = call_id_of(&app, &t, &stranger).await;
    let event = completed_once(&app, &stranger_id).await;
    assert_eq!(event["outcome"], "refused");
    assert_eq!(event["end_reason"], "route_staged");
    app.stop().await;
}

async fn busy_and_unanswered_outbound_calls_complete_once(backend: Backend) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let app = spawn_app_with(backend, move |raw| raw.set("TWILIO_API_BASE_URL", base)).await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    sim.set_callee("+15557650001", CalleeBehaviour::Busy);
    sim.set_callee(
        "+15557650002",
        CalleeBehaviour::NoAnswerAfter(Duration::from_millis(300)),
    );
    sim.set_callee("+15557650003", CalleeBehaviour::Failed);
    for (to, status, reason, outcome) in [
        ("+15557650001", "busy", "busy", "not_answered"),
        ("+15557650002", "no-answer", "no_answer", "not_answered"),
        ("+15557650003", "failed", "failed", "failed"),
    ] {
        let resp = app
            .tenant(Method::POST, "/api/v1/make-call", &t.key)
            .json(&json!({"to": to}))
            .send()
            .await
            .expect("make-call");
        assert_eq!(resp.status(), 201, "{to}");
        let body: Value = resp.json().await.expect("json");
        let sid = body["call_sid"].as_str().expect("sid").to_owned();
        let call_id = body["call_id"].as_str().expect("id").to_owned();
        let ended = tokio::time::timeout(WAIT, sim.wait_ended(&sid))
            .await
            .expect("call ends");
        assert_eq!(ended.status.as_str(), status);
        let event = completed_once(&app, &call_id).await;
        assert_eq!(event["outcome"], outcome, "{to}: {event}");
        assert_eq!(event["end_reason"], reason, "{to}: {event}");
        assert_eq!(event["call_sid"], sid.as_str());
        assert_eq!(event["transcript_turns"], 0);
        // Twilio repeats a callback, or sends a later one: still one event.
        let last_seq = ended
            .status_callbacks
            .last()
            .map(|c| c.sequence_number)
            .expect("a final callback");
        for seq in [last_seq, last_seq + 1] {
            let seq = seq.to_string();
            let resp = post(
                &app,
                &t,
                &format!("/api/v1/call-status?call_id={call_id}"),
                &[
                    ("CallSid", &sid),
                    ("CallStatus", status),
                    ("SequenceNumber", &seq),
                ],
            )
            .await;
            assert_eq!(resp.status(), 204);
        }
        completed_once(&app, &call_id).await;
        let log = app.call_log(&t.key, &call_id).await;
        assert_eq!(log["outcome"], outcome, "{log}");
        assert_eq!(log["placement"], "placed", "{log}");
    }
    app.stop().await;
}

async fn a_stream_that_never_started_completes_once_with_the_fallback(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    let (sid, _) = app.inbound(&t, "+15551230000", NUMBER).await;
    let call_id = call_id_of(&app, &t, &sid).await;
    for _ in 0..2 {
        let resp = post(
            &app,
            &t,
            &format!("/api/v1/stream-ended?call_id={call_id}"),
            &[("CallSid", &sid), ("CallStatus", "in-progress")],
        )
        .await;
        assert_eq!(resp.status(), 200);
        let doc = twiml::Response::parse(&resp.text().await.expect("body")).expect("twiml");
        assert!(
            matches!(&doc.verbs[..], [Verb::Say(_), Verb::Dial(d)] if d.numbers() == vec!["+15550009999"]),
            "{doc:?}"
        );
    }
    let event = completed_once(&app, &call_id).await;
    assert_eq!(event["outcome"], "fallback");
    assert_eq!(event["end_reason"], "stream_failed");
    // The caller's final status callback later: still one.
    let resp = post(
        &app,
        &t,
        &format!("/api/v1/call-status?call_id={call_id}"),
        &[
            ("CallSid", &sid),
            ("CallStatus", "completed"),
            ("SequenceNumber", "9"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 204);
    let event = completed_once(&app, &call_id).await;
    assert_eq!(event["outcome"], "fallback");
    app.stop().await;
}

/// An inbound call (admitted, its stream ended) handed to `queue`: a handoff dialing.
async fn dialing(app: &TestApp, t: &Tele, from: &str, queue: &Value) -> (String, String, String) {
    let (sid, _) = app.inbound(t, from, NUMBER).await;
    let call_id = call_id_of(app, t, &sid).await;
    let now = actors::time::now_ms();
    let handoff = HandoffId::generate();
    app.state
        .store
        .insert_handoff(&Handoff {
            id: handoff.as_str().to_owned(),
            tenant_id: t.tenant_id.clone(),
            call_id: call_id.clone(),
            queue_id: queue["id"].as_str().map(str::to_owned),
            queue_name: queue["name"].as_str().map(str::to_owned),
            reason: "the caller asked for a human".into(),
            rule: "tool:transfer_to_human".into(),
            context: json!({}),
            status: "dialing".into(),
            dial_status: None,
            target: None,
            outcome: None,
            callback_task_id: None,
            created_at: now,
            updated_at: now,
            warm: None,
        })
        .await
        .expect("handoff");
    let id = CallId::parse(&call_id).expect("call id");
    app.state
        .store
        .set_continuation(&id, Some(actors::ending::Continuation::Handoff))
        .await
        .expect("continuation");
    (sid, call_id, handoff.as_str().to_owned())
}

async fn dial_result(
    app: &TestApp,
    t: &Tele,
    sid: &str,
    call_id: &str,
    handoff: &str,
    status: &str,
) -> twiml::Response {
    let resp = post(
        app,
        t,
        &format!("/api/v1/dial-result?call_id={call_id}&handoff_id={handoff}"),
        &[
            ("CallSid", sid),
            ("DialCallStatus", status),
            ("DialCallSid", "CAoperator"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    twiml::Response::parse(&resp.text().await.expect("body")).expect("twiml")
}

async fn handoff_results_complete_once_unless_the_caller_goes_back_to_the_agent(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    let queue = |name: &str, unanswered: &str| {
        json!({"name": name, "numbers": ["+15550101010"], "when_unanswered": unanswered,
               "voicemail_message": "Please leave a message."})
    };
    let callbacks = app
        .create_queue(&t.key, &queue("callbacks", "callback_task"))
        .await;
    let voicemail = app
        .create_queue(&t.key, &queue("voicemail", "voicemail"))
        .await;
    let agent = app.create_queue(&t.key, &queue("agent", "agent")).await;

    // Answered: escalated.
    let (sid, call_id, handoff) = dialing(&app, &t, "+15551230001", &callbacks).await;
    let doc = dial_result(&app, &t, &sid, &call_id, &handoff, "completed").await;
    assert!(matches!(&doc.verbs[..], [Verb::Hangup(_)]), "{doc:?}");
    let event = completed_once(&app, &call_id).await;
    assert_eq!(event["outcome"], "escalated");
    assert_eq!(event["end_reason"], "escalated");
    assert_eq!(event["handoffs"], 1);
    // Twilio repeats the callback: settled already, nothing twice.
    dial_result(&app, &t, &sid, &call_id, &handoff, "completed").await;
    completed_once(&app, &call_id).await;

    // Nobody answered, a callback task: completed once.
    let (sid, call_id, handoff) = dialing(&app, &t, "+15551230002", &callbacks).await;
    let doc = dial_result(&app, &t, &sid, &call_id, &handoff, "no-answer").await;
    assert!(matches!(&doc.verbs[0], Verb::Say(_)), "{doc:?}");
    let event = completed_once(&app, &call_id).await;
    assert_eq!(event["end_reason"], "callback_scheduled");
    assert_eq!(event["outcome"], "escalated");
    let log = app.call_log(&t.key, &call_id).await;
    assert!(log["escalated_to"].is_null(), "{log}");

    // Nobody answered, the queue's voicemail message.
    let (sid, call_id, handoff) = dialing(&app, &t, "+15551230003", &voicemail).await;
    let doc = dial_result(&app, &t, &sid, &call_id, &handoff, "busy").await;
    assert!(
        matches!(&doc.verbs[0], Verb::Say(s) if s.text == "Please leave a message."),
        "{doc:?}"
    );
    let event = completed_once(&app, &call_id).await;
    assert_eq!(event["end_reason"], "escalation_voicemail");

    // Back to the agent: a fresh stream, and the call goes on — nothing completed.
    let (sid, call_id, handoff) = dialing(&app, &t, "+15551230004", &agent).await;
    let doc = dial_result(&app, &t, &sid, &call_id, &handoff, "no-answer").await;
    assert!(matches!(&doc.verbs[..], [Verb::Connect(_)]), "{doc:?}");
    assert!(app.completed_events(&call_id).await.is_empty());
    let log = app.call_log(&t.key, &call_id).await;
    assert!(log["outcome"].is_null(), "{log}");
    assert!(log["completed_at"].is_null(), "{log}");
    app.stop().await;
}
