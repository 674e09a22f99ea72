//! The root of the supervision tree.
//!
//! `RootSupervisor` spawns the singleton actors from child specs it keeps (ractor restarts
//! mean re-creating the actor, and `Arguments` are not `Clone`), restarts any singleton that
//! fails or terminates, counts restarts and failures, and melts down when a child needs more
//! than `max_restarts` restarts within `restart_window`: it then stops restarting that child
//! and reports itself unhealthy, which turns `/health/ready` and `/health/live` to 503 so the
//! process gets replaced.
//!
//! Handlers never hold an `ActorRef` that could go stale: they go through a
//! [`SingletonRef`] (`crate::singleton`), which the root updates on every restart.
//!
//! Messages: [`RootMsg::Status`]. Supervised by: nobody (it is the root).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::watch;

use crate::call::supervisor::{CallSupervisor, CallSupervisorMsg};
use crate::call::{CallDeps, CallSettings};
use crate::carrier::Carrier;
use crate::crypto::SecretBox;
use crate::egress::Egress;
use crate::evaluation::{
    EvaluationActor, EvaluationArgs, EvaluationMsg, EvaluationSettings, Evaluations,
};
use crate::meter::{self, HandleTimer, kind};
use crate::notifier::{Notifier, NotifierActor, NotifierArgs, NotifierMsg, NotifierSettings};
use crate::outcome::Outcomes;
use crate::rollout::{RolloutActor, RolloutArgs, RolloutFeed, RolloutMsg};
use crate::router::{RouteCache, RouterActor, RouterArgs, RouterMsg};
use crate::singleton::SingletonRef;
use crate::store::Store;
use crate::stream_token::StreamTokenKeys;
use crate::telephony::call_control::TelephonyControl;
use crate::telephony::{PlacementSettings, PublicUrls, TelephonyConfig, TelephonyCtx};
use crate::tenant::{TenantActor, TenantArgs, TenantDirectory, TenantMsg, TenantRateLimiter};

/// What the root needs to build (and rebuild) its children.
#[derive(Clone)]
pub struct RootConfig {
    /// The database.
    pub store: Store,
    /// Encryption of tenant secrets at rest.
    pub secret_box: SecretBox,
    /// Per-tenant request limit, shared across tenant-actor restarts.
    pub tenant_rate_limiter: Arc<TenantRateLimiter>,
    /// How long an authenticated key stays cached (bounds staleness across nodes).
    pub key_cache_ttl: Duration,
    /// Restarts of one child tolerated within `restart_window` before meltdown.
    pub max_restarts: u32,
    /// The meltdown window.
    pub restart_window: Duration,
    /// The telephone network.
    pub carrier: Arc<dyn Carrier>,
    /// Stream-token secrets.
    pub stream_keys: StreamTokenKeys,
    /// This service's public URLs.
    pub urls: PublicUrls,
    /// Stream-token lifetime.
    pub stream_token_ttl: Duration,
    /// Window in which unfinished calls count as live.
    pub live_window: Duration,
    /// How long one actor waits for another.
    pub actor_timeout: Duration,
    /// Live calls of this node.
    pub active: Arc<crate::active::ActiveRegistry>,
    /// The writer of the cluster views (routing diagnostics, auth-transport failures).
    pub views: crate::views::ClusterViews,
    /// How call actors run (the AI endpoint, queue sizes, chaos hooks).
    pub calls: CallSettings,
    /// Outbound HTTP to tenant endpoints (SSRF-safe, signed).
    pub egress: Egress,
    /// Event webhook delivery settings.
    pub notifier: NotifierSettings,
    /// Reconciliation of outbound placements whose outcome is unknown.
    pub placement: PlacementSettings,
    /// The evaluation actor (workers, retries, the LLM judge).
    pub evaluation: EvaluationSettings,
    /// "Now" for wall-clock decisions (the pre-dial policy); the system clock in service.
    pub clock: crate::time::Clock,
    /// This process as a node (`crate::nodes`).
    pub node: crate::nodes::NodeInstance,
}

/// Health of the supervision tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorStatus {
    /// False after a meltdown.
    pub healthy: bool,
    /// Why the root melted down.
    pub meltdown: Option<String>,
    /// One entry per singleton.
    pub children: Vec<ChildStatus>,
}

