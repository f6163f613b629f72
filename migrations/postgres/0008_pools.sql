-- Operators' settings of agent pools: bounds for the agent count and an optional pinned target.
-- A pool exists as soon as an agent or a job names it; a row here only overrides the defaults.
CREATE TABLE pools (
    tenant_id     TEXT        NOT NULL REFERENCES tenants (id),
    name          TEXT        NOT NULL,
    min_agents    INTEGER     NOT NULL,
    max_agents    INTEGER     NOT NULL,
    target_agents INTEGER,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name),
    CHECK (0 <= min_agents AND min_agents <= max_agents),
    CHECK (target_agents IS NULL OR (min_agents <= target_agents AND target_agents <= max_agents))
);
