//! `RolloutActor`: agents and agent versions, and the choice of the version a call runs.
//!
//! It owns agent administration (each change with its audit row) and resolves an agent key
//! to a version for a call: the pinned version when a call names one (any non-retired
//! version of that agent), otherwise the agent's newest approved version. Approved versions
//! are immutable; a change is a new version.
//!
//! Messages: [`RolloutMsg`]. Supervised by: [`crate::supervisor::RootSupervisor`].

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;

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
    /// The version a call of (tenant, agent key) runs, optionally pinned.
    Resolve(
        TenantId,
        String,
        Option<AgentVersionId>,
        Reply<AgentVersion>,
    ),
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
        }
    }
}

/// The rollout behaviour.
pub struct RolloutActor;

/// State of the rollout actor.
pub struct RolloutState {
    store: Store,
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
        "transcription_model": v.transcription_model,
        "transcription_language": v.transcription_language,
        "turn_detection": serde_json::to_value(&v.turn_detection).unwrap_or_default(),
        "max_call_seconds": v.max_call_seconds,
        "idle_timeout_seconds": v.idle_timeout_seconds,
        "rubric_hash": v.rubric.as_ref().map(crate::evaluation::Rubric::hash),
    })
}

fn audit(
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
            transcription_model: spec.transcription_model,
            transcription_language: spec.transcription_language,
            turn_detection: spec.turn_detection,
            max_call_seconds: spec.max_call_seconds,
            idle_timeout_seconds: spec.idle_timeout_seconds,
            contract: spec.contract,
            rubric: spec.rubric,
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
            transcription_model: spec.transcription_model,
            transcription_language: spec.transcription_language,
            turn_detection: spec.turn_detection,
            max_call_seconds: spec.max_call_seconds,
            idle_timeout_seconds: spec.idle_timeout_seconds,
            contract: spec.contract,
            rubric: spec.rubric,
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

    async fn resolve(
        &self,
        tenant: TenantId,
        key: String,
        pinned: Option<AgentVersionId>,
    ) -> Result<AgentVersion, RolloutError> {
        match pinned {
            Some(id) => {
                let v = self
                    .store
                    .get_version(&id)
                    .await?
                    .filter(|v| v.tenant_id == tenant);
                let v = v.ok_or_else(|| {
                    RolloutError::NoVersion(format!("agent version {id} does not exist"))
                })?;
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
            None => self
                .store
                .current_version(&tenant, &key)
                .await?
                .ok_or_else(|| {
                    RolloutError::NoVersion(format!("agent {key} has no approved version"))
                }),
        }
    }
}

impl Actor for RolloutActor {
    type Msg = RolloutMsg;
    type State = RolloutState;
    type Arguments = Store;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        store: Store,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(RolloutState { store })
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
            RolloutMsg::Resolve(tenant, key, pinned, port) => {
                reply(port, state.resolve(tenant, key, pinned).await)
            }
        }
        Ok(())
    }
}
