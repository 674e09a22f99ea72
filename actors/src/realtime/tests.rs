//! Wire tests: every client event against its exact GA JSON, every server event parsed from
//! the published examples (PROTOCOLS §4.5, `x-oaiMeta.example` of the OpenAPI document).

use serde_json::{Value, json};

use super::server_event::*;
use super::*;

fn to_value(event: &ClientEvent) -> Value {
    serde_json::from_str(&event.to_json().expect("serialise")).expect("valid JSON")
}

// === Client events ===

#[test]
fn telephony_session_update_is_the_recommended_ga_shape() {
    let session = SessionConfig::telephony("gpt-realtime", "You are the phone agent.", "marin")
        .with_transcription("gpt-4o-mini-transcribe", Some("en"))
        .with_tools(vec![Tool::function(
            "transfer_to_human",
            "Hand the caller to a human agent.",
            json!({"type":"object","properties":{"reason":{"type":"string"}},"required":["reason"]}),
        )]);
    let event = ClientEvent::session_update(session);
    assert_eq!(event.kind(), "session.update");
    assert_eq!(
        to_value(&event),
        json!({"type":"session.update","session":{
            "type":"realtime","model":"gpt-realtime",
            "instructions":"You are the phone agent.",
            "output_modalities":["audio"],
            "audio":{
                "input":{"format":{"type":"audio/pcmu"},
                         "transcription":{"model":"gpt-4o-mini-transcribe","language":"en"},
                         "noise_reduction":{"type":"near_field"},
                         "turn_detection":{"type":"server_vad","threshold":0.5,
                                           "prefix_padding_ms":300,"silence_duration_ms":500,
                                           "create_response":true,"interrupt_response":true}},
                "output":{"format":{"type":"audio/pcmu"},"voice":"marin"}},
            "tools":[{"type":"function","name":"transfer_to_human",
                      "description":"Hand the caller to a human agent.",
                      "parameters":{"type":"object","properties":{"reason":{"type":"string"}},
                                    "required":["reason"]}}],
            "tool_choice":"auto"}})
    );
}

#[test]
fn session_update_variants() {
    // Minimal: only the type.
    assert_eq!(
        to_value(&SessionConfig::default().into()),
        json!({"type":"session.update","session":{"type":"realtime"}})
    );
    // Turn detection off is an explicit null; semantic VAD; forced tool; token cap; pcm.
    let session = SessionConfig {
        instructions: Some(String::new()),
        tools: Some(vec![]),
        tool_choice: Some(ToolChoice::Function("end_call".into())),
        max_output_tokens: Some(MaxOutputTokens::Inf),
        audio: Some(AudioConfig {
            input: Some(AudioInput {
                format: Some(AudioFormat::Pcm { rate: 24000 }),
                turn_detection: Some(None),
                ..AudioInput::default()
            }),
            output: Some(AudioOutput {
                format: Some(AudioFormat::Pcma),
                voice: None,
                speed: Some(1.25),
            }),
        }),
        ..SessionConfig::default()
    };
    assert_eq!(
        to_value(&ClientEvent::session_update(session).with_event_id("evt_1")),
        json!({"type":"session.update","event_id":"evt_1","session":{
            "type":"realtime","instructions":"","tools":[],
            "tool_choice":{"type":"function","name":"end_call"},
            "max_output_tokens":"inf",
            "audio":{"input":{"format":{"type":"audio/pcm","rate":24000},"turn_detection":null},
                     "output":{"format":{"type":"audio/pcma"},"speed":1.25}}}})
    );
    let semantic = SessionConfig::default().with_turn_detection(Some(TurnDetection::SemanticVad(
        SemanticVad {
            eagerness: Some(Eagerness::High),
            create_response: Some(true),
            interrupt_response: Some(false),
        },
    )));
    assert_eq!(
        to_value(&semantic.into()),
        json!({"type":"session.update","session":{"type":"realtime","audio":{"input":{
            "turn_detection":{"type":"semantic_vad","eagerness":"high",
                              "create_response":true,"interrupt_response":false}}}}})
    );
    let vad = ServerVad {
        idle_timeout_ms: Some(6000),
        ..ServerVad::default()
    };
    let tool_choices = [ToolChoice::Auto, ToolChoice::None, ToolChoice::Required];
    let session = SessionConfig {
        output_modalities: Some(vec![Modality::Text]),
        max_output_tokens: Some(MaxOutputTokens::Limit(512)),
        ..SessionConfig::default()
    }
    .with_turn_detection(Some(TurnDetection::ServerVad(vad)));
    assert_eq!(
        to_value(&session.into()),
        json!({"type":"session.update","session":{"type":"realtime",
            "output_modalities":["text"],"max_output_tokens":512,
            "audio":{"input":{"turn_detection":{"type":"server_vad","idle_timeout_ms":6000}}}}})
    );
    let names: Vec<Value> = tool_choices
        .iter()
        .map(|c| serde_json::to_value(c).expect("tool choice"))
        .collect();
    assert_eq!(names, vec![json!("auto"), json!("none"), json!("required")]);
}

