//! `EvaluationWorker`: one factory worker of the evaluation actor, running one claimed job
//! at a time ([`run_job`]): read the rubric and the session, ask the judge (when the rubric
//! has `llm_judge` criteria, or for the summary), score, and record the result with its
//! event, fenced by the lease.
//!
//! A judge failure is retried with backoff (the job goes back to `pending`, due later, so a
//! node that dies meanwhile loses nothing); on the last attempt the deterministic part is
//! recorded and the judge criteria are `error`. A worker never fails its job: every problem
//! is a retry, a recorded result, or a job marked `failed` (it can never be scored).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorProcessingErr;
use ractor::factory::{FactoryMessage, Job, Worker, WorkerId};
use serde_json::json;

use super::input::EvaluationInput;
use super::judge::{Judge, JudgeCall, JudgeError, JudgeInput};
use super::rubric::{CompiledRubric, Rubric};
use super::score::{JudgeAnswer, Scorecard, score};
use super::{EvaluationMsg, EvaluationNotice, EvaluationSettings, EvaluationSink};
use crate::crypto::SecretBox;
use crate::ids::{EvaluationId, EvaluationJobId, TenantId};
use crate::notifier::{EventKind, backoff_delay, envelope};
use crate::store::{Evaluation, EvaluationJob, FinishedEvaluation, JudgeUsage, Store, StoreError};
use crate::time::now_ms;

/// What every worker shares.
pub struct WorkerContext {
    /// The database.
    pub store: Store,
    /// Opens tenants' model keys.
    pub secret_box: SecretBox,
    /// The judge client.
    pub judge: Judge,
    /// Attempts and backoff.
    pub settings: EvaluationSettings,
    /// Told when a job's attempt is over.
    pub dispatcher: ractor::ActorRef<EvaluationMsg>,
    /// Told about every recorded result (the rollout actor's `RolloutFeed` under the root supervisor).
    pub sink: Option<Arc<dyn EvaluationSink>>,
    /// Woken after a result, so its event is delivered at once.
    pub notifier: Option<crate::notifier::Notifier>,
}

/// One claimed job.
pub struct ClaimedJob {
    /// The job as claimed (its `attempts` counts this attempt).
    pub job: EvaluationJob,
    /// The lease it was claimed with.
    pub lease_token: String,
}

/// The worker behaviour.
pub struct EvaluationWorker;

impl Worker for EvaluationWorker {
    type Key = EvaluationJobId;
    type Message = ClaimedJob;
    type Arguments = Arc<WorkerContext>;
    type State = Arc<WorkerContext>;

    async fn pre_start(
        &self,
        _wid: WorkerId,
        _factory: &ractor::ActorRef<FactoryMessage<EvaluationJobId, ClaimedJob>>,
        context: Arc<WorkerContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(context)
    }

    async fn handle(
        &self,
        _wid: WorkerId,
        _factory: &ractor::ActorRef<FactoryMessage<EvaluationJobId, ClaimedJob>>,
        job: Job<EvaluationJobId, ClaimedJob>,
        context: &mut Self::State,
    ) -> Result<EvaluationJobId, ActorProcessingErr> {
        let retry_in = run_job(context, job.msg).await;
        let _ = context
            .dispatcher
            .cast(EvaluationMsg::Finished(job.key.clone(), retry_in));
        Ok(job.key)
    }
}

fn stage(name: &'static str, started: Instant) {
    metrics::histogram!("evaluation_seconds", "stage" => name)
        .record(started.elapsed().as_secs_f64());
}

fn outcome(result: &'static str) {
    metrics::counter!("evaluations_total", "result" => result).increment(1);
}

/// The tenant's own model key, if it has one that opens.
async fn tenant_key(context: &WorkerContext, tenant: &TenantId) -> Option<String> {
    let stored = match context.store.get_tenant(tenant).await {
        Ok(Some(t)) => t.openai_key?,
        Ok(None) => return None,
        Err(error) => {
            tracing::warn!(tenant_id = %tenant, error = %error, "cannot read the tenant for its model key");
            return None;
        }
    };
    match context
        .secret_box
        .open(&stored.sealed, &crate::tenant::openai_key_aad(tenant))
    {
        Ok(key) => Some(key),
        Err(error) => {
            tracing::warn!(tenant_id = %tenant, error = %error, "cannot open the tenant's model key");
            None
        }
    }
}

