//! Switchyard's gRPC edge: thin tonic adapters over `switchyard-core`.
//!
//! * [`QueueGrpc`]: `switchyard.v1.QueueService`; each handler takes the caller's
//!   [`Principal`], converts, calls [`Queue`] and converts back.
//! * [`AuthGrpc`]: `switchyard.v1.AuthService` (sessions, API keys, administration).
//! * [`AgentGrpc`]: `switchyard.v1.AgentService` (the agents' `Connect` stream, the registry).
//! * [`DeploymentGrpc`]: `switchyard.v1.DeploymentService` (environments, guarded deployments).
//! * [`to_status`]: the one `ErrorKind` -> gRPC code map, with `google.rpc` error details.
//! * [`GrpcApi`]: everything the gRPC port serves behind the one auth layer of
//!   `switchyard-auth` (shared with REST): the services, `grpc.health.v1` and server reflection
//!   (v1 and v1alpha, both public), so `grpcurl` and `buf curl` work with no `.proto` files.
//! * [`serve`]: serves a [`GrpcApi`] on a listener until a shutdown future resolves, then stops
//!   accepting and drains in-flight calls.
//!
//! ```no_run
//! # async fn run(queue: switchyard_core::Queue) -> Result<(), switchyard_grpc::Error> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:50051").await.unwrap();
//! let shutdown = async { tokio::signal::ctrl_c().await.ok(); };
//! switchyard_grpc::serve(listener, queue, shutdown).await
//! # }
//! ```

pub mod agent;
pub mod auth;
pub mod deployment;
pub mod error;
pub mod ingest;
pub mod queue;
mod request;
pub mod transport;

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use switchyard_auth::layer::{AuthLayer, Edge, Gate, Reject};
use switchyard_auth::{Enrollments, Identity};
use switchyard_core::{Agents, Deployments, Ingest, Queue};
use switchyard_proto::v1::agent_service_server::AgentServiceServer;
use switchyard_proto::v1::auth_service_server::AuthServiceServer;
use switchyard_proto::v1::deployment_service_server::DeploymentServiceServer;
use switchyard_proto::v1::ingest_service_server::IngestServiceServer;
use switchyard_proto::v1::queue_service_server::QueueServiceServer;
use switchyard_types::Principal;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub use agent::AgentGrpc;
pub use auth::AuthGrpc;
pub use deployment::DeploymentGrpc;
pub use error::to_status;
pub use ingest::IngestGrpc;
pub use queue::QueueGrpc;
pub use transport::Tls;

/// The fully qualified name of the auth service.
pub const AUTH_SERVICE: &str = <AuthServiceServer<AuthGrpc> as NamedService>::NAME;

/// The fully qualified name of the agent service.
pub const AGENT_SERVICE: &str = <AgentServiceServer<AgentGrpc> as NamedService>::NAME;

/// The fully qualified name of the deployment service.
pub const DEPLOYMENT_SERVICE: &str =
    <DeploymentServiceServer<DeploymentGrpc> as NamedService>::NAME;

/// The fully qualified name of the ingest service.
pub const INGEST_SERVICE: &str = <IngestServiceServer<IngestGrpc> as NamedService>::NAME;

/// The largest upload message: a 4 MiB chunk with room for its framing, or the 64 KiB metadata.
pub const MAX_UPLOAD_MESSAGE_BYTES: usize = MAX_REQUEST_BYTES + 64 * 1024;

/// The fully qualified name of the queue service, as health checks and reflection know it.
pub const QUEUE_SERVICE: &str = <QueueServiceServer<QueueGrpc> as NamedService>::NAME;

