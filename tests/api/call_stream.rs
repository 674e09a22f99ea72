//! The per-call live stream (`GET /api/v1/active-sessions/calls/{call_id}/stream`) over a
//! real simulated call with a webhook tool: the call's state first, its transcript turns in
//! order as they are written, the tool call when it starts and again when it completes,
//! `ended` closing the stream; a stream opened on the ended call replays it whole; resuming
//! with `Last-Event-ID` sends exactly what followed; another tenant, an unknown call and a
//! malformed cursor are refused; a barge-in arrives as an interrupted assistant turn with
//! the text the caller heard.
//!
//! Nothing sleeps: the tool's webhook holds its answer until the test has seen the tool
//! call running, and every wait is for an event under a deadline.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle, InboundCall,
};
use stateset_voice::sim::realtime::{RealtimeScript, RealtimeSimConfig, ScriptTurn};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use warp::Filter;

use crate::helpers::{
    Backend, REALTIME_KEY, Tele, TestApp, backend_tests, expect_error, spawn_app_with_realtime,
};
use crate::sse::{Event, Sse};

backend_tests!(
    a_call_streams_its_turns_and_tool_calls_then_replays_and_resumes_exactly,
    a_barge_in_streams_as_an_interrupted_turn_with_what_the_caller_heard,
);

const WAIT: Duration = Duration::from_secs(40);
const NUMBER: &str = "+14155550100";
const GREETING: &str = "Hello, thanks for calling.";
const QUESTION: &str = "Where is my order?";
const ANSWER: &str = "It ships today.";
/// A reply long enough to still be playing when the caller talks over it.
const LONG: &str = "Our return policy is simple: you can send back any item within thirty \
    days of delivery for a full refund, as long as it is unused and in its original \
    packaging. Start a return from your account page, print the prepaid label, and drop the \
    parcel at any carrier location.";

/// A tool endpoint that holds every request until released, then answers `answer`.
struct HeldTool {
    url: String,
    hits: watch::Receiver<usize>,
    release: Arc<Semaphore>,
}

impl HeldTool {
    async fn start(answer: Value) -> Self {
        let (hit, hits) = watch::channel(0usize);
        let hit = Arc::new(hit);
        let release = Arc::new(Semaphore::new(0));
        let gate = Arc::clone(&release);
        let route = warp::post()
            .and(warp::body::bytes())
            .then(move |_: bytes::Bytes| {
                let (hit, gate, answer) = (Arc::clone(&hit), Arc::clone(&gate), answer.clone());
                async move {
                    hit.send_modify(|n| *n += 1);
                    if let Ok(permit) = gate.acquire().await {
                        permit.forget();
                    }
                    warp::reply::json(&answer)
                }
            });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Self {
            url: format!("http://{addr}/hook"),
            hits,
            release,
        }
    }
}

fn open(app: &TestApp, key: &str, call_id: &str, last: Option<&str>) -> reqwest::RequestBuilder {
    let req = app.tenant(
        Method::GET,
        &format!("/api/v1/active-sessions/calls/{call_id}/stream"),
        key,
    );
    match last {
        Some(id) => req.header("Last-Event-ID", id),
        None => req,
    }
}

async fn json_of(req: reqwest::RequestBuilder) -> Value {
    let resp = req.send().await.expect("request");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

async fn stream(app: &TestApp, key: &str, call_id: &str, last: Option<&str>) -> Sse {
    Sse::new(open(app, key, call_id, last).send().await.expect("stream"))
}

/// (name, data) of events other than `state`: what a cursor covers.
fn records(events: &[Event]) -> Vec<(String, Value)> {
    events
        .iter()
        .filter(|e| e.name != "state")
        .map(|e| (e.name.clone(), e.data.clone()))
        .collect()
}

/// (role, text) of the `turn` events.
fn turns(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e.name == "turn")
        .map(|e| {
            (
                e.data["role"].as_str().expect("role").to_owned(),
                e.data["text"].as_str().expect("text").to_owned(),
            )
        })
        .collect()
}

