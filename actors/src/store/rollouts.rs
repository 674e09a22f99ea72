//! Rollout policies and their decisions (DESIGN §6), tenant-scoped. A decision is written
//! over the revision of the policy it was taken on (`WHERE revision = $old`), together with
//! the policy's new state, its audit row and, where it has one, its event: nothing is
//! half-written, and of two nodes acting on one state only the first wins.

use serde::{Deserialize, Serialize};

use super::audit::insert_audit;
use super::webhooks::insert_event;
use super::{NewAudit, NewEvent, Store, StoreError, on_pool};
use crate::ids::{AgentId, AgentVersionId, RolloutDecisionId, TenantId};
use crate::rollout::guardrails::Guardrails;

/// One stage of a canary's schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Share of callers on the canary (1–100).
    pub percent: u8,
    /// Evaluated canary calls in this stage before it may advance.
    #[serde(default)]
    pub min_evaluated_calls: i64,
    /// Seconds in this stage before it may advance.
    #[serde(default)]
    pub min_seconds: i64,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutStatus {
    /// Every call on the stable version.
    StableOnly,
    /// The current stage's share of callers on the canary.
    Canarying,
    /// Paused or rolled back: every new call on stable.
    Halted,
    /// The canary became the stable version.
    Promoted,
}

impl RolloutStatus {
    /// The stored and wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RolloutStatus::StableOnly => "stable_only",
            RolloutStatus::Canarying => "canarying",
            RolloutStatus::Halted => "halted",
            RolloutStatus::Promoted => "promoted",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            RolloutStatus::StableOnly,
            RolloutStatus::Canarying,
            RolloutStatus::Halted,
            RolloutStatus::Promoted,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// The rollout policy of one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutPolicy {
    /// The agent.
    pub agent_id: AgentId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The version most callers get.
    pub stable_version_id: AgentVersionId,
    /// The version under trial, if any.
    pub canary_version_id: Option<AgentVersionId>,
    /// The stage schedule (percentages ascending).
    pub stages: Vec<Stage>,
    /// Promote on its own after the last stage.
    pub auto_promote: bool,
    /// The assignment salt (random per policy).
    pub salt: String,
    /// Guardrail thresholds.
    pub guardrails: Guardrails,
    /// Where it stands.
    pub state: RolloutStatus,
    /// The current stage (index into `stages`).
    pub stage_index: usize,
    /// When the current stage started (Unix ms).
    pub stage_started_at: Option<i64>,
    /// When the canary started (Unix ms): the guardrails' window.
    pub canary_started_at: Option<i64>,
    /// Increases with every change.
    pub revision: i64,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

impl RolloutPolicy {
    /// The share of callers on the canary now (0 unless canarying).
    pub fn canary_percent(&self) -> u8 {
        match (self.state, &self.canary_version_id) {
            (RolloutStatus::Canarying, Some(_)) => {
                self.stages.get(self.stage_index).map_or(0, |s| s.percent)
            }
            _ => 0,
        }
    }
}

/// A decision taken on a rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutDecision {
    /// Identifier (`rod_…`).
    pub id: RolloutDecisionId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Agent.
    pub agent_id: AgentId,
    /// `start`, `advance`, `pause`, `rollback`, `promote`, `auto_rollback`, `auto_advance`,
    /// `auto_promote`.
    pub action: String,
    /// The admin identity, or `system`.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// State before.
    pub from_state: RolloutStatus,
    /// State after.
    pub to_state: RolloutStatus,
    /// Stable version after the decision.
    pub stable_version_id: String,
    /// Canary after the decision.
    pub canary_version_id: Option<String>,
    /// Canary share after the decision.
    pub canary_percent: i64,
    /// The guardrails (values, thresholds, samples) it was taken on.
    pub evidence: serde_json::Value,
    /// When (Unix ms).
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct PolicyRow {
    agent_id: String,
    tenant_id: String,
    stable_version_id: String,
    canary_version_id: Option<String>,
    stages: String,
    auto_promote: bool,
    salt: String,
    guardrails: String,
    state: String,
    stage_index: i64,
    stage_started_at: Option<i64>,
    canary_started_at: Option<i64>,
    revision: i64,
    created_at: i64,
    updated_at: i64,
}

const POLICY_COLUMNS: &str = "p.agent_id, p.tenant_id, p.stable_version_id, p.canary_version_id, p.stages, p.auto_promote, \
     p.salt, p.guardrails, p.state, p.stage_index, p.stage_started_at, p.canary_started_at, p.revision, p.created_at, p.updated_at";

impl TryFrom<PolicyRow> for RolloutPolicy {
    type Error = StoreError;

