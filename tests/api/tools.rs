//! The agent contract in live calls, black box over real sockets: webhook tools (signed,
//! idempotent, answered exactly once, `response.create` only after the holding response is
//! done, filler lines, timeouts and failures, schema checks, `cancel_on_interrupt`),
//! identity gating, escalation to an operator queue (the handoff line played to the end
//! before the `<Dial>`; answered, or unanswered with a callback task or back to the agent on
//! a fresh stream; the tool-failures rule), `end_call` and the idle timeout (hang-up only
//! after the goodbye played), SSRF refusals for tool and identity URLs, and the validation
//! of agent-version contracts.
//!
//! Tool, identity and event-webhook receivers are small warp servers on loopback started by
//! each test. Calls run through the carrier simulator (Twilio) and the realtime simulator
//! (OpenAI Realtime GA), which refuses a `response.create` while a response is active, so an
//! empty error list proves the runtime waited for `response.done`. Nothing sleeps to wait
//! for a signal: tests await simulator snapshots, receiver counters or API state under a
//! deadline.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actors::egress::{SIGNATURE_HEADER, verify};
use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CallEvent, CallSnapshot, CallStatus, CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle,
    InboundCall, OperatorBehaviour, StreamCloser, WarmOperator, WebhookKind,
};
use stateset_voice::sim::realtime::{
    RealtimeScript, RealtimeSimConfig, ScriptTurn, SessionSnapshot,
};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use warp::Filter;

use crate::helpers::{
    Backend, REALTIME_KEY, Tele, TestApp, Tripwire, backend_tests, expect_error, spawn_app_with,
    spawn_app_with_realtime,
};

backend_tests!(
    a_webhook_tool_round_trip_is_signed_answered_once_and_recorded,
    a_slow_tool_speaks_its_filler_before_the_result,
    timed_out_and_failing_tools_give_the_model_an_error_and_the_call_goes_on,
    a_repeated_invocation_id_calls_the_webhook_once,
    schema_invalid_arguments_never_reach_the_webhook,
    an_identity_gated_tool_is_refused_until_verify_identity_succeeds,
    an_escalation_phrase_transfers_the_caller_to_the_queue,
    an_unanswered_queue_creates_a_callback_task,
    an_escalation_to_a_warm_queue_whispers_the_summary_then_bridges,
    end_call_hangs_up_only_after_the_goodbye_played,
    tool_and_identity_urls_are_checked_against_ssrf,
    agent_version_contract_errors_name_the_field,
    an_unanswered_queue_can_return_the_caller_to_the_agent,
    repeated_tool_failures_escalate_to_a_callback_task_without_a_queue,
    a_caller_interruption_cancels_a_tool_marked_cancel_on_interrupt,
    an_idle_caller_is_told_goodbye_then_hung_up,
);

const WAIT: Duration = Duration::from_secs(40);
/// The routed number.
const NUMBER: &str = "+14155550100";
/// The greeting of the versions these tests install.
const GREETING: &str = "Hello, thanks for calling Acme.";
/// How far a signature timestamp may be from now.
const TOLERANCE_SECS: i64 = 300;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

// === receivers ===

/// What a receiver answers.
#[derive(Debug, Clone)]
enum Answer {
    /// This status with this JSON body.
    Json(u16, Value),
    /// This status with a plain-text body.
    Text(u16, &'static str),
    /// Hold the request until [`Receiver::release`], then answer this JSON.
    Hold(Value),
}

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Hit {
    signature: String,
    idempotency_key: String,
    tool: String,
    body: Vec<u8>,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }
}

struct ReceiverShared {
    hits: Mutex<Vec<Hit>>,
    count: watch::Sender<usize>,
    script: Mutex<VecDeque<Answer>>,
    default: Answer,
    release: Semaphore,
}

/// A tenant endpoint on loopback (`http://127.0.0.1:PORT/hook`).
struct Receiver {
    url: String,
    shared: Arc<ReceiverShared>,
}

impl Receiver {
    /// Answers every request with `default`.
    async fn start(default: Answer) -> Self {
        Self::scripted(Vec::new(), default).await
    }

    /// Answers from `script` first, then with `default`.
    async fn scripted(script: Vec<Answer>, default: Answer) -> Self {
        let shared = Arc::new(ReceiverShared {
            hits: Mutex::default(),
            count: watch::channel(0usize).0,
            script: Mutex::new(VecDeque::from(script)),
            default,
            release: Semaphore::new(0),
        });
        let handler_shared = Arc::clone(&shared);
        let route = warp::post()
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(move |headers: warp::http::HeaderMap, body: bytes::Bytes| {
                let shared = Arc::clone(&handler_shared);
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let hit = Hit {
                        signature: header(SIGNATURE_HEADER),
                        idempotency_key: header("idempotency-key"),
                        tool: header("stateset-tool"),
                        body: body.to_vec(),
                    };
                    let answer = shared
                        .script
                        .lock()
                        .expect("script")
                        .pop_front()
                        .unwrap_or_else(|| shared.default.clone());
                    {
                        let mut hits = shared.hits.lock().expect("hits");
                        hits.push(hit);
                        shared.count.send_replace(hits.len());
                    }
                    let (status, body, content_type) = match answer {
                        Answer::Json(status, body) => {
                            (status, body.to_string(), "application/json")
                        }
                        Answer::Text(status, body) => (status, body.to_owned(), "text/plain"),
                        Answer::Hold(body) => {
                            if let Ok(permit) = shared.release.acquire().await {
                                permit.forget();
                            }
                            (200, body.to_string(), "application/json")
                        }
                    };
                    warp::http::Response::builder()
                        .status(status)
                        .header("content-type", content_type)
                        .body(body)
                        .expect("response")
                }
            });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Self {
            url: format!("http://{addr}/hook"),
            shared,
        }
    }

    /// Waits until at least `n` requests arrived; returns them all.
    async fn wait_hits(&self, n: usize) -> Vec<Hit> {
        let mut count = self.shared.count.subscribe();
        tokio::time::timeout(WAIT, count.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} requests within the deadline"))
            .expect("receiver running");
        self.hits()
    }

    fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().expect("hits").clone()
    }

    /// Lets one held request answer.
    fn release(&self) {
        self.shared.release.add_permits(1);
    }
}

// === set-up ===

/// The realtime simulator of these tests: brisk speech (20 ms of audio per character),
/// every event recorded, and a tool-call response that stays open 300 ms after its
/// arguments, so a fast tool's result is there before `response.done` and the runtime has
/// to hold its `response.create`.
fn realtime_config() -> RealtimeSimConfig {
    RealtimeSimConfig {
        ms_per_char: 20,
        record_events: true,
        tool_done_delay: ms(300),
        ..RealtimeSimConfig::with_api_key(REALTIME_KEY)
    }
}

/// The app, the carrier simulator and a tenant routed on [`NUMBER`] whose agent runs a
/// version with `contract` (tools, escalation, identity).
async fn setup(backend: Backend, contract: Value) -> (TestApp, CarrierSimHandle, Tele) {
    setup_with(backend, contract, |_| {}).await
}

async fn setup_with(
    backend: Backend,
    contract: Value,
    adjust: impl FnOnce(&mut stateset_voice::config::RawSettings),
) -> (TestApp, CarrierSimHandle, Tele) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let app = spawn_app_with_realtime(backend, realtime_config(), move |raw| {
        raw.set("TWILIO_API_BASE_URL", base);
        adjust(raw);
    })
    .await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    install_version(&app, &t.tenant_id, contract).await;
    (app, sim, t)
}