#[test]
fn append_is_exact_and_the_hot_path_matches_serde() {
    let b64 = "//7+/Q==";
    let expected = r#"{"type":"input_audio_buffer.append","audio":"//7+/Q=="}"#;
    assert_eq!(append_json(b64), expected);
    assert_eq!(
        ClientEvent::append(b64.into()).to_json().expect("json"),
        expected
    );
    let long = "A".repeat(4000);
    let frame = append_json(&long);
    assert_eq!(frame.len(), long.len() + expected.len() - b64.len());
    assert!(
        frame.capacity() <= frame.len() + 1,
        "one allocation, sized up front"
    );
}

#[test]
fn append_escapes_only_what_needs_it() {
    for audio in ["a\"b", "back\\slash", "line\nbreak", "é"] {
        let frame: Value = serde_json::from_str(&append_json(audio)).expect("valid JSON");
        assert_eq!(frame["audio"], audio);
    }
}

#[test]
fn buffer_item_and_response_events() {
    let cases: Vec<(ClientEvent, Value)> = vec![
        (
            ClientEvent::commit(),
            json!({"type":"input_audio_buffer.commit"}),
        ),
        (
            ClientEvent::clear_input().with_event_id("c1"),
            json!({"type":"input_audio_buffer.clear","event_id":"c1"}),
        ),
        (
            ClientEvent::user_text("pressed 5"),
            json!({"type":"conversation.item.create","item":{"type":"message","role":"user",
                   "content":[{"type":"input_text","text":"pressed 5"}]}}),
        ),
        (
            ClientEvent::system_text("The caller is a VIP."),
            json!({"type":"conversation.item.create","item":{"type":"message","role":"system",
                   "content":[{"type":"input_text","text":"The caller is a VIP."}]}}),
        ),
        (
            ClientEvent::assistant_text("Hello."),
            json!({"type":"conversation.item.create","item":{"type":"message",
                   "role":"assistant","content":[{"type":"output_text","text":"Hello."}]}}),
        ),
        (
            ClientEvent::function_output("call_123", r#"{"status":"transferring"}"#),
            json!({"type":"conversation.item.create","item":{"type":"function_call_output",
                   "call_id":"call_123","output":"{\"status\":\"transferring\"}"}}),
        ),
        (
            ClientEvent::item(ConversationItem::FunctionCall {
                call_id: "call_1".into(),
                name: "lookup".into(),
                arguments: "{}".into(),
            }),
            json!({"type":"conversation.item.create","item":{"type":"function_call",
                   "call_id":"call_1","name":"lookup","arguments":"{}"}}),
        ),
        (
            ClientEvent::truncate("item_9", 1500).with_event_id("t1"),
            json!({"type":"conversation.item.truncate","event_id":"t1","item_id":"item_9",
                   "content_index":0,"audio_end_ms":1500}),
        ),
        (
            ClientEvent::ConversationItemDelete {
                event_id: None,
                item_id: "item_9".into(),
            },
            json!({"type":"conversation.item.delete","item_id":"item_9"}),
        ),
        (
            ClientEvent::response_create(),
            json!({"type":"response.create"}),
        ),
        (
            ClientEvent::response_with_instructions("Say exactly: Hello, this is Acme."),
            json!({"type":"response.create",
                   "response":{"instructions":"Say exactly: Hello, this is Acme."}}),
        ),
        (
            ClientEvent::response_with(ResponseParams {
                output_modalities: Some(vec![Modality::Audio]),
                tool_choice: Some(ToolChoice::None),
                tools: Some(vec![]),
                max_output_tokens: Some(MaxOutputTokens::Limit(200)),
                metadata: Some([("purpose".to_owned(), "greeting".to_owned())].into()),
                ..ResponseParams::default()
            }),
            json!({"type":"response.create","response":{"output_modalities":["audio"],
                   "tools":[],"tool_choice":"none","max_output_tokens":200,
                   "metadata":{"purpose":"greeting"}}}),
        ),
        (
            ClientEvent::response_cancel(),
            json!({"type":"response.cancel"}),
        ),
        (
            ClientEvent::ResponseCancel {
                event_id: None,
                response_id: Some("resp_1".into()),
            },
            json!({"type":"response.cancel","response_id":"resp_1"}),
        ),
    ];
    for (event, expected) in cases {
        let value = to_value(&event);
        assert_eq!(value, expected, "{}", event.kind());
        assert_eq!(value["type"], event.kind());
    }
}

#[test]
fn endpoint_url_and_debug() {
    let endpoint = RealtimeEndpoint {
        url: "wss://api.openai.com/v1/realtime".into(),
        api_key: "sk-secret".into(),
        model: "gpt-realtime".into(),
    };
    assert_eq!(
        endpoint.connect_url(),
        "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    );
    assert!(!format!("{endpoint:?}").contains("sk-secret"));
    let odd = RealtimeEndpoint {
        url: "ws://127.0.0.1:1/v1/realtime?intent=realtime".into(),
        api_key: String::new(),
        model: "a b/c".into(),
    };
    assert_eq!(
        odd.connect_url(),
        "ws://127.0.0.1:1/v1/realtime?intent=realtime&model=a%20b%2Fc"
    );
}

// === Server events ===

fn parse(text: &str) -> ServerEvent {
    let event = ServerEvent::parse(text).expect("parse");
    let wire: Value = serde_json::from_str(text).expect("json");
    assert_eq!(Some(event.kind()), wire["type"].as_str());
    event
}

#[test]
fn session_and_conversation_events() {
    let created = parse(
        r#"{"type":"session.created","event_id":"event_C9G5RJeJ2gF77mV7f2B1j","session":{
          "type":"realtime","object":"realtime.session","id":"sess_C9G5QPteg4UIbotdKLoYQ",
          "model":"gpt-realtime-2025-08-28","output_modalities":["audio"],
          "instructions":"Your knowledge cutoff is 2023-10.","tools":[],"tool_choice":"auto",
          "max_output_tokens":"inf","tracing":null,"prompt":null,"expires_at":1756324625,
          "audio":{"input":{"format":{"type":"audio/pcm","rate":24000},"transcription":null,
            "noise_reduction":null,"turn_detection":{"type":"server_vad","threshold":0.5,
            "prefix_padding_ms":300,"silence_duration_ms":200,"idle_timeout_ms":null,
            "create_response":true,"interrupt_response":true}},
           "output":{"format":{"type":"audio/pcm","rate":24000},"voice":"marin","speed":1}},
          "include":null}}"#,
    );
    let ServerEvent::SessionCreated(s) = created else {
        panic!("{created:?}")
    };
    assert_eq!(s.event_id, "event_C9G5RJeJ2gF77mV7f2B1j");
    assert_eq!(s.id(), Some("sess_C9G5QPteg4UIbotdKLoYQ"));
    assert_eq!(s.model(), Some("gpt-realtime-2025-08-28"));
    assert_eq!(s.input_format(), Some(AudioFormat::Pcm { rate: 24000 }));
    assert_eq!(s.output_format(), Some(AudioFormat::Pcm { rate: 24000 }));
    assert_eq!(s.voice(), Some("marin"));
    assert!(!s.transcribes_input());
    let Some(TurnDetection::ServerVad(vad)) = s.turn_detection() else {
        panic!("server vad")
    };
    assert_eq!(vad.silence_duration_ms, Some(200));
    assert_eq!(vad.idle_timeout_ms, None);

    let updated = parse(
        r#"{"type":"session.updated","event_id":"e2","session":{"type":"realtime",
          "object":"realtime.session","id":"sess_1","model":"gpt-realtime",
          "audio":{"input":{"format":{"type":"audio/pcmu"},"transcription":{"model":"whisper-1"},
          "turn_detection":null},"output":{"format":{"type":"audio/pcmu"},"voice":"cedar"}}}}"#,
    );
    let ServerEvent::SessionUpdated(s) = updated else {
        panic!("{updated:?}")
    };
    assert_eq!(s.input_format(), Some(AudioFormat::Pcmu));
    assert_eq!(s.turn_detection(), None);
    assert!(s.transcribes_input());

    let conv = parse(
        r#"{"event_id":"event_9101","type":"conversation.created",
           "conversation":{"id":"conv_001","object":"realtime.conversation"}}"#,
    );
    assert_eq!(
        conv,
        ServerEvent::ConversationCreated(ConversationCreated {
            event_id: "event_9101".into(),
            conversation: Conversation {
                id: "conv_001".into()
            },
        })
    );
}

