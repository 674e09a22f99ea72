//! The telephony edge against the carrier simulator over real sockets: an inbound call from
//! webhook to media stream, outbound `make-call` with idempotency, carrier errors and
//! timeouts, live call control, answering-machine detection.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CallEvent, CallStatus, CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle, FaultSpec,
    InboundCall, OperatorBehaviour,
};

use crate::helpers::{Backend, Tele, TestApp, backend_tests, expect_error, spawn_app_with};

backend_tests!(
    inbound_call_reaches_the_media_stream_and_is_logged,
    make_call_places_one_carrier_call_and_logs_its_history,
    idempotency_key_replays_and_refuses_reuse,
    concurrent_duplicates_place_exactly_one_call,
    carrier_errors_and_timeouts_are_mapped_and_recorded,
    hangup_and_transfer_reach_the_carrier,
    an_operator_transfers_a_live_call_to_a_queue,
    answering_machine_detection_is_recorded,
);

const WAIT: Duration = Duration::from_secs(15);

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
        extra(raw);
    })
    .await;
    let t = app
        .telephony_tenant("Acme", "+14155550100", json!({}))
        .await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    (app, sim, t)
}

async fn make_call(app: &TestApp, t: &Tele, key: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = app
        .tenant(Method::POST, "/api/v1/make-call", &t.key)
        .json(&body);
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    req.send().await.expect("make-call")
}

fn creates(sim: &CarrierSimHandle) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/Calls.json"))
        .count()
}

async fn ended(sim: &CarrierSimHandle, sid: &str) -> stateset_voice::sim::carrier::CallSnapshot {
    tokio::time::timeout(WAIT, sim.wait_ended(sid))
        .await
        .expect("call ends in time")
}