/// A version body with `contract`'s fields.
fn version_body(contract: &Value) -> Value {
    let mut body = json!({
        "instructions": "You are Acme's phone agent.",
        "greeting": GREETING,
        "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
    });
    if let (Some(b), Some(extra)) = (body.as_object_mut(), contract.as_object()) {
        for (k, v) in extra {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

/// The id of the tenant's agent `support` (made by `telephony_tenant`).
async fn support_agent(app: &TestApp, tenant_id: &str) -> String {
    let agents: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/agents?tenant_id={tenant_id}"),
        )
        .send()
        .await
        .expect("agents")
        .json()
        .await
        .expect("json");
    agents["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|a| a["key"] == "support")
        .and_then(|a| a["id"].as_str())
        .expect("agent support")
        .to_owned()
}

/// Posts a version of agent `support` with `contract`.
async fn post_version(app: &TestApp, tenant_id: &str, contract: &Value) -> reqwest::Response {
    let agent = support_agent(app, tenant_id).await;
    app.admin(
        Method::POST,
        &format!("/api/v1/admin/agents/{agent}/versions"),
    )
    .json(&version_body(contract))
    .send()
    .await
    .expect("post version")
}

/// Creates and approves a version with `contract` (the newest approved version is the one
/// calls run); returns it.
async fn install_version(app: &TestApp, tenant_id: &str, contract: Value) -> Value {
    let resp = post_version(app, tenant_id, &contract).await;
    let status = resp.status();
    let version: Value = resp.json().await.expect("json");
    assert_eq!(status, 201, "create version: {version}");
    let id = version["id"].as_str().expect("id");
    let resp = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/agent-versions/{id}/approve"),
        )
        .send()
        .await
        .expect("approve");
    assert_eq!(resp.status(), 200, "approve");
    version
}

/// Rotates (creates) the tenant's signing secret and returns it.
async fn signing_secret(app: &TestApp, tenant_id: &str) -> String {
    let resp = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/tenants/{tenant_id}/signing-secret"),
        )
        .send()
        .await
        .expect("signing secret");
    assert_eq!(resp.status(), 200, "signing secret");
    let body: Value = resp.json().await.expect("json");
    body["secret"].as_str().expect("secret").to_owned()
}

/// Sends every tenant event to `url`.
async fn event_webhook(app: &TestApp, tenant_id: &str, url: &str) {
    let resp = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{tenant_id}/event-webhook"),
        )
        .json(&json!({"url": url}))
        .send()
        .await
        .expect("event webhook");
    assert_eq!(resp.status(), 200, "event webhook");
}

/// A webhook tool `name` at `url`.
fn webhook_tool(name: &str, url: &str) -> Value {
    json!({
        "name": name,
        "type": "webhook",
        "description": "Looks up an order by its id.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "minLength": 1}},
            "required": ["order_id"],
            "additionalProperties": false
        },
        "url": url,
        "timeout_ms": 10_000,
    })
}

/// Places an inbound call from `from` to [`NUMBER`].
fn call_in(
    app: &TestApp,
    sim: &CarrierSimHandle,
    t: &Tele,
    from: &str,
    script: CallerScript,
) -> String {
    sim.place_inbound_call(InboundCall {
        account_sid: t.account_sid.clone(),
        from: from.into(),
        to: NUMBER.into(),
        voice_url: app.url("/api/v1/incoming-call"),
        status_callback: Some(app.url("/api/v1/call-status")),
        status_callback_events: vec![],
        script,
    })
    .expect("place call")
}

/// A caller who waits for the greeting, then says each line with a pause after it long
/// enough for the agent's answer (and any tool) to play out, then hangs up.
fn caller(lines: &[&str]) -> CallerScript {
    let mut script = CallerScript::default().silence(ms(1500));
    for line in lines {
        script = script.speak(ms(700), *line).silence(ms(3500));
    }
    script.hang_up()
}

/// A caller who waits for the greeting, says `line`, then stays silent on the line (the
/// runtime ends the call).
fn caller_then_silent(line: &str) -> CallerScript {
    CallerScript::default()
        .silence(ms(1500))
        .speak(ms(700), line)
        .silence(Duration::from_secs(60))
        .hang_up()
}

async fn ended(sim: &CarrierSimHandle, sid: &str) -> CallSnapshot {
    tokio::time::timeout(WAIT, sim.wait_ended(sid))
        .await
        .expect("the call ends")
}

/// The only realtime session, once it ended.
async fn realtime_session(app: &TestApp) -> SessionSnapshot {
    let sessions = tokio::time::timeout(
        WAIT,
        app.realtime
            .wait_for(|s| !s.is_empty() && s.iter().all(|s| s.ended.is_some())),
    )
    .await
    .expect("the ai session ends");
    assert_eq!(sessions.len(), 1, "one realtime session");
    sessions.into_iter().next().expect("session")
}

/// The `function_call_output`s the runtime sent, as (call_id, output).
fn outputs(s: &SessionSnapshot) -> Vec<(String, String)> {
    s.client_events_raw
        .iter()
        .filter(|e| {
            e["type"] == "conversation.item.create" && e["item"]["type"] == "function_call_output"
        })
        .map(|e| {
            (
                e["item"]["call_id"].as_str().expect("call_id").to_owned(),
                e["item"]["output"].as_str().expect("output").to_owned(),
            )
        })
        .collect()
}

/// The `response.create`s the runtime sent, as their instructions (`None`: none).
fn response_creates(s: &SessionSnapshot) -> Vec<Option<String>> {
    s.client_events_raw
        .iter()
        .filter(|e| e["type"] == "response.create")
        .map(|e| e["response"]["instructions"].as_str().map(str::to_owned))
        .collect()
}

/// The `error` of an output, parsed.
fn output_error(output: &str) -> String {
    let v: Value = serde_json::from_str(output).expect("outputs are JSON");
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("an error output: {output}"))
        .to_owned()
}

/// Asserts the session saw no protocol error (in particular no `response.create` while a
/// response was active).
fn assert_clean(s: &SessionSnapshot) {
    assert!(s.errors.is_empty(), "realtime errors: {:?}", s.errors);
}

/// Like [`assert_clean`], except for refused requests of the runtime's exact lines: a line
/// the runtime asks for right after a caller turn races server VAD's own reply to that turn
/// (the simulator sends the turn's transcript before the reply's `response.created`); the
/// runtime asks again once the reply is done.
fn assert_clean_but_line_races(s: &SessionSnapshot) {
    for e in &s.errors {
        assert!(
            e.code.as_deref() == Some("conversation_already_has_active_response")
                && e.event_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with("line_")),
            "realtime errors: {:?}",
            s.errors
        );
    }
}

async fn get_json(app: &TestApp, key: &str, path: &str) -> Value {
    let resp = app
        .tenant(Method::GET, path, key)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.expect("json")
}

/// Subscribes to the live-call feed (before the call is placed).
fn live_feed(app: &TestApp) -> tokio::sync::broadcast::Receiver<actors::active::ActiveEvent> {
    app.state.actors.active.subscribe()
}

/// The call log of the call with this SID.
async fn call_log(app: &TestApp, t: &Tele, sid: &str) -> Value {
    app.call_log(&t.key, sid).await
}

/// Polls `path` until `done` holds for its JSON; returns it.
async fn poll_json(app: &TestApp, key: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body = get_json(app, key, path).await;
        if done(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never reached the expected state: {body}"
        );
        tokio::time::sleep(ms(25)).await;
    }
}

/// Checks a tool request: signed over exactly its bytes with the tenant secret, carrying
/// the invocation's idempotency key (also in the body) and the tool name.
fn assert_signed(hit: &Hit, secret: &str, tool: &str) -> Value {
    assert_eq!(
        verify(
            secret.as_bytes(),
            &hit.signature,
            &hit.body,
            now_secs(),
            TOLERANCE_SECS
        ),
        Ok(()),
        "the request is signed with the tenant's secret: {}",
        hit.signature
    );
    assert_eq!(hit.tool, tool);
    let body = hit.json();
    assert_eq!(
        body["invocation_id"],
        hit.idempotency_key.as_str(),
        "{body}"
    );
    body
}

/// Index of the first event matching `pred`.
fn position(call: &CallSnapshot, pred: impl Fn(&CallEvent) -> bool) -> Option<usize> {
    call.events.iter().position(pred)
}

// === 1. Round trip ===

