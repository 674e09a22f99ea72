-- Canary rollouts (DESIGN §6): one rollout policy per agent (its stable version, an optional
-- canary, the stage schedule, the guardrail thresholds and where the rollout stands), and
-- every decision taken on it (by an admin identity or by the system), kept with the
-- guardrail values, thresholds and sample sizes it was taken on.

-- state: stable_only (every call on stable), canarying (the current stage's percentage on
-- the canary), halted (paused or rolled back: every new call on stable), promoted (the
-- canary became stable). stages: JSON [{percent, min_evaluated_calls, min_seconds}].
-- revision increases with every change; a decision is written only over the revision it
-- was taken on (two nodes never both act on one state).
CREATE TABLE rollout_policies (
    agent_id          TEXT PRIMARY KEY NOT NULL REFERENCES agents (id),
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    stable_version_id TEXT NOT NULL REFERENCES agent_versions (id),
    canary_version_id TEXT REFERENCES agent_versions (id),
    stages            TEXT NOT NULL,
    auto_promote      BOOLEAN NOT NULL,
    salt              TEXT NOT NULL,
    guardrails        TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('stable_only', 'canarying', 'halted', 'promoted')),
    stage_index       BIGINT NOT NULL,
    stage_started_at  BIGINT,
    canary_started_at BIGINT,
    revision          BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX rollout_policies_tenant ON rollout_policies (tenant_id);
CREATE INDEX rollout_policies_state ON rollout_policies (state);

-- action: start, advance, pause, rollback, promote, auto_rollback, auto_advance,
-- auto_promote. actor: the admin identity, or 'system'. evidence: JSON of the guardrails
-- (value, threshold, samples, status) when the decision was taken.
CREATE TABLE rollout_decisions (
    id                TEXT PRIMARY KEY NOT NULL,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    agent_id          TEXT NOT NULL REFERENCES agents (id),
    action            TEXT NOT NULL,
    actor             TEXT NOT NULL,
    reason            TEXT NOT NULL,
    from_state        TEXT NOT NULL,
    to_state          TEXT NOT NULL,
    stable_version_id TEXT NOT NULL,
    canary_version_id TEXT,
    canary_percent    BIGINT NOT NULL,
    evidence          TEXT NOT NULL,
    created_at        BIGINT NOT NULL
);
CREATE INDEX rollout_decisions_agent ON rollout_decisions (tenant_id, agent_id, created_at);
