//! Health, readiness, metrics, OpenAPI documents, supervision (restart and meltdown) and
//! graceful shutdown.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;
use stateset_voice::http::routes::table;
use stateset_voice::openapi::{Document, document};

use crate::helpers::{Backend, backend_tests, expect_error, spawn_app, spawn_app_with};

backend_tests!(
    health_and_readiness,
    metrics_expose_http_and_actor_series,
    openapi_documents_cover_every_mounted_route,
    killed_singleton_is_restarted_and_counted,
    meltdown_turns_health_to_503,
    shutdown_drains_and_stops,
    the_database_probe_times_a_round_trip_and_reports_the_pool,
);

/// A generated id (`ten_…`, `call_…`, a Twilio `CA…` SID): prefix then 32 hex digits.
fn looks_like_id(value: &str) -> bool {
    [
        "ten_", "key_", "call_", "rte_", "vs_", "agt_", "agv_", "CA", "AC",
    ]
    .iter()
    .any(|p| {
        value
            .strip_prefix(p)
            .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

async fn health_and_readiness(backend: Backend) {
    let app = spawn_app(backend).await;
    let live: Value = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .expect("live")
        .json()
        .await
        .expect("json");
    assert_eq!(live["status"], "ok");
    let resp = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(resp.status(), 200);
    let ready: Value = resp.json().await.expect("json");
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["supervisor"], "ok");
    assert_eq!(ready["checks"]["draining"], "ok");
    app.state.start_draining();
    let resp = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(resp.status(), 503);
    let ready: Value = resp.json().await.expect("json");
    assert_eq!(ready["checks"]["draining"], "shutting down");
    app.stop().await;
}

async fn metrics_expose_http_and_actor_series(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, secret) = app.tenant_with_key("Acme").await;
    app.tenant(Method::GET, "/api/v1/me", &secret)
        .send()
        .await
        .expect("me");
    let resp = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    let text = resp.text().await.expect("text");
    assert!(
        text.contains("http_requests_total{route=\"/api/v1/me\",method=\"GET\",status=\"200\"}"),
        "{text}"
    );
    assert!(text.contains("http_request_duration_seconds_bucket{route=\"/api/v1/admin/tenants\""));
    // Authentication reads the shared tenant directory, not the tenant actor's mailbox;
    // the key's creation went through the actor.
    assert!(text.contains("actor_messages_total{actor=\"tenant\",msg=\"create_api_key\"}"));
    assert!(!text.contains("msg=\"authenticate\""));
    assert!(text.contains("actor_handle_seconds_bucket{actor=\"tenant\",msg=\"create\""));
    // Labels are route templates and bounded values, never per-call, per-key or per-tenant ids.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        for value in line
            .split("=\"")
            .skip(1)
            .filter_map(|v| v.split('"').next())
        {
            assert!(!looks_like_id(value), "unbounded label: {line}");
        }
    }
    assert!(!text.contains(&secret));
    app.stop().await;
}

