//! Wiring: opens the store and bus, builds the services, serves gRPC and HTTP, runs the reaper,
//! and shuts everything down gracefully on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::HeaderValue;
use switchyard_auth::Enrollments;
use switchyard_bus::local::LocalBus;
use switchyard_bus::redis::RedisBus;
use switchyard_bus::{Bus, Counters};
use switchyard_core::{
    Agents, AgentsConfig, Deployments, DeploymentsConfig, Ingest, IngestConfig, Notifier,
    NotifierConfig, PutEnvironment, Queue, QueueConfig,
};
use switchyard_gateway::{AppState, BuildInfo};
use switchyard_telemetry::mask_url;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::identity::{self, AuthPlan};
use crate::tls::TlsPlan;

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
    /// Identity: keys, bootstrap administrator, limits, CORS.
    pub auth: AuthPlan,
    /// The agents' stream timings.
    pub agents: AgentsConfig,
    /// Run the built-in agent of `switchyard dev` (pool `local`) with this data directory.
    pub builtin_agent: Option<std::path::PathBuf>,
    /// TLS on the gRPC port and the agents' CA.
    pub tls: TlsPlan,
    /// Create the `staging` and `production` environments of `switchyard dev` (pool `local`,
    /// a harmless demo command) where they are missing.
    pub demo_environments: bool,
    /// Where deployment notifications of tenants without webhooks are written.
    pub notify_outbox_dir: std::path::PathBuf,
    /// Where artifact content is stored (see `switchyard_blobs::Blobs::open`), and ingest's
    /// settings.
    pub ingest: (String, IngestConfig),
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
    switchyard_telemetry::install_metrics();
    tracing::info!(database = %mask_url(&plan.database_url), "opening store");
    let stores = switchyard_store::open(&plan.database_url, true)
        .await
        .with_context(|| {
            format!(
                "cannot open the database at {}",
                mask_url(&plan.database_url)
            )
        })?;
    let (bus, counters): (Arc<dyn Bus>, Arc<dyn Counters>) = match &plan.redis {
        // Redis is advisory: start without it and let readiness report it.
        Some((url, prefix)) => {
            let redis = Arc::new(RedisBus::connect_lazy(url, prefix).context("REDIS_URL")?);
            (redis.clone(), redis)
        }
        None => {
            let local = Arc::new(LocalBus::new());
            (local.clone(), local)
        }
    };
    let queue = Queue::new(stores.queue, bus, QueueConfig::default());
    let auth = identity::wire(&plan.auth, stores.identity, counters, plan.tls.agent_tokens).await?;
    let mut agents = Agents::new(queue.clone(), stores.agents.clone(), plan.agents.clone())
        .with_grants(auth.grants.clone());
    if let Some(signer) = plan.tls.signer.clone() {
        agents = agents.with_signer(signer);
    }
    let enrollments = Enrollments::new(stores.agents, plan.tls.signer.clone());
    let notifier = Notifier::new(
        stores.notifications.clone(),
        NotifierConfig::new(plan.notify_outbox_dir.clone()),
    )?;
    let deployments = Deployments::new(
        stores.deployments,
        stores.notifications,
        queue.clone(),
        DeploymentsConfig::default(),
    );
    if plan.demo_environments {
        demo_environments(&deployments).await?;
    }
    let (artifacts_url, ingest_config) = plan.ingest.clone();
    let blobs = switchyard_blobs::Blobs::open(&artifacts_url)
        .with_context(|| format!("cannot open the artifact store at {artifacts_url}"))?;
    let ingest = Ingest::new(stores.artifacts, blobs, queue.clone(), ingest_config)
        .with_grants(auth.grants.clone());
    // One lease plus the agents' longest reconnect pause: every live agent is back before it ends.
    let grace = plan.agents.lease + switchyard_agent::RECONNECT_BACKOFF_MAX;
    let renewed = queue.grant_restart_grace(grace).await?;
    if renewed > 0 {
        tracing::info!(
            renewed,
            grace_seconds = grace.as_secs(),
            "restart grace: leases that expired while the control plane was down renewed"
        );
    }
    let cors = plan
        .auth
        .args
        .cors_origins
        .iter()
        .map(|o| HeaderValue::from_str(o).context("SWITCHYARD_CORS_ORIGINS"))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let grpc_listener = TcpListener::bind(plan.grpc_addr)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", plan.grpc_addr))?;
    let http_listener = TcpListener::bind(plan.http_addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", plan.http_addr))?;
    let (grpc_addr, http_addr) = (grpc_listener.local_addr()?, http_listener.local_addr()?);

    let shutdown = CancellationToken::new();
    let mut grpc = switchyard_grpc::GrpcApi::new(
        queue.clone(),
        Some(auth.identity.clone()),
        auth.gate.clone(),
    )
    .await?
    .with_agents(agents.clone(), enrollments.clone())
    .await
    .with_deployments(deployments.clone())
    .await
    .with_ingest(ingest.clone())
    .await;
    if let Some(tls) = plan.tls.tls.clone() {
        grpc = grpc.with_tls(tls);
    }
    let grpc_task = tokio::spawn(grpc.serve(grpc_listener, shutdown.clone().cancelled_owned()));
    let state = AppState::new(queue.clone(), build_info())
        .with_identity(auth.identity.clone(), auth.gate.clone())
        .with_agents(agents.clone(), enrollments)
        .with_deployments(deployments.clone())
        .with_ingest(ingest.clone())
        .with_cors(cors);
    let router = switchyard_gateway::router(state);
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
    let driver = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { deployments.run(shutdown).await })
    };
    let sweeper = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { ingest.run_sweeper(shutdown).await })
    };
    let notifier = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { notifier.run(shutdown).await })
    };
    if let Some(quota) = auth.quota.clone() {
        tokio::spawn(quota.run_flusher(shutdown.clone()));
    }
    tracing::info!(%grpc_addr, %http_addr, tls = plan.tls.tls.is_some(), "switchyard listening");
    announce(grpc_addr, http_addr);
    if let Some((email, file)) = &auth.dev_admin {
        say(&identity::dev_login_hint(email, file.as_deref(), http_addr));
    }
    if let Some(ca) = &plan.tls.dev_ca_file {
        say(&format!(
            "enroll an agent over mTLS: POST http://{http_addr}/api/agents/registration-tokens \
             {{\"pool\":\"build\"}}, then switchyard agent enroll --server https://{grpc_addr} \
             --ca-file {} --token <token> --cert-dir <dir>",
            ca.display()
        ));
    }

    let builtin_agent = plan.builtin_agent.as_deref().map(|dir| {
        let config = crate::agent::builtin(grpc_addr, dir);
        if let Err(e) = std::fs::create_dir_all(&config.workdir) {
            tracing::warn!(error = %e, "cannot create the built-in agent's work directory");
        }
        let stop = CancellationToken::new();
        let task = tokio::spawn(switchyard_agent::run(config, stop.clone()));
        (stop, task)
    });

    wait_for_signal().await;
    tracing::info!("shutting down: draining requests");
    if let Some((stop, task)) = builtin_agent {
        // Its jobs get their grace and report while the server still listens.
        stop.cancel();
        if let Ok(Err(e)) = task.await {
            tracing::warn!(error = %e, "the built-in agent failed");
        }
    }
    // Agents first: they are told to reconnect elsewhere, which ends their streams.
    agents.drain();
    queue.close();
    shutdown.cancel();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let (g, h, _, _, _, _) =
            tokio::join!(grpc_task, http_task, reaper, driver, notifier, sweeper);
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

/// The environments of `switchyard dev`, where missing: `staging` and `production` on pool
/// `local` (the built-in agent's), with a command that only says what it would deploy.
async fn demo_environments(deployments: &Deployments) -> anyhow::Result<()> {
    let dev = switchyard_types::Principal::dev();
    let existing = deployments.environments(&dev).await?;
    for name in ["staging", "production"] {
        if existing.iter().any(|e| e.name == name) {
            continue;
        }
        let env = PutEnvironment {
            name: name.to_owned(),
            pool: crate::agent::LOCAL_POOL.to_owned(),
            deploy_command:
                "echo \"deploying {{service}} {{version}} to {{environment}}\" && sleep 1"
                    .to_owned(),
            health_url: None,
            secrets: Vec::new(),
        };
        deployments.put_environment(&dev, env).await?;
    }
    Ok(())
}

/// One machine-readable line on stdout, so scripts and tests learn the bound ports.
fn announce(grpc: SocketAddr, http: SocketAddr) {
    say(&format!("switchyard listening grpc={grpc} http={http}"));
}

/// A line for the person at the terminal, on stdout (not the log).
#[allow(clippy::print_stdout)]
fn say(line: &str) {
    println!("{line}");
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn wait_for_signal() {
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
