//! Input fields parsed into the domain types of [`actors::domain`]: a value that does not
//! parse is a 422 naming the field and saying what is wrong.

use actors::domain::{AccountSid, E164, Label};

use super::ApiError;

/// `v` as an E.164 phone number.
pub fn e164(field: &str, v: &str) -> Result<E164, ApiError> {
    E164::parse(v).map_err(|e| ApiError::invalid(field, e.to_string()))
}

/// `v` as a Twilio account SID.
pub fn account_sid(field: &str, v: &str) -> Result<AccountSid, ApiError> {
    AccountSid::parse(v).map_err(|e| ApiError::invalid(field, e.to_string()))
}

/// `v` trimmed, as a label of 1 to `max` characters without control characters.
pub fn label(field: &str, v: &str, max: usize) -> Result<Label, ApiError> {
    Label::parse(v, max).map_err(|e| ApiError::invalid(field, e.to_string()))
}

/// An optional label.
pub fn optional_label(field: &str, v: Option<&str>, max: usize) -> Result<Option<Label>, ApiError> {
    v.map(|v| label(field, v, max)).transpose()
}
