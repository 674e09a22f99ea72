//! The drain (issue 12, item 2): on shutdown the node serves carrier callbacks while its live
//! calls drain; at the end of the grace period every call still live is redirected through
//! the carrier's REST API (to the route's fallback when no other node is up, to a fresh
//! stream that resumes the conversation when one is), and the process exits with every
//! record final.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actors::active::ActiveEvent;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CallEvent, CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle, InboundCall, StreamCloser,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

use crate::helpers::{
    Backend, Tele, TestApp, backend_tests, completed_events_at, expect_error, logs, sid, spawn_app,
    spawn_app_with,
};

backend_tests!(
    a_call_live_at_the_end_of_the_grace_period_goes_to_the_fallback_before_exit,
    a_draining_node_hands_its_call_to_another_node_that_resumes_the_conversation,
    a_call_ending_during_the_grace_period_gets_its_late_final_status_before_exit,
    a_draining_node_with_a_peer_up_refuses_new_calls_and_streams_with_503,
    a_draining_node_alone_still_answers_new_calls_with_the_fallback,
);

/// Several nodes share one database only on PostgreSQL (SQLite is one node's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_ended_on_another_node_waits_for_the_leg_to_record_its_end() {
    if crate::helpers::postgres_available() {
        stream_ended_on_another_node_waits_for_the_leg(Backend::Postgres).await;
    }
}

const WAIT: Duration = Duration::from_secs(30);
const NUMBER: &str = "+14155550100";

