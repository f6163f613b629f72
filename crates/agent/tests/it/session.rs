//! The protocol: handshake, jobs, cancel, self-fencing, drain.

use std::time::Duration;

use serde_json::json;
use switchyard_proto::v1::connect_request::Body as Request;
use switchyard_proto::v1::connect_response::Body as Reply;
use switchyard_proto::v1::{Cancel, Drain, HeldJob, JobFinished, LeaseLost};
use tokio::time::Instant;

use crate::helpers::{Agent, assign, config, credits, finished, started};
use crate::server::{Server, welcome};

#[tokio::test]
async fn hello_welcome_credits_and_heartbeats() {
    let mut server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&server.url, 3, dir.path());
    config.token = Some("sya_test_key".into());
    let agent = Agent::start(config);
    let mut conn = server.accept().await;
    let auth = conn.metadata.get("authorization").expect("authorization");
    assert_eq!(auth, "Bearer sya_test_key");
    let hello = conn.welcome(1, 30).await;
    assert_eq!(
        (hello.name.as_str(), hello.pool.as_str()),
        ("agent-1", "build")
    );
    assert_eq!(hello.labels.get("os").map(String::as_str), Some("linux"));
    assert_eq!(hello.capacity, 3);
    assert!(hello.running.is_empty());
    assert_eq!(hello.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(conn.recv().await, credits(3));
    let since = Instant::now();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    conn.send(assign("j-noop", 1, "noop", json!({}))).await;
    assert_eq!(conn.recv().await, started("j-noop", 1));
    assert!(since.elapsed() >= Duration::from_millis(2200));
    assert!(
        conn.heartbeats >= 3,
        "one at once, then one a second: {}",
        conn.heartbeats
    );
    agent.stop(conn).await;
}

#[tokio::test]
async fn a_shell_job_reports_start_masked_logs_end_and_a_credit() {
    let mut server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, r#"{"DEPLOY_TOKEN": "tok-8c1f2e"}"#).unwrap();
    let mut config = config(&server.url, 1, dir.path());
    config.secrets_file = Some(secrets);
    let agent = Agent::start(config);
    let mut conn = server.accept().await;
    conn.welcome(5, 30).await;
    assert_eq!(conn.recv().await, credits(1));
    let command = "echo one; echo two >&2; echo \"token $DEPLOY_TOKEN\"; exit 3";
    let payload = json!({"command": command, "secrets": ["DEPLOY_TOKEN"]});
    conn.send(assign("j-shell", 2, "shell", payload)).await;
    assert_eq!(conn.recv().await, started("j-shell", 2));
    let (report, text) = finished(&mut conn, 0).await;
    assert_eq!(text, "one\ntwo\ntoken ***\n");
    assert_eq!(
        report,
        JobFinished {
            job_id: "j-shell".into(),
            attempt: 2,
            succeeded: false,
            exit_code: Some(3),
            error: "exit status 3".into(),
        }
    );
    assert_eq!(conn.recv().await, credits(1));
    agent.stop(conn).await;
}

#[tokio::test]
async fn cancel_and_lease_lost_stop_a_job_and_return_the_credit() {
    let mut server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&server.url, 1, dir.path()));
    let mut conn = server.accept().await;
    conn.welcome(5, 30).await;
    assert_eq!(conn.recv().await, credits(1));
    conn.send(assign("j-sleep", 1, "sleep", json!({"seconds": 300})))
        .await;
    assert_eq!(conn.recv().await, started("j-sleep", 1));
    let since = Instant::now();
    let cancel = Cancel {
        job_id: "j-sleep".into(),
        attempt: 1,
    };
    conn.send(Reply::Cancel(cancel)).await;
    assert_eq!(
        conn.recv().await,
        credits(1),
        "no JobFinished after a Cancel"
    );
    assert!(since.elapsed() < Duration::from_secs(2));

    let payload = json!({"seconds": 300});
    conn.send(assign("j-lost", 5, "sleep", payload)).await;
    assert_eq!(conn.recv().await, started("j-lost", 5));
    let lost = LeaseLost {
        job_id: "j-lost".into(),
        attempt: 5,
        reason: "requeued".into(),
    };
    conn.send(Reply::LeaseLost(lost)).await;
    let next = conn.recv().await;
    assert_eq!(next, credits(1), "no JobFinished after LeaseLost either");
    agent.stop(conn).await;
}

