//! The telephony edge as plain modules: inbound admission ([`admission`]), stream tokens and
//! the media stream's start and end ([`stream`]), carrier callbacks ([`status`]), control of
//! a live call ([`control`]), outbound placement ([`outbound`]), the handoff dial result
//! ([`dial`]) and call and session reads ([`reads`]) — async functions over one cloneable
//! context, [`TelephonyCtx`], that handlers and the call runtime call directly.
//!
//! No actor stands in front of these: none of them owns state that must change in one place.
//! What does — the phone-route cache — belongs to the router actor ([`crate::router`]),
//! whose shared handle the context reads; the routing diagnostics go to the cluster views
//! ([`crate::views`]). Whoever does the work
//! records its outcome: every way a call ends goes through [`Outcomes`], and outbound
//! placement runs in a task that owns its result whether or not anyone still waits for it.
//!
//! This module knows no HTTP and no TwiML: its answers are [`StreamInstructions`] and
//! [`Fallback`]s that the HTTP layer renders.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use ractor::call_t;
use serde_json::json;
use tokio::sync::{Notify, broadcast};

use crate::carrier::{Carrier, StreamInstructions};
use crate::ids::{AgentVersionId, CallId, TenantId};
use crate::notifier::Notifier;
use crate::outcome::Outcomes;
use crate::rollout::{ResolveRequest, Resolved, RolloutError, RolloutMsg};
use crate::router::RouteCache;
use crate::singleton::SingletonRef;
use crate::store::{CallRecord, Store};
use crate::stream_token::{StreamClaims, StreamTokenKeys, new_nonce};
use crate::tenant::{TenantDirectory, TwilioAccount};
use crate::time::now_ms;
use crate::views::ClusterViews;

pub mod admission;
pub mod amd;
pub mod call_control;
pub mod control;
pub mod dial;
mod error;
pub mod outbound;
pub mod queue_transfer;
pub mod reads;
pub mod reconcile;
pub mod status;
pub mod stream;
mod urls;
pub mod warm;

pub use error::TelephonyError;
pub use urls::{
    DEFAULT_FALLBACK_MESSAGE, DEFAULT_UNAVAILABLE_MESSAGE, Fallback, PublicUrls, UNROUTED_MESSAGE,
};

/// Which call a carrier callback is about, as far as the callback says.
#[derive(Debug, Clone)]
pub struct CallbackTarget {
    /// Tenant of the signing account.
    pub tenant_id: TenantId,
    /// `call_id` from our callback URL, if present.
    pub call_id: Option<CallId>,
    /// `CallSid`.
    pub call_sid: String,
}

/// What happens after the AI leg (or a handoff's dial): the answer to the carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterStream {
    /// Hang up.
    Hangup,
    /// Say a message, then dial the fallback number (or hang up without one).
    Fallback(Fallback),
    /// A fresh stream to the agent.
    Resume(StreamInstructions),
}

/// How an outbound placement whose carrier request timed out is reconciled.
#[derive(Debug, Clone, Copy)]
pub struct PlacementSettings {
    /// Between two carrier lookups (status callbacks wake the placement at once).
    pub lookup_interval: Duration,
    /// How long the carrier may take to show the call before it is declared not found.
    pub lookup_grace: Duration,
}

impl Default for PlacementSettings {
    fn default() -> Self {
        Self {
            lookup_interval: Duration::from_secs(5),
            lookup_grace: Duration::from_secs(120),
        }
    }
}

