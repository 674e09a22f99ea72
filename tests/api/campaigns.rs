//! Outbound campaigns against the carrier simulator: validation and tenant isolation, the
//! status machine, pacing (calls per minute measured at the carrier) and `max_concurrent`
//! (the carrier's live calls sampled), retries with their spacing, do-not-call contacts
//! skipped, `voice.campaign.completed` once, and a restart mid-campaign that dials nobody
//! twice.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CallSnapshot, CalleeBehaviour, CarrierConfig, CarrierSim, CarrierSimHandle,
};

use crate::helpers::{Backend, Tele, TestApp, backend_tests, expect_error, spawn_app_with};

backend_tests!(
    campaigns_are_validated_and_tenant_scoped,
    a_campaign_paces_its_calls_over_the_minute,
    a_campaign_never_exceeds_max_concurrent,
    the_tenant_limit_holds_and_its_refusals_are_tried_again,
    no_answers_are_retried_with_the_spacing_and_dnc_contacts_skipped,
    a_restarted_node_resumes_the_campaign_without_dialing_twice,
    two_nodes_share_a_campaign_and_each_attempt_is_claimed_once,
    pause_holds_new_attempts_until_resume_and_cancel_stops_them,
    nobody_is_dialed_outside_the_calling_windows,
    a_campaign_its_calls_cannot_be_placed_for_is_paused_with_the_reason,
);

const NUMBER: &str = "+14155550100";

async fn setup(
    backend: Backend,
    carrier: CarrierConfig,
    extra: impl FnOnce(&mut stateset_voice::config::RawSettings) + Send,
) -> (TestApp, CarrierSimHandle, Tele) {
    let sim = CarrierSim::start(carrier).await.expect("carrier sim");
    let base = sim.base_url();
    let app = spawn_app_with(backend, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base);
        extra(raw);
    })
    .await;
    let t = app
        .telephony_tenant("Acme", NUMBER, json!({"max_concurrent_calls": 100}))
        .await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    (app, sim, t)
}

fn busy_carrier(ring: Duration) -> CarrierConfig {
    CarrierConfig {
        default_callee: CalleeBehaviour::Busy,
        ring_time: ring,
        ..CarrierConfig::default()
    }
}

fn phone(i: usize) -> String {
    format!("+1555300{i:04}")
}

async fn create(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.tenant(Method::POST, "/api/v1/campaigns", key)
        .json(&body)
        .send()
        .await
        .expect("create campaign")
}

async fn created(app: &TestApp, key: &str, body: Value) -> Value {
    let resp = create(app, key, body).await;
    assert_eq!(resp.status(), 201);
    resp.json().await.expect("json")
}

async fn get(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    app.tenant(Method::GET, path, key)
        .send()
        .await
        .expect("request")
}

async fn post(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    app.tenant(Method::POST, path, key)
        .send()
        .await
        .expect("request")
}

/// Polls the campaign until its status is `status` (bounded).
async fn await_status(app: &TestApp, key: &str, id: &str, status: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let c: Value = get(app, key, &format!("/api/v1/campaigns/{id}"))
            .await
            .json()
            .await
            .expect("json");
        if c["status"] == status {
            return c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "campaign never became {status}: {c}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn contacts(app: &TestApp, key: &str, id: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut offset = 0;
    loop {
        let page: Value = get(
            app,
            key,
            &format!("/api/v1/campaigns/{id}/contacts?limit=200&offset={offset}"),
        )
        .await
        .json()
        .await
        .expect("json");
        let data = page["data"].as_array().expect("data").clone();
        offset += data.len();
        let done = data.is_empty() || offset as i64 >= page["total"].as_i64().expect("total");
        all.extend(data);
        if done {
            return all;
        }
    }
}

/// Outbound calls the carrier saw, per number.
fn dialed(sim: &CarrierSimHandle) -> HashMap<String, usize> {
    let mut by_number = HashMap::new();
    for c in sim.calls() {
        *by_number.entry(c.to.clone()).or_insert(0) += 1;
    }
    by_number
}

async fn campaign_events(app: &TestApp) -> Vec<Value> {
    use sqlx::Connection;
    const SQL: &str = "SELECT payload FROM webhook_events WHERE event = 'voice.campaign.completed'";
    let payloads: Vec<String> = if app.database_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
            .await
            .expect("sqlite");
        sqlx::query_scalar(SQL)
            .fetch_all(&mut conn)
            .await
            .expect("events")
    } else {
        let mut conn = sqlx::PgConnection::connect(&app.database_url)
            .await
            .expect("postgres");
        sqlx::query_scalar(SQL)
            .fetch_all(&mut conn)
            .await
            .expect("events")
    };
    payloads
        .iter()
        .map(|p| serde_json::from_str::<Value>(p).expect("payload")["data"].clone())
        .collect()
}