/// Supervision counters of one singleton.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildStatus {
    /// Actor kind (`tenant`, …).
    pub kind: &'static str,
    /// Whether an incarnation is running.
    pub alive: bool,
    /// Restarts performed so far.
    pub restarts: u32,
    /// Failures (panics or errors) seen so far.
    pub failures: u32,
    /// Unexpected terminations (kills, stops) seen so far.
    pub terminations: u32,
    /// Description of the last failure or termination.
    pub last_failure: Option<String>,
    /// Messages sent to the running incarnation and not yet taken by its handler (`None`
    /// while it is down); counted on the send and the handle side, since ractor has no
    /// queue-length API.
    pub mailbox_depth: Option<u64>,
}

/// Messages of the root supervisor.
pub enum RootMsg {
    /// Reports the tree's health.
    Status(RpcReplyPort<SupervisorStatus>),
}

/// The handles the HTTP layer and tests use to reach the tree.
#[derive(Clone)]
pub struct Actors {
    /// The root supervisor.
    pub root: ActorRef<RootMsg>,
    /// The tenant actor (current incarnation).
    pub tenant: SingletonRef<TenantMsg>,
    /// The router actor (current incarnation).
    pub router: SingletonRef<RouterMsg>,
    /// The rollout actor (current incarnation).
    pub rollout: SingletonRef<RolloutMsg>,
    /// The call supervisor (current incarnation).
    pub calls: SingletonRef<CallSupervisorMsg>,
    /// Tenant events: emission, and the notifier actor (current incarnation).
    pub notifier: Notifier,
    /// Evaluations: the API's reads and writes, and the evaluation actor's wake-up.
    pub evaluations: Evaluations,
    /// The one recorder of how calls end.
    pub outcomes: Outcomes,
    /// Changes whenever the tree's health changes (e.g. meltdown).
    pub health: watch::Receiver<bool>,
    /// Live calls of this node.
    pub active: Arc<crate::active::ActiveRegistry>,
    /// API keys, Twilio accounts and rate limits, read without the tenant mailbox.
    pub tenants: TenantDirectory,
    /// The telephony edge (admission, streams, callbacks, control, placement, reads).
    pub telephony: TelephonyCtx,
    /// Fault injection into live calls (armed by `CHAOS_HOOKS`).
    pub chaos: crate::call::chaos::Chaos,
}

/// The root supervisor behaviour.
pub struct RootSupervisor;

/// Arguments of the root: configuration and the handles it fills in.
pub struct RootArgs {
    config: RootConfig,
    tenant: SingletonRef<TenantMsg>,
    router: SingletonRef<RouterMsg>,
    rollout: SingletonRef<RolloutMsg>,
    calls: SingletonRef<CallSupervisorMsg>,
    notifier: SingletonRef<NotifierMsg>,
    notifier_handle: Notifier,
    evaluation: SingletonRef<EvaluationMsg>,
    evaluations: Evaluations,
    directory: TenantDirectory,
    telephony: TelephonyCtx,
    calls_deps: CallDeps,
    health: watch::Sender<bool>,
}

/// Which singleton a child spec builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChildKind {
    Tenant,
    Rollout,
    Router,
    Notifier,
    Evaluation,
    Calls,
}

impl ChildKind {
    /// Start order: the router reaches the tenant actor; evaluations and calls emit events.
    const ALL: [ChildKind; 6] = [
        ChildKind::Tenant,
        ChildKind::Rollout,
        ChildKind::Router,
        ChildKind::Notifier,
        ChildKind::Evaluation,
        ChildKind::Calls,
    ];

    fn name(self) -> &'static str {
        match self {
            ChildKind::Tenant => kind::TENANT,
            ChildKind::Router => kind::ROUTER,
            ChildKind::Rollout => kind::ROLLOUT,
            ChildKind::Calls => kind::CALL_SUPERVISOR,
            ChildKind::Notifier => kind::NOTIFIER,
            ChildKind::Evaluation => kind::EVALUATION,
        }
    }
}

