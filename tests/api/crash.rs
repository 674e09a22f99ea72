//! The real binary killed with `kill -9` and restarted on the same database (issue 12,
//! item 1): live calls and a `make-call` whose carrier request was in flight are left
//! behind; the carrier ends them while nobody can be told. The restarted node (same
//! `NODE_ID`) reconciles what its earlier life left at once: every record is final with one
//! `voice.call.completed`, the lost sessions are failed `node_lost`, the tenant's concurrency
//! count is back to zero, and a retry with the same `Idempotency-Key` replays the real
//! outcome of the one carrier call that was placed.
//!
//! The server is another process here, so its records are awaited by asking its API (a
//! bounded number of times), the simulators' state by their snapshots.

use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CalleeBehaviour, CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle, InboundCall,
};
use stateset_voice::sim::realtime::{RealtimeSim, RealtimeSimConfig};
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};

use crate::helpers::{
    ADMIN_KEY, Backend, MASTER_KEY, REALTIME_KEY, Tele, backend_tests, completed_events_at,
    spawn_app_with,
};

backend_tests!(a_node_killed_with_live_calls_reconciles_them_when_it_restarts);

const WAIT: Duration = Duration::from_secs(30);
const NUMBER: &str = "+14155550100";
/// Callee of the placement whose carrier request was answered too late (its status
/// callbacks named the call before the node died).
const CALLEE: &str = "+15557654321";
/// Callee of the placement the carrier took only after the node died (no `CallSid` was
/// ever recorded: it is found by the request's parameters).
const LATE_CALLEE: &str = "+15557654322";

/// The binary, serving.
struct Node {
    child: Child,
    base: String,
}

