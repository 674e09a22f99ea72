-- Outbound campaigns (issue 16): a campaign, its contacts and every attempt of each contact.
-- The dialer of every node claims a pacing slot of a running campaign with a conditional
-- UPDATE of `campaigns.next_dial_at` and, in the same transaction, one due contact; the
-- attempt row carries the idempotency key of its placement, so an attempt claimed again
-- after a crash finds the call it placed instead of dialing again.

CREATE TABLE campaigns (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    name               TEXT NOT NULL,
    agent_key          TEXT,
    agent_version_id   TEXT,
    from_number        TEXT,
    machine_detection  TEXT,
    calling_windows    TEXT,
    calls_per_minute   BIGINT NOT NULL,
    max_concurrent     BIGINT NOT NULL,
    retry              TEXT NOT NULL,
    status             TEXT NOT NULL,
    next_dial_at       BIGINT NOT NULL,
    contacts_total     BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    completed_at       BIGINT,
    -- Why the dialer paused it (a placement that cannot succeed as configured); cleared on resume.
    paused_reason      TEXT
);
CREATE INDEX campaigns_tenant ON campaigns (tenant_id, created_at);
CREATE INDEX campaigns_status ON campaigns (status);

CREATE TABLE campaign_contacts (
    id               TEXT PRIMARY KEY,
    campaign_id      TEXT NOT NULL REFERENCES campaigns (id),
    tenant_id        TEXT NOT NULL,
    position         BIGINT NOT NULL,
    phone            TEXT NOT NULL,
    variables        TEXT NOT NULL,
    external_id      TEXT,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    dialed           BIGINT NOT NULL,
    last_outcome     TEXT,
    skip_rule        TEXT,
    next_attempt_at  BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX campaign_contacts_due ON campaign_contacts (campaign_id, state, next_attempt_at, position);

CREATE TABLE campaign_attempts (
    id               TEXT PRIMARY KEY,
    campaign_id      TEXT NOT NULL REFERENCES campaigns (id),
    contact_id       TEXT NOT NULL REFERENCES campaign_contacts (id),
    tenant_id        TEXT NOT NULL,
    attempt          BIGINT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    state            TEXT NOT NULL,
    call_id          TEXT,
    outcome          TEXT,
    detail           TEXT,
    lease_token      TEXT,
    lease_until      BIGINT,
    started_at       BIGINT NOT NULL,
    settled_at       BIGINT,
    next_attempt_at  BIGINT,
    UNIQUE (contact_id, attempt)
);
CREATE INDEX campaign_attempts_campaign ON campaign_attempts (campaign_id, state, started_at);
CREATE INDEX campaign_attempts_state ON campaign_attempts (state, lease_until);
CREATE INDEX campaign_attempts_call ON campaign_attempts (call_id);
