-- The edge's readiness signals, as every node's record (issue 14: cluster views). A signed
-- carrier webhook or a scrape of /metrics reaches one node; each node writes what it saw
-- (at most once a second per signal) and the readiness review reads every node's rows:
-- `signed_webhook` (subject: the tenant id) and `metrics_scrape` (subject: empty).

CREATE TABLE edge_signals (
    kind     TEXT NOT NULL,
    subject  TEXT NOT NULL,
    node_id  TEXT NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (kind, subject, node_id)
);
