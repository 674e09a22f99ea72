//! `make-call` against a carrier slower than every timeout (issue 9, bug 1): the task that
//! asks the carrier owns the outcome. One `Idempotency-Key` places exactly one carrier call
//! however often the client retries; a handler that stops waiting answers 202 with the call
//! id; a carrier timeout is "outcome unknown", reconciled to the real call, and the record
//! never contradicts itself.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CalleeBehaviour, CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle,
};
use tokio::sync::broadcast;

use crate::helpers::{Backend, Tele, TestApp, backend_tests, expect_error, spawn_app_with};

backend_tests!(
    a_carrier_slower_than_every_timeout_places_one_call_per_key,
    a_timed_out_placement_is_reconciled_to_the_real_call,
);

const WAIT: Duration = Duration::from_secs(20);
const CALLEE: &str = "+15557654321";

async fn setup(
    backend: Backend,
    extra: impl FnOnce(&mut stateset_voice::config::RawSettings) + Send,
) -> (TestApp, CarrierSimHandle, Tele) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let app = spawn_app_with(backend, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base);
        raw.set("CARRIER_LOOKUP_INTERVAL_MS", "100");
        extra(raw);
    })
    .await;
    let t = app
        .telephony_tenant("Acme", "+14155550100", json!({}))
        .await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    (app, sim, t)
}

async fn make_call(app: &TestApp, t: &Tele, key: &str) -> reqwest::Response {
    app.tenant(Method::POST, "/api/v1/make-call", &t.key)
        .header("idempotency-key", key)
        .json(&json!({"to": CALLEE, "org_id": "order-7"}))
        .send()
        .await
        .expect("make-call")
}

/// Waits until the placement of `call_id` has recorded its outcome.
async fn settled(rx: &mut broadcast::Receiver<actors::ids::CallId>, call_id: &str) {
    tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Ok(id) if id.as_str() == call_id => break,
                Ok(_) => continue,
                Err(e) => panic!("placement feed: {e}"),
            }
        }
    })
    .await
    .expect("the placement settles");
}

async fn calls_of(app: &TestApp, t: &Tele) -> Value {
    app.tenant(Method::GET, "/api/v1/call-logs", &t.key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json")
}

async fn a_carrier_slower_than_every_timeout_places_one_call_per_key(backend: Backend) {
    // The carrier answers `Calls.json` after 1.5 s: later than its client's timeout
    // (0.8 s), than make-call's wait (0.2 s) and than any actor call (0.2 s).
    let (app, sim, t) = setup(backend, |raw| {
        raw.set("TWILIO_TIMEOUT_MS", "800");
        raw.set("MAKE_CALL_WAIT_MS", "200");
        raw.set("ACTOR_CALL_TIMEOUT_MS", "200");
    })
    .await;
    sim.set_calls_response_delay(Duration::from_millis(1500));
    sim.set_callee(CALLEE, CalleeBehaviour::Busy);
    let mut placements = app.state.actors.telephony.subscribe_placements();

    // The handler stops waiting: 202 with the call id and a pending status, never "retry".
    let first = make_call(&app, &t, "order-7").await;
    assert_eq!(first.status(), 202);
    let pending: Value = first.json().await.expect("json");
    assert_eq!(pending["ok"], true);
    assert_eq!(pending["status"], "pending");
    assert!(pending["call_sid"].is_null(), "{pending}");
    let call_id = pending["call_id"].as_str().expect("call id").to_owned();
    assert!(call_id.starts_with("call_"));

    // Retries while the placement runs are refused as in progress: the key is not released.
    for _ in 0..3 {
        let retry = make_call(&app, &t, "order-7").await;
        expect_error(retry, 409, "idempotency_in_progress").await;
    }
    settled(&mut placements, &call_id).await;

    // After it, the stored result: the real call, replayed.
    let replay = make_call(&app, &t, "order-7").await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let placed: Value = replay.json().await.expect("json");
    assert_eq!(placed["call_id"], call_id.as_str());
    let sid = placed["call_sid"].as_str().expect("sid").to_owned();
    let again = make_call(&app, &t, "order-7").await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.expect("json"), placed);

    // Exactly one carrier call for one key, and one call record.
    assert_eq!(sim.calls_created(), 1);
    assert_eq!(sim.calls().len(), 1);
    assert_eq!(sim.calls()[0].sid, sid);
    let list = calls_of(&app, &t).await;
    assert_eq!(list["total"], 1, "{list}");
    let log = app.call_log(&t.key, &call_id).await;
    assert_eq!(log["call_sid"], sid.as_str());
    assert_eq!(log["placement"], "placed", "{log}");

    // The callee was busy: the call completes once, as not answered.
    let ended = tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("call ends");
    assert_eq!(ended.status.as_str(), "busy");
    let log = app.call_log(&t.key, &call_id).await;
    assert_eq!(log["status"], "busy");
    assert_eq!(log["outcome"], "not_answered", "{log}");
    assert_eq!(log["end_reason"], "busy", "{log}");
    let events = app.completed_events(&call_id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["outcome"], "not_answered");
    app.stop().await;
}

