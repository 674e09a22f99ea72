//! `spawn_app()`: the real application on `127.0.0.1:0` against a fresh database (a SQLite
//! file in a temporary folder, or a new PostgreSQL database), with logs captured so tests
//! can assert that no secret is ever logged. Also the shared pieces of the call tests: a raw
//! Twilio media-socket client, voice-session lookup and `/metrics` scraping.

use std::sync::OnceLock;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use stateset_voice::config::{Config, LogFormat, RawSettings};
use stateset_voice::http::AppState;
use stateset_voice::sim::realtime::{RealtimeSim, RealtimeSimConfig};
use stateset_voice::startup::Application;
use stateset_voice::telemetry::{self, CapturedLogs};
use stateset_voice::twilio::twiml::{self, ConnectNoun, Verb};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef";
pub const REALTIME_KEY: &str = "sk-sim-test";
pub const MASTER_KEY: &str = "test-master-key-0123456789abcdef0123456789";

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Expands each listed `async fn name(backend: Backend)` into one test per backend.
/// The PostgreSQL variant needs `TEST_POSTGRES_URL`; without it, it fails under CI and is
/// reported as skipped elsewhere.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::helpers::postgres_available() {
                        super::$name($crate::helpers::Backend::Postgres).await
                    }
                }
            )*
        }
    };
}
pub(crate) use backend_tests;

/// Whether PostgreSQL tests can run; panics under CI when they cannot.
pub fn postgres_available() -> bool {
    if std::env::var("TEST_POSTGRES_URL").is_ok_and(|v| !v.is_empty()) {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "TEST_POSTGRES_URL is not set: PostgreSQL tests must run in CI"
    );
    eprintln!("skipping the PostgreSQL variant: TEST_POSTGRES_URL is not set");
    false
}

/// Captured logs of the whole test process.
pub fn logs() -> &'static CapturedLogs {
    static LOGS: OnceLock<CapturedLogs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = CapturedLogs::new(std::env::var("TEST_LOG").is_ok());
        telemetry::init_logging_with(
            LogFormat::Text,
            "info,stateset_voice=debug,actors=debug",
            logs.clone(),
        );
        logs
    })
}