/// What the telephony edge is built from.
#[derive(Clone)]
pub struct TelephonyConfig {
    /// The database.
    pub store: Store,
    /// The telephone network.
    pub carrier: Arc<dyn Carrier>,
    /// Stream-token secrets.
    pub keys: StreamTokenKeys,
    /// This service's public URLs.
    pub urls: PublicUrls,
    /// Tenants' Twilio accounts (the shared cache the tenant actor keeps current).
    pub tenants: TenantDirectory,
    /// The rollout actor (the agent version of a call).
    pub rollout: SingletonRef<RolloutMsg>,
    /// The one recorder of how calls end.
    pub outcomes: Outcomes,
    /// Tenant events (callback tasks created by unanswered handoffs).
    pub notifier: Notifier,
    /// Number → phone route (kept current by the router actor).
    pub routes: RouteCache,
    /// Where unrouted and refused inbound calls are recorded (the cluster views).
    pub views: ClusterViews,
    /// Stream-token lifetime.
    pub token_ttl: Duration,
    /// Calls older than this no longer count as live (a lost final callback cannot hold a
    /// concurrency slot forever).
    pub live_window: Duration,
    /// How long to wait for the rollout actor.
    pub actor_timeout: Duration,
    /// Reconciliation of placements whose outcome is unknown.
    pub placement: PlacementSettings,
    /// "Now" for the pre-dial policy (calling windows, daily attempts).
    pub clock: crate::time::Clock,
    /// This process as a node: the calls it admits, places or streams name it.
    pub node: crate::nodes::NodeInstance,
    /// Live calls of this node (`stream-ended` lets a leg that is ending record its end).
    pub active: Arc<crate::active::ActiveRegistry>,
    /// The evaluation actor's handle: woken when reconciliation closes sessions that left
    /// evaluation jobs.
    pub evaluations: crate::evaluation::Evaluations,
}

/// The telephony edge's context: cheap to clone, shared by handlers, tasks and actors.
#[derive(Clone)]
pub struct TelephonyCtx {
    inner: Arc<Inner>,
}

struct Inner {
    config: TelephonyConfig,
    /// Placements waiting for their outcome (call → its wake-up); status callbacks wake them.
    placements: DashMap<CallId, Arc<Notify>>,
    /// Calls whose placement recorded its final outcome.
    settled: broadcast::Sender<CallId>,
}

