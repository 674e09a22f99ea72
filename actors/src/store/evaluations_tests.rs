//! Store tests of evaluations: idempotent jobs (also from a version's stored rubric),
//! exclusive leased claims (two claimers on one database file), fencing, retries and
//! releases, the result written with its event, tenant-scoped reads and reviews, and the
//! per-version aggregates against a hand-computed set, and an agent's per-version buckets
//! over time.

use std::collections::HashSet;

use serde_json::json;

use super::*;
use crate::evaluation::fixtures::{
    Backend, SessionSpec, TestDb, backend_tests, evaluated_events, finished_session, tenant,
    version,
};
use crate::evaluation::{Rubric, summary::summarize};
use crate::notifier::{EventKind, envelope};

backend_tests!(
    jobs_are_unique_per_session_and_rubric_and_come_from_the_version,
    a_claim_is_exclusive_until_its_lease_expires_and_fenced_after,
    two_claimers_on_one_database_never_share_a_job,
    results_are_tenant_scoped_listed_filtered_and_reviewed,
    version_aggregates_match_a_hand_computed_set,
    agent_buckets_count_the_latest_evaluation_of_each_version_per_bucket,
);

fn rubric(pattern: &str) -> Rubric {
    serde_json::from_value(json!({
        "pass_score": 0.5,
        "criteria": [{"key": "greet", "kind": "required_phrase", "pattern": pattern}]
    }))
    .expect("rubric")
}

fn job(tenant: &TenantId, call: &CallId, session: &SessionId, r: &Rubric) -> NewEvaluationJob {
    NewEvaluationJob {
        tenant_id: tenant.clone(),
        session_id: session.clone(),
        call_id: call.clone(),
        agent_version_id: None,
        rubric: r.to_json(),
        rubric_hash: r.hash(),
        due_at: 1_000,
    }
}

struct Scored<'a> {
    passed: bool,
    score: f64,
    transferred: bool,
    errored: bool,
    first_audio_ms: Option<i64>,
    criteria: &'a [(&'a str, Verdict)],
}

/// Claims `job` and records `s` as its result at `at`; returns the evaluation id.
async fn record(
    store: &Store,
    job: &EvaluationJob,
    version: Option<&str>,
    started_at: i64,
    s: &Scored<'_>,
    at: i64,
) -> EvaluationId {
    let claimed = store
        .claim_evaluation_jobs(at, at + 60_000, "lease", 1)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, job.id);
    let evaluation = Evaluation {
        id: EvaluationId::generate(),
        job_id: job.id.clone(),
        tenant_id: job.tenant_id.clone(),
        session_id: job.session_id.clone(),
        call_id: job.call_id.clone(),
        agent_key: Some("support".into()),
        agent_version_id: version.map(str::to_owned),
        rubric_hash: job.rubric_hash.clone(),
        passed: s.passed,
        score: s.score,
        pass_score: 0.5,
        failed_criteria: s
            .criteria
            .iter()
            .filter(|(_, v)| *v == Verdict::Failed)
            .map(|(k, _)| (*k).to_owned())
            .collect(),
        summary: Some("summary".into()),
        tags: vec!["order_status".into()],
        judge: Some(JudgeUsage {
            model: "m".into(),
            latency_ms: 12,
            input_tokens: 100,
            output_tokens: 20,
        }),
        judge_error: None,
        transferred: s.transferred,
        errored: s.errored,
        first_audio_ms: s.first_audio_ms,
        end_reason: Some("caller_hangup".into()),
        session_started_at: started_at,
        created_at: at,
    };
    let criteria = s
        .criteria
        .iter()
        .map(|(key, verdict)| CriterionResult {
            key: (*key).to_owned(),
            kind: "required_phrase".into(),
            weight: 1.0,
            critical: false,
            verdict: *verdict,
            score: if *verdict == Verdict::Passed {
                1.0
            } else {
                0.0
            },
            evidence: Evidence {
                note: Some("n".into()),
                ..Evidence::default()
            },
        })
        .collect();
    let event = envelope(
        &job.tenant_id,
        EventKind::SessionEvaluated,
        json!({"evaluation_id": evaluation.id.as_str()}),
        at,
    );
    let id = evaluation.id.clone();
    let done = FinishedEvaluation {
        lease_token: "lease".into(),
        evaluation,
        criteria,
        event,
    };
    assert!(store.finish_evaluation(&done, at).await.expect("finish"));
    id
}

