-- The agent registry (embedded SQLite); see the PostgreSQL migration of the same number.
-- Instants are integer milliseconds since the Unix epoch, ids are UUID text.
CREATE TABLE agents (
    id                TEXT    PRIMARY KEY,
    tenant_id         TEXT    NOT NULL REFERENCES tenants (id),
    name              TEXT    NOT NULL,
    pool              TEXT    NOT NULL,
    labels            TEXT    NOT NULL DEFAULT '{}',
    status            INTEGER NOT NULL,
    capacity          INTEGER NOT NULL,
    running           INTEGER NOT NULL DEFAULT 0,
    version           TEXT    NOT NULL DEFAULT '',
    session_id        TEXT,
    last_heartbeat_at INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX agents_tenant_seen ON agents (tenant_id, last_heartbeat_at DESC);
