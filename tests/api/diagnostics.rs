//! Provider diagnostics (issue 11, item 7): a tenant's Twilio credential checked at the
//! carrier (`GET Accounts/{sid}.json` on the carrier simulator, which refuses a wrong token
//! as Twilio does) and the realtime model endpoint's handshake with the key its calls use;
//! the actor tree's mailbox depths (messages queued behind a singleton stalled on a
//! database write, then drained).

use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::sim::carrier::{CarrierConfig, CarrierSim};

use crate::helpers::{Backend, backend_tests, expect_error, spawn_app_with};

backend_tests!(
    provider_checks_ask_the_carrier_and_the_model_endpoint,
    the_actor_tree_shows_mailbox_depths,
);

async fn router_depth(app: &crate::helpers::TestApp) -> Value {
    let resp = app
        .admin(Method::GET, "/api/v1/admin/diagnostics/actors")
        .send()
        .await
        .expect("actors");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    for child in body["children"].as_array().expect("children") {
        assert!(child["mailbox_depth"].is_u64(), "{child}");
    }
    body["children"]
        .as_array()
        .expect("children")
        .iter()
        .find(|c| c["kind"] == "router")
        .expect("router")["mailbox_depth"]
        .clone()
}

/// Polls the router's mailbox depth until it is `want`.
async fn wait_depth(app: &crate::helpers::TestApp, want: u64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let depth = router_depth(app).await;
        if depth == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "router mailbox depth {depth}, expected {want}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn the_actor_tree_shows_mailbox_depths(backend: Backend) {
    use sqlx::{Connection, Executor};
    let app = spawn_app_with(backend, |raw| raw.set("ACTOR_CALL_TIMEOUT_MS", "60000")).await;
    let t = app
        .telephony_tenant("Acme", "+14155550170", json!({}))
        .await;
    wait_depth(&app, 0).await;

    // Stall writes to the routes: the router takes the first change and blocks on it; the
    // next two wait in its mailbox.
    enum Lock {
        Sqlite(sqlx::SqliteConnection),
        Postgres(sqlx::PgConnection),
    }
    let lock = if app.database_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
            .await
            .expect("sqlite");
        conn.execute("BEGIN EXCLUSIVE").await.expect("lock");
        Lock::Sqlite(conn)
    } else {
        let mut conn = sqlx::PgConnection::connect(&app.database_url)
            .await
            .expect("postgres");
        conn.execute("BEGIN").await.expect("begin");
        conn.execute("LOCK TABLE phone_routes IN EXCLUSIVE MODE")
            .await
            .expect("lock");
        Lock::Postgres(conn)
    };
    let patches: Vec<_> = (1..=3)
        .map(|n| {
            let request = app
                .admin(
                    Method::PATCH,
                    &format!("/api/v1/admin/phone-routes/{}", t.route_id),
                )
                .json(&json!({"max_concurrent_calls": n}));
            tokio::spawn(async move { request.send().await.expect("patch").status() })
        })
        .collect();
    wait_depth(&app, 2).await;

    // Released, the router drains its mailbox.
    match lock {
        Lock::Sqlite(mut conn) => conn.execute("ROLLBACK").await.map(|_| ()),
        Lock::Postgres(mut conn) => conn.execute("ROLLBACK").await.map(|_| ()),
    }
    .expect("unlock");
    for patch in patches {
        assert_eq!(patch.await.expect("task"), 200);
    }
    wait_depth(&app, 0).await;
}

async fn providers(app: &crate::helpers::TestApp, tenant: &str) -> Value {
    let resp = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/diagnostics/providers?tenant_id={tenant}"),
        )
        .send()
        .await
        .expect("providers");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

async fn provider_checks_ask_the_carrier_and_the_model_endpoint(backend: Backend) {
    let sim = CarrierSim::start(CarrierConfig::default())
        .await
        .expect("carrier sim");
    let base = sim.base_url();
    let app = spawn_app_with(backend, move |raw| raw.set("TWILIO_API_BASE_URL", base)).await;
    let t = app
        .telephony_tenant("Acme", "+14155550195", json!({}))
        .await;

    // The carrier does not know the token yet: refused as Twilio refuses (401, 20003).
    sim.add_account(t.account_sid.clone(), "another-token".to_owned());
    let wrong = providers(&app, &t.tenant_id).await;
    assert_eq!(wrong["carrier"]["status"], "failed", "{wrong}");
    assert!(
        wrong["carrier"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("20003")),
        "{wrong}"
    );
    let asked = sim
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET" && r.path == format!("/2010-04-01/Accounts/{}.json", t.account_sid)
        })
        .map(|r| r.status)
        .collect::<Vec<_>>();
    assert_eq!(asked, [401]);
    // The model endpoint answers with the global key.
    assert_eq!(wrong["model"]["status"], "ok", "{wrong}");

    // With the right token the account is found.
    sim.add_account(t.account_sid.clone(), t.auth_token.clone());
    let ok = providers(&app, &t.tenant_id).await;
    assert_eq!(ok["carrier"]["status"], "ok", "{ok}");
    assert!(
        ok["carrier"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&t.account_sid) && d.contains("active")),
        "{ok}"
    );

    // A tenant key the model endpoint refuses fails the handshake.
    let resp = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{}/openai-key", t.tenant_id),
        )
        .json(&json!({"api_key": "sk-not-a-key-the-simulator-knows"}))
        .send()
        .await
        .expect("key");
    assert_eq!(resp.status(), 200);
    let refused = providers(&app, &t.tenant_id).await;
    assert_eq!(refused["model"]["status"], "failed", "{refused}");

    // A tenant without credentials has nothing to check at the carrier.
    let bare = app.create_tenant("Globex").await;
    let bare = providers(&app, bare["id"].as_str().expect("id")).await;
    assert_eq!(bare["carrier"]["status"], "not_configured", "{bare}");

    let resp = app
        .admin(
            Method::GET,
            "/api/v1/admin/diagnostics/providers?tenant_id=ten_nothere",
        )
        .send()
        .await
        .expect("providers");
    expect_error(resp, 404, "not_found").await;
    let resp = app
        .admin(Method::GET, "/api/v1/admin/diagnostics/providers")
        .send()
        .await
        .expect("providers");
    let err = expect_error(resp, 400, "invalid_query").await;
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("tenant_id")),
        "{err}"
    );
    app.stop().await;
}
