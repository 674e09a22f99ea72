//! `serve --sandbox`: simulators in-process, demo data created idempotently, and the printed
//! `make-call` completing with a transcript.

use std::time::Duration;

use serde_json::Value;
use stateset_voice::config::{Config, RawSettings};
use stateset_voice::sandbox;
use stateset_voice::startup::Application;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_call_uses_the_tool_escalates_and_falls_back_to_a_callback_task() {
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
    assert!(
        banner.contains(&format!(
            "Console: {base}/console  (sign in with the tenant key above; the admin key opens the admin pages)"
        )),
        "{banner}"
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
    // The demo's agent contract ran: the webhook tool answered (a signed request the demo
    // receiver verified), the built-in transferred to the queue, nobody answered, and a
    // callback task was created from the call.
    let calls = session["function_calls"]
        .as_array()
        .expect("function calls");
    let names: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name"),
                c["status"].as_str().expect("status"),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("order_status", "succeeded"),
            ("transfer_to_human", "succeeded")
        ],
        "{session}"
    );
    assert_eq!(calls[0]["result"]["status"], "shipped", "{session}");
    let handoff = &session["handoffs"][0];
    assert_eq!(handoff["queue"], sandbox::QUEUE, "{session}");
    assert_eq!(handoff["rule"], "tool:transfer_to_human");
    let task_id = handoff["callback_task_id"].as_str().map(str::to_owned);
    // The call ended after the `<Dial action>` answer, which the task was created for.
    let tasks: Value = client
        .get(format!("{base}/api/v1/callback-tasks"))
        .bearer_auth(&second.api_key)
        .send()
        .await
        .expect("tasks")
        .json()
        .await
        .expect("json");
    assert_eq!(tasks["total"], 1, "{tasks}");
    let task = &tasks["data"][0];
    assert_eq!(task["created_by"], "handoff");
    assert_eq!(task["phone"], sandbox::CALLEE);
    assert_eq!(task["source_call_id"], placed["call_id"]);
    assert!(task_id.is_none() || task_id.as_deref() == task["id"].as_str());
    // Every event reached the demo receiver signed (it refuses anything else).
    let wanted = [
        "voice.call.started",
        "voice.call.escalated",
        "voice.call.completed",
        "voice.callback.created",
        "voice.session.evaluated",
    ];
    let mut events = sims.receivers.events.subscribe();
    let all_arrived = tokio::time::timeout(
        Duration::from_secs(30),
        events.wait_for(|received| {
            wanted
                .iter()
                .all(|w| received.iter().any(|e| e["event"] == *w))
        }),
    )
    .await;
    assert!(
        matches!(all_arrived, Ok(Ok(_))),
        "events received: {:?}",
        sims.receivers.events.borrow()
    );
    // The demo call was evaluated against the demo rubric: every criterion with evidence,
    // the judge's summary and tags on the session, and the version's summary counts it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let session = loop {
        let session: Value = client
            .get(format!("{base}/api/v1/voice-sessions/{id}"))
            .bearer_auth(&second.api_key)
            .send()
            .await
            .expect("session")
            .json()
            .await
            .expect("json");
        if !session["evaluation"].is_null() {
            break session;
        }
        assert!(tokio::time::Instant::now() < deadline, "{session}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let evaluation = &session["evaluation"];
    let verdicts: Vec<(&str, &str)> = evaluation["criteria"]
        .as_array()
        .expect("criteria")
        .iter()
        .map(|c| {
            (
                c["key"].as_str().expect("key"),
                c["verdict"].as_str().expect("verdict"),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("greeting", "passed"),
            ("order_looked_up", "passed"),
            ("handoff_when_asked", "passed"),
            ("resolved", "passed"),
        ],
        "{evaluation}"
    );
    assert_eq!(evaluation["passed"], true);
    assert!(
        session["summary"].as_str().is_some_and(|s| !s.is_empty()),
        "{session}"
    );
    assert!(
        session["tags"].as_array().is_some_and(|t| !t.is_empty()),
        "{session}"
    );
    assert!(banner.contains(&format!(
        "/api/v1/admin/agent-versions/{}/evaluation-summary",
        second.version_id
    )));
    let summary: Value = client
        .get(format!(
            "{base}/api/v1/admin/agent-versions/{}/evaluation-summary",
            second.version_id
        ))
        .header("x-admin-key", crate::helpers::ADMIN_KEY)
        .send()
        .await
        .expect("summary")
        .json()
        .await
        .expect("json");
    assert_eq!(summary["evaluated"], 1, "{summary}");
    assert_eq!(summary["passed"], 1, "{summary}");
    // The event went out like every other: a delivery, recorded as delivered once the demo
    // receiver answered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let deliveries: Value = client
            .get(format!(
                "{base}/api/v1/webhook-deliveries?event=voice.session.evaluated"
            ))
            .bearer_auth(&second.api_key)
            .send()
            .await
            .expect("deliveries")
            .json()
            .await
            .expect("json");
        assert_eq!(deliveries["total"], 1, "{deliveries}");
        if deliveries["data"][0]["status"] == "delivered" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{deliveries}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The demo route records its calls: the call's recording is readable, its WAV proxied.
    let recordings = format!(
        "{base}/api/v1/call-logs/{}/recordings",
        placed["call_id"].as_str().expect("call id")
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let recording = loop {
        let list: Value = client
            .get(&recordings)
            .bearer_auth(&second.api_key)
            .send()
            .await
            .expect("recordings")
            .json()
            .await
            .expect("json");
        if list["data"][0]["status"] == "completed" {
            break list["data"][0].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let media = client
        .get(format!(
            "{recordings}/{}/media",
            recording["id"].as_str().expect("id")
        ))
        .bearer_auth(&second.api_key)
        .send()
        .await
        .expect("media");
    assert_eq!(media.status(), 200);
    assert_eq!(&media.bytes().await.expect("wav")[..4], b"RIFF");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_demo_campaign_starts_from_the_banner_and_reaches_all_three_contacts() {
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
    // Seeding again reuses the draft campaign.
    let seeded = sandbox::seed(&state, &sims).await.expect("seed again");
    assert_eq!(first.campaign_id, seeded.campaign_id);
    let id = seeded.campaign_id.clone();
    let banner = sandbox::banner(&config, &seeded, &base);
    let resume = format!("{base}/api/v1/campaigns/{id}/resume");
    assert!(banner.contains(&resume), "{banner}");
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));

    let client = reqwest::Client::new();
    let started: Value = client
        .post(&resume)
        .bearer_auth(&seeded.api_key)
        .send()
        .await
        .expect("resume")
        .json()
        .await
        .expect("json");
    assert_eq!(started["status"], "running", "{started}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let done = loop {
        let c: Value = client
            .get(format!("{base}/api/v1/campaigns/{id}"))
            .bearer_auth(&seeded.api_key)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if c["status"] == "completed" {
            break c;
        }
        assert!(tokio::time::Instant::now() < deadline, "{c}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["progress"]["completed"], 1, "{done}");
    assert_eq!(done["progress"]["exhausted"], 2, "{done}");
    let contacts: Value = client
        .get(format!("{base}/api/v1/campaigns/{id}/contacts"))
        .bearer_auth(&seeded.api_key)
        .send()
        .await
        .expect("contacts")
        .json()
        .await
        .expect("json");
    let of = |phone: &str| {
        contacts["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|c| c["phone"] == phone)
            .expect("contact")
            .clone()
    };
    let person = of(sandbox::CAMPAIGN_HUMAN);
    assert_eq!(person["last_outcome"], "answered", "{person}");
    let machine = of(sandbox::CAMPAIGN_MACHINE);
    assert_eq!(machine["last_outcome"], "machine", "{machine}");
    let nobody = of(sandbox::CAMPAIGN_NO_ANSWER);
    assert_eq!(nobody["last_outcome"], "no_answer", "{nobody}");
    assert_eq!(nobody["attempts"].as_array().expect("attempts").len(), 2);

    // Everything the demo left is readable through the API with the printed key.
    let read = |path: String| {
        let (client, key) = (client.clone(), seeded.api_key.clone());
        let url = format!("{base}{path}");
        async move {
            let resp = client
                .get(&url)
                .bearer_auth(&key)
                .send()
                .await
                .expect("get");
            assert_eq!(resp.status(), 200, "{url}");
            resp.json::<Value>().await.expect("json")
        }
    };
    let person_call = person["attempts"][0]["call_id"]
        .as_str()
        .expect("the person's call")
        .to_owned();
    // The person asked for sales: a warm transfer, whispered and accepted by the operator.
    let sessions = read(format!("/api/v1/voice-sessions?call_id={person_call}")).await;
    let session_id = sessions["data"][0]["id"].as_str().expect("a session");
    let session = read(format!("/api/v1/voice-sessions/{session_id}")).await;
    let handoff = &session["handoffs"][0];
    assert_eq!(handoff["warm"]["state"], "accepted", "{session}");
    assert_eq!(handoff["warm"]["operator_number"], sandbox::WARM_OPERATOR);
    assert_eq!(handoff["outcome"], "bridged", "{handoff}");
    let operator_leg = sims
        .carrier
        .calls()
        .into_iter()
        .find(|c| c.to == sandbox::WARM_OPERATOR)
        .expect("the operator was called");
    assert!(
        operator_leg
            .said
            .iter()
            .any(|s| s.contains("Press 1 to accept")),
        "{:?}",
        operator_leg.said
    );
    // Its recording, complete, with the simulator's WAV behind the proxied download.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let recording = loop {
        let list = read(format!("/api/v1/call-logs/{person_call}/recordings")).await;
        if list["data"][0]["status"] == "completed" {
            break list["data"][0].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rec = recording["id"].as_str().expect("recording id");
    let wav = client
        .get(format!(
            "{base}/api/v1/call-logs/{person_call}/recordings/{rec}/media"
        ))
        .bearer_auth(&seeded.api_key)
        .send()
        .await
        .expect("media");
    assert_eq!(wav.status(), 200);
    assert!(wav.bytes().await.expect("bytes").starts_with(b"RIFF"));
    // The contact's variables reached the agent's session.
    let variables_seen = sims.realtime.sessions().iter().any(|s| {
        s.config["instructions"]
            .as_str()
            .is_some_and(|i| i.contains(r#""who":"person""#))
    });
    assert!(
        variables_seen,
        "the contact's variables are in the instructions"
    );
    // The machine got the voicemail after its beep, recorded on the call log.
    let machine_call = machine["attempts"][0]["call_id"]
        .as_str()
        .expect("the machine's call");
    let log = read(format!("/api/v1/call-logs/{machine_call}")).await;
    assert_eq!(log["machine_outcome"], "voicemail_left", "{log}");
    server.abort();
}
