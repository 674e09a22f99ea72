//! The drain (issue 12, item 2): on shutdown the node serves carrier callbacks while its live
//! calls drain; at the end of the grace period every call still live is redirected through
//! the carrier's REST API (to the route's fallback when no other node is up, to a fresh
//! stream that resumes the conversation when one is), and the process exits with every
//! record final.

use std::time::Duration;

use actors::active::ActiveEvent;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CallEvent, CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle, InboundCall, StreamCloser,
};
use tokio::sync::broadcast;

use crate::helpers::{Backend, Tele, TestApp, backend_tests, completed_events_at, spawn_app_with};

backend_tests!(a_call_live_at_the_end_of_the_grace_period_goes_to_the_fallback_before_exit);

const WAIT: Duration = Duration::from_secs(30);
const NUMBER: &str = "+14155550100";

/// Places an inbound call whose caller stays on the line; waits until the agent greeted.
async fn live_call(
    app: &TestApp,
    sim: &CarrierSimHandle,
    t: &Tele,
    live: &mut broadcast::Receiver<ActiveEvent>,
) -> (String, String) {
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
    let call_id = tokio::time::timeout(WAIT, async {
        loop {
            match live.recv().await {
                Ok(ActiveEvent::Started(c)) if c.call_sid == sid => {
                    return c.call_id.as_str().to_owned();
                }
                Ok(_) => continue,
                Err(e) => panic!("live-call feed: {e}"),
            }
        }
    })
    .await
    .expect("the call goes live");
    tokio::time::timeout(WAIT, sim.wait_for(&sid, |s| s.media.media_received > 0))
        .await
        .expect("the agent greets");
    (sid, call_id)
}

/// `(status, end_reason)` of every voice session of `call_id` in the database at `url`.
async fn sessions_at(url: &str, call_id: &str) -> Vec<(String, Option<String>)> {
    use sqlx::Connection;
    const SQL: &str = "SELECT status, end_reason FROM voice_sessions WHERE call_id = $1";
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        sqlx::query_as(SQL)
            .bind(call_id)
            .fetch_all(&mut conn)
            .await
            .expect("sessions")
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("postgres");
        sqlx::query_as(SQL)
            .bind(call_id)
            .fetch_all(&mut conn)
            .await
            .expect("sessions")
    }
}

async fn a_call_live_at_the_end_of_the_grace_period_goes_to_the_fallback_before_exit(
    backend: Backend,
) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let app = spawn_app_with(backend, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base);
        raw.set("SHUTDOWN_GRACE_SECONDS", "1");
    })
    .await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    let mut live = app.state.actors.active.subscribe();
    let (sid, call_id) = live_call(&app, &sim, &t, &mut live).await;

    // Shutdown with the caller still talking: no other node is up, so at the end of the
    // grace period the carrier is told to take the caller to the route's fallback, and the
    // process exits cleanly once the record is final.
    let database_url = app.database_url.clone();
    let _dir = app.stop_keeping_database().await;

    let redirected = tokio::time::timeout(
        WAIT,
        sim.wait_for(&sid, |c| {
            c.events
                .iter()
                .any(|e| matches!(e, CallEvent::Dialed { .. }))
        }),
    )
    .await
    .expect("the carrier dials the fallback");
    assert_eq!(redirected.stream_closed_by(), Some(StreamCloser::Redirect));
    assert!(
        redirected
            .said
            .contains(&"Connecting you to our team.".to_owned()),
        "{:?}",
        redirected.said
    );
    let dialed = redirected.events.iter().find_map(|e| match e {
        CallEvent::Dialed { numbers, .. } => Some(numbers.clone()),
        _ => None,
    });
    assert_eq!(dialed, Some(vec!["+15550009999".to_owned()]));

    // Every record was final when the process exited.
    let events: Vec<Value> = completed_events_at(&database_url, &call_id).await;
    assert_eq!(events.len(), 1, "one voice.call.completed: {events:?}");
    assert_eq!(events[0]["outcome"], "fallback", "{}", events[0]);
    assert_eq!(events[0]["end_reason"], "drained", "{}", events[0]);
    assert_eq!(
        sessions_at(&database_url, &call_id).await,
        vec![("completed".to_owned(), Some("drained".to_owned()))]
    );
}
