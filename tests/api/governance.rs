//! Admin identities and approvals (issue 11, item 1): named admin keys with roles, shown
//! once, hashed, revocable from the next request, named on every audit row; an `auditor`
//! reads every admin resource and changes nothing; a version is approved by an `approver`,
//! and under the tenant's two-person rule by one other than its author.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Backend, TestApp, backend_tests, expect_error, spawn_app};

backend_tests!(
    named_identities_are_shown_once_audited_and_revocable,
    an_auditor_reads_everything_and_changes_nothing,
    approval_needs_an_approver_and_a_second_person_when_the_tenant_requires_it,
);

/// Creates identity `name` with `roles` (as root); returns (identity JSON, key).
async fn identity(app: &TestApp, name: &str, roles: &[&str]) -> (Value, String) {
    let resp = app
        .admin(Method::POST, "/api/v1/admin/identities")
        .json(&json!({"name": name, "roles": roles}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 201, "create identity {name}");
    let body: Value = resp.json().await.expect("json");
    let key = body["key"].as_str().expect("key").to_owned();
    (body, key)
}

/// An admin request made with `key`.
fn as_key(app: &TestApp, key: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
    app.client
        .request(method, app.url(path))
        .header("x-admin-key", key)
}

async fn audit_rows(app: &TestApp, query: &str) -> Vec<Value> {
    let body: Value = app
        .admin(Method::GET, &format!("/api/v1/admin/audit-log?{query}"))
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    body["data"].as_array().expect("data").clone()
}

async fn named_identities_are_shown_once_audited_and_revocable(backend: Backend) {
    let app = spawn_app(backend).await;
    let (created, key) = identity(&app, "alice", &["admin"]).await;
    assert!(key.starts_with("sva_"), "{key}");
    assert_eq!(created["roles"], json!(["admin"]));
    assert_eq!(created["created_by"], "root");
    assert!(key.starts_with(created["prefix"].as_str().expect("prefix")));
    let id = created["id"].as_str().expect("id").to_owned();

    // Listed without its key; the key is nowhere in the store in clear.
    let list: Value = app
        .admin(Method::GET, "/api/v1/admin/identities")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");
    assert!(list["data"][0].get("key").is_none(), "{list}");
    assert!(!list.to_string().contains(&key));

    // The identity acts, and the audit log names it.
    let resp = as_key(&app, &key, Method::POST, "/api/v1/admin/tenants")
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .expect("create tenant");
    assert_eq!(resp.status(), 201);
    let rows = audit_rows(&app, "").await;
    let actors: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["action"].as_str().expect("action"),
                r["actor"].as_str().expect("actor"),
            )
        })
        .collect();
    assert_eq!(
        actors,
        [
            ("tenant.create", "alice"),
            ("admin_identity.create", "root")
        ]
    );
    assert!(
        !rows[1].to_string().contains(&key),
        "the key is not audited"
    );

    // Bad input names the field; a name is never reused.
    for (body, field) in [
        (json!({"name": "Alice Smith", "roles": ["admin"]}), "name"),
        (json!({"name": "root", "roles": ["admin"]}), "name"),
        (json!({"name": "bob", "roles": []}), "roles"),
    ] {
        let resp = app
            .admin(Method::POST, "/api/v1/admin/identities")
            .json(&body)
            .send()
            .await
            .expect("request");
        let err = expect_error(resp, 422, "validation_failed").await;
        assert_eq!(err["field"], field, "{body}");
    }
    let resp = app
        .admin(Method::POST, "/api/v1/admin/identities")
        .json(&json!({"name": "bob", "roles": ["owner"]}))
        .send()
        .await
        .expect("request");
    let err = expect_error(resp, 400, "invalid_body").await;
    assert_eq!(err["field"], "roles[0]");
    let resp = app
        .admin(Method::POST, "/api/v1/admin/identities")
        .json(&json!({"name": "alice", "roles": ["auditor"]}))
        .send()
        .await
        .expect("request");
    expect_error(resp, 409, "conflict").await;

    // Revoked: the very next request with the key fails; revoking twice is a conflict.
    let resp = app
        .admin(Method::DELETE, &format!("/api/v1/admin/identities/{id}"))
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), 200);
    let revoked: Value = resp.json().await.expect("json");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let resp = as_key(&app, &key, Method::GET, "/api/v1/admin/tenants")
        .send()
        .await
        .expect("request");
    expect_error(resp, 401, "unauthorized").await;
    let resp = app
        .admin(Method::DELETE, &format!("/api/v1/admin/identities/{id}"))
        .send()
        .await
        .expect("revoke again");
    expect_error(resp, 409, "conflict").await;
    let resp = app
        .admin(Method::DELETE, "/api/v1/admin/identities/adm_nothere")
        .send()
        .await
        .expect("revoke unknown");
    expect_error(resp, 404, "not_found").await;
    // A made-up key of the right shape is refused too.
    let resp = as_key(
        &app,
        &format!("sva_{}", "0".repeat(64)),
        Method::GET,
        "/api/v1/admin/tenants",
    )
    .send()
    .await
    .expect("request");
    expect_error(resp, 401, "unauthorized").await;
    assert_eq!(
        audit_rows(&app, "action=admin_identity.revoke").await.len(),
        1
    );
}

