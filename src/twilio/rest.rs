//! Twilio REST client (docs/PROTOCOLS.md §3.4–§3.7, §6): create a call, update a live call,
//! read a call, list calls (to find one created by a request whose answer never arrived),
//! send an SMS, read the account (the credential check), and the error model that maps
//! Twilio's answers onto ours.
//!
//! Requests are `application/x-www-form-urlencoded` with PascalCase keys (repeated keys for
//! arrays), authenticated with HTTP Basic (Account SID, Auth Token), and answered with JSON.
//! The base URL is configurable so tests and the carrier simulator can stand in for
//! `https://api.twilio.com`. Redirects are never followed.
//!
//! Secrets stay out of logs and errors: the Auth Token travels only in the (sensitive)
//! `Authorization` header, [`TwilioAuth`]'s `Debug` redacts it, inline TwiML (which may carry
//! per-call stream tokens) is elided from `Debug`, and transport errors are rendered without
//! the request URL. Each request is logged at `debug` with method, path, status and Twilio
//! error code.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

/// Production base URL of the Twilio REST API.
pub const TWILIO_API_BASE: &str = "https://api.twilio.com";

/// API version path segment (§3.4).
const API_VERSION: &str = "2010-04-01";

/// Maximum length, in characters, of inline TwiML accepted by Twilio (§3.5).
pub const MAX_TWIML_CHARS: usize = 4000;

/// Upper bound on the connect timeout, whatever the request timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response body read; Twilio's resources are a few KiB.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Characters of a non-JSON error body kept in [`TwilioError::Api`].
const MAX_ERROR_TEXT_CHARS: usize = 200;

/// Twilio error code: the call is not in progress, it cannot be redirected.
pub const CODE_CALL_NOT_IN_PROGRESS: i64 = 21220;
/// Twilio error code: the requested resource was not found.
pub const CODE_NOT_FOUND: i64 = 20404;
/// Twilio error code: authentication failure.
pub const CODE_AUTH_FAILED: i64 = 20003;
/// Twilio error code: too many requests.
pub const CODE_TOO_MANY_REQUESTS: i64 = 20429;

/// Everything that can go wrong talking to Twilio.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwilioError {
    /// Twilio (or whatever answered at the base URL) returned a non-2xx status.
    #[error("twilio api error {status}{}: {message}", fmt_code(.code))]
    Api {
        /// HTTP status of the response.
        status: u16,
        /// Twilio error code (`code` of either error shape, §3.7).
        code: Option<i64>,
        /// `message` (legacy) or `detail`/`title` (RFC 9457), else the truncated body text.
        message: String,
        /// Documentation URL: `more_info` (legacy) or `type` (RFC 9457).
        more_info: Option<String>,
    },
    /// No complete answer within the client timeout (connect or whole request).
    #[error("twilio request timed out")]
    Timeout,
    /// The connection could not be made or broke (refused, reset, DNS, TLS).
    #[error("twilio unreachable: {0}")]
    Network(String),
    /// A 2xx answer whose body is not the expected resource.
    #[error("cannot decode twilio response: {0}")]
    Decode(String),
    /// Inline TwiML over [`MAX_TWIML_CHARS`]; rejected before anything is sent.
    #[error("inline twiml is {len} characters, over the {MAX_TWIML_CHARS} limit")]
    TwimlTooLong {
        /// Length of the TwiML, in characters.
        len: usize,
    },
    /// The configured base URL (or the HTTP client built from it) is unusable.
    #[error("invalid twilio base url: {0}")]
    InvalidBase(String),
}

fn fmt_code(code: &Option<i64>) -> String {
    code.map(|c| format!(" (code {c})")).unwrap_or_default()
}

impl TwilioError {
    /// The Twilio error code, for [`TwilioError::Api`] errors that carry one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Api { code, .. } => *code,
            _ => None,
        }
    }

    /// Whether this error (from [`TwilioClient::update_call`]) means the call is already
    /// over: Twilio code 21220 (call not in progress) or 20404 (no such call). Callers
    /// hanging up or redirecting a call treat it as "already gone", not as a failure.
    pub fn is_call_already_ended(&self) -> bool {
        matches!(
            self.code(),
            Some(CODE_CALL_NOT_IN_PROGRESS | CODE_NOT_FOUND)
        )
    }
}

