//! Callback tasks: the life cycle, every refused transition, exclusive claims under
//! concurrency, validation, listing filters and order, scopes and tenant isolation.

use actors::ids::{CallId, QueueId, TenantId};
use actors::operator::{CallbackPriority, CallbackSource, NewCallbackTask, QueueFallback};
use actors::store::StoreError;
use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, backend_tests, expect_error, spawn_app};
use crate::queues::queue_body;

backend_tests!(
    callback_task_lifecycle,
    invalid_transitions_conflict_and_change_nothing,
    concurrent_claims_have_exactly_one_winner,
    callback_task_validation,
    callback_tasks_list_filters_and_order,
    callback_task_scopes,
    callback_tasks_are_isolated_between_tenants,
    deleting_a_queue_keeps_its_tasks,
    the_store_functions_the_call_actor_uses,
);

impl TestApp {
    /// POSTs a callback task; returns the response.
    async fn post_task(&self, key: &str, body: &Value) -> reqwest::Response {
        self.tenant(Method::POST, "/api/v1/callback-tasks", key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Creates a callback task; returns its JSON.
    async fn create_task(&self, key: &str, body: &Value) -> Value {
        let resp = self.post_task(key, body).await;
        assert_eq!(resp.status(), 201, "create task");
        resp.json().await.expect("json")
    }

    /// A callback task as the tenant sees it.
    async fn task(&self, key: &str, id: &str) -> Value {
        let resp = self
            .tenant(Method::GET, &format!("/api/v1/callback-tasks/{id}"), key)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "get task");
        resp.json().await.expect("json")
    }

    /// POSTs `…/{id}/{action}` with an optional body.
    async fn act(
        &self,
        key: &str,
        id: &str,
        action: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self.tenant(
            Method::POST,
            &format!("/api/v1/callback-tasks/{id}/{action}"),
            key,
        );
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request")
    }

    /// Lists callback tasks with a query string.
    async fn tasks(&self, key: &str, query: &str) -> Value {
        let resp = self
            .tenant(Method::GET, &format!("/api/v1/callback-tasks?{query}"), key)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "list tasks");
        resp.json().await.expect("json")
    }

    /// A telephony tenant with one inbound call recorded: (tenant id, key, call id).
    async fn tenant_with_call(&self, name: &str, number: &str) -> (String, String, String) {
        let t = self.telephony_tenant(name, number, json!({})).await;
        let (call_sid, _) = self.inbound(&t, "+15557654321", number).await;
        let call = self.call_log(&t.key, &call_sid).await;
        (
            t.tenant_id,
            t.key,
            call["id"].as_str().expect("call id").to_owned(),
        )
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .collect()
}

fn id_of(task: &Value) -> String {
    task["id"].as_str().expect("id").to_owned()
}

async fn callback_task_lifecycle(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, key, call_id) = app.tenant_with_call("Acme", "+14155550100").await;
    let queue = app.create_queue(&key, &queue_body("billing")).await;
    let created = app
        .create_task(
            &key,
            &json!({
                "phone": "+15557654321",
                "reason": "wants to change the delivery address",
                "queue_id": queue["id"],
                "source_call_id": call_id,
                "priority": "high",
                "due_at": "2030-01-01T10:00:00+01:00",
            }),
        )
        .await;
    let id = id_of(&created);
    assert!(id.starts_with("cbt_"), "{id}");
    assert_eq!(created["tenant_id"], tenant.as_str());
    assert_eq!(created["phone"], "+15557654321");
    assert_eq!(created["reason"], "wants to change the delivery address");
    assert_eq!(created["queue_id"], queue["id"]);
    assert_eq!(created["source_call_id"], call_id.as_str());
    assert_eq!(created["priority"], "high");
    assert_eq!(created["due_at"], "2030-01-01T09:00:00.000Z");
    assert_eq!(created["status"], "open");
    assert_eq!(created["created_by"], "api");
    for field in [
        "assignee",
        "claimed_at",
        "completed_at",
        "cancelled_at",
        "outcome",
        "notes",
    ] {
        assert_eq!(created[field], Value::Null, "{field}");
    }
    assert_eq!(app.task(&key, &id).await, created);

