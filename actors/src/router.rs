//! `RouterActor`: the one owner of phone-route changes.
//!
//! It performs every route mutation (create, update, delete) with its audit row, and keeps
//! the shared route cache ([`RouteCache`]) current with each committed change, so readers —
//! inbound admission, outbound placement — look routes up without a mailbox hop. What
//! admission records about calls it could not route ([`RoutingDiagnostic`]) goes to the
//! cluster views ([`crate::views`]).
//!
//! Everything else of the telephony edge (admission, streams, callbacks, control,
//! placement, reads) is plain modules in [`crate::telephony`], called directly.
//!
//! Messages: [`RouterMsg`]. Supervised by: [`crate::supervisor::RootSupervisor`].

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;

use crate::ids::{RouteId, TenantId};
use crate::meter::{HandleTimer, kind};
use crate::store::{
    NewAudit, OverLimit, Page, PhoneRoute, RouteDirection, RouteStatus, Store, StoreError,
};
use crate::tenant::AuditMeta;
use crate::time::now_ms;

mod cache;
mod diagnostics;

/// The telephony edge's error (the router's replies carry it).
pub use crate::telephony::TelephonyError as RouterError;
/// The control actions of a live call (re-exported for the call runtime).
pub use crate::telephony::control::ControlAction;
pub use cache::{ROUTE_CACHE_TTL, RouteCache};
pub use diagnostics::{MAX_DIAGNOSTICS, RoutingDiagnostic};

/// A phone route to create.
#[derive(Debug, Clone)]
pub struct NewRoute {
    /// Owner.
    pub tenant_id: TenantId,
    /// E.164.
    pub number: String,
    /// Agent.
    pub agent_key: String,
    /// Direction.
    pub direction: RouteDirection,
    /// Status.
    pub status: RouteStatus,
    /// Fallback number.
    pub fallback_number: Option<String>,
    /// Fallback message.
    pub fallback_message: Option<String>,
    /// At the limit.
    pub over_limit: OverLimit,
    /// Concurrency limit.
    pub max_concurrent_calls: i64,
    /// Staged-route test callers.
    pub test_callers: Vec<String>,
    /// Recording policy (`None`: not set).
    pub recording_policy: Option<crate::recording::RecordingPolicy>,
    /// Why an admin made it live although the readiness review failed (recorded on the
    /// audit row with the gates that failed).
    pub live_override: Option<LiveOverride>,
}

/// An admin's override of the readiness gate on `staged → live`, kept on the audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveOverride {
    /// Why.
    pub reason: String,
    /// The gates that failed when it was given.
    pub failing_gates: Vec<String>,
}

fn with_override(mut after: serde_json::Value, o: Option<&LiveOverride>) -> serde_json::Value {
    if let (Some(o), Some(map)) = (o, after.as_object_mut()) {
        map.insert(
            "live_override".into(),
            json!({"reason": o.reason, "failing_gates": o.failing_gates}),
        );
    }
    after
}

/// Changes to a route (`None` keeps; `Some(None)` clears a nullable field).
#[derive(Debug, Clone, Default)]
pub struct RoutePatch {
    /// New number.
    pub number: Option<String>,
    /// New agent.
    pub agent_key: Option<String>,
    /// New direction.
    pub direction: Option<RouteDirection>,
    /// New status.
    pub status: Option<RouteStatus>,
    /// New fallback number.
    pub fallback_number: Option<Option<String>>,
    /// New fallback message.
    pub fallback_message: Option<Option<String>>,
    /// New over-limit behaviour.
    pub over_limit: Option<OverLimit>,
    /// New limit.
    pub max_concurrent_calls: Option<i64>,
    /// New test callers.
    pub test_callers: Option<Vec<String>>,
    /// New recording policy (`Some(None)`: unset).
    pub recording_policy: Option<Option<crate::recording::RecordingPolicy>>,
    /// An admin's override of the readiness gate (when this change makes it live).
    pub live_override: Option<LiveOverride>,
}

type Reply<T> = RpcReplyPort<Result<T, RouterError>>;

/// Messages of the router. RPC variants end with their reply port.
pub enum RouterMsg {
    /// Creates a route.
    CreateRoute(NewRoute, AuditMeta, Reply<PhoneRoute>),
    /// Changes a route.
    UpdateRoute(RouteId, RoutePatch, AuditMeta, Reply<PhoneRoute>),
    /// Deletes a route.
    DeleteRoute(RouteId, AuditMeta, Reply<PhoneRoute>),
}

impl RouterMsg {
    /// Message name for metrics.
    pub const fn name(&self) -> &'static str {
        match self {
            RouterMsg::CreateRoute(..) => "create_route",
            RouterMsg::UpdateRoute(..) => "update_route",
            RouterMsg::DeleteRoute(..) => "delete_route",
        }
    }
}

/// The router behaviour.
pub struct RouterActor;

/// Arguments (child spec) of the router.
#[derive(Clone)]
pub struct RouterArgs {
    /// Database.
    pub store: Store,
    /// The shared route cache this actor keeps current.
    pub routes: RouteCache,
}

/// State of the router.
pub struct RouterState {
    store: Store,
    routes: RouteCache,
}

fn reply<T>(port: RpcReplyPort<T>, value: T) {
    if !port.is_closed() {
        let _ = port.send(value);
    }
}

fn route_audit_json(r: &PhoneRoute) -> serde_json::Value {
    json!({
        "id": r.id.as_str(),
        "tenant_id": r.tenant_id.as_str(),
        "number": r.number,
        "agent_key": r.agent_key,
        "direction": r.direction.as_str(),
        "status": r.status.as_str(),
        "fallback_number": r.fallback_number,
        "fallback_message": r.fallback_message,
        "over_limit": r.over_limit.as_str(),
        "max_concurrent_calls": r.max_concurrent_calls,
        "test_callers": r.test_callers,
        "recording_policy": r.recording_policy.map(crate::recording::RecordingPolicy::as_str),
    })
}