/// The HTTP status our API should answer with when a Twilio call fails with `err`.
///
/// | carrier error | our status | why |
/// |---|---|---|
/// | code 21211 (invalid `To`), 21212 (invalid `From`), 21214 (`To` not reachable), 13224 (invalid number), 21217 (`To` not valid) | 400 | the caller's input is at fault |
/// | code 20003 (authentication failure) | 502 | our stored credentials are wrong: a gateway problem, not the caller's |
/// | code 20429, or HTTP 429 | 503 | carrier rate limit: retry later |
/// | any other 4xx | 502 | the carrier refused a request we built |
/// | 5xx (and any other non-2xx) | 502 | the carrier failed |
/// | [`TwilioError::Timeout`] | 504 | the carrier did not answer in time |
/// | [`TwilioError::Network`] | 502 | the carrier could not be reached |
/// | [`TwilioError::Decode`] | 502 | the carrier answered nonsense |
/// | [`TwilioError::TwimlTooLong`] | 500 | we generated TwiML that is too long |
/// | [`TwilioError::InvalidBase`] | 500 | our configuration is wrong |
pub fn suggested_status(err: &TwilioError) -> u16 {
    match err {
        TwilioError::Api { status, code, .. } => match code {
            Some(21211 | 21212 | 21214 | 13224 | 21217) => 400,
            Some(CODE_AUTH_FAILED) => 502,
            Some(CODE_TOO_MANY_REQUESTS) => 503,
            _ if *status == 429 => 503,
            _ => 502,
        },
        TwilioError::Timeout => 504,
        TwilioError::Network(_) | TwilioError::Decode(_) => 502,
        TwilioError::TwimlTooLong { .. } | TwilioError::InvalidBase(_) => 500,
    }
}

/// Credentials for one Twilio account: HTTP Basic username (Account SID) and password
/// (Auth Token). `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct TwilioAuth {
    /// `AC…`; also the account in the request path.
    pub account_sid: String,
    /// The Auth Token. Secret.
    pub auth_token: String,
}

impl fmt::Debug for TwilioAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioAuth")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .finish()
    }
}

/// A call-progress event to be notified of at `StatusCallback` (§3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallEvent {
    /// Dialing started.
    Initiated,
    /// The callee is ringing.
    Ringing,
    /// The callee answered.
    Answered,
    /// The call ended (any final status).
    Completed,
}

impl CallEvent {
    /// The wire value (`initiated`, `ringing`, `answered`, `completed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initiated => "initiated",
            Self::Ringing => "ringing",
            Self::Answered => "answered",
            Self::Completed => "completed",
        }
    }
}

/// Answering Machine Detection mode (§6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AmdMode {
    /// Result as soon as the callee type is known.
    Enable,
    /// Wait for the end of a machine greeting (to leave a voicemail).
    DetectMessageEnd,
}

impl AmdMode {
    /// The wire value (`Enable`, `DetectMessageEnd`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enable => "Enable",
            Self::DetectMessageEnd => "DetectMessageEnd",
        }
    }
}

/// Answering Machine Detection settings of an outbound call (§6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineDetection {
    /// `MachineDetection`.
    pub mode: AmdMode,
    /// When set, asynchronous AMD: `AsyncAmd=true`, the result POSTed to this URL
    /// (`AsyncAmdStatusCallback`). When `None`, synchronous AMD.
    pub async_callback: Option<String>,
    /// `MachineDetectionTimeout`: seconds to decide (default 30; on timeout `unknown`).
    pub timeout_secs: Option<u32>,
}

/// Parameters of an outbound call with inline TwiML (§3.5).
#[derive(Clone, PartialEq, Eq)]
pub struct CreateCall {
    /// Callee: E.164, `sip:…` or `client:…`.
    pub to: String,
    /// Caller ID: a Twilio number or verified caller ID.
    pub from: String,
    /// Inline TwiML run when the call connects; at most [`MAX_TWIML_CHARS`] characters.
    /// Not sent when [`CreateCall::url`] is set.
    pub twiml: String,
    /// `Url`: where Twilio fetches the call's TwiML when it connects (instead of `twiml`).
    pub url: Option<String>,
    /// `StatusCallback` URL, requested with `POST`.
    pub status_callback: Option<String>,
    /// `StatusCallbackEvent`s, sent as repeated keys. Only sent with a `status_callback`
    /// (Twilio ignores them otherwise); when empty Twilio notifies `completed` only.
    pub status_callback_events: Vec<CallEvent>,
    /// Answering Machine Detection.
    pub machine_detection: Option<MachineDetection>,
    /// `Timeout`: seconds to let the callee ring (Twilio default 60, max 600).
    pub timeout_secs: Option<u32>,
    /// `TimeLimit`: maximum call duration, seconds.
    pub time_limit_secs: Option<u32>,
}

