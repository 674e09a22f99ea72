-- Operator queues (the human numbers a call is handed to, with business hours and what
-- happens when closed or unanswered) and callback tasks (open → claimed → completed,
-- open|claimed → cancelled). Every *_at column holds Unix milliseconds (UTC).

CREATE TABLE operator_queues (
    id                   TEXT PRIMARY KEY NOT NULL,
    tenant_id            TEXT NOT NULL REFERENCES tenants (id),
    name                 TEXT NOT NULL,
    -- JSON array of E.164 numbers rung simultaneously.
    numbers              TEXT NOT NULL,
    caller_id            TEXT,
    ring_timeout_seconds BIGINT NOT NULL,
    -- JSON {timezone, windows: [{days, open, close}]}; NULL means always open.
    business_hours       TEXT,
    when_closed          TEXT NOT NULL CHECK (when_closed IN ('callback_task', 'voicemail', 'agent')),
    when_unanswered      TEXT NOT NULL CHECK (when_unanswered IN ('callback_task', 'voicemail', 'agent')),
    voicemail_message    TEXT,
    announcement         TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

-- A deleted queue leaves its tasks in place, without a queue.
CREATE TABLE callback_tasks (
    id             TEXT PRIMARY KEY NOT NULL,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    phone          TEXT NOT NULL,
    reason         TEXT NOT NULL,
    source_call_id TEXT REFERENCES calls (id),
    queue_id       TEXT REFERENCES operator_queues (id) ON DELETE SET NULL,
    priority       TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    due_at         BIGINT,
    assignee       TEXT,
    status         TEXT NOT NULL CHECK (status IN ('open', 'claimed', 'completed', 'cancelled')),
    created_by     TEXT NOT NULL CHECK (created_by IN ('api', 'tool', 'handoff')),
    outcome        TEXT,
    notes          TEXT,
    cancel_reason  TEXT,
    created_at     BIGINT NOT NULL,
    claimed_at     BIGINT,
    completed_at   BIGINT,
    cancelled_at   BIGINT,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX callback_tasks_tenant_status ON callback_tasks (tenant_id, status, created_at);
CREATE INDEX callback_tasks_queue ON callback_tasks (queue_id);
CREATE INDEX callback_tasks_source_call ON callback_tasks (source_call_id);
