//! `RolloutActor`: agents and agent versions, and the choice of the version a call runs.
//!
//! It owns agent administration (each change with its audit row), the rollout policy of
//! each agent (a stable version, an optional canary with a stage schedule and guardrails;
//! DESIGN §6), and resolves an agent key to a version for a call:
//!
//! - a version pinned by the call (or its route) runs as asked (any non-retired version of
//!   that agent): arm `pinned`, the policy bypassed;
//! - with a policy, the caller's number (the callee's for outbound calls) is hashed
//!   ([`assign`]): below the canary's current percentage the call runs the canary (arm
//!   `canary`), otherwise the stable version (arm `stable`);
//! - without a policy, the agent's newest approved version (arm `stable`).
//!
//! Guardrails ([`guardrails`]) are checked on every evaluation notice ([`RolloutFeed`], the
//! evaluation actor's sink) and on a timer; the decisions ([`decide`]) are taken and
//! recorded in [`canary`]. The governance view is [`governance`]. Approved versions are
//! immutable; a change is a new version.
//!
//! Metrics: `rollout_calls_total{arm}`, `rollout_decisions_total{action}`.
//!
//! Messages: [`RolloutMsg`]. Supervised by: [`crate::supervisor::RootSupervisor`].

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;

pub mod assign;
pub mod canary;
pub mod decide;
pub mod feed;
pub mod governance;
pub mod guardrails;
#[cfg(test)]
mod tests;

pub use assign::Arm;
pub use canary::PolicySpec;
pub use decide::Action;
pub use feed::RolloutFeed;
pub use governance::AgentGovernance;

use crate::evaluation::EvaluationNotice;
use crate::notifier::Notifier;
use crate::store::RolloutPolicy;

use crate::governance::{GovernanceError, approval};
use crate::ids::{AgentId, AgentVersionId, TenantId};
use crate::meter::{HandleTimer, kind};
use crate::store::{
    Agent, AgentVersion, NewAudit, Store, StoreError, TurnDetection, VersionStatus,
};
use crate::tenant::AuditMeta;
use crate::time::now_ms;

/// Errors of the rollout actor.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// Not found (what).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// State conflict (e.g. editing an approved version).
    #[error("{0}")]
    Conflict(String),
    /// No version can run the call.
    #[error("{0}")]
    NoVersion(String),
    /// The identity may not do this (code, message), e.g. the two-person approval rule.
    #[error("{1}")]
    Forbidden(&'static str, String),
    /// A value was refused (the field named).
    #[error("{0}: {1}")]
    Invalid(String, String),
    /// The store failed.
    #[error("store")]
    Store(#[from] StoreError),
}

/// An agent to create.
#[derive(Debug, Clone)]
pub struct NewAgent {
    /// Owner.
    pub tenant_id: TenantId,
    /// Key (unique per tenant).
    pub key: String,
    /// Display name.
    pub name: String,
}

/// The content of a version (create, or replace a draft).
#[derive(Debug, Clone)]
pub struct VersionSpec {
    /// Model.
    pub model: String,
    /// Voice.
    pub voice: String,
    /// Instructions.
    pub instructions: String,
    /// Greeting.
    pub greeting: Option<String>,
    /// Left on an answering machine (the `voicemail` AMD action of outbound calls).
    pub voicemail_message: Option<String>,
    /// Transcription model.
    pub transcription_model: Option<String>,
    /// Transcription language.
    pub transcription_language: Option<String>,
    /// Turn detection.
    pub turn_detection: TurnDetection,
    /// Longest call.
    pub max_call_seconds: i64,
    /// Caller silence limit.
    pub idle_timeout_seconds: i64,
    /// Tools, escalation rules, identity check (validated).
    pub contract: crate::contract::Contract,
    /// What its calls are scored against (validated, its tools in the contract).
    pub rubric: Option<crate::evaluation::Rubric>,
    /// Whether its calls are recorded (`None`: the route's policy applies).
    pub recording_policy: Option<crate::recording::RecordingPolicy>,
    /// The disclosure line under `on_with_disclosure` (`None`: the default line).
    pub recording_disclosure: Option<String>,
}

type Reply<T> = RpcReplyPort<Result<T, RolloutError>>;

/// Messages of the rollout actor.
pub enum RolloutMsg {
    /// Creates an agent.
    CreateAgent(NewAgent, AuditMeta, Reply<Agent>),
    /// Reads an agent.
    GetAgent(AgentId, Reply<Agent>),
    /// Lists agents (optionally of one tenant).
    ListAgents(Option<TenantId>, Reply<Vec<Agent>>),
    /// Creates a draft version of an agent.
    CreateVersion(AgentId, VersionSpec, AuditMeta, Reply<AgentVersion>),
    /// Replaces a draft version's content.
    UpdateVersion(AgentVersionId, VersionSpec, AuditMeta, Reply<AgentVersion>),
    /// Approves a draft (immutable from then on).
    Approve(AgentVersionId, AuditMeta, Reply<AgentVersion>),
    /// Retires an approved (or draft) version.
    Retire(AgentVersionId, AuditMeta, Reply<AgentVersion>),
    /// Reads a version.
    GetVersion(AgentVersionId, Reply<AgentVersion>),
    /// An agent's versions, newest first.
    ListVersions(AgentId, Reply<Vec<AgentVersion>>),
    /// The version a call runs, and its arm.
    Resolve(ResolveRequest, Reply<Resolved>),
    /// Writes an agent's rollout policy.
    PutPolicy(AgentId, PolicySpec, AuditMeta, Reply<RolloutPolicy>),
    /// An admin action on an agent's rollout, with its reason.
    Act(AgentId, Action, String, AuditMeta, Reply<RolloutPolicy>),
    /// The governance view of a tenant.
    Governance(TenantId, Reply<Vec<AgentGovernance>>),
    /// An evaluation was recorded (from [`RolloutFeed`]): check the guardrails.
    Evaluated(EvaluationNotice),
    /// The timer: check every canary.
    Tick,
}

/// What a call asks of [`RolloutMsg::Resolve`].
#[derive(Debug, Clone)]
pub struct ResolveRequest {
    /// The tenant.
    pub tenant: TenantId,
    /// The agent key.
    pub agent_key: String,
    /// A version pinned by the call or its route (bypasses the policy).
    pub pinned: Option<AgentVersionId>,
    /// The number assignment hashes: the caller's (inbound) or the callee's (outbound).
    pub number: String,
}

/// The version a call runs.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The version.
    pub version: AgentVersion,
    /// Why it was chosen.
    pub arm: Arm,
    /// The canary's share when the choice was made (0 without a running canary).
    pub canary_percent: u8,
}

