//! The `StateSet-Signature` header of outbound requests: `t=<unix seconds>,v1=<hex>`, where
//! the hex is HMAC-SHA256 keyed with the tenant's signing secret over `"{t}.{body}"`.
//! Receivers check the MAC in constant time and refuse timestamps outside a tolerance, which
//! bounds replays.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Name of the signature header.
pub const SIGNATURE_HEADER: &str = "StateSet-Signature";

/// Why a signature header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<seconds>,v1=<hex>`.
    #[error("malformed signature header")]
    Malformed,
    /// The timestamp is outside the tolerance.
    #[error("signature timestamp outside the tolerance")]
    Expired,
    /// No `v1` value matches the body.
    #[error("signature does not match")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut m = match <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("hmac accepts keys of any length"),
    };
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The header value signing `body` at `timestamp` (Unix seconds) with `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", crate::crypto::hex(&digest))
}

/// Checks a header made by [`sign`]: the timestamp within `tolerance_secs` of `now` (Unix
/// seconds) and one of its `v1` values equal, in constant time, to the MAC of `body`.
/// Several `v1` values are accepted (secret rotation); unknown keys are ignored.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            return Err(SignatureError::Malformed);
        };
        match key {
            "t" => {
                let t: i64 = value.parse().map_err(|_| SignatureError::Malformed)?;
                timestamp = Some(t);
            }
            "v1" => candidates.push(unhex(value).ok_or(SignatureError::Malformed)?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(timestamp) > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::Expired);
    }
    let expected = mac(secret, timestamp, body);
    if candidates
        .iter()
        .any(|c| expected.clone().verify_slice(c).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.is_empty() {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|pair| Some((digit(pair[0])? << 4) | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret";
    const NOW: i64 = 1_790_000_000;

    #[test]
    fn round_trip_and_format() {
        let body = br#"{"id":"evt_1","event":"voice.call.started"}"#;
        let header = sign(SECRET, NOW, body);
        let (t, v1) = header.split_once(',').expect("two parts");
        assert_eq!(t, format!("t={NOW}"));
        let hex = v1.strip_prefix("v1=").expect("v1");
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(verify(SECRET, &header, body, NOW, 300), Ok(()));
        assert_eq!(verify(SECRET, &header, body, NOW + 300, 300), Ok(()));
        assert_eq!(verify(SECRET, &header, body, NOW - 300, 300), Ok(()));
    }

    #[test]
    fn matches_an_independent_implementation() {
        // Python: hmac.new(b"whsec_test", b'1790000000.{"id":"evt_1"}', hashlib.sha256).hexdigest()
        assert_eq!(
            sign(b"whsec_test", 1_790_000_000, br#"{"id":"evt_1"}"#),
            "t=1790000000,v1=e32657f3e678d33b41ec084c16ac0e125d25480a06cb3902286dc5942c6fd259"
        );
    }

    #[test]
    fn refuses_tampering_age_and_bad_headers() {
        let body = br#"{"amount":10}"#;
        let header = sign(SECRET, NOW, body);
        assert_eq!(
            verify(SECRET, &header, br#"{"amount":11}"#, NOW, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"another secret", &header, body, NOW, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, &header, body, NOW + 301, 300),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            verify(SECRET, &header, body, NOW - 301, 300),
            Err(SignatureError::Expired)
        );
        // The timestamp is covered by the MAC: moving it breaks the signature.
        let v1 = header.split_once(",v1=").expect("v1").1;
        let moved = format!("t={},v1={v1}", NOW + 10);
        assert_eq!(
            verify(SECRET, &moved, body, NOW, 300),
            Err(SignatureError::Mismatch)
        );
        for bad in [
            "",
            "garbage",
            "t=abc,v1=00",
            &format!("t={NOW}"),
            &format!("v1={v1}"),
            &format!("t={NOW},v1=zz"),
            &format!("t={NOW},v1=abc"),
        ] {
            assert_eq!(
                verify(SECRET, bad, body, NOW, 300),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn accepts_any_matching_v1_and_ignores_unknown_keys() {
        let body = b"{}";
        let good = sign(SECRET, NOW, body);
        let good_v1 = good.split_once(",v1=").expect("v1").1;
        let header = format!("t={NOW},v0=legacy,v1={},v1={good_v1}", "00".repeat(32));
        assert_eq!(verify(SECRET, &header, body, NOW, 300), Ok(()));
    }
}
