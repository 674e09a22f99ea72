//! Call recording end to end against the carrier and realtime simulators (issue 16, part
//! 1): the recording started at stream start through the carrier's REST API, the signed
//! status callback stored, the list and metadata, the proxied WAV (whole and by range)
//! equal to what the simulator holds, deletion at the carrier and here, the retention
//! sweep (an old recording deleted, a young one kept, never twice), the disclosure said
//! first and checked by the rubric, and tenant isolation.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle, InboundCall,
};

use crate::helpers::{Backend, Tele, TestApp, backend_tests, spawn_app_with};

backend_tests!(
    a_recorded_call_is_stored_listed_downloaded_and_deleted,
    retention_sweeps_old_recordings_and_the_disclosure_is_said_first,
);

const WAIT: Duration = Duration::from_secs(20);
const NUMBER: &str = "+14155550100";
const OTHER_NUMBER: &str = "+14155550200";

async fn setup(backend: Backend, route: Value) -> (TestApp, CarrierSimHandle, Tele) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let app = spawn_app_with(backend, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base);
    })
    .await;
    let t = app.telephony_tenant("Acme", NUMBER, route).await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    (app, sim, t)
}

/// A caller who listens to the greeting, says a line and hangs up; returns the CallSid.
async fn recorded_call(app: &TestApp, sim: &CarrierSimHandle, t: &Tele) -> String {
    let sid = sim
        .place_inbound_call(InboundCall {
            account_sid: t.account_sid.clone(),
            from: "+15551230000".into(),
            to: NUMBER.into(),
            voice_url: app.url("/api/v1/incoming-call"),
            status_callback: Some(app.url("/api/v1/call-status")),
            status_callback_events: vec![],
            script: CallerScript::default()
                .silence(Duration::from_millis(1500))
                .speak(Duration::from_millis(600), "what are your opening hours")
                .silence(Duration::from_millis(1500))
                .hang_up(),
        })
        .expect("place call");
    tokio::time::timeout(WAIT, sim.wait_ended(&sid))
        .await
        .expect("the call ends");
    sid
}

async fn get(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    app.tenant(Method::GET, path, key)
        .send()
        .await
        .expect("request")
}

