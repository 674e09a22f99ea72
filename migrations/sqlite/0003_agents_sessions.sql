-- Agents and their versions, voice sessions and transcript turns.

CREATE TABLE agents (
    id         TEXT PRIMARY KEY NOT NULL,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    key        TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, key)
);

CREATE TABLE agent_versions (
    id                     TEXT PRIMARY KEY NOT NULL,
    agent_id               TEXT NOT NULL REFERENCES agents (id),
    tenant_id              TEXT NOT NULL REFERENCES tenants (id),
    version                BIGINT NOT NULL,
    status                 TEXT NOT NULL CHECK (status IN ('draft', 'approved', 'retired')),
    model                  TEXT NOT NULL,
    voice                  TEXT NOT NULL,
    instructions           TEXT NOT NULL,
    greeting               TEXT,
    transcription_model    TEXT,
    transcription_language TEXT,
    turn_detection         TEXT NOT NULL,
    max_call_seconds       BIGINT NOT NULL,
    idle_timeout_seconds   BIGINT NOT NULL,
    created_at             BIGINT NOT NULL,
    approved_at            BIGINT,
    retired_at             BIGINT,
    UNIQUE (agent_id, version)
);
CREATE INDEX agent_versions_agent ON agent_versions (agent_id, status, version);

CREATE TABLE voice_sessions (
    id               TEXT PRIMARY KEY NOT NULL,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    call_id          TEXT NOT NULL REFERENCES calls (id),
    agent_key        TEXT,
    agent_version_id TEXT,
    model            TEXT NOT NULL,
    voice            TEXT NOT NULL,
    stream_sid       TEXT,
    status           TEXT NOT NULL CHECK (status IN ('active', 'completed', 'failed')),
    end_reason       TEXT,
    first_audio_ms   BIGINT,
    input_tokens     BIGINT NOT NULL,
    output_tokens    BIGINT NOT NULL,
    total_tokens     BIGINT NOT NULL,
    reconnects       BIGINT NOT NULL,
    summary          TEXT,
    tags             TEXT NOT NULL,
    started_at       BIGINT NOT NULL,
    ended_at         BIGINT
);
CREATE INDEX voice_sessions_tenant ON voice_sessions (tenant_id, started_at);
CREATE INDEX voice_sessions_call ON voice_sessions (call_id);

CREATE TABLE transcript_turns (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT NOT NULL REFERENCES voice_sessions (id),
    role        TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    item_id     TEXT,
    text        TEXT NOT NULL,
    start_ms    BIGINT,
    end_ms      BIGINT,
    interrupted BOOLEAN NOT NULL,
    heard_text  TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX transcript_turns_session ON transcript_turns (session_id, id);
