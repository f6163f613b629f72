//! Agents and their one stream (DESIGN §3.5): registration, push dispatch against the agent's
//! credits, lease renewal by heartbeat, fenced job reports, reconnects and drain. The stream is
//! transport-neutral: [`FromAgent`] in, [`ToAgent`] out; the gRPC adapter converts.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use switchyard_pki::Signer;
use switchyard_store::{AgentStore, Beat, StreamBeat};
use switchyard_types::{
    Activity, Agent, AgentCertificate, AgentHello, AgentId, AgentStatus, ArtifactGrant, Error,
    ErrorKind, INGEST_KIND, Job, JobId, JobState, Labels, Outcome, Principal, Result, SpiffeId,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::dispatch::{Cancels, Door, Doors, Heartbeats};
use crate::ingest::ArtifactGrants;
use crate::queue::{ClaimJobs, Queue};
use crate::validate::Violations;

/// How many heartbeat intervals an agent may withhold free slots while work waits before it is
/// `DEGRADED`.
pub const DEAF_INTERVALS: u32 = 3;

/// The longest an artifact grant lives, whatever the job's timeout.
const MAX_GRANT_TTL: Duration = Duration::from_secs(86_400);

/// Leeway for the database clock, which stamps heartbeats, against this replica's (at most
/// half an interval).
const CLOCK_SLACK: Duration = Duration::from_secs(1);

/// Timings of the stream; the defaults are the documented ones.
#[derive(Debug, Clone)]
pub struct AgentsConfig {
    /// How often agents send `Heartbeat` (10 s). A stream silent for three intervals ends.
    pub heartbeat_interval: Duration,
    /// The lease of every pushed job, renewed by each heartbeat (30 s).
    pub lease: Duration,
    /// How long a new stream may take to say `Hello` (10 s).
    pub hello_timeout: Duration,
    /// How often a pool's door looks for due work without a wake-up (5 s, jittered): the bus
    /// announces new work; the look catches delayed jobs and retries coming due.
    pub idle_recheck: Duration,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            heartbeat_interval: Duration::from_secs(10),
            lease: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(10),
            idle_recheck: Duration::from_secs(5),
        }
    }
}

/// What an agent says on its stream.
#[derive(Debug, Clone, PartialEq)]
pub enum FromAgent {
    /// Who it is; first message of every stream.
    Hello(Hello),
    /// Liveness; renews every lease it holds.
    Heartbeat,
    /// This many more free slots.
    Credits(u32),
    /// A job's attempt began running.
    Started(JobId, u32),
    /// Output of a job's attempt: sequence number and text.
    Log(JobId, u32, u64, String),
    /// A job's attempt ended.
    Finished(JobId, u32, Outcome),
    /// How far a job's attempt is: percent done, 0-100.
    Progress(JobId, u32, u8),
    /// A fresh certificate, please, for the key of this signing request (PKCS #10, DER).
    Renew(Vec<u8>),
}

/// An agent's `Hello`, as it sent it (not yet validated).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hello {
    /// Its name, unique in the tenant.
    pub name: String,
    /// Its pool.
    pub pool: String,
    /// Its labels.
    pub labels: Labels,
    /// Jobs it can run at once.
    pub capacity: u32,
    /// Jobs it still runs from an earlier stream, with their attempts.
    pub running: Vec<(JobId, u32)>,
    /// Its version.
    pub version: String,
}

/// What the server says on an agent's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ToAgent {
    /// The answer to `Hello`.
    Welcome {
        /// The registry id.
        agent_id: AgentId,
        /// How often to heartbeat.
        heartbeat_interval: Duration,
        /// The lease of every pushed job.
        lease: Duration,
    },
    /// Run this job (claimed for the agent, attempt bumped).
    Assign {
        /// The job.
        job: Box<Job>,
        /// For an `ingest` job: the grant to fetch its artifacts with (see
        /// [`ArtifactGrants`]), when this server issues grants.
        artifact_grant: Option<String>,
    },
    /// Stop this attempt: the job was cancelled.
    Cancel(JobId, u32),
    /// Stop this attempt: it is no longer the agent's.
    LeaseLost(JobId, u32, String),
    /// This replica is shutting down: reconnect elsewhere.
    Drain(String),
    /// The answer to `Heartbeat`: how many leases were renewed.
    HeartbeatAck(u32),
    /// The answer to `Renew`.
    Certificate(Box<AgentCertificate>),
}

