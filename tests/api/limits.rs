//! Rate limits: per client IP on routes without credentials and on failed authentication,
//! per tenant on tenant-key routes; 429 with `Retry-After`.

use reqwest::Method;

use crate::helpers::{ADMIN_KEY, Backend, backend_tests, expect_error, spawn_app_with};

backend_tests!(
    per_ip_limit_on_unauthenticated_routes,
    failed_authentication_blocks_the_address,
    per_tenant_limit_on_tenant_routes,
);

async fn per_ip_limit_on_unauthenticated_routes(backend: Backend) {
    let app = spawn_app_with(backend, |raw| raw.set("RATE_LIMIT_PER_IP_PER_MINUTE", "3")).await;
    for _ in 0..3 {
        let resp = app
            .client
            .get(app.url("/api-docs/public.json"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200);
    }
    let resp = app
        .client
        .get(app.url("/api-docs/public.json"))
        .send()
        .await
        .expect("get");
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    expect_error(resp, 429, "rate_limited").await;
    // Liveness is never throttled.
    let resp = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    app.stop().await;
}

async fn failed_authentication_blocks_the_address(backend: Backend) {
    let app = spawn_app_with(backend, |raw| raw.set("RATE_LIMIT_PER_IP_PER_MINUTE", "3")).await;
    for _ in 0..4 {
        let resp = app
            .client
            .get(app.url("/api/v1/admin/tenants"))
            .header("x-admin-key", "wrong-admin-key-0123456789")
            .send()
            .await
            .expect("get");
        expect_error(resp, 401, "unauthorized").await;
    }
    // Now even the right key is refused until the block ends: guessing is throttled.
    let resp = app
        .client
        .get(app.url("/api/v1/admin/tenants"))
        .header("x-admin-key", ADMIN_KEY)
        .send()
        .await
        .expect("get");
    assert!(resp.headers().contains_key("retry-after"));
    expect_error(resp, 429, "rate_limited").await;
    app.stop().await;
}

async fn per_tenant_limit_on_tenant_routes(backend: Backend) {
    let app = spawn_app_with(backend, |raw| {
        raw.set("RATE_LIMIT_PER_TENANT_PER_MINUTE", "2")
    })
    .await;
    let (_, a) = app.tenant_with_key("A").await;
    let (_, b) = app.tenant_with_key("B").await;
    for _ in 0..2 {
        assert_eq!(
            app.tenant(Method::GET, "/api/v1/me", &a)
                .send()
                .await
                .expect("me")
                .status(),
            200
        );
    }
    let resp = app
        .tenant(Method::GET, "/api/v1/me", &a)
        .send()
        .await
        .expect("me");
    assert!(resp.headers().contains_key("retry-after"));
    expect_error(resp, 429, "rate_limited").await;
    // Another tenant is unaffected.
    assert_eq!(
        app.tenant(Method::GET, "/api/v1/me", &b)
            .send()
            .await
            .expect("me")
            .status(),
        200
    );
    app.stop().await;
}