async fn an_auditor_reads_everything_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant_id, _) = app.tenant_with_key("Acme").await;
    let (_, version) = {
        let (agent, _) = app.approved_agent(&tenant_id, "support").await;
        let resp = app
            .admin(
                Method::POST,
                &format!("/api/v1/admin/agents/{agent}/versions"),
            )
            .json(&json!({"instructions": "Be brief."}))
            .send()
            .await
            .expect("version");
        assert_eq!(resp.status(), 201);
        let v: Value = resp.json().await.expect("json");
        (agent, v["id"].as_str().expect("id").to_owned())
    };
    let (_, key) = identity(&app, "audrey", &["auditor"]).await;
    let before = app.audit_total().await;

    // Every admin read.
    for path in [
        "/api/v1/admin/tenants".to_owned(),
        format!("/api/v1/admin/tenants/{tenant_id}"),
        format!("/api/v1/admin/tenants/{tenant_id}/api-keys"),
        format!("/api/v1/admin/tenants/{tenant_id}/governance"),
        format!("/api/v1/admin/tenants/{tenant_id}/dial-policy"),
        format!("/api/v1/admin/agent-versions/{version}"),
        "/api/v1/admin/identities".to_owned(),
        "/api/v1/admin/audit-log".to_owned(),
        "/api/v1/admin/phone-routes".to_owned(),
    ] {
        let resp = as_key(&app, &key, Method::GET, &path)
            .send()
            .await
            .expect("read");
        assert_eq!(resp.status(), 200, "{path}");
    }

    // No change: 403 naming the role needed and the role held.
    let changes = [
        (
            Method::POST,
            "/api/v1/admin/tenants".to_owned(),
            json!({"name": "Other"}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/admin/tenants/{tenant_id}"),
            json!({"status": "suspended"}),
        ),
        (
            Method::POST,
            format!("/api/v1/admin/tenants/{tenant_id}/api-keys"),
            json!({"name": "k", "scopes": ["read"]}),
        ),
        (
            Method::PUT,
            format!("/api/v1/admin/tenants/{tenant_id}/governance"),
            json!({"two_person_approval": true}),
        ),
        (
            Method::POST,
            "/api/v1/admin/identities".to_owned(),
            json!({"name": "mallory", "roles": ["admin"]}),
        ),
    ];
    for (method, path, body) in changes {
        let resp = as_key(&app, &key, method.clone(), &path)
            .json(&body)
            .send()
            .await
            .expect("change");
        let err = expect_error(resp, 403, "insufficient_role").await;
        let message = err["message"].as_str().expect("message");
        assert!(
            message.contains("`admin`")
                && message.contains("`auditor`")
                && message.contains("audrey"),
            "{method} {path}: {message}"
        );
    }
    let resp = as_key(
        &app,
        &key,
        Method::POST,
        &format!("/api/v1/admin/agent-versions/{version}/approve"),
    )
    .send()
    .await
    .expect("approve");
    let err = expect_error(resp, 403, "insufficient_role").await;
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("`approver`")),
        "{err}"
    );
    assert_eq!(app.audit_total().await, before, "nothing was written");
    let v: Value = app
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
    assert_eq!(v["status"], "draft");
}

