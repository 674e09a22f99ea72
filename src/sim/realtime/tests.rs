//! The simulator driven by the runtime's own client (`actors::realtime`), with every event
//! the simulator sends and every event the tests send validated against the published
//! JSON Schema (`tests/fixtures/conformance/openai-realtime-events.schema.json`, a copy of OpenAI's published schema; source and licence beside it).

use std::sync::OnceLock;
use std::time::Duration;

use actors::realtime::server_event::{FunctionCallArgumentsDone, ResponseEvent};
use actors::realtime::{
    ClientEvent, RealtimeClient, RealtimeEndpoint, RealtimeError, RealtimeReceiver, RealtimeSender,
    ResponseParams, ResponseStatus, ServerEvent, SessionConfig, Tool, TurnDetection, append_json,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::*;
use crate::sim::audio::{self, Frame, silence_frame, speech_frames};

const KEY: &str = "sk-sim-test";
const MODEL: &str = "gpt-realtime";
const LIMIT: Duration = Duration::from_secs(10);

// === Schema ===

struct Schemas {
    server: jsonschema::Validator,
    client: jsonschema::Validator,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/conformance/openai-realtime-events.schema.json"
        );
        let text = std::fs::read_to_string(path).expect("conformance schema");
        let file: Value = serde_json::from_str(&text).expect("schema JSON");
        let root = |def: &str| {
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$defs": file["$defs"],
                "$ref": format!("#/$defs/{def}"),
            })
        };
        Schemas {
            server: jsonschema::validator_for(&root("RealtimeServerEvent")).expect("server"),
            client: jsonschema::validator_for(&root("RealtimeClientEvent")).expect("client"),
        }
    })
}

fn assert_valid(validator: &jsonschema::Validator, event: &Value, side: &str) {
    let errors: Vec<String> = validator
        .iter_errors(event)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{side} event does not validate: {errors:#?}\n{event:#}"
    );
}

fn assert_client_valid(event: &Value) {
    assert_valid(&schemas().client, event, "client");
}

fn is_client_valid(event: &Value) -> bool {
    schemas().client.is_valid(event)
}

/// Every server event of every session validates; so does every client event, except
/// those `invalid_ok` expects to be invalid.
fn validate_recorded(sim: &RealtimeSimHandle, invalid_ok: impl Fn(&Value) -> bool) {
    for session in sim.sessions() {
        assert!(!session.server_events.is_empty(), "recording is on");
        for event in &session.server_events {
            assert_valid(&schemas().server, event, "server");
        }
        for event in &session.client_events_raw {
            if !invalid_ok(event) {
                assert_client_valid(event);
            }
        }
    }
}

// === Harness ===

fn config() -> RealtimeSimConfig {
    RealtimeSimConfig {
        ms_per_char: 10,
        speed: 0.0,
        first_audio_latency: Duration::ZERO,
        record_events: true,
        ..RealtimeSimConfig::with_api_key(KEY)
    }
}

async fn start(config: RealtimeSimConfig) -> RealtimeSimHandle {
    RealtimeSim::start(config).await.expect("start simulator")
}

fn endpoint(sim: &RealtimeSimHandle, key: &str) -> RealtimeEndpoint {
    RealtimeEndpoint {
        url: sim.url(),
        api_key: key.into(),
        model: MODEL.into(),
    }
}

struct Client {
    tx: RealtimeSender,
    rx: RealtimeReceiver,
}

impl Client {
    async fn connect(sim: &RealtimeSimHandle) -> Self {
        let (tx, rx) = tokio::time::timeout(LIMIT, RealtimeClient::connect(endpoint(sim, KEY)))
            .await
            .expect("connect in time")
            .expect("connect");
        Self { tx, rx }
    }

    /// Connects and consumes `session.created` + `conversation.created`.
    async fn ready(sim: &RealtimeSimHandle) -> (Self, String) {
        let mut client = Self::connect(sim).await;
        let ServerEvent::SessionCreated(created) = client.next().await else {
            panic!("session.created first")
        };
        assert!(matches!(
            client.next().await,
            ServerEvent::ConversationCreated(_)
        ));
        let id = created.id().expect("session id").to_owned();
        (client, id)
    }

    async fn send(&self, event: ClientEvent) {
        assert_client_valid(&serde_json::to_value(&event).expect("client event"));
        self.tx.send(&event).await.expect("send");
    }

    async fn send_raw(&self, text: &str) {
        self.tx.send_text(text.to_owned()).await.expect("send raw");
    }

    async fn next(&mut self) -> ServerEvent {
        match tokio::time::timeout(LIMIT, self.rx.recv()).await {
            Ok(Some(Ok(event))) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Events up to and including the first one matching `pred`.
    async fn until(&mut self, pred: impl Fn(&ServerEvent) -> bool) -> Vec<ServerEvent> {
        let mut events = Vec::new();
        loop {
            let event = self.next().await;
            let done = pred(&event);
            events.push(event);
            if done {
                return events;
            }
        }
    }

    async fn until_kind(&mut self, kind: &str) -> Vec<ServerEvent> {
        self.until(|e| e.kind() == kind).await
    }

    /// Appends frames one `input_audio_buffer.append` per 20 ms frame, as a bridge does.
    async fn append(&self, frames: &[Frame]) {
        for frame in frames {
            let b64 = STANDARD.encode(frame);
            self.tx.send_text(append_json(&b64)).await.expect("append");
        }
    }

    /// A caller turn: `speech` of speech, then enough silence to end the turn.
    async fn speak(&self, speech: Duration) {
        self.append(&speech_frames(speech)).await;
        self.append(&vec![silence_frame(); 30]).await;
    }
}

fn kinds(events: &[ServerEvent]) -> Vec<&str> {
    events.iter().map(ServerEvent::kind).collect()
}

fn error_code(event: &ServerEvent) -> Option<&str> {
    match event {
        ServerEvent::Error(e) => e.error.code.as_deref(),
        _ => None,
    }
}

fn response_done(events: &[ServerEvent]) -> &ResponseEvent {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            ServerEvent::ResponseDone(r) => Some(r),
            _ => None,
        })
        .expect("response.done")
}

