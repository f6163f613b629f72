//! The job queue: validation, retry backoff, long-polling claims fed by bus wake-ups, and the
//! lease reaper. Storage and fencing live in [`QueueStore`]; this type decides policy.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use switchyard_bus::{Bus, Event, FeedEntry, FeedId, Replay};
use switchyard_store::QueueStore;
use switchyard_types::{
    Activity, AgentId, ClaimRequest, Error, Job, JobFilter, JobId, JobState, Labels, LogAppend,
    LogChunk, MAX_BATCH, MAX_LOG_CHUNK_BYTES, MAX_PAYLOAD_BYTES, NewJob, Outcome, Page, Principal,
    Priority, QueueStats, ReapReport, Result,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::health::Readiness;
use crate::validate::Violations;

/// Queue policy; the defaults are the documented ones.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Lease granted when a claim names none (30 s).
    pub default_lease: Duration,
    /// The longest lease a claim may ask for.
    pub max_lease: Duration,
    /// The longest a claim may wait for work.
    pub max_wait: Duration,
    /// How often a waiting claim re-checks the store with no wake-up: covers delayed jobs
    /// becoming due, retries, reaped leases, and a bus that is down.
    pub recheck_interval: Duration,
    /// The re-check interval while the bus is disconnected.
    pub fallback_poll_interval: Duration,
    /// How often the reaper looks for expired leases.
    pub reaper_interval: Duration,
    /// Expired leases handled per reaper statement.
    pub reaper_batch: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    /// The longest retry delay.
    pub backoff_max: Duration,
    /// The rolling window of the windowed stats.
    pub stats_window: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            default_lease: Duration::from_secs(30),
            max_lease: Duration::from_secs(3600),
            max_wait: Duration::from_secs(60),
            recheck_interval: Duration::from_secs(1),
            fallback_poll_interval: Duration::from_millis(250),
            reaper_interval: Duration::from_secs(5),
            reaper_batch: 500,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            stats_window: Duration::from_secs(300),
        }
    }
}

/// One job to enqueue, as a client sent it (not yet validated).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnqueueJob {
    /// Target pool (required).
    pub pool: String,
    /// Executor kind (required).
    pub kind: String,
    /// Executor input; `null` becomes `{}`.
    pub payload: serde_json::Value,
    /// Default `NORMAL`.
    pub priority: Option<Priority>,
    /// Labels an agent must carry.
    pub labels: Labels,
    /// Annotations (`service`, `version`, ...); they do not affect claims.
    pub tags: Labels,
    /// Default 3, at most 100.
    pub max_attempts: Option<u32>,
    /// Per-attempt limit; default 3600 s, at most 7 days.
    pub timeout_seconds: Option<u64>,
    /// Not before this instant; excludes `delay_seconds`.
    pub run_at: Option<DateTime<Utc>>,
    /// Not before now + this many seconds (database clock); at most 30 days.
    pub delay_seconds: Option<u64>,
    /// Same key, same tenant: the first job is returned.
    pub idempotency_key: Option<String>,
    /// At most `concurrency_limit` jobs with this key claimed or running at once.
    pub concurrency_key: Option<String>,
    /// Default 1; only with a key.
    pub concurrency_limit: Option<u32>,
}

/// A claim for work, as a client sent it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimJobs {
    /// The claiming agent's id.
    pub agent_id: String,
    /// The pool to take from.
    pub pool: String,
    /// Labels the agent offers.
    pub labels: Labels,
    /// Default 1, at most 100.
    pub max_jobs: Option<u32>,
    /// Default the queue's default lease.
    pub lease_seconds: Option<u64>,
    /// How long to wait for work when none is due (capped by `max_wait`); 0 answers at once.
    pub wait: Duration,
    /// The agent whose stream takes the jobs: its heartbeats keep them leased.
    pub holder: Option<AgentId>,
}

/// A list request, as a client sent it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListJobs {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this pool.
    pub pool: Option<String>,
    /// Only jobs of this priority.
    pub priority: Option<Priority>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Only jobs with this label (`key=value`).
    pub label: Option<(String, String)>,
    /// Page size: default 50, at most 500.
    pub limit: Option<u32>,
    /// From a previous page's `next_page_token`.
    pub page_token: Option<String>,
}

/// The job queue service.
#[derive(Clone)]
pub struct Queue {
    store: Arc<dyn QueueStore>,
    bus: Arc<dyn Bus>,
    config: QueueConfig,
    closing: CancellationToken,
}

