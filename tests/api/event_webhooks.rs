//! Tenant event webhooks: the signing secret and the webhook configuration (admin), the
//! outbox and its delivery (signed, retried, logged, surviving a restart, failing after
//! the last attempt), redelivery, SSRF protection at configuration and at delivery, tenant
//! isolation, and secrets kept out of logs and responses.
//!
//! Receivers are small warp servers on loopback; events are emitted through the notifier
//! handle of the running app (`app.state.actors.notifier`), as the call runtime does.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actors::egress::{SIGNATURE_HEADER, verify};
use actors::ids::TenantId;
use actors::notifier::EventKind;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use warp::Filter;

use crate::helpers::{
    Backend, TestApp, Tripwire, backend_tests, expect_error, logs, metric, spawn_app,
    spawn_app_with,
};

backend_tests!(
    event_webhook_and_signing_secret_admin,
    flaky_receiver_gets_the_same_signed_event_until_it_succeeds,
    an_event_emitted_before_a_restart_is_delivered_after_it,
    exhausted_attempts_fail_and_emit_delivery_failed,
    redelivery_resets_a_delivery_and_waits_for_an_attempt_in_flight,
    private_destinations_are_refused_at_config_and_at_delivery,
    deliveries_are_tenant_scoped_and_scope_checked,
    two_nodes_never_send_the_same_attempt,
);

const DEADLINE: Duration = Duration::from_secs(30);

// === receiver ===

/// What the receiver answers to one request.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Answer this status at once.
    Status(u16),
    /// Hold the request until [`Receiver::release`], then answer this status.
    Hold(u16),
}

/// One request received.
#[derive(Debug, Clone)]
struct Hit {
    signature: String,
    event_id: String,
    event: String,
    idempotency_key: String,
    body: Vec<u8>,
}

/// What the receiver shares with its handler.
struct Shared {
    hits: Mutex<Vec<Hit>>,
    count: watch::Sender<usize>,
    script: Mutex<VecDeque<Step>>,
    default: Mutex<u16>,
    /// One permit per held request to let go.
    release: Semaphore,
}

/// An event-webhook endpoint on loopback answering from a script (then a default status).
struct Receiver {
    url: String,
    shared: Arc<Shared>,
}

impl Receiver {
    async fn start(script: Vec<Step>, default: u16) -> Self {
        let shared = Arc::new(Shared {
            hits: Mutex::default(),
            count: watch::channel(0usize).0,
            script: Mutex::new(VecDeque::from(script)),
            default: Mutex::new(default),
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
                        event_id: header("stateset-event-id"),
                        event: header("stateset-event"),
                        idempotency_key: header("idempotency-key"),
                        body: body.to_vec(),
                    };
                    let step = shared
                        .script
                        .lock()
                        .expect("script")
                        .pop_front()
                        .unwrap_or_else(|| Step::Status(*shared.default.lock().expect("default")));
                    {
                        let mut hits = shared.hits.lock().expect("hits");
                        hits.push(hit);
                        shared.count.send_replace(hits.len());
                    }
                    let status = match step {
                        Step::Status(s) => s,
                        Step::Hold(s) => {
                            if let Ok(permit) = shared.release.acquire().await {
                                permit.forget();
                            }
                            s
                        }
                    };
                    warp::reply::with_status(
                        "ok",
                        warp::http::StatusCode::from_u16(status).expect("status"),
                    )
                }
            });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Self {
            url: format!("http://{addr}/events"),
            shared,
        }
    }

    /// Waits until at least `n` requests arrived; returns them all.
    async fn wait_hits(&self, n: usize) -> Vec<Hit> {
        let mut count = self.shared.count.subscribe();
        tokio::time::timeout(DEADLINE, count.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} requests within the deadline"))
            .expect("receiver running");
        self.hits()
    }

    fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().expect("hits").clone()
    }

    fn set_default(&self, status: u16) {
        *self.shared.default.lock().expect("default") = status;
    }

    fn push(&self, step: Step) {
        self.shared.script.lock().expect("script").push_back(step);
    }

    /// Lets one held request answer.
    fn release(&self) {
        self.shared.release.add_permits(1);
    }
}

// === helpers ===

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).expect("tenant id")
}

/// Configures the tenant's event webhook; returns the response body.
async fn set_webhook(app: &TestApp, tenant_id: &str, body: Value) -> Value {
    let resp = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{tenant_id}/event-webhook"),
        )
        .json(&body)
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 200, "event webhook");
    resp.json().await.expect("json")
}

