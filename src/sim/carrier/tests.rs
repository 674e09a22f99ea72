//! End-to-end tests of the carrier simulator against a tiny server under test over real
//! sockets. Nothing sleeps to wait: tests await snapshot predicates and socket events
//! under timeouts.

mod harness;

use std::time::{Duration, Instant};

use actors::media::{MarkName, OutboundMedia, TwilioInbound, TwilioOutbound};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use self::harness::{
    ACCOUNT, Answer, TOKEN, TestServer, WAIT, client, form, next_event, next_matching, send,
};
use super::*;
use crate::sim::audio;

async fn start_sim() -> CarrierSimHandle {
    CarrierSim::start(CarrierConfig {
        speech_ms_per_char: 1,
        ring_time: Duration::from_millis(20),
        amd_duration: Duration::from_millis(50),
        ..CarrierConfig::with_account(ACCOUNT, TOKEN)
    })
    .await
    .expect("start the carrier simulator")
}

async fn ended(sim: &CarrierSimHandle, sid: &str) -> CallSnapshot {
    tokio::time::timeout(WAIT, sim.wait_ended(sid))
        .await
        .expect("timed out waiting for the call to end")
}

fn inbound(server: &TestServer, script: CallerScript) -> InboundCall {
    InboundCall {
        account_sid: ACCOUNT.into(),
        from: "+15550001111".into(),
        to: "+15550002222".into(),
        voice_url: server.url("/incoming-call"),
        status_callback: Some(server.url("/call-status")),
        status_callback_events: vec!["initiated ringing answered completed".into()],
        script,
    }
}

fn connect_twiml(server: &TestServer, action: bool) -> String {
    let action = if action {
        format!(" action=\"{}\"", server.url("/after-stream"))
    } else {
        String::new()
    };
    format!(
        "<Response><Connect{action}><Stream url=\"{}\" statusCallback=\"{}\">\
         <Parameter name=\"token\" value=\"abc\"/></Stream></Connect></Response>",
        server.ws_url("/media-stream"),
        server.url("/stream-status"),
    )
}

fn media(stream_sid: &str, bytes: usize) -> TwilioOutbound {
    TwilioOutbound::Media {
        stream_sid: stream_sid.into(),
        media: OutboundMedia {
            payload: STANDARD.encode(vec![audio::MULAW_SILENCE; bytes]),
        },
    }
}

fn mark(stream_sid: &str, name: &str) -> TwilioOutbound {
    TwilioOutbound::Mark {
        stream_sid: stream_sid.into(),
        mark: MarkName { name: name.into() },
    }
}

fn is_mark(event: &TwilioInbound, wanted: &str) -> bool {
    matches!(event, TwilioInbound::Mark { mark, .. } if mark.name == wanted)
}

/// Reads `connected` and `start`; returns the stream SID and the `start` metadata.
async fn read_start(ws: &mut warp::ws::WebSocket) -> (String, actors::media::StartMeta) {
    let connected = next_event(ws).await.expect("connected");
    assert!(
        matches!(&connected, TwilioInbound::Connected { protocol, version } if protocol == "Call" && version == "1.0.0"),
        "{connected:?}"
    );
    match next_event(ws).await.expect("start") {
        TwilioInbound::Start {
            sequence_number,
            stream_sid,
            start,
        } => {
            assert_eq!(sequence_number, "1");
            (stream_sid, start)
        }
        other => panic!("expected start, got {other:?}"),
    }
}

