//! A welcomed `Connect` stream and what it needs while it lives: heartbeats, noticing a
//! silent server, sending with the server's flow control, and knowing which `JobFinished`
//! reports surely arrived.
//!
//! A report is known to have arrived once a `HeartbeatAck` answers a `Heartbeat` sent after
//! it (the stream is ordered). Reports not known to have arrived when the stream breaks are
//! sent again on the next one.

use std::collections::VecDeque;
use std::time::Duration;

use switchyard_proto::v1::connect_request::Body;
use switchyard_proto::v1::{
    ConnectRequest, ConnectResponse, Heartbeat, RenewCertificate, Welcome, connect_response,
};
use tokio::sync::mpsc::{self, OwnedPermit};
use tokio::time::Instant;
use tonic::Streaming;

use crate::dial::Failure;
use crate::executor::Link;
use crate::jobs::JobKey;
use crate::outbox::{Outbox, key_of};

/// How long the server gets to close its side of a stream the agent ends.
const HANG_UP_FOR: Duration = Duration::from_secs(1);
/// A server silent for this many heartbeat intervals is gone.
pub(crate) const SILENT_INTERVALS: u32 = 3;
/// Used when `Welcome` leaves the heartbeat interval or the lease at 0.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// A welcomed stream.
pub(crate) struct Session {
    /// The server's address.
    pub(crate) server: String,
    /// The agent's id in the registry.
    pub(crate) agent_id: String,
    /// The lease every job gets, from `Welcome`.
    pub(crate) lease: Duration,
    /// The stream's connection and credential, for the calls jobs make (artifact fetches).
    pub(crate) link: Link,
    heartbeat_every: Duration,
    tx: mpsc::Sender<ConnectRequest>,
    inbound: Streaming<ConnectResponse>,
    /// When the server was last heard from.
    last_heard: Instant,
    next_heartbeat: Instant,
    /// Whether a heartbeat waits to be sent (before any report).
    heartbeat_due: bool,
    /// A certificate renewal request waiting to be sent (after a due heartbeat, before any
    /// report).
    renewal: Option<RenewCertificate>,
    /// Heartbeats sent and not answered: when, and how many of `unconfirmed` preceded each.
    heartbeats: VecDeque<(Instant, usize)>,
    /// Reports (`JobStarted`, log chunks, `JobFinished`; not `JobProgress`) sent but not known
    /// to have arrived:
    /// a heartbeat's ack confirms those sent before it. All are idempotent on the server (by
    /// attempt, and by sequence number for log chunks), so a resend after a broken stream is
    /// safe.
    unconfirmed: Vec<Body>,
    /// Whether a report was sent after the last heartbeat.
    sent_since_heartbeat: bool,
}

impl Session {
    /// A session on the stream `inbound` / `tx` over `link` that `welcome` opened.
    pub(crate) fn new(
        server: String,
        link: Link,
        tx: mpsc::Sender<ConnectRequest>,
        inbound: Streaming<ConnectResponse>,
        welcome: &Welcome,
    ) -> Self {
        let seconds = |s: u32, default| match s {
            0 => default,
            s => Duration::from_secs(u64::from(s)),
        };
        let now = Instant::now();
        Self {
            server,
            agent_id: welcome.agent_id.clone(),
            lease: seconds(welcome.lease_seconds, DEFAULT_LEASE),
            link,
            heartbeat_every: seconds(welcome.heartbeat_interval_seconds, DEFAULT_HEARTBEAT),
            tx,
            inbound,
            last_heard: now,
            // The first heartbeat goes at once: it renews the leases of the jobs listed in
            // `Hello.running`.
            next_heartbeat: now,
            heartbeat_due: false,
            renewal: None,
            heartbeats: VecDeque::new(),
            unconfirmed: Vec::new(),
            sent_since_heartbeat: false,
        }
    }

    /// The next message from the server (`None`: an empty one); an error when the stream ends.
    pub(crate) async fn recv(&mut self) -> Result<Option<connect_response::Body>, Failure> {
        let message = self.inbound.message().await;
        self.last_heard = Instant::now();
        match message {
            Ok(Some(message)) => Ok(message.body),
            Ok(None) => Err(Failure::Closed {
                server: self.server.clone(),
            }),
            Err(status) => Err(Failure::Status {
                server: self.server.clone(),
                status,
            }),
        }
    }

