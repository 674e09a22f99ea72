//! The cluster-wide live-call registry (issue 14 §1, §2), two nodes in process on one
//! database: a call live on node B is listed, shown and streamed by node A with B's node id
//! (on PostgreSQL through `LISTEN/NOTIFY`); a client resuming with `Last-Event-ID` gets
//! exactly the events it missed; a lost node's rows end `node_lost` by the reconciler;
//! other tenants see none of it; the admin nodes view counts each node's live calls, and
//! the rollout view counts another node's live call of a version.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle, InboundCall,
};
use stateset_voice::sim::realtime::{RealtimeScript, ScriptTurn};

use crate::helpers::{Backend, Tele, TestApp, backend_tests, spawn_app_with};
use crate::sse::{Event, Sse};

backend_tests!(
    a_call_on_another_node_is_listed_shown_and_streamed,
    a_lost_nodes_live_calls_end_with_the_reconciler,
);

const WAIT: Duration = Duration::from_secs(30);
const NUMBER: &str = "+14155550100";
const OTHER_NUMBER: &str = "+14155550199";

fn call_in(app: &TestApp, sim: &CarrierSimHandle, t: &Tele, from: &str, to: &str) -> String {
    sim.place_inbound_call(InboundCall {
        account_sid: t.account_sid.clone(),
        from: from.into(),
        to: to.into(),
        voice_url: app.url("/api/v1/incoming-call"),
        status_callback: Some(app.url("/api/v1/call-status")),
        status_callback_events: vec![],
        script: CallerScript::default()
            .silence(Duration::from_millis(1500))
            .speak(Duration::from_millis(600), "Where is my order?")
            .silence(Duration::from_secs(60)),
    })
    .expect("place call")
}

/// The tenant's live-call stream, from `last_event_id` if given.
async fn open(app: &TestApp, key: &str, last_event_id: Option<&str>) -> Sse {
    let mut req = app.tenant(Method::GET, "/api/v1/active-sessions/stream", key);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    Sse::new(req.send().await.expect("sse"))
}

async fn get(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

/// How often a node's feed reads without being woken: on PostgreSQL never within a test,
/// so another node's changes can only arrive through `NOTIFY`; SQLite has no `NOTIFY`.
fn feed_poll(backend: Backend) -> &'static str {
    if matches!(backend, Backend::Postgres) {
        "3600000"
    } else {
        "200"
    }
}

async fn two_nodes(backend: Backend, sim: &CarrierSimHandle) -> (TestApp, TestApp) {
    let base = sim.base_url();
    let a = spawn_app_with(backend, {
        let base = base.clone();
        move |raw| {
            raw.set("TWILIO_API_BASE_URL", base);
            raw.set("NODE_ID", "node-a");
            raw.set("LIVE_FEED_POLL_MS", feed_poll(backend));
        }
    })
    .await;
    let b = a
        .another_node(move |raw| {
            raw.set("TWILIO_API_BASE_URL", base);
            raw.set("NODE_ID", "node-b");
            raw.set("LIVE_FEED_POLL_MS", feed_poll(backend));
        })
        .await;
    (a, b)
}

