//! Redaction of what the LLM judge is shown: the judge sees the conversation, never secrets.
//!
//! Anything that looks like a credential (API keys such as `sk-…`, `whsec_…`, `AKIA…`,
//! bearer tokens, JWTs, `password: …` style assignments) and long digit runs (13–19 digits,
//! spaces or dashes between them allowed: card and account numbers) is replaced by a
//! marker. In JSON (tool arguments and results), the values of keys that name a secret
//! (`password`, `token`, `api_key`, `card_number`, …) are replaced whole, and every other
//! string is redacted as text.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// What replaces a redacted span.
pub const REDACTED: &str = "[redacted]";

struct Rules {
    /// Credential-shaped tokens.
    tokens: Regex,
    /// `Bearer <token>`.
    bearer: Regex,
    /// `password: x`, `api_key=x`, …
    assignment: Regex,
    /// 13–19 digits, spaces or dashes between them allowed.
    digits: Regex,
}

/// Compiled once; `None` only if a pattern below failed to compile, in which case
/// [`redact`] withholds the whole text rather than risk showing a secret.
static RULES: LazyLock<Option<Rules>> = LazyLock::new(|| {
    Some(Rules {
        tokens: Regex::new(
            r"\b(?:sk|pk|rk)[-_](?:live_|test_|proj-)?[A-Za-z0-9_\-]{12,}|\bwhsec_[A-Za-z0-9+/=_\-]{8,}|\bAKIA[0-9A-Z]{16}\b|\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{4,}|\b(?:ghp|gho|xox[abpr])[-_][A-Za-z0-9\-]{10,}",
        )
        .ok()?,
        bearer: Regex::new(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{6,}").ok()?,
        assignment: Regex::new(
            r"(?i)\b(password|passwd|passcode|pin|secret|api[_ -]?key|token|access[_ -]?token|auth[_ -]?token)\b(\s*(?:is|:|=)\s*)[^\s,;]+",
        )
        .ok()?,
        digits: Regex::new(r"\b\d(?:[ \-]?\d){12,18}\b").ok()?,
    })
});

/// `text` with secrets and long digit runs replaced by [`REDACTED`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let Some(rules) = RULES.as_ref() else {
        return Cow::Borrowed(REDACTED);
    };
    let mut out = Cow::Borrowed(text);
    if rules.tokens.is_match(&out) {
        out = Cow::Owned(rules.tokens.replace_all(&out, REDACTED).into_owned());
    }
    if rules.bearer.is_match(&out) {
        out = Cow::Owned(
            rules
                .bearer
                .replace_all(&out, format!("$1 {REDACTED}"))
                .into_owned(),
        );
    }
    if rules.assignment.is_match(&out) {
        out = Cow::Owned(
            rules
                .assignment
                .replace_all(&out, format!("$1$2{REDACTED}"))
                .into_owned(),
        );
    }
    if rules.digits.is_match(&out) {
        out = Cow::Owned(rules.digits.replace_all(&out, REDACTED).into_owned());
    }
    out
}

/// Whether a JSON key names a secret (its value is withheld whole).
fn secret_key(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    [
        "password",
        "passwd",
        "passcode",
        "pin",
        "secret",
        "apikey",
        "token",
        "accesstoken",
        "authtoken",
        "authorization",
        "cardnumber",
        "cvv",
        "cvc",
        "ssn",
        "iban",
        "accountnumber",
        "clientsecret",
        "privatekey",
    ]
    .iter()
    .any(|s| k == *s || k.ends_with(s) && (s.len() >= 5))
}

/// `value` with secret-named keys withheld and every string redacted.
pub fn redact_json(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(redact(s).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(redact_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if secret_key(k) {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redact_json(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_and_card_numbers_are_withheld() {
        let cases = [
            (
                "my key is sk-proj-abcdefghijklmnop1234",
                "sk-proj-abcdefghijklmnop1234",
            ),
            ("use sk_live_51Habcdefghijklmn", "sk_live_51Habcdefghijklmn"),
            ("Authorization: Bearer abc.def-ghi_123", "abc.def-ghi_123"),
            (
                "the secret whsec_c2VjcmV0c2VjcmV0",
                "whsec_c2VjcmV0c2VjcmV0",
            ),
            ("AKIAIOSFODNN7EXAMPLE is the id", "AKIAIOSFODNN7EXAMPLE"),
            ("card 4111 1111 1111 1111 thanks", "4111 1111 1111 1111"),
            ("card 4111-1111-1111-1111", "4111-1111-1111-1111"),
            ("number 378282246310005.", "378282246310005"),
            ("my password is hunter2, ok", "hunter2"),
            ("api_key=abc123xyz", "abc123xyz"),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefgh",
                "eyJhbGciOiJIUzI1NiJ9",
            ),
        ];
        for (text, secret) in cases {
            let out = redact(text);
            assert!(!out.contains(secret), "{text} → {out}");
            assert!(out.contains(REDACTED), "{text} → {out}");
        }
    }

    #[test]
    fn ordinary_speech_is_left_alone() {
        for text in [
            "Hello, thanks for calling Acme. How can I help?",
            "My order number is 12345 and my phone is +1 555 010 9999.",
            "I'd like to speak to a real person please",
            "The task was skipped",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn json_secrets_are_withheld_by_key_and_by_shape() {
        let v = json!({
            "order_id": "A1",
            "password": "hunter2",
            "customer": {"cardNumber": 4111111111111111_u64, "note": "paid with sk-abcdefghijklmnopqrstu"},
            "items": ["Bearer zzzzzzzzzzzz", 3],
            "pin": "1234"
        });
        let r = redact_json(&v);
        let text = r.to_string();
        for secret in [
            "hunter2",
            "4111111111111111",
            "sk-abcdefghijklmnopqrstu",
            "zzzzzzzzzzzz",
            "1234",
        ] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(r["order_id"], "A1");
        assert_eq!(r["items"][1], 3);
    }
}
