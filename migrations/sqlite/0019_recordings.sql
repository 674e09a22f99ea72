-- Call recording (issue 16, part 1): a recording policy on phone routes and agent versions
-- (`off`, `on`, `on_with_disclosure`; NULL on a route or version: not set), the effective
-- policy of each call, the recordings the carrier made (metadata only: the audio stays at
-- the carrier and is proxied), each deletion recorded on its row (who, why, when), and the
-- per-tenant retention the sweeper enforces.

ALTER TABLE phone_routes ADD COLUMN recording_policy TEXT;
ALTER TABLE agent_versions ADD COLUMN recording_policy TEXT;
ALTER TABLE agent_versions ADD COLUMN recording_disclosure TEXT;
ALTER TABLE calls ADD COLUMN recording_policy TEXT NOT NULL DEFAULT 'off';

CREATE TABLE recordings (
    id               TEXT PRIMARY KEY NOT NULL,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    call_id          TEXT NOT NULL REFERENCES calls (id),
    recording_sid    TEXT NOT NULL UNIQUE,
    account_sid      TEXT NOT NULL,
    channels         BIGINT NOT NULL,
    status           TEXT NOT NULL,
    duration_seconds BIGINT,
    started_at       BIGINT,
    completed_at     BIGINT,
    -- When `voice.recording.completed` was written (claimed once, by a conditional update).
    completed_event_at BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    deleted_at       BIGINT,
    deleted_by       TEXT,
    deleted_reason   TEXT,
    sweep_lease_until BIGINT,
    sweep_token      TEXT
);
CREATE INDEX recordings_call ON recordings (tenant_id, call_id, created_at);
CREATE INDEX recordings_sweep ON recordings (deleted_at, created_at);

CREATE TABLE tenant_recording_settings (
    tenant_id      TEXT PRIMARY KEY NOT NULL REFERENCES tenants (id),
    retention_days BIGINT,
    updated_at     BIGINT NOT NULL
);