    let resp = app
        .act(
            &key,
            &id,
            "claim",
            Some(json!({"assignee": "ana@acme.test"})),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let claimed: Value = resp.json().await.expect("json");
    assert_eq!(claimed["status"], "claimed");
    assert_eq!(claimed["assignee"], "ana@acme.test");
    assert!(claimed["claimed_at"].is_string());

    let resp = app
        .act(
            &key,
            &id,
            "complete",
            Some(json!({"outcome": "address changed", "notes": "asked for a text confirmation"})),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let done: Value = resp.json().await.expect("json");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["outcome"], "address changed");
    assert_eq!(done["notes"], "asked for a text confirmation");
    assert_eq!(done["assignee"], "ana@acme.test");
    assert!(done["completed_at"].is_string());
    assert_eq!(app.task(&key, &id).await, done);

    // Defaults, and completing without a body.
    let plain = app
        .create_task(
            &key,
            &json!({"phone": "+15557654322", "reason": "call back"}),
        )
        .await;
    assert_eq!(plain["priority"], "normal");
    assert_eq!(plain["due_at"], Value::Null);
    assert_eq!(plain["queue_id"], Value::Null);
    let plain_id = id_of(&plain);
    app.act(&key, &plain_id, "claim", Some(json!({"assignee": "bo"})))
        .await;
    let resp = app.act(&key, &plain_id, "complete", None).await;
    assert_eq!(resp.status(), 200);
    let done: Value = resp.json().await.expect("json");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["outcome"], Value::Null);

    // Cancelling an open task without a body, and a claimed one with a reason.
    let open = id_of(
        &app.create_task(&key, &json!({"phone": "+15557654323", "reason": "r"}))
            .await,
    );
    let resp = app.act(&key, &open, "cancel", None).await;
    assert_eq!(resp.status(), 200);
    let cancelled: Value = resp.json().await.expect("json");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], Value::Null);
    assert!(cancelled["cancelled_at"].is_string());
    let claimed = id_of(
        &app.create_task(&key, &json!({"phone": "+15557654324", "reason": "r"}))
            .await,
    );
    app.act(&key, &claimed, "claim", Some(json!({"assignee": "cy"})))
        .await;
    let resp = app
        .act(
            &key,
            &claimed,
            "cancel",
            Some(json!({"reason": "customer called again"})),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let cancelled: Value = resp.json().await.expect("json");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], "customer called again");
    assert_eq!(cancelled["assignee"], "cy");
    app.stop().await;
}

async fn invalid_transitions_conflict_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.tenant_with_key("Acme").await;
    let new = || json!({"phone": "+15557654321", "reason": "r"});
    let claim = || Some(json!({"assignee": "someone-else"}));

    let open = id_of(&app.create_task(&key, &new()).await);
    let claimed = id_of(&app.create_task(&key, &new()).await);
    app.act(&key, &claimed, "claim", Some(json!({"assignee": "ana"})))
        .await;
    let completed = id_of(&app.create_task(&key, &new()).await);
    app.act(&key, &completed, "claim", Some(json!({"assignee": "ana"})))
        .await;
    app.act(
        &key,
        &completed,
        "complete",
        Some(json!({"outcome": "done"})),
    )
    .await;
    let cancelled = id_of(&app.create_task(&key, &new()).await);
    app.act(&key, &cancelled, "cancel", Some(json!({"reason": "dup"})))
        .await;

    let refused: Vec<(&str, &str, &str, Option<Value>)> = vec![
        (open.as_str(), "open", "complete", None),
        (claimed.as_str(), "claimed", "claim", claim()),
        (completed.as_str(), "completed", "claim", claim()),
        (completed.as_str(), "completed", "complete", None),
        (completed.as_str(), "completed", "cancel", None),
        (cancelled.as_str(), "cancelled", "claim", claim()),
        (cancelled.as_str(), "cancelled", "complete", None),
        (cancelled.as_str(), "cancelled", "cancel", None),
    ];
    for (id, status, action, body) in refused {
        let before = app.task(&key, id).await;
        assert_eq!(before["status"], status);
        let resp = app.act(&key, id, action, body).await;
        let err = expect_error(resp, 409, "invalid_transition").await;
        assert!(
            err["message"]
                .as_str()
                .expect("message")
                .contains(&format!("is {status}")),
            "{action} on {status}: {err}"
        );
        assert_eq!(
            app.task(&key, id).await,
            before,
            "{action} on {status} changed nothing"
        );
    }
    app.stop().await;
}

