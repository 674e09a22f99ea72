//! Live calls over real sockets, end to end: an outbound conversation, barge-in accounting
//! checked against what the caller actually heard, the AI socket failing (reconnect, then
//! fallback), Twilio sockets that vanish without `stop`, hostile media input, 50 concurrent
//! calls, the live-session views and their SSE feed, and the wire conformance of every event
//! the runtime sends to the model.
//!
//! Nothing here sleeps: tests await simulator snapshots (`wait_for`, `wait_ended`), the
//! live-call registry's change feed, SSE frames or socket frames, under a timeout.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actors::active::ActiveEvent;
use actors::call::supervisor::CallSupervisorMsg;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CallDirection, CallEvent, CallStatus, CallerScript, CarrierConfig, CarrierSim,
    CarrierSimHandle, InboundCall, StreamCloser,
};
use stateset_voice::sim::realtime::{
    RealtimeScript, RealtimeSimConfig, ScriptTurn, SessionEnd, SessionSnapshot,
};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    Backend, REALTIME_KEY, Tele, TestApp, Ws, backend_tests, close_frame, metric, open_media,
    send_start, spawn_app_with, spawn_app_with_realtime, token_of,
};
use crate::sse::{Event, Sse};

backend_tests!(
    outbound_call_speaks_the_requested_greeting_then_converses,
    barge_in_clears_the_caller_and_truncates_to_what_was_heard,
    a_dropped_ai_socket_reconnects_and_the_conversation_goes_on,
    a_failed_ai_reconnect_hands_the_caller_to_the_fallback,
    a_twilio_socket_closed_without_stop_finalizes_the_call,
    hostile_media_input_is_counted_and_survived,
    fifty_concurrent_calls_keep_their_own_transcripts,
    active_sessions_are_listed_and_streamed_per_tenant,
    every_client_event_the_runtime_sends_conforms_to_the_schema,
    a_stream_start_its_handler_gave_up_on_leaves_the_caller_the_fallback,
    key_presses_are_answered_one_response_at_a_time,
);

const WAIT: Duration = Duration::from_secs(30);
/// The routed number of the main tenant.
const NUMBER: &str = "+14155550100";
/// The routed number of the second tenant.
const OTHER_NUMBER: &str = "+14155550199";
/// The approved agent version's greeting (see `helpers::approved_agent`).
const GREETING: &str = "Hello, thanks for calling.";
/// One 20 ms frame of caller audio: the barge-in estimate may lag what played by this much…
const FRAME_MS: u64 = 20;
/// …plus scheduling on a loaded test machine (socket hops, mailbox, mark-echo timing).
const SLACK_MS: u64 = 80;
/// A reply long enough (~8 s of audio, streamed over ~1.6 s) to still be playing, and still
/// being generated, when the caller talks over it.
const LONG: &str = "Our return policy is simple: you can send back any item within thirty \
    days of delivery for a full refund, as long as it is unused and in its original \
    packaging. Start a return from your account page, print the prepaid label, and drop the \
    parcel at any carrier location. Refunds reach your card within five business days after \
    we receive the item, and exchanges ship the same day.";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn setup(backend: Backend) -> (TestApp, CarrierSimHandle, Tele) {
    setup_with(backend, realtime_config()).await
}

/// The realtime simulator of these tests: brisk speech (20 ms of audio per character, so
/// the greeting plays in about half a second and calls stay short), streamed at the
/// simulator's default five times real time.
fn realtime_config() -> RealtimeSimConfig {
    RealtimeSimConfig {
        ms_per_char: 20,
        ..RealtimeSimConfig::with_api_key(REALTIME_KEY)
    }
}

/// The app (against a realtime simulator started with `realtime`), the carrier simulator,
/// and a tenant routed on [`NUMBER`] that may run 100 calls at once.
async fn setup_with(
    backend: Backend,
    realtime: RealtimeSimConfig,
) -> (TestApp, CarrierSimHandle, Tele) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let app = spawn_app_with_realtime(backend, realtime, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base)
    })
    .await;
    let t = app
        .telephony_tenant("Acme", NUMBER, json!({"max_concurrent_calls": 100}))
        .await;
    let resp = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/admin/tenants/{}", t.tenant_id),
        )
        .json(&json!({"max_concurrent_calls": 100}))
        .send()
        .await
        .expect("patch tenant");
    assert_eq!(resp.status(), 200, "tenant limit");
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    (app, sim, t)
}

/// Places an inbound call from `from` to `to` through the carrier simulator.
fn call_in(
    app: &TestApp,
    sim: &CarrierSimHandle,
    t: &Tele,
    from: &str,
    to: &str,
    script: CallerScript,
) -> String {
    sim.place_inbound_call(InboundCall {
        account_sid: t.account_sid.clone(),
        from: from.into(),
        to: to.into(),
        voice_url: app.url("/api/v1/incoming-call"),
        status_callback: Some(app.url("/api/v1/call-status")),
        status_callback_events: vec![],
        script,
    })
    .expect("place call")
}

/// (role, text) of every transcript turn of a voice session.
fn transcript(session: &Value) -> Vec<(String, String)> {
    session["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .map(|t| {
            (
                t["role"].as_str().expect("role").to_owned(),
                t["text"].as_str().expect("text").to_owned(),
            )
        })
        .collect()
}

fn turns(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(r, t)| ((*r).to_owned(), (*t).to_owned()))
        .collect()
}

fn has_call_event(log: &Value, kind: &str, event: &str) -> bool {
    log["events"]
        .as_array()
        .expect("events")
        .iter()
        .any(|e| e["kind"] == kind && e["detail"]["event"] == event)
}

/// The `data` of every `voice.call.completed` event written for `call_id`.
pub(crate) async fn completed_events(app: &TestApp, call_id: &str) -> Vec<Value> {
    const SQL: &str = "SELECT payload FROM webhook_events WHERE event = 'voice.call.completed'";
    let payloads: Vec<String> = if app.database_url.starts_with("sqlite") {
        let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&app.database_url)
            .await
            .expect("database");
        sqlx::query_scalar(SQL)
            .fetch_all(&mut db)
            .await
            .expect("events")
    } else {
        let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&app.database_url)
            .await
            .expect("database");
        sqlx::query_scalar(SQL)
            .fetch_all(&mut db)
            .await
            .expect("events")
    };
    payloads
        .iter()
        .map(|p| serde_json::from_str::<Value>(p).expect("event JSON"))
        .map(|e| e["data"].clone())
        .filter(|d| d["call_id"] == call_id)
        .collect()
}

/// Waits until the call's (last) actor is gone, its records final, then returns the one
/// `voice.call.completed` of the call.
pub(crate) async fn completed_once(
    app: &TestApp,
    live: &mut broadcast::Receiver<ActiveEvent>,
    call_id: &str,
) -> Value {
    ended(live, call_id).await;
    let mut events = completed_events(app, call_id).await;
    assert_eq!(
        events.len(),
        1,
        "exactly one voice.call.completed: {events:?}"
    );
    events.remove(0)
}