impl Queue {
    /// A queue over `store`, announcing work on `bus`.
    pub fn new(store: Arc<dyn QueueStore>, bus: Arc<dyn Bus>, config: QueueConfig) -> Self {
        Queue {
            store,
            bus,
            config,
            closing: CancellationToken::new(),
        }
    }

    /// Starts shutting down: waiting claims return what they have (nothing) at once, so a
    /// draining server is not held up by long polls. Every clone sees it.
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// A token that fires when [`Queue::close`] is called.
    pub(crate) fn closing(&self) -> CancellationToken {
        self.closing.clone()
    }

    /// The policy in force.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Validates and enqueues 1..=1000 jobs for the caller's tenant in one transaction, then
    /// wakes the claimers of every pool that got due work.
    pub async fn enqueue(&self, who: &Principal, jobs: Vec<EnqueueJob>) -> Result<Vec<Job>> {
        if jobs.is_empty() || jobs.len() > MAX_BATCH {
            return Err(Error::invalid(
                "jobs",
                format!("must hold 1 to {MAX_BATCH} jobs"),
            ));
        }
        let batch = jobs.len() > 1;
        let mut violations = Vec::new();
        let mut new_jobs = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.into_iter().enumerate() {
            let prefix = if batch {
                format!("jobs[{i}].")
            } else {
                String::new()
            };
            match self.validate_job(who, job, prefix) {
                Ok(new_job) => new_jobs.push(new_job),
                Err(Some(v)) => v.drain_into(&mut violations),
                Err(None) => {
                    return Err(Error::too_large(format!(
                        "payload of job {i} exceeds {MAX_PAYLOAD_BYTES} bytes"
                    )));
                }
            }
        }
        if !violations.is_empty() {
            return Err(Error::invalid_fields(violations));
        }
        let due_pools: BTreeSet<String> = new_jobs
            .iter()
            .filter(|j| j.run_at.is_none() && j.delay.is_zero())
            .map(|j| j.pool.clone())
            .collect();
        let stored = self.store.enqueue(new_jobs).await?;
        stored.iter().for_each(|job| self.announce(job));
        for pool in due_pools {
            self.wake(pool).await;
        }
        Ok(stored)
    }

