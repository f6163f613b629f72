-- Registration tokens (embedded SQLite); see the PostgreSQL migration of the same number.
-- Instants are integer milliseconds since the Unix epoch, ids are UUID text, digests are 32-byte
-- blobs; `rowid` breaks ties between tokens created in the same millisecond.
CREATE TABLE registration_tokens (
    id         TEXT    PRIMARY KEY,
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    pool       TEXT    NOT NULL,
    digest     BLOB    NOT NULL CHECK (length(digest) = 32),
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    agent_id   TEXT,
    revoked_at INTEGER
);
CREATE INDEX registration_tokens_tenant_recent ON registration_tokens (tenant_id, created_at DESC);