async fn a_call_on_another_node_is_listed_shown_and_streamed(backend: Backend) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let (a, b) = two_nodes(backend, &sim).await;
    let t = a.telephony_tenant("Acme", NUMBER, json!({})).await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    let other = a.telephony_tenant("Other", OTHER_NUMBER, json!({})).await;
    sim.add_account(other.account_sid.clone(), other.auth_token.clone());

    b.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::say(
            "Where is my order?",
            "It ships today.",
        )]));
    // Clients on node A, before the call exists; the call goes to node B.
    let mut mine = open(&a, &t.key, None).await;
    let mut theirs = open(&a, &other.key, None).await;
    let mut on_b = b.state.actors.active.subscribe();
    let sid = call_in(&b, &sim, &t, "+15551230070", NUMBER);
    let went_live = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(actors::active::ActiveEvent::Started(c)) = on_b.recv().await
                && c.call_sid == sid
            {
                return Instant::now();
            }
        }
    })
    .await
    .expect("the call goes live on node B");

    let first = mine
        .until(WAIT, |e| {
            e.name == "started" && e.data["call_sid"] == sid.as_str()
        })
        .await;
    eprintln!(
        "{backend:?}: node B's call start reached node A's stream {} ms after it went live",
        went_live.elapsed().as_millis()
    );
    let start = first.last().expect("started").clone();
    assert_eq!(start.data["node_id"], "node-b", "{:?}", start);
    assert_eq!(start.data["tenant_id"], t.tenant_id.as_str());
    let call_id = start.data["call_id"].as_str().expect("call id").to_owned();
    let start_id = start.id.clone().expect("every event has an id");

    // Mid-call (the caller's question is the last line): node A lists and shows it.
    let updates = mine
        .until(WAIT, |e| {
            e.name == "updated"
                && e.data["last_transcript"]
                    == json!({"role": "user", "text": "Where is my order?"})
        })
        .await;
    let (status, listed) = get(a.tenant(Method::GET, "/api/v1/active-sessions", &t.key)).await;
    assert_eq!(status, 200);
    let listed = listed["data"].as_array().expect("data").clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["call_id"], call_id.as_str());
    assert_eq!(listed[0]["node_id"], "node-b");
    // A client connecting now gets the call in its snapshot (the snapshot's last event
    // carries its id), with the changes after it.
    let mut late = open(&a, &t.key, None).await;
    let snapshot = late.next().await;
    assert_eq!(snapshot.name, "started");
    assert_eq!(snapshot.data["call_id"], call_id.as_str());
    assert_eq!(snapshot.data["node_id"], "node-b");
    let snapshot_id: i64 = snapshot
        .id
        .as_deref()
        .expect("the snapshot's id")
        .parse()
        .expect("numeric");
    let detail_path = format!("/api/v1/active-sessions/calls/{call_id}");
    let (status, detail) = get(a.tenant(Method::GET, &detail_path, &t.key)).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["call_sid"], sid.as_str());
    assert_eq!(detail["node_id"], "node-b");
    assert!(detail["last_transcript"]["text"].is_string(), "{detail}");
    // Another tenant neither lists nor finds it; the admin lists it.
    let (_, foreign) = get(a.tenant(Method::GET, "/api/v1/active-sessions", &other.key)).await;
    assert_eq!(foreign["data"], json!([]), "{foreign}");
    let (status, missing) = get(a.tenant(Method::GET, &detail_path, &other.key)).await;
    assert_eq!(status, 404, "{missing}");
    let (status, _) = get(a.tenant(
        Method::GET,
        "/api/v1/active-sessions/calls/call_unknown",
        &t.key,
    ))
    .await;
    assert_eq!(status, 404);
    let (_, all) = get(a.admin(Method::GET, "/api/v1/admin/active-sessions")).await;
    assert!(
        all["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|c| c["call_id"] == call_id.as_str() && c["node_id"] == "node-b"),
        "{all}"
    );
    let (status, nodes) = get(a.admin(Method::GET, "/api/v1/admin/nodes")).await;
    assert_eq!(status, 200, "{nodes}");
    let nodes = nodes["data"].as_array().expect("data").clone();
    let count = |id: &str| {
        nodes
            .iter()
            .find(|n| n["id"] == id)
            .map(|n| n["live_calls"].clone())
    };
    assert_eq!(count("node-a"), Some(json!(0)), "{nodes:?}");
    assert_eq!(count("node-b"), Some(json!(1)), "{nodes:?}");
    // The rollout view on node A counts node B's live call of the agent's version.
    let (status, governance) = get(a.admin(
        Method::GET,
        &format!("/api/v1/admin/rollout-governance?tenant_id={}", t.tenant_id),
    ))
    .await;
    assert_eq!(status, 200, "{governance}");
    let support = governance["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|g| g["agent_key"] == "support")
        .unwrap_or_else(|| panic!("{governance}"))
        .clone();
    let live: i64 = support["live_calls"]
        .as_array()
        .expect("live calls")
        .iter()
        .map(|v| v["calls"].as_i64().expect("calls"))
        .sum();
    assert_eq!(live, 1, "{support}");

    // The caller hangs up on node B: node A's client sees the end.
    sim.hangup(&sid).expect("hang up");
    let rest = mine
        .until(WAIT, |e| {
            e.name == "ended" && e.data["call_id"] == call_id.as_str()
        })
        .await;
    assert_eq!(rest.last().expect("ended").data["reason"], "ended");
    let after_snapshot = late
        .until(WAIT, |e| {
            e.name == "ended" && e.data["call_id"] == call_id.as_str()
        })
        .await;
    assert!(
        after_snapshot
            .iter()
            .all(|e| e.id.as_deref().and_then(|id| id.parse::<i64>().ok()) > Some(snapshot_id)),
        "{after_snapshot:?}"
    );
    let (_, listed) = get(a.tenant(Method::GET, "/api/v1/active-sessions", &t.key)).await;
    assert_eq!(listed["data"], json!([]), "{listed}");
    let (status, _) = get(a.tenant(Method::GET, &detail_path, &t.key)).await;
    assert_eq!(status, 404);

    // Everything after `started`, in order, ids increasing.
    let missed: Vec<Event> = first
        .iter()
        .skip_while(|e| e.id.as_deref() != Some(start_id.as_str()))
        .skip(1)
        .chain(updates.iter())
        .chain(rest.iter())
        .cloned()
        .collect();
    assert!(missed.iter().any(|e| e.name == "updated"), "{missed:?}");
    let ids: Vec<i64> = missed
        .iter()
        .map(|e| e.id.as_deref().expect("id").parse().expect("numeric id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // A client resuming after `started` (on either node) gets exactly those events.
    for node in [&a, &b] {
        let mut resumed = open(node, &t.key, Some(&start_id)).await;
        let got = resumed
            .until(WAIT, |e| {
                e.name == "ended" && e.data["call_id"] == call_id.as_str()
            })
            .await;
        assert_eq!(got, missed);
    }
    // An id that was never given out: a fresh snapshot (nothing live, so the other
    // tenant's next call is the first event); a malformed one: 400 naming the header.
    let mut fresh = open(&a, &t.key, Some("999999999")).await;
    let resp = a
        .tenant(Method::GET, "/api/v1/active-sessions/stream", &t.key)
        .header("Last-Event-ID", "abc")
        .send()
        .await
        .expect("sse");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["field"], "Last-Event-ID", "{body}");

    // The other tenant's stream: its own call's events are the first it sees.
    let other_sid = call_in(&b, &sim, &other, "+15551230071", OTHER_NUMBER);
    let seen = theirs
        .until(WAIT, |e| {
            e.name == "started" && e.data["call_sid"] == other_sid.as_str()
        })
        .await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    sim.hangup(&other_sid).expect("hang up");
    let seen = theirs.until(WAIT, |e| e.name == "ended").await;
    assert!(
        seen.iter()
            .all(|e| e.data["call_id"] != call_id.as_str() && e.data["call_sid"] != sid.as_str()),
        "{seen:?}"
    );
    // The first tenant's fresh client saw none of it: its next event is its own.
    let next_sid = call_in(&b, &sim, &t, "+15551230072", NUMBER);
    let seen = fresh.until(WAIT, |e| e.name == "started").await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].data["call_sid"], next_sid.as_str());
    sim.hangup(&next_sid).expect("hang up");
    fresh.until(WAIT, |e| e.name == "ended").await;
    b.stop().await;
    a.stop().await;
}

