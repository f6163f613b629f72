//! Deployments (DESIGN §3.6): environments, the deployment state machine and its driver.
//!
//! Every step (staging, production, rollback) is a `shell` job in the environment's pool, enqueued
//! in the transaction that changes the deployment's state; the store's compare-and-set on the
//! state makes each change happen once, whichever replica or caller tries it. The driver
//! ([`Deployments::run`], one per replica) moves deployments on when their step's job ends, issues
//! the guard's health probes and evaluates its gates ([`crate::guard`]); each probe and each
//! evaluation is taken by exactly one replica.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use switchyard_store::{DeploymentStore, NotificationStore};
use switchyard_types::{
    Activity, Deployment, DeploymentEvent, DeploymentFilter, DeploymentId, DeploymentState,
    Environment, Error, Evaluation, GuardSettings, Job, JobState, Labels, NewDeployment,
    NewEnvironment, NewJob, Page, Principal, Priority, Result, Signal, StepKind, Summary,
    Transition, Verdict, is_service_name, is_version,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::guard::{self, GuardInputs};
use crate::paging::{page, token_id};
use crate::queue::Queue;
use crate::validate::Violations;

/// How often a watch looks for new events.
pub const WATCH_POLL: Duration = Duration::from_millis(250);

/// Deployments' timings and defaults.
#[derive(Debug, Clone)]
pub struct DeploymentsConfig {
    /// How often the driver looks for finished steps and due guards.
    pub tick: Duration,
    /// The guard settings a deployment gets where it names none.
    pub guard: GuardSettings,
    /// How long one deploy step may run.
    pub step_timeout: Duration,
    /// How long one health probe may take.
    pub probe_timeout: Duration,
}

impl Default for DeploymentsConfig {
    fn default() -> Self {
        DeploymentsConfig {
            tick: Duration::from_secs(1),
            guard: GuardSettings::default(),
            step_timeout: Duration::from_secs(3600),
            probe_timeout: Duration::from_secs(5),
        }
    }
}

/// An environment to create or replace, as a client sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutEnvironment {
    /// Its name.
    pub name: String,
    /// The pool whose agents deploy to it.
    pub pool: String,
    /// The deploy command template.
    pub deploy_command: String,
    /// The health probe's URL.
    pub health_url: Option<String>,
    /// Secrets the deploy command needs, by name.
    pub secrets: Vec<String>,
}

/// Guard settings as a client sent them: each unset one takes the default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GuardChange {
    /// Window, in seconds (1 s to 7 days).
    pub window_seconds: Option<u64>,
    /// Between evaluations, in seconds (1 s up to the window).
    pub interval_seconds: Option<u64>,
    /// The gates' rolling window, in seconds (1 s to 1 day).
    pub lookback_seconds: Option<u64>,
    /// Between health probes, in seconds (1 s to 1 hour).
    pub probe_interval_seconds: Option<u64>,
    /// How long the probe may fail, in seconds (1 s to 1 day).
    pub health_grace_seconds: Option<u64>,
    /// Samples a gate needs (0 to 100000).
    pub min_samples: Option<u32>,
    /// The failed share above which a gate fails (0 to 1).
    pub max_failure_rate: Option<f64>,
    /// The latency ratio above which a gate fails (1 to 100).
    pub max_latency_ratio: Option<f64>,
}

/// A deployment to create, as a client sent it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateDeployment {
    /// The service.
    pub service: String,
    /// The version.
    pub version: String,
    /// The target environment (default `production`).
    pub environment: Option<String>,
    /// The staging environment (default `staging`).
    pub staging_environment: Option<String>,
    /// Guard settings.
    pub guard: GuardChange,
}

/// A list request, as a client sent it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListDeployments {
    /// Only this service's.
    pub service: Option<String>,
    /// Only those in this state.
    pub state: Option<DeploymentState>,
    /// Only those deploying to this environment.
    pub environment: Option<String>,
    /// Page size: default 50, at most 500.
    pub limit: Option<u32>,
    /// From a previous page's `next_page_token`.
    pub page_token: Option<String>,
}

/// What a step does or would do: the answer of a promote or a rollback, dry run or not.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The step.
    pub step: StepKind,
    /// The deployment: as it is after the step started, or unchanged on a dry run.
    pub deployment: Deployment,
    /// Its state before.
    pub from: DeploymentState,
    /// Its state once the step starts.
    pub to: DeploymentState,
    /// The environment the step deploys to.
    pub environment: String,
    /// The pool whose agent runs it.
    pub pool: String,
    /// The version it deploys.
    pub version: String,
    /// The version the environment runs now, if it runs one.
    pub replaces: Option<String>,
    /// The command the agent runs.
    pub command: String,
    /// Whether it was carried out (false: a dry run, nothing changed).
    pub executed: bool,
    /// The step's job, when carried out.
    pub job: Option<Job>,
}

