//! The operator console served by the binary: the page and its files beside the API, with
//! their security headers, kept out of the OpenAPI documents, and the API's own 404 left
//! as it was for every path that is not the console's.

use serde_json::Value;

use crate::helpers::{Backend, backend_tests, expect_error, metric, spawn_app};

backend_tests!(console_is_served_beside_the_api_and_left_out_of_the_documents);

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name}"))
}

async fn console_is_served_beside_the_api_and_left_out_of_the_documents(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = metric(
        &app.metrics().await,
        "http_requests_total",
        &[("route", "/console"), ("status", "200")],
    );

    let page = app
        .client
        .get(app.url("/console"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "content-security-policy"), CSP);
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    assert_eq!(header(&page, "referrer-policy"), "no-referrer");
    assert_eq!(header(&page, "x-frame-options"), "DENY");
    assert!(page.headers().contains_key("x-request-id"));
    let html = page.text().await.expect("html");
    assert!(html.contains(r#"<main id="page""#));

    let script = app
        .client
        .get(app.url("/console/assets/app.js"))
        .send()
        .await
        .expect("script");
    assert_eq!(script.status(), 200);
    assert_eq!(
        header(&script, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(header(&script, "cache-control"), "no-cache");
    let etag = header(&script, "etag").to_owned();
    let again = app
        .client
        .get(app.url("/console/assets/app.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("revalidation");
    assert_eq!(again.status(), 304);

    let missing = app
        .client
        .get(app.url("/console/assets/missing.js"))
        .send()
        .await
        .expect("missing");
    assert_eq!(missing.status(), 404);
    assert_eq!(header(&missing, "content-security-policy"), CSP);

    // Outside the console the API answers as before.
    let resp = app
        .client
        .get(app.url("/consoles"))
        .send()
        .await
        .expect("other path");
    expect_error(resp, 404, "route_not_found").await;

    for doc in [
        "/api-docs/openapi.json",
        "/api-docs/public.json",
        "/api-docs/admin.json",
    ] {
        let doc: Value = app
            .client
            .get(app.url(doc))
            .send()
            .await
            .expect("document")
            .json()
            .await
            .expect("json");
        let paths = doc["paths"].as_object().expect("paths");
        assert!(
            paths.keys().all(|p| !p.starts_with("/console")),
            "the console is not part of the API documents"
        );
    }

    let after = metric(
        &app.metrics().await,
        "http_requests_total",
        &[("route", "/console"), ("status", "200")],
    );
    // The recorder is process-global (the other backend's run may count too): at least ours.
    assert!(
        after - before >= 1.0,
        "the page is labelled /console in the metrics"
    );
    app.stop().await;
}
