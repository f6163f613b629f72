//! `switchyard bench queue`: throughput and latency of the queue's hot paths over real gRPC
//! against a real database. It prints figures; it asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use switchyard_bus::Bus;
use switchyard_bus::local::LocalBus;
use switchyard_bus::redis::RedisBus;
use switchyard_core::{Queue, QueueConfig};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::queue_service_client::QueueServiceClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Options of `switchyard bench queue`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The database to measure (a scratch database: the bench enqueues into it).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Redis for the bus; without it the in-process bus.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Jobs per phase.
    #[arg(long, default_value_t = 50_000)]
    pub jobs: usize,
    /// Jobs per enqueue call.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Concurrent workers claiming and completing.
    #[arg(long, default_value_t = 32)]
    pub workers: usize,
    /// Jobs per claim call.
    #[arg(long, default_value_t = 16)]
    pub claim_batch: u32,
    /// Wake-up latency samples.
    #[arg(long, default_value_t = 200)]
    pub wakeups: usize,
}

/// Runs the three measurements and prints one line each.
#[allow(clippy::print_stdout)]
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let store = switchyard_store::open(&args.database_url, true)
        .await?
        .queue;
    let backend = store.backend();
    let bus: Arc<dyn Bus> = match &args.redis_url {
        Some(url) => {
            Arc::new(RedisBus::connect(url, &format!("bench:{}:", std::process::id())).await?)
        }
        None => Arc::new(LocalBus::new()),
    };
    let bus_name = bus.backend();
    let queue = Queue::new(store, bus, QueueConfig::default());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let server = switchyard_grpc::GrpcApi::dev(queue.clone()).await?;
    tokio::spawn(server.serve(listener, stop.clone().cancelled_owned()));
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .context("connect")?;
    let pool = format!("bench-{}", std::process::id());
    println!(
        "bench queue: store={backend} bus={bus_name} jobs={} batch={} workers={} claim_batch={}",
        args.jobs, args.batch, args.workers, args.claim_batch
    );

    // 1. Batch enqueue, 4 concurrent callers.
    let started = Instant::now();
    let per_caller = args.jobs.div_ceil(4);
    let mut callers = Vec::new();
    for _ in 0..4 {
        let (mut client, pool, batch) = (
            QueueServiceClient::new(channel.clone()),
            pool.clone(),
            args.batch,
        );
        callers.push(tokio::spawn(async move {
            let mut left = per_caller;
            while left > 0 {
                let n = left.min(batch);
                let jobs = (0..n)
                    .map(|_| pb::EnqueueJob {
                        pool: pool.clone(),
                        kind: "noop".into(),
                        ..Default::default()
                    })
                    .collect();
                client.enqueue(pb::EnqueueRequest { jobs }).await?;
                left -= n;
            }
            anyhow::Ok(())
        }));
    }
    for c in callers {
        c.await??;
    }
    let enqueued = per_caller * 4;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "batch enqueue: {enqueued} jobs in {secs:.2} s = {:.0} jobs/s",
        enqueued as f64 / secs
    );

    // 2. Claim + complete with `workers` concurrent workers until the queue is empty.
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..args.workers {
        let (mut client, pool, n) = (
            QueueServiceClient::new(channel.clone()),
            pool.clone(),
            args.claim_batch,
        );
        workers.push(tokio::spawn(async move {
            let mut done = 0usize;
            loop {
                let req = pb::ClaimRequest {
                    agent_id: format!("w{w}"),
                    pool: pool.clone(),
                    max_jobs: Some(n),
                    ..Default::default()
                };
                let jobs = client.claim(req).await?.into_inner().jobs;
                if jobs.is_empty() {
                    return anyhow::Ok(done);
                }
                // Like an agent with `claim_batch` slots, a worker finishes its jobs concurrently.
                let completions = jobs.into_iter().map(|job| {
                    let mut client = client.clone();
                    let outcome = pb::complete_job_request::Outcome::Succeeded(
                        pb::complete_job_request::Succeeded {
                            exit_code: Some(0),
                            result: None,
                        },
                    );
                    let request = pb::CompleteJobRequest {
                        job_id: job.id,
                        attempt: job.attempt,
                        outcome: Some(outcome),
                    };
                    async move { client.complete_job(request).await }
                });
                for result in futures::future::join_all(completions).await {
                    result?;
                    done += 1;
                }
            }
        }));
    }
    let mut completed = 0;
    for w in workers {
        completed += w.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "claim + complete: {completed} jobs in {secs:.2} s = {:.0} jobs/s",
        completed as f64 / secs
    );

    // 3. Wake-up latency: an idle long-polling claimer; enqueue one job; time until the claim returns.
    let mut claimer = QueueServiceClient::new(channel.clone());
    let mut producer = QueueServiceClient::new(channel.clone());
    let mut samples = Vec::with_capacity(args.wakeups);
    let wake_pool = format!("{pool}-wake");
    for _ in 0..args.wakeups {
        let req = pb::ClaimRequest {
            agent_id: "idle".into(),
            pool: wake_pool.clone(),
            wait_seconds: 10,
            ..Default::default()
        };
        let waiting = tokio::spawn(async move {
            let jobs = claimer.claim(req).await.map(|r| r.into_inner().jobs);
            (claimer, jobs, Instant::now())
        });
        // Let the claim reach its wait before the job exists.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let sent = Instant::now();
        let job = pb::EnqueueJob {
            pool: wake_pool.clone(),
            kind: "noop".into(),
            ..Default::default()
        };
        producer
            .enqueue(pb::EnqueueRequest { jobs: vec![job] })
            .await?;
        let (back, jobs, returned) = waiting.await?;
        claimer = back;
        anyhow::ensure!(jobs?.len() == 1, "the idle claimer got no job");
        samples.push(returned.duration_since(sent));
    }
    samples.sort();
    let pct = |p: f64| crate::bench::percentile(&samples, p);
    println!(
        "wake-up latency (enqueue -> claim returns), {} samples: p50 {:.2} ms, p99 {:.2} ms",
        samples.len(),
        ms(pct(0.50)),
        ms(pct(0.99))
    );
    stop.cancel();
    Ok(())
}

/// The `p` quantile (0-1) of sorted, non-empty `samples` (nearest rank).
/// Serves `grpc` and the gateway over `state` on loopback ports until `stop` fires: the HTTP
/// address and a connected gRPC channel.
pub(crate) async fn serve_in_process(
    grpc: switchyard_grpc::GrpcApi,
    state: switchyard_gateway::AppState,
    stop: &CancellationToken,
) -> anyhow::Result<(std::net::SocketAddr, Channel)> {
    let grpc_listener = TcpListener::bind("127.0.0.1:0").await?;
    let grpc_addr = grpc_listener.local_addr()?;
    tokio::spawn(grpc.serve(grpc_listener, stop.clone().cancelled_owned()));
    let http_listener = TcpListener::bind("127.0.0.1:0").await?;
    let http_addr = http_listener.local_addr()?;
    let router = switchyard_gateway::router(state);
    let shutdown = stop.clone().cancelled_owned();
    tokio::spawn(async move {
        axum::serve(http_listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    });
    let channel = Channel::from_shared(format!("http://{grpc_addr}"))?
        .connect()
        .await
        .context("connect gRPC")?;
    Ok((http_addr, channel))
}

pub(crate) fn percentile(samples: &[Duration], p: f64) -> Duration {
    samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1]
}

/// A duration in milliseconds, for printing.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
