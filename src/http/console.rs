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

/// Whether a path is the console's (`/console` and everything under `/console/`).
fn is_console(path: &str) -> bool {
    path == PAGE_PATH || path.starts_with("/console/")
}

/// The console's filter: answers paths under `/console`, rejects (not found) every other
/// path so the route table is tried next. The path is looked at first, so an API request
/// costs one comparison here and nothing is cloned for it.
pub fn routes() -> BoxedFilter<(Response,)> {
    warp::path::full()
        .and_then(|path: FullPath| async move {
            if is_console(path.as_str()) {
                Ok(path)
            } else {
                Err(warp::reject::not_found())
            }
        })
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
    if !is_console(path) {
        return None;
    }
    let asset = if path == PAGE_PATH || path == "/console/" {
        context::set_route(PAGE_PATH);
        file(INDEX)
    } else if let Some(name) = path.strip_prefix(ASSETS_PREFIX) {
        context::set_route("/console/assets/{name}");
        Some(name)
            .filter(|n| *n != INDEX && !n.contains('/'))
            .and_then(file)
    } else {
        context::set_route("/console/{path}");
        None
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

#[cfg(test)]
mod tests {
    use warp::http::header::HeaderName;

    use super::*;

    fn get(path: &str) -> Response {
        respond(path, &Method::GET, &HeaderMap::new()).expect("a console path")
    }

    fn header<'a, B>(r: &'a warp::http::Response<B>, name: &str) -> &'a str {
        r.headers()
            .get(HeaderName::from_bytes(name.as_bytes()).expect("a header name"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name}"))
    }

    fn assert_secured<B>(r: &warp::http::Response<B>) {
        assert_eq!(header(r, "content-security-policy"), CSP);
        assert!(CSP.contains("script-src 'self';"));
        assert!(!CSP.contains("unsafe-"));
        assert_eq!(header(r, "x-content-type-options"), "nosniff");
        assert_eq!(header(r, "referrer-policy"), "no-referrer");
        assert_eq!(header(r, "x-frame-options"), "DENY");
    }

    /// Through the filter, to read the body.
    async fn fetch(path: &str) -> warp::http::Response<bytes::Bytes> {
        warp::test::request().path(path).reply(&routes()).await
    }

    fn text_of(r: &warp::http::Response<bytes::Bytes>) -> &str {
        std::str::from_utf8(r.body()).expect("UTF-8")
    }

    #[tokio::test]
    async fn the_page_is_served_at_console_with_the_security_headers() {
        for path in ["/console", "/console/"] {
            let r = fetch(path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
            assert_eq!(header(&r, "cache-control"), "no-cache");
            assert!(header(&r, "etag").starts_with('"'));
            assert_secured(&r);
            let html = text_of(&r);
            assert!(html.contains(r#"<main id="page""#), "{html}");
            assert!(html.contains(r#"src="/console/assets/app.js""#));
        }
    }

    #[tokio::test]
    async fn every_asset_is_served_with_its_content_type_and_etag() {
        for asset in FILES.iter().filter(|a| a.name != INDEX) {
            let r = fetch(&format!("{ASSETS_PREFIX}{}", asset.name)).await;
            assert_eq!(r.status(), StatusCode::OK, "{}", asset.name);
            let expected = if asset.name.ends_with(".js") {
                "text/javascript; charset=utf-8"
            } else {
                "text/css; charset=utf-8"
            };
            assert_eq!(header(&r, "content-type"), expected, "{}", asset.name);
            assert_eq!(header(&r, "cache-control"), "no-cache");
            assert_eq!(header(&r, "etag"), asset.etag.to_str().expect("ASCII"));
            assert_secured(&r);
            assert_eq!(text_of(&r), asset.body);
        }
        let etags: std::collections::HashSet<_> = FILES.iter().map(|a| a.etag.clone()).collect();
        assert_eq!(etags.len(), FILES.len(), "each file has its own ETag");
    }

    #[test]
    fn a_matching_etag_is_answered_not_modified() {
        let etag = get("/console/assets/app.js")
            .headers()
            .get(ETAG)
            .cloned()
            .expect("an ETag");
        for sent in [
            etag.to_str().expect("ASCII").to_owned(),
            format!("W/{}", etag.to_str().expect("ASCII")),
            format!("\"other\", {}", etag.to_str().expect("ASCII")),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(
                IF_NONE_MATCH,
                HeaderValue::from_str(&sent).expect("a value"),
            );
            let r = respond("/console/assets/app.js", &Method::GET, &headers).expect("served");
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{sent}");
            assert_eq!(r.headers().get(ETAG), Some(&etag));
            assert_secured(&r);
        }
        let mut headers = HeaderMap::new();
        headers.insert(IF_NONE_MATCH, HeaderValue::from_static("\"stale\""));
        let r = respond("/console/assets/app.js", &Method::GET, &headers).expect("served");
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_console_paths_are_404_with_the_security_headers() {
        for path in [
            "/console/assets/nope.js",
            "/console/assets/",
            "/console/assets/index.html",
            "/console/assets/../app.js",
            "/console/assets/sub/app.js",
            "/console/live",
        ] {
            let r = fetch(path).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(header(&r, "content-type"), "text/plain; charset=utf-8");
            assert_secured(&r);
        }
    }

    #[test]
    fn other_methods_are_405_and_head_is_served() {
        let r = respond("/console", &Method::POST, &HeaderMap::new()).expect("console");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(header(&r, "allow"), "GET, HEAD");
        assert_secured(&r);
        let r =
            respond("/console/assets/app.js", &Method::HEAD, &HeaderMap::new()).expect("console");
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[test]
    fn paths_outside_the_console_are_left_to_the_api() {
        for path in [
            "/",
            "/consoles",
            "/api/v1/me",
            "/console.css",
            "/health/live",
        ] {
            assert!(
                respond(path, &Method::GET, &HeaderMap::new()).is_none(),
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn the_filter_serves_the_console_and_rejects_the_rest() {
        let filter = routes();
        let r = warp::test::request()
            .path("/console/assets/console.css")
            .reply(&filter)
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            Some("text/css; charset=utf-8")
        );
        assert!(
            !warp::test::request()
                .path("/api/v1/me")
                .matches(&filter)
                .await
        );
    }

    #[test]
    fn every_file_the_page_loads_or_imports_is_served() {
        for asset in FILES.iter() {
            for (prefix, end) in [("/console/assets/", '"'), ("from \"./", '"')] {
                for (i, _) in asset.body.match_indices(prefix) {
                    let rest = &asset.body[i + prefix.len()..];
                    let name = rest.split(end).next().unwrap_or_default();
                    assert!(
                        file(name).is_some_and(|f| f.name != INDEX),
                        "{} refers to {name}, which is not served",
                        asset.name
                    );
                }
            }
        }
    }

    #[test]
    fn no_inline_script_or_style_and_no_markup_from_strings() {
        let html = FILES
            .iter()
            .find(|a| a.name == INDEX)
            .expect("the page")
            .body;
        for (i, _) in html.match_indices("<script") {
            let tag = html[i..].split('>').next().unwrap_or_default();
            assert!(tag.contains(" src="), "inline script: {tag}");
        }
        for asset in FILES.iter() {
            for banned in [
                "style=",
                ".innerHTML",
                ".outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "localStorage",
            ] {
                assert!(
                    !asset.body.contains(banned),
                    "{} contains {banned}",
                    asset.name
                );
            }
        }
    }
}
