//! Dialing: a connection to the next server, the `Connect` call, `Hello`, and the wait for
//! `Welcome`. What can go wrong with a stream is a [`Failure`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use switchyard_proto::v1::agent_service_client::AgentServiceClient;
use switchyard_proto::v1::connect_request::Body;
use switchyard_proto::v1::{ConnectRequest, ConnectResponse, Hello, connect_response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use crate::certs;
use crate::config::{AgentConfig, AgentError};
use crate::executor::Link;
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
    /// With a client certificate: where it is, read afresh at every dial.
    client_cert: Option<ClientCert>,
    next: usize,
}

/// The client certificate of an enrolled agent.
struct ClientCert {
    dir: PathBuf,
    /// A CA trusted besides the directory's `ca.pem`.
    extra_ca: Option<String>,
}

impl ClientCert {
    /// `endpoint` with TLS presenting the certificate now in the directory.
    fn apply(&self, endpoint: Endpoint) -> Result<Endpoint, String> {
        let files = certs::read(&self.dir)?;
        if let Ok((_, not_after)) = switchyard_pki::validity(&files.cert_pem)
            && not_after <= chrono::Utc::now()
        {
            tracing::error!(
                dir = %self.dir.display(),
                expired_at = %not_after,
                "the agent certificate has expired: re-enroll with `switchyard agent enroll`"
            );
        }
        let mut roots = vec![Certificate::from_pem(files.ca_pem)];
        roots.extend(self.extra_ca.clone().map(Certificate::from_pem));
        let tls = ClientTlsConfig::new()
            .ca_certificates(roots)
            .identity(Identity::from_pem(files.cert_pem, files.key_pem));
        endpoint.tls_config(tls).map_err(|e| error_chain(&e))
    }
}

/// Reads the CA file `path` (PEM), which must hold a certificate.
pub(crate) fn read_ca_file(path: &Path) -> Result<String, AgentError> {
    let failed = |reason: String| AgentError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    switchyard_pki::validity(&pem).map_err(|e| failed(e.to_string()))?;
    Ok(pem)
}

/// The endpoint of `url`; an `https://` one trusts `ca` (PEM), which it then needs.
pub(crate) fn endpoint(url: &str, ca: Option<&str>) -> Result<Endpoint, AgentError> {
    let invalid = |reason: String| AgentError::InvalidServer {
        url: url.to_owned(),
        reason,
    };
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| invalid(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT);
    if !is_https(&endpoint) {
        return Ok(endpoint);
    }
    let ca = ca.ok_or_else(|| AgentError::NoTrustAnchor {
        url: url.to_owned(),
    })?;
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    endpoint
        .tls_config(tls)
        .map_err(|e| invalid(error_chain(&e)))
}

fn is_https(endpoint: &Endpoint) -> bool {
    endpoint.uri().scheme_str() == Some("https")
}

impl Dialer {
    /// Checks every address, the token, the CA file, and that a certificate goes over TLS
    /// only. With `cert_dir`, no token is sent.
    pub(crate) fn new(config: &AgentConfig) -> Result<Self, AgentError> {
        let extra_ca = config.ca_file.as_deref().map(read_ca_file).transpose()?;
        let servers = config
            .servers
            .iter()
            .map(|url| match &config.cert_dir {
                // TLS is configured at each dial, with the certificate of the moment.
                Some(_) => {
                    let endpoint = Endpoint::from_shared(url.clone())
                        .map_err(|e| AgentError::InvalidServer {
                            url: url.clone(),
                            reason: e.to_string(),
                        })?
                        .connect_timeout(CONNECT_TIMEOUT);
                    if is_https(&endpoint) {
                        Ok(endpoint)
                    } else {
                        Err(AgentError::CertificateNeedsTls { url: url.clone() })
                    }
                }
                None => endpoint(url, extra_ca.as_deref()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let auth = match config.cert_dir {
            Some(_) => None,
            None => config
                .token
                .as_ref()
                .map(|token| format!("Bearer {token}").parse())
                .transpose()
                .map_err(|_| AgentError::InvalidToken)?,
        };
        let client_cert = config
            .cert_dir
            .clone()
            .map(|dir| ClientCert { dir, extra_ca });
        Ok(Self {
            servers,
            auth,
            client_cert,
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
        let server = endpoint.uri().to_string();
        // The files are read here, between two events of the agent loop, so a renewal never
        // shows half done.
        let endpoint = match &self.client_cert {
            Some(cert) => cert.apply(endpoint).map_err(|reason| Failure::Connect {
                server: server.clone(),
                reason,
            }),
            None => Ok(endpoint),
        };
        let auth = self.auth.clone();
        async move {
            let endpoint = endpoint?;
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
    let link = Link::new(channel.clone(), auth);
    let request = link.request(ReceiverStream::new(rx));
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
        }) => Ok(Session::new(server, link, tx, inbound, &welcome)),
        Some(_) => Err(Failure::NotWelcome { server }),
        None => Err(Failure::Closed { server }),
    }
}

/// An error and its sources, `: `-separated (tonic's transport errors say little on top).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text = format!("{text}: {e}");
        source = e.source();
    }
    text
}
