//! Actor-level tests of canary rollouts: a `RolloutActor` and a real `EvaluationActor` on
//! SQLite and PostgreSQL, finished sessions written through the store as the call runtime
//! writes them, scored against a deterministic rubric, the results fed to the rollout
//! actor through [`RolloutFeed`]. A decision is awaited through the evaluation notices
//! (the feed casts before the test hears of a result, so a later call on the actor sees
//! it handled), never by sleeping.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef, call_t};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::*;
use crate::crypto::SecretBox;
use crate::evaluation::fixtures::{
    Backend, FakeJudge, JudgeMode, SessionSpec, TestDb, backend_tests, tenant,
};
use crate::evaluation::{
    EvaluationActor, EvaluationArgs, EvaluationMsg, EvaluationSettings, EvaluationSink,
    Evaluations, JudgeSettings, Rubric,
};
use crate::singleton::SingletonRef;
use crate::store::{AuditFilter, RolloutStatus, Stage, TurnDetection, on_pool};

const PATIENCE: Duration = Duration::from_secs(20);
const MS: u64 = 10_000;

backend_tests!(
    a_failing_canary_is_rolled_back_after_the_minimum_sample,
    a_healthy_canary_advances_through_its_stages_and_is_promoted,
    callers_land_on_the_arm_their_number_hashes_to,
    a_result_the_feed_lost_is_caught_by_the_timer,
);

/// Tells the rollout feed (when there is one), then the test.
struct Tee {
    feed: Option<Arc<dyn EvaluationSink>>,
    test: mpsc::UnboundedSender<EvaluationNotice>,
}

impl EvaluationSink for Tee {
    fn evaluated(&self, notice: &EvaluationNotice) {
        if let Some(feed) = &self.feed {
            feed.evaluated(notice);
        }
        let _ = self.test.send(notice.clone());
    }
}

struct World {
    _db: TestDb,
    store: Store,
    tenant: TenantId,
    rollout: ActorRef<RolloutMsg>,
    evaluations: ActorRef<EvaluationMsg>,
    notices: mpsc::UnboundedReceiver<EvaluationNotice>,
    agent: Agent,
    stable: AgentVersionId,
    canary: AgentVersionId,
    _judge: FakeJudge,
}

fn meta() -> AuditMeta {
    AuditMeta {
        actor: "admin:alice".into(),
        request_id: None,
    }
}

fn rubric() -> Rubric {
    serde_json::from_value(json!({
        "pass_score": 0.5,
        "criteria": [
            {"key": "greeting", "kind": "required_phrase", "pattern": "thanks for calling", "critical": true}
        ]
    }))
    .expect("rubric")
}

async fn approved_version(actor: &ActorRef<RolloutMsg>, agent: &AgentId) -> AgentVersionId {
    let spec = VersionSpec {
        model: "gpt-realtime".into(),
        voice: "marin".into(),
        instructions: "Help.".into(),
        greeting: None,
        voicemail_message: None,
        transcription_model: None,
        transcription_language: None,
        turn_detection: TurnDetection::default(),
        max_call_seconds: 600,
        idle_timeout_seconds: 30,
        contract: crate::contract::Contract::default(),
        rubric: Some(rubric()),
        recording_policy: None,
        recording_disclosure: None,
    };
    let v = call_t!(
        actor,
        RolloutMsg::CreateVersion,
        MS,
        agent.clone(),
        spec,
        meta()
    )
    .expect("call")
    .expect("version");
    call_t!(actor, RolloutMsg::Approve, MS, v.id.clone(), meta())
        .expect("call")
        .expect("approve");
    v.id
}

async fn world(backend: Backend) -> Option<World> {
    world_fed(backend, true).await
}

