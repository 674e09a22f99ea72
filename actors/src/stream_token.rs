//! Stream tokens: the credential of a media websocket.
//!
//! A token is minted when the TwiML for a call is produced and travels as a `<Parameter>` to
//! `start.customParameters`. It is self-contained (any node can verify it): base64url of the
//! JSON claims, a dot, and base64url of HMAC-SHA256 over those bytes. Verification accepts
//! the current or the previous secret, so secrets rotate without dropping calls. Expiry is
//! checked here; single use (the nonce) is enforced by the store when the stream starts.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a stream token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamClaims {
    /// Format version.
    pub v: u8,
    /// Our call id.
    pub call: String,
    /// Twilio `CallSid`, when known at mint time (inbound calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Tenant id.
    pub tenant: String,
    /// Route id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Agent version, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Random nonce, consumed once.
    pub nonce: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was presented.
    #[error("stream token missing")]
    Missing,
    /// Not a token of ours (shape or signature).
    #[error("stream token forged or malformed")]
    Forged,
    /// Past its expiry.
    #[error("stream token expired")]
    Expired,
    /// Its nonce was already consumed.
    #[error("stream token already used")]
    Reused,
}

impl TokenError {
    /// Bounded label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Forged => "forged",
            TokenError::Expired => "expired",
            TokenError::Reused => "reused",
        }
    }
}

/// Signs and verifies stream tokens with a current and an optional previous secret.
#[derive(Clone)]
pub struct StreamTokenKeys {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for StreamTokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTokenKeys")
            .field("previous", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

fn mac(key: &[u8], data: &[u8]) -> Hmac<Sha256> {
    let mut m = match <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("hmac accepts keys of any length"),
    };
    m.update(data);
    m
}

impl StreamTokenKeys {
    /// Keys from the configured secrets.
    pub fn new(current: &[u8], previous: Option<&[u8]>) -> Self {
        Self {
            current: current.to_vec(),
            previous: previous.map(<[u8]>::to_vec),
        }
    }

    /// Whether a previous secret is still accepted (a rotation is in progress).
    pub fn rotating(&self) -> bool {
        self.previous.is_some()
    }

    /// Mints a token for `claims` with the current secret.
    pub fn mint(&self, claims: &StreamClaims) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let sig =
            URL_SAFE_NO_PAD.encode(mac(&self.current, body.as_bytes()).finalize().into_bytes());
        format!("{body}.{sig}")
    }

    /// Verifies signature (current or previous secret, constant time) and expiry.
    pub fn verify(&self, token: &str, now_secs: i64) -> Result<StreamClaims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let (body, sig) = token.split_once('.').ok_or(TokenError::Forged)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenError::Forged)?;
        let valid = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .any(|key| mac(key, body.as_bytes()).verify_slice(&sig).is_ok());
        if !valid {
            return Err(TokenError::Forged);
        }
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::Forged)?;
        let claims: StreamClaims = serde_json::from_slice(&json).map_err(|_| TokenError::Forged)?;
        if claims.v != 1 {
            return Err(TokenError::Forged);
        }
        if claims.exp < now_secs {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// A fresh random nonce (128 bits, hex).
pub fn new_nonce() -> String {
    crate::crypto::hex(&rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> StreamClaims {
        StreamClaims {
            v: 1,
            call: "call_1".into(),
            sid: Some("CA1".into()),
            tenant: "ten_1".into(),
            route: Some("rte_1".into()),
            agent_version: None,
            exp,
            nonce: new_nonce(),
        }
    }

    #[test]
    fn mint_verify_expiry_forgery_and_rotation() {
        let keys = StreamTokenKeys::new(b"current-secret-0123456789abcdef0123", None);
        let c = claims(1_000);
        let token = keys.mint(&c);
        assert!(token.len() < 400, "fits a <Parameter> (name + value < 500)");
        assert_eq!(keys.verify(&token, 999), Ok(c.clone()));
        assert_eq!(keys.verify(&token, 1_001), Err(TokenError::Expired));
        assert_eq!(keys.verify("", 0), Err(TokenError::Missing));
        assert_eq!(keys.verify("abc", 0), Err(TokenError::Forged));
        let (body, sig) = token.split_once('.').expect("dot");
        let mut tampered_body = body.to_owned();
        tampered_body.replace_range(0..1, if body.starts_with('A') { "B" } else { "A" });
        assert_eq!(
            keys.verify(&format!("{tampered_body}.{sig}"), 0),
            Err(TokenError::Forged)
        );
        let other = StreamTokenKeys::new(b"another-secret-0123456789abcdef012", None);
        assert_eq!(other.verify(&token, 0), Err(TokenError::Forged));
        // Rotation: the new current secret still accepts tokens of the old one.
        let rotated = StreamTokenKeys::new(
            b"next-secret-0123456789abcdef0123456",
            Some(b"current-secret-0123456789abcdef0123"),
        );
        assert!(rotated.rotating());
        assert_eq!(rotated.verify(&token, 0), Ok(c));
        let fresh = rotated.mint(&claims(1_000));
        assert_eq!(keys.verify(&fresh, 0), Err(TokenError::Forged));
    }
}