async fn jobs_are_unique_per_session_and_rubric_and_come_from_the_version(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store(4).await;
    let t = tenant(&store).await;
    let r = rubric("hello");
    let with_rubric = version(&store, &t, "support", Some(&r)).await;
    let without = version(&store, &t, "sales", None).await;
    let (call, session) = finished_session(
        &store,
        &t,
        &SessionSpec::new(Some(with_rubric.clone()), &[]),
    )
    .await;
    // Finishing the session wrote its job from the version's rubric, in the same
    // transaction: enqueueing the same rubric finds it.
    let first = store
        .enqueue_evaluation(&job(&t, &call, &session, &r))
        .await
        .expect("enqueue");
    assert!(!first.created);
    assert_eq!(first.status, EvaluationJobStatus::Pending);
    let again = store
        .enqueue_evaluation(&job(&t, &call, &session, &r))
        .await
        .expect("enqueue");
    assert_eq!(again.id, first.id);
    assert!(!again.created);
    let other = store
        .enqueue_evaluation(&job(&t, &call, &session, &rubric("hi")))
        .await
        .expect("enqueue");
    assert_ne!(other.id, first.id, "another rubric is another job");

    // From the version's stored rubric: the same job as above (same hash).
    assert!(
        !store
            .enqueue_session_evaluation(&session, 5)
            .await
            .expect("from version")
    );
    let (_, fresh) = finished_session(
        &store,
        &t,
        &SessionSpec::new(Some(with_rubric.clone()), &[]),
    )
    .await;
    assert!(
        !store
            .enqueue_session_evaluation(&fresh, 5)
            .await
            .expect("from version"),
        "written when the session finished"
    );
    let (_, no_rubric) = finished_session(&store, &t, &SessionSpec::new(Some(without), &[])).await;
    assert!(
        !store
            .enqueue_session_evaluation(&no_rubric, 5)
            .await
            .expect("no rubric")
    );
    let found = store
        .session_rubric(&t, &fresh)
        .await
        .expect("read")
        .expect("session");
    assert_eq!(found.rubric_hash.as_deref(), Some(r.hash().as_str()));
    assert!(!found.active);
    assert_eq!(
        found.agent_version_id.as_deref(),
        Some(with_rubric.as_str())
    );
    assert_eq!(
        store
            .session_rubric(&TenantId::generate(), &fresh)
            .await
            .expect("read"),
        None
    );
    assert_eq!(store.evaluation_jobs_pending().await.expect("count"), 3);
}

