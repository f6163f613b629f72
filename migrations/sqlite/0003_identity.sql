-- Identities (embedded SQLite); see the PostgreSQL migration of the same number. Instants are
-- integer milliseconds since the Unix epoch, ids are UUID text, digests are 32-byte blobs.
CREATE TABLE tenants (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO tenants (id, name, created_at)
VALUES ('default', 'Default', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
ON CONFLICT (id) DO NOTHING;

CREATE TABLE users (
    id            TEXT    PRIMARY KEY,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);
CREATE INDEX users_tenant ON users (tenant_id, email);

CREATE TABLE roles (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name      TEXT NOT NULL,
    scopes    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE refresh_families (
    id         TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL REFERENCES users (id),
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX refresh_families_user ON refresh_families (user_id);

CREATE TABLE refresh_tokens (
    hash       BLOB    PRIMARY KEY CHECK (length(hash) = 32),
    family_id  TEXT    NOT NULL REFERENCES refresh_families (id),
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    rotated_at INTEGER
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE api_keys (
    id          TEXT    PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    name        TEXT    NOT NULL,
    scopes      TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER,
    secret_hash BLOB    NOT NULL CHECK (length(secret_hash) = 32)
);
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (tenant_id, name) WHERE revoked_at IS NULL;
CREATE INDEX api_keys_tenant_recent ON api_keys (tenant_id, created_at DESC);
