//! Configuration from environment variables and an optional TOML file.
//!
//! Every setting has an environment variable (upper case, e.g. `BIND_ADDR`) and the same
//! key in lower case in the TOML file given with `--config`; the environment wins.
//! Invalid configuration is a [`ConfigError`] naming the setting, and `main` exits with
//! code 64 (`EX_USAGE`). Secrets are held in [`Secret`], whose `Debug`/`Display` are
//! redacted, so they never reach a log line.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

/// A secret value: never printed, compared in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself; call sites are few and greppable.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented value.
    pub fn matches(&self, presented: &str) -> bool {
        actors::crypto::ct_eq(self.0.as_bytes(), presented.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A configuration problem: which setting and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {setting}: {problem}")]
pub struct ConfigError {
    /// The environment variable (or TOML key, in lower case) at fault.
    pub setting: String,
    /// What is wrong.
    pub problem: String,
}

impl ConfigError {
    fn new(setting: &str, problem: impl Into<String>) -> Self {
        Self {
            setting: setting.to_owned(),
            problem: problem.into(),
        }
    }
}

/// The service configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP server listens (`BIND_ADDR`, default `127.0.0.1:5050`).
    pub bind_addr: SocketAddr,
    /// `DATABASE_URL`: `sqlite://…` or `postgres://…` (default `sqlite://data/stateset-voice.db`).
    pub database_url: Secret,
    /// `DATABASE_MAX_CONNECTIONS` (default 10).
    pub database_max_connections: u32,
    /// `ADMIN_API_KEY`: enables the admin API (at least 16 characters). Absent → admin paths 404.
    pub admin_api_key: Option<Secret>,
    /// `PUBLIC_BASE_URL`: the URL Twilio reaches this service at (default `http://{bind_addr}`,
    /// with the port actually bound when `BIND_ADDR` asks for port 0).
    pub public_base_url: Url,
    /// Whether `PUBLIC_BASE_URL` was set (otherwise it follows the bound address).
    pub public_base_url_explicit: bool,
    /// `MASTER_KEY`: key for tenant secrets at rest (at least 32 characters).
    /// Absent with SQLite → a key file beside the database is created; required with PostgreSQL.
    pub master_key: Option<Secret>,
    /// `STREAM_TOKEN_SECRET`: signs media-stream tokens (derived from the master key if absent).
    pub stream_token_secret: Option<Secret>,
    /// `STREAM_TOKEN_SECRET_PREVIOUS`: still accepted during a rotation.
    pub stream_token_secret_previous: Option<Secret>,
    /// `RATE_LIMIT_PER_IP_PER_MINUTE` (default 60): unauthenticated routes and failed authentication.
    pub rate_limit_per_ip_per_minute: NonZeroU32,
    /// `RATE_LIMIT_PER_TENANT_PER_MINUTE` (default 1000): tenant-key routes.
    pub rate_limit_per_tenant_per_minute: NonZeroU32,
    /// `CLIENT_IP_HEADER`: header carrying the client address set by a trusted proxy (e.g. `x-forwarded-for`).
    pub client_ip_header: Option<String>,
    /// `LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// `LOG_LEVEL`: a tracing filter directive (default `info`).
    pub log_level: String,
    /// `SHUTDOWN_GRACE_SECONDS` (default 30): how long live requests and calls may drain.
    pub shutdown_grace: Duration,
    /// `MAX_BODY_BYTES` (default 65536): largest accepted request body.
    pub max_body_bytes: u64,
    /// `ACTOR_CALL_TIMEOUT_MS` (default 5000): how long a handler waits for an actor.
    pub actor_call_timeout: Duration,
    /// `KEY_CACHE_TTL_SECONDS` (default 30): lifetime of a cached API-key lookup.
    pub key_cache_ttl: Duration,
    /// `SUPERVISOR_MAX_RESTARTS` (default 5): restarts of one singleton tolerated per window.
    pub supervisor_max_restarts: u32,
    /// `SUPERVISOR_RESTART_WINDOW_SECONDS` (default 60): the meltdown window.
    pub supervisor_restart_window: Duration,
    /// `TWILIO_API_BASE_URL` (default `https://api.twilio.com`): the carrier's REST API.
    pub twilio_api_base_url: Url,
    /// `TWILIO_TIMEOUT_MS` (default 10000): a carrier request's deadline.
    pub twilio_timeout: Duration,
    /// `MAKE_CALL_WAIT_MS` (default 5000): how long `make-call` waits for the carrier before
    /// answering 202 with the call id and a pending status (the placement goes on).
    pub make_call_wait: Duration,
    /// `CARRIER_LOOKUP_INTERVAL_MS` (default 5000): between two carrier lookups of an
    /// outbound call whose placement timed out (status callbacks are taken at once).
    pub carrier_lookup_interval: Duration,
    /// `CARRIER_LOOKUP_GRACE_SECONDS` (default 120): how long such a call may take to show
    /// up at the carrier before it is recorded failed (`carrier_not_found`).
    pub carrier_lookup_grace: Duration,
    /// `STREAM_TOKEN_TTL_SECONDS` (default 300): a stream token's lifetime (covers ringing).
    pub stream_token_ttl: Duration,
    /// `RATE_LIMIT_WEBHOOKS_PER_TENANT_PER_MINUTE` (default 6000): verified Twilio webhooks per tenant.
    pub rate_limit_webhooks_per_tenant_per_minute: NonZeroU32,
    /// `OPENAI_REALTIME_URL` (default `wss://api.openai.com/v1/realtime`): the realtime model.
    pub openai_realtime_url: Url,
    /// `OPENAI_API_KEY`: the realtime model's key (a call without one gets the fallback).
    pub openai_api_key: Option<Secret>,
    /// `CHAOS_HOOKS` (default false): lets tests inject call-actor failures. Never in production.
    pub chaos_hooks: bool,
    /// `CALL_LIVE_WINDOW_SECONDS` (default 14400): unfinished calls older than this stop
    /// counting against concurrency limits (a lost final status callback cannot hold a slot).
    pub call_live_window: Duration,
    /// `OUTBOUND_ALLOW_PRIVATE` (default false): lets requests to tenant URLs (event
    /// webhooks, webhook tools) reach non-public addresses and plain `http://`. Development
    /// and tests only; `serve --sandbox` turns it on (its demo receivers are on loopback).
    pub outbound_allow_private: bool,
    /// `EVENT_WEBHOOK_MAX_ATTEMPTS` (default 8): attempts before a delivery is failed.
    pub event_webhook_max_attempts: u32,
    /// `EVENT_WEBHOOK_BACKOFF_MS` (default 1000): backoff base; the delay before attempt
    /// n+1 is random up to base·2^(n-1), capped at 10 minutes.
    pub event_webhook_backoff: Duration,
    /// `EVENT_WEBHOOK_TIMEOUT_MS` (default 10000): deadline of one delivery attempt.
    pub event_webhook_timeout: Duration,
    /// Evaluations and the LLM judge (`JUDGE_*`, `EVALUATION_*`).
    pub evaluation: EvaluationConfig,
    /// `NODE_ID`: this process's id in the cluster (letters, digits, `.`, `_`, `-`, `:`, `/`;
    /// at most 128). Default: `{hostname}/{bound address}`, stable across restarts of one
    /// configuration (and unique, since two processes cannot bind one address). Set it
    /// when `BIND_ADDR` has port 0 or the process moves between hosts. A restarted node
    /// reconciles the calls its earlier life left at once; two live processes must never
    /// share one id.
    pub node_id: Option<String>,
    /// `NODE_ADDRESS` (`host:port`): where the other nodes reach this one (recorded in
    /// `nodes`; a node asked `stream-ended` for a leg held here checks that this node is
    /// still up before waiting for it). Default: the bound address, or `{hostname}:{port}`
    /// when bound to every interface.
    pub node_address: Option<String>,
    /// `NODE_HEARTBEAT_MS` (default 5000): between two heartbeats of this node (and ticks
    /// of its reconciler).
    pub node_heartbeat: Duration,
    /// `LIVE_FEED_POLL_MS` (default 1000): the node's live-call feed reads the cluster's
    /// new events at least this often (it is woken sooner by this node's publisher and, on
    /// PostgreSQL, by `NOTIFY`).
    pub live_feed_poll: Duration,
    /// `LIVE_EVENTS_RETENTION_SECONDS` (default 900): live-call events are kept this long; an
    /// SSE client resuming from an older `Last-Event-ID` gets a fresh snapshot.
    pub live_events_retention: Duration,
    /// `TWILIO_LEG_RESUME_SECONDS` (default 30): a media socket lost without `stop` is
    /// answered at `stream-ended` with a fresh stream resuming the conversation, at most once
    /// per this many seconds per call; 0 ends the call instead.
    pub twilio_leg_resume: Option<Duration>,
    /// `AI_RECONNECT_SECONDS` (default 30): a model socket lost during a stream is
    /// reconnected with the conversation replayed, at most once per this many seconds per
    /// stream (lost again sooner, the caller gets the fallback); 0 never reconnects.
    pub ai_reconnect: Option<Duration>,
    /// `MEDIA_START_TIMEOUT_MS` (default 5000): how long a new media websocket has to send
    /// `start` (its stream token) before it is closed.
    pub media_start_timeout: Duration,
    /// `MEDIA_PENDING_MAX` (default 512): media websockets waiting for `start` at once on
    /// this node; more upgrades answer 429.
    pub media_pending_max: usize,
    /// `MEDIA_PENDING_PER_IP` (default 128): of those, from one client address.
    pub media_pending_per_ip: usize,
    /// `NODE_STALE_AFTER_MS` (default 30000, at least twice the heartbeat): a node whose
    /// heartbeat is older is lost, and its calls are reconciled by another node.
    pub node_stale_after: Duration,
    /// `READINESS_MIN_EVALUATED_CALLS` (default 20): evaluated calls a routed agent's version
    /// needs before the readiness review's evaluation gate passes.
    pub readiness_min_evaluated_calls: u32,
    /// `READINESS_MIN_PASS_PERCENT` (default 90, 1–100): the pass rate (in percent) those
    /// calls need.
    pub readiness_min_pass_percent: u32,
}

/// Settings of evaluations and of the LLM judge.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationConfig {
    /// `JUDGE_BASE_URL` (default `https://api.openai.com/v1`): an OpenAI-compatible API;
    /// the judge posts to `{base}/chat/completions`.
    pub judge_base_url: Url,
    /// `JUDGE_MODEL` (default `gpt-4o-mini`): the judge's model (it must support JSON-schema
    /// structured output).
    pub judge_model: String,
    /// `JUDGE_TIMEOUT_MS` (default 30000): deadline of one judge request.
    pub judge_timeout: Duration,
    /// `JUDGE_MAX_TRANSCRIPT_CHARS` (default 24000): transcript text sent to the judge;
    /// longer transcripts lose turns from the middle.
    pub judge_max_transcript_chars: usize,
    /// `JUDGE_SUMMARIES` (default true): ask the judge for the session's summary and tags
    /// even when the rubric has no `llm_judge` criterion.
    pub judge_summaries: bool,
    /// `EVALUATION_WORKERS` (default 2): evaluations run at once on this node.
    pub workers: usize,
    /// `EVALUATION_MAX_ATTEMPTS` (default 4): judge attempts before its criteria are `error`.
    pub max_attempts: u32,
    /// `EVALUATION_BACKOFF_MS` (default 2000): backoff base between attempts (random up to
    /// base·2^(n-1), capped at 10 minutes).
    pub backoff: Duration,
}

