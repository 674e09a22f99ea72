//! Twilio edge: webhook signatures and TwiML (and, next, the REST client).

pub mod signature;
pub mod twiml;