    fn try_from(r: PolicyRow) -> Result<Self, StoreError> {
        Ok(RolloutPolicy {
            agent_id: AgentId::from_stored(r.agent_id),
            tenant_id: TenantId::from_stored(r.tenant_id),
            stable_version_id: AgentVersionId::from_stored(r.stable_version_id),
            canary_version_id: r.canary_version_id.map(AgentVersionId::from_stored),
            stages: serde_json::from_str(&r.stages)
                .map_err(|_| StoreError::Corrupt("rollout_policies.stages"))?,
            auto_promote: r.auto_promote,
            salt: r.salt,
            guardrails: serde_json::from_str(&r.guardrails)
                .map_err(|_| StoreError::Corrupt("rollout_policies.guardrails"))?,
            state: RolloutStatus::parse(&r.state)
                .ok_or(StoreError::Corrupt("rollout_policies.state"))?,
            stage_index: usize::try_from(r.stage_index)
                .map_err(|_| StoreError::Corrupt("rollout_policies.stage_index"))?,
            stage_started_at: r.stage_started_at,
            canary_started_at: r.canary_started_at,
            revision: r.revision,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct DecisionRow {
    id: String,
    tenant_id: String,
    agent_id: String,
    action: String,
    actor: String,
    reason: String,
    from_state: String,
    to_state: String,
    stable_version_id: String,
    canary_version_id: Option<String>,
    canary_percent: i64,
    evidence: String,
    created_at: i64,
}

impl TryFrom<DecisionRow> for RolloutDecision {
    type Error = StoreError;

    fn try_from(r: DecisionRow) -> Result<Self, StoreError> {
        let state =
            |s: &str| RolloutStatus::parse(s).ok_or(StoreError::Corrupt("rollout_decisions.state"));
        Ok(RolloutDecision {
            id: RolloutDecisionId::from_stored(r.id),
            tenant_id: TenantId::from_stored(r.tenant_id),
            agent_id: AgentId::from_stored(r.agent_id),
            action: r.action,
            actor: r.actor,
            reason: r.reason,
            from_state: state(&r.from_state)?,
            to_state: state(&r.to_state)?,
            stable_version_id: r.stable_version_id,
            canary_version_id: r.canary_version_id,
            canary_percent: r.canary_percent,
            evidence: serde_json::from_str(&r.evidence)
                .map_err(|_| StoreError::Corrupt("rollout_decisions.evidence"))?,
            created_at: r.created_at,
        })
    }
}

fn json_of<T: Serialize>(v: &T, what: &'static str) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|_| StoreError::Corrupt(what))
}

/// A policy's columns, bound in `POLICY_VALUES` order ($1–$15).
macro_rules! bind_policy {
    ($q:expr, $p:expr, $stages:expr, $guardrails:expr) => {
        $q.bind($p.agent_id.as_str())
            .bind($p.tenant_id.as_str())
            .bind($p.stable_version_id.as_str())
            .bind($p.canary_version_id.as_ref().map(|v| v.as_str().to_owned()))
            .bind($stages)
            .bind($p.auto_promote)
            .bind(&$p.salt)
            .bind($guardrails)
            .bind($p.state.as_str())
            .bind(i64::try_from($p.stage_index).unwrap_or(0))
            .bind($p.stage_started_at)
            .bind($p.canary_started_at)
            .bind($p.revision)
            .bind($p.created_at)
            .bind($p.updated_at)
    };
}

impl Store {
    /// The policy of `agent` of `tenant`.
    pub async fn rollout_policy(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
    ) -> Result<Option<RolloutPolicy>, StoreError> {
        let row: Option<PolicyRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {POLICY_COLUMNS} FROM rollout_policies p WHERE p.tenant_id = $1 AND p.agent_id = $2"
            )))
            .bind(tenant.as_str())
            .bind(agent.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(RolloutPolicy::try_from).transpose()
    }

    /// The policy of the agent `key` of `tenant`.
    pub async fn rollout_policy_by_key(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<RolloutPolicy>, StoreError> {
        let row: Option<PolicyRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {POLICY_COLUMNS} FROM rollout_policies p JOIN agents a ON a.id = p.agent_id \
                 WHERE p.tenant_id = $1 AND a.tenant_id = $1 AND a.key = $2"
            )))
            .bind(tenant.as_str())
            .bind(key)
            .fetch_optional(pool)
            .await?
        });
        row.map(RolloutPolicy::try_from).transpose()
    }

    /// A tenant's policies (by agent id).
    pub async fn rollout_policies(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<RolloutPolicy>, StoreError> {
        let rows: Vec<PolicyRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {POLICY_COLUMNS} FROM rollout_policies p WHERE p.tenant_id = $1 ORDER BY p.agent_id"
            )))
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(RolloutPolicy::try_from).collect()
    }

    /// Every canarying policy of every tenant (the guardrail timer's work list).
    pub async fn canarying_policies(&self) -> Result<Vec<RolloutPolicy>, StoreError> {
        let rows: Vec<PolicyRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {POLICY_COLUMNS} FROM rollout_policies p WHERE p.state = 'canarying' ORDER BY p.agent_id"
            )))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(RolloutPolicy::try_from).collect()
    }

    /// Writes `policy` with its audit row: inserted when `expected_revision` is `None`,
    /// else updated over that revision. `false` when the policy changed meanwhile (or was
    /// created meanwhile).
    pub async fn put_rollout_policy(
        &self,
        policy: &RolloutPolicy,
        expected_revision: Option<i64>,
        audit: &NewAudit,
    ) -> Result<bool, StoreError> {
        let stages = json_of(&policy.stages, "rollout_policies.stages")?;
        let guardrails = json_of(&policy.guardrails, "rollout_policies.guardrails")?;
        let r: Result<bool, StoreError> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            let written = match expected_revision {
                None => bind_policy!(sqlx::query(
                    "INSERT INTO rollout_policies (agent_id, tenant_id, stable_version_id, canary_version_id, stages, \
                     auto_promote, salt, guardrails, state, stage_index, stage_started_at, canary_started_at, revision, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                ), policy, &stages, &guardrails)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                Some(old) => bind_policy!(sqlx::query(
                    "UPDATE rollout_policies SET stable_version_id = $3, canary_version_id = $4, stages = $5, \
                     auto_promote = $6, salt = $7, guardrails = $8, state = $9, stage_index = $10, stage_started_at = $11, \
                     canary_started_at = $12, revision = $13, created_at = $14, updated_at = $15 \
                     WHERE agent_id = $1 AND tenant_id = $2 AND revision = $16"
                ), policy, &stages, &guardrails)
                .bind(old)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            };
            if written == 0 {
                return Ok(false);
            }
            insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(true)
        }.await);
        match r {
            Err(e) if e.is_unique_violation() => Ok(false),
            other => other,
        }
    }

    /// Records `decision` with the policy's new state `after` (over `expected_revision`),
    /// its audit row and its event, in one transaction. `false` (nothing written) when the
    /// policy changed meanwhile.
    pub async fn record_rollout_decision(
        &self,
        after: &RolloutPolicy,
        expected_revision: i64,
        decision: &RolloutDecision,
        audit: &NewAudit,
        event: Option<&NewEvent>,
    ) -> Result<bool, StoreError> {
        let stages = json_of(&after.stages, "rollout_policies.stages")?;
        let guardrails = json_of(&after.guardrails, "rollout_policies.guardrails")?;
        let evidence = decision.evidence.to_string();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let written = bind_policy!(sqlx::query(
                "UPDATE rollout_policies SET stable_version_id = $3, canary_version_id = $4, stages = $5, \
                 auto_promote = $6, salt = $7, guardrails = $8, state = $9, stage_index = $10, stage_started_at = $11, \
                 canary_started_at = $12, revision = $13, created_at = $14, updated_at = $15 \
                 WHERE agent_id = $1 AND tenant_id = $2 AND revision = $16"
            ), after, &stages, &guardrails)
            .bind(expected_revision)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if written == 0 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO rollout_decisions (id, tenant_id, agent_id, action, actor, reason, from_state, to_state, \
                 stable_version_id, canary_version_id, canary_percent, evidence, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(decision.id.as_str())
            .bind(decision.tenant_id.as_str())
            .bind(decision.agent_id.as_str())
            .bind(&decision.action)
            .bind(&decision.actor)
            .bind(&decision.reason)
            .bind(decision.from_state.as_str())
            .bind(decision.to_state.as_str())
            .bind(&decision.stable_version_id)
            .bind(&decision.canary_version_id)
            .bind(decision.canary_percent)
            .bind(&evidence)
            .bind(decision.created_at)
            .execute(&mut *tx)
            .await?;
            insert_audit!(&mut *tx, audit)?;
            if let Some(event) = event {
                let _queued = insert_event!(&mut *tx, event);
            }
            tx.commit().await?;
        });
        Ok(true)
    }

    /// The latest `limit` decisions on `agent` of `tenant`, newest first.
    pub async fn rollout_decisions(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        limit: i64,
    ) -> Result<Vec<RolloutDecision>, StoreError> {
        let rows: Vec<DecisionRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, tenant_id, agent_id, action, actor, reason, from_state, to_state, stable_version_id, \
                 canary_version_id, canary_percent, evidence, created_at FROM rollout_decisions \
                 WHERE tenant_id = $1 AND agent_id = $2 ORDER BY created_at DESC, id DESC LIMIT $3",
            )
            .bind(tenant.as_str())
            .bind(agent.as_str())
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(RolloutDecision::try_from).collect()
    }

    /// Live calls of the agent `key` of `tenant` per agent version (created since
    /// `live_since`).
    pub async fn live_calls_by_version(
        &self,
        tenant: &TenantId,
        key: &str,
        live_since: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows: Vec<(Option<String>, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT agent_version_id, COUNT(*) FROM calls WHERE tenant_id = $1 AND agent_key = $2 \
                 AND status IN ('queued', 'initiated', 'ringing', 'in-progress') AND ended_at IS NULL \
                 AND created_at >= $3 GROUP BY agent_version_id ORDER BY agent_version_id",
            )
            .bind(tenant.as_str())
            .bind(key)
            .bind(live_since)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(v, n)| v.map(|v| (v, n)))
            .collect())
    }
}
