//! Black-box tests over real HTTP: the server on `127.0.0.1:0`, a fresh database per test,
//! every test run against SQLite and (with `TEST_POSTGRES_URL`) PostgreSQL.

mod helpers;
mod sse;

mod admin;
mod agents;
mod auth;
mod builtins;
mod call_stream;
mod callbacks;
mod calls;
mod campaigns;
mod canary;
mod carrier;
mod chaos;
mod cli;
mod cluster;
mod cluster_limits;
mod cluster_views;
mod console;
mod crash;
mod diagnostics;
mod drain;
mod edge;
mod errors;
mod evaluations;
mod event_webhooks;
mod governance;
mod launch;
mod launch_walk;
mod leg_loss;
mod limits;
mod live;
mod nodes;
mod ops;
mod outcomes;
mod placement;
mod predial;
mod queues;
mod readiness;
mod rollouts;
mod sandbox;
mod telephony;
mod tools;
