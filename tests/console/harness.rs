//! The console's browser-test harness: the sandbox (simulated carrier and model, demo
//! tenant) served in-process on loopback, a `chromedriver` per test driving Debian's headless
//! Chromium, and a [`Browser`] whose waits are signals from the page (a `MutationObserver`
//! resolving when a selector matches), not sleeps.
//!
//! Chromium and ChromeDriver come from `scripts/chromium.sh` (called by `scripts/test`);
//! `CHROMIUM` and `CHROMEDRIVER` name them (default `/usr/bin/chromium`,
//! `/usr/bin/chromedriver`). Screenshots go to `<target>/tmp/console-screenshots/`, and also
//! to `$CONSOLE_SCREENSHOTS` when set (`CONSOLE_SCREENSHOTS=docs/console` refreshes the ones
//! the README shows).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, TimeoutConfiguration};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use stateset_voice::config::{Config, RawSettings};
use stateset_voice::http::AppState;
use stateset_voice::sandbox::{self, Sandbox};
use stateset_voice::startup::Application;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// The admin key of the test server.
pub const ADMIN_KEY: &str = "console-test-admin-key-0123456789abcdef";
const MASTER_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The longest any single wait in a test may take (a demo call lasts about 20 s).
pub const WAIT: Duration = Duration::from_secs(60);

/// The sandbox, served on loopback for one test.
pub struct Console {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The demo tenant.
    pub tenant_id: String,
    /// A tenant key with `runtime`, `read` and `operator`.
    pub api_key: String,
    /// The simulators (to await a call's end at the carrier).
    pub sims: Sandbox,
    /// An HTTP client for the API.
    pub http: reqwest::Client,
    /// The server's state (its store and node, to publish live calls as a peer would).
    pub state: AppState,
    server: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Console {
    /// Starts the sandbox exactly as `serve --sandbox` does, on a free port.
    pub async fn start() -> Console {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut raw = RawSettings::default();
        raw.set("BIND_ADDR", "127.0.0.1:0");
        raw.set(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("console.db").display()),
        );
        raw.set("ADMIN_API_KEY", ADMIN_KEY);
        raw.set("MASTER_KEY", MASTER_KEY);
        raw.set("LOG_LEVEL", "warn");
        let sims = sandbox::start(&mut raw).await.expect("simulators");
        let config = Config::parse(&raw).expect("config");
        let app = Application::build(config).await.expect("app");
        let base = format!("http://{}", app.local_addr());
        let state = app.state();
        let seeded = sandbox::seed(&state, &sims).await.expect("seed");
        let server = tokio::spawn(async move {
            app.run_until_stopped(std::future::pending())
                .await
                .expect("server");
        });
        Console {
            base,
            tenant_id: seeded.tenant_id,
            api_key: seeded.api_key,
            sims,
            http: reqwest::Client::new(),
            state,
            server,
            _dir: dir,
        }
    }

    /// `POST path` with the tenant key; the JSON answer (any status).
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `GET path` with the tenant key; the JSON answer (any status).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A tenant key of the demo tenant with only the given scopes.
    pub async fn key_with_scopes(&self, scopes: &[&str]) -> String {
        let resp: Value = self
            .http
            .post(format!(
                "{}/api/v1/admin/tenants/{}/api-keys",
                self.base, self.tenant_id
            ))
            .header("x-admin-key", ADMIN_KEY)
            .json(&json!({"name": "console-test", "scopes": scopes}))
            .send()
            .await
            .expect("create key")
            .json()
            .await
            .expect("json");
        resp["secret"]
            .as_str()
            .unwrap_or_else(|| panic!("no key in {resp}"))
            .to_owned()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A chromedriver process and the headless Chromium session it drives.
pub struct Browser {
    client: Client,
    driver: Child,
    name: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session in a fresh
    /// profile. `name` prefixes this browser's screenshots.
    pub async fn open(name: &str) -> Browser {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let chromedriver =
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        assert!(
            std::path::Path::new(&chromium).exists()
                && std::path::Path::new(&chromedriver).exists(),
            "Chromium ({chromium}) and ChromeDriver ({chromedriver}) are needed: run \
             scripts/chromium.sh (scripts/test does)"
        );
        let port = free_port();
        let mut driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        // chromedriver says when it listens.
        let stdout = driver.stdout.take().expect("chromedriver stdout");
        let mut lines = BufReader::new(stdout).lines();
        tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.expect("chromedriver output") {
                if line.contains("started successfully") {
                    return;
                }
            }
            panic!("chromedriver exited before it listened");
        })
        .await
        .expect("chromedriver starts");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let profile = tempfile::tempdir().expect("profile dir");
        let mut caps = Capabilities::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1366,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("WebDriver session");
        client
            .update_timeouts(TimeoutConfiguration::new(
                Some(WAIT + Duration::from_secs(5)),
                Some(WAIT),
                Some(Duration::ZERO),
            ))
            .await
            .expect("timeouts");
        Browser {
            client,
            driver,
            name: name.to_owned(),
            _profile: profile,
        }
    }

