//! Evaluations end to end: calls driven through the carrier and realtime simulators are
//! scored against their version's rubric when they end (the judge is the realtime
//! simulator's deterministic chat-completions endpoint), read through the API, scored again,
//! reviewed and aggregated; judge failures are retried and then recorded as `error` with the
//! deterministic part kept; an evaluation cut off by a restart is finished after it; two
//! nodes on one database never evaluate one job twice.

use std::time::Duration;

use actors::evaluation::{Rescore, Rubric};
use actors::ids::{SessionId, TenantId};
use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{
    CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle, InboundCall,
};
use stateset_voice::sim::realtime::{
    JudgeFault, RealtimeScript, RealtimeSimConfig, ScriptTurn, SimVerdict,
};

use crate::helpers::{
    Backend, REALTIME_KEY, Tele, TestApp, backend_tests, expect_error, spawn_app_with_realtime,
};

backend_tests!(
    calls_are_scored_read_scored_again_reviewed_and_summarised,
    judge_failures_are_retried_then_recorded_as_errors_with_the_deterministic_part_kept,
    an_evaluation_cut_off_by_a_restart_is_finished_after_it,
    two_nodes_never_evaluate_one_job_twice,
    a_crashed_call_is_evaluated_as_an_errored_session,
);

const WAIT: Duration = Duration::from_secs(45);
const NUMBER: &str = "+14155550190";
const CALLER: &str = "+15557650090";
const ASK_CALLBACK: &str = "Please have someone call me about a quote.";
const ASK_OPEN: &str = "Is the shop open today?";

/// What the simulated model does (the simulator hears each session's caller turns as the
/// script's, in order).
fn script() -> RealtimeScript {
    RealtimeScript::new(vec![ScriptTurn::call_tool(
        ASK_CALLBACK,
        "create_callback_task",
        json!({"reason": "wants a quote"}),
        "A colleague will call you back about the quote.",
    )])
}

/// A rude model.
fn rude_script() -> RealtimeScript {
    RealtimeScript::new(vec![ScriptTurn::say(
        ASK_OPEN,
        "Whatever, we are open, stupid question.",
    )])
}

async fn setup(
    backend: Backend,
    extra: impl FnOnce(&mut stateset_voice::config::RawSettings) + Send + 'static,
) -> (TestApp, CarrierSimHandle, Tele) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let realtime = RealtimeSimConfig {
        ms_per_char: 20,
        ..RealtimeSimConfig::with_api_key(REALTIME_KEY).with_script(script())
    };
    let app = spawn_app_with_realtime(backend, realtime, move |raw| {
        raw.set("TWILIO_API_BASE_URL", base);
        extra(raw);
    })
    .await;
    let t = app.telephony_tenant("Acme", NUMBER, json!({})).await;
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    (app, sim, t)
}

/// The rubric of the tests: every deterministic kind a plain call exercises, and a judge
/// question. A forbidden phrase is critical but weighs little: it fails a high score.
fn rubric() -> Value {
    json!({
        "pass_score": 0.7,
        "criteria": [
            {"key": "greeting", "kind": "required_phrase", "pattern": "thanks for calling", "within_seconds": 10},
            {"key": "polite", "kind": "forbidden_phrase", "pattern": "\\bstupid\\b", "critical": true, "weight": 0.1},
            {"key": "callback_offered", "kind": "tool_called", "tool": "create_callback_task", "when_caller_says": "call me"},
            {"key": "callback_created", "kind": "tool_succeeded", "tool": "create_callback_task"},
            {"key": "callback_status", "kind": "outcome", "tool": "create_callback_task", "field": "/status", "equals": "created"},
            {"key": "first_audio", "kind": "max_first_audio_ms", "max_ms": 10000},
            {"key": "gaps", "kind": "max_response_gap_ms", "max_ms": 10000},
            {"key": "short", "kind": "max_duration_s", "max_seconds": 120},
            {"key": "resolved", "kind": "llm_judge", "question": "Did the agent resolve the caller's question or hand off correctly?"}
        ]
    })
}

async fn agent_id(app: &TestApp, t: &Tele) -> String {
    let agents: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/agents?tenant_id={}", t.tenant_id),
        )
        .send()
        .await
        .expect("agents")
        .json()
        .await
        .expect("json");
    agents["data"][0]["id"].as_str().expect("agent").to_owned()
}