    /// `Err(None)` means the payload is too large (413, not 400).
    fn validate_job(
        &self,
        who: &Principal,
        job: EnqueueJob,
        prefix: String,
    ) -> std::result::Result<NewJob, Option<Violations>> {
        let mut v = Violations::with_prefix(prefix);
        v.name("pool", &job.pool);
        v.name("kind", &job.kind);
        v.labels("labels", &job.labels);
        v.labels("tags", &job.tags);
        let payload = if job.payload.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            job.payload
        };
        if json_len(&payload) > MAX_PAYLOAD_BYTES {
            return Err(None);
        }
        let max_attempts = job.max_attempts.unwrap_or(3);
        v.range("max_attempts", max_attempts.into(), 1, 100);
        let timeout = job.timeout_seconds.unwrap_or(3600);
        v.range("timeout_seconds", timeout, 1, 7 * 86_400);
        let delay = job.delay_seconds.unwrap_or(0);
        v.range("delay_seconds", delay, 0, 30 * 86_400);
        if job.run_at.is_some() && delay > 0 {
            v.add("run_at", "give run_at or delay_seconds, not both");
        }
        if let Some(key) = &job.idempotency_key {
            v.key("idempotency_key", key, 255);
        }
        if let Some(key) = &job.concurrency_key {
            v.key("concurrency_key", key, 255);
        }
        let concurrency_limit = job.concurrency_limit.unwrap_or(1);
        v.range("concurrency_limit", concurrency_limit.into(), 1, 10_000);
        if job.concurrency_limit.is_some() && job.concurrency_key.is_none() {
            v.add("concurrency_limit", "needs a concurrency_key");
        }
        if !v.is_empty() {
            return Err(Some(v));
        }
        Ok(NewJob {
            tenant: who.tenant.clone(),
            pool: job.pool,
            kind: job.kind,
            payload,
            priority: job.priority.unwrap_or_default(),
            labels: job.labels,
            tags: job.tags,
            max_attempts,
            timeout: Duration::from_secs(timeout),
            run_at: job.run_at,
            delay: Duration::from_secs(delay),
            idempotency_key: job.idempotency_key,
            concurrency_key: job.concurrency_key,
            concurrency_limit,
        })
    }

    /// Claims up to `max_jobs` of the caller's due jobs in `pool`. When none is due it waits up
    /// to `wait` (capped by `max_wait`) for a bus wake-up, re-checking on an interval (shorter
    /// while the bus is down), and returns an empty vector if nothing came.
    pub async fn claim(&self, who: &Principal, req: ClaimJobs) -> Result<Vec<Job>> {
        self.claim_until(who, req, &self.closing).await
    }

    /// [`Queue::claim`], whose wait also ends when `stop` fires. Only the wait is cut short,
    /// never a store call: a claim that took jobs always returns them.
    pub async fn claim_until(
        &self,
        who: &Principal,
        req: ClaimJobs,
        stop: &CancellationToken,
    ) -> Result<Vec<Job>> {
        let mut v = Violations::default();
        v.key("agent_id", &req.agent_id, 128);
        v.name("pool", &req.pool);
        v.labels("labels", &req.labels);
        let max_jobs = req.max_jobs.unwrap_or(1);
        v.range("max_jobs", max_jobs.into(), 1, 100);
        let lease = self.lease(req.lease_seconds, &mut v);
        if req.wait > self.config.max_wait {
            v.add(
                "wait_seconds",
                format!("must be at most {}", self.config.max_wait.as_secs()),
            );
        }
        v.finish()?;
        let claim = ClaimRequest {
            agent_id: req.agent_id,
            pool: req.pool,
            labels: req.labels,
            max_jobs,
            lease,
            holder: req.holder,
        };
        if req.wait.is_zero() {
            return self.claimed(self.store.claim(Some(&who.tenant), &claim).await);
        }
        let deadline = Instant::now() + req.wait;
        // Subscribe before the first look so a wake-up between the look and the wait is kept.
        let mut wakeups = self.bus.subscribe();
        loop {
            let jobs = self.claimed(self.store.claim(Some(&who.tenant), &claim).await)?;
            let stopped = self.closing.is_cancelled() || stop.is_cancelled();
            if !jobs.is_empty() || Instant::now() >= deadline || stopped {
                return Ok(jobs);
            }
            let interval = if self.bus.is_connected() {
                self.config.recheck_interval
            } else {
                self.config.fallback_poll_interval
            };
            let recheck_at = deadline.min(Instant::now() + interval);
            loop {
                tokio::select! {
                    event = wakeups.recv() => match event {
                        Ok(Event::PoolReady { pool }) if pool == claim.pool => break,
                        Ok(Event::Requeued) => break,
                        Ok(Event::PoolReady { .. } | Event::JobCancelled { .. }) => {}
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => {
                            tokio::time::sleep_until(recheck_at).await;
                            break;
                        }
                    },
                    () = tokio::time::sleep_until(recheck_at) => break,
                    () = self.closing.cancelled() => break,
                    () = stop.cancelled() => break,
                }
            }
        }
    }

    fn lease(&self, seconds: Option<u64>, v: &mut Violations) -> Duration {
        match seconds {
            None => self.config.default_lease,
            Some(s) => {
                v.range("lease_seconds", s, 5, self.config.max_lease.as_secs());
                Duration::from_secs(s)
            }
        }
    }

    /// Reports that the current attempt started running; renews its lease.
    pub async fn start(&self, who: &Principal, id: JobId, attempt: u32) -> Result<Job> {
        self.start_leased(who, id, attempt, self.config.default_lease)
            .await
    }

    /// [`Queue::start`] with the lease renewed for `lease` (an agent stream's own lease).
    pub async fn start_leased(
        &self,
        who: &Principal,
        id: JobId,
        attempt: u32,
        lease: Duration,
    ) -> Result<Job> {
        let job = self.store.start(&who.tenant, id, attempt, lease).await?;
        self.announce(&job);
        Ok(job)
    }

    /// Renews the current attempt's lease (default length when `lease_seconds` is `None`).
    pub async fn extend_lease(
        &self,
        who: &Principal,
        id: JobId,
        attempt: u32,
        lease_seconds: Option<u64>,
    ) -> Result<Job> {
        let mut v = Violations::default();
        let lease = self.lease(lease_seconds, &mut v);
        v.finish()?;
        self.store
            .extend_lease(&who.tenant, id, attempt, lease)
            .await
    }

    /// Of the `held` attempts, those still current (claimed or running): one read. An empty
    /// answer for an empty `held`, without a store call.
    pub async fn current_attempts(
        &self,
        who: &Principal,
        held: &[(JobId, u32)],
    ) -> Result<Vec<JobId>> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        self.store.current_attempts(&who.tenant, held).await
    }

    /// Ends the current attempt. A failure is retried after an exponential, jittered backoff
    /// while attempts remain, else dead-lettered.
    pub async fn complete(
        &self,
        who: &Principal,
        id: JobId,
        attempt: u32,
        outcome: Outcome,
    ) -> Result<Job> {
        let mut v = Violations::default();
        match &outcome {
            Outcome::Succeeded { result, .. } => {
                let size = result.as_ref().map_or(0, json_len);
                if size > MAX_PAYLOAD_BYTES {
                    return Err(Error::too_large(format!(
                        "result exceeds {MAX_PAYLOAD_BYTES} bytes"
                    )));
                }
            }
            Outcome::Failed { error, .. } => {
                if error.is_empty() || error.len() > 4096 {
                    v.add("error", "must be 1-4096 characters");
                }
            }
        }
        v.finish()?;
        let delay = self.backoff(attempt);
        let job = self
            .store
            .complete(&who.tenant, id, attempt, &outcome, delay)
            .await?;
        self.announce(&job);
        Ok(job)
    }

    /// The delay before retrying after `attempt` failed: `base * 2^(attempt-1)`, capped, with
    /// the upper half jittered so retries of a burst spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        retry_delay(&self.config, attempt, rand::rng().random::<f64>())
    }

    /// Stores a chunk of an attempt's output (the caller checked the attempt is the agent's).
    /// Chunks over [`MAX_LOG_CHUNK_BYTES`] are refused; past the job's cap they are dropped.
    pub async fn append_log(
        &self,
        who: &Principal,
        id: JobId,
        attempt: u32,
        seq: u64,
        data: &str,
    ) -> Result<LogAppend> {
        if data.len() > MAX_LOG_CHUNK_BYTES {
            return Err(Error::invalid(
                "log.data",
                format!("must be at most {MAX_LOG_CHUNK_BYTES} bytes"),
            ));
        }
        let stored = self
            .store
            .append_log(&who.tenant, id, attempt, seq, data)
            .await?;
        if stored == LogAppend::Full {
            tracing::debug!(job = %id, attempt, seq, "job log full; chunk dropped");
        }
        Ok(stored)
    }

    /// A page of a job's log: up to `limit` (default 500, at most 5000) chunks, of one attempt
    /// when given, after a sequence number when given. `NotFound` for another tenant's job.
    pub async fn logs(
        &self,
        who: &Principal,
        id: JobId,
        attempt: Option<u32>,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<Vec<LogChunk>> {
        let limit = limit.unwrap_or(500);
        let mut v = Violations::default();
        v.range("limit", limit.into(), 1, 5000);
        if after.is_some() && attempt.is_none() {
            v.add("after_seq", "needs an attempt");
        }
        v.finish()?;
        self.store.get(&who.tenant, id).await?;
        self.store
            .logs(&who.tenant, id, attempt, after, limit)
            .await
    }

    /// Cancels a non-terminal job.
    pub async fn cancel(&self, who: &Principal, id: JobId) -> Result<Job> {
        let job = self.store.cancel(&who.tenant, id).await?;
        self.announce(&job);
        if job.claimed_by.is_some() {
            // The agent holding it learns at once (else at its next heartbeat).
            if let Err(e) = self.bus.publish(Event::JobCancelled { job: id }).await {
                tracing::debug!(error = %e, job = %id, "cancel not announced; the agent's next heartbeat finds it");
            }
        }
        Ok(job)
    }

    /// Every event of the bus from now on (wake-ups and cancellations).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.bus.subscribe()
    }

    /// Every entry of the bus's activity feed from now on.
    pub(crate) fn activity(&self) -> tokio::sync::broadcast::Receiver<Arc<FeedEntry>> {
        self.bus.activity()
    }

    /// The feed's kept entries after `after` (see [`Bus::replay`]).
    pub(crate) async fn replay(&self, after: FeedId, limit: usize) -> Result<Replay> {
        self.bus.replay(after, limit).await
    }

    /// The store's kind: `postgres` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// Whether wake-ups cross replicas now (the bus is connected).
    pub fn bus_connected(&self) -> bool {
        self.bus.is_connected()
    }

    /// Whether the caller's tenant has due work waiting in `pool` (labels and limits aside).
    pub async fn has_due_jobs(&self, who: &Principal, pool: &str) -> Result<bool> {
        self.store.has_due_jobs(&who.tenant, pool).await
    }

    /// Changes a non-terminal job's priority.
    pub async fn set_priority(
        &self,
        who: &Principal,
        id: JobId,
        priority: Priority,
    ) -> Result<Job> {
        let job = self.store.set_priority(&who.tenant, id, priority).await?;
        self.announce(&job);
        Ok(job)
    }

    /// Puts a dead-lettered job back in the queue with a fresh allowance of attempts.
    pub async fn redrive(&self, who: &Principal, id: JobId) -> Result<Job> {
        let job = self.store.redrive(&who.tenant, id).await?;
        self.announce(&job);
        self.wake(job.pool.clone()).await;
        Ok(job)
    }

    /// One job of the caller's tenant.
    pub async fn get(&self, who: &Principal, id: JobId) -> Result<Job> {
        self.store.get(&who.tenant, id).await
    }

    /// A page of the caller's jobs, newest first.
    pub async fn list(&self, who: &Principal, req: ListJobs) -> Result<Page<Job>> {
        let mut v = Violations::default();
        let limit = req.limit.unwrap_or(50);
        v.range("limit", limit.into(), 1, 500);
        if let Some(pool) = &req.pool {
            v.name("pool", pool);
        }
        if let Some(kind) = &req.kind {
            v.name("kind", kind);
        }
        let after = match req.page_token.as_deref() {
            None | Some("") => None,
            Some(token) => match decode_page_token(token) {
                Some(id) => Some(id),
                None => {
                    v.add("page_token", "is not a token this server issued");
                    None
                }
            },
        };
        v.finish()?;
        let filter = JobFilter {
            state: req.state,
            pool: req.pool,
            priority: req.priority,
            kind: req.kind,
            label: req.label,
            limit: limit + 1,
            after,
        };
        let mut items = self.store.list(&who.tenant, &filter).await?;
        let next_page_token = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|j| encode_page_token(j.id))
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Figures per (pool, priority) for the caller's tenant over the configured window.
    pub async fn stats(&self, who: &Principal) -> Result<Vec<QueueStats>> {
        self.store
            .stats(&who.tenant, self.config.stats_window)
            .await
    }

    /// The caller's tenant's cap on claimed or running jobs (`None`: no cap).
    pub async fn running_limit(&self, who: &Principal) -> Result<Option<u32>> {
        self.store.tenant_limit(&who.tenant).await
    }

    /// Sets (1..=100,000) or removes the caller's tenant's cap on claimed or running jobs;
    /// claims enforce it atomically from the next claim on. Returns the cap now in force.
    pub async fn set_running_limit(
        &self,
        who: &Principal,
        max_running: Option<u32>,
    ) -> Result<Option<u32>> {
        let mut v = Violations::default();
        if let Some(n) = max_running {
            v.range("max_running", n.into(), 1, 100_000);
        }
        v.finish()?;
        self.store
            .set_tenant_limit(&who.tenant, max_running)
            .await?;
        Ok(max_running)
    }

    /// One reaper pass over every tenant, run now on behalf of `who`: it spans every tenant,
    /// so only platform administrators may ask for it.
    pub async fn requeue_expired(&self, who: &Principal) -> Result<ReapReport> {
        who.require_platform_admin("run maintenance across tenants")?;
        self.reap_all().await
    }

    /// One reaper pass over every tenant, repeated while full batches come back.
    async fn reap_all(&self) -> Result<ReapReport> {
        let mut total = ReapReport::default();
        loop {
            let reaped = self
                .store
                .reap_expired(self.config.reaper_batch, Duration::ZERO)
                .await?;
            reaped.iter().for_each(|job| self.announce(job));
            let pass = ReapReport::of(&reaped);
            total.requeued += pass.requeued;
            total.dead_lettered += pass.dead_lettered;
            if pass.requeued + pass.dead_lettered < u64::from(self.config.reaper_batch) {
                if total.requeued > 0
                    && let Err(e) = self.bus.publish(Event::Requeued).await
                {
                    tracing::debug!(error = %e, "reaped jobs not announced; claimers find them on their next re-check");
                }
                return Ok(total);
            }
        }
    }

    /// Restart grace, run once as a replica starts: leases that expired while the control
    /// plane was down are renewed for `grace`, so their agents can reconnect and renew before
    /// the reaper takes the jobs. Returns how many were renewed.
    pub async fn grant_restart_grace(&self, grace: Duration) -> Result<u64> {
        self.store.grant_restart_grace(grace).await
    }

    /// Runs the reaper every `reaper_interval` until `shutdown` fires. Every replica runs one;
    /// the store makes concurrent passes safe.
    pub async fn run_reaper(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.reaper_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => match self.reap_all().await {
                    Ok(r) if r.requeued + r.dead_lettered > 0 => {
                        tracing::info!(requeued = r.requeued, dead_lettered = r.dead_lettered, "reaped expired leases");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "reaper pass failed"),
                },
            }
        }
    }

    /// Whether the store, its migrations and the bus answer.
    pub async fn readiness(&self) -> Readiness {
        Readiness::probe(self.store.as_ref(), self.bus.as_ref()).await
    }

    /// Announces a job's new state on the activity feed.
    pub(crate) fn announce(&self, job: &Job) {
        self.bus_announce(Activity::job(job));
    }

    /// Announces any change on the activity feed (the bus is the queue's).
    pub(crate) fn bus_announce(&self, activity: Activity) {
        self.bus.announce(activity);
    }

    /// Announces the jobs a claim took, passing the claim's answer on.
    fn claimed(&self, jobs: Result<Vec<Job>>) -> Result<Vec<Job>> {
        if let Ok(jobs) = &jobs {
            jobs.iter().for_each(|job| self.announce(job));
        }
        jobs
    }

    /// Announces that `pool` has due work, to every replica's claimers.
    pub(crate) async fn wake(&self, pool: String) {
        if let Err(e) = self.bus.publish(Event::PoolReady { pool }).await {
            // Advisory: claimers re-check on an interval, so a lost wake-up costs latency only.
            tracing::debug!(error = %e, "wake-up not published");
        }
    }

    /// Stores how far attempt `attempt` of job `id` is, `percent` of 0-100 (the caller checked
    /// the attempt is the agent's). Only the current attempt of a running job is recorded:
    /// otherwise `Conflict` (or `NotFound`), and nothing changes.
    pub async fn report_progress(
        &self,
        who: &Principal,
        id: JobId,
        attempt: u32,
        percent: u8,
    ) -> Result<()> {
        let mut v = Violations::default();
        v.range("progress.percent", percent.into(), 0, 100);
        v.finish()?;
        self.store
            .report_progress(&who.tenant, id, attempt, percent)
            .await?;
        self.bus_announce(Activity::job_progress(&who.tenant, id, attempt, percent));
        Ok(())
    }
}

