//! The reference cluster as real processes: a fresh PostgreSQL database, three
//! `stateset-voice serve` processes (the debug binary of this build) behind HAProxy with the
//! configuration `scripts/haproxy.sh` ships, and the carrier and realtime simulators
//! in-process. Every node has the same `PUBLIC_BASE_URL` (the balancer's) and secrets.
//! Also the provisioning of a telephony tenant through the balancer, signed webhooks, raw
//! media sockets, and reads of the shared database. Outside processes are polled with a
//! deadline ([`eventually`]); nothing sleeps for a fixed time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};
use stateset_voice::sim::carrier::{
    CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle, InboundCall,
};
use stateset_voice::sim::realtime::{RealtimeSim, RealtimeSimConfig, RealtimeSimHandle};
use stateset_voice::twilio::twiml::{self, ConnectNoun, Verb};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

pub const ADMIN_KEY: &str = "cluster-admin-key-0123456789abcdef";
const MASTER_KEY: &str = "cluster-master-key-0123456789abcdef0123456789";
const STREAM_TOKEN_SECRET: &str = "cluster-stream-secret-0123456789abcdef0123";
const REALTIME_KEY: &str = "sk-cluster-test";
/// How long anything an outside process does may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// The prerequisites: PostgreSQL (`TEST_POSTGRES_URL`) and `haproxy` on PATH. Missing
/// either fails the test with what to do (`scripts/test` provides both).
fn prerequisites() -> String {
    let url = std::env::var("TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.is_empty());
    let haproxy = std::process::Command::new("haproxy")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut missing = Vec::new();
    if url.is_none() {
        missing.push("PostgreSQL (TEST_POSTGRES_URL is not set)");
    }
    if !haproxy {
        missing.push("HAProxy (`haproxy` is not on PATH)");
    }
    assert!(
        missing.is_empty(),
        "the cluster tests need {}: run scripts/test, which starts PostgreSQL and installs \
         HAProxy (or export TEST_POSTGRES_URL and install haproxy){}",
        missing.join(" and "),
        if std::env::var("CI").is_ok() {
            " — CI must provide both"
        } else {
            ""
        }
    );
    url.unwrap_or_default()
}

/// A free loopback port (bound, then released for a process to bind).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One `stateset-voice serve` process.
pub struct Node {
    /// `NODE_ID`.
    pub id: String,
    /// Its own address (not the balancer's).
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Node {
    /// `http://` + its own address.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `kill -9`.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("the killed node is reaped");
    }

    /// Sends SIGTERM (the drain starts).
    pub fn terminate(&self) {
        let pid = self.child.id().expect("the node is running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Waits for the process to exit; its exit code.
    pub async fn exited(&mut self, within: Duration) -> Option<i32> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the node exits in time")
            .expect("wait")
            .code()
    }
}

/// A telephony tenant provisioned through the balancer.
pub struct Tenant {
    pub id: String,
    pub account_sid: String,
    pub auth_token: String,
    pub number: String,
}

/// The running cluster; dropping it kills every process (the database is dropped by
/// [`Cluster::stop`], and otherwise by `scripts/test`'s sweep of `sv_test_*`).
pub struct Cluster {
    /// The balancer: `http://127.0.0.1:PORT`, every node's `PUBLIC_BASE_URL`.
    pub public: String,
    pub nodes: Vec<Node>,
    pub carrier: CarrierSimHandle,
    /// The model every node talks to (kept running).
    _realtime: RealtimeSimHandle,
    pub client: reqwest::Client,
    /// The cluster's database.
    pub db: PgPool,
    server_url: String,
    db_name: String,
    haproxy: Child,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes behind HAProxy on a fresh database; `extra` settings go to every node.
    pub async fn start(n: usize, extra: &[(&str, &str)]) -> Cluster {
        let server_url = prerequisites();
        let dir = tempfile::tempdir().expect("tempdir");
        let (database_url, db_name) = fresh_database(&server_url).await;
        let carrier = CarrierSim::start(CarrierConfig::default())
            .await
            .expect("carrier simulator");
        let realtime = RealtimeSim::start(RealtimeSimConfig::with_api_key(REALTIME_KEY))
            .await
            .expect("realtime simulator");
        let public_addr = format!("127.0.0.1:{}", free_port());
        let public = format!("http://{public_addr}");

        let mut nodes = Vec::new();
        for i in 1..=n {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
                .parse()
                .expect("address");
            let id = format!("node{i}");
            let log = dir.path().join(format!("{id}.log"));
            let out = std::fs::File::create(&log).expect("node log");
            let err = out.try_clone().expect("node log");
            let mut command = Command::new(env!("CARGO_BIN_EXE_stateset-voice"));
            command
                .arg("serve")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("DATABASE_URL", &database_url)
                .env("DATABASE_MAX_CONNECTIONS", "5")
                .env("BIND_ADDR", addr.to_string())
                .env("PUBLIC_BASE_URL", &public)
                .env("NODE_ID", &id)
                .env("ADMIN_API_KEY", ADMIN_KEY)
                .env("MASTER_KEY", MASTER_KEY)
                .env("STREAM_TOKEN_SECRET", STREAM_TOKEN_SECRET)
                .env("OPENAI_REALTIME_URL", realtime.url())
                .env("OPENAI_API_KEY", REALTIME_KEY)
                .env("TWILIO_API_BASE_URL", carrier.base_url())
                .env("CLIENT_IP_HEADER", "x-forwarded-for")
                .env("RATE_LIMIT_PER_IP_PER_MINUTE", "1000000")
                .env("RATE_LIMIT_PER_TENANT_PER_MINUTE", "1000000")
                .env("RATE_LIMIT_WEBHOOKS_PER_TENANT_PER_MINUTE", "1000000")
                .env("OUTBOUND_ALLOW_PRIVATE", "true")
                .env("NODE_HEARTBEAT_MS", "500")
                .env("NODE_STALE_AFTER_MS", "3000")
                .env("SHUTDOWN_GRACE_SECONDS", "1")
                .env("LOG_LEVEL", "warn")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .kill_on_drop(true);
            for (k, v) in extra {
                command.env(k, v);
            }
            let child = command.spawn().expect("spawn a node");
            nodes.push(Node {
                id,
                addr,
                child,
                log,
            });
        }

        let client = reqwest::Client::new();
        for node in &mut nodes {
            let ready = node.url("/health/ready");
            let deadline = Instant::now() + WAIT;
            loop {
                if let Ok(Some(status)) = node.child.try_wait() {
                    panic!(
                        "{} exited ({status}); its log:\n{}",
                        node.id,
                        tail(&node.log)
                    );
                }
                if client
                    .get(&ready)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not become ready; its log:\n{}",
                    node.id,
                    tail(&node.log)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        let addrs: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
        let config = haproxy_config(&public_addr, &addrs);
        let config_path = dir.path().join("haproxy.cfg");
        std::fs::write(&config_path, config).expect("haproxy.cfg");
        let haproxy_log = std::fs::File::create(dir.path().join("haproxy.log")).expect("log");
        let haproxy_err = haproxy_log.try_clone().expect("log");
        let haproxy = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(haproxy_log)
            .stderr(haproxy_err)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn haproxy");
        let ready = format!("{public}/health/ready");
        eventually(WAIT, || async {
            match client.get(&ready).send().await {
                Ok(r) if r.status() == 200 => Some(()),
                _ => None,
            }
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "HAProxy does not answer; its log:\n{}",
                tail(&dir.path().join("haproxy.log"))
            )
        });

        let db = PgPoolOptions::new()
            .max_connections(4)
            .connect(&database_url)
            .await
            .expect("the cluster's database");
        Cluster {
            public,
            nodes,
            carrier,
            _realtime: realtime,
            client,
            db,
            server_url,
            db_name,
            haproxy,
            dir,
        }
    }

    /// The node with `id`.
    pub fn node(&mut self, id: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("a node of the cluster")
    }

    /// An admin request through the balancer.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.public))
            .header("x-admin-key", ADMIN_KEY)
    }

    async fn admin_json(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let resp = self
            .admin(method, path)
            .json(&body)
            .send()
            .await
            .expect("admin request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).expect("json")
    }

    /// A tenant with Twilio credentials (known to the carrier simulator), an approved agent
    /// `support` and a live route for `number`; at most `limit` concurrent calls.
    pub async fn tenant(&self, number: &str, limit: i64) -> Tenant {
        let tenant = self
            .admin_json(
                reqwest::Method::POST,
                "/api/v1/admin/tenants",
                json!({"name": format!("Tenant {number}"), "max_concurrent_calls": limit}),
            )
            .await;
        let id = tenant["id"].as_str().expect("tenant id").to_owned();
        let agent = self
            .admin_json(
                reqwest::Method::POST,
                "/api/v1/admin/agents",
                json!({"tenant_id": id, "key": "support", "name": "Support"}),
            )
            .await;
        let agent_id = agent["id"].as_str().expect("agent id");
        let version = self
            .admin_json(
                reqwest::Method::POST,
                &format!("/api/v1/admin/agents/{agent_id}/versions"),
                json!({
                    "instructions": "You are a helpful phone agent.",
                    "greeting": "Hello, thanks for calling.",
                    "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
                }),
            )
            .await;
        let version_id = version["id"].as_str().expect("version id");
        self.admin_json(
            reqwest::Method::POST,
            &format!("/api/v1/admin/agent-versions/{version_id}/approve"),
            json!({}),
        )
        .await;
        let account_sid = format!("AC{}", uuid::Uuid::new_v4().simple());
        let auth_token = format!("tok{}", uuid::Uuid::new_v4().simple());
        self.admin_json(
            reqwest::Method::PUT,
            &format!("/api/v1/admin/tenants/{id}/twilio-credentials"),
            json!({"account_sid": account_sid, "auth_token": auth_token}),
        )
        .await;
        self.admin_json(
            reqwest::Method::POST,
            "/api/v1/admin/phone-routes",
            json!({
                "tenant_id": id,
                "number": number,
                "agent_key": "support",
                "direction": "both",
                "status": "live",
                "live_override_reason": "cluster test fixture",
                "max_concurrent_calls": 100,
                "fallback_number": "+15550009999",
                "fallback_message": "Connecting you to our team.",
            }),
        )
        .await;
        self.carrier
            .add_account(account_sid.clone(), auth_token.clone());
        Tenant {
            id,
            account_sid,
            auth_token,
            number: number.to_owned(),
        }
    }

    /// A tenant API key with the `read` and `operator` scopes (its secret).
    pub async fn api_key(&self, tenant: &Tenant) -> String {
        let key = self
            .admin_json(
                reqwest::Method::POST,
                &format!("/api/v1/admin/tenants/{}/api-keys", tenant.id),
                json!({"name": "cluster operator", "scopes": ["read", "operator"]}),
            )
            .await;
        key["secret"].as_str().expect("secret").to_owned()
    }

    /// Places `n` inbound calls through the balancer (callers `{from_prefix}0000`, `…0001`,
    /// …, each following `script`) and waits until the agent greets each; their CallSids.
    pub async fn greeted_calls(
        &self,
        t: &Tenant,
        n: usize,
        from_prefix: &str,
        script: impl Fn() -> CallerScript,
    ) -> Vec<String> {
        let mut sids = Vec::new();
        for i in 0..n {
            let sid = self
                .carrier
                .place_inbound_call(InboundCall {
                    account_sid: t.account_sid.clone(),
                    from: format!("{from_prefix}{i:04}"),
                    to: t.number.clone(),
                    voice_url: format!("{}/api/v1/incoming-call", self.public),
                    status_callback: Some(format!("{}/api/v1/call-status", self.public)),
                    status_callback_events: vec![],
                    script: script(),
                })
                .expect("place a call");
            sids.push(sid);
        }
        for sid in &sids {
            tokio::time::timeout(
                WAIT,
                self.carrier.wait_for(sid, |s| s.media.media_received > 0),
            )
            .await
            .expect("the agent greets");
        }
        sids
    }

    /// POSTs a signed `incoming-call` for a new CallSid to `base` (the balancer or one
    /// node); signed over the public URL, as the carrier signs it. (CallSid, status, body.)
    pub async fn incoming_call(&self, base: &str, t: &Tenant, from: &str) -> (String, u16, String) {
        let call_sid = format!("CA{}", uuid::Uuid::new_v4().simple());
        let params: Vec<(String, String)> = [
            ("AccountSid", t.account_sid.as_str()),
            ("CallSid", &call_sid),
            ("From", from),
            ("To", &t.number),
            ("CallStatus", "ringing"),
            ("Direction", "inbound"),
            ("ApiVersion", "2010-04-01"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let signed = format!("{}/api/v1/incoming-call", self.public);
        let signature =
            stateset_voice::twilio::signature::compute_signature(&t.auth_token, &signed, &params);
        let resp = self
            .client
            .post(format!("{base}/api/v1/incoming-call"))
            .header("x-twilio-signature", signature)
            .form(&params)
            .send()
            .await
            .expect("incoming-call");
        let status = resp.status().as_u16();
        (call_sid, status, resp.text().await.expect("body"))
    }

    /// The node recorded as holding the call's work.
    pub async fn node_of(&self, call_sid: &str) -> Option<String> {
        sqlx::query_scalar::<_, Option<String>>("SELECT node_id FROM calls WHERE call_sid = $1")
            .bind(call_sid)
            .fetch_optional(&self.db)
            .await
            .expect("calls")
            .flatten()
    }

    /// `(status, end reason)` of every voice session of the call, oldest first.
    pub async fn sessions_of(&self, call_sid: &str) -> Vec<(String, Option<String>)> {
        sqlx::query_as(
            "SELECT s.status, s.end_reason FROM voice_sessions s JOIN calls c ON c.id = s.call_id \
             WHERE c.call_sid = $1 ORDER BY s.started_at, s.id",
        )
        .bind(call_sid)
        .fetch_all(&self.db)
        .await
        .expect("voice sessions")
    }

    /// Transcript turns recorded by the call's live leg (its active voice session).
    pub async fn live_leg_turns(&self, call_sid: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM transcript_turns t JOIN voice_sessions s ON s.id = t.session_id \
             JOIN calls c ON c.id = s.call_id WHERE c.call_sid = $1 AND s.status = 'active'",
        )
        .bind(call_sid)
        .fetch_one(&self.db)
        .await
        .expect("transcript turns")
    }

    /// Whether the call completed (`calls.completed_at` set), and its outcome.
    pub async fn completion_of(&self, call_sid: &str) -> Option<Option<String>> {
        let row: Option<(Option<i64>, Option<String>)> =
            sqlx::query_as("SELECT completed_at, outcome FROM calls WHERE call_sid = $1")
                .bind(call_sid)
                .fetch_optional(&self.db)
                .await
                .expect("calls");
        row.and_then(|(at, outcome)| at.map(|_| outcome))
    }

    /// Opens `/media-stream` on `base` (`http://…`) and sends `connected` and `start` with
    /// the stream token, as the carrier would.
    pub async fn start_stream(&self, base: &str, t: &Tenant, call_sid: &str, token: &str) -> Ws {
        let url = format!("{}/media-stream", base.replacen("http://", "ws://", 1));
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("media upgrade");
        ws.send(Message::text(
            json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string(),
        ))
        .await
        .expect("send connected");
        ws.send(Message::text(
            json!({"event": "start", "sequenceNumber": "1", "streamSid": "MZcluster",
                   "start": {"accountSid": t.account_sid, "streamSid": "MZcluster",
                             "callSid": call_sid, "tracks": ["inbound"],
                             "customParameters": {"token": token},
                             "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                             "channels": 1}}})
            .to_string(),
        ))
        .await
        .expect("send start");
        ws
    }

    /// Stops the balancer and every node still running (SIGTERM, then the drain), and drops
    /// the database.
    pub async fn stop(mut self) {
        for node in &mut self.nodes {
            if matches!(node.child.try_wait(), Ok(None)) {
                node.terminate();
            }
        }
        for node in &mut self.nodes {
            let _ = tokio::time::timeout(WAIT, node.child.wait()).await;
        }
        let _ = self.haproxy.start_kill();
        let _ = self.haproxy.wait().await;
        self.db.close().await;
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.server_url).await {
            let _ = sqlx::Executor::execute(
                &mut admin,
                sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.db_name
                )),
            )
            .await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!("--- {} log:\n{}", node.id, tail(&node.log));
            }
            eprintln!(
                "--- haproxy log:\n{}",
                tail(&self.dir.path().join("haproxy.log"))
            );
        }
    }
}

/// A raw media-stream client socket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The configuration `scripts/haproxy.sh` ships, for a balancer on `public` in front of
/// `nodes`.
fn haproxy_config(public: &str, nodes: &[String]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/haproxy.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("config")
        .arg(public)
        .args(nodes)
        .output()
        .expect("scripts/haproxy.sh config");
    assert!(
        out.status.success(),
        "scripts/haproxy.sh config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 configuration")
}

/// A fresh database on the server of `server_url`: (its URL, its name).
async fn fresh_database(server_url: &str) -> (String, String) {
    let name = format!("sv_test_cluster_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(server_url)
        .await
        .expect("connect to TEST_POSTGRES_URL");
    sqlx::Executor::execute(
        &mut admin,
        sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
    )
    .await
    .expect("create the cluster's database");
    let mut url = url::Url::parse(server_url).expect("TEST_POSTGRES_URL is a URL");
    url.set_path(&format!("/{name}"));
    (url.to_string(), name)
}

/// Polls `probe` every 50 ms until it answers `Some`, at most `within`.
pub async fn eventually<T, F, Fut>(within: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The stream token of an `incoming-call` answer (`<Connect><Stream><Parameter name="token">`).
pub fn token_of(xml: &str) -> String {
    let doc = twiml::Response::parse(xml).expect("twiml");
    let Some(Verb::Connect(connect)) = doc.verbs.into_iter().next() else {
        panic!("the first verb is not Connect: {xml}")
    };
    let ConnectNoun::Stream(stream) = connect.nouns.first().expect("a stream").clone();
    stream
        .parameter_pairs()
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
        .expect("a token parameter")
}

/// Reads until the server's close frame: (code, reason).
pub async fn close_frame(ws: &mut Ws) -> (u16, String) {
    use futures::StreamExt;
    let read = async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(Some(frame))) => {
                    return (frame.code.into(), frame.reason.to_string());
                }
                Ok(Message::Close(None)) => return (1005, String::new()),
                Ok(_) => continue,
                Err(e) => panic!("socket error before the close frame: {e}"),
            }
        }
        panic!("the socket ended without a close frame")
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("a close frame in time")
}