#[test]
fn error_events() {
    let error = parse(
        r#"{"event_id":"event_890","type":"error","error":{"type":"invalid_request_error",
           "code":"invalid_event","message":"The 'type' field is missing.","param":null,
           "event_id":"event_567"}}"#,
    );
    let ServerEvent::Error(e) = error else {
        panic!("{error:?}")
    };
    assert_eq!(e.error.kind, "invalid_request_error");
    assert!(e.error.has_code("invalid_event"));
    assert_eq!(e.error.param, None);
    assert_eq!(e.error.event_id.as_deref(), Some("event_567"));
    let beta = parse(
        r#"{"type":"error","event_id":"e","error":{"type":"invalid_request_error",
           "code":"beta_api_shape_disabled",
           "message":"The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."}}"#,
    );
    let ServerEvent::Error(e) = beta else {
        panic!("{beta:?}")
    };
    assert!(e.error.has_code("beta_api_shape_disabled"));
    assert_eq!(e.error.event_id, None);
}

#[test]
fn input_buffer_events() {
    assert_eq!(
        parse(
            r#"{"event_id":"event_1516","type":"input_audio_buffer.speech_started",
               "audio_start_ms":1000,"item_id":"msg_003"}"#
        ),
        ServerEvent::SpeechStarted(SpeechStarted {
            event_id: "event_1516".into(),
            audio_start_ms: 1000,
            item_id: "msg_003".into(),
        })
    );
    assert_eq!(
        parse(
            r#"{"event_id":"event_1718","type":"input_audio_buffer.speech_stopped",
               "audio_end_ms":2000,"item_id":"msg_003"}"#
        ),
        ServerEvent::SpeechStopped(SpeechStopped {
            event_id: "event_1718".into(),
            audio_end_ms: 2000,
            item_id: "msg_003".into(),
        })
    );
    assert_eq!(
        parse(
            r#"{"event_id":"event_1121","type":"input_audio_buffer.committed",
               "previous_item_id":"msg_001","item_id":"msg_002"}"#
        ),
        ServerEvent::InputCommitted(InputCommitted {
            event_id: "event_1121".into(),
            item_id: "msg_002".into(),
            previous_item_id: Some("msg_001".into()),
        })
    );
    assert_eq!(
        parse(r#"{"event_id":"event_1314","type":"input_audio_buffer.cleared"}"#),
        ServerEvent::InputCleared(Bare {
            event_id: "event_1314".into()
        })
    );
    assert_eq!(
        parse(
            r#"{"type":"input_audio_buffer.timeout_triggered","event_id":"event_CEKK",
               "audio_start_ms":13216,"audio_end_ms":19232,"item_id":"item_CEKK"}"#
        ),
        ServerEvent::InputTimeout(InputTimeout {
            event_id: "event_CEKK".into(),
            audio_start_ms: 13216,
            audio_end_ms: 19232,
            item_id: "item_CEKK".into(),
        })
    );
}

