//! Operator queues: CRUD through the tenant and the admin API, validation naming each field,
//! name conflicts, scopes, audit rows and tenant isolation.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, backend_tests, expect_error, spawn_app};

backend_tests!(
    queue_crud_round_trip_and_audit,
    queue_validation_names_each_field,
    duplicate_queue_names_conflict,
    admin_queue_api_is_audited,
    queue_api_requires_the_operator_scope,
    queues_are_isolated_between_tenants,
    business_hours_round_trip_and_open_now,
);

/// A valid queue body named `name`.
pub fn queue_body(name: &str) -> Value {
    json!({"name": name, "numbers": ["+14155550100", "+14155550101"]})
}

impl TestApp {
    /// Creates a queue through the tenant API; returns its JSON.
    pub async fn create_queue(&self, key: &str, body: &Value) -> Value {
        let resp = self
            .tenant(Method::POST, "/api/v1/operator-queues", key)
            .json(body)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 201, "create queue");
        resp.json().await.expect("json")
    }

    /// Audit rows of a tenant, newest first.
    pub async fn audit_of(&self, tenant: &str) -> Vec<Value> {
        let body: Value = self
            .admin(
                Method::GET,
                &format!("/api/v1/admin/audit-log?tenant_id={tenant}&limit=200"),
            )
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        body["data"].as_array().expect("data").clone()
    }
}