/// Emits an event for the tenant through the app's notifier; returns the event id.
async fn emit(app: &TestApp, tenant_id: &str, event: EventKind, data: Value) -> String {
    app.state
        .actors
        .notifier
        .emit(&tenant(tenant_id), event, data)
        .await
        .expect("emit")
        .expect("tenant exists")
        .into_string()
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

/// Polls the deliveries listing (`query`) until `done` holds for its `data`; returns it.
async fn wait_deliveries(
    app: &TestApp,
    key: &str,
    query: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let list = get_json(app, key, &format!("/api/v1/webhook-deliveries?{query}")).await;
        let data = list["data"].as_array().cloned().unwrap_or_default();
        if done(&data) {
            return data;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries never reached the expected state: {list}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

// === tests ===

async fn event_webhook_and_signing_secret_admin(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant_id, _) = app.tenant_with_key("Acme").await;
    let path = format!("/api/v1/admin/tenants/{tenant_id}/event-webhook");
    let missing = app.admin(Method::GET, &path).send().await.expect("get");
    expect_error(missing, 404, "not_found").await;

    let created = set_webhook(
        &app,
        &tenant_id,
        json!({"url": "https://hooks.example.com/stateset", "events": ["voice.call.completed", "voice.call.started", "voice.call.started"]}),
    )
    .await;
    assert_eq!(created["url"], "https://hooks.example.com/stateset");
    assert_eq!(
        created["events"],
        json!(["voice.call.completed", "voice.call.started"])
    );
    let secret = created["signing_secret"]
        .as_str()
        .expect("the first webhook creates the secret")
        .to_owned();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 70,
        "{secret}"
    );
    let hint = format!("…{}", &secret[secret.len() - 4..]);
    assert_eq!(created["signing_secret_hint"], hint.as_str());

    // Only the hint afterwards: in the webhook, the tenant and a second change.
    let shown = app
        .admin(Method::GET, &path)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert!(!shown.contains(&secret));
    let shown: Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(shown["signing_secret_hint"], hint.as_str());
    assert!(shown.get("signing_secret").is_none());
    let changed = set_webhook(
        &app,
        &tenant_id,
        json!({"url": "https://hooks.example.com/v2"}),
    )
    .await;
    assert!(changed.get("signing_secret").is_none(), "{changed}");
    assert_eq!(changed["events"], Value::Null);
    let tenant_view = app
        .admin(Method::GET, &format!("/api/v1/admin/tenants/{tenant_id}"))
        .send()
        .await
        .expect("tenant")
        .text()
        .await
        .expect("body");
    assert!(!tenant_view.contains(&secret));
    let tenant_view: Value = serde_json::from_str(&tenant_view).expect("json");
    assert_eq!(tenant_view["signing_secret_hint"], hint.as_str());
    assert_eq!(
        tenant_view["event_webhook"]["url"],
        "https://hooks.example.com/v2"
    );

    // The runtime reads the secret through the tenant actor (webhook tools sign with it).
    let opened = ractor::call_t!(
        app.state.actors.tenant.get().expect("tenant actor"),
        actors::tenant::TenantMsg::SigningSecret,
        5000,
        tenant(&tenant_id)
    )
    .expect("answer")
    .expect("secret");
    assert_eq!(opened, secret.as_bytes());

    // Rotation returns the new secret once.
    let rotate_path = format!("/api/v1/admin/tenants/{tenant_id}/signing-secret");
    let resp = app
        .admin(Method::POST, &rotate_path)
        .send()
        .await
        .expect("rotate");
    assert_eq!(resp.status(), 200);
    let rotated: Value = resp.json().await.expect("json");
    let new_secret = rotated["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(
        rotated["hint"],
        format!("…{}", &new_secret[new_secret.len() - 4..])
    );
    let shown: Value = app
        .admin(Method::GET, &path)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(shown["signing_secret_hint"], rotated["hint"]);

    // Bad input names the field.
    for (body, field, code) in [
        (
            json!({"url": "ftp://hooks.example.com"}),
            "url",
            "invalid_url",
        ),
        (json!({"url": "not a url"}), "url", "invalid_url"),
        (
            json!({"url": "https://h.example.com", "events": ["voice.nope"]}),
            "events",
            "invalid_events",
        ),
        (
            json!({"url": "https://h.example.com", "events": []}),
            "events",
            "invalid_events",
        ),
    ] {
        let resp = app
            .admin(Method::PUT, &path)
            .json(&body)
            .send()
            .await
            .expect("put");
        assert_eq!(expect_error(resp, 400, code).await["field"], field);
    }
    let unknown = app
        .admin(
            Method::PUT,
            "/api/v1/admin/tenants/ten_nobody/event-webhook",
        )
        .json(&json!({"url": "https://hooks.example.com"}))
        .send()
        .await
        .expect("put");
    expect_error(unknown, 404, "not_found").await;

    // Removal.
    let resp = app
        .admin(Method::DELETE, &path)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 204);
    let gone = app.admin(Method::GET, &path).send().await.expect("get");
    expect_error(gone, 404, "not_found").await;

    // Audited, without secrets; and never logged.
    let audit = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/audit-log?tenant_id={tenant_id}"),
        )
        .send()
        .await
        .expect("audit")
        .text()
        .await
        .expect("body");
    for action in [
        "tenant.event_webhook.set",
        "tenant.signing_secret.rotate",
        "tenant.event_webhook.delete",
    ] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
    assert!(!audit.contains(&secret) && !audit.contains(&new_secret));
    let logged = logs().contents();
    assert!(!logged.contains(&secret) && !logged.contains(&new_secret));
    app.stop().await;
}

