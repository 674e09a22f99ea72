//! Tenant administration, API keys, credentials and the audit log.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, backend_tests, expect_error, logs, spawn_app, spawn_app_with};

backend_tests!(
    tenant_openai_key_is_sealed_and_only_hinted,
    tenant_crud_is_audited,
    runtime_config_replaces_the_whole_config,
    twilio_credentials_are_sealed_and_only_hinted,
    twilio_account_belongs_to_one_tenant,
    api_key_lifecycle,
    admin_api_is_invisible_without_admin_key,
    wrong_admin_key_is_refused,
    audit_log_filters_and_pages,
);

async fn tenant_crud_is_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app.create_tenant("Acme Health").await;
    let id = created["id"].as_str().expect("id");
    assert!(id.starts_with("ten_"));
    assert_eq!(created["status"], "active");
    assert_eq!(created["max_concurrent_calls"], 10);

    let got: Value = app
        .admin(Method::GET, &format!("/api/v1/admin/tenants/{id}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got, created);

    let resp = app
        .admin(Method::PATCH, &format!("/api/v1/admin/tenants/{id}"))
        .json(&json!({"name": "Acme", "status": "suspended", "max_concurrent_calls": 25, "webhook_url": "https://hooks.acme.example/voice"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    let patched: Value = resp.json().await.expect("json");
    assert_eq!(patched["name"], "Acme");
    assert_eq!(patched["status"], "suspended");
    assert_eq!(patched["max_concurrent_calls"], 25);
    assert_eq!(patched["webhook_url"], "https://hooks.acme.example/voice");

    // null clears the webhook URL; absent fields stay.
    let cleared: Value = app
        .admin(Method::PATCH, &format!("/api/v1/admin/tenants/{id}"))
        .json(&json!({"webhook_url": null}))
        .send()
        .await
        .expect("patch")
        .json()
        .await
        .expect("json");
    assert_eq!(cleared["webhook_url"], Value::Null);
    assert_eq!(cleared["name"], "Acme");

    app.create_tenant("Second").await;
    let list: Value = app
        .admin(Method::GET, "/api/v1/admin/tenants?limit=1&offset=1")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["total"], 2);
    assert_eq!(list["limit"], 1);
    assert_eq!(list["offset"], 1);
    assert_eq!(list["data"].as_array().expect("data").len(), 1);
    assert_eq!(list["data"][0]["name"], "Second");

    let audit: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/audit-log?tenant_id={id}"),
        )
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["tenant.update", "tenant.update", "tenant.create"]);
    let update = &audit["data"][1];
    assert_eq!(update["actor"], "root");
    assert_eq!(update["before"]["status"], "active");
    assert_eq!(update["after"]["status"], "suspended");
    assert!(update["request_id"].as_str().is_some_and(|r| !r.is_empty()));

    let missing = app
        .admin(Method::GET, "/api/v1/admin/tenants/ten_doesnotexist")
        .send()
        .await
        .expect("get");
    expect_error(missing, 404, "not_found").await;
    app.stop().await;
}

async fn runtime_config_replaces_the_whole_config(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_tenant("Acme").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = format!("/api/v1/admin/tenants/{id}/runtime-config");
    let body: Value = app
        .admin(Method::PUT, &path)
        .json(&json!({"model": "gpt-realtime", "voice": "marin", "webhook_url": "https://acme.example/events"}))
        .send()
        .await
        .expect("put")
        .json()
        .await
        .expect("json");
    assert_eq!(
        body["runtime_config"],
        json!({"model": "gpt-realtime", "voice": "marin"})
    );
    assert_eq!(body["webhook_url"], "https://acme.example/events");
    let body: Value = app
        .admin(Method::PUT, &path)
        .json(&json!({"voice": "cedar"}))
        .send()
        .await
        .expect("put")
        .json()
        .await
        .expect("json");
    assert_eq!(
        body["runtime_config"],
        json!({"model": null, "voice": "cedar"})
    );
    // The defaults are what the tenant's versions run when they name no model or voice.
    let (agent, pinned) = app.approved_agent(&id, "support").await;
    let version = |body: Value| {
        let app = &app;
        let agent = agent.clone();
        async move {
            let resp = app
                .admin(
                    Method::POST,
                    &format!("/api/v1/admin/agents/{agent}/versions"),
                )
                .json(&body)
                .send()
                .await
                .expect("post");
            assert_eq!(resp.status(), 201);
            resp.json::<Value>().await.expect("json")
        }
    };
    let defaulted = version(json!({"instructions": "Help."})).await;
    assert_eq!(defaulted["voice"], "cedar");
    assert_eq!(
        defaulted["model"], "gpt-realtime",
        "no tenant model: the service's"
    );
    let own =
        version(json!({"instructions": "Help.", "voice": "marin", "model": "gpt-realtime-mini"}))
            .await;
    assert_eq!(
        (own["voice"].as_str(), own["model"].as_str()),
        (Some("marin"), Some("gpt-realtime-mini"))
    );
    // A replaced draft takes the defaults of the moment; a written version keeps its own.
    app.admin(Method::PUT, &path)
        .json(&json!({"model": "gpt-realtime-mini", "voice": "verse"}))
        .send()
        .await
        .expect("put");
    let draft = defaulted["id"].as_str().expect("id");
    let replaced: Value = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/agent-versions/{draft}"),
        )
        .json(&json!({"instructions": "Help again."}))
        .send()
        .await
        .expect("put")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (replaced["voice"].as_str(), replaced["model"].as_str()),
        (Some("verse"), Some("gpt-realtime-mini"))
    );
    let kept: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/agent-versions/{pinned}"),
        )
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (kept["voice"].as_str(), kept["model"].as_str()),
        (Some("cedar"), Some("gpt-realtime"))
    );
    // The removed prompt key is refused, naming the field.
    let unknown = app
        .admin(Method::PUT, &path)
        .json(&json!({"system_prompt_key": "support/v2"}))
        .send()
        .await
        .expect("put");
    assert_eq!(unknown.status(), 400);
    let bad = app
        .admin(Method::PUT, &path)
        .json(&json!({"voice": "has spaces"}))
        .send()
        .await
        .expect("put");
    let err = expect_error(bad, 422, "validation_failed").await;
    assert_eq!(err["field"], "voice");
    app.stop().await;
}

