//! Evaluations (DESIGN §5): jobs, results per call and per criterion, reviews, and the
//! per-version aggregates.
//!
//! **Jobs** are unique per (voice session, rubric hash): enqueueing again returns the job
//! there is ([`Store::enqueue_evaluation`]). They are written in the transaction that
//! finishes a voice session ([`Store::finish_session`], [`Store::fail_live_sessions`]) with
//! [`enqueue_session_evaluation!`] (the version's stored rubric), so a crash loses none. They are claimed with a lease by one conditional `UPDATE`
//! ([`Store::claim_evaluation_jobs`], the same shape as webhook deliveries): two nodes never
//! run one job at once, and a lease that expires (its node died) is claimed again. A result
//! is written in one transaction fenced by the lease token ([`Store::finish_evaluation`]):
//! the job's state, the evaluation, its criteria, the session's summary and tags, and the
//! `voice.session.evaluated` event. A job therefore yields at most one evaluation.
//!
//! **Reviews**: every review is kept; the latest of an evaluation is the human verdict the
//! agreement is computed on.
//!
//! **Windows** (listing and aggregates) apply to the start of the evaluated session. The
//! aggregates count one evaluation per session (the latest), so a re-evaluation with another
//! rubric does not count a call twice. Every read of tenant-owned rows is scoped by tenant;
//! the aggregates are by agent version (an admin and rollout view).

use super::webhooks::insert_event;
use super::{
    CallRecord, FunctionCall, Handoff, NewEvent, Page, Store, StoreError, TranscriptTurn,
    VoiceSession, as_i64, on_pool,
};
use crate::evaluation::{CriterionResult, Evidence, Verdict};
use crate::ids::{CallId, EvaluationId, EvaluationJobId, ReviewId, SessionId, TenantId};

/// Where an evaluation job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvaluationJobStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Leased by a node.
    Running,
    /// Its evaluation is written.
    Done,
    /// It could never be scored (see `last_error`).
    Failed,
}

impl EvaluationJobStatus {
    /// Every status.
    pub const ALL: [EvaluationJobStatus; 4] = [
        EvaluationJobStatus::Pending,
        EvaluationJobStatus::Running,
        EvaluationJobStatus::Done,
        EvaluationJobStatus::Failed,
    ];

    /// Stored and wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            EvaluationJobStatus::Pending => "pending",
            EvaluationJobStatus::Running => "running",
            EvaluationJobStatus::Done => "done",
            EvaluationJobStatus::Failed => "failed",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A job to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvaluationJob {
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The voice session to score.
    pub session_id: SessionId,
    /// Its call.
    pub call_id: CallId,
    /// Its agent version.
    pub agent_version_id: Option<String>,
    /// The rubric (its canonical JSON, [`crate::evaluation::Rubric::to_json`]).
    pub rubric: String,
    /// Its hash.
    pub rubric_hash: String,
    /// When it is due (Unix ms).
    pub due_at: i64,
}

/// What [`Store::enqueue_evaluation`] found or recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueuedJob {
    /// The job for (session, rubric hash).
    pub id: EvaluationJobId,
    /// Whether this call created it (false: it existed).
    pub created: bool,
    /// Where it stands.
    pub status: EvaluationJobStatus,
}

/// An evaluation job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationJob {
    /// Identifier.
    pub id: EvaluationJobId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The session.
    pub session_id: SessionId,
    /// Its call.
    pub call_id: CallId,
    /// Its agent version.
    pub agent_version_id: Option<String>,
    /// The rubric (canonical JSON).
    pub rubric: String,
    /// Its hash.
    pub rubric_hash: String,
    /// Where it stands.
    pub status: EvaluationJobStatus,
    /// Claims so far (the current one included while running).
    pub attempts: i64,
    /// When the next attempt is due (Unix ms).
    pub next_attempt_at: i64,
    /// Why the last attempt did not finish.
    pub last_error: Option<String>,
    /// Creation (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    tenant_id: String,
    session_id: String,
    call_id: String,
    agent_version_id: Option<String>,
    rubric: String,
    rubric_hash: String,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

const JOB_COLUMNS: &str = "id, tenant_id, session_id, call_id, agent_version_id, rubric, rubric_hash, status, \
     attempts, next_attempt_at, last_error, created_at, updated_at";