impl CreateCall {
    /// A call from `from` to `to` running `twiml`, with no callbacks, AMD or limits.
    pub fn new(to: impl Into<String>, from: impl Into<String>, twiml: impl Into<String>) -> Self {
        Self {
            to: to.into(),
            from: from.into(),
            twiml: twiml.into(),
            url: None,
            status_callback: None,
            status_callback_events: Vec::new(),
            machine_detection: None,
            timeout_secs: None,
            time_limit_secs: None,
        }
    }

    /// The form body, in order; `StatusCallbackEvent` repeated once per event.
    fn form(&self) -> Vec<(&'static str, String)> {
        let mut form = vec![("To", self.to.clone()), ("From", self.from.clone())];
        match &self.url {
            Some(url) => {
                form.push(("Url", url.clone()));
                form.push(("Method", "POST".to_owned()));
            }
            None => form.push(("Twiml", self.twiml.clone())),
        }
        if let Some(callback) = &self.status_callback {
            form.push(("StatusCallback", callback.clone()));
            form.push(("StatusCallbackMethod", "POST".to_owned()));
            for event in &self.status_callback_events {
                form.push(("StatusCallbackEvent", event.as_str().to_owned()));
            }
        }
        if let Some(amd) = &self.machine_detection {
            form.push(("MachineDetection", amd.mode.as_str().to_owned()));
            if let Some(callback) = &amd.async_callback {
                form.push(("AsyncAmd", "true".to_owned()));
                form.push(("AsyncAmdStatusCallback", callback.clone()));
                form.push(("AsyncAmdStatusCallbackMethod", "POST".to_owned()));
            }
            if let Some(secs) = amd.timeout_secs {
                form.push(("MachineDetectionTimeout", secs.to_string()));
            }
        }
        if let Some(secs) = self.timeout_secs {
            form.push(("Timeout", secs.to_string()));
        }
        if let Some(secs) = self.time_limit_secs {
            form.push(("TimeLimit", secs.to_string()));
        }
        form
    }
}

/// Elides the TwiML, which may carry per-call stream tokens.
impl fmt::Debug for CreateCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateCall")
            .field("to", &self.to)
            .field("from", &self.from)
            .field("twiml", &TwimlLen(&self.twiml))
            .field("url", &self.url)
            .field("status_callback", &self.status_callback)
            .field("status_callback_events", &self.status_callback_events)
            .field("machine_detection", &self.machine_detection)
            .field("timeout_secs", &self.timeout_secs)
            .field("time_limit_secs", &self.time_limit_secs)
            .finish()
    }
}

/// A change to a live call (§3.6).
#[derive(Clone, PartialEq, Eq)]
pub enum CallUpdate {
    /// Stop the current TwiML and run this instead (`Twiml=…`): transfer, forced hang-up…
    Twiml(String),
    /// Hang up, whatever the state (`Status=completed`).
    Complete,
    /// Cancel a call still queued or ringing (`Status=canceled`).
    Cancel,
}

impl CallUpdate {
    fn form(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Twiml(twiml) => vec![("Twiml", twiml.clone())],
            Self::Complete => vec![("Status", "completed".to_owned())],
            Self::Cancel => vec![("Status", "canceled".to_owned())],
        }
    }
}

/// Elides the TwiML, which may carry per-call stream tokens.
impl fmt::Debug for CallUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Twiml(twiml) => f.debug_tuple("Twiml").field(&TwimlLen(twiml)).finish(),
            Self::Complete => f.write_str("Complete"),
            Self::Cancel => f.write_str("Cancel"),
        }
    }
}

/// `Debug` stand-in for TwiML: its length only.
struct TwimlLen<'a>(&'a str);

impl fmt::Debug for TwimlLen<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} chars>", self.0.chars().count())
    }
}

