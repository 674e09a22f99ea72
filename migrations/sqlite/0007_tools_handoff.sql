-- The agent contract: tools, escalation rules and the identity check on agent versions;
-- every function call a model makes; handoffs to human queues with their context; the
-- caller's identity state and the escalation target on the call.

ALTER TABLE agent_versions ADD COLUMN tools TEXT NOT NULL DEFAULT '[]';
ALTER TABLE agent_versions ADD COLUMN escalation TEXT NOT NULL DEFAULT '{"rules":[]}';
ALTER TABLE agent_versions ADD COLUMN identity TEXT;

ALTER TABLE calls ADD COLUMN identity_state TEXT;
ALTER TABLE calls ADD COLUMN escalated_to TEXT;

CREATE TABLE function_calls (
    id            TEXT PRIMARY KEY NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    call_id       TEXT NOT NULL REFERENCES calls (id),
    session_id    TEXT NOT NULL REFERENCES voice_sessions (id),
    model_call_id TEXT NOT NULL,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('webhook', 'builtin', 'unknown')),
    arguments     TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'refused', 'invalid', 'timed_out', 'cancelled')),
    result        TEXT,
    error         TEXT,
    latency_ms    BIGINT,
    started_at    BIGINT NOT NULL,
    finished_at   BIGINT,
    UNIQUE (call_id, model_call_id)
);
CREATE INDEX function_calls_session ON function_calls (session_id, started_at);

CREATE TABLE handoffs (
    id               TEXT PRIMARY KEY NOT NULL,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    call_id          TEXT NOT NULL REFERENCES calls (id),
    queue_id         TEXT,
    queue_name       TEXT,
    reason           TEXT NOT NULL,
    rule             TEXT NOT NULL,
    context          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('dialing', 'answered', 'unanswered', 'closed', 'failed')),
    dial_status      TEXT,
    target           TEXT,
    outcome          TEXT,
    callback_task_id TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX handoffs_call ON handoffs (call_id, created_at);
