//! The Switchyard agent: the process on a customer's machines that runs jobs of one pool and
//! keeps every secret local.
//!
//! [`run`] holds one `Connect` stream (`switchyard.v1.AgentService`) to a control-plane
//! replica, reconnecting with jittered backoff, and carries everything on it: `Hello` and
//! `Welcome`, heartbeats that renew the leases of its jobs, credits for new work, and each job's
//! start, log chunks and end. Jobs keep running across reconnects, and their reports wait for
//! the next stream. An agent that cannot renew its leases for two thirds of the lease stops its
//! jobs (self-fencing), so a job never runs twice while the network behaves.
//!
//! Executors run `shell`, `http`, `sleep` and `noop` jobs. Secrets come from a local file,
//! reach only the jobs that name them, and are masked in every log chunk (and in every
//! `JobFinished.error`); the agent's own logs name secrets, never show their values.
//!
//! An agent authenticates with a bearer token, or, once enrolled ([`enroll`]: a one-time
//! registration token buys a client certificate for a key made here), with that certificate
//! over mutual TLS ([`AgentConfig::cert_dir`]). It renews the certificate over its stream once
//! two thirds of its lifetime have passed.
//!
//! The crate needs only the client side of `switchyard-proto`: it ships to customer machines
//! and carries no server code.

mod agent;
mod backoff;
mod certs;
mod config;
mod dial;
mod enroll;
mod executor;
mod jobs;
mod logs;
mod mask;
mod outbox;
mod secrets;
mod session;
mod wait;

pub use backoff::CAP as RECONNECT_BACKOFF_MAX;
pub use config::{AgentConfig, AgentError};
pub use enroll::{EnrollSettings, EnrolledAgent, enroll};
use tokio_util::sync::CancellationToken;

/// Runs the agent until `shutdown` is cancelled (on SIGTERM), then stops taking work, gives
/// running jobs `shutdown_grace` to finish, kills the rest, delivers the last reports and
/// returns.
///
/// Fails only at start, for a bad configuration, an unreadable secrets file, or an unusable or
/// expired certificate; connection failures are retried until shutdown.
pub async fn run(mut config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    config.validate()?;
    let certs = config
        .cert_dir
        .as_deref()
        .map(certs::CertDir::open)
        .transpose()?;
    if let Some(certs) = &certs {
        let pool = &certs.identity.pool;
        if config.pool.is_empty() {
            config.pool.clone_from(pool);
        } else if config.pool != *pool {
            return Err(AgentError::PoolMismatch {
                configured: config.pool,
                certificate: pool.clone(),
            });
        }
        if config.token.is_some() {
            tracing::warn!("a client certificate is configured: the token is not sent");
        }
        tracing::info!(
            identity = %certs.identity,
            expires_at = %certs.expires_at,
            renew_at = %certs.renew_at,
            "connecting with the agent certificate"
        );
    }
    let secrets = secrets::Secrets::load(config.secrets_file.as_deref()).await?;
    let dialer = dial::Dialer::new(&config)?;
    let executors = executor::Executors {
        secrets,
        workdir: config.workdir.clone(),
    };
    tracing::info!(
        name = %config.name,
        pool = %config.pool,
        capacity = config.capacity,
        servers = ?config.servers,
        "agent starting"
    );
    agent::Agent::new(config, executors, dialer, certs, shutdown)
        .run()
        .await;
    Ok(())
}
