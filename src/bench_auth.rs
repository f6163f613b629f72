//! `switchyard bench auth`: what authentication costs per request. The same REST GET and gRPC
//! unary call, sequentially over real sockets, against two servers on one store: one whose auth
//! layer admits everyone as the dev principal (no credential work) and one that verifies a
//! bearer (access JWT, or API key) and charges the tenant quota. Also times the auth step
//! alone (`Gate::admit`, in process). It prints figures; it asserts nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use http::HeaderMap;
use switchyard_auth::layer::Gate;
use switchyard_auth::limits::{LoginLimiter, TenantQuota};
use switchyard_auth::policy::Access;
use switchyard_auth::{Identity, IdentityConfig, Secret, TokenIssuer, TokenKeys};
use switchyard_bus::local::LocalBus;
use switchyard_core::{Queue, QueueConfig};
use switchyard_gateway::AppState;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::queue_service_client::QueueServiceClient;
use switchyard_types::{Principal, Scope, ScopeSet};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Options of `switchyard bench auth`.
#[derive(Debug, Clone, Args)]
pub struct AuthBenchArgs {
    /// The database to serve from (a scratch database).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite::memory:"
    )]
    pub database_url: String,
    /// Timed requests per measurement (after 10 % as warm-up).
    #[arg(long, default_value_t = 5000)]
    pub requests: usize,
}

/// One server: its addresses.
struct Running {
    http: String,
    grpc: Channel,
}

async fn start(
    queue: Queue,
    identity: Option<(Identity, Arc<Gate>)>,
    stop: &CancellationToken,
) -> anyhow::Result<Running> {
    let (grpc, state) = match identity {
        Some((identity, gate)) => (
            switchyard_grpc::GrpcApi::new(queue.clone(), Some(identity.clone()), gate.clone())
                .await?,
            AppState::new(queue, crate::server::build_info()).with_identity(identity, gate),
        ),
        None => (
            switchyard_grpc::GrpcApi::dev(queue.clone()).await?,
            AppState::new(queue, crate::server::build_info()),
        ),
    };
    let (http_addr, channel) = crate::bench::serve_in_process(grpc, state, stop).await?;
    Ok(Running {
        http: format!("http://{http_addr}/api/queue/limits"),
        grpc: channel,
    })
}

/// p50 and p99 of `n` sequential runs of `call`, after `n / 10` warm-up runs.
async fn time<F, Fut>(n: usize, mut call: F) -> anyhow::Result<(Duration, Duration)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    for _ in 0..n / 10 {
        call().await?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        call().await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    let pct = |p: f64| crate::bench::percentile(&samples, p);
    Ok((pct(0.50), pct(0.99)))
}

async fn rest(n: usize, url: &str, bearer: Option<&str>) -> anyhow::Result<(Duration, Duration)> {
    let client = reqwest::Client::new();
    time(n, || {
        let mut request = client.get(url);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "GET answered {}",
                response.status()
            );
            response.bytes().await?;
            Ok(())
        }
    })
    .await
}

async fn grpc(
    n: usize,
    channel: &Channel,
    bearer: Option<&str>,
) -> anyhow::Result<(Duration, Duration)> {
    let client = QueueServiceClient::new(channel.clone());
    let value: Option<tonic::metadata::MetadataValue<_>> =
        bearer.map(|t| format!("Bearer {t}").parse()).transpose()?;
    time(n, || {
        let mut client = client.clone();
        let mut request = tonic::Request::new(pb::GetLimitsRequest {});
        if let Some(value) = &value {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        async move {
            client.get_limits(request).await?;
            Ok(())
        }
    })
    .await
}

async fn admit(n: usize, gate: &Gate, bearer: &str) -> anyhow::Result<(Duration, Duration)> {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {bearer}").parse()?,
    );
    let headers = &headers;
    time(n, || async move {
        gate.admit(Access::Scope(Scope::JobsRead), headers).await?;
        Ok(())
    })
    .await
}

/// Runs every measurement and prints one line each.
#[allow(clippy::print_stdout)]
pub async fn run(args: AuthBenchArgs) -> anyhow::Result<()> {
    let stores = switchyard_store::open(&args.database_url, true).await?;
    let backend = stores.queue.backend();
    let bus = Arc::new(LocalBus::new());
    let queue = Queue::new(stores.queue, bus.clone(), QueueConfig::default());
    let mut secret = [0u8; 48];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
    let issuer = TokenIssuer::new(
        TokenKeys::hs256(&secret)?,
        "switchyard",
        "switchyard",
        Duration::from_secs(900),
    );
    let identity = Identity::new(
        stores.identity,
        Arc::new(issuer),
        LoginLimiter::new(bus.clone(), 10),
        IdentityConfig::default(),
    );
    let password = Secret::new("bench-password-0123456789");
    identity
        .ensure_admin("bench@switchyard.local", &password)
        .await?;
    let jwt = identity
        .login("bench@switchyard.local", &password, "bench")
        .await?
        .access_token;
    let key = identity
        .create_api_key(
            &Principal::dev(),
            &format!("bench-{}", std::process::id()),
            ScopeSet::of(&[Scope::JobsRead]),
            None,
        )
        .await?
        .secret;
    let quota = TenantQuota::new(bus, u64::MAX / 2);
    let stop = CancellationToken::new();
    tokio::spawn(quota.clone().run_flusher(stop.clone()));
    let gate = Arc::new(Gate::new(identity.clone(), Some(quota)));

    let open = start(queue.clone(), None, &stop).await?;
    let authed = start(queue, Some((identity, gate.clone())), &stop).await?;
    let n = args.requests;
    println!(
        "bench auth: store={backend} requests={n} (sequential, one connection, GET /api/queue/limits and GetLimits)"
    );
    let line = |what: &str, (p50, p99): (Duration, Duration)| {
        println!(
            "{what:<44} p50 {:>7.1} µs  p99 {:>7.1} µs",
            us(p50),
            us(p99)
        );
    };
    line(
        "REST, auth layer admits anonymously",
        rest(n, &open.http, None).await?,
    );
    line(
        "REST, bearer JWT",
        rest(n, &authed.http, Some(jwt.expose())).await?,
    );
    line(
        "REST, bearer API key",
        rest(n, &authed.http, Some(key.expose())).await?,
    );
    line(
        "gRPC, auth layer admits anonymously",
        grpc(n, &open.grpc, None).await?,
    );
    line(
        "gRPC, bearer JWT",
        grpc(n, &authed.grpc, Some(jwt.expose())).await?,
    );
    line(
        "gRPC, bearer API key",
        grpc(n, &authed.grpc, Some(key.expose())).await?,
    );
    line(
        "Gate::admit alone, JWT (in process)",
        admit(n, &gate, jwt.expose()).await?,
    );
    line(
        "Gate::admit alone, API key (in process)",
        admit(n, &gate, key.expose()).await?,
    );
    stop.cancel();
    Ok(())
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
