//! `switchyard agent`: runs an agent against a control plane, and the built-in agent of
//! `switchyard dev`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use switchyard_agent::AgentConfig;
use tokio_util::sync::CancellationToken;

use crate::server::wait_for_signal;

/// Settings of `switchyard agent`.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// Control-plane gRPC addresses, tried in turn (comma-separated in the environment).
    #[arg(
        long = "server",
        env = "SWITCHYARD_SERVERS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:50051"
    )]
    pub servers: Vec<String>,
    /// The credential: an API key (or access token) with the `jobs:write` scope. Not needed
    /// against `switchyard dev`.
    #[arg(long, env = "SWITCHYARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The agent's name, unique in its tenant and kept across restarts (default: the host name).
    #[arg(long, env = "SWITCHYARD_AGENT_NAME")]
    pub name: Option<String>,
    /// The pool it takes work from.
    #[arg(long, env = "SWITCHYARD_POOL", default_value = "local")]
    pub pool: String,
    /// A label it offers, `key=value`; repeat for more (comma-separated in the environment).
    #[arg(long = "label", env = "SWITCHYARD_LABELS", value_delimiter = ',', value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Jobs it runs at once.
    #[arg(long, env = "SWITCHYARD_CAPACITY", default_value_t = 4)]
    pub capacity: u32,
    /// A JSON file of secrets, `{"NAME": "value"}`: jobs name them, the agent injects them and
    /// masks their values in logs. They never leave this machine.
    #[arg(long, env = "SWITCHYARD_SECRETS_FILE")]
    pub secrets_file: Option<PathBuf>,
    /// Default working directory of shell jobs.
    #[arg(long, env = "SWITCHYARD_WORKDIR", default_value = ".")]
    pub workdir: PathBuf,
    /// On SIGTERM, how long running jobs get to finish before they are stopped.
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

/// The machine's host name, the default agent name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "agent".to_owned())
}

impl AgentArgs {
    fn config(self) -> AgentConfig {
        AgentConfig {
            servers: self.servers,
            token: self.token.filter(|t| !t.is_empty()),
            name: self.name.unwrap_or_else(host_name),
            pool: self.pool,
            labels: self.labels.into_iter().collect(),
            capacity: self.capacity,
            secrets_file: self.secrets_file,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            workdir: self.workdir,
        }
    }
}

/// Runs the agent until SIGTERM/SIGINT, then lets it finish as `shutdown_grace_seconds` says.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let mut agent = tokio::spawn(switchyard_agent::run(args.config(), shutdown.clone()));
    tokio::select! {
        ended = &mut agent => return Ok(ended??),
        () = wait_for_signal() => {}
    }
    tracing::info!("agent shutting down");
    shutdown.cancel();
    Ok(agent.await??)
}

/// The built-in agent of `switchyard dev`: pool `local`, named `dev-local`, on this machine's
/// gRPC port with no credential (dev admits anonymous callers), secrets from
/// `<data dir>/secrets.json` when that file exists, jobs run in `<data dir>/work`.
pub fn builtin(grpc: std::net::SocketAddr, data_dir: &std::path::Path) -> AgentConfig {
    let secrets = data_dir.join("secrets.json");
    AgentConfig {
        servers: vec![format!("http://{grpc}")],
        token: None,
        name: "dev-local".to_owned(),
        pool: "local".to_owned(),
        labels: Default::default(),
        capacity: 4,
        secrets_file: secrets.exists().then_some(secrets),
        shutdown_grace: Duration::from_secs(5),
        workdir: data_dir.join("work"),
    }
}
