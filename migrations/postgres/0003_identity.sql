-- Identities (DESIGN §3.8): tenants, users, custom roles, refresh token families and API keys.
-- Secrets are stored only as digests: argon2 PHC strings for passwords, SHA-256 for tokens and
-- keys. Scopes are space-separated wire names (switchyard_types::ScopeSet's Display). The jobs
-- table keeps no foreign key to tenants: jobs may name a tenant that is not (yet) registered.
CREATE TABLE tenants (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tenants (id, name) VALUES ('default', 'Default') ON CONFLICT (id) DO NOTHING;

CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    tenant_id     text        NOT NULL REFERENCES tenants (id),
    -- Lower-cased by callers; unique across tenants because log-in names no tenant.
    email         text        NOT NULL UNIQUE,
    password_hash text        NOT NULL,
    role          text        NOT NULL,
    disabled      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- Listing a tenant's users, by email.
CREATE INDEX users_tenant ON users (tenant_id, email);

-- Custom roles only; built-in roles live in code.
CREATE TABLE roles (
    tenant_id text NOT NULL REFERENCES tenants (id),
    name      text NOT NULL,
    scopes    text NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- Every refresh token rotated from one log-in shares a family; reuse revokes the family whole.
CREATE TABLE refresh_families (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id),
    tenant_id  text        NOT NULL REFERENCES tenants (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX refresh_families_user ON refresh_families (user_id);

CREATE TABLE refresh_tokens (
    -- SHA-256 of the token.
    hash       bytea       PRIMARY KEY CHECK (length(hash) = 32),
    family_id  uuid        NOT NULL REFERENCES refresh_families (id),
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    -- Set by the first rotation; a later presentation is a replay once the grace has passed.
    rotated_at timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE api_keys (
    id          uuid        PRIMARY KEY,
    -- Insertion order: breaks ties between keys created at the same instant.
    seq         bigint      GENERATED ALWAYS AS IDENTITY,
    tenant_id   text        NOT NULL REFERENCES tenants (id),
    name        text        NOT NULL,
    scopes      text        NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz,
    -- SHA-256 of the key's secret part.
    secret_hash bytea       NOT NULL CHECK (length(secret_hash) = 32)
);
-- A name is unique among the tenant's live keys; a revoked key's name may be reused.
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (tenant_id, name) WHERE revoked_at IS NULL;
-- Listing a tenant's keys, newest first.
CREATE INDEX api_keys_tenant_recent ON api_keys (tenant_id, created_at DESC, seq DESC);