/// The fields of Twilio's Call resource this project uses (§3.5); others are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallResource {
    /// `CA…`.
    pub sid: String,
    /// §3.2; `queued` right after creation.
    pub status: String,
    /// Callee.
    pub to: String,
    /// Caller.
    pub from: String,
    /// `outbound-api` for REST-created calls.
    #[serde(default)]
    pub direction: Option<String>,
    /// `AC…`.
    pub account_sid: String,
    /// Seconds, as a string, once the call ended.
    #[serde(default)]
    pub duration: Option<String>,
    /// AMD result, when requested.
    #[serde(default)]
    pub answered_by: Option<String>,
    /// When the carrier created the call (RFC 2822).
    #[serde(default)]
    pub date_created: Option<String>,
}

impl CallResource {
    /// `date_created` as Unix milliseconds.
    pub fn created_at_ms(&self) -> Option<i64> {
        self.date_created
            .as_deref()
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
            .map(|d| d.timestamp_millis())
    }
}

/// One page of `GET Calls.json` (§3.6b).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallPage {
    /// The calls of this page, newest first.
    pub calls: Vec<CallResource>,
    /// The next page, if any.
    #[serde(default)]
    pub next_page_uri: Option<String>,
}

/// Filters of `GET Calls.json` (§3.6b).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCalls {
    /// `To`.
    pub to: Option<String>,
    /// `From`.
    pub from: Option<String>,
    /// `StartTime>=`: a UTC day (`YYYY-MM-DD`); filter the page by `date_created` yourself.
    pub start_time_from: Option<chrono::NaiveDate>,
    /// `PageSize` (Twilio's default 50).
    pub page_size: u32,
}

impl ListCalls {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(to) = &self.to {
            q.push(("To", to.clone()));
        }
        if let Some(from) = &self.from {
            q.push(("From", from.clone()));
        }
        if let Some(day) = self.start_time_from {
            q.push(("StartTime>=", day.format("%Y-%m-%d").to_string()));
        }
        q.push(("PageSize", self.page_size.to_string()));
        q
    }
}

/// The fields of Twilio's Message resource this project uses; others are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MessageResource {
    /// `SM…`.
    pub sid: String,
    /// `queued`, `sent`, `delivered`, `failed`…
    pub status: String,
    /// Recipient.
    pub to: String,
    /// Sender.
    pub from: String,
}

/// The fields of Twilio's Account resource this project uses; others are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccountResource {
    /// `AC…`.
    pub sid: String,
    /// The account's name.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// `active`, `suspended` or `closed`.
    pub status: String,
}

// --- recording (issue 16, part 1) ---

/// The fields of Twilio's Recording resource this project uses; others are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordingResource {
    /// `RE…`.
    pub sid: String,
    /// `CA…`.
    pub call_sid: String,
    /// `in-progress`, `paused`, `stopped`, `processing`, `completed`, `absent`.
    pub status: String,
    /// 1 or 2.
    #[serde(default)]
    pub channels: Option<i64>,
    /// When recording started (RFC 2822).
    #[serde(default)]
    pub start_time: Option<String>,
}

/// Parameters of `POST Calls/{CallSid}/Recordings.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRecording {
    /// `RecordingChannels`: `mono` or `dual`.
    pub channels: String,
    /// `RecordingStatusCallback` (requested with `POST`).
    pub status_callback: String,
    /// `RecordingStatusCallbackEvent`, space-separated on the wire.
    pub status_callback_events: Vec<String>,
}

impl CreateRecording {
    fn form(&self) -> Vec<(&'static str, String)> {
        vec![
            ("RecordingChannels", self.channels.clone()),
            ("RecordingStatusCallback", self.status_callback.clone()),
            ("RecordingStatusCallbackMethod", "POST".to_owned()),
            (
                "RecordingStatusCallbackEvent",
                self.status_callback_events.join(" "),
            ),
        ]
    }
}

/// A recording's media as answered: status, the headers passed on, the open response.
#[derive(Debug)]
pub struct MediaResponse {
    /// 200, 206 or 416.
    pub status: u16,
    /// `Content-Type`, `Content-Length`, `Content-Range`, `Accept-Ranges` as received.
    pub headers: reqwest::header::HeaderMap,
    /// The response, its body not yet read.
    pub response: reqwest::Response,
}

