//! The notifier (DESIGN §3.6): delivers the notifications the store writes with every event of
//! a deployment, to the tenant's webhooks or, when it has none, to an outbox directory.
//!
//! Every replica runs one ([`Notifier::run`]). Each pass claims the due notifications (the
//! store leases them, so replicas never take the same one) and delivers them, one target
//! (webhook, or a tenant's outbox) at a time in event order, targets side by side.
//!
//! - **Webhook**: `POST` of the JSON body ([`body`]) with `Content-Type: application/json`,
//!   `X-Switchyard-Event` (`deployment.state_changed` or `deployment.gate_failed`),
//!   `X-Switchyard-Delivery` (the notification id) and `X-Switchyard-Signature:
//!   t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the webhook's secret>`
//!   ([`signature`]). A 2xx answer within the timeout (10 s) delivers it; anything else is a
//!   failed attempt, retried after an exponential, jittered backoff ([`retry_delay`]: 1 s
//!   doubling to 10 min) until the 12th attempt fails, when it is given up. Redirects are not
//!   followed.
//! - **Outbox**: the same JSON is written to `<outbox>/<tenant>/<event seq, 20 digits>-<id>.json`
//!   atomically (a temporary file in the same directory, synced, then renamed).
//!
//! Deliveries are **at least once**: a replica that dies between sending and recording sends
//! again after the lease; receivers dedupe by `X-Switchyard-Delivery` (the body's `id`).
//! Order is kept within a pass, not across retries: order by `event.seq`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use hmac::{Hmac, Mac as _};
use rand::Rng as _;
use sha2::Sha256;
use switchyard_store::NotificationStore;
use switchyard_types::{DueNotification, Error, Result, WebhookId, WebhookTarget};
use tokio_util::sync::CancellationToken;

/// The notifier's timings and limits.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// Where notifications of tenants without webhooks are written.
    pub outbox_dir: PathBuf,
    /// How often due notifications are looked for.
    pub tick: Duration,
    /// How long a claim holds a notification: another replica takes it after that.
    pub lease: Duration,
    /// The most notifications one pass claims.
    pub batch: u32,
    /// How long a webhook may take to answer.
    pub timeout: Duration,
    /// Attempts before a notification is given up.
    pub max_attempts: u32,
    /// The delay before the first retry; it doubles with every attempt.
    pub first_retry: Duration,
    /// The longest delay between two attempts.
    pub max_retry: Duration,
    /// Targets delivered to at once.
    pub concurrency: usize,
}

impl NotifierConfig {
    /// The defaults, writing the outbox to `outbox_dir`.
    pub fn new(outbox_dir: PathBuf) -> Self {
        NotifierConfig {
            outbox_dir,
            tick: Duration::from_millis(500),
            lease: Duration::from_secs(30),
            batch: 100,
            timeout: Duration::from_secs(10),
            max_attempts: 12,
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(600),
            concurrency: 16,
        }
    }
}

/// How long a shutdown lets the pass in flight finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The most of a failed answer's body kept with its error.
const ERROR_BODY_BYTES: usize = 256;

/// Delivers notifications; see the module documentation.
#[derive(Clone)]
pub struct Notifier {
    store: Arc<dyn NotificationStore>,
    http: reqwest::Client,
    config: Arc<NotifierConfig>,
}

