//! The rollout's state machine, as pure functions: what an admin action does to a policy
//! ([`apply`]), and what the guardrails and the stage schedule call for ([`step`]).
//!
//! ```text
//!  stable_only ──start──▶ canarying ──advance (last stage: promote)──▶ promoted
//!        ▲                 │    ▲  │
//!        │ (new canary)    │    │  └─pause / rollback / guardrail breach──▶ halted
//!        └──── PUT policy ─┘    └────────────────start──────────────────────┘
//! ```
//! `pause` keeps the stage (a later `start` resumes it); `rollback` and a breach send the
//! schedule back to its first stage. `promote` makes the canary the stable version.

use super::guardrails::{Assessment, CheckStatus};
use crate::store::{RolloutPolicy, RolloutStatus};

/// An admin action on a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Starts (or resumes) the canary at its current stage.
    Start,
    /// Moves to the next stage (after the last: promotes).
    Advance,
    /// Halts the canary, keeping its stage.
    Pause,
    /// Halts the canary and resets its schedule.
    Rollback,
    /// Makes the canary the stable version.
    Promote,
}

impl Action {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Advance => "advance",
            Action::Pause => "pause",
            Action::Rollback => "rollback",
            Action::Promote => "promote",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Action::Start,
            Action::Advance,
            Action::Pause,
            Action::Rollback,
            Action::Promote,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// The policy after `action` at `now`, or why it cannot be taken. Returns the action
/// actually taken (`advance` past the last stage is a `promote`).
pub fn apply(
    policy: &RolloutPolicy,
    action: Action,
    now: i64,
) -> Result<(Action, RolloutPolicy), String> {
    let mut p = policy.clone();
    p.revision += 1;
    p.updated_at = now;
    let state = policy.state;
    let refuse = || {
        format!(
            "cannot {} a rollout that is {}",
            action.as_str(),
            state.as_str()
        )
    };
    match action {
        Action::Start => {
            if policy.canary_version_id.is_none() || policy.stages.is_empty() {
                return Err(
                    "the policy has no canary to start; set canary_version_id and stages".into(),
                );
            }
            if !matches!(state, RolloutStatus::StableOnly | RolloutStatus::Halted) {
                return Err(refuse());
            }
            p.state = RolloutStatus::Canarying;
            p.stage_index = policy.stage_index.min(policy.stages.len() - 1);
            p.stage_started_at = Some(now);
            p.canary_started_at = Some(now);
            Ok((Action::Start, p))
        }
        Action::Advance => {
            if state != RolloutStatus::Canarying {
                return Err(refuse());
            }
            if policy.stage_index + 1 >= policy.stages.len() {
                return apply(policy, Action::Promote, now);
            }
            p.stage_index += 1;
            p.stage_started_at = Some(now);
            Ok((Action::Advance, p))
        }
        Action::Pause => {
            if state != RolloutStatus::Canarying {
                return Err(refuse());
            }
            p.state = RolloutStatus::Halted;
            Ok((Action::Pause, p))
        }
        Action::Rollback => {
            if !matches!(state, RolloutStatus::Canarying | RolloutStatus::Halted) {
                return Err(refuse());
            }
            p.state = RolloutStatus::Halted;
            p.stage_index = 0;
            Ok((Action::Rollback, p))
        }
        Action::Promote => {
            let Some(canary) = policy.canary_version_id.clone() else {
                return Err("the policy has no canary to promote".into());
            };
            if !matches!(state, RolloutStatus::Canarying | RolloutStatus::Halted) {
                return Err(refuse());
            }
            p.state = RolloutStatus::Promoted;
            p.stable_version_id = canary;
            p.canary_version_id = None;
            p.stage_index = 0;
            p.stage_started_at = None;
            p.canary_started_at = None;
            Ok((Action::Promote, p))
        }
    }
}

/// What a canarying policy calls for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing yet.
    Hold,
    /// A guardrail is breached: halt.
    Rollback,
    /// The stage is done and healthy: next stage.
    Advance,
    /// The last stage is done and healthy, and the policy promotes on its own.
    Promote,
}

/// Whether the current stage has had its evaluated calls and its time.
pub fn stage_done(policy: &RolloutPolicy, stage_evaluated: i64, now: i64) -> bool {
    let Some(stage) = policy.stages.get(policy.stage_index) else {
        return false;
    };
    let since = policy.stage_started_at.unwrap_or(now);
    stage_evaluated >= stage.min_evaluated_calls
        && now.saturating_sub(since) >= stage.min_seconds.saturating_mul(1000)
}

