//! Switchyard's gRPC edge: thin tonic adapters over `switchyard-core`.
//!
//! * [`QueueGrpc`]: `switchyard.v1.QueueService`; each handler takes the caller's
//!   [`Principal`], converts, calls [`Queue`] and converts back.
//! * [`to_status`]: the one `ErrorKind` -> gRPC code map, with `google.rpc` error details.
//! * [`GrpcApi`]: everything the gRPC port serves, as a [`Routes`] ready to mount: the queue
//!   behind the authentication interceptor, `grpc.health.v1` and server reflection (v1 and
//!   v1alpha), so `grpcurl` and `buf curl` work with no `.proto` files.
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

pub mod error;
pub mod queue;
mod request;

use std::future::Future;
use std::time::Duration;

use switchyard_core::Queue;
use switchyard_proto::v1::queue_service_server::QueueServiceServer;
use switchyard_types::Principal;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::{Interceptor, Routes};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub use error::to_status;
pub use queue::QueueGrpc;

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

/// The authentication step used until real authentication lands: every request acts as
/// [`Principal::dev`] (the default tenant, `admin` scope). It is the one place to swap: pass
/// another [`Interceptor`] to [`GrpcApi::with_auth`], or put a tower layer in front that inserts
/// a [`Principal`] into the request extensions; the handlers only read the extension.
pub fn dev_authenticate(mut request: Request<()>) -> Result<Request<()>, Status> {
    request.extensions_mut().insert(Principal::dev());
    Ok(request)
}

/// Everything the gRPC port serves: the routes, and the health reporter that says whether
/// they are serving.
pub struct GrpcApi {
    routes: Routes,
    health: HealthReporter,
}

impl GrpcApi {
    /// The API over `queue`, authenticated by [`dev_authenticate`].
    pub async fn new(queue: Queue) -> Result<Self, Error> {
        Self::with_auth(queue, dev_authenticate).await
    }

    /// The API over `queue`; `auth` runs before every application handler and must insert a
    /// [`Principal`] into the request extensions or refuse the call. Health and reflection are
    /// not authenticated. Health reports `SERVING` for `""` and [`QUEUE_SERVICE`].
    pub async fn with_auth<A>(queue: Queue, auth: A) -> Result<Self, Error>
    where
        A: Interceptor + Clone + Send + Sync + 'static,
    {
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status(QUEUE_SERVICE, ServingStatus::Serving)
            .await;
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(switchyard_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc error details, so clients can decode BadRequest, RetryInfo, ...
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        };
        let queue = QueueServiceServer::new(QueueGrpc::new(queue))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        let mut routes = Routes::builder();
        routes
            // Application services sit behind authentication, which supplies the Principal.
            .add_service(tonic::service::interceptor::InterceptedService::new(
                queue, auth,
            ))
            // Probes (load balancers, Kubernetes) must work without credentials.
            .add_service(health_service)
            // Reflection only describes the public API, so it needs no credentials either.
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?);
        Ok(GrpcApi {
            routes: routes.routes(),
            health,
        })
    }

    /// The health reporter, to mark services `NOT_SERVING` (e.g. while a dependency is down).
    pub fn health(&self) -> &HealthReporter {
        &self.health
    }

    /// The routes and health reporter, to mount with a custom [`Server`] (TLS, more services).
    pub fn into_parts(self) -> (Routes, HealthReporter) {
        (self.routes, self.health)
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
        let shutdown = async move {
            shutdown.await;
            for service in ["", QUEUE_SERVICE] {
                health
                    .set_service_status(service, ServingStatus::NotServing)
                    .await;
            }
            tracing::info!("gRPC server draining");
        };
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        Server::builder()
            // Detects dead peers (agents behind NATs) without waiting for TCP timeouts.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_routes(self.routes)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        Ok(())
    }
}

/// Serves the gRPC API over `queue` on `listener` (authenticated by [`dev_authenticate`]) until
/// `shutdown` resolves, then drains; see [`GrpcApi::serve`].
pub async fn serve(
    listener: TcpListener,
    queue: Queue,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    GrpcApi::new(queue).await?.serve(listener, shutdown).await
}
