-- Evaluations (DESIGN §5): the rubric of an agent version (canonical JSON and its hash,
-- immutable with the version), the response gap measured per agent turn, evaluation jobs
-- (one per voice session and rubric hash, written with the end of the session, claimed with
-- a lease like webhook deliveries), their results per call and per criterion, and operators'
-- reviews kept beside the automatic verdict.

ALTER TABLE agent_versions ADD COLUMN rubric TEXT;
ALTER TABLE agent_versions ADD COLUMN rubric_hash TEXT;
-- Milliseconds from the end of the caller's turn to the agent's first audio of this turn.
ALTER TABLE transcript_turns ADD COLUMN response_gap_ms BIGINT;

-- status: pending (due at next_attempt_at), running (leased by a node until lease_until;
-- an expired lease is claimed again), done (its evaluation is written), failed (it could
-- never be scored, e.g. an unreadable rubric). attempts counts claims.
CREATE TABLE evaluation_jobs (
    id               TEXT PRIMARY KEY NOT NULL,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    session_id       TEXT NOT NULL REFERENCES voice_sessions (id),
    call_id          TEXT NOT NULL REFERENCES calls (id),
    agent_version_id TEXT,
    rubric           TEXT NOT NULL,
    rubric_hash      TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,
    lease_token      TEXT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (session_id, rubric_hash)
);
CREATE INDEX evaluation_jobs_due ON evaluation_jobs (status, next_attempt_at);

-- One per job. The session's agent, outcome flags and first audio are copied here so the
-- per-version aggregates read one table; session_started_at is the time windows' axis.
CREATE TABLE evaluations (
    id                  TEXT PRIMARY KEY NOT NULL,
    job_id              TEXT NOT NULL UNIQUE REFERENCES evaluation_jobs (id),
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    session_id          TEXT NOT NULL REFERENCES voice_sessions (id),
    call_id             TEXT NOT NULL REFERENCES calls (id),
    agent_key           TEXT,
    agent_version_id    TEXT,
    rubric_hash         TEXT NOT NULL,
    passed              BOOLEAN NOT NULL,
    score               DOUBLE PRECISION NOT NULL,
    pass_score          DOUBLE PRECISION NOT NULL,
    failed_criteria     TEXT NOT NULL,
    summary             TEXT,
    tags                TEXT NOT NULL,
    judge_model         TEXT,
    judge_latency_ms    BIGINT,
    judge_input_tokens  BIGINT,
    judge_output_tokens BIGINT,
    judge_error         TEXT,
    transferred         BOOLEAN NOT NULL,
    errored             BOOLEAN NOT NULL,
    first_audio_ms      BIGINT,
    end_reason          TEXT,
    session_started_at  BIGINT NOT NULL,
    created_at          BIGINT NOT NULL
);
CREATE INDEX evaluations_tenant ON evaluations (tenant_id, session_started_at);
CREATE INDEX evaluations_version ON evaluations (agent_version_id, session_started_at);
CREATE INDEX evaluations_session ON evaluations (session_id, created_at);

-- result: passed, failed, not_applicable or error; evidence is JSON (quoted turns, or the
-- measured value against its threshold, and a note).
CREATE TABLE evaluation_criteria (
    evaluation_id TEXT NOT NULL REFERENCES evaluations (id),
    position      BIGINT NOT NULL,
    key           TEXT NOT NULL,
    kind          TEXT NOT NULL,
    weight        DOUBLE PRECISION NOT NULL,
    critical      BOOLEAN NOT NULL,
    result        TEXT NOT NULL CHECK (result IN ('passed', 'failed', 'not_applicable', 'error')),
    score         DOUBLE PRECISION NOT NULL,
    evidence      TEXT NOT NULL,
    PRIMARY KEY (evaluation_id, position)
);

-- Every review is kept; the latest of an evaluation is the human verdict.
CREATE TABLE evaluation_reviews (
    id            TEXT PRIMARY KEY NOT NULL,
    evaluation_id TEXT NOT NULL REFERENCES evaluations (id),
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    passed        BOOLEAN NOT NULL,
    note          TEXT,
    reviewer      TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX evaluation_reviews_evaluation ON evaluation_reviews (evaluation_id, created_at);
