//! Validated domain strings: values that arrive as text (API bodies, Twilio callbacks,
//! configuration) and are checked once, at the edge, into a type that cannot hold an
//! invalid value. Each `parse` returns an error that says what is wrong, so the HTTP layer
//! can name the field and the reason without repeating the rule.

mod account;
mod phone;
mod text;

pub use account::{AccountSid, AccountSidError};
pub use phone::{E164, E164Error};
pub use text::{Label, LabelError};
