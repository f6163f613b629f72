//! A real gRPC server on 127.0.0.1:0 over an in-memory SQLite store and the in-process bus.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::net::SocketAddr;
use std::sync::Arc;

use switchyard_auth::layer::Gate;
use switchyard_bus::local::LocalBus;
use switchyard_core::{Queue, QueueConfig};
use switchyard_grpc::GrpcApi;
use switchyard_proto::v1::queue_service_client::QueueServiceClient;
use switchyard_store::sqlite::SqliteStore;
use switchyard_types::Principal;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// One running server; dropping it without [`Server::stop`] leaves the task to the runtime.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), switchyard_grpc::Error>>,
}

impl Server {
    /// Boots as `switchyard dev` without identity: every call acts as the dev principal.
    pub async fn start() -> Server {
        Self::start_with(Gate::anonymous_only(Principal::dev())).await
    }

    /// Boots with `gate` deciding who calls (no identity service).
    pub async fn start_with(gate: Gate) -> Server {
        let store = SqliteStore::connect("sqlite::memory:", true)
            .await
            .expect("sqlite store");
        let queue = Queue::new(
            Arc::new(store),
            Arc::new(LocalBus::new()),
            QueueConfig::default(),
        );
        let api = GrpcApi::new(queue, None, Arc::new(gate))
            .await
            .expect("grpc api");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(api.serve(listener, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// A connected channel.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    /// A queue client.
    pub async fn queue(&self) -> QueueServiceClient<Channel> {
        QueueServiceClient::new(self.channel().await)
    }

    /// Fires the shutdown future and waits for the server to drain and return.
    pub async fn stop(mut self) -> Result<(), switchyard_grpc::Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("server task")
    }
}
