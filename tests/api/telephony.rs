//! Telephony edge without the carrier simulator: phone routes, signature enforcement,
//! inbound TwiML and admission, status-callback convergence, and the media-stream gate.

use futures::SinkExt;
use reqwest::Method;
use serde_json::{Value, json};
use stateset_voice::twilio::twiml::{self, Verb};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    Backend, TestApp, backend_tests, close_frame, connect_of, expect_error, open_media, send_start,
    sid, spawn_app, spawn_app_with, stream_of, token_of,
};

backend_tests!(
    phone_routes_crud_conflicts_and_audit,
    unsigned_or_tampered_webhooks_are_refused_and_write_nothing,
    inbound_call_connects_with_a_stream_token_and_fallback,
    unknown_number_gets_a_safe_message,
    over_limit_calls_get_busy_or_the_fallback,
    staged_routes_connect_only_test_callers,
    status_callbacks_converge_whatever_the_order,
    media_stream_accepts_a_valid_token_once,
    media_stream_refuses_bad_tokens_and_signatures,
    stream_token_secret_rotation_keeps_calls,
    stream_ended_decides_what_the_caller_hears,
);

async fn phone_routes_crud_conflicts_and_audit(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, _) = app.tenant_with_key("Acme").await;
    let create = |body: Value| {
        app.admin(Method::POST, "/api/v1/admin/phone-routes")
            .json(&body)
            .send()
    };
    let resp =
        create(json!({"tenant_id": tenant, "number": "+14155550100", "agent_key": "support"}))
            .await
            .expect("post");
    assert_eq!(resp.status(), 201);
    let route: Value = resp.json().await.expect("json");
    assert_eq!(route["status"], "staged");
    assert_eq!(route["direction"], "inbound");
    assert_eq!(route["over_limit"], "fallback");
    let id = route["id"].as_str().expect("id").to_owned();

    // One number, one route.
    let dup = create(json!({"tenant_id": tenant, "number": "+14155550100", "agent_key": "sales"}))
        .await
        .expect("post");
    expect_error(dup, 409, "conflict").await;
    for (body, field) in [
        (
            json!({"tenant_id": tenant, "number": "4155550100", "agent_key": "a"}),
            "number",
        ),
        (
            json!({"tenant_id": tenant, "number": "+1415555010099999", "agent_key": "a"}),
            "number",
        ),
        (
            json!({"tenant_id": tenant, "number": "+14155550101", "agent_key": "a", "fallback_number": "nope"}),
            "fallback_number",
        ),
        (
            json!({"tenant_id": tenant, "number": "+14155550101", "agent_key": "a", "test_callers": ["+1", "x"]}),
            "test_callers[0]",
        ),
        (
            json!({"tenant_id": "nope", "number": "+14155550101", "agent_key": "a"}),
            "tenant_id",
        ),
    ] {
        let resp = create(body).await.expect("post");
        assert_eq!(
            expect_error(resp, 422, "validation_failed").await["field"],
            field
        );
    }
    let resp =
        create(json!({"tenant_id": "ten_missing", "number": "+14155550101", "agent_key": "a"}))
            .await
            .expect("post");
    expect_error(resp, 404, "not_found").await;

    let other = create(json!({"tenant_id": tenant, "number": "+14155550102", "agent_key": "b"}))
        .await
        .expect("post");
    assert_eq!(other.status(), 201);
    let other: Value = other.json().await.expect("json");
    let resp = app
        .admin(
            Method::PATCH,
            &format!(
                "/api/v1/admin/phone-routes/{}",
                other["id"].as_str().expect("id")
            ),
        )
        .json(&json!({"number": "+14155550100"}))
        .send()
        .await
        .expect("patch");
    expect_error(resp, 409, "conflict").await;

    let patched: Value = app
        .admin(Method::PATCH, &format!("/api/v1/admin/phone-routes/{id}"))
        .json(&json!({"status": "live", "fallback_number": "+15550001111", "test_callers": ["+15550002222"], "live_override_reason": "route CRUD test"}))
        .send()
        .await
        .expect("patch")
        .json()
        .await
        .expect("json");
    assert_eq!(patched["status"], "live");
    assert_eq!(patched["fallback_number"], "+15550001111");
    let list: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/phone-routes?tenant_id={tenant}"),
        )
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["total"], 2);
    let deleted = app
        .admin(Method::DELETE, &format!("/api/v1/admin/phone-routes/{id}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 200);
    let gone = app
        .admin(Method::GET, &format!("/api/v1/admin/phone-routes/{id}"))
        .send()
        .await
        .expect("get");
    expect_error(gone, 404, "not_found").await;
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
        "phone_route.create",
        "phone_route.update",
        "phone_route.delete",
    ] {
        assert!(audit.contains(action), "{action}");
    }
    app.stop().await;
}