async fn a_webhook_tool_round_trip_is_signed_answered_once_and_recorded(backend: Backend) {
    let answer = json!({"order_id": "A1", "status": "shipped", "eta": "tomorrow"});
    let receiver = Receiver::start(Answer::Json(200, answer.clone())).await;
    let (app, sim, t) = setup(
        backend,
        json!({"tools": [webhook_tool("lookup_order", &receiver.url)]}),
    )
    .await;
    let secret = signing_secret(&app, &t.tenant_id).await;
    let then = "Your order A1 has shipped and arrives tomorrow.";
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::call_tool(
            "Where is my order A1?",
            "lookup_order",
            json!({"order_id": "A1"}),
            then,
        )]));
    let caller_number = "+15551230001";
    let mut live = live_feed(&app);
    let sid = call_in(
        &app,
        &sim,
        &t,
        caller_number,
        caller(&["Where is my order A1?"]),
    );
    let call = ended(&sim, &sid).await;
    assert_eq!(call.status, CallStatus::Completed);
    let log = call_log(&app, &t, &sid).await;
    let call_id = log["id"].as_str().expect("id").to_owned();

    // The receiver got one signed request with the arguments and the call.
    let hits = receiver.hits();
    assert_eq!(hits.len(), 1, "one webhook request");
    let body = assert_signed(&hits[0], &secret, "lookup_order");
    assert_eq!(body["tool"], "lookup_order");
    assert_eq!(body["arguments"], json!({"order_id": "A1"}));
    assert_eq!(body["call"]["id"], call_id.as_str());
    assert_eq!(body["call"]["call_sid"], sid.as_str());
    assert_eq!(body["call"]["from"], caller_number);
    assert_eq!(body["identity"]["verified"], false);
    assert_eq!(body["tenant_id"], t.tenant_id.as_str());

    // The model got exactly one output, the receiver's JSON, then a plain response.create
    // once the response holding the call was done; it then said the answer.
    let s = realtime_session(&app).await;
    assert_clean(&s);
    assert_eq!(s.tool_calls.len(), 1, "{:?}", s.tool_calls);
    let model_call_id = s.tool_calls[0].call_id.clone();
    assert_eq!(
        hits[0].idempotency_key,
        format!("{call_id}:{model_call_id}"),
        "one idempotency key per invocation"
    );
    let outs = outputs(&s);
    assert_eq!(outs.len(), 1, "{outs:?}");
    assert_eq!(outs[0].0, model_call_id);
    let given: Value = serde_json::from_str(&outs[0].1).expect("output JSON");
    assert_eq!(given, answer);
    let tool_response = s
        .responses
        .iter()
        .find(|r| r.kind == "function_call")
        .expect("the tool-call response");
    assert_eq!(tool_response.status, "completed");
    assert_eq!(
        response_creates(&s),
        vec![
            Some(format!("Greet the caller. Say exactly: {GREETING}")),
            None
        ],
        "the greeting, then one response.create for the tool result"
    );
    assert_eq!(s.said, vec![GREETING.to_owned(), then.to_owned()]);

    // The invocation is recorded with the voice session.
    let session = app.voice_session_of(&t.key, &sid).await;
    let calls = session["function_calls"]
        .as_array()
        .expect("function_calls");
    assert_eq!(calls.len(), 1, "{session}");
    let fc = &calls[0];
    assert_eq!(fc["name"], "lookup_order");
    assert_eq!(fc["kind"], "webhook");
    assert_eq!(fc["model_call_id"], model_call_id.as_str());
    assert_eq!(fc["arguments"], json!({"order_id": "A1"}));
    assert_eq!(fc["status"], "succeeded");
    assert_eq!(fc["result"], answer);
    assert!(fc["error"].is_null(), "{fc}");
    assert!(fc["latency_ms"].as_i64().is_some_and(|l| l >= 0), "{fc}");
    assert!(fc["finished_at"].is_string(), "{fc}");
    assert_eq!(log["end_reason"], "caller_hangup");
    let done = crate::live::completed_once(&app, &mut live, &call_id).await;
    assert_eq!(done["outcome"], "completed", "{done}");
    assert_eq!(done["function_calls"], 1);
    app.stop().await;
}

// === 2. Filler ===

async fn a_slow_tool_speaks_its_filler_before_the_result(backend: Backend) {
    let answer = json!({"status": "delivered"});
    let receiver = Receiver::start(Answer::Hold(answer.clone())).await;
    let filler = "One moment while I check that for you.";
    let mut tool = webhook_tool("lookup_order", &receiver.url);
    tool["filler"] = json!(filler);
    tool["filler_after_ms"] = json!(300);
    let (app, sim, t) = setup(backend, json!({"tools": [tool]})).await;
    let then = "It was delivered this morning.";
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::call_tool(
            "Has my parcel arrived?",
            "lookup_order",
            json!({"order_id": "B2"}),
            then,
        )]));
    let sid = call_in(
        &app,
        &sim,
        &t,
        "+15551230002",
        caller_then_silent("Has my parcel arrived?"),
    );

    // The tool is held: the filler is spoken while it runs, and no output was given yet.
    receiver.wait_hits(1).await;
    let sessions = tokio::time::timeout(
        WAIT,
        app.realtime.wait_for(|s| {
            s.first()
                .is_some_and(|s| s.said.iter().any(|x| x == filler))
        }),
    )
    .await
    .expect("the filler is spoken");
    assert!(
        outputs(&sessions[0]).is_empty(),
        "no output before the tool answered"
    );
    receiver.release();
    tokio::time::timeout(
        WAIT,
        app.realtime
            .wait_for(|s| s.first().is_some_and(|s| s.said.iter().any(|x| x == then))),
    )
    .await
    .expect("the result is spoken");
    sim.hangup(&sid).expect("hang up");
    ended(&sim, &sid).await;

    let s = realtime_session(&app).await;
    assert_clean(&s);
    assert_eq!(
        s.said,
        vec![GREETING.to_owned(), filler.to_owned(), then.to_owned()]
    );
    assert_eq!(
        response_creates(&s),
        vec![
            Some(format!("Greet the caller. Say exactly: {GREETING}")),
            Some(format!("Say exactly: {filler}")),
            None
        ]
    );
    let outs = outputs(&s);
    assert_eq!(outs.len(), 1, "{outs:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&outs[0].1).expect("json"),
        answer
    );
    let session = app.voice_session_of(&t.key, &sid).await;
    let fc = &session["function_calls"][0];
    assert_eq!(fc["status"], "succeeded", "{fc}");
    assert_eq!(fc["result"], answer);
    app.stop().await;
}

// === 3. Timeouts and failures ===

async fn timed_out_and_failing_tools_give_the_model_an_error_and_the_call_goes_on(
    backend: Backend,
) {
    let slow = Receiver::start(Answer::Hold(json!({"late": true}))).await;
    let broken = Receiver::start(Answer::Json(500, json!({"error": "boom"}))).await;
    let garbled = Receiver::start(Answer::Text(200, "<html>not json</html>")).await;
    let mut slow_tool = webhook_tool("slow_lookup", &slow.url);
    slow_tool["timeout_ms"] = json!(400);
    let (app, sim, t) = setup(
        backend,
        json!({"tools": [
            slow_tool,
            webhook_tool("broken_lookup", &broken.url),
            webhook_tool("garbled_lookup", &garbled.url),
        ]}),
    )
    .await;
    app.realtime.set_script(RealtimeScript::new(vec![
        ScriptTurn::call_tool(
            "Check order one",
            "slow_lookup",
            json!({"order_id": "1"}),
            "That system is slow today.",
        ),
        ScriptTurn::call_tool(
            "Check order two",
            "broken_lookup",
            json!({"order_id": "2"}),
            "That system is down.",
        ),
        ScriptTurn::call_tool(
            "Check order three",
            "garbled_lookup",
            json!({"order_id": "3"}),
            "I got a strange answer.",
        ),
        ScriptTurn::say("Never mind, thanks", "You're welcome, goodbye."),
    ]));
    let sid = call_in(
        &app,
        &sim,
        &t,
        "+15551230003",
        caller(&[
            "Check order one",
            "Check order two",
            "Check order three",
            "Never mind, thanks",
        ]),
    );
    let call = ended(&sim, &sid).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.stream_closed_by(), Some(StreamCloser::Caller));

    let s = realtime_session(&app).await;
    assert_clean(&s);
    let outs = outputs(&s);
    assert_eq!(outs.len(), 3, "one output per call: {outs:?}");
    for (i, call) in s.tool_calls.iter().enumerate() {
        assert_eq!(outs[i].0, call.call_id, "outputs in order");
    }
    assert_eq!(output_error(&outs[0].1), "the tool did not answer in time");
    assert_eq!(output_error(&outs[1].1), "the tool answered HTTP 500");
    assert_eq!(output_error(&outs[2].1), "the tool did not answer JSON");
    assert_eq!(
        s.said,
        vec![
            GREETING.to_owned(),
            "That system is slow today.".to_owned(),
            "That system is down.".to_owned(),
            "I got a strange answer.".to_owned(),
            "You're welcome, goodbye.".to_owned(),
        ],
        "the call went on after every failure"
    );
    assert_eq!(
        (slow.hits().len(), broken.hits().len(), garbled.hits().len()),
        (1, 1, 1)
    );

    let session = app.voice_session_of(&t.key, &sid).await;
    let calls = session["function_calls"]
        .as_array()
        .expect("function_calls");
    let summary: Vec<(&str, &str, &str)> = calls
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name"),
                c["status"].as_str().expect("status"),
                c["error"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "slow_lookup",
                "timed_out",
                "the tool did not answer in time"
            ),
            ("broken_lookup", "failed", "the tool answered HTTP 500"),
            ("garbled_lookup", "failed", "the tool did not answer JSON"),
        ],
        "{session}"
    );
    assert!(calls.iter().all(|c| c["result"].is_null()), "{session}");
    let log = call_log(&app, &t, &sid).await;
    assert_eq!(log["end_reason"], "caller_hangup");
    assert!(log["escalated_to"].is_null());
    app.stop().await;
}

