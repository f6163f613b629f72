//! A scripted `AgentService` on 127.0.0.1:0, plaintext or TLS (client certificates verified
//! against a CA when presented): every `Connect` stream is handed to the test as a [`Conn`],
//! which reads what the agent sends and answers what the test says. Heartbeats are answered
//! (unless told not to) and kept out of the way. `Enroll` answers as the test's function says.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use switchyard_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use switchyard_proto::v1::connect_request::Body as Request;
use switchyard_proto::v1::connect_response::Body as Reply;
use switchyard_proto::v1::{
    self as v1, ConnectRequest, ConnectResponse, EnrollRequest, EnrollResponse, HeartbeatAck,
    Hello, Welcome,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::metadata::MetadataMap;
use tonic::transport::{Certificate, CertificateDer, Identity, ServerTlsConfig};
use tonic::{Request as RpcRequest, Response, Status, Streaming};

/// How long a test waits for the agent's next move.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// The server end of one `Connect` stream.
pub struct Conn {
    /// The call's metadata (`authorization`).
    pub metadata: MetadataMap,
    /// The client certificate chain the agent presented (TLS only).
    pub peer_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    inbound: Streaming<ConnectRequest>,
    outbound: mpsc::Sender<Result<ConnectResponse, Status>>,
    /// Whether heartbeats are answered.
    pub ack: bool,
    /// Heartbeats received so far.
    pub heartbeats: usize,
}

impl Conn {
    /// The agent's next message other than a heartbeat; `None` when it ended the stream.
    pub async fn next(&mut self) -> Option<Request> {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.inbound.message())
                .await
                .expect("the agent said nothing in time")
                .ok()??;
            let body = message.body.expect("a message with a body");
            if !matches!(body, Request::Heartbeat(_)) {
                return Some(body);
            }
            self.heartbeats += 1;
            if self.ack {
                self.send(Reply::HeartbeatAck(HeartbeatAck { renewed: 0 }))
                    .await;
            }
        }
    }

    /// The agent's next message other than a heartbeat, if one comes within `wait`.
    pub async fn within(&mut self, wait: Duration) -> Option<Request> {
        tokio::time::timeout(wait, self.next()).await.ok().flatten()
    }

    /// The agent's next message other than a heartbeat, which must be there.
    pub async fn recv(&mut self) -> Request {
        self.next().await.expect("the agent ended the stream")
    }

    /// Sends `reply` to the agent.
    pub async fn send(&self, reply: Reply) {
        let message = ConnectResponse { body: Some(reply) };
        let _ = self.outbound.send(Ok(message)).await;
    }

    /// Ends the stream with `status`.
    pub async fn fail(self, status: Status) {
        let _ = self.outbound.send(Err(status)).await;
    }

    /// Takes the `Hello` and answers `Welcome` with the given timings.
    pub async fn welcome(&mut self, heartbeat_seconds: u32, lease_seconds: u32) -> Hello {
        let hello = self.hello().await;
        self.send(welcome(heartbeat_seconds, lease_seconds)).await;
        hello
    }

    /// Takes the `Hello`, which must come first.
    pub async fn hello(&mut self) -> Hello {
        let message = self.recv().await;
        let Request::Hello(hello) = message else {
            panic!("expected Hello, got {message:?}");
        };
        hello
    }
}

/// A `Welcome` with the given timings.
pub fn welcome(heartbeat_seconds: u32, lease_seconds: u32) -> Reply {
    Reply::Welcome(Welcome {
        agent_id: "agent-id-1".into(),
        heartbeat_interval_seconds: heartbeat_seconds,
        lease_seconds,
    })
}

/// How the scripted server answers `Enroll`.
pub type EnrollFn = Arc<dyn Fn(EnrollRequest) -> Result<EnrollResponse, Status> + Send + Sync>;

/// TLS of the scripted server.
pub struct ServerTls {
    /// Its certificate, PEM.
    pub cert_pem: String,
    /// Its key, PEM.
    pub key_pem: String,
    /// The CA client certificates are verified against (a client may present none).
    pub client_ca_pem: String,
}