async fn openapi_documents_cover_every_mounted_route(backend: Backend) {
    let app = spawn_app(backend).await;
    let full: Value = app
        .client
        .get(app.url("/api-docs/openapi.json"))
        .send()
        .await
        .expect("doc")
        .json()
        .await
        .expect("json");
    assert!(
        full["openapi"]
            .as_str()
            .expect("version")
            .starts_with("3.1")
    );
    let documented: BTreeSet<(String, String)> = full["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("item")
                .keys()
                .filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()))
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mounted: BTreeSet<(String, String)> = table()
        .iter()
        .map(|r| (r.method().to_owned(), r.path().to_owned()))
        .collect();
    assert_eq!(
        documented, mounted,
        "the full document lists exactly the mounted routes"
    );

    // Every route in the table is really mounted: a request never gets `route_not_found`;
    // and whatever it answers, with the admin key or with no credential at all, is a status
    // its operation documents.
    for route in table() {
        let path = route
            .path()
            .replace("{tenant_id}", "ten_missing")
            .replace("{key_id}", "key_missing")
            .replace("{id}", "missing")
            .replace("{call_sid}", "CAmissing");
        let method = Method::from_bytes(route.method().as_bytes()).expect("method");
        let operation = &full["paths"][route.path()][route.method().to_lowercase()];
        for admin_key in [true, false] {
            let req = if admin_key {
                app.admin(method.clone(), &path)
            } else {
                app.client.request(method.clone(), app.url(&path))
            };
            let resp = req
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("request");
            let status = resp.status().as_u16().to_string();
            if resp.status() == 404 {
                let body: Value = resp.json().await.expect("json");
                assert_ne!(
                    body["error"]["code"],
                    "route_not_found",
                    "{} {} is not mounted",
                    route.method(),
                    route.path()
                );
            }
            assert!(
                operation["responses"].get(&status).is_some(),
                "{} {} answered {status} (admin key: {admin_key}), which its operation does not document",
                route.method(),
                route.path()
            );
        }
    }
    // Query parameters are documented as strictly as they are validated.
    let params = full["paths"]["/api/v1/admin/audit-log"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    let param = |name: &str| {
        params
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["schema"].clone())
            .expect("parameter")
    };
    assert_eq!(param("tenant_id")["pattern"], "^ten_[A-Za-z0-9_-]{1,64}$");
    assert_eq!(param("limit")["minimum"], 1);
    assert_eq!(param("limit")["maximum"], 200);
    // The routes the guard implies are documented with their security and answers.
    for (path, item) in full["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{method} {path} has no tag"
            );
            // A path segment is never empty: no string path parameter's schema accepts one.
            for p in op["parameters"].as_array().into_iter().flatten() {
                let schema = &p["schema"];
                if p["in"] == "path" && schema["type"] == "string" {
                    assert!(
                        ["pattern", "enum", "format", "minLength"]
                            .iter()
                            .any(|k| schema.get(*k).is_some()),
                        "{method} {path}: parameter {} accepts an empty value",
                        p["name"]
                    );
                }
            }
            let security = op["security"].to_string();
            if security.contains("bearer") || security.contains("admin_key") {
                for status in ["401", "429"] {
                    assert!(
                        op["responses"].get(status).is_some(),
                        "{method} {path} lacks {status}"
                    );
                }
            }
            if op.get("requestBody").is_some()
                && op["requestBody"]["content"]
                    .get("application/json")
                    .is_some()
            {
                for status in ["400", "413", "415", "422"] {
                    assert!(
                        op["responses"].get(status).is_some(),
                        "{method} {path} lacks {status}"
                    );
                }
            }
        }
    }

    let public: Value = app
        .client
        .get(app.url("/api-docs/public.json"))
        .send()
        .await
        .expect("doc")
        .json()
        .await
        .expect("json");
    // Membership follows the guard: nothing in the public document needs the admin key,
    // everything in the admin document does.
    let public_paths = public["paths"].as_object().expect("paths");
    assert!(public_paths.contains_key("/api/v1/me"));
    assert!(public_paths.contains_key("/api-docs/admin.json"));
    for (path, item) in public_paths {
        assert!(!path.starts_with("/api/v1/admin/"), "{path}");
        assert!(!item.to_string().contains("admin_key"), "{path}");
    }
    let admin: Value = app
        .client
        .get(app.url("/api-docs/admin.json"))
        .send()
        .await
        .expect("doc")
        .json()
        .await
        .expect("json");
    for (path, item) in admin["paths"].as_object().expect("paths") {
        assert!(path.starts_with("/api/v1/admin/"), "{path}");
        for op in item.as_object().expect("item").values() {
            assert_eq!(
                op["security"],
                serde_json::json!([{"admin_key": []}]),
                "{path}"
            );
        }
    }
    assert_eq!(
        serde_json::to_value(document(Document::Full)).expect("json"),
        full
    );
    app.stop().await;
}