async fn a_timed_out_placement_is_reconciled_to_the_real_call(backend: Backend) {
    // The carrier creates the call at once but answers 1.2 s later; its client gives up at
    // 0.5 s. Lookups answer at once: status callbacks or a lookup find the call.
    let (app, sim, t) = setup(backend, |raw| raw.set("TWILIO_TIMEOUT_MS", "500")).await;
    sim.set_create_response_delay(Duration::from_millis(1200));
    sim.set_callee_script(
        CALLEE,
        CallerScript::default()
            .speak(Duration::from_millis(300), "hello")
            .hang_up(),
    );
    let mut placements = app.state.actors.telephony.subscribe_placements();
    // The carrier timed out: the outcome is unknown, so the handler answers at once with
    // the call id rather than a failure.
    let first = make_call(&app, &t, "order-8").await;
    assert_eq!(first.status(), 202);
    let call_id = first.json::<Value>().await.expect("json")["call_id"]
        .as_str()
        .expect("call id")
        .to_owned();
    // Whatever the call did meanwhile, the timeout recorded no failure.
    let unknown = app.call_log(&t.key, &call_id).await;
    assert_ne!(unknown["status"], "failed", "{unknown}");
    assert!(
        !unknown["end_reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("carrier"),
        "{unknown}"
    );
    settled(&mut placements, &call_id).await;

    let created = sim.calls();
    assert_eq!(created.len(), 1, "one carrier call");
    let sid = created[0].sid.clone();
    let ended = tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("call ends");
    assert_eq!(ended.status.as_str(), "completed");

    // The record names the real call and never contradicts itself.
    let log = app.call_log(&t.key, &call_id).await;
    assert_eq!(log["call_sid"], sid.as_str(), "{log}");
    assert_eq!(log["placement"], "placed", "{log}");
    assert_eq!(log["status"], "completed", "{log}");
    assert!(log["error_code"].is_null(), "{log}");
    let reason = log["end_reason"].as_str().unwrap_or_default();
    assert!(!reason.starts_with("carrier"), "{log}");
    let started = log["started_at"].as_str().expect("started");
    let ended_at = log["ended_at"].as_str().expect("ended");
    assert!(started <= ended_at, "{log}");
    let statuses: Vec<&str> = log["status_events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["status"].as_str().expect("status"))
        .collect();
    assert!(!statuses.contains(&"failed"), "{statuses:?}");
    assert!(
        log["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "carrier" && e["detail"]["action"] == "reconciled"),
        "{log}"
    );
    // The idempotency record holds the real outcome.
    let replay = make_call(&app, &t, "order-8").await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let body: Value = replay.json().await.expect("json");
    assert_eq!(body["call_sid"], sid.as_str());
    assert_eq!(body["call_id"], call_id.as_str());
    assert_eq!(sim.calls_created(), 1);
    app.stop().await;
}
