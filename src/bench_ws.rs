//! `switchyard bench ws`: fan-out of the activity feed to WebSocket clients. The gateway runs
//! in-process on the local bus (or Redis with `--redis-url`); `--clients` real WebSocket
//! clients connect over loopback and watch every job event. Activities are announced on the
//! bus, first as fast as possible (throughput: deliveries per second, each event counted once
//! per client) and then at a steady rate (latency: from announcement to a client reading the
//! frame, p50 and p99 over every delivery). Clients and server share the machine's cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use futures::StreamExt as _;
use switchyard_bus::Bus;
use switchyard_bus::local::LocalBus;
use switchyard_bus::redis::RedisBus;
use switchyard_core::{Queue, QueueConfig};
use switchyard_gateway::AppState;
use switchyard_types::{Activity, JobId, Principal};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Options of `switchyard bench ws`.
#[derive(Debug, Clone, Args)]
pub struct WsBenchArgs {
    /// Carry the feed through this Redis instead of the in-process bus.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Connected WebSocket clients.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Events announced as fast as possible (throughput).
    #[arg(long, default_value_t = 2000)]
    pub burst: usize,
    /// Events announced at `--rate` (latency).
    #[arg(long, default_value_t = 1000)]
    pub paced: usize,
    /// Events per second of the paced run.
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
}

/// Runs the benchmark and prints its figures.
#[allow(clippy::print_stdout)]
pub async fn run(args: WsBenchArgs) -> anyhow::Result<()> {
    let bus: Arc<dyn Bus> = match &args.redis_url {
        Some(url) => {
            Arc::new(RedisBus::connect(url, &format!("bench-ws-{}:", JobId::new())).await?)
        }
        None => Arc::new(LocalBus::new()),
    };
    let stores = switchyard_store::open("sqlite::memory:", true).await?;
    let queue = Queue::new(stores.queue.clone(), bus.clone(), QueueConfig::default());
    let stop = CancellationToken::new();
    let grpc = switchyard_grpc::GrpcApi::dev(queue.clone()).await?;
    let state = AppState::new(queue, crate::server::build_info());
    let (http, _) = crate::bench::serve_in_process(grpc, state, &stop).await?;

    let (latencies, mut received) = mpsc::unbounded_channel::<Duration>();
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        clients.push(tokio::spawn(watch(http, latencies.clone())));
    }
    drop(latencies);
    wait_subscribed(&mut received, args.clients).await?;
    println!(
        "ws fan-out: {} clients over loopback, {} bus",
        args.clients,
        bus.backend()
    );

    let started = Instant::now();
    for _ in 0..args.burst {
        announce(bus.as_ref());
    }
    let burst = collect(&mut received, args.burst * args.clients).await?;
    let elapsed = started.elapsed();
    #[allow(clippy::cast_precision_loss)]
    let per_second = burst.len() as f64 / elapsed.as_secs_f64();
    println!(
        "  burst: {} events x {} clients = {} deliveries in {:.2} s: {per_second:.0} deliveries/s",
        args.burst,
        args.clients,
        burst.len(),
        elapsed.as_secs_f64()
    );

    let every = Duration::from_secs(1) / args.rate.max(1);
    let mut tick = tokio::time::interval(every);
    let paced = {
        let (bus, count) = (bus.clone(), args.paced);
        tokio::spawn(async move {
            for _ in 0..count {
                tick.tick().await;
                announce(bus.as_ref());
            }
        })
    };
    let mut samples = collect(&mut received, args.paced * args.clients).await?;
    paced.await?;
    samples.sort_unstable();
    let pct = |p| crate::bench::ms(crate::bench::percentile(&samples, p));
    println!(
        "  paced: {} events at {}/s x {} clients: latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        args.paced,
        args.rate,
        args.clients,
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    stop.cancel();
    for client in clients {
        client.abort();
    }
    Ok(())
}

/// Announces one job's progress in the dev tenant, which every client watches.
fn announce(bus: &dyn Bus) {
    bus.announce(Activity::job_progress(
        &Principal::dev().tenant,
        JobId::new(),
        1,
        50,
    ));
}

/// One client: connects, reports a zero once subscribed, then the latency of every event.
async fn watch(http: std::net::SocketAddr, latencies: mpsc::UnboundedSender<Duration>) {
    let url = format!("ws://{http}/api/ws?topics=jobs");
    let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url).await else {
        return;
    };
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<Frame>(&text) else {
            continue;
        };
        let latency = frame.at.map_or(Duration::ZERO, |at| {
            (Utc::now() - at).to_std().unwrap_or_default()
        });
        if latencies.send(latency).is_err() {
            return;
        }
    }
}

/// The fields of a frame the benchmark reads.
#[derive(serde::Deserialize)]
struct Frame {
    /// Absent on the `subscribed` frame.
    at: Option<chrono::DateTime<Utc>>,
}

/// Waits for every client's `subscribed` frame.
async fn wait_subscribed(
    received: &mut mpsc::UnboundedReceiver<Duration>,
    clients: usize,
) -> anyhow::Result<()> {
    collect(received, clients)
        .await
        .context("not every client subscribed")
        .map(drop)
}

/// The next `count` samples, or an error when clients stop reporting for 30 s.
async fn collect(
    received: &mut mpsc::UnboundedReceiver<Duration>,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(count);
    while samples.len() < count {
        match tokio::time::timeout(Duration::from_secs(30), received.recv()).await {
            Ok(Some(sample)) => samples.push(sample),
            Ok(None) | Err(_) => anyhow::bail!(
                "{} of {count} deliveries arrived (clients were dropped or stalled)",
                samples.len()
            ),
        }
    }
    Ok(samples)
}