async fn a_claim_is_exclusive_until_its_lease_expires_and_fenced_after(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store(4).await;
    let t = tenant(&store).await;
    let (call, session) = finished_session(&store, &t, &SessionSpec::new(None, &[])).await;
    let queued = store
        .enqueue_evaluation(&job(&t, &call, &session, &rubric("x")))
        .await
        .expect("enqueue");
    assert!(
        store
            .claim_evaluation_jobs(999, 5_000, "early", 10)
            .await
            .expect("claim")
            .is_empty(),
        "not due yet"
    );
    let first = store
        .claim_evaluation_jobs(2_000, 5_000, "a", 10)
        .await
        .expect("claim");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].status, EvaluationJobStatus::Running);
    assert_eq!(first[0].attempts, 1);
    assert!(
        store
            .claim_evaluation_jobs(3_000, 9_000, "b", 10)
            .await
            .expect("claim")
            .is_empty()
    );
    // "a" died: its lease expires and "b" claims the job again; "a" is fenced off.
    let second = store
        .claim_evaluation_jobs(6_000, 9_000, "b", 10)
        .await
        .expect("claim");
    assert_eq!(second[0].attempts, 2);
    assert!(
        !store
            .retry_evaluation_job(&queued.id, "a", 7_000, "late", 6_100)
            .await
            .expect("retry")
    );
    assert!(
        store
            .retry_evaluation_job(&queued.id, "b", 7_000, "judge timeout", 6_100)
            .await
            .expect("retry")
    );
    let pending = store
        .get_evaluation_job(&t, &queued.id)
        .await
        .expect("get")
        .expect("job");
    assert_eq!(pending.status, EvaluationJobStatus::Pending);
    assert_eq!(pending.last_error.as_deref(), Some("judge timeout"));
    assert_eq!(pending.next_attempt_at, 7_000);
    assert!(
        store
            .get_evaluation_job(&TenantId::generate(), &queued.id)
            .await
            .expect("get")
            .is_none()
    );

    // A released claim (shutdown) is due at once and its attempt not counted.
    let third = store
        .claim_evaluation_jobs(7_000, 20_000, "c", 10)
        .await
        .expect("claim");
    assert_eq!(third[0].attempts, 3);
    store
        .release_evaluation_job(&queued.id, "c", 7_100)
        .await
        .expect("release");
    let released = store
        .get_evaluation_job(&t, &queued.id)
        .await
        .expect("get")
        .expect("job");
    assert_eq!(
        (released.status, released.attempts),
        (EvaluationJobStatus::Pending, 2)
    );

    // A stale holder cannot record a result; the holder can, once.
    store
        .claim_evaluation_jobs(7_200, 20_000, "d", 10)
        .await
        .expect("claim");
    let claimed = store
        .get_evaluation_job(&t, &queued.id)
        .await
        .expect("get")
        .expect("job");
    let stale = Evaluation {
        id: EvaluationId::generate(),
        job_id: claimed.id.clone(),
        tenant_id: t.clone(),
        session_id: session.clone(),
        call_id: call.clone(),
        agent_key: None,
        agent_version_id: None,
        rubric_hash: claimed.rubric_hash.clone(),
        passed: true,
        score: 1.0,
        pass_score: 0.5,
        failed_criteria: Vec::new(),
        summary: None,
        tags: Vec::new(),
        judge: None,
        judge_error: None,
        transferred: false,
        errored: false,
        first_audio_ms: None,
        end_reason: None,
        session_started_at: 0,
        created_at: 7_300,
    };
    let event = envelope(&t, EventKind::SessionEvaluated, json!({}), 7_300);
    let mut done = FinishedEvaluation {
        lease_token: "c".into(),
        evaluation: stale,
        criteria: Vec::new(),
        event,
    };
    assert!(!store.finish_evaluation(&done, 7_300).await.expect("stale"));
    assert!(evaluated_events(&store, &t).await.is_empty());
    done.lease_token = "d".into();
    assert!(store.finish_evaluation(&done, 7_300).await.expect("finish"));
    assert!(
        !store.finish_evaluation(&done, 7_400).await.expect("twice"),
        "a job yields one evaluation"
    );
    assert_eq!(evaluated_events(&store, &t).await.len(), 1);
    assert_eq!(store.evaluation_jobs_pending().await.expect("count"), 0);

    // A job that can never be scored is failed, fenced likewise.
    let (call2, session2) = finished_session(&store, &t, &SessionSpec::new(None, &[])).await;
    let broken = store
        .enqueue_evaluation(&job(&t, &call2, &session2, &rubric("y")))
        .await
        .expect("enqueue");
    store
        .claim_evaluation_jobs(8_000, 20_000, "e", 10)
        .await
        .expect("claim");
    assert!(
        !store
            .fail_evaluation_job(&broken.id, "x", "nope", 8_100)
            .await
            .expect("fenced")
    );
    assert!(
        store
            .fail_evaluation_job(&broken.id, "e", "unusable rubric", 8_100)
            .await
            .expect("fail")
    );
    assert!(
        store
            .claim_evaluation_jobs(100_000, 200_000, "f", 10)
            .await
            .expect("claim")
            .is_empty(),
        "done and failed jobs are never claimed again"
    );
}

async fn two_claimers_on_one_database_never_share_a_job(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store(4).await;
    let other_node = db.store(4).await;
    let t = tenant(&store).await;
    let mut all = HashSet::new();
    for i in 0..30 {
        let (call, session) = finished_session(&store, &t, &SessionSpec::new(None, &[])).await;
        let queued = store
            .enqueue_evaluation(&job(&t, &call, &session, &rubric(&format!("p{i}"))))
            .await
            .expect("enqueue");
        all.insert(queued.id);
    }
    let claimers = (0..8).map(|i| {
        let store = if i % 2 == 0 {
            store.clone()
        } else {
            other_node.clone()
        };
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let token = format!("node{i}");
                let claimed = store
                    .claim_evaluation_jobs(2_000, 60_000, &token, 3)
                    .await
                    .expect("claim");
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|j| j.id));
            }
        })
    });
    let mut seen = HashSet::new();
    for claimer in claimers {
        for id in claimer.await.expect("join") {
            assert!(seen.insert(id.clone()), "{id} claimed twice");
        }
    }
    assert_eq!(seen, all);
}