async fn flaky_receiver_gets_the_same_signed_event_until_it_succeeds(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant_id, key) = app.tenant_with_key("Acme").await;
    let receiver = Receiver::start(vec![Step::Status(500), Step::Status(500)], 200).await;
    let secret =
        set_webhook(&app, &tenant_id, json!({"url": receiver.url})).await["signing_secret"]
            .as_str()
            .expect("secret")
            .to_owned();
    let before = app.metrics().await;
    let event_id = emit(
        &app,
        &tenant_id,
        EventKind::CallStarted,
        json!({"call_id": "call_1", "from": "+15550001111"}),
    )
    .await;

    let hits = receiver.wait_hits(3).await;
    assert_eq!(hits.len(), 3);
    for hit in &hits {
        assert_eq!(
            verify(
                secret.as_bytes(),
                &hit.signature,
                &hit.body,
                now_secs(),
                300
            ),
            Ok(()),
            "every attempt is signed over exactly the bytes sent"
        );
        assert_eq!(hit.event_id, event_id);
        assert_eq!(hit.idempotency_key, event_id);
        assert_eq!(hit.event, "voice.call.started");
        assert_eq!(hit.body, hits[0].body, "the same envelope every time");
    }
    let envelope: Value = serde_json::from_slice(&hits[0].body).expect("json");
    assert_eq!(envelope["id"], event_id.as_str());
    assert_eq!(envelope["event"], "voice.call.started");
    assert_eq!(envelope["tenant_id"], tenant_id.as_str());
    assert_eq!(envelope["api_version"], "2026-11-01");
    assert_eq!(envelope["data"]["call_id"], "call_1");
    assert!(
        actors::time::parse_rfc3339(envelope["created_at"].as_str().expect("created_at")).is_some()
    );

    let data = wait_deliveries(&app, &key, &format!("event_id={event_id}"), |d| {
        d.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(data.len(), 1);
    let delivery = &data[0];
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["last_status_code"], 200);
    assert_eq!(delivery["url"], receiver.url.as_str());
    let id = delivery["id"].as_str().expect("id");
    let detail = get_json(&app, &key, &format!("/api/v1/webhook-deliveries/{id}")).await;
    let log = detail["attempt_log"].as_array().expect("attempt log");
    let codes: Vec<&Value> = log.iter().map(|a| &a["status_code"]).collect();
    assert_eq!(codes, [&json!(500), &json!(500), &json!(200)]);
    let numbers: Vec<&Value> = log.iter().map(|a| &a["attempt"]).collect();
    assert_eq!(numbers, [&json!(1), &json!(2), &json!(3)]);
    assert_eq!(log[0]["error"], "the endpoint answered 500");
    assert_eq!(log[2]["error"], Value::Null);
    assert_eq!(detail["payload"], envelope);
    assert!(detail["delivered_at"].is_string());

    let after = app.metrics().await;
    let delta = |outcome: &str| {
        metric(&after, "webhook_deliveries_total", &[("outcome", outcome)])
            - metric(&before, "webhook_deliveries_total", &[("outcome", outcome)])
    };
    assert!(delta("retry") >= 2.0 && delta("delivered") >= 1.0);
    assert!(after.contains("webhook_delivery_seconds"));
    assert!(after.contains("webhook_outbox_pending"));
    assert!(!logs().contents().contains(&secret));
    app.stop().await;
}

