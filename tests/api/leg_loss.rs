//! Twilio-leg loss (issue 12, item 3): a media socket the network drops without `stop` is
//! answered at `stream-ended` with a fresh stream whose new call actor resumes the
//! conversation from the stored transcript; a second loss within
//! `TWILIO_LEG_RESUME_SECONDS` of that resume ends the call, once.

use std::time::Duration;

use actors::active::ActiveEvent;
use serde_json::json;
use stateset_voice::sim::carrier::{
    CallerScript, CarrierConfig, CarrierSim, InboundCall, StreamCloser,
};
use tokio::sync::broadcast;

use crate::helpers::{Backend, backend_tests, spawn_app_with};

backend_tests!(a_dropped_media_socket_resumes_the_conversation_on_a_fresh_stream);

const WAIT: Duration = Duration::from_secs(30);
const NUMBER: &str = "+14155550100";

/// The next start (or end) of `call_sid`'s actor on the live-call feed.
async fn next(live: &mut broadcast::Receiver<ActiveEvent>, call_sid: &str, start: bool) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            match live.recv().await {
                Ok(ActiveEvent::Started(c)) if start && c.call_sid == call_sid => {
                    return c.call_id.as_str().to_owned();
                }
                Ok(ActiveEvent::Ended { call_id, .. }) if !start => {
                    return call_id.as_str().to_owned();
                }
                Ok(_) => continue,
                Err(e) => panic!("live-call feed: {e}"),
            }
        }
    })
    .await
    .expect("live-call feed event")
}

async fn a_dropped_media_socket_resumes_the_conversation_on_a_fresh_stream(backend: Backend) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let app = spawn_app_with(backend, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base);
        raw.set("TWILIO_LEG_RESUME_SECONDS", "30");
    })
    .await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    let mut live = app.state.actors.active.subscribe();
    let sid = sim
        .place_inbound_call(InboundCall {
            account_sid: t.account_sid.clone(),
            from: "+15550000001".into(),
            to: NUMBER.into(),
            voice_url: app.url("/api/v1/incoming-call"),
            status_callback: Some(app.url("/api/v1/call-status")),
            status_callback_events: vec![],
            script: CallerScript::default(),
        })
        .expect("place call");
    let call_id = next(&mut live, &sid, true).await;
    tokio::time::timeout(WAIT, sim.wait_for(&sid, |s| s.media.media_received > 0))
        .await
        .expect("the agent greets");
    tokio::time::timeout(
        WAIT,
        app.realtime
            .wait_for(|s| s.first().is_some_and(|s| s.responses_completed >= 1)),
    )
    .await
    .expect("the greeting is complete");

    // The network drops the socket: the caller stays on the line and gets a fresh stream.
    sim.reset_stream(&sid).expect("reset");
    assert_eq!(next(&mut live, &sid, false).await, call_id);
    assert_eq!(next(&mut live, &sid, true).await, call_id);
    let resumed = tokio::time::timeout(WAIT, sim.wait_for(&sid, |s| s.media.streams_opened == 2))
        .await
        .expect("a second stream");
    assert!(!resumed.status.is_final());
    // The new actor resumed the conversation: the model was given the earlier turns.
    let sessions = tokio::time::timeout(
        WAIT,
        app.realtime.wait_for(|s| {
            s.len() == 2
                && s[1]
                    .client_events
                    .iter()
                    .any(|e| e == "conversation.item.create")
        }),
    )
    .await;
    assert!(
        sessions.is_ok(),
        "the second AI session replays the conversation: {:?}",
        app.realtime
            .sessions()
            .iter()
            .map(|s| s
                .client_events
                .iter()
                .filter(|e| *e != "input_audio_buffer.append")
                .cloned()
                .collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    let log = app.call_log(&t.key, &call_id).await;
    assert!(log["completed_at"].is_null(), "not complete: {log}");
    assert!(app.completed_events(&call_id).await.is_empty());

    // Lost again within the interval: the call ends instead of looping.
    sim.reset_stream(&sid).expect("reset");
    let ended = tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("the call ends");
    assert_eq!(ended.media.streams_opened, 2);
    assert_eq!(ended.stream_closed_by(), Some(StreamCloser::Reset));
    let events = app.completed_events(&call_id).await;
    assert_eq!(events.len(), 1, "one voice.call.completed: {events:?}");
    let reason = events[0]["end_reason"].as_str().expect("reason");
    assert!(
        reason == "socket_error" || reason == "socket_closed",
        "{}",
        events[0]
    );
    assert_eq!(events[0]["session_ids"].as_array().map(Vec::len), Some(2));
    app.stop().await;
}
