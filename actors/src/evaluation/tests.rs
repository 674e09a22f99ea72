//! Actor-level tests of evaluations: `EvaluationActor` running jobs against a SQLite store
//! and a loopback judge. A result is awaited through the sink (never by sleeping).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use super::fixtures::{
    Backend, FakeJudge, JudgeMode, SessionSpec, TestDb, ToolSpec, backend_tests, evaluated_events,
    finished_session, memory_store, tenant, version,
};
use super::judge::Answer;
use super::*;
use crate::crypto::SecretBox;
use crate::store::{EvaluationJobStatus, FunctionCallStatus};

/// Upper bound of any wait in these tests (never reached when they pass).
const PATIENCE: Duration = Duration::from_secs(20);

fn demo_rubric() -> Rubric {
    serde_json::from_value(json!({
        "pass_score": 0.7,
        "criteria": [
            {"key": "greeting", "kind": "required_phrase", "pattern": "thanks for calling", "critical": true},
            {"key": "order_lookup", "kind": "tool_called", "tool": "lookup_order", "when_caller_says": "\\border\\b"},
            {"key": "resolved", "kind": "llm_judge", "question": "Did the agent resolve the caller's question or hand off correctly?"}
        ]
    }))
    .expect("rubric")
}

fn settings(judge: &FakeJudge) -> EvaluationSettings {
    EvaluationSettings {
        workers: 2,
        max_attempts: 2,
        backoff_base: Duration::from_millis(10),
        tick: Duration::from_millis(200),
        judge: JudgeSettings {
            base_url: judge.base_url.clone(),
            model: "judge-model".into(),
            timeout: Duration::from_millis(400),
            max_transcript_chars: 10_000,
            api_key: Some("sk-service-key-0123456789".into()),
            summaries: true,
        },
    }
}

struct Runner {
    actor: ActorRef<EvaluationMsg>,
    handle: Evaluations,
}

async fn runner(
    store: &Store,
    settings: EvaluationSettings,
    sink: mpsc::UnboundedSender<EvaluationNotice>,
) -> Runner {
    let singleton = SingletonRef::new();
    let handle = Evaluations::new(store.clone(), singleton.clone());
    let args = EvaluationArgs {
        store: store.clone(),
        secret_box: SecretBox::from_master_key(b"evaluation-tests-master-key-0123456789"),
        settings,
        wake: handle.wake_flag(),
        sink: Some(Arc::new(sink)),
        notifier: Some(crate::notifier::Notifier::new(
            store.clone(),
            SingletonRef::new(),
        )),
    };
    let (actor, _join) = Actor::spawn(None, EvaluationActor, args)
        .await
        .expect("spawn");
    singleton.set(Some(actor.clone()));
    Runner { actor, handle }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<EvaluationNotice>) -> EvaluationNotice {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("an evaluation within the deadline")
        .expect("sink open")
}

/// A conversation that greets, looks an order up and answers.
fn order_call(version: Option<String>) -> SessionSpec {
    let mut spec = SessionSpec::new(
        version,
        &[
            ("assistant", "Thanks for calling Acme! How can I help?"),
            (
                "user",
                "Where is my order A1? My card is 4111 1111 1111 1111.",
            ),
            ("assistant", "Your order A1 shipped yesterday."),
        ],
    );
    spec.tools.push(ToolSpec {
        name: "lookup_order",
        arguments: json!({"order_id": "A1"}),
        status: FunctionCallStatus::Succeeded,
        result: Some(json!({"status": "shipped"})),
    });
    spec
}

