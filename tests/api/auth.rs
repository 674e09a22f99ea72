//! Runtime authentication: bearer keys, scopes, suspension, revocation and isolation.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, backend_tests, expect_error, spawn_app};

backend_tests!(
    bearer_key_identifies_its_tenant,
    malformed_and_unknown_keys_are_refused,
    suspended_tenant_is_refused_immediately,
    scopes_are_reported_and_checked,
    tenants_are_isolated,
);

async fn bearer_key_identifies_its_tenant(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, secret) = app.tenant_with_key("Acme").await;
    let resp = app
        .tenant(Method::GET, "/api/v1/me", &secret)
        .send()
        .await
        .expect("me");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let me: Value = resp.json().await.expect("json");
    assert_eq!(me["tenant_id"], id.as_str());
    assert_eq!(me["scopes"], json!(["runtime", "read", "operator"]));
    app.stop().await;
}

async fn malformed_and_unknown_keys_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.tenant_with_key("Acme").await;
    let none = app
        .client
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("me");
    expect_error(none, 401, "unauthorized").await;
    for bad in [
        "Basic dXNlcjpwYXNz",
        "Bearer ",
        "Bearer svk_0000000000000000000000000000000000000000000000000000000000000000",
        "Bearer not-a-key",
    ] {
        let resp = app
            .client
            .get(app.url("/api/v1/me"))
            .header("authorization", bad)
            .send()
            .await
            .expect("me");
        expect_error(resp, 401, "unauthorized").await;
    }
    app.stop().await;
}

async fn suspended_tenant_is_refused_immediately(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, secret) = app.tenant_with_key("Acme").await;
    assert_eq!(
        app.tenant(Method::GET, "/api/v1/me", &secret)
            .send()
            .await
            .expect("me")
            .status(),
        200
    );
    let resp = app
        .admin(Method::PATCH, &format!("/api/v1/admin/tenants/{id}"))
        .json(&json!({"status": "suspended"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    let refused = app
        .tenant(Method::GET, "/api/v1/me", &secret)
        .send()
        .await
        .expect("me");
    expect_error(refused, 403, "tenant_suspended").await;
    app.admin(Method::PATCH, &format!("/api/v1/admin/tenants/{id}"))
        .json(&json!({"status": "active"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(
        app.tenant(Method::GET, "/api/v1/me", &secret)
            .send()
            .await
            .expect("me")
            .status(),
        200
    );
    app.stop().await;
}

async fn scopes_are_reported_and_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_tenant("Acme").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, read_only) = app.create_key(&id, &["read"]).await;
    let me: Value = app
        .tenant(Method::GET, "/api/v1/me", &read_only)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["scopes"], json!(["read"]));
    let ctx = app
        .state
        .actors
        .tenants
        .authenticate(&read_only)
        .await
        .expect("authenticates");
    assert!(ctx.has(actors::store::Scope::Read));
    assert!(!ctx.has(actors::store::Scope::Runtime));
    assert!(!ctx.has(actors::store::Scope::Operator));
    app.stop().await;
}

async fn tenants_are_isolated(backend: Backend) {
    let app = spawn_app(backend).await;
    let (a, a_secret) = app.tenant_with_key("A").await;
    let (b, b_secret) = app.tenant_with_key("B").await;
    let me: Value = app
        .tenant(Method::GET, "/api/v1/me", &a_secret)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["tenant_id"], a.as_str());

    // A's key never opens the admin surface, whatever header it is put in.
    for path in [
        format!("/api/v1/admin/tenants/{b}"),
        format!("/api/v1/admin/tenants/{b}/api-keys"),
        "/api/v1/admin/audit-log".to_owned(),
    ] {
        let resp = app
            .tenant(Method::GET, &path, &a_secret)
            .send()
            .await
            .expect("get");
        expect_error(resp, 401, "unauthorized").await;
    }

    // B's key id addressed through A's tenant path is not found, and B's key keeps working.
    let b_keys: Value = app
        .admin(Method::GET, &format!("/api/v1/admin/tenants/{b}/api-keys"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let b_key_id = b_keys["data"][0]["id"].as_str().expect("id").to_owned();
    let resp = app
        .admin(
            Method::DELETE,
            &format!("/api/v1/admin/tenants/{a}/api-keys/{b_key_id}"),
        )
        .send()
        .await
        .expect("delete");
    expect_error(resp, 404, "not_found").await;
    let b_me: Value = app
        .tenant(Method::GET, "/api/v1/me", &b_secret)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(b_me["tenant_id"], b.as_str());
    let a_keys: Value = app
        .admin(Method::GET, &format!("/api/v1/admin/tenants/{a}/api-keys"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert!(
        a_keys["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|k| k["tenant_id"] == a.as_str())
    );
    app.stop().await;
}
