//! Named string formats of the request schemas, and the constraints they stand for.
//!
//! A request field the server validates by a shared rule says so with
//! `#[schema(format = Custom("e164"))]` (or `#[param(...)]`); [`apply`] replaces each such
//! format in a document by the rule as JSON Schema (a pattern, or the closed list of time
//! zones), so that every document holds each rule once, spelled as the server checks it.
//! A nullable field keeps accepting `null`.

use serde_json::{Map, Value};

/// An E.164 number: `+`, then 2 to 15 digits, the first not 0 ([`actors::domain::E164`]).
pub const E164: &str = r"^\+[1-9][0-9]{1,14}$";

/// A label the server trims, then checks ([`actors::domain::Label`]): white space
/// (Unicode `White_Space`, as `str::trim`) around a core of no control character (`Cc`)
/// that starts and ends with a character other than white space. Lengths are the field's.
pub const LABEL: &str = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f])?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$";

/// A text the server checks as sent: no control character (`Cc`) anywhere, and not only
/// white space. Lengths are the field's.
pub const TEXT: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";

/// A text that is not only white space (any character allowed, newlines included).
pub const NOT_BLANK: &str =
    r"^[\s\S]*[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][\s\S]*$";

/// A wall-clock time `HH:MM` from `00:00` to `23:59`.
pub const HH_MM: &str = r"^([01][0-9]|2[0-3]):[0-5][0-9]$";

/// A wall-clock time `HH:MM` from `00:00` to `24:00` (the end of a window).
pub const HH_MM_END: &str = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$";

/// An RFC 3339 time as the server parses it (chrono's `parse_from_rfc3339`).
/// (29 February is left out rather than spelling leap years).
pub const RFC3339: &str = r"^[0-9]{4}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$";

/// A plain web URL ([`crate::http::fields::is_web_url`], which the server checks first):
/// `http://` or `https://`, a lowercase host name whose last label starts with a letter or
/// a dotted IPv4 address, an optional port 1–65535, a path of `[A-Za-z0-9._~/-]`.
pub const HTTP_URL: &str = r"^https?://(([a-z0-9-]+\.)*[a-z][a-z0-9-]*|((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[A-Za-z0-9._~-]*)*$";

/// The formats and what each stands for.
fn constraint(format: &str) -> Option<Constraint> {
    Some(match format {
        "e164" => Constraint::Pattern(E164),
        "label" => Constraint::Pattern(LABEL),
        "text" => Constraint::Pattern(TEXT),
        "not-blank" => Constraint::Pattern(NOT_BLANK),
        "hh-mm" => Constraint::Pattern(HH_MM),
        "hh-mm-end" => Constraint::Pattern(HH_MM_END),
        "rfc3339" => Constraint::DateTime,
        "time-zone" => Constraint::TimeZone,
        "http-url" => Constraint::Pattern(HTTP_URL),
        _ => return None,
    })
}