async fn queue_crud_round_trip_and_audit(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, key) = app.tenant_with_key("Acme").await;

    let created = app.create_queue(&key, &queue_body("billing")).await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("oq_"), "{id}");
    assert_eq!(created["tenant_id"], tenant.as_str());
    assert_eq!(created["name"], "billing");
    assert_eq!(created["numbers"], json!(["+14155550100", "+14155550101"]));
    assert_eq!(created["ring_timeout_seconds"], 25);
    assert_eq!(created["when_closed"], "callback_task");
    assert_eq!(created["when_unanswered"], "callback_task");
    assert_eq!(created["business_hours"], Value::Null);
    assert_eq!(created["caller_id"], Value::Null);
    assert_eq!(created["open_now"], true);

    let got: Value = app
        .tenant(Method::GET, &format!("/api/v1/operator-queues/{id}"), &key)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got, created);

    // Paging, by name.
    for name in ["support", "after-hours"] {
        app.create_queue(&key, &queue_body(name)).await;
    }
    let page: Value = app
        .tenant(
            Method::GET,
            "/api/v1/operator-queues?limit=2&offset=1",
            &key,
        )
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(page["total"], 3);
    assert_eq!(page["limit"], 2);
    assert_eq!(page["offset"], 1);
    let names: Vec<&str> = page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|q| q["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec!["billing", "support"]);

    // PUT replaces everything: absent optional fields go back to their defaults.
    let replaced = app
        .tenant(Method::PUT, &format!("/api/v1/operator-queues/{id}"), &key)
        .json(&json!({
            "name": "billing-eu",
            "numbers": ["+442071838750"],
            "caller_id": "+14155550199",
            "ring_timeout_seconds": 40,
            "when_closed": "voicemail",
            "when_unanswered": "agent",
            "voicemail_message": "Please leave a message after the tone.",
            "announcement": "Connecting you to billing.",
        }))
        .send()
        .await
        .expect("put");
    assert_eq!(replaced.status(), 200);
    let replaced: Value = replaced.json().await.expect("json");
    assert_eq!(replaced["id"], id.as_str());
    assert_eq!(replaced["name"], "billing-eu");
    assert_eq!(replaced["numbers"], json!(["+442071838750"]));
    assert_eq!(replaced["ring_timeout_seconds"], 40);
    assert_eq!(replaced["when_closed"], "voicemail");
    assert_eq!(replaced["when_unanswered"], "agent");
    assert_eq!(replaced["created_at"], created["created_at"]);
    let back_to_defaults: Value = app
        .tenant(Method::PUT, &format!("/api/v1/operator-queues/{id}"), &key)
        .json(&queue_body("billing-eu"))
        .send()
        .await
        .expect("put")
        .json()
        .await
        .expect("json");
    assert_eq!(back_to_defaults["ring_timeout_seconds"], 25);
    assert_eq!(back_to_defaults["caller_id"], Value::Null);
    assert_eq!(back_to_defaults["voicemail_message"], Value::Null);
    assert_eq!(back_to_defaults["when_closed"], "callback_task");

    let deleted = app
        .tenant(
            Method::DELETE,
            &format!("/api/v1/operator-queues/{id}"),
            &key,
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    assert_eq!(deleted.text().await.expect("body"), "");
    for method in [Method::GET, Method::DELETE] {
        let resp = app
            .tenant(method, &format!("/api/v1/operator-queues/{id}"), &key)
            .send()
            .await
            .expect("gone");
        expect_error(resp, 404, "not_found").await;
    }

    // Every change is audited under the key that made it, with before and after.
    let audit = app.audit_of(&tenant).await;
    let rows: Vec<&Value> = audit
        .iter()
        .filter(|r| r["target_id"] == id.as_str())
        .collect();
    let actions: Vec<&str> = rows
        .iter()
        .map(|r| r["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        vec![
            "operator_queue.delete",
            "operator_queue.update",
            "operator_queue.update",
            "operator_queue.create"
        ]
    );
    let actor = rows[0]["actor"].as_str().expect("actor");
    assert!(
        actor.starts_with(&format!("tenant:{tenant}/key:key_")),
        "{actor}"
    );
    assert_eq!(rows[3]["after"]["name"], "billing");
    assert_eq!(rows[2]["before"]["name"], "billing");
    assert_eq!(rows[2]["after"]["name"], "billing-eu");
    assert_eq!(rows[2]["after"]["when_closed"], "voicemail");
    assert_eq!(rows[0]["before"]["name"], "billing-eu");
    assert_eq!(rows[0]["after"], Value::Null);
    app.stop().await;
}

async fn queue_validation_names_each_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, key) = app.tenant_with_key("Acme").await;
    let audit_before = app.audit_total().await;
    let valid = queue_body("billing");
    let with = |changes: Value| {
        let mut body = valid.clone();
        for (k, v) in changes.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let hours = |windows: Value| json!({"timezone": "America/New_York", "windows": windows});
    let cases = [
        (with(json!({"name": "Billing"})), "name"),
        (with(json!({"name": ""})), "name"),
        (with(json!({"name": "a".repeat(65)})), "name"),
        (with(json!({"name": "bill ing"})), "name"),
        (with(json!({"numbers": []})), "numbers"),
        (
            with(json!({"numbers": vec!["+14155550100"; 11]})),
            "numbers",
        ),
        (
            with(json!({"numbers": ["+14155550100", "555-0100"]})),
            "numbers[1]",
        ),
        (
            with(json!({"numbers": ["+14155550100", "+14155550100"]})),
            "numbers[1]",
        ),
        (with(json!({"caller_id": "0044"})), "caller_id"),
        (
            with(json!({"ring_timeout_seconds": 4})),
            "ring_timeout_seconds",
        ),
        (
            with(json!({"ring_timeout_seconds": 121})),
            "ring_timeout_seconds",
        ),
        (
            with(json!({"when_closed": "voicemail"})),
            "voicemail_message",
        ),
        (
            with(json!({"when_unanswered": "voicemail", "voicemail_message": "  "})),
            "voicemail_message",
        ),
        (
            with(json!({"announcement": "x".repeat(501)})),
            "announcement",
        ),
        (
            with(
                json!({"business_hours": {"timezone": "Mars/Olympus", "windows": [{"days": ["mon"], "open": "09:00", "close": "17:00"}]}}),
            ),
            "business_hours.timezone",
        ),
        (
            with(json!({"business_hours": hours(json!([]))})),
            "business_hours.windows",
        ),
        (
            with(
                json!({"business_hours": hours(json!([{"days": ["mon", "someday"], "open": "09:00", "close": "17:00"}]))}),
            ),
            "business_hours.windows[0].days[1]",
        ),
        (
            with(
                json!({"business_hours": hours(json!([{"days": ["mon"], "open": "09:00", "close": "17:00"}, {"days": ["tue"], "open": "9am", "close": "17:00"}]))}),
            ),
            "business_hours.windows[1].open",
        ),
        (
            with(
                json!({"business_hours": hours(json!([{"days": ["mon"], "open": "09:00", "close": "25:00"}]))}),
            ),
            "business_hours.windows[0].close",
        ),
        (
            with(
                json!({"business_hours": hours(json!([{"days": [], "open": "09:00", "close": "17:00"}]))}),
            ),
            "business_hours.windows[0].days",
        ),
    ];
    for (body, field) in cases {
        for (method, path) in [
            (Method::POST, "/api/v1/operator-queues".to_owned()),
            (
                Method::POST,
                format!("/api/v1/admin/tenants/{tenant}/operator-queues"),
            ),
        ] {
            let req = if path.contains("/admin/") {
                app.admin(method, &path)
            } else {
                app.tenant(method, &path, &key)
            };
            let resp = req.json(&body).send().await.expect("post");
            let err = expect_error(resp, 422, "validation_failed").await;
            assert_eq!(err["field"], field, "{body}");
        }
    }
    // Wrong types and unknown fields are unreadable bodies, the field still named.
    for (body, field) in [
        (
            with(json!({"ring_timeout_seconds": "25"})),
            "ring_timeout_seconds",
        ),
        (with(json!({"when_closed": "hangup"})), "when_closed"),
        (with(json!({"colour": "blue"})), "colour"),
        (json!({"numbers": ["+14155550100"]}), "name"),
    ] {
        let resp = app
            .tenant(Method::POST, "/api/v1/operator-queues", &key)
            .json(&body)
            .send()
            .await
            .expect("post");
        let err = expect_error(resp, 400, "invalid_body").await;
        assert!(
            err["field"] == field || err["message"].as_str().is_some_and(|m| m.contains(field)),
            "{err}"
        );
    }
    // The same rules on PUT; nothing was written by any refused request.
    let created = app.create_queue(&key, &valid).await;
    let id = created["id"].as_str().expect("id");
    let resp = app
        .tenant(Method::PUT, &format!("/api/v1/operator-queues/{id}"), &key)
        .json(&with(json!({"numbers": ["nope"]})))
        .send()
        .await
        .expect("put");
    assert_eq!(
        expect_error(resp, 422, "validation_failed").await["field"],
        "numbers[0]"
    );
    let got: Value = app
        .tenant(Method::GET, &format!("/api/v1/operator-queues/{id}"), &key)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got, created);
    assert_eq!(app.audit_total().await, audit_before + 1, "only the create");
    app.stop().await;
}

