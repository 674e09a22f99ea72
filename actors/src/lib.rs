//! StateSet Voice actor tree, store and domain logic.
//!
//! This crate owns everything that is not HTTP: the supervision tree (ractor),
//! every actor and its messages, the store (sqlx over SQLite and PostgreSQL behind
//! one enum), secrets at rest, and the domain types shared by the service.
//!
//! ```text
//! RootSupervisor                       restarts singletons (meltdown limit), escalates beyond it
//! ├── RolloutActor                     agents, versions, version choice for a call
//! ├── RouterActor                      phone-route changes; keeps the route cache current
//! ├── TenantActor                      tenant and key changes; keeps the tenant directory current
//! ├── NotifierActor (factory)          tenant event webhooks: outbox, signed, retried, logged
//! ├── EvaluationActor (factory)        scores finished sessions, feeds rollout guardrails
//! └── CallSupervisor                   one CallActor per live call
//! ```
//!
//! **Architecture invariant:** this crate does not depend on warp or on anything
//! HTTP-server; tests drive it by message.

#![forbid(unsafe_code)]

pub mod active;
pub mod call;
pub mod callbacks;
pub mod campaign;
pub mod carrier;
pub mod contract;
pub mod crypto;
pub mod domain;
pub mod egress;
pub mod ending;
pub mod evaluation;
pub mod governance;
pub mod ids;
pub mod media;
pub mod meter;
pub mod nodes;
pub mod notifier;
pub mod operator;
pub mod outcome;
pub mod providers;
pub mod ratelimit;
pub mod realtime;
pub mod recording;
pub mod rollout;
pub mod router;
pub mod singleton;
pub mod store;
pub mod stream_token;
pub mod supervisor;
pub mod telephony;
pub mod tenant;
pub mod time;
pub mod views;

pub use supervisor::{Actors, RootConfig, SupervisorStatus};
