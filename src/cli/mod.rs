//! The operator CLI over gRPC: `login`, `logout` and `admin …` over `AuthService`,
//! `deploy …` over `DeploymentService`, and `ingest` over `IngestService`.
//!
//! Output goes to stdout as text (tables are tab-separated with a header, for `column -t`);
//! errors come back as `anyhow` errors reading `<code>: <message>`, printed by `main`.
//! Passwords, tokens and keys are never printed, except a new API key, once, by
//! `admin api-key create`.

mod admin;
mod client;
mod deploy;
mod ingest;
mod session;

use std::fmt;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use prost_types::Timestamp;
use switchyard_proto::v1::{LoginRequest, LogoutRequest};
use tonic::transport::Channel;

pub use admin::{AdminArgs, admin};
pub use deploy::{DeployArgs, deploy};
pub use ingest::{IngestArgs, ingest};

/// Where the session file lives.
#[derive(Debug, Clone, Args)]
pub struct SessionDir {
    /// Directory of the saved session (`session.json`, mode 0600)
    /// [default: $XDG_CONFIG_HOME/switchyard, else ~/.config/switchyard].
    #[arg(long, global = true, env = "SWITCHYARD_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
}

impl SessionDir {
    fn path(&self) -> anyhow::Result<PathBuf> {
        session::path(self.config_dir.as_deref())
    }
}

/// `switchyard login`.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// The user's email.
    #[arg(long, env = "SWITCHYARD_EMAIL")]
    pub email: String,
    /// The control plane's gRPC address.
    #[arg(long, env = "SWITCHYARD_SERVER", value_name = "URL", default_value = client::DEFAULT_SERVER)]
    pub server: String,
    #[command(flatten)]
    /// The session file.
    pub session: SessionDir,
}

/// `switchyard logout`.
#[derive(Debug, Clone, Args)]
pub struct LogoutArgs {
    /// The control plane's gRPC address [default: the saved session's].
    #[arg(long, env = "SWITCHYARD_SERVER", value_name = "URL")]
    pub server: Option<String>,
    #[command(flatten)]
    /// The session file.
    pub session: SessionDir,
}

/// The connection settings of the client commands (`admin …`, `deploy …`, `ingest`).
#[derive(Clone, Args)]
pub struct ConnArgs {
    /// The control plane's gRPC address
    /// [default: the saved session's, else http://127.0.0.1:50051].
    #[arg(long, global = true, env = "SWITCHYARD_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// An API key or access token to authenticate with, instead of the saved session (prefer
    /// the environment variable: command lines are visible to other users).
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    #[command(flatten)]
    /// The session file.
    pub session: SessionDir,
}

impl ConnArgs {
    /// Connects the generated client `service` makes (e.g. `DeploymentServiceClient::new`),
    /// authenticated with the token or the saved session.
    async fn open<C: Clone>(
        self,
        service: impl FnOnce(Channel) -> C,
    ) -> anyhow::Result<client::Authed<C>> {
        self.open_within(Some(client::CALL_TIMEOUT), service).await
    }

    /// Like [`ConnArgs::open`], with `timeout` bounding each call until its response begins
    /// (`None`: unbounded, for an upload, whose response begins after its last byte).
    async fn open_within<C: Clone>(
        self,
        timeout: Option<Duration>,
        service: impl FnOnce(Channel) -> C,
    ) -> anyhow::Result<client::Authed<C>> {
        let path = self.session.path()?;
        client::Authed::open_with(self.server.as_deref(), self.token, path, timeout, service).await
    }
}

impl fmt::Debug for ConnArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnArgs")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("session", &self.session)
            .finish()
    }
}

/// Logs in with the password from `SWITCHYARD_PASSWORD` or stdin and saves the session.
pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let path = args.session.path()?;
    let password = read_secret("SWITCHYARD_PASSWORD", "Password")?;
    let server = client::normalize_server(&args.server);
    let mut client = client::connect(&server).await?;
    let request = LoginRequest {
        email: args.email.clone(),
        password,
    };
    let fresh = client
        .login(request)
        .await
        .map_err(|s| client::status_error(&s))?
        .into_inner()
        .session
        .context("internal: the server answered the log-in without a session")?;
    let saved = session::Session {
        server,
        email: args.email,
        access_token: fresh.access_token,
        refresh_token: fresh.refresh_token,
    };
    session::save(&path, &saved)?;
    say(&format!(
        "logged in as {}; session saved to {}",
        saved.email,
        path.display()
    ));
    Ok(())
}