async fn twilio_credentials_are_sealed_and_only_hinted(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_tenant("Acme").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let token = format!("tok{}", uuid::Uuid::new_v4().simple());
    let sid = "AC0123456789abcdef0123456789abcdef";
    let resp = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{id}/twilio-credentials"),
        )
        .json(&json!({"account_sid": sid, "auth_token": token}))
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    assert!(!text.contains(&token), "token must never be returned");
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["twilio"]["account_sid"], sid);
    assert_eq!(
        body["twilio"]["auth_token_hint"],
        format!("…{}", &token[token.len() - 4..])
    );

    // Nowhere: not in reads, not in the audit log, not in the database in clear, not in logs.
    let get = app
        .admin(Method::GET, &format!("/api/v1/admin/tenants/{id}"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert!(!get.contains(&token));
    let audit = app
        .admin(Method::GET, "/api/v1/admin/audit-log")
        .send()
        .await
        .expect("audit")
        .text()
        .await
        .expect("body");
    assert!(!audit.contains(&token));
    assert!(audit.contains("tenant.twilio_credentials"));
    let tenant = app
        .state
        .store
        .get_tenant(&actors::ids::TenantId::parse(&id).expect("id"))
        .await
        .expect("store")
        .expect("tenant");
    let sealed = tenant.twilio.expect("twilio").auth_token_sealed;
    assert!(!sealed.windows(token.len()).any(|w| w == token.as_bytes()));
    assert!(!logs().contents().contains(&token));

    let bad_sid = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{id}/twilio-credentials"),
        )
        .json(&json!({"account_sid": "AC123", "auth_token": token}))
        .send()
        .await
        .expect("put");
    assert_eq!(
        expect_error(bad_sid, 422, "validation_failed").await["field"],
        "account_sid"
    );
    app.stop().await;
}

