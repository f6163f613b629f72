//! Webhooks and notifications on PostgreSQL, and the events' notifications written in the
//! deployment's transaction. Every instant is the database's `now()`; the claim skips rows
//! another replica holds (`FOR UPDATE SKIP LOCKED`), so no two replicas claim one notification.

use std::time::Duration;

use async_trait::async_trait;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use switchyard_types::{
    Deployment, DeploymentId, DeploymentState, DueNotification, Error, MAX_WEBHOOKS_PER_TENANT,
    Notification, NotificationState, Result, TenantId, Webhook, WebhookId,
};
use uuid::Uuid;

use crate::deployment_rows::Pg;
use crate::error::from_sqlx;
use crate::notification_rows::{
    DUE_COLUMNS, DueRow, NOTIFICATION_COLUMNS, NotificationRow, WEBHOOK_COLUMNS, WebhookRow,
    no_webhook, snapshot_json, too_many_webhooks,
};
use crate::notifications::NotificationStore;
use crate::postgres::PgStore;
use crate::rows::millis;

/// Appends an event of `d` and its notifications, in the caller's transaction: one per webhook
/// of the tenant, or one for the outbox (no webhook) when it has none.
pub(crate) async fn append_event(
    conn: &mut PgConnection,
    d: &Deployment,
    kind: &str,
    from: Option<DeploymentState>,
    message: &str,
) -> Result<()> {
    sqlx::query(
        "WITH e AS (
             INSERT INTO deployment_events (tenant_id, deployment_id, kind, state, from_state,
                                            message, at)
             VALUES ($1, $2, $3, $4, $5, $6, now())
             RETURNING seq, tenant_id
         )
         INSERT INTO notifications (tenant_id, event_seq, webhook_id, deployment, state, attempts,
                                    next_attempt_at, created_at)
         SELECT e.tenant_id, e.seq, w.id, $7, 0, 0, now(), now()
         FROM e LEFT JOIN webhooks w ON w.tenant_id = e.tenant_id",
    )
    .bind(d.tenant.as_str())
    .bind(d.id.0)
    .bind(kind)
    .bind(d.state.as_i16())
    .bind(from.map(DeploymentState::as_i16))
    .bind(message)
    .bind(snapshot_json(d))
    .execute(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    Ok(())
}

#[async_trait]
impl NotificationStore for PgStore {
    async fn create_webhook(&self, tenant: &TenantId, url: &str, secret: &str) -> Result<Webhook> {
        let mut tx = self.pool().begin().await.map_err(from_sqlx)?;
        // Serialises webhook creation per tenant, so the allowance holds; NO KEY UPDATE lets
        // foreign-key checks on the tenant (every insert of its rows) go on.
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE")
                .bind(tenant.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(from_sqlx)?;
        if found.is_none() {
            return Err(Error::not_found(format!("tenant {tenant}")));
        }
        let existing: i64 =
            sqlx::query_scalar("SELECT count(*) FROM webhooks WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(from_sqlx)?;
        if existing >= MAX_WEBHOOKS_PER_TENANT as i64 {
            return Err(too_many_webhooks());
        }
        let row: WebhookRow<Uuid, DateTime<Utc>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO webhooks (id, tenant_id, url, secret, created_at)
         VALUES ($1, $2, $3, $4, now())
         RETURNING {WEBHOOK_COLUMNS}"
        )))
        .bind(WebhookId::new().0)
        .bind(tenant.as_str())
        .bind(url)
        .bind(secret)
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        tx.commit().await.map_err(from_sqlx)?;
        row.decode::<Pg>()
    }

    async fn webhooks(&self, tenant: &TenantId) -> Result<Vec<Webhook>> {
        let rows: Vec<WebhookRow<Uuid, DateTime<Utc>>> = sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = $1 ORDER BY id"),
        ))
        .bind(tenant.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(|r| r.decode::<Pg>()).collect()
    }

    async fn delete_webhook(&self, tenant: &TenantId, id: WebhookId) -> Result<Webhook> {
        let row: Option<WebhookRow<Uuid, DateTime<Utc>>> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "DELETE FROM webhooks WHERE id = $1 AND tenant_id = $2 RETURNING {WEBHOOK_COLUMNS}"
            )))
            .bind(id.0)
            .bind(tenant.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(from_sqlx)?;
        row.ok_or_else(|| no_webhook(id))?.decode::<Pg>()
    }

    async fn due_notifications(&self, limit: u32, lease: Duration) -> Result<Vec<DueNotification>> {
        let rows: Vec<DueRow<Uuid, DateTime<Utc>, serde_json::Value>> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "WITH due AS (
                 SELECT id FROM notifications
                 WHERE state = $1 AND next_attempt_at <= now()
                 ORDER BY next_attempt_at, id
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED
             ), n AS (
                 UPDATE notifications c
                 SET attempts = c.attempts + 1,
                     next_attempt_at = now() + $3 * interval '1 millisecond'
                 FROM due WHERE c.id = due.id
                 RETURNING c.id, c.event_seq, c.webhook_id, c.deployment, c.attempts
             )
             SELECT {DUE_COLUMNS}
             FROM n JOIN deployment_events e ON e.seq = n.event_seq
                    LEFT JOIN webhooks w ON w.id = n.webhook_id
             ORDER BY e.seq, n.id"
            )))
            .bind(NotificationState::Pending.as_i16())
            .bind(i64::from(limit))
            .bind(millis(lease))
            .fetch_all(self.pool())
            .await
            .map_err(from_sqlx)?;
        rows.into_iter().map(|r| r.decode::<Pg>(0)).collect()
    }

    async fn notification_delivered(&self, id: i64) -> Result<()> {
        sqlx::query(
        "UPDATE notifications SET state = $2, delivered_at = now() WHERE id = $1 AND state = $3",
    )
    .bind(id)
    .bind(NotificationState::Delivered.as_i16())
    .bind(NotificationState::Pending.as_i16())
    .execute(self.pool())
    .await
    .map_err(from_sqlx)?;
        Ok(())
    }

    async fn notification_failed(
        &self,
        id: i64,
        error: &str,
        retry_after: Option<Duration>,
    ) -> Result<()> {
        let state = match retry_after {
            Some(_) => NotificationState::Pending,
            None => NotificationState::GivenUp,
        };
        sqlx::query(
            "UPDATE notifications SET
             state = $2, last_error = $3,
             next_attempt_at = CASE WHEN $4::bigint IS NULL THEN next_attempt_at
                                    ELSE now() + $4 * interval '1 millisecond' END
         WHERE id = $1 AND state = $5",
        )
        .bind(id)
        .bind(state.as_i16())
        .bind(error)
        .bind(retry_after.map(millis))
        .bind(NotificationState::Pending.as_i16())
        .execute(self.pool())
        .await
        .map_err(from_sqlx)?;
        Ok(())
    }

    async fn notifications(
        &self,
        tenant: &TenantId,
        id: DeploymentId,
    ) -> Result<Vec<Notification>> {
        let rows: Vec<NotificationRow<Uuid, DateTime<Utc>>> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {NOTIFICATION_COLUMNS}
             FROM notifications n JOIN deployment_events e ON e.seq = n.event_seq
                  LEFT JOIN webhooks w ON w.id = n.webhook_id
             WHERE n.tenant_id = $1 AND e.deployment_id = $2 AND e.tenant_id = $1
             ORDER BY e.seq, n.id"
            )))
            .bind(tenant.as_str())
            .bind(id.0)
            .fetch_all(self.pool())
            .await
            .map_err(from_sqlx)?;
        rows.into_iter().map(|r| r.decode::<Pg>()).collect()
    }
}