/// What the judge contributed.
enum Judged {
    /// Not asked (no judge criteria, no summaries or no key for summaries).
    NotAsked,
    /// It answered.
    Answered(JudgeCall),
    /// It could not answer; the judge criteria are `error`.
    Failed(JudgeError),
}

/// Runs one attempt of a job and records what it led to; returns the delay before the
/// next attempt, if one was scheduled.
pub async fn run_job(context: &WorkerContext, claimed: ClaimedJob) -> Option<Duration> {
    let ClaimedJob { job, lease_token } = claimed;
    let started = Instant::now();
    let rubric = match Rubric::from_json(&job.rubric).and_then(CompiledRubric::compile) {
        Ok(rubric) => rubric,
        Err(error) => {
            give_up(
                context,
                &job,
                &lease_token,
                &format!("unusable rubric: {error}"),
            )
            .await;
            return None;
        }
    };
    let loading = Instant::now();
    let material = match context
        .store
        .evaluation_material(&job.tenant_id, &job.session_id)
        .await
    {
        Ok(Some(material)) => material,
        Ok(None) => {
            give_up(
                context,
                &job,
                &lease_token,
                "the voice session no longer exists",
            )
            .await;
            return None;
        }
        Err(error) => return retry(context, &job, &lease_token, &store_error(&error)).await,
    };
    stage("load", loading);
    let input = EvaluationInput::from_material(&material);

    let questions = rubric.judge_questions();
    let wants_judge = !questions.is_empty() || context.settings.judge.summaries;
    let judged = if wants_judge {
        let own = tenant_key(context, &job.tenant_id).await;
        match context.judge.key(own.as_deref()) {
            None if questions.is_empty() => Judged::NotAsked,
            None => {
                metrics::counter!("judge_requests_total", "outcome" => JudgeError::NoKey.label())
                    .increment(1);
                Judged::Failed(JudgeError::NoKey)
            }
            Some(key) => {
                let judging = Instant::now();
                let request = JudgeInput::build(
                    &input,
                    &questions,
                    context.judge.settings().max_transcript_chars,
                );
                let answer = context.judge.ask(key, &request).await;
                stage("judge", judging);
                match answer {
                    Ok(call) => {
                        metrics::counter!("judge_requests_total", "outcome" => "ok").increment(1);
                        Judged::Answered(call)
                    }
                    Err(error) => {
                        metrics::counter!("judge_requests_total", "outcome" => error.label())
                            .increment(1);
                        let attempts_left = job.attempts < i64::from(context.settings.max_attempts);
                        if error.is_retryable() && attempts_left {
                            tracing::info!(job_id = %job.id, attempt = job.attempts, error = %error, "judge failed; evaluation retried");
                            return retry(context, &job, &lease_token, &error.to_string()).await;
                        }
                        Judged::Failed(error)
                    }
                }
            }
        }
    } else {
        Judged::NotAsked
    };

    let scoring = Instant::now();
    let answer = match &judged {
        Judged::NotAsked => JudgeAnswer::Answered(Vec::new()),
        Judged::Answered(call) => JudgeAnswer::Answered(call.output.judgments.clone()),
        Judged::Failed(error) => JudgeAnswer::Failed(error.to_string()),
    };
    let card = score(&rubric, &input, &answer);
    stage("score", scoring);

    let now = now_ms();
    let evaluation = evaluation_of(
        &job,
        &rubric,
        &material.session,
        &input,
        &card,
        &judged,
        now,
    );
    let event = envelope(
        &job.tenant_id,
        EventKind::SessionEvaluated,
        json!({
            "evaluation_id": evaluation.id.as_str(),
            "session_id": evaluation.session_id.as_str(),
            "call_id": evaluation.call_id.as_str(),
            "agent_key": evaluation.agent_key,
            "agent_version_id": evaluation.agent_version_id,
            "rubric_hash": evaluation.rubric_hash,
            "passed": evaluation.passed,
            "score": evaluation.score,
            "failed_criteria": evaluation.failed_criteria,
            "error_criteria": card
                .criteria
                .iter()
                .filter(|c| c.verdict == super::Verdict::Error)
                .map(|c| c.key.as_str())
                .collect::<Vec<_>>(),
        }),
        now,
    );
    let storing = Instant::now();
    let done = FinishedEvaluation {
        lease_token,
        evaluation,
        criteria: card.criteria,
        event,
    };
    match context.store.finish_evaluation(&done, now).await {
        Ok(true) => {
            stage("store", storing);
            stage("total", started);
            let e = &done.evaluation;
            outcome(if e.passed { "passed" } else { "failed" });
            tracing::info!(
                evaluation_id = %e.id,
                job_id = %job.id,
                session_id = %e.session_id,
                passed = e.passed,
                score = e.score,
                judge_error = e.judge_error.as_deref().unwrap_or(""),
                "session evaluated"
            );
            if let Some(notifier) = &context.notifier {
                notifier.wake();
            }
            if let Some(sink) = &context.sink {
                sink.evaluated(&EvaluationNotice::of(e));
            }
        }
        Ok(false) => {
            outcome("lease_lost");
            tracing::warn!(job_id = %job.id, "evaluation lease lost; result not recorded");
        }
        Err(error) => {
            // The lease expires and the job is claimed again.
            outcome("store_error");
            tracing::warn!(job_id = %job.id, error = %error, "cannot record an evaluation");
        }
    }
    None
}

