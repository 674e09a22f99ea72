//! Agents and agent versions: drafts, approval (immutability), retirement, audit.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, backend_tests, expect_error, spawn_app};

backend_tests!(
    agent_versions_are_immutable_once_approved,
    agent_validation_and_isolation
);

async fn agent_versions_are_immutable_once_approved(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, _) = app.tenant_with_key("Acme").await;
    let (agent_id, v1) = app.approved_agent(&tenant, "support").await;
    let dup = app
        .admin(Method::POST, "/api/v1/admin/agents")
        .json(&json!({"tenant_id": tenant, "key": "support", "name": "again"}))
        .send()
        .await
        .expect("post");
    expect_error(dup, 409, "conflict").await;

    let put = app
        .admin(Method::PUT, &format!("/api/v1/admin/agent-versions/{v1}"))
        .json(&json!({"instructions": "changed"}))
        .send()
        .await
        .expect("put");
    expect_error(put, 409, "conflict").await;
    let v1_now: Value = app
        .admin(Method::GET, &format!("/api/v1/admin/agent-versions/{v1}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(v1_now["instructions"], "You are a helpful phone agent.");
    assert_eq!(v1_now["status"], "approved");
    assert_eq!(v1_now["version"], 1);

    // A change is a new version: a draft, editable until approved.
    let v2: Value = app
        .admin(Method::POST, &format!("/api/v1/admin/agents/{agent_id}/versions"))
        .json(&json!({"instructions": "Be brief.", "voice": "cedar", "turn_detection": {"type": "semantic_vad", "eagerness": "high"}}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["status"], "draft");
    let v2_id = v2["id"].as_str().expect("id");
    let edited: Value = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/agent-versions/{v2_id}"),
        )
        .json(&json!({"instructions": "Be brief and kind.", "max_call_seconds": 600}))
        .send()
        .await
        .expect("put")
        .json()
        .await
        .expect("json");
    assert_eq!(edited["instructions"], "Be brief and kind.");
    assert_eq!(edited["max_call_seconds"], 600);
    let approved = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/agent-versions/{v2_id}/approve"),
        )
        .send()
        .await
        .expect("approve");
    assert_eq!(approved.status(), 200);
    let again = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/agent-versions/{v2_id}/approve"),
        )
        .send()
        .await
        .expect("approve");
    expect_error(again, 409, "conflict").await;
    let retired: Value = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/agent-versions/{v1}/retire"),
        )
        .send()
        .await
        .expect("retire")
        .json()
        .await
        .expect("json");
    assert_eq!(retired["status"], "retired");
    let list: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/agents/{agent_id}/versions"),
        )
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let statuses: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, ["approved", "retired"]);
    let audit = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/audit-log?tenant_id={tenant}"),
        )
        .send()
        .await
        .expect("audit")
        .text()
        .await
        .expect("body");
    for action in [
        "agent.create",
        "agent_version.create",
        "agent_version.update",
        "agent_version.approve",
        "agent_version.retire",
    ] {
        assert!(audit.contains(action), "{action}");
    }
    app.stop().await;
}

async fn agent_validation_and_isolation(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, _) = app.tenant_with_key("Acme").await;
    let (other, _) = app.tenant_with_key("Other").await;
    let (agent_id, _) = app.approved_agent(&tenant, "support").await;
    for (body, field) in [
        (json!({"instructions": ""}), "instructions"),
        (
            json!({"instructions": "x", "max_call_seconds": 5}),
            "max_call_seconds",
        ),
        (json!({"instructions": "x", "voice": "two words"}), "voice"),
        (
            json!({"instructions": "x", "turn_detection": {"type": "server_vad", "threshold": 2.0}}),
            "turn_detection.threshold",
        ),
    ] {
        let resp = app
            .admin(
                Method::POST,
                &format!("/api/v1/admin/agents/{agent_id}/versions"),
            )
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(
            expect_error(resp, 422, "validation_failed").await["field"],
            field
        );
    }
    let resp = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/agents/{agent_id}/versions"),
        )
        .json(&json!({"instructions": "x", "turn_detection": {"type": "magic"}}))
        .send()
        .await
        .expect("post");
    expect_error(resp, 400, "invalid_body").await;
    // The other tenant can use the same key; listings are per tenant.
    app.approved_agent(&other, "support").await;
    let mine: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/agents?tenant_id={tenant}"),
        )
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(mine["data"].as_array().expect("data").len(), 1);
    assert!(
        mine["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|a| a["tenant_id"] == tenant.as_str())
    );
    app.stop().await;
}