/// Arguments of the rollout actor.
#[derive(Clone)]
pub struct RolloutArgs {
    /// The database.
    pub store: Store,
    /// Woken after a decision's event is in the outbox.
    pub notifier: Option<Notifier>,
    /// How often every canary is checked (besides every evaluation notice).
    pub check_interval: Duration,
    /// Creation time window within which unfinished calls count as live.
    pub live_window: Duration,
}

impl RolloutArgs {
    /// Default checking every 30 s; calls live for up to 4 h.
    pub fn new(store: Store, notifier: Option<Notifier>) -> Self {
        Self {
            store,
            notifier,
            check_interval: Duration::from_secs(30),
            live_window: Duration::from_secs(4 * 3600),
        }
    }
}

impl RolloutMsg {
    /// Message name for metrics.
    pub const fn name(&self) -> &'static str {
        match self {
            RolloutMsg::CreateAgent(..) => "create_agent",
            RolloutMsg::GetAgent(..) => "get_agent",
            RolloutMsg::ListAgents(..) => "list_agents",
            RolloutMsg::CreateVersion(..) => "create_version",
            RolloutMsg::UpdateVersion(..) => "update_version",
            RolloutMsg::Approve(..) => "approve",
            RolloutMsg::Retire(..) => "retire",
            RolloutMsg::GetVersion(..) => "get_version",
            RolloutMsg::ListVersions(..) => "list_versions",
            RolloutMsg::Resolve(..) => "resolve",
            RolloutMsg::PutPolicy(..) => "put_policy",
            RolloutMsg::Act(..) => "act",
            RolloutMsg::Governance(..) => "governance",
            RolloutMsg::Evaluated(..) => "evaluated",
            RolloutMsg::Tick => "tick",
        }
    }
}

/// The rollout behaviour.
pub struct RolloutActor;

/// State of the rollout actor.
pub struct RolloutState {
    store: Store,
    notifier: Option<Notifier>,
    live_window: Duration,
}

fn reply<T>(port: RpcReplyPort<T>, value: T) {
    if !port.is_closed() {
        let _ = port.send(value);
    }
}

