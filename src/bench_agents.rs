//! `switchyard bench agents`: the agents' stream under load, over real gRPC against a real
//! database, with simulated agents (raw `Connect` streams that finish every job at once). It
//! prints figures; it asserts nothing. Server and simulated agents share this process, so the
//! memory and CPU figures are an upper bound for the server alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use switchyard_auth::Enrollments;
use switchyard_bus::local::LocalBus;
use switchyard_bus::redis::RedisBus;
use switchyard_core::{Agents, AgentsConfig, EnqueueJob, Queue, QueueConfig};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::agent_service_client::AgentServiceClient;
use switchyard_types::Principal;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Options of `switchyard bench agents`.
#[derive(Debug, Clone, Args)]
pub struct AgentsBenchArgs {
    /// The database to serve from (a scratch database: the bench enqueues into it).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite::memory:"
    )]
    pub database_url: String,
    /// Enqueue -> `Assign` latency samples (one agent, one job at a time).
    #[arg(long, default_value_t = 500)]
    pub samples: usize,
    /// Simulated agents for the throughput run.
    #[arg(long, default_value_t = 100)]
    pub agents: usize,
    /// Credits (capacity) of each of them.
    #[arg(long, default_value_t = 16)]
    pub capacity: u32,
    /// Jobs through them.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Idle streams held for the memory and CPU figures.
    #[arg(long, default_value_t = 2_000)]
    pub streams: usize,
    /// How long the idle streams are watched.
    #[arg(long, default_value_t = 30)]
    pub watch_seconds: u64,
    /// Redis for the bus: then a second replica (same database, its own Redis connection)
    /// serves the latency agent, to measure enqueue -> `Assign` across replicas (PostgreSQL
    /// only).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
}

/// One in-process replica: a queue over its own store connection and bus, serving gRPC.
struct Replica {
    queue: Queue,
    agents: Agents,
    addr: std::net::SocketAddr,
}

impl Replica {
    /// A replica over `database_url`, with Redis (`redis`: URL and key prefix) or an
    /// in-process bus, serving until `stop`.
    async fn start(
        database_url: &str,
        redis: Option<(&str, &str)>,
        stop: &CancellationToken,
    ) -> anyhow::Result<Replica> {
        let stores = switchyard_store::open(database_url, true).await?;
        let bus: Arc<dyn switchyard_bus::Bus> = match redis {
            Some((url, prefix)) => Arc::new(RedisBus::connect_lazy(url, prefix)?),
            None => Arc::new(LocalBus::new()),
        };
        let queue = Queue::new(stores.queue, bus, QueueConfig::default());
        let agents = Agents::new(
            queue.clone(),
            stores.agents.clone(),
            AgentsConfig::default(),
        );
        let enrollments = Enrollments::new(stores.agents, None);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = switchyard_grpc::GrpcApi::dev(queue.clone())
            .await?
            .with_agents(agents.clone(), enrollments)
            .await;
        tokio::spawn(server.serve(listener, stop.clone().cancelled_owned()));
        Ok(Replica {
            queue,
            agents,
            addr,
        })
    }

    async fn connect(&self) -> anyhow::Result<Channel> {
        Channel::from_shared(format!("http://{}", self.addr))?
            .connect()
            .await
            .context("connect")
    }
}