impl Node {
    /// Starts `stateset-voice serve` with `env` and waits for its "ready" log line.
    async fn start(env: &[(&str, String)], port: u16) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stateset-voice"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start the binary");
        let stdout = child.stdout.take().expect("stdout");
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        // Reads the log to its end (a full pipe would block the server).
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let mut ready = Some(ready_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if std::env::var("TEST_LOG").is_ok() {
                    eprintln!("[node] {line}");
                }
                if line.contains("stateset-voice ready")
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        tokio::time::timeout(WAIT, ready_rx)
            .await
            .expect("the binary gets ready in time")
            .expect("the binary logs that it is ready");
        Node {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `kill -9`.
    async fn kill(mut self) {
        self.child.kill().await.expect("kill -9");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn call_in(node: &Node, sim: &CarrierSimHandle, t: &Tele, from: &str) -> String {
    sim.place_inbound_call(InboundCall {
        account_sid: t.account_sid.clone(),
        from: from.into(),
        to: NUMBER.into(),
        voice_url: node.url("/api/v1/incoming-call"),
        status_callback: Some(node.url("/api/v1/call-status")),
        status_callback_events: vec![],
        script: CallerScript::default(),
    })
    .expect("place call")
}

async fn make_call(
    client: &reqwest::Client,
    node: &Node,
    t: &Tele,
    key: &str,
    to: &str,
) -> reqwest::Response {
    client
        .request(Method::POST, node.url("/api/v1/make-call"))
        .bearer_auth(&t.key)
        .header("idempotency-key", key)
        .json(&json!({ "to": to }))
        .send()
        .await
        .expect("make-call")
}

async fn call_log(client: &reqwest::Client, node: &Node, t: &Tele, id: &str) -> Value {
    client
        .get(node.url(&format!("/api/v1/call-logs/{id}")))
        .bearer_auth(&t.key)
        .send()
        .await
        .expect("call log")
        .json()
        .await
        .expect("json")
}

/// The call's log once it is complete (asked up to 300 times, 50 ms apart).
async fn completed_log(client: &reqwest::Client, node: &Node, t: &Tele, id: &str) -> Value {
    for _ in 0..300 {
        let log = call_log(client, node, t, id).await;
        if !log["completed_at"].is_null() {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "call {id} never completed: {}",
        call_log(client, node, t, id).await
    );
}

async fn live_calls(database_url: &str, tenant: &str) -> i64 {
    use sqlx::Connection;
    const SQL: &str = "SELECT COUNT(*) FROM calls WHERE tenant_id = $1 AND ended_at IS NULL \
        AND status IN ('queued', 'initiated', 'ringing', 'in-progress')";
    if database_url.starts_with("sqlite:") {
        let mut db = sqlx::SqliteConnection::connect(database_url)
            .await
            .expect("sqlite");
        sqlx::query_scalar(SQL)
            .bind(tenant)
            .fetch_one(&mut db)
            .await
            .expect("count")
    } else {
        let mut db = sqlx::PgConnection::connect(database_url)
            .await
            .expect("postgres");
        sqlx::query_scalar(SQL)
            .bind(tenant)
            .fetch_one(&mut db)
            .await
            .expect("count")
    }
}

async fn a_node_killed_with_live_calls_reconciles_them_when_it_restarts(backend: Backend) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    sim.set_callee(CALLEE, CalleeBehaviour::Busy);
    let realtime = RealtimeSim::start(RealtimeSimConfig::with_api_key(REALTIME_KEY))
        .await
        .expect("realtime sim");
    // The tenant is set up in process, on the database the binary then serves.
    let setup = spawn_app_with(backend, |_| {}).await;
    let t = setup
        .telephony_tenant("Acme", NUMBER, json!({"max_concurrent_calls": 10}))
        .await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    let database_url = setup.database_url.clone();
    let _dir = setup.stop_keeping_database().await;

    let port = free_port();
    let env = [
        ("BIND_ADDR", format!("127.0.0.1:{port}")),
        ("DATABASE_URL", database_url.clone()),
        ("DATABASE_MAX_CONNECTIONS", "5".into()),
        ("MASTER_KEY", MASTER_KEY.into()),
        ("ADMIN_API_KEY", ADMIN_KEY.into()),
        ("OPENAI_REALTIME_URL", realtime.url()),
        ("OPENAI_API_KEY", REALTIME_KEY.into()),
        ("TWILIO_API_BASE_URL", sim.base_url()),
        ("NODE_ID", "crash-node".into()),
        ("NODE_HEARTBEAT_MS", "200".into()),
        ("NODE_STALE_AFTER_MS", "1000".into()),
        ("MAKE_CALL_WAIT_MS", "100".into()),
        ("CARRIER_LOOKUP_INTERVAL_MS", "100".into()),
        ("CARRIER_LOOKUP_GRACE_SECONDS", "10".into()),
        ("RATE_LIMIT_PER_IP_PER_MINUTE", "100000".into()),
        ("RATE_LIMIT_PER_TENANT_PER_MINUTE", "100000".into()),
        ("OUTBOUND_ALLOW_PRIVATE", "true".into()),
        ("LOG_LEVEL", "info".into()),
    ];
    let client = reqwest::Client::new();
    let node = Node::start(&env, port).await;

    // Three callers talking to the agent.
    let mut inbound = Vec::new();
    for from in ["+15550000001", "+15550000002", "+15550000003"] {
        let sid = call_in(&node, &sim, &t, from);
        tokio::time::timeout(WAIT, sim.wait_for(&sid, |s| s.media.media_received > 0))
            .await
            .expect("the agent speaks");
        inbound.push(sid);
    }
    // Two outbound calls whose carrier requests are in flight when the node dies. The
    // first the carrier takes at once (its status callbacks name it) but answers too late;
    // the second it takes only after the node is gone.
    sim.set_callee(LATE_CALLEE, CalleeBehaviour::Busy);
    sim.delay_next_request(Duration::from_secs(3));
    let late = make_call(&client, &node, &t, "crash-2", LATE_CALLEE).await;
    assert_eq!(late.status(), 202);
    let late_id = late.json::<Value>().await.expect("json")["call_id"]
        .as_str()
        .expect("call id")
        .to_owned();
    sim.set_create_response_delay(Duration::from_secs(5));
    let mut created = sim.subscribe_new_calls();
    let first = make_call(&client, &node, &t, "crash-1", CALLEE).await;
    assert_eq!(first.status(), 202);
    let pending: Value = first.json().await.expect("json");
    let outbound_id = pending["call_id"].as_str().expect("call id").to_owned();
    let outbound_sid = tokio::time::timeout(WAIT, created.recv())
        .await
        .expect("the carrier creates the call")
        .expect("new calls feed");
    tokio::time::timeout(
        WAIT,
        sim.wait_for(&outbound_sid, |s| s.status_callbacks.len() >= 2),
    )
    .await
    .expect("the node hears the call ring");

    node.kill().await;
    let late_sid = tokio::time::timeout(WAIT, created.recv())
        .await
        .expect("the carrier creates the late call")
        .expect("new calls feed");
    // The carrier ends every call with nobody left to tell.
    for sid in inbound.iter().chain([&outbound_sid, &late_sid]) {
        tokio::time::timeout(WAIT, sim.wait_ended(sid))
            .await
            .expect("the carrier ends the call");
    }
    assert_eq!(live_calls(&database_url, &t.tenant_id).await, 5);

    let node = Node::start(&env, port).await;
    // A retry with the same key replays the real outcome once it is known (409 before):
    // one carrier call per key, whether its SID was known or had to be looked up.
    for (key, to, id, sid) in [
        ("crash-1", CALLEE, &outbound_id, &outbound_sid),
        ("crash-2", LATE_CALLEE, &late_id, &late_sid),
    ] {
        let mut replayed = None;
        for _ in 0..300 {
            let retry = make_call(&client, &node, &t, key, to).await;
            match retry.status().as_u16() {
                201 => {
                    replayed = Some(retry.json::<Value>().await.expect("json"));
                    break;
                }
                409 => tokio::time::sleep(Duration::from_millis(50)).await,
                other => panic!("unexpected retry answer {other}"),
            }
        }
        let Some(replayed) = replayed else {
            panic!(
                "the retry replays the outcome: {}",
                call_log(&client, &node, &t, id).await
            );
        };
        assert_eq!(replayed["call_id"], id.as_str(), "{replayed}");
        assert_eq!(replayed["call_sid"], sid.as_str(), "{replayed}");
        assert_eq!(replayed["status"], "busy", "{replayed}");
        let placed = sim.calls().iter().filter(|c| c.to == to).count();
        assert_eq!(placed, 1, "one carrier call for one key");
        let log = completed_log(&client, &node, &t, id).await;
        assert_eq!(log["outcome"], "not_answered", "{log}");
        assert_eq!(log["end_reason"], "busy", "{log}");
        assert_eq!(log["placement"], "placed", "{log}");
        assert_eq!(completed_events_at(&database_url, id).await.len(), 1);
    }

    for sid in &inbound {
        let log = completed_log(&client, &node, &t, sid).await;
        let id = log["id"].as_str().expect("id").to_owned();
        assert_eq!(log["outcome"], "failed", "{log}");
        assert_eq!(log["end_reason"], "node_lost", "{log}");
        assert_eq!(log["status"], "completed", "{log}");
        let events = completed_events_at(&database_url, &id).await;
        assert_eq!(events.len(), 1, "one voice.call.completed: {events:?}");
        assert_eq!(events[0]["end_reason"], "node_lost");
        let sessions: Value = client
            .get(node.url("/api/v1/voice-sessions?limit=200"))
            .bearer_auth(&t.key)
            .send()
            .await
            .expect("sessions")
            .json()
            .await
            .expect("json");
        let of_call: Vec<&Value> = sessions["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter(|s| s["call_id"] == id.as_str())
            .collect();
        assert!(!of_call.is_empty(), "{sessions}");
        for s in of_call {
            assert_eq!(s["status"], "failed", "{s}");
            assert_eq!(s["end_reason"], "node_lost", "{s}");
        }
    }
    assert_eq!(live_calls(&database_url, &t.tenant_id).await, 0);
    node.kill().await;
}
