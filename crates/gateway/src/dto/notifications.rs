//! Webhooks and the delivery status of deployment notifications as the API shows them
//! (DESIGN §3.6), with the body of `POST /api/dashboard/webhooks`. A webhook's secret is shown
//! once, when it is created.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_core::CreatedWebhook;
use switchyard_types::{DeploymentState, Notification, NotificationState, Webhook};
use utoipa::ToSchema;

use super::deployments::DeploymentStateSchema;

enum_schema!(
    /// The OpenAPI schema of [`NotificationState`].
    NotificationStateSchema for NotificationState,
    "NotificationState",
    "PENDING (retried with backoff until delivered) -> DELIVERED, or GIVEN_UP after the 12th failed attempt."
);

/// `POST /api/dashboard/webhooks`: a webhook every later deployment event of the tenant is
/// sent to.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookBody {
    /// Where notifications are POSTed: http:// or https://, at most 2048 characters.
    #[schema(example = "https://hooks.example.com/switchyard")]
    pub url: String,
    /// The signing secret (16-256 characters); the server generates one (`whsec_…`) when left
    /// out.
    pub secret: Option<String>,
}

/// A webhook: where the tenant's deployment notifications are POSTed. Never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct WebhookView {
    /// Its id (a UUIDv7).
    pub id: String,
    /// Where notifications are POSTed.
    pub url: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<Webhook> for WebhookView {
    fn from(w: Webhook) -> Self {
        WebhookView {
            id: w.id.to_string(),
            url: w.url,
            created_at: w.created_at,
        }
    }
}

/// A webhook just created, with its signing secret: the only time the secret is shown.
#[derive(Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CreatedWebhookView {
    /// Its id (a UUIDv7).
    pub id: String,
    /// Where notifications are POSTed.
    pub url: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The secret `X-Switchyard-Signature` is keyed by: `v1` is the lowercase hex
    /// HMAC-SHA256 of `"<t>.<raw body>"`.
    pub secret: String,
}

impl std::fmt::Debug for CreatedWebhookView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedWebhookView")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("secret", &"***")
            .finish_non_exhaustive()
    }
}

impl From<CreatedWebhook> for CreatedWebhookView {
    fn from(c: CreatedWebhook) -> Self {
        CreatedWebhookView {
            id: c.webhook.id.to_string(),
            url: c.webhook.url,
            created_at: c.webhook.created_at,
            secret: c.secret,
        }
    }
}

/// The delivery status of one notification: one event, to one webhook or to the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct NotificationView {
    /// Its id: the `X-Switchyard-Delivery` header and the body's `id`.
    pub id: String,
    /// The webhook it goes to; `null`: the outbox directory.
    pub webhook_id: Option<String>,
    /// That webhook's URL.
    pub url: Option<String>,
    /// Where its delivery is.
    #[schema(value_type = NotificationStateSchema)]
    pub state: NotificationState,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last failed attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due (while `PENDING`).
    pub next_attempt_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The event's position in the event log.
    pub event_seq: i64,
    /// `state_changed` or `gate_failed`.
    pub event_kind: String,
    /// The deployment's state after the event.
    #[schema(value_type = DeploymentStateSchema)]
    pub event_state: DeploymentState,
}

impl From<Notification> for NotificationView {
    fn from(n: Notification) -> Self {
        NotificationView {
            id: n.id.to_string(),
            webhook_id: n.webhook.map(|w| w.to_string()),
            url: n.url,
            state: n.state,
            attempts: n.attempts,
            last_error: n.last_error,
            next_attempt_at: n.next_attempt_at,
            delivered_at: n.delivered_at,
            event_seq: n.event_seq,
            event_kind: n.event_kind,
            event_state: n.event_state,
        }
    }
}
