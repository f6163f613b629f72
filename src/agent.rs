//! `switchyard agent`: runs an agent against a control plane, `switchyard agent enroll`
//! enrolls one (a registration token for a client certificate), and the built-in agent of
//! `switchyard dev`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use switchyard_agent::{AgentConfig, EnrollSettings};
use tokio_util::sync::CancellationToken;

use crate::server::wait_for_signal;

/// `switchyard agent`: runs the agent (the flags below), or `enroll`s it first.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AgentCommand {
    /// Without one: run the agent.
    #[command(subcommand)]
    pub command: Option<AgentSubcommand>,
    /// How to run it.
    #[command(flatten)]
    pub run: AgentArgs,
}

impl AgentCommand {
    /// Whether this is a client command (its failure is said once, on stderr).
    pub fn is_client(&self) -> bool {
        self.command.is_some()
    }
}

/// What `switchyard agent` can do besides running.
#[derive(Debug, Clone, Subcommand)]
pub enum AgentSubcommand {
    /// Enroll this agent: a one-time registration token buys its client certificate.
    ///
    /// The key is made here and never leaves this machine. The key and the certificates are
    /// saved in --cert-dir as `agent.key` (mode 0600), `agent.pem` and `ca.pem`; run the agent
    /// with the same --cert-dir, and it renews the certificate by itself. Prints one line: the
    /// agent's id, its pool and when its certificate expires.
    Enroll(EnrollArgs),
}

/// Settings of `switchyard agent enroll`.
#[derive(Debug, Clone, Args)]
pub struct EnrollArgs {
    /// The control plane's gRPC address, e.g. `https://switchyard.example.com:50051`.
    #[arg(long, env = "SWITCHYARD_SERVER")]
    pub server: String,
    /// The registration token (`syt_…`) from `POST /api/agents/registration-tokens`. Prefer
    /// the environment: a command line is visible to other users of the machine.
    #[arg(long, env = "SWITCHYARD_REGISTRATION_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The agent's name, unique in its tenant (default: the host name).
    #[arg(long, env = "SWITCHYARD_AGENT_NAME")]
    pub name: Option<String>,
    /// A label it offers, `key=value`; repeat for more (comma-separated in the environment).
    #[arg(long = "label", env = "SWITCHYARD_LABELS", value_delimiter = ',', value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// The CA certificate (PEM) that signed the server's certificate; needed for https://.
    #[arg(long, env = "SWITCHYARD_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Where to save the key and the certificates (created if missing).
    #[arg(long, env = "SWITCHYARD_AGENT_CERT_DIR")]
    pub cert_dir: PathBuf,
    /// Replace an agent enrolled in --cert-dir already (its key is overwritten).
    #[arg(long)]
    pub force: bool,
}

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
    /// against `switchyard dev`, nor sent with --cert-dir.
    #[arg(long, env = "SWITCHYARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The enrolled agent's certificate directory (see `switchyard agent enroll`): connect
    /// with that client certificate (mTLS, https:// servers only) and renew it over the stream.
    #[arg(long, env = "SWITCHYARD_AGENT_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for https:// servers (with --cert-dir, trusted besides
    /// the directory's ca.pem).
    #[arg(long, env = "SWITCHYARD_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The agent's name, unique in its tenant and kept across restarts (default: the host name).
    #[arg(long, env = "SWITCHYARD_AGENT_NAME")]
    pub name: Option<String>,
    /// The pool it takes work from (default: `local`; with --cert-dir, the certificate's, which
    /// a pool given here must match).
    #[arg(long, env = "SWITCHYARD_POOL")]
    pub pool: Option<String>,
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
        let pool = match (self.pool, &self.cert_dir) {
            (Some(pool), _) => pool,
            // Empty: the certificate's.
            (None, Some(_)) => String::new(),
            (None, None) => LOCAL_POOL.to_owned(),
        };
        AgentConfig {
            servers: self.servers,
            token: self.token.filter(|t| !t.is_empty()),
            cert_dir: self.cert_dir,
            ca_file: self.ca_file,
            name: self.name.unwrap_or_else(host_name),
            pool,
            labels: self.labels.into_iter().collect(),
            capacity: self.capacity,
            secrets_file: self.secrets_file,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            workdir: self.workdir,
        }
    }
}

/// `switchyard agent [enroll]`.
pub async fn main(command: AgentCommand) -> anyhow::Result<()> {
    match command.command {
        Some(AgentSubcommand::Enroll(args)) => enroll(args).await,
        None => run(command.run).await,
    }
}

/// The pool of an agent that names none, and of `switchyard dev`'s built-in agent (which
/// therefore also takes `dev`'s uploads: see `IngestArgs::plan`).
pub const LOCAL_POOL: &str = "local";

/// Enrolls the agent and prints its id, pool and certificate expiry on one line.
#[allow(clippy::print_stdout)]
async fn enroll(args: EnrollArgs) -> anyhow::Result<()> {
    let settings = EnrollSettings {
        server: args.server,
        token: args.token,
        name: args.name.unwrap_or_else(host_name),
        labels: args.labels.into_iter().collect(),
        ca_file: args.ca_file,
        cert_dir: args.cert_dir,
        force: args.force,
    };
    let name = settings.name.clone();
    let enrolled = switchyard_agent::enroll(settings)
        .await
        .with_context(|| format!("cannot enroll agent {name:?}"))?;
    println!(
        "enrolled agent {} (name {name:?}) in pool {}; certificate expires {}; saved in {}",
        enrolled.agent_id,
        enrolled.pool,
        enrolled
            .expires_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        enrolled.cert_dir.display()
    );
    Ok(())
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
        cert_dir: None,
        ca_file: None,
        name: "dev-local".to_owned(),
        pool: LOCAL_POOL.to_owned(),
        labels: Default::default(),
        capacity: 4,
        secrets_file: secrets.exists().then_some(secrets),
        shutdown_grace: Duration::from_secs(5),
        workdir: data_dir.join("work"),
    }
}
