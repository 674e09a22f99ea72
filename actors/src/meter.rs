//! Per-actor metrics: messages handled and handler duration, labelled by actor *kind* and
//! message name (never by a per-call id), plus supervision counters.

use std::time::Instant;

use metrics::{counter, histogram};

/// Names of the actor kinds used as the `actor` label.
pub mod kind {
    /// The root supervisor.
    pub const ROOT: &str = "root";
    /// The tenant actor.
    pub const TENANT: &str = "tenant";
    /// The router actor.
    pub const ROUTER: &str = "router";
    /// The rollout actor.
    pub const ROLLOUT: &str = "rollout";
    /// Call actors.
    pub const CALL: &str = "call";
    /// The call supervisor.
    pub const CALL_SUPERVISOR: &str = "call_supervisor";
    /// The notifier actor (event webhooks).
    pub const NOTIFIER: &str = "notifier";
    /// The evaluation actor.
    pub const EVALUATION: &str = "evaluation";
}

/// Times one handled message of an actor kind.
pub struct HandleTimer {
    actor: &'static str,
    msg: &'static str,
    started: Instant,
}

impl HandleTimer {
    /// Starts timing `msg` handled by an actor of kind `actor`.
    pub fn start(actor: &'static str, msg: &'static str) -> Self {
        Self {
            actor,
            msg,
            started: Instant::now(),
        }
    }
}

impl Drop for HandleTimer {
    fn drop(&mut self) {
        counter!("actor_messages_total", "actor" => self.actor, "msg" => self.msg).increment(1);
        histogram!("actor_handle_seconds", "actor" => self.actor, "msg" => self.msg)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// Counts a child failure (panic or error) seen by a supervisor.
pub fn actor_failed(actor: &'static str) {
    counter!("actor_failures_total", "actor" => actor).increment(1);
}

/// Counts a child termination that was not asked for (killed or stopped on its own).
pub fn actor_terminated(actor: &'static str) {
    counter!("actor_terminations_total", "actor" => actor).increment(1);
}

/// Counts a restart performed by a supervisor.
pub fn actor_restarted(actor: &'static str) {
    counter!("actor_restarts_total", "actor" => actor).increment(1);
}

/// Registers descriptions of the actor metrics (call once at start-up).
pub fn describe() {
    metrics::describe_counter!(
        "actor_messages_total",
        "Messages handled, by actor kind and message"
    );
    metrics::describe_histogram!(
        "actor_handle_seconds",
        metrics::Unit::Seconds,
        "Handler duration, by actor kind and message"
    );
    metrics::describe_counter!(
        "actor_failures_total",
        "Actor failures (panic or error), by actor kind"
    );
    metrics::describe_counter!(
        "actor_terminations_total",
        "Unexpected actor terminations, by actor kind"
    );
    metrics::describe_counter!(
        "actor_restarts_total",
        "Restarts performed by the root supervisor, by actor kind"
    );
    metrics::describe_gauge!(
        "supervisor_meltdown",
        "1 when the root supervisor gave up restarting a child"
    );
}