impl EvaluationConfig {
    /// The actor's settings; `api_key` is the judge's key when a tenant has none of its own
    /// (`OPENAI_API_KEY`).
    pub fn settings(&self, api_key: Option<&Secret>) -> actors::evaluation::EvaluationSettings {
        actors::evaluation::EvaluationSettings {
            workers: self.workers,
            max_attempts: self.max_attempts,
            backoff_base: self.backoff,
            tick: Duration::from_secs(1),
            judge: actors::evaluation::JudgeSettings {
                base_url: self
                    .judge_base_url
                    .as_str()
                    .trim_end_matches('/')
                    .to_owned(),
                model: self.judge_model.clone(),
                timeout: self.judge_timeout,
                max_transcript_chars: self.judge_max_transcript_chars,
                api_key: api_key.map(|k| k.expose().to_owned()),
                summaries: self.judge_summaries,
            },
        }
    }

    fn parse(raw: &RawSettings) -> Result<Self, ConfigError> {
        let judge_base_url = {
            let v = raw
                .get("JUDGE_BASE_URL")
                .unwrap_or("https://api.openai.com/v1");
            let url = Url::parse(v).map_err(|e| {
                ConfigError::new("JUDGE_BASE_URL", format!("`{v}` is not a URL: {e}"))
            })?;
            if !matches!(url.scheme(), "http" | "https")
                || url.host_str().is_none()
                || url.query().is_some()
            {
                return Err(ConfigError::new(
                    "JUDGE_BASE_URL",
                    "must be an absolute http:// or https:// URL without a query",
                ));
            }
            url
        };
        let judge_model = raw.get("JUDGE_MODEL").unwrap_or("gpt-4o-mini").to_owned();
        let judge_timeout = raw.positive("JUDGE_TIMEOUT_MS", 30_000)?.get();
        if !(100..=300_000).contains(&judge_timeout) {
            return Err(ConfigError::new(
                "JUDGE_TIMEOUT_MS",
                "must be between 100 and 300000",
            ));
        }
        let judge_max_transcript_chars = raw.positive("JUDGE_MAX_TRANSCRIPT_CHARS", 24_000)?.get();
        if !(1_000..=1_000_000).contains(&judge_max_transcript_chars) {
            return Err(ConfigError::new(
                "JUDGE_MAX_TRANSCRIPT_CHARS",
                "must be between 1000 and 1000000",
            ));
        }
        let workers = raw.positive("EVALUATION_WORKERS", 2)?.get();
        if workers > 64 {
            return Err(ConfigError::new(
                "EVALUATION_WORKERS",
                "must be between 1 and 64",
            ));
        }
        let max_attempts = raw.positive("EVALUATION_MAX_ATTEMPTS", 4)?.get();
        if max_attempts > 20 {
            return Err(ConfigError::new(
                "EVALUATION_MAX_ATTEMPTS",
                "must be between 1 and 20",
            ));
        }
        Ok(Self {
            judge_base_url,
            judge_model,
            judge_timeout: Duration::from_millis(u64::from(judge_timeout)),
            judge_max_transcript_chars: usize::try_from(judge_max_transcript_chars)
                .unwrap_or(usize::MAX),
            judge_summaries: raw.boolean("JUDGE_SUMMARIES", true)?,
            workers: usize::try_from(workers).unwrap_or(1),
            max_attempts,
            backoff: Duration::from_millis(u64::from(
                raw.positive("EVALUATION_BACKOFF_MS", 2000)?.get(),
            )),
        })
    }
}