#[test]
fn conversation_item_events() {
    let added = parse(
        r#"{"type":"conversation.item.added","event_id":"event_C9G8","previous_item_id":null,
           "item":{"id":"item_C9G8","type":"message","status":"completed","role":"user",
           "content":[{"type":"input_text","text":"hi"}]}}"#,
    );
    let ServerEvent::ItemAdded(e) = added else {
        panic!("{added:?}")
    };
    assert_eq!(e.previous_item_id, None);
    assert_eq!(e.item.id(), Some("item_C9G8"));
    assert_eq!(e.item.role(), Some("user"));
    assert_eq!(e.item.kind(), Some("message"));
    assert_eq!(e.item.transcript(), Some("hi"));
    assert!(!e.item.is_assistant_message());

    let done = parse(
        r#"{"type":"conversation.item.done","event_id":"event_CCXL",
           "previous_item_id":"item_CCXLe","item":{"id":"item_CCXLf","type":"message",
           "status":"completed","role":"assistant","content":[{"type":"output_audio",
           "transcript":"Oh, I can hear you loud and clear!"}]}}"#,
    );
    let ServerEvent::ItemDone(e) = done else {
        panic!("{done:?}")
    };
    assert!(e.item.is_assistant_message());
    assert_eq!(e.item.status(), Some("completed"));
    assert_eq!(
        e.item.transcript(),
        Some("Oh, I can hear you loud and clear!")
    );

    let created = parse(
        r#"{"event_id":"event_1920","type":"conversation.item.created",
           "previous_item_id":"msg_002","item":{"id":"msg_003","object":"realtime.item",
           "type":"message","status":"completed","role":"user","content":[]}}"#,
    );
    let ServerEvent::ItemCreated(e) = created else {
        panic!("{created:?}")
    };
    assert_eq!(e.previous_item_id.as_deref(), Some("msg_002"));
    assert_eq!(e.item.transcript(), None);

    assert_eq!(
        parse(
            r#"{"event_id":"event_2526","type":"conversation.item.truncated",
               "item_id":"msg_004","content_index":0,"audio_end_ms":1500}"#
        ),
        ServerEvent::ItemTruncated(ItemTruncated {
            event_id: "event_2526".into(),
            item_id: "msg_004".into(),
            content_index: 0,
            audio_end_ms: 1500,
        })
    );
    assert_eq!(
        parse(
            r#"{"event_id":"event_2728","type":"conversation.item.deleted","item_id":"msg_005"}"#
        ),
        ServerEvent::ItemDeleted(ItemDeleted {
            event_id: "event_2728".into(),
            item_id: "msg_005".into(),
        })
    );
}

