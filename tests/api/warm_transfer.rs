//! Warm transfer (issue 16) end to end through the carrier and realtime simulators: an
//! operator's transfer of a live call to a `warm` queue moves the caller into a conference
//! on hold, calls the queue's first number, whispers the handoff summary inside a `<Gather>`
//! and bridges on 1; a 2 or a busy operator applies the queue's `when_unanswered`. The
//! webhooks are signed and scoped to the signing account's tenant; `transfer_mode` is
//! validated.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CallEvent, CallSnapshot, CalleeBehaviour, CallerScript, CarrierConfig, CarrierSim,
    CarrierSimHandle, WarmOperator,
};

use crate::helpers::{Backend, Tele, TestApp, backend_tests, expect_error, spawn_app_with};

backend_tests!(
    a_warm_transfer_accepted_bridges_the_caller_after_the_whisper,
    a_warm_transfer_declined_or_unanswered_applies_when_unanswered,
    no_key_leaves_the_transfer_unanswered_and_a_caller_who_hangs_up_abandons_it,
    transfer_mode_is_validated_and_read_back,
);

const WAIT: Duration = Duration::from_secs(20);
const CALLEE: &str = "+15557654321";
const OPERATOR: &str = "+15550007201";
const HOLD: &str = "https://music.example/hold.mp3";

async fn setup(backend: Backend) -> (TestApp, CarrierSimHandle, Tele) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let app = spawn_app_with(backend, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base);
    })
    .await;
    let t = app
        .telephony_tenant("Acme", "+14155550100", json!({}))
        .await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    (app, sim, t)
}

async fn warm_queue(app: &TestApp, t: &Tele, name: &str) -> String {
    let resp = app
        .tenant(Method::POST, "/api/v1/operator-queues", &t.key)
        .json(
            &json!({"name": name, "numbers": [OPERATOR], "ring_timeout_seconds": 10,
            "announcement": "Please hold for a colleague.", "when_unanswered": "callback_task",
            "transfer_mode": "warm", "hold_music_url": HOLD}),
        )
        .send()
        .await
        .expect("queue");
    assert_eq!(resp.status(), 201);
    let queue: Value = resp.json().await.expect("json");
    assert_eq!(queue["transfer_mode"], "warm", "{queue}");
    queue["id"].as_str().expect("id").to_owned()
}

/// Places a call to the (silent, patient) callee and waits for its media stream; returns
/// the `CallSid`.
async fn live_call(app: &TestApp, sim: &CarrierSimHandle, t: &Tele, to: &str) -> String {
    sim.set_callee_script(to, CallerScript::default().silence(Duration::from_secs(30)));
    let body: Value = app
        .tenant(Method::POST, "/api/v1/make-call", &t.key)
        .json(&json!({"to": to}))
        .send()
        .await
        .expect("make-call")
        .json()
        .await
        .expect("json");
    let sid = body["call_sid"].as_str().expect("sid").to_owned();
    tokio::time::timeout(
        WAIT,
        sim.wait_for(&sid, |c| {
            c.events
                .iter()
                .any(|e| matches!(e, CallEvent::StreamOpened { .. }))
        }),
    )
    .await
    .expect("stream opens");
    sid
}

async fn transfer(app: &TestApp, t: &Tele, sid: &str, queue_id: &str) -> reqwest::Response {
    app.tenant(
        Method::POST,
        &format!("/api/v1/calls/{sid}/transfer"),
        &t.key,
    )
    .json(&json!({"queue_id": queue_id, "requested_by": "Ada"}))
    .send()
    .await
    .expect("transfer")
}

async fn ended(sim: &CarrierSimHandle, sid: &str) -> CallSnapshot {
    tokio::time::timeout(WAIT, sim.wait_ended(sid))
        .await
        .expect("call ends in time")
}

/// The operator leg the carrier placed to `OPERATOR`, once it ended.
async fn operator_leg(sim: &CarrierSimHandle) -> CallSnapshot {
    let sid = sim
        .calls()
        .into_iter()
        .find(|c| c.to == OPERATOR)
        .expect("an operator leg")
        .sid;
    ended(sim, &sid).await
}