// === 4. Idempotency ===

async fn a_repeated_invocation_id_calls_the_webhook_once(backend: Backend) {
    let answer = json!({"status": "shipped"});
    let receiver = Receiver::start(Answer::Json(200, answer.clone())).await;
    let (app, sim, t) = setup(
        backend,
        json!({"tools": [webhook_tool("lookup_order", &receiver.url)]}),
    )
    .await;
    // The model emits the same invocation in two responses (a retry).
    app.realtime.set_script(RealtimeScript::new(vec![
        ScriptTurn::call_tool(
            "Where is order A1?",
            "lookup_order",
            json!({"order_id": "A1"}),
            "It has shipped.",
        )
        .with_call_id("call_same"),
        ScriptTurn::call_tool(
            "Are you sure?",
            "lookup_order",
            json!({"order_id": "A1"}),
            "Yes, it has shipped.",
        )
        .with_call_id("call_same"),
    ]));
    let sid = call_in(
        &app,
        &sim,
        &t,
        "+15551230004",
        caller(&["Where is order A1?", "Are you sure?"]),
    );
    ended(&sim, &sid).await;

    assert_eq!(receiver.hits().len(), 1, "the webhook ran once");
    let s = realtime_session(&app).await;
    assert_clean(&s);
    assert_eq!(s.tool_calls.len(), 2, "{:?}", s.tool_calls);
    // Each function-call item got its answer (the same result: the invocation ran once), and
    // the conversation went on after both.
    let outs = outputs(&s);
    assert_eq!(outs.len(), 2, "{outs:?}");
    for (id, out) in &outs {
        assert_eq!(id, "call_same");
        assert_eq!(serde_json::from_str::<Value>(out).expect("json"), answer);
    }
    assert_eq!(
        s.said,
        vec![
            GREETING.to_owned(),
            "It has shipped.".to_owned(),
            "Yes, it has shipped.".to_owned()
        ]
    );
    let session = app.voice_session_of(&t.key, &sid).await;
    let calls = session["function_calls"]
        .as_array()
        .expect("function_calls");
    assert_eq!(calls.len(), 1, "one record per invocation: {session}");
    assert_eq!(calls[0]["model_call_id"], "call_same");
    assert_eq!(calls[0]["status"], "succeeded");
    app.stop().await;
}

// === 5. Schema ===

async fn schema_invalid_arguments_never_reach_the_webhook(backend: Backend) {
    let receiver = Receiver::start(Answer::Json(200, json!({"status": "shipped"}))).await;
    let (app, sim, t) = setup(
        backend,
        json!({"tools": [webhook_tool("lookup_order", &receiver.url)]}),
    )
    .await;
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::call_tool(
            "Where is order seven?",
            "lookup_order",
            json!({"order_id": 7, "extra": true}),
            "Let me try that again.",
        )]));
    let sid = call_in(
        &app,
        &sim,
        &t,
        "+15551230005",
        caller(&["Where is order seven?"]),
    );
    ended(&sim, &sid).await;

    assert!(
        receiver.hits().is_empty(),
        "invalid arguments never reach the webhook"
    );
    let s = realtime_session(&app).await;
    assert_clean(&s);
    let outs = outputs(&s);
    assert_eq!(outs.len(), 1, "{outs:?}");
    let error = output_error(&outs[0].1);
    assert!(error.starts_with("invalid arguments: "), "{error}");
    assert!(error.contains("/order_id"), "{error}");
    assert_eq!(
        s.said.last().map(String::as_str),
        Some("Let me try that again.")
    );
    let session = app.voice_session_of(&t.key, &sid).await;
    let fc = &session["function_calls"][0];
    assert_eq!(fc["status"], "invalid", "{fc}");
    assert_eq!(fc["error"], error.as_str());
    assert_eq!(fc["arguments"], json!({"order_id": 7, "extra": true}));
    assert!(fc["result"].is_null());
    app.stop().await;
}

// === 6. Identity ===

async fn an_identity_gated_tool_is_refused_until_verify_identity_succeeds(backend: Backend) {
    let balance = json!({"balance": "42.00", "currency": "USD"});
    let tool_receiver = Receiver::start(Answer::Json(200, balance.clone())).await;
    let identity = Receiver::start(Answer::Json(200, json!({"verified": true}))).await;
    let mut gated = webhook_tool("account_balance", &tool_receiver.url);
    gated["description"] = json!("Reads the caller's account balance.");
    gated["parameters"] =
        json!({"type": "object", "properties": {}, "additionalProperties": false});
    gated["requires_identity"] = json!(true);
    let (app, sim, t) = setup(
        backend,
        json!({
            "tools": [gated, {"name": "verify_identity", "type": "builtin"}],
            "identity": {"url": identity.url, "fields": ["account_number", "zip"]},
        }),
    )
    .await;
    let secret = signing_secret(&app, &t.tenant_id).await;
    let facts = json!({"account_number": "1234", "zip": "94107"});
    app.realtime.set_script(RealtimeScript::new(vec![
        ScriptTurn::call_tool(
            "What is my balance?",
            "account_balance",
            json!({}),
            "I need to verify you first.",
        ),
        ScriptTurn::call_tool(
            "Account 1234, zip 94107",
            "verify_identity",
            facts.clone(),
            "Thanks, you are verified.",
        ),
        ScriptTurn::call_tool(
            "So what is my balance?",
            "account_balance",
            json!({}),
            "Your balance is 42 dollars.",
        ),
    ]));
    let sid = call_in(
        &app,
        &sim,
        &t,
        "+15551230006",
        caller(&[
            "What is my balance?",
            "Account 1234, zip 94107",
            "So what is my balance?",
        ]),
    );
    ended(&sim, &sid).await;

    let s = realtime_session(&app).await;
    assert_clean(&s);
    let outs = outputs(&s);
    assert_eq!(outs.len(), 3, "{outs:?}");
    let refused = output_error(&outs[0].1);
    assert!(refused.contains("verify_identity"), "{refused}");
    assert_eq!(
        serde_json::from_str::<Value>(&outs[1].1).expect("json"),
        json!({"verified": true})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&outs[2].1).expect("json"),
        balance
    );
    assert_eq!(
        s.said.last().map(String::as_str),
        Some("Your balance is 42 dollars.")
    );

    // The identity service got the facts, signed; the gated tool ran only after it.
    let checks = identity.hits();
    assert_eq!(checks.len(), 1);
    let body = assert_signed(&checks[0], &secret, "verify_identity");
    assert_eq!(body["facts"], facts);
    let runs = tool_receiver.hits();
    assert_eq!(runs.len(), 1, "the refused call never reached the tool");
    let body = assert_signed(&runs[0], &secret, "account_balance");
    assert_eq!(body["identity"]["verified"], true);

    let session = app.voice_session_of(&t.key, &sid).await;
    let statuses: Vec<(&str, &str)> = session["function_calls"]
        .as_array()
        .expect("function_calls")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name"),
                c["status"].as_str().expect("status"),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("account_balance", "refused"),
            ("verify_identity", "succeeded"),
            ("account_balance", "succeeded"),
        ]
    );
    let log = call_log(&app, &t, &sid).await;
    assert_eq!(log["identity_state"], "verified");
    app.stop().await;
}

// === 7. Escalation, answered ===

/// A queue `support` ringing `numbers`, with `extra` settings.
async fn support_queue(app: &TestApp, t: &Tele, numbers: &[&str], extra: Value) -> Value {
    let mut body = json!({"name": "support", "numbers": numbers, "ring_timeout_seconds": 10});
    if let (Some(b), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            b.insert(k.clone(), v.clone());
        }
    }
    app.create_queue(&t.key, &body).await
}

