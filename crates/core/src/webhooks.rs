//! The tenant's webhooks and the delivery status of its deployments' notifications, on the
//! [`Deployments`] service (the [`crate::notify::Notifier`] delivers them).

use rand::RngCore as _;
use switchyard_types::{DeploymentId, Notification, Principal, Result, Webhook, WebhookId};

use crate::deployments::Deployments;
use crate::notify::hex;
use crate::validate::Violations;

/// A webhook just created, with its signing secret: the one time the secret is shown.
#[derive(Clone, PartialEq, Eq)]
pub struct CreatedWebhook {
    /// The webhook.
    pub webhook: Webhook,
    /// Its signing secret: the caller's, or `whsec_` and 64 hex digits (32 random bytes).
    pub secret: String,
}

impl std::fmt::Debug for CreatedWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedWebhook")
            .field("webhook", &self.webhook)
            .field("secret", &"***")
            .finish()
    }
}

/// The shortest secret a caller may choose.
pub const MIN_SECRET_CHARS: usize = 16;
/// The longest.
pub const MAX_SECRET_CHARS: usize = 256;
/// The longest webhook URL.
pub const MAX_URL_CHARS: usize = 2048;

/// A fresh signing secret: `whsec_` and 32 random bytes in hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", hex(&bytes))
}

/// Whether `url` may be a webhook: an absolute http(s) URL with a host, at most
/// [`MAX_URL_CHARS`] characters.
pub fn is_webhook_url(url: &str) -> bool {
    url.len() <= MAX_URL_CHARS
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
        && reqwest::Url::parse(url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

impl Deployments {
    /// Adds a webhook to the caller's tenant: every later event of its deployments is sent to
    /// it, signed with `secret` (generated when `None`). `InvalidArgument` for a URL that is not
    /// http(s) or too long, or a secret of fewer than 16 or more than 256 characters;
    /// `Conflict` when the tenant has [`switchyard_types::MAX_WEBHOOKS_PER_TENANT`] already.
    pub async fn create_webhook(
        &self,
        who: &Principal,
        url: String,
        secret: Option<String>,
    ) -> Result<CreatedWebhook> {
        let mut v = Violations::default();
        if !is_webhook_url(&url) {
            v.add(
                "url",
                format!("must be an http:// or https:// URL of at most {MAX_URL_CHARS} characters"),
            );
        }
        if let Some(secret) = &secret {
            let chars = secret.chars().count();
            if !(MIN_SECRET_CHARS..=MAX_SECRET_CHARS).contains(&chars)
                || secret.chars().any(char::is_control)
            {
                v.add(
                    "secret",
                    format!(
                        "must be {MIN_SECRET_CHARS}-{MAX_SECRET_CHARS} characters, none of them control characters"
                    ),
                );
            }
        }
        v.finish()?;
        let secret = secret.unwrap_or_else(new_secret);
        let webhook = self
            .notifications
            .create_webhook(&who.tenant, &url, &secret)
            .await?;
        tracing::info!(webhook = %webhook.id, by = %who.subject, "webhook created");
        Ok(CreatedWebhook { webhook, secret })
    }

    /// The caller's webhooks, oldest first, without their secrets.
    pub async fn webhooks(&self, who: &Principal) -> Result<Vec<Webhook>> {
        self.notifications.webhooks(&who.tenant).await
    }

    /// Deletes one of the caller's webhooks and its notifications; returns what it deleted.
    /// `NotFound` when absent or another tenant's.
    pub async fn delete_webhook(&self, who: &Principal, id: WebhookId) -> Result<Webhook> {
        let deleted = self.notifications.delete_webhook(&who.tenant, id).await?;
        tracing::info!(webhook = %id, by = %who.subject, "webhook deleted");
        Ok(deleted)
    }

    /// The delivery status of every notification of one of the caller's deployments, by
    /// event. `NotFound` when the deployment is absent or another tenant's.
    pub async fn notifications(
        &self,
        who: &Principal,
        id: DeploymentId,
    ) -> Result<Vec<Notification>> {
        self.get(who, id).await?;
        self.notifications.notifications(&who.tenant, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_urls_http() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("whsec_") && a.len() == 6 + 64, "{a}");
        assert!(
            a[6..]
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert!(is_webhook_url("https://hooks.example.com/switchyard?x=1"));
        assert!(is_webhook_url("http://127.0.0.1:9000/hook"));
        for bad in [
            "",
            "ftp://example.com/",
            "https://",
            "example.com/hook",
            "https://exa mple.com/",
            "javascript:alert(1)",
        ] {
            assert!(!is_webhook_url(bad), "{bad:?}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(!is_webhook_url(&long));
    }
}