impl TryFrom<JobRow> for EvaluationJob {
    type Error = StoreError;

    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        Ok(EvaluationJob {
            id: EvaluationJobId::from_stored(r.id),
            tenant_id: TenantId::from_stored(r.tenant_id),
            session_id: SessionId::from_stored(r.session_id),
            call_id: CallId::from_stored(r.call_id),
            agent_version_id: r.agent_version_id,
            rubric: r.rubric,
            rubric_hash: r.rubric_hash,
            status: EvaluationJobStatus::parse(&r.status)
                .ok_or(StoreError::Corrupt("evaluation_jobs.status"))?,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            last_error: r.last_error,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// A session with what re-evaluating it needs: its call, version, state and the version's
/// stored rubric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRubric {
    /// The call.
    pub call_id: CallId,
    /// The agent version.
    pub agent_version_id: Option<String>,
    /// The session is still live.
    pub active: bool,
    /// The version's rubric (canonical JSON), if it has one.
    pub rubric: Option<String>,
    /// Its hash.
    pub rubric_hash: Option<String>,
}

/// A transcript turn with its measured response gap.
#[derive(Debug, Clone, PartialEq)]
pub struct MaterialTurn {
    /// The turn.
    pub turn: TranscriptTurn,
    /// For an agent turn: end of the caller's turn to the agent's first audio (ms).
    pub response_gap_ms: Option<i64>,
}

/// Everything stored about one voice session that its evaluation reads.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationMaterial {
    /// The session.
    pub session: VoiceSession,
    /// Its call.
    pub call: Option<CallRecord>,
    /// Its transcript, in order.
    pub turns: Vec<MaterialTurn>,
    /// Its function calls, in order.
    pub function_calls: Vec<FunctionCall>,
    /// The handoffs of its call, oldest first.
    pub handoffs: Vec<Handoff>,
}

/// The judge's part of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeUsage {
    /// The model that answered.
    pub model: String,
    /// Latency (ms).
    pub latency_ms: i64,
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
}

/// A scored call.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Identifier.
    pub id: EvaluationId,
    /// The job it answers.
    pub job_id: EvaluationJobId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The session scored.
    pub session_id: SessionId,
    /// Its call.
    pub call_id: CallId,
    /// Agent key.
    pub agent_key: Option<String>,
    /// Agent version.
    pub agent_version_id: Option<String>,
    /// The rubric scored against.
    pub rubric_hash: String,
    /// Whether the call passed.
    pub passed: bool,
    /// Weighted score (0–1).
    pub score: f64,
    /// The rubric's pass score.
    pub pass_score: f64,
    /// Keys of the failed criteria.
    pub failed_criteria: Vec<String>,
    /// The judge's summary.
    pub summary: Option<String>,
    /// The judge's tags.
    pub tags: Vec<String>,
    /// The judge call, when one answered.
    pub judge: Option<JudgeUsage>,
    /// Why the judge gave no answer, when it did not.
    pub judge_error: Option<String>,
    /// The conversation was handed to a human.
    pub transferred: bool,
    /// The session failed (AI or actor failure).
    pub errored: bool,
    /// First audio (ms).
    pub first_audio_ms: Option<i64>,
    /// Why the session ended.
    pub end_reason: Option<String>,
    /// When the session started (Unix ms; the axis of time windows).
    pub session_started_at: i64,
    /// When it was evaluated (Unix ms).
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct EvaluationRow {
    id: String,
    job_id: String,
    tenant_id: String,
    session_id: String,
    call_id: String,
    agent_key: Option<String>,
    agent_version_id: Option<String>,
    rubric_hash: String,
    passed: bool,
    score: f64,
    pass_score: f64,
    failed_criteria: String,
    summary: Option<String>,
    tags: String,
    judge_model: Option<String>,
    judge_latency_ms: Option<i64>,
    judge_input_tokens: Option<i64>,
    judge_output_tokens: Option<i64>,
    judge_error: Option<String>,
    transferred: bool,
    errored: bool,
    first_audio_ms: Option<i64>,
    end_reason: Option<String>,
    session_started_at: i64,
    created_at: i64,
}

const EVALUATION_COLUMNS: &str = "id, job_id, tenant_id, session_id, call_id, agent_key, agent_version_id, \
     rubric_hash, passed, score, pass_score, failed_criteria, summary, tags, judge_model, judge_latency_ms, \
     judge_input_tokens, judge_output_tokens, judge_error, transferred, errored, first_audio_ms, end_reason, \
     session_started_at, created_at";