/// The deliveries of `event` once every one of them is delivered (at least one).
async fn delivered(app: &TestApp, t: &Tele, event: &str) -> Vec<Value> {
    let body = poll_json(
        app,
        &t.key,
        &format!("/api/v1/webhook-deliveries?event={event}"),
        |b| {
            b["data"]
                .as_array()
                .is_some_and(|d| !d.is_empty() && d.iter().all(|d| d["status"] == "delivered"))
        },
    )
    .await;
    body["data"].as_array().expect("data").clone()
}

/// The envelopes of `event` a receiver got.
fn envelopes(receiver: &Receiver, event: &str) -> Vec<Value> {
    receiver
        .hits()
        .iter()
        .map(Hit::json)
        .filter(|e| e["event"] == event)
        .collect()
}

/// Asserts the agent's line was played to the end before the carrier changed the call: the
/// stream was cut by a REST update with every mark echoed and no audio left unplayed.
fn assert_line_played_before(call: &CallSnapshot, closer: StreamCloser) {
    assert_eq!(call.stream_closed_by(), Some(closer), "{:#?}", call.events);
    let media = &call.media;
    assert!(media.marks_received > 0, "{media:?}");
    assert_eq!(
        media.marks_echoed, media.marks_received,
        "every mark was echoed (its audio played) before the stream was cut: {media:?}"
    );
    assert_eq!(
        media.unplayed_at_end_ms, 0,
        "no audio was cut off: {media:?}"
    );
    assert_eq!(media.clears, 0, "{media:?}");
}

async fn an_escalation_phrase_transfers_the_caller_to_the_queue(backend: Backend) {
    let events = Receiver::start(Answer::Json(200, json!({"ok": true}))).await;
    let handoff_line = "Connecting you to a colleague now.";
    let (app, sim, t) = setup(
        backend,
        json!({"escalation": {
            "default_queue": "support",
            "handoff_line": handoff_line,
            "rules": [{"kind": "caller_asks_for_human", "patterns": ["\\b(human|real person|agent)\\b"]}],
        }}),
    )
    .await;
    event_webhook(&app, &t.tenant_id, &events.url).await;
    let (first, second) = ("+15550001001", "+15550001002");
    sim.set_operator(first, OperatorBehaviour::NoAnswer);
    sim.set_operator(
        second,
        OperatorBehaviour::Answer {
            answer_after: ms(200),
            talk: ms(600),
        },
    );
    support_queue(&app, &t, &[first, second], json!({})).await;
    let request = "Can I talk to a real person?";
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::say(
            request,
            "Of course.",
        )]));
    let caller_number = "+15551230007";
    let mut live = live_feed(&app);
    let sid = call_in(&app, &sim, &t, caller_number, caller_then_silent(request));
    let call = ended(&sim, &sid).await;
    let log = call_log(&app, &t, &sid).await;
    let call_id = log["id"].as_str().expect("id").to_owned();

    // The handoff line played out, then the carrier was told to dial the queue, whose
    // `action` reports to /api/v1/dial-result; the second number answered.
    let s = realtime_session(&app).await;
    assert_clean_but_line_races(&s);
    assert_eq!(
        s.said,
        vec![
            GREETING.to_owned(),
            "Of course.".to_owned(),
            handoff_line.to_owned()
        ],
        "the model's reply to the turn, then the runtime's handoff line"
    );
    assert_line_played_before(&call, StreamCloser::Redirect);
    let updated = position(
        &call,
        |e| matches!(e, CallEvent::Updated { twiml: Some(x), .. } if x.contains("<Dial")),
    )
    .expect("a REST update with a <Dial>");
    let dialed = call
        .events
        .iter()
        .find_map(|e| match e {
            CallEvent::Dialed { numbers, outcome } => Some((numbers.clone(), outcome.clone())),
            _ => None,
        })
        .expect("a <Dial>");
    assert_eq!(dialed.0, vec![first.to_owned(), second.to_owned()]);
    assert_eq!(dialed.1.status, "completed");
    assert_eq!(dialed.1.answered_number.as_deref(), Some(second));
    let action = call.webhooks_of(WebhookKind::DialAction);
    assert_eq!(action.len(), 1, "{action:?}");
    let prefix = app.url(&format!(
        "/api/v1/dial-result?call_id={call_id}&handoff_id=ho_"
    ));
    assert!(
        action[0].url.starts_with(&prefix),
        "{} / {prefix}",
        action[0].url
    );
    assert_eq!(action[0].status, Some(200));
    assert!(position(&call, |e| matches!(e, CallEvent::Dialed { .. })).expect("dialed") > updated);

    // The call log shows the escalation and its target.
    assert_eq!(log["end_reason"], "escalated", "{log}");
    let target = format!("queue:support/{}", dialed.1.dial_call_sid);
    assert_eq!(log["escalated_to"], target.as_str(), "{log}");
    let done = crate::live::completed_once(&app, &mut live, &call_id).await;
    assert_eq!(done["outcome"], "escalated", "{done}");
    assert_eq!(done["end_reason"], "escalated");
    assert_eq!(done["handoffs"], 1);

    // The handoff is recorded with the rule and the context a human gets.
    let session = app.voice_session_of(&t.key, &sid).await;
    let handoffs = session["handoffs"].as_array().expect("handoffs");
    assert_eq!(handoffs.len(), 1, "{session}");
    let h = &handoffs[0];
    assert_eq!(h["rule"], "caller_asks_for_human");
    assert_eq!(h["queue"], "support");
    assert_eq!(h["status"], "answered");
    assert_eq!(h["dial_status"], "completed");
    assert_eq!(h["outcome"], "bridged");
    let context = &h["context"];
    assert_eq!(context["rule"], "caller_asks_for_human");
    assert_eq!(context["caller"], caller_number);
    assert_eq!(context["identity"]["verified"], false);
    let summary = context["summary"].as_str().expect("summary");
    assert!(summary.contains(&format!("Caller: {request}")), "{summary}");
    assert!(summary.contains(&format!("Agent: {GREETING}")), "{summary}");

    // voice.call.escalated went out, signed, with the handoff and its context.
    let handoff_id = h["id"].as_str().expect("id");
    delivered(&app, &t, "voice.call.escalated").await;
    let escalated = envelopes(&events, "voice.call.escalated");
    assert_eq!(escalated.len(), 1, "{escalated:?}");
    let data = &escalated[0]["data"];
    assert_eq!(data["call_id"], call_id.as_str());
    assert_eq!(data["handoff_id"], handoff_id);
    assert_eq!(data["queue"], "support");
    assert_eq!(data["context"]["rule"], "caller_asks_for_human");
    assert_eq!(data["context"]["caller"], caller_number);
    app.stop().await;
}

// === 8. Escalation, unanswered ===