fn base_campaign(contacts: Vec<Value>, cpm: i64, max_concurrent: i64) -> Value {
    json!({
        "name": "Renewals",
        "contacts": contacts,
        "pacing": {"calls_per_minute": cpm, "max_concurrent": max_concurrent},
    })
}

async fn campaigns_are_validated_and_tenant_scoped(backend: Backend) {
    let (app, _sim, t) = setup(backend, busy_carrier(Duration::from_millis(50)), |_| {}).await;
    let (_, other) = app.tenant_with_key("Globex").await;
    let one = vec![json!({"phone": phone(1)})];

    for (body, field) in [
        (
            base_campaign(
                vec![json!({"phone": phone(1)}), json!({"phone": "555-0100"})],
                10,
                1,
            ),
            "contacts[1].phone",
        ),
        (
            base_campaign(
                vec![json!({"phone": phone(1)}), json!({"phone": phone(1)})],
                10,
                1,
            ),
            "contacts[1].phone",
        ),
        (base_campaign(vec![], 10, 1), "contacts"),
        (base_campaign(one.clone(), 0, 1), "pacing.calls_per_minute"),
        (
            base_campaign(one.clone(), 601, 1),
            "pacing.calls_per_minute",
        ),
        (base_campaign(one.clone(), 10, 0), "pacing.max_concurrent"),
        (
            base_campaign(vec![json!({"phone": phone(1), "variables": [1]})], 10, 1),
            "contacts[0].variables",
        ),
    ] {
        let err = expect_error(create(&app, &t.key, body).await, 422, "validation_failed").await;
        assert_eq!(err["field"], field, "{err}");
    }
    let mut bad_retry = base_campaign(one.clone(), 10, 1);
    bad_retry["retry"] = json!({"busy": {"max_attempts": 0, "spacing_seconds": 1}});
    let err = expect_error(
        create(&app, &t.key, bad_retry).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(err["field"], "retry.busy.max_attempts");
    let mut bad_window = base_campaign(one.clone(), 10, 1);
    bad_window["calling_windows"] = json!({"timezone": "Mars/Olympus", "windows": [{"days": ["mon"], "open": "09:00", "close": "17:00"}]});
    let err = expect_error(
        create(&app, &t.key, bad_window).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(err["field"], "calling_windows.timezone");
    // Nothing half-written: no campaign exists.
    let list: Value = get(&app, &t.key, "/api/v1/campaigns")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["total"], 0);

    let mut body = base_campaign(
        vec![
            json!({"phone": phone(1), "variables": {"first_name": "Ada"}, "external_id": "crm-1"}),
        ],
        10,
        1,
    );
    body["machine_detection"] = json!({"action": "voicemail"});
    body["calling_windows"] = json!({"timezone": "America/New_York", "windows": [
        {"days": ["mon"], "open": "09:00", "close": "09:01"}]});
    let c = created(&app, &t.key, body).await;
    assert_eq!(c["status"], "draft");
    assert_eq!(c["machine_detection"]["action"], "voicemail");
    assert_eq!(c["progress"]["pending"], 1);
    let id = c["id"].as_str().expect("id").to_owned();

    // Another tenant sees nothing and changes nothing.
    for path in [
        format!("/api/v1/campaigns/{id}"),
        format!("/api/v1/campaigns/{id}/contacts"),
    ] {
        expect_error(get(&app, &other, &path).await, 404, "not_found").await;
    }
    for action in ["pause", "resume", "cancel"] {
        expect_error(
            post(&app, &other, &format!("/api/v1/campaigns/{id}/{action}")).await,
            404,
            "not_found",
        )
        .await;
    }
    let theirs: Value = get(&app, &other, "/api/v1/campaigns")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(theirs["total"], 0);
    let ours: Value = get(&app, &t.key, "/api/v1/campaigns")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(ours["total"], 1);

    // The status machine.
    let path = |a: &str| format!("/api/v1/campaigns/{id}/{a}");
    expect_error(
        post(&app, &t.key, &path("pause")).await,
        409,
        "invalid_transition",
    )
    .await;
    let r: Value = post(&app, &t.key, &path("resume"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["status"], "running");
    expect_error(
        post(&app, &t.key, &path("resume")).await,
        409,
        "invalid_transition",
    )
    .await;
    let r: Value = post(&app, &t.key, &path("pause"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["status"], "paused");
    let r: Value = post(&app, &t.key, &path("cancel"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["status"], "cancelled");
    for a in ["pause", "resume", "cancel"] {
        expect_error(
            post(&app, &t.key, &path(a)).await,
            409,
            "invalid_transition",
        )
        .await;
    }
    let cs = contacts(&app, &t.key, &id).await;
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0]["variables"]["first_name"], "Ada");
    assert_eq!(cs[0]["external_id"], "crm-1");
    // Outside its one-minute window the campaign dialed nobody (almost surely; the window
    // is Monday 09:00 New York).
    expect_error(
        get(&app, &t.key, "/api/v1/campaigns/cmp_nope").await,
        404,
        "not_found",
    )
    .await;
    app.stop().await;
}

async fn a_campaign_paces_its_calls_over_the_minute(backend: Backend) {
    let (app, sim, t) = setup(backend, busy_carrier(Duration::from_millis(50)), |_| {}).await;
    let n = 200;
    let list: Vec<Value> = (0..n).map(|i| json!({"phone": phone(i)})).collect();
    let mut body = base_campaign(list, 600, 50);
    body["start"] = json!(true);
    let c = created(&app, &t.key, body).await;
    let id = c["id"].as_str().expect("id");
    let done = await_status(&app, &t.key, id, "completed", Duration::from_secs(60)).await;
    assert_eq!(done["progress"]["exhausted"], n, "{done}");
    assert_eq!(done["progress"]["outcomes"]["busy"], n, "{done}");
    let mut calls: Vec<CallSnapshot> = sim.calls();
    assert_eq!(calls.len(), n);
    assert!(dialed(&sim).values().all(|&k| k == 1));
    calls.sort_by_key(|c| c.created_at);
    let span = calls[n - 1].created_at - calls[0].created_at;
    let per_minute = (n - 1) as f64 * 60_000.0 / span.num_milliseconds() as f64;
    assert!(
        (540.0..=660.0).contains(&per_minute),
        "measured {per_minute:.1} calls per minute over {span}"
    );
    // Smooth: no second holds much more than its share (10 calls).
    let start = calls[0].created_at;
    let mut per_second: HashMap<i64, usize> = HashMap::new();
    for c in &calls {
        *per_second
            .entry((c.created_at - start).num_milliseconds() / 1000)
            .or_insert(0) += 1;
    }
    assert!(
        per_second.values().all(|&k| k <= 13),
        "bursty: {per_second:?}"
    );
    let events = campaign_events(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["campaign_id"], id);
    assert_eq!(events[0]["exhausted"], n);
    app.stop().await;
}

async fn a_campaign_never_exceeds_max_concurrent(backend: Backend) {
    let (app, sim, t) = setup(backend, busy_carrier(Duration::from_millis(400)), |_| {}).await;
    let n = 16;
    let list: Vec<Value> = (0..n).map(|i| json!({"phone": phone(i)})).collect();
    let mut body = base_campaign(list, 600, 2);
    body["start"] = json!(true);
    let c = created(&app, &t.key, body).await;
    let id = c["id"].as_str().expect("id").to_owned();
    let mut most = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let live = sim.calls().iter().filter(|c| !c.finished).count();
        most = most.max(live);
        let status: Value = get(&app, &t.key, &format!("/api/v1/campaigns/{id}"))
            .await
            .json()
            .await
            .expect("json");
        if status["status"] == "completed" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(most <= 2, "{most} calls live at once");
    assert_eq!(most, 2, "the campaign used its concurrency");
    assert_eq!(sim.calls().len(), n);
    app.stop().await;
}

async fn no_answers_are_retried_with_the_spacing_and_dnc_contacts_skipped(backend: Backend) {
    let (app, sim, t) = setup(backend, busy_carrier(Duration::from_millis(50)), |_| {}).await;
    let (ring, listed, busy) = (phone(1), phone(2), phone(3));
    sim.set_callee(
        &ring,
        CalleeBehaviour::NoAnswerAfter(Duration::from_millis(100)),
    );
    let resp = app
        .tenant(Method::POST, "/api/v1/dnc", &t.key)
        .json(&json!({"number": listed}))
        .send()
        .await
        .expect("dnc");
    assert_eq!(resp.status(), 201);
    let mut body = base_campaign(
        vec![
            json!({"phone": ring, "variables": {"plan": "gold"}}),
            json!({"phone": listed}),
            json!({"phone": busy}),
        ],
        120,
        3,
    );
    body["retry"] = json!({"no_answer": {"max_attempts": 3, "spacing_seconds": 1}});
    let c = created(&app, &t.key, body).await;
    let id = c["id"].as_str().expect("id").to_owned();
    // Draft: nothing is dialed until it is started.
    assert!(sim.calls().is_empty());
    let r: Value = post(&app, &t.key, &format!("/api/v1/campaigns/{id}/resume"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["status"], "running");
    let done = await_status(&app, &t.key, &id, "completed", Duration::from_secs(30)).await;
    assert_eq!(done["progress"]["skipped"], 1, "{done}");
    assert_eq!(done["progress"]["exhausted"], 2, "{done}");
    assert_eq!(done["progress"]["outcomes"]["no_answer"], 1, "{done}");
    assert_eq!(done["progress"]["outcomes"]["busy"], 1, "{done}");

    let seen = dialed(&sim);
    assert_eq!(seen.get(&ring), Some(&3), "{seen:?}");
    assert_eq!(seen.get(&busy), Some(&1), "{seen:?}");
    assert_eq!(
        seen.get(&listed),
        None,
        "a do-not-call number is never dialed"
    );

    let cs = contacts(&app, &t.key, &id).await;
    let by_phone = |p: &str| {
        cs.iter()
            .find(|c| c["phone"] == p)
            .expect("contact")
            .clone()
    };
    let rung = by_phone(&ring);
    assert_eq!(rung["state"], "exhausted");
    let attempts = rung["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3);
    for pair in attempts.windows(2) {
        assert_eq!(pair[0]["outcome"], "no_answer");
        let settled = actors::time::parse_rfc3339(pair[0]["settled_at"].as_str().expect("settled"))
            .expect("time");
        let next = actors::time::parse_rfc3339(pair[1]["started_at"].as_str().expect("started"))
            .expect("time");
        assert!(next - settled >= 1_000, "spacing kept: {pair:?}");
        assert!(pair[0]["next_attempt_at"].is_string());
    }
    // Each attempt's call log carries the campaign, the contact and the attempt.
    let log = app
        .call_log(&t.key, attempts[1]["call_id"].as_str().expect("call"))
        .await;
    assert_eq!(log["metadata"]["campaign_id"], id.as_str());
    assert_eq!(log["metadata"]["campaign_contact_id"], rung["id"]);
    assert_eq!(log["metadata"]["campaign_attempt"], 2);
    assert_eq!(log["metadata"]["variables"]["plan"], "gold");
    let skipped = by_phone(&listed);
    assert_eq!(skipped["state"], "skipped");
    assert_eq!(skipped["skip_rule"], "do_not_call");
    assert_eq!(skipped["attempts"][0]["outcome"], "refused");
    let events = campaign_events(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["skipped"], 1);
    app.stop().await;
}

async fn a_restarted_node_resumes_the_campaign_without_dialing_twice(backend: Backend) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let bind = format!("127.0.0.1:{port}");
    let settings = move |raw: &mut stateset_voice::config::RawSettings| {
        raw.set("BIND_ADDR", bind.clone());
        raw.set("NODE_ID", "campaign-node");
    };
    let (app, sim, t) = setup(
        backend,
        busy_carrier(Duration::from_millis(300)),
        settings.clone(),
    )
    .await;
    let n = 12;
    let list: Vec<Value> = (0..n).map(|i| json!({"phone": phone(i)})).collect();
    let mut body = base_campaign(list, 240, 3);
    body["start"] = json!(true);
    let c = created(&app, &t.key, body).await;
    let id = c["id"].as_str().expect("id").to_owned();
    let mut created_calls = sim.subscribe_new_calls();
    for _ in 0..4 {
        tokio::time::timeout(Duration::from_secs(15), created_calls.recv())
            .await
            .expect("calls are placed")
            .expect("call");
    }
    // Stop mid-campaign and start again on the same database.
    let carrier = sim.base_url();
    let app = app
        .restart_with(move |raw| {
            settings(raw);
            raw.set("TWILIO_API_BASE_URL", carrier);
        })
        .await;
    let done = await_status(&app, &t.key, &id, "completed", Duration::from_secs(60)).await;
    assert_eq!(done["progress"]["exhausted"], n, "{done}");
    assert_eq!(done["progress"]["outcomes"]["busy"], n, "{done}");
    let seen = dialed(&sim);
    assert_eq!(seen.len(), n, "{seen:?}");
    assert!(
        seen.values().all(|&k| k == 1),
        "someone was dialed twice: {seen:?}"
    );
    let cs = contacts(&app, &t.key, &id).await;
    assert!(
        cs.iter()
            .all(|c| c["attempts"].as_array().expect("attempts").len() == 1),
        "{cs:?}"
    );
    assert_eq!(campaign_events(&app).await.len(), 1);
    app.stop().await;
}

async fn the_tenant_limit_holds_and_its_refusals_are_tried_again(backend: Backend) {
    let (app, sim, t) = setup(backend, busy_carrier(Duration::from_millis(300)), |_| {}).await;
    app.admin(
        Method::PATCH,
        &format!("/api/v1/admin/tenants/{}", t.tenant_id),
    )
    .json(&json!({"max_concurrent_calls": 1}))
    .send()
    .await
    .expect("patch tenant")
    .error_for_status()
    .expect("tenant limit set");
    let n = 5;
    let list: Vec<Value> = (0..n).map(|i| json!({"phone": phone(i)})).collect();
    // The campaign would allow 5 at once; the tenant allows 1.
    let mut body = base_campaign(list, 600, 5);
    body["start"] = json!(true);
    let c = created(&app, &t.key, body).await;
    let id = c["id"].as_str().expect("id").to_owned();
    let mut most = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let done = loop {
        most = most.max(sim.calls().iter().filter(|c| !c.finished).count());
        let status: Value = get(&app, &t.key, &format!("/api/v1/campaigns/{id}"))
            .await
            .json()
            .await
            .expect("json");
        if status["status"] == "completed" {
            break status;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(most, 1, "the tenant's limit held");
    // Every contact was dialed once; a refusal for the limit was not an attempt.
    assert_eq!(done["progress"]["attempts"], n, "{done}");
    assert_eq!(done["progress"]["outcomes"]["busy"], n, "{done}");
    assert!(dialed(&sim).values().all(|&k| k == 1));
    app.stop().await;
}

async fn two_nodes_share_a_campaign_and_each_attempt_is_claimed_once(backend: Backend) {
    let (app, sim, t) = setup(backend, busy_carrier(Duration::from_millis(50)), |_| {}).await;
    let carrier = sim.base_url();
    let second = app
        .another_node(move |raw| raw.set("TWILIO_API_BASE_URL", carrier))
        .await;
    let n = 40;
    let list: Vec<Value> = (0..n).map(|i| json!({"phone": phone(i)})).collect();
    let mut body = base_campaign(list, 600, 20);
    body["start"] = json!(true);
    // Created on one node, dialed by both.
    let c = created(&second, &t.key, body).await;
    let id = c["id"].as_str().expect("id");
    let done = await_status(&app, &t.key, id, "completed", Duration::from_secs(60)).await;
    assert_eq!(done["progress"]["attempts"], n, "{done}");
    let seen = dialed(&sim);
    assert_eq!(seen.len(), n);
    assert!(seen.values().all(|&k| k == 1), "{seen:?}");
    // The pacing is the campaign's, not each node's.
    let mut calls = sim.calls();
    calls.sort_by_key(|c| c.created_at);
    let span = calls[n - 1].created_at - calls[0].created_at;
    let per_minute = (n - 1) as f64 * 60_000.0 / span.num_milliseconds() as f64;
    assert!(per_minute <= 660.0, "{per_minute:.1} calls per minute");
    assert_eq!(campaign_events(&app).await.len(), 1);
    second.stop().await;
    app.stop().await;
}

/// Waits for the next call the carrier creates, up to `within`.
async fn next_call(
    calls: &mut tokio::sync::broadcast::Receiver<String>,
    within: Duration,
) -> Option<String> {
    tokio::time::timeout(within, calls.recv())
        .await
        .ok()
        .and_then(Result::ok)
}

async fn pause_holds_new_attempts_until_resume_and_cancel_stops_them(backend: Backend) {
    let (app, sim, t) = setup(backend, busy_carrier(Duration::from_millis(50)), |_| {}).await;
    let mut calls = sim.subscribe_new_calls();
    let n = 8;
    let list: Vec<Value> = (0..n).map(|i| json!({"phone": phone(i)})).collect();
    let mut body = base_campaign(list, 300, 1);
    body["start"] = json!(true);
    let c = created(&app, &t.key, body).await;
    let id = c["id"].as_str().expect("id").to_owned();
    let path = |a: &str| format!("/api/v1/campaigns/{id}/{a}");
    assert!(
        next_call(&mut calls, Duration::from_secs(10))
            .await
            .is_some()
    );
    let paused: Value = post(&app, &t.key, &path("pause"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(paused["status"], "paused");
    // An attempt claimed just before the pause may still be placed; then nothing.
    let _ = next_call(&mut calls, Duration::from_millis(300)).await;
    let before = sim.calls().len();
    assert!(
        next_call(&mut calls, Duration::from_secs(1))
            .await
            .is_none(),
        "a paused campaign dialed"
    );
    assert!(before < n);
    let resumed: Value = post(&app, &t.key, &path("resume"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(resumed["status"], "running");
    assert!(
        next_call(&mut calls, Duration::from_secs(10))
            .await
            .is_some()
    );
    let cancelled: Value = post(&app, &t.key, &path("cancel"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(cancelled["status"], "cancelled");
    let _ = next_call(&mut calls, Duration::from_millis(300)).await;
    assert!(
        next_call(&mut calls, Duration::from_secs(1))
            .await
            .is_none(),
        "a cancelled campaign dialed"
    );
    let after: Value = get(&app, &t.key, &format!("/api/v1/campaigns/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(after["status"], "cancelled", "it never completes");
    assert!(
        after["progress"]["pending"].as_i64().expect("pending") > 0,
        "{after}"
    );
    assert!(sim.calls().len() < n);
    assert!(dialed(&sim).values().all(|&k| k == 1));
    app.stop().await;
}

async fn nobody_is_dialed_outside_the_calling_windows(backend: Backend) {
    use chrono::Datelike;
    let (app, sim, t) = setup(backend, busy_carrier(Duration::from_millis(50)), |_| {}).await;
    let mut calls = sim.subscribe_new_calls();
    // Open only on a day that is neither today nor tomorrow in UTC.
    let day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        [(chrono::Utc::now().weekday().num_days_from_monday() as usize + 3) % 7];
    let mut body = base_campaign(vec![json!({"phone": phone(1)})], 600, 1);
    body["start"] = json!(true);
    body["calling_windows"] =
        json!({"timezone": "UTC", "windows": [{"days": [day], "open": "00:00", "close": "24:00"}]});
    let c = created(&app, &t.key, body).await;
    let id = c["id"].as_str().expect("id").to_owned();
    assert!(
        next_call(&mut calls, Duration::from_secs(1))
            .await
            .is_none(),
        "dialed outside the window"
    );
    let now: Value = get(&app, &t.key, &format!("/api/v1/campaigns/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(now["status"], "running");
    assert_eq!(now["progress"]["pending"], 1, "{now}");
    assert_eq!(now["progress"]["attempts"], 0, "{now}");
    app.stop().await;
}

/// A campaign whose calls its own configuration refuses (here `voicemail` on a version
/// without a voicemail message) is paused with the reason, dials nobody and counts no
/// attempt; resuming clears the reason (and pauses it again while nothing is fixed).
async fn a_campaign_its_calls_cannot_be_placed_for_is_paused_with_the_reason(backend: Backend) {
    let (app, sim, t) = setup(backend, busy_carrier(Duration::from_millis(50)), |_| {}).await;
    let mut body = base_campaign(
        vec![json!({"phone": phone(1)}), json!({"phone": phone(2)})],
        120,
        2,
    );
    body["machine_detection"] = json!({"action": "voicemail"});
    body["start"] = json!(true);
    let c = created(&app, &t.key, body).await;
    let id = c["id"].as_str().expect("id").to_owned();
    let paused = await_status(&app, &t.key, &id, "paused", Duration::from_secs(20)).await;
    let reason = paused["paused_reason"].as_str().expect("a reason");
    assert!(reason.starts_with("machine_detection.action:"), "{reason}");
    assert!(sim.calls().is_empty(), "nobody is dialed");
    assert_eq!(paused["progress"]["pending"], 2, "{paused}");
    for contact in contacts(&app, &t.key, &id).await {
        assert_eq!(contact["state"], "pending", "{contact}");
    }
    let resumed: Value = post(&app, &t.key, &format!("/api/v1/campaigns/{id}/resume"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(resumed["status"], "running", "{resumed}");
    assert!(resumed["paused_reason"].is_null(), "{resumed}");
    let again = await_status(&app, &t.key, &id, "paused", Duration::from_secs(20)).await;
    assert!(again["paused_reason"].is_string(), "{again}");
    assert!(sim.calls().is_empty());
    app.stop().await;
}
