//! The rollout actor's canary work: writing a policy, admin actions, the guardrail check on
//! every evaluation notice and on the timer, and the automatic decisions it leads to. Each
//! decision is recorded with the policy's new state, an audit row and (for a halt, a stage
//! advance or a promotion) its event, in one transaction over the revision it was taken on.

use serde_json::{Value, json};

use super::decide::{Action, Step, apply, step};
use super::guardrails::{ArmFigures, Assessment, Guardrails, assess};
use super::{RolloutError, RolloutState, audit};
use crate::evaluation::EvaluationNotice;
use crate::ids::{AgentId, AgentVersionId, RolloutDecisionId};
use crate::notifier::{EventKind, envelope};
use crate::store::{Agent, RolloutDecision, RolloutPolicy, RolloutStatus, Stage, VersionStatus};
use crate::tenant::AuditMeta;
use crate::time::now_ms;

/// The identity of automatic decisions.
pub const SYSTEM: &str = "system";

/// A policy to write (`PUT …/rollout-policy`).
#[derive(Debug, Clone)]
pub struct PolicySpec {
    /// The version most callers get.
    pub stable_version_id: AgentVersionId,
    /// The version under trial.
    pub canary_version_id: Option<AgentVersionId>,
    /// The stage schedule.
    pub stages: Vec<Stage>,
    /// Promote after the last stage without an admin.
    pub auto_promote: bool,
    /// Guardrail thresholds.
    pub guardrails: Guardrails,
    /// Why (audited).
    pub reason: String,
}

/// Audit JSON of a policy.
pub fn policy_json(p: &RolloutPolicy) -> Value {
    json!({
        "agent_id": p.agent_id.as_str(),
        "stable_version_id": p.stable_version_id.as_str(),
        "canary_version_id": p.canary_version_id.as_ref().map(AgentVersionId::as_str),
        "stages": p.stages,
        "auto_promote": p.auto_promote,
        "guardrails": p.guardrails,
        "state": p.state.as_str(),
        "stage_index": p.stage_index,
        "canary_percent": p.canary_percent(),
        "revision": p.revision,
    })
}

fn invalid(field: &str, message: impl Into<String>) -> RolloutError {
    RolloutError::Invalid(field.to_owned(), message.into())
}

/// The first problem of a stage schedule, with the field at fault.
pub fn stages_invalid(stages: &[Stage]) -> Option<(String, String)> {
    if stages.len() > 20 {
        return Some(("stages".into(), "at most 20 stages".into()));
    }
    let mut last = 0u8;
    for (i, s) in stages.iter().enumerate() {
        if !(1..=100).contains(&s.percent) {
            return Some((
                format!("stages[{i}].percent"),
                "must be between 1 and 100".into(),
            ));
        }
        if s.percent <= last {
            return Some((
                format!("stages[{i}].percent"),
                "percentages must rise from stage to stage".into(),
            ));
        }
        last = s.percent;
        if !(0..=1_000_000).contains(&s.min_evaluated_calls) {
            return Some((
                format!("stages[{i}].min_evaluated_calls"),
                "must be between 0 and 1000000".into(),
            ));
        }
        if !(0..=31_536_000).contains(&s.min_seconds) {
            return Some((
                format!("stages[{i}].min_seconds"),
                "must be between 0 and 31536000".into(),
            ));
        }
    }
    None
}

/// A decision to record.
struct Decided {
    /// The action taken.
    taken: Action,
    /// Taken by the guardrails or the schedule (`auto_…`).
    automatic: bool,
    /// Why.
    reason: String,
    /// Who.
    actor: AuditMeta,
    /// The guardrails it was taken on.
    evidence: Value,
}

/// The audit log's action of a decision.
fn audit_action(taken: Action, automatic: bool) -> &'static str {
    match (taken, automatic) {
        (Action::Rollback, true) => "rollout.auto_rollback",
        (Action::Advance, true) => "rollout.auto_advance",
        (Action::Promote, true) => "rollout.auto_promote",
        (Action::Start, _) => "rollout.start",
        (Action::Advance, false) => "rollout.advance",
        (Action::Pause, _) => "rollout.pause",
        (Action::Rollback, false) => "rollout.rollback",
        (Action::Promote, false) => "rollout.promote",
    }
}