async fn duplicate_queue_names_conflict(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.tenant_with_key("Acme").await;
    let (_, other_key) = app.tenant_with_key("Globex").await;
    app.create_queue(&key, &queue_body("billing")).await;
    let resp = app
        .tenant(Method::POST, "/api/v1/operator-queues", &key)
        .json(&queue_body("billing"))
        .send()
        .await
        .expect("post");
    let err = expect_error(resp, 409, "conflict").await;
    assert!(
        err["message"]
            .as_str()
            .expect("message")
            .contains("billing"),
        "{err}"
    );
    // Names are per tenant.
    app.create_queue(&other_key, &queue_body("billing")).await;
    // A rename onto a taken name conflicts too, and changes nothing.
    let support = app.create_queue(&key, &queue_body("support")).await;
    let id = support["id"].as_str().expect("id");
    let resp = app
        .tenant(Method::PUT, &format!("/api/v1/operator-queues/{id}"), &key)
        .json(&queue_body("billing"))
        .send()
        .await
        .expect("put");
    expect_error(resp, 409, "conflict").await;
    let got: Value = app
        .tenant(Method::GET, &format!("/api/v1/operator-queues/{id}"), &key)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["name"], "support");
    let list: Value = app
        .tenant(Method::GET, "/api/v1/operator-queues", &key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["total"], 2);
    app.stop().await;
}

