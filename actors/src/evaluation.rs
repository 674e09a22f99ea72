//! Evaluations (DESIGN §5): every finished conversation is scored against its agent
//! version's rubric, and the scores are what governance decides on.
//!
//! - [`rubric`]: the rubric (criteria, weights, critical flags), its validation naming the
//!   field at fault, its canonical hash, its compiled form.
//! - [`input`]: [`EvaluationInput`], what a session is scored on, built from the store.
//! - [`score`]: pure scoring of every criterion and of the call ([`Scorecard`]).
//! - [`judge`]: the LLM judge over an OpenAI-compatible Chat Completions endpoint (structured
//!   output; the session's summary and tags come from the same call); [`redact`]: what it
//!   must never see.
//! - [`stats`] and [`summary`]: per-version aggregates ([`version_summary`]); [`series`]:
//!   an agent's pass rate per version over time ([`series::agent_series`]).
//! - [`worker`]: one job, start to end.
//!
//! **The actor.** `EvaluationActor` (a singleton under the root supervisor, restarted from
//! its child spec) owns a ractor factory of [`worker::EvaluationWorker`]s,
//! bounded in number. On start, on every tick and whenever woken, it claims due jobs with a
//! lease up to its free workers ([`Store::claim_evaluation_jobs`]: one conditional `UPDATE`;
//! an expired lease is claimed again, so a node that dies mid-evaluation loses nothing) and
//! dispatches them. The actor holds only what must change in one place: the claims in
//! flight. Reads and API writes that need no serialisation go through the [`Evaluations`]
//! handle on the caller's task, so the mailbox never holds them up.
//!
//! Jobs are written with the end of the voice session (see
//! [`crate::store::NewEvaluationJob`]), one per (session, rubric hash): evaluating again with
//! an unchanged rubric returns what there is. A result is written with its
//! `voice.session.evaluated` event in one transaction fenced by the lease, and handed to the
//! optional [`EvaluationSink`] (the rollout actor's feed).
//!
//! Metrics: `evaluations_total{result}` (`passed`, `failed`, `retry`, `unusable`,
//! `lease_lost`, `store_error`), `evaluation_seconds{stage}` (`load`, `judge`, `score`,
//! `store`, `total`), `evaluation_jobs_pending`, `judge_requests_total{outcome}` (`ok`,
//! `timeout`, `http_error`, `invalid`, `transport`, `no_key`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ractor::factory::queues::DefaultQueue;
use ractor::factory::routing::QueuerRouting;
use ractor::factory::{Factory, FactoryArguments, FactoryRef, worker_builder};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::crypto::SecretBox;
use crate::ids::{AgentVersionId, EvaluationId, EvaluationJobId, SessionId, TenantId};
use crate::meter::{HandleTimer, kind};
use crate::singleton::SingletonRef;
use crate::store::{
    EndedSessions, EnqueuedJob, Evaluation, EvaluationFilter, NewEvaluationJob, Page, Review,
    Store, StoreError,
};
use crate::time::now_ms;

pub mod input;
pub mod judge;
pub mod redact;
pub mod rubric;
pub mod score;
pub mod series;
pub mod stats;
pub mod summary;
pub mod worker;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;

pub use input::EvaluationInput;
pub use judge::{Judge, JudgeError, JudgeSettings};
pub use rubric::{CompiledRubric, Criterion, CriterionKind, Rubric, RubricError};
pub use score::{CriterionResult, Evidence, Scorecard, TurnQuote, Verdict};
pub use summary::{CriterionRate, VersionSummary, version_summary};

use worker::{ClaimedJob, EvaluationWorker, WorkerContext};

/// Margin of a lease beyond the judge's deadline (loading and storing).
const LEASE_MARGIN: Duration = Duration::from_secs(60);

/// Settings of the evaluation actor.
#[derive(Debug, Clone)]
pub struct EvaluationSettings {
    /// Jobs evaluated at once on this node (`EVALUATION_WORKERS`).
    pub workers: usize,
    /// Attempts before the judge criteria are recorded as `error` (`EVALUATION_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// Backoff base: the delay before attempt n+1 is random up to `base·2^(n-1)`, capped at
    /// ten minutes (`EVALUATION_BACKOFF_MS`).
    pub backoff_base: Duration,
    /// How often due jobs are looked for (besides wake-ups).
    pub tick: Duration,
    /// The judge.
    pub judge: JudgeSettings,
}