impl Notifier {
    /// A notifier over `store`.
    pub fn new(store: Arc<dyn NotificationStore>, config: NotifierConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchyard-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(format!("cannot build the webhook client: {e}")))?;
        Ok(Notifier {
            store,
            http,
            config: Arc::new(config),
        })
    }

    /// Delivers due notifications every tick until `shutdown` fires (the pass in flight then
    /// gets a few seconds to finish; what it leaves is delivered after its lease).
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let pass = self.deliver_due();
            tokio::pin!(pass);
            let result = tokio::select! {
                result = &mut pass => result,
                () = shutdown.cancelled() => {
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, pass).await;
                    return;
                }
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "notification pass failed");
            }
        }
    }

    /// One pass: claims the due notifications and delivers them. Returns how many it claimed.
    pub async fn deliver_due(&self) -> Result<usize> {
        let due = self
            .store
            .due_notifications(self.config.batch, self.config.lease)
            .await?;
        let claimed = due.len();
        // One target at a time in event order (the store returns them so), targets at once.
        let mut groups: BTreeMap<(String, Option<WebhookId>), Vec<DueNotification>> =
            BTreeMap::new();
        for n in due {
            let key = (
                n.tenant.as_str().to_owned(),
                n.webhook.as_ref().map(|w| w.id),
            );
            groups.entry(key).or_default().push(n);
        }
        futures::stream::iter(groups.into_values())
            .for_each_concurrent(self.config.concurrency, |group| self.deliver_group(group))
            .await;
        Ok(claimed)
    }

    /// Delivers one target's notifications in order. After a failure the rest wait with it
    /// (they would most likely fail too, each taking up to the timeout), and what the lease
    /// leaves no time for is left for the next pass.
    async fn deliver_group(&self, group: Vec<DueNotification>) {
        let started = Instant::now();
        let budget = self.config.lease / 2;
        let mut blocked: Option<String> = None;
        for n in group {
            if let Some(why) = &blocked {
                let delay = retry_delay(n.attempts, &self.config);
                self.record_failure(&n, why, Some(delay)).await;
                continue;
            }
            if started.elapsed() > budget {
                let why = "deferred: the delivery pass ran out of time";
                self.record_failure(&n, why, Some(Duration::ZERO)).await;
                continue;
            }
            match self.attempt(&n).await {
                Ok(()) => {
                    if let Err(e) = self.store.notification_delivered(n.id).await {
                        tracing::warn!(notification = n.id, error = %e, "cannot record a delivery");
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        notification = n.id,
                        webhook = ?n.webhook.as_ref().map(|w| w.id),
                        tenant = %n.tenant,
                        attempt = n.attempts,
                        %error,
                        "notification delivery failed"
                    );
                    let retry = (n.attempts < self.config.max_attempts)
                        .then(|| retry_delay(n.attempts, &self.config));
                    if retry.is_none() {
                        tracing::warn!(
                            notification = n.id,
                            attempts = n.attempts,
                            "notification given up"
                        );
                    }
                    self.record_failure(&n, &error, retry).await;
                    blocked = Some(format!(
                        "deferred: notification {} to the same target failed first ({error})",
                        n.id
                    ));
                }
            }
        }
    }

    async fn record_failure(&self, n: &DueNotification, error: &str, retry: Option<Duration>) {
        let error: String = error.chars().take(1024).collect();
        if let Err(e) = self.store.notification_failed(n.id, &error, retry).await {
            tracing::warn!(notification = n.id, error = %e, "cannot record a failed delivery");
        }
    }

    /// One attempt: the POST, or the outbox file. The error says why it failed.
    async fn attempt(&self, n: &DueNotification) -> std::result::Result<(), String> {
        let body = serde_json::to_vec(&body(n)).map_err(|e| format!("cannot encode: {e}"))?;
        match &n.webhook {
            Some(hook) => self.post(n, hook, body).await,
            None => write_outbox(&self.config.outbox_dir, n, &body)
                .await
                .map_err(|e| format!("cannot write the outbox file: {e}")),
        }
    }

    async fn post(
        &self,
        n: &DueNotification,
        hook: &WebhookTarget,
        body: Vec<u8>,
    ) -> std::result::Result<(), String> {
        let t = chrono::Utc::now().timestamp();
        let response = self
            .http
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Switchyard-Event", event_type(&n.event.kind))
            .header("X-Switchyard-Delivery", n.id.to_string())
            .header("X-Switchyard-Signature", signature(&hook.secret, t, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| describe(&e, self.config.timeout))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let mut said = Vec::new();
        let mut response = response;
        while said.len() < ERROR_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => said.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        said.truncate(ERROR_BODY_BYTES);
        let said = String::from_utf8_lossy(&said);
        let said = said.trim();
        Err(if said.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {said}")
        })
    }
}

/// `deployment.state_changed` or `deployment.gate_failed`, from an event's kind.
pub fn event_type(kind: &str) -> String {
    format!("deployment.{kind}")
}

/// The JSON a notification carries, to a webhook and to the outbox alike.
pub fn body(n: &DueNotification) -> serde_json::Value {
    let e = &n.event;
    serde_json::json!({
        "id": n.id.to_string(),
        "type": event_type(&e.kind),
        "tenant": n.tenant.as_str(),
        "event": {
            "seq": e.seq,
            "kind": e.kind,
            "state": e.state,
            "from": e.from,
            "message": e.message,
            "at": e.at,
        },
        "deployment": n.deployment,
    })
}

/// The `X-Switchyard-Signature` value: `t=<timestamp>,v1=<lowercase hex HMAC-SHA256 of
/// "<timestamp>.<body>" keyed by secret>`. Receivers recompute `v1` and compare in constant
/// time, and reject old timestamps (replays).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let signed = hmac_hex(
        secret.as_bytes(),
        &[format!("{timestamp}.").as_bytes(), body],
    );
    format!("t={timestamp},v1={signed}")
}

/// Lowercase hex HMAC-SHA256 of the concatenated `parts`, keyed by `key`.
fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    hex(&mac.finalize().into_bytes())
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]])
        .map(char::from)
        .collect()
}

/// The delay after `attempts` failed attempts: `first_retry` doubled with every attempt, at
/// most `max_retry`, jittered down by up to half (so retries of many notifications spread out).
pub fn retry_delay(attempts: u32, config: &NotifierConfig) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    let full = config
        .first_retry
        .saturating_mul(1 << doublings)
        .min(config.max_retry);
    full.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// Where the outbox file of `n` goes: `<dir>/<tenant>/<event seq, 20 digits>-<id>.json`, so