#[test]
fn input_transcription_events() {
    assert_eq!(
        parse(
            r#"{"type":"conversation.item.input_audio_transcription.delta",
               "event_id":"event_CCXGR","item_id":"item_CCXGQ","content_index":0,
               "delta":"Hey","obfuscation":"aLxx0jTEciOGe"}"#
        ),
        ServerEvent::InputTranscriptionDelta(InputTranscriptionDelta {
            event_id: "event_CCXGR".into(),
            item_id: "item_CCXGQ".into(),
            content_index: 0,
            delta: "Hey".into(),
        })
    );
    let completed = parse(
        r#"{"type":"conversation.item.input_audio_transcription.completed",
           "event_id":"event_CCXGRv","item_id":"item_CCXGQ","content_index":0,
           "transcript":"Hey, can you hear me?","usage":{"type":"tokens","total_tokens":22,
           "input_tokens":13,"input_token_details":{"text_tokens":0,"audio_tokens":13},
           "output_tokens":9}}"#,
    );
    let ServerEvent::InputTranscriptionCompleted(c) = completed else {
        panic!("{completed:?}")
    };
    assert_eq!(c.transcript, "Hey, can you hear me?");
    assert_eq!(
        c.usage.as_ref().map(|u| &u["total_tokens"]),
        Some(&json!(22))
    );
    let failed = parse(
        r#"{"event_id":"event_2324","type":"conversation.item.input_audio_transcription.failed",
           "item_id":"msg_003","content_index":0,"error":{"type":"transcription_error",
           "code":"audio_unintelligible","message":"The audio could not be transcribed.",
           "param":null}}"#,
    );
    let ServerEvent::InputTranscriptionFailed(f) = failed else {
        panic!("{failed:?}")
    };
    assert!(f.error.has_code("audio_unintelligible"));
    assert_eq!(f.item_id, "msg_003");
}