async fn post_version(app: &TestApp, agent: &str, rubric: Value) -> reqwest::Response {
    app.admin(
        Method::POST,
        &format!("/api/v1/admin/agents/{agent}/versions"),
    )
    .json(&json!({
        "instructions": "You are a helpful phone agent.",
        "greeting": "Hello, thanks for calling.",
        "tools": [{"name": "create_callback_task", "type": "builtin"}],
        "rubric": rubric,
    }))
    .send()
    .await
    .expect("version")
}

/// Gives the `support` agent an approved version with the test rubric; returns its id.
async fn rubric_version(app: &TestApp, t: &Tele) -> String {
    let agent = agent_id(app, t).await;
    let resp = post_version(app, &agent, rubric()).await;
    assert_eq!(resp.status(), 201);
    let version: Value = resp.json().await.expect("json");
    let id = version["id"].as_str().expect("id").to_owned();
    let resp = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/agent-versions/{id}/approve"),
        )
        .send()
        .await
        .expect("approve");
    assert_eq!(resp.status(), 200);
    id
}

fn call_in(app: &TestApp, sim: &CarrierSimHandle, t: &Tele, say: &str) -> String {
    sim.place_inbound_call(InboundCall {
        account_sid: t.account_sid.clone(),
        from: CALLER.into(),
        to: NUMBER.into(),
        voice_url: app.url("/api/v1/incoming-call"),
        status_callback: Some(app.url("/api/v1/call-status")),
        status_callback_events: vec![],
        script: CallerScript::default()
            .silence(Duration::from_millis(1500))
            .speak(Duration::from_millis(800), say)
            .silence(Duration::from_millis(2500))
            .hang_up(),
    })
    .expect("place call")
}

async fn ended(sim: &CarrierSimHandle, sid: &str) {
    tokio::time::timeout(WAIT, sim.wait_ended(sid))
        .await
        .expect("the call ends");
}

async fn get(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    app.tenant(Method::GET, path, key)
        .send()
        .await
        .expect("request")
}

async fn get_json(app: &TestApp, key: &str, path: &str) -> Value {
    let resp = get(app, key, path).await;
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.expect("json")
}

