-- Foundation: tenants, API keys, audit log, call log, idempotency keys.
-- Every *_at column holds Unix milliseconds (UTC).

CREATE TABLE tenants (
    id                     TEXT PRIMARY KEY NOT NULL,
    name                   TEXT NOT NULL,
    status                 TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    max_concurrent_calls   BIGINT NOT NULL,
    webhook_url            TEXT,
    runtime_config         TEXT,
    twilio_account_sid     TEXT UNIQUE,
    twilio_auth_token_enc  BYTEA,
    twilio_auth_token_hint TEXT,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    tenant_id   TEXT,
    target_type TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    before      TEXT,
    after       TEXT,
    request_id  TEXT
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);

CREATE TABLE calls (
    id                   TEXT PRIMARY KEY NOT NULL,
    tenant_id            TEXT NOT NULL REFERENCES tenants (id),
    call_sid             TEXT UNIQUE,
    route_id             TEXT,
    direction            TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    from_number          TEXT NOT NULL,
    to_number            TEXT NOT NULL,
    status               TEXT NOT NULL,
    status_sequence      BIGINT,
    agent_key            TEXT,
    agent_version_id     TEXT,
    end_reason           TEXT,
    answered_by          TEXT,
    duration_seconds     BIGINT,
    metadata             TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    started_at           BIGINT,
    ended_at             BIGINT
);
CREATE INDEX calls_tenant_created ON calls (tenant_id, created_at);
CREATE INDEX calls_tenant_status ON calls (tenant_id, status);

CREATE TABLE idempotency_keys (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    key             TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('in_progress', 'completed')),
    response_status BIGINT,
    response_body   TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
