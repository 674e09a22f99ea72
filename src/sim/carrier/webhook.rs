//! Webhooks the carrier sends: the standard voice parameters (PROTOCOLS §3.1), the signed
//! form request (§2.1, or §2.2 for `GET`), and reading TwiML out of the reply.

use std::time::Duration;

use crate::twilio::signature::compute_signature;
use crate::twilio::twiml::Response;

use super::state::{CallDirection, WebhookKind, WebhookRecord};

/// API version sent in every webhook.
pub(crate) const API_VERSION: &str = "2010-04-01";

/// Who a call is (the fields every voice webhook carries).
#[derive(Debug, Clone)]
pub(crate) struct CallIdentity {
    pub sid: String,
    pub account_sid: String,
    pub from: String,
    pub to: String,
    pub direction: CallDirection,
}

impl CallIdentity {
    /// §3.1 parameters with `CallStatus`, including the legacy `Caller`/`Called`.
    pub fn voice_params(&self, call_status: &str) -> Vec<(String, String)> {
        [
            ("CallSid", self.sid.as_str()),
            ("AccountSid", self.account_sid.as_str()),
            ("From", self.from.as_str()),
            ("To", self.to.as_str()),
            ("CallStatus", call_status),
            ("ApiVersion", API_VERSION),
            ("Direction", self.direction.as_str()),
            ("Caller", self.from.as_str()),
            ("Called", self.to.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

/// A webhook's HTTP reply.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// `true` for `GET` (any case); everything else is sent as `POST`.
fn is_get(method: &str) -> bool {
    method.eq_ignore_ascii_case("GET")
}

/// Sends a signed webhook. `GET` appends the parameters to the query and signs the full URL
/// (§2.2); `POST` sends them form-encoded and signs the URL followed by the sorted
/// parameters (§2.1). Returns the record and, when the server answered, its reply.
pub(crate) async fn send(
    http: &reqwest::Client,
    auth_token: &str,
    kind: WebhookKind,
    method: &str,
    url: &str,
    params: Vec<(String, String)>,
) -> (WebhookRecord, Option<Reply>) {
    let (method, request, signature) = if is_get(method) {
        let query = serde_urlencoded::to_string(&params).unwrap_or_default();
        let full = if query.is_empty() {
            url.to_owned()
        } else if url.contains('?') {
            format!("{url}&{query}")
        } else {
            format!("{url}?{query}")
        };
        let signature = compute_signature(auth_token, &full, &[]);
        ("GET", http.get(full), signature)
    } else {
        let signature = compute_signature(auth_token, url, &params);
        ("POST", http.post(url).form(&params), signature)
    };
    let sent = std::time::Instant::now();
    let result = request
        .header("X-Twilio-Signature", &signature)
        .header("User-Agent", "TwilioProxy/1.1")
        .send()
        .await;
    let mut record = WebhookRecord {
        kind,
        method: method.to_owned(),
        url: url.to_owned(),
        params,
        signature,
        status: None,
        error: None,
        elapsed_ms: None,
    };
    match result {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            record.status = Some(status);
            match resp.text().await {
                Ok(body) => {
                    record.elapsed_ms =
                        Some(u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX));
                    (
                        record,
                        Some(Reply {
                            status,
                            content_type,
                            body,
                        }),
                    )
                }
                Err(error) => {
                    record.error = Some(format!("reading the reply: {error}"));
                    (record, None)
                }
            }
        }
        Err(error) => {
            record.error = Some(error.to_string());
            (record, None)
        }
    }
}

/// Reads TwiML out of a webhook reply: a 2xx with an XML (or HTML, or unspecified) content
/// type whose body parses as a `<Response>` (Twilio also accepts `text/html`).
pub(crate) fn twiml_from(reply: Option<&Reply>, error: Option<&str>) -> Result<Response, String> {
    let Some(reply) = reply else {
        return Err(format!(
            "webhook request failed: {}",
            error.unwrap_or("no reply")
        ));
    };
    if !(200..300).contains(&reply.status) {
        return Err(format!("webhook answered HTTP {}", reply.status));
    }
    if let Some(ct) = &reply.content_type {
        let ct = ct.to_ascii_lowercase();
        let xml = ["text/xml", "application/xml", "text/html"]
            .iter()
            .any(|t| ct.starts_with(t));
        if !xml {
            return Err(format!("webhook answered content type {ct}, not TwiML"));
        }
    }
    parse_twiml(&reply.body)
}

/// Parses a TwiML document whose root element is `<Response>` (the model's parser does
/// not check the root's name).
pub(crate) fn parse_twiml(xml: &str) -> Result<Response, String> {
    let mut rest = xml.trim_start_matches('\u{feff}').trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("<?") {
            rest = after
                .split_once("?>")
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else if let Some(after) = rest.strip_prefix("<!--") {
            rest = after
                .split_once("-->")
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else {
            break;
        }
    }
    let root_ok = rest
        .strip_prefix("<Response")
        .is_some_and(|r| r.starts_with(['>', '/', ' ', '\t', '\r', '\n']));
    if !root_ok {
        return Err("the root element is not <Response>".into());
    }
    Response::parse(xml).map_err(|e| e.to_string())
}

/// Resolves a TwiML URL attribute against the URL of the document it came from (Twilio
/// accepts relative URLs). Absolute URLs are returned exactly as written.
pub(crate) fn resolve(base: Option<&str>, target: &str) -> Result<String, String> {
    let target = target.trim();
    if url::Url::parse(target).is_ok() {
        return Ok(target.to_owned());
    }
    let base = base.ok_or_else(|| format!("relative URL {target:?} in inline TwiML"))?;
    let base = url::Url::parse(base).map_err(|e| format!("bad base URL {base:?}: {e}"))?;
    base.join(target)
        .map(String::from)
        .map_err(|e| format!("bad URL {target:?}: {e}"))
}

/// Now as RFC 2822 (the format of `Timestamp` and REST dates).
pub(crate) fn rfc2822_now() -> String {
    chrono::Utc::now().to_rfc2822()
}

/// Seconds, rounded to the nearest whole second.
pub(crate) fn round_secs(d: Duration) -> u64 {
    (d.as_millis() as u64).saturating_add(500) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twiml_root_must_be_response() {
        assert!(parse_twiml("<Response/>").is_ok());
        assert!(
            parse_twiml(
                "\u{feff}<?xml version=\"1.0\"?>\n<!-- hi --><Response><Hangup/></Response>"
            )
            .is_ok()
        );
        assert!(parse_twiml("<Nope/>").is_err());
        assert!(parse_twiml("<ResponseX/>").is_err());
        assert!(parse_twiml("").is_err());
        assert!(parse_twiml("<Response><Play>x</Play></Response>").is_err());
    }

    #[test]
    fn relative_urls_resolve_against_the_document() {
        assert_eq!(
            resolve(Some("http://h:1/a/voice"), "next").as_deref(),
            Ok("http://h:1/a/next")
        );
        assert_eq!(
            resolve(Some("http://h:1/a/voice"), "/b").as_deref(),
            Ok("http://h:1/b")
        );
        // Absolute URLs are kept byte for byte (they are what gets signed).
        assert_eq!(resolve(None, "http://H:1").as_deref(), Ok("http://H:1"));
        assert!(resolve(None, "/relative").is_err());
    }

    #[test]
    fn replies_must_be_2xx_twiml() {
        let reply = |status, ct: Option<&str>, body: &str| Reply {
            status,
            content_type: ct.map(str::to_owned),
            body: body.to_owned(),
        };
        let ok = reply(200, Some("text/xml; charset=utf-8"), "<Response/>");
        assert!(twiml_from(Some(&ok), None).is_ok());
        assert!(twiml_from(Some(&reply(200, None, "<Response/>")), None).is_ok());
        assert!(twiml_from(Some(&reply(500, Some("text/xml"), "<Response/>")), None).is_err());
        let json = reply(200, Some("application/json"), "<Response/>");
        assert!(twiml_from(Some(&json), None).is_err());
        assert!(twiml_from(None, Some("refused")).is_err_and(|e| e.contains("refused")));
    }
}