enum Constraint {
    Pattern(&'static str),
    /// An RFC 3339 time: `format: date-time` and the pattern the server's parser accepts.
    DateTime,
    /// One of the IANA zone names the server knows (chrono-tz).
    TimeZone,
}

/// Replaces every known format in `doc` by its constraint.
pub fn apply(doc: &mut Value) {
    match doc {
        Value::Object(map) => {
            if let Some(c) = map
                .get("format")
                .and_then(Value::as_str)
                .and_then(constraint)
            {
                map.remove("format");
                constrain(map, &c);
            }
            map.values_mut().for_each(apply);
        }
        Value::Array(items) => items.iter_mut().for_each(apply),
        _ => {}
    }
}

fn constrain(schema: &mut Map<String, Value>, c: &Constraint) {
    match c {
        Constraint::Pattern(p) => {
            schema.insert("pattern".into(), Value::from(*p));
        }
        Constraint::DateTime => {
            schema.insert("format".into(), Value::from("date-time"));
            schema.insert("pattern".into(), Value::from(RFC3339));
        }
        Constraint::TimeZone => {
            let nullable = match schema.get("type") {
                Some(Value::Array(types)) => types.iter().any(|t| t == "null"),
                _ => false,
            };
            let mut names: Vec<Value> = chrono_tz::TZ_VARIANTS
                .iter()
                .map(|tz| Value::from(tz.name()))
                .collect();
            if nullable {
                names.push(Value::Null);
            }
            schema.insert("enum".into(), Value::Array(names));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, s: &str) -> bool {
        regex::Regex::new(pattern).expect("pattern").is_match(s)
    }

    #[test]
    fn the_patterns_are_the_server_rules() {
        for s in [
            "+14155550100",
            "+1",
            "+10",
            "+0123",
            "14155550100",
            "+1234567890123456",
            "+1 415",
        ] {
            assert_eq!(matches(E164, s), actors::domain::E164::is_valid(s), "{s}");
        }
        let texts = [
            "a", " a ", "", "  ", "a\tb", "\u{85}x", "x\n", "\u{1c}a", "Zoë", "a b",
        ];
        for s in texts {
            assert_eq!(
                matches(LABEL, s),
                actors::domain::Label::parse(s, 100).is_ok(),
                "{s:?}"
            );
            let strict = !s.trim().is_empty() && !s.chars().any(char::is_control);
            assert_eq!(matches(TEXT, s), strict, "{s:?}");
            assert_eq!(matches(NOT_BLANK, s), !s.trim().is_empty(), "{s:?}");
        }
        for s in [
            "2026-12-05T14:30:25Z",
            "2026-12-05t14:30:25.123+01:00",
            "2026-02-28T00:00:00-23:59",
        ] {
            assert!(
                matches(RFC3339, s) && actors::time::parse_rfc3339(s).is_some(),
                "{s}"
            );
        }
        assert!(actors::time::parse_rfc3339("2026-12-05 14:30:25Z").is_none());
        for s in [
            "2026-12-05 14:30:25Z",
            "2026-02-30T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-12-05",
            "2026-12-05T24:00:00Z",
        ] {
            assert!(!matches(RFC3339, s), "{s}");
        }
        for s in [
            "https://example.com",
            "http://a.b-c.io:8080/x/y_z",
            "https://x/",
            "http://127.0.0.1:65535/events",
            "https://1.2",
            "ftp://x.com",
            "https://",
            "https://x.com?q",
            "https://X.com",
            "http://256.1.1.1",
            "http://1.2.3.04",
            "https://x.com:0",
            "https://x.com:65536",
            "https://x.com/a*",
            "https://user@x.com",
            "https://a..b",
        ] {
            let shape = crate::http::fields::is_web_url(s);
            assert_eq!(matches(HTTP_URL, s), shape, "{s}");
            if shape {
                assert!(
                    url::Url::parse(s).is_ok_and(|u| u.host_str().is_some()),
                    "{s}"
                );
            }
        }
        assert!(matches(HH_MM, "23:59") && !matches(HH_MM, "24:00") && !matches(HH_MM, "9:00"));
        assert!(matches(HH_MM_END, "24:00") && !matches(HH_MM_END, "24:01"));
    }

    #[test]
    fn formats_become_constraints_and_nullable_zones_keep_null() {
        let mut doc = serde_json::json!({
            "a": {"type": "string", "format": "e164"},
            "b": {"type": ["string", "null"], "format": "time-zone"},
            "c": {"type": "string", "format": "date-time"},
        });
        apply(&mut doc);
        assert_eq!(
            doc["a"],
            serde_json::json!({"type": "string", "pattern": E164})
        );
        let zones = doc["b"]["enum"].as_array().expect("enum");
        assert!(zones.contains(&Value::from("America/New_York")));
        assert!(zones.contains(&Value::Null));
        assert!(doc["b"].get("format").is_none());
        assert_eq!(doc["c"]["format"], "date-time");
    }
}