impl From<EvaluationRow> for Evaluation {
    fn from(r: EvaluationRow) -> Self {
        Evaluation {
            id: EvaluationId::from_stored(r.id),
            job_id: EvaluationJobId::from_stored(r.job_id),
            tenant_id: TenantId::from_stored(r.tenant_id),
            session_id: SessionId::from_stored(r.session_id),
            call_id: CallId::from_stored(r.call_id),
            agent_key: r.agent_key,
            agent_version_id: r.agent_version_id,
            rubric_hash: r.rubric_hash,
            passed: r.passed,
            score: r.score,
            pass_score: r.pass_score,
            failed_criteria: serde_json::from_str(&r.failed_criteria).unwrap_or_default(),
            summary: r.summary,
            tags: serde_json::from_str(&r.tags).unwrap_or_default(),
            judge: r.judge_model.map(|model| JudgeUsage {
                model,
                latency_ms: r.judge_latency_ms.unwrap_or(0),
                input_tokens: r.judge_input_tokens.unwrap_or(0),
                output_tokens: r.judge_output_tokens.unwrap_or(0),
            }),
            judge_error: r.judge_error,
            transferred: r.transferred,
            errored: r.errored,
            first_audio_ms: r.first_audio_ms,
            end_reason: r.end_reason,
            session_started_at: r.session_started_at,
            created_at: r.created_at,
        }
    }
}

/// A result to record, fenced by the lease it was computed under.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedEvaluation {
    /// The lease token of the claim.
    pub lease_token: String,
    /// The evaluation (its `job_id` names the job).
    pub evaluation: Evaluation,
    /// Per-criterion results, in rubric order.
    pub criteria: Vec<CriterionResult>,
    /// `voice.session.evaluated`, written in the same transaction.
    pub event: NewEvent,
}

/// An operator's review of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// Identifier.
    pub id: ReviewId,
    /// The evaluation reviewed.
    pub evaluation_id: EvaluationId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The operator's verdict.
    pub passed: bool,
    /// The operator's note.
    pub note: Option<String>,
    /// Who reviewed (an operator name or the API key's id).
    pub reviewer: String,
    /// When (Unix ms).
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct ReviewRow {
    id: String,
    evaluation_id: String,
    tenant_id: String,
    passed: bool,
    note: Option<String>,
    reviewer: String,
    created_at: i64,
}

impl From<ReviewRow> for Review {
    fn from(r: ReviewRow) -> Self {
        Review {
            id: ReviewId::from_stored(r.id),
            evaluation_id: EvaluationId::from_stored(r.evaluation_id),
            tenant_id: TenantId::from_stored(r.tenant_id),
            passed: r.passed,
            note: r.note,
            reviewer: r.reviewer,
            created_at: r.created_at,
        }
    }
}

/// Filter of the evaluation listing (always one tenant's).
#[derive(Debug, Clone)]
pub struct EvaluationFilter {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Only this agent.
    pub agent_key: Option<String>,
    /// Only this agent version.
    pub agent_version_id: Option<String>,
    /// Only passed (or failed) calls.
    pub passed: Option<bool>,
    /// Sessions started at or after (Unix ms).
    pub from_ms: Option<i64>,
    /// Sessions started before (Unix ms).
    pub to_ms: Option<i64>,
    /// Page size.
    pub limit: u32,
    /// Rows skipped.
    pub offset: u32,
}

/// The raw per-version figures over a window, before statistics
/// ([`crate::evaluation::VersionSummary`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VersionFigures {
    /// Evaluated sessions (the latest evaluation of each).
    pub evaluated: i64,
    /// Of which passed.
    pub passed: i64,
    /// Mean score.
    pub mean_score: Option<f64>,
    /// Of which handed to a human.
    pub transferred: i64,
    /// Of which failed (AI or actor failure).
    pub errored: i64,
    /// First-audio values (ms), ascending.
    pub first_audio_ms: Vec<i64>,
    /// (criterion key, result, count), by key.
    pub criteria: Vec<(String, Verdict, i64)>,
    /// (automatic verdict, latest human verdict) of the reviewed evaluations.
    pub reviews: Vec<(bool, bool)>,
}

/// Evaluations of one version with the window, latest per session (alias `e`).
const VERSION_WINDOW: &str = "e.agent_version_id = $1 AND ($2 IS NULL OR e.session_started_at >= $2) \
     AND ($3 IS NULL OR e.session_started_at < $3) AND NOT EXISTS (SELECT 1 FROM evaluations n \
     WHERE n.session_id = e.session_id AND (n.created_at > e.created_at OR (n.created_at = e.created_at AND n.id > e.id)))";

