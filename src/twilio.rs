//! Twilio edge: webhook signature verification.

pub mod signature;
