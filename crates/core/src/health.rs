//! Readiness: whether this replica's dependencies answer, each check bounded in time.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use switchyard_bus::Bus;
use switchyard_store::QueueStore;
use switchyard_types::Result;

/// How long one dependency check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The outcome of one dependency check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Whether the dependency answered correctly in time.
    pub ok: bool,
    /// What was found, for operators (never credentials).
    pub detail: String,
    /// How long the check took.
    pub latency_ms: u64,
}

/// Every check of one readiness probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// By name: `db`, `migrations`, and `redis` when Redis is configured.
    pub checks: BTreeMap<&'static str, Check>,
}

impl Readiness {
    /// Whether every check passed.
    pub fn is_ready(&self) -> bool {
        self.checks.values().all(|c| c.ok)
    }

    /// Runs every check concurrently.
    pub async fn probe(store: &dyn QueueStore, bus: &dyn Bus) -> Readiness {
        let db = timed(async {
            store
                .ping()
                .await
                .map(|()| format!("{} answered", store.backend()))
        });
        let migrations = timed(async {
            let status = store.migrations().await?;
            let detail = format!("{} of {} applied", status.applied, status.known);
            if status.is_current() {
                Ok(detail)
            } else {
                Err(switchyard_types::Error::unavailable(detail))
            }
        });
        let redis = async {
            match bus.backend() {
                "redis" => Some(
                    timed(async { bus.ping().await.map(|()| "redis answered".to_owned()) }).await,
                ),
                _ => None,
            }
        };
        let (db, migrations, redis) = tokio::join!(db, migrations, redis);
        let mut checks = BTreeMap::from([("db", db), ("migrations", migrations)]);
        if let Some(redis) = redis {
            checks.insert("redis", redis);
        }
        Readiness { checks }
    }
}

async fn timed(check: impl Future<Output = Result<String>>) -> Check {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, check).await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Ok(Ok(detail)) => Check {
            ok: true,
            detail,
            latency_ms,
        },
        Ok(Err(e)) => Check {
            ok: false,
            detail: e.public_message().to_owned(),
            latency_ms,
        },
        Err(_) => Check {
            ok: false,
            detail: format!("no answer within {} ms", CHECK_TIMEOUT.as_millis()),
            latency_ms,
        },
    }
}
