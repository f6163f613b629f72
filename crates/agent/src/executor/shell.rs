//! The `shell` executor: `/bin/sh -c command` in a process group of its own.
//!
//! Payload: `{"command": "…", "env": {…}, "workdir": "…", "timeout_seconds": N,
//! "secrets": ["NAME", …]}` (`cmd` is accepted for `command`). Named secrets become environment
//! variables of the same names. Of the agent's own environment only `PATH`, `HOME`, `USER`,
//! `LOGNAME`, `LANG`, `LC_ALL`, `TZ`, `TMPDIR`, `SHELL` and `TERM` are passed on (never its
//! credentials), and `SWITCHYARD_JOB_ID` / `SWITCHYARD_JOB_ATTEMPT` are set.
//!
//! Stdout and stderr share one pipe, so their output interleaves in the order it was written.
//! On timeout or cancellation the whole group gets `SIGTERM`, then `SIGKILL` after
//! [`KILL_AFTER`]; when the shell ends, whatever it left behind in its group is killed too.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use switchyard_proto::v1::Job;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Executors, Outcome, job_timeout, payload};
use crate::logs::LogSink;
use crate::wait;

/// How long a group gets between `SIGTERM` and `SIGKILL`.
pub(super) const KILL_AFTER: Duration = Duration::from_secs(5);
/// How long output is still read once the group is gone (a process that left the group may
/// hold the pipe open).
const DRAIN_FOR: Duration = Duration::from_secs(1);
/// Bytes read from the pipe at once.
const READ_SIZE: usize = 16 * 1024;

/// The agent's environment variables a job inherits; everything else is withheld.
const INHERITED: [&str; 10] = [
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL", "TERM",
];

/// The payload of `shell`.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ShellPayload {
    #[serde(alias = "cmd")]
    command: String,
    env: BTreeMap<String, String>,
    workdir: Option<PathBuf>,
    timeout_seconds: Option<u64>,
    secrets: Vec<String>,
}

/// How the wait for the shell ended.
enum Ending {
    Exited(std::io::Result<ExitStatus>),
    TimedOut(Duration),
    Cancelled,
}