fn transcript(events: &[ServerEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::AudioTranscriptDelta(d) => Some(d.delta.as_str()),
            _ => None,
        })
        .collect()
}

fn audio_bytes(events: &[ServerEvent], response_id: &str) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::AudioDelta(d) if d.response_id == response_id => {
                Some(STANDARD.decode(&d.delta).expect("base64 delta"))
            }
            _ => None,
        })
        .flatten()
        .collect()
}

async fn wait<F>(sim: &RealtimeSimHandle, pred: F) -> Vec<SessionSnapshot>
where
    F: FnMut(&[SessionSnapshot]) -> bool,
{
    tokio::time::timeout(LIMIT, sim.wait_for(pred))
        .await
        .expect("condition in time")
}

fn phone_session() -> SessionConfig {
    SessionConfig::telephony(MODEL, "You are the phone agent of Acme.", "marin")
        .with_transcription("gpt-4o-mini-transcribe", Some("en"))
        .with_tools(vec![Tool::function(
            "lookup_order",
            "Look an order up by number.",
            json!({"type":"object","properties":{"order":{"type":"string"}},"required":["order"]}),
        )])
}

// === Tests ===

#[tokio::test]
async fn session_update_is_echoed_as_the_effective_config() {
    let sim = start(config()).await;
    let mut client = Client::connect(&sim).await;
    let ServerEvent::SessionCreated(created) = client.next().await else {
        panic!("session.created")
    };
    let session_id = created.id().expect("id").to_owned();
    assert!(session_id.starts_with("sess_"));
    assert_eq!(created.session["object"], "realtime.session");
    assert_eq!(created.model(), Some(MODEL));
    assert_eq!(
        created.input_format(),
        Some(actors::realtime::AudioFormat::Pcmu)
    );
    assert!(created.session["expires_at"].as_u64().is_some());
    assert!(matches!(
        created.turn_detection(),
        Some(TurnDetection::ServerVad(_))
    ));
    let ServerEvent::ConversationCreated(conv) = client.next().await else {
        panic!("conversation.created")
    };
    assert!(conv.conversation.id.starts_with("conv_"));

    client
        .send(ClientEvent::session_update(phone_session()).with_event_id("upd_1"))
        .await;
    let ServerEvent::SessionUpdated(updated) = client.next().await else {
        panic!("session.updated")
    };
    assert_eq!(updated.id(), Some(session_id.as_str()));
    assert_eq!(updated.voice(), Some("marin"));
    assert_eq!(
        updated.output_format(),
        Some(actors::realtime::AudioFormat::Pcmu)
    );
    assert!(updated.transcribes_input());
    assert_eq!(
        updated.instructions(),
        Some("You are the phone agent of Acme.")
    );
    assert_eq!(updated.session["tools"][0]["name"], "lookup_order");
    assert_eq!(
        updated.session["audio"]["input"]["noise_reduction"]["type"],
        "near_field"
    );
    assert_eq!(
        updated.session["audio"]["input"]["turn_detection"]["silence_duration_ms"],
        500
    );

    let sessions = wait(&sim, |s| s.len() == 1 && s[0].updates == 1).await;
    assert_eq!(sessions[0].id, session_id);
    assert_eq!(sessions[0].model, MODEL);
    assert_eq!(sessions[0].config, updated.session);
    assert_eq!(sessions[0].client_events, vec!["session.update"]);
    let handshakes = sim.handshakes();
    assert_eq!(handshakes.len(), 1);
    assert_eq!(handshakes[0].status, 101);
    assert!(handshakes[0].authorized);
    assert!(
        !handshakes[0].beta_header,
        "the client never sends OpenAI-Beta"
    );
    assert_eq!(handshakes[0].model.as_deref(), Some(MODEL));

    client.tx.close().await;
    assert!(
        tokio::time::timeout(LIMIT, client.rx.recv())
            .await
            .expect("close")
            .is_none()
    );
    wait(&sim, |s| s[0].ended == Some(SessionEnd::ClientClosed)).await;
    validate_recorded(&sim, |_| false);
}