async fn post(url: &str, auth: Option<(&str, &str)>, params: &[(String, String)]) -> (u16, Value) {
    let mut request = client().post(url).form(params);
    if let Some((user, password)) = auth {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.expect("json body");
    (status, body)
}

fn assert_twilio_error(body: &Value, status: u16, code: u64) {
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(
        body["more_info"],
        format!("https://www.twilio.com/docs/errors/{code}"),
        "{body}"
    );
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn inbound_call_streams_media_honours_marks_and_runs_the_connect_action() {
    let sim = start_sim().await;
    let mut server = TestServer::start().await;
    server.twiml("/incoming-call", &connect_twiml(&server, true));
    server.twiml(
        "/after-stream",
        "<Response><Say>Goodbye</Say><Hangup/></Response>",
    );
    let script = CallerScript::default()
        .speak(Duration::from_millis(200), "hello")
        .dtmf("5");
    let sid = sim
        .place_inbound_call(inbound(&server, script))
        .expect("place");

    let mut socket = server.accept().await;
    assert!(socket.signature_ok, "upgrade signature");
    let ws = &mut socket.ws;
    let (stream_sid, start) = read_start(ws).await;
    assert!(stream_sid.starts_with("MZ") && stream_sid.len() == 34);
    assert_eq!(start.call_sid, sid);
    assert_eq!(start.account_sid, ACCOUNT);
    assert_eq!(start.tracks, vec!["inbound"]);
    assert_eq!(
        start.custom_parameters.get("token").map(String::as_str),
        Some("abc")
    );
    assert_eq!(start.media_format.encoding, "audio/x-mulaw");
    assert_eq!(start.media_format.sample_rate, 8000);

    // Caller audio: 20 ms frames with string counters, speech first, then the key press.
    let (dtmf, frames) = next_matching(ws, |e| matches!(e, TwilioInbound::Dtmf { .. })).await;
    assert!(
        matches!(&dtmf, TwilioInbound::Dtmf { dtmf, .. } if dtmf.digit == "5" && dtmf.track.as_deref() == Some("inbound_track"))
    );
    assert_eq!(frames.len(), 10, "200 ms of speech before the key press");
    for (i, frame) in frames.iter().enumerate() {
        let TwilioInbound::Media {
            sequence_number,
            media,
            ..
        } = frame
        else {
            panic!("media expected: {frame:?}")
        };
        assert_eq!(sequence_number, &(i + 2).to_string());
        assert_eq!(media.chunk.as_deref(), Some((i + 1).to_string().as_str()));
        assert_eq!(media.timestamp_ms(), Some(i as u64 * 20));
        let bytes = STANDARD.decode(&media.payload).expect("base64");
        assert_eq!(bytes.len(), audio::FRAME_BYTES);
        if i == 5 {
            assert!(audio::frame_energy(&bytes) > 1000.0, "speech-like audio");
        }
    }

    // A mark after 200 ms of audio is echoed once that audio has played.
    send(ws, media(&stream_sid, 1600)).await;
    send(ws, mark(&stream_sid, "m1")).await;
    let sent = Instant::now();
    next_matching(ws, |e| is_mark(e, "m1")).await;
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );

    // With nothing queued a mark comes back at once; `clear` flushes pending marks.
    send(ws, mark(&stream_sid, "m0")).await;
    next_matching(ws, |e| is_mark(e, "m0")).await;
    send(ws, media(&stream_sid, 8000)).await;
    send(ws, mark(&stream_sid, "m2")).await;
    send(ws, mark(&stream_sid, "m3")).await;
    let cleared = Instant::now();
    send(
        ws,
        TwilioOutbound::Clear {
            stream_sid: stream_sid.clone(),
        },
    )
    .await;
    next_matching(ws, |e| is_mark(e, "m2")).await;
    let (m3, _) = next_matching(ws, |e| matches!(e, TwilioInbound::Mark { .. })).await;
    assert!(is_mark(&m3, "m3"), "{m3:?}");
    assert!(cleared.elapsed() < Duration::from_millis(500));

    // The server ends the stream: stream-stopped, then the action's TwiML runs.
    futures::SinkExt::close(ws).await.expect("close");
    let call = ended(&sim, &sid).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.said, vec!["Goodbye"]);
    assert_eq!(call.stream_closed_by(), Some(StreamCloser::Server));
    assert_eq!(call.direction, CallDirection::Inbound);
    let m = &call.media;
    assert_eq!(m.streams_opened, 1);
    assert_eq!((m.media_received, m.bytes_received), (2, 9600));
    assert_eq!((m.marks_received, m.marks_echoed, m.clears), (4, 4, 1));
    assert!(m.cleared_ms > 500, "{m:?}");
    assert_eq!(m.dtmf_sent, 1);
    assert!(m.frames_sent >= 10);
    assert!(m.first_audio_ms.is_some());
    assert_eq!(m.response_latencies_ms.len(), 1);
    assert!(call.has_event(|e| matches!(e, CallEvent::CallerSpoke(t) if t == "hello")));
    assert!(call.has_event(|e| matches!(e, CallEvent::StreamOpened { custom_parameters, .. } if custom_parameters["token"] == "abc")));

    // Webhook order: voice, stream-started, stream-stopped, connect action.
    let kinds: Vec<WebhookKind> = call
        .webhooks()
        .map(|w| w.kind)
        .filter(|k| *k != WebhookKind::StatusCallback)
        .collect();
    assert_eq!(
        kinds,
        vec![
            WebhookKind::Voice,
            WebhookKind::StreamStatus,
            WebhookKind::StreamStatus,
            WebhookKind::ConnectAction
        ]
    );
    let voice = &call.webhooks_of(WebhookKind::Voice)[0];
    assert_eq!(voice.param("CallStatus"), Some("ringing"));
    assert_eq!(voice.param("Direction"), Some("inbound"));
    assert_eq!(voice.param("Caller"), Some("+15550001111"));
    assert_eq!(voice.param("Called"), Some("+15550002222"));
    assert_eq!(voice.param("ApiVersion"), Some("2010-04-01"));
    assert_eq!(voice.status, Some(200));
    let action = &call.webhooks_of(WebhookKind::ConnectAction)[0];
    assert_eq!(action.param("CallStatus"), Some("in-progress"));

    let stream_events: Vec<String> = server
        .hits_to("/stream-status")
        .iter()
        .map(|h| {
            assert_eq!(h.param("StreamSid"), Some(stream_sid.as_str()));
            assert_eq!(h.param("CallSid"), Some(sid.as_str()));
            assert_eq!(h.param("StreamName"), Some(stream_sid.as_str()));
            h.param("StreamEvent").unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(stream_events, vec!["stream-started", "stream-stopped"]);
    let statuses: Vec<(String, String)> = server
        .hits_to("/call-status")
        .iter()
        .map(|h| {
            (
                h.param("SequenceNumber").unwrap_or_default().to_owned(),
                h.param("CallStatus").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("0", "initiated"),
            ("1", "ringing"),
            ("2", "in-progress"),
            ("3", "completed")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    server.assert_all_signed();

    let summary = crate::sim::cli::summary(&call);
    assert!(summary.contains("completed"), "{summary}");
    assert!(summary.contains("closed by the server"), "{summary}");
    assert!(summary.contains("said: \"Goodbye\""), "{summary}");
    assert!(summary.contains("#3 completed -> 204"), "{summary}");
}

#[tokio::test]
async fn outbound_call_via_rest_sends_ordered_signed_status_callbacks() {
    let sim = start_sim().await;
    let server = TestServer::start().await;
    let mut params = form(&[
        ("To", "+15550003333"),
        ("From", "+15550004444"),
        ("Twiml", "<Response><Say>Hi there</Say><Hangup/></Response>"),
        ("StatusCallback", &server.url("/call-status")),
    ]);
    for event in ["initiated", "ringing", "answered", "completed"] {
        params.push(("StatusCallbackEvent".into(), event.into()));
    }
    let (status, body) = post(&sim.calls_url(ACCOUNT), Some((ACCOUNT, TOKEN)), &params).await;
    assert_eq!(status, 201, "{body}");
    let sid = body["sid"].as_str().expect("sid").to_owned();
    assert!(sid.starts_with("CA") && sid.len() == 34, "{sid}");
    assert!(sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(body["status"], "queued");
    assert_eq!(body["direction"], "outbound-api");
    assert_eq!(body["api_version"], "2010-04-01");
    assert_eq!(body["account_sid"], ACCOUNT);
    assert_eq!(body["to"], "+15550003333");
    assert_eq!(body["from"], "+15550004444");
    assert_eq!(
        body["uri"],
        format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json")
    );
    assert!(body["date_created"].as_str().is_some());
    assert!(body["subresource_uris"]["streams"].as_str().is_some());

    let call = ended(&sim, &sid).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.said, vec!["Hi there"]);
    let sequence: Vec<(u32, &str)> = call
        .status_callbacks
        .iter()
        .map(|c| (c.sequence_number, c.call_status.as_str()))
        .collect();
    assert_eq!(
        sequence,
        vec![
            (0, "initiated"),
            (1, "ringing"),
            (2, "in-progress"),
            (3, "completed")
        ]
    );
    let hits = server.hits_to("/call-status");
    assert_eq!(hits.len(), 4);
    for (i, hit) in hits.iter().enumerate() {
        assert!(hit.signature_ok);
        assert_eq!(hit.param("SequenceNumber"), Some(i.to_string().as_str()));
        assert_eq!(hit.param("CallSid"), Some(sid.as_str()));
        assert_eq!(hit.param("AccountSid"), Some(ACCOUNT));
        assert_eq!(hit.param("Direction"), Some("outbound-api"));
        assert_eq!(hit.param("ApiVersion"), Some("2010-04-01"));
        assert_eq!(hit.param("CallbackSource"), Some("call-progress-events"));
        let timestamp = hit.param("Timestamp").expect("timestamp");
        assert!(
            chrono::DateTime::parse_from_rfc2822(timestamp).is_ok(),
            "{timestamp}"
        );
        assert_eq!(hit.param("CallDuration").is_some(), i == 3);
    }
    assert_eq!(hits[3].param("CallDuration"), Some("0"));

    // The REST request is recorded with its repeated keys and the auth user.
    let requests = sim.requests();
    let create = requests
        .iter()
        .find(|r| r.path.ends_with("/Calls.json"))
        .expect("create recorded");
    assert_eq!(create.auth_user.as_deref(), Some(ACCOUNT));
    assert_eq!(create.status, 201);
    let events = create
        .params
        .iter()
        .filter(|(k, _)| k == "StatusCallbackEvent")
        .count();
    assert_eq!(events, 4);

    // Fetch reflects the end.
    let fetched: Value = client()
        .get(sim.call_url(ACCOUNT, &sid))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .send()
        .await
        .expect("fetch")
        .json()
        .await
        .expect("json");
    assert_eq!(fetched["status"], "completed");
    assert_eq!(fetched["duration"], "0");
}

#[tokio::test]
async fn rest_validation_and_authentication_errors_use_twilio_json() {
    let sim = start_sim().await;
    sim.add_account("AC99999999999999999999999999999999", "other-token");
    let url = sim.calls_url(ACCOUNT);
    let ok_twiml = "<Response><Hangup/></Response>";
    let cases = [
        (
            form(&[("To", "555"), ("From", "+15550004444"), ("Twiml", ok_twiml)]),
            400,
            21211,
        ),
        (
            form(&[
                ("To", "+15550003333"),
                ("From", "nope"),
                ("Twiml", ok_twiml),
            ]),
            400,
            21212,
        ),
        (
            form(&[("To", "+15550003333"), ("From", "+15550004444")]),
            400,
            21205,
        ),
        (
            form(&[
                ("To", "+15550003333"),
                ("From", "+15550004444"),
                ("Twiml", ok_twiml),
                ("Url", "http://127.0.0.1:1/x"),
            ]),
            400,
            21205,
        ),
        (
            form(&[
                ("To", "+15550003333"),
                ("From", "+15550004444"),
                ("Twiml", "<Nope/>"),
            ]),
            400,
            21205,
        ),
    ];
    for (params, status, code) in cases {
        let (got, body) = post(&url, Some((ACCOUNT, TOKEN)), &params).await;
        assert_eq!(got, status, "{body}");
        assert_twilio_error(&body, status, code);
    }
    let long = format!("<Response><Say>{}</Say></Response>", "a".repeat(4000));
    let (got, body) = post(
        &url,
        Some((ACCOUNT, TOKEN)),
        &form(&[
            ("To", "+15550003333"),
            ("From", "+15550004444"),
            ("Twiml", &long),
        ]),
    )
    .await;
    assert_eq!(got, 400);
    assert_twilio_error(&body, 400, 21205);

    let valid = form(&[
        ("To", "+15550003333"),
        ("From", "+15550004444"),
        ("Twiml", ok_twiml),
    ]);
    for auth in [None, Some((ACCOUNT, "wrong")), Some(("ACnobody", TOKEN))] {
        let (got, body) = post(&url, auth, &valid).await;
        assert_eq!(got, 401, "{auth:?}");
        assert_twilio_error(&body, 401, 20003);
    }
    // Valid credentials of another account do not open this account's path.
    let (got, body) = post(
        &url,
        Some(("AC99999999999999999999999999999999", "other-token")),
        &valid,
    )
    .await;
    assert_eq!(got, 401);
    assert_twilio_error(&body, 401, 20003);
    assert!(sim.calls().is_empty());

    // Unknown call.
    let missing = sim.call_url(ACCOUNT, "CA00000000000000000000000000000000");
    let (got, body) = post(
        &missing,
        Some((ACCOUNT, TOKEN)),
        &form(&[("Status", "completed")]),
    )
    .await;
    assert_eq!(got, 404);
    assert_twilio_error(&body, 404, 20404);

    // Messages.
    let messages = sim.messages_url(ACCOUNT);
    let (got, body) = post(
        &messages,
        Some((ACCOUNT, TOKEN)),
        &form(&[
            ("To", "+15550003333"),
            ("From", "+15550004444"),
            ("Body", "Thanks for calling"),
        ]),
    )
    .await;
    assert_eq!(got, 201, "{body}");
    assert!(
        body["sid"]
            .as_str()
            .is_some_and(|s| s.starts_with("SM") && s.len() == 34)
    );
    assert_eq!(body["body"], "Thanks for calling");
    assert_eq!(body["status"], "queued");
    let (got, body) = post(
        &messages,
        Some((ACCOUNT, TOKEN)),
        &form(&[("To", "+15550003333"), ("From", "+15550004444")]),
    )
    .await;
    assert_eq!(got, 400);
    assert_twilio_error(&body, 400, 21602);
    let sent = sim.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "+15550003333");
    assert_eq!(sent[0].body, "Thanks for calling");
}

/// Places an outbound call whose TwiML opens a stream; returns the SID, the socket and
/// the stream SID after `start`.
async fn outbound_streaming_call(
    sim: &CarrierSimHandle,
    server: &mut TestServer,
) -> (String, harness::Socket, String) {
    let params = form(&[
        ("To", "+15550003333"),
        ("From", "+15550004444"),
        ("Twiml", &connect_twiml(server, true)),
        ("StatusCallback", &server.url("/call-status")),
    ]);
    let (status, body) = post(&sim.calls_url(ACCOUNT), Some((ACCOUNT, TOKEN)), &params).await;
    assert_eq!(status, 201, "{body}");
    let sid = body["sid"].as_str().expect("sid").to_owned();
    let mut socket = server.accept().await;
    assert!(socket.signature_ok);
    let (stream_sid, start) = read_start(&mut socket.ws).await;
    assert_eq!(start.call_sid, sid);
    (sid, socket, stream_sid)
}

async fn expect_stop(ws: &mut warp::ws::WebSocket, sid: &str) {
    let (stop, _) = next_matching(ws, |e| matches!(e, TwilioInbound::Stop { .. })).await;
    let TwilioInbound::Stop { stop, .. } = stop else {
        unreachable!()
    };
    assert_eq!(stop.call_sid, sid);
    assert_eq!(stop.account_sid, ACCOUNT);
    // The socket closes after `stop`; answer the close handshake.
    while let Some(event) = next_event(ws).await {
        assert!(matches!(event, TwilioInbound::Media { .. }), "{event:?}");
    }
    let _ = futures::SinkExt::close(ws).await;
}

#[tokio::test]
async fn rest_update_with_twiml_stops_the_stream_and_runs_the_new_twiml() {
    let sim = start_sim().await;
    let mut server = TestServer::start().await;
    server.twiml("/after-stream", "<Response><Say>Wrong</Say></Response>");
    let (sid, mut socket, _) = outbound_streaming_call(&sim, &mut server).await;

    let (status, body) = post(
        &sim.call_url(ACCOUNT, &sid),
        Some((ACCOUNT, TOKEN)),
        &form(&[(
            "Twiml",
            "<Response><Say>Transferred</Say><Hangup/></Response>",
        )]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sid"], sid.as_str());
    expect_stop(&mut socket.ws, &sid).await;

    let call = ended(&sim, &sid).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.said, vec!["Transferred"]);
    assert_eq!(call.stream_closed_by(), Some(StreamCloser::Redirect));
    assert!(call.webhooks_of(WebhookKind::ConnectAction).is_empty());
    assert!(server.hits_to("/after-stream").is_empty());
    assert!(call.has_event(|e| matches!(e, CallEvent::Updated { twiml: Some(_), .. })));
    let stopped = server
        .wait_hits(|h| {
            h.iter()
                .any(|h| h.param("StreamEvent") == Some("stream-stopped"))
        })
        .await;
    assert!(!stopped.is_empty());

    // The call is over: further updates fail with 21220.
    let (status, body) = post(
        &sim.call_url(ACCOUNT, &sid),
        Some((ACCOUNT, TOKEN)),
        &form(&[("Twiml", "<Response><Hangup/></Response>")]),
    )
    .await;
    assert_eq!(status, 400);
    assert_twilio_error(&body, 400, 21220);
    server.assert_all_signed();
}

#[tokio::test]
async fn rest_update_status_completed_hangs_up_mid_stream() {
    let sim = start_sim().await;
    let mut server = TestServer::start().await;
    let (sid, mut socket, _) = outbound_streaming_call(&sim, &mut server).await;
    let (status, _) = post(
        &sim.call_url(ACCOUNT, &sid),
        Some((ACCOUNT, TOKEN)),
        &form(&[("Status", "completed")]),
    )
    .await;
    assert_eq!(status, 200);
    expect_stop(&mut socket.ws, &sid).await;
    let call = ended(&sim, &sid).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.stream_closed_by(), Some(StreamCloser::Hangup));
    assert!(call.said.is_empty());
    assert!(call.webhooks_of(WebhookKind::ConnectAction).is_empty());
    let last = call.status_callbacks.last().expect("completed callback");
    assert_eq!(
        (last.sequence_number, last.call_status.as_str()),
        (0, "completed")
    );
    let (status, body) = post(
        &sim.call_url(ACCOUNT, &sid),
        Some((ACCOUNT, TOKEN)),
        &form(&[("Status", "completed")]),
    )
    .await;
    assert_eq!(status, 400);
    assert_twilio_error(&body, 400, 21220);
}

#[tokio::test]
async fn caller_hang_up_sends_stop_and_completes_without_the_action() {
    let sim = start_sim().await;
    let mut server = TestServer::start().await;
    server.twiml("/incoming-call", &connect_twiml(&server, true));
    let script = CallerScript::default()
        .speak(Duration::from_millis(100), "bye")
        .hang_up()
        .with_tagged_frames();
    let sid = sim
        .place_inbound_call(inbound(&server, script))
        .expect("place");
    let mut socket = server.accept().await;
    let (_, _) = read_start(&mut socket.ws).await;
    let (_, frames) =
        next_matching(&mut socket.ws, |e| matches!(e, TwilioInbound::Stop { .. })).await;
    assert_eq!(frames.len(), 5);
    for (i, frame) in frames.iter().enumerate() {
        let TwilioInbound::Media { media, .. } = frame else {
            panic!("{frame:?}")
        };
        let bytes = STANDARD.decode(&media.payload).expect("base64");
        assert_eq!(audio::read_tag(&bytes), Some(i as u32 + 1));
    }
    assert!(next_event(&mut socket.ws).await.is_none());
    let _ = futures::SinkExt::close(&mut socket.ws).await;
    let call = ended(&sim, &sid).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.stream_closed_by(), Some(StreamCloser::Caller));
    assert!(server.hits_to("/after-stream").is_empty());
    assert_eq!(call.media.frames_sent, 5);
}

/// Records what a [`MediaObserver`] is told.
#[derive(Debug, Default)]
struct Recorder {
    sent: std::sync::Mutex<Vec<(String, u32)>>,
    received: std::sync::Mutex<Vec<(String, Vec<u32>)>>,
}

impl MediaObserver for Recorder {
    fn caller_frame_sent(&self, call_sid: &str, tag: u32, _at: Instant) {
        self.sent
            .lock()
            .expect("lock")
            .push((call_sid.to_owned(), tag));
    }

    fn server_audio_received(&self, call_sid: &str, tags: &[u32], _at: Instant) {
        let entry = (call_sid.to_owned(), tags.to_vec());
        self.received.lock().expect("lock").push(entry);
    }
}

#[tokio::test]
async fn the_media_observer_sees_tags_both_ways_with_the_script_tag_base() {
    let recorder = std::sync::Arc::new(Recorder::default());
    let sim = CarrierSim::start(CarrierConfig {
        media_observer: Some(recorder.clone()),
        ..CarrierConfig::with_account(ACCOUNT, TOKEN)
    })
    .await
    .expect("start");
    let mut server = TestServer::start().await;
    server.twiml("/incoming-call", &connect_twiml(&server, true));
    let script = CallerScript::default()
        .speak(Duration::from_millis(60), "hi")
        .silence(Duration::from_secs(30))
        .with_tag_base(1000);
    let sid = sim
        .place_inbound_call(inbound(&server, script))
        .expect("place");
    let mut socket = server.accept().await;
    let (stream_sid, _) = read_start(&mut socket.ws).await;
    let (_, frames) = next_matching(
        &mut socket.ws,
        |e| matches!(e, TwilioInbound::Media { media, .. } if media.chunk.as_deref() == Some("3")),
    )
    .await;
    for (i, frame) in frames.iter().enumerate() {
        let TwilioInbound::Media { media, .. } = frame else {
            panic!("{frame:?}")
        };
        let bytes = STANDARD.decode(&media.payload).expect("base64");
        assert_eq!(audio::read_tag(&bytes), Some(1001 + i as u32));
    }
    // Two tagged frames and one plain one in a single message.
    let mut payload = Vec::new();
    for tag in [7_u32, 8] {
        let mut frame = audio::silence_frame();
        audio::tag_frame(&mut frame, tag);
        payload.extend_from_slice(&frame);
    }
    payload.extend_from_slice(&audio::silence_frame());
    let message = TwilioOutbound::Media {
        stream_sid: stream_sid.clone(),
        media: OutboundMedia {
            payload: STANDARD.encode(&payload),
        },
    };
    send(&mut socket.ws, message).await;
    send(&mut socket.ws, media(&stream_sid, 160)).await;
    send(&mut socket.ws, mark(&stream_sid, "after")).await;
    let _ = next_matching(&mut socket.ws, |e| is_mark(e, "after")).await;
    sim.hangup(&sid).expect("hang up");
    let _ = ended(&sim, &sid).await;
    let sent = recorder.sent.lock().expect("lock").clone();
    assert!(sent.len() >= 3, "{sent:?}");
    for (i, (call, tag)) in sent.iter().enumerate() {
        assert_eq!(call, &sid);
        assert_eq!(*tag, 1001 + i as u32);
    }
    let received = recorder.received.lock().expect("lock").clone();
    assert_eq!(received, vec![(sid.clone(), vec![7, 8])]);
}

#[tokio::test]
async fn dial_results_reach_the_action_url() {
    let sim = start_sim().await;
    let server = TestServer::start().await;
    sim.set_operator("+15550009999", OperatorBehaviour::Busy);
    sim.set_operator(
        "+15550008888",
        OperatorBehaviour::Answer {
            answer_after: Duration::from_millis(30),
            talk: Duration::from_millis(100),
        },
    );
    server.twiml(
        "/dial-result",
        "<Response><Say>After dial</Say><Hangup/></Response>",
    );
    for (number, status, bridged) in [
        ("+15550009999", "busy", "false"),
        ("+15550008888", "completed", "true"),
    ] {
        server.twiml(
            "/incoming-call",
            &format!(
                "<Response><Say>Connecting</Say><Dial action=\"{}\" timeout=\"5\"><Number>{number}</Number></Dial><Say>Not reached</Say></Response>",
                server.url("/dial-result")
            ),
        );
        let sid = sim
            .place_inbound_call(inbound(&server, CallerScript::default()))
            .expect("place");
        let call = ended(&sim, &sid).await;
        assert_eq!(call.status, CallStatus::Completed);
        assert_eq!(call.said, vec!["Connecting", "After dial"]);
        let action = &call.webhooks_of(WebhookKind::DialAction)[0];
        assert_eq!(action.param("DialCallStatus"), Some(status));
        assert_eq!(action.param("DialBridged"), Some(bridged));
        assert!(
            action
                .param("DialCallSid")
                .is_some_and(|s| s.starts_with("CA"))
        );
        assert!(action.param("DialCallDuration").is_some());
        assert_eq!(action.param("CallSid"), Some(sid.as_str()));
        assert!(call.has_event(|e| matches!(e, CallEvent::Dialed { numbers, outcome } if numbers == &vec![number.to_owned()] && outcome.status == status)));
        let hit = server
            .hits_to("/dial-result")
            .into_iter()
            .find(|h| h.param("CallSid") == Some(sid.as_str()))
            .expect("action hit");
        assert_eq!(hit.param("DialCallStatus"), Some(status));
    }
    server.assert_all_signed();
}

#[tokio::test]
async fn reject_busy_ends_the_call_busy_without_answering() {
    let sim = start_sim().await;
    let server = TestServer::start().await;
    server.twiml(
        "/incoming-call",
        "<Response><Reject reason=\"busy\"/></Response>",
    );
    let sid = sim
        .place_inbound_call(inbound(&server, CallerScript::default()))
        .expect("place");
    let call = ended(&sim, &sid).await;
    assert_eq!(call.status, CallStatus::Busy);
    assert!(call.answered_at.is_none());
    assert!(call.has_event(|e| matches!(e, CallEvent::Rejected { reason } if reason == "busy")));
    let statuses: Vec<&str> = call
        .status_callbacks
        .iter()
        .map(|c| c.call_status.as_str())
        .collect();
    assert_eq!(statuses, vec!["initiated", "ringing", "busy"]);

    // A voice URL that fails ends the call `failed`.
    server.answer("/incoming-call", Answer::Status(500));
    let sid = sim
        .place_inbound_call(inbound(&server, CallerScript::default()))
        .expect("place");
    let call = ended(&sim, &sid).await;
    assert_eq!(call.status, CallStatus::Failed);
    assert!(call.has_event(|e| matches!(e, CallEvent::ApplicationError { .. })));
    assert_eq!(call.webhooks_of(WebhookKind::Voice)[0].status, Some(500));

    // Outbound callees: busy, failed.
    for (behaviour, status) in [
        (CalleeBehaviour::Busy, CallStatus::Busy),
        (CalleeBehaviour::Failed, CallStatus::Failed),
    ] {
        sim.set_callee("+15550007777", behaviour);
        let (code, body) = post(
            &sim.calls_url(ACCOUNT),
            Some((ACCOUNT, TOKEN)),
            &form(&[
                ("To", "+15550007777"),
                ("From", "+15550004444"),
                ("Twiml", "<Response><Say>never</Say></Response>"),
            ]),
        )
        .await;
        assert_eq!(code, 201);
        let call = ended(&sim, body["sid"].as_str().expect("sid")).await;
        assert_eq!(call.status, status);
        assert!(call.said.is_empty());
    }
}

#[tokio::test]
async fn async_amd_posts_the_result_while_twiml_runs() {
    let sim = start_sim().await;
    let server = TestServer::start().await;
    sim.set_answered_by("+15550003333", "machine_start");
    let params = form(&[
        ("To", "+15550003333"),
        ("From", "+15550004444"),
        ("Twiml", "<Response><Pause length=\"30\"/></Response>"),
        ("StatusCallback", &server.url("/call-status")),
        ("MachineDetection", "Enable"),
        ("AsyncAmd", "true"),
        ("AsyncAmdStatusCallback", &server.url("/amd")),
    ]);
    let (status, body) = post(&sim.calls_url(ACCOUNT), Some((ACCOUNT, TOKEN)), &params).await;
    assert_eq!(status, 201, "{body}");
    let sid = body["sid"].as_str().expect("sid").to_owned();
    let call = tokio::time::timeout(
        WAIT,
        sim.wait_for(&sid, |s| {
            s.has_event(|e| matches!(e, CallEvent::AmdSent { .. }))
        }),
    )
    .await
    .expect("amd");
    assert_eq!(call.answered_by.as_deref(), Some("machine_start"));
    assert_eq!(call.status, CallStatus::InProgress);
    let hit = &server.hits_to("/amd")[0];
    assert!(hit.signature_ok);
    assert_eq!(hit.param("AnsweredBy"), Some("machine_start"));
    assert_eq!(hit.param("MachineDetectionDuration"), Some("50"));
    assert_eq!(hit.param("CallSid"), Some(sid.as_str()));
    assert_eq!(hit.param("AccountSid"), Some(ACCOUNT));

    // React as an app would: hang up through the REST API.
    let (status, _) = post(
        &sim.call_url(ACCOUNT, &sid),
        Some((ACCOUNT, TOKEN)),
        &form(&[("Status", "completed")]),
    )
    .await;
    assert_eq!(status, 200);
    let call = ended(&sim, &sid).await;
    assert_eq!(call.status, CallStatus::Completed);
    let completed = server.hits_to("/call-status");
    assert_eq!(completed[0].param("AnsweredBy"), Some("machine_start"));
    assert_eq!(completed[0].param("CallStatus"), Some("completed"));
}

#[tokio::test]
async fn stream_handshake_failure_posts_stream_error_and_continues() {
    let sim = start_sim().await;
    let server = TestServer::start().await;
    server.twiml(
        "/incoming-call",
        &format!(
            "<Response><Connect><Stream url=\"{}\" statusCallback=\"{}\"/></Connect><Say>Fallback</Say></Response>",
            server.ws_url("/no-such-socket"),
            server.url("/stream-status"),
        ),
    );
    let sid = sim
        .place_inbound_call(inbound(&server, CallerScript::default()))
        .expect("place");
    let call = ended(&sim, &sid).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.said, vec!["Fallback"]);
    assert!(call.has_event(
        |e| matches!(e, CallEvent::StreamRejected { http_status: Some(s), .. } if *s >= 400)
    ));
    let hits = server.hits_to("/stream-status");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].param("StreamEvent"), Some("stream-error"));
    assert!(
        hits[0]
            .param("StreamError")
            .is_some_and(|e| e.contains("31920"))
    );
}