/// Records a job for `$session` from its agent version's stored rubric, unless the version
/// has none or the job exists, on an open transaction (`$exec` is `&mut *tx`), due at `$now`.
/// Evaluates to `true` when a job was created; database errors return from the enclosing
/// function. The call runtime uses it in the transaction that finishes a voice session (then
/// wakes [`crate::evaluation::Evaluations`] after the commit).
macro_rules! enqueue_session_evaluation {
    ($exec:expr, $session:expr, $now:expr) => {{
        let session: &$crate::ids::SessionId = $session;
        let now: i64 = $now;
        sqlx::query(
            "INSERT INTO evaluation_jobs (id, tenant_id, session_id, call_id, agent_version_id, rubric, \
             rubric_hash, status, attempts, next_attempt_at, created_at, updated_at) \
             SELECT $1, s.tenant_id, s.id, s.call_id, s.agent_version_id, v.rubric, v.rubric_hash, \
             'pending', 0, $3, $3, $3 FROM voice_sessions s JOIN agent_versions v ON v.id = s.agent_version_id \
             WHERE s.id = $2 AND v.rubric IS NOT NULL AND v.rubric_hash IS NOT NULL \
             ON CONFLICT (session_id, rubric_hash) DO NOTHING",
        )
        .bind($crate::ids::EvaluationJobId::generate().as_str())
        .bind(session.as_str())
        .bind(now)
        .execute($exec)
        .await?
        .rows_affected()
            == 1
    }};
}
pub(crate) use enqueue_session_evaluation;

