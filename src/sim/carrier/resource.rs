//! JSON bodies of the REST API: the Call and Message resources (PROTOCOLS §3.5) and the
//! legacy error shape (§3.7).

use serde_json::{Value, json};

use super::state::{CallSnapshot, MessageRecord};
use super::webhook::API_VERSION;

/// A REST error: HTTP status, Twilio code, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub code: u32,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// `{"code","message","more_info","status"}`.
    pub fn body(&self) -> Value {
        json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status,
        })
    }
}

/// The Call resource for a snapshot.
pub(crate) fn call_json(s: &CallSnapshot) -> Value {
    let uri = format!(
        "/{API_VERSION}/Accounts/{}/Calls/{}.json",
        s.account_sid, s.sid
    );
    let base = format!("/{API_VERSION}/Accounts/{}/Calls/{}", s.account_sid, s.sid);
    let sub = |name: &str| format!("{base}/{name}.json");
    let status = s.status.as_str();
    let updated = s.ended_at.or(s.answered_at).unwrap_or(s.created_at);
    json!({
        "sid": s.sid,
        "account_sid": s.account_sid,
        "parent_call_sid": null,
        "phone_number_sid": null,
        "group_sid": null,
        "trunk_sid": null,
        "to": s.to,
        "to_formatted": s.to,
        "from": s.from,
        "from_formatted": s.from,
        "status": status,
        "direction": s.direction.as_str(),
        "start_time": s.answered_at.map(|t| t.to_rfc2822()),
        "end_time": s.ended_at.map(|t| t.to_rfc2822()),
        "date_created": s.created_at.to_rfc2822(),
        "date_updated": updated.to_rfc2822(),
        "duration": s.duration_secs.map(|d| d.to_string()),
        "price": null,
        "price_unit": "USD",
        "answered_by": s.answered_by,
        "api_version": API_VERSION,
        "forwarded_from": null,
        "caller_name": null,
        "queue_time": "0",
        "uri": uri,
        "subresource_uris": {
            "notifications": sub("Notifications"),
            "recordings": sub("Recordings"),
            "payments": sub("Payments"),
            "events": sub("Events"),
            "siprec": sub("Siprec"),
            "streams": sub("Streams"),
            "transcriptions": sub("Transcriptions"),
            "user_defined_message_subscriptions": sub("UserDefinedMessageSubscriptions"),
            "user_defined_messages": sub("UserDefinedMessages"),
        },
    })
}

/// The Message resource.
pub(crate) fn message_json(m: &MessageRecord) -> Value {
    let date = m.date_created.to_rfc2822();
    json!({
        "sid": m.sid,
        "account_sid": m.account_sid,
        "messaging_service_sid": null,
        "to": m.to,
        "from": m.from,
        "body": m.body,
        "status": "queued",
        "direction": "outbound-api",
        "num_segments": segments(&m.body).to_string(),
        "num_media": "0",
        "api_version": API_VERSION,
        "date_created": date,
        "date_updated": date,
        "date_sent": null,
        "price": null,
        "price_unit": "USD",
        "error_code": null,
        "error_message": null,
        "uri": format!("/{API_VERSION}/Accounts/{}/Messages/{}.json", m.account_sid, m.sid),
        "subresource_uris": {
            "media": format!("/{API_VERSION}/Accounts/{}/Messages/{}/Media.json", m.account_sid, m.sid),
        },
    })
}

/// SMS segments of a GSM-7 body: one up to 160 characters, else 153 per segment.
fn segments(body: &str) -> usize {
    let chars = body.chars().count();
    if chars <= 160 { 1 } else { chars.div_ceil(153) }
}