/// The decision's action: `auto_…` when the guardrails or the schedule took it.
fn action_name(taken: Action, automatic: bool) -> &'static str {
    match (taken, automatic) {
        (Action::Rollback, true) => "auto_rollback",
        (Action::Advance, true) => "auto_advance",
        (Action::Promote, true) => "auto_promote",
        (a, _) => a.as_str(),
    }
}

impl RolloutState {
    async fn agent(&self, id: &AgentId) -> Result<Agent, RolloutError> {
        self.store
            .get_agent(id)
            .await?
            .ok_or(RolloutError::NotFound("agent"))
    }

    /// A version of `agent` that can serve calls (approved), else the field named.
    async fn approved_of(
        &self,
        agent: &Agent,
        id: &AgentVersionId,
        field: &str,
    ) -> Result<(), RolloutError> {
        let v = self.store.get_version(id).await?;
        match v {
            Some(v) if v.agent_id == agent.id && v.tenant_id == agent.tenant_id => {
                if v.status == VersionStatus::Approved {
                    Ok(())
                } else {
                    Err(invalid(
                        field,
                        format!(
                            "version {} is {}, not approved",
                            v.version,
                            v.status.as_str()
                        ),
                    ))
                }
            }
            _ => Err(invalid(field, "is not a version of this agent")),
        }
    }

    /// Writes an agent's policy (a new one starts `stable_only`; an existing one keeps its
    /// salt, so callers keep their arm).
    pub(super) async fn put_policy(
        &self,
        agent_id: AgentId,
        spec: PolicySpec,
        meta: AuditMeta,
    ) -> Result<RolloutPolicy, RolloutError> {
        let agent = self.agent(&agent_id).await?;
        self.approved_of(&agent, &spec.stable_version_id, "stable_version_id")
            .await?;
        if let Some(canary) = &spec.canary_version_id {
            if canary == &spec.stable_version_id {
                return Err(invalid(
                    "canary_version_id",
                    "must differ from stable_version_id",
                ));
            }
            self.approved_of(&agent, canary, "canary_version_id")
                .await?;
            if spec.stages.is_empty() {
                return Err(invalid("stages", "a canary needs at least one stage"));
            }
        }
        if let Some((field, message)) = stages_invalid(&spec.stages) {
            return Err(RolloutError::Invalid(field, message));
        }
        if let Some((field, message)) = spec.guardrails.invalid() {
            return Err(invalid(field, message));
        }
        let before = self
            .store
            .rollout_policy(&agent.tenant_id, &agent.id)
            .await?;
        if before
            .as_ref()
            .is_some_and(|p| p.state == RolloutStatus::Canarying)
        {
            return Err(RolloutError::Conflict(
                "the canary is running: pause or roll it back before changing the policy".into(),
            ));
        }
        let now = now_ms();
        let same_canary = before.as_ref().is_some_and(|p| {
            p.canary_version_id == spec.canary_version_id && p.stages == spec.stages
        });
        let after = RolloutPolicy {
            agent_id: agent.id.clone(),
            tenant_id: agent.tenant_id.clone(),
            stable_version_id: spec.stable_version_id,
            canary_version_id: spec.canary_version_id,
            stages: spec.stages,
            auto_promote: spec.auto_promote,
            salt: before.as_ref().map_or_else(
                || uuid::Uuid::new_v4().simple().to_string(),
                |p| p.salt.clone(),
            ),
            guardrails: spec.guardrails,
            state: match &before {
                Some(p) if same_canary && p.state == RolloutStatus::Halted => RolloutStatus::Halted,
                _ => RolloutStatus::StableOnly,
            },
            stage_index: match &before {
                Some(p) if same_canary => p.stage_index,
                _ => 0,
            },
            stage_started_at: None,
            canary_started_at: None,
            revision: before.as_ref().map_or(1, |p| p.revision + 1),
            created_at: before.as_ref().map_or(now, |p| p.created_at),
            updated_at: now,
        };
        let mut after_json = policy_json(&after);
        after_json["reason"] = json!(spec.reason);
        let a = audit(
            meta,
            "rollout.policy",
            &agent.tenant_id,
            "rollout_policy",
            agent.id.to_string(),
            before.as_ref().map(policy_json),
            Some(after_json),
        );
        if !self
            .store
            .put_rollout_policy(&after, before.as_ref().map(|p| p.revision), &a)
            .await?
        {
            return Err(RolloutError::Conflict(
                "the policy changed meanwhile; retry".into(),
            ));
        }
        Ok(after)
    }