/// The agents service: the registry and the streams of this replica.
#[derive(Clone)]
pub struct Agents {
    queue: Queue,
    store: Arc<dyn AgentStore>,
    config: AgentsConfig,
    draining: CancellationToken,
    signer: Option<Signer>,
    grants: Option<Arc<dyn ArtifactGrants>>,
    shared: Arc<Shared>,
}

/// What this replica's streams share: see [`crate::dispatch`].
struct Shared {
    doors: Doors,
    heartbeats: Heartbeats,
    cancels: Arc<Cancels>,
}

impl Agents {
    /// The service over `queue` and the registry in `store`.
    pub fn new(queue: Queue, store: Arc<dyn AgentStore>, config: AgentsConfig) -> Self {
        Agents {
            shared: Arc::new(Shared {
                doors: Doors::new(queue.clone(), config.idle_recheck),
                heartbeats: Heartbeats::new(store.clone()),
                cancels: Arc::new(Cancels::new(queue.clone())),
            }),
            queue,
            store,
            config,
            draining: CancellationToken::new(),
            signer: None,
            grants: None,
        }
    }

    /// Renews agents' certificates over their streams with `signer`.
    pub fn with_signer(mut self, signer: Signer) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Sends every `ingest` job's `Assign` with a grant from `grants`, so its agent can fetch
    /// the job's artifacts.
    pub fn with_grants(mut self, grants: Arc<dyn ArtifactGrants>) -> Self {
        self.grants = Some(grants);
        self
    }

    /// The `Assign` of `job`: with an artifact grant for an `ingest` job, valid for the job's
    /// timeout but at least three leases (a job outlives a few renewals) and at most
    /// [`MAX_GRANT_TTL`]. A grant that cannot be issued is left out (the agent's fetch then
    /// fails, and the job with it) rather than holding the job back.
    fn assign(&self, job: Job) -> ToAgent {
        let artifact_grant = match &self.grants {
            Some(grants) if job.kind == INGEST_KIND => {
                let ttl = job.timeout.max(self.config.lease * 3).min(MAX_GRANT_TTL);
                let grant = ArtifactGrant {
                    tenant: job.tenant.clone(),
                    job: job.id,
                    attempt: job.attempt,
                };
                grants
                    .issue(&grant, ttl)
                    .inspect_err(|e| tracing::warn!(error = %e, job = %job.id, "cannot issue an artifact grant"))
                    .ok()
            }
            Some(_) | None => None,
        };
        ToAgent::Assign {
            job: Box::new(job),
            artifact_grant,
        }
    }

    /// The timings in force.
    pub fn config(&self) -> &AgentsConfig {
        &self.config
    }

    /// The registry.
    pub(crate) fn store(&self) -> &dyn AgentStore {
        &*self.store
    }

    /// The queue the agents take work from.
    pub(crate) fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The replica is shutting down: every stream is sent `Drain` and ends; the agents keep
    /// their jobs and reconnect to another replica.
    pub fn drain(&self) {
        self.draining.cancel();
    }

    /// The caller's agents (of `pool` only, when given), most recently seen first.
    pub async fn list(&self, who: &Principal, pool: Option<&str>) -> Result<Vec<Agent>> {
        if let Some(pool) = pool {
            let mut v = Violations::default();
            v.name("pool", pool);
            v.finish()?;
        }
        let agents = self.store.list_agents(&who.tenant, pool).await?;
        Ok(agents.into_iter().map(|a| self.present(a)).collect())
    }

    /// One of the caller's agents.
    pub async fn get(&self, who: &Principal, id: AgentId) -> Result<Agent> {
        Ok(self.present(self.store.agent(&who.tenant, id).await?))
    }

    /// Deregisters one of the caller's agents: `TERMINATED`, its certificate refused from now
    /// on, its live stream ended at its next heartbeat.
    pub async fn deregister(&self, who: &Principal, id: AgentId) -> Result<Agent> {
        let agent = self.store.deregister_agent(&who.tenant, id).await?;
        self.queue.bus_announce(Activity::agent(&agent));
        tracing::info!(agent = %id, name = %agent.name, by = %who.subject, "agent deregistered");
        Ok(agent)
    }

