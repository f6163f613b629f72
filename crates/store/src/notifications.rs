//! Storage of the tenant's webhooks and of the notifications of its deployments' events (DESIGN
//! §3.6). The notifications themselves are written with each event, in the transaction of the
//! deployment's change ([`crate::DeploymentStore`]); this is where the notifier claims and
//! settles them. Scoped by tenant except the notifier's claim, which serves every tenant.

use std::time::Duration;

use async_trait::async_trait;
use switchyard_types::{
    DeploymentId, DueNotification, Notification, Result, TenantId, Webhook, WebhookId,
};

/// Webhooks and notifications; implemented by both databases.
#[async_trait]
pub trait NotificationStore: Send + Sync + 'static {
    /// Stores a webhook of the tenant with its signing secret (both validated by `core`).
    /// `NotFound` when the tenant does not exist; `Conflict` when it has
    /// [`switchyard_types::MAX_WEBHOOKS_PER_TENANT`] already (checked atomically).
    async fn create_webhook(&self, tenant: &TenantId, url: &str, secret: &str) -> Result<Webhook>;

    /// The tenant's webhooks, oldest first (never their secrets).
    async fn webhooks(&self, tenant: &TenantId) -> Result<Vec<Webhook>>;

    /// Deletes a webhook and its notifications, delivered or not; returns what it deleted.
    /// `NotFound` when absent or another tenant's.
    async fn delete_webhook(&self, tenant: &TenantId, id: WebhookId) -> Result<Webhook>;

    /// Claims up to `limit` pending notifications, of any tenant, whose next attempt is due
    /// (database clock): each one's attempts grow by one and its next attempt becomes due
    /// `lease` from now, so a claimer that dies leaves it to be claimed again then. Concurrent
    /// claimers (replicas) never claim the same one. Returned oldest event first, each with its
    /// event and, when it goes to a webhook, the webhook's URL and secret.
    async fn due_notifications(&self, limit: u32, lease: Duration) -> Result<Vec<DueNotification>>;

    /// Records a notification delivered. A no-op when it is no longer pending.
    async fn notification_delivered(&self, id: i64) -> Result<()>;

    /// Records a failed attempt and `error`: the next one is due `retry_after` from now, or,
    /// with `None`, no more are made (given up). A no-op when it is no longer pending.
    async fn notification_failed(
        &self,
        id: i64,
        error: &str,
        retry_after: Option<Duration>,
    ) -> Result<()>;

    /// The delivery status of every notification of the tenant's deployment `id`, by event,
    /// then by webhook.
    async fn notifications(&self, tenant: &TenantId, id: DeploymentId)
    -> Result<Vec<Notification>>;
}
