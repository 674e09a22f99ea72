-- Nodes and reconciliation (DESIGN §1 "Failure model", "Scale-out"). Every process records
-- itself in `nodes` and refreshes `heartbeat_at`; `draining` is set when it shuts down.
-- A call names the node that holds its work (`calls.node_id`: the node that admitted or
-- placed it, then the node its media stream runs on) and that node's incarnation
-- (`calls.node_started_at`, the `nodes.started_at` of the process). A node reconciles the
-- calls of its own earlier incarnations at start-up, and any node reconciles the calls of a
-- node whose heartbeat went stale; `leases` makes that one reconciler at a time.

CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    address       TEXT NOT NULL,
    version       TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL,
    draining      BOOLEAN NOT NULL
);

CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);

ALTER TABLE calls ADD COLUMN node_id TEXT;
ALTER TABLE calls ADD COLUMN node_started_at BIGINT;
CREATE INDEX calls_node ON calls (node_id, completed_at);
