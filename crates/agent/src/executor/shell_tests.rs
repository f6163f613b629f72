//! The `shell` executor with real processes.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Outcome;
use super::test_support::{Ran, job, run, run_simple};

async fn shell(payload: serde_json::Value) -> Ran {
    run_simple(job("shell", payload)).await
}

/// Whether process `pid` still exists (a zombie nobody reaped yet counts as gone).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits up to 3 s for `pid` to be gone.
async fn gone(pid: u32) -> bool {
    let until = Instant::now() + Duration::from_secs(3);
    while alive(pid) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !alive(pid)
}

/// A command that starts a grandchild, writes its pid to `pidfile` and waits for it. The file
/// appears whole (renamed into place), so a test that acts once it exists reads the pid.
const GRANDCHILD: &str =
    "sleep 300 & echo $! > pidfile.new; mv pidfile.new pidfile; echo started; wait";

fn pid_in(dir: &std::path::Path) -> u32 {
    std::fs::read_to_string(dir.join("pidfile"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn exit_codes_become_outcomes() {
    let ok = shell(json!({"command": "exit 0"})).await.outcome;
    assert_eq!(ok, Outcome::exited(0));
    assert!(ok.succeeded && ok.exit_code == Some(0));
    let failed = shell(json!({"command": "echo out; exit 7"})).await;
    assert_eq!(failed.outcome.exit_code, Some(7));
    assert_eq!(failed.outcome.error, "exit status 7");
    assert!(!failed.outcome.succeeded);
    assert_eq!(failed.output(), "out\n");
    let killed = shell(json!({"cmd": "kill -9 $$"})).await.outcome;
    assert_eq!(killed, Outcome::failure("killed by signal 9"));
}

#[tokio::test]
async fn env_and_workdir_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let payload = json!({
        "command": "echo \"$GREETING $SWITCHYARD_JOB_ID/$SWITCHYARD_JOB_ATTEMPT\"; pwd",
        "env": {"GREETING": "hello there"},
        "workdir": "sub",
    });
    let ran = run(
        job("shell", payload),
        &[],
        dir.path(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(ran.outcome, Outcome::exited(0));
    let expected_dir = dir.path().join("sub").canonicalize().unwrap();
    assert_eq!(
        ran.output(),
        format!("hello there job-1/1\n{}\n", expected_dir.display())
    );

    let missing = shell(json!({"command": "true", "workdir": "/nonexistent/dir"})).await;
    assert!(
        missing
            .outcome
            .error
            .starts_with("cannot start /bin/sh in /nonexistent/dir"),
        "{}",
        missing.outcome.error
    );
}

#[tokio::test]
async fn stdout_and_stderr_are_merged_in_order() {
    let command = "echo 1; echo 2 >&2; echo 3; echo 4 >&2; printf 'no newline' >&2";
    let ran = shell(json!({"command": command})).await;
    assert_eq!(ran.output(), "1\n2\n3\n4\nno newline");
    for (i, chunk) in ran.chunks.iter().enumerate() {
        assert_eq!(chunk.seq, i as u64);
    }
}

#[tokio::test]
async fn output_is_shipped_while_the_job_runs() {
    let ran = shell(json!({"command": "echo first; sleep 1; echo second"})).await;
    assert_eq!(
        ran.chunks.len(),
        2,
        "the first line is flushed within 200 ms"
    );
    assert_eq!(ran.chunks[0].data, "first\n");
    assert_eq!(ran.chunks[1].data, "second\n");
}

#[tokio::test]
async fn missing_command_fails_clearly() {
    for payload in [json!({}), json!({"command": "  "}), json!(null)] {
        let outcome = shell(payload).await.outcome;
        assert_eq!(
            outcome,
            Outcome::failure("invalid shell payload: `command` is missing or empty")
        );
    }
    let wrong_type = shell(json!({"command": 5})).await.outcome;
    assert!(
        wrong_type.error.starts_with("invalid shell payload: "),
        "{}",
        wrong_type.error
    );
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let payload = json!({"command": GRANDCHILD, "timeout_seconds": 1});
    let started = Instant::now();
    let ran = run(
        job("shell", payload),
        &[],
        dir.path(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(ran.outcome, Outcome::failure("timed out after 1 s"));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "SIGTERM was enough"
    );
    assert_eq!(ran.output(), "started\n");
    assert!(
        gone(pid_in(dir.path())).await,
        "the grandchild was killed too"
    );
}

#[tokio::test]
async fn the_job_timeout_applies_without_a_payload_timeout() {
    let mut timed = job("shell", json!({"command": "sleep 300"}));
    timed.timeout_seconds = 1;
    let ran = run_simple(timed).await;
    assert_eq!(ran.outcome, Outcome::failure("timed out after 1 s"));
}

#[tokio::test]
async fn cancel_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    let pidfile = dir.path().join("pidfile");
    tokio::spawn(async move {
        while !pidfile.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        canceller.cancel();
    });
    let ran = run(
        job("shell", json!({"command": GRANDCHILD})),
        &[],
        dir.path(),
        cancel,
    )
    .await;
    assert_eq!(ran.outcome, Outcome::cancelled());
    assert!(
        gone(pid_in(dir.path())).await,
        "the grandchild was killed too"
    );
}

#[tokio::test]
async fn a_group_ignoring_sigterm_gets_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let payload = json!({"command": format!("trap '' TERM; {GRANDCHILD}"), "timeout_seconds": 1});
    let started = Instant::now();
    let ran = run(
        job("shell", payload),
        &[],
        dir.path(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(ran.outcome, Outcome::failure("timed out after 1 s"));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= super::shell::KILL_AFTER,
        "{elapsed:?}: SIGKILL only after the grace"
    );
    assert!(gone(pid_in(dir.path())).await);
}

#[tokio::test]
async fn named_secrets_are_in_the_environment_and_every_value_is_masked() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        ("DEPLOY_TOKEN", "tok-3f9a1c"),
        ("OTHER", "multi\nline-secret"),
    ];
    let payload = json!({
        "command": "echo \"t=$DEPLOY_TOKEN\"; printf 'multi\\nline-secret\\n'; echo \"o=${OTHER:-unset}\"",
        "secrets": ["DEPLOY_TOKEN"],
    });
    let ran = run(
        job("shell", payload),
        &secrets,
        dir.path(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(ran.outcome, Outcome::exited(0));
    assert_eq!(
        ran.output(),
        "t=***\n***\no=unset\n",
        "only named secrets are passed"
    );

    let payload = json!({"command": "true", "secrets": ["DEPLOY_TOKEN", "NOPE"]});
    let ran = run(
        job("shell", payload),
        &secrets,
        dir.path(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(ran.outcome, Outcome::failure("unknown secret NOPE"));
}
