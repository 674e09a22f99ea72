//! The operator console: `GET /console` (and `/console/`) serves the page,
//! `GET /console/assets/<name>` its stylesheet and JavaScript modules. The files live in
//! `src/console/` and are compiled into the binary with `include_str!`.
//!
//! Technology: plain HTML, CSS and vanilla JavaScript ES modules, no framework, no library,
//! no build step. The console is a thin client of the documented JSON API (the same
//! routes, keys and scopes as any other client), so there is nothing to vendor, audit or
//! update, and the page runs under a strict Content Security Policy
//! (`script-src 'self'`, no `unsafe-inline`, no `unsafe-eval`): no inline script or style,
//! and every piece of data from the API is put into the page as text, never as markup.
//!
//! These routes are not part of the JSON API: they are a separate filter tried before the
//! route table ([`super::routes`]), so they appear in none of the OpenAPI documents.
//! Every answer carries the security headers ([`SECURITY_HEADERS`]); assets carry an ETag
//! (SHA-256 of the bytes, computed once) and `Cache-Control: no-cache`, so a browser
//! revalidates and gets `304 Not Modified` while the binary is the same.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};
use warp::filters::BoxedFilter;
use warp::http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH,
};
use warp::http::{Method, StatusCode};
use warp::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::context;

/// The Content Security Policy of every console response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// Headers set on every console response.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

/// Where the page is served.
const PAGE_PATH: &str = "/console";
/// The prefix of the assets (one path segment after it: the asset's name).
const ASSETS_PREFIX: &str = "/console/assets/";

/// One file of the console.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
    etag: HeaderValue,
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The name the page is kept under (served at [`PAGE_PATH`], not as an asset).
const INDEX: &str = "index.html";

/// Every file, with its ETag computed once.
static FILES: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    [
        (INDEX, HTML, include_str!("../console/index.html")),
        ("console.css", CSS, include_str!("../console/console.css")),
        ("app.js", JS, include_str!("../console/app.js")),
        ("api.js", JS, include_str!("../console/api.js")),
        ("sse.js", JS, include_str!("../console/sse.js")),
        ("dom.js", JS, include_str!("../console/dom.js")),
        ("live.js", JS, include_str!("../console/live.js")),
        ("calls.js", JS, include_str!("../console/calls.js")),
        ("callbacks.js", JS, include_str!("../console/callbacks.js")),
        ("webhooks.js", JS, include_str!("../console/webhooks.js")),
        ("admin.js", JS, include_str!("../console/admin.js")),
        ("chart.js", JS, include_str!("../console/chart.js")),
    ]
    .into_iter()
    .map(|(name, content_type, body)| Asset {
        name,
        content_type,
        body,
        etag: etag_of(body),
    })
    .collect()
});

fn etag_of(body: &str) -> HeaderValue {
    let digest = Sha256::digest(body.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    // Hex digits and quotes: always a valid header value.
    HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn file(name: &str) -> Option<&'static Asset> {
    FILES.iter().find(|a| a.name == name)
}

/// The console's filter: answers paths under `/console`, rejects (not found) every other
/// path so the route table is tried next.
pub fn routes() -> BoxedFilter<(Response,)> {
    warp::path::full()
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and_then(
            |path: FullPath, method: Method, headers: HeaderMap| async move {
                respond(path.as_str(), &method, &headers).ok_or_else(warp::reject::not_found)
            },
        )
        .boxed()
}

/// The console's answer to a request, or `None` when the path is not the console's.
pub fn respond(path: &str, method: &Method, headers: &HeaderMap) -> Option<Response> {
    let asset = if path == PAGE_PATH || path == "/console/" {
        context::set_route(PAGE_PATH);
        file(INDEX)
    } else if let Some(name) = path.strip_prefix(ASSETS_PREFIX) {
        context::set_route("/console/assets/{name}");
        Some(name)
            .filter(|n| *n != INDEX && !n.contains('/'))
            .and_then(file)
    } else if path.starts_with("/console/") {
        context::set_route("/console/{path}");
        None
    } else {
        return None;
    };
    let response = if *method != Method::GET && *method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        r
    } else {
        match asset {
            Some(asset) => serve(asset, headers),
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    };
    Some(secured(response))
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/") == asset.etag)
        });
    let mut response = if fresh {
        let mut r = warp::reply().into_response();
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = asset.body.into_response();
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        r
    };
    let h = response.headers_mut();
    h.insert(ETAG, asset.etag.clone());
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut r = body.into_response();
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn secured(mut response: Response) -> Response {
    let h = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}