/// The largest request message accepted (tonic's default, stated): a bigger one is
/// `RESOURCE_EXHAUSTED` before any handler runs. Job payloads are limited to 256 KiB each by core.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Why the gRPC server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reflection service rejected a descriptor set (a build problem, never input).
    #[error("building the gRPC reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed (listener, HTTP/2).
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Refusals of the auth layer as gRPC responses: the status of the error (with its
/// `google.rpc` details, e.g. `RetryInfo` for rate limits) in trailers-only form.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcReject;

impl Reject for GrpcReject {
    type Body = tonic::body::Body;

    fn reject(&self, error: switchyard_types::Error) -> http::Response<Self::Body> {
        to_status(error).into_http()
    }
}

/// Everything the gRPC port serves: the routes, and the health reporter that says whether
/// they are serving.
pub struct GrpcApi {
    routes: Routes,
    health: HealthReporter,
    gate: Arc<Gate>,
    services: Vec<&'static str>,
    tls: Option<Tls>,
}

impl GrpcApi {
    /// The API over `queue` for `switchyard dev` and tests: no identity service, every call acts
    /// as [`Principal::dev`], and credentials are refused.
    pub async fn dev(queue: Queue) -> Result<Self, Error> {
        Self::new(
            queue,
            None,
            Arc::new(Gate::anonymous_only(Principal::dev())),
        )
        .await
    }

    /// The API over `queue`, with `AuthService` when `identity` is given. Every call passes
    /// `gate` first (the one auth layer, shared with REST), which looks its method up in the
    /// policy table: health and reflection are public, the rest need a principal with the
    /// right scope. Health reports `SERVING` for `""` and every application service.
    pub async fn new(
        queue: Queue,
        identity: Option<Identity>,
        gate: Arc<Gate>,
    ) -> Result<Self, Error> {
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(switchyard_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc error details, so clients can decode BadRequest, RetryInfo, ...
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        };
        let queue = QueueServiceServer::new(QueueGrpc::new(queue))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        let mut services = vec![QUEUE_SERVICE];
        let mut routes = Routes::builder();
        routes
            .add_service(queue)
            .add_service(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?);
        if let Some(identity) = identity {
            routes.add_service(AuthServiceServer::new(AuthGrpc::new(identity)));
            services.push(AUTH_SERVICE);
        }
        for service in &services {
            health
                .set_service_status(*service, ServingStatus::Serving)
                .await;
        }
        Ok(GrpcApi {
            routes: routes.routes(),
            health,
            gate,
            services,
            tls: None,
        })
    }

    /// Adds `AgentService` over `agents`, enrolling through `enrollments` (reported
    /// `SERVING`). On shutdown, call [`Agents::drain`] before the server drains, or the agents'
    /// streams hold it open.
    pub async fn with_agents(mut self, agents: Agents, enrollments: Enrollments) -> Self {
        self.routes = self.routes.add_service(
            AgentServiceServer::new(AgentGrpc::new(agents, enrollments))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        );
        self.services.push(AGENT_SERVICE);
        self.health
            .set_service_status(AGENT_SERVICE, ServingStatus::Serving)
            .await;
        self
    }

    /// Adds `DeploymentService` over `deployments` (reported `SERVING`).
    pub async fn with_deployments(mut self, deployments: Deployments) -> Self {
        self.routes = self.routes.add_service(
            DeploymentServiceServer::new(DeploymentGrpc::new(deployments))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        );
        self.services.push(DEPLOYMENT_SERVICE);
        self.health
            .set_service_status(DEPLOYMENT_SERVICE, ServingStatus::Serving)
            .await;
        self
    }

    /// Adds `IngestService` over `ingest` (reported `SERVING`).
    pub async fn with_ingest(mut self, ingest: Ingest) -> Self {
        self.routes = self.routes.add_service(
            IngestServiceServer::new(IngestGrpc::new(ingest))
                .max_decoding_message_size(MAX_UPLOAD_MESSAGE_BYTES),
        );
        self.services.push(INGEST_SERVICE);
        self.health
            .set_service_status(INGEST_SERVICE, ServingStatus::Serving)
            .await;
        self
    }

    /// Serves TLS as `tls` says (plaintext only, without it).
    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The health reporter, to mark services `NOT_SERVING` (e.g. while a dependency is down).
    pub fn health(&self) -> &HealthReporter {
        &self.health
    }

    /// Serves on `listener` until `shutdown` resolves. Then health turns `NOT_SERVING`, the
    /// server stops accepting connections, sends HTTP/2 GOAWAY, and returns once the calls in
    /// flight have finished (a long-polling `Claim` may take up to its `wait_seconds`).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let health = self.health.clone();
        let services = self.services.clone();
        let shutdown = async move {
            shutdown.await;
            for service in std::iter::once("").chain(services) {
                health
                    .set_service_status(service, ServingStatus::NotServing)
                    .await;
            }
            tracing::info!("gRPC server draining");
        };
        let incoming = transport::incoming(listener, self.tls);
        Server::builder()
            // Detects dead peers (agents behind NATs) without waiting for TCP timeouts.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            // Every call passes the auth layer first; it supplies the Principal or refuses.
            .layer(AuthLayer::new(self.gate, Edge::Grpc, GrpcReject))
            .add_routes(self.routes)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        Ok(())
    }
}

/// Serves the development gRPC API ([`GrpcApi::dev`]) over `queue` on `listener` until
/// `shutdown` resolves, then drains; see [`GrpcApi::serve`].
pub async fn serve(
    listener: TcpListener,
    queue: Queue,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    GrpcApi::dev(queue).await?.serve(listener, shutdown).await
}