fn conflict(e: StoreError) -> RouterError {
    match e {
        StoreError::Conflict(what) => RouterError::Conflict(format!("{what} is already routed")),
        other => RouterError::Store(other),
    }
}

/// Reads a route (no mailbox: reads need no serialisation).
pub async fn get_route(store: &Store, id: &RouteId) -> Result<PhoneRoute, RouterError> {
    store
        .get_route(id)
        .await?
        .ok_or(RouterError::NotFound("phone route"))
}

/// Lists routes (optionally of one tenant).
pub async fn list_routes(
    store: &Store,
    tenant: Option<&TenantId>,
    limit: u32,
    offset: u32,
) -> Result<Page<PhoneRoute>, RouterError> {
    Ok(store.list_routes(tenant, limit, offset).await?)
}

impl RouterState {
    async fn create_route(
        &mut self,
        new: NewRoute,
        meta: AuditMeta,
    ) -> Result<PhoneRoute, RouterError> {
        if self.store.get_tenant(&new.tenant_id).await?.is_none() {
            return Err(RouterError::NotFound("tenant"));
        }
        let now = now_ms();
        let route = PhoneRoute {
            id: RouteId::generate(),
            tenant_id: new.tenant_id,
            number: new.number,
            agent_key: new.agent_key,
            direction: new.direction,
            status: new.status,
            fallback_number: new.fallback_number,
            fallback_message: new.fallback_message,
            over_limit: new.over_limit,
            max_concurrent_calls: new.max_concurrent_calls,
            test_callers: new.test_callers,
            recording_policy: new.recording_policy,
            created_at: now,
            updated_at: now,
        };
        let audit = NewAudit {
            actor: meta.actor,
            action: "phone_route.create",
            tenant_id: Some(route.tenant_id.clone()),
            target_type: "phone_route",
            target_id: route.id.to_string(),
            before: None,
            after: Some(with_override(
                route_audit_json(&route),
                new.live_override.as_ref(),
            )),
            request_id: meta.request_id,
        };
        self.store
            .insert_route(&route, &audit)
            .await
            .map_err(conflict)?;
        self.routes.put(&route.number, Some(route.clone()));
        Ok(route)
    }

    async fn update_route(
        &mut self,
        id: RouteId,
        p: RoutePatch,
        meta: AuditMeta,
    ) -> Result<PhoneRoute, RouterError> {
        let before = get_route(&self.store, &id).await?;
        let mut after = before.clone();
        if let Some(v) = p.number {
            after.number = v;
        }
        if let Some(v) = p.agent_key {
            after.agent_key = v;
        }
        if let Some(v) = p.direction {
            after.direction = v;
        }
        if let Some(v) = p.status {
            after.status = v;
        }
        if let Some(v) = p.fallback_number {
            after.fallback_number = v;
        }
        if let Some(v) = p.fallback_message {
            after.fallback_message = v;
        }
        if let Some(v) = p.over_limit {
            after.over_limit = v;
        }
        if let Some(v) = p.max_concurrent_calls {
            after.max_concurrent_calls = v;
        }
        if let Some(v) = p.test_callers {
            after.test_callers = v;
        }
        if let Some(v) = p.recording_policy {
            after.recording_policy = v;
        }
        after.updated_at = now_ms().max(before.updated_at);
        let audit = NewAudit {
            actor: meta.actor,
            action: "phone_route.update",
            tenant_id: Some(after.tenant_id.clone()),
            target_type: "phone_route",
            target_id: after.id.to_string(),
            before: Some(route_audit_json(&before)),
            after: Some(with_override(
                route_audit_json(&after),
                p.live_override.as_ref(),
            )),
            request_id: meta.request_id,
        };
        self.store
            .update_route(&after, &audit)
            .await
            .map_err(conflict)?;
        if before.number != after.number {
            self.routes.put(&before.number, None);
        }
        self.routes.put(&after.number, Some(after.clone()));
        Ok(after)
    }

    async fn delete_route(
        &mut self,
        id: RouteId,
        meta: AuditMeta,
    ) -> Result<PhoneRoute, RouterError> {
        let route = get_route(&self.store, &id).await?;
        let audit = NewAudit {
            actor: meta.actor,
            action: "phone_route.delete",
            tenant_id: Some(route.tenant_id.clone()),
            target_type: "phone_route",
            target_id: route.id.to_string(),
            before: Some(route_audit_json(&route)),
            after: None,
            request_id: meta.request_id,
        };
        if !self.store.delete_route(&id, &audit).await? {
            return Err(RouterError::NotFound("phone route"));
        }
        self.routes.put(&route.number, None);
        Ok(route)
    }
}

impl Actor for RouterActor {
    type Msg = RouterMsg;
    type State = RouterState;
    type Arguments = RouterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: RouterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(RouterState {
            store: args.store,
            routes: args.routes,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        crate::singleton::handled(myself.get_id());
        let _timer = HandleTimer::start(kind::ROUTER, message.name());
        match message {
            RouterMsg::CreateRoute(new, meta, port) => {
                let r = state.create_route(new, meta).await;
                reply(port, r);
            }
            RouterMsg::UpdateRoute(id, patch, meta, port) => {
                let r = state.update_route(id, patch, meta).await;
                reply(port, r);
            }
            RouterMsg::DeleteRoute(id, meta, port) => {
                let r = state.delete_route(id, meta).await;
                reply(port, r);
            }
        }
        Ok(())
    }
}
