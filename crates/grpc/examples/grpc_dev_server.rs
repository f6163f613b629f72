//! A throwaway gRPC server for trying the API by hand: an in-memory SQLite store, the in-process
//! bus and dev authentication. Stops (draining) on Ctrl-C.
//!
//! ```text
//! cargo run -p switchyard-grpc --example grpc_dev_server -- 127.0.0.1:50051
//! buf curl --protocol grpc --http2-prior-knowledge --reflect --list-methods http://127.0.0.1:50051
//! ```

use std::sync::Arc;

use switchyard_bus::local::LocalBus;
use switchyard_core::{Queue, QueueConfig};
use switchyard_store::sqlite::SqliteStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50051".to_owned());
    let store = SqliteStore::connect("sqlite::memory:", true).await?;
    let queue = Queue::new(
        Arc::new(store),
        Arc::new(LocalBus::new()),
        QueueConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("gRPC on {}", listener.local_addr()?);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    switchyard_grpc::serve(listener, queue, shutdown).await?;
    eprintln!("drained");
    Ok(())
}