fn store_error(error: &StoreError) -> String {
    format!("store error: {error}")
}

fn evaluation_of(
    job: &EvaluationJob,
    rubric: &CompiledRubric,
    session: &crate::store::VoiceSession,
    input: &EvaluationInput,
    card: &Scorecard,
    judged: &Judged,
    now: i64,
) -> Evaluation {
    let (summary, tags, judge, judge_error) = match judged {
        Judged::NotAsked => (None, Vec::new(), None, None),
        Judged::Answered(call) => (
            Some(call.output.summary.clone()).filter(|s| !s.is_empty()),
            call.output.tags.clone(),
            Some(JudgeUsage {
                model: call.model.clone(),
                latency_ms: call.latency_ms,
                input_tokens: call.input_tokens,
                output_tokens: call.output_tokens,
            }),
            None,
        ),
        Judged::Failed(error) => (None, Vec::new(), None, Some(error.to_string())),
    };
    Evaluation {
        id: EvaluationId::generate(),
        job_id: job.id.clone(),
        tenant_id: job.tenant_id.clone(),
        session_id: job.session_id.clone(),
        call_id: job.call_id.clone(),
        agent_key: session.agent_key.clone(),
        agent_version_id: session
            .agent_version_id
            .clone()
            .or_else(|| job.agent_version_id.clone()),
        rubric_hash: job.rubric_hash.clone(),
        passed: card.passed,
        score: card.score,
        pass_score: rubric.rubric.pass_score,
        failed_criteria: card.failed_criteria.clone(),
        summary,
        tags,
        judge,
        judge_error,
        transferred: input.transferred(),
        errored: input.errored,
        first_audio_ms: input.first_audio_ms,
        end_reason: input.end_reason.clone(),
        session_started_at: session.started_at,
        created_at: now,
    }
}

/// Schedules the next attempt with backoff; returns its delay (`None` when the lease was
/// lost or the store failed: the lease then expires and the job is claimed again).
async fn retry(
    context: &WorkerContext,
    job: &EvaluationJob,
    lease_token: &str,
    why: &str,
) -> Option<Duration> {
    let delay = backoff_delay(context.settings.backoff_base, job.attempts.max(1));
    let now = now_ms();
    let at = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
    match context
        .store
        .retry_evaluation_job(&job.id, lease_token, at, why, now)
        .await
    {
        Ok(true) => {
            outcome("retry");
            Some(delay)
        }
        Ok(false) => {
            tracing::warn!(job_id = %job.id, "evaluation lease lost; retry not scheduled");
            None
        }
        Err(error) => {
            tracing::warn!(job_id = %job.id, error = %error, "cannot schedule an evaluation retry");
            None
        }
    }
}

/// Marks a job that can never be scored.
async fn give_up(context: &WorkerContext, job: &EvaluationJob, lease_token: &str, why: &str) {
    outcome("unusable");
    tracing::warn!(job_id = %job.id, error = why, "evaluation job cannot be scored");
    if let Err(error) = context
        .store
        .fail_evaluation_job(&job.id, lease_token, why, now_ms())
        .await
    {
        tracing::warn!(job_id = %job.id, error = %error, "cannot mark an evaluation job failed");
    }
}
