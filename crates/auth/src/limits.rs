//! Rate limits (issue 3, DESIGN §3.8): failed log-ins per (client address, email), and a
//! per-tenant request quota. Both count in fixed one-minute windows in the shared
//! [`Counters`] (Redis across replicas); when the shared counters do not answer, each replica
//! keeps counting in its own memory, so limits loosen (to one quota per replica) but never
//! vanish, and a Redis outage never turns into refused requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use switchyard_bus::local::LocalBus;
use switchyard_bus::{Counters, WindowCount};
use switchyard_types::{Error, ErrorKind, Result, TenantId};
use tokio_util::sync::CancellationToken;

/// The window both limits count in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// A `RateLimited` error telling the client when to retry (at least one second).
pub fn rate_limited(message: &str, retry_after: Duration) -> Error {
    let mut error = Error::new(ErrorKind::RateLimited, message);
    error.retry_after = Some(retry_after.max(Duration::from_secs(1)));
    error
}

/// Shared counters with an in-process fallback.
#[derive(Clone)]
struct Counting {
    shared: Arc<dyn Counters>,
    local: Arc<LocalBus>,
}

impl Counting {
    async fn add(&self, key: &str, by: u64) -> WindowCount {
        match self.shared.add(key, by, WINDOW).await {
            Ok(count) => count,
            Err(e) => {
                tracing::warn!(error = %e, "rate-limit counters unavailable; counting in this replica");
                self.local
                    .add(key, by, WINDOW)
                    .await
                    .unwrap_or(WindowCount {
                        count: 0,
                        resets_in: WINDOW,
                    })
            }
        }
    }
}

/// Failed log-ins per (client address, email): after `max_failures` in a window, every attempt
/// for that pair (right password or not) is refused until the window ends.
#[derive(Clone)]
pub struct LoginLimiter {
    counting: Counting,
    max_failures: u64,
}

impl LoginLimiter {
    /// A limiter allowing `max_failures` failed log-ins per window and pair.
    pub fn new(shared: Arc<dyn Counters>, max_failures: u64) -> Self {
        LoginLimiter {
            counting: Counting {
                shared,
                local: Arc::new(LocalBus::new()),
            },
            max_failures,
        }
    }

    /// The counter key: the email is hashed so addresses never sit in Redis in clear.
    fn key(client: &str, email: &str) -> String {
        let digest = Sha256::digest(email.as_bytes());
        let short: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        format!("login:{client}:{short}")
    }

    /// `RateLimited` when the pair has used up its failures in this window.
    pub async fn check(&self, client: &str, email: &str) -> Result<()> {
        let now = self.counting.add(&Self::key(client, email), 0).await;
        if now.count >= self.max_failures {
            return Err(rate_limited(
                "too many failed log-ins; try again later",
                now.resets_in,
            ));
        }
        Ok(())
    }

    /// Counts one failed log-in of the pair.
    pub async fn failed(&self, client: &str, email: &str) {
        self.counting.add(&Self::key(client, email), 1).await;
    }
}

/// A tenant's count, kept in this replica between flushes to the shared counters.
#[derive(Debug)]
struct Tally {
    /// Requests since the last flush.
    pending: u64,
    /// Requests being flushed now: counted until the shared total that includes them arrives.
    flushing: u64,
    /// The shared count at the last flush (every replica's requests).
    shared: u64,
    /// When the shared window ends.
    resets_at: Instant,
}

/// Requests per tenant per minute, across replicas. Checking costs one mutex and a hash look-up:
/// each replica counts locally and flushes its counts to the shared counters every
/// [`TenantQuota::FLUSH_EVERY`], learning the other replicas' counts in the same round trip. So
/// the quota can be overshot by what other replicas admit within one flush interval.
#[derive(Clone)]
pub struct TenantQuota {
    counting: Counting,
    per_minute: u64,
    tallies: Arc<Mutex<HashMap<TenantId, Tally>>>,
}

impl TenantQuota {
    /// How often counts are flushed to the shared counters.
    pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