async fn a_lost_nodes_live_calls_end_with_the_reconciler(backend: Backend) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    // Node A beats once, at start: to anyone else it goes stale and stays so.
    let a = spawn_app_with(backend, {
        let base = base.clone();
        move |raw| {
            raw.set("TWILIO_API_BASE_URL", base);
            raw.set("NODE_ID", "node-a");
            raw.set("LIVE_FEED_POLL_MS", feed_poll(backend));
            raw.set("NODE_HEARTBEAT_MS", "3600000");
            raw.set("NODE_STALE_AFTER_MS", "7200000");
        }
    })
    .await;
    let t = a.telephony_tenant("Acme", NUMBER, json!({})).await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    let mut stream = open(&a, &t.key, None).await;
    let sid = call_in(&a, &sim, &t, "+15550000001", NUMBER);
    let started = stream
        .until(WAIT, |e| {
            e.name == "started" && e.data["call_sid"] == sid.as_str()
        })
        .await;
    let call_id = started.last().expect("started").data["call_id"]
        .as_str()
        .expect("id")
        .to_owned();

    // Node B sees A's heartbeat stale and, holding the lease, reconciles A's call: its
    // live row ends `node_lost`, seen by a client of either node.
    let b = a
        .another_node(move |raw| {
            raw.set("TWILIO_API_BASE_URL", base);
            raw.set("NODE_ID", "node-b");
            raw.set("LIVE_FEED_POLL_MS", feed_poll(backend));
            raw.set("NODE_HEARTBEAT_MS", "50");
            raw.set("NODE_STALE_AFTER_MS", "200");
        })
        .await;
    let start_id = started.last().and_then(|e| e.id.clone()).expect("id");
    let mut on_b = open(&b, &t.key, Some(&start_id)).await;
    for s in [&mut stream, &mut on_b] {
        let ended = s
            .until(WAIT, |e| {
                e.name == "ended" && e.data["call_id"] == call_id.as_str()
            })
            .await;
        assert_eq!(ended.last().expect("ended").data["reason"], "node_lost");
    }
    let (_, listed) = get(b.tenant(Method::GET, "/api/v1/active-sessions", &t.key)).await;
    assert_eq!(listed["data"], json!([]), "{listed}");
    let mut reports = b.state.nodes.reports();
    tokio::time::timeout(WAIT, reports.wait_for(|r| r.completed >= 1))
        .await
        .expect("reconciled in time")
        .expect("reconciler running");
    tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("the call ends");
    b.stop().await;
    a.stop().await;
}

