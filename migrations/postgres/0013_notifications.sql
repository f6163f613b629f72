-- Notifications of deployments (DESIGN §3.6). A tenant's webhooks: each deployment event is
-- POSTed to every one of them, signed with its secret (HMAC-SHA256).
CREATE TABLE webhooks (
    id         uuid        PRIMARY KEY,
    tenant_id  text        NOT NULL REFERENCES tenants (id),
    url        text        NOT NULL,
    secret     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_by_tenant ON webhooks (tenant_id, id);

-- One row per event and webhook, or one per event with no webhook (webhook_id NULL: the outbox
-- directory), written in the transaction of the event and delivered after. `deployment` is the
-- deployment as the event left it, so every attempt sends the same body.
-- state: 0 pending, 1 delivered, 2 given up.
CREATE TABLE notifications (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       text        NOT NULL,
    event_seq       bigint      NOT NULL REFERENCES deployment_events (seq),
    webhook_id      uuid        REFERENCES webhooks (id) ON DELETE CASCADE,
    deployment      jsonb       NOT NULL,
    state           smallint    NOT NULL DEFAULT 0,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- The notifier's claim: only pending rows.
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state = 0;
-- A deployment's delivery status (joined through its events), and webhook deletion.
CREATE INDEX notifications_by_event ON notifications (event_seq);
CREATE INDEX notifications_by_webhook ON notifications (webhook_id) WHERE webhook_id IS NOT NULL;