async fn twilio_account_belongs_to_one_tenant(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.create_tenant("A").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let b = app.create_tenant("B").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let creds = json!({"account_sid": "ACffffffffffffffffffffffffffffffff", "auth_token": "0123456789abcdef0123"});
    let ok = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{a}/twilio-credentials"),
        )
        .json(&creds)
        .send()
        .await
        .expect("put");
    assert_eq!(ok.status(), 200);
    let before = app.audit_total().await;
    let conflict = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{b}/twilio-credentials"),
        )
        .json(&creds)
        .send()
        .await
        .expect("put");
    expect_error(conflict, 409, "conflict").await;
    assert_eq!(
        app.audit_total().await,
        before,
        "nothing written on conflict"
    );
    let b_now: Value = app
        .admin(Method::GET, &format!("/api/v1/admin/tenants/{b}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(b_now["twilio"], Value::Null);
    app.stop().await;
}

async fn api_key_lifecycle(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_tenant("Acme").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (created, secret) = app.create_key(&id, &["read", "runtime", "read"]).await;
    assert!(secret.starts_with("svk_"));
    assert_eq!(created["scopes"], json!(["runtime", "read"]));
    assert!(secret.starts_with(created["prefix"].as_str().expect("prefix")));
    let key_id = created["id"].as_str().expect("key id").to_owned();

    let me: Value = app
        .tenant(Method::GET, "/api/v1/me", &secret)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["tenant_id"], id.as_str());
    assert_eq!(me["tenant_name"], "Acme");
    assert_eq!(me["key_id"], key_id.as_str());

    let list_text = app
        .admin(Method::GET, &format!("/api/v1/admin/tenants/{id}/api-keys"))
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("body");
    assert!(!list_text.contains(&secret), "secret shown only once");
    let list: Value = serde_json::from_str(&list_text).expect("json");
    assert_eq!(list["data"][0]["id"], key_id.as_str());
    assert!(
        list["data"][0]["last_used_at"].is_string(),
        "last_used_at kept"
    );

    let revoked = app
        .admin(
            Method::DELETE,
            &format!("/api/v1/admin/tenants/{id}/api-keys/{key_id}"),
        )
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    let revoked: Value = revoked.json().await.expect("json");
    assert!(revoked["revoked_at"].is_string());
    let after = app
        .tenant(Method::GET, "/api/v1/me", &secret)
        .send()
        .await
        .expect("me");
    expect_error(after, 401, "unauthorized").await;

    let audit = app
        .admin(Method::GET, "/api/v1/admin/audit-log?action=api_key.revoke")
        .send()
        .await
        .expect("audit")
        .text()
        .await
        .expect("body");
    assert!(audit.contains(&key_id));
    assert!(!audit.contains(&secret));
    assert!(!logs().contents().contains(&secret));

    let empty_scopes = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/tenants/{id}/api-keys"),
        )
        .json(&json!({"name": "x", "scopes": []}))
        .send()
        .await
        .expect("create");
    assert_eq!(
        expect_error(empty_scopes, 422, "validation_failed").await["field"],
        "scopes"
    );
    let bad_scope = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/tenants/{id}/api-keys"),
        )
        .json(&json!({"name": "x", "scopes": ["root"]}))
        .send()
        .await
        .expect("create");
    let err = expect_error(bad_scope, 400, "invalid_body").await;
    assert_eq!(err["field"], "scopes[0]");
    app.stop().await;
}

async fn admin_api_is_invisible_without_admin_key(backend: Backend) {
    let app = spawn_app_with(backend, |raw| raw.set("ADMIN_API_KEY", "")).await;
    for (method, path) in [
        (Method::GET, "/api/v1/admin/tenants"),
        (Method::POST, "/api/v1/admin/tenants"),
        (Method::GET, "/api/v1/admin/audit-log"),
        (Method::GET, "/api/v1/admin/diagnostics/actors"),
        (Method::DELETE, "/api/v1/admin/tenants/ten_x/api-keys/key_y"),
    ] {
        let resp = app
            .client
            .request(method, app.url(path))
            .header("x-admin-key", "anything-at-all-0123456789")
            .json(&json!({"name": "x"}))
            .send()
            .await
            .expect("request");
        expect_error(resp, 404, "route_not_found").await;
    }
    app.stop().await;
}