    /// An operator sets an agent's status: `TERMINATING` drains it (it finishes its jobs and
    /// takes no new ones, from its next heartbeat on), `HEALTHY` undrains it.
    pub async fn set_status(
        &self,
        who: &Principal,
        id: AgentId,
        status: AgentStatus,
    ) -> Result<Agent> {
        let draining = match status {
            AgentStatus::Terminating => true,
            AgentStatus::Healthy => false,
            AgentStatus::Registering
            | AgentStatus::Degraded
            | AgentStatus::Unhealthy
            | AgentStatus::Offline
            | AgentStatus::Terminated => {
                return Err(Error::invalid(
                    "status",
                    "must be TERMINATING (drain) or HEALTHY (undrain); deregister to terminate",
                ));
            }
        };
        let agent = self
            .store
            .set_agent_draining(&who.tenant, id, draining)
            .await?;
        tracing::info!(agent = %id, name = %agent.name, draining, by = %who.subject, "agent drain set");
        let agent = self.present(agent);
        self.queue.bus_announce(Activity::agent(&agent));
        Ok(agent)
    }

    /// A heartbeat without a stream, for simple clients: agent `id`, or the agent the caller's
    /// certificate names (`certified`). Clients heartbeat every interval or show `UNHEALTHY`.
    pub async fn heartbeat(
        &self,
        who: &Principal,
        certified: Option<&SpiffeId>,
        id: Option<AgentId>,
    ) -> Result<Agent> {
        let id = match (certified, id) {
            (Some(c), None) => c.agent,
            (Some(c), Some(id)) if c.agent == id => id,
            (Some(_), Some(_)) => {
                return Err(Error::new(
                    ErrorKind::PermissionDenied,
                    "a certificate speaks for its own agent only",
                ));
            }
            (None, Some(id)) => id,
            (None, None) => return Err(Error::invalid("agent_id", "is required")),
        };
        Ok(self.present(self.store.touch_agent(&who.tenant, id).await?))
    }

    /// `agent` as callers see it: a connected agent whose heartbeats are two intervals late is
    /// `UNHEALTHY`, three (its replica is gone) `OFFLINE`; a drained one is `TERMINATING`.
    fn present(&self, mut agent: Agent) -> Agent {
        let connected = matches!(
            agent.status,
            AgentStatus::Registering | AgentStatus::Healthy | AgentStatus::Degraded
        );
        if connected {
            let interval = self.config.heartbeat_interval;
            let slack = CLOCK_SLACK.min(interval / 2);
            let silent = (chrono::Utc::now() - agent.last_heartbeat_at)
                .to_std()
                .unwrap_or_default();
            agent.status = if silent > interval * 3 + slack {
                AgentStatus::Offline
            } else if silent > interval * 2 + slack {
                AgentStatus::Unhealthy
            } else if agent.draining {
                AgentStatus::Terminating
            } else {
                agent.status
            };
        }
        agent
    }

    /// Serves one agent stream until it ends: `Ok` when the agent closed it, went silent or was
    /// drained; an error to report to the agent otherwise (a bad `Hello`, a replaced stream, a
    /// deregistered agent, a store that is down). `certified` is the identity of the agent's
    /// client certificate; without one, the agent is registered by the name in its `Hello`.
    pub async fn serve<S>(
        &self,
        who: Principal,
        certified: Option<SpiffeId>,
        mut inbound: S,
        out: mpsc::Sender<ToAgent>,
    ) -> Result<()>
    where
        S: Stream<Item = Result<FromAgent>> + Unpin + Send,
    {
        let hello = match tokio::time::timeout(self.config.hello_timeout, inbound.next()).await {
            Ok(Some(Ok(FromAgent::Hello(hello)))) => hello,
            Ok(Some(Ok(_))) => {
                return Err(Error::invalid("hello", "the first message must be Hello"));
            }
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) => return Ok(()),
            Err(_) => {
                return Err(Error::invalid("hello", "no Hello within the time allowed"));
            }
        };
        let session = Session::open(self, who, certified, hello, out).await?;
        let ended = session.run(&mut inbound).await;
        session.close().await;
        ended
    }
}

