//! Bad input: clear 400/413/415/422 errors with the field named, and nothing written.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, backend_tests, expect_error, spawn_app};

async fn domain_values_are_refused_saying_what_is_wrong(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant_id, secret) = app.tenant_with_key("Acme").await;
    for (to, why) in [
        ("14155550100", "must start with +"),
        ("+1415555010a", "only digits"),
        ("+1", "2 to 15 digits"),
        ("+0123456789", "must not start with +0"),
    ] {
        let resp = app
            .tenant(Method::POST, "/api/v1/make-call", &secret)
            .json(&json!({ "to": to }))
            .send()
            .await
            .expect("make-call");
        let err = expect_error(resp, 422, "validation_failed").await;
        assert_eq!(err["field"], "to", "{err}");
        assert!(
            err["message"].as_str().expect("message").contains(why),
            "{to}: {err}"
        );
    }
    let token = "0123456789abcdef0123";
    for (sid, why) in [
        (format!("CA{}", "a".repeat(32)), "must start with AC"),
        ("AC123".to_owned(), "exactly 32"),
        (format!("AC{}", "z".repeat(32)), "only hex digits"),
    ] {
        let resp = app
            .admin(
                Method::PUT,
                &format!("/api/v1/admin/tenants/{tenant_id}/twilio-credentials"),
            )
            .json(&json!({"account_sid": sid, "auth_token": token}))
            .send()
            .await
            .expect("put");
        let err = expect_error(resp, 422, "validation_failed").await;
        assert_eq!(err["field"], "account_sid", "{err}");
        assert!(
            err["message"].as_str().expect("message").contains(why),
            "{sid}: {err}"
        );
    }
    let resp = app
        .tenant(Method::POST, "/api/v1/callback-tasks", &secret)
        .json(&json!({"phone": "+14155550100", "reason": " \n "}))
        .send()
        .await
        .expect("create task");
    assert_eq!(
        expect_error(resp, 422, "validation_failed").await["field"],
        "reason"
    );
    app.stop().await;
}

async fn paths_match_their_template_exactly(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant_id, secret) = app.tenant_with_key("Acme").await;
    let ok = app
        .tenant(Method::GET, "/api/v1/me", &secret)
        .send()
        .await
        .expect("me");
    assert_eq!(ok.status(), 200);
    // A trailing slash, an extra segment or an empty parameter is no route.
    for path in [
        "/api/v1/me/".to_owned(),
        "/api/v1/me/extra".to_owned(),
        "/api/v1/call-logs/".to_owned(),
        format!("/api/v1/admin/tenants/{tenant_id}/"),
        "/api/v1/admin/tenants//api-keys".to_owned(),
    ] {
        let resp = app
            .admin(Method::GET, &path)
            .header("authorization", format!("Bearer {secret}"))
            .send()
            .await
            .expect("get");
        expect_error(resp, 404, "route_not_found").await;
    }
    // A malformed id in a path is a 404 naming the object, after authentication.
    let resp = app
        .admin(Method::GET, "/api/v1/admin/tenants/not-a-tenant")
        .send()
        .await
        .expect("get");
    let err = expect_error(resp, 404, "not_found").await;
    assert!(err["message"].as_str().expect("message").contains("tenant"));
    let resp = app
        .client
        .get(app.url("/api/v1/admin/tenants/not-a-tenant"))
        .send()
        .await
        .expect("get");
    expect_error(resp, 401, "unauthorized").await;
    app.stop().await;
}

backend_tests!(
    malformed_json_is_a_400_and_writes_nothing,
    wrong_types_and_unknown_fields_name_the_field,
    validation_errors_are_422_with_the_field,
    oversized_bodies_are_refused,
    wrong_content_type_and_unknown_routes,
    domain_values_are_refused_saying_what_is_wrong,
    paths_match_their_template_exactly,
);

async fn malformed_json_is_a_400_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = app.audit_total().await;
    for body in ["{", "not json", "{\"name\": \"x\"", "{\"name\": }"] {
        let resp = app
            .admin(Method::POST, "/api/v1/admin/tenants")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        expect_error(resp, 400, "invalid_json").await;
    }
    let resp = app
        .admin(Method::POST, "/api/v1/admin/tenants")
        .header("content-type", "application/json")
        .body("")
        .send()
        .await
        .expect("post");
    expect_error(resp, 400, "invalid_body").await;
    let list: serde_json::Value = app
        .admin(Method::GET, "/api/v1/admin/tenants")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["total"], 0);
    assert_eq!(app.audit_total().await, before);
    app.stop().await;
}