/// A world whose evaluation results reach the rollout actor through its feed, or (`fed`
/// false) not at all, as when the actor was restarting.
async fn world_fed(backend: Backend, fed: bool) -> Option<World> {
    let db = TestDb::new(backend).await?;
    let store = db.store(4).await;
    let tenant = tenant(&store).await;
    let mut args = RolloutArgs::new(store.clone(), None);
    args.check_interval = Duration::from_secs(3600);
    let (rollout, _join) = Actor::spawn(None, RolloutActor, args).await.expect("spawn");
    let rollout_ref = SingletonRef::new();
    rollout_ref.set(Some(rollout.clone()));
    let agent = call_t!(
        rollout,
        RolloutMsg::CreateAgent,
        MS,
        NewAgent {
            tenant_id: tenant.clone(),
            key: "support".into(),
            name: "Support".into(),
        },
        meta()
    )
    .expect("call")
    .expect("agent");
    let stable = approved_version(&rollout, &agent.id).await;
    let canary = approved_version(&rollout, &agent.id).await;
    let judge = FakeJudge::start(JudgeMode::yes()).await;
    let (tx, notices) = mpsc::unbounded_channel();
    let singleton = SingletonRef::new();
    let handle = Evaluations::new(store.clone(), singleton.clone());
    let eval_args = EvaluationArgs {
        store: store.clone(),
        secret_box: SecretBox::from_master_key(b"rollout-tests-master-key-0123456789ab"),
        settings: EvaluationSettings {
            workers: 1,
            max_attempts: 2,
            backoff_base: Duration::from_millis(10),
            tick: Duration::from_millis(100),
            judge: JudgeSettings {
                base_url: judge.base_url.clone(),
                model: "judge-model".into(),
                timeout: Duration::from_secs(2),
                max_transcript_chars: 10_000,
                api_key: Some("sk-service-key-0123456789".into()),
                summaries: false,
            },
        },
        wake: handle.wake_flag(),
        sink: Some(Arc::new(Tee {
            feed: fed.then(|| RolloutFeed::sink(rollout_ref)),
            test: tx,
        })),
        notifier: None,
    };
    let (evaluations, _join) = Actor::spawn(None, EvaluationActor, eval_args)
        .await
        .expect("spawn");
    singleton.set(Some(evaluations.clone()));
    Some(World {
        _db: db,
        store,
        tenant,
        rollout,
        evaluations,
        notices,
        agent,
        stable,
        canary,
        _judge: judge,
    })
}

impl World {
    async fn policy(&self, stages: Vec<Stage>, min_sample: i64) -> RolloutPolicy {
        let spec = PolicySpec {
            stable_version_id: self.stable.clone(),
            canary_version_id: Some(self.canary.clone()),
            stages,
            auto_promote: true,
            guardrails: guardrails::Guardrails {
                min_sample,
                ..guardrails::Guardrails::default()
            },
            reason: "trial of the new greeting".into(),
        };
        call_t!(
            self.rollout,
            RolloutMsg::PutPolicy,
            MS,
            self.agent.id.clone(),
            spec,
            meta()
        )
        .expect("call")
        .expect("policy")
    }

    async fn act(&self, action: Action) -> Result<RolloutPolicy, RolloutError> {
        call_t!(
            self.rollout,
            RolloutMsg::Act,
            MS,
            self.agent.id.clone(),
            action,
            format!("{} by hand", action.as_str()),
            meta()
        )
        .expect("call")
    }

    /// Writes `n` finished sessions of `version`, passing or not, and awaits their results.
    async fn calls(&mut self, version: &AgentVersionId, passing: bool, n: usize) {
        let greeting = if passing {
            "Thanks for calling Acme!"
        } else {
            "Hello."
        };
        for _ in 0..n {
            let mut spec = SessionSpec::new(
                Some(version.to_string()),
                &[
                    ("assistant", greeting),
                    ("user", "Hi"),
                    ("assistant", "Bye."),
                ],
            );
            spec.started_at = crate::time::now_ms();
            let (_call, session) =
                crate::evaluation::fixtures::finished_session(&self.store, &self.tenant, &spec)
                    .await;
            // Finishing the session wrote its evaluation job; asking again adds none.
            assert!(
                !self
                    .store
                    .enqueue_session_evaluation(&session, crate::time::now_ms())
                    .await
                    .expect("job")
            );
        }
        let _ = self.evaluations.cast(EvaluationMsg::Wake);
        for _ in 0..n {
            let notice = tokio::time::timeout(PATIENCE, self.notices.recv())
                .await
                .expect("an evaluation within the deadline")
                .expect("open");
            assert_eq!(notice.passed, passing, "{notice:?}");
        }
    }

    async fn governance(&self) -> AgentGovernance {
        let mut all = call_t!(
            self.rollout,
            RolloutMsg::Governance,
            MS,
            self.tenant.clone()
        )
        .expect("call")
        .expect("governance");
        assert_eq!(all.len(), 1);
        all.remove(0)
    }

    async fn events(&self, name: &str) -> Vec<Value> {
        let payloads: Vec<String> = on_pool!(&self.store, pool => {
            sqlx::query_scalar("SELECT payload FROM webhook_events WHERE tenant_id = $1 AND event = $2 ORDER BY created_at")
                .bind(self.tenant.as_str())
                .bind(name)
                .fetch_all(pool)
                .await
                .expect("events")
        });
        payloads
            .iter()
            .map(|p| serde_json::from_str(p).expect("json"))
            .collect()
    }

    async fn audit_actions(&self) -> Vec<(String, String)> {
        let page = self
            .store
            .list_audit(&AuditFilter {
                tenant_id: Some(self.tenant.clone()),
                action: None,
                limit: 100,
                offset: 0,
            })
            .await
            .expect("audit");
        page.items
            .into_iter()
            .filter(|a| a.action.starts_with("rollout."))
            .map(|a| (a.action, a.actor))
            .collect()
    }
}