/// Client event types of a realtime session other than the audio appends, in order.
fn control_events(s: &SessionSnapshot) -> Vec<&str> {
    s.client_events
        .iter()
        .map(String::as_str)
        .filter(|e| *e != "input_audio_buffer.append")
        .collect()
}

/// Waits on the live-call feed for the call with this SID to start; returns its call id.
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

/// Waits on the live-call feed for the call to end; returns the reason.
pub(crate) async fn ended(live: &mut broadcast::Receiver<ActiveEvent>, call_id: &str) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            match live.recv().await {
                Ok(ActiveEvent::Ended {
                    call_id: id,
                    reason,
                    ..
                }) if id.as_str() == call_id => return reason,
                Ok(_) => continue,
                Err(e) => panic!("live-call feed: {e}"),
            }
        }
    })
    .await
    .expect("the call ends")
}

/// Reads the raw media socket until the server sends audio.
async fn first_media(ws: &mut Ws) -> Value {
    tokio::time::timeout(WAIT, async {
        while let Some(msg) = ws.next().await {
            if let Ok(Message::Text(text)) = msg {
                let v: Value = serde_json::from_str(text.as_str()).expect("server JSON");
                if v["event"] == "media" {
                    return v;
                }
            }
        }
        panic!("the media socket ended before any audio")
    })
    .await
    .expect("audio from the agent")
}

/// Whether `end` says the Twilio socket went away: as its reader saw it (`read`), or as the
/// writer did when it lost the race to notice (`twilio_write_failed`) — never anything that
/// blames the call actor or the caller.
fn socket_gone(end: &str, read: &str) -> bool {
    end == read || end == "twilio_write_failed"
}

async fn live_call_actors(app: &TestApp) -> usize {
    let supervisor = app.state.actors.calls.get().expect("call supervisor");
    ractor::call_t!(supervisor, CallSupervisorMsg::Live, 5_000).expect("call supervisor answers")
}

async fn health_live(app: &TestApp) -> u16 {
    app.client
        .get(app.url("/health/live"))
        .send()
        .await
        .expect("health")
        .status()
        .as_u16()
}

// === 1. Outbound ===

async fn outbound_call_speaks_the_requested_greeting_then_converses(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    let callee = "+15557654321";
    let greeting = "Hi, this is Acme.";
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::say(
            "Is this about my delivery?",
            "Yes, your parcel arrives tomorrow.",
        )]));
    sim.set_callee_script(
        callee,
        CallerScript::default()
            .silence(ms(1500))
            .speak(ms(700), "Is this about my delivery?")
            .silence(ms(1500))
            .hang_up(),
    );
    let resp = app
        .tenant(Method::POST, "/api/v1/make-call", &t.key)
        .json(&json!({"to": callee, "greeting": greeting}))
        .send()
        .await
        .expect("make-call");
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.expect("json");
    let sid = body["call_sid"].as_str().expect("call sid").to_owned();
    let call = tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("call ends");
    assert_eq!(call.direction, CallDirection::OutboundApi);
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.stream_closed_by(), Some(StreamCloser::Caller));
    assert!(call.media.media_received > 0, "{:?}", call.media);
    assert_eq!(call.media.clears, 0, "nobody talked over the agent");

    // The model was asked for the request's greeting first (not the version's), then
    // answered the callee.
    let rt = app.realtime.sessions();
    assert_eq!(rt.len(), 1);
    assert_eq!(
        rt[0].said,
        vec![
            greeting.to_owned(),
            "Yes, your parcel arrives tomorrow.".to_owned()
        ]
    );
    assert_eq!(rt[0].user_turns, vec!["Is this about my delivery?"]);
    assert!(rt[0].errors.is_empty(), "{:?}", rt[0].errors);
    // The call's end closed the model's socket properly (a close frame, not a reset).
    tokio::time::timeout(
        WAIT,
        app.realtime
            .wait_for(|s| s.iter().all(|s| s.ended.is_some())),
    )
    .await
    .expect("ai session ends");
    assert_eq!(
        app.realtime.sessions()[0].ended,
        Some(SessionEnd::ClientClosed)
    );

    let log = app.call_log(&t.key, &sid).await;
    assert_eq!(log["status"], "completed");
    assert_eq!(log["direction"], "outbound");
    assert_eq!(log["greeting"], greeting);
    assert_eq!(log["stream_status"], "stopped");
    assert_eq!(log["end_reason"], "caller_hangup");
    let session = app.voice_session_of(&t.key, &sid).await;
    assert_eq!(session["status"], "completed");
    assert_eq!(session["end_reason"], "caller_hangup");
    assert_eq!(session["reconnects"], 0);
    assert!(session["first_audio_ms"].as_i64().is_some(), "{session}");
    assert!(session["ended_at"].is_string());
    let usage = &session["usage"];
    let (input, output, total) = (
        usage["input_tokens"].as_i64().expect("input"),
        usage["output_tokens"].as_i64().expect("output"),
        usage["total_tokens"].as_i64().expect("total"),
    );
    assert!(input > 0 && output > 0, "{usage}");
    assert_eq!(total, input + output, "{usage}");
    assert_eq!(
        transcript(&session),
        turns(&[
            ("assistant", greeting),
            ("user", "Is this about my delivery?"),
            ("assistant", "Yes, your parcel arrives tomorrow."),
        ]),
        "{session}"
    );
    assert!(
        session["transcript"]
            .as_array()
            .expect("turns")
            .iter()
            .all(|t| t["interrupted"] == false && t["heard_text"].is_null())
    );
    app.stop().await;
}

// === 2. Barge-in ===

