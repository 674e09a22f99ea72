-- The cluster-wide live-call registry (DESIGN §1 "Scale-out"). Each node mirrors its
-- in-memory registry of live calls into `live_calls` (one row per call, naming the node and
-- incarnation holding it) and appends every change to `live_call_events`, in one
-- transaction per coalescing window; `seq` orders the changes across the cluster (on
-- PostgreSQL the writers take one advisory lock, so commits follow `seq`). Every node's
-- feed reads the events after the last one it saw and fans them out to its SSE clients;
-- events older than the retention are pruned.

CREATE TABLE live_calls (
    call_id           TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    node_id           TEXT NOT NULL,
    node_started_at   BIGINT NOT NULL,
    call_sid          TEXT NOT NULL,
    stream_sid        TEXT,
    direction         TEXT NOT NULL,
    from_number       TEXT NOT NULL,
    to_number         TEXT NOT NULL,
    agent_key         TEXT,
    agent_version_id  TEXT,
    started_at        BIGINT NOT NULL,
    phase             TEXT NOT NULL,
    last_line_role    TEXT,
    last_line_text    TEXT,
    first_audio_ms    BIGINT,
    last_response_ms  BIGINT,
    last_activity_at  BIGINT NOT NULL
);
CREATE INDEX live_calls_tenant ON live_calls (tenant_id, started_at);
CREATE INDEX live_calls_node ON live_calls (node_id, node_started_at);

CREATE TABLE live_call_events (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    call_id       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    at            BIGINT NOT NULL
);
CREATE INDEX live_call_events_at ON live_call_events (at);
CREATE INDEX live_call_events_tenant ON live_call_events (tenant_id, seq);