#[test]
fn response_lifecycle_events() {
    let created = parse(
        r#"{"type":"response.created","event_id":"event_C9G8pq","response":{
           "object":"realtime.response","id":"resp_C9G8p7","status":"in_progress",
           "status_details":null,"output":[],"conversation_id":"conv_C9G8mm",
           "output_modalities":["audio"],"max_output_tokens":"inf","audio":{"output":{
           "format":{"type":"audio/pcm","rate":24000},"voice":"marin"}},"usage":null,
           "metadata":null}}"#,
    );
    let ServerEvent::ResponseCreated(r) = created else {
        panic!("{created:?}")
    };
    assert_eq!(r.response.id, "resp_C9G8p7");
    assert_eq!(r.response.status, ResponseStatus::InProgress);
    assert_eq!(r.response.status_details, None);
    assert_eq!(r.response.usage, None);
    assert_eq!(r.response.conversation_id.as_deref(), Some("conv_C9G8mm"));

    let done = parse(
        r#"{"type":"response.done","event_id":"event_CCXHx","response":{
           "object":"realtime.response","id":"resp_CCXHw","status":"completed",
           "status_details":null,"output":[{"id":"item_CCXHw","type":"message",
           "status":"completed","role":"assistant","content":[{"type":"output_audio",
           "transcript":"Loud and clear!"}]}],"conversation_id":"conv_CCXHs",
           "output_modalities":["audio"],"max_output_tokens":"inf","audio":{"output":{
           "format":{"type":"audio/pcm","rate":24000},"voice":"alloy"}},"usage":{
           "total_tokens":253,"input_tokens":132,"output_tokens":121,"input_token_details":{
           "text_tokens":119,"audio_tokens":13,"image_tokens":0,"cached_tokens":64,
           "cached_tokens_details":{"text_tokens":64,"audio_tokens":0,"image_tokens":0}},
           "output_token_details":{"text_tokens":30,"audio_tokens":91}},"metadata":null}}"#,
    );
    let ServerEvent::ResponseDone(r) = done else {
        panic!("{done:?}")
    };
    assert_eq!(r.response.status, ResponseStatus::Completed);
    assert_eq!(r.response.output.len(), 1);
    assert_eq!(r.response.output[0].transcript(), Some("Loud and clear!"));
    let usage = r.response.usage.expect("usage");
    assert_eq!(
        (usage.total_tokens, usage.input_tokens, usage.output_tokens),
        (253, 132, 121)
    );
    assert_eq!(
        usage.input_token_details,
        Some(InputTokenDetails {
            cached_tokens: 64,
            text_tokens: 119,
            audio_tokens: 13,
            image_tokens: 0,
        })
    );
    assert_eq!(
        usage.output_token_details,
        Some(OutputTokenDetails {
            text_tokens: 30,
            audio_tokens: 91,
        })
    );

    let cancelled = parse(
        r#"{"type":"response.done","event_id":"e","response":{"id":"resp_2",
           "status":"cancelled","status_details":{"type":"cancelled","reason":"turn_detected"},
           "output":[]}}"#,
    );
    let ServerEvent::ResponseDone(r) = cancelled else {
        panic!("{cancelled:?}")
    };
    assert_eq!(r.response.status, ResponseStatus::Cancelled);
    assert_eq!(r.response.reason(), Some("turn_detected"));
    let odd = parse(r#"{"type":"response.done","response":{"id":"r","status":"paused"}}"#);
    let ServerEvent::ResponseDone(r) = odd else {
        panic!("{odd:?}")
    };
    assert_eq!(r.response.status, ResponseStatus::Unknown);
    assert_eq!(r.event_id, "");

    let limits = parse(
        r#"{"event_id":"event_5758","type":"rate_limits.updated","rate_limits":[
           {"name":"requests","limit":1000,"remaining":999,"reset_seconds":60},
           {"name":"tokens","limit":50000,"remaining":49950,"reset_seconds":60.5}]}"#,
    );
    let ServerEvent::RateLimitsUpdated(l) = limits else {
        panic!("{limits:?}")
    };
    assert_eq!(l.rate_limits.len(), 2);
    assert_eq!(l.rate_limits[1].remaining, 49950);
    assert!((l.rate_limits[1].reset_seconds - 60.5).abs() < f64::EPSILON);
}