impl Default for EvaluationSettings {
    fn default() -> Self {
        Self {
            workers: 2,
            max_attempts: 4,
            backoff_base: Duration::from_secs(2),
            tick: Duration::from_secs(1),
            judge: JudgeSettings::default(),
        }
    }
}

/// A recorded result, as told to the [`EvaluationSink`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationNotice {
    /// The evaluation.
    pub evaluation_id: EvaluationId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The session.
    pub session_id: SessionId,
    /// Agent key.
    pub agent_key: Option<String>,
    /// Agent version.
    pub agent_version_id: Option<String>,
    /// Whether the call passed.
    pub passed: bool,
    /// Its score.
    pub score: f64,
    /// Failed criteria.
    pub failed_criteria: Vec<String>,
    /// Handed to a human.
    pub transferred: bool,
    /// AI or actor failure.
    pub errored: bool,
    /// First audio (ms).
    pub first_audio_ms: Option<i64>,
    /// Session start (Unix ms).
    pub session_started_at: i64,
}

impl EvaluationNotice {
    /// The notice of a recorded evaluation.
    pub fn of(e: &Evaluation) -> Self {
        Self {
            evaluation_id: e.id.clone(),
            tenant_id: e.tenant_id.clone(),
            session_id: e.session_id.clone(),
            agent_key: e.agent_key.clone(),
            agent_version_id: e.agent_version_id.clone(),
            passed: e.passed,
            score: e.score,
            failed_criteria: e.failed_criteria.clone(),
            transferred: e.transferred,
            errored: e.errored,
            first_audio_ms: e.first_audio_ms,
            session_started_at: e.session_started_at,
        }
    }
}

/// Where each recorded result is sent (under the root supervisor: the rollout actor's
/// [`crate::rollout::RolloutFeed`], which checks its guardrails on every result). Called on a worker's task: keep it
/// cheap, never block.
pub trait EvaluationSink: Send + Sync + 'static {
    /// A result was recorded.
    fn evaluated(&self, notice: &EvaluationNotice);
}

impl EvaluationSink for tokio::sync::mpsc::UnboundedSender<EvaluationNotice> {
    fn evaluated(&self, notice: &EvaluationNotice) {
        let _ = self.send(notice.clone());
    }
}

impl EvaluationSink for tokio::sync::mpsc::Sender<EvaluationNotice> {
    fn evaluated(&self, notice: &EvaluationNotice) {
        // A full feed drops: the rollout actor also checks on a timer.
        let _ = self.try_send(notice.clone());
    }
}

// === Evaluations ===

/// Errors of the evaluation API.
#[derive(Debug, thiserror::Error)]
pub enum EvaluationError {
    /// No such record for this tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The session is still live: it is evaluated when it ends.
    #[error("the voice session is still active")]
    SessionActive,
    /// The session's agent version has no rubric.
    #[error("the agent version has no rubric")]
    NoRubric,
    /// The store failed.
    #[error("store error")]
    Store(#[from] StoreError),
}

/// An evaluation with its criteria and reviews.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationDetail {
    /// The evaluation.
    pub evaluation: Evaluation,
    /// Per-criterion results, in rubric order.
    pub criteria: Vec<CriterionResult>,
    /// Operators' reviews, oldest first (the last is current).
    pub reviews: Vec<Review>,
}

/// What asking for an evaluation found or started.
#[derive(Debug, Clone, PartialEq)]
pub struct Rescore {
    /// The job for (session, rubric hash).
    pub job: EnqueuedJob,
    /// Its evaluation, when it is done already (an unchanged rubric is not scored twice).
    pub evaluation: Option<Evaluation>,
}

/// The handle on evaluations (cheap to clone): API reads and writes on the caller's task,
/// and the dispatcher's wake-up.
#[derive(Clone)]
pub struct Evaluations {
    store: Store,
    actor: SingletonRef<EvaluationMsg>,
    /// Set while a `Wake` is queued, so a burst of jobs sends one.
    wake_pending: Arc<AtomicBool>,
}