    /// A quota of `per_minute` requests per tenant.
    pub fn new(shared: Arc<dyn Counters>, per_minute: u64) -> Self {
        TenantQuota {
            counting: Counting {
                shared,
                local: Arc::new(LocalBus::new()),
            },
            per_minute,
            tallies: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Admits one request of `tenant`, or `RateLimited` with the time until the window ends.
    pub fn admit(&self, tenant: &TenantId) -> Result<()> {
        let now = Instant::now();
        let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        let tally = tallies.entry(tenant.clone()).or_insert_with(|| Tally {
            pending: 0,
            flushing: 0,
            shared: 0,
            resets_at: now + WINDOW,
        });
        if now >= tally.resets_at {
            tally.shared = 0;
            tally.resets_at = now + WINDOW;
        }
        if tally.shared + tally.flushing + tally.pending >= self.per_minute {
            return Err(rate_limited(
                "the tenant's request quota is used up; try again later",
                tally.resets_at - now,
            ));
        }
        tally.pending += 1;
        Ok(())
    }

    /// Sends every tenant's pending count to the shared counters and learns their totals.
    pub async fn flush(&self) {
        let pending: Vec<(TenantId, u64)> = {
            let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
            // Tenants idle for a whole window are forgotten.
            let now = Instant::now();
            tallies.retain(|_, t| t.pending > 0 || now < t.resets_at);
            tallies
                .iter_mut()
                .map(|(tenant, t)| {
                    t.flushing = std::mem::take(&mut t.pending);
                    (tenant.clone(), t.flushing)
                })
                .collect()
        };
        for (tenant, by) in pending {
            let total = self.counting.add(&format!("tenant:{tenant}"), by).await;
            let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = tallies.get_mut(&tenant) {
                t.flushing = 0;
                t.shared = total.count;
                t.resets_at = Instant::now() + total.resets_in;
            }
        }
    }

    /// Flushes every [`Self::FLUSH_EVERY`] until `stop` is cancelled.
    pub async fn run_flusher(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Self::FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => self.flush().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[tokio::test]
    async fn the_eleventh_failure_is_refused_with_retry_after() {
        let limiter = LoginLimiter::new(Arc::new(LocalBus::new()), 10);
        for _ in 0..10 {
            limiter.check("10.0.0.1", "a@x.io").await.unwrap();
            limiter.failed("10.0.0.1", "a@x.io").await;
        }
        let err = limiter.check("10.0.0.1", "a@x.io").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimited);
        let retry = err.retry_after.unwrap();
        assert!(
            retry >= Duration::from_secs(1) && retry <= WINDOW,
            "{retry:?}"
        );
        // Another address, or another email, has its own allowance.
        limiter.check("10.0.0.2", "a@x.io").await.unwrap();
        limiter.check("10.0.0.1", "b@x.io").await.unwrap();
    }

    #[tokio::test]
    async fn a_tenant_quota_counts_across_replicas_through_shared_counters() {
        let shared: Arc<dyn Counters> = Arc::new(LocalBus::new());
        let (a, b) = (
            TenantQuota::new(shared.clone(), 10),
            TenantQuota::new(shared, 10),
        );
        let t = tenant("t1");
        for _ in 0..6 {
            a.admit(&t).unwrap();
        }
        a.flush().await;
        b.flush().await;
        // b has learned of a's six requests at its flush... once it has a tally to update.
        for _ in 0..4 {
            b.admit(&t).unwrap();
        }
        b.flush().await;
        let err = b.admit(&t).unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimited);
        assert!(a.admit(&tenant("t2")).is_ok(), "tenants are separate");
    }

    /// Shared counters whose answers wait until the test lets them through, like a slow Redis.
    struct Held {
        inner: LocalBus,
        gate: tokio::sync::Semaphore,
    }

    #[async_trait::async_trait]
    impl Counters for Held {
        async fn add(&self, key: &str, by: u64, window: Duration) -> Result<WindowCount> {
            let _pass = self.gate.acquire().await;
            self.inner.add(key, by, window).await
        }
    }

    #[tokio::test]
    async fn requests_being_flushed_still_count_against_the_quota() {
        let shared = Arc::new(Held {
            inner: LocalBus::new(),
            gate: tokio::sync::Semaphore::new(0),
        });
        let quota = TenantQuota::new(shared.clone(), 10);
        let t = tenant("t1");
        for _ in 0..10 {
            quota.admit(&t).unwrap();
        }
        let flushing = tokio::spawn({
            let quota = quota.clone();
            async move { quota.flush().await }
        });
        tokio::task::yield_now().await;
        let err = quota.admit(&t).unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimited, "admitted while flushing");
        shared.gate.add_permits(1);
        flushing.await.unwrap();
        assert_eq!(quota.admit(&t).unwrap_err().kind, ErrorKind::RateLimited);
    }
}