/// The length of `value` serialised as JSON, the measure of every size limit.
fn json_len(value: &serde_json::Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |b| b.len())
}

/// `base * 2^(attempt-1)` capped at `backoff_max`; `jitter` in `0..1` picks a point in its upper half.
fn retry_delay(config: &QueueConfig, attempt: u32, jitter: f64) -> Duration {
    let exp = config
        .backoff_base
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)))
        .min(config.backoff_max);
    let half = exp / 2;
    half + half.mul_f64(jitter)
}

const PAGE_TOKEN_PREFIX: &str = "j1.";

fn encode_page_token(id: JobId) -> String {
    format!("{PAGE_TOKEN_PREFIX}{}", id.0.simple())
}

fn decode_page_token(token: &str) -> Option<JobId> {
    token.strip_prefix(PAGE_TOKEN_PREFIX)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered_in_the_upper_half() {
        let c = QueueConfig::default();
        assert_eq!(retry_delay(&c, 1, 0.0), Duration::from_millis(500));
        assert_eq!(retry_delay(&c, 1, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(&c, 3, 1.0), Duration::from_secs(4));
        assert_eq!(retry_delay(&c, 40, 1.0), c.backoff_max);
        assert!(retry_delay(&c, 40, 0.0) >= c.backoff_max / 2);
    }

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let id = JobId::new();
        assert_eq!(decode_page_token(&encode_page_token(id)), Some(id));
        assert_eq!(decode_page_token("nonsense"), None);
        assert_eq!(decode_page_token("j1.zzz"), None);
    }
}