async fn killed_singleton_is_restarted_and_counted(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, secret) = app.tenant_with_key("Acme").await;
    let mut changes = app.state.actors.tenant.subscribe();
    let first = app.state.actors.tenant.get().expect("tenant actor");
    first.kill();
    let second = loop {
        changes.changed().await.expect("root alive");
        if let Some(actor) = changes.borrow_and_update().clone() {
            break actor;
        }
    };
    assert_ne!(first.get_id(), second.get_id());
    // The restarted actor serves requests (its cache starts empty).
    assert_eq!(
        app.tenant(Method::GET, "/api/v1/me", &secret)
            .send()
            .await
            .expect("me")
            .status(),
        200
    );
    let diag: Value = app
        .admin(Method::GET, "/api/v1/admin/diagnostics/actors")
        .send()
        .await
        .expect("diag")
        .json()
        .await
        .expect("json");
    assert_eq!(diag["healthy"], true);
    let tenant = &diag["children"][0];
    assert_eq!(tenant["kind"], "tenant");
    assert_eq!(tenant["alive"], true);
    assert_eq!(tenant["restarts"], 1);
    assert_eq!(tenant["terminations"], 1);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("actor_restarts_total{actor=\"tenant\"}"));
    app.stop().await;
}

async fn meltdown_turns_health_to_503(backend: Backend) {
    let app = spawn_app_with(backend, |raw| {
        raw.set("SUPERVISOR_MAX_RESTARTS", "2");
        raw.set("SUPERVISOR_RESTART_WINDOW_SECONDS", "600");
    })
    .await;
    let mut health = app.state.actors.health.clone();
    let mut changes = app.state.actors.tenant.subscribe();
    for round in 0..3 {
        let actor = app.state.actors.tenant.get().expect("tenant actor");
        actor.kill();
        if round < 2 {
            // Below the limit: wait for the next incarnation.
            loop {
                changes.changed().await.expect("root alive");
                let current = changes.borrow_and_update().clone();
                if current.is_some_and(|a| a.get_id() != actor.get_id()) {
                    break;
                }
            }
        }
    }
    while *health.borrow_and_update() {
        health.changed().await.expect("root alive");
    }
    let resp = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(resp.status(), 503);
    let ready: Value = resp.json().await.expect("json");
    assert!(
        ready["checks"]["supervisor"]
            .as_str()
            .expect("check")
            .starts_with("meltdown")
    );
    let resp = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .expect("live");
    assert_eq!(resp.status(), 503);
    // With the tenant actor gone, tenant work answers 503, not a hang or a 500.
    let resp = app
        .admin(Method::GET, "/api/v1/admin/tenants")
        .send()
        .await
        .expect("list");
    expect_error(resp, 503, "unavailable").await;
    app.stop().await;
}

async fn shutdown_drains_and_stops(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.url("/health/live");
    let client = app.client.clone();
    assert_eq!(client.get(&url).send().await.expect("live").status(), 200);
    let root = app.state.actors.root.clone();
    app.stop().await;
    assert!(
        client.get(&url).send().await.is_err(),
        "listener closed after shutdown"
    );
    assert_eq!(root.get_status(), ractor::ActorStatus::Stopped);
}

async fn the_database_probe_times_a_round_trip_and_reports_the_pool(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app
        .admin(Method::GET, "/api/v1/admin/diagnostics/database")
        .send()
        .await
        .expect("probe");
    assert_eq!(resp.status(), 200);
    let probe: Value = resp.json().await.expect("json");
    let expected = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(probe["backend"], expected, "{probe}");
    assert!(
        probe["round_trip_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{probe}"
    );
    // The test app's pool: DATABASE_MAX_CONNECTIONS=5, at least the probe's connection open.
    assert_eq!(probe["max_connections"], 5);
    let open = probe["connections"].as_u64().expect("connections");
    assert!((1..=5).contains(&open), "{probe}");
    assert!(
        probe["idle"].as_u64().is_some_and(|idle| idle <= open),
        "{probe}"
    );
    // Admin only.
    let resp = app
        .client
        .get(app.url("/api/v1/admin/diagnostics/database"))
        .send()
        .await
        .expect("probe");
    assert_eq!(resp.status(), 401);
    app.stop().await;
}