/// Everything needed to rebuild one child, plus its counters.
struct ChildSpec {
    kind: ChildKind,
    cell: Option<ActorCell>,
    restarts: u32,
    failures: u32,
    terminations: u32,
    recent: VecDeque<Instant>,
    last_failure: Option<String>,
}

/// State of the root.
pub struct RootState {
    /// Rebuild recipes and counters, one per singleton.
    children: Vec<ChildSpec>,
    config: RootConfig,
    tenant: SingletonRef<TenantMsg>,
    router: SingletonRef<RouterMsg>,
    rollout: SingletonRef<RolloutMsg>,
    calls: SingletonRef<CallSupervisorMsg>,
    notifier: SingletonRef<NotifierMsg>,
    notifier_handle: Notifier,
    evaluation: SingletonRef<EvaluationMsg>,
    evaluations: Evaluations,
    directory: TenantDirectory,
    telephony: TelephonyCtx,
    /// What every call actor needs, complete (the call supervisor is rebuilt with it).
    calls_deps: CallDeps,
    health: watch::Sender<bool>,
    /// Why the root melted down, once it has.
    meltdown: Option<String>,
}

impl RootSupervisor {
    /// Spawns the tree and returns its handles.
    pub async fn start(config: RootConfig) -> Result<Actors, ractor::SpawnErr> {
        let tenant = SingletonRef::new();
        let router = SingletonRef::new();
        let rollout = SingletonRef::new();
        let calls = SingletonRef::new();
        let notifier = SingletonRef::new();
        let notifier_handle = Notifier::new(config.store.clone(), notifier.clone());
        let evaluation = SingletonRef::new();
        let evaluations = Evaluations::new(config.store.clone(), evaluation.clone());
        let outcomes = Outcomes::new(config.store.clone(), notifier_handle.clone());
        let directory = TenantDirectory::new(
            config.store.clone(),
            config.secret_box.clone(),
            Arc::clone(&config.tenant_rate_limiter),
            config.key_cache_ttl,
        );
        let telephony = TelephonyCtx::new(TelephonyConfig {
            store: config.store.clone(),
            carrier: Arc::clone(&config.carrier),
            keys: config.stream_keys.clone(),
            urls: config.urls.clone(),
            tenants: directory.clone(),
            rollout: rollout.clone(),
            outcomes: outcomes.clone(),
            notifier: notifier_handle.clone(),
            routes: RouteCache::default(),
            views: config.views.clone(),
            token_ttl: config.stream_token_ttl,
            live_window: config.live_window,
            actor_timeout: config.actor_timeout,
            placement: config.placement,
            clock: config.clock.clone(),
            node: config.node.clone(),
            active: Arc::clone(&config.active),
            evaluations: evaluations.clone(),
        });
        let (health_tx, health_rx) = watch::channel(true);
        let active = Arc::clone(&config.active);
        let chaos = crate::call::chaos::Chaos::new(
            config.calls.chaos,
            Arc::clone(&config.active),
            config.store.clone(),
        );
        let calls_deps = CallDeps {
            store: config.store.clone(),
            settings: config.calls.clone(),
            active: Arc::clone(&config.active),
            tenant: tenant.clone(),
            control: Arc::new(TelephonyControl::new(telephony.clone())),
            egress: config.egress.clone(),
            notifier: notifier_handle.clone(),
            outcomes: outcomes.clone(),
            evaluations: evaluations.clone(),
        };
        let args = RootArgs {
            config,
            calls_deps,
            tenant: tenant.clone(),
            router: router.clone(),
            rollout: rollout.clone(),
            calls: calls.clone(),
            notifier,
            notifier_handle: notifier_handle.clone(),
            evaluation,
            evaluations: evaluations.clone(),
            directory: directory.clone(),
            telephony: telephony.clone(),
            health: health_tx,
        };
        let (root, _join) = Actor::spawn(None, RootSupervisor, args).await?;
        Ok(Actors {
            root,
            tenant,
            router,
            rollout,
            calls,
            notifier: notifier_handle,
            evaluations,
            outcomes,
            health: health_rx,
            active,
            tenants: directory,
            telephony,
            chaos,
        })
    }