impl Store {
    /// Records a job for (session, rubric hash) unless one exists; returns the job there is.
    pub async fn enqueue_evaluation(
        &self,
        job: &NewEvaluationJob,
    ) -> Result<EnqueuedJob, StoreError> {
        let id = EvaluationJobId::generate();
        let (found, status): (String, String) = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO evaluation_jobs (id, tenant_id, session_id, call_id, agent_version_id, rubric, \
                 rubric_hash, status, attempts, next_attempt_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8, $8) \
                 ON CONFLICT (session_id, rubric_hash) DO NOTHING",
            )
            .bind(id.as_str())
            .bind(job.tenant_id.as_str())
            .bind(job.session_id.as_str())
            .bind(job.call_id.as_str())
            .bind(&job.agent_version_id)
            .bind(&job.rubric)
            .bind(&job.rubric_hash)
            .bind(job.due_at)
            .execute(pool)
            .await?;
            sqlx::query_as(
                "SELECT id, status FROM evaluation_jobs WHERE session_id = $1 AND rubric_hash = $2",
            )
            .bind(job.session_id.as_str())
            .bind(&job.rubric_hash)
            .fetch_one(pool)
            .await?
        });
        Ok(EnqueuedJob {
            created: found == id.as_str(),
            id: EvaluationJobId::from_stored(found),
            status: EvaluationJobStatus::parse(&status)
                .ok_or(StoreError::Corrupt("evaluation_jobs.status"))?,
        })
    }

    /// Records a job for `session` from its version's stored rubric (see
    /// [`enqueue_session_evaluation!`]); true when one was created.
    pub async fn enqueue_session_evaluation(
        &self,
        session: &SessionId,
        now: i64,
    ) -> Result<bool, StoreError> {
        let created = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let created = enqueue_session_evaluation!(&mut *tx, session, now);
            tx.commit().await?;
            created
        });
        Ok(created)
    }

    /// One of a tenant's sessions with its version's rubric; `None` when there is no such
    /// session.
    pub async fn session_rubric(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Option<SessionRubric>, StoreError> {
        type Row = (
            String,
            Option<String>,
            String,
            Option<String>,
            Option<String>,
        );
        let row: Option<Row> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT s.call_id, s.agent_version_id, s.status, v.rubric, v.rubric_hash FROM voice_sessions s \
                 LEFT JOIN agent_versions v ON v.id = s.agent_version_id WHERE s.id = $1 AND s.tenant_id = $2",
            )
            .bind(session.as_str())
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(
            |(call_id, agent_version_id, status, rubric, rubric_hash)| SessionRubric {
                call_id: CallId::from_stored(call_id),
                agent_version_id,
                active: status == "active",
                rubric,
                rubric_hash,
            },
        ))
    }

    /// A tenant's job.
    pub async fn get_evaluation_job(
        &self,
        tenant: &TenantId,
        id: &EvaluationJobId,
    ) -> Result<Option<EvaluationJob>, StoreError> {
        let row: Option<JobRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {JOB_COLUMNS} FROM evaluation_jobs WHERE id = $1 AND tenant_id = $2"
            )))
            .bind(id.as_str())
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(EvaluationJob::try_from).transpose()
    }

    /// Claims up to `limit` due jobs (pending and due, or running with an expired lease)
    /// with one conditional `UPDATE`: each gets status `running`, one more attempt,
    /// `lease_until` and `lease_token`. A job is claimed by one caller only; on PostgreSQL
    /// rows locked by a concurrent claim are skipped.
    pub async fn claim_evaluation_jobs(
        &self,
        now: i64,
        lease_until: i64,
        lease_token: &str,
        limit: u32,
    ) -> Result<Vec<EvaluationJob>, StoreError> {
        // Repeated outside the subquery: on PostgreSQL a row updated by a concurrent claim
        // is re-checked against it once the lock is granted.
        const DUE: &str = "((status = 'pending' AND next_attempt_at <= $1) \
                           OR (status = 'running' AND lease_until < $1))";
        // Look first, so an idle queue never takes SQLite's write lock.
        let any_due: Option<String> = on_pool!(self, pool => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM evaluation_jobs WHERE {DUE} LIMIT 1"
            )))
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        if any_due.is_none() {
            return Ok(Vec::new());
        }
        let lock = match self {
            Store::Sqlite(_) => "",
            Store::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE evaluation_jobs SET status = 'running', attempts = attempts + 1, \
             lease_until = $2, lease_token = $3, updated_at = $1 \
             WHERE id IN (SELECT id FROM evaluation_jobs WHERE {DUE} \
             ORDER BY next_attempt_at, id LIMIT $4{lock}) AND {DUE} \
             RETURNING {JOB_COLUMNS}"
        );
        let rows: Vec<JobRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(lease_until)
                .bind(lease_token)
                .bind(as_i64(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(EvaluationJob::try_from).collect()
    }

    /// Schedules another attempt of a running job at `at`, recording why this one did not
    /// finish, provided the lease is still held (false otherwise: nothing written).
    pub async fn retry_evaluation_job(
        &self,
        id: &EvaluationJobId,
        lease_token: &str,
        at: i64,
        error: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE evaluation_jobs SET status = 'pending', next_attempt_at = $3, last_error = $4, \
                 lease_until = NULL, lease_token = NULL, updated_at = $5 \
                 WHERE id = $1 AND lease_token = $2 AND status = 'running'",
            )
            .bind(id.as_str())
            .bind(lease_token)
            .bind(at)
            .bind(error)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Marks a running job as one that can never be scored, provided the lease is held.
    pub async fn fail_evaluation_job(
        &self,
        id: &EvaluationJobId,
        lease_token: &str,
        error: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE evaluation_jobs SET status = 'failed', last_error = $3, lease_until = NULL, \
                 lease_token = NULL, updated_at = $4 WHERE id = $1 AND lease_token = $2 AND status = 'running'",
            )
            .bind(id.as_str())
            .bind(lease_token)
            .bind(error)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Gives back a claimed job whose attempt was abandoned (shutdown): pending again, due
    /// at once, the attempt not counted. A no-op when the lease is no longer held.
    pub async fn release_evaluation_job(
        &self,
        id: &EvaluationJobId,
        lease_token: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE evaluation_jobs SET status = 'pending', attempts = attempts - 1, next_attempt_at = $3, \
                 lease_until = NULL, lease_token = NULL, updated_at = $3 \
                 WHERE id = $1 AND lease_token = $2 AND status = 'running'",
            )
            .bind(id.as_str())
            .bind(lease_token)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Jobs pending or running, across tenants (the queue gauge).
    pub async fn evaluation_jobs_pending(&self) -> Result<i64, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM evaluation_jobs WHERE status IN ('pending', 'running')",
            )
            .fetch_one(pool)
            .await?
        });
        Ok(n)
    }

    /// What the evaluation of a tenant's session reads; `None` when there is no such session.
    pub async fn evaluation_material(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Option<EvaluationMaterial>, StoreError> {
        let Some(session) = self.get_session(tenant, session).await? else {
            return Ok(None);
        };
        let call = self.get_call(tenant, &session.call_id).await?;
        type Row = (
            i64,
            String,
            Option<String>,
            String,
            Option<i64>,
            Option<i64>,
            bool,
            Option<String>,
            i64,
            Option<i64>,
        );
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, role, item_id, text, start_ms, end_ms, interrupted, heard_text, created_at, response_gap_ms \
                 FROM transcript_turns WHERE session_id = $1 ORDER BY id",
            )
            .bind(session.id.as_str())
            .fetch_all(pool)
            .await?
        });
        let turns = rows
            .into_iter()
            .map(
                |(
                    id,
                    role,
                    item_id,
                    text,
                    start_ms,
                    end_ms,
                    interrupted,
                    heard_text,
                    created_at,
                    response_gap_ms,
                )| MaterialTurn {
                    turn: TranscriptTurn {
                        id,
                        role,
                        item_id,
                        text,
                        start_ms,
                        end_ms,
                        interrupted,
                        heard_text,
                        created_at,
                    },
                    response_gap_ms,
                },
            )
            .collect();
        let function_calls = self.session_function_calls(&session.id).await?;
        let handoffs = self.call_handoffs(&session.call_id).await?;
        Ok(Some(EvaluationMaterial {
            session,
            call,
            turns,
            function_calls,
            handoffs,
        }))
    }

    /// Records a result: the job `done`, the evaluation, its criteria, the session's summary
    /// and tags (when the judge wrote them) and the event, in one transaction, provided the
    /// lease is still held. False when it is not (the lease expired and the job was claimed
    /// again): nothing is written.
    pub async fn finish_evaluation(
        &self,
        done: &FinishedEvaluation,
        now: i64,
    ) -> Result<bool, StoreError> {
        let e = &done.evaluation;
        let failed = serde_json::to_string(&e.failed_criteria).unwrap_or_else(|_| "[]".into());
        let tags = serde_json::to_string(&e.tags).unwrap_or_else(|_| "[]".into());
        let held = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE evaluation_jobs SET status = 'done', lease_until = NULL, lease_token = NULL, \
                 last_error = $3, updated_at = $4 WHERE id = $1 AND lease_token = $2 AND status = 'running'",
            )
            .bind(e.job_id.as_str())
            .bind(&done.lease_token)
            .bind(&e.judge_error)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO evaluations ({EVALUATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                     $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)"
                )))
                .bind(e.id.as_str())
                .bind(e.job_id.as_str())
                .bind(e.tenant_id.as_str())
                .bind(e.session_id.as_str())
                .bind(e.call_id.as_str())
                .bind(&e.agent_key)
                .bind(&e.agent_version_id)
                .bind(&e.rubric_hash)
                .bind(e.passed)
                .bind(e.score)
                .bind(e.pass_score)
                .bind(&failed)
                .bind(&e.summary)
                .bind(&tags)
                .bind(e.judge.as_ref().map(|j| j.model.clone()))
                .bind(e.judge.as_ref().map(|j| j.latency_ms))
                .bind(e.judge.as_ref().map(|j| j.input_tokens))
                .bind(e.judge.as_ref().map(|j| j.output_tokens))
                .bind(&e.judge_error)
                .bind(e.transferred)
                .bind(e.errored)
                .bind(e.first_audio_ms)
                .bind(&e.end_reason)
                .bind(e.session_started_at)
                .bind(e.created_at)
                .execute(&mut *tx)
                .await?;
                for (position, c) in done.criteria.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO evaluation_criteria (evaluation_id, position, key, kind, weight, critical, result, score, evidence) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(e.id.as_str())
                    .bind(i64::try_from(position).unwrap_or(i64::MAX))
                    .bind(&c.key)
                    .bind(&c.kind)
                    .bind(c.weight)
                    .bind(c.critical)
                    .bind(c.verdict.as_str())
                    .bind(c.score)
                    .bind(serde_json::to_string(&c.evidence).unwrap_or_else(|_| "{}".into()))
                    .execute(&mut *tx)
                    .await?;
                }
                if e.summary.is_some() {
                    sqlx::query("UPDATE voice_sessions SET summary = $2, tags = $3 WHERE id = $1")
                        .bind(e.session_id.as_str())
                        .bind(&e.summary)
                        .bind(&tags)
                        .execute(&mut *tx)
                        .await?;
                }
                let _queued = insert_event!(&mut *tx, &done.event);
                tx.commit().await?;
            }
            n == 1
        });
        Ok(held)
    }

    /// One of a tenant's evaluations.
    pub async fn get_evaluation(
        &self,
        tenant: &TenantId,
        id: &EvaluationId,
    ) -> Result<Option<Evaluation>, StoreError> {
        let row: Option<EvaluationRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {EVALUATION_COLUMNS} FROM evaluations WHERE id = $1 AND tenant_id = $2"
            )))
            .bind(id.as_str())
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(Evaluation::from))
    }

    /// The evaluation written for a job, if any.
    pub async fn evaluation_of_job(
        &self,
        tenant: &TenantId,
        job: &EvaluationJobId,
    ) -> Result<Option<Evaluation>, StoreError> {
        let row: Option<EvaluationRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {EVALUATION_COLUMNS} FROM evaluations WHERE job_id = $1 AND tenant_id = $2"
            )))
            .bind(job.as_str())
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(Evaluation::from))
    }

    /// The evaluations of a tenant's session, newest first.
    pub async fn evaluations_of_session(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Vec<Evaluation>, StoreError> {
        let rows: Vec<EvaluationRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {EVALUATION_COLUMNS} FROM evaluations WHERE session_id = $1 AND tenant_id = $2 \
                 ORDER BY created_at DESC, id DESC"
            )))
            .bind(session.as_str())
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(Evaluation::from).collect())
    }

    /// The criteria results of one of a tenant's evaluations, in rubric order (empty for
    /// another tenant's).
    pub async fn evaluation_criteria(
        &self,
        tenant: &TenantId,
        id: &EvaluationId,
    ) -> Result<Vec<CriterionResult>, StoreError> {
        type Row = (String, String, f64, bool, String, f64, String);
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT c.key, c.kind, c.weight, c.critical, c.result, c.score, c.evidence \
                 FROM evaluation_criteria c JOIN evaluations e ON e.id = c.evaluation_id \
                 WHERE c.evaluation_id = $1 AND e.tenant_id = $2 ORDER BY c.position",
            )
            .bind(id.as_str())
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(key, kind, weight, critical, result, score, evidence)| {
                Ok(CriterionResult {
                    key,
                    kind,
                    weight,
                    critical,
                    verdict: Verdict::parse(&result)
                        .ok_or(StoreError::Corrupt("evaluation_criteria.result"))?,
                    score,
                    evidence: serde_json::from_str::<Evidence>(&evidence).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Lists a tenant's evaluations, newest session first.
    pub async fn list_evaluations(
        &self,
        f: &EvaluationFilter,
    ) -> Result<Page<Evaluation>, StoreError> {
        const WHERE: &str = "tenant_id = $1 AND ($2 IS NULL OR agent_key = $2) \
             AND ($3 IS NULL OR agent_version_id = $3) AND ($4 IS NULL OR passed = $4) \
             AND ($5 IS NULL OR session_started_at >= $5) AND ($6 IS NULL OR session_started_at < $6)";
        let (rows, total): (Vec<EvaluationRow>, i64) = on_pool!(self, pool => {
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {EVALUATION_COLUMNS} FROM evaluations WHERE {WHERE} \
                 ORDER BY session_started_at DESC, id DESC LIMIT $7 OFFSET $8"
            )))
            .bind(f.tenant_id.as_str())
            .bind(&f.agent_key)
            .bind(&f.agent_version_id)
            .bind(f.passed)
            .bind(f.from_ms)
            .bind(f.to_ms)
            .bind(as_i64(f.limit))
            .bind(as_i64(f.offset))
            .fetch_all(pool)
            .await?;
            let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM evaluations WHERE {WHERE}"
            )))
            .bind(f.tenant_id.as_str())
            .bind(&f.agent_key)
            .bind(&f.agent_version_id)
            .bind(f.passed)
            .bind(f.from_ms)
            .bind(f.to_ms)
            .fetch_one(pool)
            .await?;
            (rows, total)
        });
        Ok(Page {
            items: rows.into_iter().map(Evaluation::from).collect(),
            total,
        })
    }

    /// Records an operator's review of one of a tenant's evaluations; `None` when the
    /// tenant has no such evaluation (nothing written).
    pub async fn add_review(
        &self,
        tenant: &TenantId,
        evaluation: &EvaluationId,
        passed: bool,
        note: Option<&str>,
        reviewer: &str,
        now: i64,
    ) -> Result<Option<Review>, StoreError> {
        let id = ReviewId::generate();
        let n = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO evaluation_reviews (id, evaluation_id, tenant_id, passed, note, reviewer, created_at) \
                 SELECT $1, e.id, e.tenant_id, $4, $5, $6, $7 FROM evaluations e WHERE e.id = $2 AND e.tenant_id = $3",
            )
            .bind(id.as_str())
            .bind(evaluation.as_str())
            .bind(tenant.as_str())
            .bind(passed)
            .bind(note)
            .bind(reviewer)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok((n == 1).then(|| Review {
            id,
            evaluation_id: evaluation.clone(),
            tenant_id: tenant.clone(),
            passed,
            note: note.map(str::to_owned),
            reviewer: reviewer.to_owned(),
            created_at: now,
        }))
    }

    /// The reviews of one of a tenant's evaluations, oldest first (the last is current).
    pub async fn reviews(
        &self,
        tenant: &TenantId,
        evaluation: &EvaluationId,
    ) -> Result<Vec<Review>, StoreError> {
        let rows: Vec<ReviewRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, evaluation_id, tenant_id, passed, note, reviewer, created_at FROM evaluation_reviews \
                 WHERE evaluation_id = $1 AND tenant_id = $2 ORDER BY created_at, id",
            )
            .bind(evaluation.as_str())
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(Review::from).collect())
    }

    /// The raw figures of an agent version's evaluations of sessions started in
    /// `[from, to)` (either bound open when `None`).
    pub async fn version_figures(
        &self,
        version: &str,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<VersionFigures, StoreError> {
        type Totals = (i64, Option<i64>, Option<f64>, Option<i64>, Option<i64>);
        type Figures = (
            Totals,
            Vec<i64>,
            Vec<(String, String, i64)>,
            Vec<(bool, bool)>,
        );
        let (totals, first_audio, criteria, reviews): Figures = on_pool!(self, pool => {
            let totals: Totals = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*), SUM(CASE WHEN e.passed THEN 1 ELSE 0 END), AVG(e.score), \
                 SUM(CASE WHEN e.transferred THEN 1 ELSE 0 END), SUM(CASE WHEN e.errored THEN 1 ELSE 0 END) \
                 FROM evaluations e WHERE {VERSION_WINDOW}"
            )))
            .bind(version)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_one(pool)
            .await?;
            let first_audio: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT e.first_audio_ms FROM evaluations e WHERE {VERSION_WINDOW} \
                 AND e.first_audio_ms IS NOT NULL ORDER BY e.first_audio_ms"
            )))
            .bind(version)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(pool)
            .await?;
            let criteria: Vec<(String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT c.key, c.result, COUNT(*) FROM evaluation_criteria c JOIN evaluations e ON e.id = c.evaluation_id \
                 WHERE {VERSION_WINDOW} GROUP BY c.key, c.result ORDER BY c.key, c.result"
            )))
            .bind(version)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(pool)
            .await?;
            let reviews: Vec<(bool, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT e.passed, r.passed FROM evaluations e JOIN evaluation_reviews r ON r.evaluation_id = e.id \
                 WHERE {VERSION_WINDOW} AND NOT EXISTS (SELECT 1 FROM evaluation_reviews l \
                 WHERE l.evaluation_id = r.evaluation_id AND (l.created_at > r.created_at \
                 OR (l.created_at = r.created_at AND l.id > r.id)))"
            )))
            .bind(version)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(pool)
            .await?;
            (totals, first_audio, criteria, reviews)
        });
        let (evaluated, passed, mean_score, transferred, errored) = totals;
        Ok(VersionFigures {
            evaluated,
            passed: passed.unwrap_or(0),
            mean_score,
            transferred: transferred.unwrap_or(0),
            errored: errored.unwrap_or(0),
            first_audio_ms: first_audio,
            criteria: criteria
                .into_iter()
                .map(|(key, result, n)| {
                    Verdict::parse(&result)
                        .map(|v| (key, v, n))
                        .ok_or(StoreError::Corrupt("evaluation_criteria.result"))
                })
                .collect::<Result<_, _>>()?,
            reviews,
        })
    }
}