#[tokio::test]
async fn injected_faults_answer_the_next_request() {
    let sim = start_sim().await;
    let params = form(&[
        ("To", "+15550003333"),
        ("From", "+15550004444"),
        ("Twiml", "<Response><Hangup/></Response>"),
    ]);
    sim.fail_next_request(FaultSpec {
        status: 503,
        code: 20503,
        message: "Service unavailable".into(),
    });
    let (status, body) = post(&sim.calls_url(ACCOUNT), Some((ACCOUNT, TOKEN)), &params).await;
    assert_eq!(status, 503);
    assert_twilio_error(&body, 503, 20503);
    assert!(sim.calls().is_empty());
    let (status, _) = post(&sim.calls_url(ACCOUNT), Some((ACCOUNT, TOKEN)), &params).await;
    assert_eq!(status, 201);

    sim.delay_next_request(Duration::from_millis(400));
    let slow = client()
        .get(sim.calls_url(ACCOUNT))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(slow.is_err_and(|e| e.is_timeout()));
    let fast = client()
        .get(sim.calls_url(ACCOUNT))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .timeout(Duration::from_millis(2000))
        .send()
        .await
        .expect("second request is not delayed");
    assert_eq!(fast.status().as_u16(), 200);
}

#[tokio::test]
async fn a_slow_carrier_creates_the_call_before_it_answers_and_lookups_filter() {
    let sim = start_sim().await;
    let create = |to: &str| {
        form(&[
            ("To", to),
            ("From", "+15550004444"),
            ("Twiml", "<Response><Pause length=\"5\"/></Response>"),
        ])
    };
    // The answer comes late, the call exists at once: a client that gave up caused it.
    sim.set_create_response_delay(Duration::from_secs(5));
    let gave_up = client()
        .post(sim.calls_url(ACCOUNT))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .form(&create("+15550003333"))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()));
    assert_eq!(sim.calls().len(), 1);
    assert_eq!(sim.calls_created(), 1);
    sim.set_create_response_delay(Duration::ZERO);
    let (status, _) = post(
        &sim.calls_url(ACCOUNT),
        Some((ACCOUNT, TOKEN)),
        &create("+15550005555"),
    )
    .await;
    assert_eq!(status, 201);
    let today = chrono::Utc::now().date_naive();
    let list = |query: Vec<(String, String)>| {
        let mut url = url::Url::parse(&sim.calls_url(ACCOUNT)).expect("url");
        url.query_pairs_mut().extend_pairs(query);
        async move {
            client()
                .get(url)
                .basic_auth(ACCOUNT, Some(TOKEN))
                .send()
                .await
                .expect("list")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let found = list(form(&[
        ("To", "+15550003333"),
        ("From", "+15550004444"),
        ("StartTime>=", &today.format("%Y-%m-%d").to_string()),
    ]))
    .await;
    let calls = found["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 1, "{found}");
    assert_eq!(calls[0]["sid"], sim.calls()[0].sid.as_str());
    assert!(calls[0]["date_created"].is_string());
    let tomorrow = today.succ_opt().expect("tomorrow");
    let none = list(form(&[(
        "StartTime>=",
        &tomorrow.format("%Y-%m-%d").to_string(),
    )]))
    .await;
    assert_eq!(none["calls"], serde_json::json!([]));
    let all = list(Vec::new()).await;
    assert_eq!(all["calls"].as_array().expect("calls").len(), 2);
    // Lookups can be slow too.
    sim.set_calls_response_delay(Duration::from_secs(5));
    let slow = client()
        .get(sim.call_url(ACCOUNT, &sim.calls()[0].sid))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(slow.is_err_and(|e| e.is_timeout()));
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let sim = start_sim().await;
    let url = sim.calls_url(ACCOUNT);
    drop(sim);
    let result = client()
        .get(url)
        .basic_auth(ACCOUNT, Some(TOKEN))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(result.is_err());
}

#[tokio::test]
async fn a_machine_reports_its_beep_and_records_only_what_follows() {
    let sim = CarrierSim::start(CarrierConfig {
        speech_ms_per_char: 1,
        ring_time: Duration::from_millis(20),
        amd_duration: Duration::from_millis(50),
        machine_greeting: Duration::from_millis(400),
        ..CarrierConfig::with_account(ACCOUNT, TOKEN)
    })
    .await
    .expect("start the carrier simulator");
    let server = TestServer::start().await;
    sim.set_answered_by("+15550003333", "machine_start");
    // Said at once (over the greeting), then a long pause the app interrupts after the beep.
    let params = form(&[
        ("To", "+15550003333"),
        ("From", "+15550004444"),
        (
            "Twiml",
            "<Response><Say>Hello?</Say><Pause length=\"30\"/></Response>",
        ),
        ("MachineDetection", "DetectMessageEnd"),
        ("AsyncAmd", "true"),
        ("AsyncAmdStatusCallback", &server.url("/amd")),
    ]);
    let (status, body) = post(&sim.calls_url(ACCOUNT), Some((ACCOUNT, TOKEN)), &params).await;
    assert_eq!(status, 201, "{body}");
    let sid = body["sid"].as_str().expect("sid").to_owned();
    let call = tokio::time::timeout(
        WAIT,
        sim.wait_for(&sid, |s| {
            s.has_event(|e| matches!(e, CallEvent::AmdSent { .. }))
        }),
    )
    .await
    .expect("amd");
    // With DetectMessageEnd the result comes at the end of the greeting.
    assert_eq!(call.answered_by.as_deref(), Some("machine_end_beep"));
    let hit = &server.hits_to("/amd")[0];
    assert!(hit.signature_ok);
    assert_eq!(hit.param("MachineDetectionDuration"), Some("400"));
    let (status, _) = post(
        &sim.call_url(ACCOUNT, &sid),
        Some((ACCOUNT, TOKEN)),
        &form(&[(
            "Twiml",
            "<Response><Say>Please call back.</Say><Hangup/></Response>",
        )]),
    )
    .await;
    assert_eq!(status, 200);
    let call = ended(&sim, &sid).await;
    let machine = call.machine.expect("a machine answered");
    assert_eq!(machine.before_beep, vec!["Hello?".to_owned()]);
    assert_eq!(machine.recorded.len(), 1, "{:?}", machine.recorded);
    assert_eq!(machine.recorded[0].0, "Please call back.");
    assert_eq!(
        call.said,
        vec!["Hello?".to_owned(), "Please call back.".to_owned()]
    );
}

#[test]
fn detection_results_by_mode_and_timeout() {
    use super::call::{AmdSpec, amd_result};
    let spec = |detect_message_end: bool, timeout: Option<u64>| AmdSpec {
        detect_message_end,
        timeout: timeout.map(Duration::from_secs),
        is_async: true,
        callback: None,
    };
    let detection = Duration::from_millis(50);
    let greeting = Duration::from_secs(5);
    let at = |setting: &str, amd: &AmdSpec| amd_result(setting, amd, detection, greeting);
    let ms = Duration::from_millis;
    assert_eq!(at("human", &spec(true, None)), ("human".into(), ms(50)));
    assert_eq!(at("fax", &spec(true, None)), ("fax".into(), ms(50)));
    assert_eq!(
        at("machine_end_beep", &spec(false, None)),
        ("machine_start".into(), ms(50))
    );
    assert_eq!(
        at("machine_start", &spec(true, None)),
        ("machine_end_beep".into(), ms(5000))
    );
    assert_eq!(
        at("machine_end_silence", &spec(true, None)),
        ("machine_end_silence".into(), ms(5000))
    );
    // The greeting outlasts the detection timeout: `unknown`, at the timeout.
    assert_eq!(
        at("machine_end_beep", &spec(true, Some(3))),
        ("unknown".into(), ms(3000))
    );
}

/// A conference as a warm transfer uses it: the caller waits on hold audio until an
/// operator called through `Calls.json` with `Url=` hears the `<Gather>`'s `<Say>`, presses
/// 1 and joins with `startConferenceOnEnter`; the operator's exit ends it for both. Every
/// conference event reaches the status callback signed, in sequence.
#[tokio::test]
async fn a_conference_holds_the_caller_until_the_operator_presses_1_and_joins() {
    let sim = start_sim().await;
    let server = TestServer::start().await;
    let operator = "+15550007777";
    sim.set_warm_operator(
        operator,
        WarmOperator::Accept {
            talk: Duration::from_millis(50),
        },
    );
    let status = server.url("/conference");
    server.twiml(
        "/incoming-call",
        &format!(
            "<Response><Dial><Conference startConferenceOnEnter=\"false\" endConferenceOnExit=\"true\" \
             waitUrl=\"https://music.example/hold.mp3\" statusCallback=\"{status}\" \
             statusCallbackEvent=\"start end join leave\">room-1</Conference></Dial></Response>"
        ),
    );
    server.twiml(
        "/whisper",
        &format!(
            "<Response><Gather numDigits=\"1\" timeout=\"2\" action=\"{}\"><Say>A caller about a bill. Press 1</Say></Gather><Hangup/></Response>",
            server.url("/decision")
        ),
    );
    server.twiml(
        "/decision",
        "<Response><Dial><Conference startConferenceOnEnter=\"true\" endConferenceOnExit=\"true\">room-1</Conference></Dial></Response>",
    );
    let caller = sim
        .place_inbound_call(inbound(&server, CallerScript::default()))
        .expect("place");
    tokio::time::timeout(
        WAIT,
        sim.wait_for(&caller, |c| {
            c.has_event(|e| matches!(e, CallEvent::ConferenceJoined { .. }))
        }),
    )
    .await
    .expect("the caller waits");
    let (code, body) = post(
        &sim.calls_url(ACCOUNT),
        Some((ACCOUNT, TOKEN)),
        &form(&[
            ("To", operator),
            ("From", "+15550002222"),
            ("Url", &server.url("/whisper")),
        ]),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let leg = body["sid"].as_str().expect("sid").to_owned();
    let caller = ended(&sim, &caller).await;
    let leg = ended(&sim, &leg).await;
    assert!(caller.has_event(|e| matches!(
        e,
        CallEvent::ConferenceJoined { waiting: true, hold_audio: Some(a), .. } if a == "https://music.example/hold.mp3"
    )));
    assert!(caller.has_event(|e| matches!(e, CallEvent::ConferenceBridged { .. })));
    assert_eq!(leg.said, vec!["A caller about a bill. Press 1"]);
    assert!(leg.has_event(|e| matches!(e, CallEvent::Gathered { digits: Some(d) } if d == "1")));
    let decision = server.hits_to("/decision");
    assert_eq!(decision.len(), 1);
    assert_eq!(decision[0].param("Digits"), Some("1"));
    assert_eq!(decision[0].param("CallSid"), Some(leg.sid.as_str()));
    let rooms = sim.conferences();
    assert_eq!(rooms.len(), 1, "{rooms:?}");
    let room = &rooms[0];
    assert_eq!(room.participants, vec![caller.sid.clone(), leg.sid.clone()]);
    assert_eq!(
        room.end_reason.as_deref(),
        Some("participant-with-end-conference-on-exit-left")
    );
    let hits = server
        .wait_hits(|h| {
            h.iter().any(|h| {
                h.path == "/conference" && h.param("StatusCallbackEvent") == Some("conference-end")
            })
        })
        .await;
    let events: Vec<(String, Option<String>, u32)> = hits
        .iter()
        .filter(|h| h.path == "/conference")
        .map(|h| {
            assert_eq!(h.param("ConferenceSid"), Some(room.sid.as_str()));
            assert_eq!(h.param("FriendlyName"), Some("room-1"));
            assert_eq!(h.param("AccountSid"), Some(ACCOUNT));
            (
                h.param("StatusCallbackEvent")
                    .unwrap_or_default()
                    .to_owned(),
                h.param("CallSid").map(str::to_owned),
                h.param("SequenceNumber")
                    .and_then(|n| n.parse().ok())
                    .expect("SequenceNumber"),
            )
        })
        .collect();
    let mut sequence: Vec<u32> = events.iter().map(|e| e.2).collect();
    sequence.sort_unstable();
    assert_eq!(
        sequence,
        (0..u32::try_from(events.len()).expect("few")).collect::<Vec<_>>()
    );
    for (event, call) in [
        ("participant-join", Some(caller.sid.clone())),
        ("participant-join", Some(leg.sid.clone())),
        ("conference-start", None),
        ("participant-leave", Some(leg.sid.clone())),
        ("participant-leave", Some(caller.sid.clone())),
        ("conference-end", None),
    ] {
        assert!(
            events.iter().any(|e| e.0 == event && e.1 == call),
            "{event} {call:?} missing: {events:?}"
        );
    }
    server.assert_all_signed();
}
