//! `switchyard deploy …`: guarded deployments over `DeploymentService`. Create and stage them,
//! promote and roll them back (dry runs unless `--execute`), show their status and guard
//! evaluations, and watch their events until they end.

use std::time::Duration;

use clap::{Args, Subcommand};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::deployment_service_client::DeploymentServiceClient;
use switchyard_types::DeploymentState;
use tonic::transport::Channel;

use super::client::{self, Authed};
use super::{ConnArgs, required, say, short, table, when};

/// A connected, authenticated `DeploymentService` client.
type Client = Authed<DeploymentServiceClient<Channel>>;

/// How many times in a row `watch` reconnects to a stream that was cut off before giving up.
const WATCH_RETRIES: u32 = 5;

/// `switchyard deploy`.
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    /// Server and credentials.
    pub conn: ConnArgs,
    #[command(subcommand)]
    /// What to do.
    pub command: DeployCommand,
}

/// What to do with deployments.
#[derive(Debug, Clone, Subcommand)]
pub enum DeployCommand {
    /// Create a deployment of one version of one service: PENDING, nothing runs until it is
    /// staged. The first line printed reads `deployment <id> <service>@<version> PENDING`.
    Create(CreateArgs),
    /// Deploy a PENDING deployment to its staging environment (STAGING, then STAGED).
    Stage {
        /// The deployment's id.
        id: String,
    },
    /// Promote a STAGED deployment to production. Without --execute a dry run: prints what
    /// would happen (the command, the version it replaces) and changes nothing.
    Promote {
        /// The deployment's id.
        id: String,
        /// Carry it out, and print the job it started.
        #[arg(long)]
        execute: bool,
    },
    /// Roll production back to the version it ran before this deployment (or to --version),
    /// from PROMOTING, GUARDING or SUCCEEDED. Without --execute a dry run that changes nothing.
    Rollback {
        /// The deployment's id.
        id: String,
        /// The version to deploy instead of the previous one.
        #[arg(long)]
        version: Option<String>,
        /// Carry it out, and print the job it started.
        #[arg(long)]
        execute: bool,
    },
    /// One deployment in detail with its latest guard evaluations; without an id, a table of
    /// the deployments, newest first.
    Status(StatusArgs),
    /// Print a deployment's events (`<at> <state> <message>`) as they happen, from its
    /// creation, until it ends: exit status 0 when it SUCCEEDED, 1 when it was ROLLED_BACK or
    /// FAILED. With --all, every deployment's events (`<at> <id> <state> <message>`), without
    /// end.
    Watch {
        /// The deployment's id.
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Watch every deployment instead of one.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

/// `deploy create`.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// The service: 1-64 characters of [a-z0-9._-].
    #[arg(long)]
    pub service: String,
    /// The version: 1-128 characters of [A-Za-z0-9._+-].
    #[arg(long)]
    pub version: String,
    /// The target (production) environment.
    #[arg(long, default_value = "production")]
    pub environment: String,
    /// The staging environment.
    #[arg(long, default_value = "staging")]
    pub staging_environment: String,
    /// How long the guard watches production, in seconds [default: the server's, 3600].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub window_seconds: Option<u64>,
    /// Time between guard evaluations, in seconds [default: the server's, 30].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval_seconds: Option<u64>,
    /// Samples a gate needs to judge [default: the server's, 10; 0 lets a gate pass with no
    /// data].
    #[arg(long)]
    pub min_samples: Option<u32>,
    /// Stage it right away (StageDeployment after the creation).
    #[arg(long)]
    pub stage: bool,
}

/// `deploy status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The deployment's id; without it, a table of deployments.
    pub id: Option<String>,
    /// List only this service's deployments.
    #[arg(long, conflicts_with = "id")]
    pub service: Option<String>,
    /// List only deployments in this state (e.g. `guarding`; any case).
    #[arg(long, conflicts_with = "id", value_parser = parse_state)]
    pub state: Option<pb::DeploymentState>,
    /// List only deployments to this environment (as staging or target).
    #[arg(long, conflicts_with = "id")]
    pub environment: Option<String>,
    /// List at most this many deployments.
    #[arg(long, default_value_t = 50, conflicts_with = "id",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Show this many of the deployment's latest guard evaluations.
    #[arg(long, default_value_t = 5)]
    pub evaluations: usize,
}

/// A `--state` value, any case, as the wire enum.
fn parse_state(s: &str) -> Result<pb::DeploymentState, String> {
    s.parse::<DeploymentState>()
        .map(pb::DeploymentState::from)
        .map_err(|e| match e.violations.into_iter().next() {
            Some(v) => v.description,
            None => e.message,
        })
}

