//! Wiring: opens the store and bus, builds the services, serves gRPC and HTTP, runs the reaper,
//! and shuts everything down gracefully on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchyard_bus::Bus;
use switchyard_bus::local::LocalBus;
use switchyard_bus::redis::RedisBus;
use switchyard_core::{Queue, QueueConfig};
use switchyard_gateway::{AppState, BuildInfo};
use switchyard_telemetry::mask_url;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// What one control-plane process needs to start.
pub struct Plan {
    /// The database to open (migrations are applied at start, under a lock).
    pub database_url: String,
    /// Redis for the bus, or `None` for the in-process bus.
    pub redis: Option<(String, String)>,
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// HTTP listen address.
    pub http_addr: SocketAddr,
}

/// The version, commit and build time stamped by `build.rs`.
pub fn build_info() -> BuildInfo {
    let built = env!("SWITCHYARD_BUILD_UNIX").parse::<i64>().unwrap_or(0);
    BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        git_sha: env!("SWITCHYARD_GIT_SHA").to_owned(),
        build_time: chrono::DateTime::from_timestamp(built, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

/// Runs the control plane until SIGTERM/SIGINT, then drains for at most [`DRAIN_TIMEOUT`].
pub async fn run(plan: Plan) -> anyhow::Result<()> {
    tracing::info!(database = %mask_url(&plan.database_url), "opening store");
    let store = switchyard_store::open(&plan.database_url, true)
        .await
        .with_context(|| {
            format!(
                "cannot open the database at {}",
                mask_url(&plan.database_url)
            )
        })?;
    let bus: Arc<dyn Bus> = match &plan.redis {
        // Redis is advisory: start without it and let readiness report it.
        Some((url, prefix)) => Arc::new(RedisBus::connect_lazy(url, prefix).context("REDIS_URL")?),
        None => Arc::new(LocalBus::new()),
    };
    let queue = Queue::new(store, bus, QueueConfig::default());

    let grpc_listener = TcpListener::bind(plan.grpc_addr)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", plan.grpc_addr))?;
    let http_listener = TcpListener::bind(plan.http_addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", plan.http_addr))?;
    let (grpc_addr, http_addr) = (grpc_listener.local_addr()?, http_listener.local_addr()?);

    let shutdown = CancellationToken::new();
    let grpc = switchyard_grpc::GrpcApi::new(queue.clone()).await?;
    let grpc_task = tokio::spawn(grpc.serve(grpc_listener, shutdown.clone().cancelled_owned()));
    let router = switchyard_gateway::router(AppState::new(queue.clone(), build_info()));
    let http_task = tokio::spawn(
        axum::serve(
            http_listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future(),
    );
    let reaper = {
        let (queue, shutdown) = (queue.clone(), shutdown.clone());
        tokio::spawn(async move { queue.run_reaper(shutdown).await })
    };
    tracing::info!(%grpc_addr, %http_addr, "switchyard listening");
    announce(grpc_addr, http_addr);

    wait_for_signal().await;
    tracing::info!("shutting down: draining requests");
    queue.close();
    shutdown.cancel();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let (g, h, _) = tokio::join!(grpc_task, http_task, reaper);
        g.context("gRPC task")?.context("gRPC server")?;
        h.context("HTTP task")?.context("HTTP server")?;
        anyhow::Ok(())
    })
    .await;
    match drained {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("drain timed out after {DRAIN_TIMEOUT:?}; exiting");
            Ok(())
        }
    }
}

/// One machine-readable line on stdout, so scripts and tests learn the bound ports.
#[allow(clippy::print_stdout)]
fn announce(grpc: SocketAddr, http: SocketAddr) {
    println!("switchyard listening grpc={grpc} http={http}");
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