async fn wrong_types_and_unknown_fields_name_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        (json!({"name": 42}), "name"),
        (
            json!({"name": "x", "max_concurrent_calls": "ten"}),
            "max_concurrent_calls",
        ),
        (json!({"name": "x", "colour": "red"}), "colour"),
        (json!({}), ""),
    ];
    for (body, field) in cases {
        let resp = app
            .admin(Method::POST, "/api/v1/admin/tenants")
            .json(&body)
            .send()
            .await
            .expect("post");
        let err = expect_error(resp, 400, "invalid_body").await;
        if field.is_empty() {
            assert!(
                err["message"].as_str().expect("message").contains("name"),
                "{err}"
            );
        } else {
            assert_eq!(err["field"], field, "{err}");
        }
    }
    let id = app.create_tenant("Acme").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let resp = app
        .admin(Method::PATCH, &format!("/api/v1/admin/tenants/{id}"))
        .json(&json!({"status": "paused"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(
        expect_error(resp, 400, "invalid_body").await["field"],
        "status"
    );
    let list: serde_json::Value = app
        .admin(Method::GET, "/api/v1/admin/tenants")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["total"], 1);
    app.stop().await;
}

async fn validation_errors_are_422_with_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = app.audit_total().await;
    for (body, field) in [
        (json!({"name": "   "}), "name"),
        (json!({"name": "x".repeat(201)}), "name"),
        (
            json!({"name": "x", "max_concurrent_calls": 0}),
            "max_concurrent_calls",
        ),
        (
            json!({"name": "x", "max_concurrent_calls": 10001}),
            "max_concurrent_calls",
        ),
        (
            json!({"name": "x", "webhook_url": "not a url"}),
            "webhook_url",
        ),
        (
            json!({"name": "x", "webhook_url": "ftp://example.com/x"}),
            "webhook_url",
        ),
    ] {
        let resp = app
            .admin(Method::POST, "/api/v1/admin/tenants")
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(
            expect_error(resp, 422, "validation_failed").await["field"],
            field
        );
    }
    assert_eq!(app.audit_total().await, before);
    app.stop().await;
}

async fn oversized_bodies_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let huge = json!({"name": "x".repeat(70_000)});
    let resp = app
        .admin(Method::POST, "/api/v1/admin/tenants")
        .json(&huge)
        .send()
        .await
        .expect("post");
    expect_error(resp, 413, "payload_too_large").await;
    assert_eq!(app.audit_total().await, 0);
    app.stop().await;
}

async fn wrong_content_type_and_unknown_routes(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app
        .admin(Method::POST, "/api/v1/admin/tenants")
        .header("content-type", "text/plain")
        .body("{\"name\":\"x\"}")
        .send()
        .await
        .expect("post");
    expect_error(resp, 415, "unsupported_media_type").await;
    let resp = app
        .client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .expect("get");
    expect_error(resp, 404, "route_not_found").await;
    // A known path with another method: 405 naming every method the path supports.
    for (method, path, allow) in [
        (Method::DELETE, "/health/live", "GET"),
        (
            Method::PATCH,
            "/api/v1/operator-queues/oq_x",
            "DELETE, GET, PUT",
        ),
        // `import` is not a `{number}`: the literal template wins, DELETE included.
        (Method::GET, "/api/v1/dnc/import", "POST"),
        (Method::DELETE, "/api/v1/dnc/import", "POST"),
        (Method::TRACE, "/api-docs/openapi.json", "GET"),
    ] {
        let resp = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .expect("request");
        let headers = resp.headers().clone();
        expect_error(resp, 405, "method_not_allowed").await;
        assert_eq!(headers["allow"], allow, "{method} {path}");
    }
    // A client-supplied request id is echoed back; a hostile one is replaced.
    let resp = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let resp = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "<script>")
        .send()
        .await
        .expect("get");
    assert_ne!(resp.headers()["x-request-id"], "<script>");
    app.stop().await;
}