async fn concurrent_claims_have_exactly_one_winner(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.tenant_with_key("Acme").await;
    let id = id_of(
        &app.create_task(&key, &json!({"phone": "+15557654321", "reason": "r"}))
            .await,
    );
    let claims = (0..20).map(|i| {
        let req = app
            .tenant(
                Method::POST,
                &format!("/api/v1/callback-tasks/{id}/claim"),
                &key,
            )
            .json(&json!({"assignee": format!("operator-{i}")}));
        async move {
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.expect("json");
            (i, status, body)
        }
    });
    let results = join_all(claims.map(tokio::spawn)).await;
    let mut winners = Vec::new();
    for r in results {
        let (i, status, body) = r.expect("claim task");
        match status {
            200 => winners.push((i, body)),
            409 => assert_eq!(body["error"]["code"], "invalid_transition", "{body}"),
            other => panic!("claim {i} answered {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins");
    let (winner, body) = &winners[0];
    assert_eq!(body["assignee"], format!("operator-{winner}"));
    let stored = app.task(&key, &id).await;
    assert_eq!(stored["status"], "claimed");
    assert_eq!(stored["assignee"], format!("operator-{winner}"));
    assert_eq!(&stored, body);
    app.stop().await;
}

async fn callback_task_validation(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key_a, _) = app.tenant_with_call("Acme", "+14155550100").await;
    let (_, key_b, call_b) = app.tenant_with_call("Globex", "+14155550200").await;
    let queue_b = app.create_queue(&key_b, &queue_body("billing")).await;
    let valid = json!({"phone": "+15557654321", "reason": "r"});
    let with = |changes: Value| {
        let mut body = valid.clone();
        for (k, v) in changes.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    for (body, field) in [
        (with(json!({"phone": "5557654321"})), "phone"),
        (with(json!({"phone": "+0123"})), "phone"),
        (with(json!({"reason": ""})), "reason"),
        (with(json!({"reason": "   "})), "reason"),
        (with(json!({"reason": "x".repeat(501)})), "reason"),
        (with(json!({"due_at": "tomorrow"})), "due_at"),
        (with(json!({"queue_id": "billing"})), "queue_id"),
        (with(json!({"queue_id": queue_b["id"]})), "queue_id"),
        (with(json!({"queue_id": "oq_missing"})), "queue_id"),
        (with(json!({"source_call_id": call_b})), "source_call_id"),
        (
            with(json!({"source_call_id": "call_missing"})),
            "source_call_id",
        ),
        (with(json!({"source_call_id": "CA123"})), "source_call_id"),
    ] {
        let resp = app.post_task(&key_a, &body).await;
        let err = expect_error(resp, 422, "validation_failed").await;
        assert_eq!(err["field"], field, "{body}");
    }
    for (body, field) in [
        (with(json!({"priority": "asap"})), "priority"),
        (with(json!({"status": "claimed"})), "status"),
        (with(json!({"phone": 14155550100u64})), "phone"),
    ] {
        let resp = app.post_task(&key_a, &body).await;
        let err = expect_error(resp, 400, "invalid_body").await;
        assert_eq!(err["field"], field, "{body}");
    }
    // Nothing was written for A (and B's own references still work for B).
    assert_eq!(app.tasks(&key_a, "").await["total"], 0);
    let ok = app
        .create_task(
            &key_b,
            &with(json!({"queue_id": queue_b["id"], "source_call_id": call_b})),
        )
        .await;
    let id = id_of(&ok);

    // Status-change bodies.
    let resp = app.act(&key_b, &id, "claim", None).await;
    expect_error(resp, 400, "invalid_body").await;
    let resp = app.act(&key_b, &id, "claim", Some(json!({}))).await;
    expect_error(resp, 400, "invalid_body").await;
    let resp = app
        .act(&key_b, &id, "claim", Some(json!({"assignee": " "})))
        .await;
    assert_eq!(
        expect_error(resp, 422, "validation_failed").await["field"],
        "assignee"
    );
    app.act(&key_b, &id, "claim", Some(json!({"assignee": "ana"})))
        .await;
    let resp = app
        .act(&key_b, &id, "complete", Some(json!({"outcome": ""})))
        .await;
    assert_eq!(
        expect_error(resp, 422, "validation_failed").await["field"],
        "outcome"
    );
    let resp = app
        .act(&key_b, &id, "complete", Some(json!({"result": "x"})))
        .await;
    assert_eq!(
        expect_error(resp, 400, "invalid_body").await["field"],
        "result"
    );
    let resp = app
        .act(
            &key_b,
            &id,
            "cancel",
            Some(json!({"reason": "x".repeat(501)})),
        )
        .await;
    assert_eq!(
        expect_error(resp, 422, "validation_failed").await["field"],
        "reason"
    );
    assert_eq!(app.task(&key_b, &id).await["status"], "claimed");
    app.stop().await;
}

async fn callback_tasks_list_filters_and_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key, call_id) = app.tenant_with_call("Acme", "+14155550100").await;
    let queue = app.create_queue(&key, &queue_body("billing")).await;
    let mk = |priority: &str, due: Option<&str>| {
        let mut b = json!({"phone": "+15557654321", "reason": "r", "priority": priority});
        if let Some(d) = due {
            b["due_at"] = json!(d);
        }
        b
    };
    let low = id_of(&app.create_task(&key, &mk("low", None)).await);
    let urgent_later = id_of(
        &app.create_task(&key, &mk("urgent", Some("2030-01-02T00:00:00Z")))
            .await,
    );
    let urgent_sooner = id_of(
        &app.create_task(&key, &mk("urgent", Some("2030-01-01T00:00:00Z")))
            .await,
    );
    let normal = id_of(&app.create_task(&key, &mk("normal", None)).await);
    let high = id_of(
        &app.create_task(&key, &mk("high", Some("2029-06-01T00:00:00Z")))
            .await,
    );
    let mut in_queue = mk("urgent", None);
    in_queue["queue_id"] = queue["id"].clone();
    in_queue["source_call_id"] = json!(call_id);
    let urgent_undated = id_of(&app.create_task(&key, &in_queue).await);

    let all = app.tasks(&key, "").await;
    assert_eq!(all["total"], 6);
    assert_eq!(
        ids(&all),
        vec![
            urgent_sooner.clone(),
            urgent_later.clone(),
            urgent_undated.clone(),
            high.clone(),
            normal.clone(),
            low.clone()
        ]
    );
    let page = app.tasks(&key, "limit=2&offset=1").await;
    assert_eq!(page["total"], 6);
    assert_eq!(
        (page["limit"].as_u64(), page["offset"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        ids(&page),
        vec![urgent_later.clone(), urgent_undated.clone()]
    );

    app.act(&key, &normal, "claim", Some(json!({"assignee": "bob"})))
        .await;
    app.act(&key, &low, "claim", Some(json!({"assignee": "ann"})))
        .await;
    app.act(&key, &low, "cancel", None).await;
    let by_queue = format!("queue_id={}", queue["id"].as_str().expect("id"));
    let by_call = format!("source_call_id={call_id}");
    for (query, expected) in [
        ("status=claimed", vec![normal.clone()]),
        ("status=cancelled", vec![low.clone()]),
        ("assignee=bob", vec![normal.clone()]),
        (by_queue.as_str(), vec![urgent_undated.clone()]),
        (by_call.as_str(), vec![urgent_undated.clone()]),
        (
            "priority=urgent",
            vec![
                urgent_sooner.clone(),
                urgent_later.clone(),
                urgent_undated.clone(),
            ],
        ),
        (
            "due_before=2030-01-01T12:00:00Z",
            vec![urgent_sooner.clone(), high.clone()],
        ),
        (
            "priority=urgent&due_before=2030-01-01T12:00:00Z",
            vec![urgent_sooner.clone()],
        ),
        ("status=open&priority=normal", vec![]),
    ] {
        let list = app.tasks(&key, query).await;
        assert_eq!(ids(&list), expected, "{query}");
        assert_eq!(list["total"], expected.len(), "{query}");
    }
    for (query, field) in [
        ("queue_id=billing", "queue_id"),
        ("source_call_id=CA1", "source_call_id"),
        ("status=done", "status"),
        ("priority=asap", "priority"),
        ("due_before=soon", "due_before"),
        ("limit=0", "limit"),
        ("colour=red", "colour"),
    ] {
        let resp = app
            .tenant(
                Method::GET,
                &format!("/api/v1/callback-tasks?{query}"),
                &key,
            )
            .send()
            .await
            .expect("request");
        let err = expect_error(resp, 400, "invalid_query").await;
        assert_eq!(err["field"], field, "{query}");
    }
    app.stop().await;
}

async fn callback_task_scopes(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, key) = app.tenant_with_key("Acme").await;
    let (_, read) = app.create_key(&tenant, &["read"]).await;
    let (_, runtime) = app.create_key(&tenant, &["runtime"]).await;
    let (_, operator) = app.create_key(&tenant, &["operator"]).await;
    let body = json!({"phone": "+15557654321", "reason": "r"});

    // Reading: `read` or `operator`.
    let id = id_of(&app.create_task(&key, &body).await);
    for k in [&read, &operator] {
        assert_eq!(app.tasks(k, "").await["total"], 1);
        assert_eq!(app.task(k, &id).await["id"], id.as_str());
    }
    let resp = app
        .tenant(Method::GET, "/api/v1/callback-tasks", &runtime)
        .send()
        .await
        .expect("list");
    expect_error(resp, 403, "insufficient_scope").await;
    let resp = app
        .tenant(
            Method::GET,
            &format!("/api/v1/callback-tasks/{id}"),
            &runtime,
        )
        .send()
        .await
        .expect("get");
    expect_error(resp, 403, "insufficient_scope").await;

    // Creating: `operator` or `runtime`.
    app.create_task(&runtime, &body).await;
    app.create_task(&operator, &body).await;
    let resp = app.post_task(&read, &body).await;
    let err = expect_error(resp, 403, "insufficient_scope").await;
    assert!(
        err["message"]
            .as_str()
            .expect("message")
            .contains("`operator` or `runtime`"),
        "{err}"
    );

    // Changing: `operator` only; a refused request changes nothing.
    for k in [&read, &runtime] {
        for (action, b) in [
            ("claim", Some(json!({"assignee": "x"}))),
            ("complete", None),
            ("cancel", None),
        ] {
            let resp = app.act(k, &id, action, b).await;
            expect_error(resp, 403, "insufficient_scope").await;
        }
    }
    assert_eq!(app.task(&key, &id).await["status"], "open");
    let resp = app
        .act(&operator, &id, "claim", Some(json!({"assignee": "x"})))
        .await;
    assert_eq!(resp.status(), 200);
    let resp = app
        .client
        .get(app.url("/api/v1/callback-tasks"))
        .send()
        .await
        .expect("no key");
    expect_error(resp, 401, "unauthorized").await;
    app.stop().await;
}

async fn callback_tasks_are_isolated_between_tenants(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key_a) = app.tenant_with_key("Acme").await;
    let (_, key_b) = app.tenant_with_key("Globex").await;
    let queue_a = app.create_queue(&key_a, &queue_body("billing")).await;
    let body = json!({"phone": "+15557654321", "reason": "r", "queue_id": queue_a["id"]});
    let open = app.create_task(&key_a, &body).await;
    let claimed_id = id_of(&app.create_task(&key_a, &body).await);
    app.act(
        &key_a,
        &claimed_id,
        "claim",
        Some(json!({"assignee": "ana"})),
    )
    .await;
    let claimed = app.task(&key_a, &claimed_id).await;

    let list = app.tasks(&key_b, "").await;
    assert_eq!(list["total"], 0);
    let filtered = app
        .tasks(
            &key_b,
            &format!("queue_id={}", queue_a["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(filtered["total"], 0);
    for task in [&open, &claimed] {
        let id = id_of(task);
        let resp = app
            .tenant(Method::GET, &format!("/api/v1/callback-tasks/{id}"), &key_b)
            .send()
            .await
            .expect("get");
        expect_error(resp, 404, "not_found").await;
        for (action, b) in [
            ("claim", Some(json!({"assignee": "mallory"}))),
            ("complete", Some(json!({"outcome": "stolen"}))),
            ("cancel", Some(json!({"reason": "stolen"}))),
        ] {
            let resp = app.act(&key_b, &id, action, b).await;
            expect_error(resp, 404, "not_found").await;
        }
        assert_eq!(&app.task(&key_a, &id).await, task, "A's task unchanged");
    }
    app.stop().await;
}

async fn deleting_a_queue_keeps_its_tasks(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.tenant_with_key("Acme").await;
    let queue = app.create_queue(&key, &queue_body("billing")).await;
    let queue_id = queue["id"].as_str().expect("id");
    let task = app
        .create_task(
            &key,
            &json!({"phone": "+15557654321", "reason": "r", "queue_id": queue_id}),
        )
        .await;
    let resp = app
        .tenant(
            Method::DELETE,
            &format!("/api/v1/operator-queues/{queue_id}"),
            &key,
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 204);
    let after = app.task(&key, &id_of(&task)).await;
    assert_eq!(after["queue_id"], Value::Null);
    assert_eq!(after["status"], "open");
    // A task can no longer name the deleted queue.
    let resp = app
        .post_task(
            &key,
            &json!({"phone": "+15557654321", "reason": "r", "queue_id": queue_id}),
        )
        .await;
    assert_eq!(
        expect_error(resp, 422, "validation_failed").await["field"],
        "queue_id"
    );
    app.stop().await;
}

/// `get_queue_by_name`, `get_queue` and `create_callback_task`, called directly on the
/// store as the call actor does: tenant-scoped reads, `handoff`/`tool` tasks, references
/// checked against the tenant.
async fn the_store_functions_the_call_actor_uses(backend: Backend) {
    let app = spawn_app(backend).await;
    let store = &app.state.store;
    let (tenant_a, key_a, call_a) = app.tenant_with_call("Acme", "+14155550100").await;
    let (tenant_b, _key_b, call_b) = app.tenant_with_call("Globex", "+14155550200").await;
    let tenant_a = TenantId::parse(&tenant_a).expect("tenant id");
    let tenant_b = TenantId::parse(&tenant_b).expect("tenant id");
    let created = app
        .create_queue(
            &key_a,
            &json!({"name": "billing", "numbers": ["+14155550123"], "when_unanswered": "voicemail",
                    "voicemail_message": "Please leave a message.", "ring_timeout_seconds": 30}),
        )
        .await;
    let queue_id = QueueId::parse(created["id"].as_str().expect("id")).expect("queue id");

    let queue = store
        .get_queue_by_name(&tenant_a, "billing")
        .await
        .expect("store")
        .expect("queue by name");
    assert_eq!(queue.id, queue_id);
    assert_eq!(queue.numbers, vec!["+14155550123".to_owned()]);
    assert_eq!(queue.ring_timeout_seconds, 30);
    assert_eq!(queue.when_unanswered, QueueFallback::Voicemail);
    assert!(queue.is_open(0), "no business hours: always open");
    assert_eq!(
        store.get_queue(&tenant_a, &queue_id).await.expect("store"),
        Some(queue.clone())
    );
    // Another tenant never sees it, by name or by id.
    assert_eq!(
        store
            .get_queue_by_name(&tenant_b, "billing")
            .await
            .expect("store"),
        None
    );
    assert_eq!(
        store.get_queue(&tenant_b, &queue_id).await.expect("store"),
        None
    );
    assert_eq!(
        store
            .get_queue_by_name(&tenant_a, "sales")
            .await
            .expect("store"),
        None
    );

    let new = NewCallbackTask {
        tenant_id: tenant_a.clone(),
        phone: "+15557654321".into(),
        reason: "nobody answered the billing queue".into(),
        source_call_id: Some(CallId::parse(&call_a).expect("call id")),
        queue_id: Some(queue_id.clone()),
        priority: CallbackPriority::High,
        due_at: Some(1_900_000_000_000),
        created_by: CallbackSource::Handoff,
    };
    let task = store.create_callback_task(&new).await.expect("created");
    assert_eq!(task.created_by, CallbackSource::Handoff);
    assert_eq!(task.queue_id, Some(queue_id.clone()));
    let seen = app.task(&key_a, task.id.as_str()).await;
    assert_eq!(seen["created_by"], "handoff");
    assert_eq!(seen["priority"], "high");
    assert_eq!(seen["source_call_id"], call_a.as_str());
    assert_eq!(seen["due_at"], "2030-03-17T17:46:40.000Z");

    // References must be the tenant's own; bad values are refused; nothing is written.
    let refused = [
        (
            NewCallbackTask {
                source_call_id: Some(CallId::parse(&call_b).expect("call id")),
                ..new.clone()
            },
            "source_call_id",
        ),
        (
            NewCallbackTask {
                tenant_id: tenant_b.clone(),
                source_call_id: None,
                ..new.clone()
            },
            "queue_id",
        ),
        (
            NewCallbackTask {
                phone: "not a number".into(),
                created_by: CallbackSource::Tool,
                ..new.clone()
            },
            "phone",
        ),
        (
            NewCallbackTask {
                reason: String::new(),
                ..new.clone()
            },
            "reason",
        ),
    ];
    for (bad, field) in refused {
        match store.create_callback_task(&bad).await {
            Err(StoreError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected a refusal naming {field}, got {other:?}"),
        }
    }
    assert_eq!(app.tasks(&key_a, "").await["total"], 1);
    app.stop().await;
}
