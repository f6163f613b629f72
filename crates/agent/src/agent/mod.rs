//! The agent loop: one task that owns the session, the running jobs and the reports, and
//! reacts to one event at a time (a server message, a job's output or end, room to send, a
//! timer, shutdown). Nothing here blocks, so jobs keep running and reporting across
//! reconnects.

use std::pin::Pin;
use std::time::Duration;

use switchyard_proto::v1::connect_response::Body as Message;
use switchyard_proto::v1::{ConnectRequest, HeldJob, Hello};
use tokio::sync::mpsc::{self, OwnedPermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::certs::CertDir;
use crate::config::AgentConfig;
use crate::dial::{Dialer, Failure};
use crate::executor::Executors;
use crate::jobs::{JobEvent, Jobs, Stop};
use crate::outbox::Outbox;
use crate::session::Session;
use crate::wait;

mod handlers;
mod renewal;

/// Job events waiting for the loop; a full queue pauses the jobs' output.
const JOB_EVENTS: usize = 1024;
/// After shutdown, how long the agent tries to deliver its last reports.
const FLUSH_FOR: Duration = Duration::from_secs(5);
/// The error of a job the agent stopped because it could not renew its lease.
const ABANDONED: &str = "abandoned: lease could not be renewed";
/// The error of a job refused or stopped because the agent is shutting down.
const SHUTTING_DOWN: &str = "agent shutting down";

type Dialing = Pin<Box<dyn Future<Output = Result<Session, Failure>> + Send>>;

/// The shutdown in progress.
struct Stopping {
    /// When running jobs are killed (until they are).
    kill_at: Option<Instant>,
    /// When the agent stops trying to deliver reports (set once no job runs).
    give_up_at: Option<Instant>,
}

/// What woke the loop.
enum Event {
    Shutdown,
    Job(JobEvent),
    Dialed(Result<Session, Failure>),
    Received(Result<Option<Message>, Failure>),
    Room(OwnedPermit<ConnectRequest>),
    Tick,
}

/// The agent's state.
pub(crate) struct Agent {
    config: AgentConfig,
    dialer: Dialer,
    backoff: Backoff,
    jobs: Jobs,
    events: mpsc::Receiver<JobEvent>,
    outbox: Outbox,
    session: Option<Session>,
    dialing: Option<Dialing>,
    /// When to dial next, while neither connected nor dialing.
    redial_at: Option<Instant>,
    /// The last moment every lease was known to be renewed.
    renewed: Option<Instant>,
    /// The lease of the last `Welcome`.
    lease: Duration,
    shutdown: CancellationToken,
    stopping: Option<Stopping>,
    /// The certificate directory of an agent that connects with one.
    certs: Option<CertDir>,
    /// The new key whose certificate was requested on this stream and not delivered yet.
    renewing: Option<switchyard_pki::AgentKey>,
    /// No renewal before this (after one failed).
    renew_after: Option<chrono::DateTime<chrono::Utc>>,
}

impl Agent {
    /// An agent, not connected yet; `certs` when it connects with a client certificate.
    pub(crate) fn new(
        config: AgentConfig,
        executors: Executors,
        dialer: Dialer,
        certs: Option<CertDir>,
        shutdown: CancellationToken,
    ) -> Self {
        let (events_tx, events) = mpsc::channel(JOB_EVENTS);
        Self {
            config,
            dialer,
            backoff: Backoff::default(),
            jobs: Jobs::new(executors, events_tx),
            events,
            outbox: Outbox::default(),
            session: None,
            dialing: None,
            redial_at: Some(Instant::now()),
            renewed: None,
            lease: Duration::ZERO,
            shutdown,
            stopping: None,
            certs,
            renewing: None,
            renew_after: None,
        }
    }

    /// Runs until shut down and done.
    pub(crate) async fn run(mut self) {
        while !self.done() {
            match self.next_event().await {
                Event::Shutdown => self.begin_shutdown(),
                Event::Job(JobEvent::Log(chunk)) => self.on_log(chunk),
                Event::Job(JobEvent::Progress(progress)) => self.on_progress(progress),
                Event::Job(JobEvent::Ended { key, outcome }) => self.on_ended(key, outcome),
                Event::Dialed(Ok(session)) => self.on_welcome(session),
                Event::Dialed(Err(failure)) => self.on_failure(&failure),
                Event::Received(Ok(Some(message))) => self.on_message(message),
                Event::Received(Ok(None)) => {}
                Event::Received(Err(failure)) => self.on_failure(&failure),
                Event::Room(permit) => {
                    if let Some(session) = &mut self.session {
                        session.send(permit, &mut self.outbox);
                    }
                }
                Event::Tick => self.on_tick(Instant::now()),
            }
        }
        if let Some(session) = self.session.take() {
            session.hang_up().await;
        }
        tracing::info!("agent stopped");
    }

    async fn next_event(&mut self) -> Event {
        let sender = self.session.as_ref().and_then(|s| s.sender(&self.outbox));
        let wake_at = self.wake_at();
        tokio::select! {
            () = self.shutdown.cancelled(), if self.stopping.is_none() => Event::Shutdown,
            Some(event) = self.events.recv() => Event::Job(event),
            dialed = wait::on(self.dialing.as_mut()) => {
                self.dialing = None;
                Event::Dialed(dialed)
            }
            received = recv(&mut self.session) => Event::Received(received),
            Ok(permit) = reserve(sender) => Event::Room(permit),
            () = wait::until(wake_at) => Event::Tick,
        }
    }

    /// The earliest timer: redial, heartbeat or silence, self-fencing, shutdown steps,
    /// certificate renewal.
    fn wake_at(&self) -> Option<Instant> {
        let stopping = self.stopping.as_ref();
        [
            self.renewal_wake_at(),
            self.redial_at,
            self.session.as_ref().map(Session::deadline),
            self.jobs.fence_deadline(self.renewed, self.fence_after()),
            stopping.and_then(|s| s.kill_at),
            stopping.and_then(|s| s.give_up_at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Self-fencing stops jobs whose lease was not renewed for two thirds of it.
    fn fence_after(&self) -> Duration {
        self.lease * 2 / 3
    }

    fn on_tick(&mut self, now: Instant) {
        if self.redial_at.is_some_and(|at| at <= now) {
            self.redial_at = None;
            let hello = self.hello();
            self.dialing = Some(Box::pin(self.dialer.dial(hello)));
        }
        if let Some(Err(failure)) = self.session.as_mut().map(|s| s.tick(now)) {
            self.on_failure(&failure);
        }
        self.renew_if_due();
        for key in self.jobs.overdue(self.renewed, self.fence_after(), now) {
            tracing::warn!(job = %key, "lease not renewed for 2/3 of it: stopping the job");
            self.jobs.stop(&key, Stop::Abandoned);
        }
        if let Some(stopping) = &mut self.stopping
            && stopping.kill_at.is_some_and(|at| at <= now)
        {
            stopping.kill_at = None;
            tracing::warn!(
                jobs = self.jobs.len(),
                "shutdown grace over: stopping the jobs left"
            );
            self.jobs.stop_all(Stop::Shutdown);
        }
    }

    fn begin_shutdown(&mut self) {
        let grace = self.config.shutdown_grace;
        tracing::info!(
            jobs = self.jobs.len(),
            ?grace,
            "shutting down: taking no new jobs"
        );
        let now = Instant::now();
        self.stopping = Some(Stopping {
            kill_at: Some(now + grace),
            give_up_at: None,
        });
        self.outbox.drop_credits();
        self.on_tick(now);
    }

    /// Whether the agent may stop: shutting down, no job left, and every report known to be
    /// delivered, or [`FLUSH_FOR`] over since the last job ended.
    fn done(&mut self) -> bool {
        let Some(stopping) = &mut self.stopping else {
            return false;
        };
        if self.jobs.len() > 0 {
            return false;
        }
        let now = Instant::now();
        stopping.give_up_at.get_or_insert(now + FLUSH_FOR);
        let delivered = self.outbox.is_empty()
            && self.session.as_mut().is_none_or(|session| {
                session.confirm();
                session.settled()
            });
        delivered || self.give_up(now)
    }

    /// Whether the time to deliver the last reports is over (then says so).
    fn give_up(&self, now: Instant) -> bool {
        let over = self
            .stopping
            .as_ref()
            .and_then(|s| s.give_up_at)
            .is_some_and(|at| at <= now);
        if over {
            tracing::warn!("shutting down with reports not known to be delivered");
        }
        over
    }

    /// The `Hello` of a new stream. `running` lists the jobs still running and those whose end
    /// is waiting to be reported (the server takes an attempt back only if it is listed, and
    /// accepts its end only then), but not the jobs stopped by self-fencing.
    fn hello(&self) -> Hello {
        let mut running = self.jobs.held_jobs();
        let unreported = self
            .outbox
            .finished_reports()
            .filter(|r| r.error != ABANDONED);
        running.extend(unreported.map(|r| HeldJob {
            job_id: r.job_id.clone(),
            attempt: r.attempt,
        }));
        Hello {
            name: self.config.name.clone(),
            pool: self.config.pool.clone(),
            labels: self.config.labels.clone(),
            capacity: self.config.capacity,
            running,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// Takes a new session: queued reports go first, then the credits of the free slots (the
    /// server counts a job it took back as held until its end arrives).
    fn on_welcome(&mut self, session: Session) {
        tracing::info!(server = %session.server, agent_id = %session.agent_id, "connected");
        self.backoff.reset();
        self.lease = session.lease;
        let free = self.free_slots();
        if self.stopping.is_none() && free > 0 {
            self.outbox.credits(free);
        }
        self.session = Some(session);
    }

    /// Ends the session (if any) after `failure` and schedules the next dial.
    fn on_failure(&mut self, failure: &Failure) {
        if failure.is_rejection() {
            tracing::error!(error = %failure, "the control plane rejected the agent; retrying");
        } else {
            tracing::warn!(error = %failure, "disconnected; retrying");
        }
        self.on_renewal_failure(failure);
        let delay = self.backoff.next_delay();
        self.disconnect(Some(delay));
    }

    /// Drops the session; its unconfirmed reports go back to the outbox. Redials after
    /// `delay`, or at once without one.
    fn disconnect(&mut self, delay: Option<Duration>) {
        if let Some(session) = self.session.take() {
            self.outbox.requeue(session.close());
            self.outbox.drop_credits();
        }
        if self.renewing.take().is_some() {
            tracing::info!("certificate renewal unanswered: asking again on the next stream");
        }
        self.redial_at = Some(Instant::now() + delay.unwrap_or_default());
    }

    /// Slots not taken by a job task.
    fn free_slots(&self) -> u32 {
        let held = u32::try_from(self.jobs.len()).unwrap_or(u32::MAX);
        self.config.capacity.saturating_sub(held)
    }
}

/// The next message of the session; never, without one.
async fn recv(session: &mut Option<Session>) -> Result<Option<Message>, Failure> {
    match session {
        Some(session) => session.recv().await,
        None => std::future::pending().await,
    }
}

/// Room for one message on the stream; never, when there is nothing to send.
async fn reserve(
    sender: Option<mpsc::Sender<ConnectRequest>>,
) -> Result<OwnedPermit<ConnectRequest>, mpsc::error::SendError<()>> {
    match sender {
        Some(sender) => sender.reserve_owned().await,
        None => std::future::pending().await,
    }
}
