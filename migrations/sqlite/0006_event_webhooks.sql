-- Tenant event webhooks: the tenant's signing secret (sealed like the Twilio auth token),
-- its endpoint and event filter, and the outbox: events, their deliveries (leased by the
-- node sending them) and every delivery attempt.

ALTER TABLE tenants ADD COLUMN signing_secret_enc BLOB;
ALTER TABLE tenants ADD COLUMN signing_secret_hint TEXT;
ALTER TABLE tenants ADD COLUMN events_url TEXT;
-- JSON array of event names; NULL means every event.
ALTER TABLE tenants ADD COLUMN events_filter TEXT;

CREATE TABLE webhook_events (
    id         TEXT PRIMARY KEY NOT NULL,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    event      TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhook_events_tenant ON webhook_events (tenant_id, created_at);

-- attempts_base: attempts made before the last manual redelivery (the retry budget counts
-- from there). lease_until/lease_token: set while a node delivers; an expired lease is
-- claimed again.
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY NOT NULL,
    event_id         TEXT NOT NULL REFERENCES webhook_events (id),
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    url              TEXT NOT NULL,
    event            TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivering', 'delivered', 'failed')),
    attempts         BIGINT NOT NULL,
    attempts_base    BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,
    lease_token      TEXT,
    last_status_code BIGINT,
    last_error       TEXT,
    delivered_at     BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, created_at);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id),
    attempt     BIGINT NOT NULL,
    started_at  BIGINT NOT NULL,
    status_code BIGINT,
    error       TEXT,
    latency_ms  BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