/// Client of the Twilio REST API. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    base_url: Url,
}

impl TwilioClient {
    /// A client for the API at `base_url` ([`TWILIO_API_BASE`] in production; a local
    /// `http://127.0.0.1:port` in tests), with `timeout` for the whole request (and for the
    /// connection, capped at 10 s). Redirects are not followed; the user agent is
    /// `stateset-voice/<version>`.
    ///
    /// `base_url` must be `http` or `https`, have a host, and carry no credentials, query or
    /// fragment; a path prefix is kept. A rustls crypto provider must be installed
    /// (`crate::startup::install_crypto_provider`) before the first client is built.
    pub fn new(base_url: Url, timeout: Duration) -> Result<Self, TwilioError> {
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(TwilioError::InvalidBase(format!(
                "unsupported scheme {:?}",
                base_url.scheme()
            )));
        }
        if base_url.host().is_none() || base_url.cannot_be_a_base() {
            return Err(TwilioError::InvalidBase("no host".to_owned()));
        }
        if !base_url.username().is_empty() || base_url.password().is_some() {
            return Err(TwilioError::InvalidBase(
                "credentials in the url are not allowed".to_owned(),
            ));
        }
        if base_url.query().is_some() || base_url.fragment().is_some() {
            return Err(TwilioError::InvalidBase(
                "query or fragment not allowed".to_owned(),
            ));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("stateset-voice/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
            .timeout(timeout)
            .build()
            .map_err(|e| TwilioError::InvalidBase(format!("cannot build http client: {e}")))?;
        Ok(Self { http, base_url })
    }

    /// The base URL requests are sent to.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// Places an outbound call running inline TwiML:
    /// `POST /2010-04-01/Accounts/{AccountSid}/Calls.json` (§3.5). Fails with
    /// [`TwilioError::TwimlTooLong`], without sending anything, when the TwiML is over
    /// [`MAX_TWIML_CHARS`] characters.
    pub async fn create_call(
        &self,
        auth: &TwilioAuth,
        req: &CreateCall,
    ) -> Result<CallResource, TwilioError> {
        check_twiml(&req.twiml)?;
        self.post_form(auth, &["Calls.json"], &req.form()).await
    }

    /// Changes a live call: `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`
    /// with `Twiml=…`, `Status=completed` or `Status=canceled` (§3.6). A call that already
    /// ended yields an error for which [`TwilioError::is_call_already_ended`] is true.
    pub async fn update_call(
        &self,
        auth: &TwilioAuth,
        call_sid: &str,
        update: &CallUpdate,
    ) -> Result<CallResource, TwilioError> {
        if let CallUpdate::Twiml(twiml) = update {
            check_twiml(twiml)?;
        }
        let resource = format!("{call_sid}.json");
        self.post_form(auth, &["Calls", &resource], &update.form())
            .await
    }

    /// Reads a call: `GET /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` (§3.6b).
    /// An unknown SID is [`TwilioError::Api`] with code 20404.
    pub async fn fetch_call(
        &self,
        auth: &TwilioAuth,
        call_sid: &str,
    ) -> Result<CallResource, TwilioError> {
        let resource = format!("{call_sid}.json");
        self.get_json(auth, &["Calls", &resource], &[]).await
    }

    /// Lists calls: `GET /2010-04-01/Accounts/{AccountSid}/Calls.json` with the filters of
    /// `list` (§3.6b); the first page only.
    pub async fn list_calls(
        &self,
        auth: &TwilioAuth,
        list: &ListCalls,
    ) -> Result<CallPage, TwilioError> {
        self.get_json(auth, &["Calls.json"], &list.query()).await
    }

    /// Sends an SMS: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` with `To`,
    /// `From` and `Body`.
    pub async fn send_message(
        &self,
        auth: &TwilioAuth,
        to: &str,
        from: &str,
        body: &str,
    ) -> Result<MessageResource, TwilioError> {
        let form = [
            ("To", to.to_owned()),
            ("From", from.to_owned()),
            ("Body", body.to_owned()),
        ];
        self.post_form(auth, &["Messages.json"], &form).await
    }

    /// Reads the account the credentials belong to: `GET /2010-04-01/Accounts/{AccountSid}.json`.
    /// Wrong credentials are [`TwilioError::Api`] with status 401 and code 20003.
    pub async fn fetch_account(&self, auth: &TwilioAuth) -> Result<AccountResource, TwilioError> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| TwilioError::InvalidBase("cannot be a base".to_owned()))?
            .pop_if_empty()
            .extend([
                API_VERSION,
                "Accounts",
                &format!("{}.json", auth.account_sid),
            ]);
        let request = self
            .http
            .get(url.clone())
            .basic_auth(&auth.account_sid, Some(&auth.auth_token));
        self.send("GET", url.path().to_owned(), request).await
    }

    // --- recording (issue 16, part 1) ---

    /// Starts recording a live call: `POST Calls/{CallSid}/Recordings.json`.
    pub async fn create_recording(
        &self,
        auth: &TwilioAuth,
        call_sid: &str,
        req: &CreateRecording,
    ) -> Result<RecordingResource, TwilioError> {
        self.post_form(auth, &["Calls", call_sid, "Recordings.json"], &req.form())
            .await
    }

    /// Deletes a recording: `DELETE Recordings/{RecordingSid}.json` (204). An unknown SID is
    /// [`TwilioError::Api`] with code 20404.
    pub async fn delete_recording(
        &self,
        auth: &TwilioAuth,
        recording_sid: &str,
    ) -> Result<(), TwilioError> {
        let resource = format!("{recording_sid}.json");
        let url = self.account_url(&auth.account_sid, &["Recordings", &resource])?;
        let path = url.path().to_owned();
        let started = Instant::now();
        let response = self
            .http
            .delete(url)
            .basic_auth(&auth.account_sid, Some(&auth.auth_token))
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let body = read_body(response).await?;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::debug!(method = "DELETE", %path, status = status.as_u16(), elapsed_ms, "twilio request");
        if status.is_success() {
            return Ok(());
        }
        Err(api_error(status, &body))
    }

    /// Opens a recording's WAV: `GET Recordings/{RecordingSid}.wav`, forwarding `range` as
    /// the `Range` header. 200, 206 and 416 are answers (the body is left to the caller,
    /// unread and unbounded: it is streamed on); anything else is an error. The request has
    /// no overall timeout beyond the client's (a long download is bounded by it).
    pub async fn fetch_recording_media(
        &self,
        auth: &TwilioAuth,
        recording_sid: &str,
        range: Option<&str>,
    ) -> Result<MediaResponse, TwilioError> {
        let resource = format!("{recording_sid}.wav");
        let url = self.account_url(&auth.account_sid, &["Recordings", &resource])?;
        let path = url.path().to_owned();
        let mut request = self
            .http
            .get(url)
            .basic_auth(&auth.account_sid, Some(&auth.auth_token));
        if let Some(range) = range {
            request = request.header(reqwest::header::RANGE, range);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        tracing::debug!(method = "GET", %path, status = status.as_u16(), "twilio media request");
        if status.is_success() || status.as_u16() == 416 {
            return Ok(MediaResponse {
                status: status.as_u16(),
                headers: response.headers().clone(),
                response,
            });
        }
        let body = read_body(response).await?;
        Err(api_error(status, &body))
    }

    /// `{base}/2010-04-01/Accounts/{AccountSid}/{resource…}`, every segment percent-encoded.
    fn account_url(&self, account_sid: &str, resource: &[&str]) -> Result<Url, TwilioError> {
        let mut url = self.base_url.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| TwilioError::InvalidBase("cannot be a base".to_owned()))?;
            segments
                .pop_if_empty()
                .extend([API_VERSION, "Accounts", account_sid])
                .extend(resource);
        }
        Ok(url)
    }

    /// GETs with Basic auth and `query` and decodes a 2xx JSON answer as `T`.
    async fn get_json<T: DeserializeOwned>(
        &self,
        auth: &TwilioAuth,
        resource: &[&str],
        query: &[(&'static str, String)],
    ) -> Result<T, TwilioError> {
        let mut url = self.account_url(&auth.account_sid, resource)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let request = self
            .http
            .get(url.clone())
            .basic_auth(&auth.account_sid, Some(&auth.auth_token));
        self.send("GET", url.path().to_owned(), request).await
    }

    /// POSTs `form` with Basic auth and decodes a 2xx JSON answer as `T`.
    async fn post_form<T: DeserializeOwned>(
        &self,
        auth: &TwilioAuth,
        resource: &[&str],
        form: &[(&'static str, String)],
    ) -> Result<T, TwilioError> {
        let url = self.account_url(&auth.account_sid, resource)?;
        let path = url.path().to_owned();
        let request = self
            .http
            .post(url)
            .basic_auth(&auth.account_sid, Some(&auth.auth_token))
            .form(form);
        self.send("POST", path, request).await
    }

    /// Sends `request`, logs it, and decodes a 2xx JSON answer as `T`.
    async fn send<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: String,
        request: reqwest::RequestBuilder,
    ) -> Result<T, TwilioError> {
        let started = Instant::now();
        let result = request.send().await;
        let response = match result {
            Ok(response) => response,
            Err(err) => {
                let err = transport_error(err);
                tracing::debug!(method, %path, error = %err, "twilio request failed");
                return Err(err);
            }
        };
        let status = response.status();
        let body = read_body(response).await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let body = match body {
            Ok(body) => body,
            Err(err) => {
                tracing::debug!(
                    method,
                    %path,
                    status = status.as_u16(),
                    error = %err,
                    "twilio response body failed"
                );
                return Err(err);
            }
        };
        if status.is_success() {
            tracing::debug!(
                method,
                %path,
                status = status.as_u16(),
                elapsed_ms,
                "twilio request"
            );
            return serde_json::from_slice(&body).map_err(|e| TwilioError::Decode(e.to_string()));
        }
        let err = api_error(status, &body);
        tracing::debug!(
            method,
            %path,
            status = status.as_u16(),
            code = err.code(),
            elapsed_ms,
            "twilio request rejected"
        );
        Err(err)
    }
}

fn check_twiml(twiml: &str) -> Result<(), TwilioError> {
    let len = twiml.chars().count();
    if len > MAX_TWIML_CHARS {
        return Err(TwilioError::TwimlTooLong { len });
    }
    Ok(())
}

/// Reads at most [`MAX_BODY_BYTES`] of the response body.
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, TwilioError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(TwilioError::Decode(format!(
                "response body over {MAX_BODY_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Classifies a transport failure; the message never contains the URL (nor, therefore,
/// anything but the host and account path) and never the `Authorization` header.
fn transport_error(err: reqwest::Error) -> TwilioError {
    if err.is_timeout() {
        return TwilioError::Timeout;
    }
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    TwilioError::Network(message)
}

/// Builds [`TwilioError::Api`] from a non-2xx answer: the legacy shape
/// `{code, message, more_info, status}`, an RFC 9457 problem document
/// `{type, title, status, code, detail, instance}`, or (neither) the truncated body text.
/// The status is always the HTTP one.
fn api_error(status: reqwest::StatusCode, body: &[u8]) -> TwilioError {
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok().filter(|b| {
        b.code.is_some() || b.message.is_some() || b.detail.is_some() || b.title.is_some()
    });
    let reason = || {
        status
            .canonical_reason()
            .unwrap_or("unknown status")
            .to_ascii_lowercase()
    };
    match parsed {
        Some(b) => TwilioError::Api {
            status: status.as_u16(),
            code: b.code.and_then(JsonCode::into_i64),
            message: b.message.or(b.detail).or(b.title).unwrap_or_else(reason),
            more_info: b.more_info.or(b.kind.filter(|t| t != "about:blank")),
        },
        None => {
            let text = String::from_utf8_lossy(body);
            let text = truncate_chars(&text.split_whitespace().collect::<Vec<_>>().join(" "));
            TwilioError::Api {
                status: status.as_u16(),
                code: None,
                message: if text.is_empty() { reason() } else { text },
                more_info: None,
            }
        }
    }
}

/// Union of the two error shapes of §3.7.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<JsonCode>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    more_info: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

/// An error code, as a JSON number or (leniently) a numeric string.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonCode {
    Number(i64),
    Text(String),
}

impl JsonCode {
    fn into_i64(self) -> Option<i64> {
        match self {
            Self::Number(n) => Some(n),
            Self::Text(s) => s.trim().parse().ok(),
        }
    }
}

/// The first [`MAX_ERROR_TEXT_CHARS`] characters of `text`, `…` appended when cut.
fn truncate_chars(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_TEXT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
#[path = "rest/tests.rs"]
mod tests;