/// The session's only warm handoff, once it left `ringing`.
async fn settled_handoff(app: &TestApp, t: &Tele, sid: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let session = app.voice_session_of(&t.key, sid).await;
        let handoff = session["handoffs"][0].clone();
        if handoff["warm"]["state"] != "ringing" && !handoff["warm"].is_null() {
            return handoff;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the warm transfer never settled: {session}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn position(call: &CallSnapshot, pred: impl Fn(&CallEvent) -> bool) -> usize {
    call.events
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("event missing: {:#?}", call.events))
}

fn joined(call: &CallSnapshot) -> (String, bool, Option<String>) {
    call.events
        .iter()
        .find_map(|e| match e {
            CallEvent::ConferenceJoined {
                conference_sid,
                waiting,
                hold_audio,
                ..
            } => Some((conference_sid.clone(), *waiting, hold_audio.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("never joined a conference: {:#?}", call.events))
}

async fn a_warm_transfer_accepted_bridges_the_caller_after_the_whisper(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    sim.set_warm_operator(
        OPERATOR,
        WarmOperator::Accept {
            talk: Duration::from_millis(300),
        },
    );
    let queue_id = warm_queue(&app, &t, "billing").await;
    let sid = live_call(&app, &sim, &t, CALLEE).await;
    let resp = transfer(&app, &t, &sid, &queue_id).await;
    assert_eq!(resp.status(), 200);

    // The operator hung up after talking: `endConferenceOnExit` ends the caller's leg too.
    let caller = ended(&sim, &sid).await;
    let operator = operator_leg(&sim).await;
    // The caller waited on the queue's hold audio, then was bridged in the same conference
    // the operator joined.
    let (conference, waiting, hold) = joined(&caller);
    assert!(waiting, "{:#?}", caller.events);
    assert_eq!(hold.as_deref(), Some(HOLD));
    assert!(
        caller
            .said
            .contains(&"Please hold for a colleague.".to_owned())
    );
    let (operator_conference, operator_waiting, _) = joined(&operator);
    assert_eq!(operator_conference, conference);
    assert!(!operator_waiting);
    position(
        &caller,
        |e| matches!(e, CallEvent::ConferenceBridged { conference_sid } if *conference_sid == conference),
    );
    // The operator heard the whisper (reason, caller, the question) before being bridged.
    let whisper = operator
        .said
        .iter()
        .find(|s| s.starts_with("Transfer from the billing queue"))
        .unwrap_or_else(|| panic!("no whisper: {:?}", operator.said))
        .clone();
    assert!(
        whisper.contains("transferred by Ada")
            && whisper.contains(CALLEE)
            && whisper.contains("Press 1 to accept, 2 to decline."),
        "{whisper}"
    );
    let said_at = position(
        &operator,
        |e| matches!(e, CallEvent::Said(s) if *s == whisper),
    );
    let pressed_at = position(
        &operator,
        |e| matches!(e, CallEvent::Gathered { digits: Some(d) } if d == "1"),
    );
    let joined_at = position(&operator, |e| {
        matches!(e, CallEvent::ConferenceJoined { .. })
    });
    assert!(said_at < pressed_at && pressed_at < joined_at);
    let conferences = sim.conferences();
    let room = conferences
        .iter()
        .find(|c| c.sid == conference)
        .expect("the conference");
    assert!(room.name.starts_with("handoff-ho_"), "{room:?}");
    assert_eq!(room.participants, vec![sid.clone(), operator.sid.clone()]);
    assert!(room.started && room.ended, "{room:?}");

    // Recorded: the handoff `accepted` (answered, bridged, the operator's number and time).
    let handoff = settled_handoff(&app, &t, &sid).await;
    assert_eq!(handoff["transfer_mode"], "warm", "{handoff}");
    assert_eq!(handoff["warm"]["state"], "accepted", "{handoff}");
    assert_eq!(handoff["warm"]["operator_number"], OPERATOR);
    assert_eq!(handoff["warm"]["operator_call_sid"], operator.sid.as_str());
    assert_eq!(handoff["warm"]["digits"], "1");
    assert_eq!(handoff["warm"]["conference_sid"], conference.as_str());
    assert!(
        handoff["warm"]["decided_at"].is_string() && handoff["warm"]["whispered_at"].is_string()
    );
    assert_eq!(handoff["status"], "answered");
    assert_eq!(handoff["outcome"], "bridged");
    // The call completes as escalated to the operator; its timeline shows each step.
    let deadline = tokio::time::Instant::now() + WAIT;
    let log = loop {
        let log = app.call_log(&t.key, &sid).await;
        if log["outcome"].is_string() {
            break log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never completed: {log}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(log["outcome"], "escalated", "{log}");
    assert_eq!(
        log["escalated_to"],
        format!("queue:billing/{OPERATOR}").as_str()
    );
    let steps: Vec<String> = log["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "warm_transfer")
        .map(|e| e["detail"]["step"].as_str().unwrap_or_default().to_owned())
        .collect();
    for step in ["operator_called", "whisper", "conference"] {
        assert!(steps.iter().any(|s| s == step), "{step} missing: {steps:?}");
    }
    app.stop().await;
}

async fn a_warm_transfer_declined_or_unanswered_applies_when_unanswered(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    sim.set_warm_operator(OPERATOR, WarmOperator::Decline);
    let queue_id = warm_queue(&app, &t, "billing").await;
    let sid = live_call(&app, &sim, &t, CALLEE).await;
    assert_eq!(transfer(&app, &t, &sid, &queue_id).await.status(), 200);
    // Declined: the caller is taken out of the conference and hears the callback message.
    let caller = ended(&sim, &sid).await;
    let operator = operator_leg(&sim).await;
    assert!(
        operator.has_event(|e| matches!(e, CallEvent::Gathered { digits: Some(d) } if d == "2"))
    );
    assert!(!operator.has_event(|e| matches!(e, CallEvent::ConferenceJoined { .. })));
    let (_, waiting, _) = joined(&caller);
    assert!(waiting);
    assert!(
        !caller.has_event(|e| matches!(e, CallEvent::ConferenceBridged { .. })),
        "{:#?}",
        caller.events
    );
    assert!(
        caller
            .said
            .iter()
            .any(|s| s.contains("A colleague will call you back")),
        "{:?}",
        caller.said
    );
    let handoff = settled_handoff(&app, &t, &sid).await;
    assert_eq!(handoff["warm"]["state"], "declined", "{handoff}");
    assert_eq!(handoff["warm"]["digits"], "2");
    assert_eq!(handoff["status"], "unanswered");
    assert_eq!(handoff["outcome"], "callback_task");
    let task_id = handoff["callback_task_id"]
        .as_str()
        .expect("a callback task")
        .to_owned();
    let task: Value = app
        .tenant(
            Method::GET,
            &format!("/api/v1/callback-tasks/{task_id}"),
            &t.key,
        )
        .send()
        .await
        .expect("task")
        .json()
        .await
        .expect("json");
    assert_eq!(task["queue_id"], queue_id.as_str(), "{task}");
    assert_eq!(task["phone"], CALLEE, "{task}");

    // The webhooks are the signing account's: another tenant's signature about this handoff
    // finds nothing and changes nothing; a late or repeated decision of the right account
    // changes nothing either.
    let handoff_id = handoff["id"].as_str().expect("id").to_owned();
    let log = app.call_log(&t.key, &sid).await;
    let call_id = log["id"].as_str().expect("id").to_owned();
    let other = app
        .telephony_tenant("Other", "+14155550177", json!({}))
        .await;
    let path = format!("/api/v1/warm-transfer/decision?call_id={call_id}&handoff_id={handoff_id}");
    let foreign = [
        ("AccountSid", other.account_sid.as_str()),
        ("CallSid", operator.sid.as_str()),
        ("Digits", "1"),
    ];
    let resp = app.twilio_post(&path, &foreign, &other.auth_token).await;
    expect_error(resp, 404, "not_found").await;
    let own = [
        ("AccountSid", t.account_sid.as_str()),
        ("CallSid", operator.sid.as_str()),
        ("Digits", "1"),
    ];
    let resp = app.twilio_post(&path, &own, &t.auth_token).await;
    assert_eq!(resp.status(), 200);
    let twiml = resp.text().await.expect("twiml");
    assert!(
        twiml.contains("no longer waiting") && !twiml.contains("Conference"),
        "{twiml}"
    );
    let again = settled_handoff(&app, &t, &sid).await;
    assert_eq!(again["warm"]["state"], "declined", "{again}");
    assert_eq!(again["status"], "unanswered");

    // A busy operator: `unanswered`, the same fallback.
    sim.set_callee(OPERATOR, CalleeBehaviour::Busy);
    let second = live_call(&app, &sim, &t, "+15557654322").await;
    assert_eq!(transfer(&app, &t, &second, &queue_id).await.status(), 200);
    let caller = ended(&sim, &second).await;
    assert!(
        caller
            .said
            .iter()
            .any(|s| s.contains("A colleague will call you back")),
        "{:?}",
        caller.said
    );
    let handoff = settled_handoff(&app, &t, &second).await;
    assert_eq!(handoff["warm"]["state"], "unanswered", "{handoff}");
    assert_eq!(handoff["dial_status"], "busy", "{handoff}");
    assert_eq!(handoff["outcome"], "callback_task");
    app.stop().await;
}

async fn no_key_leaves_the_transfer_unanswered_and_a_caller_who_hangs_up_abandons_it(
    backend: Backend,
) {
    let (app, sim, t) = setup(backend).await;
    sim.set_warm_operator(OPERATOR, WarmOperator::NoKey);
    let queue_id = warm_queue(&app, &t, "billing").await;
    let sid = live_call(&app, &sim, &t, CALLEE).await;
    assert_eq!(transfer(&app, &t, &sid, &queue_id).await.status(), 200);
    // The operator heard the whisper, pressed nothing, and the leg hung up.
    let caller = ended(&sim, &sid).await;
    let operator = operator_leg(&sim).await;
    assert!(operator.has_event(|e| matches!(e, CallEvent::Gathered { digits: None })));
    assert!(
        caller
            .said
            .iter()
            .any(|s| s.contains("A colleague will call you back")),
        "{:?}",
        caller.said
    );
    let handoff = settled_handoff(&app, &t, &sid).await;
    assert_eq!(handoff["warm"]["state"], "unanswered", "{handoff}");
    assert_eq!(handoff["dial_status"], "no-key", "{handoff}");
    assert_eq!(handoff["outcome"], "callback_task");

    // The caller hangs up while the operator's phone still rings: the transfer is
    // abandoned and the operator leg is hung up.
    let second_operator = "+15550007202";
    sim.set_warm_operator(second_operator, WarmOperator::NoAnswer);
    let resp = app
        .tenant(Method::POST, "/api/v1/operator-queues", &t.key)
        .json(
            &json!({"name": "sales", "numbers": [second_operator], "ring_timeout_seconds": 30,
            "transfer_mode": "warm"}),
        )
        .send()
        .await
        .expect("queue");
    assert_eq!(resp.status(), 201);
    let sales: Value = resp.json().await.expect("json");
    let second = live_call(&app, &sim, &t, "+15557654322").await;
    let sales_id = sales["id"].as_str().expect("id");
    assert_eq!(transfer(&app, &t, &second, sales_id).await.status(), 200);
    tokio::time::timeout(
        WAIT,
        sim.wait_for(&second, |c| {
            c.events
                .iter()
                .any(|e| matches!(e, CallEvent::ConferenceJoined { .. }))
        }),
    )
    .await
    .expect("the caller waits in the conference");
    // Default hold music: no `waitUrl`.
    assert_eq!(
        joined(&sim.call(&second).expect("call")).2.as_deref(),
        Some("default")
    );
    sim.hangup(&second).expect("hang up");
    ended(&sim, &second).await;
    let leg = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(leg) = sim.calls().into_iter().find(|c| c.to == second_operator) {
                return leg.sid;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the operator leg");
    let leg = ended(&sim, &leg).await;
    assert_eq!(
        leg.status,
        stateset_voice::sim::carrier::CallStatus::Canceled
    );
    let handoff = settled_handoff(&app, &t, &second).await;
    assert_eq!(handoff["warm"]["state"], "abandoned", "{handoff}");
    assert_eq!(handoff["outcome"], "abandoned");
    app.stop().await;
}

async fn transfer_mode_is_validated_and_read_back(backend: Backend) {
    let (app, _sim, t) = setup(backend).await;
    let base = json!({"name": "sales", "numbers": [OPERATOR]});
    let with = |extra: Value| {
        let mut b = base.clone();
        if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        b
    };
    let resp = app
        .tenant(Method::POST, "/api/v1/operator-queues", &t.key)
        .json(&with(json!({"transfer_mode": "lukewarm"})))
        .send()
        .await
        .expect("post");
    let err = expect_error(resp, 400, "invalid_body").await;
    assert!(
        err["field"] == "transfer_mode"
            || err["message"]
                .as_str()
                .is_some_and(|m| m.contains("transfer_mode")),
        "{err}"
    );
    for url in ["ftp://music.example/a.mp3", "not a url"] {
        let resp = app
            .tenant(Method::POST, "/api/v1/operator-queues", &t.key)
            .json(&with(
                json!({"transfer_mode": "warm", "hold_music_url": url}),
            ))
            .send()
            .await
            .expect("post");
        assert_eq!(
            expect_error(resp, 422, "validation_failed").await["field"],
            "hold_music_url"
        );
    }
    // Default cold; a replace sets warm and reads it back.
    let created: Value = app
        .tenant(Method::POST, "/api/v1/operator-queues", &t.key)
        .json(&base)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(created["transfer_mode"], "cold", "{created}");
    assert!(created["hold_music_url"].is_null());
    let id = created["id"].as_str().expect("id");
    let resp = app
        .tenant(
            Method::PUT,
            &format!("/api/v1/operator-queues/{id}"),
            &t.key,
        )
        .json(&with(
            json!({"transfer_mode": "warm", "hold_music_url": HOLD}),
        ))
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 200);
    let got: Value = app
        .tenant(
            Method::GET,
            &format!("/api/v1/operator-queues/{id}"),
            &t.key,
        )
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["transfer_mode"], "warm", "{got}");
    assert_eq!(got["hold_music_url"], HOLD);
    app.stop().await;
}