/// The deployment service.
#[derive(Clone)]
pub struct Deployments {
    pub(crate) store: Arc<dyn DeploymentStore>,
    pub(crate) notifications: Arc<dyn NotificationStore>,
    queue: Queue,
    config: DeploymentsConfig,
}

const PAGE_TOKEN_PREFIX: &str = "d1.";

impl Deployments {
    /// Deployments over `store`, with their webhooks and notifications in `notifications`,
    /// enqueueing their steps through `queue`.
    pub fn new(
        store: Arc<dyn DeploymentStore>,
        notifications: Arc<dyn NotificationStore>,
        queue: Queue,
        config: DeploymentsConfig,
    ) -> Self {
        Deployments {
            store,
            notifications,
            queue,
            config,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &DeploymentsConfig {
        &self.config
    }

    /// Creates or replaces one of the caller's environments.
    pub async fn put_environment(
        &self,
        who: &Principal,
        env: PutEnvironment,
    ) -> Result<Environment> {
        let mut v = Violations::default();
        v.name("name", &env.name);
        v.name("pool", &env.pool);
        if env.deploy_command.trim().is_empty() || env.deploy_command.len() > 4096 {
            v.add("deploy_command", "must be 1-4096 characters");
        }
        if let Some(url) = &env.health_url
            && !is_http_url(url)
        {
            v.add(
                "health_url",
                "must be an http:// or https:// URL of at most 2048 characters",
            );
        }
        if env.secrets.len() > 32 {
            v.add("secrets", "at most 32 secrets");
        }
        for (i, name) in env.secrets.iter().enumerate() {
            v.name(&format!("secrets[{i}]"), name);
        }
        v.finish()?;
        let stored = self
            .store
            .put_environment(&NewEnvironment {
                tenant: who.tenant.clone(),
                name: env.name,
                pool: env.pool,
                deploy_command: env.deploy_command,
                health_url: env.health_url.filter(|u| !u.is_empty()),
                secrets: env.secrets,
            })
            .await?;
        tracing::info!(environment = %stored.name, pool = %stored.pool, by = %who.subject, "environment stored");
        Ok(stored)
    }

    /// The caller's environments, by name.
    pub async fn environments(&self, who: &Principal) -> Result<Vec<Environment>> {
        self.store.environments(&who.tenant).await
    }

    /// Creates a deployment, `PENDING`: nothing runs until it is staged.
    pub async fn create(&self, who: &Principal, req: CreateDeployment) -> Result<Deployment> {
        let mut v = Violations::default();
        if !is_service_name(&req.service) {
            v.add(
                "service",
                "must be 1-64 characters of [a-z0-9._-], starting with a letter or digit",
            );
        }
        if !is_version(&req.version) {
            v.add(
                "version",
                "must be 1-128 characters of [A-Za-z0-9._+-], starting with a letter or digit",
            );
        }
        let environment = req.environment.unwrap_or_else(|| "production".to_owned());
        let staging = req
            .staging_environment
            .unwrap_or_else(|| "staging".to_owned());
        v.name("environment", &environment);
        v.name("staging_environment", &staging);
        if environment == staging {
            v.add("staging_environment", "must differ from environment");
        }
        let guard = self.guard_settings(&req.guard, &mut v);
        v.finish()?;
        let mut v = Violations::default();
        for (field, name) in [
            ("environment", &environment),
            ("staging_environment", &staging),
        ] {
            if let Err(e) = self.store.environment(&who.tenant, name).await {
                if e.kind == switchyard_types::ErrorKind::NotFound {
                    v.add(
                        field,
                        format!("no environment named {name:?}; create it first"),
                    );
                } else {
                    return Err(e);
                }
            }
        }
        v.finish()?;
        let d = self
            .store
            .create_deployment(&NewDeployment {
                tenant: who.tenant.clone(),
                service: req.service,
                version: req.version,
                staging_environment: staging,
                environment,
                guard,
                created_by: who.subject.clone(),
            })
            .await?;
        self.queue.bus_announce(Activity::deployment(&d));
        tracing::info!(deployment = %d.id, service = %d.service, version = %d.version, by = %who.subject, "deployment created");
        Ok(d)
    }

    fn guard_settings(&self, c: &GuardChange, v: &mut Violations) -> GuardSettings {
        let d = self.config.guard;
        let secs =
            |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_secs);
        let g = GuardSettings {
            window: secs(c.window_seconds, d.window),
            interval: secs(c.interval_seconds, d.interval),
            lookback: secs(c.lookback_seconds, d.lookback),
            probe_interval: secs(c.probe_interval_seconds, d.probe_interval),
            health_grace: secs(c.health_grace_seconds, d.health_grace),
            min_samples: c.min_samples.unwrap_or(d.min_samples),
            max_failure_rate: c.max_failure_rate.unwrap_or(d.max_failure_rate),
            max_latency_ratio: c.max_latency_ratio.unwrap_or(d.max_latency_ratio),
        };
        const DAY: u64 = 86_400;
        v.range("guard.window_seconds", g.window.as_secs(), 1, 7 * DAY);
        v.range(
            "guard.interval_seconds",
            g.interval.as_secs(),
            1,
            g.window.as_secs().max(1),
        );
        v.range("guard.lookback_seconds", g.lookback.as_secs(), 1, DAY);
        v.range(
            "guard.probe_interval_seconds",
            g.probe_interval.as_secs(),
            1,
            3600,
        );
        v.range(
            "guard.health_grace_seconds",
            g.health_grace.as_secs(),
            1,
            DAY,
        );
        v.range("guard.min_samples", g.min_samples.into(), 0, 100_000);
        if !(0.0..=1.0).contains(&g.max_failure_rate) {
            v.add("guard.max_failure_rate", "must be between 0 and 1");
        }
        if !(1.0..=100.0).contains(&g.max_latency_ratio) {
            v.add("guard.max_latency_ratio", "must be between 1 and 100");
        }
        g
    }

    /// One of the caller's deployments.
    pub async fn get(&self, who: &Principal, id: DeploymentId) -> Result<Deployment> {
        self.store.deployment(&who.tenant, id).await
    }

    /// A page of the caller's deployments, newest first.
    pub async fn list(&self, who: &Principal, req: ListDeployments) -> Result<Page<Deployment>> {
        let mut v = Violations::default();
        let limit = req.limit.unwrap_or(50);
        v.range("limit", limit.into(), 1, 500);
        if let Some(env) = &req.environment {
            v.name("environment", env);
        }
        let after =
            token_id(&mut v, PAGE_TOKEN_PREFIX, req.page_token.as_deref()).map(DeploymentId);
        v.finish()?;
        let filter = DeploymentFilter {
            service: req.service,
            state: req.state,
            environment: req.environment,
            limit: limit + 1,
            after,
        };
        let items = self.store.list_deployments(&who.tenant, &filter).await?;
        Ok(page(items, limit, PAGE_TOKEN_PREFIX, |d| d.id.0))
    }

    /// Deploys a `PENDING` deployment to its staging environment.
    pub async fn stage(&self, who: &Principal, id: DeploymentId) -> Result<Plan> {
        let d = self.get(who, id).await?;
        if d.state != DeploymentState::Pending {
            return Err(Error::conflict(format!(
                "deployment {id} is {}; only a PENDING deployment can be staged",
                d.state
            )));
        }
        let plan = self
            .plan(
                &d,
                StepKind::Stage,
                &d.staging_environment,
                &d.version,
                DeploymentState::Staging,
            )
            .await?;
        let message = format!("staging: deploying {} to {}", d.version, plan.environment);
        self.execute(who, plan, None, None, message).await
    }

    /// Deploys a `STAGED` deployment to production; a dry run (`execute` false) only says what
    /// would happen.
    pub async fn promote(&self, who: &Principal, id: DeploymentId, execute: bool) -> Result<Plan> {
        let d = self.get(who, id).await?;
        if d.state != DeploymentState::Staged {
            return Err(Error::conflict(format!(
                "deployment {id} is {}; only a STAGED deployment can be promoted",
                d.state
            )));
        }
        let plan = self
            .plan(
                &d,
                StepKind::Promote,
                &d.environment,
                &d.version,
                DeploymentState::Promoting,
            )
            .await?;
        if !execute {
            return Ok(plan);
        }
        let previous = plan.replaces.clone();
        let message = format!(
            "promoting: deploying {} to {} (replacing {})",
            d.version,
            plan.environment,
            previous.as_deref().unwrap_or("nothing")
        );
        self.execute(who, plan, previous, None, message).await
    }

    /// Rolls production back to `version`, or to the version it ran before this deployment,
    /// from `PROMOTING`, `GUARDING`, or `SUCCEEDED` while this deployment is what production runs;
    /// a dry run (`execute` false) only says what would happen.
    pub async fn rollback(
        &self,
        who: &Principal,
        id: DeploymentId,
        version: Option<String>,
        execute: bool,
    ) -> Result<Plan> {
        let d = self.get(who, id).await?;
        if let Some(v) = &version
            && !is_version(v)
        {
            return Err(Error::invalid(
                "version",
                "must be 1-128 characters of [A-Za-z0-9._+-], starting with a letter or digit",
            ));
        }
        match d.state {
            DeploymentState::Promoting | DeploymentState::Guarding => {}
            DeploymentState::Succeeded => {
                let current = self
                    .store
                    .current_release(&d.tenant, &d.service, &d.environment)
                    .await?;
                if current.is_none_or(|r| r.deployment != d.id) {
                    return Err(Error::conflict(format!(
                        "deployment {id} is no longer what {} runs; roll back the current one",
                        d.environment
                    )));
                }
            }
            DeploymentState::Pending
            | DeploymentState::Staging
            | DeploymentState::Staged
            | DeploymentState::RollingBack
            | DeploymentState::RolledBack
            | DeploymentState::Failed => {
                return Err(Error::conflict(format!(
                    "deployment {id} is {}; only a deployment in production (PROMOTING, GUARDING or SUCCEEDED) can be rolled back",
                    d.state
                )));
            }
        }
        let Some(target) = version.or_else(|| d.previous_version.clone()) else {
            return Err(Error::conflict(format!(
                "{} ran no version before {}; name the version to roll back to",
                d.environment, d.version
            )));
        };
        let plan = self
            .plan(
                &d,
                StepKind::Rollback,
                &d.environment,
                &target,
                DeploymentState::RollingBack,
            )
            .await?;
        if !execute {
            return Ok(plan);
        }
        let replaced = d.step_job.filter(|_| d.state == DeploymentState::Promoting);
        let reason = format!("rolled back by {}", who.subject);
        let message = format!(
            "rolling back: deploying {target} to {} ({reason})",
            plan.environment
        );
        let plan = self.execute(who, plan, None, Some(reason), message).await?;
        count_rollback("manual");
        if let Some(job) = replaced {
            // The production step it interrupts: its outcome no longer matters, stop it.
            if let Err(e) = self.queue.cancel(who, job).await {
                tracing::debug!(error = %e, %job, "the interrupted production step was not cancelled");
            }
        }
        Ok(plan)
    }

    /// What a step of `d` to `environment` would do.
    async fn plan(
        &self,
        d: &Deployment,
        step: StepKind,
        environment: &str,
        version: &str,
        to: DeploymentState,
    ) -> Result<Plan> {
        let env = self.store.environment(&d.tenant, environment).await?;
        let replaces = match step {
            StepKind::Stage => None,
            StepKind::Promote | StepKind::Rollback => self
                .store
                .current_release(&d.tenant, &d.service, environment)
                .await?
                .map(|r| r.version),
        };
        Ok(Plan {
            step,
            deployment: d.clone(),
            from: d.state,
            to,
            environment: env.name.clone(),
            pool: env.pool.clone(),
            version: version.to_owned(),
            replaces,
            command: render(&env.deploy_command, &d.service, version, &env.name),
            executed: false,
            job: None,
        })
    }

    /// Carries a plan out: the state change and the step's job, in one transaction.
    async fn execute(
        &self,
        who: &Principal,
        mut plan: Plan,
        previous_version: Option<String>,
        reason: Option<String>,
        message: String,
    ) -> Result<Plan> {
        let d = &plan.deployment;
        let env = self.store.environment(&d.tenant, &plan.environment).await?;
        let job = self.step_job(d, plan.step, &env, &plan.version);
        let rollback_version = (plan.step == StepKind::Rollback).then(|| plan.version.clone());
        let (after, job) = self
            .transition(&Transition {
                tenant: d.tenant.clone(),
                id: d.id,
                from: plan.from,
                to: plan.to,
                step: Some((plan.step, job)),
                previous_version,
                rollback_version,
                reason,
                message,
                gate_failure: None,
            })
            .await?;
        self.queue.wake(plan.pool.clone()).await;
        tracing::info!(deployment = %after.id, step = %plan.step, version = %plan.version, state = %after.state, by = %who.subject, "deployment step started");
        plan.deployment = after;
        plan.job = job;
        plan.executed = true;
        Ok(plan)
    }

    /// Records a state change (and enqueues its step's job) and announces both.
    async fn transition(&self, change: &Transition) -> Result<(Deployment, Option<Job>)> {
        let (after, job) = self.store.transition(change).await?;
        self.queue.bus_announce(Activity::deployment(&after));
        if let Some(job) = &job {
            self.queue.announce(job);
        }
        Ok((after, job))
    }

    /// The job of a step: the environment's command for `version`, run by its pool's agents.
    fn step_job(&self, d: &Deployment, step: StepKind, env: &Environment, version: &str) -> NewJob {
        let payload = serde_json::json!({
            "command": render(&env.deploy_command, &d.service, version, &env.name),
            "env": {
                "SWITCHYARD_SERVICE": d.service,
                "SWITCHYARD_VERSION": version,
                "SWITCHYARD_ENVIRONMENT": env.name,
                "SWITCHYARD_DEPLOYMENT": d.id.to_string(),
            },
            "secrets": env.secrets,
        });
        let tags = Labels::from([
            ("deployment".to_owned(), d.id.to_string()),
            ("step".to_owned(), step.as_str().to_lowercase()),
        ]);
        self.job(d, env, "shell", payload, tags, self.config.step_timeout)
    }

    fn job(
        &self,
        d: &Deployment,
        env: &Environment,
        kind: &str,
        payload: serde_json::Value,
        tags: Labels,
        timeout: Duration,
    ) -> NewJob {
        NewJob {
            tenant: d.tenant.clone(),
            pool: env.pool.clone(),
            kind: kind.to_owned(),
            payload,
            priority: Priority::High,
            labels: Labels::new(),
            tags,
            // A deploy is not retried behind the operator's back: a failure moves the
            // deployment on (rollback or FAILED).
            max_attempts: 1,
            timeout,
            run_at: None,
            delay: Duration::ZERO,
            idempotency_key: None,
            concurrency_key: None,
            concurrency_limit: 1,
        }
    }

    /// The caller's evaluations of one deployment's guard, oldest first.
    pub async fn evaluations(&self, who: &Principal, id: DeploymentId) -> Result<Vec<Evaluation>> {
        self.get(who, id).await?;
        self.store.evaluations(&who.tenant, id).await
    }

    /// Stores a sample the service reports about one of its versions.
    pub async fn report_signal(
        &self,
        who: &Principal,
        service: String,
        version: String,
        requests: u64,
        errors: u64,
        latency_ms: Option<f64>,
    ) -> Result<()> {
        let mut v = Violations::default();
        if !is_service_name(&service) {
            v.add("service", "is not a valid service name");
        }
        if !is_version(&version) {
            v.add("version", "is not a valid version");
        }
        if errors > requests {
            v.add("errors", "cannot exceed requests");
        }
        v.range("requests", requests, 0, 1_000_000_000);
        if let Some(ms) = latency_ms
            && !(ms.is_finite() && (0.0..=3_600_000.0).contains(&ms))
        {
            v.add("latency_ms", "must be between 0 and 3600000");
        }
        v.finish()?;
        self.store
            .report_signal(&Signal {
                tenant: who.tenant.clone(),
                service,
                version,
                requests,
                errors,
                latency_ms,
            })
            .await
    }

    /// The caller's jobs and deployments counted by state.
    pub async fn summary(&self, who: &Principal) -> Result<Summary> {
        self.store.summary(&who.tenant).await
    }

    /// Up to `limit` (at most 500) of a deployment's events after `after`, oldest first: what
    /// is stored now.
    pub async fn events(
        &self,
        who: &Principal,
        id: DeploymentId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<DeploymentEvent>> {
        self.get(who, id).await?;
        self.store
            .events(&who.tenant, Some(id), after, limit.clamp(1, 500))
            .await
    }

    /// Follows events after `after`: of one deployment (ending after the event that leaves it
    /// in a terminal state), or of all the caller's deployments (never ending). Dropping the
    /// stream stops it.
    pub async fn watch(
        &self,
        who: &Principal,
        id: Option<DeploymentId>,
        after: i64,
    ) -> Result<ReceiverStream<Result<DeploymentEvent>>> {
        if let Some(id) = id {
            self.get(who, id).await?;
        }
        let (tx, rx) = mpsc::channel(64);
        let (store, tenant) = (self.store.clone(), who.tenant.clone());
        tokio::spawn(async move {
            let mut after = after;
            loop {
                let events = match store.events(&tenant, id, after, 100).await {
                    Ok(events) => events,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let full = events.len() == 100;
                for event in events {
                    after = event.seq;
                    let last = id.is_some() && event.state.is_terminal();
                    if tx.send(Ok(event)).await.is_err() || last {
                        return;
                    }
                }
                if !full {
                    tokio::select! {
                        () = tokio::time::sleep(WATCH_POLL) => {}
                        () = tx.closed() => return,
                    }
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }

    /// Drives every tenant's deployments every `tick` until `shutdown` fires: finished steps move
    /// their deployments on, due probes are issued and due evaluations made. Every replica runs
    /// one; the store lets exactly one of them make each change.
    ///
    /// It also refreshes the [`DEPLOYMENTS`] gauge, at once and every [`GAUGE_EVERY`].
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        describe_metrics();
        let mut gauge = tokio::time::interval(GAUGE_EVERY);
        gauge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.drive().await {
                        tracing::warn!(error = %e, "deployment driver pass failed");
                    }
                }
                _ = gauge.tick() => {
                    if let Err(e) = self.count_by_state().await {
                        tracing::warn!(error = %e, "counting deployments by state failed");
                    }
                }
            }
        }
    }

    /// Sets the [`DEPLOYMENTS`] gauge of every state from the store's counts (zero for states
    /// no deployment is in).
    async fn count_by_state(&self) -> Result<()> {
        let counts = self.store.deployments_by_state().await?;
        for state in DeploymentState::ALL {
            let n = counts.get(state.as_str()).copied().unwrap_or(0);
            #[allow(clippy::cast_precision_loss)] // counts stay far below 2^52
            metrics::gauge!(DEPLOYMENTS, "state" => state.as_str()).set(n as f64);
        }
        Ok(())
    }

    /// One pass of the driver.
    pub async fn drive(&self) -> Result<()> {
        for (d, job) in self.store.finished_steps(100).await? {
            if let Err(e) = self.step_ended(&d, &job).await {
                log_lost_race(&d, &e);
            }
        }
        for d in self.store.due_guards(100).await? {
            if let Err(e) = self.guard_tick(&d).await {
                log_lost_race(&d, &e);
            }
        }
        Ok(())
    }

    /// Moves `d` on now that its step's `job` has ended.
    async fn step_ended(&self, d: &Deployment, job: &Job) -> Result<()> {
        let ok = job.state == JobState::Completed;
        let why = || failure(job);
        match (d.state, ok) {
            (DeploymentState::Staging, true) => {
                let msg = format!("staged: {} runs in {}", d.version, d.staging_environment);
                self.change(d, DeploymentState::Staged, None, msg).await
            }
            (DeploymentState::Staging, false) => {
                let reason = format!("the staging deploy failed: {}", why());
                self.change(d, DeploymentState::Failed, Some(reason.clone()), reason)
                    .await
            }
            (DeploymentState::Promoting, true) => {
                let msg = format!(
                    "guarding: {} runs in {}; watched for {} s",
                    d.version,
                    d.environment,
                    d.guard.window.as_secs()
                );
                self.change(d, DeploymentState::Guarding, None, msg).await
            }
            (DeploymentState::Promoting, false) => {
                let reason = format!("the production deploy failed: {}", why());
                self.roll_back_by_itself(d, "production_step_failed", reason, None)
                    .await
            }
            (DeploymentState::RollingBack, true) => {
                let msg = format!(
                    "rolled back: {} runs {}",
                    d.environment,
                    d.rollback_version
                        .as_deref()
                        .unwrap_or("the previous version")
                );
                self.change(d, DeploymentState::RolledBack, None, msg).await
            }
            (DeploymentState::RollingBack, false) => {
                let reason = format!(
                    "the rollback to {} failed: {}",
                    d.rollback_version
                        .as_deref()
                        .unwrap_or("the previous version"),
                    why()
                );
                self.change(d, DeploymentState::Failed, Some(reason.clone()), reason)
                    .await
            }
            (
                DeploymentState::Pending
                | DeploymentState::Staged
                | DeploymentState::Guarding
                | DeploymentState::Succeeded
                | DeploymentState::RolledBack
                | DeploymentState::Failed,
                _,
            ) => Ok(()),
        }
    }

    /// A state change with no step.
    async fn change(
        &self,
        d: &Deployment,
        to: DeploymentState,
        reason: Option<String>,
        message: String,
    ) -> Result<()> {
        let (after, _) = self
            .transition(&Transition {
                tenant: d.tenant.clone(),
                id: d.id,
                from: d.state,
                to,
                step: None,
                previous_version: None,
                rollback_version: None,
                reason,
                message: message.clone(),
                gate_failure: None,
            })
            .await?;
        tracing::info!(deployment = %after.id, service = %after.service, version = %after.version, state = %after.state, %message, "deployment changed");
        Ok(())
    }

    /// Rolls `d` back to the version production ran before it, or ends it `FAILED` when there
    /// was none; `cause` labels the rollback in the metrics.
    async fn roll_back_by_itself(
        &self,
        d: &Deployment,
        cause: &str,
        reason: String,
        gate_failure: Option<String>,
    ) -> Result<()> {
        let Some(previous) = d.previous_version.clone() else {
            let reason = format!("{reason}; no previous version to roll back to");
            let change = Transition {
                tenant: d.tenant.clone(),
                id: d.id,
                from: d.state,
                to: DeploymentState::Failed,
                step: None,
                previous_version: None,
                rollback_version: None,
                reason: Some(reason.clone()),
                message: reason,
                gate_failure,
            };
            self.transition(&change).await?;
            return Ok(());
        };
        let env = self.store.environment(&d.tenant, &d.environment).await?;
        let job = self.step_job(d, StepKind::Rollback, &env, &previous);
        let message = format!("rolling back to {previous}: {reason}");
        let (after, _) = self
            .transition(&Transition {
                tenant: d.tenant.clone(),
                id: d.id,
                from: d.state,
                to: DeploymentState::RollingBack,
                step: Some((StepKind::Rollback, job)),
                previous_version: None,
                rollback_version: Some(previous),
                reason: Some(reason),
                message,
                gate_failure,
            })
            .await?;
        self.queue.wake(env.pool).await;
        count_rollback(cause);
        tracing::warn!(deployment = %after.id, service = %after.service, version = %after.version, reason = after.reason.as_deref().unwrap_or(""), "deployment rolling back by itself");
        Ok(())
    }

    /// A guarded deployment's due probe and evaluation.
    async fn guard_tick(&self, d: &Deployment) -> Result<()> {
        let env = self.store.environment(&d.tenant, &d.environment).await?;
        let probe = env.health_url.as_ref().map(|url| {
            let payload = serde_json::json!({"url": url, "method": "GET", "expect_status": 200});
            let tags = Labels::from([
                ("deployment".to_owned(), d.id.to_string()),
                ("probe".to_owned(), "health".to_owned()),
            ]);
            self.job(d, &env, "http", payload, tags, self.config.probe_timeout)
        });
        let probing = probe.is_some();
        if self
            .store
            .take_probe(&d.tenant, d.id, d.guard.probe_interval, probe)
            .await?
            .is_some()
            && probing
        {
            self.queue.wake(env.pool.clone()).await;
        }
        if self
            .store
            .take_evaluation(&d.tenant, d.id, d.guard.interval)
            .await?
        {
            self.evaluate(d, &env).await?;
        }
        Ok(())
    }

    /// Evaluates the gates once, stores the evaluation, and acts on it: `FAIL` rolls back,
    /// `PASS` after the window ends the guard, `INCONCLUSIVE` holds.
    async fn evaluate(&self, d: &Deployment, env: &Environment) -> Result<Evaluation> {
        let g = &d.guard;
        let current = self
            .store
            .version_figures(&d.tenant, &d.service, &d.version, g.lookback, None)
            .await?;
        let baseline = match &d.previous_version {
            Some(previous) => match self
                .store
                .last_finished(&d.tenant, &d.service, previous)
                .await?
            {
                Some(last) => Some(
                    self.store
                        .version_figures(&d.tenant, &d.service, previous, g.lookback, Some(last))
                        .await?,
                ),
                None => None,
            },
            None => None,
        };
        let now = Utc::now();
        let probes = match &env.health_url {
            Some(_) => {
                let since = probe_window_start(d, now);
                Some(self.store.probes(&d.tenant, d.id, since).await?)
            }
            None => None,
        };
        let (verdict, gates) = guard::evaluate(&GuardInputs {
            settings: g,
            current: &current,
            baseline: baseline.as_ref(),
            probes: probes.as_deref(),
            now,
        });
        let inputs = serde_json::json!({
            "version": d.version,
            "current": current,
            "previous_version": d.previous_version,
            "baseline": baseline,
            "probes": probes,
            "settings": g,
        });
        let evaluation = self
            .store
            .record_evaluation(&d.tenant, d.id, verdict, &gates, &inputs)
            .await?;
        metrics::counter!(GATE_EVALUATIONS, "outcome" => verdict.as_str()).increment(1);
        tracing::info!(deployment = %d.id, service = %d.service, version = %d.version, %verdict, "guard evaluated");
        match verdict {
            Verdict::Fail => {
                let failed: Vec<_> = gates
                    .iter()
                    .filter(|g| g.verdict == Verdict::Fail)
                    .collect();
                let why = failed
                    .iter()
                    .map(|g| g.detail.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                // Labelled by the first failed gate (bounded: four gate names).
                let cause = failed.first().map_or("guard", |g| g.gate.as_str());
                self.roll_back_by_itself(d, cause, format!("guard failed: {why}"), Some(why))
                    .await?;
            }
            Verdict::Pass if d.guard_ends_at.is_some_and(|end| evaluation.at >= end) => {
                let msg = format!("succeeded: the guard passed over {} s", g.window.as_secs());
                self.change(d, DeploymentState::Succeeded, None, msg)
                    .await?;
            }
            Verdict::Pass | Verdict::Inconclusive | Verdict::Skipped => {}
        }
        Ok(evaluation)
    }
}

/// Every tenant's deployments, by state; refreshed by each replica's driver.
pub const DEPLOYMENTS: &str = "switchyard_deployments";
/// How often the driver refreshes the [`DEPLOYMENTS`] gauge.
pub const GAUGE_EVERY: Duration = Duration::from_secs(15);
/// Rollbacks started, by cause: `manual`, `production_step_failed`, or the failed gate.
pub const ROLLBACKS: &str = "switchyard_rollbacks_total";
/// Gate evaluations, by outcome (`PASS`, `FAIL`, `INCONCLUSIVE`).
pub const GATE_EVALUATIONS: &str = "switchyard_gate_evaluations_total";

/// The help text of the deployment metrics, for `/metrics`.
fn describe_metrics() {
    metrics::describe_gauge!(DEPLOYMENTS, "Deployments of every tenant by state.");
    metrics::describe_counter!(ROLLBACKS, "Rollbacks started, by reason.");
    metrics::describe_counter!(GATE_EVALUATIONS, "Guard gate evaluations, by outcome.");
}

fn count_rollback(cause: &str) {
    metrics::counter!(ROLLBACKS, "reason" => cause.to_owned()).increment(1);
}

/// The probes an evaluation reads: those of the lookback window, and none from before the
/// guard began.
fn probe_window_start(d: &Deployment, now: DateTime<Utc>) -> DateTime<Utc> {
    let lookback = chrono::Duration::from_std(d.guard.lookback).unwrap_or(chrono::Duration::MAX);
    let window = now.checked_sub_signed(lookback).unwrap_or(now);
    d.guard_started_at.map_or(window, |start| start.max(window))
}

/// Why a step's job did not complete.
fn failure(job: &Job) -> String {
    match job.state {
        JobState::Cancelled => format!("job {} was cancelled", job.id),
        JobState::Queued
        | JobState::Claimed
        | JobState::Running
        | JobState::Completed
        | JobState::DeadLettered => job.failures.last().map_or_else(
            || format!("job {} ended {}", job.id, job.state),
            |f| format!("job {}: {}", job.id, f.error),
        ),
    }
}

/// The driver lost a race to another replica (`Conflict`): expected, and quiet.
fn log_lost_race(d: &Deployment, e: &Error) {
    if e.kind == switchyard_types::ErrorKind::Conflict {
        tracing::debug!(deployment = %d.id, error = %e, "another replica moved the deployment on");
    } else {
        tracing::warn!(deployment = %d.id, error = %e, "deployment driver step failed");
    }
}

/// The deploy command with `{{service}}`, `{{version}}` and `{{environment}}` filled in (each
/// value is checked to hold no shell syntax).
pub fn render(template: &str, service: &str, version: &str, environment: &str) -> String {
    template
        .replace("{{service}}", service)
        .replace("{{version}}", version)
        .replace("{{environment}}", environment)
}

fn is_http_url(url: &str) -> bool {
    url.len() <= 2048
        && (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() > "https://".len()
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_rendered_from_validated_parts() {
        assert_eq!(
            render(
                "deploy {{service}}@{{version}} --to {{environment}}",
                "api",
                "1.2.3",
                "staging"
            ),
            "deploy api@1.2.3 --to staging"
        );
        assert!(is_http_url("http://127.0.0.1:8080/health"));
        assert!(!is_http_url("ftp://x"));
        assert!(!is_http_url("http://a b"));
    }
}
