//! `switchyard deploy …` driven as an operator would, against a real server and a real agent in
//! pool `deploy`: create prints the id, promote refuses a PENDING deployment, promote and
//! rollback are dry runs unless `--execute`, status shows and lists, watch exits by the
//! deployment's outcome.

use std::process::Output;
use std::time::Duration;

use switchyard_proto::v1::DeploymentState as St;

use crate::agents::{Agent, agent_key, workdir};
use crate::deployments::{POOL, deploys, environments, get, wait_state};
use crate::support::{self, Db, Server, eventually, send};

/// Runs `switchyard deploy <args>` against `s` as the administrator; at most 30 s.
fn deploy(s: &Server, args: &[&str]) -> Output {
    let (out, killed) = support::run_cli(s, "deploy", args, Duration::from_secs(30));
    assert!(
        !killed,
        "`switchyard deploy {args:?}` did not end within 30 s"
    );
    out
}

/// How many jobs the deploy pool has had (every state).
async fn pool_jobs(s: &Server) -> usize {
    let (status, body, _) = send(
        s.client
            .get(s.url(&format!("/api/queue/jobs?pool={POOL}&limit=500"))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().expect("a list of jobs").len()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs and asserts success; returns stdout.
fn ok(s: &Server, args: &[&str]) -> String {
    let out = deploy(s, args);
    assert!(
        out.status.success(),
        "deploy {args:?} failed: {}\n{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    text(&out.stdout)
}

/// Runs and asserts failure; returns stdout and stderr.
fn fails(s: &Server, args: &[&str]) -> (String, String) {
    let out = deploy(s, args);
    assert!(
        !out.status.success(),
        "deploy {args:?} succeeded: {}",
        text(&out.stdout)
    );
    (text(&out.stdout), text(&out.stderr))
}

/// `deploy create …`; returns the id from its first line, `deployment <id> <svc>@<ver> PENDING`.
fn create(s: &Server, service: &str, version: &str, extra: &[&str]) -> String {
    let mut args = vec!["create", "--service", service, "--version", version];
    args.extend_from_slice(extra);
    let out = ok(s, &args);
    let first: Vec<&str> = out.lines().next().unwrap_or("").split(' ').collect();
    assert_eq!(first.len(), 4, "{out}");
    assert_eq!(first[0], "deployment", "{out}");
    assert_eq!(first[2], format!("{service}@{version}"), "{out}");
    assert_eq!(first[3], "PENDING", "{out}");
    first[1].to_owned()
}

#[tokio::test]
async fn deploy_cli_creates_promotes_with_dry_runs_shows_and_watches() {
    let s = Server::start(Db::Sqlite, &[]).await;
    let dir = workdir();
    let _agent = Agent::start_in(POOL, "it-cli-deployer", &[&s], &agent_key(&s).await, &dir);
    let mut c = environments(&s, None).await;

    // Create: the id and PENDING on the first line; the guard flags reach the server.
    let id = create(
        &s,
        "checkout",
        "1.2.3",
        &[
            "--window-seconds",
            "600",
            "--interval-seconds",
            "1",
            "--min-samples",
            "5",
        ],
    );
    let d = get(&mut c, &id).await;
    assert_eq!(d.state, St::Pending as i32);
    let g = d.guard.unwrap();
    assert_eq!(
        (g.window_seconds, g.interval_seconds, g.min_samples),
        (600, 1, Some(5))
    );

    // A PENDING deployment cannot be promoted, dry run or not.
    let (_, err) = fails(&s, &["promote", &id]);
    assert!(err.contains("failed_precondition"), "{err}");

    // Stage it; the agent deploys it to staging.
    let out = ok(&s, &["stage", &id]);
    assert!(
        out.contains("STAGE deployment") && out.contains("PENDING -> STAGING"),
        "{out}"
    );
    assert!(out.contains("started job "), "{out}");
    wait_state(&mut c, &id, St::Staged, Duration::from_secs(20)).await;
    assert_eq!(deploys(&dir), ["staging checkout 1.2.3"]);

    // Promote without --execute: the plan, and nothing changes.
    let jobs = pool_jobs(&s).await;
    let out = ok(&s, &["promote", &id]);
    for want in [
        "PROMOTE deployment",
        "STAGED -> PROMOTING",
        "production (pool deploy)",
        "1.2.3, replacing nothing",
        "echo \"production checkout $SWITCHYARD_VERSION\" >> deploys.log",
        "dry run: nothing changed; add --execute to promote",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    assert!(!out.contains("started job"), "{out}");
    // A step's job is enqueued with the transition, so an executed plan shows at once.
    assert_eq!(pool_jobs(&s).await, jobs, "a dry run enqueues nothing");
    assert_eq!(get(&mut c, &id).await.state, St::Staged as i32);
    assert_eq!(deploys(&dir), ["staging checkout 1.2.3"]);

    // Promote with --execute: the plan, the job, and production gets the version.
    let out = ok(&s, &["promote", &id, "--execute"]);
    assert!(out.contains("STAGED -> PROMOTING"), "{out}");
    assert!(!out.contains("dry run"), "{out}");
    let job = out
        .lines()
        .find_map(|l| l.strip_prefix("started job "))
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no job in:\n{out}"));
    let d = get(&mut c, &id).await;
    assert!(
        [St::Promoting as i32, St::Guarding as i32].contains(&d.state),
        "{d:?}"
    );
    assert_eq!(d.step_job_id.as_deref(), Some(job));
    wait_state(&mut c, &id, St::Guarding, Duration::from_secs(20)).await;

    // Status of one: its fields and, once the guard has judged, its evaluations.
    let out = eventually(
        "an evaluation in the status",
        Duration::from_secs(10),
        async || {
            let out = ok(&s, &["status", &id]);
            if out.contains("failure_rate") {
                Ok(out)
            } else {
                Err(out)
            }
        },
    )
    .await;
    for want in [
        format!("deployment {id} checkout@1.2.3 GUARDING"),
        "staging -> production".to_owned(),
        "600 s window".to_owned(),
        "failure_rate INCONCLUSIVE".to_owned(),
    ] {
        assert!(out.contains(&want), "{want:?} missing from:\n{out}");
    }

    // Status of all: a table, filtered by state in any case; a bad state is refused.
    let row = |table: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&id))
            .map(|l| l.split('\t').map(str::to_owned).collect::<Vec<_>>())
    };
    let out = ok(&s, &["status"]);
    assert!(
        out.starts_with("ID\tSERVICE\tVERSION\tSTATE\tENVIRONMENT\tUPDATED\n"),
        "{out}"
    );
    let cells = row(&out).unwrap_or_else(|| panic!("{id} not listed:\n{out}"));
    assert_eq!(cells[1..5], ["checkout", "1.2.3", "GUARDING", "production"]);
    assert!(row(&ok(&s, &["status", "--state", "guarding"])).is_some());
    assert!(row(&ok(&s, &["status", "--state", "PENDING"])).is_none());
    let (_, err) = fails(&s, &["status", "--state", "bogus"]);
    assert!(err.contains("GUARDING"), "{err}");

    // Rollback without --execute: the plan, and nothing changes.
    let jobs = pool_jobs(&s).await;
    let out = ok(&s, &["rollback", &id, "--version", "1.2.2"]);
    for want in [
        "ROLLBACK deployment",
        "GUARDING -> ROLLING_BACK",
        "1.2.2, replacing 1.2.3",
        "dry run: nothing changed; add --execute to roll back",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    assert_eq!(pool_jobs(&s).await, jobs, "a dry run enqueues nothing");
    assert_eq!(get(&mut c, &id).await.state, St::Guarding as i32);
    assert_eq!(
        deploys(&dir),
        ["staging checkout 1.2.3", "production checkout 1.2.3"]
    );

    // Executed, it rolls back; a watch of it then replays its life and fails naming the end.
    ok(&s, &["rollback", &id, "--version", "1.2.2", "--execute"]);
    wait_state(&mut c, &id, St::RolledBack, Duration::from_secs(20)).await;
    let (out, err) = fails(&s, &["watch", &id]);
    let states: Vec<&str> = out.lines().filter_map(|l| l.split(' ').nth(1)).collect();
    assert_eq!(states.first(), Some(&"PENDING"), "{out}");
    assert_eq!(states.last(), Some(&"ROLLED_BACK"), "{out}");
    assert!(states.contains(&"GUARDING"), "{out}");
    assert!(
        err.contains(&format!("deployment {id} ended ROLLED_BACK")),
        "{err}"
    );

    // A deployment created and staged in one go, promoted, watched to SUCCEEDED: exit 0.
    let quick = create(
        &s,
        "payments",
        "2.0.0",
        &[
            "--window-seconds",
            "1",
            "--interval-seconds",
            "1",
            "--min-samples",
            "0",
            "--stage",
        ],
    );
    wait_state(&mut c, &quick, St::Staged, Duration::from_secs(20)).await;
    ok(&s, &["promote", &quick, "--execute"]);
    let out = ok(&s, &["watch", &quick]);
    let last = out.lines().last().unwrap_or("");
    assert_eq!(last.split(' ').nth(1), Some("SUCCEEDED"), "{out}");
    assert_eq!(get(&mut c, &quick).await.state, St::Succeeded as i32);
}