/// Revokes the saved session on the server and deletes its file. Without a session there is
/// nothing to do; when the server cannot revoke it, the file stays (so the log-out can be
/// retried).
pub async fn logout(args: LogoutArgs) -> anyhow::Result<()> {
    let path = args.session.path()?;
    let Some(saved) = session::load(&path)? else {
        say(&format!("not logged in (no session at {})", path.display()));
        return Ok(());
    };
    let server = args.server.as_deref().filter(|s| !s.trim().is_empty());
    let server = client::normalize_server(server.unwrap_or(&saved.server));
    let kept = || {
        format!(
            "the session is kept at {}: try again, or delete the file to forget it without \
             revoking it",
            path.display()
        )
    };
    let mut client = client::connect(&server).await.with_context(kept)?;
    let request = LogoutRequest {
        refresh_token: saved.refresh_token,
    };
    client
        .logout(request)
        .await
        .map_err(|s| client::status_error(&s).context(kept()))?;
    session::remove(&path)?;
    say(&format!(
        "logged out {}; deleted {}",
        saved.email,
        path.display()
    ));
    Ok(())
}

/// A secret from the environment variable `var` when set and not empty, else one line of
/// stdin (prompted for, without echo, when stdin is a terminal).
fn read_secret(var: &str, prompt: &str) -> anyhow::Result<String> {
    if let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return value
            .into_string()
            .map_err(|_| anyhow::anyhow!("{var} is not valid UTF-8"));
    }
    let stdin = std::io::stdin();
    let mut line = String::new();
    let read = if stdin.is_terminal() {
        eprint!("{prompt}: ");
        let _ = std::io::stderr().flush();
        let echo_off = Echo::off();
        let read = stdin.lock().read_line(&mut line);
        drop(echo_off);
        eprintln!();
        read
    } else {
        stdin.lock().read_line(&mut line)
    };
    read.context("cannot read standard input")?;
    let secret = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if secret.is_empty() {
        anyhow::bail!("no password: set {var} or write it on standard input");
    }
    Ok(secret.to_owned())
}

/// Terminal echo switched off (with `stty`) while it lives; best effort.
struct Echo(bool);

impl Echo {
    fn off() -> Echo {
        Echo(stty("-echo"))
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if self.0 {
            stty("echo");
        }
    }
}

fn stty(arg: &str) -> bool {
    std::process::Command::new("stty")
        .arg(arg)
        .stdin(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The one place the CLI writes to stdout.
#[allow(clippy::print_stdout)]
fn say(line: &str) {
    println!("{line}");
}

/// Prints a header and one tab-separated line per row. Empty cells read `-` and tabs or line
/// breaks inside a cell become spaces, so `column -t` keeps the columns aligned.
fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    say(&header.join("\t"));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        say(&cells.join("\t"));
    }
}

fn cell(value: &str) -> String {
    if value.is_empty() {
        return "-".to_owned();
    }
    value.replace(['\t', '\n', '\r'], " ")
}

/// A timestamp as RFC 3339 in UTC to the second; `-` when unset.
fn when(ts: Option<&Timestamp>) -> String {
    ts.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".to_owned())
}

/// A part of a response the server must send; its absence is the server's fault.
fn required<T>(value: Option<T>, what: &str) -> anyhow::Result<T> {
    value.ok_or_else(|| anyhow::anyhow!("internal: the server answered without a {what}"))
}

/// An enum's wire name without its prefix: `GUARDING` for `DEPLOYMENT_STATE_GUARDING`; an
/// unknown number reads `UNKNOWN(<n>)`.
fn short(name: Option<&'static str>, prefix: &str, value: i32) -> String {
    match name {
        Some(n) => n.strip_prefix(prefix).unwrap_or(n).to_owned(),
        None => format!("UNKNOWN({value})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_keep_columns_aligned() {
        assert_eq!(cell(""), "-");
        assert_eq!(cell("a\tb\nc"), "a b c");
    }

    #[test]
    fn timestamps_read_as_utc_seconds() {
        let t = Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        };
        assert_eq!(when(Some(&t)), "2023-11-14T22:13:20Z");
        assert_eq!(when(None), "-");
    }
}