pub struct TestApp {
    pub base: String,
    /// The realtime model simulator this app talks to.
    pub realtime: stateset_voice::sim::realtime::RealtimeSimHandle,
    pub client: reqwest::Client,
    pub state: AppState,
    /// The app's database.
    pub database_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// A fresh PostgreSQL database on the server of `TEST_POSTGRES_URL`.
pub async fn fresh_postgres() -> String {
    let base = std::env::var("TEST_POSTGRES_URL").expect("TEST_POSTGRES_URL");
    let name = format!("sv_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
        .await
        .expect("connect to TEST_POSTGRES_URL");
    sqlx::Executor::execute(
        &mut admin,
        sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
    )
    .await
    .expect("create test database");
    let mut url = url::Url::parse(&base).expect("TEST_POSTGRES_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// Spawns the app with default test settings.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Spawns the app, letting the test adjust settings first.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut RawSettings)) -> TestApp {
    spawn_app_with_realtime(
        backend,
        RealtimeSimConfig::with_api_key(REALTIME_KEY),
        adjust,
    )
    .await
}

/// Spawns the app against a realtime simulator started with `realtime` (its keys always
/// include [`REALTIME_KEY`], the key the app is given), letting the test adjust settings.
pub async fn spawn_app_with_realtime(
    backend: Backend,
    realtime: RealtimeSimConfig,
    adjust: impl FnOnce(&mut RawSettings),
) -> TestApp {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("test.db").display()),
        Backend::Postgres => fresh_postgres().await,
    };
    start_app(database_url, dir, realtime, adjust).await
}

/// Starts the app on `database_url` (whose files, if any, live in `dir`).
async fn start_app(
    database_url: String,
    dir: tempfile::TempDir,
    mut realtime: RealtimeSimConfig,
    adjust: impl FnOnce(&mut RawSettings),
) -> TestApp {
    if !realtime.api_keys.iter().any(|k| k == REALTIME_KEY) {
        realtime.api_keys.push(REALTIME_KEY.to_owned());
    }
    let realtime = RealtimeSim::start(realtime)
        .await
        .expect("realtime simulator");
    let mut raw = RawSettings::default();
    raw.set("OPENAI_REALTIME_URL", realtime.url());
    raw.set("OPENAI_API_KEY", REALTIME_KEY);
    raw.set("CHAOS_HOOKS", "true");
    raw.set("BIND_ADDR", "127.0.0.1:0");
    raw.set("DATABASE_URL", database_url.clone());
    raw.set("DATABASE_MAX_CONNECTIONS", "5");
    raw.set("ADMIN_API_KEY", ADMIN_KEY);
    raw.set("MASTER_KEY", MASTER_KEY);
    raw.set("RATE_LIMIT_PER_IP_PER_MINUTE", "100000");
    raw.set("RATE_LIMIT_PER_TENANT_PER_MINUTE", "100000");
    raw.set("SHUTDOWN_GRACE_SECONDS", "5");
    // Tests' webhook receivers listen on loopback; SSRF tests turn this off explicitly.
    raw.set("OUTBOUND_ALLOW_PRIVATE", "true");
    raw.set("EVENT_WEBHOOK_BACKOFF_MS", "20");
    // The realtime simulator is also the LLM judge of evaluations.
    raw.set("JUDGE_BASE_URL", realtime.judge_base_url());
    raw.set("EVALUATION_BACKOFF_MS", "20");
    adjust(&mut raw);
    let config = Config::parse(&raw).expect("valid test configuration");
    let app = Application::build(config)
        .await
        .expect("application builds");
    let base = format!("http://{}", app.local_addr());
    let state = app.state();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    TestApp {
        base,
        realtime,
        client: reqwest::Client::new(),
        state,
        database_url,
        shutdown: Some(tx),
        server: Some(server),
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// An admin request.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("x-admin-key", ADMIN_KEY)
    }

    /// A tenant-key request.
    pub fn tenant(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
    ) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(key)
    }

    /// Creates a tenant and returns its JSON.
    pub async fn create_tenant(&self, name: &str) -> Value {
        let resp = self
            .admin(reqwest::Method::POST, "/api/v1/admin/tenants")
            .json(&json!({ "name": name }))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 201, "create tenant");
        resp.json().await.expect("json")
    }

    /// Creates a key for `tenant_id` with `scopes`; returns (key JSON, secret).
    pub async fn create_key(&self, tenant_id: &str, scopes: &[&str]) -> (Value, String) {
        let resp = self
            .admin(
                reqwest::Method::POST,
                &format!("/api/v1/admin/tenants/{tenant_id}/api-keys"),
            )
            .json(&json!({ "name": "test key", "scopes": scopes }))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 201, "create key");
        let body: Value = resp.json().await.expect("json");
        let secret = body["secret"].as_str().expect("secret").to_owned();
        (body, secret)
    }

    /// A tenant with one key of every scope: (tenant id, secret).
    pub async fn tenant_with_key(&self, name: &str) -> (String, String) {
        let tenant = self.create_tenant(name).await;
        let id = tenant["id"].as_str().expect("id").to_owned();
        let (_, secret) = self.create_key(&id, &["runtime", "read", "operator"]).await;
        (id, secret)
    }

    /// Number of audit rows.
    pub async fn audit_total(&self) -> i64 {
        let body: Value = self
            .admin(reqwest::Method::GET, "/api/v1/admin/audit-log")
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        body["total"].as_i64().expect("total")
    }

    /// Stops this app and starts a new one on the same database (same master key), with
    /// the default test settings adjusted by `adjust`.
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut RawSettings)) -> TestApp {
        self.shut_down().await;
        let TestApp {
            database_url, _dir, ..
        } = self;
        start_app(
            database_url,
            _dir,
            RealtimeSimConfig::with_api_key(REALTIME_KEY),
            adjust,
        )
        .await
    }

    /// Starts a second node on this app's database (another application process as far as
    /// the database can tell), with the default test settings adjusted by `adjust`.
    pub async fn another_node(&self, adjust: impl FnOnce(&mut RawSettings)) -> TestApp {
        start_app(
            self.database_url.clone(),
            tempfile::tempdir().expect("tempdir"),
            RealtimeSimConfig::with_api_key(REALTIME_KEY),
            adjust,
        )
        .await
    }

    async fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("clean shutdown");
        }
    }

    /// Waits until this node's cluster-view entries (routing diagnostics, auth-transport
    /// failures) recorded so far are in the database.
    pub async fn flush_views(&self) {
        self.state.actors.telephony.views().flush().await;
    }

    /// This node's id.
    pub fn node_id(&self) -> String {
        self.state.nodes.instance().id.to_string()
    }

    /// Stops the server and waits for the shutdown protocol to finish.
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    /// Stops the server and hands over the folder of its database, so that another process
    /// can run on the same database.
    pub async fn stop_keeping_database(mut self) -> tempfile::TempDir {
        self.shut_down().await;
        let TestApp { _dir, .. } = self;
        _dir
    }
}

