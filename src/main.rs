//! `switchyard`: the control plane for hybrid CI/CD, one binary. `dev` runs everything on one
//! machine with no set-up; `serve` runs a production replica; `agent` runs an agent; `migrate`
//! applies migrations.

mod agent;
mod bench;
mod bench_agents;
mod bench_auth;
mod bench_ingest;
mod bench_ws;
mod cli;
mod config;
mod identity;
mod server;
mod tls;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use config::{DevArgs, ServeArgs, StoreArgs};

/// Switchyard: orchestration in one place, the work and every secret on your own agents.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about)]
struct Cli {
    /// Log filter, e.g. `info` or `switchyard=debug,info`.
    #[arg(long, global = true, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything on this machine: embedded SQLite under ./.switchyard, in-process bus,
    /// HTTP on 127.0.0.1:8080, gRPC on 127.0.0.1:50051.
    Dev(DevArgs),
    /// The control plane (production): PostgreSQL and Redis, many replicas side by side.
    Serve(ServeArgs),
    /// Apply the database migrations and exit (Helm hook, operators). Safe to run concurrently.
    Migrate(StoreArgs),
    /// Run an agent: connect to the control plane, take jobs of one pool, run them here (the
    /// secrets stay on this machine). `switchyard agent enroll` enrolls it first, for a client
    /// certificate.
    Agent(agent::AgentCommand),
    /// Benchmarks that print figures (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Log in to a control plane and save the session for `admin` and the other client commands.
    ///
    /// The password comes from SWITCHYARD_PASSWORD, else from one line of standard input:
    /// `echo "$PW" | switchyard login --email admin@example.com`. Prints where the session was
    /// saved, never a token.
    Login(cli::LoginArgs),
    /// End the saved session: revoke it on the server and delete the session file.
    Logout(cli::LogoutArgs),
    /// Administer tenants, users, roles and API keys (needs the `admin` scope).
    ///
    /// Authenticates with --token / SWITCHYARD_TOKEN (an API key or access token) when given,
    /// else with the session `switchyard login` saved, refreshing it once when it has expired.
    /// Lists print a header and tab-separated lines: pipe them to `column -t -s $'\t'`.
    Admin(cli::AdminArgs),
    /// Guarded deployments: create, stage, promote, roll back, status, watch (over gRPC).
    ///
    /// Promote and rollback are dry runs that print the plan unless --execute is given.
    /// Authenticates like `admin` (--token / SWITCHYARD_TOKEN, else the saved session). Lists
    /// print a header and tab-separated lines.
    Deploy(cli::DeployArgs),
    /// Upload files and metadata for ingest (over gRPC): one job of kind `ingest` and one
    /// artifact per file, named after the file's base name.
    ///
    /// The files are streamed from disk, with a progress line when stderr is a terminal. Prints
    /// `job <id>`, then one tab-separated `<id> <name> <size> <sha256>` line per artifact. With
    /// --watch, then prints the upload's status (`<time> <STATE> <progress>%`) at every change
    /// until it ends: exit status 0 when COMPLETED, 1 when FAILED. Authenticates like `admin`
    /// (--token / SWITCHYARD_TOKEN, else the saved session).
    Ingest(cli::IngestArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Batch enqueue, claim + complete with concurrent workers, and idle wake-up latency, over
    /// real gRPC against a real database.
    Queue(bench::BenchArgs),
    /// The cost of authentication per request: REST and gRPC with and without credentials
    /// to check, and the auth step alone.
    Auth(bench_auth::AuthBenchArgs),
    /// The agents' stream: enqueue -> Assign latency, end-to-end jobs/s through simulated
    /// agents, and the memory and CPU of idle streams.
    Agents(bench_agents::AgentsBenchArgs),
    /// Upload throughput over REST (multipart) and gRPC (client stream) to the local artifact
    /// store, one upload at a time and several at once.
    Ingest(bench_ingest::IngestBenchArgs),
    /// Fan-out of live activity to WebSocket clients: deliveries per second to 1,000 clients,
    /// and event latency p50/p99.
    Ws(bench_ws::WsBenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs =
        matches!(&cli.command, Command::Serve(a) if a.environment != config::Environment::Dev);
    // A client command's failure is the user's answer, said once on stderr; a server's goes to
    // the log too.
    let is_client = matches!(
        &cli.command,
        Command::Login(_)
            | Command::Logout(_)
            | Command::Admin(_)
            | Command::Deploy(_)
            | Command::Ingest(_)
    ) || matches!(&cli.command, Command::Agent(agent) if agent.is_client());
    if let Err(e) = switchyard_telemetry::init(&cli.log_level, json_logs) {
        eprintln!("switchyard: bad LOG_LEVEL: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            tracing::error!(error = %e, "configuration error");
            eprintln!("switchyard: configuration error: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            if !is_client {
                tracing::error!(error = format!("{e:#}"), "switchyard stopped");
            }
            eprintln!("switchyard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Config(config::ConfigError),
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Dev(args) => {
            std::fs::create_dir_all(&args.data_dir).map_err(|e| {
                anyhow::anyhow!("cannot create data dir {}: {e}", args.data_dir.display())
            })?;
            let db = args.data_dir.join("switchyard.db");
            let plan = server::Plan {
                database_url: format!("sqlite://{}", db.display()),
                redis: None,
                grpc_addr: args.grpc_addr,
                http_addr: args.http_addr,
                auth: identity::AuthPlan {
                    args: args.auth.clone(),
                    dev_data_dir: Some(args.data_dir.clone()),
                },
                agents: args.agents.config().map_err(Failure::Config)?,
                builtin_agent: Some(args.data_dir.clone()),
                tls: tls::dev(&args.data_dir)?,
                demo_environments: true,
                notify_outbox_dir: args.data_dir.join("outbox"),
                // The built-in agent processes uploads.
                ingest: args
                    .ingest
                    .plan(&args.data_dir.join("artifacts"), agent::LOCAL_POOL),
            };
            tracing::info!(dashboard = %format!("http://{}", args.http_addr), "switchyard dev");
            Ok(server::run(plan).await?)
        }
        Command::Serve(args) => {
            let database_url = args.validate().map_err(Failure::Config)?;
            if let Some(reason) = args.strict_reason() {
                tracing::info!(%reason, "strict mode");
            }
            let plan = server::Plan {
                database_url,
                redis: args
                    .redis_url
                    .clone()
                    .filter(|u| !u.is_empty())
                    .map(|u| (u, args.redis_prefix.clone())),
                grpc_addr: args.grpc_addr,
                http_addr: args.http_addr,
                auth: identity::AuthPlan {
                    args: args.auth.clone(),
                    dev_data_dir: None,
                },
                agents: args.agents.config().map_err(Failure::Config)?,
                builtin_agent: None,
                tls: tls::serve(&args.tls)?,
                demo_environments: false,
                notify_outbox_dir: args.notify_outbox_dir.clone(),
                ingest: args
                    .ingest
                    .plan(std::path::Path::new("./.switchyard/artifacts"), "ingest"),
            };
            Ok(server::run(plan).await?)
        }
        Command::Agent(command) => Ok(agent::main(command).await?),
        Command::Bench(BenchCommand::Queue(args)) => Ok(bench::run(args).await?),
        Command::Bench(BenchCommand::Auth(args)) => Ok(bench_auth::run(args).await?),
        Command::Bench(BenchCommand::Agents(args)) => Ok(bench_agents::run(args).await?),
        Command::Bench(BenchCommand::Ingest(args)) => Ok(bench_ingest::run(args).await?),
        Command::Bench(BenchCommand::Ws(args)) => Ok(bench_ws::run(args).await?),
        Command::Login(args) => Ok(cli::login(args).await?),
        Command::Logout(args) => Ok(cli::logout(args).await?),
        Command::Admin(args) => Ok(cli::admin(args).await?),
        Command::Deploy(args) => Ok(cli::deploy(args).await?),
        Command::Ingest(args) => Ok(cli::ingest(args).await?),
        Command::Migrate(args) => {
            let url = args
                .database_url
                .ok_or(Failure::Config(config::ConfigError::DatabaseUrlMissing))?;
            let store = switchyard_store::open(&url, true)
                .await
                .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?
                .queue;
            let status = store
                .migrations()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            tracing::info!(
                applied = status.applied,
                known = status.known,
                "migrations applied"
            );
            Ok(())
        }
    }
}