/// The app against brisk simulated speech, the carrier simulator, and a tenant on
/// [`NUMBER`].
async fn setup(backend: Backend) -> (TestApp, CarrierSimHandle, Tele) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let realtime = RealtimeSimConfig {
        ms_per_char: 20,
        ..RealtimeSimConfig::with_api_key(REALTIME_KEY)
    };
    let app = spawn_app_with_realtime(backend, realtime, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base)
    })
    .await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    (app, sim, t)
}

/// Places a call from `from` with `script` and returns (its `CallSid`, its call id), the
/// id as the tenant's live-call stream gives it when the call starts.
async fn place(
    app: &TestApp,
    sim: &CarrierSimHandle,
    t: &Tele,
    from: &str,
    script: CallerScript,
) -> (String, String) {
    let mut list = Sse::new(
        app.tenant(Method::GET, "/api/v1/active-sessions/stream", &t.key)
            .send()
            .await
            .expect("list stream"),
    );
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
    let started = list
        .data_of(WAIT, |e| {
            e.name == "started" && e.data["call_sid"] == sid.as_str()
        })
        .await;
    let call_id = started["call_id"].as_str().expect("call id").to_owned();
    (sid, call_id)
}

async fn a_barge_in_streams_as_an_interrupted_turn_with_what_the_caller_heard(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    app.realtime.set_script(RealtimeScript::new(vec![
        ScriptTurn::say("Tell me about returns", LONG),
        ScriptTurn::say("Just the deadline, please", "Thirty days."),
    ]));
    // The caller cuts in while the long reply plays.
    let script = CallerScript::default()
        .silence(Duration::from_millis(1500))
        .speak(Duration::from_millis(600), "Tell me about returns")
        .silence(Duration::from_millis(1300))
        .speak(Duration::from_millis(600), "Just the deadline, please")
        .silence(Duration::from_millis(1500))
        .hang_up();
    let (_, call_id) = place(&app, &sim, &t, "+15551230010", script).await;
    let mut live = stream(&app, &t.key, &call_id, None).await;
    let events = live.read_to_end(WAIT).await;
    assert_eq!(events.last().map(|e| e.name.as_str()), Some("ended"));
    // The reply as far as the model generated it, and the part the caller heard.
    let long = events
        .iter()
        .find(|e| e.name == "turn" && e.data["interrupted"] == true)
        .unwrap_or_else(|| panic!("the interrupted reply: {events:?}"));
    assert_eq!(long.data["role"], "assistant");
    let text = long.data["text"].as_str().expect("text");
    let heard = long.data["heard_text"].as_str().expect("heard text");
    assert!(LONG.starts_with(text) && !text.is_empty(), "{long:?}");
    assert!(
        !heard.is_empty() && text.starts_with(heard) && heard.len() < text.len(),
        "the caller heard part of it: {long:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.data["interrupted"] == true)
            .count(),
        1
    );
    let short = events
        .iter()
        .find(|e| e.name == "turn" && e.data["text"] == "Thirty days.")
        .expect("the answer after the barge-in");
    assert_eq!(short.data["interrupted"], false);
    assert_eq!(short.data["heard_text"], Value::Null);
    app.stop().await;
}