async fn admin_queue_api_is_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, key) = app.tenant_with_key("Acme").await;
    let base = format!("/api/v1/admin/tenants/{tenant}/operator-queues");
    let resp = app
        .admin(Method::POST, &base)
        .json(&json!({
            "name": "support",
            "numbers": ["+14155550100"],
            "business_hours": {"timezone": "Europe/Berlin", "windows": [{"days": ["mon", "tue"], "open": "08:00", "close": "18:00"}]},
        }))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_owned();

    // The tenant sees what the admin created, and the reverse.
    let seen: Value = app
        .tenant(Method::GET, &format!("/api/v1/operator-queues/{id}"), &key)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(seen["name"], "support");
    let mine = app.create_queue(&key, &queue_body("billing")).await;
    let list: Value = app
        .admin(Method::GET, &base)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["total"], 2);
    let got: Value = app
        .admin(
            Method::GET,
            &format!("{base}/{}", mine["id"].as_str().expect("id")),
        )
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got, mine);

    let resp = app
        .admin(Method::PUT, &format!("{base}/{id}"))
        .json(&json!({"name": "support", "numbers": ["+14155550102"], "ring_timeout_seconds": 60}))
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 200);
    let resp = app
        .admin(Method::DELETE, &format!("{base}/{id}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 204);

    let audit = app.audit_of(&tenant).await;
    let rows: Vec<(&str, &str)> = audit
        .iter()
        .filter(|r| r["target_id"] == id.as_str())
        .map(|r| {
            (
                r["action"].as_str().expect("action"),
                r["actor"].as_str().expect("actor"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("operator_queue.delete", "root"),
            ("operator_queue.update", "root"),
            ("operator_queue.create", "root"),
        ]
    );
    let update = audit
        .iter()
        .find(|r| r["action"] == "operator_queue.update" && r["target_id"] == id.as_str())
        .expect("update row");
    assert_eq!(update["before"]["numbers"], json!(["+14155550100"]));
    assert_eq!(update["after"]["numbers"], json!(["+14155550102"]));
    assert_eq!(
        update["before"]["business_hours"]["timezone"],
        "Europe/Berlin"
    );
    assert_eq!(update["after"]["business_hours"], Value::Null);
    assert!(update["request_id"].as_str().is_some());

    // An unknown tenant, or no admin key.
    let resp = app
        .admin(
            Method::POST,
            "/api/v1/admin/tenants/ten_missing/operator-queues",
        )
        .json(&queue_body("x"))
        .send()
        .await
        .expect("post");
    expect_error(resp, 404, "not_found").await;
    let resp = app.client.get(app.url(&base)).send().await.expect("no key");
    expect_error(resp, 401, "unauthorized").await;
    let resp = app
        .client
        .get(app.url(&base))
        .bearer_auth(&key)
        .send()
        .await
        .expect("tenant key");
    expect_error(resp, 401, "unauthorized").await;
    app.stop().await;
}

async fn queue_api_requires_the_operator_scope(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, key) = app.tenant_with_key("Acme").await;
    let queue = app.create_queue(&key, &queue_body("billing")).await;
    let id = queue["id"].as_str().expect("id");
    let (_, runtime) = app.create_key(&tenant, &["runtime", "read"]).await;
    let path = format!("/api/v1/operator-queues/{id}");
    let body = queue_body("other");
    for (method, path, body) in [
        (Method::GET, "/api/v1/operator-queues", None),
        (Method::POST, "/api/v1/operator-queues", Some(&body)),
        (Method::GET, path.as_str(), None),
        (Method::PUT, path.as_str(), Some(&body)),
        (Method::DELETE, path.as_str(), None),
    ] {
        let mut req = app.tenant(method.clone(), path, &runtime);
        if let Some(b) = body {
            req = req.json(b);
        }
        let err = expect_error(
            req.send().await.expect("request"),
            403,
            "insufficient_scope",
        )
        .await;
        assert!(
            err["message"]
                .as_str()
                .expect("message")
                .contains("operator"),
            "{err}"
        );
        let resp = app
            .client
            .request(method, app.url(path))
            .send()
            .await
            .expect("request");
        expect_error(resp, 401, "unauthorized").await;
    }
    // Nothing changed.
    let got: Value = app
        .tenant(Method::GET, &path, &key)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["name"], "billing");
    app.stop().await;
}

async fn queues_are_isolated_between_tenants(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant_a, key_a) = app.tenant_with_key("Acme").await;
    let (tenant_b, key_b) = app.tenant_with_key("Globex").await;
    let queue = app.create_queue(&key_a, &queue_body("billing")).await;
    let id = queue["id"].as_str().expect("id");
    let path = format!("/api/v1/operator-queues/{id}");

    let list: Value = app
        .tenant(Method::GET, "/api/v1/operator-queues", &key_b)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["total"], 0);
    assert_eq!(list["data"], json!([]));
    for (method, body) in [
        (Method::GET, None),
        (Method::PUT, Some(queue_body("stolen"))),
        (Method::DELETE, None),
    ] {
        let mut req = app.tenant(method, &path, &key_b);
        if let Some(b) = &body {
            req = req.json(b);
        }
        expect_error(req.send().await.expect("request"), 404, "not_found").await;
    }
    // Through the admin API, A's queue is not under B's path either.
    let admin_b = format!("/api/v1/admin/tenants/{tenant_b}/operator-queues/{id}");
    for (method, body) in [
        (Method::GET, None),
        (Method::PUT, Some(queue_body("stolen"))),
        (Method::DELETE, None),
    ] {
        let mut req = app.admin(method, &admin_b);
        if let Some(b) = &body {
            req = req.json(b);
        }
        expect_error(req.send().await.expect("request"), 404, "not_found").await;
    }
    // A's queue is untouched, and the refusals wrote no audit rows.
    let got: Value = app
        .tenant(Method::GET, &path, &key_a)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got, queue);
    let audit = app.audit_of(&tenant_a).await;
    assert_eq!(
        audit
            .iter()
            .filter(|r| r["target_type"] == "operator_queue")
            .count(),
        1
    );
    assert!(
        app.audit_of(&tenant_b)
            .await
            .iter()
            .all(|r| r["target_type"] != "operator_queue")
    );
    app.stop().await;
}

