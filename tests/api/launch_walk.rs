//! The README's "Launching an agent" walk, request by request and in the README's order,
//! against a sandbox (`serve --sandbox`'s simulators, seed and settings): a named approver,
//! a version written by `root` and approved by the approver under the two-person rule, the
//! launch record and its approvals, a canary at 100 %, the demo calls (three pinned to the
//! stable version), and the canary rolled back by its pass-rate guardrail, as
//! `rollout-governance`, the webhook deliveries and the audit log show it. If this test has
//! to change, the README walk changes with it.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use stateset_voice::config::{Config, RawSettings};
use stateset_voice::sandbox;
use stateset_voice::startup::Application;

use crate::helpers::{ADMIN_KEY, MASTER_KEY, expect_error};

const WAIT: Duration = Duration::from_secs(120);

struct Walk {
    client: reqwest::Client,
    base: String,
}

impl Walk {
    fn request(&self, method: Method, path: &str, header: (&str, &str)) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header(header.0, header.1)
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        header: (&str, &str),
        body: Value,
    ) -> Response {
        self.request(method, path, header)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    async fn get(&self, path: &str, header: (&str, &str)) -> Value {
        let resp = self
            .request(Method::GET, path, header)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{path}");
        resp.json().await.expect("json")
    }
}

async fn body(resp: Response, status: u16) -> Value {
    let got = resp.status();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(got, status, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launch_walk_runs_as_written_in_the_readme() {
    crate::helpers::logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut raw = RawSettings::default();
    raw.set("BIND_ADDR", "127.0.0.1:0");
    raw.set(
        "DATABASE_URL",
        format!("sqlite://{}", dir.path().join("sandbox.db").display()),
    );
    raw.set("ADMIN_API_KEY", ADMIN_KEY);
    raw.set("MASTER_KEY", MASTER_KEY);
    let sims = sandbox::start(&mut raw).await.expect("simulators");
    let config = Config::parse(&raw).expect("config");
    let app = Application::build(config).await.expect("app");
    let base = format!("http://{}", app.local_addr());
    let state = app.state();
    let seeded = sandbox::seed(&state, &sims).await.expect("seed");
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));
    let w = Walk {
        client: reqwest::Client::new(),
        base,
    };
    let root = ("x-admin-key", ADMIN_KEY);
    let tenant = seeded.tenant_id.clone();
    let bearer = format!("Bearer {}", seeded.api_key);
    let k = ("authorization", bearer.as_str());

    // A named approver, and the two-person rule for the tenant.
    let created = body(
        w.json(
            Method::POST,
            "/api/v1/admin/identities",
            root,
            json!({"name": "bob", "roles": ["approver"]}),
        )
        .await,
        201,
    )
    .await;
    let bob_key = created["key"].as_str().expect("key").to_owned();
    let bob = ("x-admin-key", bob_key.as_str());
    body(
        w.json(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{tenant}/governance"),
            root,
            json!({"two_person_approval": true}),
        )
        .await,
        200,
    )
    .await;

    // The new version: the current one with a critical disclosure in its rubric.
    let agents = w
        .get(&format!("/api/v1/admin/agents?tenant_id={tenant}"), root)
        .await;
    let agent = agents["data"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|a| a["key"] == "demo")
        .and_then(|a| a["id"].as_str())
        .expect("the demo agent")
        .to_owned();
    let versions = w
        .get(&format!("/api/v1/admin/agents/{agent}/versions"), root)
        .await;
    let current = versions["data"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["status"] == "approved")
        .expect("an approved version")
        .clone();
    let v1 = current["id"].as_str().expect("id").to_owned();
    assert_eq!(v1, seeded.version_id);
    let mut rubric = current["rubric"].clone();
    rubric["criteria"]
        .as_array_mut()
        .expect("criteria")
        .push(json!({"key": "disclosure", "kind": "required_phrase",
            "pattern": "this call may be recorded", "within_seconds": 15, "critical": true}));
    let spec = json!({
        "instructions": current["instructions"],
        "greeting": current["greeting"],
        "transcription": current["transcription"],
        "tools": current["tools"],
        "escalation": current["escalation"],
        "rubric": rubric,
    });
    let v2 = body(
        w.json(
            Method::POST,
            &format!("/api/v1/admin/agents/{agent}/versions"),
            root,
            spec,
        )
        .await,
        201,
    )
    .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let approve = format!("/api/v1/admin/agent-versions/{v2}/approve");
    expect_error(
        w.request(Method::POST, &approve, root)
            .send()
            .await
            .expect("approve"),
        403,
        "two_person_approval",
    )
    .await;
    let approved = body(
        w.request(Method::POST, &approve, bob)
            .send()
            .await
            .expect("approve"),
        200,
    )
    .await;
    assert_eq!(approved["status"], "approved", "{approved}");

    // The launch record and its approvals.
    let launch = format!("/api/v1/admin/tenants/{tenant}/launch");
    body(
        w.json(
            Method::PUT,
            &launch,
            root,
            json!({"owner": "Dana (ops)",
                "rollback_path": "Roll the canary back; every call returns to the stable version.",
                "required_roles": ["admin", "approver"]}),
        )
        .await,
        200,
    )
    .await;
    let approvals = format!("{launch}/approvals");
    for (who, role, comment) in [
        (root, "admin", "owner agrees"),
        (bob, "approver", "rubric reviewed"),
    ] {
        let resp = w
            .json(
                Method::POST,
                &approvals,
                who,
                json!({"role": role, "comment": comment}),
            )
            .await;
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    let l = w.get(&launch, root).await;
    assert_eq!(
        (&l["approved"], &l["missing_roles"]),
        (&json!(true), &json!([])),
        "{l}"
    );

    // The rollout: the current version stable, the new one canary at 100 %.
    body(
        w.json(
            Method::PUT,
            &format!("/api/v1/admin/agents/{agent}/rollout-policy"),
            root,
            json!({
                "stable_version_id": v1, "canary_version_id": v2,
                "stages": [{"percent": 100, "min_evaluated_calls": 50}],
                "guardrails": {"min_sample": 3, "max_first_audio_p95_ms": 5000},
                "reason": "recording disclosure"}),
        )
        .await,
        200,
    )
    .await;
    body(
        w.json(
            Method::POST,
            &format!("/api/v1/admin/agents/{agent}/rollout/start"),
            root,
            json!({"reason": "approved by bob"}),
        )
        .await,
        200,
    )
    .await;

    // Three calls pinned to stable and three on the canary, at once.
    let mut sids = Vec::new();
    for _ in 0..3 {
        for call in [
            json!({"to": sandbox::CALLEE, "agent_version_id": v1}),
            json!({"to": sandbox::CALLEE}),
        ] {
            let placed = w.json(Method::POST, "/api/v1/make-call", k, call).await;
            assert!(placed.status().is_success(), "{}", placed.status());
            let placed: Value = placed.json().await.expect("json");
            sids.push(placed["call_sid"].as_str().expect("sid").to_owned());
        }
    }
    for sid in &sids {
        tokio::time::timeout(WAIT, sims.carrier.wait_ended(sid))
            .await
            .expect("the demo call ends");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let evaluations = loop {
        let page = w.get("/api/v1/evaluations?limit=50", k).await;
        if page["total"] == 6 {
            break page;
        }
        assert!(tokio::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let passed_by_version = |version: &str| -> Vec<bool> {
        evaluations["data"]
            .as_array()
            .expect("evaluations")
            .iter()
            .filter(|e| e["agent_version_id"] == version)
            .map(|e| e["passed"].as_bool().expect("passed"))
            .collect()
    };
    assert_eq!(passed_by_version(&v1), [true; 3], "{evaluations}");
    assert_eq!(passed_by_version(&v2), [false; 3], "{evaluations}");

    // The canary was halted by the system, and rollout-governance says why.
    let g = w
        .get(
            &format!("/api/v1/admin/rollout-governance?tenant_id={tenant}"),
            root,
        )
        .await;
    let demo = g["data"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|a| a["agent_key"] == "demo")
        .expect("the demo agent")
        .clone();
    assert_eq!(demo["state"], "halted", "{demo}");
    assert_eq!(demo["split"], json!({"stable": 100, "canary": 0}), "{demo}");
    let decision = &demo["decisions"][0];
    assert_eq!(
        (&decision["action"], &decision["actor"]),
        (&json!("auto_rollback"), &json!("system")),
        "{decision}"
    );
    let reason = decision["reason"].as_str().expect("reason");
    assert!(
        reason
            == "guardrail breached: pass_rate 0.0000 beyond threshold 0.9500 (canary n=3, stable n=3)",
        "{reason}"
    );
    let pass = decision["guardrails"]
        .as_array()
        .expect("guardrails")
        .iter()
        .find(|c| c["guardrail"] == "pass_rate")
        .expect("pass_rate")
        .clone();
    assert_eq!(
        (&pass["value"], &pass["baseline"], &pass["status"]),
        (&json!(0.0), &json!(1.0), &json!("breach")),
        "{pass}"
    );
    assert_eq!(
        (
            &pass["threshold"],
            &pass["canary_sample"],
            &pass["stable_sample"],
            &pass["min_sample"]
        ),
        (&json!(0.95), &json!(3), &json!(3), &json!(3)),
        "{pass}"
    );
    // Newcombe's upper bound of 0/3 − 3/3, as the README shows it, held to −Δ.
    let bound = pass["bound"].as_f64().expect("bound");
    assert!((bound - -0.329).abs() < 0.001, "{pass}");

    // The event delivered to the demo receiver, and the audit row.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = w
            .get(
                "/api/v1/webhook-deliveries?event=voice.rollout.rolled_back",
                k,
            )
            .await;
        assert_eq!(list["total"], 1, "{list}");
        if list["data"][0]["status"] == "delivered" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let audit = w
        .get(
            &format!("/api/v1/admin/audit-log?tenant_id={tenant}&action=rollout.auto_rollback"),
            root,
        )
        .await;
    assert_eq!(audit["data"][0]["actor"], "system", "{audit}");
    // The approval is bob's on the audit log.
    let audit = w
        .get(
            &format!("/api/v1/admin/audit-log?tenant_id={tenant}&action=agent_version.approve"),
            root,
        )
        .await;
    assert!(
        audit["data"]
            .as_array()
            .expect("rows")
            .iter()
            .any(|a| a["actor"] == "bob"),
        "{audit}"
    );

    // The sandbox starts again on the same data: its demo version moves to the new start's
    // receiver, which the sandbox may not approve itself under the two-person rule the walk
    // turned on. The version waits as a draft, the banner says so, and another approver
    // approves it.
    let mut again = RawSettings::default();
    again.set("ADMIN_API_KEY", ADMIN_KEY);
    again.set("DATABASE_URL", "sqlite://unused.db");
    let restarted = sandbox::start(&mut again).await.expect("simulators");
    let reseeded = sandbox::seed(&state, &restarted).await.expect("seed");
    let pending = reseeded
        .awaiting_approval
        .clone()
        .expect("a version awaiting approval");
    assert_eq!(reseeded.tenant_id, tenant);
    let config = Config::parse(&raw).expect("config");
    let text = sandbox::banner(&config, &reseeded, &w.base);
    assert!(
        text.contains(&format!("/api/v1/admin/agent-versions/{pending}/approve")),
        "{text}"
    );
    let versions = w
        .get(&format!("/api/v1/admin/agents/{agent}/versions"), root)
        .await;
    let status_of = |id: &str| {
        versions["data"]
            .as_array()
            .expect("versions")
            .iter()
            .find(|v| v["id"] == id)
            .map(|v| v["status"].clone())
    };
    assert_eq!(status_of(&pending), Some(json!("draft")), "{versions}");
    // Seeding again reuses the draft.
    let third = sandbox::seed(&state, &restarted).await.expect("seed");
    assert_eq!(third.awaiting_approval.as_deref(), Some(pending.as_str()));
    body(
        w.request(
            Method::POST,
            &format!("/api/v1/admin/agent-versions/{pending}/approve"),
            bob,
        )
        .send()
        .await
        .expect("approve"),
        200,
    )
    .await;
    let fourth = sandbox::seed(&state, &restarted).await.expect("seed");
    assert_eq!(fourth.awaiting_approval, None);
    assert_eq!(fourth.version_id, pending);
    server.abort();
}