#[test]
fn output_item_and_content_part_events() {
    let added = parse(
        r#"{"event_id":"event_3334","type":"response.output_item.added",
           "response_id":"resp_001","output_index":0,"item":{"id":"msg_007",
           "object":"realtime.item","type":"message","status":"in_progress",
           "role":"assistant","content":[]}}"#,
    );
    let ServerEvent::OutputItemAdded(o) = added else {
        panic!("{added:?}")
    };
    assert_eq!(o.response_id, "resp_001");
    assert_eq!(o.item.id(), Some("msg_007"));
    assert!(o.item.is_assistant_message());
    let done = parse(
        r#"{"event_id":"event_3536","type":"response.output_item.done",
           "response_id":"resp_001","output_index":0,"item":{"id":"fc_1",
           "object":"realtime.item","type":"function_call","status":"completed",
           "call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}"#,
    );
    let ServerEvent::OutputItemDone(o) = done else {
        panic!("{done:?}")
    };
    assert!(o.item.is_function_call());
    assert_eq!(o.item.call_id(), Some("call_1"));
    assert_eq!(o.item.name(), Some("get_weather"));
    assert_eq!(o.item.arguments(), Some(r#"{"city":"Paris"}"#));

    let part = parse(
        r#"{"event_id":"event_3738","type":"response.content_part.added",
           "response_id":"resp_001","item_id":"msg_007","output_index":0,
           "content_index":0,"part":{"type":"text","text":""}}"#,
    );
    assert_eq!(
        part,
        ServerEvent::ContentPartAdded(ContentPartEvent {
            event_id: "event_3738".into(),
            response_id: "resp_001".into(),
            item_id: "msg_007".into(),
            output_index: 0,
            content_index: 0,
            part: Part {
                kind: "text".into(),
                text: Some(String::new()),
                transcript: None,
            },
        })
    );
    let part = parse(
        r#"{"event_id":"event_3940","type":"response.content_part.done",
           "response_id":"resp_001","item_id":"msg_007","output_index":0,
           "content_index":0,"part":{"type":"output_audio","transcript":"Sure."}}"#,
    );
    let ServerEvent::ContentPartDone(p) = part else {
        panic!("{part:?}")
    };
    assert_eq!(p.part.kind, "output_audio");
    assert_eq!(p.part.transcript.as_deref(), Some("Sure."));
}