/// Polls the session until it shows an evaluation; returns the session.
async fn evaluated_session(app: &TestApp, key: &str, session: &str) -> Value {
    let path = format!("/api/v1/voice-sessions/{session}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body = get_json(app, key, &path).await;
        if !body["evaluation"].is_null() {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{session} was never evaluated: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Scores `session` with `rubric` through the library handle and waits for the result.
async fn rescored(app: &TestApp, t: &Tele, session: &str, rubric: &Rubric) -> Value {
    let tenant = TenantId::parse(&t.tenant_id).expect("tenant id");
    let session = SessionId::parse(session).expect("session id");
    let evaluations = &app.state.actors.evaluations;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let Rescore { evaluation, .. } = evaluations
            .evaluate_with(&tenant, &session, rubric)
            .await
            .expect("evaluate");
        if let Some(e) = evaluation {
            return get_json(app, &t.key, &format!("/api/v1/evaluations/{}", e.id)).await;
        }
        assert!(tokio::time::Instant::now() < deadline, "never scored");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn criterion<'a>(evaluation: &'a Value, key: &str) -> &'a Value {
    evaluation["criteria"]
        .as_array()
        .expect("criteria")
        .iter()
        .find(|c| c["key"] == key)
        .unwrap_or_else(|| panic!("criterion {key}: {evaluation}"))
}

fn verdicts(evaluation: &Value) -> Vec<(String, String)> {
    evaluation["criteria"]
        .as_array()
        .expect("criteria")
        .iter()
        .map(|c| {
            (
                c["key"].as_str().expect("key").to_owned(),
                c["verdict"].as_str().expect("verdict").to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn session_of(app: &TestApp, t: &Tele, sid: &str) -> String {
    let session = app.voice_session_of(&t.key, sid).await;
    session["id"].as_str().expect("session id").to_owned()
}

async fn calls_are_scored_read_scored_again_reviewed_and_summarised(backend: Backend) {
    let (app, sim, t) = setup(backend, |_| {}).await;
    let agent = agent_id(&app, &t).await;

    // A rubric is validated with the version, naming the field at fault.
    let mut bad = rubric();
    bad["criteria"][2] = json!({"key": "x", "kind": "required_phrase"});
    let resp = post_version(&app, &agent, bad).await;
    let body = expect_error(resp, 422, "validation_failed").await;
    assert_eq!(body["field"], "rubric.criteria[2].pattern", "{body}");
    let mut bad = rubric();
    bad["criteria"][1]["pattern"] = json!("(");
    let body = expect_error(
        post_version(&app, &agent, bad).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["field"], "rubric.criteria[1].pattern", "{body}");

    // A call of a version without a rubric is not evaluated, and cannot be.
    let sid = call_in(&app, &sim, &t, ASK_OPEN);
    ended(&sim, &sid).await;
    let plain = session_of(&app, &t, &sid).await;
    let resp = app
        .tenant(
            Method::POST,
            &format!("/api/v1/voice-sessions/{plain}/evaluate"),
            &t.key,
        )
        .send()
        .await
        .expect("evaluate");
    expect_error(resp, 422, "no_rubric").await;

    let version = rubric_version(&app, &t).await;
    let shown: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/agent-versions/{version}"),
        )
        .send()
        .await
        .expect("version")
        .json()
        .await
        .expect("json");
    assert_eq!(
        shown["rubric"]["criteria"].as_array().map(Vec::len),
        Some(9)
    );
    assert_eq!(
        shown["rubric"]["criteria"][0]["weight"], 1.0,
        "defaults shown"
    );
    let hash = shown["rubric_hash"].as_str().expect("hash").to_owned();
    assert_eq!(hash.len(), 64);

    // Call A does everything right. While it is live it cannot be scored.
    let sid_a = call_in(&app, &sim, &t, ASK_CALLBACK);
    let deadline = tokio::time::Instant::now() + WAIT;
    let live = loop {
        let list = get_json(&app, &t.key, "/api/v1/voice-sessions?status=active").await;
        if let Some(id) = list["data"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "call A never went live"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let resp = app
        .tenant(
            Method::POST,
            &format!("/api/v1/voice-sessions/{live}/evaluate"),
            &t.key,
        )
        .send()
        .await
        .expect("evaluate");
    expect_error(resp, 409, "conflict").await;
    ended(&sim, &sid_a).await;
    let session_a = session_of(&app, &t, &sid_a).await;
    assert_eq!(session_a, live);
    let a = evaluated_session(&app, &t.key, &session_a).await;
    let ea = &a["evaluation"];
    assert_eq!(
        verdicts(ea),
        pairs(&[
            ("greeting", "passed"),
            ("polite", "passed"),
            ("callback_offered", "passed"),
            ("callback_created", "passed"),
            ("callback_status", "passed"),
            ("first_audio", "passed"),
            ("gaps", "passed"),
            ("short", "passed"),
            ("resolved", "passed"),
        ]),
        "{ea}"
    );
    assert_eq!(ea["passed"], true);
    assert_eq!(ea["score"], 1.0);
    assert_eq!(ea["rubric_hash"], hash.as_str());
    assert_eq!(ea["agent_version_id"], version.as_str());
    // Evidence: quoted turns, and measurements against their thresholds.
    let greeting = criterion(ea, "greeting");
    assert_eq!(
        greeting["evidence"]["turns"][0]["speaker"], "agent",
        "{greeting}"
    );
    assert!(
        greeting["evidence"]["turns"][0]["quote"]
            .as_str()
            .is_some_and(|q| q.to_lowercase().contains("thanks for calling")),
        "{greeting}"
    );
    let gaps = criterion(ea, "gaps");
    assert_eq!(gaps["evidence"]["unit"], "ms");
    assert!(
        gaps["evidence"]["measured"]
            .as_f64()
            .is_some_and(|g| g > 0.0),
        "{gaps}"
    );
    assert_eq!(gaps["evidence"]["threshold"], 10000.0);
    assert!(criterion(ea, "first_audio")["evidence"]["measured"].is_number());
    // The judge's summary and tags fill the session's.
    assert!(ea["judge"]["model"].is_string(), "{ea}");
    assert!(
        ea["summary"].as_str().is_some_and(|s| !s.is_empty()),
        "{ea}"
    );
    assert_eq!(a["summary"], ea["summary"]);
    assert!(a["tags"].as_array().is_some_and(|t| !t.is_empty()), "{a}");
    assert_eq!(a["tags"], ea["tags"]);

    // Metrics of the path (process-wide in this test binary: at least this call's).
    let metrics = app.metrics().await;
    assert!(
        crate::helpers::metric(&metrics, "evaluations_total", &[("result", "passed")]) >= 1.0,
        "{metrics}"
    );
    assert!(crate::helpers::metric(&metrics, "judge_requests_total", &[("outcome", "ok")]) >= 1.0);
    assert!(metrics.contains("evaluation_seconds_bucket{stage=\"total\""));
    assert!(metrics.contains("evaluation_jobs_pending"));

    // Call B: one critical failure (a forbidden phrase) fails a score above the pass score.
    app.realtime
        .set_judge_verdict("resolved", SimVerdict::yes());
    app.realtime.set_script(rude_script());
    let sid_b = call_in(&app, &sim, &t, ASK_OPEN);
    ended(&sim, &sid_b).await;
    let session_b = session_of(&app, &t, &sid_b).await;
    let b = evaluated_session(&app, &t.key, &session_b).await;
    let eb = &b["evaluation"];
    assert_eq!(
        verdicts(eb),
        pairs(&[
            ("greeting", "passed"),
            ("polite", "failed"),
            ("callback_offered", "not_applicable"),
            ("callback_created", "not_applicable"),
            ("callback_status", "failed"),
            ("first_audio", "passed"),
            ("gaps", "passed"),
            ("short", "passed"),
            ("resolved", "passed"),
        ]),
        "{eb}"
    );
    let score = eb["score"].as_f64().expect("score");
    assert!(score >= 0.7, "{eb}");
    assert_eq!(eb["passed"], false, "{eb}");
    assert_eq!(eb["failed_criteria"], json!(["polite", "callback_status"]));
    assert!(
        criterion(eb, "polite")["evidence"]["turns"][0]["quote"]
            .as_str()
            .is_some_and(|q| q.contains("stupid")),
        "{eb}"
    );

    // The kinds failing on call A under a strict rubric (scored on the stored call).
    app.realtime
        .set_judge_verdict("strict_judge", SimVerdict::no());
    let strict = Rubric::from_json(
        &json!({
            "pass_score": 0.5,
            "criteria": [
                {"key": "goodbye", "kind": "required_phrase", "pattern": "goodbye forever"},
                {"key": "sms", "kind": "tool_called", "tool": "send_followup_sms"},
                {"key": "identity", "kind": "identity_before", "tool": "create_callback_task"},
                {"key": "handoff", "kind": "handoff_when_asked", "patterns": ["call me"], "within_seconds": 5},
                {"key": "first_audio", "kind": "max_first_audio_ms", "max_ms": 1},
                {"key": "gaps", "kind": "max_response_gap_ms", "max_ms": 1},
                {"key": "short", "kind": "max_duration_s", "max_seconds": 1},
                {"key": "intent", "kind": "outcome", "intent": "booking"},
                {"key": "strict_judge", "kind": "llm_judge", "question": "Did the agent sing?"}
            ]
        })
        .to_string(),
    )
    .expect("strict rubric");
    let failing = rescored(&app, &t, &session_a, &strict).await;
    assert!(
        verdicts(&failing).iter().all(|(_, v)| v == "failed"),
        "{failing}"
    );
    assert_eq!(failing["passed"], false);
    assert_eq!(failing["score"], 0.0);
    // The session shows its latest evaluation.
    let a = get_json(&app, &t.key, &format!("/api/v1/voice-sessions/{session_a}")).await;
    assert_eq!(a["evaluation"]["id"], failing["id"]);

    // Scoring again with the unchanged version rubric finds what there is.
    let judged = app.realtime.judge_requests().len();
    for _ in 0..2 {
        let resp = app
            .tenant(
                Method::POST,
                &format!("/api/v1/voice-sessions/{session_b}/evaluate"),
                &t.key,
            )
            .send()
            .await
            .expect("evaluate");
        assert_eq!(resp.status(), 200);
        let again: Value = resp.json().await.expect("json");
        assert_eq!(again["created"], false, "{again}");
        assert_eq!(again["status"], "done");
        assert_eq!(again["evaluation"]["id"], eb["id"]);
    }
    assert_eq!(
        app.realtime.judge_requests().len(),
        judged,
        "nothing judged twice"
    );

    // Listing with filters.
    let all = get_json(&app, &t.key, "/api/v1/evaluations").await;
    assert_eq!(all["total"], 3, "{all}");
    let passed = get_json(&app, &t.key, "/api/v1/evaluations?passed=true").await;
    assert_eq!(passed["total"], 1);
    assert_eq!(passed["data"][0]["id"], ea["id"]);
    let of_version = get_json(
        &app,
        &t.key,
        &format!("/api/v1/evaluations?agent_key=support&agent_version_id={version}&passed=false"),
    )
    .await;
    assert_eq!(of_version["total"], 2);
    let future = get_json(
        &app,
        &t.key,
        "/api/v1/evaluations?from=2100-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(future["total"], 0);
    let resp = get(&app, &t.key, "/api/v1/evaluations?from=yesterday").await;
    let body = expect_error(resp, 400, "invalid_query").await;
    assert_eq!(body["field"], "from");

    // Reviews are kept beside the automatic verdict.
    let review = |id: Value, verdict: &str, note: &str| {
        let (app, key) = (&app, t.key.clone());
        let body = json!({"verdict": verdict, "note": note});
        async move {
            app.tenant(
                Method::POST,
                &format!("/api/v1/evaluations/{}/review", id.as_str().expect("id")),
                &key,
            )
            .json(&body)
            .send()
            .await
            .expect("review")
        }
    };
    let resp = review(eb["id"].clone(), "maybe", "").await;
    let body = expect_error(resp, 422, "validation_failed").await;
    assert_eq!(body["field"], "verdict");
    let resp = review(eb["id"].clone(), "passed", "rude but helpful").await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.expect("json");
    assert_eq!(created["verdict"], "passed");
    let resp = review(failing["id"].clone(), "failed", "agreed").await;
    assert_eq!(resp.status(), 201);
    let reviewed = get_json(
        &app,
        &t.key,
        &format!("/api/v1/evaluations/{}", eb["id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(reviewed["passed"], false, "the automatic verdict stays");
    assert_eq!(reviewed["human_verdict"], "passed");
    assert_eq!(reviewed["reviews"][0]["note"], "rude but helpful");

    // The version's aggregates: A (latest: the strict failure) and B, both failed; the
    // human agreed on A and disagreed on B.
    let summary: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/agent-versions/{version}/evaluation-summary"),
        )
        .send()
        .await
        .expect("summary")
        .json()
        .await
        .expect("json");
    assert_eq!(summary["evaluated"], 2, "{summary}");
    assert_eq!(summary["passed"], 0);
    assert_eq!(summary["pass_rate"], 0.0);
    // Wilson 95 % for 0 of 2: [0, z²/(n+z²)].
    let high = summary["pass_rate_ci95"]["high"].as_f64().expect("high");
    assert!((high - 3.8415 / 5.8415).abs() < 1e-3, "{summary}");
    assert_eq!(summary["pass_rate_ci95"]["low"], 0.0);
    assert_eq!(summary["judge_agreement"]["pairs"], 2, "{summary}");
    assert_eq!(summary["judge_agreement"]["agreed"], 1);
    assert_eq!(summary["judge_agreement"]["rate"], 0.5);
    assert!(summary["first_audio_p50_ms"].is_number());
    let empty: Value = app
        .admin(
            Method::GET,
            &format!(
                "/api/v1/admin/agent-versions/{version}/evaluation-summary?to=2000-01-01T00:00:00Z"
            ),
        )
        .send()
        .await
        .expect("summary")
        .json()
        .await
        .expect("json");
    assert_eq!(empty["evaluated"], 0);
    let resp = app
        .admin(
            Method::GET,
            "/api/v1/admin/agent-versions/agv_missing/evaluation-summary",
        )
        .send()
        .await
        .expect("summary");
    expect_error(resp, 404, "not_found").await;

    // The agent's pass rate per version over time: every version (the fixture's first
    // one without evaluations), the rubric version's two failures in today's bucket.
    let agent = agent_id(&app, &t).await;
    let series: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/agents/{agent}/evaluation-series?bucket=hour"),
        )
        .send()
        .await
        .expect("series")
        .json()
        .await
        .expect("json");
    assert_eq!(series["agent_id"], agent.as_str(), "{series}");
    assert_eq!(series["bucket"], "hour");
    let versions = series["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{series}");
    let scored = &versions[0];
    assert_eq!(scored["agent_version_id"], version.as_str(), "newest first");
    assert_eq!(
        (
            &scored["evaluated"],
            &scored["passed"],
            &scored["pass_rate"]
        ),
        (&json!(2), &json!(0), &json!(0.0)),
        "{series}"
    );
    assert_eq!(scored["pass_rate_ci95"], summary["pass_rate_ci95"]);
    let points = scored["points"].as_array().expect("points");
    let counted: i64 = points
        .iter()
        .map(|p| p["evaluated"].as_i64().expect("evaluated"))
        .sum();
    assert_eq!(counted, 2, "{series}");
    assert!(points.iter().all(|p| {
        p["bucket_start"]
            .as_str()
            .is_some_and(|b| b.ends_with(":00:00Z") || b.ends_with(":00:00.000Z"))
    }));
    assert_eq!(versions[1]["evaluated"], 0);
    assert_eq!(versions[1]["points"], json!([]));
    for (query, field) in [
        ("bucket=week", "bucket"),
        ("from=yesterday", "from"),
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("bucket=hour&from=2000-01-01T00:00:00Z", "from"),
    ] {
        let resp = app
            .admin(
                Method::GET,
                &format!("/api/v1/admin/agents/{agent}/evaluation-series?{query}"),
            )
            .send()
            .await
            .expect("series");
        let err = expect_error(resp, 400, "invalid_query").await;
        assert_eq!(err["field"], field, "{query}: {err}");
    }
    let resp = app
        .admin(
            Method::GET,
            "/api/v1/admin/agents/agt_missing/evaluation-series",
        )
        .send()
        .await
        .expect("series");
    expect_error(resp, 404, "not_found").await;

    // Another tenant sees none of it.
    let (_, other) = app.tenant_with_key("Other").await;
    let id = ea["id"].as_str().expect("id");
    assert_eq!(
        get(&app, &other, &format!("/api/v1/evaluations/{id}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        get_json(&app, &other, "/api/v1/evaluations").await["total"],
        0
    );
    let resp = app
        .tenant(
            Method::POST,
            &format!("/api/v1/evaluations/{id}/review"),
            &other,
        )
        .json(&json!({"verdict": "failed"}))
        .send()
        .await
        .expect("review");
    expect_error(resp, 404, "not_found").await;
    let resp = app
        .tenant(
            Method::POST,
            &format!("/api/v1/voice-sessions/{session_a}/evaluate"),
            &other,
        )
        .send()
        .await
        .expect("evaluate");
    expect_error(resp, 404, "not_found").await;
    // A read-only key cannot write.
    let (_, reader) = app.create_key(&t.tenant_id, &["read"]).await;
    let resp = app
        .tenant(
            Method::POST,
            &format!("/api/v1/evaluations/{id}/review"),
            &reader,
        )
        .json(&json!({"verdict": "failed"}))
        .send()
        .await
        .expect("review");
    assert_eq!(resp.status(), 403);
    app.stop().await;
}

async fn judge_failures_are_retried_then_recorded_as_errors_with_the_deterministic_part_kept(
    backend: Backend,
) {
    let (app, sim, t) = setup(backend, |raw| {
        raw.set("EVALUATION_MAX_ATTEMPTS", "2");
        raw.set("JUDGE_TIMEOUT_MS", "300");
    })
    .await;
    rubric_version(&app, &t).await;
    // The judge answers 500: two attempts, then the judge criterion is `error`.
    app.realtime.set_judge_fault(Some(JudgeFault::Status(500)));
    let sid = call_in(&app, &sim, &t, ASK_CALLBACK);
    ended(&sim, &sid).await;
    let session = session_of(&app, &t, &sid).await;
    let s = evaluated_session(&app, &t.key, &session).await;
    let e = &s["evaluation"];
    assert_eq!(criterion(e, "resolved")["verdict"], "error", "{e}");
    assert_eq!(criterion(e, "greeting")["verdict"], "passed", "{e}");
    assert_eq!(criterion(e, "callback_status")["verdict"], "passed", "{e}");
    assert!(e["judge_error"].as_str().is_some(), "{e}");
    assert!(e["judge"].is_null());
    assert_eq!(
        e["passed"], true,
        "a non-critical error does not fail the call"
    );
    assert_eq!(app.realtime.judge_requests().len(), 2);

    let base = Rubric::from_json(&rubric().to_string()).expect("rubric");
    let variant = |pass_score: f64| Rubric {
        pass_score,
        ..base.clone()
    };
    // Invalid JSON from the judge: the same.
    app.realtime.set_judge_fault(Some(JudgeFault::InvalidJson));
    let e = rescored(&app, &t, &session, &variant(0.71)).await;
    assert_eq!(criterion(&e, "resolved")["verdict"], "error", "{e}");
    assert_eq!(criterion(&e, "gaps")["verdict"], "passed", "{e}");
    assert_eq!(app.realtime.judge_requests().len(), 4);
    // A judge that times out once is asked again, and its answer recorded.
    app.realtime.set_judge_fault(None);
    app.realtime
        .judge_fault_next(JudgeFault::Delay(Duration::from_secs(2)));
    let e = rescored(&app, &t, &session, &variant(0.72)).await;
    assert_eq!(criterion(&e, "resolved")["verdict"], "passed", "{e}");
    assert!(e["judge_error"].is_null(), "{e}");
    tokio::time::timeout(WAIT, app.realtime.wait_for_judge_requests(6))
        .await
        .expect("the timed-out request and the answered one");
    app.stop().await;
}

async fn an_evaluation_cut_off_by_a_restart_is_finished_after_it(backend: Backend) {
    let (app, sim, t) = setup(backend, |_| {}).await;
    rubric_version(&app, &t).await;
    // The judge never answers: the evaluation is in flight when the server stops.
    app.realtime.set_judge_fault(Some(JudgeFault::Hang));
    let sid = call_in(&app, &sim, &t, ASK_CALLBACK);
    ended(&sim, &sid).await;
    let session = session_of(&app, &t, &sid).await;
    tokio::time::timeout(WAIT, app.realtime.wait_for_judge_requests(1))
        .await
        .expect("the evaluation started");
    let key = t.key.clone();
    let app = app.restart_with(|_| {}).await;
    let s = evaluated_session(&app, &key, &session).await;
    let e = &s["evaluation"];
    assert_eq!(criterion(e, "resolved")["verdict"], "passed", "{e}");
    assert_eq!(e["passed"], true);
    assert_eq!(
        app.realtime.judge_requests().len(),
        1,
        "judged once after the restart"
    );
    let all = get_json(&app, &key, "/api/v1/evaluations").await;
    assert_eq!(all["total"], 1, "{all}");
    app.stop().await;
}

async fn two_nodes_never_evaluate_one_job_twice(backend: Backend) {
    let (app, sim, t) = setup(backend, |_| {}).await;
    rubric_version(&app, &t).await;
    let sid = call_in(&app, &sim, &t, ASK_CALLBACK);
    ended(&sim, &sid).await;
    let session = session_of(&app, &t, &sid).await;
    evaluated_session(&app, &t.key, &session).await;
    let other = app.another_node(|_| {}).await;
    // Twelve more jobs on the session (one per rubric), written through both nodes; both
    // evaluation actors claim from the one table.
    let tenant = TenantId::parse(&t.tenant_id).expect("tenant");
    let session_id = SessionId::parse(&session).expect("session");
    let base = Rubric::from_json(&rubric().to_string()).expect("rubric");
    for i in 0..12_u32 {
        let node = if i % 2 == 0 { &app } else { &other };
        let rubric = Rubric {
            pass_score: 0.5 + f64::from(i) / 100.0,
            ..base.clone()
        };
        let r = node
            .state
            .actors
            .evaluations
            .evaluate_with(&tenant, &session_id, &rubric)
            .await
            .expect("enqueue");
        assert!(r.job.created);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let judged = app.realtime.judge_requests().len() + other.realtime.judge_requests().len();
        let all = get_json(&app, &t.key, "/api/v1/evaluations?limit=200").await;
        if all["total"] == 13 && judged >= 13 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{all}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Each job was judged once and yielded one evaluation.
    assert_eq!(
        app.realtime.judge_requests().len() + other.realtime.judge_requests().len(),
        13
    );
    let all = get_json(&app, &t.key, "/api/v1/evaluations?limit=200").await;
    let mut hashes: Vec<&str> = all["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["rubric_hash"].as_str().expect("hash"))
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    assert_eq!(hashes.len(), 13);
    other.stop().await;
    app.stop().await;
}

async fn a_crashed_call_is_evaluated_as_an_errored_session(backend: Backend) {
    let (app, sim, t) = setup(backend, |_| {}).await;
    let version = rubric_version(&app, &t).await;
    let sid = sim
        .place_inbound_call(InboundCall {
            account_sid: t.account_sid.clone(),
            from: CALLER.into(),
            to: NUMBER.into(),
            voice_url: app.url("/api/v1/incoming-call"),
            status_callback: Some(app.url("/api/v1/call-status")),
            status_callback_events: vec![],
            script: CallerScript::default().silence(Duration::from_secs(20)),
        })
        .expect("place call");
    // The call actor registers as call:{CallSid} once its stream started; crash it.
    let deadline = tokio::time::Instant::now() + WAIT;
    let actor = loop {
        if let Some(actor) = ractor::registry::where_is(format!("call:{sid}")) {
            break actor;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never went live"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    ractor::ActorRef::<actors::call::CallMsg>::from(actor)
        .cast(actors::call::CallMsg::Crash)
        .expect("cast");
    // The call supervisor failed the live session and wrote its job in one transaction.
    let session = session_of(&app, &t, &sid).await;
    let s = evaluated_session(&app, &t.key, &session).await;
    assert_eq!(s["status"], "failed");
    let e = &s["evaluation"];
    assert_eq!(e["errored"], true, "{e}");
    assert_eq!(e["end_reason"], "actor_failed");
    assert_eq!(e["agent_version_id"], version.as_str());
    let summary: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/agent-versions/{version}/evaluation-summary"),
        )
        .send()
        .await
        .expect("summary")
        .json()
        .await
        .expect("json");
    assert_eq!(summary["errored"], 1, "{summary}");
    assert_eq!(summary["error_rate"], 1.0);
    app.stop().await;
}

/// Throughput of the evaluation path through the running server, the judge being the
/// realtime simulator's chat-completions endpoint: `EVALUATION_THROUGHPUT_JOBS` jobs
/// (default 40; the figures in `docs/performance.md` are 1,000, release build) on one
/// recorded call, each with its own rubric hash so each is scored in full (claim, load,
/// judge, score, the result with its event in one transaction), first with deterministic
/// criteria only and summaries off, then with the judge question and the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluation_throughput_with_the_judge_simulator() {
    let jobs: u32 = std::env::var("EVALUATION_THROUGHPUT_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let workers = std::env::var("EVALUATION_THROUGHPUT_WORKERS").unwrap_or_else(|_| "4".into());
    let w = workers.clone();
    let (app, sim, t) = setup(Backend::Sqlite, move |raw| {
        raw.set("EVALUATION_WORKERS", w);
        raw.set("JUDGE_SUMMARIES", "false");
        raw.set("DATABASE_MAX_CONNECTIONS", "16");
    })
    .await;
    rubric_version(&app, &t).await;
    let sid = call_in(&app, &sim, &t, ASK_CALLBACK);
    ended(&sim, &sid).await;
    let session = session_of(&app, &t, &sid).await;
    evaluated_session(&app, &t.key, &session).await;
    let tenant = TenantId::parse(&t.tenant_id).expect("tenant");
    let session_id = SessionId::parse(&session).expect("session");
    let base = Rubric::from_json(&rubric().to_string()).expect("rubric");
    let mut deterministic = base.clone();
    deterministic.criteria.retain(|c| !c.kind.is_judge());

    let run = |app: TestApp, rubric: Rubric, done_before: u32, label: &'static str| {
        let (tenant, session_id) = (tenant.clone(), session_id.clone());
        async move {
            let evaluations = app.state.actors.evaluations.clone();
            let started = std::time::Instant::now();
            for i in 0..jobs {
                let variant = Rubric {
                    pass_score: 0.5 + f64::from(i) / 1_000_000.0,
                    ..rubric.clone()
                };
                let r = evaluations
                    .evaluate_with(&tenant, &session_id, &variant)
                    .await
                    .expect("enqueue");
                assert!(r.job.created);
            }
            let enqueued = started.elapsed();
            let filter = actors::store::EvaluationFilter {
                tenant_id: tenant.clone(),
                agent_key: None,
                agent_version_id: None,
                passed: None,
                from_ms: None,
                to_ms: None,
                limit: 1,
                offset: 0,
            };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
            loop {
                let total = evaluations.list(&filter).await.expect("list").total;
                if total >= i64::from(done_before + jobs) {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "{total}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let elapsed = started.elapsed();
            eprintln!(
                "evaluation throughput ({label}): {jobs} jobs: {:.2} s, {:.0} evaluations/s \
                 (the jobs written in the first {:.2} s while the workers ran)",
                elapsed.as_secs_f64(),
                f64::from(jobs) / elapsed.as_secs_f64(),
                enqueued.as_secs_f64()
            );
            app
        }
    };
    let app = run(app, deterministic, 1, "judge off").await;
    let judged = app.realtime.judge_requests().len();
    assert_eq!(judged, 1, "only the call's own evaluation asked the judge");
    let w = workers.clone();
    let app = app
        .restart_with(move |raw| {
            raw.set("EVALUATION_WORKERS", w);
            raw.set("DATABASE_MAX_CONNECTIONS", "16");
        })
        .await;
    let app = run(app, base, 1 + jobs, "judge on (simulator)").await;
    assert_eq!(
        app.realtime.judge_requests().len(),
        usize::try_from(jobs).expect("jobs")
    );
    app.stop().await;
}