/// Checks a `Hello`.
fn validate(hello: &Hello) -> Result<()> {
    let mut v = Violations::default();
    v.key("name", &hello.name, 128);
    v.name("pool", &hello.pool);
    v.labels("labels", &hello.labels);
    v.range("capacity", hello.capacity.into(), 1, 1000);
    if hello.running.len() > 1000 {
        v.add("running", "at most 1000 jobs");
    }
    if hello.version.len() > 64 || hello.version.chars().any(char::is_control) {
        v.add(
            "version",
            "must be at most 64 characters without control characters",
        );
    }
    v.finish()
}

/// One connected agent.
struct Session {
    agents: Agents,
    who: Principal,
    /// The identity of its client certificate, if it presented one.
    certified: Option<SpiffeId>,
    agent: Agent,
    session: Uuid,
    out: mpsc::Sender<ToAgent>,
    /// Jobs the agent holds.
    held: Holdings,
    /// Cancellations of held jobs, routed here from the bus.
    cancelled: Mutex<Option<mpsc::UnboundedReceiver<JobId>>>,
    /// The doorbell of the agent's pool.
    door: Arc<Door>,
    /// Free slots granted and not yet used.
    credits: Arc<Mutex<u32>>,
    more_credits: Arc<Notify>,
    /// Whether an operator drains the agent (learnt at each heartbeat): no new work.
    draining: watch::Sender<bool>,
    /// Since when the agent has offered fewer slots than it has free, if it has.
    withholding_since: Mutex<Option<tokio::time::Instant>>,
    stop: CancellationToken,
}

impl Session {
    /// Registers the agent, welcomes it and takes back the jobs it still runs.
    async fn open(
        agents: &Agents,
        who: Principal,
        certified: Option<SpiffeId>,
        hello: Hello,
        out: mpsc::Sender<ToAgent>,
    ) -> Result<Session> {
        validate(&hello)?;
        let session = Uuid::new_v4();
        let agent = agents
            .store
            .connect_agent(&AgentHello {
                id: certified.as_ref().map(|c| c.agent),
                tenant: who.tenant.clone(),
                name: hello.name.clone(),
                pool: hello.pool.clone(),
                labels: hello.labels.clone(),
                capacity: hello.capacity,
                version: hello.version.clone(),
                session,
            })
            .await?;
        tracing::info!(agent = %agent.name, pool = %agent.pool, tenant = %who.tenant, "agent connected");
        agents.queue.bus_announce(Activity::agent(&agent));
        let agent_draining = agent.draining;
        let (cancel_to, cancelled) = mpsc::unbounded_channel();
        let door = agents.shared.doors.door(&who, &agent.pool);
        let s = Session {
            agents: agents.clone(),
            who,
            certified,
            agent,
            session,
            out,
            held: Holdings {
                jobs: Arc::default(),
                cancels: agents.shared.cancels.clone(),
                to: cancel_to,
            },
            cancelled: Mutex::new(Some(cancelled)),
            door,
            credits: Arc::default(),
            more_credits: Arc::default(),
            draining: watch::Sender::new(agent_draining),
            withholding_since: Mutex::new(None),
            stop: CancellationToken::new(),
        };
        s.send(ToAgent::Welcome {
            agent_id: s.agent.id,
            heartbeat_interval: agents.config.heartbeat_interval,
            lease: agents.config.lease,
        })
        .await;
        for (id, attempt) in hello.running {
            s.take_back(id, attempt).await?;
        }
        Ok(s)
    }

    async fn send(&self, message: ToAgent) {
        // A closed stream ends the session through its inbound side.
        let _ = self.out.send(message).await;
    }

    fn holds(&self, id: JobId, attempt: u32) -> bool {
        self.held.get(id) == Some(attempt)
    }

