//! One `Connect` stream: dialing a server, the `Hello` / `Welcome` handshake, and what the
//! stream needs while it lives: heartbeats, noticing a silent server, sending with the
//! server's flow control, and knowing which `JobFinished` reports surely arrived.
//!
//! A report is known to have arrived once a `HeartbeatAck` answers a `Heartbeat` sent after
//! it (the stream is ordered). Reports not known to have arrived when the stream breaks are
//! sent again on the next one; the server ignores a repeat of an attempt's end.

use std::collections::VecDeque;
use std::time::Duration;

use switchyard_proto::v1::agent_service_client::AgentServiceClient;
use switchyard_proto::v1::connect_request::Body;
use switchyard_proto::v1::{
    ConnectRequest, ConnectResponse, Heartbeat, Hello, JobFinished, Welcome, connect_response,
};
use tokio::sync::mpsc::{self, OwnedPermit};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Endpoint;
use tonic::{Code, Status, Streaming};

use crate::config::AgentError;
use crate::outbox::Outbox;

/// How long dialing, the `Connect` call and the `Welcome` may take together.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the TCP (and HTTP/2) connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages handed to the transport but not sent yet; beyond, reports wait in the outbox.
const IN_FLIGHT: usize = 64;
/// How long the server gets to close its side of a stream the agent ends.
const HANG_UP_FOR: Duration = Duration::from_secs(1);
/// A server silent for this many heartbeat intervals is gone.
const SILENT_INTERVALS: u32 = 3;
/// Used when `Welcome` leaves the heartbeat interval or the lease at 0.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// A stream that failed or ended, and where.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// No connection.
    #[error("cannot connect to {server}: {reason}")]
    Connect { server: String, reason: String },
    /// The server ended the call with an error status.
    #[error("{server} ended the stream: {code:?}: {message}", code = .status.code(), message = .status.message())]
    Status { server: String, status: Status },
    /// The server closed the stream.
    #[error("{server} closed the stream")]
    Closed { server: String },
    /// The handshake did not complete in time.
    #[error("{server} sent no Welcome within {} s", WELCOME_TIMEOUT.as_secs())]
    NoWelcome { server: String },
    /// The first message was not a `Welcome`.
    #[error("{server} did not answer Hello with Welcome")]
    NotWelcome { server: String },
    /// No message for three heartbeat intervals.
    #[error("{server} was silent for {} heartbeat intervals", SILENT_INTERVALS)]
    Silent { server: String },
}

impl Failure {
    /// Whether retrying alone will not help: the server rejected who or what the agent is.
    pub(crate) fn is_rejection(&self) -> bool {
        match self {
            Failure::Status { status, .. } => matches!(
                status.code(),
                Code::FailedPrecondition
                    | Code::InvalidArgument
                    | Code::Unauthenticated
                    | Code::PermissionDenied
            ),
            Failure::Connect { .. }
            | Failure::Closed { .. }
            | Failure::NoWelcome { .. }
            | Failure::NotWelcome { .. }
            | Failure::Silent { .. } => false,
        }
    }
}

/// Opens streams to the configured servers, in turn.
pub(crate) struct Dialer {
    servers: Vec<Endpoint>,
    auth: Option<MetadataValue<Ascii>>,
    next: usize,
}