/// The step of a canarying policy given its guardrails (`None` when they are off) and the
/// evaluated canary calls of its current stage: a breach rolls back at once; a stage
/// advances (or, last, promotes when `auto_promote`) only when it has had its calls and its
/// time and every guardrail has passed (not merely lacked a sample).
pub fn step(
    policy: &RolloutPolicy,
    assessment: Option<&Assessment>,
    stage_evaluated: i64,
    now: i64,
) -> Step {
    if policy.state != RolloutStatus::Canarying || policy.canary_version_id.is_none() {
        return Step::Hold;
    }
    if assessment.is_some_and(|a| !a.breaches().is_empty()) {
        return Step::Rollback;
    }
    // A stage advances on evidence: every guardrail decided and within its threshold.
    let healthy = assessment.is_none_or(|a| a.checks.iter().all(|c| c.status == CheckStatus::Pass));
    if !healthy || !stage_done(policy, stage_evaluated, now) {
        return Step::Hold;
    }
    if policy.stage_index + 1 < policy.stages.len() {
        Step::Advance
    } else if policy.auto_promote {
        Step::Promote
    } else {
        Step::Hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AgentId, AgentVersionId, TenantId};
    use crate::rollout::guardrails::{ArmFigures, Guardrails, assess};
    use crate::store::Stage;

    fn policy() -> RolloutPolicy {
        RolloutPolicy {
            agent_id: AgentId::generate(),
            tenant_id: TenantId::generate(),
            stable_version_id: AgentVersionId::generate(),
            canary_version_id: Some(AgentVersionId::generate()),
            stages: vec![
                Stage {
                    percent: 10,
                    min_evaluated_calls: 5,
                    min_seconds: 60,
                },
                Stage {
                    percent: 50,
                    min_evaluated_calls: 5,
                    min_seconds: 0,
                },
            ],
            auto_promote: true,
            salt: "s".into(),
            guardrails: Guardrails::default(),
            state: RolloutStatus::StableOnly,
            stage_index: 0,
            stage_started_at: None,
            canary_started_at: None,
            revision: 1,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn actions_move_the_policy_through_its_states() {
        let p = policy();
        assert!(apply(&p, Action::Advance, 1).is_err());
        assert!(apply(&p, Action::Pause, 1).is_err());
        let (_, started) = apply(&p, Action::Start, 1_000).expect("start");
        assert_eq!(started.state, RolloutStatus::Canarying);
        assert_eq!(started.canary_percent(), 10);
        assert_eq!(started.revision, 2);
        let (_, paused) = apply(&started, Action::Pause, 2_000).expect("pause");
        assert_eq!(paused.canary_percent(), 0);
        let (_, advanced) = apply(&started, Action::Advance, 3_000).expect("advance");
        assert_eq!((advanced.stage_index, advanced.canary_percent()), (1, 50));
        let (_, resumed) = apply(
            &apply(&advanced, Action::Pause, 4_000).expect("pause").1,
            Action::Start,
            5_000,
        )
        .expect("resume");
        assert_eq!(resumed.canary_percent(), 50, "pause keeps the stage");
        let (_, rolled) = apply(&advanced, Action::Rollback, 6_000).expect("rollback");
        assert_eq!(
            (rolled.state, rolled.stage_index),
            (RolloutStatus::Halted, 0)
        );
        let (taken, promoted) = apply(&advanced, Action::Advance, 7_000).expect("last advance");
        assert_eq!(taken, Action::Promote);
        assert_eq!(promoted.state, RolloutStatus::Promoted);
        assert_eq!(
            Some(promoted.stable_version_id.clone()),
            p.canary_version_id
        );
        assert_eq!(promoted.canary_version_id, None);
        assert!(apply(&promoted, Action::Start, 8_000).is_err());
    }

    #[test]
    fn a_stage_advances_after_its_calls_and_its_time_and_a_breach_rolls_back() {
        let (_, p) = apply(&policy(), Action::Start, 0).expect("start");
        assert_eq!(step(&p, None, 4, 120_000), Step::Hold, "too few calls");
        assert_eq!(step(&p, None, 5, 59_999), Step::Hold, "too soon");
        assert_eq!(step(&p, None, 5, 60_000), Step::Advance);
        let (_, last) = apply(&p, Action::Advance, 60_000).expect("advance");
        assert_eq!(step(&last, None, 5, 60_000), Step::Promote);
        let mut manual = last.clone();
        manual.auto_promote = false;
        assert_eq!(step(&manual, None, 5, 60_000), Step::Hold);
        let g = Guardrails::default();
        let good = ArmFigures {
            evaluated: 20,
            passed: 20,
            first_audio_samples: 20,
            first_audio_p95_ms: Some(800),
            ..ArmFigures::default()
        };
        let bad = ArmFigures { passed: 2, ..good };
        let a = assess(&g, &bad, &good);
        assert_eq!(step(&p, Some(&a), 0, 0), Step::Rollback);
        let a = assess(&g, &good, &good);
        assert_eq!(step(&p, Some(&a), 5, 60_000), Step::Advance);
        // Too few stable calls to compare: the stage waits.
        let few = ArmFigures {
            evaluated: 3,
            passed: 3,
            ..good
        };
        let a = assess(&g, &good, &few);
        assert_eq!(step(&p, Some(&a), 5, 60_000), Step::Hold);
    }
}