/// Runs one `deploy` command.
pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let mut c: Client = args.conn.open(DeploymentServiceClient::new).await?;
    match args.command {
        DeployCommand::Create(a) => create(&mut c, a).await,
        DeployCommand::Stage { id } => stage(&mut c, id).await,
        DeployCommand::Promote { id, execute } => {
            let req = pb::PromoteDeploymentRequest { id, execute };
            let resp = c.call(req, |mut c, r| async move { c.promote_deployment(r).await });
            plan(resp.await?.plan, "promote")
        }
        DeployCommand::Rollback {
            id,
            version,
            execute,
        } => {
            let req = pb::RollbackDeploymentRequest {
                id,
                version,
                execute,
            };
            let resp = c.call(
                req,
                |mut c, r| async move { c.rollback_deployment(r).await },
            );
            plan(resp.await?.plan, "roll back")
        }
        DeployCommand::Status(a) => match a.id {
            Some(id) => show(&mut c, id, a.evaluations).await,
            None => list(&mut c, a).await,
        },
        DeployCommand::Watch { id, all: _ } => watch(&mut c, id).await,
    }
}

async fn create(c: &mut Client, a: CreateArgs) -> anyhow::Result<()> {
    let req = pb::CreateDeploymentRequest {
        service: a.service,
        version: a.version,
        environment: Some(a.environment),
        staging_environment: Some(a.staging_environment),
        guard: Some(pb::GuardSettings {
            window_seconds: a.window_seconds.unwrap_or(0),
            interval_seconds: a.interval_seconds.unwrap_or(0),
            min_samples: a.min_samples,
            ..Default::default()
        }),
    };
    let resp = c.call(req, |mut c, r| async move { c.create_deployment(r).await });
    let d = required(resp.await?.deployment, "deployment")?;
    headline(&d);
    field("environments", &environments(&d));
    field("guard", &guard(d.guard.as_ref()));
    if a.stage {
        let id = d.id.clone();
        stage(c, d.id).await.map_err(|e| {
            e.context(format!(
                "deployment {id} was created but not staged; stage it with `switchyard deploy \
                 stage {id}`"
            ))
        })?;
    }
    Ok(())
}

async fn stage(c: &mut Client, id: String) -> anyhow::Result<()> {
    let req = pb::StageDeploymentRequest { id };
    let resp = c.call(req, |mut c, r| async move { c.stage_deployment(r).await });
    plan(resp.await?.plan, "stage")
}

/// Prints what a stage, promote or rollback did, or would do on a dry run (`verb` names the
/// action in the dry run's last line).
fn plan(p: Option<pb::DeploymentPlan>, verb: &str) -> anyhow::Result<()> {
    let p = required(p, "plan")?;
    let id = p.deployment.as_ref().map_or("-", |d| d.id.as_str());
    say(&format!(
        "{} deployment {id}: {} -> {}",
        step_name(p.step),
        state_name(p.from),
        state_name(p.to)
    ));
    field(
        "environment",
        &format!("{} (pool {})", p.environment, p.pool),
    );
    let replaces = match &p.replaces {
        Some(v) => format!("replacing {v}"),
        None => "replacing nothing (the environment runs no version yet)".to_owned(),
    };
    field("version", &format!("{}, {replaces}", p.version));
    field("command", &p.command);
    if p.executed {
        let state = p.deployment.as_ref().map_or(p.to, |d| d.state);
        say(&format!(
            "started job {}; the deployment is {}",
            p.job_id.as_deref().unwrap_or("-"),
            state_name(state)
        ));
    } else {
        say(&format!(
            "dry run: nothing changed; add --execute to {verb}"
        ));
    }
    Ok(())
}

async fn get(c: &mut Client, id: String) -> anyhow::Result<pb::Deployment> {
    let req = pb::GetDeploymentRequest { id };
    let resp = c.call(req, |mut c, r| async move { c.get_deployment(r).await });
    required(resp.await?.deployment, "deployment")
}