/// A TCP forwarder standing in for the load balancer in front of the nodes: new
/// connections go to the node it currently sends to (as a balancer stops sending to a node
/// whose readiness answers 503).
struct Balancer {
    addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let target = Arc::new(Mutex::new(None::<SocketAddr>));
        let to = Arc::clone(&target);
        let connections = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Some(node) = *to.lock().expect("target") else {
                    continue;
                };
                let connection = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(node).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                open.lock()
                    .expect("connections")
                    .push(connection.abort_handle());
            }
        });
        Self {
            addr,
            target,
            connections,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn send_to(&self, app: &TestApp) {
        let node = app
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("node address");
        *self.target.lock().expect("target") = Some(node);
    }

    /// Drops every connection it forwards, without a close on either side (as the network
    /// between the balancer and a node may).
    fn cut_all(&self) {
        for connection in self.connections.lock().expect("connections").drain(..) {
            connection.abort();
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Places an inbound call whose caller stays on the line; waits until the agent greeted.
async fn live_call(
    sim: &CarrierSimHandle,
    t: &Tele,
    live: &mut broadcast::Receiver<ActiveEvent>,
    base: &str,
) -> (String, String) {
    let sid = sim
        .place_inbound_call(InboundCall {
            account_sid: t.account_sid.clone(),
            from: "+15550000001".into(),
            to: NUMBER.into(),
            voice_url: format!("{base}/api/v1/incoming-call"),
            status_callback: Some(format!("{base}/api/v1/call-status")),
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

/// Waits on a node's live-call feed for `call_sid` to start there.
async fn starts(live: &mut broadcast::Receiver<ActiveEvent>, call_sid: &str) {
    tokio::time::timeout(WAIT, async {
        loop {
            match live.recv().await {
                Ok(ActiveEvent::Started(c)) if c.call_sid == call_sid => return,
                Ok(_) => continue,
                Err(e) => panic!("live-call feed: {e}"),
            }
        }
    })
    .await
    .expect("the call goes live on the node");
}

/// Rows of `sql` (one bind: `call_id`) in the database at `url`, the process that wrote them
/// stopped.
async fn rows_at<T>(url: &str, sql: &'static str, call_id: &str) -> Vec<T>
where
    T: Send + Unpin,
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>,
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        sqlx::query_as(sql)
            .bind(call_id)
            .fetch_all(&mut conn)
            .await
            .expect("rows")
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("postgres");
        sqlx::query_as(sql)
            .bind(call_id)
            .fetch_all(&mut conn)
            .await
            .expect("rows")
    }
}

/// `(status, end_reason)` of every voice session of `call_id` in the database at `url`.
async fn sessions_at(url: &str, call_id: &str) -> Vec<(String, Option<String>)> {
    rows_at(
        url,
        "SELECT status, end_reason FROM voice_sessions WHERE call_id = $1",
        call_id,
    )
    .await
}

/// The carrier status recorded for `call_id` in the database at `url`.
async fn call_status_at(url: &str, call_id: &str) -> String {
    let rows: Vec<(String,)> =
        rows_at(url, "SELECT status FROM calls WHERE id = $1", call_id).await;
    rows.into_iter().next().expect("the call").0
}

async fn a_call_ending_during_the_grace_period_gets_its_late_final_status_before_exit(
    backend: Backend,
) {
    // The carrier's final status callback comes a second after the caller hangs up.
    let sim = CarrierSim::start(CarrierConfig {
        final_status_delay: Duration::from_secs(1),
        ..CarrierConfig::default()
    })
    .await
    .expect("carrier sim");
    let base = sim.base_url();
    let app = spawn_app_with(backend, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base);
        raw.set("SHUTDOWN_GRACE_SECONDS", "20");
    })
    .await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    let mut live = app.state.actors.active.subscribe();
    let (sid, call_id) = live_call(&sim, &t, &mut live, &app.base).await;

    let database_url = app.database_url.clone();
    let state = app.state.clone();
    let stopping = tokio::spawn(app.stop_keeping_database());
    tokio::time::timeout(WAIT, state.drained())
        .await
        .expect("shutdown starts");
    // The caller hangs up during the grace period: the last live call ends, and the node
    // keeps listening until the carrier's late final status has been recorded.
    sim.hangup(&sid).expect("hang up");
    let _dir = tokio::time::timeout(WAIT, stopping)
        .await
        .expect("the node stops")
        .expect("shutdown task");

    let ended = tokio::time::timeout(
        WAIT,
        sim.wait_for(&sid, |c| {
            c.status_callbacks
                .iter()
                .any(|c| c.call_status == "completed")
        }),
    )
    .await
    .expect("the carrier sends its final status");
    let delivered = ended
        .status_callbacks
        .iter()
        .find(|c| c.call_status == "completed")
        .map(|c| c.http_status);
    assert_eq!(delivered, Some(Some(204)), "{:?}", ended.status_callbacks);
    assert_eq!(call_status_at(&database_url, &call_id).await, "completed");
    let events: Vec<Value> = completed_events_at(&database_url, &call_id).await;
    assert_eq!(events.len(), 1, "one voice.call.completed: {events:?}");
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
    let (sid, call_id) = live_call(&sim, &t, &mut live, &app.base).await;

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

/// Two nodes on one database behind a [`Balancer`] that sends to the first, and a call live
/// on the first whose greeting is complete.
struct TwoNodes {
    sim: CarrierSimHandle,
    lb: Balancer,
    first: TestApp,
    second: TestApp,
    t: Tele,
    on_second: broadcast::Receiver<ActiveEvent>,
    sid: String,
    call_id: String,
}

async fn two_nodes_with_a_live_call(
    backend: Backend,
    setting: (&'static str, &'static str),
) -> TwoNodes {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let lb = Balancer::start().await;
    let settings = |raw: &mut stateset_voice::config::RawSettings| {
        raw.set("TWILIO_API_BASE_URL", sim.base_url());
        raw.set("PUBLIC_BASE_URL", lb.url());
        raw.set(setting.0, setting.1);
    };
    let first = spawn_app_with(backend, settings).await;
    let second = first.another_node(settings).await;
    lb.send_to(&first);
    let t = first.telephony_tenant("Acme", NUMBER, json!({})).await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    let mut on_first = first.state.actors.active.subscribe();
    let on_second = second.state.actors.active.subscribe();
    let (sid, call_id) = live_call(&sim, &t, &mut on_first, &lb.url()).await;
    tokio::time::timeout(
        WAIT,
        first
            .realtime
            .wait_for(|s| s.first().is_some_and(|s| s.responses_completed >= 1)),
    )
    .await
    .expect("the greeting is complete");
    TwoNodes {
        sim,
        lb,
        first,
        second,
        t,
        on_second,
        sid,
        call_id,
    }
}

async fn a_draining_node_hands_its_call_to_another_node_that_resumes_the_conversation(
    backend: Backend,
) {
    let TwoNodes {
        sim,
        lb,
        first,
        second,
        mut on_second,
        sid,
        call_id,
        ..
    } = two_nodes_with_a_live_call(backend, ("SHUTDOWN_GRACE_SECONDS", "1")).await;

    // The first node shuts down; the balancer sends new connections to the second. At the
    // end of the grace period the call is redirected to a fresh stream, which the second
    // node takes, resuming the conversation.
    lb.send_to(&second);
    let database_url = first.database_url.clone();
    let _first_dir = first.stop_keeping_database().await;
    starts(&mut on_second, &sid).await;
    let resumed = tokio::time::timeout(WAIT, sim.wait_for(&sid, |s| s.media.streams_opened == 2))
        .await
        .expect("a second stream");
    assert!(!resumed.status.is_final());
    assert!(
        resumed.events.iter().any(|e| matches!(
            e,
            CallEvent::StreamClosed {
                by: StreamCloser::Redirect,
                ..
            }
        )),
        "the first stream ended by the redirect: {:?}",
        resumed.events
    );
    let replayed = tokio::time::timeout(
        WAIT,
        second.realtime.wait_for(|s| {
            s.first().is_some_and(|s| {
                s.client_events
                    .iter()
                    .any(|e| e == "conversation.item.create")
            })
        }),
    )
    .await;
    assert!(replayed.is_ok(), "the second node replays the conversation");
    // The call goes on: nothing completed it; the first leg ended drained.
    assert!(
        completed_events_at(&database_url, &call_id)
            .await
            .is_empty()
    );
    let mut sessions = sessions_at(&database_url, &call_id).await;
    sessions.sort();
    assert_eq!(
        sessions,
        vec![
            ("active".to_owned(), None),
            ("completed".to_owned(), Some("drained".to_owned())),
        ]
    );

    // The second node drains too, with no node left: the caller goes to the fallback, and
    // the call completes once, with both legs.
    second.stop().await;
    tokio::time::timeout(
        WAIT,
        sim.wait_for(&sid, |c| {
            c.events
                .iter()
                .any(|e| matches!(e, CallEvent::Dialed { .. }))
        }),
    )
    .await
    .expect("the carrier dials the fallback");
    let events = completed_events_at(&database_url, &call_id).await;
    assert_eq!(events.len(), 1, "one voice.call.completed: {events:?}");
    assert_eq!(events[0]["outcome"], "fallback", "{}", events[0]);
    assert_eq!(events[0]["end_reason"], "drained", "{}", events[0]);
    assert_eq!(events[0]["session_ids"].as_array().map(Vec::len), Some(2));
}

/// Posts a signed `incoming-call` for a new call SID to `app`; returns (CallSid, response).
async fn incoming(app: &TestApp, t: &Tele) -> (String, reqwest::Response) {
    let call_sid = sid("CA");
    let resp = app
        .twilio_post(
            "/api/v1/incoming-call",
            &[
                ("AccountSid", &t.account_sid),
                ("CallSid", &call_sid),
                ("From", "+15550000001"),
                ("To", NUMBER),
                ("CallStatus", "ringing"),
                ("Direction", "inbound"),
                ("ApiVersion", "2010-04-01"),
            ],
            &t.auth_token,
        )
        .await;
    (call_sid, resp)
}

/// Calls recorded with `call_sid` in the database at `url`.
async fn calls_with_sid(url: &str, call_sid: &str) -> usize {
    let rows: Vec<(String,)> =
        rows_at(url, "SELECT id FROM calls WHERE call_sid = $1", call_sid).await;
    rows.len()
}

async fn a_draining_node_with_a_peer_up_refuses_new_calls_and_streams_with_503(backend: Backend) {
    let first = spawn_app(backend).await;
    let second = first.another_node(|_| {}).await;
    let t = first.telephony_tenant("Acme", NUMBER, json!({})).await;

    // Shutdown starts with a peer up: new work is refused before anything is done, so the
    // load balancer (retry-on 503) sends it to the peer.
    first.state.begin_drain().await;
    assert!(first.state.refuses_new_calls());
    let (call_sid, resp) = incoming(&first, &t).await;
    expect_error(resp, 503, "unavailable").await;
    assert_eq!(calls_with_sid(&first.database_url, &call_sid).await, 0);

    let url = first.url("/media-stream").replacen("http://", "ws://", 1);
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
        }
        Err(other) => panic!("unexpected upgrade error: {other}"),
        Ok(_) => panic!("a draining node upgraded a new media stream"),
    }

    // The peer takes the same call.
    let (call_sid, resp) = incoming(&second, &t).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(calls_with_sid(&first.database_url, &call_sid).await, 1);
    second.stop().await;
    first.stop().await;
}

async fn a_draining_node_alone_still_answers_new_calls_with_the_fallback(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;

    // No other node: a 503 would reach the caller, so the call is refused with the route's
    // fallback, as before.
    app.state.begin_drain().await;
    assert!(!app.state.refuses_new_calls());
    let (call_sid, resp) = incoming(&app, &t).await;
    assert_eq!(resp.status(), 200);
    let twiml = resp.text().await.expect("twiml");
    assert!(twiml.contains("+15550009999"), "{twiml}");
    assert_eq!(calls_with_sid(&app.database_url, &call_sid).await, 1);
    app.stop().await;
}

/// Behind a load balancer the carrier's `stream-ended` may reach another node than the one
/// whose leg just lost its socket, before that leg has recorded how it ended (here its
/// writes of voice sessions are held back by a table lock). The other node waits for the
/// record instead of reading a live session as a dead actor: the caller gets a fresh stream
/// and the conversation goes on.
async fn stream_ended_on_another_node_waits_for_the_leg(backend: Backend) {
    let TwoNodes {
        sim,
        lb,
        first: holder,
        second: other,
        t,
        on_second: mut on_other,
        sid,
        call_id,
    } = two_nodes_with_a_live_call(backend, ("TWILIO_LEG_RESUME_SECONDS", "30")).await;

    // The leg's records are held back; the network drops its connections (the media
    // socket among them); the carrier's `stream-ended` reaches the other node.
    let mut lock = {
        use sqlx::{Connection, Executor};
        let mut conn = sqlx::PgConnection::connect(&holder.database_url)
            .await
            .expect("postgres connection");
        conn.execute("BEGIN").await.expect("begin");
        conn.execute("LOCK TABLE voice_sessions IN EXCLUSIVE MODE")
            .await
            .expect("lock");
        conn
    };
    lb.send_to(&other);
    lb.cut_all();
    tokio::time::timeout(WAIT, async {
        loop {
            if logs()
                .contents()
                .lines()
                .any(|l| l.contains(&call_id) && l.contains("waiting for the leg on another node"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the other node waits for the leg's end");
    sqlx::Executor::execute(&mut lock, "ROLLBACK")
        .await
        .expect("unlock");

    // The record arrives: the other node answers with a fresh stream, which it takes.
    starts(&mut on_other, &sid).await;
    let resumed = tokio::time::timeout(WAIT, sim.wait_for(&sid, |s| s.media.streams_opened == 2))
        .await
        .expect("a second stream");
    assert!(!resumed.status.is_final());
    assert!(
        !resumed
            .events
            .iter()
            .any(|e| matches!(e, CallEvent::Dialed { .. })),
        "nobody sent the caller to the fallback: {:?}",
        resumed.events
    );
    assert!(holder.completed_events(&call_id).await.is_empty());
    let log = holder.call_log(&t.key, &call_id).await;
    assert!(log["completed_at"].is_null(), "the call goes on: {log}");
    other.stop().await;
    holder.stop().await;
}
