//! Outbound HTTP to tenant endpoints (event webhooks, webhook tools): SSRF-safe and signed.
//!
//! A tenant gives us URLs and we call them from inside our network, so every request is
//! guarded against server-side request forgery:
//! - [`check_url`] (at configuration time, no DNS): `https` only, a host, no credentials in
//!   the URL, and an IP-literal host must be a public address;
//! - [`Egress::post_signed`] checks the URL again, and resolves names itself
//!   ([`PublicOnlyResolver`]): when *any* address of the name is not public (loopback,
//!   private, link-local and cloud metadata, CGNAT, multicast, documentation, IPv6
//!   unique-local, IPv4 embedded in IPv6, …, see [`is_public`]) the request is refused, and
//!   otherwise the connection goes to exactly the addresses that were checked (no second
//!   lookup an attacker could rebind);
//! - redirects are never followed (a `3xx` is [`EgressError::Redirect`]), no proxy is used,
//!   the whole request has a deadline, and at most `max_response` bytes of the answer are
//!   read.
//!
//! [`EgressPolicy::allow_private`] lifts the address checks and permits `http://`: for
//! development, tests and the sandbox, whose receivers listen on loopback.
//!
//! Requests carry [`SIGNATURE_HEADER`]: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{body}">`
//! keyed with the tenant's signing secret ([`sign`], [`verify`]).
//!
//! This module owns no state beyond the HTTP client; it knows nothing of tenants, events or
//! the store.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use url::{Host, Url};

mod address;
mod signature;
#[cfg(test)]
mod tests;

pub use address::is_public;
pub use signature::{SIGNATURE_HEADER, SignatureError, sign, verify};

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// What outbound requests may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Development and test switch: also permit non-public addresses and `http://`.
    /// Off in production (SSRF protection on).
    pub allow_private: bool,
}

/// Why an outbound request was refused or failed. Messages are safe to show to the tenant
/// who owns the URL (they never reveal what one of *our* names resolves to).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// The URL's scheme is not allowed (only `https`, or `http` too in development).
    #[error("the url must use https")]
    Scheme,
    /// The URL cannot be used (why).
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// The host is, or resolves to, a non-public address (the host as given).
    #[error("destination {0} is not a public address")]
    BlockedAddress(String),
    /// The host name could not be resolved (the host as given).
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// The request did not complete within its deadline.
    #[error("the request timed out")]
    Timeout,
    /// The endpoint answered with a redirect, which is never followed (the status).
    #[error("the endpoint answered with a redirect ({0}), which is not followed")]
    Redirect(u16),
    /// The answer was larger than allowed.
    #[error("the response is too large")]
    ResponseTooLarge,
    /// No connection could be made (why).
    #[error("connection failed: {0}")]
    Connect(String),
    /// Any other transport or protocol failure (why).
    #[error("request failed: {0}")]
    Http(String),
}

impl EgressError {
    /// A short, bounded code for metrics and attempt logs.
    pub fn code(&self) -> &'static str {
        match self {
            EgressError::Scheme => "scheme",
            EgressError::InvalidUrl(_) => "invalid_url",
            EgressError::BlockedAddress(_) => "blocked_address",
            EgressError::Resolve(_) => "resolve",
            EgressError::Timeout => "timeout",
            EgressError::Redirect(_) => "redirect",
            EgressError::ResponseTooLarge => "response_too_large",
            EgressError::Connect(_) => "connect",
            EgressError::Http(_) => "http",
        }
    }
}

/// An answer from a tenant endpoint (any status but a redirect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressResponse {
    /// HTTP status.
    pub status: u16,
    /// The body (at most `max_response` bytes).
    pub body: Vec<u8>,
    /// From sending the request to the end of the body.
    pub latency: Duration,
}

