//! Test fixtures of evaluations: stores, tenants, agent versions with a rubric, finished
//! voice sessions written through the store as the call runtime writes them, and a
//! loopback Chat Completions server standing in for the judge (its answers configurable:
//! verdicts per key, an HTTP error, invalid JSON, no answer at all).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::judge::{Answer, JudgeInput};
use super::rubric::Rubric;
use crate::ids::{CallId, SessionId, TenantId};
use crate::store::{
    CallDirection, CallRecord, FunctionCallStatus, NewFunctionCall, Store, TranscriptTurn,
    VoiceSession, on_pool,
};

/// The database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A fresh database on the server of `TEST_POSTGRES_URL`.
    Postgres,
}

/// A fresh test database (its folder removed on drop).
pub struct TestDb {
    /// Its URL.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl TestDb {
    /// A fresh database, or `None` for PostgreSQL without `TEST_POSTGRES_URL` (the test is
    /// skipped, saying so).
    pub async fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("dir");
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("test.db").display()),
            Backend::Postgres => {
                let Ok(base) = std::env::var("TEST_POSTGRES_URL") else {
                    eprintln!("skipped: TEST_POSTGRES_URL is not set");
                    return None;
                };
                let name = format!("sv_test_{}", uuid::Uuid::new_v4().simple());
                let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
                    .await
                    .expect("connect to TEST_POSTGRES_URL");
                sqlx::Executor::execute(
                    &mut admin,
                    sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
                )
                .await
                .expect("create the test database");
                let mut url = url::Url::parse(&base).expect("TEST_POSTGRES_URL is a URL");
                url.set_path(&format!("/{name}"));
                url.to_string()
            }
        };
        Some(Self { url, _dir: dir })
    }

    /// A pool of `connections` on it (migrated): call twice for two nodes.
    pub async fn store(&self, connections: u32) -> Store {
        let store = Store::connect(&self.url, connections).await.expect("store");
        store.migrate().await.expect("migrate");
        store
    }
}

/// Runs each listed `async fn name(backend: Backend)` of the module as a test on SQLite
/// (`sqlite::name`) and on PostgreSQL (`postgres::name`, skipped without
/// `TEST_POSTGRES_URL`).
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::evaluation::fixtures::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::evaluation::fixtures::Backend::Postgres).await;
                }
            )*
        }
    };
}
pub(crate) use backend_tests;

/// A migrated in-memory SQLite store (one connection).
pub async fn memory_store() -> Store {
    crate::store::fixtures::store().await
}

/// A new active tenant (limits high enough for throughput runs).
pub async fn tenant(store: &Store) -> TenantId {
    crate::store::fixtures::tenant_with_limit(store, 1000).await
}

/// An agent `key` with one version carrying `rubric` (if any); returns the version id.
pub async fn version(
    store: &Store,
    tenant: &TenantId,
    key: &str,
    rubric: Option<&Rubric>,
) -> String {
    let agent = crate::ids::AgentId::generate();
    let version = crate::ids::AgentVersionId::generate();
    on_pool!(store, pool => {
        sqlx::query("INSERT INTO agents (id, tenant_id, key, name, created_at, updated_at) VALUES ($1, $2, $3, $3, 0, 0)")
            .bind(agent.as_str())
            .bind(tenant.as_str())
            .bind(key)
            .execute(pool)
            .await
            .expect("agent");
        sqlx::query(
            "INSERT INTO agent_versions (id, agent_id, tenant_id, version, status, model, voice, instructions, \
             turn_detection, max_call_seconds, idle_timeout_seconds, created_at, rubric, rubric_hash) \
             VALUES ($1, $2, $3, 1, 'approved', 'm', 'v', 'i', '{}', 600, 30, 0, $4, $5)",
        )
        .bind(version.as_str())
        .bind(agent.as_str())
        .bind(tenant.as_str())
        .bind(rubric.map(Rubric::to_json))
        .bind(rubric.map(Rubric::hash))
        .execute(pool)
        .await
        .expect("version");
    });
    version.into_string()
}

/// A tool invocation of a scripted session.
pub struct ToolSpec {
    /// Name.
    pub name: &'static str,
    /// Arguments.
    pub arguments: Value,
    /// How it ended.
    pub status: FunctionCallStatus,
    /// Its result.
    pub result: Option<Value>,
}