#[tokio::test]
async fn a_spoken_turn_runs_the_ga_sequence_with_transcription_and_a_reply() {
    let script = RealtimeScript::new(vec![ScriptTurn::say(
        "I want to check my order ({session})",
        "Sure, turn {turn} in {session}.",
    )]);
    let sim = start(config().with_script(script)).await;
    let (mut client, id) = Client::ready(&sim).await;
    client
        .send(ClientEvent::session_update(phone_session()))
        .await;
    client.until_kind("session.updated").await;

    client.append(&vec![silence_frame(); 25]).await;
    client.speak(Duration::from_millis(800)).await;
    let events = client.until_kind("response.done").await;

    // Compress the deltas to check the order.
    let mut order: Vec<&str> = Vec::new();
    for kind in kinds(&events) {
        if order.last() != Some(&kind) || !kind.ends_with(".delta") {
            order.push(kind);
        }
    }
    let expected_start = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
    ];
    assert_eq!(order[..expected_start.len()], expected_start, "{order:#?}");
    let expected_end = [
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ];
    assert_eq!(order[order.len() - expected_end.len()..], expected_end);

    let ServerEvent::SpeechStarted(started) = &events[0] else {
        panic!("speech_started")
    };
    // 500 ms of silence, onset in the first syllable, 300 ms of padding.
    assert!((200..=260).contains(&started.audio_start_ms), "{started:?}");
    let ServerEvent::SpeechStopped(stopped) = &events[1] else {
        panic!("speech_stopped")
    };
    assert_eq!(stopped.item_id, started.item_id);
    // The last voiced frame ends a little before the 800 ms; then 500 ms of silence.
    assert!((1700..=1800).contains(&stopped.audio_end_ms), "{stopped:?}");
    let ServerEvent::InputCommitted(committed) = &events[2] else {
        panic!("committed")
    };
    assert_eq!(committed.item_id, started.item_id);
    assert_eq!(committed.previous_item_id, None);
    let ServerEvent::ItemAdded(user_item) = &events[3] else {
        panic!("user item")
    };
    assert_eq!(user_item.item.role(), Some("user"));
    assert_eq!(user_item.item.id(), Some(started.item_id.as_str()));
    let completed = events
        .iter()
        .find_map(|e| match e {
            ServerEvent::InputTranscriptionCompleted(c) => Some(c),
            _ => None,
        })
        .expect("transcription");
    assert_eq!(
        completed.transcript,
        format!("I want to check my order ({id})")
    );
    let deltas: String = events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::InputTranscriptionDelta(d) => Some(d.delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, completed.transcript);

    let reply = format!("Sure, turn 1 in {id}.");
    assert_eq!(transcript(&events), reply);
    let done = response_done(&events);
    assert_eq!(done.response.status, ResponseStatus::Completed);
    assert_eq!(done.response.output[0].transcript(), Some(reply.as_str()));
    let usage = done.response.usage.expect("usage");
    assert!(usage.total_tokens > 0);
    assert_eq!(usage.total_tokens, usage.input_tokens + usage.output_tokens);
    let audio = audio_bytes(&events, &done.response.id);
    let chars = reply.chars().count();
    assert_eq!(
        audio.len(),
        (chars * 10).div_ceil(20) * 160,
        "10 ms per char"
    );
    let loud = audio
        .chunks(160)
        .filter(|f| audio::frame_energy(f) > 1000.0)
        .count();
    assert!(loud * 2 > audio.len() / 160, "speech-like audio");
    let ServerEvent::OutputItemAdded(added) = events
        .iter()
        .find(|e| e.kind() == "response.output_item.added")
        .expect("output item")
    else {
        panic!()
    };
    assert_eq!(added.item.status(), Some("in_progress"));
    assert!(added.item.is_assistant_message());

    let sessions = wait(&sim, |s| s[0].responses_completed == 1).await;
    let s = &sessions[0];
    assert_eq!(s.user_turns, vec![completed.transcript.clone()]);
    assert_eq!(s.said, vec![reply]);
    assert_eq!(s.speech_started, 1);
    assert_eq!(s.audio_bytes_received, (25 + 40 + 30) * 160);
    assert_eq!(s.responses[0].audio_ms_sent, s.responses[0].audio_ms_total);
    validate_recorded(&sim, |_| false);
}

#[tokio::test]
async fn a_greeting_says_exactly_the_instructed_text_and_defaults_otherwise() {
    let sim = start(config()).await;
    let (mut client, _) = Client::ready(&sim).await;
    client
        .send(ClientEvent::session_update(phone_session()))
        .await;
    client.until_kind("session.updated").await;
    let greeting = "Hello, this is Acme. How can I help?";
    let mut params = ResponseParams {
        instructions: Some(format!("Greet the caller. Say exactly: {greeting}")),
        ..ResponseParams::default()
    };
    params.metadata = Some([("purpose".to_owned(), "greeting".to_owned())].into());
    client.send(ClientEvent::response_with(params)).await;
    let events = client.until_kind("response.done").await;
    assert_eq!(events[0].kind(), "response.created");
    let ServerEvent::ResponseCreated(created) = &events[0] else {
        panic!()
    };
    assert_eq!(created.response.status, ResponseStatus::InProgress);
    assert_eq!(
        created.response.metadata,
        Some(json!({"purpose": "greeting"}))
    );
    assert_eq!(transcript(&events), greeting);
    let done_transcript = events
        .iter()
        .find_map(|e| match e {
            ServerEvent::AudioTranscriptDone(d) => Some(d.transcript.clone()),
            _ => None,
        })
        .expect("transcript done");
    assert_eq!(done_transcript, greeting);

    // Nothing pending: the default reply.
    client.send(ClientEvent::response_create()).await;
    let events = client.until_kind("response.done").await;
    assert_eq!(transcript(&events), "How can I help you?");
    let sessions = wait(&sim, |s| s[0].responses_completed == 2).await;
    assert_eq!(
        sessions[0].said,
        vec![greeting.to_owned(), "How can I help you?".to_owned()]
    );
    validate_recorded(&sim, |_| false);
}