async fn barge_in_clears_the_caller_and_truncates_to_what_was_heard(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    app.realtime.set_script(RealtimeScript::new(vec![
        ScriptTurn::say("Tell me about returns", LONG),
        ScriptTurn::say("Just the deadline, please", "Thirty days."),
    ]));
    // The greeting has played by ~0.8 s; the reply starts ~0.7 s after the question ends
    // and the caller cuts in ~0.6 s into it, while the model is still generating it.
    let script = CallerScript::default()
        .silence(ms(1500))
        .speak(ms(600), "Tell me about returns")
        .silence(ms(1300))
        .speak(ms(600), "Just the deadline, please")
        .silence(ms(1500))
        .hang_up();
    let sid = call_in(&app, &sim, &t, "+15551230010", NUMBER, script);
    let call = tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("call ends");
    assert_eq!(call.status, CallStatus::Completed);
    let media = &call.media;
    assert_eq!(media.clears, 1, "one barge-in, one clear: {media:?}");
    assert!(media.cleared_ms > 0, "audio was still queued: {media:?}");

    let rt = app.realtime.sessions();
    assert_eq!(rt.len(), 1);
    let s = &rt[0];
    let [greeting, long, short] = &s.responses[..] else {
        panic!("three responses: {:#?}", s.responses)
    };
    assert_eq!(
        (greeting.text.as_str(), greeting.status.as_str()),
        (GREETING, "completed")
    );
    assert_eq!(long.text, LONG);
    assert_eq!(long.status, "cancelled", "{long:?}");
    assert_eq!(long.reason.as_deref(), Some("turn_detected"));
    assert!(long.audio_ms_sent < long.audio_ms_total, "{long:?}");
    assert_eq!(
        (short.text.as_str(), short.status.as_str()),
        ("Thirty days.", "completed")
    );

    // Exactly one truncate, of the interrupted item, accepted, within the audio it had.
    assert_eq!(s.truncations.len(), 1, "{:?}", s.truncations);
    let cut = &s.truncations[0];
    assert_eq!(cut.item_id, long.item_id);
    assert!(cut.accepted, "{cut:?}");
    let item_audio = cut.item_audio_ms.expect("a known item");
    assert!(cut.audio_end_ms <= item_audio, "{cut:?}");
    let control = control_events(s);
    assert_eq!(
        control
            .iter()
            .filter(|e| **e == "conversation.item.truncate")
            .count(),
        1,
        "{control:?}"
    );
    // Server VAD already cancelled the response: a `response.cancel` would be redundant.
    assert!(!control.contains(&"response.cancel"), "{control:?}");
    assert!(s.errors.is_empty(), "{:?}", s.errors);

    // What reached the caller of the long reply: everything received minus the two replies
    // that played in full. Of that, `cleared_ms` was still queued when the clear arrived, so
    // the caller heard the rest, and the truncate must say so (the estimate from mark echoes
    // may lag by a frame plus scheduling). Audio of the cancelled response arriving after
    // the clear would show up here as more heard than truncated.
    let received_ms = media.bytes_received / 8;
    let forwarded = received_ms
        .checked_sub(greeting.audio_ms_sent + short.audio_ms_sent)
        .expect("the full replies were received");
    assert!(
        forwarded <= long.audio_ms_sent,
        "{forwarded} ms forwarded of {long:?}"
    );
    let heard = forwarded
        .checked_sub(media.cleared_ms)
        .expect("cleared audio had been forwarded");
    assert!(heard > 0, "the caller heard part of the reply");
    assert!(
        heard.abs_diff(cut.audio_end_ms) <= FRAME_MS + SLACK_MS,
        "truncated at {} ms, the caller heard {heard} ms ({forwarded} ms forwarded, {} ms cleared)",
        cut.audio_end_ms,
        media.cleared_ms
    );

    // The transcript keeps what the model said and what the caller heard of it.
    let session = app.voice_session_of(&t.key, &sid).await;
    assert_eq!(session["status"], "completed");
    let said = transcript(&session);
    let expected_roles = ["assistant", "user", "assistant", "user", "assistant"];
    assert_eq!(
        said.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
        expected_roles,
        "{session}"
    );
    assert_eq!(said[0].1, GREETING);
    assert_eq!(said[1].1, "Tell me about returns");
    assert_eq!(said[3].1, "Just the deadline, please");
    assert_eq!(said[4].1, "Thirty days.");
    let all = session["transcript"].as_array().expect("turns");
    let turn = &all[2];
    assert_eq!(turn["interrupted"], true, "{turn}");
    let text = turn["text"].as_str().expect("text");
    assert_eq!(text, long.said, "the turn is what the model had said");
    assert!(LONG.starts_with(text) && text.len() < LONG.len(), "{text}");
    let heard_text = turn["heard_text"].as_str().expect("heard_text");
    assert!(
        !heard_text.is_empty() && heard_text.len() < text.len() && text.starts_with(heard_text),
        "heard {heard_text:?} of {text:?}"
    );
    // Proportional to the audio heard (a partial word may be cut, trailing spaces trimmed).
    let chars = text.chars().count() as u64;
    let keep = chars * cut.audio_end_ms / forwarded;
    let got = heard_text.chars().count() as u64;
    assert!(
        got <= keep && got + 2 >= keep,
        "{got} chars heard, {keep} expected"
    );
    for (i, turn) in all.iter().enumerate().filter(|(i, _)| *i != 2) {
        assert_eq!(turn["interrupted"], false, "turn {i}: {turn}");
        assert!(turn["heard_text"].is_null(), "turn {i}: {turn}");
    }
    app.stop().await;
}

// === 3. AI socket failures ===

async fn a_dropped_ai_socket_reconnects_and_the_conversation_goes_on(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::say(
            "Are you still there?",
            "Yes, I am still here.",
        )]));
    // Cut after the greeting (sent by ~0.4 s), well before the caller speaks at 2.2 s.
    app.realtime.drop_next_session_after(ms(1200));
    let script = CallerScript::default()
        .silence(ms(2200))
        .speak(ms(600), "Are you still there?")
        .silence(ms(1500))
        .hang_up();
    let sid = call_in(&app, &sim, &t, "+15551230020", NUMBER, script);
    let call = tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("call ends");
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.stream_closed_by(), Some(StreamCloser::Caller));

    let rt = app.realtime.sessions();
    assert_eq!(rt.len(), 2, "one reconnect");
    assert_eq!(rt[0].ended, Some(SessionEnd::Dropped));
    assert_eq!(rt[0].said, vec![GREETING.to_owned()]);
    // The new session is configured again and given the conversation so far (the greeting),
    // without greeting a second time; then it answers the caller.
    assert_eq!(rt[1].updates, 1);
    let control = control_events(&rt[1]);
    assert_eq!(
        control.get(..2),
        Some(&["session.update", "conversation.item.create"][..]),
        "{control:?}"
    );
    assert!(!control.contains(&"response.create"), "{control:?}");
    assert_eq!(rt[1].said, vec!["Yes, I am still here.".to_owned()]);
    assert_eq!(rt[1].user_turns, vec!["Are you still there?"]);
    assert!(rt[1].errors.is_empty(), "{:?}", rt[1].errors);

    let session = app.voice_session_of(&t.key, &sid).await;
    assert_eq!(session["reconnects"], 1, "{session}");
    assert_eq!(session["status"], "completed");
    assert_eq!(session["end_reason"], "caller_hangup");
    assert_eq!(
        transcript(&session),
        turns(&[
            ("assistant", GREETING),
            ("user", "Are you still there?"),
            ("assistant", "Yes, I am still here."),
        ]),
        "{session}"
    );
    let log = app.call_log(&t.key, &sid).await;
    assert!(has_call_event(&log, "ai", "reconnect"), "{log}");
    assert!(!has_call_event(&log, "ai", "failed"), "{log}");
    assert_eq!(log["status"], "completed");
    app.stop().await;
}

