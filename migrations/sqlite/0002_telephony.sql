-- Telephony edge: phone routes, call-log extensions, status-callback events (deduplicated
-- by sequence number), the call timeline, and consumed stream-token nonces.

CREATE TABLE phone_routes (
    id                   TEXT PRIMARY KEY NOT NULL,
    tenant_id            TEXT NOT NULL REFERENCES tenants (id),
    number               TEXT NOT NULL UNIQUE,
    agent_key            TEXT NOT NULL,
    direction            TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound', 'both')),
    status               TEXT NOT NULL CHECK (status IN ('staged', 'live')),
    fallback_number      TEXT,
    fallback_message     TEXT,
    over_limit           TEXT NOT NULL CHECK (over_limit IN ('fallback', 'busy')),
    max_concurrent_calls BIGINT NOT NULL,
    test_callers         TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX phone_routes_tenant ON phone_routes (tenant_id, created_at);

ALTER TABLE calls ADD COLUMN account_sid TEXT;
ALTER TABLE calls ADD COLUMN stream_sid TEXT;
ALTER TABLE calls ADD COLUMN stream_status TEXT;
ALTER TABLE calls ADD COLUMN after_stream TEXT;
ALTER TABLE calls ADD COLUMN greeting TEXT;
ALTER TABLE calls ADD COLUMN org_id TEXT;
ALTER TABLE calls ADD COLUMN machine_detection TEXT;
ALTER TABLE calls ADD COLUMN error_code TEXT;
ALTER TABLE calls ADD COLUMN error_message TEXT;
CREATE INDEX calls_route_status ON calls (route_id, status);

-- call_id is NULL while a callback arrives before its call is recorded (an inbound
-- call's first events can overtake the voice webhook); it is attached when the call is.
CREATE TABLE call_status_events (
    call_sid        TEXT NOT NULL,
    sequence_number BIGINT NOT NULL,
    call_id         TEXT REFERENCES calls (id),
    account_sid     TEXT NOT NULL,
    status          TEXT NOT NULL,
    at              BIGINT NOT NULL,
    params          TEXT NOT NULL,
    PRIMARY KEY (call_sid, sequence_number)
);
CREATE INDEX call_status_events_call ON call_status_events (call_id, sequence_number);

CREATE TABLE call_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id   TEXT NOT NULL REFERENCES calls (id),
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX call_events_call ON call_events (call_id, id);

CREATE TABLE stream_token_nonces (
    nonce      TEXT PRIMARY KEY NOT NULL,
    call_id    TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX stream_token_nonces_expiry ON stream_token_nonces (expires_at);