    async fn spawn_child(
        myself: &ActorRef<RootMsg>,
        state: &RootState,
        kind: ChildKind,
    ) -> Result<ActorCell, ActorProcessingErr> {
        match kind {
            ChildKind::Tenant => {
                let args = TenantArgs {
                    store: state.config.store.clone(),
                    secret_box: state.config.secret_box.clone(),
                    directory: state.directory.clone(),
                };
                let (actor, _join) =
                    Actor::spawn_linked(None, TenantActor, args, myself.get_cell()).await?;
                let cell = actor.get_cell();
                state.tenant.set(Some(actor));
                Ok(cell)
            }
            ChildKind::Calls => {
                let deps = state.calls_deps.clone();
                let (actor, _join) =
                    Actor::spawn_linked(None, CallSupervisor, deps, myself.get_cell()).await?;
                let cell = actor.get_cell();
                state.calls.set(Some(actor));
                Ok(cell)
            }
            ChildKind::Rollout => {
                let mut args = RolloutArgs::new(
                    state.config.store.clone(),
                    Some(state.notifier_handle.clone()),
                );
                args.live_window = state.config.live_window;
                let (actor, _join) =
                    Actor::spawn_linked(None, RolloutActor, args, myself.get_cell()).await?;
                let cell = actor.get_cell();
                state.rollout.set(Some(actor));
                Ok(cell)
            }
            ChildKind::Notifier => {
                let c = &state.config;
                let args = NotifierArgs {
                    store: c.store.clone(),
                    secret_box: c.secret_box.clone(),
                    egress: c.egress.clone(),
                    settings: c.notifier.clone(),
                    wake: state.notifier_handle.wake_flag(),
                    chaos: c.calls.chaos,
                };
                let (actor, _join) =
                    Actor::spawn_linked(None, NotifierActor, args, myself.get_cell()).await?;
                let cell = actor.get_cell();
                state.notifier.set(Some(actor));
                Ok(cell)
            }
            ChildKind::Evaluation => {
                let c = &state.config;
                let args = EvaluationArgs {
                    store: c.store.clone(),
                    secret_box: c.secret_box.clone(),
                    settings: c.evaluation.clone(),
                    wake: state.evaluations.wake_flag(),
                    // Every result feeds the rollout guardrails (DESIGN §6).
                    sink: Some(RolloutFeed::sink(state.rollout.clone())),
                    notifier: Some(state.notifier_handle.clone()),
                };
                let (actor, _join) =
                    Actor::spawn_linked(None, EvaluationActor, args, myself.get_cell()).await?;
                let cell = actor.get_cell();
                state.evaluation.set(Some(actor));
                Ok(cell)
            }
            ChildKind::Router => {
                let args = RouterArgs {
                    store: state.config.store.clone(),
                    routes: state.telephony.routes().clone(),
                };
                let (actor, _join) =
                    Actor::spawn_linked(None, RouterActor, args, myself.get_cell()).await?;
                let cell = actor.get_cell();
                state.router.set(Some(actor));
                Ok(cell)
            }
        }
    }

    fn mailbox_depth(state: &RootState, kind: ChildKind) -> Option<u64> {
        match kind {
            ChildKind::Tenant => state.tenant.mailbox_depth(),
            ChildKind::Router => state.router.mailbox_depth(),
            ChildKind::Rollout => state.rollout.mailbox_depth(),
            ChildKind::Calls => state.calls.mailbox_depth(),
            ChildKind::Notifier => state.notifier.mailbox_depth(),
            ChildKind::Evaluation => state.evaluation.mailbox_depth(),
        }
    }

    fn clear_handle(state: &RootState, kind: ChildKind) {
        match kind {
            ChildKind::Tenant => state.tenant.set(None),
            ChildKind::Router => state.router.set(None),
            ChildKind::Rollout => state.rollout.set(None),
            ChildKind::Calls => state.calls.set(None),
            ChildKind::Notifier => state.notifier.set(None),
            ChildKind::Evaluation => state.evaluation.set(None),
        }
    }