/// Asserts the error shape and returns the error object.
pub async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "status");
    let request_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("x-request-id header");
    let body: Value = resp.json().await.expect("error body is JSON");
    let err = body["error"].clone();
    assert_eq!(err["code"], code, "error code in {body}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message in {body}"
    );
    assert_eq!(
        err["request_id"],
        request_id.as_str(),
        "request id in body matches header"
    );
    err
}

/// A random Twilio-shaped SID (`AC…`, `CA…`).
pub fn sid(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// A tenant wired for telephony: Twilio credentials, a phone route, a key.
#[derive(Debug, Clone)]
pub struct Tele {
    pub tenant_id: String,
    pub key: String,
    pub account_sid: String,
    pub auth_token: String,
    pub route_id: String,
}

impl TestApp {
    /// Gives the tenant's `support` agent a new approved version with `extra` fields.
    pub async fn approve_version(&self, t: &Tele, extra: Value) -> String {
        let agents: Value = self
            .admin(
                reqwest::Method::GET,
                &format!("/api/v1/admin/agents?tenant_id={}", t.tenant_id),
            )
            .send()
            .await
            .expect("agents")
            .json()
            .await
            .expect("json");
        let agent = agents["data"][0]["id"].as_str().expect("agent").to_owned();
        let mut body = json!({
            "instructions": "You are a helpful phone agent.",
            "greeting": "Hello, thanks for calling.",
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let resp = self
            .admin(
                reqwest::Method::POST,
                &format!("/api/v1/admin/agents/{agent}/versions"),
            )
            .json(&body)
            .send()
            .await
            .expect("version");
        assert_eq!(
            resp.status(),
            201,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        let version: Value = resp.json().await.expect("json");
        let id = version["id"].as_str().expect("id").to_owned();
        let resp = self
            .admin(
                reqwest::Method::POST,
                &format!("/api/v1/admin/agent-versions/{id}/approve"),
            )
            .send()
            .await
            .expect("approve");
        assert_eq!(resp.status(), 200);
        id
    }

    /// Creates agent `key` for a tenant with one approved version; returns (agent id, version id).
    pub async fn approved_agent(&self, tenant_id: &str, key: &str) -> (String, String) {
        let resp = self
            .admin(reqwest::Method::POST, "/api/v1/admin/agents")
            .json(&json!({"tenant_id": tenant_id, "key": key, "name": format!("{key} agent")}))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 201, "create agent");
        let agent: Value = resp.json().await.expect("json");
        let agent_id = agent["id"].as_str().expect("id").to_owned();
        let resp = self
            .admin(
                reqwest::Method::POST,
                &format!("/api/v1/admin/agents/{agent_id}/versions"),
            )
            .json(&json!({
                "instructions": "You are a helpful phone agent.",
                "greeting": "Hello, thanks for calling.",
                "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
            }))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 201, "create version");
        let version: Value = resp.json().await.expect("json");
        let version_id = version["id"].as_str().expect("id").to_owned();
        let resp = self
            .admin(
                reqwest::Method::POST,
                &format!("/api/v1/admin/agent-versions/{version_id}/approve"),
            )
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "approve");
        (agent_id, version_id)
    }

    /// Creates a tenant with Twilio credentials, a key, an approved agent `support` and a
    /// route for `number`; `route`
    /// fields override the route defaults (live through the audited readiness override,
    /// both directions, fallback +15550009999).
    pub async fn telephony_tenant(&self, name: &str, number: &str, route: Value) -> Tele {
        let (tenant_id, key) = self.tenant_with_key(name).await;
        self.approved_agent(&tenant_id, "support").await;
        let account_sid = sid("AC");
        let auth_token = format!("tok{}", uuid::Uuid::new_v4().simple());
        let resp = self
            .admin(
                reqwest::Method::PUT,
                &format!("/api/v1/admin/tenants/{tenant_id}/twilio-credentials"),
            )
            .json(&json!({"account_sid": account_sid, "auth_token": auth_token}))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "twilio credentials");
        let mut body = json!({
            "tenant_id": tenant_id,
            "number": number,
            "agent_key": "support",
            "direction": "both",
            "status": "live",
            "fallback_number": "+15550009999",
            "fallback_message": "Connecting you to our team.",
        });
        if let (Some(b), Some(extra)) = (body.as_object_mut(), route.as_object()) {
            for (k, v) in extra {
                b.insert(k.clone(), v.clone());
            }
            // A fixture's route goes live through the audited override: the tests using it
            // are about calls, not about the launch (tests/api/readiness.rs is).
            if b.get("status") == Some(&json!("live")) {
                b.entry("live_override_reason")
                    .or_insert_with(|| json!("test fixture: telephony_tenant"));
            }
        }
        let resp = self
            .admin(reqwest::Method::POST, "/api/v1/admin/phone-routes")
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 201, "phone route");
        let route: Value = resp.json().await.expect("json");
        Tele {
            tenant_id,
            key,
            account_sid,
            auth_token,
            route_id: route["id"].as_str().expect("id").to_owned(),
        }
    }

    /// POSTs a form signed like Twilio does, over this app's public URL + `path_and_query`.
    pub async fn twilio_post(
        &self,
        path_and_query: &str,
        params: &[(&str, &str)],
        auth_token: &str,
    ) -> reqwest::Response {
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let url = self.url(path_and_query);
        let signature =
            stateset_voice::twilio::signature::compute_signature(auth_token, &url, &owned);
        self.client
            .post(&url)
            .header("x-twilio-signature", signature)
            .form(&owned)
            .send()
            .await
            .expect("request")
    }

    /// Places a signed inbound call and returns (CallSid, TwiML).
    pub async fn inbound(&self, t: &Tele, from: &str, to: &str) -> (String, String) {
        let call_sid = sid("CA");
        let resp = self
            .twilio_post(
                "/api/v1/incoming-call",
                &[
                    ("AccountSid", &t.account_sid),
                    ("CallSid", &call_sid),
                    ("From", from),
                    ("To", to),
                    ("CallStatus", "ringing"),
                    ("Direction", "inbound"),
                    ("ApiVersion", "2010-04-01"),
                ],
                &t.auth_token,
            )
            .await;
        assert_eq!(resp.status(), 200, "incoming-call");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/xml")
        );
        (call_sid, resp.text().await.expect("twiml"))
    }

    /// A call log (by id or sid) as the tenant sees it.
    pub async fn call_log(&self, key: &str, id: &str) -> Value {
        let resp = self
            .tenant(
                reqwest::Method::GET,
                &format!("/api/v1/call-logs/{id}"),
                key,
            )
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "call log {id}");
        resp.json().await.expect("json")
    }
}

