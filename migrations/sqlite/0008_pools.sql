-- Operators' settings of agent pools; see the PostgreSQL migration of the same number.
CREATE TABLE pools (
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    name          TEXT    NOT NULL,
    min_agents    INTEGER NOT NULL,
    max_agents    INTEGER NOT NULL,
    target_agents INTEGER,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name),
    CHECK (0 <= min_agents AND min_agents <= max_agents),
    CHECK (target_agents IS NULL OR (min_agents <= target_agents AND target_agents <= max_agents))
);
