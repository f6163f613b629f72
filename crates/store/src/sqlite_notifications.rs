//! Webhooks and notifications on SQLite, and the events' notifications written in the
//! deployment's transaction. Instants are this process's clock, in milliseconds; the one connection serialises every
//! transaction, so a claim reads and marks its rows in one.

use std::time::Duration;

use async_trait::async_trait;

use sqlx::SqliteConnection;
use switchyard_types::{
    Deployment, DeploymentId, DeploymentState, DueNotification, MAX_WEBHOOKS_PER_TENANT,
    Notification, NotificationState, Result, TenantId, Webhook, WebhookId,
};

use crate::deployment_rows::Lite;
use crate::error::from_sqlx;
use crate::identity_rows::missing;
use crate::notification_rows::{
    DUE_COLUMNS, DueRow, NOTIFICATION_COLUMNS, NotificationRow, WEBHOOK_COLUMNS, WebhookRow,
    no_webhook, snapshot_json, too_many_webhooks,
};
use crate::notifications::NotificationStore;
use crate::rows::millis;
use crate::sqlite::{SqliteStore, now_ms};

/// Appends an event of `d` and its notifications, in the caller's transaction: one per webhook
/// of the tenant, or one for the outbox (no webhook) when it has none.
pub(crate) async fn append_event(
    conn: &mut SqliteConnection,
    d: &Deployment,
    kind: &str,
    from: Option<DeploymentState>,
    message: &str,
    now: i64,
) -> Result<()> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO deployment_events (tenant_id, deployment_id, kind, state, from_state, message, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         RETURNING seq",
    )
    .bind(d.tenant.as_str())
    .bind(d.id.to_string())
    .bind(kind)
    .bind(d.state.as_i16())
    .bind(from.map(DeploymentState::as_i16))
    .bind(message)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    sqlx::query(
        "INSERT INTO notifications (tenant_id, event_seq, webhook_id, deployment, state, attempts,
                                    next_attempt_at, created_at)
         SELECT ?1, ?2, w.id, ?3, 0, 0, ?4, ?4
         FROM (SELECT 1) LEFT JOIN webhooks w ON w.tenant_id = ?1",
    )
    .bind(d.tenant.as_str())
    .bind(seq)
    .bind(snapshot_json(d).to_string())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    Ok(())
}

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn create_webhook(&self, tenant: &TenantId, url: &str, secret: &str) -> Result<Webhook> {
        let mut tx = self.pool.begin().await.map_err(from_sqlx)?;
        let existing: i64 =
            sqlx::query_scalar("SELECT count(*) FROM webhooks WHERE tenant_id = ?1")
                .bind(tenant.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(from_sqlx)?;
        if existing >= MAX_WEBHOOKS_PER_TENANT as i64 {
            return Err(too_many_webhooks());
        }
        let row: WebhookRow<String, i64> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO webhooks (id, tenant_id, url, secret, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         RETURNING {WEBHOOK_COLUMNS}"
        )))
        .bind(WebhookId::new().to_string())
        .bind(tenant.as_str())
        .bind(url)
        .bind(secret)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await
        .map_err(missing(format!("tenant {tenant}")))?;
        tx.commit().await.map_err(from_sqlx)?;
        row.decode::<Lite>()
    }

    async fn webhooks(&self, tenant: &TenantId) -> Result<Vec<Webhook>> {
        let rows: Vec<WebhookRow<String, i64>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = ?1 ORDER BY id"
        )))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(|r| r.decode::<Lite>()).collect()
    }

    async fn delete_webhook(&self, tenant: &TenantId, id: WebhookId) -> Result<Webhook> {
        let row: Option<WebhookRow<String, i64>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "DELETE FROM webhooks WHERE id = ?1 AND tenant_id = ?2 RETURNING {WEBHOOK_COLUMNS}"
        )))
        .bind(id.to_string())
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        row.ok_or_else(|| no_webhook(id))?.decode::<Lite>()
    }

    async fn due_notifications(&self, limit: u32, lease: Duration) -> Result<Vec<DueNotification>> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(from_sqlx)?;
        let rows: Vec<DueRow<String, i64, String>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DUE_COLUMNS}
         FROM notifications n JOIN deployment_events e ON e.seq = n.event_seq
              LEFT JOIN webhooks w ON w.id = n.webhook_id
         WHERE n.state = ?1 AND n.next_attempt_at <= ?2
         ORDER BY n.next_attempt_at, n.id
         LIMIT ?3"
        )))
        .bind(NotificationState::Pending.as_i16())
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = rows.iter().map(DueRow::id).collect();
        let ids = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".to_owned());
        sqlx::query(
            "UPDATE notifications SET attempts = attempts + 1, next_attempt_at = ?1
         WHERE id IN (SELECT value FROM json_each(?2))",
        )
        .bind(now + millis(lease))
        .bind(ids)
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        tx.commit().await.map_err(from_sqlx)?;
        let mut due = rows
            .into_iter()
            .map(|r| r.decode::<Lite>(1))
            .collect::<Result<Vec<_>>>()?;
        due.sort_by_key(|n| (n.event.seq, n.id));
        Ok(due)
    }

    async fn notification_delivered(&self, id: i64) -> Result<()> {
        sqlx::query(
            "UPDATE notifications SET state = ?2, delivered_at = ?3 WHERE id = ?1 AND state = ?4",
        )
        .bind(id)
        .bind(NotificationState::Delivered.as_i16())
        .bind(now_ms())
        .bind(NotificationState::Pending.as_i16())
        .execute(&self.pool)
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
             state = ?2, last_error = ?3,
             next_attempt_at = CASE WHEN ?4 IS NULL THEN next_attempt_at ELSE ?5 + ?4 END
         WHERE id = ?1 AND state = ?6",
        )
        .bind(id)
        .bind(state.as_i16())
        .bind(error)
        .bind(retry_after.map(millis))
        .bind(now_ms())
        .bind(NotificationState::Pending.as_i16())
        .execute(&self.pool)
        .await
        .map_err(from_sqlx)?;
        Ok(())
    }

    async fn notifications(
        &self,
        tenant: &TenantId,
        id: DeploymentId,
    ) -> Result<Vec<Notification>> {
        let rows: Vec<NotificationRow<String, i64>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {NOTIFICATION_COLUMNS}
         FROM notifications n JOIN deployment_events e ON e.seq = n.event_seq
              LEFT JOIN webhooks w ON w.id = n.webhook_id
         WHERE n.tenant_id = ?1 AND e.deployment_id = ?2 AND e.tenant_id = ?1
         ORDER BY e.seq, n.id"
        )))
        .bind(tenant.as_str())
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(|r| r.decode::<Lite>()).collect()
    }
}