/// A finished session to write.
pub struct SessionSpec {
    /// Agent key.
    pub agent_key: &'static str,
    /// Agent version.
    pub version: Option<String>,
    /// Turns: (`user` | `assistant`, text).
    pub turns: Vec<(&'static str, String)>,
    /// Tool invocations (written after the turns).
    pub tools: Vec<ToolSpec>,
    /// First audio (ms).
    pub first_audio_ms: Option<i64>,
    /// Start (Unix ms).
    pub started_at: i64,
    /// `Completed` or `Failed`.
    pub status: crate::store::SessionStatus,
    /// Why it ended.
    pub end_reason: crate::ending::EndReason,
}

impl SessionSpec {
    /// A completed conversation of `turns`.
    pub fn new(version: Option<String>, turns: &[(&'static str, &str)]) -> Self {
        Self {
            agent_key: "support",
            version,
            turns: turns.iter().map(|(r, t)| (*r, (*t).to_owned())).collect(),
            tools: Vec::new(),
            first_audio_ms: Some(700),
            started_at: crate::time::now_ms() - 60_000,
            status: crate::store::SessionStatus::Completed,
            end_reason: crate::ending::EndReason::CallerHangup,
        }
    }
}

/// Writes a call and a finished voice session as the call runtime does.
pub async fn finished_session(
    store: &Store,
    tenant: &TenantId,
    spec: &SessionSpec,
) -> (CallId, SessionId) {
    let call = CallRecord {
        id: CallId::generate(),
        tenant_id: tenant.clone(),
        call_sid: Some(format!("CA{}", uuid::Uuid::new_v4().simple())),
        account_sid: None,
        route_id: None,
        direction: CallDirection::Inbound,
        from_number: "+15550001111".into(),
        to_number: "+15550002222".into(),
        status: "in-progress".into(),
        status_sequence: None,
        agent_key: Some(spec.agent_key.into()),
        agent_version_id: spec.version.clone(),
        end_reason: None,
        answered_by: None,
        duration_seconds: None,
        metadata: None,
        stream_sid: None,
        stream_status: None,
        after_stream: None,
        greeting: None,
        org_id: None,
        machine_detection: None,
        amd_action: None,
        amd_timeout_seconds: None,
        machine_outcome: None,
        error_code: None,
        error_message: None,
        identity_state: None,
        recording_policy: crate::recording::RecordingPolicy::Off,
        escalated_to: None,
        end_detail: None,
        outcome: None,
        completed_at: None,
        placement: None,
        node_id: None,
        node_started_at: None,
        created_at: spec.started_at,
        updated_at: spec.started_at,
        started_at: None,
        ended_at: None,
    };
    store.admit_call(&call, 1000, None, 0).await.expect("admit");
    let session = VoiceSession {
        id: SessionId::generate(),
        tenant_id: tenant.clone(),
        call_id: call.id.clone(),
        agent_key: Some(spec.agent_key.into()),
        agent_version_id: spec.version.clone(),
        model: "gpt-realtime".into(),
        voice: "marin".into(),
        stream_sid: None,
        status: "active".into(),
        end_reason: None,
        first_audio_ms: None,
        input_tokens: 0,
        output_tokens: 0,
        total_tokens: 0,
        reconnects: 0,
        summary: None,
        tags: Vec::new(),
        started_at: spec.started_at,
        ended_at: None,
        end_detail: None,
    };
    store.insert_session(&session).await.expect("session");
    if let Some(ms) = spec.first_audio_ms {
        store
            .set_session_first_audio(&session.id, ms)
            .await
            .expect("first audio");
    }
    for (i, (role, text)) in spec.turns.iter().enumerate() {
        let at = i64::try_from(i).expect("turn") * 2_000 + 1_000;
        store
            .add_turn(
                &session.id,
                &TranscriptTurn {
                    id: 0,
                    role: (*role).to_owned(),
                    item_id: None,
                    text: text.clone(),
                    start_ms: None,
                    end_ms: Some(at),
                    interrupted: false,
                    heard_text: None,
                    created_at: spec.started_at + at,
                },
            )
            .await
            .expect("turn");
    }
    for (i, tool) in spec.tools.iter().enumerate() {
        let model_call_id = format!("call_{i}");
        let arguments = tool.arguments.to_string();
        let id = format!("fc_{}", uuid::Uuid::new_v4().simple());
        let started_at = spec.started_at + 500 + i64::try_from(i).expect("tool") * 100;
        let recorded = store
            .start_function_call(&NewFunctionCall {
                id: &id,
                started_at,
                tenant_id: tenant,
                call_id: &call.id,
                session_id: &session.id,
                model_call_id: &model_call_id,
                name: tool.name,
                kind: "webhook",
                arguments: &arguments,
            })
            .await
            .expect("function call");
        assert!(recorded, "a new invocation");
        let result = tool.result.as_ref().map(Value::to_string);
        let settled = crate::store::SettledCall {
            status: tool.status,
            result,
            error: None,
            latency_ms: 40,
        };
        store
            .finish_function_call(&id, &settled)
            .await
            .expect("finish function call");
    }
    store
        .finish_session(&session.id, spec.status, spec.end_reason, None)
        .await
        .expect("finish");
    (call.id, session.id)
}

/// Counts `voice.session.evaluated` events of a tenant.
pub async fn evaluated_events(store: &Store, tenant: &TenantId) -> Vec<Value> {
    let payloads: Vec<String> = on_pool!(store, pool => {
        sqlx::query_scalar("SELECT payload FROM webhook_events WHERE tenant_id = $1 AND event = 'voice.session.evaluated' ORDER BY created_at")
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await
            .expect("events")
    });
    payloads
        .iter()
        .map(|p| serde_json::from_str(p).expect("json"))
        .collect()
}

// === FakeJudge ===

/// How the fake judge answers.
#[derive(Debug, Clone, PartialEq)]
pub enum JudgeMode {
    /// A valid answer: "yes"/5 for every criterion unless overridden by key.
    Answer(HashMap<String, (Answer, u8)>),
    /// This HTTP status with an OpenAI-style error body.
    Status(u16),
    /// A 200 whose content is not JSON.
    InvalidJson,
    /// Never answers (the connection stays open).
    Hang,
}

impl JudgeMode {
    /// Yes to everything.
    pub fn yes() -> Self {
        JudgeMode::Answer(HashMap::new())
    }
}

/// A loopback Chat Completions endpoint.
pub struct FakeJudge {
    /// Its base URL (`http://127.0.0.1:PORT/v1`).
    pub base_url: String,
    mode: Arc<Mutex<JudgeMode>>,
    requests: watch::Sender<usize>,
    bodies: Arc<Mutex<Vec<String>>>,
    server: tokio::task::AbortHandle,
}

impl Drop for FakeJudge {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn answer(mode: &JudgeMode, body: &str) -> (u16, String) {
    match mode {
        JudgeMode::Status(status) => (
            *status,
            json!({"error": {"message": "simulated failure", "type": "server_error"}}).to_string(),
        ),
        JudgeMode::InvalidJson => (
            200,
            json!({"model": "fake", "choices": [{"message": {"role": "assistant", "content": "{not json"}}]})
                .to_string(),
        ),
        JudgeMode::Hang => (0, String::new()),
        JudgeMode::Answer(verdicts) => {
            let request: Value = serde_json::from_str(body).expect("request json");
            let content = request
                .pointer("/messages/1/content")
                .and_then(Value::as_str)
                .expect("user message");
            let input: JudgeInput = serde_json::from_str(content).expect("judge input");
            let judgments: Vec<Value> = input
                .criteria
                .iter()
                .map(|c| {
                    let (verdict, score) = verdicts
                        .get(&c.key)
                        .copied()
                        .unwrap_or((Answer::Yes, 5));
                    json!({
                        "key": c.key,
                        "verdict": verdict,
                        "score": score,
                        "evidence_turns": [0, 999],
                        "rationale": format!("fake judgment of {}", c.key),
                    })
                })
                .collect();
            let content = json!({
                "summary": format!("A call of {} turns.", input.turn_count),
                "tags": ["Order Status", "order status", "test"],
                "judgments": judgments,
            })
            .to_string();
            (
                200,
                json!({
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": "fake-judge-1",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 321, "completion_tokens": 45, "total_tokens": 366}
                })
                .to_string(),
            )
        }
    }
}

impl FakeJudge {
    /// Starts the server answering in `mode`.
    pub async fn start(mode: JudgeMode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mode = Arc::new(Mutex::new(mode));
        let (requests, _) = watch::channel(0_usize);
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (m, r, b) = (Arc::clone(&mode), requests.clone(), Arc::clone(&bodies));
        let server = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (m, r, b) = (Arc::clone(&m), r.clone(), Arc::clone(&b));
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0_u8; 8192];
                    let (head_end, length) = loop {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                    };
                    while buffer.len() < head_end + length {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                    }
                    let body = String::from_utf8_lossy(&buffer[head_end..]).into_owned();
                    let mode = m.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    b.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(body.clone());
                    r.send_modify(|n| *n += 1);
                    let (status, reply) = answer(&mode, &body);
                    if status == 0 {
                        std::future::pending::<()>().await;
                    }
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                        reply.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        })
        .abort_handle();
        Self {
            base_url: format!("http://{addr}/v1"),
            mode,
            requests,
            bodies,
            server,
        }
    }

    /// Changes how it answers from now on.
    pub fn set_mode(&self, mode: JudgeMode) {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        *self.requests.borrow()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        let mut rx = self.requests.subscribe();
        let _ = rx.wait_for(|seen| *seen >= n).await;
    }

    /// The request bodies received, in order.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