async fn a_call_streams_its_turns_and_tool_calls_then_replays_and_resumes_exactly(
    backend: Backend,
) {
    let (app, sim, t) = setup(backend).await;
    let (_, other_key) = app.tenant_with_key("Other").await;
    let answer = json!({"order_id": "A1", "status": "shipped"});
    let mut tool = HeldTool::start(answer.clone()).await;
    app.approve_version(
        &t,
        json!({
            "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
            "tools": [{
                "name": "lookup_order",
                "type": "webhook",
                "description": "Looks up an order by its id.",
                "parameters": {
                    "type": "object",
                    "properties": {"order_id": {"type": "string"}},
                    "required": ["order_id"],
                    "additionalProperties": false
                },
                "url": tool.url,
                "timeout_ms": 30_000,
            }],
        }),
    )
    .await;
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::call_tool(
            QUESTION,
            "lookup_order",
            json!({"order_id": "A1"}),
            ANSWER,
        )]));

    // The console's view: the tenant's live list gives the call id as the call starts.
    let script = CallerScript::default()
        .silence(Duration::from_millis(1500))
        .speak(Duration::from_millis(700), QUESTION)
        .silence(Duration::from_secs(60))
        .hang_up();
    let (sid, call_id) = place(&app, &sim, &t, "+15551230001", script).await;

    // Refusals: another tenant, an unknown call, a malformed cursor (naming the header).
    let resp = open(&app, &other_key, &call_id, None)
        .send()
        .await
        .expect("x");
    expect_error(resp, 404, "not_found").await;
    let resp = open(&app, &t.key, "call_unknown", None)
        .send()
        .await
        .expect("x");
    expect_error(resp, 404, "not_found").await;
    for bad in ["12", "a.b", "1.2.3", "-1.0"] {
        let resp = open(&app, &t.key, &call_id, Some(bad))
            .send()
            .await
            .expect("x");
        let body = expect_error(resp, 400, "invalid_header").await;
        assert_eq!(body["field"], "Last-Event-ID", "{body}");
    }

    // Live: the state first, then the turns as they are written; the tool call while it
    // runs (its webhook is held), then again with its result.
    let mut live = stream(&app, &t.key, &call_id, None).await;
    let first = live.next().await;
    assert_eq!(first.name, "state", "{first:?}");
    assert_eq!(first.data["call_id"], call_id.as_str());
    assert_eq!(first.data["call_sid"], sid.as_str());
    let running = live.until(WAIT, |e| e.name == "tool_call").await;
    let running = running[running.len() - 1].clone();
    assert_eq!(running.data["status"], "running", "{running:?}");
    assert_eq!(running.data["name"], "lookup_order");
    assert_eq!(running.data["arguments"], json!({"order_id": "A1"}));
    assert_eq!(running.data["result"], Value::Null);
    assert_eq!(running.data["error"], Value::Null);
    assert_eq!(running.data["latency_ms"], Value::Null);
    tokio::time::timeout(WAIT, tool.hits.wait_for(|n| *n == 1))
        .await
        .expect("the tool was called")
        .expect("tool endpoint");
    tool.release.add_permits(1);
    let done = live
        .until(WAIT, |e| {
            e.name == "tool_call" && e.data["status"] != "running"
        })
        .await;
    let done = done[done.len() - 1].clone();
    assert_eq!(
        done.data["id"], running.data["id"],
        "the same call, replaced"
    );
    assert_eq!(done.data["status"], "succeeded", "{done:?}");
    assert_eq!(done.data["result"], answer);
    assert!(done.data["latency_ms"].as_i64().is_some(), "{done:?}");
    live.until(WAIT, |e| e.name == "turn" && e.data["text"] == ANSWER)
        .await;
    // The operator hangs up by the id the live view gave.
    let resp = app
        .tenant(
            Method::POST,
            &format!("/api/v1/calls/{call_id}/hangup"),
            &t.key,
        )
        .send()
        .await
        .expect("hang up");
    assert_eq!(resp.status(), 200);
    let rest = live.read_to_end(WAIT).await;
    let last = rest.last().expect("events");
    assert_eq!(last.name, "ended", "{rest:?}");
    assert_eq!(
        last.data,
        json!({"reason": "caller_hangup", "call_id": call_id})
    );
    let seen = live.seen.clone();
    assert_eq!(
        turns(&seen),
        [
            ("assistant".to_owned(), GREETING.to_owned()),
            ("user".to_owned(), QUESTION.to_owned()),
            ("assistant".to_owned(), ANSWER.to_owned()),
        ],
        "{seen:?}"
    );
    let ids: Vec<i64> = seen
        .iter()
        .filter(|e| e.name == "turn")
        .map(|e| e.data["id"].as_i64().expect("turn id"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in order, once: {ids:?}"
    );
    let user = seen
        .iter()
        .find(|e| e.name == "turn" && e.data["role"] == "user")
        .expect("the caller's turn");
    assert_eq!(user.data["interrupted"], false);
    assert_eq!(user.data["heard_text"], Value::Null);
    assert_eq!(
        seen.iter().filter(|e| e.name == "tool_call").count(),
        2,
        "running, then succeeded: {seen:?}"
    );
    assert!(seen.iter().all(|e| e.id.is_some()), "every event has an id");
    assert_eq!(seen.iter().filter(|e| e.name == "ended").count(), 1);

    // The ended call replays whole: every turn, the tool call as it ended, then `ended`.
    let mut replay = stream(&app, &t.key, &call_id, None).await;
    let replayed = replay.read_to_end(WAIT).await;
    let names: Vec<&str> = replayed.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["turn", "turn", "tool_call", "turn", "ended"],
        "{replayed:?}"
    );
    assert_eq!(turns(&replayed), turns(&seen));
    assert_eq!(replayed[2].data, done.data);
    assert_eq!(replayed[4].data, last.data);

    // Resuming after any event sends exactly what followed it, nothing twice.
    for (i, event) in replayed.iter().enumerate().take(replayed.len() - 1) {
        let cursor = event.id.as_deref().expect("id");
        let mut resumed = stream(&app, &t.key, &call_id, Some(cursor)).await;
        let after = resumed.read_to_end(WAIT).await;
        assert_eq!(
            records(&after),
            records(&replayed[i + 1..]),
            "after {cursor}"
        );
    }
    // …and from the live stream's cursor while the tool ran: what the live stream sent
    // after it (its result, the later turns, the end), nothing it had sent before.
    let cursor = running.id.as_deref().expect("id");
    let mut resumed = stream(&app, &t.key, &call_id, Some(cursor)).await;
    let after = resumed.read_to_end(WAIT).await;
    let at = seen
        .iter()
        .position(|e| e.id == running.id && e.name == "tool_call")
        .expect("the running event");
    let sorted = |events: &[Event]| {
        let mut r: Vec<String> = records(events)
            .into_iter()
            .map(|(n, d)| format!("{n} {d}"))
            .collect();
        r.sort();
        r
    };
    assert_eq!(sorted(&after), sorted(&seen[at + 1..]), "after {cursor}");
    assert_eq!(after.last().map(|e| e.name.as_str()), Some("ended"));
    assert!(after.iter().any(|e| e.data == done.data), "{after:?}");

    // Still another tenant's call after it ended.
    let resp = open(&app, &other_key, &call_id, None)
        .send()
        .await
        .expect("x");
    expect_error(resp, 404, "not_found").await;

    // The call's detail by the same id: its voice sessions (then each one's transcript,
    // function calls, handoffs and evaluation), and its timeline and status history.
    let sessions = json_of(app.tenant(
        Method::GET,
        &format!("/api/v1/voice-sessions?call_id={call_id}"),
        &t.key,
    ))
    .await;
    assert_eq!(sessions["total"], 1, "{sessions}");
    assert_eq!(sessions["data"][0]["call_id"], call_id.as_str());
    let session = json_of(app.tenant(
        Method::GET,
        &format!(
            "/api/v1/voice-sessions/{}",
            sessions["data"][0]["id"].as_str().expect("id")
        ),
        &t.key,
    ))
    .await;
    assert_eq!(session["function_calls"][0]["id"], done.data["id"]);
    assert_eq!(session["transcript"].as_array().map(Vec::len), Some(3));
    let theirs = json_of(app.tenant(
        Method::GET,
        &format!("/api/v1/voice-sessions?call_id={call_id}"),
        &other_key,
    ))
    .await;
    assert_eq!(theirs["total"], 0, "{theirs}");
    let log =
        json_of(app.tenant(Method::GET, &format!("/api/v1/call-logs/{call_id}"), &t.key)).await;
    assert!(
        !log["events"].as_array().expect("events").is_empty(),
        "{log}"
    );
    assert!(log["status_events"].is_array(), "{log}");
    app.stop().await;
}