async fn an_unanswered_queue_creates_a_callback_task(backend: Backend) {
    let events = Receiver::start(Answer::Json(200, json!({"ok": true}))).await;
    let (app, sim, t) = setup(
        backend,
        json!({
            "tools": [{"name": "transfer_to_human", "type": "builtin"}],
            "escalation": {"default_queue": "support"},
        }),
    )
    .await;
    event_webhook(&app, &t.tenant_id, &events.url).await;
    let operator = "+15550002001";
    sim.set_operator(operator, OperatorBehaviour::Busy);
    let queue = support_queue(
        &app,
        &t,
        &[operator],
        json!({"when_unanswered": "callback_task"}),
    )
    .await;
    let queue_id = queue["id"].as_str().expect("id").to_owned();
    let then = "I'm transferring you to a colleague now.";
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::call_tool(
            "I need a person about my bill",
            "transfer_to_human",
            json!({"reason": "billing dispute"}),
            then,
        )]));
    let caller_number = "+15551230008";
    let mut live = live_feed(&app);
    let sid = call_in(
        &app,
        &sim,
        &t,
        caller_number,
        caller_then_silent("I need a person about my bill"),
    );
    let call = ended(&sim, &sid).await;
    let log = call_log(&app, &t, &sid).await;
    let call_id = log["id"].as_str().expect("id").to_owned();

    // The model's transfer line played out, the queue was dialed, nobody answered, and the
    // caller heard that someone will call back.
    let s = realtime_session(&app).await;
    assert_clean(&s);
    assert_eq!(s.said.last().map(String::as_str), Some(then));
    let outs = outputs(&s);
    assert_eq!(outs.len(), 1, "{outs:?}");
    let result: Value = serde_json::from_str(&outs[0].1).expect("json");
    assert_eq!(result["status"], "transferring", "{result}");
    assert_line_played_before(&call, StreamCloser::Redirect);
    let dialed = call
        .events
        .iter()
        .find_map(|e| match e {
            CallEvent::Dialed { outcome, .. } => Some(outcome.clone()),
            _ => None,
        })
        .expect("a <Dial>");
    assert_eq!(dialed.status, "busy");
    assert!(
        !call.said.is_empty(),
        "the callback message: {:?}",
        call.events
    );

    // A callback task for the caller, from the handoff, on the queue.
    let tasks = get_json(
        &app,
        &t.key,
        &format!("/api/v1/callback-tasks?source_call_id={call_id}"),
    )
    .await;
    let data = tasks["data"].as_array().expect("data");
    assert_eq!(data.len(), 1, "{tasks}");
    let task = &data[0];
    assert_eq!(task["created_by"], "handoff");
    assert_eq!(task["source_call_id"], call_id.as_str());
    assert_eq!(task["queue_id"], queue_id.as_str());
    assert_eq!(task["phone"], caller_number);
    assert_eq!(task["status"], "open");
    assert!(
        task["reason"]
            .as_str()
            .is_some_and(|r| r.contains("billing dispute")),
        "{task}"
    );
    let task_id = task["id"].as_str().expect("id");

    // The handoff ended in that task; the call did not end escalated.
    let session = app.voice_session_of(&t.key, &sid).await;
    let h = &session["handoffs"][0];
    assert_eq!(h["rule"], "tool:transfer_to_human", "{h}");
    assert_eq!(h["status"], "unanswered");
    assert_eq!(h["dial_status"], "busy");
    assert_eq!(h["outcome"], "callback_task");
    assert_eq!(h["callback_task_id"], task_id);
    assert_eq!(session["function_calls"][0]["status"], "succeeded");
    assert_eq!(log["end_reason"], "callback_scheduled", "{log}");
    assert!(log["escalated_to"].is_null(), "nobody took the call: {log}");
    let done = crate::live::completed_once(&app, &mut live, &call_id).await;
    assert_eq!(done["outcome"], "escalated", "{done}");
    assert_eq!(done["end_reason"], "callback_scheduled");

    // voice.callback.created went out for it.
    delivered(&app, &t, "voice.callback.created").await;
    let created = envelopes(&events, "voice.callback.created");
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["data"]["task_id"], task_id);
    assert_eq!(created[0]["data"]["created_by"], "handoff");
    assert_eq!(created[0]["data"]["source_call_id"], call_id.as_str());

    // Twilio repeating the dial-result callback changes nothing: no second task.
    let handoff_id = h["id"].as_str().expect("handoff id");
    let resp = app
        .twilio_post(
            &format!("/api/v1/dial-result?call_id={call_id}&handoff_id={handoff_id}"),
            &[
                ("AccountSid", t.account_sid.as_str()),
                ("CallSid", sid.as_str()),
                ("DialCallStatus", "busy"),
            ],
            &t.auth_token,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.expect("twiml").contains("<Hangup"));
    let again = get_json(&app, &t.key, "/api/v1/callback-tasks").await;
    assert_eq!(again["total"], 1, "{again}");
    app.stop().await;
}

/// The agent's escalation to a `warm` queue: the line plays out, the caller waits in the
/// handoff's conference, the operator hears the reason and the conversation, presses 1 and
/// is bridged; the handoff is `accepted`.
async fn an_escalation_to_a_warm_queue_whispers_the_summary_then_bridges(backend: Backend) {
    let (app, sim, t) = setup(
        backend,
        json!({
            "tools": [{"name": "transfer_to_human", "type": "builtin"}],
            "escalation": {"default_queue": "support"},
        }),
    )
    .await;
    let operator = "+15550002077";
    sim.set_warm_operator(operator, WarmOperator::Accept { talk: ms(300) });
    support_queue(&app, &t, &[operator], json!({"transfer_mode": "warm"})).await;
    let then = "I'm transferring you to a colleague now.";
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::call_tool(
            "I need a person about my bill",
            "transfer_to_human",
            json!({"reason": "billing dispute"}),
            then,
        )]));
    let sid = call_in(
        &app,
        &sim,
        &t,
        "+15551230077",
        caller_then_silent("I need a person about my bill"),
    );
    let call = ended(&sim, &sid).await;
    assert_line_played_before(&call, StreamCloser::Redirect);
    assert!(
        call.has_event(|e| matches!(e, CallEvent::ConferenceJoined { waiting: true, .. }))
            && call.has_event(|e| matches!(e, CallEvent::ConferenceBridged { .. })),
        "{:#?}",
        call.events
    );
    let leg = sim
        .calls()
        .into_iter()
        .find(|c| c.to == operator)
        .expect("the operator leg");
    let leg = ended(&sim, &leg.sid).await;
    let whisper = leg
        .said
        .iter()
        .find(|s| s.contains("Press 1 to accept"))
        .unwrap_or_else(|| panic!("no whisper: {:?}", leg.said));
    assert!(
        whisper.contains("billing dispute") && whisper.contains("I need a person about my bill"),
        "{whisper}"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    let handoff = loop {
        let session = app.voice_session_of(&t.key, &sid).await;
        let h = session["handoffs"][0].clone();
        if h["warm"]["state"] == "accepted" {
            break h;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never accepted: {session}"
        );
        tokio::time::sleep(ms(25)).await;
    };
    assert_eq!(handoff["rule"], "tool:transfer_to_human", "{handoff}");
    assert_eq!(handoff["status"], "answered");
    assert_eq!(handoff["outcome"], "bridged");
    assert_eq!(handoff["warm"]["operator_number"], operator);
    app.stop().await;
}

// === 9. end_call ===

async fn end_call_hangs_up_only_after_the_goodbye_played(backend: Backend) {
    let (app, sim, t) = setup(
        backend,
        json!({"tools": [{"name": "end_call", "type": "builtin"}]}),
    )
    .await;
    let goodbye = "Thank you for calling Acme, have a wonderful day. Goodbye!";
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::call_tool(
            "That is all, thanks",
            "end_call",
            json!({"reason": "the caller is done"}),
            goodbye,
        )]));
    let mut live = live_feed(&app);
    let sid = call_in(
        &app,
        &sim,
        &t,
        "+15551230009",
        caller_then_silent("That is all, thanks"),
    );
    let call = ended(&sim, &sid).await;

    let s = realtime_session(&app).await;
    assert_clean(&s);
    assert_eq!(s.said, vec![GREETING.to_owned(), goodbye.to_owned()]);
    let outs = outputs(&s);
    assert_eq!(outs.len(), 1);
    let result: Value = serde_json::from_str(&outs[0].1).expect("json");
    assert_eq!(result["status"], "ending");

    // The carrier hung up through a REST update, and only once the goodbye had played: every
    // mark echoed, nothing left in the queue, and all the audio of both lines received.
    assert_eq!(call.status, CallStatus::Completed);
    assert!(
        call.has_event(
            |e| matches!(e, CallEvent::Updated { status: Some(s), .. } if s == "completed")
        ),
        "{:#?}",
        call.events
    );
    assert_line_played_before(&call, StreamCloser::Hangup);
    let sent_ms: u64 = s.responses.iter().map(|r| r.audio_ms_sent).sum();
    assert_eq!(
        call.media.bytes_received / 8,
        sent_ms,
        "all the audio reached the caller"
    );
    let log = call_log(&app, &t, &sid).await;
    assert_eq!(log["end_reason"], "agent_ended_call", "{log}");
    let session = app.voice_session_of(&t.key, &sid).await;
    assert_eq!(session["end_reason"], "agent_ended_call", "{session}");
    assert_eq!(session["function_calls"][0]["name"], "end_call");
    assert_eq!(session["function_calls"][0]["status"], "succeeded");
    let call_id = log["id"].as_str().expect("id");
    let done = crate::live::completed_once(&app, &mut live, call_id).await;
    assert_eq!(done["outcome"], "completed", "{done}");
    assert_eq!(done["end_reason"], "agent_ended_call");
    app.stop().await;
}

// === 10. SSRF ===

