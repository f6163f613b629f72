-- Registration tokens (DESIGN §3.5): one-time, expiring credentials an agent exchanges, through
-- `Enroll`, for its client certificate in a tenant and pool. Only the SHA-256 of the token's
-- secret is stored. Used, expired and revoked tokens are kept: the list is an audit trail.
CREATE TABLE registration_tokens (
    id         uuid        PRIMARY KEY,
    -- Insertion order: breaks ties between tokens created at the same instant.
    seq        bigint      GENERATED ALWAYS AS IDENTITY,
    tenant_id  text        NOT NULL REFERENCES tenants (id),
    pool       text        NOT NULL,
    -- SHA-256 of the token's secret part.
    digest     bytea       NOT NULL CHECK (length(digest) = 32),
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    -- Set once, by the enrollment that exchanged it, with the agent it enrolled.
    used_at    timestamptz,
    agent_id   uuid,
    revoked_at timestamptz
);
-- Listing a tenant's tokens, newest first.
CREATE INDEX registration_tokens_tenant_recent
    ON registration_tokens (tenant_id, created_at DESC, seq DESC);
