//! Rate limits: per client IP on routes without credentials and on failed authentication,
//! per tenant on tenant-key routes (a budget of the cluster, divided among the live nodes);
//! 429 with `Retry-After`.

use std::time::Duration;

use reqwest::Method;
use stateset_voice::config::RawSettings;

use crate::helpers::{ADMIN_KEY, Backend, TestApp, backend_tests, expect_error, spawn_app_with};

backend_tests!(
    per_ip_limit_on_unauthenticated_routes,
    failed_authentication_blocks_the_address,
    per_tenant_limit_on_tenant_routes,
    a_tenant_budget_is_divided_among_the_live_nodes,
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

/// Waits until `node` counts `n` live nodes (its heartbeat re-reads them).
async fn cluster_of(node: &TestApp, n: u32) {
    let mut size = node.state.nodes.cluster_size().subscribe();
    tokio::time::timeout(Duration::from_secs(10), size.wait_for(|s| *s == n))
        .await
        .expect("the node re-divides in time")
        .expect("the node runs");
}

/// How many of `tries` requests of `key` on `node` pass the tenant's limit.
async fn passed(node: &TestApp, key: &str, tries: usize) -> usize {
    let mut ok = 0;
    for _ in 0..tries {
        let resp = node
            .tenant(Method::GET, "/api/v1/me", key)
            .send()
            .await
            .expect("me");
        match resp.status().as_u16() {
            200 => ok += 1,
            _ => {
                expect_error(resp, 429, "rate_limited").await;
            }
        }
    }
    ok
}

async fn a_tenant_budget_is_divided_among_the_live_nodes(backend: Backend) {
    let settings = |raw: &mut RawSettings| {
        raw.set("RATE_LIMIT_PER_TENANT_PER_MINUTE", "10");
        raw.set("NODE_HEARTBEAT_MS", "100");
    };
    let a = spawn_app_with(backend, settings).await;
    let b = a.another_node(settings).await;
    cluster_of(&a, 2).await;
    cluster_of(&b, 2).await;
    // Two nodes: a share of ceil(10 / 2) = 5 each, 10 in total whichever node is asked.
    let (_, x) = a.tenant_with_key("X").await;
    assert_eq!(passed(&a, &x, 12).await, 5);
    assert_eq!(passed(&b, &x, 12).await, 5);
    assert_eq!(passed(&a, &x, 1).await, 0);
    // B leaves: A's next heartbeat counts one node, whose share is the whole budget.
    b.stop().await;
    cluster_of(&a, 1).await;
    let (_, y) = a.tenant_with_key("Y").await;
    assert_eq!(passed(&a, &y, 12).await, 10);
    a.stop().await;
}