async fn tool_and_identity_urls_are_checked_against_ssrf(backend: Backend) {
    let mut tripwire = Tripwire::start().await;
    let port = tripwire.port;
    let (app, sim, t) = setup_with(backend, json!({}), |raw| {
        raw.set("OUTBOUND_ALLOW_PRIVATE", "false");
    })
    .await;
    let refused = [
        format!("http://127.0.0.1:{port}/hook"),
        "http://tools.example.com/hook".to_owned(),
        format!("https://127.0.0.1:{port}/hook"),
        "https://10.0.0.1/hook".to_owned(),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
        format!("https://[::1]:{port}/hook"),
        format!("https://[::ffff:127.0.0.1]:{port}/hook"),
    ];
    for url in &refused {
        let resp = post_version(
            &app,
            &t.tenant_id,
            &json!({"tools": [webhook_tool("lookup_order", url)]}),
        )
        .await;
        let err = expect_error(resp, 422, "validation_failed").await;
        assert_eq!(err["field"], "tools[0].url", "{url}: {err}");
        let resp = post_version(
            &app,
            &t.tenant_id,
            &json!({
                "tools": [{"name": "verify_identity", "type": "builtin"}],
                "identity": {"url": url, "fields": ["zip"]},
            }),
        )
        .await;
        let err = expect_error(resp, 422, "validation_failed").await;
        assert_eq!(err["field"], "identity.url", "{url}: {err}");
    }

    // A name is resolved only when used: accepted here, refused when the tool is called.
    let url = format!("https://localhost:{port}/hook");
    install_version(
        &app,
        &t.tenant_id,
        json!({"tools": [webhook_tool("lookup_order", &url)]}),
    )
    .await;
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::call_tool(
            "Where is order A1?",
            "lookup_order",
            json!({"order_id": "A1"}),
            "I cannot reach that system.",
        )]));
    let sid = call_in(
        &app,
        &sim,
        &t,
        "+15551230010",
        caller(&["Where is order A1?"]),
    );
    ended(&sim, &sid).await;
    let s = realtime_session(&app).await;
    assert_clean(&s);
    let outs = outputs(&s);
    assert_eq!(outs.len(), 1, "{outs:?}");
    let error = output_error(&outs[0].1);
    assert_eq!(
        error,
        "the tool could not be reached: destination localhost is not a public address"
    );
    assert_eq!(
        s.said.last().map(String::as_str),
        Some("I cannot reach that system.")
    );
    let session = app.voice_session_of(&t.key, &sid).await;
    let fc = &session["function_calls"][0];
    assert_eq!(fc["status"], "failed", "{fc}");
    assert_eq!(fc["error"], error.as_str());
    tripwire.assert_untouched().await;
    app.stop().await;
}

// === 11. Contract validation ===

async fn agent_version_contract_errors_name_the_field(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    let hook = "https://tools.example.com/orders";
    let intent_rule = json!({"kind": "intent", "intents": ["cancel"]});
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"tools": [webhook_tool("lookup", hook), webhook_tool("lookup", hook)]}),
            "tools[1].name",
        ),
        (
            json!({"tools": [webhook_tool("bad name!", hook)]}),
            "tools[0].name",
        ),
        (
            json!({"tools": [{"name": "launch_rockets", "type": "builtin"}]}),
            "tools[0].name",
        ),
        (
            json!({"tools": [{"name": "end_call", "type": "webhook", "description": "x", "parameters": {"type": "object"}, "url": hook}]}),
            "tools[0].name",
        ),
        (
            json!({"tools": [{"name": "lookup", "type": "function", "url": hook}]}),
            "tools[0].type",
        ),
        (
            json!({"tools": [{"name": "report_intent", "type": "builtin"}]}),
            "tools[0].name",
        ),
        (
            json!({"tools": [{"name": "verify_identity", "type": "builtin"}]}),
            "identity",
        ),
        (
            json!({"tools": [{"name": "lookup", "type": "webhook", "description": "x", "parameters": {"type": "string"}, "url": hook}]}),
            "tools[0].parameters",
        ),
        (
            json!({"tools": [{"name": "lookup", "type": "webhook", "description": "x", "parameters": {"type": "object", "properties": {"a": {"type": 12}}}, "url": hook}]}),
            "tools[0].parameters",
        ),
        (
            json!({"tools": [{"name": "lookup", "type": "webhook", "description": "x", "parameters": {"type": "object"}}]}),
            "tools[0].url",
        ),
        (
            json!({"tools": [{"name": "lookup", "type": "webhook", "description": "x", "parameters": {"type": "object"}, "url": hook, "timeout_ms": 50}]}),
            "tools[0].timeout_ms",
        ),
        (
            json!({"tools": [{"name": "lookup", "type": "webhook", "description": "x", "parameters": {"type": "object"}, "url": hook, "timeout_ms": 1000, "filler": "Hold on.", "filler_after_ms": 1000}]}),
            "tools[0].filler_after_ms",
        ),
        (
            json!({"tools": [{"name": "end_call", "type": "builtin", "url": hook}]}),
            "tools[0].url",
        ),
        (
            json!({"escalation": {"rules": [{"kind": "caller_asks_for_human", "patterns": ["(unclosed"]}]}}),
            "escalation.rules[0].patterns",
        ),
        (
            json!({"escalation": {"rules": [intent_rule.clone(), {"kind": "caller_asks_for_human"}]}}),
            "escalation.rules[1].patterns",
        ),
        (
            json!({"escalation": {"rules": [{"kind": "weather"}]}}),
            "escalation.rules[0].kind",
        ),
        (
            json!({"escalation": {"rules": [{"kind": "tool_failures", "count": 0}]}}),
            "escalation.rules[0].count",
        ),
        (
            json!({"escalation": {"rules": [{"kind": "call_duration", "seconds": 1}]}}),
            "escalation.rules[0].seconds",
        ),
        (
            json!({"escalation": {"default_queue": "no such queue!"}}),
            "escalation.default_queue",
        ),
        (
            json!({"identity": {"url": hook, "fields": []}}),
            "identity.fields",
        ),
    ];
    for (contract, field) in cases {
        let resp = post_version(&app, &t.tenant_id, &contract).await;
        let err = expect_error(resp, 422, "validation_failed").await;
        assert_eq!(err["field"], field, "{contract}: {err}");
    }

    // A valid contract round-trips, with the built-ins' schemas filled in.
    let version = install_version(
        &app,
        &t.tenant_id,
        json!({
            "tools": [
                webhook_tool("lookup", hook),
                {"name": "report_intent", "type": "builtin"},
                {"name": "transfer_to_human", "type": "builtin"},
            ],
            "escalation": {"default_queue": "support", "rules": [intent_rule]},
        }),
    )
    .await;
    let tools = version["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), 3);
    assert_eq!(
        tools[1]["parameters"]["properties"]["intent"]["enum"],
        json!(["cancel"])
    );
    assert_eq!(tools[2]["parameters"]["required"], json!(["reason"]));
    assert_eq!(version["escalation"]["rules"][0]["kind"], "intent");
    app.stop().await;
}

// === 12. Back to the agent ===

