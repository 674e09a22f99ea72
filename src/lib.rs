//! StateSet Voice service: configuration, start-up and shutdown, telemetry, the thin warp
//! HTTP layer and the OpenAPI documents. Business logic lives in the `actors` crate.

#![forbid(unsafe_code)]

pub mod config;
pub mod http;
pub mod loadtest;
pub mod openapi;
pub mod sandbox;
pub mod shutdown;
pub mod sim;
pub mod startup;
pub mod telemetry;
pub mod twilio;