async fn a_failed_ai_reconnect_hands_the_caller_to_the_fallback(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    app.realtime.drop_next_session_after(ms(1000));
    let sid = call_in(
        &app,
        &sim,
        &t,
        "+15551230021",
        NUMBER,
        CallerScript::default().silence(Duration::from_secs(30)),
    );
    // Once the first AI session is up, the next connection (the reconnect) is refused.
    tokio::time::timeout(WAIT, app.realtime.wait_for(|s| !s.is_empty()))
        .await
        .expect("ai session");
    app.realtime.reject_next_connect(503);
    let call = tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("call ends");
    // The runtime closed the stream; Twilio asked what next and got the route's fallback.
    assert_eq!(call.stream_closed_by(), Some(StreamCloser::Server));
    assert_eq!(call.said, vec!["Connecting you to our team.".to_owned()]);
    let dialed = call.events.iter().find_map(|e| match e {
        CallEvent::Dialed { numbers, .. } => Some(numbers.clone()),
        _ => None,
    });
    assert_eq!(dialed, Some(vec!["+15550009999".to_owned()]));
    let closed_at = call
        .events
        .iter()
        .position(|e| matches!(e, CallEvent::StreamClosed { .. }))
        .expect("stream closed");
    let said_at = call
        .events
        .iter()
        .position(|e| matches!(e, CallEvent::Said(_)))
        .expect("said");
    assert!(closed_at < said_at);

    let rt = app.realtime.sessions();
    assert_eq!(rt.len(), 1);
    assert_eq!(rt[0].ended, Some(SessionEnd::Dropped));
    let statuses: Vec<u16> = app.realtime.handshakes().iter().map(|h| h.status).collect();
    assert_eq!(statuses, [101, 503]);

    let session = app.voice_session_of(&t.key, &sid).await;
    assert_eq!(session["status"], "failed", "{session}");
    assert_eq!(session["reconnects"], 1);
    // The reason is one of a bounded set; what failed is its detail.
    assert_eq!(session["end_reason"], "ai_failed", "{session}");
    assert!(session["ended_at"].is_string());
    let log = app.call_log(&t.key, &sid).await;
    assert_eq!(log["end_reason"], "ai_failed", "{log}");
    assert!(has_call_event(&log, "ai", "reconnect"), "{log}");
    assert!(has_call_event(&log, "ai", "failed"), "{log}");
    let call_id = log["id"].as_str().expect("id");
    let stored = app
        .state
        .store
        .sessions_of_call(&actors::ids::CallId::from_stored(call_id.to_owned()))
        .await
        .expect("sessions");
    let detail = stored[0].end_detail.as_deref().expect("end detail");
    assert!(
        detail.starts_with("reconnect failed") && detail.contains("503"),
        "{detail}"
    );
    // Exactly one voice.call.completed: the caller went to the route's fallback.
    let completed = completed_events(&app, call_id).await;
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0]["outcome"], "fallback");
    assert_eq!(completed[0]["end_reason"], "ai_failed");
    assert_eq!(completed[0]["end_detail"], detail);
    app.stop().await;
}

// === 4. Twilio socket gone without `stop` ===

async fn a_twilio_socket_closed_without_stop_finalizes_the_call(backend: Backend) {
    // Without resuming lost legs (`leg_loss.rs` tests the resume), the call ends.
    let app = spawn_app_with(backend, |raw| raw.set("TWILIO_LEG_RESUME_SECONDS", "0")).await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    let mut live = app.state.actors.active.subscribe();
    // A close frame without `stop`, then a TCP connection that just goes away.
    for (abrupt, reason) in [(false, "socket_closed"), (true, "socket_error")] {
        let (call_sid, xml) = app.inbound(&t, "+15551230030", NUMBER).await;
        let mut ws = open_media(&app, None).await;
        send_start(&mut ws, &t.account_sid, &call_sid, Some(&token_of(&xml))).await;
        let call_id = started(&mut live, &call_sid).await;
        first_media(&mut ws).await;
        let name = format!("call:{call_sid}");
        assert!(ractor::registry::where_is(name.clone()).is_some());
        if abrupt {
            drop(ws);
        } else {
            ws.close(None).await.expect("close frame");
        }
        // The registry announces the end once the supervisor has seen the actor stop (the
        // actor's state is dropped with the supervision event).
        assert_eq!(ended(&mut live, &call_id).await, "ended");
        assert!(
            ractor::registry::where_is(name).is_none(),
            "the call actor is gone"
        );
        assert_eq!(live_call_actors(&app).await, 0);
        assert!(app.state.actors.active.is_empty());
        // The AI leg was released with it.
        tokio::time::timeout(
            WAIT,
            app.realtime
                .wait_for(|s| s.iter().all(|s| s.ended == Some(SessionEnd::ClientClosed))),
        )
        .await
        .unwrap_or_else(|_| {
            let ends: Vec<_> = app
                .realtime
                .sessions()
                .into_iter()
                .map(|s| s.ended)
                .collect();
            panic!("ai sessions closed by the runtime: {ends:?}")
        });

        let log = app.call_log(&t.key, &call_sid).await;
        assert_eq!(log["stream_status"], "stopped", "{log}");
        let end = log["end_reason"].as_str().expect("end reason");
        assert!(socket_gone(end, reason), "{log}");
        assert!(
            log["events"]
                .as_array()
                .expect("events")
                .iter()
                .any(|e| e["kind"] == "call.completed" && e["detail"]["reason"] == end),
            "{log}"
        );
        assert!(
            !has_call_event(&log, "supervisor", "call_actor_failed"),
            "{log}"
        );
        let session = app.voice_session_of(&t.key, &call_sid).await;
        assert_eq!(session["status"], "completed", "{session}");
        assert_eq!(session["end_reason"], end);
        assert!(session["ended_at"].is_string());
    }
    app.stop().await;
}

// === 5. Hostile media input ===

