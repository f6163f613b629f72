//! Dialing: a connection to the next server, the `Connect` call, `Hello`, and the wait for
//! `Welcome`. What can go wrong with a stream is a [`Failure`].

use std::time::Duration;

use switchyard_proto::v1::agent_service_client::AgentServiceClient;
use switchyard_proto::v1::connect_request::Body;
use switchyard_proto::v1::{ConnectRequest, ConnectResponse, Hello, connect_response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Endpoint;
use tonic::{Code, Status};

use crate::config::AgentError;
use crate::session::{SILENT_INTERVALS, Session};

/// How long dialing, the `Connect` call and the `Welcome` may take together.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the TCP (and HTTP/2) connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages handed to the transport but not sent yet; beyond, reports wait in the outbox.
const IN_FLIGHT: usize = 64;

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
