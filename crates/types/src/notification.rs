//! Notifications of deployments (DESIGN §3.6): every state change and gate failure of a
//! deployment is sent to each of its tenant's webhooks (signed, retried), or written to an
//! outbox directory when the tenant has none. A notification row is written in the transaction
//! of the event it carries and delivered after, so none is lost across restarts.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Deployment, DeploymentEvent, DeploymentId, DeploymentState, Error, TenantId};

/// The most webhooks one tenant may have.
pub const MAX_WEBHOOKS_PER_TENANT: usize = 20;

uuid_id!(
    /// A webhook's identity: a UUIDv7.
    WebhookId,
    "webhook"
);

/// Where a tenant's deployment notifications are sent. Its signing secret is never part of it:
/// only the notifier reads secrets ([`WebhookTarget`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Identity.
    pub id: WebhookId,
    /// The owning tenant.
    pub tenant: TenantId,
    /// The URL notifications are `POST`ed to (http or https).
    pub url: String,
    /// When it was created (database clock).
    pub created_at: DateTime<Utc>,
}

/// A webhook as the notifier needs it: where to send, and the secret to sign with.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    /// The webhook.
    pub id: WebhookId,
    /// Its URL.
    pub url: String,
    /// Its signing secret.
    pub secret: String,
}

impl fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("secret", &"***")
            .finish()
    }
}

upper_enum!(
    /// Where a notification's delivery is: `PENDING` (not yet delivered; retried with backoff)
    /// -> `DELIVERED`, or `GIVEN_UP` after its last attempt failed.
    NotificationState, "state" {
        /// Not delivered yet; due at its next attempt.
        Pending = "PENDING" => 0,
        /// Delivered: the webhook answered 2xx, or the outbox file was written.
        Delivered = "DELIVERED" => 1,
        /// Every attempt failed; no more are made.
        GivenUp = "GIVEN_UP" => 2,
    }
);

/// The deployment as it was when an event happened, as a notification carries it (stored with
/// the notification, so every attempt sends the same body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentSnapshot {
    /// Its id.
    pub id: DeploymentId,
    /// The service.
    pub service: String,
    /// The version.
    pub version: String,
    /// Its state after the event.
    pub state: DeploymentState,
    /// The target (production) environment.
    pub environment: String,
    /// The staging environment.
    pub staging_environment: String,
    /// The version production ran before it was promoted.
    pub previous_version: Option<String>,
    /// The version a rollback deploys.
    pub rollback_version: Option<String>,
    /// Why it was rolled back or failed.
    pub reason: Option<String>,
}

impl From<&Deployment> for DeploymentSnapshot {
    fn from(d: &Deployment) -> Self {
        DeploymentSnapshot {
            id: d.id,
            service: d.service.clone(),
            version: d.version.clone(),
            state: d.state,
            environment: d.environment.clone(),
            staging_environment: d.staging_environment.clone(),
            previous_version: d.previous_version.clone(),
            rollback_version: d.rollback_version.clone(),
            reason: d.reason.clone(),
        }
    }
}

/// A notification claimed for delivery ([`crate::Notification`]s are the status view).
#[derive(Debug, Clone, PartialEq)]
pub struct DueNotification {
    /// Its id: also the delivery id receivers dedupe by.
    pub id: i64,
    /// The owning tenant.
    pub tenant: TenantId,
    /// Attempts made, this one included.
    pub attempts: u32,
    /// The event it carries.
    pub event: DeploymentEvent,
    /// The deployment when the event happened.
    pub deployment: DeploymentSnapshot,
    /// The webhook to send it to; `None`: the outbox directory.
    pub webhook: Option<WebhookTarget>,
}

/// A notification's delivery status.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Its id (the `X-Switchyard-Delivery` header).
    pub id: i64,
    /// The webhook it goes to; `None`: the outbox directory.
    pub webhook: Option<WebhookId>,
    /// That webhook's URL.
    pub url: Option<String>,
    /// Where its delivery is.
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
    /// The event's kind: `state_changed` or `gate_failed`.
    pub event_kind: String,
    /// The deployment's state after the event.
    pub event_state: DeploymentState,
}