async fn an_event_emitted_before_a_restart_is_delivered_after_it(backend: Backend) {
    // The first app's attempt hangs (a slow endpoint); shutting down must not wait for it,
    // and the claim is handed back, so the restarted app delivers the event.
    let app = spawn_app_with(backend, |raw| {
        raw.set("EVENT_WEBHOOK_TIMEOUT_MS", "60000");
    })
    .await;
    let (tenant_id, key) = app.tenant_with_key("Acme").await;
    let receiver = Receiver::start(vec![Step::Hold(200)], 200).await;
    set_webhook(&app, &tenant_id, json!({"url": receiver.url})).await;
    let event_id = emit(
        &app,
        &tenant_id,
        EventKind::CallCompleted,
        json!({"call_id": "call_9"}),
    )
    .await;
    receiver.wait_hits(1).await;
    let app = app.restart_with(|_| {}).await;
    let hits = receiver.wait_hits(2).await;
    assert_eq!(hits[1].event_id, event_id);
    assert_eq!(hits[1].body, hits[0].body);
    let data = wait_deliveries(&app, &key, &format!("event_id={event_id}"), |d| {
        d.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(
        data.len(),
        1,
        "one delivery, delivered once the app is back"
    );
    receiver.release();
    app.stop().await;
}

async fn exhausted_attempts_fail_and_emit_delivery_failed(backend: Backend) {
    let app = spawn_app_with(backend, |raw| raw.set("EVENT_WEBHOOK_MAX_ATTEMPTS", "2")).await;
    let (tenant_id, key) = app.tenant_with_key("Acme").await;
    let receiver = Receiver::start(Vec::new(), 503).await;
    set_webhook(&app, &tenant_id, json!({"url": receiver.url})).await;
    let event_id = emit(
        &app,
        &tenant_id,
        EventKind::CallEscalated,
        json!({"queue": "billing"}),
    )
    .await;

    // The original fails after two attempts; the failure notice is an event of its own,
    // delivered (and here failing) the same way, and never notified about in turn.
    let data = wait_deliveries(&app, &key, "", |d| {
        d.len() == 2 && d.iter().all(|d| d["status"] == "failed")
    })
    .await;
    let original = data
        .iter()
        .find(|d| d["event_id"] == event_id.as_str())
        .expect("the original delivery");
    assert_eq!(original["attempts"], 2);
    assert_eq!(original["last_status_code"], 503);
    let notice = data
        .iter()
        .find(|d| d["event"] == "voice.webhook.delivery_failed")
        .expect("a delivery_failed event");
    let id = notice["id"].as_str().expect("id");
    let detail = get_json(&app, &key, &format!("/api/v1/webhook-deliveries/{id}")).await;
    let payload = &detail["payload"];
    assert_eq!(payload["event"], "voice.webhook.delivery_failed");
    assert_eq!(payload["data"]["delivery_id"], original["id"]);
    assert_eq!(payload["data"]["event_id"], event_id.as_str());
    assert_eq!(payload["data"]["event"], "voice.call.escalated");
    assert_eq!(payload["data"]["attempts"], 2);
    assert_eq!(payload["data"]["last_status_code"], 503);
    assert_eq!(receiver.hits().len(), 4);
    let filtered = get_json(
        &app,
        &key,
        "/api/v1/webhook-deliveries?event=voice.webhook.delivery_failed&status=failed",
    )
    .await;
    assert_eq!(filtered["total"], 1);
    app.stop().await;
}

async fn redelivery_resets_a_delivery_and_waits_for_an_attempt_in_flight(backend: Backend) {
    let app = spawn_app_with(backend, |raw| raw.set("EVENT_WEBHOOK_MAX_ATTEMPTS", "1")).await;
    let (tenant_id, key) = app.tenant_with_key("Acme").await;
    let receiver = Receiver::start(Vec::new(), 500).await;
    set_webhook(
        &app,
        &tenant_id,
        json!({"url": receiver.url, "events": ["voice.callback.created"]}),
    )
    .await;
    let event_id = emit(
        &app,
        &tenant_id,
        EventKind::CallbackCreated,
        json!({"task": "cb_1"}),
    )
    .await;
    let data = wait_deliveries(&app, &key, &format!("event_id={event_id}"), |d| {
        d.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    let id = data[0]["id"].as_str().expect("id").to_owned();
    let redeliver = format!("/api/v1/webhook-deliveries/{id}/redeliver");

    // While an attempt is in flight, a redelivery is refused.
    receiver.push(Step::Hold(500));
    let resp = app
        .tenant(Method::POST, &redeliver, &key)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.expect("json");
    assert_eq!(accepted["status"], "pending");
    assert_eq!(accepted["attempts"], 1, "attempts are kept");
    receiver.wait_hits(2).await;
    let busy = app
        .tenant(Method::POST, &redeliver, &key)
        .send()
        .await
        .expect("post");
    expect_error(busy, 409, "conflict").await;
    receiver.release();
    wait_deliveries(&app, &key, &format!("event_id={event_id}"), |d| {
        d.first()
            .is_some_and(|d| d["status"] == "failed" && d["attempts"] == 2)
    })
    .await;

    // Once the endpoint is fixed, a redelivery succeeds.
    receiver.set_default(204);
    let resp = app
        .tenant(Method::POST, &redeliver, &key)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 202);
    let data = wait_deliveries(&app, &key, &format!("event_id={event_id}"), |d| {
        d.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(data[0]["attempts"], 3);
    let detail = get_json(&app, &key, &format!("/api/v1/webhook-deliveries/{id}")).await;
    let codes: Vec<&Value> = detail["attempt_log"]
        .as_array()
        .expect("log")
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(500), &json!(204)]);
    let hits = receiver.hits();
    assert!(
        hits.iter()
            .all(|h| h.event_id == event_id && h.body == hits[0].body)
    );
    app.stop().await;
}

async fn private_destinations_are_refused_at_config_and_at_delivery(backend: Backend) {
    let app = spawn_app_with(backend, |raw| {
        raw.set("OUTBOUND_ALLOW_PRIVATE", "false");
        raw.set("EVENT_WEBHOOK_MAX_ATTEMPTS", "1");
    })
    .await;
    let (tenant_id, key) = app.tenant_with_key("Acme").await;
    let mut tripwire = Tripwire::start().await;
    let port = tripwire.port;
    let path = format!("/api/v1/admin/tenants/{tenant_id}/event-webhook");
    for url in [
        format!("http://127.0.0.1:{port}/events"),
        format!("https://127.0.0.1:{port}/events"),
        "https://10.0.0.1/events".to_owned(),
        "https://192.168.1.20/events".to_owned(),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
        format!("https://[::1]:{port}/events"),
        format!("https://[::ffff:127.0.0.1]:{port}/events"),
        "https://[fd00:ec2::254]/".to_owned(),
        "https://user:secret@hooks.example.com/".to_owned(),
        "http://hooks.example.com/events".to_owned(),
    ] {
        let resp = app
            .admin(Method::PUT, &path)
            .json(&json!({"url": url}))
            .send()
            .await
            .expect("put");
        let err = expect_error(resp, 400, "invalid_url").await;
        assert_eq!(err["field"], "url", "{url}");
    }
    let missing = app.admin(Method::GET, &path).send().await.expect("get");
    expect_error(missing, 404, "not_found").await;

    // A name is only resolved when used: accepted here, refused at delivery.
    let url = format!("https://localhost:{port}/events");
    set_webhook(
        &app,
        &tenant_id,
        json!({"url": url, "events": ["voice.call.started"]}),
    )
    .await;
    let event_id = emit(&app, &tenant_id, EventKind::CallStarted, json!({})).await;
    let data = wait_deliveries(&app, &key, &format!("event_id={event_id}"), |d| {
        d.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    assert_eq!(
        data[0]["last_error"],
        "destination localhost is not a public address"
    );
    assert_eq!(data[0]["last_status_code"], Value::Null);
    let id = data[0]["id"].as_str().expect("id");
    let detail = get_json(&app, &key, &format!("/api/v1/webhook-deliveries/{id}")).await;
    assert_eq!(
        detail["attempt_log"][0]["error"],
        "destination localhost is not a public address"
    );
    tripwire.assert_untouched().await;
    app.stop().await;
}

async fn deliveries_are_tenant_scoped_and_scope_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant_a, key_a) = app.tenant_with_key("Acme").await;
    let (_tenant_b, key_b) = app.tenant_with_key("Globex").await;
    let receiver = Receiver::start(Vec::new(), 200).await;
    set_webhook(&app, &tenant_a, json!({"url": receiver.url})).await;
    let event_id = emit(
        &app,
        &tenant_a,
        EventKind::SessionEvaluated,
        json!({"score": 0.9}),
    )
    .await;
    let data = wait_deliveries(&app, &key_a, "", |d| {
        d.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;
    let id = data[0]["id"].as_str().expect("id").to_owned();

    // Tenant B sees nothing of tenant A's.
    let list = get_json(&app, &key_b, "/api/v1/webhook-deliveries").await;
    assert_eq!(list["total"], 0);
    assert_eq!(list["data"], json!([]));
    let list = get_json(
        &app,
        &key_b,
        &format!("/api/v1/webhook-deliveries?event_id={event_id}"),
    )
    .await;
    assert_eq!(list["total"], 0);
    let get = app
        .tenant(
            Method::GET,
            &format!("/api/v1/webhook-deliveries/{id}"),
            &key_b,
        )
        .send()
        .await
        .expect("get");
    expect_error(get, 404, "not_found").await;
    let redeliver = app
        .tenant(
            Method::POST,
            &format!("/api/v1/webhook-deliveries/{id}/redeliver"),
            &key_b,
        )
        .send()
        .await
        .expect("post");
    expect_error(redeliver, 404, "not_found").await;
    let still = get_json(&app, &key_a, &format!("/api/v1/webhook-deliveries/{id}")).await;
    assert_eq!(still["status"], "delivered", "tenant B changed nothing");

    // Scopes: reading needs read or operator, redelivering runtime or operator.
    let (_, runtime_only) = app.create_key(&tenant_a, &["runtime"]).await;
    let (_, read_only) = app.create_key(&tenant_a, &["read"]).await;
    let (_, operator) = app.create_key(&tenant_a, &["operator"]).await;
    let resp = app
        .tenant(Method::GET, "/api/v1/webhook-deliveries", &runtime_only)
        .send()
        .await
        .expect("get");
    expect_error(resp, 403, "insufficient_scope").await;
    let resp = app
        .tenant(
            Method::POST,
            &format!("/api/v1/webhook-deliveries/{id}/redeliver"),
            &read_only,
        )
        .send()
        .await
        .expect("post");
    expect_error(resp, 403, "insufficient_scope").await;
    assert_eq!(
        get_json(&app, &operator, "/api/v1/webhook-deliveries").await["total"],
        1
    );
    for (query, field) in [
        ("status=lost", "status"),
        ("event_id=nope", "event_id"),
        ("limit=0", "limit"),
        ("colour=red", "colour"),
    ] {
        let resp = app
            .tenant(
                Method::GET,
                &format!("/api/v1/webhook-deliveries?{query}"),
                &key_a,
            )
            .send()
            .await
            .expect("get");
        assert_eq!(
            expect_error(resp, 400, "invalid_query").await["field"],
            field
        );
    }
    let unknown = app
        .tenant(
            Method::GET,
            "/api/v1/webhook-deliveries/whd_nothing",
            &key_a,
        )
        .send()
        .await
        .expect("get");
    expect_error(unknown, 404, "not_found").await;
    app.stop().await;
}

async fn two_nodes_never_send_the_same_attempt(backend: Backend) {
    // Both nodes claim from the same outbox on every tick and every wake-up; a delivery is
    // claimed by one of them only, so each is attempted exactly once.
    let node_a = spawn_app(backend).await;
    let node_b = node_a.another_node(|_| {}).await;
    let (tenant_id, key) = node_a.tenant_with_key("Acme").await;
    let receiver = Receiver::start(Vec::new(), 200).await;
    set_webhook(&node_a, &tenant_id, json!({"url": receiver.url})).await;
    const EVENTS: usize = 24;
    let mut emitted = Vec::new();
    for i in 0..EVENTS {
        let node = if i % 2 == 0 { &node_a } else { &node_b };
        emitted.push(emit(node, &tenant_id, EventKind::CallCompleted, json!({"n": i})).await);
    }
    let data = wait_deliveries(&node_b, &key, "limit=200", |d| {
        d.len() == EVENTS && d.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    assert!(
        data.iter().all(|d| d["attempts"] == 1),
        "each delivery was claimed once: {data:?}"
    );
    let hits = receiver.hits();
    assert_eq!(hits.len(), EVENTS);
    let mut received: Vec<String> = hits.into_iter().map(|h| h.event_id).collect();
    received.sort();
    emitted.sort();
    assert_eq!(received, emitted);
    node_b.stop().await;
    node_a.stop().await;
}