#[tokio::test]
async fn a_finished_session_is_scored_with_the_judge_summarised_and_announced() {
    let store = memory_store().await;
    let t = tenant(&store).await;
    let rubric = demo_rubric();
    let v = version(&store, &t, "support", Some(&rubric)).await;
    let (call, session) = finished_session(&store, &t, &order_call(Some(v.clone()))).await;
    // Finishing the session wrote its job (in the same transaction).
    assert!(
        !store
            .enqueue_session_evaluation(&session, crate::time::now_ms())
            .await
            .expect("job")
    );
    let judge = FakeJudge::start(JudgeMode::yes()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let run = runner(&store, settings(&judge), tx).await;

    let notice = next(&mut rx).await;
    assert_eq!(notice.session_id, session);
    assert!(notice.passed);
    assert!((notice.score - 1.0).abs() < 1e-9);
    assert_eq!(notice.agent_version_id.as_deref(), Some(v.as_str()));
    assert_eq!(notice.first_audio_ms, Some(700));
    let detail = run
        .handle
        .of_session(&t, &session)
        .await
        .expect("read")
        .expect("evaluated");
    let e = &detail.evaluation;
    assert_eq!(e.call_id, call);
    assert_eq!(e.rubric_hash, rubric.hash());
    assert_eq!(e.summary.as_deref(), Some("A call of 3 turns."));
    assert_eq!(e.tags, vec!["order_status".to_owned(), "test".to_owned()]);
    let usage = e.judge.as_ref().expect("judge usage");
    assert_eq!(
        (
            usage.model.as_str(),
            usage.input_tokens,
            usage.output_tokens
        ),
        ("fake-judge-1", 321, 45)
    );
    assert_eq!(detail.criteria.len(), 3);
    assert!(detail.criteria.iter().all(|c| c.verdict == Verdict::Passed));
    assert_eq!(detail.criteria[0].evidence.turns[0].turn, 0);
    assert_eq!(detail.criteria[2].evidence.turns[0].turn, 0);
    assert_eq!(
        detail.criteria[2].evidence.note.as_deref(),
        Some("fake judgment of resolved")
    );
    let s = store
        .get_session(&t, &session)
        .await
        .expect("session")
        .expect("found");
    assert_eq!(s.summary.as_deref(), Some("A call of 3 turns."));
    assert_eq!(s.tags, e.tags);
    let events = evaluated_events(&store, &t).await;
    assert_eq!(events.len(), 1);
    let data = &events[0]["data"];
    assert_eq!(data["evaluation_id"], e.id.as_str());
    assert_eq!(data["session_id"], session.as_str());
    assert_eq!(data["agent_version_id"], v.as_str());
    assert_eq!(data["passed"], true);
    assert_eq!(data["failed_criteria"], json!([]));
    // The judge saw the conversation, not the card number.
    let sent = judge.bodies().join("\n");
    assert!(sent.contains("order A1"));
    assert!(!sent.contains("4111 1111"), "{sent}");
    assert!(!sent.contains("sk-service-key"));
    let summary = run.handle.summary(&v, None, None).await.expect("summary");
    assert_eq!((summary.evaluated, summary.passed), (1, 1));
    run.actor.stop(None);
}

#[tokio::test]
async fn a_failing_judge_is_retried_then_recorded_as_error_with_the_deterministic_part() {
    for mode in [
        JudgeMode::Status(500),
        JudgeMode::InvalidJson,
        JudgeMode::Hang,
    ] {
        let store = memory_store().await;
        let t = tenant(&store).await;
        let v = version(&store, &t, "support", Some(&demo_rubric())).await;
        let (_, session) = finished_session(&store, &t, &order_call(Some(v))).await;
        let judge = FakeJudge::start(mode.clone()).await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let run = runner(&store, settings(&judge), tx).await;
        // The job was written when the session finished: asking again finds it.
        let rescore = run.handle.evaluate(&t, &session).await.expect("evaluate");
        assert!(!rescore.job.created);

        let notice = next(&mut rx).await;
        assert_eq!(judge.requests(), 2, "{mode:?}: tried max_attempts times");
        let detail = run
            .handle
            .get(&t, &notice.evaluation_id)
            .await
            .expect("read")
            .expect("found");
        let verdicts: Vec<Verdict> = detail.criteria.iter().map(|c| c.verdict).collect();
        assert_eq!(
            verdicts,
            vec![Verdict::Passed, Verdict::Passed, Verdict::Error],
            "{mode:?}"
        );
        assert!(detail.evaluation.judge_error.is_some(), "{mode:?}");
        assert!(detail.evaluation.judge.is_none());
        assert_eq!(detail.evaluation.summary, None);
        assert!(
            detail.evaluation.passed,
            "{mode:?}: the judge criterion is not critical"
        );
        let job = store
            .get_evaluation_job(&t, &rescore.job.id)
            .await
            .expect("job")
            .expect("found");
        assert_eq!(job.status, EvaluationJobStatus::Done);
        assert_eq!(job.attempts, 2);
        let events = evaluated_events(&store, &t).await;
        assert_eq!(events[0]["data"]["error_criteria"], json!(["resolved"]));
        run.actor.stop(None);
    }
}

#[tokio::test]
async fn without_a_model_key_the_judge_criteria_are_errors_at_once() {
    let store = memory_store().await;
    let t = tenant(&store).await;
    let v = version(&store, &t, "support", Some(&demo_rubric())).await;
    let (_, session) = finished_session(&store, &t, &order_call(Some(v))).await;
    let judge = FakeJudge::start(JudgeMode::yes()).await;
    let mut s = settings(&judge);
    s.judge.api_key = None;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let run = runner(&store, s, tx).await;
    run.handle.evaluate(&t, &session).await.expect("evaluate");
    let notice = next(&mut rx).await;
    let detail = run
        .handle
        .get(&t, &notice.evaluation_id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(detail.criteria[2].verdict, Verdict::Error);
    assert_eq!(
        detail.evaluation.judge_error.as_deref(),
        Some("no model key for the judge")
    );
    assert_eq!(judge.requests(), 0);
    run.actor.stop(None);
}

#[tokio::test]
async fn evaluating_again_with_an_unchanged_rubric_is_idempotent() {
    let store = memory_store().await;
    let t = tenant(&store).await;
    let other = tenant(&store).await;
    let rubric = demo_rubric();
    let v = version(&store, &t, "support", Some(&rubric)).await;
    let (_, session) = finished_session(&store, &t, &order_call(Some(v))).await;
    let judge = FakeJudge::start(JudgeMode::yes()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let run = runner(&store, settings(&judge), tx).await;
    let first = run.handle.evaluate(&t, &session).await.expect("evaluate");
    let notice = next(&mut rx).await;

    let again = run.handle.evaluate(&t, &session).await.expect("again");
    assert_eq!(again.job.id, first.job.id);
    assert!(!again.job.created);
    assert_eq!(
        again.evaluation.as_ref().map(|e| &e.id),
        Some(&notice.evaluation_id),
        "the existing result is returned"
    );
    assert_eq!(judge.requests(), 1);
    assert_eq!(evaluated_events(&store, &t).await.len(), 1);

    // Another rubric is another evaluation; the latest is the session's.
    let mut changed = rubric.clone();
    changed.pass_score = 0.9;
    let rescored = run
        .handle
        .evaluate_with(&t, &session, &changed)
        .await
        .expect("rescore");
    assert!(rescored.job.created);
    let second = next(&mut rx).await;
    assert_ne!(second.evaluation_id, notice.evaluation_id);
    // Nothing but the new job ran: one judge request and one event each.
    assert_eq!(judge.requests(), 2);
    assert_eq!(evaluated_events(&store, &t).await.len(), 2);
    let latest = run
        .handle
        .of_session(&t, &session)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(latest.evaluation.id, second.evaluation_id);

    // Tenant isolation: another tenant finds nothing to evaluate, read or review.
    assert!(matches!(
        run.handle.evaluate(&other, &session).await,
        Err(EvaluationError::NotFound(_))
    ));
    assert!(
        run.handle
            .get(&other, &notice.evaluation_id)
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        run.handle
            .review(&other, &notice.evaluation_id, false, None, "mallory")
            .await
            .expect("review")
            .is_none()
    );
    let review = run
        .handle
        .review(&t, &notice.evaluation_id, false, Some("too slow"), "alice")
        .await
        .expect("review")
        .expect("recorded");
    let detail = run
        .handle
        .get(&t, &notice.evaluation_id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(detail.reviews, vec![review]);
    assert!(
        detail.evaluation.passed,
        "the automatic verdict is kept beside"
    );
    run.actor.stop(None);
}

#[tokio::test]
async fn a_live_session_or_one_without_a_rubric_is_not_evaluated_on_demand() {
    let store = memory_store().await;
    let t = tenant(&store).await;
    let bare = version(&store, &t, "support", None).await;
    let (_, session) = finished_session(&store, &t, &order_call(Some(bare))).await;
    let judge = FakeJudge::start(JudgeMode::yes()).await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let run = runner(&store, settings(&judge), tx).await;
    assert!(matches!(
        run.handle.evaluate(&t, &session).await,
        Err(EvaluationError::NoRubric)
    ));
    crate::store::on_pool!(&store, pool => {
        sqlx::query("UPDATE voice_sessions SET status = 'active' WHERE id = $1")
            .bind(session.as_str())
            .execute(pool)
            .await
            .expect("reopen");
    });
    assert!(matches!(
        run.handle.evaluate_with(&t, &session, &demo_rubric()).await,
        Err(EvaluationError::SessionActive)
    ));
    run.actor.stop(None);
}

backend_tests!(two_runners_on_one_database_never_evaluate_a_job_twice);

async fn two_runners_on_one_database_never_evaluate_a_job_twice(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store(4).await;
    let other_node = db.store(4).await;
    let t = tenant(&store).await;
    let v = version(&store, &t, "support", Some(&demo_rubric())).await;
    let mut sessions = Vec::new();
    for _ in 0..24 {
        let (_, session) = finished_session(&store, &t, &order_call(Some(v.clone()))).await;
        assert!(
            !store
                .enqueue_session_evaluation(&session, 0)
                .await
                .expect("job"),
            "written when the session finished"
        );
        sessions.push(session);
    }
    let judge = FakeJudge::start(JudgeMode::yes()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut s = settings(&judge);
    s.workers = 3;
    let a = runner(&store, s.clone(), tx.clone()).await;
    let b = runner(&other_node, s, tx).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..sessions.len() {
        let notice = next(&mut rx).await;
        assert!(
            seen.insert(notice.session_id.clone()),
            "{} evaluated twice",
            notice.session_id
        );
    }
    assert_eq!(judge.requests(), sessions.len());
    assert_eq!(evaluated_events(&store, &t).await.len(), sessions.len());
    let summary = version_summary(&store, &v, None, None)
        .await
        .expect("summary");
    assert_eq!(summary.evaluated, 24);
    a.actor.stop(None);
    b.actor.stop(None);
}

#[tokio::test]
async fn jobs_left_by_a_dead_or_stopped_runner_are_finished_by_the_next() {
    let store = memory_store().await;
    let t = tenant(&store).await;
    let v = version(&store, &t, "support", Some(&demo_rubric())).await;
    // Left running by a node that died (its lease expired), and pending while no runner was
    // up (the server stopped between the end of the call and its evaluation).
    let (_, leased) = finished_session(&store, &t, &order_call(Some(v.clone()))).await;
    store
        .enqueue_session_evaluation(&leased, 0)
        .await
        .expect("job");
    let now = crate::time::now_ms();
    let dead = store
        .claim_evaluation_jobs(now, now - 1, "dead-node", 10)
        .await
        .expect("claim");
    assert_eq!(dead.len(), 1);
    let (_, waiting) = finished_session(&store, &t, &order_call(Some(v.clone()))).await;
    store
        .enqueue_session_evaluation(&waiting, 0)
        .await
        .expect("job");

    let judge = FakeJudge::start(JudgeMode::Hang).await;
    let mut s = settings(&judge);
    s.judge.timeout = Duration::from_secs(30);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let first = runner(&store, s.clone(), tx.clone()).await;
    // Both are in flight on the first runner, which is stopped (a graceful shutdown): its
    // claims are handed back, uncounted.
    judge.wait_for_requests(2).await;
    first
        .actor
        .stop_and_wait(None, Some(PATIENCE))
        .await
        .expect("stopped");
    let job = store
        .get_evaluation_job(&t, &dead[0].id)
        .await
        .expect("job")
        .expect("found");
    assert_eq!(job.status, EvaluationJobStatus::Pending);
    assert_eq!(
        job.attempts, 1,
        "the dead node's attempt counts, the released one not"
    );

    judge.set_mode(JudgeMode::Answer(HashMap::from([(
        "resolved".to_owned(),
        (Answer::No, 1),
    )])));
    let second = runner(&store, s, tx).await;
    let mut done = [next(&mut rx).await, next(&mut rx).await];
    done.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    let mut expected = vec![leased, waiting];
    expected.sort();
    assert_eq!(
        done.iter()
            .map(|n| n.session_id.clone())
            .collect::<Vec<_>>(),
        expected
    );
    assert!(
        done.iter()
            .all(|n| n.failed_criteria == vec!["resolved".to_owned()])
    );
    assert_eq!(evaluated_events(&store, &t).await.len(), 2);
    second.actor.stop(None);
}

/// Throughput of the evaluation path from written jobs to recorded results: deterministic
/// criteria only, then with the judge over loopback HTTP (`EVALUATION_THROUGHPUT_SESSIONS`
/// sessions, default 100, `EVALUATION_THROUGHPUT_WORKERS` workers, default 4; the figures in
/// `docs/performance.md` are 1,000 sessions in release mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluation_throughput_of_finished_sessions() {
    let n: usize = std::env::var("EVALUATION_THROUGHPUT_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let workers: usize = std::env::var("EVALUATION_THROUGHPUT_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    for with_judge in [false, true] {
        let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
        let store = db.store(8).await;
        let t = tenant(&store).await;
        let mut rubric = demo_rubric();
        if !with_judge {
            rubric.criteria.retain(|c| !c.kind.is_judge());
            rubric.criteria.push(
                serde_json::from_value(
                    json!({"key": "first_audio", "kind": "max_first_audio_ms", "max_ms": 1500}),
                )
                .expect("criterion"),
            );
        }
        let v = version(&store, &t, "support", Some(&rubric)).await;
        for _ in 0..n {
            let (_, session) = finished_session(&store, &t, &order_call(Some(v.clone()))).await;
            store
                .enqueue_session_evaluation(&session, 0)
                .await
                .expect("job");
        }
        let judge = FakeJudge::start(JudgeMode::yes()).await;
        let mut s = settings(&judge);
        s.workers = workers;
        s.judge.summaries = with_judge;
        s.judge.timeout = Duration::from_secs(10);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let started = std::time::Instant::now();
        let run = runner(&store, s, tx).await;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..n {
            let notice = next(&mut rx).await;
            assert!(notice.passed);
            assert!(seen.insert(notice.session_id));
        }
        let elapsed = started.elapsed();
        #[allow(clippy::cast_precision_loss)]
        let rate = n as f64 / elapsed.as_secs_f64();
        eprintln!(
            "evaluation throughput: {n} sessions, {workers} workers, judge {}: {:.2} s, {rate:.0} evaluations/s",
            if with_judge { "on" } else { "off" },
            elapsed.as_secs_f64()
        );
        assert_eq!(judge.requests(), if with_judge { n } else { 0 });
        run.actor.stop(None);
    }
}