    /// A sender to reserve room with, when anything waits to be sent.
    pub(crate) fn sender(&self, outbox: &Outbox) -> Option<mpsc::Sender<ConnectRequest>> {
        (self.heartbeat_due || self.renewal.is_some() || !outbox.is_empty())
            .then(|| self.tx.clone())
    }

    /// Queues `RenewCertificate{csr}` on this stream.
    pub(crate) fn request_renewal(&mut self, csr: Vec<u8>) {
        self.renewal = Some(RenewCertificate { csr });
    }

    /// Sends the heartbeat due, or else a renewal request, or else the next report, into the
    /// reserved room.
    pub(crate) fn send(&mut self, permit: OwnedPermit<ConnectRequest>, outbox: &mut Outbox) {
        let body = if std::mem::take(&mut self.heartbeat_due) {
            Body::Heartbeat(Heartbeat {})
        } else if let Some(renewal) = self.renewal.take() {
            Body::Renew(renewal)
        } else {
            let Some(body) = outbox.pop() else {
                return;
            };
            body
        };
        match &body {
            Body::Heartbeat(_) => {
                self.heartbeats
                    .push_back((Instant::now(), self.unconfirmed.len()));
                self.sent_since_heartbeat = false;
            }
            Body::Started(_) | Body::Log(_) | Body::Finished(_) => {
                self.unconfirmed.push(body.clone());
                self.sent_since_heartbeat = true;
            }
            // Progress is advisory: a newer one (or the end) follows; never sent again.
            Body::Hello(_) | Body::Credits(_) | Body::Renew(_) | Body::Progress(_) => {}
        }
        permit.send(ConnectRequest { body: Some(body) });
    }

    /// Takes a `HeartbeatAck`: the reports sent before that heartbeat arrived. Returns when
    /// the heartbeat was sent, i.e. a moment at or before which every lease was renewed.
    pub(crate) fn acked(&mut self) -> Option<Instant> {
        let (sent_at, arrived) = self.heartbeats.pop_front()?;
        self.unconfirmed.drain(..arrived);
        for (_, before) in &mut self.heartbeats {
            *before -= arrived;
        }
        Some(sent_at)
    }

    /// When [`tick`](Self::tick) has something to do.
    pub(crate) fn deadline(&self) -> Instant {
        self.next_heartbeat.min(self.silent_at())
    }

    fn silent_at(&self) -> Instant {
        self.last_heard + self.heartbeat_every * SILENT_INTERVALS
    }

    /// Queues the heartbeat when due; fails when the server has been silent too long.
    pub(crate) fn tick(&mut self, now: Instant) -> Result<(), Failure> {
        if now >= self.silent_at() {
            return Err(Failure::Silent {
                server: self.server.clone(),
            });
        }
        if now >= self.next_heartbeat {
            self.heartbeat_due = true;
            self.next_heartbeat = now + self.heartbeat_every;
        }
        Ok(())
    }

    /// Asks for proof that every report sent so far arrived: a heartbeat, unless one is
    /// already on its way after the last report.
    pub(crate) fn confirm(&mut self) {
        if self.sent_since_heartbeat {
            self.heartbeat_due = true;
        }
    }

    /// Whether every report sent is known to have arrived and nothing waits.
    pub(crate) fn settled(&self) -> bool {
        !self.heartbeat_due && self.heartbeats.is_empty() && !self.sent_since_heartbeat
    }

    /// Forgets the unconfirmed reports about `key` (its attempt is no longer ours to report,
    /// except for what the caller queues anew).
    pub(crate) fn forget(&mut self, key: &JobKey) {
        let keep: Vec<bool> = self
            .unconfirmed
            .iter()
            .map(|body| key_of(body).as_ref() != Some(key))
            .collect();
        for (_, before) in &mut self.heartbeats {
            *before = keep[..*before].iter().filter(|k| **k).count();
        }
        let mut kept = keep.iter();
        self.unconfirmed.retain(|_| *kept.next().unwrap_or(&true));
    }

    /// Drops the stream; returns the reports that may not have arrived.
    pub(crate) fn close(self) -> Vec<Body> {
        self.unconfirmed
    }

    /// Ends the stream cleanly: closes the agent's side, then gives the server a moment to
    /// close its side.
    pub(crate) async fn hang_up(self) {
        let Self {
            tx, mut inbound, ..
        } = self;
        drop(tx);
        let rest = async { while let Ok(Some(_)) = inbound.message().await {} };
        let _ = tokio::time::timeout(HANG_UP_FOR, rest).await;
    }
}