async fn results_are_tenant_scoped_listed_filtered_and_reviewed(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store(4).await;
    let acme = tenant(&store).await;
    let other = tenant(&store).await;
    let v1 = version(&store, &acme, "support", None).await;
    let r = rubric("hello");
    let mut ids = Vec::new();
    for (i, passed) in [true, false, true].into_iter().enumerate() {
        let started = 10_000 + i64::try_from(i).expect("i") * 1_000;
        let mut spec = SessionSpec::new(Some(v1.clone()), &[("assistant", "hello")]);
        spec.started_at = started;
        let (call, session) = finished_session(&store, &acme, &spec).await;
        let queued = store
            .enqueue_evaluation(&job(&acme, &call, &session, &r))
            .await
            .expect("enqueue");
        let job = store
            .get_evaluation_job(&acme, &queued.id)
            .await
            .expect("get")
            .expect("job");
        let id = record(
            &store,
            &job,
            Some(&v1),
            started,
            &Scored {
                passed,
                score: if passed { 1.0 } else { 0.0 },
                transferred: false,
                errored: false,
                first_audio_ms: Some(500),
                criteria: &[(
                    "greet",
                    if passed {
                        Verdict::Passed
                    } else {
                        Verdict::Failed
                    },
                )],
            },
            20_000 + i64::try_from(i).expect("i"),
        )
        .await;
        ids.push((id, session));
    }
    let evaluation = store
        .get_evaluation(&acme, &ids[1].0)
        .await
        .expect("get")
        .expect("found");
    assert!(!evaluation.passed);
    assert_eq!(evaluation.failed_criteria, vec!["greet".to_owned()]);
    assert_eq!(evaluation.tags, vec!["order_status".to_owned()]);
    assert_eq!(evaluation.judge.as_ref().map(|j| j.input_tokens), Some(100));
    assert!(
        store
            .get_evaluation(&other, &ids[1].0)
            .await
            .expect("get")
            .is_none()
    );
    let criteria = store
        .evaluation_criteria(&acme, &ids[1].0)
        .await
        .expect("criteria");
    assert_eq!(criteria.len(), 1);
    assert_eq!(criteria[0].verdict, Verdict::Failed);
    assert_eq!(criteria[0].evidence.note.as_deref(), Some("n"));
    assert!(
        store
            .evaluation_criteria(&other, &ids[1].0)
            .await
            .expect("criteria")
            .is_empty()
    );
    let session = store
        .get_session(&acme, &ids[1].1)
        .await
        .expect("session")
        .expect("found");
    assert_eq!(session.summary.as_deref(), Some("summary"));
    assert_eq!(session.tags, vec!["order_status".to_owned()]);
    assert_eq!(
        store
            .evaluations_of_session(&acme, &ids[1].1)
            .await
            .expect("of session")
            .len(),
        1
    );
    assert!(
        store
            .evaluations_of_session(&other, &ids[1].1)
            .await
            .expect("of session")
            .is_empty()
    );

    let filter = |passed: Option<bool>, from: Option<i64>, to: Option<i64>| EvaluationFilter {
        tenant_id: acme.clone(),
        agent_key: Some("support".into()),
        agent_version_id: Some(v1.clone()),
        passed,
        from_ms: from,
        to_ms: to,
        limit: 2,
        offset: 0,
    };
    let page = store
        .list_evaluations(&filter(None, None, None))
        .await
        .expect("list");
    assert_eq!(page.total, 3);
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.items[0].id, ids[2].0, "newest session first");
    let failed = store
        .list_evaluations(&filter(Some(false), None, None))
        .await
        .expect("list");
    assert_eq!(failed.total, 1);
    let window = store
        .list_evaluations(&filter(None, Some(11_000), Some(12_000)))
        .await
        .expect("list");
    assert_eq!(window.total, 1);
    assert_eq!(window.items[0].id, ids[1].0);
    let elsewhere = store
        .list_evaluations(&EvaluationFilter {
            tenant_id: other.clone(),
            ..filter(None, None, None)
        })
        .await
        .expect("list");
    assert_eq!(elsewhere.total, 0);

    assert!(
        store
            .add_review(&other, &ids[0].0, false, None, "mallory", 1)
            .await
            .expect("review")
            .is_none(),
        "another tenant's evaluation cannot be reviewed"
    );
    let review = store
        .add_review(
            &acme,
            &ids[0].0,
            false,
            Some("missed the greeting"),
            "alice",
            2,
        )
        .await
        .expect("review")
        .expect("recorded");
    assert_eq!(review.reviewer, "alice");
    store
        .add_review(&acme, &ids[0].0, true, None, "bob", 3)
        .await
        .expect("review")
        .expect("recorded");
    let reviews = store.reviews(&acme, &ids[0].0).await.expect("reviews");
    assert_eq!(reviews.len(), 2, "every review is kept");
    assert_eq!(reviews[1].reviewer, "bob");
    assert!(
        store
            .reviews(&other, &ids[0].0)
            .await
            .expect("reviews")
            .is_empty()
    );
}