/// The `<Stream>` of a Connect TwiML document, and what follows it.
pub fn connect_of(xml: &str) -> (twiml::Connect, Vec<Verb>) {
    let doc = twiml::Response::parse(xml).expect("twiml");
    let mut verbs = doc.verbs.into_iter();
    let Some(Verb::Connect(c)) = verbs.next() else {
        panic!("first verb is not Connect: {xml}")
    };
    (c, verbs.collect())
}

/// The `<Stream>` noun of a `<Connect>`.
pub fn stream_of(c: &twiml::Connect) -> twiml::Stream {
    let ConnectNoun::Stream(s) = c.nouns.first().expect("stream").clone();
    s
}

/// The stream token `<Parameter>` of a Connect TwiML document.
pub fn token_of(xml: &str) -> String {
    let (c, _) = connect_of(xml);
    stream_of(&c)
        .parameter_pairs()
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
        .expect("token parameter")
}

/// A raw Twilio media-stream client socket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/media-stream` as Twilio would, with an optional upgrade signature.
pub async fn open_media(app: &TestApp, signature: Option<&str>) -> Ws {
    let url = app.url("/media-stream").replacen("http://", "ws://", 1);
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .expect("request");
    if let Some(sig) = signature {
        request
            .headers_mut()
            .insert("x-twilio-signature", sig.parse().expect("header"));
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    ws
}

/// Sends `connected` and `start` (stream `MZ0001`) with the token as custom parameter.
pub async fn send_start(ws: &mut Ws, account_sid: &str, call_sid: &str, token: Option<&str>) {
    let params = token.map_or_else(|| json!({}), |t| json!({"token": t}));
    ws.send(Message::text(
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string(),
    ))
    .await
    .expect("send");
    ws.send(Message::text(
        json!({"event": "start", "sequenceNumber": "1", "streamSid": "MZ0001",
               "start": {"accountSid": account_sid, "streamSid": "MZ0001", "callSid": call_sid,
                         "tracks": ["inbound"], "customParameters": params,
                         "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
        .to_string(),
    ))
    .await
    .expect("send");
}

/// Reads until the server's close frame; returns (code, reason).
pub async fn close_frame(ws: &mut Ws) -> (u16, String) {
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Close(Some(frame))) => {
                return (frame.code.into(), frame.reason.to_string());
            }
            Ok(Message::Close(None)) => return (1005, String::new()),
            Ok(_) => continue,
            Err(e) => panic!("socket error before close frame: {e}"),
        }
    }
    panic!("socket ended without a close frame")
}

impl TestApp {
    /// The voice session (with its transcript) of the call with this SID.
    pub async fn voice_session_of(&self, key: &str, call_sid: &str) -> Value {
        let log = self.call_log(key, call_sid).await;
        let call_id = log["id"].as_str().expect("id").to_owned();
        let list: Value = self
            .tenant(
                reqwest::Method::GET,
                "/api/v1/voice-sessions?limit=200",
                key,
            )
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        let id = list["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|s| s["call_id"] == call_id.as_str())
            .and_then(|s| s["id"].as_str())
            .unwrap_or_else(|| panic!("a voice session for call {call_sid}: {list}"))
            .to_owned();
        let resp = self
            .tenant(
                reqwest::Method::GET,
                &format!("/api/v1/voice-sessions/{id}"),
                key,
            )
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200, "voice session {id}");
        resp.json().await.expect("json")
    }

    /// The `/metrics` exposition text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

/// The sum of every sample of metric `name` whose labels include all of `labels` (0 when
/// there is none). The recorder is process-global, so tests compare before and after.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let has = |k: &str, v: &str| {
                label_text
                    .split(',')
                    .any(|pair| pair == format!("{k}=\"{v}\""))
            };
            labels
                .iter()
                .all(|(k, v)| has(k, v))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// A transaction of the test's own that stalls every write to the app's database (reads go
/// on) until [`release`](DbWriteLock::release)d: the app's actors block on their next write.
pub enum DbWriteLock {
    /// `BEGIN EXCLUSIVE` (in WAL mode, other writers wait; readers do not).
    Sqlite(sqlx::SqliteConnection),
    /// `LOCK TABLE … IN EXCLUSIVE MODE` on the tables of calls and stream tokens.
    Postgres(sqlx::PgConnection),
}

impl TestApp {
    /// Stalls writes to the app's database until the lock is released.
    pub async fn lock_db_writes(&self) -> DbWriteLock {
        use sqlx::{Connection, Executor};
        if self.database_url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.database_url)
                .await
                .expect("sqlite connection");
            conn.execute("BEGIN EXCLUSIVE").await.expect("lock");
            DbWriteLock::Sqlite(conn)
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.database_url)
                .await
                .expect("postgres connection");
            conn.execute("BEGIN").await.expect("begin");
            conn.execute("LOCK TABLE calls, stream_token_nonces IN EXCLUSIVE MODE")
                .await
                .expect("lock");
            DbWriteLock::Postgres(conn)
        }
    }
}