async fn wrong_admin_key_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app
        .client
        .get(app.url("/api/v1/admin/tenants"))
        .header("x-admin-key", "test-admin-key-0123456789abcdeX")
        .send()
        .await
        .expect("request");
    expect_error(resp, 401, "unauthorized").await;
    let resp = app
        .client
        .get(app.url("/api/v1/admin/tenants"))
        .send()
        .await
        .expect("request");
    expect_error(resp, 401, "unauthorized").await;
    // A tenant key is not an admin key.
    let (_, secret) = app.tenant_with_key("Acme").await;
    let resp = app
        .client
        .get(app.url("/api/v1/admin/tenants"))
        .header("x-admin-key", &secret)
        .bearer_auth(&secret)
        .send()
        .await
        .expect("request");
    expect_error(resp, 401, "unauthorized").await;
    app.stop().await;
}

async fn audit_log_filters_and_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let (a, _) = app.tenant_with_key("A").await;
    app.tenant_with_key("B").await;
    let all: Value = app
        .admin(Method::GET, "/api/v1/admin/audit-log?limit=2")
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    assert_eq!(all["total"], 4);
    assert_eq!(all["data"].as_array().expect("data").len(), 2);
    let a_only: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/audit-log?tenant_id={a}"),
        )
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    assert_eq!(a_only["total"], 2);
    assert!(
        a_only["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|e| e["tenant_id"] == a.as_str())
    );
    let bad = app
        .admin(Method::GET, "/api/v1/admin/audit-log?limit=0")
        .send()
        .await
        .expect("audit");
    assert_eq!(
        expect_error(bad, 400, "invalid_query").await["field"],
        "limit"
    );
    let bad = app
        .admin(Method::GET, "/api/v1/admin/audit-log?limit=abc")
        .send()
        .await
        .expect("audit");
    assert_eq!(
        expect_error(bad, 400, "invalid_query").await["field"],
        "limit"
    );
    let bad = app
        .admin(Method::GET, "/api/v1/admin/audit-log?colour=red")
        .send()
        .await
        .expect("audit");
    assert_eq!(
        expect_error(bad, 400, "invalid_query").await["field"],
        "colour"
    );
    app.stop().await;
}

async fn tenant_openai_key_is_sealed_and_only_hinted(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_tenant("Acme").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let key = format!("sk-tenant-{}", uuid::Uuid::new_v4().simple());
    let path = format!("/api/v1/admin/tenants/{id}/openai-key");
    let resp = app
        .admin(Method::PUT, &path)
        .json(&json!({"api_key": key}))
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    assert!(!text.contains(&key));
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        body["openai_key_hint"],
        format!("…{}", &key[key.len() - 4..])
    );
    let opened = ractor::call_t!(
        app.state.actors.tenant.get().expect("tenant actor"),
        actors::tenant::TenantMsg::OpenAiKey,
        1000,
        actors::ids::TenantId::parse(&id).expect("id")
    )
    .expect("answer")
    .expect("opened");
    assert_eq!(opened.as_deref(), Some(key.as_str()));
    let audit = app
        .admin(Method::GET, "/api/v1/admin/audit-log")
        .send()
        .await
        .expect("audit")
        .text()
        .await
        .expect("body");
    assert!(audit.contains("tenant.openai_key") && !audit.contains(&key));
    assert!(!logs().contents().contains(&key));
    let bad = app
        .admin(Method::PUT, &path)
        .json(&json!({"api_key": "short"}))
        .send()
        .await
        .expect("put");
    assert_eq!(
        expect_error(bad, 422, "validation_failed").await["field"],
        "api_key"
    );
    let cleared: Value = app
        .admin(Method::DELETE, &path)
        .send()
        .await
        .expect("delete")
        .json()
        .await
        .expect("json");
    assert_eq!(cleared["openai_key_hint"], Value::Null);
    app.stop().await;
}