/// Enqueue -> `Assign` latency: one job at a time enqueued on `enqueue_on`, taken by one agent
/// connected to `agent_on`; the sorted samples.
async fn latency(
    enqueue_on: &Queue,
    agent_on: &Replica,
    pool: &str,
    samples: usize,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<Duration>> {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    tokio::spawn(agent(
        agent_on.connect().await?,
        format!("latency-{pool}"),
        pool.to_owned(),
        1,
        Some(seen_tx),
        Arc::new(AtomicU64::new(0)),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let who = Principal::dev();
    let mut measured = Vec::with_capacity(samples);
    for _ in 0..samples {
        let sent = Instant::now();
        enqueue_on.enqueue(&who, vec![noop(pool)]).await?;
        let at = tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .context("no Assign within 10 s")?
            .context("the latency agent stopped")?;
        measured.push(at - sent);
        // Let its completion and credit land before the next sample.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    measured.sort_unstable();
    Ok(measured)
}

/// Prints p50 and p99 of sorted `samples`.
#[allow(clippy::print_stdout)]
fn print_latency(what: &str, samples: &[Duration]) {
    let pct = |p: f64| crate::bench::ms(crate::bench::percentile(samples, p));
    println!(
        "enqueue -> Assign, {what}, {} samples: p50 {:.2} ms, p99 {:.2} ms",
        samples.len(),
        pct(0.50),
        pct(0.99)
    );
}

/// Messages a simulated agent sends.
type Outbox = mpsc::Sender<pb::ConnectRequest>;

fn message(body: pb::connect_request::Body) -> pb::ConnectRequest {
    pb::ConnectRequest { body: Some(body) }
}

/// A simulated agent: opens the stream, says `Hello`, grants `capacity` credits, finishes every
/// assigned job at once (success, with a new credit) and heartbeats as told. Each assignment is
/// counted in `assigned` and reported on `seen`.
async fn agent(
    channel: Channel,
    name: String,
    pool: String,
    capacity: u32,
    seen: Option<mpsc::UnboundedSender<Instant>>,
    assigned: Arc<AtomicU64>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let (tx, rx): (Outbox, _) = mpsc::channel(256);
    tx.send(message(pb::connect_request::Body::Hello(pb::Hello {
        name,
        pool,
        capacity,
        version: "bench".into(),
        ..Default::default()
    })))
    .await?;
    let mut inbound = AgentServiceClient::new(channel)
        .connect(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(3600));
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = heartbeat.tick() => {
                tx.send(message(pb::connect_request::Body::Heartbeat(pb::Heartbeat {}))).await?;
                continue;
            }
            next = inbound.message() => next?,
        };
        let Some(pb::ConnectResponse { body: Some(body) }) = next else {
            return Ok(());
        };
        match body {
            pb::connect_response::Body::Welcome(w) => {
                let every = Duration::from_secs(w.heartbeat_interval_seconds.max(1).into());
                heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                tx.send(message(pb::connect_request::Body::Credits(pb::Credits {
                    add: capacity,
                })))
                .await?;
            }
            pb::connect_response::Body::Assign(a) => {
                if let Some(seen) = &seen {
                    let _ = seen.send(Instant::now());
                }
                assigned.fetch_add(1, Ordering::Relaxed);
                let job = a.job.context("Assign without a job")?;
                tx.send(message(pb::connect_request::Body::Finished(
                    pb::JobFinished {
                        job_id: job.id,
                        attempt: job.attempt,
                        succeeded: true,
                        ..Default::default()
                    },
                )))
                .await?;
                tx.send(message(pb::connect_request::Body::Credits(pb::Credits {
                    add: 1,
                })))
                .await?;
            }
            pb::connect_response::Body::Cancel(_)
            | pb::connect_response::Body::LeaseLost(_)
            | pb::connect_response::Body::Drain(_)
            | pb::connect_response::Body::HeartbeatAck(_)
            | pb::connect_response::Body::Certificate(_) => {}
        }
    }
}

fn noop(pool: &str) -> EnqueueJob {
    EnqueueJob {
        pool: pool.to_owned(),
        kind: "noop".to_owned(),
        ..Default::default()
    }
}

/// This process's resident memory (bytes) and CPU time used so far.
fn usage() -> (u64, Duration) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // Linux reports CPU time in clock ticks of 1/100 s.
    (rss_kib * 1024, Duration::from_millis(ticks * 10))
}

/// Runs the three measurements and prints one line each.
#[allow(clippy::print_stdout)]
pub async fn run(args: AgentsBenchArgs) -> anyhow::Result<()> {
    let run_id = std::process::id();
    let stop = CancellationToken::new();
    let prefix = format!("bench-agents-{run_id}:");
    let redis = args.redis_url.as_deref().map(|url| (url, prefix.as_str()));
    let a = Replica::start(&args.database_url, redis, &stop).await?;
    let (queue, agents) = (a.queue.clone(), a.agents.clone());
    let backend = queue.backend();
    let connect = || a.connect();
    let who = Principal::dev();
    println!(
        "bench agents: store={backend} bus={} samples={} agents={} capacity={} jobs={} streams={}",
        if redis.is_some() { "redis" } else { "local" },
        args.samples,
        args.agents,
        args.capacity,
        args.jobs,
        args.streams
    );

    // 1. Enqueue -> Assign latency: one agent, one job at a time; then across replicas.
    let pool = format!("bench-latency-{run_id}");
    print_latency(
        "same replica",
        &latency(&queue, &a, &pool, args.samples, &stop).await?,
    );
    if redis.is_some() && backend == "postgres" {
        let b = Replica::start(&args.database_url, redis, &stop).await?;
        let pool = format!("bench-cross-{run_id}");
        print_latency(
            "across replicas (Redis bus)",
            &latency(&queue, &b, &pool, args.samples, &stop).await?,
        );
    } else {
        println!("enqueue -> Assign across replicas: skipped (needs PostgreSQL and --redis-url)");
    }

    // 2. End-to-end throughput: jobs enqueued up front, then pushed through the agents.
    let pool = format!("bench-throughput-{run_id}");
    for chunk in (0..args.jobs).collect::<Vec<_>>().chunks(1000) {
        queue
            .enqueue(&who, chunk.iter().map(|_| noop(&pool)).collect())
            .await?;
    }
    let assigned = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let channels = args.agents.div_ceil(50);
    for c in 0..channels {
        let channel = connect().await?;
        for i in (c * 50)..((c + 1) * 50).min(args.agents) {
            tokio::spawn(agent(
                channel.clone(),
                format!("throughput-{run_id}-{i}"),
                pool.clone(),
                args.capacity,
                None,
                assigned.clone(),
                stop.clone(),
            ));
        }
    }
    let target = args.jobs as u64;
    while assigned.load(Ordering::Relaxed) < target {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {} of {target} jobs assigned in 10 min",
            assigned.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Every job assigned; wait until the last completions are stored.
    let done = loop {
        let stats = queue.stats(&who).await?;
        let open: u64 = stats
            .iter()
            .filter(|s| s.pool == pool)
            .map(|s| s.queued + s.claimed + s.running)
            .sum();
        if open == 0 {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    println!(
        "end to end (enqueued -> assigned -> completed), {} jobs through {} agents x {} credits: {:.0} jobs/s ({:.2} s)",
        args.jobs,
        args.agents,
        args.capacity,
        args.jobs as f64 / done.as_secs_f64(),
        done.as_secs_f64()
    );

    // 3. Idle streams held: memory and CPU while they heartbeat.
    let (rss_before, _) = usage();
    let pool = format!("bench-idle-{run_id}");
    let idle = Arc::new(AtomicU64::new(0));
    for c in 0..args.streams.div_ceil(100) {
        let channel = connect().await?;
        for i in (c * 100)..((c + 1) * 100).min(args.streams) {
            tokio::spawn(agent(
                channel.clone(),
                format!("idle-{run_id}-{i}"),
                pool.clone(),
                1,
                None,
                idle.clone(),
                stop.clone(),
            ));
        }
    }
    // Let every stream register, then watch.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let connected = agents.list(&who, Some(&pool)).await?.len();
    let (_, cpu_start) = usage();
    let watch = Duration::from_secs(args.watch_seconds);
    tokio::time::sleep(watch).await;
    let (rss_end, cpu_end) = usage();
    println!(
        "{connected} idle streams (heartbeat every {} s): RSS {:.0} MiB ({:.1} KiB per stream), CPU {:.1} % of one core over {} s",
        agents.config().heartbeat_interval.as_secs(),
        rss_end as f64 / 1048576.0,
        rss_end.saturating_sub(rss_before) as f64 / 1024.0 / connected.max(1) as f64,
        (cpu_end - cpu_start).as_secs_f64() / watch.as_secs_f64() * 100.0,
        args.watch_seconds
    );
    stop.cancel();
    Ok(())
}
