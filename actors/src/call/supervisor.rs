//! `CallSupervisor`: spawns one [`super::CallActor`] per verified media stream, named
//! `call:{call_sid}`, and watches them. It never stops when a child ends (ractor's default
//! would).
//!
//! It is the single recorder of a call actor's failure — a panic or error (`ActorFailed`), a
//! kill (`ActorTerminated` of an actor that had not finished: the actor sets a shared flag
//! when its records are final), or a start that failed: `actor_failures_total{actor="call"}`,
//! then, in a task so the supervisor never waits on the database, the fallback recorded for
//! `stream-ended`, the call's live sessions failed, the timeline entry, and the call completed
//! as `fallback` with end reason `actor_failed` (the error, or `killed`, as its detail). Only
//! then is the dead actor's Twilio writer released to close the socket.
//!
//! Messages: [`CallSupervisorMsg`]. Supervised by: [`crate::supervisor::RootSupervisor`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde_json::json;
use tokio::sync::oneshot;
use tracing::Instrument as _;

use super::{CallActor, CallArgs, CallDeps, CallStart};
use crate::ending::{Continuation, EndReason, Outcome};
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

/// A call actor the supervisor watches.
struct Child {
    call_id: CallId,
    call_sid: String,
    tenant_id: TenantId,
    /// Set by the actor once its records are final.
    finished: Arc<AtomicBool>,
    /// Lets the dead actor's Twilio writer close the socket.
    release: oneshot::Sender<()>,
}

/// State of the call supervisor.
pub struct CallSupervisorState {
    deps: CallDeps,
    children: HashMap<ActorId, Child>,
}

/// Records the failure of `child`'s actor (`detail`: the error, or `killed`), then releases
/// its socket.
fn record_failure(deps: &CallDeps, child: Child, detail: String) {
    meter::actor_failed(kind::CALL);
    tracing::error!(call_id = %child.call_id, call_sid = %child.call_sid, tenant = %child.tenant_id, error = %detail, "call actor failed");
    let deps = deps.clone();
    let span = tracing::info_span!("call", call_id = %child.call_id, call_sid = %child.call_sid, tenant = %child.tenant_id);
    tokio::spawn(
        async move {
            let store = &deps.store;
            let call = &child.call_id;
            // The fallback first: a `stream-ended` arriving meanwhile finds it (or a live
            // session, which means the same).
            if let Err(error) = store
                .set_continuation(call, Some(Continuation::Fallback))
                .await
            {
                tracing::warn!(error = %error, "could not record the fallback");
            }
            match store
                .fail_live_sessions(call, EndReason::ActorFailed, Some(&detail))
                .await
            {
                Ok(ended) => deps.evaluations.sessions_closed(&ended),
                Err(error) => tracing::warn!(error = %error, "could not fail the live sessions"),
            }
            let event = json!({"event": "call_actor_failed", "error": detail});
            if let Err(error) = store.add_call_event(call, "supervisor", &event).await {
                tracing::warn!(error = %error, "could not record the failure event");
            }
            if let Err(error) = deps
                .outcomes
                .complete(
                    call,
                    EndReason::ActorFailed,
                    Some(detail),
                    Some(Outcome::Fallback),
                )
                .await
            {
                tracing::warn!(error = %error, "could not complete the call");
            }
            deps.active.remove(call, "failed");
            let _ = child.release.send(());
        }
        .instrument(span),
    );
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
        crate::singleton::handled(myself.get_id());
        match message {
            CallSupervisorMsg::Start(start, reply) => {
                let _timer = HandleTimer::start(kind::CALL_SUPERVISOR, "start");
                let finished = Arc::new(AtomicBool::new(false));
                let (release, released) = oneshot::channel();
                let child = Child {
                    call_id: start.call.id.clone(),
                    call_sid: start.call.call_sid.clone().unwrap_or_default(),
                    tenant_id: start.call.tenant_id.clone(),
                    finished: Arc::clone(&finished),
                    release,
                };
                let name = format!("call:{}", child.call_sid);
                let args = CallArgs {
                    start: *start,
                    deps: state.deps.clone(),
                    finished,
                    release: released,
                };
                let result =
                    match Actor::spawn_linked(Some(name), CallActor, args, myself.get_cell()).await
                    {
                        Ok((actor, _join)) => {
                            state.children.insert(actor.get_id(), child);
                            Ok(())
                        }
                        Err(e) => {
                            let why = e.to_string();
                            record_failure(&state.deps, child, format!("start failed: {why}"));
                            Err(why)
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
                    record_failure(&state.deps, child, err.to_string());
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(child) = state.children.remove(&cell.get_id()) {
                    if child.finished.load(Ordering::SeqCst) {
                        tracing::debug!(call_id = %child.call_id, reason = ?reason, "call actor ended");
                    } else {
                        let detail = reason.unwrap_or_else(|| String::from("killed"));
                        record_failure(&state.deps, child, detail);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}