async fn hostile_media_input_is_counted_and_survived(backend: Backend) {
    // No carrier behind this socket to resume on: the call ends with it.
    let app = spawn_app_with(backend, |raw| raw.set("TWILIO_LEG_RESUME_SECONDS", "0")).await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    let mut live = app.state.actors.active.subscribe();
    let before = app.metrics().await;
    let (call_sid, xml) = app.inbound(&t, "+15551230040", NUMBER).await;
    let mut ws = open_media(&app, None).await;
    let token = token_of(&xml);
    send_start(&mut ws, &t.account_sid, &call_sid, Some(&token)).await;
    let call_id = started(&mut live, &call_sid).await;
    first_media(&mut ws).await;
    // While the call is live it is counted by direction, never by tenant (an unbounded
    // label).
    let during = app.metrics().await;
    assert!(
        during
            .lines()
            .any(|l| l.starts_with("calls_active{direction=\"inbound\"}")),
        "{during}"
    );
    assert!(
        !during
            .lines()
            .any(|l| l.starts_with("calls_active") && l.contains("tenant=")),
        "{during}"
    );

    let media = |payload: &str| {
        json!({"event": "media", "sequenceNumber": "9", "streamSid": "MZ0001",
               "media": {"track": "inbound", "chunk": "1", "timestamp": "20", "payload": payload}})
        .to_string()
    };
    let bad = [
        "not json at all".to_owned(),
        "{".to_owned(),
        "[]".to_owned(),
        r#"{"foo": 1}"#.to_owned(),
        r#"{"event": "media", "streamSid": "MZ0001"}"#.to_owned(),
        r#"{"event": "dtmf"}"#.to_owned(),
        media("!!! not base64 !!!"),
        media(""),
        // Valid base64, but far more audio than any frame (8 KiB decoded at most).
        media(&STANDARD.encode(vec![0xFF_u8; 9_000])),
    ];
    let unknown = [
        r#"{"event": "bogus", "streamSid": "MZ0001"}"#,
        r#"{"event": "Media", "streamSid": "MZ0001"}"#,
    ];
    for frame in &bad {
        ws.send(Message::text(frame.clone())).await.expect("send");
    }
    for frame in unknown {
        ws.send(Message::text(frame)).await.expect("send");
    }
    // `connected` and `start` again, a binary frame, a ping.
    send_start(&mut ws, &t.account_sid, &call_sid, Some(&token)).await;
    ws.send(Message::binary(vec![1_u8, 2, 3]))
        .await
        .expect("send");
    ws.send(Message::Ping(vec![7_u8].into()))
        .await
        .expect("send");
    // A flood: 2000 frames (40 s of audio) as fast as the socket takes them.
    const FLOOD: u64 = 2_000;
    let silence = STANDARD.encode([0xFF_u8; 160]);
    for i in 0..FLOOD {
        let frame = json!({"event": "media", "sequenceNumber": (i + 10).to_string(),
            "streamSid": "MZ0001", "media": {"track": "inbound", "chunk": (i + 1).to_string(),
            "timestamp": (i * 20).to_string(), "payload": silence}});
        ws.feed(Message::text(frame.to_string()))
            .await
            .expect("feed");
    }
    ws.flush().await.expect("flush");
    // Then a key press: once the model has it, the reader has been through everything
    // before it, and the stream is still alive.
    ws.send(Message::text(
        json!({"event": "dtmf", "sequenceNumber": "9999", "streamSid": "MZ0001",
               "dtmf": {"track": "inbound_track", "digit": "5"}})
        .to_string(),
    ))
    .await
    .expect("send");
    tokio::time::timeout(
        WAIT,
        app.realtime.wait_for(|s| {
            s.first()
                .is_some_and(|s| s.user_turns.iter().any(|u| u.contains("key 5")))
        }),
    )
    .await
    .expect("the key press reached the model");
    let after = app.metrics().await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        metric(&after, name, labels) - metric(&before, name, labels)
    };
    assert!(
        delta("media_bad_frames_total", &[("leg", "twilio")]) >= bad.len() as f64,
        "{after}"
    );
    assert!(delta("media_unknown_events_total", &[("leg", "twilio")]) >= 2.0);
    assert!(delta("media_unexpected_events_total", &[("leg", "twilio")]) >= 2.0);
    let inbound = delta(
        "media_frames_total",
        &[("leg", "twilio"), ("direction", "inbound")],
    );
    let dropped = delta("media_frames_dropped_total", &[("leg", "ai")]);
    assert!(
        inbound + dropped >= FLOOD as f64,
        "every flood frame forwarded or counted as dropped: {inbound} + {dropped}"
    );
    // Still live, and the server serves other requests.
    let list: Value = app
        .tenant(Method::GET, "/api/v1/active-sessions", &t.key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["data"][0]["call_sid"], call_sid.as_str(), "{list}");
    assert_eq!(health_live(&app).await, 200);

    // A frame over 64 KiB: the server closes the socket.
    let _ = ws.send(Message::text("x".repeat(70 * 1024))).await;
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .expect("the server closes the socket");
    assert_eq!(ended(&mut live, &call_id).await, "ended");
    assert_eq!(health_live(&app).await, 200);
    let log = app.call_log(&t.key, &call_sid).await;
    assert_eq!(log["stream_status"], "stopped", "{log}");
    let end = log["end_reason"].as_str().expect("end reason");
    assert!(socket_gone(end, "socket_error"), "{log}");
    let session = app.voice_session_of(&t.key, &call_sid).await;
    assert_eq!(session["status"], "completed", "{session}");
    assert_eq!(session["end_reason"], end);
    app.stop().await;
}

// === 6. Fifty at once ===