/// `deploy status ID`: the deployment's fields, then its last `last` evaluations.
async fn show(c: &mut Client, id: String, last: usize) -> anyhow::Result<()> {
    let d = get(c, id.clone()).await?;
    let req = pb::ListEvaluationsRequest { id };
    let resp = c.call(req, |mut c, r| async move { c.list_evaluations(r).await });
    let evaluations = resp.await?.evaluations;
    headline(&d);
    let job = d.step_job_id.as_deref().unwrap_or("-");
    field(
        "state",
        &format!(
            "{} (step {}, job {job})",
            state_name(d.state),
            step_name(d.step)
        ),
    );
    field(
        "version",
        &format!(
            "{} (previous {}, rollback to {})",
            d.version,
            d.previous_version.as_deref().unwrap_or("-"),
            d.rollback_version.as_deref().unwrap_or("-")
        ),
    );
    field("environments", &environments(&d));
    field("reason", d.reason.as_deref().unwrap_or("-"));
    field("guard", &guard(d.guard.as_ref()));
    field(
        "guard window",
        &format!(
            "{} .. {}",
            when(d.guard_started_at.as_ref()),
            when(d.guard_ends_at.as_ref())
        ),
    );
    field(
        "created",
        &format!("{} by {}", when(d.created_at.as_ref()), d.created_by),
    );
    field("updated", &when(d.updated_at.as_ref()));
    field("finished", &when(d.finished_at.as_ref()));
    let shown = &evaluations[evaluations.len().saturating_sub(last)..];
    field(
        "evaluations",
        &match (evaluations.len(), shown.len()) {
            (0, _) => "none yet".to_owned(),
            (all, n) => format!("{all} in all; the last {n}, oldest first:"),
        },
    );
    for e in shown {
        say(&format!(
            "  #{} {} {}",
            e.seq,
            when(e.at.as_ref()),
            verdict_name(e.verdict)
        ));
        for g in &e.gates {
            let prefix = format!("{}: ", g.gate);
            let detail = g.detail.strip_prefix(&prefix).unwrap_or(&g.detail);
            say(&format!(
                "    {} {} value={} limit={} samples={}: {detail}",
                g.gate,
                verdict_name(g.verdict),
                number(g.value),
                number(g.limit),
                g.samples,
            ));
        }
    }
    Ok(())
}

/// `deploy status`: a table of deployments, newest first, following pages up to the limit.
async fn list(c: &mut Client, a: StatusArgs) -> anyhow::Result<()> {
    let limit = a.limit as usize;
    let mut found = Vec::new();
    let mut page_token = String::new();
    loop {
        let req = pb::ListDeploymentsRequest {
            service: a.service.clone(),
            state: a.state.map_or(0, Into::into),
            environment: a.environment.clone(),
            page_size: u32::try_from(limit - found.len())
                .unwrap_or(u32::MAX)
                .min(500),
            page_token,
        };
        let resp = c.call(req, |mut c, r| async move { c.list_deployments(r).await });
        let page = resp.await?;
        found.extend(page.deployments);
        page_token = page.next_page_token;
        if page_token.is_empty() || found.len() >= limit {
            break;
        }
    }
    found.truncate(limit);
    table(
        &[
            "ID",
            "SERVICE",
            "VERSION",
            "STATE",
            "ENVIRONMENT",
            "UPDATED",
        ],
        found.into_iter().map(|d| {
            let state = state_name(d.state);
            let updated = when(d.updated_at.as_ref());
            vec![d.id, d.service, d.version, state, d.environment, updated]
        }),
    );
    Ok(())
}

/// `deploy watch`: prints events until one deployment's stream ends (with its terminal state as
/// the outcome), or forever for all. A stream cut off early is resumed after the last event
/// seen, up to [`WATCH_RETRIES`] times in a row.
async fn watch(c: &mut Client, id: Option<String>) -> anyhow::Result<()> {
    let deployment_id = id.unwrap_or_default();
    let one = !deployment_id.is_empty();
    let mut after_seq = 0;
    let mut last = pb::DeploymentState::Unspecified;
    let mut retries = 0;
    loop {
        let req = pb::WatchDeploymentsRequest {
            deployment_id: deployment_id.clone(),
            after_seq,
        };
        let opened = c.call(req, |mut c, r| async move { c.watch_deployments(r).await });
        let cut = match opened.await {
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(msg)) => {
                        retries = 0;
                        let Some(e) = msg.event else { continue };
                        after_seq = e.seq;
                        last = pb::DeploymentState::try_from(e.state).unwrap_or(last);
                        let at = when(e.at.as_ref());
                        let (state, message) = (state_name(e.state), e.message);
                        say(&if one {
                            format!("{at} {state} {message}")
                        } else {
                            format!("{at} {} {state} {message}", e.deployment_id)
                        });
                    }
                    Ok(None) if one && is_terminal(last) => {
                        return outcome(c, deployment_id, last).await;
                    }
                    Ok(None) => break anyhow::anyhow!("the server ended the stream"),
                    Err(s) if retryable(&s) => break client::status_error(&s),
                    Err(s) => return Err(client::status_error(&s)),
                }
            },
            Err(e) if client::is_unavailable(&e) => e,
            Err(e) => return Err(e),
        };
        retries += 1;
        if retries > WATCH_RETRIES {
            return Err(cut.context(format!(
                "the watch was cut off {WATCH_RETRIES} times in a row"
            )));
        }
        eprintln!("switchyard: watch interrupted ({cut:#}); resuming after event {after_seq}");
        tokio::time::sleep(Duration::from_secs(u64::from(retries))).await;
    }
}