#[test]
fn audio_text_and_function_call_events() {
    assert_eq!(
        parse(
            r#"{"event_id":"event_4950","type":"response.output_audio.delta",
               "response_id":"resp_001","item_id":"msg_008","output_index":0,
               "content_index":0,"delta":"Base64EncodedAudioDelta"}"#
        ),
        ServerEvent::AudioDelta(AudioDelta {
            event_id: "event_4950".into(),
            response_id: "resp_001".into(),
            item_id: "msg_008".into(),
            output_index: 0,
            content_index: 0,
            delta: "Base64EncodedAudioDelta".into(),
        })
    );
    assert_eq!(
        parse(
            r#"{"event_id":"event_5152","type":"response.output_audio.done",
               "response_id":"resp_001","item_id":"msg_008","output_index":0,
               "content_index":0}"#
        ),
        ServerEvent::AudioDone(AudioDone {
            event_id: "event_5152".into(),
            response_id: "resp_001".into(),
            item_id: "msg_008".into(),
            output_index: 0,
            content_index: 0,
        })
    );
    let delta = TextDelta {
        event_id: "event_4546".into(),
        response_id: "resp_001".into(),
        item_id: "msg_008".into(),
        output_index: 0,
        content_index: 0,
        delta: "Hello, how can I a".into(),
    };
    assert_eq!(
        parse(
            r#"{"event_id":"event_4546","type":"response.output_audio_transcript.delta",
               "response_id":"resp_001","item_id":"msg_008","output_index":0,
               "content_index":0,"delta":"Hello, how can I a"}"#
        ),
        ServerEvent::AudioTranscriptDelta(delta.clone())
    );
    assert_eq!(
        parse(
            r#"{"event_id":"event_4546","type":"response.output_text.delta",
               "response_id":"resp_001","item_id":"msg_008","output_index":0,
               "content_index":0,"delta":"Hello, how can I a"}"#
        ),
        ServerEvent::TextDelta(delta)
    );
    assert_eq!(
        parse(
            r#"{"event_id":"event_4748","type":"response.output_audio_transcript.done",
               "response_id":"resp_001","item_id":"msg_008","output_index":0,
               "content_index":0,"transcript":"Hello, how can I assist you today?"}"#
        ),
        ServerEvent::AudioTranscriptDone(TranscriptDone {
            event_id: "event_4748".into(),
            response_id: "resp_001".into(),
            item_id: "msg_008".into(),
            output_index: 0,
            content_index: 0,
            transcript: "Hello, how can I assist you today?".into(),
        })
    );
    assert_eq!(
        parse(
            r#"{"event_id":"event_4344","type":"response.output_text.done",
               "response_id":"resp_001","item_id":"msg_007","output_index":0,
               "content_index":0,"text":"Sure, I can help with that."}"#
        ),
        ServerEvent::TextDone(TextDone {
            event_id: "event_4344".into(),
            response_id: "resp_001".into(),
            item_id: "msg_007".into(),
            output_index: 0,
            content_index: 0,
            text: "Sure, I can help with that.".into(),
        })
    );
    assert_eq!(
        parse(
            r#"{"event_id":"event_5354","type":"response.function_call_arguments.delta",
               "response_id":"resp_002","item_id":"fc_001","output_index":0,
               "call_id":"call_001","delta":"{\"location\": \"San\""}"#
        ),
        ServerEvent::FunctionCallArgumentsDelta(FunctionCallArgumentsDelta {
            event_id: "event_5354".into(),
            response_id: "resp_002".into(),
            item_id: "fc_001".into(),
            output_index: 0,
            call_id: "call_001".into(),
            delta: r#"{"location": "San""#.into(),
        })
    );
    assert_eq!(
        parse(
            r#"{"event_id":"event_5556","type":"response.function_call_arguments.done",
               "response_id":"resp_002","item_id":"fc_001","output_index":0,
               "call_id":"call_001","name":"get_weather",
               "arguments":"{\"location\": \"San Francisco\"}"}"#
        ),
        ServerEvent::FunctionCallArgumentsDone(FunctionCallArgumentsDone {
            event_id: "event_5556".into(),
            response_id: "resp_002".into(),
            item_id: "fc_001".into(),
            output_index: 0,
            call_id: "call_001".into(),
            name: "get_weather".into(),
            arguments: r#"{"location": "San Francisco"}"#.into(),
        })
    );
}

#[test]
fn unknown_and_malformed_events() {
    for kind in [
        "output_audio_buffer.started",
        "conversation.item.input_audio_transcription.segment",
        "mcp_list_tools.completed",
        "response.audio.delta",
    ] {
        let text = format!(r#"{{"type":"{kind}","event_id":"e","response_id":"r"}}"#);
        let event = parse(&text);
        assert!(event.is_unknown());
        assert_eq!(event, ServerEvent::Unknown { kind: kind.into() });
    }
    // Unknown fields are ignored; the type may come last.
    let late = parse(
        r#"{"event_id":"e","extra":[1,{"a":null}],"audio_start_ms":5,"item_id":"i","type":"input_audio_buffer.speech_started"}"#,
    );
    assert!(matches!(late, ServerEvent::SpeechStarted(s) if s.audio_start_ms == 5));
    // An escaped type still parses.
    let escaped = parse(r#"{"type":"response\u002edone","response":{"id":"r"}}"#);
    assert!(matches!(escaped, ServerEvent::ResponseDone(_)));
    assert!(ServerEvent::parse("not json").is_err());
    assert!(ServerEvent::parse(r#"{"event_id":"e"}"#).is_err());
    // A known event without a field the runtime relies on is an error, not a default.
    assert!(ServerEvent::parse(r#"{"type":"response.output_audio.delta","item_id":"i"}"#).is_err());
}
