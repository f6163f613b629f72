//! `switchyard bench ingest`: upload throughput. The gateway and the gRPC server run in-process
//! over one store and an artifact store in a scratch directory; uploads of generated content
//! go over real sockets (REST multipart, and the gRPC client stream in 1 MiB chunks), one at a
//! time and then several at once. It prints MB/s (10^6 bytes per second of wall time, from the
//! first byte sent to the answer); it asserts nothing but the stored size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use futures::StreamExt as _;
use switchyard_blobs::Blobs;
use switchyard_bus::local::LocalBus;
use switchyard_core::{Ingest, IngestConfig, Queue, QueueConfig};
use switchyard_gateway::AppState;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::ingest_service_client::IngestServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Options of `switchyard bench ingest`.
#[derive(Debug, Clone, Args)]
pub struct IngestBenchArgs {
    /// The database to record uploads in (a scratch database).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite::memory:"
    )]
    pub database_url: String,
    /// Where the artifacts go [default: a fresh directory under the system's temporary one,
    /// removed afterwards].
    #[arg(long)]
    pub artifacts_url: Option<String>,
    /// The size of each upload, in MiB.
    #[arg(long, default_value_t = 256)]
    pub megabytes: u64,
    /// Uploads per measurement.
    #[arg(long, default_value_t = 4)]
    pub uploads: usize,
    /// Uploads at once in the concurrent measurement.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

const CHUNK: usize = 1024 * 1024;

/// Runs the benchmark and prints its figures.
#[allow(clippy::print_stdout)]
pub async fn run(args: IngestBenchArgs) -> anyhow::Result<()> {
    let scratch = std::env::temp_dir().join(format!(
        "switchyard-bench-{}",
        switchyard_types::ArtifactId::new()
    ));
    let location = args
        .artifacts_url
        .clone()
        .unwrap_or_else(|| scratch.display().to_string());
    let stores = switchyard_store::open(&args.database_url, true).await?;
    let queue = Queue::new(
        stores.queue.clone(),
        Arc::new(LocalBus::new()),
        QueueConfig::default(),
    );
    let config = IngestConfig {
        max_file_bytes: u64::MAX,
        max_upload_bytes: u64::MAX,
        ..IngestConfig::default()
    };
    let ingest = Ingest::new(
        stores.artifacts.clone(),
        Blobs::open(&location)?,
        queue.clone(),
        config,
    );
    let stop = CancellationToken::new();
    let (http, grpc) = serve(queue, ingest, &stop).await?;
    let size = args.megabytes * CHUNK as u64;
    // One MiB of varied bytes, sent again and again (cheap clones: the client costs little).
    let chunk = Bytes::from(
        (0..CHUNK)
            .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8)
            .collect::<Vec<u8>>(),
    );
    println!(
        "ingest: {} uploads of {} MiB each, artifacts in {location}, records in {}",
        args.uploads,
        args.megabytes,
        switchyard_telemetry::mask_url(&args.database_url)
    );
    for concurrency in [1, args.concurrency.max(1)] {
        let elapsed = measure(args.uploads, concurrency, || {
            rest_upload(http.clone(), chunk.clone(), size)
        })
        .await?;
        report("REST multipart", size, args.uploads, concurrency, elapsed);
        let elapsed = measure(args.uploads, concurrency, || {
            grpc_upload(grpc.clone(), chunk.clone(), size)
        })
        .await?;
        report("gRPC stream", size, args.uploads, concurrency, elapsed);
    }
    stop.cancel();
    if args.artifacts_url.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(())
}

#[allow(clippy::print_stdout, clippy::cast_precision_loss)]
fn report(what: &str, size: u64, uploads: usize, concurrency: usize, elapsed: Duration) {
    let bytes = size as f64 * uploads as f64;
    println!(
        "  {what:<15} {concurrency} at once: {:>7.1} MB/s ({uploads} x {} MiB in {:.2} s)",
        bytes / elapsed.as_secs_f64() / 1e6,
        size / CHUNK as u64,
        elapsed.as_secs_f64()
    );
}

/// The wall time of `uploads` runs of `upload`, `concurrency` at a time.
async fn measure<F, Fut>(uploads: usize, concurrency: usize, upload: F) -> anyhow::Result<Duration>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter((0..uploads).map(|_| upload()))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<()>>()?;
    Ok(started.elapsed())
}

/// The gateway and the gRPC server over `ingest`: the upload URL and a gRPC channel.
async fn serve(
    queue: Queue,
    ingest: Ingest,
    stop: &CancellationToken,
) -> anyhow::Result<(String, Channel)> {
    let grpc = switchyard_grpc::GrpcApi::dev(queue.clone())
        .await?
        .with_ingest(ingest.clone())
        .await;
    let state = AppState::new(queue, crate::server::build_info()).with_ingest(ingest);
    let (http_addr, channel) = crate::bench::serve_in_process(grpc, state, stop).await?;
    Ok((format!("http://{http_addr}/api/ingest"), channel))
}

/// `size` bytes as repeated `chunk`s.
fn pieces(chunk: Bytes, size: u64) -> impl futures::Stream<Item = Bytes> + Send + 'static {
    let count = size.div_ceil(CHUNK as u64);
    futures::stream::iter((0..count).map(move |n| {
        let left = size - n * CHUNK as u64;
        chunk.slice(..usize::try_from(left).unwrap_or(CHUNK).min(CHUNK))
    }))
}

async fn rest_upload(url: String, chunk: Bytes, size: u64) -> anyhow::Result<()> {
    let body = reqwest::Body::wrap_stream(pieces(chunk, size).map(Ok::<_, std::io::Error>));
    let part = reqwest::multipart::Part::stream_with_length(body, size).file_name("bench.bin");
    let form = reqwest::multipart::Form::new()
        .text("metadata", "{}")
        .part("file", part);
    let response = reqwest::Client::new()
        .post(url)
        .multipart(form)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().as_u16() == 201,
        "upload answered {}",
        response.status()
    );
    let body: serde_json::Value = response.json().await?;
    anyhow::ensure!(
        body["data"]["artifacts"][0]["size"] == size,
        "stored the wrong size: {body}"
    );
    Ok(())
}

async fn grpc_upload(channel: Channel, chunk: Bytes, size: u64) -> anyhow::Result<()> {
    let mut client = IngestServiceClient::new(channel);
    let head = futures::stream::iter([
        pb::UploadRequest {
            part: Some(pb::upload_request::Part::Start(pb::UploadStart {
                metadata: None,
            })),
        },
        pb::UploadRequest {
            part: Some(pb::upload_request::Part::File(pb::FileStart {
                name: "bench.bin".to_owned(),
                content_type: String::new(),
            })),
        },
    ]);
    let body = pieces(chunk, size).map(|bytes| pb::UploadRequest {
        part: Some(pb::upload_request::Part::Chunk(bytes.to_vec())),
    });
    let uploaded = client.upload(head.chain(body)).await?.into_inner();
    anyhow::ensure!(
        uploaded.artifacts.first().map(|a| a.size) == Some(size),
        "stored the wrong size"
    );
    Ok(())
}