/// One bucket of one version's evaluations ([`Store::agent_evaluation_buckets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationBucket {
    /// The version.
    pub agent_version_id: String,
    /// The bucket's start (Unix ms, a multiple of the bucket width).
    pub bucket_start: i64,
    /// Evaluated sessions started in the bucket (the latest evaluation of each).
    pub evaluated: i64,
    /// Of which passed.
    pub passed: i64,
}

impl Store {
    /// The evaluations of every version of `agent`, counted per bucket of `width_ms` of
    /// session start times (UTC-aligned: a bucket starts at a multiple of the width) over
    /// sessions started in `[from_ms, to_ms)`, the latest evaluation of each session
    /// counting; by version, then bucket. Buckets without evaluations are absent.
    pub async fn agent_evaluation_buckets(
        &self,
        agent: &crate::ids::AgentId,
        width_ms: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<EvaluationBucket>, StoreError> {
        let rows: Vec<(String, i64, i64, Option<i64>)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT e.agent_version_id, (e.session_started_at / $2) * $2 AS bucket_start, COUNT(*), \
                 SUM(CASE WHEN e.passed THEN 1 ELSE 0 END) \
                 FROM evaluations e JOIN agent_versions v ON v.id = e.agent_version_id \
                 WHERE v.agent_id = $1 AND e.session_started_at >= $3 AND e.session_started_at < $4 \
                 AND NOT EXISTS (SELECT 1 FROM evaluations n WHERE n.session_id = e.session_id \
                 AND (n.created_at > e.created_at OR (n.created_at = e.created_at AND n.id > e.id))) \
                 GROUP BY e.agent_version_id, bucket_start ORDER BY e.agent_version_id, bucket_start",
            )
            .bind(agent.as_str())
            .bind(width_ms)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(agent_version_id, bucket_start, evaluated, passed)| EvaluationBucket {
                    agent_version_id,
                    bucket_start,
                    evaluated,
                    passed: passed.unwrap_or(0),
                },
            )
            .collect())
    }
}

#[cfg(test)]
#[path = "evaluations_tests.rs"]
mod tests;
