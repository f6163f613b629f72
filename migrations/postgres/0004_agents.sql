-- The agent registry: one row per agent name and tenant, rewritten on connect and heartbeat (a
-- narrow row, apart from the wide job rows). `session_id` names the agent's newest stream, so an
-- older stream of the same agent (half-open, or on another replica) learns it was replaced.
CREATE TABLE agents (
    id                UUID        PRIMARY KEY,
    tenant_id         TEXT        NOT NULL REFERENCES tenants (id),
    name              TEXT        NOT NULL,
    pool              TEXT        NOT NULL,
    labels            JSONB       NOT NULL DEFAULT '{}',
    status            SMALLINT    NOT NULL,
    capacity          INTEGER     NOT NULL,
    running           INTEGER     NOT NULL DEFAULT 0,
    version           TEXT        NOT NULL DEFAULT '',
    session_id        UUID,
    last_heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);
CREATE INDEX agents_tenant_seen ON agents (tenant_id, last_heartbeat_at DESC);
