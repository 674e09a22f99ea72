//! Multi-process tests of the reference deployment (issue 14 §5, §6): three
//! `stateset-voice serve` processes on one fresh PostgreSQL database behind HAProxy
//! (configured by `scripts/haproxy.sh`), the carrier and realtime simulators in this process.
//! `scripts/test` provides PostgreSQL and HAProxy; without them every test fails saying so.
//! Each test prints the figures `docs/cluster.md` quotes (`--nocapture` to see them).

#[path = "cluster/harness.rs"]
mod harness;
/// The Server-Sent Events reader of the API tests (this binary uses part of it).
#[allow(dead_code)]
#[path = "api/sse.rs"]
mod sse;

#[path = "cluster/limits.rs"]
mod limits;
#[path = "cluster/live.rs"]
mod live;
#[path = "cluster/node_loss.rs"]
mod node_loss;
#[path = "cluster/spread.rs"]
mod spread;