fn stage(percent: u8, min_evaluated_calls: i64) -> Stage {
    Stage {
        percent,
        min_evaluated_calls,
        min_seconds: 0,
    }
}

async fn a_failing_canary_is_rolled_back_after_the_minimum_sample(backend: Backend) {
    let Some(mut w) = world(backend).await else {
        return;
    };
    w.policy(vec![stage(20, 2), stage(100, 2)], 4).await;
    let started = w.act(Action::Start).await.expect("start");
    assert_eq!(started.canary_percent(), 20);
    let (stable, canary) = (w.stable.clone(), w.canary.clone());
    w.calls(&stable, true, 4).await;
    // Below the minimum sample nothing is decided, and the stage does not advance on
    // undecided guardrails.
    w.calls(&canary, false, 3).await;
    let g = w.governance().await;
    let p = g.policy.as_ref().expect("policy");
    assert_eq!((p.state, p.stage_index), (RolloutStatus::Canarying, 0));
    assert_eq!(g.decisions.len(), 1, "{:?}", g.decisions);
    // The fourth failing canary call reaches the minimum: halted at once.
    w.calls(&canary, false, 1).await;
    let g = w.governance().await;
    let p = g.policy.as_ref().expect("policy");
    assert_eq!(p.state, RolloutStatus::Halted);
    assert_eq!(p.canary_percent(), 0);
    let d = &g.decisions[0];
    assert_eq!(
        (d.action.as_str(), d.actor.as_str()),
        ("auto_rollback", "system")
    );
    assert!(d.reason.contains("pass_rate"), "{}", d.reason);
    let checks = d.evidence.as_array().expect("evidence");
    let pass = checks
        .iter()
        .find(|c| c["guardrail"] == "pass_rate")
        .expect("pass_rate");
    assert_eq!(pass["status"], "breach");
    assert_eq!(pass["canary_sample"], 4);
    assert_eq!(pass["stable_sample"], 4);
    assert_eq!(pass["value"], 0.0);
    assert_eq!(pass["baseline"], 1.0);
    let events = w.events("voice.rollout.rolled_back").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["action"], "auto_rollback");
    assert_eq!(events[0]["data"]["agent_key"], "support");
    assert_eq!(events[0]["data"]["canary_version_id"], w.canary.as_str());
    let audit = w.audit_actions().await;
    assert!(
        audit.contains(&("rollout.auto_rollback".into(), "system".into())),
        "{audit:?}"
    );
    assert!(
        audit.contains(&("rollout.start".into(), "admin:alice".into())),
        "{audit:?}"
    );
    // New calls go to stable.
    for i in 0..50 {
        let r = call_t!(
            w.rollout,
            RolloutMsg::Resolve,
            MS,
            ResolveRequest {
                tenant: w.tenant.clone(),
                agent_key: "support".into(),
                pinned: None,
                number: format!("+1555000{i:04}"),
            }
        )
        .expect("call")
        .expect("resolve");
        assert_eq!(
            (r.arm, r.version.id.clone()),
            (Arm::Stable, w.stable.clone())
        );
    }
    // More results change nothing: the decision is taken once.
    w.calls(&canary, false, 1).await;
    assert_eq!(w.events("voice.rollout.rolled_back").await.len(), 1);
}

async fn a_healthy_canary_advances_through_its_stages_and_is_promoted(backend: Backend) {
    let Some(mut w) = world(backend).await else {
        return;
    };
    w.policy(vec![stage(10, 2), stage(50, 2)], 2).await;
    w.act(Action::Start).await.expect("start");
    let (stable, canary) = (w.stable.clone(), w.canary.clone());
    w.calls(&stable, true, 2).await;
    w.calls(&canary, true, 2).await;
    let g = w.governance().await;
    let p = g.policy.as_ref().expect("policy");
    assert_eq!(
        (p.state, p.stage_index, p.canary_percent()),
        (RolloutStatus::Canarying, 1, 50)
    );
    assert_eq!(g.decisions[0].action, "auto_advance");
    assert!(
        g.guardrails
            .iter()
            .all(|c| c.status == guardrails::CheckStatus::Pass),
        "{:?}",
        g.guardrails
    );
    // The second stage counts its own calls.
    w.calls(&canary, true, 1).await;
    assert_eq!(w.governance().await.policy.expect("policy").stage_index, 1);
    w.calls(&canary, true, 1).await;
    let g = w.governance().await;
    let p = g.policy.as_ref().expect("policy");
    assert_eq!(p.state, RolloutStatus::Promoted);
    assert_eq!(p.stable_version_id, w.canary);
    assert_eq!(p.canary_version_id, None);
    let actions: Vec<&str> = g.decisions.iter().map(|d| d.action.as_str()).collect();
    assert_eq!(actions, ["auto_promote", "auto_advance", "start"]);
    let promoted = w.events("voice.rollout.promoted").await;
    assert_eq!(promoted.len(), 2);
    assert_eq!(promoted[1]["data"]["action"], "auto_promote");
    assert_eq!(promoted[1]["data"]["stable_version_id"], w.canary.as_str());
    // Every call now runs the promoted version.
    let r = call_t!(
        w.rollout,
        RolloutMsg::Resolve,
        MS,
        ResolveRequest {
            tenant: w.tenant.clone(),
            agent_key: "support".into(),
            pinned: None,
            number: "+15550001234".into(),
        }
    )
    .expect("call")
    .expect("resolve");
    assert_eq!((r.arm, r.version.id), (Arm::Stable, w.canary.clone()));
    // Promoted: nothing left to start.
    assert!(matches!(
        w.act(Action::Start).await,
        Err(RolloutError::Conflict(_))
    ));
}