async fn inbound_call_reaches_the_media_stream_and_is_logged(backend: Backend) {
    let (app, sim, t) = setup(backend, |_| {}).await;
    let sid = sim
        .place_inbound_call(InboundCall {
            account_sid: t.account_sid.clone(),
            from: "+15551230000".into(),
            to: "+14155550100".into(),
            voice_url: app.url("/api/v1/incoming-call"),
            status_callback: Some(app.url("/api/v1/call-status")),
            status_callback_events: vec![
                "initiated".into(),
                "ringing".into(),
                "answered".into(),
                "completed".into(),
            ],
            script: CallerScript::default()
                .speak(Duration::from_millis(400), "hello there")
                .silence(Duration::from_millis(200))
                .hang_up(),
        })
        .expect("place call");
    let call = ended(&sim, &sid).await;
    assert_eq!(call.status, CallStatus::Completed);
    let opened = call.events.iter().find_map(|e| match e {
        CallEvent::StreamOpened {
            custom_parameters,
            url,
            ..
        } => Some((custom_parameters.clone(), url.clone())),
        _ => None,
    });
    let (params, url) = opened.expect("the media stream was accepted");
    assert!(params.contains_key("token"));
    assert!(url.ends_with("/media-stream"));
    assert!(
        call.media.frames_sent > 10,
        "caller audio flowed: {:?}",
        call.media
    );
    assert!(
        call.status_callbacks
            .iter()
            .all(|c| c.http_status == Some(204)),
        "{:?}",
        call.status_callbacks
    );
    let log = app.call_log(&t.key, &sid).await;
    assert_eq!(log["status"], "completed");
    assert_eq!(log["direction"], "inbound");
    assert_eq!(log["stream_status"], "stopped");
    let seqs: Vec<i64> = log["status_events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["sequence_number"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs.len(), call.status_callbacks.len());
    assert!(!seqs.is_empty());
    app.stop().await;
}

async fn make_call_places_one_carrier_call_and_logs_its_history(backend: Backend) {
    let (app, sim, t) = setup(backend, |_| {}).await;
    sim.set_callee_script(
        "+15557654321",
        CallerScript::default()
            .speak(Duration::from_millis(300), "hi")
            .hang_up(),
    );
    let resp = make_call(
        &app,
        &t,
        None,
        json!({"to": "+15557654321", "greeting": "Hi, this is Acme.", "metadata": {"order": 42}}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["ok"], true);
    assert_eq!(body["to"], "+15557654321");
    assert_eq!(body["from"], "+14155550100");
    assert!(
        ["queued", "initiated", "ringing"].contains(&body["status"].as_str().expect("status")),
        "{body}"
    );
    let sid = body["call_sid"].as_str().expect("sid").to_owned();
    assert!(body["call_id"].as_str().expect("id").starts_with("call_"));
    let create = sim
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/Calls.json"))
        .expect("create");
    assert_eq!(create.auth_user.as_deref(), Some(t.account_sid.as_str()));
    let events: Vec<&str> = create
        .params
        .iter()
        .filter(|(k, _)| k == "StatusCallbackEvent")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(events, ["initiated", "ringing", "answered", "completed"]);
    let twiml = create
        .params
        .iter()
        .find(|(k, _)| k == "Twiml")
        .map(|(_, v)| v.clone())
        .expect("inline twiml");
    assert!(
        twiml.contains("<Connect") && twiml.contains("<Parameter name=\"token\""),
        "{twiml}"
    );
    let call = ended(&sim, &sid).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert!(
        call.events
            .iter()
            .any(|e| matches!(e, CallEvent::StreamOpened { .. }))
    );
    // The simulator delivers the final status callback (and gets our 204) before it
    // reports the call ended, so the log is final here.
    assert!(
        call.status_callbacks
            .iter()
            .any(|c| c.call_status == "completed" && c.http_status == Some(204))
    );
    let log = app.call_log(&t.key, &sid).await;
    assert_eq!(log["status"], "completed");
    assert_eq!(log["direction"], "outbound");
    assert_eq!(log["greeting"], "Hi, this is Acme.");
    assert_eq!(log["metadata"]["order"], 42);
    assert!(
        log["agent_version_id"]
            .as_str()
            .is_some_and(|v| v.starts_with("agv_"))
    );
    let history: Vec<&str> = log["status_events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["status"].as_str().expect("status"))
        .collect();
    assert_eq!(
        history,
        ["initiated", "ringing", "in-progress", "completed"]
    );
    let list: Value = app
        .tenant(
            Method::GET,
            "/api/v1/call-logs?direction=outbound&status=completed",
            &t.key,
        )
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["total"], 1);
    // Bad input names the field and places nothing.
    let before = creates(&sim);
    for (body, field) in [
        (json!({"to": "5557654321"}), "to"),
        (
            json!({"to": "+15557654321", "from": "+19999999999"}),
            "from",
        ),
        (
            json!({"to": "+15557654321", "agent_key": "nobody"}),
            "agent_key",
        ),
        (
            json!({"to": "+15557654321", "agent_version_id": "agv_missing"}),
            "agent_version_id",
        ),
        (json!({"to": "+15557654321", "metadata": [1]}), "metadata"),
    ] {
        let resp = make_call(&app, &t, None, body).await;
        assert_eq!(
            expect_error(resp, 422, "validation_failed").await["field"],
            field
        );
    }
    let resp = make_call(
        &app,
        &t,
        None,
        json!({"to": "+15557654321", "machine_detection": "maybe"}),
    )
    .await;
    assert_eq!(
        expect_error(resp, 422, "validation_failed").await["field"],
        "machine_detection"
    );
    assert_eq!(creates(&sim), before);
    app.stop().await;
}

async fn idempotency_key_replays_and_refuses_reuse(backend: Backend) {
    let (app, sim, t) = setup(backend, |_| {}).await;
    let body = json!({"to": "+15557654321", "org_id": "org-1"});
    let first = make_call(&app, &t, Some("order-42"), body.clone()).await;
    assert_eq!(first.status(), 201);
    let first_body: Value = first.json().await.expect("json");
    // Same key, same body (other key order): the stored response, no second carrier call.
    let replay = make_call(
        &app,
        &t,
        Some("order-42"),
        json!({"org_id": "org-1", "to": "+15557654321"}),
    )
    .await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.expect("json"), first_body);
    assert_eq!(creates(&sim), 1);
    // Same key, different body.
    let reused = make_call(&app, &t, Some("order-42"), json!({"to": "+15550000001"})).await;
    expect_error(reused, 422, "idempotency_key_reused").await;
    // Keys are per tenant: another tenant may use the same key.
    let other = app
        .telephony_tenant("Other", "+14155550199", json!({}))
        .await;
    sim.add_account(other.account_sid.clone(), other.auth_token.clone());
    let theirs = make_call(&app, &other, Some("order-42"), body).await;
    assert_eq!(theirs.status(), 201);
    assert_eq!(creates(&sim), 2);
    app.stop().await;
}

async fn concurrent_duplicates_place_exactly_one_call(backend: Backend) {
    let (app, sim, t) = setup(backend, |_| {}).await;
    sim.delay_next_request(Duration::from_millis(500));
    let body = json!({"to": "+15557654321"});
    let (a, b) = tokio::join!(
        make_call(&app, &t, Some("dup-1"), body.clone()),
        make_call(&app, &t, Some("dup-1"), body.clone())
    );
    let mut statuses = vec![a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert!(
        statuses == [201, 409] || statuses == [201, 201],
        "{statuses:?}"
    );
    assert_eq!(creates(&sim), 1);
    // After the first finished, the key replays.
    let again = make_call(&app, &t, Some("dup-1"), body).await;
    assert_eq!(again.status(), 201);
    assert_eq!(creates(&sim), 1);
    app.stop().await;
}

async fn carrier_errors_and_timeouts_are_mapped_and_recorded(backend: Backend) {
    let (app, sim, t) = setup(backend, |raw| raw.set("TWILIO_TIMEOUT_MS", "300")).await;
    sim.fail_next_request(FaultSpec {
        status: 400,
        code: 21211,
        message: "The 'To' number +15557654321 is not a valid phone number.".into(),
    });
    let resp = make_call(&app, &t, Some("bad-to"), json!({"to": "+15557654321"})).await;
    let err = expect_error(resp, 400, "carrier_error").await;
    assert!(
        err["message"].as_str().expect("message").contains("21211"),
        "{err}"
    );
    // The same key replays the failure: the carrier is not asked twice.
    let replay = make_call(&app, &t, Some("bad-to"), json!({"to": "+15557654321"})).await;
    assert_eq!(replay.status(), 400);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(creates(&sim), 1);
    sim.fail_next_request(FaultSpec {
        status: 401,
        code: 20003,
        message: "Authenticate".into(),
    });
    let resp = make_call(&app, &t, None, json!({"to": "+15557654321"})).await;
    expect_error(resp, 502, "carrier_error").await;
    // A carrier that does not answer in time is not a failure: the outcome is unknown (see
    // `placement.rs`), so the handler answers 202 with the call id.
    sim.set_create_response_delay(Duration::from_secs(1));
    let resp = make_call(&app, &t, None, json!({"to": "+15557654322"})).await;
    assert_eq!(resp.status(), 202);
    let pending: Value = resp.json().await.expect("json");
    assert_eq!(pending["status"], "pending");
    let list: Value = app
        .tenant(Method::GET, "/api/v1/call-logs?status=failed", &t.key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["total"], 2, "the refusals are recorded failed: {list}");
    let reasons: Vec<(&str, &str, &str)> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| {
            (
                c["end_reason"].as_str().expect("reason"),
                c["error_code"].as_str().expect("code"),
                c["outcome"].as_str().expect("outcome"),
            )
        })
        .collect();
    assert!(
        reasons.contains(&("carrier_error", "21211", "failed")),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&("carrier_error", "20003", "failed")),
        "{reasons:?}"
    );
    for c in list["data"].as_array().expect("data") {
        assert_eq!(c["placement"], "refused", "{c}");
    }
    let timed_out = app
        .call_log(&t.key, pending["call_id"].as_str().expect("id"))
        .await;
    assert_ne!(timed_out["status"], "failed", "{timed_out}");
    assert!(timed_out["end_reason"].is_null(), "{timed_out}");
    app.stop().await;
}