async fn an_unanswered_queue_can_return_the_caller_to_the_agent(backend: Backend) {
    let (app, sim, t) = setup(
        backend,
        json!({
            "tools": [{"name": "transfer_to_human", "type": "builtin"}],
            "escalation": {"default_queue": "support"},
        }),
    )
    .await;
    let operator = "+15550003001";
    sim.set_operator(operator, OperatorBehaviour::Busy);
    support_queue(&app, &t, &[operator], json!({"when_unanswered": "agent"})).await;
    let request = "Please put me through to someone";
    let then = "Let me transfer you.";
    app.realtime
        .set_script(RealtimeScript::new(vec![ScriptTurn::call_tool(
            request,
            "transfer_to_human",
            json!({"reason": "wants a person"}),
            then,
        )]));
    let mut feed = live_feed(&app);
    let sid = call_in(&app, &sim, &t, "+15551230012", caller_then_silent(request));

    // Nobody answers: the caller gets a fresh stream, and a new realtime session that is
    // given the conversation so far says the agent is back.
    let back =
        "I'm sorry, nobody was able to take your call. I'm back with you. How else can I help?";
    let sessions = tokio::time::timeout(
        WAIT,
        app.realtime
            .wait_for(|s| s.get(1).is_some_and(|s| s.said.iter().any(|x| x == back))),
    )
    .await
    .expect("the agent is back on a fresh stream");
    let first = &sessions[0];
    assert_clean(first);
    assert_eq!(first.said, vec![GREETING.to_owned(), then.to_owned()]);
    let second = &sessions[1];
    assert_clean(second);
    let replayed: Vec<String> = second
        .client_events_raw
        .iter()
        .filter(|e| e["type"] == "conversation.item.create")
        .filter_map(|e| e["item"]["content"][0]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        replayed,
        vec![GREETING.to_owned(), request.to_owned(), then.to_owned()],
        "the conversation so far is replayed into the new session"
    );
    let live = call_log(&app, &t, &sid).await;
    assert!(live["escalated_to"].is_null(), "{live}");
    assert!(
        live["end_reason"].is_null(),
        "the call is live again: {live}"
    );
    // The first stream ended for the dial, which continued the call: nothing completed.
    let call_id = live["id"].as_str().expect("id").to_owned();
    crate::live::ended(&mut feed, &call_id).await;
    assert!(
        crate::live::completed_events(&app, &call_id)
            .await
            .is_empty(),
        "a call that continues is not complete"
    );

    sim.hangup(&sid).expect("hang up");
    let call = ended(&sim, &sid).await;
    assert_eq!(call.media.streams_opened, 2);
    let dialed = call
        .events
        .iter()
        .find_map(|e| match e {
            CallEvent::Dialed { outcome, .. } => Some(outcome.status.clone()),
            _ => None,
        })
        .expect("a <Dial>");
    assert_eq!(dialed, "busy");
    let log = poll_json(&app, &t.key, &format!("/api/v1/call-logs/{sid}"), |l| {
        !l["end_reason"].is_null()
    })
    .await;
    assert_eq!(log["end_reason"], "caller_hangup", "{log}");
    assert!(log["escalated_to"].is_null(), "{log}");
    // Once the caller hung up on the second stream: one completion, both sessions counted.
    let done = crate::live::completed_once(&app, &mut feed, &call_id).await;
    assert_eq!(done["outcome"], "completed", "{done}");
    assert_eq!(done["end_reason"], "caller_hangup");
    assert_eq!(done["session_ids"].as_array().map(Vec::len), Some(2));
    let session = app.voice_session_of(&t.key, &sid).await;
    let h = &session["handoffs"][0];
    assert_eq!(h["status"], "unanswered", "{h}");
    assert_eq!(h["outcome"], "agent");
    assert!(h["callback_task_id"].is_null());
    app.stop().await;
}

// === 13. Tool failures ===

async fn repeated_tool_failures_escalate_to_a_callback_task_without_a_queue(backend: Backend) {
    let broken = Receiver::start(Answer::Json(503, json!({"error": "down"}))).await;
    let (app, sim, t) = setup(
        backend,
        json!({
            "tools": [webhook_tool("lookup_order", &broken.url)],
            "escalation": {"rules": [{"kind": "tool_failures", "count": 2}]},
        }),
    )
    .await;
    app.realtime.set_script(RealtimeScript::new(vec![
        ScriptTurn::call_tool(
            "Where is order one?",
            "lookup_order",
            json!({"order_id": "1"}),
            "Sorry, that failed.",
        ),
        ScriptTurn::call_tool(
            "And order two?",
            "lookup_order",
            json!({"order_id": "2"}),
            "That failed too.",
        ),
        ScriptTurn::say("Okay, thanks", "You're welcome."),
    ]));
    let caller_number = "+15551230013";
    // A longer pause after the second question: the callback line takes about 3 s to play.
    let script = CallerScript::default()
        .silence(ms(1500))
        .speak(ms(700), "Where is order one?")
        .silence(ms(3500))
        .speak(ms(700), "And order two?")
        .silence(ms(5500))
        .speak(ms(700), "Okay, thanks")
        .silence(ms(3500))
        .hang_up();
    let sid = call_in(&app, &sim, &t, caller_number, script);
    let call = ended(&sim, &sid).await;
    assert_eq!(
        call.stream_closed_by(),
        Some(StreamCloser::Caller),
        "the caller stayed"
    );
    let log = call_log(&app, &t, &sid).await;
    let call_id = log["id"].as_str().expect("id").to_owned();

    // The second failure fired the rule: no queue, so a callback task, announced with the
    // runtime's own line in place of the model's reply; then the conversation went on.
    let s = realtime_session(&app).await;
    assert_clean(&s);
    let callback_line = "Nobody is available to take your call right now, so I've arranged for a colleague to call you back as soon as possible.";
    assert_eq!(
        s.said,
        vec![
            GREETING.to_owned(),
            "Sorry, that failed.".to_owned(),
            callback_line.to_owned(),
            "You're welcome.".to_owned(),
        ]
    );
    let tasks = get_json(
        &app,
        &t.key,
        &format!("/api/v1/callback-tasks?source_call_id={call_id}"),
    )
    .await;
    assert_eq!(tasks["total"], 1, "{tasks}");
    let task = &tasks["data"][0];
    assert_eq!(task["created_by"], "handoff");
    assert_eq!(task["phone"], caller_number);
    assert!(task["queue_id"].is_null());
    let session = app.voice_session_of(&t.key, &sid).await;
    let handoffs = session["handoffs"].as_array().expect("handoffs");
    assert_eq!(handoffs.len(), 1, "{session}");
    assert_eq!(handoffs[0]["rule"], "tool_failures");
    assert_eq!(handoffs[0]["outcome"], "callback_task");
    assert_eq!(handoffs[0]["callback_task_id"], task["id"]);
    assert_eq!(handoffs[0]["context"]["rule"], "tool_failures");
    assert_eq!(log["end_reason"], "caller_hangup");
    assert!(log["escalated_to"].is_null());
    app.stop().await;
}

// === 14. cancel_on_interrupt ===

async fn a_caller_interruption_cancels_a_tool_marked_cancel_on_interrupt(backend: Backend) {
    let held = Receiver::start(Answer::Hold(json!({"status": "late"}))).await;
    let mut tool = webhook_tool("lookup_order", &held.url);
    tool["cancel_on_interrupt"] = json!(true);
    let (app, sim, t) = setup(backend, json!({"tools": [tool]})).await;
    app.realtime.set_script(RealtimeScript::new(vec![
        ScriptTurn::call_tool(
            "Where is order one?",
            "lookup_order",
            json!({"order_id": "1"}),
            "It is on its way.",
        ),
        ScriptTurn::say(
            "Actually, what are your hours?",
            "We are open nine to five.",
        ),
    ]));
    // The caller speaks again while the tool is still running (it never answers).
    let script = CallerScript::default()
        .silence(ms(1500))
        .speak(ms(700), "Where is order one?")
        .silence(ms(2500))
        .speak(ms(700), "Actually, what are your hours?")
        .silence(ms(3500))
        .hang_up();
    let sid = call_in(&app, &sim, &t, "+15551230014", script);
    ended(&sim, &sid).await;

    assert_eq!(held.hits().len(), 1);
    let s = realtime_session(&app).await;
    assert_clean(&s);
    let outs = outputs(&s);
    assert_eq!(outs.len(), 1, "{outs:?}");
    assert_eq!(
        output_error(&outs[0].1),
        "cancelled: the caller interrupted before the tool finished"
    );
    // No response for the cancelled call: the caller's new turn got the answer.
    assert_eq!(
        s.said,
        vec![GREETING.to_owned(), "We are open nine to five.".to_owned()]
    );
    let session = app.voice_session_of(&t.key, &sid).await;
    let fc = &session["function_calls"][0];
    assert_eq!(fc["status"], "cancelled", "{fc}");
    app.stop().await;
}

// === 15. Idle timeout ===

async fn an_idle_caller_is_told_goodbye_then_hung_up(backend: Backend) {
    let (app, sim, t) = setup(backend, json!({"idle_timeout_seconds": 5})).await;
    let script = CallerScript::default()
        .silence(Duration::from_secs(60))
        .hang_up();
    let mut live = live_feed(&app);
    let sid = call_in(&app, &sim, &t, "+15551230015", script);
    let call = ended(&sim, &sid).await;

    let s = realtime_session(&app).await;
    assert_clean(&s);
    let goodbye = "I haven't heard anything for a while, so I'll end the call now. Goodbye!";
    assert_eq!(s.said, vec![GREETING.to_owned(), goodbye.to_owned()]);
    assert_line_played_before(&call, StreamCloser::Hangup);
    let log = call_log(&app, &t, &sid).await;
    assert_eq!(log["end_reason"], "idle_timeout", "{log}");
    assert!(
        log["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "idle_timeout"),
        "{log}"
    );
    let done = crate::live::completed_once(&app, &mut live, log["id"].as_str().expect("id")).await;
    assert_eq!(done["outcome"], "completed", "{done}");
    assert_eq!(done["end_reason"], "idle_timeout");
    app.stop().await;
}