/// Audit JSON of a version (its whole content; there are no secrets in it).
pub fn version_audit_json(v: &AgentVersion) -> serde_json::Value {
    json!({
        "id": v.id.as_str(),
        "agent_id": v.agent_id.as_str(),
        "version": v.version,
        "status": v.status.as_str(),
        "model": v.model,
        "voice": v.voice,
        "instructions": v.instructions,
        "greeting": v.greeting,
        "voicemail_message": v.voicemail_message,
        "transcription_model": v.transcription_model,
        "transcription_language": v.transcription_language,
        "turn_detection": serde_json::to_value(&v.turn_detection).unwrap_or_default(),
        "max_call_seconds": v.max_call_seconds,
        "idle_timeout_seconds": v.idle_timeout_seconds,
        "rubric_hash": v.rubric.as_ref().map(crate::evaluation::Rubric::hash),
        "recording_policy": v.recording_policy.map(crate::recording::RecordingPolicy::as_str),
        "recording_disclosure": v.recording_disclosure,
    })
}

pub(crate) fn audit(
    meta: AuditMeta,
    action: &'static str,
    tenant: &TenantId,
    target_type: &'static str,
    id: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> NewAudit {
    NewAudit {
        actor: meta.actor,
        action,
        tenant_id: Some(tenant.clone()),
        target_type,
        target_id: id,
        before,
        after,
        request_id: meta.request_id,
    }
}

impl RolloutState {
    async fn version(&self, id: &AgentVersionId) -> Result<AgentVersion, RolloutError> {
        self.store
            .get_version(id)
            .await?
            .ok_or(RolloutError::NotFound("agent version"))
    }

    async fn create_agent(&self, new: NewAgent, meta: AuditMeta) -> Result<Agent, RolloutError> {
        if self.store.get_tenant(&new.tenant_id).await?.is_none() {
            return Err(RolloutError::NotFound("tenant"));
        }
        let now = now_ms();
        let agent = Agent {
            id: AgentId::generate(),
            tenant_id: new.tenant_id,
            key: new.key,
            name: new.name,
            created_at: now,
            updated_at: now,
        };
        let after = json!({"id": agent.id.as_str(), "key": agent.key, "name": agent.name});
        let a = audit(
            meta,
            "agent.create",
            &agent.tenant_id,
            "agent",
            agent.id.to_string(),
            None,
            Some(after),
        );
        self.store
            .insert_agent(&agent, &a)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => RolloutError::Conflict(format!(
                    "the tenant already has an agent with key {}",
                    agent.key
                )),
                other => RolloutError::Store(other),
            })?;
        Ok(agent)
    }

    async fn create_version(
        &self,
        agent_id: AgentId,
        spec: VersionSpec,
        meta: AuditMeta,
    ) -> Result<AgentVersion, RolloutError> {
        let agent = self
            .store
            .get_agent(&agent_id)
            .await?
            .ok_or(RolloutError::NotFound("agent"))?;
        let mut v = AgentVersion {
            id: AgentVersionId::generate(),
            agent_id: agent.id.clone(),
            agent_key: agent.key.clone(),
            tenant_id: agent.tenant_id.clone(),
            version: 0,
            status: VersionStatus::Draft,
            model: spec.model,
            voice: spec.voice,
            instructions: spec.instructions,
            greeting: spec.greeting,
            voicemail_message: spec.voicemail_message,
            transcription_model: spec.transcription_model,
            transcription_language: spec.transcription_language,
            turn_detection: spec.turn_detection,
            max_call_seconds: spec.max_call_seconds,
            idle_timeout_seconds: spec.idle_timeout_seconds,
            contract: spec.contract,
            rubric: spec.rubric,
            recording_policy: spec.recording_policy,
            recording_disclosure: spec.recording_disclosure,
            created_at: now_ms(),
            approved_at: None,
            retired_at: None,
        };
        let a = audit(
            meta,
            "agent_version.create",
            &agent.tenant_id,
            "agent_version",
            v.id.to_string(),
            None,
            Some(version_audit_json(&v)),
        );
        v.version = self.store.insert_version(&v, &a).await?;
        Ok(v)
    }

    async fn update_version(
        &self,
        id: AgentVersionId,
        spec: VersionSpec,
        meta: AuditMeta,
    ) -> Result<AgentVersion, RolloutError> {
        let before = self.version(&id).await?;
        if before.status != VersionStatus::Draft {
            return Err(RolloutError::Conflict(format!(
                "version {} is {}: approved versions are immutable, create a new version",
                before.version,
                before.status.as_str()
            )));
        }
        let after = AgentVersion {
            model: spec.model,
            voice: spec.voice,
            instructions: spec.instructions,
            greeting: spec.greeting,
            voicemail_message: spec.voicemail_message,
            transcription_model: spec.transcription_model,
            transcription_language: spec.transcription_language,
            turn_detection: spec.turn_detection,
            max_call_seconds: spec.max_call_seconds,
            idle_timeout_seconds: spec.idle_timeout_seconds,
            contract: spec.contract,
            rubric: spec.rubric,
            recording_policy: spec.recording_policy,
            recording_disclosure: spec.recording_disclosure,
            ..before.clone()
        };
        let a = audit(
            meta,
            "agent_version.update",
            &before.tenant_id,
            "agent_version",
            id.to_string(),
            Some(version_audit_json(&before)),
            Some(version_audit_json(&after)),
        );
        if !self.store.update_draft_version(&after, &a).await? {
            return Err(RolloutError::Conflict(
                "the version was approved meanwhile".into(),
            ));
        }
        Ok(after)
    }

    async fn transition(
        &self,
        id: AgentVersionId,
        to: VersionStatus,
        meta: AuditMeta,
    ) -> Result<AgentVersion, RolloutError> {
        let before = self.version(&id).await?;
        let allowed = matches!(
            (before.status, to),
            (VersionStatus::Draft, VersionStatus::Approved)
                | (
                    VersionStatus::Draft | VersionStatus::Approved,
                    VersionStatus::Retired
                )
        );
        if !allowed {
            return Err(RolloutError::Conflict(format!(
                "a {} version cannot become {}",
                before.status.as_str(),
                to.as_str()
            )));
        }
        if to == VersionStatus::Approved {
            approval::check(&self.store, &before, &meta)
                .await
                .map_err(|e| match e {
                    GovernanceError::Forbidden { code, message } => {
                        RolloutError::Forbidden(code, message)
                    }
                    GovernanceError::Store(e) => RolloutError::Store(e),
                    other => RolloutError::Conflict(other.to_string()),
                })?;
        }
        let at = now_ms();
        let mut after = before.clone();
        after.status = to;
        match to {
            VersionStatus::Approved => after.approved_at = Some(at),
            VersionStatus::Retired => after.retired_at = Some(at),
            VersionStatus::Draft => {}
        }
        let action = if to == VersionStatus::Approved {
            "agent_version.approve"
        } else {
            "agent_version.retire"
        };
        let a = audit(
            meta,
            action,
            &before.tenant_id,
            "agent_version",
            id.to_string(),
            Some(version_audit_json(&before)),
            Some(version_audit_json(&after)),
        );
        if !self
            .store
            .transition_version(&id, before.status, to, at, &a)
            .await?
        {
            return Err(RolloutError::Conflict(
                "the version changed meanwhile; retry".into(),
            ));
        }
        Ok(after)
    }

    async fn pinned(
        &self,
        tenant: &TenantId,
        key: &str,
        id: AgentVersionId,
    ) -> Result<AgentVersion, RolloutError> {
        let v = self
            .store
            .get_version(&id)
            .await?
            .filter(|v| &v.tenant_id == tenant);
        let v =
            v.ok_or_else(|| RolloutError::NoVersion(format!("agent version {id} does not exist")))?;
        if v.agent_key != key {
            return Err(RolloutError::NoVersion(format!(
                "agent version {id} belongs to agent {}, not {key}",
                v.agent_key
            )));
        }
        if v.status == VersionStatus::Retired {
            return Err(RolloutError::NoVersion(format!(
                "agent version {id} is retired"
            )));
        }
        Ok(v)
    }

    /// An approved version of the tenant by id (`None` when gone or retired).
    async fn servable(
        &self,
        tenant: &TenantId,
        id: &AgentVersionId,
    ) -> Result<Option<AgentVersion>, RolloutError> {
        Ok(self
            .store
            .get_version(id)
            .await?
            .filter(|v| &v.tenant_id == tenant && v.status == VersionStatus::Approved))
    }

    async fn resolve(&self, req: ResolveRequest) -> Result<Resolved, RolloutError> {
        let ResolveRequest {
            tenant,
            agent_key: key,
            pinned,
            number,
        } = req;
        if let Some(id) = pinned {
            let version = self.pinned(&tenant, &key, id).await?;
            return Ok(Resolved {
                version,
                arm: Arm::Pinned,
                canary_percent: 0,
            });
        }
        if let Some(policy) = self.store.rollout_policy_by_key(&tenant, &key).await? {
            let percent = policy.canary_percent();
            if let Some(canary) = &policy.canary_version_id
                && percent > 0
                && assign::on_canary(&policy.salt, &number, percent)
                && let Some(version) = self.servable(&tenant, canary).await?
            {
                return Ok(Resolved {
                    version,
                    arm: Arm::Canary,
                    canary_percent: percent,
                });
            }
            if let Some(version) = self.servable(&tenant, &policy.stable_version_id).await? {
                return Ok(Resolved {
                    version,
                    arm: Arm::Stable,
                    canary_percent: percent,
                });
            }
            tracing::warn!(agent_key = %key, "the rollout's stable version is not approved; using the newest approved version");
        }
        let version = self
            .store
            .current_version(&tenant, &key)
            .await?
            .ok_or_else(|| {
                RolloutError::NoVersion(format!("agent {key} has no approved version"))
            })?;
        Ok(Resolved {
            version,
            arm: Arm::Stable,
            canary_percent: 0,
        })
    }
}