#[tokio::test]
async fn self_fencing_kills_jobs_when_acks_stop_and_reports_them_abandoned() {
    let mut server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&server.url, 1, dir.path()));
    let mut conn = server.accept().await;
    conn.ack = false;
    conn.welcome(1, 3).await;
    assert_eq!(conn.recv().await, credits(1));
    let command = "sleep 300 & echo $! > pidfile; wait";
    conn.send(assign("j-fenced", 4, "shell", json!({"command": command})))
        .await;
    let assigned = Instant::now();
    assert_eq!(conn.recv().await, started("j-fenced", 4));
    let pidfile = dir.path().join("pidfile");
    while !pidfile.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    let stat = format!("/proc/{pid}/stat");
    let alive = || std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z "));
    assert!(alive());
    while alive() && assigned.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed_after = assigned.elapsed();
    assert!(!alive(), "self-fencing killed the job");
    assert!(
        killed_after >= Duration::from_millis(1900),
        "{killed_after:?}: not before 2/3 of the lease"
    );

    // Silent for 3 heartbeat intervals: the agent leaves and comes back.
    let mut second = server.accept().await;
    let hello = second.welcome(1, 3).await;
    assert!(
        hello.running.is_empty(),
        "abandoned jobs are not listed: {hello:?}"
    );
    let (report, _) = finished(&mut second, 0).await;
    assert_eq!((report.job_id.as_str(), report.attempt), ("j-fenced", 4));
    assert!(!report.succeeded);
    assert_eq!(report.error, "abandoned: lease could not be renewed");
    assert_eq!(second.recv().await, credits(1));
    agent.stop(second).await;
}

#[tokio::test]
async fn drain_reconnects_listing_running_jobs_whose_reports_follow_the_welcome() {
    let mut server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&server.url, 2, dir.path()));
    let mut conn = server.accept().await;
    conn.welcome(5, 30).await;
    assert_eq!(conn.recv().await, credits(2));
    let command = "echo before; sleep 2; echo after";
    conn.send(assign("j-long", 7, "shell", json!({"command": command})))
        .await;
    assert_eq!(conn.recv().await, started("j-long", 7));
    let Request::Log(first) = conn.recv().await else {
        panic!("expected the first line");
    };
    assert_eq!((first.seq, first.data.as_str()), (0, "before\n"));
    conn.send(Reply::Drain(Drain {
        reason: "replica shutting down".into(),
    }))
    .await;
    assert!(
        conn.next().await.is_none(),
        "the agent left the draining replica"
    );

    let mut second = server.accept().await;
    let hello = second.hello().await;
    let held = HeldJob {
        job_id: "j-long".into(),
        attempt: 7,
    };
    assert_eq!(hello.running, [held]);
    // The job ends while the agent waits for Welcome: its reports are queued.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    second.send(welcome(5, 30)).await;
    // What the drained stream never confirmed is sent again (the server ignores repeats): the
    // start, unless a heartbeat's ack confirmed it in time, and every line not confirmed.
    let mut first = second.recv().await;
    if first == started("j-long", 7) {
        first = second.recv().await;
    }
    let Request::Log(resent) = first else {
        panic!("expected a log chunk, got {first:?}");
    };
    let (report, rest) = finished(&mut second, resent.seq + 1).await;
    let text = format!("{}{rest}", resent.data);
    assert!(
        ["before\nafter\n", "after\n"].contains(&text.as_str()),
        "every line after the last confirmed one, in order: {text:?}"
    );
    assert!(
        report.succeeded && report.exit_code == Some(0),
        "{report:?}"
    );
    assert_eq!(
        second.recv().await,
        credits(2),
        "then credits: the job is over, all slots free"
    );
    agent.stop(second).await;
}
