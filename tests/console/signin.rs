//! Signing in and the page's security and accessibility basics: a key without the
//! `operator` scope or a wrong key is refused with a clear message; keys live in the tab's
//! session only (never in the URL or local storage) and signing out forgets them; the
//! console is served with its security headers; every control on the live page has a name.

use crate::harness::{Browser, Console};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_keeps_keys_in_the_tab_and_refuses_keys_without_the_operator_scope() {
    let console = Console::start().await;

    // Served with its security headers.
    let resp = console
        .http
        .get(format!("{}/console", console.base))
        .send()
        .await
        .expect("console");
    assert_eq!(resp.status(), 200);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let csp = header("content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "no-referrer");

    let b = Browser::open("signin").await;
    // A key that does not exist.
    b.sign_in(&console.base, "sk_live_not_a_key", "", "Ada")
        .await;
    b.wait_text("#signin-error", "").await;
    b.wait_until("#signin-error", "el.textContent.trim().length > 0")
        .await;
    // A real key without the operator scope.
    let reader = console.key_with_scopes(&["read"]).await;
    b.sign_in(&console.base, &reader, "", "Ada").await;
    b.wait_text("#signin-error", "operator").await;
    b.screenshot("signin-refused").await;

    // The operator key signs in; it is in the tab's session storage only.
    b.sign_in(&console.base, &console.api_key, "", "Ada").await;
    b.wait_page("live").await;
    let url = b.client().current_url().await.expect("url").to_string();
    assert!(!url.contains(&console.api_key), "{url}");
    let stored = b
        .eval("return JSON.stringify(Object.assign({}, sessionStorage)) + '|' + JSON.stringify(Object.assign({}, localStorage));")
        .await;
    let stored = stored.as_str().expect("string");
    let (session, local) = stored.split_once('|').expect("two parts");
    assert!(
        session.contains(&console.api_key),
        "session storage holds the key"
    );
    assert!(
        !local.contains(&console.api_key),
        "local storage must not: {local}"
    );
    // Without an admin key, no admin pages are offered.
    assert_eq!(b.count("nav#nav a[href^=\"#/admin/\"]").await, 0);

    // Every control of the live page has an accessible name.
    let unnamed = b
        .eval(
            "return Array.from(document.querySelectorAll('input, select, textarea, button')).filter((el) => {
                if (el.type === 'hidden') return false;
                const labelled = (el.id && document.querySelector('label[for=\"' + el.id + '\"]'))
                    || el.closest('label') || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
                    || (el.tagName === 'BUTTON' && el.textContent.trim());
                return !labelled;
            }).map((el) => el.outerHTML.slice(0, 120));",
        )
        .await;
    assert_eq!(unnamed, serde_json::json!([]), "controls without a name");

    // Signing out forgets the keys.
    b.click("#signout").await;
    b.wait_page("signin").await;
    let left = b
        .eval("return JSON.stringify(Object.assign({}, sessionStorage));")
        .await;
    assert!(
        !left.as_str().unwrap_or_default().contains(&console.api_key),
        "{left}"
    );
    b.close().await;
}
