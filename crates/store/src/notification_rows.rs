//! The webhook and notification rows both adapters decode (each database's id, instant and JSON
//! types, see [`Dialect`]), and the errors they share.

use switchyard_types::{
    DeploymentSnapshot, DeploymentState, DueNotification, Error, MAX_WEBHOOKS_PER_TENANT,
    Notification, NotificationState, Result, Webhook, WebhookId, WebhookTarget,
};

use crate::deployment_rows::{Dialect, EventRow};
use crate::identity_rows::{corrupt, tenant_id};

fn state(n: i16) -> Result<DeploymentState> {
    DeploymentState::from_i16(n).ok_or_else(|| corrupt("deployment state"))
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// The columns of [`WebhookRow`].
pub(crate) const WEBHOOK_COLUMNS: &str = "id, tenant_id, url, created_at";

/// A `webhooks` row, without its secret.
#[derive(sqlx::FromRow)]
pub(crate) struct WebhookRow<I, T> {
    id: I,
    tenant_id: String,
    url: String,
    created_at: T,
}

impl<I, T> WebhookRow<I, T> {
    /// The webhook.
    pub(crate) fn decode<D: Dialect<Id = I, At = T>>(self) -> Result<Webhook> {
        Ok(Webhook {
            id: WebhookId(D::id(self.id)?),
            tenant: tenant_id(&self.tenant_id)?,
            url: self.url,
            created_at: D::at(self.created_at)?,
        })
    }
}

/// The columns of [`DueRow`], over `notifications n`, `deployment_events e` and
/// `webhooks w` (left-joined).
pub(crate) const DUE_COLUMNS: &str = "n.id, n.attempts, n.deployment, n.webhook_id, w.url, \
    w.secret, e.seq, e.tenant_id, e.deployment_id, e.kind, e.state, e.from_state, e.message, e.at";

/// A claimed notification with its event and webhook.
#[derive(sqlx::FromRow)]
pub(crate) struct DueRow<I, T, J> {
    id: i64,
    attempts: i32,
    deployment: J,
    webhook_id: Option<I>,
    url: Option<String>,
    secret: Option<String>,
    #[sqlx(flatten)]
    event: EventRow<I, T>,
}

impl<I, T, J> DueRow<I, T, J> {
    /// The notification's id.
    pub(crate) fn id(&self) -> i64 {
        self.id
    }

    /// The notification, its attempts counted `attempts_added` more than stored.
    pub(crate) fn decode<D: Dialect<Id = I, At = T, Json = J>>(
        self,
        attempts_added: i32,
    ) -> Result<DueNotification> {
        let event = self.event.decode::<D>()?;
        let deployment: DeploymentSnapshot =
            serde_json::from_value(D::json(self.deployment)?).map_err(|_| corrupt("deployment"))?;
        let webhook = match (self.webhook_id, self.url, self.secret) {
            (Some(id), Some(url), Some(secret)) => Some(WebhookTarget {
                id: WebhookId(D::id(id)?),
                url,
                secret,
            }),
            (None, _, _) => None,
            // The foreign key cascades deletes: a webhook id always has its row.
            (Some(_), _, _) => return Err(corrupt("notification webhook")),
        };
        Ok(DueNotification {
            id: self.id,
            tenant: event.tenant.clone(),
            attempts: count(self.attempts.saturating_add(attempts_added)),
            event,
            deployment,
            webhook,
        })
    }
}

/// The columns of [`NotificationRow`], over `notifications n`, `deployment_events e` and
/// `webhooks w` (left-joined).
pub(crate) const NOTIFICATION_COLUMNS: &str = "n.id, n.webhook_id, w.url, n.state, n.attempts, \
    n.last_error, n.next_attempt_at, n.delivered_at, e.seq AS event_seq, e.kind AS event_kind, \
    e.state AS event_state";

/// A notification's delivery status.
#[derive(sqlx::FromRow)]
pub(crate) struct NotificationRow<I, T> {
    id: i64,
    webhook_id: Option<I>,
    url: Option<String>,
    state: i16,
    attempts: i32,
    last_error: Option<String>,
    next_attempt_at: T,
    delivered_at: Option<T>,
    event_seq: i64,
    event_kind: String,
    event_state: i16,
}

impl<I, T> NotificationRow<I, T> {
    /// The status.
    pub(crate) fn decode<D: Dialect<Id = I, At = T>>(self) -> Result<Notification> {
        Ok(Notification {
            id: self.id,
            webhook: self.webhook_id.map(D::id).transpose()?.map(WebhookId),
            url: self.url,
            state: NotificationState::from_i16(self.state)
                .ok_or_else(|| corrupt("notification state"))?,
            attempts: count(self.attempts),
            last_error: self.last_error,
            next_attempt_at: D::at(self.next_attempt_at)?,
            delivered_at: self.delivered_at.map(D::at).transpose()?,
            event_seq: self.event_seq,
            event_kind: self.event_kind,
            event_state: state(self.event_state)?,
        })
    }
}

/// The refusal of a webhook beyond the tenant's allowance.
pub(crate) fn too_many_webhooks() -> Error {
    Error::conflict(format!(
        "a tenant has at most {MAX_WEBHOOKS_PER_TENANT} webhooks; delete one first"
    ))
}

/// A webhook that is not the tenant's (or does not exist).
pub(crate) fn no_webhook(id: WebhookId) -> Error {
    Error::not_found(format!("webhook {id}"))
}

/// The stored form of a deployment snapshot.
pub(crate) fn snapshot_json(d: &switchyard_types::Deployment) -> serde_json::Value {
    serde_json::to_value(DeploymentSnapshot::from(d)).unwrap_or(serde_json::Value::Null)
}