impl TelephonyCtx {
    /// The context over `config`.
    pub fn new(config: TelephonyConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                placements: DashMap::new(),
                settled: broadcast::Sender::new(256),
            }),
        }
    }

    /// What it was built from.
    pub fn config(&self) -> &TelephonyConfig {
        &self.inner.config
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.inner.config.store
    }

    /// The one recorder of how calls end.
    pub fn outcomes(&self) -> &Outcomes {
        &self.inner.config.outcomes
    }

    /// This service's public URLs.
    pub fn urls(&self) -> &PublicUrls {
        &self.inner.config.urls
    }

    /// This process as a node.
    pub fn node(&self) -> &crate::nodes::NodeInstance {
        &self.inner.config.node
    }

    /// The evaluation actor's handle.
    pub fn evaluations(&self) -> &crate::evaluation::Evaluations {
        &self.inner.config.evaluations
    }

    /// The phone-route cache.
    pub fn routes(&self) -> &RouteCache {
        &self.inner.config.routes
    }

    /// The cluster views' writer (routing diagnostics, auth-transport failures).
    pub fn views(&self) -> &ClusterViews {
        &self.inner.config.views
    }

    /// Creation time from which unfinished calls count as live.
    fn live_since(&self) -> i64 {
        now_ms() - i64::try_from(self.inner.config.live_window.as_millis()).unwrap_or(i64::MAX)
    }

    /// A fresh single-use stream token for `call`.
    fn mint(&self, call: &CallRecord) -> String {
        let ttl = i64::try_from(self.inner.config.token_ttl.as_secs()).unwrap_or(300);
        self.inner.config.keys.mint(&StreamClaims {
            v: 1,
            call: call.id.to_string(),
            sid: call.call_sid.clone(),
            tenant: call.tenant_id.to_string(),
            route: call.route_id.as_ref().map(ToString::to_string),
            agent_version: call.agent_version_id.clone(),
            exp: now_ms() / 1000 + ttl,
            nonce: new_nonce(),
        })
    }

    /// Stream instructions with a fresh token for `call`.
    fn stream_for(&self, call: &CallRecord) -> StreamInstructions {
        let token = self.mint(call);
        self.inner.config.urls.stream(&call.id, token)
    }

    /// The tenant's Twilio account (from the shared cache; a miss reads the store).
    async fn account(&self, tenant: &TenantId) -> Result<TwilioAccount, TelephonyError> {
        self.inner
            .config
            .tenants
            .account_of_tenant(tenant)
            .await?
            .ok_or(TelephonyError::NoCredentials)
    }

    /// The agent version a call runs and its rollout arm (`Ok(Err(why))` when the agent has
    /// none to run); `number` is the one assignment hashes (caller inbound, callee outbound).
    async fn resolve(
        &self,
        tenant: &TenantId,
        key: &str,
        pinned: Option<AgentVersionId>,
        number: &str,
    ) -> Result<Result<Resolved, String>, TelephonyError> {
        let actor = self
            .inner
            .config
            .rollout
            .get()
            .ok_or_else(|| TelephonyError::Unavailable("rollout restarting".into()))?;
        let ms = u64::try_from(self.inner.config.actor_timeout.as_millis()).unwrap_or(5000);
        let req = ResolveRequest {
            tenant: tenant.clone(),
            agent_key: key.to_owned(),
            pinned,
            number: number.to_owned(),
        };
        match call_t!(actor, RolloutMsg::Resolve, ms, req) {
            Ok(Ok(v)) => Ok(Ok(v)),
            Ok(Err(RolloutError::NoVersion(why))) => Ok(Err(why)),
            Ok(Err(e)) => Err(TelephonyError::Unavailable(e.to_string())),
            Err(e) => Err(TelephonyError::Unavailable(e.to_string())),
        }
    }

    /// Records on a call's timeline which rollout arm chose its version.
    async fn record_arm(&self, call: &CallId, resolved: &Resolved) {
        self.event(
            call,
            "rollout",
            json!({
                "arm": resolved.arm.as_str(),
                "agent_version_id": resolved.version.id.as_str(),
                "canary_percent": resolved.canary_percent,
            }),
        )
        .await;
    }

    /// Appends to a call's timeline (a failure is logged, never fatal).
    async fn event(&self, call: &CallId, kind: &str, detail: serde_json::Value) {
        if let Err(error) = self.store().add_call_event(call, kind, &detail).await {
            tracing::warn!(call_id = %call, error = %error, "could not record call event");
        }
    }

    /// The call a carrier callback is about, scoped to its tenant.
    async fn find_call(
        &self,
        target: &CallbackTarget,
    ) -> Result<Option<CallRecord>, TelephonyError> {
        let call = match &target.call_id {
            Some(id) => self.store().get_call(&target.tenant_id, id).await?,
            None => self.store().call_by_sid(&target.call_sid).await?,
        };
        Ok(call.filter(|c| c.tenant_id == target.tenant_id))
    }

    /// Completes `call` (see [`Outcomes::complete`]) where the caller must hear an answer
    /// whatever happens to the record: a failure is logged and counted, never returned.
    async fn complete_or_log(
        &self,
        call: &CallId,
        reason: crate::ending::EndReason,
        outcome: Option<crate::ending::Outcome>,
    ) {
        if let Err(error) = self.outcomes().complete(call, reason, None, outcome).await {
            metrics::counter!("call_completion_failures_total").increment(1);
            tracing::error!(call_id = %call, error = %error, "could not complete the call");
        }
    }

    /// A call of `tenant` by our id or its `CallSid`.
    async fn lookup(&self, tenant: &TenantId, id: &str) -> Result<CallRecord, TelephonyError> {
        let found = match CallId::parse(id) {
            Some(call_id) => self.store().get_call(tenant, &call_id).await?,
            None => self
                .store()
                .call_by_sid(id)
                .await?
                .filter(|c| &c.tenant_id == tenant),
        };
        found.ok_or(TelephonyError::NotFound("call"))
    }

    /// Registers a placement waiting for its outcome; returns its wake-up.
    fn watch_placement(&self, call: &CallId) -> Arc<Notify> {
        Arc::clone(
            self.inner
                .placements
                .entry(call.clone())
                .or_insert_with(|| Arc::new(Notify::new()))
                .value(),
        )
    }

    /// The placement of `call` has its outcome (or gave up waiting).
    fn unwatch_placement(&self, call: &CallId) {
        self.inner.placements.remove(call);
    }

    /// Something about `call` changed (a status callback): a placement waiting for its
    /// outcome looks again now.
    fn wake_placement(&self, call: &CallId) {
        if let Some(waiting) = self.inner.placements.get(call) {
            waiting.notify_one();
        }
    }

    /// Calls whose placement has recorded its final outcome (in the call and the idempotency
    /// record), as they settle: lets tests and diagnostics await a placement nobody waits for.
    pub fn subscribe_placements(&self) -> broadcast::Receiver<CallId> {
        self.inner.settled.subscribe()
    }

    fn placement_settled(&self, call: CallId) {
        let _ = self.inner.settled.send(call);
    }

    /// Placements waiting for their outcome on this node.
    pub fn placements_waiting(&self) -> usize {
        self.inner.placements.len()
    }
}
