//! Twilio edge: webhook signatures, TwiML and the REST client.

pub mod carrier;
pub mod rest;
pub mod signature;
pub mod twiml;
