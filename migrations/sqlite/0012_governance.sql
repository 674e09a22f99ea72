-- Governance (DESIGN §6), first half: named admin identities with roles, per-tenant
-- governance settings (two-person approval), launch records and their approvals, and the
-- pre-dial policy of outbound calls —
-- the do-not-call list, dial policies (calling windows, a daily attempt limit) per tenant
-- or route, the per-number daily attempt counters, and the decision taken for every call.

-- An admin identity: a named admin key (stored as its SHA-256 like tenant keys, shown once)
-- with roles (`admin`, `approver`, `auditor`, comma-separated). Names are never reused: the
-- audit log names identities.
-- An agent version's author is the identity on its `agent_version.create` audit row
-- (written in the same transaction as the version): found by target.
CREATE INDEX audit_log_target ON audit_log (target_type, target_id);

CREATE TABLE admin_identities (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    roles      TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- A tenant's governance settings (no row: the defaults).
CREATE TABLE tenant_governance (
    tenant_id           TEXT PRIMARY KEY NOT NULL REFERENCES tenants (id),
    two_person_approval BOOLEAN NOT NULL,
    updated_at          BIGINT NOT NULL
);

-- The do-not-call list: `source` is `api`, `import` or `opt_out` (then `call_id` is the call
-- in which the caller asked).
CREATE TABLE dnc_numbers (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    number     TEXT NOT NULL,
    source     TEXT NOT NULL,
    reason     TEXT,
    call_id    TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, number)
);

-- Dial policies: `scope` is `tenant` (the tenant's default) or a route id (that route's,
-- overriding the tenant's field by field). `calling_hours` is a business-hours document
-- (zone and windows); NULL means no window.
CREATE TABLE dial_policies (
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    scope               TEXT NOT NULL,
    calling_hours       TEXT,
    daily_attempt_limit BIGINT,
    updated_at          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, scope)
);

-- Dial attempts per callee and local day (the callee's zone, else UTC), counted by one
-- conditional upsert so concurrent placements never exceed the limit.
CREATE TABLE dial_attempts (
    tenant_id TEXT NOT NULL,
    number    TEXT NOT NULL,
    day       TEXT NOT NULL,
    attempts  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, number, day)
);

-- The pre-dial decision of an outbound call: allowed, or refused by `rule`
-- (`do_not_call`, `calling_window`, `attempt_limit`), with every check's detail.
CREATE TABLE predial_decisions (
    call_id    TEXT PRIMARY KEY NOT NULL,
    tenant_id  TEXT NOT NULL,
    to_number  TEXT NOT NULL,
    allowed    BOOLEAN NOT NULL,
    rule       TEXT,
    checks     TEXT NOT NULL,
    decided_at BIGINT NOT NULL
);
CREATE INDEX predial_decisions_tenant ON predial_decisions (tenant_id, decided_at);

-- A tenant's launch record: its owner, rollback path and the roles whose approval the launch
-- needs (comma-separated).
CREATE TABLE launch_records (
    tenant_id      TEXT PRIMARY KEY NOT NULL REFERENCES tenants (id),
    owner          TEXT NOT NULL,
    rollback_path  TEXT NOT NULL,
    required_roles TEXT NOT NULL,
    updated_by     TEXT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- Launch approvals, all kept: who approved in which role, with a comment, and the launch's
-- material state they approved (`material`, JSON: the record, the routes, the routed agents'
-- newest versions); a later change to any of it invalidates the approval.
CREATE TABLE launch_approvals (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    identity    TEXT NOT NULL,
    role        TEXT NOT NULL,
    comment     TEXT NOT NULL,
    material    TEXT NOT NULL,
    approved_at BIGINT NOT NULL
);
CREATE INDEX launch_approvals_tenant ON launch_approvals (tenant_id, id);