async fn version_aggregates_match_a_hand_computed_set(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store(4).await;
    let t = tenant(&store).await;
    let v = version(&store, &t, "support", None).await;
    let other_version = version(&store, &t, "sales", None).await;
    let (from, to) = (100_000, 200_000);
    use Verdict::{Error, Failed, NotApplicable, Passed};
    /// (passed, score, transferred, errored, first audio, greet, judge)
    type Row = (bool, f64, bool, bool, Option<i64>, Verdict, Verdict);
    let set: [Row; 8] = [
        (true, 1.0, false, false, Some(800), Passed, Passed),
        (true, 0.9, true, false, Some(1_200), Passed, Passed),
        (false, 0.4, false, true, None, Failed, Error),
        (true, 0.8, false, false, Some(600), Passed, Passed),
        (false, 0.5, true, false, Some(2_000), Failed, NotApplicable),
        (true, 1.0, false, false, Some(1_000), Passed, Passed),
        (true, 0.7, false, false, Some(900), Passed, Passed),
        (true, 0.7, false, false, Some(700), Passed, Passed),
    ];
    let mut evaluations = Vec::new();
    let mut at = 300_000;
    for (i, (passed, score, transferred, errored, first_audio_ms, greet, judge)) in
        set.into_iter().enumerate()
    {
        let started = from + 1_000 * i64::try_from(i).expect("i");
        let mut spec = SessionSpec::new(Some(v.clone()), &[]);
        spec.started_at = started;
        let (call, session) = finished_session(&store, &t, &spec).await;
        if i == 7 {
            // Evaluated before with another rubric: only the latest counts.
            let old = store
                .enqueue_evaluation(&job(&t, &call, &session, &rubric("old")))
                .await
                .expect("enqueue");
            let old = store
                .get_evaluation_job(&t, &old.id)
                .await
                .expect("get")
                .expect("job");
            at += 1;
            record(
                &store,
                &old,
                Some(&v),
                started,
                &Scored {
                    passed: false,
                    score: 0.2,
                    transferred: true,
                    errored: true,
                    first_audio_ms: Some(99_999),
                    criteria: &[("greet", Failed), ("judge", Failed)],
                },
                at,
            )
            .await;
        }
        let queued = store
            .enqueue_evaluation(&job(&t, &call, &session, &rubric("new")))
            .await
            .expect("enqueue");
        let queued = store
            .get_evaluation_job(&t, &queued.id)
            .await
            .expect("get")
            .expect("job");
        at += 1;
        let id = record(
            &store,
            &queued,
            Some(&v),
            started,
            &Scored {
                passed,
                score,
                transferred,
                errored,
                first_audio_ms,
                criteria: &[("greet", greet), ("judge", judge)],
            },
            at,
        )
        .await;
        evaluations.push(id);
    }
    // Outside the window, and another version: not counted.
    for (version, started) in [(&v, from - 1), (&v, to), (&other_version, from + 5)] {
        let mut spec = SessionSpec::new(Some(version.clone()), &[]);
        spec.started_at = started;
        let (call, session) = finished_session(&store, &t, &spec).await;
        let queued = store
            .enqueue_evaluation(&job(&t, &call, &session, &rubric("new")))
            .await
            .expect("enqueue");
        let queued = store
            .get_evaluation_job(&t, &queued.id)
            .await
            .expect("get")
            .expect("job");
        at += 1;
        record(
            &store,
            &queued,
            Some(version),
            started,
            &Scored {
                passed: false,
                score: 0.0,
                transferred: true,
                errored: true,
                first_audio_ms: Some(50_000),
                criteria: &[("greet", Failed)],
            },
            at,
        )
        .await;
    }
    // Reviews: agree (T,T); disagree (F,T); re-reviewed, latest agrees (F,F); disagree (T,F).
    for (i, passed, when) in [
        (0, true, 1),
        (2, true, 2),
        (4, true, 3),
        (4, false, 4),
        (5, false, 5),
    ] {
        store
            .add_review(&t, &evaluations[i], passed, None, "ops", when)
            .await
            .expect("review")
            .expect("recorded");
    }

    let figures = store
        .version_figures(&v, Some(from), Some(to))
        .await
        .expect("figures");
    assert_eq!(figures.evaluated, 8);
    assert_eq!(figures.passed, 6);
    assert_eq!(
        figures.first_audio_ms,
        vec![600, 700, 800, 900, 1_000, 1_200, 2_000]
    );
    let s = summarize(&v, Some(from), Some(to), &figures);
    assert_eq!(s.pass_rate, Some(0.75));
    // Wilson, 6 of 8 at 95 %: centre 0.990091 / 1.480182 = 0.668891, half-width
    // 1.959964 · sqrt(0.0234375 + 0.0150057) / 1.480182 = 0.259622.
    let ci = s.pass_rate_ci95.expect("interval");
    assert!((ci.low - 0.409_269).abs() < 1e-4, "{ci:?}");
    assert!((ci.high - 0.928_513).abs() < 1e-4, "{ci:?}");
    assert!((s.mean_score.expect("mean") - 0.75).abs() < 1e-9);
    assert_eq!((s.transferred, s.transfer_rate), (2, Some(0.25)));
    assert_eq!((s.errored, s.error_rate), (1, Some(0.125)));
    assert_eq!(s.first_audio_p50_ms, Some(900));
    assert_eq!(s.first_audio_p95_ms, Some(2_000));
    assert_eq!(s.criteria.len(), 2);
    let greet = &s.criteria[0];
    assert_eq!(
        (greet.key.as_str(), greet.passed, greet.failed),
        ("greet", 6, 2)
    );
    assert_eq!(greet.pass_rate, Some(0.75));
    let judge = &s.criteria[1];
    assert_eq!(
        (
            judge.passed,
            judge.failed,
            judge.error,
            judge.not_applicable
        ),
        (6, 0, 1, 1)
    );
    assert_eq!(judge.pass_rate, Some(1.0));
    let agreement = s.judge_agreement.expect("reviews exist");
    assert_eq!((agreement.pairs, agreement.agreed), (4, 2));
    assert!((agreement.rate - 0.5).abs() < 1e-9);
    assert!(agreement.kappa.expect("kappa").abs() < 1e-9);

    let unbounded = crate::evaluation::version_summary(&store, &v, None, None)
        .await
        .expect("summary");
    assert_eq!(unbounded.evaluated, 10);
    let empty = crate::evaluation::version_summary(&store, "agv_none", None, None)
        .await
        .expect("summary");
    assert_eq!(empty.evaluated, 0);
    assert_eq!(empty.pass_rate, None);
    assert_eq!(empty.pass_rate_ci95, None);
    assert_eq!(empty.first_audio_p95_ms, None);
    assert!(empty.judge_agreement.is_none());
}