impl Evaluations {
    /// The handle over `store`, waking the actor behind `actor`.
    pub fn new(store: Store, actor: SingletonRef<EvaluationMsg>) -> Self {
        Self {
            store,
            actor,
            wake_pending: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Asks the dispatcher to look for due jobs now (after a job was written).
    pub fn wake(&self) {
        if self.wake_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        match self.actor.get() {
            Some(actor) if actor.cast(EvaluationMsg::Wake).is_ok() => {}
            // Down or restarting: its start picks everything up.
            _ => self.wake_pending.store(false, Ordering::Release),
        }
    }

    /// Wakes the dispatcher when closing sessions wrote evaluation jobs
    /// ([`Store::fail_live_sessions`]).
    pub fn sessions_closed(&self, ended: &EndedSessions) {
        if ended.evaluation_jobs > 0 {
            self.wake();
        }
    }

    /// The dispatcher (current incarnation); `None` while it is down.
    pub fn actor(&self) -> Option<crate::singleton::Mailbox<EvaluationMsg>> {
        self.actor.get()
    }

    /// Follows the dispatcher's incarnations (the root replaces it after a failure).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<ActorRef<EvaluationMsg>>> {
        self.actor.subscribe()
    }

    /// The flag the actor clears when it handles a wake-up (for its arguments).
    pub fn wake_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.wake_pending)
    }

    /// Scores a tenant's finished session again with its version's current rubric: the
    /// existing job (and its evaluation) when the rubric is unchanged, else a new job.
    pub async fn evaluate(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Rescore, EvaluationError> {
        let found = self
            .store
            .session_rubric(tenant, session)
            .await?
            .ok_or(EvaluationError::NotFound("voice session"))?;
        let text = found.rubric.ok_or(EvaluationError::NoRubric)?;
        let rubric = Rubric::from_json(&text).map_err(|_| EvaluationError::NoRubric)?;
        self.evaluate_with(tenant, session, &rubric).await
    }

    /// Scores a tenant's finished session with `rubric` (a validated rubric): the existing
    /// job (and its evaluation) for an unchanged rubric, else a new job.
    pub async fn evaluate_with(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        rubric: &Rubric,
    ) -> Result<Rescore, EvaluationError> {
        let found = self
            .store
            .session_rubric(tenant, session)
            .await?
            .ok_or(EvaluationError::NotFound("voice session"))?;
        if found.active {
            return Err(EvaluationError::SessionActive);
        }
        let job = self
            .store
            .enqueue_evaluation(&NewEvaluationJob {
                tenant_id: tenant.clone(),
                session_id: session.clone(),
                call_id: found.call_id,
                agent_version_id: found.agent_version_id,
                rubric: rubric.to_json(),
                rubric_hash: rubric.hash(),
                due_at: now_ms(),
            })
            .await?;
        if job.created {
            self.wake();
        }
        let evaluation = self.store.evaluation_of_job(tenant, &job.id).await?;
        Ok(Rescore { job, evaluation })
    }

    /// Lists a tenant's evaluations.
    pub async fn list(&self, filter: &EvaluationFilter) -> Result<Page<Evaluation>, StoreError> {
        self.store.list_evaluations(filter).await
    }

    /// One of a tenant's evaluations with its criteria and reviews.
    pub async fn get(
        &self,
        tenant: &TenantId,
        id: &EvaluationId,
    ) -> Result<Option<EvaluationDetail>, StoreError> {
        let Some(evaluation) = self.store.get_evaluation(tenant, id).await? else {
            return Ok(None);
        };
        self.detail(evaluation).await.map(Some)
    }

    /// The latest evaluation of a tenant's session, with its criteria and reviews.
    pub async fn of_session(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Option<EvaluationDetail>, StoreError> {
        let latest = self
            .store
            .evaluations_of_session(tenant, session)
            .await?
            .into_iter()
            .next();
        match latest {
            Some(evaluation) => self.detail(evaluation).await.map(Some),
            None => Ok(None),
        }
    }

    async fn detail(&self, evaluation: Evaluation) -> Result<EvaluationDetail, StoreError> {
        let criteria = self
            .store
            .evaluation_criteria(&evaluation.tenant_id, &evaluation.id)
            .await?;
        let reviews = self
            .store
            .reviews(&evaluation.tenant_id, &evaluation.id)
            .await?;
        Ok(EvaluationDetail {
            evaluation,
            criteria,
            reviews,
        })
    }

    /// Records an operator's verdict on one of a tenant's evaluations (kept beside the
    /// automatic one); `None` when there is no such evaluation.
    pub async fn review(
        &self,
        tenant: &TenantId,
        id: &EvaluationId,
        passed: bool,
        note: Option<&str>,
        reviewer: &str,
    ) -> Result<Option<Review>, StoreError> {
        self.store
            .add_review(tenant, id, passed, note, reviewer, now_ms())
            .await
    }

    /// The aggregates of an agent version over sessions started in `[from_ms, to_ms)`;
    /// `None` when there is no such version.
    pub async fn summary_of(
        &self,
        version: &AgentVersionId,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Option<VersionSummary>, StoreError> {
        if self.store.get_version(version).await?.is_none() {
            return Ok(None);
        }
        self.summary(version.as_str(), from_ms, to_ms)
            .await
            .map(Some)
    }

    /// The aggregates of an agent version over sessions started in `[from_ms, to_ms)`.
    pub async fn summary(
        &self,
        version: &str,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<VersionSummary, StoreError> {
        version_summary(&self.store, version, from_ms, to_ms).await
    }
}

// === EvaluationActor ===

/// Messages of the evaluation actor.
pub enum EvaluationMsg {
    /// Periodic: refresh the queue gauge and look for due jobs.
    Tick,
    /// Look for due jobs now (a job was written, a retry is due).
    Wake,
    /// A worker finished an attempt of a job; the next one is due after the duration, if any.
    Finished(EvaluationJobId, Option<Duration>),
}

impl EvaluationMsg {
    /// Message name for metrics.
    pub const fn name(&self) -> &'static str {
        match self {
            EvaluationMsg::Tick => "tick",
            EvaluationMsg::Wake => "wake",
            EvaluationMsg::Finished(..) => "finished",
        }
    }
}

/// The evaluation actor behaviour.
pub struct EvaluationActor;

/// Arguments (the child spec) of the evaluation actor.
pub struct EvaluationArgs {
    /// The database.
    pub store: Store,
    /// Opens tenants' model keys.
    pub secret_box: SecretBox,
    /// Settings.
    pub settings: EvaluationSettings,
    /// The handle's wake flag (cleared when a wake is handled).
    pub wake: Arc<AtomicBool>,
    /// Told about every recorded result.
    pub sink: Option<Arc<dyn EvaluationSink>>,
    /// Woken after a result (its `voice.session.evaluated` is in the outbox).
    pub notifier: Option<crate::notifier::Notifier>,
}

/// A claimed job being evaluated by a worker.
struct InFlight {
    lease_token: String,
    lease_until: i64,
}

type EvaluationFactory = Factory<
    EvaluationJobId,
    ClaimedJob,
    Arc<WorkerContext>,
    EvaluationWorker,
    QueuerRouting<EvaluationJobId, ClaimedJob>,
    DefaultQueue<EvaluationJobId, ClaimedJob>,
>;

/// State of the evaluation actor.
pub struct EvaluationState {
    store: Store,
    settings: EvaluationSettings,
    /// The worker pool (a linked child: it dies with this actor).
    factory: FactoryRef<EvaluationJobId, ClaimedJob>,
    /// Jobs claimed by this incarnation and not finished, with their lease. Entries past
    /// their lease are dropped on the tick (a worker that died never reports).
    in_flight: HashMap<EvaluationJobId, InFlight>,
    wake: Arc<AtomicBool>,
    /// The periodic tick; aborted when the state is dropped (also on a kill).
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for EvaluationState {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
    }
}

impl EvaluationState {
    fn lease(&self) -> Duration {
        self.settings.judge.timeout + LEASE_MARGIN
    }

    /// Claims due jobs up to the free worker capacity and dispatches them.
    async fn fill(&mut self) {
        let free = self.settings.workers.saturating_sub(self.in_flight.len());
        if free == 0 {
            return;
        }
        let now = now_ms();
        let lease_until = now + i64::try_from(self.lease().as_millis()).unwrap_or(i64::MAX / 2);
        let lease_token = uuid::Uuid::new_v4().simple().to_string();
        let claimed = match self
            .store
            .claim_evaluation_jobs(
                now,
                lease_until,
                &lease_token,
                u32::try_from(free).unwrap_or(u32::MAX),
            )
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(error = %error, "cannot claim evaluation jobs");
                return;
            }
        };
        for job in claimed {
            let id = job.id.clone();
            self.in_flight.insert(
                id.clone(),
                InFlight {
                    lease_token: lease_token.clone(),
                    lease_until,
                },
            );
            let claimed = ClaimedJob {
                job,
                lease_token: lease_token.clone(),
            };
            if let Err(error) = self.factory.dispatch(id.clone(), claimed) {
                // The lease expires and the job is claimed again.
                tracing::warn!(job_id = %id, error = %error, "cannot dispatch an evaluation job");
                self.in_flight.remove(&id);
            }
        }
    }

    async fn refresh_gauge(&self) {
        match self.store.evaluation_jobs_pending().await {
            #[allow(clippy::cast_precision_loss)]
            Ok(n) => metrics::gauge!("evaluation_jobs_pending").set(n as f64),
            Err(error) => tracing::warn!(error = %error, "cannot count evaluation jobs"),
        }
    }
}