impl Dialer {
    /// Checks every address and the token.
    pub(crate) fn new(servers: &[String], token: Option<&str>) -> Result<Self, AgentError> {
        let servers = servers
            .iter()
            .map(|url| {
                Endpoint::from_shared(url.clone())
                    .map(|e| e.connect_timeout(CONNECT_TIMEOUT))
                    .map_err(|e| AgentError::InvalidServer {
                        url: url.clone(),
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let auth = token
            .map(|token| format!("Bearer {token}").parse())
            .transpose()
            .map_err(|_| AgentError::InvalidToken)?;
        Ok(Self {
            servers,
            auth,
            next: 0,
        })
    }

    /// Opens a stream to the next server and says `hello`; resolves once welcomed.
    pub(crate) fn dial(
        &mut self,
        hello: Hello,
    ) -> impl Future<Output = Result<Session, Failure>> + Send + 'static {
        let endpoint = self.servers[self.next % self.servers.len()].clone();
        self.next = self.next.wrapping_add(1);
        let auth = self.auth.clone();
        async move {
            let server = endpoint.uri().to_string();
            let handshake = handshake(endpoint, auth, hello, server.clone());
            tokio::time::timeout(WELCOME_TIMEOUT, handshake)
                .await
                .unwrap_or(Err(Failure::NoWelcome { server }))
        }
    }
}

async fn handshake(
    endpoint: Endpoint,
    auth: Option<MetadataValue<Ascii>>,
    hello: Hello,
    server: String,
) -> Result<Session, Failure> {
    let channel = endpoint.connect().await.map_err(|e| Failure::Connect {
        server: server.clone(),
        reason: error_chain(&e),
    })?;
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let hello = ConnectRequest {
        body: Some(Body::Hello(hello)),
    };
    // The receiver is alive and the channel empty: this cannot fail.
    let _ = tx.try_send(hello);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(auth) = auth {
        request.metadata_mut().insert("authorization", auth);
    }
    let status = |status| Failure::Status {
        server: server.clone(),
        status,
    };
    let mut inbound = AgentServiceClient::new(channel)
        .connect(request)
        .await
        .map_err(status)?
        .into_inner();
    match inbound.message().await.map_err(status)? {
        Some(ConnectResponse {
            body: Some(connect_response::Body::Welcome(welcome)),
        }) => Ok(Session::new(server, tx, inbound, &welcome)),
        Some(_) => Err(Failure::NotWelcome { server }),
        None => Err(Failure::Closed { server }),
    }
}

/// An error and its sources, `: `-separated (tonic's transport errors say little on top).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text = format!("{text}: {e}");
        source = e.source();
    }
    text
}

/// A welcomed stream.
pub(crate) struct Session {
    /// The server's address.
    pub(crate) server: String,
    /// The agent's id in the registry.
    pub(crate) agent_id: String,
    /// The lease every job gets, from `Welcome`.
    pub(crate) lease: Duration,
    heartbeat_every: Duration,
    tx: mpsc::Sender<ConnectRequest>,
    inbound: Streaming<ConnectResponse>,
    /// When the server was last heard from.
    last_heard: Instant,
    next_heartbeat: Instant,
    /// Heartbeats and credits, sent before any report.
    control: VecDeque<Body>,
    /// Heartbeats sent and not answered: when, and how many of `unconfirmed` preceded each.
    heartbeats: VecDeque<(Instant, usize)>,
    /// `JobFinished` reports sent but not known to have arrived.
    unconfirmed: Vec<JobFinished>,
    /// Whether anything was sent after the last heartbeat.
    sent_since_heartbeat: bool,
}

impl Session {
    fn new(
        server: String,
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
            heartbeat_every: seconds(welcome.heartbeat_interval_seconds, DEFAULT_HEARTBEAT),
            tx,
            inbound,
            last_heard: now,
            // The first heartbeat goes at once: it renews the leases of the jobs listed in
            // `Hello.running`.
            next_heartbeat: now,
            control: VecDeque::new(),
            heartbeats: VecDeque::new(),
            unconfirmed: Vec::new(),
            sent_since_heartbeat: true,
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

    /// Queues a control message (`Credits`, `Heartbeat`) ahead of the reports.
    pub(crate) fn queue(&mut self, body: Body) {
        self.control.push_back(body);
    }

    /// A sender to reserve room with, when anything waits to be sent.
    pub(crate) fn sender(&self, outbox: &Outbox) -> Option<mpsc::Sender<ConnectRequest>> {
        (!self.control.is_empty() || !outbox.is_empty()).then(|| self.tx.clone())
    }

    /// Sends the next control message, or else the next report, into the reserved room.
    pub(crate) fn send(&mut self, permit: OwnedPermit<ConnectRequest>, outbox: &mut Outbox) {
        let Some(body) = self.control.pop_front().or_else(|| outbox.pop()) else {
            return;
        };
        match &body {
            Body::Heartbeat(_) => {
                self.heartbeats
                    .push_back((Instant::now(), self.unconfirmed.len()));
                self.sent_since_heartbeat = false;
            }
            Body::Finished(report) => {
                self.unconfirmed.push(report.clone());
                self.sent_since_heartbeat = true;
            }
            Body::Hello(_) | Body::Credits(_) | Body::Started(_) | Body::Log(_) => {
                self.sent_since_heartbeat = true;
            }
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
            self.queue(Body::Heartbeat(Heartbeat {}));
            self.next_heartbeat = now + self.heartbeat_every;
        }
        Ok(())
    }

    /// Asks for proof that everything sent so far arrived: a heartbeat, unless one is
    /// already on its way after the last message.
    pub(crate) fn confirm(&mut self) {
        let queued = self
            .control
            .iter()
            .any(|body| matches!(body, Body::Heartbeat(_)));
        if self.sent_since_heartbeat && !queued {
            self.queue(Body::Heartbeat(Heartbeat {}));
        }
    }

    /// Whether everything sent is known to have arrived and nothing waits.
    pub(crate) fn settled(&self) -> bool {
        self.control.is_empty() && self.heartbeats.is_empty() && !self.sent_since_heartbeat
    }

    /// Drops the stream; returns the reports that may not have arrived.
    pub(crate) fn close(self) -> Vec<JobFinished> {
        self.unconfirmed
    }

    /// Ends the stream cleanly: closes the agent's side, then gives the server a moment to
    /// close its side.
    pub(crate) async fn hang_up(self) {
        let Self { tx, mut inbound, .. } = self;
        drop(tx);
        let rest = async { while let Ok(Some(_)) = inbound.message().await {} };
        let _ = tokio::time::timeout(HANG_UP_FOR, rest).await;
    }
}