/// Writes a finished session of `version` started at `started`, evaluated `passed` at `at`
/// (evaluated again for each later verdict in `again`, with another rubric).
async fn evaluated(
    store: &Store,
    t: &TenantId,
    version: &str,
    started: i64,
    verdicts: &[bool],
    at: &mut i64,
) {
    let mut spec = SessionSpec::new(Some(version.to_owned()), &[]);
    spec.started_at = started;
    let (call, session) = finished_session(store, t, &spec).await;
    for (i, passed) in verdicts.iter().enumerate() {
        let queued = store
            .enqueue_evaluation(&job(t, &call, &session, &rubric(&format!("r{i}"))))
            .await
            .expect("enqueue");
        let queued = store
            .get_evaluation_job(t, &queued.id)
            .await
            .expect("get")
            .expect("job");
        *at += 1;
        let verdict = if *passed {
            Verdict::Passed
        } else {
            Verdict::Failed
        };
        record(
            store,
            &queued,
            Some(version),
            started,
            &Scored {
                passed: *passed,
                score: if *passed { 1.0 } else { 0.0 },
                transferred: false,
                errored: false,
                first_audio_ms: None,
                criteria: &[("greet", verdict)],
            },
            *at,
        )
        .await;
    }
}

async fn agent_buckets_count_the_latest_evaluation_of_each_version_per_bucket(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store(4).await;
    let t = tenant(&store).await;
    let v1 = version(&store, &t, "support", None).await;
    let other = version(&store, &t, "sales", None).await;
    let agent: String = on_pool!(&store, pool => {
        sqlx::query_scalar("SELECT agent_id FROM agent_versions WHERE id = $1")
            .bind(&v1)
            .fetch_one(pool)
            .await
            .expect("agent")
    });
    // A second version of the same agent.
    let v2 = crate::ids::AgentVersionId::generate().into_string();
    on_pool!(&store, pool => {
        sqlx::query(
            "INSERT INTO agent_versions (id, agent_id, tenant_id, version, status, model, voice, instructions, \
             turn_detection, max_call_seconds, idle_timeout_seconds, created_at) \
             VALUES ($1, $2, $3, 2, 'approved', 'm', 'v', 'i', '{}', 600, 30, 1)",
        )
        .bind(&v2)
        .bind(&agent)
        .bind(t.as_str())
        .execute(pool)
        .await
        .expect("version 2");
        // The fixture's versions have no turn detection the version reader accepts.
        sqlx::query("UPDATE agent_versions SET turn_detection = $1")
            .bind(serde_json::to_string(&crate::store::TurnDetection::default()).expect("json"))
            .execute(pool)
            .await
            .expect("turn detection");
    });
    const H: i64 = 3_600_000;
    let base = 400_000 * H;
    let mut at = base * 2;
    for (version, started, verdicts) in [
        (&v1, base + 1_000, &[true][..]),
        (&v1, base + 2_000, &[false][..]),
        // Passed, then failed when evaluated again: only the latest counts.
        (&v1, base + 3_000, &[true, false][..]),
        (&v1, base + H + 5, &[true][..]),
        (&v2, base + H + 10, &[true][..]),
        // Outside the window, or another agent's version.
        (&v1, base - 1, &[true][..]),
        (&v2, base + 2 * H, &[false][..]),
        (&other, base + 5, &[false][..]),
    ] {
        evaluated(&store, &t, version, started, verdicts, &mut at).await;
    }
    let agent = crate::ids::AgentId::from_stored(agent);
    let buckets = store
        .agent_evaluation_buckets(&agent, H, base, base + 2 * H)
        .await
        .expect("buckets");
    let mut got: Vec<(String, i64, i64, i64)> = buckets
        .into_iter()
        .map(|b| (b.agent_version_id, b.bucket_start, b.evaluated, b.passed))
        .collect();
    got.sort();
    let mut want = vec![
        (v1.clone(), base, 3, 1),
        (v1.clone(), base + H, 1, 1),
        (v2.clone(), base + H, 1, 1),
    ];
    want.sort();
    assert_eq!(got, want);

    // The series: every version, newest first, its totals and its buckets.
    let series = crate::evaluation::series::agent_series(
        &store,
        &agent,
        crate::evaluation::series::Bucket::Hour,
        base + 10,
        base + 2 * H,
    )
    .await
    .expect("series")
    .expect("the agent");
    assert_eq!(series.from_ms, base, "aligned down to its bucket");
    let ids: Vec<&str> = series
        .versions
        .iter()
        .map(|v| v.agent_version_id.as_str())
        .collect();
    assert_eq!(ids, [v2.as_str(), v1.as_str()]);
    let old = &series.versions[1];
    assert_eq!((old.evaluated, old.passed), (4, 2));
    assert_eq!(old.pass_rate, Some(0.5));
    let rates: Vec<(i64, Option<f64>)> = old
        .points
        .iter()
        .map(|p| (p.bucket_start, p.pass_rate))
        .collect();
    assert_eq!(rates, [(base, Some(1.0 / 3.0)), (base + H, Some(1.0))]);
    let missing = crate::ids::AgentId::generate();
    assert!(
        crate::evaluation::series::agent_series(
            &store,
            &missing,
            crate::evaluation::series::Bucket::Day,
            0,
            1
        )
        .await
        .expect("series")
        .is_none()
    );
}
