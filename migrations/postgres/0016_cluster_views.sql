-- Cluster views (issue 14 §3): the routing diagnostics (inbound calls that were not routed
-- or were refused) and the auth-transport failures (Twilio signatures that did not verify,
-- refused stream tokens) of every node, so any node's admin API shows the whole cluster.
-- Written off the request path by each node's writer task, with the node's id; bounded by
-- age and count by each node's pruner (`actors::views`).

CREATE TABLE routing_diagnostics (
    id           TEXT PRIMARY KEY,
    node_id      TEXT NOT NULL,
    at           BIGINT NOT NULL,
    account_sid  TEXT NOT NULL,
    call_sid     TEXT NOT NULL,
    from_number  TEXT NOT NULL,
    to_number    TEXT NOT NULL,
    reason       TEXT NOT NULL
);
CREATE INDEX routing_diagnostics_at ON routing_diagnostics (at);

-- `kind` is `signature` (with `route`, and the claimed `account_sid` when it looks like
-- one) or `stream_token` (with `reason`).
CREATE TABLE auth_transport_failures (
    id           TEXT PRIMARY KEY,
    node_id      TEXT NOT NULL,
    at           BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    route        TEXT,
    account_sid  TEXT,
    reason       TEXT
);
CREATE INDEX auth_transport_failures_at ON auth_transport_failures (at);