async fn fifty_concurrent_calls_keep_their_own_transcripts(backend: Backend) {
    const CALLS: usize = 50;
    let (app, sim, t) = setup(backend).await;
    // Fifty calls in waves can take longer than the default idle timeout (30 s) to be all
    // answered on a loaded machine: the first callers, silent after their question, must not
    // be said goodbye to before the last is answered.
    app.approve_version(&t, json!({"idle_timeout_seconds": 600}))
        .await;
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::say(
            "question from {session}",
            "A{turn} for {session}",
        )]));
    let mut live = app.state.actors.active.subscribe();
    // The callers give their model session 5 s to come up and greet before speaking (audio
    // that arrives earlier is dropped, not buffered; speech over a greeting still playing is a
    // real barge-in and would clear it — on a loaded machine fifty sessions can take over two
    // seconds to come up), then stay on the line.
    let script = CallerScript::default()
        .silence(ms(5000))
        .speak(ms(500), "my question")
        .silence(Duration::from_secs(30))
        .with_max_duration(Duration::from_secs(300));
    // Calls arrive in waves of ten (the next wave once the last is live), so the setup burst
    // is ten webhooks and media starts at a time, while all fifty end up live together.
    const WAVE: usize = 10;
    let mut calls: HashMap<String, String> = HashMap::new();
    let place_wave = |calls: &mut HashMap<String, String>| {
        for i in calls.len()..(calls.len() + WAVE).min(CALLS) {
            let from = format!("+1555300{i:04}");
            calls.insert(call_in(&app, &sim, &t, &from, NUMBER, script.clone()), from);
        }
    };
    place_wave(&mut calls);
    let mut started: HashSet<String> = HashSet::new();
    let mut waiting: HashSet<String> = HashSet::new();
    let mut peak = 0;
    // Every call answers its caller; only then do the callers hang up.
    let answered = tokio::time::timeout(Duration::from_secs(60), async {
        while started.len() < CALLS || !waiting.is_empty() {
            match live.recv().await {
                Ok(ActiveEvent::Started(c)) if calls.contains_key(&c.call_sid) => {
                    started.insert(c.call_sid.clone());
                    waiting.insert(c.call_sid);
                    if started.len() == calls.len() && calls.len() < CALLS {
                        place_wave(&mut calls);
                    }
                }
                Ok(ActiveEvent::Updated(c))
                    if matches!(&c.last_line, Some((role, text))
                        if role == "assistant" && text.starts_with("A1 for ")) =>
                {
                    waiting.remove(&c.call_sid);
                }
                Ok(ActiveEvent::Ended { call_id, .. }) => {
                    panic!("call {call_id} ended before every call was answered")
                }
                Ok(_) => {}
                Err(e) => panic!("live-call feed: {e}"),
            }
            peak = peak.max(app.state.actors.active.len());
        }
    })
    .await;
    if answered.is_err() {
        // Say what became of the calls that never got their answer.
        let rt = app.realtime.sessions();
        let mut report = Vec::new();
        let unanswered = calls
            .keys()
            .filter(|sid| !started.contains(*sid) || waiting.contains(*sid));
        for sid in unanswered {
            let from = &calls[sid];
            let model = rt.iter().find(|s| {
                s.config["instructions"]
                    .as_str()
                    .is_some_and(|i| i.contains(from.as_str()))
            });
            let log = app.call_log(&t.key, sid).await;
            report.push(format!(
                "{sid}: carrier {:?}\n  model {:?}\n  log {log}",
                sim.call(sid).map(|c| (c.status, c.media, c.events)),
                model.map(|s| (
                    &s.responses,
                    &s.user_turns,
                    s.speech_started,
                    s.audio_bytes_received,
                    &s.ended
                )),
            ));
        }
        panic!(
            "{} of {} calls placed, {} live, {} never got their answer:\n{}",
            calls.len(),
            CALLS,
            started.len(),
            report.len(),
            report.join("\n")
        );
    }
    assert_eq!(peak, CALLS, "all fifty calls were live at once");
    for sid in calls.keys() {
        sim.hangup(sid).expect("hang up");
    }
    let ends = tokio::time::timeout(
        Duration::from_secs(60),
        futures::future::join_all(calls.keys().map(|sid| sim.wait_ended(sid))),
    )
    .await
    .expect("every call ends");
    for call in &ends {
        assert_eq!(call.status, CallStatus::Completed, "{}", call.sid);
        assert_eq!(call.media.clears, 0, "{}: {:?}", call.sid, call.media);
    }

    // Each caller's number is in exactly one model session's instructions.
    let rt = app.realtime.sessions();
    assert_eq!(rt.len(), CALLS, "one model session per call");
    let mut session_of: HashMap<&str, &str> = HashMap::new();
    for s in &rt {
        let instructions = s.config["instructions"].as_str().expect("instructions");
        let from = calls
            .values()
            .find(|n| instructions.contains(n.as_str()))
            .expect("a caller's number");
        assert!(session_of.insert(from, &s.id).is_none(), "{from} twice");
        assert!(s.errors.is_empty(), "{:?}", s.errors);
    }
    // …and each call's transcript is that session's conversation, complete.
    for (sid, from) in &calls {
        let session = app.voice_session_of(&t.key, sid).await;
        assert_eq!(session["status"], "completed", "{session}");
        let model = session_of[from.as_str()];
        assert_eq!(
            transcript(&session),
            turns(&[
                ("assistant", GREETING),
                ("user", &format!("question from {model}")),
                ("assistant", &format!("A1 for {model}")),
            ]),
            "{sid} from {from}"
        );
        let log = app.call_log(&t.key, sid).await;
        assert_eq!(log["from"], from.as_str());
        assert_eq!(log["status"], "completed");
    }
    assert!(app.state.actors.active.is_empty());
    app.stop().await;
}

// === 7. Active sessions ===

/// The tenant's live-call stream.
async fn open_stream(app: &TestApp, key: &str) -> Sse {
    Sse::new(
        app.tenant(Method::GET, "/api/v1/active-sessions/stream", key)
            .send()
            .await
            .expect("sse"),
    )
}

/// (event, call id) of SSE events, for failure messages.
fn summary(seen: &[Event]) -> Vec<(&str, &str)> {
    seen.iter()
        .map(|e| (e.name.as_str(), e.data["call_id"].as_str().unwrap_or("?")))
        .collect()
}

async fn active_list(req: reqwest::RequestBuilder) -> Vec<Value> {
    let resp = req.send().await.expect("list");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    body["data"].as_array().expect("data").clone()
}

async fn active_sessions_are_listed_and_streamed_per_tenant(backend: Backend) {
    let (app, sim, t) = setup(backend).await;
    let other = app.telephony_tenant("Other", OTHER_NUMBER, json!({})).await;
    sim.add_account(other.account_sid.clone(), other.auth_token.clone());
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::say(
            "Where is my order?",
            "It ships today.",
        )]));
    let mut mine = open_stream(&app, &t.key).await;
    let mut theirs = open_stream(&app, &other.key).await;
    let script = CallerScript::default()
        .silence(ms(1500))
        .speak(ms(600), "Where is my order?")
        .silence(Duration::from_secs(30));
    let sid = call_in(&app, &sim, &t, "+15551230070", NUMBER, script);

    let start = mine
        .data_of(WAIT, |Event { name, data: d, .. }| {
            name == "started" && d["call_sid"] == sid.as_str()
        })
        .await;
    let call_id = start["call_id"].as_str().expect("call id").to_owned();
    assert_eq!(start["tenant_id"], t.tenant_id.as_str());
    assert_eq!(start["direction"], "inbound");
    assert_eq!(start["from"], "+15551230070");
    assert_eq!(start["to"], NUMBER);
    // Mid-call: the caller's question is the last line.
    mine.data_of(WAIT, |Event { name, data: d, .. }| {
        name == "updated"
            && d["last_transcript"] == json!({"role": "user", "text": "Where is my order?"})
    })
    .await;
    let listed = active_list(app.tenant(Method::GET, "/api/v1/active-sessions", &t.key)).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let entry = &listed[0];
    assert_eq!(entry["call_sid"], sid.as_str());
    assert_eq!(entry["call_id"], call_id.as_str());
    assert_eq!(entry["agent_key"], "support");
    assert!(
        ["greeting", "listening", "speaking"].contains(&entry["state"].as_str().expect("state")),
        "{entry}"
    );
    let line = &entry["last_transcript"];
    assert!(
        ["user", "assistant"].contains(&line["role"].as_str().expect("role"))
            && !line["text"].as_str().expect("text").is_empty(),
        "{entry}"
    );
    assert!(
        entry["latency"]["first_audio_ms"].as_i64().is_some(),
        "{entry}"
    );
    // Another tenant sees nothing; the admin sees it.
    let foreign = active_list(app.tenant(Method::GET, "/api/v1/active-sessions", &other.key)).await;
    assert!(foreign.is_empty(), "{foreign:?}");
    let all = active_list(app.admin(Method::GET, "/api/v1/admin/active-sessions")).await;
    assert!(all.iter().any(|c| c["call_sid"] == sid.as_str()), "{all:?}");

    // Once the agent has answered, the caller hangs up.
    mine.data_of(WAIT, |Event { name, data: d, .. }| {
        name == "updated"
            && d["last_transcript"] == json!({"role": "assistant", "text": "It ships today."})
    })
    .await;
    sim.hangup(&sid).expect("hang up");
    let end = mine
        .data_of(WAIT, |Event { name, data: d, .. }| {
            name == "ended" && d["call_id"] == call_id.as_str()
        })
        .await;
    assert_eq!(end["reason"], "ended");
    tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("call ends");
    let listed = active_list(app.tenant(Method::GET, "/api/v1/active-sessions", &t.key)).await;
    assert!(listed.is_empty(), "{listed:?}");
    let names: Vec<&str> = mine.seen.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.first(), Some(&"started"));
    assert_eq!(names.last(), Some(&"ended"));
    assert!(
        names.iter().filter(|n| **n == "updated").count() >= 2,
        "{names:?}"
    );
    assert!(
        mine.seen
            .iter()
            .all(|e| e.data["call_id"] == call_id.as_str()),
        "{:?}",
        mine.seen
    );

    // The other tenant's stream: its own call's events arrive, and nothing before them.
    let other_sid = call_in(
        &app,
        &sim,
        &other,
        "+15551230071",
        OTHER_NUMBER,
        CallerScript::default().silence(ms(300)).hang_up(),
    );
    let theirs_start = theirs
        .data_of(WAIT, |Event { name, data: d, .. }| {
            name == "started" && d["call_sid"] == other_sid.as_str()
        })
        .await;
    let other_id = theirs_start["call_id"].as_str().expect("id").to_owned();
    theirs
        .data_of(WAIT, |Event { name, data: d, .. }| {
            name == "ended" && d["call_id"] == other_id.as_str()
        })
        .await;
    assert!(
        theirs
            .seen
            .iter()
            .all(|e| e.data["call_id"] == other_id.as_str()),
        "another tenant's call leaked: {:?}",
        summary(&theirs.seen)
    );
    assert_eq!(
        theirs.seen.first().map(|e| e.name.as_str()),
        Some("started")
    );
    // Hang up the event streams, or the shutdown waits its grace period for them.
    drop(mine);
    drop(theirs);
    app.stop().await;
}