    async fn child_ended(
        &self,
        myself: &ActorRef<RootMsg>,
        state: &mut RootState,
        cell: &ActorCell,
        failed: bool,
        why: String,
    ) -> Result<(), ActorProcessingErr> {
        let Some(idx) = state
            .children
            .iter()
            .position(|c| c.cell.as_ref().map(|c| c.get_id()) == Some(cell.get_id()))
        else {
            return Ok(());
        };
        let kind = state.children[idx].kind;
        Self::clear_handle(state, kind);
        let window = state.config.restart_window;
        let max = state.config.max_restarts as usize;
        let now = Instant::now();
        let spec = &mut state.children[idx];
        spec.cell = None;
        if failed {
            spec.failures += 1;
            meter::actor_failed(kind.name());
        } else {
            spec.terminations += 1;
            meter::actor_terminated(kind.name());
        }
        spec.last_failure = Some(why.clone());
        spec.recent.push_back(now);
        while spec
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            spec.recent.pop_front();
        }
        tracing::warn!(actor = kind.name(), failed, reason = %why, "singleton actor ended");
        if spec.recent.len() > max {
            let reason = format!(
                "{} ended {} times within {:?}; last: {why}",
                kind.name(),
                spec.recent.len(),
                window
            );
            tracing::error!(actor = kind.name(), reason = %reason, "supervisor meltdown: giving up restarts");
            metrics::gauge!("supervisor_meltdown").set(1.0);
            state.meltdown = Some(reason);
            state.health.send_replace(false);
            return Ok(());
        }
        let cell = Self::spawn_child(myself, state, kind).await?;
        let spec = &mut state.children[idx];
        spec.cell = Some(cell);
        spec.restarts += 1;
        meter::actor_restarted(kind.name());
        tracing::info!(
            actor = kind.name(),
            restarts = spec.restarts,
            "singleton actor restarted"
        );
        Ok(())
    }
}

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RootArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        metrics::gauge!("supervisor_meltdown").set(0.0);
        let mut state = RootState {
            children: Vec::new(),
            config: args.config,
            tenant: args.tenant,
            router: args.router,
            rollout: args.rollout,
            calls: args.calls,
            notifier: args.notifier,
            notifier_handle: args.notifier_handle,
            evaluation: args.evaluation,
            evaluations: args.evaluations,
            directory: args.directory,
            telephony: args.telephony,
            calls_deps: args.calls_deps,
            health: args.health,
            meltdown: None,
        };
        for kind in ChildKind::ALL {
            let cell = Self::spawn_child(&myself, &state, kind).await?;
            state.children.push(ChildSpec {
                kind,
                cell: Some(cell),
                restarts: 0,
                failures: 0,
                terminations: 0,
                recent: VecDeque::new(),
                last_failure: None,
            });
        }
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RootMsg::Status(reply) => {
                let _timer = HandleTimer::start(kind::ROOT, "status");
                let status = SupervisorStatus {
                    healthy: state.meltdown.is_none(),
                    meltdown: state.meltdown.clone(),
                    children: state
                        .children
                        .iter()
                        .map(|c| ChildStatus {
                            kind: c.kind.name(),
                            alive: c.cell.is_some(),
                            restarts: c.restarts,
                            failures: c.failures,
                            terminations: c.terminations,
                            last_failure: c.last_failure.clone(),
                            mailbox_depth: Self::mailbox_depth(state, c.kind),
                        })
                        .collect(),
                };
                if !reply.is_closed() {
                    let _ = reply.send(status);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                self.child_ended(&myself, state, &cell, true, format!("failed: {err}"))
                    .await
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let why = reason.unwrap_or_else(|| String::from("terminated"));
                self.child_ended(&myself, state, &cell, false, why).await
            }
            _ => Ok(()),
        }
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Children stopped gracefully here would be reported back to us as terminations;
        // forget them first so nothing is restarted during shutdown.
        for spec in &mut state.children {
            spec.cell = None;
        }
        state.tenant.set(None);
        state.router.set(None);
        state.rollout.set(None);
        state.calls.set(None);
        state.notifier.set(None);
        state.evaluation.set(None);
        myself
            .stop_children_and_wait(Some(String::from("shutdown")), Some(Duration::from_secs(5)))
            .await;
        Ok(())
    }
}