    /// A job the agent says it still runs: kept (lease renewed) when its current attempt is
    /// still leased to this agent, else `LeaseLost`.
    async fn take_back(&self, id: JobId, attempt: u32) -> Result<()> {
        let mine = match self.agents.queue.get(&self.who, id).await {
            Ok(job) => {
                job.attempt == attempt
                    && matches!(job.state, JobState::Claimed | JobState::Running)
                    && job.claimed_by.as_deref() == Some(self.agent.name.as_str())
            }
            Err(e) if e.kind == ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if mine {
            self.held.insert(id, attempt);
            if self.renew(id, attempt).await? {
                return Ok(());
            }
        }
        self.send(ToAgent::LeaseLost(
            id,
            attempt,
            "the attempt is no longer this agent's".into(),
        ))
        .await;
        Ok(())
    }

    /// Renews one lease; `false` (and the job dropped, the agent told) when it is no longer
    /// this agent's.
    async fn renew(&self, id: JobId, attempt: u32) -> Result<bool> {
        let lease = self.agents.config.lease.as_secs();
        match self
            .agents
            .queue
            .extend_lease(&self.who, id, attempt, Some(lease))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if lost(&e) => {
                self.lose(id, attempt).await?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The attempt is no longer this agent's: forget it and tell the agent to stop it, as a
    /// `Cancel` when the job was cancelled.
    async fn lose(&self, id: JobId, attempt: u32) -> Result<()> {
        self.held.remove(id);
        let cancelled = match self.agents.queue.get(&self.who, id).await {
            Ok(job) => job.state == JobState::Cancelled && job.attempt == attempt,
            Err(e) if e.kind == ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        let message = if cancelled {
            ToAgent::Cancel(id, attempt)
        } else {
            ToAgent::LeaseLost(id, attempt, "the attempt is no longer this agent's".into())
        };
        self.send(message).await;
        Ok(())
    }

    /// Reads the stream until it ends, while the dispatcher pushes work.
    async fn run<S>(&self, inbound: &mut S) -> Result<()>
    where
        S: Stream<Item = Result<FromAgent>> + Unpin + Send,
    {
        let dispatcher = tokio::spawn(self.dispatcher());
        let silence = self.agents.config.heartbeat_interval * 3;
        let mut cancelled = self
            .cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("a session runs once");
        let ended = loop {
            tokio::select! {
                Some(job) = cancelled.recv() => {
                    if let Some(attempt) = self.held.get(job)
                        && let Err(e) = self.lose(job, attempt).await
                    {
                        break Err(e);
                    }
                }
                next = tokio::time::timeout(silence, inbound.next()) => match next {
                    Err(_) => {
                        tracing::warn!(agent = %self.agent.name, "agent silent for three heartbeat intervals; closing its stream");
                        break Ok(());
                    }
                    Ok(None) => break Ok(()),
                    Ok(Some(Err(e))) => break Err(e),
                    Ok(Some(Ok(message))) => {
                        if let Err(e) = self.handle(message).await {
                            break Err(e);
                        }
                    }
                },
                () = self.agents.draining.cancelled() => {
                    self.send(ToAgent::Drain("this replica is shutting down".into())).await;
                    break Ok(());
                }
            }
        };
        self.stop.cancel();
        let _ = dispatcher.await;
        ended
    }

    async fn handle(&self, message: FromAgent) -> Result<()> {
        match message {
            FromAgent::Hello(_) => Err(Error::invalid("hello", "Hello only opens a stream")),
            FromAgent::Heartbeat => self.heartbeat().await,
            FromAgent::Credits(add) => {
                if add == 0 || add > 1000 {
                    return Err(Error::invalid("credits.add", "must be between 1 and 1000"));
                }
                let free = self.agent.capacity.saturating_sub(self.held.len() as u32);
                let mut credits = self.credits.lock().unwrap_or_else(|e| e.into_inner());
                *credits = credits.saturating_add(add).min(free);
                self.more_credits.notify_one();
                Ok(())
            }
            FromAgent::Started(id, attempt) => {
                if !self.holds(id, attempt) {
                    return self.lose(id, attempt).await;
                }
                let lease = self.agents.config.lease;
                match self
                    .agents
                    .queue
                    .start_leased(&self.who, id, attempt, lease)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if lost(&e) => self.lose(id, attempt).await,
                    Err(e) => Err(e),
                }
            }
            FromAgent::Log(id, attempt, seq, data) => {
                if !self.holds(id, attempt) {
                    return self.lose(id, attempt).await;
                }
                self.agents
                    .queue
                    .append_log(&self.who, id, attempt, seq, &data)
                    .await
                    .map(drop)
            }
            FromAgent::Finished(id, attempt, outcome) => {
                if !self.holds(id, attempt) {
                    return self.lose(id, attempt).await;
                }
                match self
                    .agents
                    .queue
                    .complete(&self.who, id, attempt, outcome)
                    .await
                {
                    Ok(_) => {
                        self.held.remove(id);
                        Ok(())
                    }
                    Err(e) if lost(&e) => self.lose(id, attempt).await,
                    Err(e) => Err(e),
                }
            }
            FromAgent::Progress(id, attempt, percent) => {
                if !self.holds(id, attempt) {
                    return self.lose(id, attempt).await;
                }
                match self
                    .agents
                    .queue
                    .report_progress(&self.who, id, attempt, percent)
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) if lost(&e) => self.lose(id, attempt).await,
                    Err(e) => Err(e),
                }
            }
            FromAgent::Renew(csr) => {
                let (Some(identity), Some(signer)) = (&self.certified, &self.agents.signer) else {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        "only an agent connected with a client certificate, to a control plane \
                         holding the CA key, can renew its certificate",
                    ));
                };
                let certificate = signer.certify(identity, &csr)?;
                tracing::info!(agent = %self.agent.name, expires_at = %certificate.expires_at, "agent certificate renewed");
                self.send(ToAgent::Certificate(Box::new(certificate))).await;
                Ok(())
            }
        }
    }

    /// Renews every lease the agent holds and records the heartbeat, with the agent's state as
    /// this stream sees it; learns whether an operator drains it.
    async fn heartbeat(&self) -> Result<()> {
        // The beat extends the agent's lease, which keeps every job it holds leased: no job row
        // is written. One read finds held attempts that ended without an event reaching this
        // replica (a cancel while the bus was down, say); the agent is told to stop them.
        let held = self.held.snapshot();
        let current: HashSet<JobId> = self
            .agents
            .queue
            .current_attempts(&self.who, &held)
            .await?
            .into_iter()
            .collect();
        for (id, attempt) in held {
            if !current.contains(&id) {
                self.lose(id, attempt).await?;
            }
        }
        let renewed = u32::try_from(self.held.len()).unwrap_or(u32::MAX);
        let running = u32::try_from(self.held.len()).unwrap_or(u32::MAX);
        let status = if self.deaf().await? {
            AgentStatus::Degraded
        } else {
            AgentStatus::Healthy
        };
        let draining = self
            .agents
            .shared
            .heartbeats
            .beat(StreamBeat {
                tenant: self.who.tenant.clone(),
                id: self.agent.id,
                session: self.session,
                beat: Beat {
                    running,
                    status,
                    lease: self.agents.config.lease,
                },
            })
            .await?;
        let Some(draining) = draining else {
            return Err(Error::new(
                ErrorKind::Conflict,
                "this stream no longer speaks for the agent: a newer stream replaced it, or the \
                 agent was deregistered",
            ));
        };
        // Only a change wakes the dispatcher (`send_replace` would wake it at every beat).
        let changed = self.draining.send_if_modified(|current| {
            let changed = *current != draining;
            *current = draining;
            changed
        });
        if changed {
            tracing::info!(agent = %self.agent.name, draining, "agent drain changed");
            self.more_credits.notify_one();
        }
        self.send(ToAgent::HeartbeatAck(renewed)).await;
        Ok(())
    }

    /// Whether the agent is "deaf": for [`DEAF_INTERVALS`] heartbeat intervals it has offered
    /// fewer slots than it has free while matching work waits in its pool.
    async fn deaf(&self) -> Result<bool> {
        let free = self
            .agent
            .capacity
            .saturating_sub(u32::try_from(self.held.len()).unwrap_or(u32::MAX));
        let offered = *self.credits.lock().unwrap_or_else(|e| e.into_inner());
        let since = {
            let mut since = self
                .withholding_since
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if offered >= free || *self.draining.borrow() {
                *since = None;
                return Ok(false);
            }
            *since.get_or_insert_with(tokio::time::Instant::now)
        };
        if since.elapsed() < self.agents.config.heartbeat_interval * DEAF_INTERVALS {
            return Ok(false);
        }
        self.agents
            .queue
            .has_due_jobs(&self.who, &self.agent.pool)
            .await
    }

    /// Pushes work while the agent has credits: one claim for as many jobs as it has credits;
    /// with none due, it waits at its pool's door (see [`crate::dispatch`]).
    fn dispatcher(&self) -> impl Future<Output = ()> + Send + 'static {
        let queue = self.agents.queue.clone();
        let who = self.who.clone();
        let claim = ClaimJobs {
            agent_id: self.agent.name.clone(),
            pool: self.agent.pool.clone(),
            labels: self.agent.labels.clone(),
            max_jobs: None,
            lease_seconds: Some(self.agents.config.lease.as_secs()),
            wait: Duration::ZERO,
            holder: Some(self.agent.id),
        };
        let agents = self.agents.clone();
        let (held, credits, more, stop, out, door) = (
            self.held.clone(),
            self.credits.clone(),
            self.more_credits.clone(),
            self.stop.clone(),
            self.out.clone(),
            self.door.clone(),
        );
        let mut draining = self.draining.subscribe();
        async move {
            loop {
                let want = *credits.lock().unwrap_or_else(|e| e.into_inner());
                if want == 0 || *draining.borrow_and_update() {
                    tokio::select! {
                        () = more.notified() => continue,
                        () = stop.cancelled() => return,
                    }
                }
                // Listen before looking, so a ring between the look and the wait is kept.
                let rung = door.bell.notified();
                tokio::pin!(rung);
                rung.as_mut().enable();
                let want = want.min(100);
                let req = ClaimJobs {
                    max_jobs: Some(want),
                    ..claim.clone()
                };
                let jobs = match queue.claim_until(&who, req, &stop).await {
                    Ok(jobs) => jobs,
                    Err(e) => {
                        tracing::warn!(error = %e, agent = %claim.agent_id, "claim for an agent failed; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                            () = stop.cancelled() => return,
                        }
                    }
                };
                if jobs.is_empty() {
                    tokio::select! {
                        () = &mut rung => {}
                        () = more.notified() => {}
                        changed = draining.changed() => if changed.is_err() { return },
                        () = stop.cancelled() => return,
                    }
                    continue;
                }
                if jobs.len() == want as usize {
                    // There may be more: the next waiting stream looks too.
                    door.bell.notify_one();
                }
                for job in jobs {
                    {
                        let mut credits = credits.lock().unwrap_or_else(|e| e.into_inner());
                        *credits = credits.saturating_sub(1);
                    }
                    held.insert(job.id, job.attempt);
                    // If the stream is gone the job stays leased to the agent, which may
                    // reconnect and take it back; otherwise the reaper requeues it.
                    let _ = out.send(agents.assign(job)).await;
                }
                if stop.is_cancelled() {
                    return;
                }
            }
        }
    }

    /// The stream ended: the agent is offline (its jobs stay leased until they expire, so a
    /// reconnect to any replica keeps them).
    async fn close(&self) {
        if let Err(e) = self
            .agents
            .store
            .disconnect_agent(
                &self.who.tenant,
                self.agent.id,
                self.session,
                AgentStatus::Offline,
            )
            .await
        {
            tracing::warn!(error = %e, agent = %self.agent.name, "could not record the agent's disconnect");
        }
        tracing::info!(agent = %self.agent.name, held = self.held.len(), "agent disconnected");
        let offline = Agent {
            status: AgentStatus::Offline,
            ..self.agent.clone()
        };
        self.agents.queue.bus_announce(Activity::agent(&offline));
        self.held.release_all();
    }
}

/// The jobs a stream holds (id -> attempt), each registered so its cancellation reaches the
/// stream.
#[derive(Clone)]
struct Holdings {
    jobs: Arc<Mutex<HashMap<JobId, u32>>>,
    cancels: Arc<Cancels>,
    to: mpsc::UnboundedSender<JobId>,
}

impl Holdings {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, u32>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, id: JobId, attempt: u32) {
        self.lock().insert(id, attempt);
        self.cancels.hold(id, &self.to);
    }

    fn remove(&self, id: JobId) {
        self.lock().remove(&id);
        self.cancels.release(id);
    }

    fn get(&self, id: JobId) -> Option<u32> {
        self.lock().get(&id).copied()
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn snapshot(&self) -> Vec<(JobId, u32)> {
        self.lock().iter().map(|(id, a)| (*id, *a)).collect()
    }

    /// The stream ended: its jobs are no longer routed here (a reconnect registers them anew).
    fn release_all(&self) {
        for (id, _) in self.snapshot() {
            self.cancels.release(id);
        }
    }
}

/// Whether a job write failed because the attempt is not (or no longer) the agent's.
fn lost(e: &Error) -> bool {
    matches!(e.kind, ErrorKind::Conflict | ErrorKind::NotFound)
}