/// a directory listing sorts by event.
pub fn outbox_path(dir: &Path, n: &DueNotification) -> PathBuf {
    dir.join(n.tenant.as_str())
        .join(format!("{:020}-{}.json", n.event.seq, n.id))
}

/// Writes the outbox file atomically: a temporary file in the same directory, synced, renamed
/// into place, and the directory synced, so a reader (or a crash) sees all of it or none.
async fn write_outbox(dir: &Path, n: &DueNotification, body: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let path = outbox_path(dir, n);
    let parent = path.parent().unwrap_or(dir).to_owned();
    tokio::fs::create_dir_all(&parent).await?;
    let name = path.file_name().map(|f| f.to_string_lossy().into_owned());
    let tmp = parent.join(format!(".{}.tmp", name.unwrap_or_default()));
    let mut file = tokio::fs::File::create(&tmp).await?;
    file.write_all(body).await?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&tmp, &path).await?;
    #[cfg(unix)]
    tokio::fs::File::open(&parent).await?.sync_all().await?;
    Ok(())
}

/// A transport error for the record: what failed, without the URL (it may carry credentials).
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {} s", timeout.as_secs_f64());
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_types::{DeploymentEvent, DeploymentId, DeploymentSnapshot, DeploymentState};

    fn due(webhook: bool) -> DueNotification {
        let id = DeploymentId::new();
        DueNotification {
            id: 42,
            tenant: switchyard_types::TenantId::default_tenant(),
            attempts: 1,
            event: DeploymentEvent {
                seq: 7,
                deployment: id,
                tenant: switchyard_types::TenantId::default_tenant(),
                kind: "gate_failed".to_owned(),
                state: DeploymentState::RollingBack,
                from: None,
                message: "failure_rate 50.0% > 5.0%".to_owned(),
                at: chrono::Utc::now(),
            },
            deployment: DeploymentSnapshot {
                id,
                service: "api".to_owned(),
                version: "2.0.0".to_owned(),
                state: DeploymentState::RollingBack,
                environment: "production".to_owned(),
                staging_environment: "staging".to_owned(),
                previous_version: Some("1.0.0".to_owned()),
                rollback_version: Some("1.0.0".to_owned()),
                reason: Some("guard failed".to_owned()),
            },
            webhook: webhook.then(|| WebhookTarget {
                id: WebhookId::new(),
                url: "http://127.0.0.1:9/hook".to_owned(),
                secret: "whsec_test".to_owned(),
            }),
        }
    }

    #[test]
    fn signatures_are_hmac_sha256_of_the_timestamp_and_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            hmac_hex(b"Jefe", &[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let body = br#"{"id":"1"}"#;
        assert_eq!(
            signature("k", 1_700_000_000, body),
            format!(
                "t=1700000000,v1={}",
                hmac_hex(b"k", &[b"1700000000.", body])
            )
        );
        assert_ne!(signature("a", 1, body), signature("b", 1, body));
        assert_ne!(signature("a", 1, body), signature("a", 2, body));
        assert_ne!(signature("a", 1, body), signature("a", 1, b"{}"));
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_ten_minutes() {
        let config = NotifierConfig::new(PathBuf::from("/nowhere"));
        for (attempts, full) in [(1, 1), (2, 2), (3, 4), (10, 512), (11, 600), (40, 600)] {
            for _ in 0..20 {
                let d = retry_delay(attempts, &config);
                let full = Duration::from_secs(full);
                assert!(d <= full && d >= full / 2, "{attempts}: {d:?}");
            }
        }
    }

    #[test]
    fn the_body_names_the_event_and_the_deployment() {
        let n = due(true);
        let b = body(&n);
        assert_eq!(b["id"], "42");
        assert_eq!(b["type"], "deployment.gate_failed");
        assert_eq!(b["tenant"], "default");
        assert_eq!(b["event"]["seq"], 7);
        assert_eq!(b["event"]["state"], "ROLLING_BACK");
        assert_eq!(b["event"]["from"], serde_json::Value::Null);
        assert_eq!(b["deployment"]["id"], n.deployment.id.to_string());
        assert_eq!(b["deployment"]["rollback_version"], "1.0.0");
        assert!(!b.to_string().contains("whsec_test"), "never the secret");
        assert_eq!(
            outbox_path(Path::new("/o"), &n),
            Path::new("/o/default/00000000000000000007-42.json")
        );
    }

    #[tokio::test]
    async fn outbox_files_are_written_whole() {
        let dir = std::env::temp_dir().join(format!("sy-outbox-{}", uuid::Uuid::now_v7()));
        let n = due(false);
        write_outbox(&dir, &n, b"{\"a\":1}").await.unwrap();
        let path = outbox_path(&dir, &n);
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        // Again (a retry after a lost record): replaced, still whole.
        write_outbox(&dir, &n, b"{\"a\":2}").await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":2}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