    /// The WebDriver client, for what the helpers below don't cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits for its document.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Waits until the JavaScript expression `cond` is true in the page, re-checking on every
    /// mutation of the document (a `MutationObserver`), not on a timer.
    pub async fn wait_js(&self, cond: &str) {
        let script = format!(
            r#"const done = arguments[arguments.length - 1];
            const ok = () => {{ try {{ return !!({cond}); }} catch (e) {{ return false; }} }};
            if (ok()) {{ done(true); return; }}
            const obs = new MutationObserver(() => {{ if (ok()) {{ obs.disconnect(); done(true); }} }});
            obs.observe(document, {{ subtree: true, childList: true, attributes: true, characterData: true }});"#
        );
        if let Err(e) = self.client.execute_async(&script, vec![]).await {
            self.screenshot("failed-wait").await;
            let body = self.text("body").await;
            panic!("waiting for `{cond}`: {e}\npage text:\n{body}");
        }
    }

    /// Waits until `css` matches an element for which the JavaScript predicate `test` (on
    /// `el`) holds; the element.
    pub async fn wait_until(&self, css: &str, test: &str) -> Element {
        let cond = format!(
            "Array.from(document.querySelectorAll({})).some((el) => {test})",
            json!(css)
        );
        self.wait_js(&cond).await;
        self.find_where(css, test).await
    }

    /// The first element matching `css` for which `test` holds (it must be there now).
    async fn find_where(&self, css: &str, test: &str) -> Element {
        let script = format!(
            "for (const el of document.querySelectorAll(arguments[0])) {{ if ({test}) return el; }} return null;"
        );
        let el = self
            .client
            .execute(&script, vec![json!(css)])
            .await
            .expect("find");
        // A web element reference: `{"element-6066-11e4-a52e-4f735466cecf": "<id>"}`.
        let id = el
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("`{css}` where `{test}`: no element ({el})"));
        Element::from_element_id(self.client.clone(), id.to_owned().into())
    }

    /// Waits until `css` matches an element.
    pub async fn wait(&self, css: &str) -> Element {
        self.wait_until(css, "true").await
    }

    /// Waits until an element matching `css` contains `text`.
    pub async fn wait_text(&self, css: &str, text: &str) -> Element {
        let test = format!("el.textContent.includes({})", json!(text));
        self.wait_until(css, &test).await
    }

    /// Waits until the page `name` rendered its data (`main#page[data-page=name][data-ready=true]`).
    pub async fn wait_page(&self, name: &str) {
        self.wait(&format!(
            "main#page[data-page=\"{name}\"][data-ready=\"true\"]"
        ))
        .await;
    }

    /// Clicks the element `css` matches (waiting for it).
    pub async fn click(&self, css: &str) {
        self.wait(css).await.click().await.expect("click");
    }

    /// Types `text` into the field `css` matches, after clearing it.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.wait(css).await;
        el.clear().await.expect("clear");
        el.send_keys(text).await.expect("type");
    }

    /// The text of the first element `css` matches ("" when none).
    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(el) => el.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map_or(0, |all| all.len())
    }

    /// Runs `script` in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.expect("script")
    }

    /// Signs in on the console's sign-in page.
    pub async fn sign_in(&self, base: &str, tenant_key: &str, admin_key: &str, operator: &str) {
        self.goto(&format!("{base}/console")).await;
        self.wait_page("signin").await;
        if !tenant_key.is_empty() {
            self.fill("#signin-tenant-key", tenant_key).await;
        }
        if !admin_key.is_empty() {
            self.fill("#signin-admin-key", admin_key).await;
        }
        self.fill("#signin-operator", operator).await;
        self.click("#signin-submit").await;
    }

    /// Saves a PNG screenshot as `<name>-<shot>.png` (see the module docs for where).
    pub async fn screenshot(&self, shot: &str) {
        let Ok(png) = self.client.screenshot().await else {
            return;
        };
        let file = format!("{}-{shot}.png", self.name);
        let mut dirs = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")];
        if let Ok(extra) = std::env::var("CONSOLE_SCREENSHOTS") {
            dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(extra));
        }
        for dir in dirs {
            std::fs::create_dir_all(&dir).expect("screenshot dir");
            std::fs::write(dir.join(&file), &png).expect("write screenshot");
        }
    }

    /// Ends the session and chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}