impl Actor for EvaluationActor {
    type Msg = EvaluationMsg;
    type State = EvaluationState;
    type Arguments = EvaluationArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: EvaluationArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let judge = Judge::new(args.settings.judge.clone())?;
        let context = Arc::new(WorkerContext {
            store: args.store.clone(),
            secret_box: args.secret_box,
            judge,
            settings: args.settings.clone(),
            dispatcher: myself.clone(),
            sink: args.sink,
            notifier: args.notifier,
        });
        let factory_args = FactoryArguments::builder()
            .worker_builder(Box::new(worker_builder(move |_wid| {
                (EvaluationWorker, Arc::clone(&context))
            })))
            .queue(DefaultQueue::default())
            .router(QueuerRouting::default())
            .num_initial_workers(args.settings.workers.max(1))
            .build();
        let (factory, _join) = Actor::spawn_linked(
            None,
            EvaluationFactory::default(),
            factory_args,
            myself.get_cell(),
        )
        .await?;
        args.wake.store(false, Ordering::Release);
        Ok(EvaluationState {
            store: args.store,
            settings: args.settings,
            factory,
            in_flight: HashMap::new(),
            wake: args.wake,
            ticker: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let id = myself.get_id();
        state.ticker = Some(myself.send_interval(state.settings.tick, move || {
            crate::singleton::sent(id);
            EvaluationMsg::Tick
        }));
        // Pick up everything left pending (or leased by a dead incarnation) at once.
        state.refresh_gauge().await;
        state.fill().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        crate::singleton::handled(myself.get_id());
        let _timer = HandleTimer::start(kind::EVALUATION, message.name());
        match message {
            EvaluationMsg::Tick => {
                let now = now_ms();
                state.in_flight.retain(|_, f| f.lease_until > now);
                state.wake.store(false, Ordering::Release);
                state.refresh_gauge().await;
                state.fill().await;
            }
            EvaluationMsg::Wake => {
                state.wake.store(false, Ordering::Release);
                state.fill().await;
            }
            EvaluationMsg::Finished(id, retry_in) => {
                state.in_flight.remove(&id);
                if let Some(delay) = retry_in
                    && delay < state.settings.tick
                {
                    // Due before the next tick: come back for it on time.
                    let id = myself.get_id();
                    myself.send_after(delay, move || {
                        crate::singleton::sent(id);
                        EvaluationMsg::Wake
                    });
                }
                state.fill().await;
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(ticker) = state.ticker.take() {
            ticker.abort();
        }
        // Never wait on a slow judge: cancel the evaluations in flight and hand their claims
        // back, so the next start (here or on another node) runs them at once.
        let _ = state
            .factory
            .kill_and_wait(Some(Duration::from_secs(2)))
            .await;
        let now = now_ms();
        for (id, in_flight) in state.in_flight.drain() {
            if let Err(error) = state
                .store
                .release_evaluation_job(&id, &in_flight.lease_token, now)
                .await
            {
                tracing::warn!(job_id = %id, error = %error, "cannot release an evaluation job");
            }
        }
        Ok(())
    }
}

/// Registers descriptions of the evaluation metrics (call once at start-up).
pub fn describe() {
    metrics::describe_counter!(
        "evaluations_total",
        "Evaluation attempts, by result (passed, failed, retry, unusable, lease_lost, store_error)"
    );
    metrics::describe_histogram!(
        "evaluation_seconds",
        metrics::Unit::Seconds,
        "Duration of an evaluation, by stage (load, judge, score, store, total)"
    );
    metrics::describe_gauge!(
        "evaluation_jobs_pending",
        "Evaluation jobs pending or running (all nodes)"
    );
    metrics::describe_counter!(
        "judge_requests_total",
        "LLM judge requests, by outcome (ok, timeout, http_error, invalid, transport, no_key)"
    );
}