// === 8. Conformance of what the runtime sends ===

struct ClientSchema(jsonschema::Validator);

fn client_schema() -> &'static ClientSchema {
    static SCHEMA: std::sync::OnceLock<ClientSchema> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/conformance/openai-realtime-events.schema.json"
        );
        let text = std::fs::read_to_string(path).expect("conformance schema");
        let file: Value = serde_json::from_str(&text).expect("schema JSON");
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": file["$defs"],
            "$ref": "#/$defs/RealtimeClientEvent",
        });
        ClientSchema(jsonschema::validator_for(&root).expect("client event schema"))
    })
}

async fn every_client_event_the_runtime_sends_conforms_to_the_schema(backend: Backend) {
    let realtime = RealtimeSimConfig {
        record_events: true,
        ..realtime_config()
    };
    let (app, sim, t) = setup_with(backend, realtime).await;
    app.realtime.set_script(RealtimeScript::new(vec![
        ScriptTurn::say("Tell me about returns", LONG),
        ScriptTurn::say("Just the deadline, please", "Thirty days."),
    ]));
    // A question, a barge-in (truncate), a key press (text item + response.create), then —
    // below — a dropped AI socket (a new session.update and the conversation replayed).
    let script = CallerScript::default()
        .silence(ms(1500))
        .speak(ms(600), "Tell me about returns")
        .silence(ms(1300))
        .speak(ms(600), "Just the deadline, please")
        .silence(ms(1000))
        .dtmf("7")
        .silence(Duration::from_secs(30));
    let mut live = app.state.actors.active.subscribe();
    let sid = call_in(&app, &sim, &t, "+15551230080", NUMBER, script);
    // The answer to the key press (the script's default reply) is the last line.
    tokio::time::timeout(WAIT, async {
        loop {
            match live.recv().await {
                Ok(ActiveEvent::Updated(c))
                    if c.call_sid == sid
                        && c.last_line
                            == Some(("assistant".to_owned(), "How can I help you?".to_owned())) =>
                {
                    break;
                }
                Ok(_) => {}
                Err(e) => panic!("live-call feed: {e}"),
            }
        }
    })
    .await
    .expect("the key press was answered");
    let first = app.realtime.sessions().remove(0);
    assert_eq!(first.truncations.len(), 1, "{:?}", first.truncations);
    assert!(
        first.user_turns.iter().any(|u| u.contains("key 7")),
        "{:?}",
        first.user_turns
    );
    // Greeting, question, cut reply, question, two replies: what the reconnect replays (from
    // the conversation's own history; the stored transcript is checked once the call ended,
    // when its recorder has written every turn).
    let history = 6;
    assert!(app.realtime.drop_session(&first.id));
    // The runtime reconnects and replays the conversation; then the caller hangs up.
    tokio::time::timeout(
        WAIT,
        app.realtime.wait_for(|s| {
            s.get(1).is_some_and(|s| {
                control_events(s)
                    .iter()
                    .filter(|e| **e == "conversation.item.create")
                    .count()
                    >= history
            })
        }),
    )
    .await
    .expect("conversation replayed");
    sim.hangup(&sid).expect("hang up");
    tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("call ends");
    let sessions = tokio::time::timeout(
        WAIT,
        app.realtime
            .wait_for(|s| s.len() == 2 && s.iter().all(|s| s.ended.is_some())),
    )
    .await
    .expect("ai sessions closed");
    let stored = app.voice_session_of(&t.key, &sid).await["transcript"]
        .as_array()
        .expect("turns")
        .len();
    assert!(stored >= history, "{stored} turns stored");

    let mut kinds = HashSet::new();
    let mut total = 0;
    for s in &sessions {
        assert!(
            s.errors.is_empty(),
            "the model refused nothing: {:?}",
            s.errors
        );
        assert_eq!(
            s.client_events_raw.len() as u64,
            s.client_event_count,
            "every client event recorded"
        );
        for event in &s.client_events_raw {
            let errors: Vec<String> = client_schema()
                .0
                .iter_errors(event)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "client event does not validate: {errors:#?}\n{event:#}"
            );
            kinds.insert(event["type"].as_str().expect("type").to_owned());
            total += 1;
        }
    }
    for kind in [
        "session.update",
        "input_audio_buffer.append",
        "response.create",
        "conversation.item.create",
        "conversation.item.truncate",
    ] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }
    assert!(total > 100, "{total} events");
    // The replay carries both roles, as items the model accepts.
    let replayed: Vec<&Value> = sessions[1]
        .client_events_raw
        .iter()
        .filter(|e| e["type"] == "conversation.item.create")
        .collect();
    assert_eq!(replayed.len(), history);
    assert_eq!(replayed[0]["item"]["role"], "assistant");
    assert_eq!(replayed[0]["item"]["content"][0]["text"], GREETING);
    assert!(replayed.iter().any(|e| e["item"]["role"] == "user"));
    app.stop().await;
}

