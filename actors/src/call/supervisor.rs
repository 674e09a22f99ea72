//! `CallSupervisor`: spawns one [`super::CallActor`] per verified media stream, named
//! `call:{call_sid}`, and watches them. It never stops when a child ends (ractor's default
//! would): a normal end is counted; a failure is recorded on the call (end reason, failed
//! voice session, timeline event, `actor_failures_total{actor="call"}`), while the dead
//! actor's Twilio writer hands the still-live caller to the route's fallback.
//!
//! Messages: [`CallSupervisorMsg`]. Supervised by: [`crate::supervisor::RootSupervisor`].

use std::collections::HashMap;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde_json::json;

use super::{CallActor, CallArgs, CallDeps, CallStart};
use crate::ids::{CallId, TenantId};
use crate::meter::{self, HandleTimer, kind};

/// Messages of the call supervisor.
pub enum CallSupervisorMsg {
    /// Spawns the actor of a verified stream.
    Start(Box<CallStart>, RpcReplyPort<Result<(), String>>),
    /// Number of call actors alive.
    Live(RpcReplyPort<usize>),
}

/// The call supervisor behaviour.
pub struct CallSupervisor;

struct Child {
    direction: &'static str,
    call_id: CallId,
    call_sid: String,
    tenant_id: TenantId,
}

/// State of the call supervisor.
pub struct CallSupervisorState {
    deps: CallDeps,
    children: HashMap<ActorId, Child>,
}

impl CallSupervisorState {
    async fn record_failure(&self, child: &Child, why: &str) {
        meter::actor_failed(kind::CALL);
        metrics::counter!("calls_total", "direction" => child.direction, "outcome" => "failed")
            .increment(1);
        tracing::error!(call_id = %child.call_id, call_sid = %child.call_sid, tenant = %child.tenant_id, error = %why, "call actor failed");
        let store = &self.deps.store;
        let reason = format!("actor_failed: {why}");
        let _ = store.set_end_reason(&child.call_id, &reason).await;
        let _ = store
            .set_after_stream(&child.call_id, Some("fallback"))
            .await;
        if let Ok(sessions) = store.sessions_of_call(&child.call_id).await {
            for s in sessions.iter().filter(|s| s.status == "active") {
                let _ = store.finish_session(&s.id, "failed", &reason, None).await;
            }
        }
        let _ = store
            .add_call_event(
                &child.call_id,
                "supervisor",
                &json!({"event": "call_actor_failed", "error": why}),
            )
            .await;
        self.deps.active.remove(&child.call_id, "failed");
    }
}

impl Actor for CallSupervisor {
    type Msg = CallSupervisorMsg;
    type State = CallSupervisorState;
    type Arguments = CallDeps;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        deps: CallDeps,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(CallSupervisorState {
            deps,
            children: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CallSupervisorMsg::Start(start, reply) => {
                let _timer = HandleTimer::start(kind::CALL_SUPERVISOR, "start");
                let child = Child {
                    direction: start.call.direction.as_str(),
                    call_id: start.call.id.clone(),
                    call_sid: start.call.call_sid.clone().unwrap_or_default(),
                    tenant_id: start.call.tenant_id.clone(),
                };
                let name = format!("call:{}", child.call_sid);
                let args = CallArgs {
                    start: *start,
                    deps: state.deps.clone(),
                };
                let result = match Actor::spawn_linked(
                    Some(name),
                    CallActor,
                    args,
                    myself.get_cell(),
                )
                .await
                {
                    Ok((actor, _join)) => {
                        state.children.insert(actor.get_id(), child);
                        Ok(())
                    }
                    Err(e) => {
                        tracing::error!(call_id = %child.call_id, error = %e, "could not start the call actor");
                        Err(e.to_string())
                    }
                };
                if !reply.is_closed() {
                    let _ = reply.send(result);
                }
            }
            CallSupervisorMsg::Live(reply) => {
                if !reply.is_closed() {
                    let _ = reply.send(state.children.len());
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(child) = state.children.remove(&cell.get_id()) {
                    state.record_failure(&child, &err.to_string()).await;
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(child) = state.children.remove(&cell.get_id()) {
                    tracing::debug!(call_id = %child.call_id, reason = ?reason, "call actor ended");
                }
            }
            _ => {}
        }
        Ok(())
    }
}
