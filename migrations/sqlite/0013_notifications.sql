-- Notifications of deployments (embedded SQLite); see the PostgreSQL migration of the same
-- number. Instants are integer milliseconds since the Unix epoch, ids are UUID text.
CREATE TABLE webhooks (
    id         TEXT    PRIMARY KEY,
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    url        TEXT    NOT NULL,
    secret     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX webhooks_by_tenant ON webhooks (tenant_id, id);

CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       TEXT    NOT NULL,
    event_seq       INTEGER NOT NULL REFERENCES deployment_events (seq),
    webhook_id      TEXT    REFERENCES webhooks (id) ON DELETE CASCADE,
    deployment      TEXT    NOT NULL,
    state           INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    delivered_at    INTEGER,
    created_at      INTEGER NOT NULL
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state = 0;
CREATE INDEX notifications_by_event ON notifications (event_seq);
CREATE INDEX notifications_by_webhook ON notifications (webhook_id) WHERE webhook_id IS NOT NULL;