/// The call's recordings once one is `completed` (the callback follows the call's end).
async fn completed_recordings(app: &TestApp, key: &str, call_id: &str) -> Vec<Value> {
    let path = format!("/api/v1/call-logs/{call_id}/recordings");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let resp = get(app, key, &path).await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("json");
        let data = body["data"].as_array().cloned().unwrap_or_default();
        if data.iter().any(|r| r["status"] == "completed") {
            return data;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no completed recording: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn events_named(database_url: &str, event: &str) -> Vec<Value> {
    use sqlx::Connection;
    const SQL: &str = "SELECT payload FROM webhook_events WHERE event = $1";
    let payloads: Vec<String> = if database_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(database_url)
            .await
            .expect("sqlite connection");
        sqlx::query_scalar(SQL)
            .bind(event)
            .fetch_all(&mut conn)
            .await
            .expect("events")
    } else {
        let mut conn = sqlx::PgConnection::connect(database_url)
            .await
            .expect("postgres connection");
        sqlx::query_scalar(SQL)
            .bind(event)
            .fetch_all(&mut conn)
            .await
            .expect("events")
    };
    payloads
        .iter()
        .map(|p| serde_json::from_str(p).expect("payload"))
        .collect()
}

async fn a_recorded_call_is_stored_listed_downloaded_and_deleted(backend: Backend) {
    let (app, sim, t) = setup(backend, json!({"recording_policy": "on"})).await;
    let other = app.telephony_tenant("Other", OTHER_NUMBER, json!({})).await;
    sim.add_account(other.account_sid.clone(), other.auth_token.clone());
    let route: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/phone-routes/{}", t.route_id),
        )
        .send()
        .await
        .expect("route")
        .json()
        .await
        .expect("json");
    assert_eq!(route["recording_policy"], "on");
    for (policy, shown) in [(json!(null), json!(null)), (json!("on"), json!("on"))] {
        let resp = app
            .admin(
                Method::PATCH,
                &format!("/api/v1/admin/phone-routes/{}", t.route_id),
            )
            .json(&json!({ "recording_policy": policy }))
            .send()
            .await
            .expect("patch");
        assert_eq!(resp.status(), 200);
        let route: Value = resp.json().await.expect("json");
        assert_eq!(route["recording_policy"], shown);
    }

    let sid = recorded_call(&app, &sim, &t).await;
    let log = app.call_log(&t.key, &sid).await;
    let call_id = log["id"].as_str().expect("id").to_owned();

    // Started through the carrier's REST API: dual channels, the signed callback.
    let start = sim
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with(&format!("/Calls/{sid}/Recordings.json")))
        .expect("the recording was started at the carrier");
    assert_eq!(start.status, 201);
    let param = |name: &str| {
        start
            .params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(param("RecordingChannels"), "dual");
    assert_eq!(
        param("RecordingStatusCallback"),
        app.url(&format!("/api/v1/recording-status?call_id={call_id}"))
    );
    assert_eq!(
        param("RecordingStatusCallbackEvent"),
        "in-progress completed absent"
    );
    let sims = sim.recordings_of(&sid);
    assert_eq!(sims.len(), 1, "one recording per call");
    let re = sims[0].clone();

    // The callback stored the metadata; listed and read.
    let list = completed_recordings(&app, &t.key, &call_id).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let rec = &list[0];
    assert_eq!(rec["recording_sid"], re.as_str());
    assert_eq!(rec["channels"], 2);
    assert!(rec["duration_seconds"].as_i64().is_some(), "{rec}");
    assert!(rec["deleted_at"].is_null());
    let rec_id = rec["id"].as_str().expect("id").to_owned();
    let base = format!("/api/v1/call-logs/{call_id}/recordings/{rec_id}");
    let one: Value = get(&app, &t.key, &base).await.json().await.expect("json");
    assert_eq!(one["id"], rec_id.as_str());
    let completed = events_named(&app.database_url, "voice.recording.completed").await;
    assert_eq!(completed.len(), 1, "one event per recording: {completed:?}");
    assert_eq!(completed[0]["data"]["id"], rec_id.as_str());

    // The proxied WAV is the simulator's, whole and by range.
    let wav = sim.recording_wav(&re).expect("the simulator's WAV");
    assert!(wav.len() > 58 + 2 * 8000, "about a second of audio or more");
    assert_eq!(&wav[..4], b"RIFF");
    let media = format!("{base}/media");
    let resp = get(&app, &t.key, &media).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .contains("wav")
    );
    assert_eq!(resp.bytes().await.expect("body").as_ref(), wav.as_slice());
    let resp = app
        .tenant(Method::GET, &media, &t.key)
        .header("range", "bytes=100-1099")
        .send()
        .await
        .expect("range");
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"].to_str().unwrap_or_default(),
        format!("bytes 100-1099/{}", wav.len())
    );
    assert_eq!(resp.bytes().await.expect("body").as_ref(), &wav[100..1100]);
    let resp = app
        .tenant(Method::GET, &media, &t.key)
        .header("range", format!("bytes={}-", wav.len() + 10))
        .send()
        .await
        .expect("range");
    assert_eq!(resp.status(), 416);
    // The tenant's credentials went to the carrier, never to the client.
    let fetch = sim
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with(&format!("/Recordings/{re}.wav")))
        .expect("media fetched at the carrier");
    assert_eq!(fetch.auth_user.as_deref(), Some(t.account_sid.as_str()));

    // Another tenant sees none of it.
    for path in [
        format!("/api/v1/call-logs/{call_id}/recordings"),
        base.clone(),
        media.clone(),
    ] {
        assert_eq!(get(&app, &other.key, &path).await.status(), 404, "{path}");
    }
    let resp = app
        .tenant(Method::DELETE, &base, &other.key)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 404);
    assert_eq!(sim.recording_status(&re), Some(("completed".into(), false)));

    // A callback signed by another account about this call changes nothing.
    let resp = app
        .twilio_post(
            &format!("/api/v1/recording-status?call_id={call_id}"),
            &[
                ("AccountSid", other.account_sid.as_str()),
                ("CallSid", sid.as_str()),
                ("RecordingSid", re.as_str()),
                ("RecordingStatus", "absent"),
                ("RecordingDuration", "999"),
            ],
            &other.auth_token,
        )
        .await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let after: Value = get(&app, &t.key, &base).await.json().await.expect("json");
    assert_eq!(after["status"], "completed");
    assert_eq!(after["duration_seconds"], rec["duration_seconds"]);
    // A retried callback (same account) is idempotent: no second event.
    let resp = app
        .twilio_post(
            &format!("/api/v1/recording-status?call_id={call_id}"),
            &[
                ("AccountSid", t.account_sid.as_str()),
                ("CallSid", sid.as_str()),
                ("RecordingSid", re.as_str()),
                ("RecordingStatus", "completed"),
                ("RecordingDuration", "3"),
                ("RecordingChannels", "2"),
            ],
            &t.auth_token,
        )
        .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(
        events_named(&app.database_url, "voice.recording.completed")
            .await
            .len(),
        1
    );

    // Deleted at the carrier and here; who and when recorded; the media is gone.
    let resp = app
        .tenant(Method::DELETE, &base, &t.key)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 204);
    assert_eq!(sim.recording_status(&re).map(|(_, d)| d), Some(true));
    let deleted: Value = get(&app, &t.key, &base).await.json().await.expect("json");
    assert!(deleted["deleted_at"].is_string(), "{deleted}");
    assert!(
        deleted["deleted_by"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("tenant:{}/key:", t.tenant_id)),
        "{deleted}"
    );
    assert_eq!(get(&app, &t.key, &media).await.status(), 410);
    let resp = app
        .tenant(Method::DELETE, &base, &t.key)
        .send()
        .await
        .expect("delete again");
    assert_eq!(resp.status(), 204);
    app.stop().await;
}

