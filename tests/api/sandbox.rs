//! `serve --sandbox`: simulators in-process, demo data created idempotently, and the printed
//! `make-call` completing with a transcript.

use std::time::Duration;

use serde_json::Value;
use stateset_voice::config::{Config, RawSettings};
use stateset_voice::sandbox;
use stateset_voice::startup::Application;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_call_completes_with_a_transcript() {
    crate::helpers::logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut raw = RawSettings::default();
    raw.set("BIND_ADDR", "127.0.0.1:0");
    raw.set(
        "DATABASE_URL",
        format!("sqlite://{}", dir.path().join("sandbox.db").display()),
    );
    raw.set("ADMIN_API_KEY", crate::helpers::ADMIN_KEY);
    raw.set("MASTER_KEY", crate::helpers::MASTER_KEY);
    let sims = sandbox::start(&mut raw).await.expect("simulators");
    let config = Config::parse(&raw).expect("config");
    let app = Application::build(config.clone()).await.expect("app");
    let base = format!("http://{}", app.local_addr());
    let state = app.state();
    let first = sandbox::seed(&state, &sims).await.expect("seed");
    // Seeding again reuses the tenant, agent and route (only the key is new).
    let second = sandbox::seed(&state, &sims).await.expect("seed again");
    assert_eq!(first.tenant_id, second.tenant_id);
    assert_ne!(first.api_key, second.api_key);
    let banner = sandbox::banner(&config, &second, &base);
    assert!(
        banner.contains(&second.api_key)
            && banner.contains("/api/v1/make-call")
            && banner.contains(crate::helpers::ADMIN_KEY)
    );
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));

    let client = reqwest::Client::new();
    let routes: Value = client
        .get(format!(
            "{base}/api/v1/admin/phone-routes?tenant_id={}",
            first.tenant_id
        ))
        .header("x-admin-key", crate::helpers::ADMIN_KEY)
        .send()
        .await
        .expect("routes")
        .json()
        .await
        .expect("json");
    assert_eq!(routes["total"], 1, "seeding twice made one route");

    let placed: Value = client
        .post(format!("{base}/api/v1/make-call"))
        .bearer_auth(&second.api_key)
        .json(&serde_json::json!({"to": sandbox::CALLEE}))
        .send()
        .await
        .expect("make-call")
        .json()
        .await
        .expect("json");
    assert_eq!(placed["ok"], true, "{placed}");
    let sid = placed["call_sid"].as_str().expect("sid").to_owned();
    let call = tokio::time::timeout(Duration::from_secs(60), sims.carrier.wait_ended(&sid))
        .await
        .expect("the demo call ends");
    assert!(call.media.media_received > 0, "the callee heard the agent");
    let sessions: Value = client
        .get(format!("{base}/api/v1/voice-sessions"))
        .bearer_auth(&second.api_key)
        .send()
        .await
        .expect("sessions")
        .json()
        .await
        .expect("json");
    let id = sessions["data"][0]["id"]
        .as_str()
        .expect("session")
        .to_owned();
    let session: Value = client
        .get(format!("{base}/api/v1/voice-sessions/{id}"))
        .bearer_auth(&second.api_key)
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("json");
    assert_eq!(session["status"], "completed");
    let roles: Vec<&str> = session["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .map(|t| t["role"].as_str().expect("role"))
        .collect();
    assert_eq!(
        roles,
        ["assistant", "user", "assistant", "user", "assistant"],
        "{session}"
    );
    server.abort();
}