/// Whether a stream's error may pass when it is resumed: the server went away or restarts.
fn retryable(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::Unavailable || std::error::Error::source(s).is_some()
}

fn is_terminal(state: pb::DeploymentState) -> bool {
    matches!(
        state,
        pb::DeploymentState::Succeeded
            | pb::DeploymentState::RolledBack
            | pb::DeploymentState::Failed
    )
}

/// A watched deployment's end: success when it SUCCEEDED, else an error naming the state and
/// the deployment's reason.
async fn outcome(c: &mut Client, id: String, last: pb::DeploymentState) -> anyhow::Result<()> {
    if last == pb::DeploymentState::Succeeded {
        return Ok(());
    }
    let reason = get(c, id.clone())
        .await
        .ok()
        .and_then(|d| d.reason)
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    anyhow::bail!("deployment {id} ended {}{reason}", state_name(last as i32))
}

/// The first line about a deployment: `deployment <id> <service>@<version> <STATE>`.
fn headline(d: &pb::Deployment) {
    say(&format!(
        "deployment {} {}@{} {}",
        d.id,
        d.service,
        d.version,
        state_name(d.state)
    ));
}

/// One `key  value` line of a deployment's or plan's details.
fn field(key: &str, value: &str) {
    say(&format!("{key:<13} {value}"));
}

fn environments(d: &pb::Deployment) -> String {
    format!("{} -> {}", d.staging_environment, d.environment)
}

/// The guard's settings in one line.
fn guard(g: Option<&pb::GuardSettings>) -> String {
    let Some(g) = g else {
        return "-".to_owned();
    };
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    format!(
        "{} s window, evaluated every {} s over the last {} s; a gate needs {} samples and \
         fails above failure rate {} or latency ratio {}",
        g.window_seconds,
        g.interval_seconds,
        g.lookback_seconds,
        opt(g.min_samples.map(|n| n.to_string())),
        number(g.max_failure_rate),
        number(g.max_latency_ratio),
    )
}

/// A measured value or limit to at most 4 decimals; `-` when unset.
fn number(v: Option<f64>) -> String {
    let Some(v) = v else {
        return "-".to_owned();
    };
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

fn state_name(v: i32) -> String {
    let name = pb::DeploymentState::try_from(v)
        .ok()
        .map(|s| s.as_str_name());
    short(name, "DEPLOYMENT_STATE_", v)
}

fn step_name(v: i32) -> String {
    let name = pb::DeploymentStep::try_from(v)
        .ok()
        .map(|s| s.as_str_name());
    short(name, "DEPLOYMENT_STEP_", v)
}

fn verdict_name(v: i32) -> String {
    let name = pb::Verdict::try_from(v).ok().map(|s| s.as_str_name());
    short(name, "VERDICT_", v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_lose_their_prefix() {
        assert_eq!(
            state_name(pb::DeploymentState::RolledBack as i32),
            "ROLLED_BACK"
        );
        assert_eq!(step_name(pb::DeploymentStep::Promote as i32), "PROMOTE");
        assert_eq!(
            verdict_name(pb::Verdict::Inconclusive as i32),
            "INCONCLUSIVE"
        );
        assert_eq!(state_name(99), "UNKNOWN(99)");
    }

    #[test]
    fn states_parse_in_any_case() {
        assert_eq!(parse_state("guarding"), Ok(pb::DeploymentState::Guarding));
        assert_eq!(
            parse_state("Rolled_Back"),
            Ok(pb::DeploymentState::RolledBack)
        );
        assert!(parse_state("bogus").unwrap_err().contains("GUARDING"));
    }

    #[test]
    fn numbers_drop_trailing_zeros() {
        assert_eq!(number(Some(0.05)), "0.05");
        assert_eq!(number(Some(1.1)), "1.1");
        assert_eq!(number(Some(2.0)), "2");
        assert_eq!(number(Some(0.0)), "0");
        assert_eq!(number(Some(1.0 / 3.0)), "0.3333");
        assert_eq!(number(None), "-");
    }
}