/// A draft version of `agent` created with `key`; returns its id.
async fn draft(app: &TestApp, key: &str, agent: &str) -> String {
    let resp = as_key(
        app,
        key,
        Method::POST,
        &format!("/api/v1/admin/agents/{agent}/versions"),
    )
    .json(&json!({"instructions": "You are a helpful phone agent."}))
    .send()
    .await
    .expect("version");
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.expect("json");
    v["id"].as_str().expect("id").to_owned()
}

async fn approve(app: &TestApp, key: &str, version: &str) -> reqwest::Response {
    as_key(
        app,
        key,
        Method::POST,
        &format!("/api/v1/admin/agent-versions/{version}/approve"),
    )
    .send()
    .await
    .expect("approve")
}

async fn approval_needs_an_approver_and_a_second_person_when_the_tenant_requires_it(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (tenant_id, _) = app.tenant_with_key("Acme").await;
    let (agent, _) = app.approved_agent(&tenant_id, "support").await;
    let (_, ann) = identity(&app, "ann", &["admin"]).await;
    let (_, pat) = identity(&app, "pat", &["admin", "approver"]).await;
    let (_, bob) = identity(&app, "bob", &["approver"]).await;

    // An admin without the approver role cannot approve.
    let v1 = draft(&app, &ann, &agent).await;
    let err = expect_error(approve(&app, &ann, &v1).await, 403, "insufficient_role").await;
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("`approver`") && m.contains("ann")),
        "{err}"
    );

    // Without the two-person rule an approver may approve their own version.
    let own = draft(&app, &pat, &agent).await;
    assert_eq!(approve(&app, &pat, &own).await.status(), 200);

    // The two-person rule, set by an admin and audited.
    let resp = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{tenant_id}/governance"),
        )
        .json(&json!({"two_person_approval": true}))
        .send()
        .await
        .expect("governance");
    assert_eq!(resp.status(), 200);
    let g: Value = resp.json().await.expect("json");
    assert_eq!(g["two_person_approval"], true);
    let rows = audit_rows(&app, "action=tenant_governance.update").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["after"]["two_person_approval"], true);
    assert_eq!(rows[0]["actor"], "root");

    let v2 = draft(&app, &pat, &agent).await;
    let err = expect_error(approve(&app, &pat, &v2).await, 403, "two_person_approval").await;
    assert!(
        err["message"].as_str().is_some_and(|m| m.contains("pat")),
        "{err}"
    );
    assert_eq!(approve(&app, &bob, &v2).await.status(), 200);
    // Ann's version, approved by someone else.
    assert_eq!(approve(&app, &pat, &v1).await.status(), 200);
    // Root is an identity like any other under the rule.
    let v3 = draft(&app, ADMIN_KEY, &agent).await;
    expect_error(
        approve(&app, ADMIN_KEY, &v3).await,
        403,
        "two_person_approval",
    )
    .await;
    assert_eq!(approve(&app, &bob, &v3).await.status(), 200);

    let approvals: Vec<(String, String)> = audit_rows(&app, "action=agent_version.approve")
        .await
        .iter()
        .map(|r| {
            (
                r["target_id"].as_str().expect("target").to_owned(),
                r["actor"].as_str().expect("actor").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        approvals[..4],
        [
            (v3.clone(), "bob".to_owned()),
            (v1.clone(), "pat".to_owned()),
            (v2.clone(), "bob".to_owned()),
            (own.clone(), "pat".to_owned()),
        ]
    );

    // Unknown tenant.
    let resp = app
        .admin(Method::GET, "/api/v1/admin/tenants/ten_nothere/governance")
        .send()
        .await
        .expect("governance");
    expect_error(resp, 404, "not_found").await;
}
