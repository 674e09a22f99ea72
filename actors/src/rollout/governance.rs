//! The rollout-governance view (`GET /api/v1/admin/rollout-governance`): per agent of a
//! tenant, its policy, state, stage, split, live calls per version, every guardrail's value
//! against its threshold with the sample sizes, and the latest decisions with reasons.

use super::guardrails::Check;
use super::{RolloutError, RolloutState};
use crate::ids::TenantId;
use crate::store::{Agent, RolloutDecision, RolloutPolicy};

/// Decisions shown per agent.
pub const DECISIONS_SHOWN: i64 = 20;

/// One agent's rollout.
#[derive(Debug, Clone)]
pub struct AgentGovernance {
    /// The agent.
    pub agent: Agent,
    /// Its policy (none: every call runs the newest approved version).
    pub policy: Option<RolloutPolicy>,
    /// Live calls per version id.
    pub live_calls: Vec<(String, i64)>,
    /// The guardrails now (empty unless a canary has started).
    pub guardrails: Vec<Check>,
    /// The latest decisions, newest first.
    pub decisions: Vec<RolloutDecision>,
}

impl RolloutState {
    /// The governance view of `tenant`.
    pub(super) async fn governance(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<AgentGovernance>, RolloutError> {
        let live_since = crate::time::now_ms()
            - i64::try_from(self.live_window.as_millis()).unwrap_or(i64::MAX / 2);
        let mut out = Vec::new();
        for agent in self.store.list_agents(Some(tenant)).await? {
            let policy = self.store.rollout_policy(tenant, &agent.id).await?;
            let guardrails = match &policy {
                Some(p) => self
                    .assessment(p)
                    .await?
                    .map(|a| a.checks)
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let live_calls = self
                .store
                .live_calls_by_version(tenant, &agent.key, live_since)
                .await?;
            let decisions = self
                .store
                .rollout_decisions(tenant, &agent.id, DECISIONS_SHOWN)
                .await?;
            out.push(AgentGovernance {
                agent,
                policy,
                live_calls,
                guardrails,
                decisions,
            });
        }
        Ok(out)
    }
}