async fn calls_total(app: &TestApp, key: &str) -> i64 {
    let list: Value = app
        .tenant(Method::GET, "/api/v1/call-logs", key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    list["total"].as_i64().expect("total")
}

async fn unsigned_or_tampered_webhooks_are_refused_and_write_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app
        .telephony_tenant("Acme", "+14155550100", json!({}))
        .await;
    let other = app
        .telephony_tenant("Other", "+14155550199", json!({}))
        .await;
    let call_sid = sid("CA");
    let params = [
        ("AccountSid", t.account_sid.as_str()),
        ("CallSid", call_sid.as_str()),
        ("From", "+15551230000"),
        ("To", "+14155550100"),
    ];
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    let sign = |url: &str, params: &[(String, String)], token: &str| {
        stateset_voice::twilio::signature::compute_signature(token, url, params)
    };
    let url = app.url("/api/v1/incoming-call");
    // 1. No signature.
    let resp = app
        .client
        .post(&url)
        .form(&owned)
        .send()
        .await
        .expect("post");
    expect_error(resp, 403, "invalid_signature").await;
    // 2. A parameter changed after signing.
    let good = sign(&url, &owned, &t.auth_token);
    let mut tampered = owned.clone();
    tampered[3].1 = "+14155550199".into();
    let resp = app
        .client
        .post(&url)
        .header("x-twilio-signature", &good)
        .form(&tampered)
        .send()
        .await
        .expect("post");
    expect_error(resp, 403, "invalid_signature").await;
    // 3. Signed with another account's token (while claiming this account).
    let wrong = sign(&url, &owned, &other.auth_token);
    let resp = app
        .client
        .post(&url)
        .header("x-twilio-signature", &wrong)
        .form(&owned)
        .send()
        .await
        .expect("post");
    expect_error(resp, 403, "invalid_signature").await;
    // 4. An account nobody owns.
    let mut unknown = owned.clone();
    unknown[0].1 = sid("AC");
    let sig = sign(&url, &unknown, &t.auth_token);
    let resp = app
        .client
        .post(&url)
        .header("x-twilio-signature", &sig)
        .form(&unknown)
        .send()
        .await
        .expect("post");
    expect_error(resp, 403, "invalid_signature").await;
    // 5. A valid signature replayed to another URL.
    let status_url = app.url("/api/v1/call-status");
    let mut status_params = owned.clone();
    status_params.push(("CallStatus".into(), "completed".into()));
    status_params.push(("SequenceNumber".into(), "0".into()));
    let sig = sign(&url, &status_params, &t.auth_token);
    let resp = app
        .client
        .post(&status_url)
        .header("x-twilio-signature", &sig)
        .form(&status_params)
        .send()
        .await
        .expect("post");
    expect_error(resp, 403, "invalid_signature").await;
    // Same for every Twilio route, unsigned.
    for path in [
        "/api/v1/stream-ended",
        "/api/v1/stream-status",
        "/api/v1/amd-status",
    ] {
        let resp = app
            .client
            .post(app.url(path))
            .form(&owned)
            .send()
            .await
            .expect("post");
        expect_error(resp, 403, "invalid_signature").await;
    }
    assert_eq!(calls_total(&app, &t.key).await, 0, "nothing written");
    app.flush_views().await;

    let alerts: Value = app
        .admin(Method::GET, "/api/v1/admin/alerts/auth-transport")
        .send()
        .await
        .expect("alerts")
        .json()
        .await
        .expect("json");
    let sig_alerts: Vec<&Value> = alerts["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["kind"] == "signature_failures")
        .collect();
    let incoming_for_account: u64 = sig_alerts
        .iter()
        .filter(|a| {
            a["route"] == "/api/v1/incoming-call" && a["account_sid"] == t.account_sid.as_str()
        })
        .map(|a| a["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(incoming_for_account, 3);
    assert!(
        sig_alerts
            .iter()
            .any(|a| a["route"] == "/api/v1/call-status")
    );
    assert!(sig_alerts.iter().all(|a| {
        a["suggested_action"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    }));
    assert_eq!(
        alerts["stream_token"]["secret_source"],
        "derived_from_master_key"
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("twilio_signature_failures_total{route=\"/api/v1/incoming-call\"}"));

    // And the properly signed request goes through.
    let resp = app
        .client
        .post(&url)
        .header("x-twilio-signature", &good)
        .form(&owned)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    assert_eq!(calls_total(&app, &t.key).await, 1);
    app.stop().await;
}

async fn inbound_call_connects_with_a_stream_token_and_fallback(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app
        .telephony_tenant("Acme", "+14155550100", json!({}))
        .await;
    let (call_sid, xml) = app.inbound(&t, "+15551230000", "+14155550100").await;
    let (connect, after) = connect_of(&xml);
    let action = connect.action.clone().expect("action");
    assert!(
        action.starts_with(&app.url("/api/v1/stream-ended?call_id=call_")),
        "{action}"
    );
    let stream = stream_of(&connect);
    assert_eq!(
        stream.url,
        app.url("/media-stream").replacen("http://", "ws://", 1)
    );
    assert!(
        stream
            .status_callback
            .as_deref()
            .is_some_and(|u| u.contains("/api/v1/stream-status?call_id="))
    );
    assert!(!token_of(&xml).is_empty());
    // The route's fallback follows the stream.
    assert!(matches!(&after[0], Verb::Say(s) if s.text == "Connecting you to our team."));
    assert!(matches!(&after[1], Verb::Dial(d) if d.numbers() == vec!["+15550009999"]));

    let log = app.call_log(&t.key, &call_sid).await;
    assert_eq!(log["direction"], "inbound");
    assert_eq!(log["status"], "ringing");
    assert_eq!(log["from"], "+15551230000");
    assert_eq!(log["route_id"], t.route_id.as_str());
    assert!(
        log["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "admission" && e["detail"]["admitted"] == true)
    );
    // Another tenant's key does not see it, by id or by sid.
    let (_, other_key) = app.tenant_with_key("Other").await;
    let id = log["id"].as_str().expect("id");
    for path in [
        format!("/api/v1/call-logs/{id}"),
        format!("/api/v1/call-logs/{call_sid}"),
    ] {
        let resp = app
            .tenant(Method::GET, &path, &other_key)
            .send()
            .await
            .expect("get");
        expect_error(resp, 404, "not_found").await;
    }
    for path in [
        format!("/api/v1/calls/{call_sid}/hangup"),
        format!("/api/v1/calls/{id}/hangup"),
    ] {
        let resp = app
            .tenant(Method::POST, &path, &other_key)
            .send()
            .await
            .expect("post");
        expect_error(resp, 404, "not_found").await;
    }
    let resp = app
        .tenant(
            Method::POST,
            &format!("/api/v1/calls/{call_sid}/transfer"),
            &other_key,
        )
        .json(&json!({"to": "+15550001111"}))
        .send()
        .await
        .expect("post");
    expect_error(resp, 404, "not_found").await;
    assert_eq!(calls_total(&app, &other_key).await, 0);
    app.stop().await;
}

async fn unknown_number_gets_a_safe_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app
        .telephony_tenant("Acme", "+14155550100", json!({}))
        .await;
    // A number routed for another tenant is unknown to this account too.
    app.telephony_tenant("Other", "+14155550177", json!({}))
        .await;
    for to in ["+14155550999", "+14155550177"] {
        let (_, xml) = app.inbound(&t, "+15551230000", to).await;
        let doc = twiml::Response::parse(&xml).expect("twiml");
        assert!(
            matches!(&doc.verbs[0], Verb::Say(s) if s.text == actors::telephony::UNROUTED_MESSAGE),
            "{xml}"
        );
        assert!(matches!(&doc.verbs[1], Verb::Hangup(_)));
        assert!(
            !xml.contains("ten_") && !xml.contains("rte_"),
            "no detail leaks: {xml}"
        );
    }
    assert_eq!(calls_total(&app, &t.key).await, 0);
    app.flush_views().await;
    let diag: Value = app
        .admin(Method::GET, "/api/v1/admin/diagnostics/routing")
        .send()
        .await
        .expect("diag")
        .json()
        .await
        .expect("json");
    let unrouted: Vec<&Value> = diag["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|d| d["reason"] == "unrouted")
        .collect();
    assert_eq!(unrouted.len(), 2);
    assert_eq!(unrouted[0]["account_sid"], t.account_sid.as_str());
    app.stop().await;
}

async fn over_limit_calls_get_busy_or_the_fallback(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app
        .telephony_tenant(
            "Acme",
            "+14155550100",
            json!({"max_concurrent_calls": 1, "over_limit": "busy"}),
        )
        .await;
    let (_, first) = app.inbound(&t, "+15551230000", "+14155550100").await;
    connect_of(&first);
    let (second_sid, second) = app.inbound(&t, "+15551230001", "+14155550100").await;
    let doc = twiml::Response::parse(&second).expect("twiml");
    assert!(
        matches!(&doc.verbs[..], [Verb::Reject(r)] if r.reason.as_deref() == Some("busy")),
        "{second}"
    );
    let log = app.call_log(&t.key, &second_sid).await;
    assert_eq!(log["status"], "busy");
    assert_eq!(log["end_reason"], "route_at_limit");

    app.admin(
        Method::PATCH,
        &format!("/api/v1/admin/phone-routes/{}", t.route_id),
    )
    .json(&json!({"over_limit": "fallback"}))
    .send()
    .await
    .expect("patch");
    let (_, third) = app.inbound(&t, "+15551230002", "+14155550100").await;
    let doc = twiml::Response::parse(&third).expect("twiml");
    assert!(
        matches!(&doc.verbs[..], [Verb::Say(_), Verb::Dial(d)] if d.numbers() == vec!["+15550009999"]),
        "{third}"
    );

    // The tenant limit applies across routes.
    app.admin(
        Method::PATCH,
        &format!("/api/v1/admin/tenants/{}", t.tenant_id),
    )
    .json(&json!({"max_concurrent_calls": 1}))
    .send()
    .await
    .expect("patch");
    app.admin(Method::POST, "/api/v1/admin/phone-routes")
        .json(&json!({"tenant_id": t.tenant_id, "number": "+14155550101", "agent_key": "support", "status": "live", "live_override_reason": "limits test"}))
        .send()
        .await
        .expect("post");
    let (sid4, fourth) = app.inbound(&t, "+15551230003", "+14155550101").await;
    assert!(!fourth.contains("<Connect"), "{fourth}");
    assert_eq!(
        app.call_log(&t.key, &sid4).await["end_reason"],
        "tenant_at_limit"
    );
    // Refused calls never count as live.
    let list: Value = app
        .tenant(Method::GET, "/api/v1/call-logs?status=ringing", &t.key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["total"], 1);
    app.stop().await;
}

async fn staged_routes_connect_only_test_callers(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app
        .telephony_tenant(
            "Acme",
            "+14155550100",
            json!({"status": "staged", "test_callers": ["+15550100100"]}),
        )
        .await;
    let (_, tester) = app.inbound(&t, "+15550100100", "+14155550100").await;
    connect_of(&tester);
    let (sid2, stranger) = app.inbound(&t, "+15550100999", "+14155550100").await;
    assert!(!stranger.contains("<Connect"), "{stranger}");
    assert_eq!(
        app.call_log(&t.key, &sid2).await["end_reason"],
        "route_staged"
    );
    // A suspended tenant's calls get the fallback too.
    app.admin(
        Method::PATCH,
        &format!("/api/v1/admin/tenants/{}", t.tenant_id),
    )
    .json(&json!({"status": "suspended"}))
    .send()
    .await
    .expect("patch");
    let (_, suspended) = app.inbound(&t, "+15550100100", "+14155550100").await;
    assert!(!suspended.contains("<Connect"), "{suspended}");
    app.stop().await;
}

async fn post_status(
    app: &TestApp,
    t: &crate::helpers::Tele,
    call_id: &str,
    call_sid: &str,
    seq: u32,
    status: &str,
) -> u16 {
    let seq_s = seq.to_string();
    let mut params = vec![
        ("AccountSid", t.account_sid.as_str()),
        ("CallSid", call_sid),
        ("CallStatus", status),
        ("SequenceNumber", seq_s.as_str()),
        ("CallbackSource", "call-progress-events"),
        ("Timestamp", "Sat, 28 Nov 2026 17:00:00 +0000"),
    ];
    if status == "completed" {
        params.push(("CallDuration", "42"));
    }
    app.twilio_post(
        &format!("/api/v1/call-status?call_id={call_id}"),
        &params,
        &t.auth_token,
    )
    .await
    .status()
    .as_u16()
}

async fn status_callbacks_converge_whatever_the_order(backend: Backend) {
    use rand::seq::SliceRandom as _;
    let app = spawn_app(backend).await;
    let t = app
        .telephony_tenant("Acme", "+14155550100", json!({"max_concurrent_calls": 50}))
        .await;
    let events = [
        (0, "initiated"),
        (1, "ringing"),
        (2, "in-progress"),
        (3, "completed"),
    ];
    for round in 0..3 {
        let (call_sid, _) = app.inbound(&t, "+15551230000", "+14155550100").await;
        let call_id = app.call_log(&t.key, &call_sid).await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let mut deliveries: Vec<(u32, &str)> = events.iter().flat_map(|e| [*e, *e, *e]).collect();
        match round {
            0 => deliveries.reverse(),
            _ => deliveries.shuffle(&mut rand::rng()),
        }
        let posts = deliveries
            .iter()
            .map(|(seq, status)| post_status(&app, &t, &call_id, &call_sid, *seq, status));
        let statuses = futures::future::join_all(posts).await;
        assert!(statuses.iter().all(|s| *s == 204), "{statuses:?}");
        let log = app.call_log(&t.key, &call_sid).await;
        assert_eq!(log["status"], "completed", "round {round}");
        assert_eq!(log["duration_seconds"], 42);
        assert!(log["started_at"].is_string() && log["ended_at"].is_string());
        let history: Vec<(i64, &str)> = log["status_events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                (
                    e["sequence_number"].as_i64().expect("seq"),
                    e["status"].as_str().expect("status"),
                )
            })
            .collect();
        assert_eq!(
            history,
            vec![
                (0, "initiated"),
                (1, "ringing"),
                (2, "in-progress"),
                (3, "completed")
            ]
        );
    }
    // A callback signed by another tenant's account cannot touch this tenant's call.
    let other = app
        .telephony_tenant("Other", "+14155550199", json!({}))
        .await;
    let (call_sid, _) = app.inbound(&t, "+15551230000", "+14155550100").await;
    let call_id = app.call_log(&t.key, &call_sid).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        post_status(&app, &other, &call_id, &call_sid, 9, "completed").await,
        204
    );
    assert_eq!(app.call_log(&t.key, &call_sid).await["status"], "ringing");
    // Missing SequenceNumber is a clear 400.
    let resp = app
        .twilio_post(
            "/api/v1/call-status",
            &[
                ("AccountSid", &t.account_sid),
                ("CallSid", &call_sid),
                ("CallStatus", "ringing"),
            ],
            &t.auth_token,
        )
        .await;
    assert_eq!(
        expect_error(resp, 400, "invalid_body").await["field"],
        "SequenceNumber"
    );
    app.stop().await;
}

async fn media_stream_accepts_a_valid_token_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app
        .telephony_tenant("Acme", "+14155550100", json!({}))
        .await;
    let (call_sid, xml) = app.inbound(&t, "+15551230000", "+14155550100").await;
    let token = token_of(&xml);
    let ws_url = app.url("/media-stream").replacen("http://", "ws://", 1);
    let upgrade_sig =
        stateset_voice::twilio::signature::compute_signature(&t.auth_token, &ws_url, &[]);
    let mut ws = open_media(&app, Some(&upgrade_sig)).await;
    send_start(&mut ws, &t.account_sid, &call_sid, Some(&token)).await;
    ws.send(Message::text(
        json!({"event": "media", "sequenceNumber": "2", "streamSid": "MZ0001",
        "media": {"track": "inbound", "chunk": "1", "timestamp": "20", "payload": "//////////8="}})
        .to_string(),
    ))
    .await
    .expect("send");
    ws.send(Message::text("not json at all"))
        .await
        .expect("send");
    ws.send(Message::text(
        json!({"event": "stop", "sequenceNumber": "3", "streamSid": "MZ0001",
        "stop": {"accountSid": t.account_sid, "callSid": call_sid}})
        .to_string(),
    ))
    .await
    .expect("send");
    assert_eq!(
        close_frame(&mut ws).await,
        (1000, "caller_hangup".to_owned())
    );
    let log = app.call_log(&t.key, &call_sid).await;
    assert_eq!(log["stream_status"], "stopped");
    assert_eq!(log["end_reason"], "caller_hangup");
    let events: Vec<&Value> = log["events"].as_array().expect("events").iter().collect();
    assert!(
        events
            .iter()
            .any(|e| e["detail"]["event"] == "websocket-started"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e["kind"] == "call.completed"),
        "{events:?}"
    );

    // The same token again: single use.
    let mut again = open_media(&app, None).await;
    send_start(&mut again, &t.account_sid, &call_sid, Some(&token)).await;
    assert_eq!(close_frame(&mut again).await, (1008, "reused".to_owned()));
    app.stop().await;
}

async fn media_stream_refuses_bad_tokens_and_signatures(backend: Backend) {
    let app = spawn_app_with(backend, |raw| {
        raw.set(
            "STREAM_TOKEN_SECRET",
            "stream-secret-0123456789abcdef0123456789",
        )
    })
    .await;
    let t = app
        .telephony_tenant("Acme", "+14155550100", json!({}))
        .await;
    let (call_sid, xml) = app.inbound(&t, "+15551230000", "+14155550100").await;
    let valid = token_of(&xml);
    let keys = actors::stream_token::StreamTokenKeys::new(
        b"stream-secret-0123456789abcdef0123456789",
        None,
    );
    let claims = keys.verify(&valid, 0).expect("our token");
    let expired = keys.mint(&actors::stream_token::StreamClaims {
        exp: 1_000,
        nonce: "n1".into(),
        ..claims.clone()
    });
    let forged =
        actors::stream_token::StreamTokenKeys::new(b"not-the-secret-0123456789abcdef01234", None)
            .mint(&actors::stream_token::StreamClaims {
                nonce: "n2".into(),
                ..claims.clone()
            });
    for (token, reason) in [
        (Some(expired.as_str()), "expired"),
        (Some(forged.as_str()), "forged"),
        (None, "token_missing"),
        (Some("garbage"), "forged"),
    ] {
        let mut ws = open_media(&app, None).await;
        send_start(&mut ws, &t.account_sid, &call_sid, token).await;
        assert_eq!(
            close_frame(&mut ws).await,
            (1008, reason.to_owned()),
            "{reason}"
        );
    }
    // A token for this call presented with another call's SID.
    let mut ws = open_media(&app, None).await;
    send_start(&mut ws, &t.account_sid, &sid("CA"), Some(&valid)).await;
    assert_eq!(close_frame(&mut ws).await, (1008, "forged".to_owned()));
    // A bad upgrade signature.
    let mut ws = open_media(&app, Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA=")).await;
    send_start(&mut ws, &t.account_sid, &call_sid, Some(&valid)).await;
    assert_eq!(
        close_frame(&mut ws).await,
        (1008, "invalid_signature".to_owned())
    );
    // `stop` before `start`.
    let mut ws = open_media(&app, None).await;
    ws.send(Message::text(
        json!({"event": "stop", "streamSid": "MZ1", "stop": {}}).to_string(),
    ))
    .await
    .expect("send");
    assert_eq!(close_frame(&mut ws).await, (1008, "no_start".to_owned()));
    // The valid token still works: refusals consumed nothing.
    let mut ws = open_media(&app, None).await;
    send_start(&mut ws, &t.account_sid, &call_sid, Some(&valid)).await;
    ws.send(Message::text(
        json!({"event": "stop", "streamSid": "MZ0001", "stop": {}}).to_string(),
    ))
    .await
    .expect("send");
    assert_eq!(
        close_frame(&mut ws).await,
        (1000, "caller_hangup".to_owned())
    );
    app.flush_views().await;
    let alerts: Value = app
        .admin(Method::GET, "/api/v1/admin/alerts/auth-transport")
        .send()
        .await
        .expect("alerts")
        .json()
        .await
        .expect("json");
    let reasons: Vec<&str> = alerts["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["kind"] == "stream_token_rejections")
        .filter_map(|a| a["reason"].as_str())
        .collect();
    for r in ["expired", "forged", "missing"] {
        assert!(reasons.contains(&r), "{r} in {reasons:?}");
    }
    assert_eq!(alerts["stream_token"]["secret_source"], "configured");
    app.stop().await;
}

async fn stream_token_secret_rotation_keeps_calls(backend: Backend) {
    let old = "old-stream-secret-0123456789abcdef0123";
    let new = "new-stream-secret-0123456789abcdef0123";
    let app = spawn_app_with(backend, |raw| {
        raw.set("STREAM_TOKEN_SECRET", new);
        raw.set("STREAM_TOKEN_SECRET_PREVIOUS", old);
    })
    .await;
    let t = app
        .telephony_tenant("Acme", "+14155550100", json!({}))
        .await;
    let (call_sid, xml) = app.inbound(&t, "+15551230000", "+14155550100").await;
    let current = actors::stream_token::StreamTokenKeys::new(new.as_bytes(), None);
    let claims = current
        .verify(&token_of(&xml), 0)
        .expect("minted with the new secret");
    // A token minted before the rotation (with the old secret) is still accepted.
    let old_token = actors::stream_token::StreamTokenKeys::new(old.as_bytes(), None).mint(
        &actors::stream_token::StreamClaims {
            nonce: "before-rotation".into(),
            ..claims
        },
    );
    let mut ws = open_media(&app, None).await;
    send_start(&mut ws, &t.account_sid, &call_sid, Some(&old_token)).await;
    ws.send(Message::text(
        json!({"event": "stop", "streamSid": "MZ0001", "stop": {}}).to_string(),
    ))
    .await
    .expect("send");
    assert_eq!(
        close_frame(&mut ws).await,
        (1000, "caller_hangup".to_owned())
    );
    let alerts: Value = app
        .admin(Method::GET, "/api/v1/admin/alerts/auth-transport")
        .send()
        .await
        .expect("alerts")
        .json()
        .await
        .expect("json");
    assert_eq!(alerts["stream_token"]["rotation_in_progress"], true);
    app.stop().await;
}

async fn stream_ended_decides_what_the_caller_hears(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app
        .telephony_tenant("Acme", "+14155550100", json!({}))
        .await;
    let ended = |call_id: String, call_sid: String| {
        let t = t.clone();
        let app = &app;
        async move {
            let resp = app
                .twilio_post(
                    &format!("/api/v1/stream-ended?call_id={call_id}"),
                    &[
                        ("AccountSid", &t.account_sid),
                        ("CallSid", &call_sid),
                        ("CallStatus", "in-progress"),
                    ],
                    &t.auth_token,
                )
                .await;
            assert_eq!(resp.status(), 200);
            twiml::Response::parse(&resp.text().await.expect("body")).expect("twiml")
        }
    };
    // The stream never started: the caller gets the human fallback.
    let (sid1, _) = app.inbound(&t, "+15551230000", "+14155550100").await;
    let id1 = app.call_log(&t.key, &sid1).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let doc = ended(id1.clone(), sid1.clone()).await;
    assert!(
        matches!(&doc.verbs[..], [Verb::Say(_), Verb::Dial(d)] if d.numbers() == vec!["+15550009999"]),
        "{doc:?}"
    );
    let log = app.call_log(&t.key, &sid1).await;
    assert_eq!(log["end_reason"], "stream_failed", "{log}");
    assert_eq!(log["outcome"], "fallback", "{log}");
    // A stream that ran and ended normally: hang up.
    let (sid2, xml) = app.inbound(&t, "+15551230000", "+14155550100").await;
    let mut ws = open_media(&app, None).await;
    send_start(&mut ws, &t.account_sid, &sid2, Some(&token_of(&xml))).await;
    ws.send(Message::text(
        json!({"event": "stop", "streamSid": "MZ0001", "stop": {}}).to_string(),
    ))
    .await
    .expect("send");
    close_frame(&mut ws).await;
    let id2 = app.call_log(&t.key, &sid2).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let doc = ended(id2, sid2).await;
    assert!(matches!(&doc.verbs[..], [Verb::Hangup(_)]), "{doc:?}");
    // A stream-error status callback means fallback even after a start.
    let (sid3, _) = app.inbound(&t, "+15551230000", "+14155550100").await;
    let id3 = app.call_log(&t.key, &sid3).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let resp = app
        .twilio_post(
            &format!("/api/v1/stream-status?call_id={id3}"),
            &[
                ("AccountSid", &t.account_sid),
                ("CallSid", &sid3),
                ("StreamSid", "MZ9"),
                ("StreamEvent", "stream-error"),
                ("StreamError", "31920 handshake error"),
            ],
            &t.auth_token,
        )
        .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(app.call_log(&t.key, &sid3).await["stream_status"], "error");
    let doc = ended(id3, sid3).await;
    assert!(matches!(&doc.verbs[0], Verb::Say(_)), "{doc:?}");
    app.stop().await;
}