impl DbWriteLock {
    /// Lets the stalled writes through.
    pub async fn release(self) {
        use sqlx::Executor;
        match self {
            DbWriteLock::Sqlite(mut conn) => {
                conn.execute("ROLLBACK").await.expect("unlock");
            }
            DbWriteLock::Postgres(mut conn) => {
                conn.execute("ROLLBACK").await.expect("unlock");
            }
        }
    }
}

/// A listener nobody may connect to: after the fact, a sentinel connection must be the
/// first one it accepted (accepts are FIFO), which proves nobody else came.
pub struct Tripwire {
    pub port: u16,
    accepted: tokio::sync::mpsc::UnboundedReceiver<std::net::SocketAddr>,
}

impl Tripwire {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, accepted) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((_stream, peer)) = listener.accept().await {
                let _ = tx.send(peer);
            }
        });
        Self { port, accepted }
    }

    pub async fn assert_untouched(&mut self) {
        let sentinel = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("sentinel");
        let first = tokio::time::timeout(std::time::Duration::from_secs(30), self.accepted.recv())
            .await
            .expect("sentinel accepted")
            .expect("listener running");
        assert_eq!(
            first,
            sentinel.local_addr().expect("addr"),
            "a connection reached the tripwire"
        );
    }
}

impl TestApp {
    /// The `data` of every `voice.call.completed` event written for `call_id` (read from the
    /// event outbox, whether or not the tenant has an event webhook).
    pub async fn completed_events(&self, call_id: &str) -> Vec<Value> {
        completed_events_at(&self.database_url, call_id).await
    }
}

/// The `data` of every `voice.call.completed` event written for `call_id` in the database
/// at `database_url`.
pub async fn completed_events_at(database_url: &str, call_id: &str) -> Vec<Value> {
    use sqlx::Connection;
    const SQL: &str = "SELECT payload FROM webhook_events WHERE event = 'voice.call.completed'";
    let payloads: Vec<String> = if database_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(database_url)
            .await
            .expect("sqlite connection");
        sqlx::query_scalar(SQL)
            .fetch_all(&mut conn)
            .await
            .expect("events")
    } else {
        let mut conn = sqlx::PgConnection::connect(database_url)
            .await
            .expect("postgres connection");
        sqlx::query_scalar(SQL)
            .fetch_all(&mut conn)
            .await
            .expect("events")
    };
    payloads
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .map(|e| e["data"].clone())
        .filter(|d| d["call_id"] == call_id)
        .collect()
}