async fn business_hours_round_trip_and_open_now(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.tenant_with_key("Acme").await;
    let hours = json!({
        "timezone": "America/New_York",
        "windows": [
            {"days": ["fri", "mon", "tue", "wed", "thu"], "open": "09:00", "close": "17:30"},
            {"days": ["sat"], "open": "22:00", "close": "02:00"},
        ],
    });
    let queue = app
        .create_queue(
            &key,
            &json!({"name": "office", "numbers": ["+14155550100"], "business_hours": hours}),
        )
        .await;
    // Days come back Monday first; the rest exactly as given.
    assert_eq!(
        queue["business_hours"],
        json!({
            "timezone": "America/New_York",
            "windows": [
                {"days": ["mon", "tue", "wed", "thu", "fri"], "open": "09:00", "close": "17:30"},
                {"days": ["sat"], "open": "22:00", "close": "02:00"},
            ],
        })
    );
    assert!(queue["open_now"].is_boolean());
    // A queue open around the clock, in a zone with a 45-minute offset, is open now.
    let always = app
        .create_queue(
            &key,
            &json!({"name": "always", "numbers": ["+14155550100"], "business_hours": {
                "timezone": "Pacific/Chatham",
                "windows": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "open": "00:00", "close": "24:00"}],
            }}),
        )
        .await;
    assert_eq!(always["open_now"], true);
    app.stop().await;
}