// === 9. Key presses against a model a round trip away ===

/// Waits on the live-call feed for an update of `call_sid` that `pred` accepts.
async fn live_update(
    live: &mut broadcast::Receiver<ActiveEvent>,
    call_sid: &str,
    what: &str,
    mut pred: impl FnMut(&actors::active::ActiveCall) -> bool,
) {
    tokio::time::timeout(WAIT, async {
        loop {
            match live.recv().await {
                Ok(ActiveEvent::Updated(c)) if c.call_sid == call_sid && pred(&c) => return,
                Ok(_) => continue,
                Err(e) => panic!("live-call feed: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}"));
}

async fn key_presses_are_answered_one_response_at_a_time(backend: Backend) {
    // The model is 300 ms away: a `response.create` reaches it 300 ms after it was sent, and
    // its `response.created` comes back later still.
    let realtime = RealtimeSimConfig {
        client_event_delay: ms(300),
        ..realtime_config()
    };
    let app = spawn_app_with_realtime(backend, realtime, |_| {}).await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    let replies = ["You pressed one.", "You pressed two.", "You pressed three."];
    app.realtime.set_script(RealtimeScript::new(
        replies
            .iter()
            .enumerate()
            .map(|(i, r)| ScriptTurn::say(format!("key {}", i + 1), *r))
            .collect(),
    ));
    let mut live = app.state.actors.active.subscribe();
    let (call_sid, xml) = app.inbound(&t, "+15551230095", NUMBER).await;
    let mut ws = open_media(&app, None).await;
    send_start(&mut ws, &t.account_sid, &call_sid, Some(&token_of(&xml))).await;
    let (mut to_server, mut from_server) = ws.split();
    let reader = tokio::spawn(async move { while from_server.next().await.is_some() {} });
    let mut seq = 10;
    let mut press = |digit: &str| {
        seq += 1;
        Message::text(
            json!({"event": "dtmf", "sequenceNumber": seq.to_string(), "streamSid": "MZ0001",
                   "dtmf": {"track": "inbound_track", "digit": digit}})
            .to_string(),
        )
    };
    // The greeting is asked for as the session is configured (the live view turns to
    // `greeting`); a key pressed at once is within one round trip of that request.
    live_update(&mut live, &call_sid, "greeting requested", |c| {
        c.phase == actors::active::CallPhase::Greeting
    })
    .await;
    to_server.send(press("1")).await.expect("key 1");
    live_update(&mut live, &call_sid, "the first key answered", |c| {
        c.last_line == Some(("assistant".to_owned(), replies[0].to_owned()))
    })
    .await;
    live_update(&mut live, &call_sid, "listening again", |c| {
        c.phase == actors::active::CallPhase::Listening
    })
    .await;
    // Two quick keys: the second before the first one's response can have been created.
    to_server.send(press("2")).await.expect("key 2");
    to_server.send(press("3")).await.expect("key 3");
    let sessions = tokio::time::timeout(
        WAIT,
        app.realtime
            .wait_for(|s| s.first().is_some_and(|s| s.said.len() == 4)),
    )
    .await
    .expect("every key answered");
    let s = &sessions[0];
    assert_eq!(
        s.said,
        [GREETING, replies[0], replies[1], replies[2]],
        "the greeting, then one answer per key"
    );
    assert!(
        s.errors.is_empty(),
        "no response.create while a response was active or requested: {:?}",
        s.errors
    );
    let creates = control_events(s)
        .iter()
        .filter(|e| **e == "response.create")
        .count();
    assert_eq!(creates, 4, "{:?}", control_events(s));
    to_server
        .send(Message::text(
            json!({"event": "stop", "streamSid": "MZ0001", "stop": {}}).to_string(),
        ))
        .await
        .expect("stop");
    let call_id = app.call_log(&t.key, &call_sid).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(ended(&mut live, &call_id).await, "ended");
    reader.abort();
    app.stop().await;
}

// === 10. A stream start that arrives too late ===

async fn a_stream_start_its_handler_gave_up_on_leaves_the_caller_the_fallback(backend: Backend) {
    // The media handler waits 1.5 s for the stream start (ACTOR_CALL_TIMEOUT_MS; the default is
    // 5 s), to keep the test short.
    let app = spawn_app_with(backend, |raw| raw.set("ACTOR_CALL_TIMEOUT_MS", "1500")).await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    let (sid_a, xml_a) = app.inbound(&t, "+15551230090", NUMBER).await;
    let (sid_b, xml_b) = app.inbound(&t, "+15551230091", NUMBER).await;
    // The database stalls writes: both stream starts block on their token's write (each in
    // its own task: no mailbox serialises them).
    let lock = app.lock_db_writes().await;
    let mut a = open_media(&app, None).await;
    send_start(&mut a, &t.account_sid, &sid_a, Some(&token_of(&xml_a))).await;
    let mut b = open_media(&app, None).await;
    send_start(&mut b, &t.account_sid, &sid_b, Some(&token_of(&xml_b))).await;
    // Both media handlers give up waiting and refuse their socket…
    for ws in [&mut a, &mut b] {
        let close = tokio::time::timeout(WAIT, close_frame(ws))
            .await
            .expect("the handler gives up");
        assert_eq!(close, (1008, "unavailable".to_owned()));
    }
    // …and only then do the starts get on.
    lock.release().await;
    // Twilio asks what next: the callers never reached the agent, so they get the route's
    // fallback (not a hang-up, as when a late start still marked its stream started),
    // whether the start's task has finished by then or not.
    for sid in [&sid_a, &sid_b] {
        let call_id = app.call_log(&t.key, sid).await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let resp = app
            .twilio_post(
                &format!("/api/v1/stream-ended?call_id={call_id}"),
                &[
                    ("AccountSid", &t.account_sid),
                    ("CallSid", sid),
                    ("CallStatus", "in-progress"),
                ],
                &t.auth_token,
            )
            .await;
        assert_eq!(resp.status(), 200);
        let xml = resp.text().await.expect("twiml");
        let doc = stateset_voice::twilio::twiml::Response::parse(&xml).expect("twiml");
        use stateset_voice::twilio::twiml::Verb;
        assert!(
            matches!(&doc.verbs[..], [Verb::Say(s), Verb::Dial(d)]
                if s.text == "Connecting you to our team." && d.numbers() == vec!["+15550009999"]),
            "{sid}: {xml}"
        );
        let log = app.call_log(&t.key, sid).await;
        assert_eq!(log["end_reason"], "stream_failed", "{log}");
        assert_eq!(log["outcome"], "fallback", "{log}");
        assert!(
            !has_call_event(&log, "stream", "websocket-started"),
            "a start nobody waited for never marks the stream started: {log}"
        );
    }
    assert!(app.state.actors.active.is_empty());
    assert_eq!(live_call_actors(&app).await, 0);
    assert!(
        app.realtime.sessions().is_empty(),
        "no model session was opened"
    );
    app.stop().await;
}