#[tokio::test]
async fn speech_during_a_response_cancels_it_and_no_delta_of_it_follows() {
    let reply = "This is a long answer that keeps going for quite a while, on and on.";
    let script = RealtimeScript::new(vec![
        ScriptTurn::say("first", reply),
        ScriptTurn::say("second", "Okay, go ahead."),
    ]);
    let sim = start(RealtimeSimConfig {
        ms_per_char: 50,
        // Real-time pacing: the 3.5 s answer is still playing when the caller barges in.
        speed: 1.0,
        ..config().with_script(script)
    })
    .await;
    let (mut client, _) = Client::ready(&sim).await;
    client
        .send(ClientEvent::session_update(phone_session()))
        .await;
    client.until_kind("session.updated").await;
    client.speak(Duration::from_millis(400)).await;
    let before = client.until_kind("response.output_audio.delta").await;
    let ServerEvent::ResponseCreated(created) = before
        .iter()
        .find(|e| e.kind() == "response.created")
        .expect("created")
    else {
        panic!()
    };
    let interrupted = created.response.id.clone();
    let ServerEvent::AudioDelta(first) = before.last().expect("delta") else {
        panic!()
    };
    let item_id = first.item_id.clone();

    // The caller barges in.
    client
        .append(&speech_frames(Duration::from_millis(100)))
        .await;
    let events = client.until_kind("input_audio_buffer.speech_started").await;
    let heard: Vec<u8> = audio_bytes(&before, &interrupted)
        .into_iter()
        .chain(audio_bytes(&events, &interrupted))
        .collect();
    let cancel = client.until_kind("response.done").await;
    assert_eq!(
        kinds(&cancel),
        vec![
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
    );
    let ServerEvent::OutputItemDone(item_done) = &cancel[3] else {
        panic!()
    };
    assert_eq!(item_done.item.status(), Some("incomplete"));
    let done = response_done(&cancel);
    assert_eq!(done.response.id, interrupted);
    assert_eq!(done.response.status, ResponseStatus::Cancelled);
    assert_eq!(done.response.reason(), Some("turn_detected"));

    // The bridge truncates at what was played (here: everything sent).
    let sent_ms = heard.len() as u64 / 8;
    assert!(sent_ms > 0 && sent_ms < 3000, "{sent_ms}");
    client.send(ClientEvent::truncate(&item_id, sent_ms)).await;
    let truncated = client.until_kind("conversation.item.truncated").await;
    assert!(truncated.iter().all(|e| match e {
        ServerEvent::AudioDelta(d) => d.response_id != interrupted,
        _ => true,
    }));

    // The caller's turn ends; the next reply is the script's second.
    client.append(&vec![silence_frame(); 30]).await;
    let next = client.until_kind("response.done").await;
    assert!(next.iter().all(|e| match e {
        ServerEvent::AudioDelta(d) => d.response_id != interrupted,
        _ => true,
    }));
    assert_eq!(transcript(&next), "Okay, go ahead.");
    let sessions = wait(&sim, |s| s[0].responses_completed == 1).await;
    let s = &sessions[0];
    assert_eq!(s.responses_cancelled, 1);
    assert_eq!(s.responses[0].status, "cancelled");
    assert_eq!(s.responses[0].reason.as_deref(), Some("turn_detected"));
    assert_eq!(s.responses[0].audio_ms_sent, sent_ms);
    assert!(s.responses[0].audio_ms_sent < s.responses[0].audio_ms_total);
    assert_eq!(
        s.truncations,
        vec![TruncateRecord {
            item_id,
            audio_end_ms: sent_ms,
            item_audio_ms: Some(sent_ms),
            accepted: true,
        }]
    );
    assert_eq!(s.said, vec!["Okay, go ahead.".to_owned()]);
    validate_recorded(&sim, |_| false);
}

#[tokio::test]
async fn truncate_is_validated_against_the_audio_produced() {
    let sim = start(config()).await;
    let (mut client, _) = Client::ready(&sim).await;
    client
        .send(ClientEvent::response_with_instructions(
            "Say exactly: Twenty characters here",
        ))
        .await;
    let events = client.until_kind("response.done").await;
    let done = response_done(&events);
    let item_id = done.response.output[0].id().expect("item").to_owned();
    let produced = audio_bytes(&events, &done.response.id).len() as u64 / 8;
    assert_eq!(produced, 220, "22 chars × 10 ms, whole frames");

    client.send(ClientEvent::truncate(&item_id, 100)).await;
    let ServerEvent::ItemTruncated(t) = client.next().await else {
        panic!("truncated")
    };
    assert_eq!(
        (t.item_id.as_str(), t.audio_end_ms, t.content_index),
        (item_id.as_str(), 100, 0)
    );

    client
        .send(ClientEvent::truncate(&item_id, produced + 1).with_event_id("trunc_long"))
        .await;
    let ServerEvent::Error(e) = client.next().await else {
        panic!("error")
    };
    assert_eq!(e.error.kind, "invalid_request_error");
    assert!(e.error.has_code("invalid_value"));
    assert_eq!(e.error.param.as_deref(), Some("audio_end_ms"));
    assert_eq!(e.error.event_id.as_deref(), Some("trunc_long"));

    client.send(ClientEvent::truncate("item_nope", 10)).await;
    let event = client.next().await;
    assert_eq!(error_code(&event), Some("invalid_value"));

    let sessions = wait(&sim, |s| s[0].truncations.len() == 3).await;
    let records = &sessions[0].truncations;
    assert_eq!(
        records[0],
        TruncateRecord {
            item_id: item_id.clone(),
            audio_end_ms: 100,
            item_audio_ms: Some(produced),
            accepted: true
        }
    );
    // After the first truncate the item is 100 ms long.
    assert_eq!(records[1].item_audio_ms, Some(100));
    assert!(!records[1].accepted);
    assert_eq!(records[2].item_audio_ms, None);
    assert!(!records[2].accepted);
    validate_recorded(&sim, |_| false);
}

#[tokio::test]
async fn one_active_response_at_a_time_and_cancel_rules() {
    let sim = start(config()).await;
    sim.set_response_latency(Duration::from_secs(30));
    let (mut client, _) = Client::ready(&sim).await;
    client.send(ClientEvent::response_create()).await;
    let ServerEvent::ResponseCreated(created) = client.next().await else {
        panic!("created")
    };
    client.until_kind("response.content_part.added").await;
    client
        .send(ClientEvent::response_create().with_event_id("second"))
        .await;
    let ServerEvent::Error(e) = client.next().await else {
        panic!("conflict")
    };
    assert!(e.error.has_code("conversation_already_has_active_response"));
    assert_eq!(e.error.event_id.as_deref(), Some("second"));

    client.send(ClientEvent::response_cancel()).await;
    let events = client.until_kind("response.done").await;
    assert!(
        !events
            .iter()
            .any(|e| e.kind() == "response.output_audio.delta")
    );
    let done = response_done(&events);
    assert_eq!(done.response.id, created.response.id);
    assert_eq!(done.response.status, ResponseStatus::Cancelled);
    assert_eq!(done.response.reason(), Some("client_cancelled"));

    client.send(ClientEvent::response_cancel()).await;
    let event = client.next().await;
    assert_eq!(error_code(&event), Some("response_cancel_not_active"));

    // A new response may start now.
    sim.set_response_latency(Duration::ZERO);
    client.send(ClientEvent::response_create()).await;
    let events = client.until_kind("response.done").await;
    assert_eq!(
        response_done(&events).response.status,
        ResponseStatus::Completed
    );
    let sessions = wait(&sim, |s| s[0].responses_completed == 1).await;
    assert_eq!(sessions[0].responses_cancelled, 1);
    assert!(sessions[0].has_error("conversation_already_has_active_response"));
    assert!(sessions[0].has_error("response_cancel_not_active"));
    validate_recorded(&sim, |_| false);
}

#[tokio::test]
async fn a_tool_call_round_trip_speaks_the_follow_up() {
    let script = RealtimeScript::new(vec![ScriptTurn::call_tool(
        "Where is order 42?",
        "lookup_order",
        json!({"order": "42-{turn}"}),
        "Order 42 left the warehouse (turn {turn}).",
    )]);
    let sim = start(config().with_script(script)).await;
    let (mut client, _) = Client::ready(&sim).await;
    client
        .send(ClientEvent::session_update(phone_session()))
        .await;
    client.until_kind("session.updated").await;

    client
        .send(ClientEvent::user_text("Where is order 42?"))
        .await;
    let added = client.until_kind("conversation.item.done").await;
    let ServerEvent::ItemAdded(user) = &added[0] else {
        panic!("{added:?}")
    };
    assert_eq!(user.item.role(), Some("user"));
    client.send(ClientEvent::response_create()).await;
    let events = client.until_kind("response.done").await;
    let mut order = kinds(&events);
    order.dedup();
    assert_eq!(
        order,
        vec![
            "response.created",
            "rate_limits.updated",
            "response.output_item.added",
            "conversation.item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
    );
    let call: &FunctionCallArgumentsDone = events
        .iter()
        .find_map(|e| match e {
            ServerEvent::FunctionCallArgumentsDone(c) => Some(c),
            _ => None,
        })
        .expect("arguments done");
    assert_eq!(call.name, "lookup_order");
    assert!(call.call_id.starts_with("call_"));
    let args: Value = serde_json::from_str(&call.arguments).expect("JSON arguments");
    assert_eq!(args, json!({"order": "42-1"}));
    let streamed: String = events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::FunctionCallArgumentsDelta(d) => Some(d.delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(streamed, call.arguments);
    let done = response_done(&events);
    assert!(done.response.output[0].is_function_call());
    assert_eq!(
        done.response.output[0].call_id(),
        Some(call.call_id.as_str())
    );

    client
        .send(ClientEvent::function_output(
            &call.call_id,
            r#"{"status":"shipped"}"#,
        ))
        .await;
    let items = client.until_kind("conversation.item.done").await;
    let ServerEvent::ItemDone(output) = items.last().expect("done") else {
        panic!()
    };
    assert_eq!(output.item.kind(), Some("function_call_output"));
    client.send(ClientEvent::response_create()).await;
    let events = client.until_kind("response.done").await;
    assert_eq!(transcript(&events), "Order 42 left the warehouse (turn 1).");
    let sessions = wait(&sim, |s| s[0].responses_completed == 2).await;
    let tool = &sessions[0].tool_calls[0];
    assert_eq!(tool.call_id, call.call_id);
    assert_eq!(tool.output.as_deref(), Some(r#"{"status":"shipped"}"#));
    assert_eq!(
        sessions[0].user_turns,
        vec!["Where is order 42?".to_owned()]
    );
    validate_recorded(&sim, |_| false);
}

#[tokio::test]
async fn manual_commits_without_turn_detection() {
    let script = RealtimeScript::new(vec![ScriptTurn::say("typed in", "Noted.")]);
    let sim = start(config().with_script(script)).await;
    let (mut client, _) = Client::ready(&sim).await;
    let session = phone_session().with_turn_detection(None);
    client.send(ClientEvent::session_update(session)).await;
    let ServerEvent::SessionUpdated(updated) = client.next().await else {
        panic!()
    };
    assert_eq!(updated.turn_detection(), None);
    client.send(ClientEvent::commit()).await;
    assert_eq!(
        error_code(&client.next().await),
        Some("input_audio_buffer_commit_empty")
    );
    client.speak(Duration::from_millis(300)).await;
    client.send(ClientEvent::commit()).await;
    let events = client
        .until_kind("conversation.item.input_audio_transcription.completed")
        .await;
    assert_eq!(
        kinds(&events)[..3],
        [
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done"
        ]
    );
    client.send(ClientEvent::clear_input()).await;
    assert_eq!(client.next().await.kind(), "input_audio_buffer.cleared");
    client.send(ClientEvent::response_create()).await;
    let events = client.until_kind("response.done").await;
    assert_eq!(transcript(&events), "Noted.");
    let sessions = wait(&sim, |s| s[0].responses_completed == 1).await;
    assert_eq!(sessions[0].speech_started, 0);
    validate_recorded(&sim, |_| false);
}

#[tokio::test]
async fn beta_shaped_sessions_are_refused_with_close_4000() {
    let sim = start(config()).await;
    let beta = json!({"type":"session.update","session":{
        "modalities":["text","audio"],"voice":"alloy",
        "input_audio_format":"g711_ulaw","output_audio_format":"g711_ulaw",
        "turn_detection":{"type":"server_vad"}}});
    assert!(
        !is_client_valid(&beta),
        "the schema refuses the beta shape too"
    );
    let (mut client, _) = Client::ready(&sim).await;
    client.send_raw(&beta.to_string()).await;
    let event = client.next().await;
    let ServerEvent::Error(e) = &event else {
        panic!("{event:?}")
    };
    assert!(e.error.has_code("beta_api_shape_disabled"));
    assert_eq!(e.error.kind, "invalid_request_error");
    assert_eq!(
        e.error.message,
        "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
    );
    assert!(
        tokio::time::timeout(LIMIT, client.rx.recv())
            .await
            .expect("close")
            .is_none()
    );
    assert_eq!(client.rx.close_info().map(|c| c.code), Some(4000));

    // A GA-looking session without `type` is beta-shaped too.
    let (mut client, _) = Client::ready(&sim).await;
    client
        .send_raw(r#"{"type":"session.update","session":{"instructions":"hi"}}"#)
        .await;
    assert_eq!(
        error_code(&client.next().await),
        Some("beta_api_shape_disabled")
    );
    assert!(
        tokio::time::timeout(LIMIT, client.rx.recv())
            .await
            .expect("close")
            .is_none()
    );
    assert_eq!(client.rx.close_info().map(|c| c.code), Some(4000));

    let sessions = wait(&sim, |s| {
        s.len() == 2 && s.iter().all(|s| s.ended.is_some())
    })
    .await;
    for s in &sessions {
        assert_eq!(s.ended, Some(SessionEnd::ServerClosed(4000)));
        assert!(s.has_error("beta_api_shape_disabled"));
    }
    validate_recorded(&sim, |e| e["type"] == "session.update");
}

#[tokio::test]
async fn handshakes_need_a_key_and_a_model_and_can_be_refused() {
    let sim = start(config()).await;
    let wrong = RealtimeClient::connect(endpoint(&sim, "sk-wrong")).await;
    assert!(
        matches!(wrong, Err(RealtimeError::Handshake(401))),
        "{wrong:?}"
    );
    sim.reject_next_connect(503);
    let refused = RealtimeClient::connect(endpoint(&sim, KEY)).await;
    assert!(
        matches!(refused, Err(RealtimeError::Handshake(503))),
        "{refused:?}"
    );
    // Without ?model= (a raw request).
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = sim.url().into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {KEY}").parse().expect("header"),
    );
    let no_model = tokio_tungstenite::connect_async(request).await;
    assert!(matches!(
        no_model,
        Err(tokio_tungstenite::tungstenite::Error::Http(ref r)) if r.status() == 400
    ));
    // An OpenAI-Beta header is refused like a beta session.
    let mut request = format!("{}?model={MODEL}", sim.url())
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {KEY}").parse().expect("header"),
    );
    request
        .headers_mut()
        .insert("openai-beta", "realtime=v1".parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    use futures::StreamExt as _;
    let first = ws.next().await.expect("frame").expect("text");
    let event = ServerEvent::parse(first.to_text().expect("text")).expect("event");
    assert_eq!(error_code(&event), Some("beta_api_shape_disabled"));
    let close = ws.next().await.expect("frame").expect("close");
    let tokio_tungstenite::tungstenite::Message::Close(Some(frame)) = close else {
        panic!("{close:?}")
    };
    assert_eq!(u16::from(frame.code), 4000);
    let statuses: Vec<u16> = sim.handshakes().iter().map(|h| h.status).collect();
    assert_eq!(statuses, vec![401, 503, 400, 101]);
    assert!(sim.handshakes()[3].beta_header);
    validate_recorded(&sim, |_| false);
}

#[tokio::test]
async fn dropped_sessions_end_without_a_close_frame() {
    let sim = start(config()).await;
    // After three server events: created, conversation, updated.
    sim.drop_next_session_after(3_u64);
    let (mut client, _) = Client::ready(&sim).await;
    client
        .send(ClientEvent::session_update(phone_session()))
        .await;
    assert_eq!(client.next().await.kind(), "session.updated");
    let cut = tokio::time::timeout(LIMIT, client.rx.recv())
        .await
        .expect("in time");
    assert!(matches!(cut, Some(Err(RealtimeError::Closed))), "{cut:?}");
    assert!(client.rx.recv().await.is_none());
    assert!(client.rx.close_info().is_none(), "no close frame");

    // After a duration, mid-response.
    sim.set_response_latency(Duration::from_secs(30));
    sim.drop_next_session_after(Duration::from_millis(500));
    let (mut client, _) = Client::ready(&sim).await;
    client.send(ClientEvent::response_create()).await;
    let events = client.until_kind("response.content_part.added").await;
    assert_eq!(events[0].kind(), "response.created");
    let cut = tokio::time::timeout(LIMIT, client.rx.recv())
        .await
        .expect("in time");
    assert!(matches!(cut, Some(Err(RealtimeError::Closed))), "{cut:?}");

    // On demand.
    let (mut client, id) = Client::ready(&sim).await;
    assert!(sim.drop_session(&id));
    let cut = tokio::time::timeout(LIMIT, client.rx.recv())
        .await
        .expect("in time");
    assert!(matches!(cut, Some(Err(RealtimeError::Closed))), "{cut:?}");
    let sessions = wait(&sim, |s| {
        s.len() == 3 && s.iter().all(|s| s.ended.is_some())
    })
    .await;
    assert!(
        sessions
            .iter()
            .all(|s| s.ended == Some(SessionEnd::Dropped))
    );
    assert_eq!(sessions[0].server_event_count, 3);
    assert!(!sim.drop_session(&id), "already gone");
    validate_recorded(&sim, |_| false);
}

#[tokio::test]
async fn bad_client_events_get_errors_and_the_session_goes_on() {
    let sim = start(config()).await;
    let (mut client, _) = Client::ready(&sim).await;
    client.send_raw("{not json").await;
    assert_eq!(error_code(&client.next().await), Some("invalid_json"));
    client
        .send_raw(r#"{"type":"conversation.teleport","event_id":"evt_x"}"#)
        .await;
    let ServerEvent::Error(e) = client.next().await else {
        panic!("unknown event")
    };
    assert!(e.error.has_code("unknown_event"));
    assert_eq!(e.error.param.as_deref(), Some("type"));
    assert_eq!(e.error.event_id.as_deref(), Some("evt_x"));
    client.send_raw(r#"{"event_id":"evt_y"}"#).await;
    assert_eq!(error_code(&client.next().await), Some("invalid_event"));
    client
        .send_raw(r#"{"type":"input_audio_buffer.append","audio":"***"}"#)
        .await;
    let ServerEvent::Error(e) = client.next().await else {
        panic!("bad audio")
    };
    assert!(e.error.has_code("invalid_value"));
    assert_eq!(e.error.param.as_deref(), Some("audio"));
    client
        .send_raw(r#"{"type":"session.update","session":{"type":"realtime","audio":{"input":{"format":{"type":"audio/ogg"}}}}}"#)
        .await;
    let ServerEvent::Error(e) = client.next().await else {
        panic!("bad format")
    };
    assert_eq!(
        e.error.param.as_deref(),
        Some("session.audio.input.format.type")
    );
    client
        .send_raw(r#"{"type":"conversation.item.create","item":{"type":"message","role":"assistant","content":[{"type":"output_audio"}]}}"#)
        .await;
    assert_eq!(error_code(&client.next().await), Some("invalid_value"));
    // Still open.
    client
        .send(ClientEvent::session_update(phone_session()))
        .await;
    assert_eq!(client.next().await.kind(), "session.updated");
    let sessions = wait(&sim, |s| s[0].errors.len() == 6).await;
    assert!(sessions[0].ended.is_none());
    assert!(
        sessions[0]
            .errors
            .iter()
            .all(|e| e.kind == "invalid_request_error")
    );
    validate_recorded(&sim, |e| {
        matches!(
            e["type"].as_str(),
            Some("conversation.teleport") | Some("input_audio_buffer.append") | None
        ) || e["session"]["audio"]["input"]["format"]["type"] == "audio/ogg"
            || e["item"]["role"] == "assistant"
    });
}

/// Records what a [`TagObserver`] is told.
#[derive(Debug, Default)]
struct TagLog {
    input: std::sync::Mutex<Vec<(usize, Vec<u32>)>>,
    output: std::sync::Mutex<Vec<(usize, Vec<u32>)>>,
    ended: std::sync::Mutex<Vec<usize>>,
}

impl TagObserver for TagLog {
    fn input_tags_received(&self, session: usize, tags: &[u32], _at: std::time::Instant) {
        let entry = (session, tags.to_vec());
        self.input.lock().expect("lock").push(entry);
    }

    fn output_tags_sent(&self, session: usize, tags: &[u32], _at: std::time::Instant) {
        let entry = (session, tags.to_vec());
        self.output.lock().expect("lock").push(entry);
    }

    fn session_ended(&self, session: usize, _at: std::time::Instant) {
        self.ended.lock().expect("lock").push(session);
    }
}

#[tokio::test]
async fn the_tag_observer_sees_input_and_output_tags_and_the_session_end() {
    let log = std::sync::Arc::new(TagLog::default());
    let sim = start(RealtimeSimConfig {
        tag_audio: true,
        tag_observer: Some(log.clone()),
        ..config()
    })
    .await;
    let (mut client, _) = Client::ready(&sim).await;
    let mut frames = vec![silence_frame(); 3];
    for (i, frame) in frames.iter_mut().enumerate() {
        audio::tag_frame(frame, 11 + i as u32);
    }
    frames.push(silence_frame());
    client.append(&frames).await;
    client.send(ClientEvent::user_text("hi")).await;
    client.send(ClientEvent::response_create()).await;
    let events = client.until_kind("response.done").await;
    let done = response_done(&events);
    let audio = audio_bytes(&events, &done.response.id);
    let tags: Vec<u32> = audio.chunks(160).filter_map(audio::read_tag).collect();
    assert!(!tags.is_empty());
    drop(client);
    wait(&sim, |s| s.first().is_some_and(|s| s.ended.is_some())).await;
    let input = log.input.lock().expect("lock").clone();
    assert_eq!(input, vec![(0, vec![11]), (0, vec![12]), (0, vec![13])]);
    let output = log.output.lock().expect("lock").clone();
    assert!(output.iter().all(|(session, _)| *session == 0));
    let sent: Vec<u32> = output.into_iter().flat_map(|(_, t)| t).collect();
    assert_eq!(sent, tags);
    assert_eq!(*log.ended.lock().expect("lock"), vec![0]);
}

#[tokio::test]
async fn output_audio_is_tagged_paced_and_sessions_are_distinguishable() {
    let script = RealtimeScript::new(vec![ScriptTurn::say("hi", "Hello {session}")]);
    let sim = start(RealtimeSimConfig {
        tag_audio: true,
        ms_per_char: 20,
        speed: 5.0,
        first_audio_latency: Duration::from_millis(50),
        ..config().with_script(script)
    })
    .await;
    let (mut a, id_a) = Client::ready(&sim).await;
    let (mut b, id_b) = Client::ready(&sim).await;
    for client in [&a, &b] {
        client.send(ClientEvent::user_text("hi")).await;
        client.send(ClientEvent::response_create()).await;
    }
    let started = std::time::Instant::now();
    let events_a = a.until_kind("response.done").await;
    let elapsed = started.elapsed();
    let events_b = b.until_kind("response.done").await;
    assert_eq!(transcript(&events_a), format!("Hello {id_a}"));
    assert_eq!(transcript(&events_b), format!("Hello {id_b}"));
    // 33 chars × 20 ms = 660 ms in 100 ms deltas (7), 20 ms apart after 50 ms.
    assert!(elapsed >= Duration::from_millis(50 + 5 * 20), "{elapsed:?}");
    let done = response_done(&events_a);
    let audio = audio_bytes(&events_a, &done.response.id);
    let tags: Vec<u32> = audio
        .chunks(160)
        .map(|f| audio::read_tag(f).expect("every frame tagged"))
        .collect();
    assert_eq!(tags.len(), audio.len() / 160);
    assert!(tags.iter().all(|&t| t >= OUTPUT_TAG_BASE));
    assert!(tags.windows(2).all(|w| w[1] == w[0] + 1));
    for &tag in &tags {
        assert!(sim.tag_sent_at(tag).is_some());
    }
    validate_recorded(&sim, |_| false);
}

#[tokio::test]
async fn scripts_parse_from_json() {
    let script = RealtimeScript::from_json(
        r#"{"turns":[{"user":"hi","reply":{"say":"Hello"}},
           {"user":"order?","reply":{"call_tool":{"name":"lookup","arguments":{"id":1},"then":"Done."}}}],
           "default_reply":"Bye."}"#,
    )
    .expect("script");
    assert_eq!(script.turns[0], ScriptTurn::say("hi", "Hello"));
    assert_eq!(
        script.turns[1],
        ScriptTurn::call_tool("order?", "lookup", json!({"id": 1}), "Done.")
    );
    assert_eq!(script.default_reply, "Bye.");
    assert_eq!(script.default_user, "(caller speech)");
    let bare = RealtimeScript::from_json(r#"[{"user":"a","reply":{"say":"b"}}]"#).expect("turns");
    assert_eq!(bare.turns.len(), 1);
    assert_eq!(bare.default_reply, "How can I help you?");
    assert!(RealtimeScript::from_json(r#"{"turns":[{"user":1}]}"#).is_err());
}

#[tokio::test]
async fn a_response_create_before_the_tool_response_is_done_conflicts() {
    let script = RealtimeScript::new(vec![ScriptTurn::call_tool(
        "transfer me",
        "transfer_to_human",
        json!({"reason": "asked"}),
        "Transferring you now.",
    )]);
    let sim = start(RealtimeSimConfig {
        tool_done_delay: Duration::from_secs(30),
        ..config().with_script(script)
    })
    .await;
    let (mut client, _) = Client::ready(&sim).await;
    client.send(ClientEvent::user_text("transfer me")).await;
    client.send(ClientEvent::response_create()).await;
    let events = client
        .until_kind("response.function_call_arguments.done")
        .await;
    let Some(ServerEvent::FunctionCallArgumentsDone(call)) = events.last() else {
        panic!()
    };
    // Too early: the tool response has not sent response.done yet.
    client
        .send(ClientEvent::function_output(
            &call.call_id,
            r#"{"status":"transferring"}"#,
        ))
        .await;
    client.send(ClientEvent::response_create()).await;
    let events = client.until_kind("error").await;
    assert_eq!(
        error_code(events.last().expect("error")),
        Some("conversation_already_has_active_response")
    );
    client.send(ClientEvent::response_cancel()).await;
    let events = client.until_kind("response.done").await;
    let done = response_done(&events);
    assert_eq!(done.response.status, ResponseStatus::Cancelled);
    assert_eq!(
        done.response.output[0].arguments(),
        Some(r#"{"reason":"asked"}"#)
    );
    client.send(ClientEvent::response_create()).await;
    let events = client.until_kind("response.done").await;
    assert_eq!(transcript(&events), "Transferring you now.");
    validate_recorded(&sim, |_| false);
}