async fn retention_sweeps_old_recordings_and_the_disclosure_is_said_first(backend: Backend) {
    let (app, sim, t) = setup(backend, json!({})).await;
    app.approve_version(
        &t,
        json!({
            "recording_policy": "on_with_disclosure",
            "recording_disclosure": "This call is recorded for quality and training.",
            "rubric": {
                "pass_score": 0.5,
                "criteria": [
                    {"key": "disclosure", "kind": "required_phrase",
                     "pattern": "this call is recorded", "within_seconds": 10}
                ]
            }
        }),
    )
    .await;
    let sid = recorded_call(&app, &sim, &t).await;
    let log = app.call_log(&t.key, &sid).await;
    let call_id = log["id"].as_str().expect("id").to_owned();

    // The disclosure is the first thing the agent says, and the rubric checks it.
    let deadline = tokio::time::Instant::now() + WAIT;
    let session = loop {
        let session = app.voice_session_of(&t.key, &sid).await;
        if !session["evaluation"].is_null() {
            break session;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never evaluated: {session}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let first_agent = session["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .find(|t| t["role"] == "assistant")
        .unwrap_or_else(|| panic!("an agent turn: {session}"));
    assert!(
        first_agent["text"]
            .as_str()
            .unwrap_or_default()
            .starts_with("This call is recorded for quality and training."),
        "{first_agent}"
    );
    let criterion = session["evaluation"]["criteria"]
        .as_array()
        .expect("criteria")
        .iter()
        .find(|c| c["key"] == "disclosure")
        .cloned()
        .expect("the disclosure criterion");
    assert_eq!(criterion["verdict"], "passed", "{criterion}");

    let list = completed_recordings(&app, &t.key, &call_id).await;
    let rec_id = list[0]["id"].as_str().expect("id").to_owned();
    let re = list[0]["recording_sid"].as_str().expect("sid").to_owned();
    let base = format!("/api/v1/call-logs/{call_id}/recordings/{rec_id}");

    // Retention: 30 days, audited.
    let resp = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{}/recording-settings", t.tenant_id),
        )
        .json(&json!({"recording_retention_days": 30}))
        .send()
        .await
        .expect("settings");
    assert_eq!(resp.status(), 200);
    let resp = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{}/recording-settings", t.tenant_id),
        )
        .json(&json!({"recording_retention_days": 0}))
        .send()
        .await
        .expect("settings");
    assert_eq!(resp.status(), 422);

    let telephony = &app.state.actors.telephony;
    let now = actors::time::now_ms();
    let day = 86_400_000;
    // Young: kept.
    let deleted = actors::recording::sweep(telephony, now + 10 * day)
        .await
        .expect("sweep");
    assert_eq!(deleted, 0);
    assert_eq!(sim.recording_status(&re).map(|(_, d)| d), Some(false));
    // Old: deleted at the carrier and here, once.
    let deleted = actors::recording::sweep(telephony, now + 31 * day)
        .await
        .expect("sweep");
    assert_eq!(deleted, 1);
    assert_eq!(sim.recording_status(&re).map(|(_, d)| d), Some(true));
    let again = actors::recording::sweep(telephony, now + 32 * day)
        .await
        .expect("sweep");
    assert_eq!(again, 0, "never deleted twice");
    let rec: Value = get(&app, &t.key, &base).await.json().await.expect("json");
    assert_eq!(rec["deleted_by"], "retention", "{rec}");
    assert!(rec["deleted_at"].is_string());
    assert!(
        rec["deleted_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("30 days")
    );
    app.stop().await;
}
