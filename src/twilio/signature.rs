//! `X-Twilio-Signature` verification (docs/PROTOCOLS.md §2), as pure functions.
//!
//! This module owns the string-to-sign (URL followed by the sorted form parameters), the
//! HMAC-SHA1 / Base64 signature, the URL port variants Twilio may have signed (§2.4), the
//! `bodySHA256` check for raw bodies (§2.3) and the reconstruction of the signed URL from
//! the configured public base URL. It knows nothing about HTTP frameworks: callers pass the
//! URL, the decoded parameters, the raw body and the header value.
//!
//! Every comparison of secret-derived material is constant time.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Name of the query parameter Twilio adds for raw (e.g. JSON) bodies (§2.3).
pub const BODY_SHA256_PARAM: &str = "bodySHA256";

/// Why a webhook request failed signature verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request carried no `X-Twilio-Signature` header.
    #[error("missing x-twilio-signature header")]
    Missing,
    /// The signature matches none of the URL variants Twilio may have signed.
    #[error("twilio signature does not match")]
    Mismatch,
    /// A raw-body request whose URL carries no `bodySHA256` query parameter.
    #[error("missing bodySHA256 query parameter")]
    MissingBodyHash,
    /// The SHA-256 of the body differs from the signed `bodySHA256` query parameter.
    #[error("body hash does not match bodySHA256")]
    BodyHashMismatch,
}

/// Computes the Twilio signature: Base64 (standard, padded) of HMAC-SHA1, keyed with the
/// Auth Token, over `url` followed by `name` + `value` of every parameter.
///
/// Parameters are sorted by name in byte order, the values of a repeated name are sorted
/// too, and exact duplicate `(name, value)` pairs are appended once, as the official
/// libraries do (§2.5). `params` must be URL-decoded. The URL is used exactly as given.
pub fn compute_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(signature_digest(auth_token, url, params))
}

/// Raw 20-byte HMAC-SHA1 digest behind [`compute_signature`].
fn signature_digest(auth_token: &str, url: &str, params: &[(String, String)]) -> [u8; 20] {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut mac = match Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("hmac accepts keys of any length"),
    };
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac.finalize().into_bytes().into()
}

/// The URL variants Twilio may have signed for `url` (§2.4), deduplicated, as-received
/// first: the URL as received, the URL with its port removed, and the URL with the port
/// present (the scheme default — 443 for `https`/`wss`, 80 for `http`/`ws` — inserted when
/// there is none; an explicit port is kept).
///
/// Only the authority is edited, textually: userinfo, path and the raw query are kept byte
/// for byte. A URL whose authority cannot be found (or whose port is not numeric) yields
/// just itself.
pub fn url_candidates(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some(parts) = split_port(url) else {
        return out;
    };
    let (before, port, after) = parts;
    let mut push = |candidate: String| {
        if !out.contains(&candidate) {
            out.push(candidate);
        }
    };
    // Port removed (`before` ends with the host, `after` starts at the path).
    if port.is_some() {
        push(format!("{before}{after}"));
    }
    // Port present: keep an explicit one, otherwise add the scheme default.
    match port {
        Some(p) if !p.is_empty() => {}
        _ => {
            if let Some(default) = default_port(url) {
                push(format!("{before}:{default}{after}"));
            }
        }
    }
    out
}

/// Splits `url` around its port: `(up to and including the host, port digits, from the
/// path on)`. The port is `None` when the authority has no `:`; `Some("")` for a bare `:`.
fn split_port(url: &str) -> Option<(&str, Option<&str>, &str)> {
    let scheme_end = url.find("://")?;
    let scheme = &url[..scheme_end];
    let valid_scheme = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return None;
    }
    let auth_start = scheme_end + 3;
    let auth_end = url[auth_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| auth_start + i);
    let authority = &url[auth_start..auth_end];
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    // Skip an IPv6 literal (`[::1]`) so its colons are not taken for the port separator.
    let search_from = if host_port.starts_with('[') {
        host_port.find(']')?
    } else {
        0
    };
    let colon = host_port[search_from..].rfind(':').map(|i| search_from + i);
    match colon {
        None => Some((&url[..auth_end], None, &url[auth_end..])),
        Some(i) => {
            let port = &host_port[i + 1..];
            if !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let colon_abs = auth_start + host_start + i;
            Some((&url[..colon_abs], Some(port), &url[auth_end..]))
        }
    }
}