async fn callers_land_on_the_arm_their_number_hashes_to(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let policy = w.policy(vec![stage(30, 100)], 20).await;
    let resolve = |number: String, pinned: Option<AgentVersionId>| {
        let req = ResolveRequest {
            tenant: w.tenant.clone(),
            agent_key: "support".into(),
            pinned,
            number,
        };
        let actor = w.rollout.clone();
        async move {
            call_t!(actor, RolloutMsg::Resolve, MS, req)
                .expect("call")
                .expect("resolve")
        }
    };
    // Not started: everyone on stable.
    assert_eq!(resolve("+15550000001".into(), None).await.arm, Arm::Stable);
    w.act(Action::Start).await.expect("start");
    let mut canaries = 0;
    for i in 0..200 {
        let number = format!("+1555{i:07}");
        let expected = assign::on_canary(&policy.salt, &number, 30);
        let r = resolve(number.clone(), None).await;
        let want = if expected {
            (Arm::Canary, &w.canary)
        } else {
            (Arm::Stable, &w.stable)
        };
        assert_eq!((r.arm, &r.version.id), want, "{number}");
        // Sticky: asked again, the same.
        assert_eq!(resolve(number, None).await.arm, r.arm);
        canaries += usize::from(expected);
    }
    assert!((30..=90).contains(&canaries), "{canaries} of 200 at 30 %");
    // A pinned version bypasses the policy.
    let r = resolve("+15550000001".into(), Some(w.stable.clone())).await;
    assert_eq!(r.arm, Arm::Pinned);
    // Manual pause and rollback: stable only; the start again resumes.
    w.act(Action::Pause).await.expect("pause");
    assert!(matches!(
        w.act(Action::Pause).await,
        Err(RolloutError::Conflict(_))
    ));
    let p = w.act(Action::Rollback).await.expect("rollback");
    assert_eq!(p.canary_percent(), 0);
    assert_eq!(w.events("voice.rollout.rolled_back").await.len(), 1);
    // The policy cannot change while canarying; it can once halted.
    w.act(Action::Start).await.expect("start again");
    let err = call_t!(
        w.rollout,
        RolloutMsg::PutPolicy,
        MS,
        w.agent.id.clone(),
        PolicySpec {
            stable_version_id: w.stable.clone(),
            canary_version_id: Some(w.canary.clone()),
            stages: vec![stage(50, 1)],
            auto_promote: false,
            guardrails: guardrails::Guardrails::default(),
            reason: "x".into(),
        },
        meta()
    )
    .expect("call");
    assert!(matches!(err, Err(RolloutError::Conflict(_))), "{err:?}");
    let p = w.act(Action::Promote).await.expect("promote");
    assert_eq!(p.stable_version_id, w.canary);
    assert_eq!(w.events("voice.rollout.promoted").await.len(), 1);
}

async fn a_result_the_feed_lost_is_caught_by_the_timer(backend: Backend) {
    let Some(mut w) = world_fed(backend, false).await else {
        return;
    };
    w.policy(vec![stage(20, 2)], 3).await;
    w.act(Action::Start).await.expect("start");
    let (stable, canary) = (w.stable.clone(), w.canary.clone());
    w.calls(&stable, true, 3).await;
    w.calls(&canary, false, 3).await;
    // No notice reached the actor: still canarying.
    let g = w.governance().await;
    assert_eq!(
        g.policy.as_ref().expect("policy").state,
        RolloutStatus::Canarying
    );
    // The timer's tick checks every canary (handled before the next call).
    w.rollout.cast(RolloutMsg::Tick).expect("tick");
    let g = w.governance().await;
    assert_eq!(
        g.policy.as_ref().expect("policy").state,
        RolloutStatus::Halted
    );
    assert_eq!(g.decisions[0].action, "auto_rollback");
    assert_eq!(w.events("voice.rollout.rolled_back").await.len(), 1);
}