/// PostgreSQL only: a node whose `LISTEN` connection is cut listens again on a new one and
/// reads every event written in between (its feed does not poll within the test). The
/// change follows the cut at once; whether its event is written before or after the new
/// `LISTEN` (the test cannot hold the reconnection back), it arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_whose_listener_lost_its_connection_misses_nothing() {
    if !crate::helpers::postgres_available() {
        return;
    }
    let backend = Backend::Postgres;
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let (a, b) = two_nodes(backend, &sim).await;
    let (tenant, key) = a.tenant_with_key("Acme").await;
    let tenant = actors::ids::TenantId::parse(&tenant).expect("tenant id");
    let mut stream = open(&a, &key, None).await;
    let live = |n: u32| actors::active::ActiveCall {
        call_id: actors::ids::CallId::generate(),
        call_sid: format!("CA{n:032}"),
        stream_sid: None,
        tenant_id: tenant.clone(),
        direction: "inbound",
        from: "+15550000001".into(),
        to: NUMBER.into(),
        agent_key: None,
        agent_version_id: None,
        started_at: actors::time::now_ms(),
        phase: actors::active::CallPhase::Greeting,
        last_line: None,
        first_audio_ms: None,
        last_response_ms: None,
    };
    let registry = &b.state.actors.active;
    for n in 0..3 {
        // Cut every `LISTEN` connection of both nodes, then change a call on node B at once.
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&a.database_url)
            .await
            .expect("connect");
        let cut: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'",
        )
        .fetch_all(&mut admin)
        .await
        .expect("terminate listeners");
        assert!(!cut.is_empty(), "the nodes listen");
        let call = live(n);
        registry.insert(call.clone());
        let seen = stream
            .until(WAIT, |e| {
                e.name == "started" && e.data["call_sid"] == call.call_sid.as_str()
            })
            .await;
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].data["node_id"], "node-b");
        registry.remove(&call.call_id, "ended");
        stream
            .until(WAIT, |e| {
                e.name == "ended" && e.data["call_id"] == call.call_id.as_str()
            })
            .await;
    }
    b.stop().await;
    a.stop().await;
}