async fn wait_streaming(sim: &CarrierSimHandle, sid: &str) {
    tokio::time::timeout(
        WAIT,
        sim.wait_for(sid, |c| {
            c.events
                .iter()
                .any(|e| matches!(e, CallEvent::StreamOpened { .. }))
        }),
    )
    .await
    .expect("stream opens");
}

async fn hangup_and_transfer_reach_the_carrier(backend: Backend) {
    let (app, sim, t) = setup(backend, |_| {}).await;
    let long = CallerScript::default().silence(Duration::from_secs(30));
    sim.set_callee_script("+15557654321", long.clone());
    sim.set_callee_script("+15557654322", long);
    let body: Value = make_call(&app, &t, None, json!({"to": "+15557654321"}))
        .await
        .json()
        .await
        .expect("json");
    let sid = body["call_sid"].as_str().expect("sid").to_owned();
    wait_streaming(&sim, &sid).await;
    let resp = app
        .tenant(Method::POST, &format!("/api/v1/calls/{sid}/hangup"), &t.key)
        .send()
        .await
        .expect("hangup");
    assert_eq!(resp.status(), 200);
    let call = ended(&sim, &sid).await;
    assert!(
        call.events
            .iter()
            .any(|e| matches!(e, CallEvent::Updated { status: Some(s), .. } if s == "completed"))
    );
    // The tenant's request is why the call ended, whatever the stream's `stop` says after.
    let log = app.call_log(&t.key, &sid).await;
    assert_eq!(log["end_reason"], "hangup_requested", "{log}");
    // Idempotent: hanging up an ended call succeeds.
    let again = app
        .tenant(Method::POST, &format!("/api/v1/calls/{sid}/hangup"), &t.key)
        .send()
        .await
        .expect("hangup");
    assert_eq!(again.status(), 200);

    let body: Value = make_call(&app, &t, None, json!({"to": "+15557654322"}))
        .await
        .json()
        .await
        .expect("json");
    let sid = body["call_sid"].as_str().expect("sid").to_owned();
    wait_streaming(&sim, &sid).await;
    let resp = app
        .tenant(
            Method::POST,
            &format!("/api/v1/calls/{sid}/transfer"),
            &t.key,
        )
        .json(&json!({"to": "+15550001111", "announcement": "Transferring you now."}))
        .send()
        .await
        .expect("transfer");
    assert_eq!(resp.status(), 200);
    let call = tokio::time::timeout(
        WAIT,
        sim.wait_for(&sid, |c| {
            c.events
                .iter()
                .any(|e| matches!(e, CallEvent::Dialed { .. }))
        }),
    )
    .await
    .expect("dialed");
    let twiml = call.events.iter().find_map(|e| match e {
        CallEvent::Updated { twiml: Some(x), .. } => Some(x.clone()),
        _ => None,
    });
    let twiml = twiml.expect("update carried TwiML");
    assert!(
        twiml.contains("<Say>Transferring you now.</Say>")
            && twiml.contains("<Number>+15550001111</Number>"),
        "{twiml}"
    );
    assert!(call.said.contains(&"Transferring you now.".to_owned()));
    let log = app.call_log(&t.key, &sid).await;
    assert_eq!(log["end_reason"], "transfer_requested", "{log}");
    assert!(
        log["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "control" && e["detail"]["action"] == "transfer")
    );
    // Transfer validation names the field; a read-only key cannot control calls.
    let resp = app
        .tenant(
            Method::POST,
            &format!("/api/v1/calls/{sid}/transfer"),
            &t.key,
        )
        .json(&json!({"to": "nope"}))
        .send()
        .await
        .expect("transfer");
    assert_eq!(
        expect_error(resp, 422, "validation_failed").await["field"],
        "to"
    );
    let (_, read_only) = app.create_key(&t.tenant_id, &["read"]).await;
    let resp = app
        .tenant(
            Method::POST,
            &format!("/api/v1/calls/{sid}/hangup"),
            &read_only,
        )
        .send()
        .await
        .expect("hangup");
    expect_error(resp, 403, "insufficient_scope").await;
    app.stop().await;
}

/// `transfer` with `queue_id`: the queue's numbers rung together through `dial-result`, a
/// handoff by the operator with the conversation so far, and the queue's `when_unanswered`
/// (here a callback task) when nobody answers. Another tenant's queue, both targets, or
/// neither, are refused naming the field.
async fn an_operator_transfers_a_live_call_to_a_queue(backend: Backend) {
    let (app, sim, t) = setup(backend, |_| {}).await;
    sim.set_callee_script(
        "+15557654321",
        CallerScript::default().silence(Duration::from_secs(30)),
    );
    for op in ["+15550007101", "+15550007102"] {
        sim.set_operator(op, OperatorBehaviour::Busy);
    }
    let queue: Value = app
        .tenant(Method::POST, "/api/v1/operator-queues", &t.key)
        .json(
            &json!({"name": "billing", "numbers": ["+15550007101", "+15550007102"],
            "ring_timeout_seconds": 10, "announcement": "Connecting you to billing.",
            "when_closed": "callback_task", "when_unanswered": "callback_task"}),
        )
        .send()
        .await
        .expect("queue")
        .json()
        .await
        .expect("json");
    let queue_id = queue["id"].as_str().expect("queue id").to_owned();
    let other = app
        .telephony_tenant("Other", "+14155550177", json!({}))
        .await;
    let foreign: Value = app
        .tenant(Method::POST, "/api/v1/operator-queues", &other.key)
        .json(&json!({"name": "theirs", "numbers": ["+15550007109"]}))
        .send()
        .await
        .expect("queue")
        .json()
        .await
        .expect("json");
    let body: Value = make_call(&app, &t, None, json!({"to": "+15557654321"}))
        .await
        .json()
        .await
        .expect("json");
    let sid = body["call_sid"].as_str().expect("sid").to_owned();
    wait_streaming(&sim, &sid).await;

    let transfer = |body: Value| {
        app.tenant(
            Method::POST,
            &format!("/api/v1/calls/{sid}/transfer"),
            &t.key,
        )
        .json(&body)
        .send()
    };
    for (body, field) in [
        (json!({"queue_id": foreign["id"]}), "queue_id"),
        (json!({"queue_id": "oq_nope"}), "queue_id"),
        (json!({"queue_id": queue_id, "to": "+15550001111"}), "to"),
        (json!({}), "to"),
        (
            json!({"queue_id": queue_id, "announcement": "Hi"}),
            "announcement",
        ),
    ] {
        let resp = transfer(body.clone()).await.expect("transfer");
        assert_eq!(
            expect_error(resp, 422, "validation_failed").await["field"],
            field,
            "{body}"
        );
    }
    // Nothing was dialed by the refusals.
    assert!(
        !sim.call(&sid)
            .expect("call")
            .events
            .iter()
            .any(|e| matches!(e, CallEvent::Dialed { .. }))
    );

    // The carrier refuses the dial: the caller stays with the agent, the handoff is failed,
    // and nothing says the call is ending.
    sim.fail_next_request(FaultSpec {
        status: 500,
        code: 20500,
        message: "Internal Server Error".into(),
    });
    let resp = transfer(json!({"queue_id": queue_id, "requested_by": "Ada"}))
        .await
        .expect("transfer");
    let refused: Value = resp.json().await.expect("json");
    assert_eq!(refused["error"]["code"], "carrier_error", "{refused}");
    let log = app.call_log(&t.key, &sid).await;
    assert!(
        log["end_reason"].is_null() && log["escalated_to"].is_null(),
        "{log}"
    );
    assert!(
        sim.call(&sid).expect("call").ended_at.is_none(),
        "still live"
    );
    let session = app.voice_session_of(&t.key, &sid).await;
    assert_eq!(session["handoffs"][0]["status"], "failed", "{session}");

    let resp = transfer(json!({"queue_id": queue_id, "requested_by": "Ada"}))
        .await
        .expect("transfer");
    assert_eq!(resp.status(), 200);
    let call = ended(&sim, &sid).await;
    let twiml = call
        .events
        .iter()
        .find_map(|e| match e {
            CallEvent::Updated { twiml: Some(x), .. } => Some(x.clone()),
            _ => None,
        })
        .expect("update carried TwiML");
    assert!(
        twiml.contains("<Say>Connecting you to billing.</Say>")
            && twiml.contains("<Number>+15550007101</Number>")
            && twiml.contains("<Number>+15550007102</Number>")
            && twiml.contains("/api/v1/dial-result"),
        "{twiml}"
    );
    let session = app.voice_session_of(&t.key, &sid).await;
    let handoffs = session["handoffs"].as_array().expect("handoffs");
    assert_eq!(handoffs.len(), 2, "{session}");
    let handoff = handoffs
        .iter()
        .find(|h| h["status"] != "failed")
        .expect("the handoff that dialed");
    assert_eq!(handoff["queue"], "billing", "{session}");
    assert_eq!(handoff["rule"], "operator");
    assert_eq!(handoff["context"]["requested_by"], "Ada");
    assert_eq!(handoff["context"]["caller"], "+15557654321");
    assert_eq!(handoff["status"], "unanswered", "{handoff}");
    assert_eq!(handoff["outcome"], "callback_task");
    let task_id = handoff["callback_task_id"]
        .as_str()
        .expect("a callback task");
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
    let log = app.call_log(&t.key, &sid).await;
    assert!(
        log["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "handoff" && e["detail"]["requested_by"] == "Ada"),
        "{log}"
    );
    // The call has ended: another transfer is a conflict.
    let resp = transfer(json!({"queue_id": queue_id}))
        .await
        .expect("transfer");
    expect_error(resp, 409, "conflict").await;
    app.stop().await;
}

async fn answering_machine_detection_is_recorded(backend: Backend) {
    let (app, sim, t) = setup(backend, |_| {}).await;
    sim.set_answered_by("+15557654321", "machine_start");
    sim.set_callee_script(
        "+15557654321",
        CallerScript::default()
            .silence(Duration::from_secs(1))
            .hang_up(),
    );
    let body: Value = make_call(
        &app,
        &t,
        None,
        json!({"to": "+15557654321", "machine_detection": "enable"}),
    )
    .await
    .json()
    .await
    .expect("json");
    let sid = body["call_sid"].as_str().expect("sid").to_owned();
    let create = sim
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/Calls.json"))
        .expect("create");
    assert!(
        create
            .params
            .contains(&("MachineDetection".into(), "Enable".into()))
    );
    assert!(create.params.contains(&("AsyncAmd".into(), "true".into())));
    let call = ended(&sim, &sid).await;
    assert!(
        call.events
            .iter()
            .any(|e| matches!(e, CallEvent::AmdSent { .. }))
    );
    let log = app.call_log(&t.key, &sid).await;
    assert_eq!(log["answered_by"], "machine_start");
    assert!(
        log["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "amd")
    );
    app.stop().await;
}