/// Every setting the service reads, for the file loader and the README.
pub const SETTINGS: &[&str] = &[
    "BIND_ADDR",
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "ADMIN_API_KEY",
    "PUBLIC_BASE_URL",
    "MASTER_KEY",
    "STREAM_TOKEN_SECRET",
    "STREAM_TOKEN_SECRET_PREVIOUS",
    "RATE_LIMIT_PER_IP_PER_MINUTE",
    "RATE_LIMIT_PER_TENANT_PER_MINUTE",
    "CLIENT_IP_HEADER",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "SHUTDOWN_GRACE_SECONDS",
    "MAX_BODY_BYTES",
    "ACTOR_CALL_TIMEOUT_MS",
    "KEY_CACHE_TTL_SECONDS",
    "SUPERVISOR_MAX_RESTARTS",
    "SUPERVISOR_RESTART_WINDOW_SECONDS",
    "TWILIO_API_BASE_URL",
    "TWILIO_TIMEOUT_MS",
    "MAKE_CALL_WAIT_MS",
    "CARRIER_LOOKUP_INTERVAL_MS",
    "CARRIER_LOOKUP_GRACE_SECONDS",
    "STREAM_TOKEN_TTL_SECONDS",
    "RATE_LIMIT_WEBHOOKS_PER_TENANT_PER_MINUTE",
    "CALL_LIVE_WINDOW_SECONDS",
    "OPENAI_REALTIME_URL",
    "OPENAI_API_KEY",
    "CHAOS_HOOKS",
    "OUTBOUND_ALLOW_PRIVATE",
    "EVENT_WEBHOOK_MAX_ATTEMPTS",
    "EVENT_WEBHOOK_BACKOFF_MS",
    "EVENT_WEBHOOK_TIMEOUT_MS",
    "JUDGE_BASE_URL",
    "JUDGE_MODEL",
    "JUDGE_TIMEOUT_MS",
    "JUDGE_MAX_TRANSCRIPT_CHARS",
    "JUDGE_SUMMARIES",
    "EVALUATION_WORKERS",
    "EVALUATION_MAX_ATTEMPTS",
    "EVALUATION_BACKOFF_MS",
    "NODE_ID",
    "NODE_ADDRESS",
    "NODE_HEARTBEAT_MS",
    "NODE_STALE_AFTER_MS",
    "LIVE_FEED_POLL_MS",
    "LIVE_EVENTS_RETENTION_SECONDS",
    "TWILIO_LEG_RESUME_SECONDS",
    "AI_RECONNECT_SECONDS",
    "MEDIA_START_TIMEOUT_MS",
    "MEDIA_PENDING_MAX",
    "MEDIA_PENDING_PER_IP",
    "READINESS_MIN_EVALUATED_CALLS",
    "READINESS_MIN_PASS_PERCENT",
];