    /// The guardrails of a canarying policy over its window (`None` when it has no canary
    /// running or they are off).
    pub(super) async fn assessment(
        &self,
        p: &RolloutPolicy,
    ) -> Result<Option<Assessment>, RolloutError> {
        let (Some(canary), Some(from)) = (&p.canary_version_id, p.canary_started_at) else {
            return Ok(None);
        };
        if !p.guardrails.enabled {
            return Ok(None);
        }
        let c = self
            .store
            .version_figures(canary.as_str(), Some(from), None)
            .await?;
        let s = self
            .store
            .version_figures(p.stable_version_id.as_str(), Some(from), None)
            .await?;
        Ok(Some(assess(
            &p.guardrails,
            &ArmFigures::of(&c),
            &ArmFigures::of(&s),
        )))
    }

    /// Records `decision` (from `before` to `after`) with its audit row and event.
    async fn record(
        &self,
        before: &RolloutPolicy,
        after: &RolloutPolicy,
        decision: Decided,
    ) -> Result<bool, RolloutError> {
        let Decided {
            taken,
            automatic,
            reason,
            actor,
            evidence,
        } = decision;
        let agent = self.agent(&before.agent_id).await?;
        let action = action_name(taken, automatic);
        let now = after.updated_at;
        let decision = RolloutDecision {
            id: RolloutDecisionId::generate(),
            tenant_id: after.tenant_id.clone(),
            agent_id: after.agent_id.clone(),
            action: action.to_owned(),
            actor: actor.actor.clone(),
            reason: reason.clone(),
            from_state: before.state,
            to_state: after.state,
            stable_version_id: after.stable_version_id.to_string(),
            canary_version_id: after.canary_version_id.as_ref().map(ToString::to_string),
            canary_percent: i64::from(after.canary_percent()),
            evidence: evidence.clone(),
            created_at: now,
        };
        let event = match taken {
            Action::Rollback => Some(EventKind::RolloutRolledBack),
            Action::Advance | Action::Promote => Some(EventKind::RolloutPromoted),
            _ => None,
        }
        .map(|kind| {
            envelope(
                &after.tenant_id,
                kind,
                json!({
                    "decision_id": decision.id.as_str(),
                    "agent_id": agent.id.as_str(),
                    "agent_key": agent.key,
                    "action": action,
                    "actor": decision.actor,
                    "reason": reason,
                    "state": after.state.as_str(),
                    "stable_version_id": after.stable_version_id.as_str(),
                    "canary_version_id": before.canary_version_id.as_ref().map(AgentVersionId::as_str),
                    "canary_percent": after.canary_percent(),
                    "stage": after.stage_index,
                    "guardrails": evidence,
                }),
                now,
            )
        });
        let mut after_json = policy_json(after);
        after_json["reason"] = json!(reason);
        after_json["decision_id"] = json!(decision.id.as_str());
        after_json["guardrails_evidence"] = evidence;
        let a = audit(
            actor,
            audit_action(taken, automatic),
            &after.tenant_id,
            "rollout_policy",
            after.agent_id.to_string(),
            Some(policy_json(before)),
            Some(after_json),
        );
        let written = self
            .store
            .record_rollout_decision(after, before.revision, &decision, &a, event.as_ref())
            .await?;
        if written {
            metrics::counter!("rollout_decisions_total", "action" => action).increment(1);
            tracing::info!(
                agent_id = %after.agent_id,
                action,
                state = after.state.as_str(),
                canary_percent = after.canary_percent(),
                "rollout decision"
            );
            if event.is_some()
                && let Some(n) = &self.notifier
            {
                n.wake();
            }
        }
        Ok(written)
    }

