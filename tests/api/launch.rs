//! Launch approvals (issue 11, item 4): a tenant's launch record (owner, rollback path,
//! required roles), approvals by named identities in roles they hold, with comments, all
//! audited; a material change (a new version on a routed agent, a route change, a changed
//! record) invalidates them and the launch says why.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, backend_tests, expect_error, spawn_app};

backend_tests!(a_launch_is_approved_by_every_required_role_until_a_material_change);

async fn identity(app: &TestApp, name: &str, roles: &[&str]) -> String {
    let resp = app
        .admin(Method::POST, "/api/v1/admin/identities")
        .json(&json!({"name": name, "roles": roles}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.expect("json");
    body["key"].as_str().expect("key").to_owned()
}

async fn approve(app: &TestApp, key: &str, tenant: &str, role: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/v1/admin/tenants/{tenant}/launch/approvals")))
        .header("x-admin-key", key)
        .json(&json!({"role": role, "comment": format!("{role} sign-off")}))
        .send()
        .await
        .expect("approve")
}

async fn launch(app: &TestApp, tenant: &str) -> Value {
    let resp = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/tenants/{tenant}/launch"),
        )
        .send()
        .await
        .expect("launch");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

async fn a_launch_is_approved_by_every_required_role_until_a_material_change(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app
        .telephony_tenant("Acme", "+14155550190", json!({}))
        .await;
    let (other, _) = app.tenant_with_key("Globex").await;
    let tenant = t.tenant_id.as_str();
    let bob = identity(&app, "bob", &["approver"]).await;
    let ann = identity(&app, "ann", &["admin"]).await;
    let audrey = identity(&app, "audrey", &["auditor"]).await;

    let empty = launch(&app, tenant).await;
    assert!(empty["record"].is_null(), "{empty}");
    assert_eq!(empty["approved"], false);
    expect_error(
        approve(&app, &bob, tenant, "approver").await,
        409,
        "conflict",
    )
    .await;

    // The record, validated naming the field.
    let path = format!("/api/v1/admin/tenants/{tenant}/launch");
    for (body, field) in [
        (
            json!({"owner": " ", "rollback_path": "x", "required_roles": ["admin"]}),
            "owner",
        ),
        (
            json!({"owner": "Ops", "rollback_path": "x", "required_roles": []}),
            "required_roles",
        ),
        (
            json!({"owner": "Ops", "rollback_path": "x", "required_roles": ["auditor"]}),
            "required_roles",
        ),
    ] {
        let resp = app
            .admin(Method::PUT, &path)
            .json(&body)
            .send()
            .await
            .expect("put");
        assert_eq!(
            expect_error(resp, 422, "validation_failed").await["field"],
            field
        );
    }
    let resp = app
        .admin(Method::PUT, &path)
        .json(&json!({"owner": "Dana (ops)", "rollback_path": "Set the route back to staged; callers get the fallback number.",
                      "required_roles": ["approver", "admin"]}))
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 200);
    let set: Value = resp.json().await.expect("json");
    assert_eq!(
        set["record"]["required_roles"],
        json!(["admin", "approver"])
    );
    assert_eq!(set["missing_roles"], json!(["admin", "approver"]));

    // Only in a role held and required; an auditor approves nothing.
    expect_error(
        approve(&app, &audrey, tenant, "approver").await,
        403,
        "insufficient_role",
    )
    .await;
    expect_error(
        approve(&app, &bob, tenant, "admin").await,
        403,
        "insufficient_role",
    )
    .await;
    let resp = approve(&app, &bob, tenant, "auditor").await;
    assert_eq!(
        expect_error(resp, 422, "validation_failed").await["field"],
        "role"
    );

    let resp = approve(&app, &bob, tenant, "approver").await;
    assert_eq!(resp.status(), 201);
    let given: Value = resp.json().await.expect("json");
    assert_eq!(given["identity"], "bob");
    assert_eq!(given["valid"], true);
    let half = launch(&app, tenant).await;
    assert_eq!(half["approved"], false);
    assert_eq!(half["missing_roles"], json!(["admin"]));
    assert_eq!(approve(&app, &ann, tenant, "admin").await.status(), 201);
    let done = launch(&app, tenant).await;
    assert_eq!(done["approved"], true, "{done}");
    assert_eq!(done["missing_roles"], json!([]));

    // Another tenant's launch knows nothing of it.
    let theirs = launch(&app, &other).await;
    assert_eq!(theirs["approvals"], json!([]));
    assert_eq!(theirs["approved"], false);

    // A new version of the routed agent is a material change.
    let agents: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/agents?tenant_id={tenant}"),
        )
        .send()
        .await
        .expect("agents")
        .json()
        .await
        .expect("json");
    let agent = agents["data"][0]["id"].as_str().expect("agent").to_owned();
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
    let changed = launch(&app, tenant).await;
    assert_eq!(changed["approved"], false, "{changed}");
    assert_eq!(changed["missing_roles"], json!(["admin", "approver"]));
    for a in changed["approvals"].as_array().expect("approvals") {
        assert_eq!(a["valid"], false);
        assert_eq!(
            a["invalidated_by"],
            json!(["agent support has a new version 2"]),
            "{a}"
        );
    }

    // Approved again, then a route change invalidates it.
    assert_eq!(approve(&app, &bob, tenant, "approver").await.status(), 201);
    assert_eq!(approve(&app, &ann, tenant, "admin").await.status(), 201);
    assert_eq!(launch(&app, tenant).await["approved"], true);
    let resp = app
        .admin(
            Method::PATCH,
            &format!("/api/v1/admin/phone-routes/{}", t.route_id),
        )
        .json(&json!({"fallback_message": "One moment please."}))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    let moved = launch(&app, tenant).await;
    assert_eq!(moved["approved"], false);
    assert_eq!(
        moved["approvals"].as_array().map(Vec::len),
        Some(4),
        "every approval is kept"
    );
    assert_eq!(
        moved["approvals"][0]["invalidated_by"],
        json!(["route +14155550190 changed"]),
        "{moved}"
    );

    // Audited under the identities.
    let audit: Value = app
        .admin(Method::GET, "/api/v1/admin/audit-log?action=launch.approve")
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let actors: Vec<&str> = audit["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| r["actor"].as_str().expect("actor"))
        .collect();
    assert_eq!(actors, ["ann", "bob", "ann", "bob"]);
    let resp = app
        .admin(Method::GET, "/api/v1/admin/tenants/ten_nothere/launch")
        .send()
        .await
        .expect("launch");
    expect_error(resp, 404, "not_found").await;
}