/// The raw setting values, before validation.
#[derive(Debug, Default, Clone)]
pub struct RawSettings(HashMap<&'static str, String>);

impl RawSettings {
    /// Reads the TOML file (if any), then overlays the environment as given by `env`.
    pub fn gather(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut values = HashMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new("--config", format!("cannot read {}: {e}", path.display()))
            })?;
            let table: toml::Table = text.parse().map_err(|e| {
                ConfigError::new(
                    "--config",
                    format!("{} is not valid TOML: {e}", path.display()),
                )
            })?;
            for (key, value) in table {
                let name = SETTINGS
                    .iter()
                    .find(|s| s.eq_ignore_ascii_case(&key))
                    .ok_or_else(|| {
                        ConfigError::new(&key, "unknown setting in the configuration file")
                    })?;
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    _ => {
                        return Err(ConfigError::new(
                            &key,
                            "must be a string, number or boolean",
                        ));
                    }
                };
                values.insert(*name, text);
            }
        }
        for name in SETTINGS {
            if let Some(v) = env(name) {
                values.insert(*name, v);
            }
        }
        Ok(Self(values))
    }

    /// Whether a setting has a (non-empty) value.
    pub fn is_set(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets one value (used by tests and the sandbox).
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) {
        self.0.insert(name, value.into());
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    fn parse_num<T: std::str::FromStr>(
        &self,
        name: &str,
        default: T,
        what: &str,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| ConfigError::new(name, format!("`{v}` is not {what}"))),
        }
    }

    fn positive(&self, name: &str, default: u32) -> Result<NonZeroU32, ConfigError> {
        let v: u32 = self.parse_num(name, default, "a positive integer")?;
        NonZeroU32::new(v).ok_or_else(|| ConfigError::new(name, "must be greater than zero"))
    }

    fn boolean(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(ConfigError::new(
                name,
                format!("`{other}` is not true or false"),
            )),
        }
    }

    fn secret(&self, name: &str, min_len: usize) -> Result<Option<Secret>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.chars().count() < min_len => Err(ConfigError::new(
                name,
                format!("must be at least {min_len} characters long"),
            )),
            Some(v) => Ok(Some(Secret::new(v))),
        }
    }
}

impl Config {
    /// Reads the process environment (and `file`) and validates it.
    pub fn from_env(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::parse(&RawSettings::gather(file, |k| std::env::var(k).ok())?)
    }