impl EgressResponse {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The outbound HTTP client. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Egress {
    client: reqwest::Client,
    policy: EgressPolicy,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Egress {
    /// Builds the client for `policy`. Installs the ring TLS provider if the process has
    /// none yet (idempotent; start-up installs the same one).
    pub fn new(policy: EgressPolicy) -> Result<Self, EgressError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("stateset-voice/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(PublicOnlyResolver {
                allow_private: policy.allow_private,
            }))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| EgressError::Http(format!("cannot build the http client: {e}")))?;
        Ok(Self { client, policy })
    }

    /// The policy this client enforces.
    pub fn policy(&self) -> EgressPolicy {
        self.policy
    }

    /// POSTs the JSON `body` to `url`, signed with `secret` ([`SIGNATURE_HEADER`]), with the
    /// extra `headers` (e.g. `Idempotency-Key`). The whole exchange must finish within
    /// `timeout`; at most `max_response` bytes of the answer are read (more is
    /// [`EgressError::ResponseTooLarge`]). A redirect is an error and is not followed.
    pub async fn post_signed(
        &self,
        url: &str,
        secret: &[u8],
        body: Vec<u8>,
        headers: &[(&str, String)],
        timeout: Duration,
        max_response: usize,
    ) -> Result<EgressResponse, EgressError> {
        // IP-literal hosts never reach the resolver: `check_url` classifies them.
        let url = check_url(url, &self.policy)?;
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = self
            .client
            .post(url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign(secret, timestamp, &body));
        for (name, value) in headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| EgressError::Http(format!("invalid header name {name}")))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| EgressError::Http(format!("invalid value of header {name}")))?;
            request = request.header(name, value);
        }
        let request = request.body(body);
        let started = Instant::now();
        let exchange = async {
            let response = request.send().await.map_err(transport_error)?;
            let status = response.status().as_u16();
            if (300..400).contains(&status) {
                return Err(EgressError::Redirect(status));
            }
            let body = read_limited(response, max_response).await?;
            Ok::<_, EgressError>(EgressResponse {
                status,
                body,
                latency: started.elapsed(),
            })
        };
        // reqwest's own deadline covers connect, headers and body; this one also bounds
        // anything outside it, so a delivery can never hang.
        match tokio::time::timeout(timeout + Duration::from_millis(250), exchange).await {
            Ok(result) => result,
            Err(_) => Err(EgressError::Timeout),
        }
    }
}

/// Checks a tenant URL at configuration time (no DNS): `https` (or `http` when
/// `allow_private`), a host, no user name or password, at most [`MAX_URL_LEN`] characters,
/// and a public address when the host is an IP literal.
pub fn check_url(url: &str, policy: &EgressPolicy) -> Result<Url, EgressError> {
    if url.len() > MAX_URL_LEN {
        return Err(EgressError::InvalidUrl(format!(
            "longer than {MAX_URL_LEN} characters"
        )));
    }
    let parsed = Url::parse(url.trim())
        .map_err(|e| EgressError::InvalidUrl(format!("not an absolute url ({e})")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if policy.allow_private => {}
        _ => return Err(EgressError::Scheme),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(EgressError::InvalidUrl(
            "must not carry a user name or password".into(),
        ));
    }
    let ip = match parsed.host() {
        None => return Err(EgressError::InvalidUrl("has no host".into())),
        Some(Host::Domain("")) => {
            return Err(EgressError::InvalidUrl("has no host".into()));
        }
        Some(Host::Domain(_)) => None,
        Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
    };
    if let Some(ip) = ip
        && !policy.allow_private
        && !is_public(ip)
    {
        return Err(EgressError::BlockedAddress(ip.to_string()));
    }
    Ok(parsed)
}

/// Reads at most `max` bytes of the body, refusing more (before reading it when the length
/// is announced).
async fn read_limited(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, EgressError> {
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(EgressError::ResponseTooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > max {
            return Err(EgressError::ResponseTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Maps a reqwest failure, recognising the resolver's refusals in its cause chain.
fn transport_error(err: reqwest::Error) -> EgressError {
    if err.is_timeout() {
        return EgressError::Timeout;
    }
    let err = err.without_url();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<ResolveRefused>() {
            return refused.to_egress_error();
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return EgressError::Timeout;
        }
        source = cause.source();
    }
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if err.is_connect() {
        EgressError::Connect(message)
    } else {
        EgressError::Http(message)
    }
}

// === PublicOnlyResolver ===

/// Resolves with the system resolver (`tokio::net::lookup_host`) and refuses a name when
/// any of its addresses is not public, so the connection is pinned to checked addresses.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnlyResolver {
    /// Skip the address check (development and tests).
    pub allow_private: bool,
}

/// A refusal by [`PublicOnlyResolver`], recognised again in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
enum ResolveRefused {
    #[error("{0} resolves to a non-public address")]
    Blocked(String),
    #[error("cannot resolve {0}")]
    Unresolved(String),
}

impl ResolveRefused {
    fn to_egress_error(&self) -> EgressError {
        match self {
            ResolveRefused::Blocked(host) => EgressError::BlockedAddress(host.clone()),
            ResolveRefused::Unresolved(host) => EgressError::Resolve(host.clone()),
        }
    }
}

impl PublicOnlyResolver {
    /// Resolves `host` and applies the policy.
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, EgressError> {
        self.resolve_checked(host)
            .await
            .map_err(|e| e.to_egress_error())
    }

    async fn resolve_checked(&self, host: &str) -> Result<Vec<SocketAddr>, ResolveRefused> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|_| ResolveRefused::Unresolved(host.to_owned()))?
            .collect();
        if addrs.is_empty() {
            return Err(ResolveRefused::Unresolved(host.to_owned()));
        }
        if !self.allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
            return Err(ResolveRefused::Blocked(host.to_owned()));
        }
        Ok(addrs)
    }
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = *self;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            match resolver.resolve_checked(&host).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs),
                Err(refused) => Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}