/// Runs a shell job.
pub(super) async fn run(
    job: &Job,
    executors: &Executors,
    cancel: &CancellationToken,
    logs: &mut LogSink,
) -> Outcome {
    let payload: ShellPayload = match payload(job) {
        Ok(p) => p,
        Err(outcome) => return outcome,
    };
    if payload.command.trim().is_empty() {
        return Outcome::failure("invalid shell payload: `command` is missing or empty");
    }
    let workdir = match &payload.workdir {
        Some(dir) => executors.workdir.join(dir),
        None => executors.workdir.clone(),
    };
    let mut command = Command::new("/bin/sh");
    // A job sees only a few harmless variables of the agent's environment, never the agent's
    // (or, for the built-in agent of `switchyard dev`, the server's) settings and credentials.
    command.arg("-c").arg(&payload.command).env_clear();
    for name in INHERITED {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.envs(&payload.env);
    for name in &payload.secrets {
        match executors.secrets.get(name) {
            Some(value) => command.env(name, value),
            None => return Outcome::failure(format!("unknown secret {name}")),
        };
    }
    command
        .env("SWITCHYARD_JOB_ID", &job.id)
        .env("SWITCHYARD_JOB_ATTEMPT", job.attempt.to_string())
        .current_dir(&workdir)
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let timeout = payload
        .timeout_seconds
        .map_or(job_timeout(job.timeout_seconds), job_timeout);
    match spawn(command) {
        Ok((child, output)) => supervise(child, output, timeout, cancel, logs).await,
        Err(e) => Outcome::failure(format!(
            "cannot start /bin/sh in {}: {e}",
            workdir.display()
        )),
    }
}

/// Starts the shell with stdout and stderr on one pipe; returns its read end.
fn spawn(mut command: Command) -> std::io::Result<(Child, Output)> {
    let (reader, writer) = std::io::pipe()?;
    command.stdout(writer.try_clone()?).stderr(writer);
    let child = command.spawn()?;
    // The command holds the pipe's write ends: drop them, or the output never ends.
    drop(command);
    let output = Output {
        pipe: pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?,
        open: true,
        buf: vec![0; READ_SIZE],
    };
    Ok((child, output))
}

/// Waits for the shell, its timeout or cancellation while shipping its output; then makes
/// sure nothing of its process group survives.
async fn supervise(
    mut child: Child,
    mut output: Output,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    logs: &mut LogSink,
) -> Outcome {
    // `process_group(0)`: the group id is the shell's pid, known until it is reaped.
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let deadline = timeout.map(|limit| Instant::now() + limit);
    let ending = output
        .pump(logs, async {
            tokio::select! {
                status = child.wait() => Ending::Exited(status),
                () = wait::until(deadline) => Ending::TimedOut(timeout.unwrap_or_default()),
                () = cancel.cancelled() => Ending::Cancelled,
            }
        })
        .await;
    let outcome = match ending {
        Ending::Exited(status) => exit_outcome(status),
        Ending::TimedOut(limit) => {
            terminate(group, &mut child, &mut output, logs).await;
            Outcome::timed_out(limit)
        }
        Ending::Cancelled => {
            terminate(group, &mut child, &mut output, logs).await;
            Outcome::cancelled()
        }
    };
    signal(group, Signal::SIGKILL);
    output.drain(logs).await;
    outcome
}

/// `SIGTERM` to the group; `SIGKILL` if the shell is still there [`KILL_AFTER`] later.
async fn terminate(group: Option<Pid>, child: &mut Child, output: &mut Output, logs: &mut LogSink) {
    signal(group, Signal::SIGTERM);
    let waited = output
        .pump(logs, tokio::time::timeout(KILL_AFTER, child.wait()))
        .await;
    if waited.is_err() {
        signal(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

/// Sends `signal` to the group; a group already gone is fine.
fn signal(group: Option<Pid>, signal: Signal) {
    if let Some(group) = group
        && let Err(e) = killpg(group, signal)
        && e != nix::errno::Errno::ESRCH
    {
        tracing::warn!(%group, ?signal, error = %e, "cannot signal a job's process group");
    }
}

/// The outcome of a shell that exited by itself.
fn exit_outcome(status: std::io::Result<ExitStatus>) -> Outcome {
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => Outcome::exited(code),
            (None, Some(signal)) => Outcome::failure(format!("killed by signal {signal}")),
            (None, None) => Outcome::failure(format!("ended with {status}")),
        },
        Err(e) => Outcome::failure(format!("cannot wait for /bin/sh: {e}")),
    }
}

/// The read end of the shell's output pipe.
struct Output {
    pipe: pipe::Receiver,
    /// False once the pipe reached its end (or failed).
    open: bool,
    buf: Vec<u8>,
}

impl Output {
    /// Ships output (and flushes it on time) until `until` completes.
    async fn pump<T>(&mut self, logs: &mut LogSink, until: impl Future<Output = T>) -> T {
        tokio::pin!(until);
        loop {
            let flush_at = logs.deadline();
            tokio::select! {
                read = self.pipe.read(&mut self.buf), if self.open => self.take(read, logs).await,
                () = wait::until(flush_at), if flush_at.is_some() => logs.flush().await,
                value = &mut until => return value,
            }
        }
    }

    /// Ships what is left, until the pipe ends or [`DRAIN_FOR`] has passed.
    async fn drain(&mut self, logs: &mut LogSink) {
        let rest = async {
            while self.open {
                let read = self.pipe.read(&mut self.buf).await;
                self.take(read, logs).await;
            }
        };
        let _ = tokio::time::timeout(DRAIN_FOR, rest).await;
    }

    /// Ships the result of one read; the end of the pipe (or an error) closes it.
    async fn take(&mut self, read: std::io::Result<usize>, logs: &mut LogSink) {
        match read {
            Ok(0) | Err(_) => self.open = false,
            Ok(n) => logs.write(&self.buf[..n]).await,
        }
    }
}