    /// Validates raw settings.
    pub fn parse(raw: &RawSettings) -> Result<Self, ConfigError> {
        let bind_addr: SocketAddr = match raw.get("BIND_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 5050)),
            Some(v) => v.parse().map_err(|_| {
                ConfigError::new(
                    "BIND_ADDR",
                    format!("`{v}` is not a socket address such as 127.0.0.1:5050"),
                )
            })?,
        };
        let database_url = raw
            .get("DATABASE_URL")
            .unwrap_or("sqlite://data/stateset-voice.db")
            .to_owned();
        let is_postgres =
            database_url.starts_with("postgres://") || database_url.starts_with("postgresql://");
        if !database_url.starts_with("sqlite:") && !is_postgres {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must start with sqlite:// or postgres:// (the backend is chosen by the scheme)",
            ));
        }
        let public_base_url = match raw.get("PUBLIC_BASE_URL") {
            None => Url::parse(&format!("http://{bind_addr}"))
                .map_err(|e| ConfigError::new("BIND_ADDR", e.to_string()))?,
            Some(v) => {
                let url = Url::parse(v).map_err(|e| {
                    ConfigError::new("PUBLIC_BASE_URL", format!("`{v}` is not a URL: {e}"))
                })?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(ConfigError::new(
                        "PUBLIC_BASE_URL",
                        "must be an absolute http:// or https:// URL",
                    ));
                }
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(ConfigError::new(
                        "PUBLIC_BASE_URL",
                        "must not carry a query or fragment",
                    ));
                }
                url
            }
        };
        let master_key = raw.secret("MASTER_KEY", 32)?;
        if is_postgres && master_key.is_none() {
            return Err(ConfigError::new(
                "MASTER_KEY",
                "is required with a PostgreSQL database (tenant secrets are encrypted with it)",
            ));
        }
        let log_format = match raw.get("LOG_FORMAT").unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("`{other}` is not `text` or `json`"),
                ));
            }
        };
        let log_level = raw.get("LOG_LEVEL").unwrap_or("info").to_owned();
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(ConfigError::new(
                "LOG_LEVEL",
                format!("`{log_level}` is not a valid filter directive"),
            ));
        }
        let client_ip_header = match raw.get("CLIENT_IP_HEADER") {
            None => None,
            Some(h) => Some(
                http::HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| {
                        ConfigError::new("CLIENT_IP_HEADER", format!("`{h}` is not a header name"))
                    })?
                    .as_str()
                    .to_owned(),
            ),
        };
        let max_body_bytes: u64 = raw.parse_num("MAX_BODY_BYTES", 65_536, "a number of bytes")?;
        if !(1024..=10 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(ConfigError::new(
                "MAX_BODY_BYTES",
                "must be between 1024 and 10485760",
            ));
        }
        let db_max: u32 = raw.parse_num("DATABASE_MAX_CONNECTIONS", 10, "a positive integer")?;
        if db_max == 0 {
            return Err(ConfigError::new(
                "DATABASE_MAX_CONNECTIONS",
                "must be greater than zero",
            ));
        }
        let twilio_api_base_url = {
            let v = raw
                .get("TWILIO_API_BASE_URL")
                .unwrap_or("https://api.twilio.com");
            let url = Url::parse(v).map_err(|e| {
                ConfigError::new("TWILIO_API_BASE_URL", format!("`{v}` is not a URL: {e}"))
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(ConfigError::new(
                    "TWILIO_API_BASE_URL",
                    "must be an absolute http:// or https:// URL",
                ));
            }
            url
        };
        let stream_token_ttl: u64 =
            raw.parse_num("STREAM_TOKEN_TTL_SECONDS", 300, "a number of seconds")?;
        if !(10..=3600).contains(&stream_token_ttl) {
            return Err(ConfigError::new(
                "STREAM_TOKEN_TTL_SECONDS",
                "must be between 10 and 3600",
            ));
        }
        let openai_realtime_url = {
            let v = raw
                .get("OPENAI_REALTIME_URL")
                .unwrap_or("wss://api.openai.com/v1/realtime");
            let url = Url::parse(v).map_err(|e| {
                ConfigError::new("OPENAI_REALTIME_URL", format!("`{v}` is not a URL: {e}"))
            })?;
            if !matches!(url.scheme(), "ws" | "wss") || url.host_str().is_none() {
                return Err(ConfigError::new(
                    "OPENAI_REALTIME_URL",
                    "must be an absolute ws:// or wss:// URL",
                ));
            }
            url
        };
        let chaos_hooks = raw.boolean("CHAOS_HOOKS", false)?;
        let event_webhook_max_attempts = raw.positive("EVENT_WEBHOOK_MAX_ATTEMPTS", 8)?.get();
        if event_webhook_max_attempts > 100 {
            return Err(ConfigError::new(
                "EVENT_WEBHOOK_MAX_ATTEMPTS",
                "must be between 1 and 100",
            ));
        }
        let event_webhook_timeout = raw.positive("EVENT_WEBHOOK_TIMEOUT_MS", 10_000)?.get();
        if event_webhook_timeout > 120_000 {
            return Err(ConfigError::new(
                "EVENT_WEBHOOK_TIMEOUT_MS",
                "must be between 1 and 120000",
            ));
        }
        let node_id = match raw.get("NODE_ID") {
            Some(id) => Some(
                actors::nodes::NodeId::parse(id)
                    .map_err(|problem| ConfigError::new("NODE_ID", problem))?
                    .as_str()
                    .to_owned(),
            ),
            None => None,
        };
        let node_address = match raw.get("NODE_ADDRESS") {
            Some(address) => Some(
                parse_host_port(address)
                    .map_err(|problem| ConfigError::new("NODE_ADDRESS", problem))?,
            ),
            None => None,
        };
        let node_heartbeat = raw.positive("NODE_HEARTBEAT_MS", 5_000)?.get();
        let node_stale_after = raw.positive("NODE_STALE_AFTER_MS", 30_000)?.get();
        if node_stale_after < node_heartbeat.saturating_mul(2) {
            return Err(ConfigError::new(
                "NODE_STALE_AFTER_MS",
                "must be at least twice NODE_HEARTBEAT_MS",
            ));
        }
        let live_feed_poll = raw.positive("LIVE_FEED_POLL_MS", 1_000)?.get();
        let live_events_retention = raw.positive("LIVE_EVENTS_RETENTION_SECONDS", 900)?.get();
        let media_start_timeout = raw.positive("MEDIA_START_TIMEOUT_MS", 5_000)?.get();
        if !(100..=60_000).contains(&media_start_timeout) {
            return Err(ConfigError::new(
                "MEDIA_START_TIMEOUT_MS",
                "must be between 100 and 60000",
            ));
        }
        let media_pending_max = raw.positive("MEDIA_PENDING_MAX", 512)?.get();
        let media_pending_per_ip = raw.positive("MEDIA_PENDING_PER_IP", 128)?.get();
        if media_pending_per_ip > media_pending_max {
            return Err(ConfigError::new(
                "MEDIA_PENDING_PER_IP",
                "must not exceed MEDIA_PENDING_MAX",
            ));
        }
        let twilio_leg_resume: u64 =
            raw.parse_num("TWILIO_LEG_RESUME_SECONDS", 30, "a number of seconds")?;
        let ai_reconnect: u64 = raw.parse_num("AI_RECONNECT_SECONDS", 30, "a number of seconds")?;
        let readiness_min_pass_percent = raw.positive("READINESS_MIN_PASS_PERCENT", 90)?.get();
        if readiness_min_pass_percent > 100 {
            return Err(ConfigError::new(
                "READINESS_MIN_PASS_PERCENT",
                "must be between 1 and 100",
            ));
        }
        Ok(Config {
            twilio_leg_resume: (twilio_leg_resume > 0)
                .then(|| Duration::from_secs(twilio_leg_resume)),
            ai_reconnect: (ai_reconnect > 0).then(|| Duration::from_secs(ai_reconnect)),
            media_start_timeout: Duration::from_millis(u64::from(media_start_timeout)),
            media_pending_max: usize::try_from(media_pending_max).unwrap_or(usize::MAX),
            media_pending_per_ip: usize::try_from(media_pending_per_ip).unwrap_or(usize::MAX),
            node_id,
            node_address,
            node_heartbeat: Duration::from_millis(u64::from(node_heartbeat)),
            node_stale_after: Duration::from_millis(u64::from(node_stale_after)),
            live_feed_poll: Duration::from_millis(u64::from(live_feed_poll)),
            live_events_retention: Duration::from_secs(u64::from(live_events_retention)),
            evaluation: EvaluationConfig::parse(raw)?,
            readiness_min_evaluated_calls: raw.positive("READINESS_MIN_EVALUATED_CALLS", 20)?.get(),
            readiness_min_pass_percent,
            outbound_allow_private: raw.boolean("OUTBOUND_ALLOW_PRIVATE", false)?,
            event_webhook_max_attempts,
            event_webhook_backoff: Duration::from_millis(u64::from(
                raw.positive("EVENT_WEBHOOK_BACKOFF_MS", 1000)?.get(),
            )),
            event_webhook_timeout: Duration::from_millis(u64::from(event_webhook_timeout)),
            openai_realtime_url,
            openai_api_key: raw.secret("OPENAI_API_KEY", 1)?,
            chaos_hooks,
            public_base_url_explicit: raw.get("PUBLIC_BASE_URL").is_some(),
            twilio_api_base_url,
            twilio_timeout: Duration::from_millis(u64::from(
                raw.positive("TWILIO_TIMEOUT_MS", 10_000)?.get(),
            )),
            make_call_wait: Duration::from_millis(u64::from(
                raw.positive("MAKE_CALL_WAIT_MS", 5_000)?.get(),
            )),
            carrier_lookup_interval: Duration::from_millis(u64::from(
                raw.positive("CARRIER_LOOKUP_INTERVAL_MS", 5_000)?.get(),
            )),
            carrier_lookup_grace: Duration::from_secs(u64::from(
                raw.positive("CARRIER_LOOKUP_GRACE_SECONDS", 120)?.get(),
            )),
            stream_token_ttl: Duration::from_secs(stream_token_ttl),
            rate_limit_webhooks_per_tenant_per_minute: raw
                .positive("RATE_LIMIT_WEBHOOKS_PER_TENANT_PER_MINUTE", 6000)?,
            call_live_window: Duration::from_secs(u64::from(
                raw.positive("CALL_LIVE_WINDOW_SECONDS", 14_400)?.get(),
            )),
            bind_addr,
            database_url: Secret::new(database_url),
            database_max_connections: db_max,
            admin_api_key: raw.secret("ADMIN_API_KEY", 16)?,
            public_base_url,
            master_key,
            stream_token_secret: raw.secret("STREAM_TOKEN_SECRET", 32)?,
            stream_token_secret_previous: raw.secret("STREAM_TOKEN_SECRET_PREVIOUS", 32)?,
            rate_limit_per_ip_per_minute: raw.positive("RATE_LIMIT_PER_IP_PER_MINUTE", 60)?,
            rate_limit_per_tenant_per_minute: raw
                .positive("RATE_LIMIT_PER_TENANT_PER_MINUTE", 1000)?,
            client_ip_header,
            log_format,
            log_level,
            shutdown_grace: Duration::from_secs(raw.parse_num(
                "SHUTDOWN_GRACE_SECONDS",
                30,
                "a number of seconds",
            )?),
            max_body_bytes,
            actor_call_timeout: Duration::from_millis(u64::from(
                raw.positive("ACTOR_CALL_TIMEOUT_MS", 5000)?.get(),
            )),
            key_cache_ttl: Duration::from_secs(raw.parse_num(
                "KEY_CACHE_TTL_SECONDS",
                30,
                "a number of seconds",
            )?),
            supervisor_max_restarts: raw.parse_num(
                "SUPERVISOR_MAX_RESTARTS",
                5,
                "a non-negative integer",
            )?,
            supervisor_restart_window: Duration::from_secs(u64::from(
                raw.positive("SUPERVISOR_RESTART_WINDOW_SECONDS", 60)?.get(),
            )),
        })
    }

    /// The database URL with any password removed, for logs.
    pub fn database_display(&self) -> String {
        let url = self.database_url.expose();
        match Url::parse(url) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("****"));
                u.to_string()
            }
            _ => url.to_owned(),
        }
    }

    /// Path of the SQLite database file, if the backend is a SQLite file.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let url = self.database_url.expose();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && !path.starts_with(":memory:")).then(|| PathBuf::from(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&'static str, &str)]) -> Result<Config, ConfigError> {
        let mut raw = RawSettings::default();
        for (k, v) in pairs {
            raw.set(k, *v);
        }
        Config::parse(&raw)
    }

    #[test]
    fn defaults_need_no_configuration() {
        let c = parse(&[]).expect("defaults");
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:5050");
        assert_eq!(c.public_base_url.as_str(), "http://127.0.0.1:5050/");
        assert!(c.admin_api_key.is_none());
        assert_eq!(
            c.sqlite_path(),
            Some(PathBuf::from("data/stateset-voice.db"))
        );
        assert_eq!(c.rate_limit_per_ip_per_minute.get(), 60);
        assert_eq!(c.rate_limit_per_tenant_per_minute.get(), 1000);
        assert!(
            !c.outbound_allow_private,
            "SSRF protection is on by default"
        );
        assert_eq!(c.event_webhook_max_attempts, 8);
        assert_eq!(c.event_webhook_backoff, Duration::from_secs(1));
        assert_eq!(c.event_webhook_timeout, Duration::from_secs(10));
        let e = &c.evaluation;
        assert_eq!(e.judge_base_url.as_str(), "https://api.openai.com/v1");
        assert_eq!(e.judge_model, "gpt-4o-mini");
        assert_eq!(e.judge_timeout, Duration::from_secs(30));
        assert_eq!(e.judge_max_transcript_chars, 24_000);
        assert!(e.judge_summaries);
        assert_eq!((e.workers, e.max_attempts), (2, 4));
        assert_eq!(e.backoff, Duration::from_secs(2));
    }

    #[test]
    fn evaluation_settings_reach_the_actor() {
        let c = parse(&[
            ("JUDGE_BASE_URL", "http://127.0.0.1:5071/v1/"),
            ("JUDGE_MODEL", "judge-x"),
            ("JUDGE_TIMEOUT_MS", "1500"),
            ("JUDGE_MAX_TRANSCRIPT_CHARS", "5000"),
            ("JUDGE_SUMMARIES", "false"),
            ("EVALUATION_WORKERS", "8"),
            ("EVALUATION_MAX_ATTEMPTS", "3"),
            ("EVALUATION_BACKOFF_MS", "250"),
        ])
        .expect("valid");
        let key = Secret::new("sk-service");
        let s = c.evaluation.settings(Some(&key));
        assert_eq!(s.judge.base_url, "http://127.0.0.1:5071/v1");
        assert_eq!(s.judge.model, "judge-x");
        assert_eq!(s.judge.timeout, Duration::from_millis(1500));
        assert_eq!(s.judge.max_transcript_chars, 5000);
        assert!(!s.judge.summaries);
        assert_eq!(s.judge.api_key.as_deref(), Some("sk-service"));
        assert_eq!((s.workers, s.max_attempts), (8, 3));
        assert_eq!(s.backoff_base, Duration::from_millis(250));
        assert!(!format!("{s:?}").contains("sk-service"));
    }

    #[test]
    fn errors_name_the_setting() {
        for (pairs, setting) in [
            (vec![("BIND_ADDR", "nope")], "BIND_ADDR"),
            (vec![("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
            (
                vec![("DATABASE_URL", "postgres://localhost/db")],
                "MASTER_KEY",
            ),
            (vec![("ADMIN_API_KEY", "short")], "ADMIN_API_KEY"),
            (vec![("MASTER_KEY", "short")], "MASTER_KEY"),
            (vec![("PUBLIC_BASE_URL", "ftp://x")], "PUBLIC_BASE_URL"),
            (vec![("LOG_FORMAT", "xml")], "LOG_FORMAT"),
            (
                vec![("RATE_LIMIT_PER_IP_PER_MINUTE", "0")],
                "RATE_LIMIT_PER_IP_PER_MINUTE",
            ),
            (
                vec![("RATE_LIMIT_PER_TENANT_PER_MINUTE", "lots")],
                "RATE_LIMIT_PER_TENANT_PER_MINUTE",
            ),
            (vec![("MAX_BODY_BYTES", "10")], "MAX_BODY_BYTES"),
            (
                vec![("OUTBOUND_ALLOW_PRIVATE", "maybe")],
                "OUTBOUND_ALLOW_PRIVATE",
            ),
            (
                vec![("EVENT_WEBHOOK_MAX_ATTEMPTS", "0")],
                "EVENT_WEBHOOK_MAX_ATTEMPTS",
            ),
            (
                vec![("EVENT_WEBHOOK_BACKOFF_MS", "soon")],
                "EVENT_WEBHOOK_BACKOFF_MS",
            ),
            (
                vec![("EVENT_WEBHOOK_TIMEOUT_MS", "999999")],
                "EVENT_WEBHOOK_TIMEOUT_MS",
            ),
            (vec![("JUDGE_BASE_URL", "ftp://judge")], "JUDGE_BASE_URL"),
            (vec![("JUDGE_TIMEOUT_MS", "50")], "JUDGE_TIMEOUT_MS"),
            (
                vec![("JUDGE_MAX_TRANSCRIPT_CHARS", "10")],
                "JUDGE_MAX_TRANSCRIPT_CHARS",
            ),
            (vec![("JUDGE_SUMMARIES", "sometimes")], "JUDGE_SUMMARIES"),
            (vec![("EVALUATION_WORKERS", "0")], "EVALUATION_WORKERS"),
            (vec![("EVALUATION_WORKERS", "65")], "EVALUATION_WORKERS"),
            (
                vec![("EVALUATION_MAX_ATTEMPTS", "21")],
                "EVALUATION_MAX_ATTEMPTS",
            ),
            (
                vec![("EVALUATION_BACKOFF_MS", "-1")],
                "EVALUATION_BACKOFF_MS",
            ),
        ] {
            let err = parse(&pairs).expect_err("must fail");
            assert_eq!(err.setting, setting, "{err}");
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let c = parse(&[
            ("ADMIN_API_KEY", "admin-key-0123456789"),
            ("DATABASE_URL", "postgres://u:hunter2hunter2@db/x"),
            ("MASTER_KEY", "0123456789abcdef0123456789abcdef"),
        ])
        .expect("valid");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("admin-key-0123456789"));
        assert!(!dbg.contains("hunter2"));
        assert!(!dbg.contains("0123456789abcdef0123456789abcdef"));
        assert!(!c.database_display().contains("hunter2"));
        assert!(
            c.admin_api_key
                .as_ref()
                .is_some_and(|k| k.matches("admin-key-0123456789"))
        );
    }

    #[test]
    fn file_values_are_overridden_by_the_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "bind_addr = \"127.0.0.1:7000\"\nrate_limit_per_ip_per_minute = 5\n",
        )
        .expect("write");
        let raw = RawSettings::gather(Some(&path), |k| {
            (k == "BIND_ADDR").then(|| "127.0.0.1:7001".to_owned())
        })
        .expect("gather");
        let c = Config::parse(&raw).expect("parse");
        assert_eq!(c.bind_addr.port(), 7001);
        assert_eq!(c.rate_limit_per_ip_per_minute.get(), 5);
        std::fs::write(&path, "no_such_setting = 1\n").expect("write");
        let err = RawSettings::gather(Some(&path), |_| None).expect_err("unknown key");
        assert_eq!(err.setting, "no_such_setting");
    }
}

/// A `host:port` other processes can connect to (a name, an IPv4 address, or a bracketed
/// IPv6 address, and a port from 1 to 65535).
fn parse_host_port(value: &str) -> Result<String, String> {
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| String::from("must be host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| String::from("must end with a port number"))?;
    if port == 0 {
        return Err(String::from("needs a port other than 0"));
    }
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if !host_ok {
        return Err(String::from("needs a host name or address before the port"));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod node_address_tests {
    use super::parse_host_port;

    #[test]
    fn host_port_takes_names_and_addresses_with_a_port() {
        for ok in [
            "node1:5050",
            "10.0.0.7:5151",
            "[::1]:5050",
            "svc.cluster.local:80",
        ] {
            assert_eq!(parse_host_port(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "node1",
            "node1:",
            ":5050",
            "node1:0",
            "node1:99999",
            "a b:1",
            "::1:5050",
        ] {
            assert!(parse_host_port(bad).is_err(), "{bad}");
        }
    }
}