impl Actor for RolloutActor {
    type Msg = RolloutMsg;
    type State = RolloutState;
    type Arguments = RolloutArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RolloutArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Ends by itself when the actor is gone.
        let id = myself.get_id();
        let _timer = myself.send_interval(args.check_interval, move || {
            // Counted like any other message to the singleton (its mailbox depth).
            crate::singleton::sent(id);
            RolloutMsg::Tick
        });
        Ok(RolloutState {
            store: args.store,
            notifier: args.notifier,
            live_window: args.live_window,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        crate::singleton::handled(myself.get_id());
        let _timer = HandleTimer::start(kind::ROLLOUT, message.name());
        match message {
            RolloutMsg::CreateAgent(new, meta, port) => {
                reply(port, state.create_agent(new, meta).await)
            }
            RolloutMsg::GetAgent(id, port) => {
                let r = state.store.get_agent(&id).await.map_err(RolloutError::from);
                reply(
                    port,
                    r.and_then(|a| a.ok_or(RolloutError::NotFound("agent"))),
                );
            }
            RolloutMsg::ListAgents(tenant, port) => {
                reply(
                    port,
                    state
                        .store
                        .list_agents(tenant.as_ref())
                        .await
                        .map_err(RolloutError::from),
                );
            }
            RolloutMsg::CreateVersion(agent, spec, meta, port) => {
                reply(port, state.create_version(agent, spec, meta).await)
            }
            RolloutMsg::UpdateVersion(id, spec, meta, port) => {
                reply(port, state.update_version(id, spec, meta).await)
            }
            RolloutMsg::Approve(id, meta, port) => reply(
                port,
                state.transition(id, VersionStatus::Approved, meta).await,
            ),
            RolloutMsg::Retire(id, meta, port) => reply(
                port,
                state.transition(id, VersionStatus::Retired, meta).await,
            ),
            RolloutMsg::GetVersion(id, port) => reply(port, state.version(&id).await),
            RolloutMsg::ListVersions(agent, port) => {
                reply(
                    port,
                    state
                        .store
                        .list_versions(&agent)
                        .await
                        .map_err(RolloutError::from),
                );
            }
            RolloutMsg::Resolve(req, port) => {
                let resolved = state.resolve(req).await;
                if let Ok(r) = &resolved {
                    metrics::counter!("rollout_calls_total", "arm" => r.arm.as_str()).increment(1);
                }
                reply(port, resolved);
            }
            RolloutMsg::PutPolicy(agent, spec, meta, port) => {
                reply(port, state.put_policy(agent, spec, meta).await)
            }
            RolloutMsg::Act(agent, action, reason, meta, port) => {
                reply(port, state.act(agent, action, reason, meta).await)
            }
            RolloutMsg::Governance(tenant, port) => reply(port, state.governance(&tenant).await),
            RolloutMsg::Evaluated(notice) => {
                if let Err(error) = state.evaluated(&notice).await {
                    tracing::warn!(evaluation_id = %notice.evaluation_id, error = %error, "rollout guardrail check failed");
                }
            }
            RolloutMsg::Tick => {
                if let Err(error) = state.tick().await {
                    tracing::warn!(error = %error, "rollout timer check failed");
                }
            }
        }
        Ok(())
    }
}