/// Default port of the URL's scheme, for the schemes Twilio calls.
fn default_port(url: &str) -> Option<u16> {
    let scheme = url.split_once("://")?.0;
    if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        Some(80)
    } else {
        None
    }
}

/// Verifies a form-encoded POST (§2.1): accepts when `signature_header` matches the
/// signature of any [`url_candidates`] variant of `url` with the URL-decoded form `params`.
pub fn verify_form(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature_header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = signature_header.ok_or(SignatureError::Missing)?.trim();
    let matched = url_candidates(url).iter().any(|candidate| {
        let expected = compute_signature(auth_token, candidate, params);
        bool::from(expected.as_bytes().ct_eq(header.as_bytes()))
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Verifies a GET request or the media-stream WebSocket upgrade (§2.2): the signature
/// covers the URL (query included) only, nothing is appended.
pub fn verify_get(
    auth_token: &str,
    url: &str,
    signature_header: Option<&str>,
) -> Result<(), SignatureError> {
    verify_form(auth_token, url, &[], signature_header)
}

/// Verifies a raw-body (e.g. JSON) POST (§2.3): the signature over `url` with no
/// parameters appended, then the lower-case hex SHA-256 of `body` against the URL's
/// `bodySHA256` query parameter (constant time). Both must pass.
pub fn verify_json_body(
    auth_token: &str,
    url: &str,
    body: &[u8],
    signature_header: Option<&str>,
) -> Result<(), SignatureError> {
    verify_get(auth_token, url, signature_header)?;
    let expected = query_param(url, BODY_SHA256_PARAM).ok_or(SignatureError::MissingBodyHash)?;
    let actual = body_sha256_hex(body);
    if bool::from(actual.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(SignatureError::BodyHashMismatch)
    }
}

/// The raw value of the first `name=value` pair of the URL's query string.
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// Lower-case hex SHA-256 of `body`.
fn body_sha256_hex(body: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    Sha256::digest(body)
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]])
        .map(char::from)
        .collect()
}

/// Rebuilds the URL Twilio signed: the configured public base URL (which may carry a path
/// prefix such as `https://host/prefix`; its query and fragment are ignored) joined, with
/// exactly one `/`, to the request's path and raw query exactly as received.
///
/// Build from configuration rather than `Host`/`X-Forwarded-*`: behind a proxy or tunnel
/// the scheme and host seen locally differ from what Twilio called.
pub fn build_url(public_base_url: &url::Url, path_and_query: &str) -> String {
    join(&public_base_url[..url::Position::AfterPath], path_and_query)
}

/// The WebSocket URL Twilio signs for the media-stream upgrade: [`build_url`] with the
/// scheme switched to `wss` for an `https` base, or `ws` for an `http` base.
pub fn build_ws_url(public_base_url: &url::Url, path: &str) -> String {
    let base = &public_base_url[..url::Position::AfterPath];
    let scheme = public_base_url.scheme();
    let ws_scheme = match scheme {
        "https" => "wss",
        "http" => "ws",
        other => other,
    };
    let rest = base.get(scheme.len()..).unwrap_or_default();
    join(&format!("{ws_scheme}{rest}"), path)
}

/// `base` (trailing `/` dropped) + `/` + `path` (leading `/` supplied if absent).
fn join(base: &str, path: &str) -> String {
    let base = base.strip_suffix('/').unwrap_or(base);
    if path.starts_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    }
}

#[cfg(test)]
#[path = "signature/tests.rs"]
mod tests;