    /// An admin action with its reason.
    pub(super) async fn act(
        &self,
        agent_id: AgentId,
        action: Action,
        reason: String,
        meta: AuditMeta,
    ) -> Result<RolloutPolicy, RolloutError> {
        let agent = self.agent(&agent_id).await?;
        let before = self
            .store
            .rollout_policy(&agent.tenant_id, &agent.id)
            .await?
            .ok_or(RolloutError::NotFound("rollout policy"))?;
        let (taken, after) = apply(&before, action, now_ms()).map_err(RolloutError::Conflict)?;
        if taken == Action::Start || taken == Action::Promote {
            // The versions must still be servable.
            if let Some(canary) = &before.canary_version_id {
                self.approved_of(&agent, canary, "canary_version_id")
                    .await?;
            }
        }
        let evidence = self
            .assessment(&before)
            .await?
            .map_or(Value::Null, |a| json!(a.checks));
        let decided = Decided {
            taken,
            automatic: false,
            reason,
            actor: meta,
            evidence,
        };
        if !self.record(&before, &after, decided).await? {
            return Err(RolloutError::Conflict(
                "the rollout changed meanwhile; retry".into(),
            ));
        }
        Ok(after)
    }

    /// Checks a canarying policy and takes what its guardrails and schedule call for.
    pub(super) async fn check(&self, p: &RolloutPolicy) -> Result<(), RolloutError> {
        if p.state != RolloutStatus::Canarying {
            return Ok(());
        }
        let Some(canary) = &p.canary_version_id else {
            return Ok(());
        };
        let assessment = self.assessment(p).await?;
        let stage_evaluated = self
            .store
            .version_figures(canary.as_str(), p.stage_started_at, None)
            .await?
            .evaluated;
        let now = now_ms();
        let (action, reason) = match step(p, assessment.as_ref(), stage_evaluated, now) {
            Step::Hold => return Ok(()),
            Step::Rollback => (
                Action::Rollback,
                assessment
                    .as_ref()
                    .map_or_else(String::new, Assessment::breach_reason),
            ),
            Step::Advance => (
                Action::Advance,
                format!(
                    "stage {} done: {stage_evaluated} evaluated calls, guardrails within thresholds",
                    p.stage_index + 1
                ),
            ),
            Step::Promote => (
                Action::Promote,
                format!(
                    "last stage done: {stage_evaluated} evaluated calls, guardrails within thresholds"
                ),
            ),
        };
        let (taken, after) = apply(p, action, now).map_err(RolloutError::Conflict)?;
        let evidence = assessment.map_or(Value::Null, |a| json!(a.checks));
        let system = AuditMeta {
            actor: SYSTEM.into(),
            request_id: None,
        };
        // Not written: another node decided first; its decision stands.
        let decided = Decided {
            taken,
            automatic: true,
            reason,
            actor: system,
            evidence,
        };
        let _ = self.record(p, &after, decided).await?;
        Ok(())
    }

    /// An evaluation was recorded: checks the policy of its agent when it is canarying and
    /// the result is of its canary or its stable version.
    pub(super) async fn evaluated(&self, n: &EvaluationNotice) -> Result<(), RolloutError> {
        let Some(key) = &n.agent_key else {
            return Ok(());
        };
        let Some(p) = self.store.rollout_policy_by_key(&n.tenant_id, key).await? else {
            return Ok(());
        };
        let concerns = n.agent_version_id.as_deref().is_some_and(|v| {
            v == p.stable_version_id.as_str()
                || p.canary_version_id
                    .as_ref()
                    .is_some_and(|c| c.as_str() == v)
        });
        if concerns {
            self.check(&p).await?;
        }
        Ok(())
    }

    /// The timer: every canarying policy is checked (a lost notice, or a stage's time).
    pub(super) async fn tick(&self) -> Result<(), RolloutError> {
        for p in self.store.canarying_policies().await? {
            if let Err(error) = self.check(&p).await {
                tracing::warn!(agent_id = %p.agent_id, error = %error, "rollout check failed");
            }
        }
        Ok(())
    }
}