/// How the scripted server runs.
#[derive(Default)]
pub struct Options {
    /// TLS, or plaintext without.
    pub tls: Option<ServerTls>,
    /// The answer to `Enroll` (`UNIMPLEMENTED` without).
    pub enroll: Option<EnrollFn>,
}

/// Forwards every `Connect` to the test.
struct Scripted {
    conns: mpsc::Sender<Conn>,
    enroll: Option<EnrollFn>,
}

type Replies = Pin<Box<dyn tokio_stream::Stream<Item = Result<ConnectResponse, Status>> + Send>>;

/// RPCs the scripted server does not serve: `UNIMPLEMENTED`, in the shape `async_trait` gives
/// the trait's methods.
macro_rules! not_served {
    ($($rpc:ident($request:ident) -> $response:ident;)+) => {$(
        fn $rpc<'life0, 'async_trait>(
            &'life0 self,
            _: RpcRequest<v1::$request>,
        ) -> Pin<Box<dyn Future<Output = Result<Response<v1::$response>, Status>> + Send + 'async_trait>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Err(Status::unimplemented("not in this test")) })
        }
    )+};
}

#[tonic::async_trait]
impl AgentService for Scripted {
    type ConnectStream = Replies;

    not_served! {
        list_agents(ListAgentsRequest) -> ListAgentsResponse;
        get_agent(GetAgentRequest) -> GetAgentResponse;
        heartbeat(HeartbeatRequest) -> HeartbeatResponse;
        set_agent_status(SetAgentStatusRequest) -> SetAgentStatusResponse;
        deregister_agent(DeregisterAgentRequest) -> DeregisterAgentResponse;
        create_registration_token(CreateRegistrationTokenRequest) -> CreateRegistrationTokenResponse;
        list_registration_tokens(ListRegistrationTokensRequest) -> ListRegistrationTokensResponse;
        revoke_registration_token(RevokeRegistrationTokenRequest) -> RevokeRegistrationTokenResponse;
        list_pools(ListPoolsRequest) -> ListPoolsResponse;
        get_pool(GetPoolRequest) -> GetPoolResponse;
        scale_pool(ScalePoolRequest) -> ScalePoolResponse;
    }

    async fn connect(
        &self,
        request: RpcRequest<Streaming<ConnectRequest>>,
    ) -> Result<Response<Replies>, Status> {
        let (outbound, replies) = mpsc::channel(64);
        let metadata = request.metadata().clone();
        let peer_certs = request.peer_certs();
        let conn = Conn {
            metadata,
            peer_certs,
            inbound: request.into_inner(),
            outbound,
            ack: true,
            heartbeats: 0,
        };
        self.conns
            .send(conn)
            .await
            .map_err(|_| Status::unavailable("test over"))?;
        Ok(Response::new(Box::pin(ReceiverStream::new(replies))))
    }

    async fn enroll(
        &self,
        request: RpcRequest<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let enroll = self
            .enroll
            .as_ref()
            .ok_or_else(|| Status::unimplemented("not in this test"))?;
        enroll(request.into_inner()).map(Response::new)
    }
}

/// The scripted server.
pub struct Server {
    /// Its address, for `AgentConfig.servers`.
    pub url: String,
    conns: mpsc::Receiver<Conn>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Listens on 127.0.0.1:0, plaintext.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// Listens on 127.0.0.1:0 as `options` say (`https://` URL with TLS).
    pub async fn start_with(options: Options) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let url = format!("{scheme}://{}", listener.local_addr().expect("address"));
        let (tx, conns) = mpsc::channel(8);
        let service = AgentServiceServer::new(Scripted {
            conns: tx,
            enroll: options.enroll,
        });
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = options.tls {
            let config = ServerTlsConfig::new()
                .identity(Identity::from_pem(tls.cert_pem, tls.key_pem))
                .client_ca_root(Certificate::from_pem(tls.client_ca_pem))
                .client_auth_optional(true);
            builder = builder.tls_config(config).expect("server TLS");
        }
        let task = tokio::spawn(async move {
            builder
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
                .expect("serve");
        });
        Self { url, conns, task }
    }

    /// The agent's next stream.
    pub async fn accept(&mut self) -> Conn {
        tokio::time::timeout(PATIENCE, self.conns.recv())
            .await
            .expect("the agent did not connect in time")
            .expect("server running")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
